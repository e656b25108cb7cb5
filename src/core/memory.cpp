#include "ringkernel/memory.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <string>

#include "ringkernel/availability.hpp"

namespace ringkernel {

const char* to_string(PinnedKind k) noexcept {
  switch (k) {
    case PinnedKind::CudaPinned: return "cuda-pinned";
    case PinnedKind::OsLocked: return "os-locked";
    case PinnedKind::Pageable: return "pageable";
  }
  return "?";
}

Result<PinnedMemory> PinnedMemory::allocate(std::size_t bytes) {
  if (bytes == 0) return Error(ErrorCode::InvalidArgument, "PinnedMemory::allocate: size 0");
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t size = (bytes + page - 1) / page * page;
  PinnedMemory m;
  m.size_ = size;
  if (const auto* cuda = detail::find_backend_plugin(Backend::Cuda); cuda && cuda->host_alloc) {
    if (void* p = cuda->host_alloc(size)) {
      std::memset(p, 0, size);
      m.data_ = static_cast<std::byte*>(p);
      m.kind_ = PinnedKind::CudaPinned;
      return m;
    }
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return Error(ErrorCode::OutOfMemory, "PinnedMemory::allocate: mmap of " + std::to_string(size) +
                                             " bytes failed: " + std::strerror(errno), errno);
  }
  m.data_ = static_cast<std::byte*>(p);
  if (mlock(p, size) == 0) {
    m.kind_ = PinnedKind::OsLocked;
  } else {
    m.kind_ = PinnedKind::Pageable;
    m.reason_ = std::string("mlock refused (") + std::strerror(errno) +
                "); raise RLIMIT_MEMLOCK (ulimit -l) to page-lock transfer buffers";
  }
  return m;
}

PinnedMemory::PinnedMemory(PinnedMemory&& o) noexcept
    : data_(o.data_), size_(o.size_), kind_(o.kind_), reason_(std::move(o.reason_)) {
  o.data_ = nullptr;
  o.size_ = 0;
}

PinnedMemory& PinnedMemory::operator=(PinnedMemory&& o) noexcept {
  if (this != &o) {
    release();
    data_ = o.data_;
    size_ = o.size_;
    kind_ = o.kind_;
    reason_ = std::move(o.reason_);
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

PinnedMemory::~PinnedMemory() { release(); }

void PinnedMemory::release() noexcept {
  if (!data_) return;
  if (kind_ == PinnedKind::CudaPinned) {
    if (const auto* cuda = detail::find_backend_plugin(Backend::Cuda); cuda && cuda->host_free) cuda->host_free(data_);
  } else {
    if (kind_ == PinnedKind::OsLocked) munlock(data_, size_);
    munmap(data_, size_);
  }
  data_ = nullptr;
}

MemoryPool::MemoryPool(std::size_t block_size, std::size_t blocks_per_slab, std::size_t alignment)
    : block_size_((block_size + alignment - 1) / alignment * alignment),
      blocks_per_slab_(blocks_per_slab ? blocks_per_slab : 1),
      alignment_(alignment) {}

MemoryPool::~MemoryPool() {
  for (std::byte* s : slabs_) ::operator delete[](s, std::align_val_t(alignment_));
}

void* MemoryPool::allocate() {
  std::lock_guard lock(mutex_);
  if (free_.empty()) {
    if (max_blocks_ != 0 && carved_ >= max_blocks_) return nullptr;
    std::size_t n = blocks_per_slab_;
    if (max_blocks_ != 0 && carved_ + n > max_blocks_) n = max_blocks_ - carved_;
    auto* slab = static_cast<std::byte*>(::operator new[](n * block_size_, std::align_val_t(alignment_)));
    slabs_.push_back(slab);
    free_.reserve(free_.size() + n);
    for (std::size_t i = n; i-- > 0;) free_.push_back(slab + i * block_size_);
    carved_ += n;
  }
  void* p = free_.back();
  free_.pop_back();
  return p;
}

void MemoryPool::deallocate(void* p) noexcept {
  if (!p) return;
  std::lock_guard lock(mutex_);
  free_.push_back(p);  // capacity reserved when the slab was carved: never reallocates
}

std::size_t MemoryPool::in_use() const {
  std::lock_guard lock(mutex_);
  return carved_ - free_.size();
}

std::size_t MemoryPool::capacity() const {
  std::lock_guard lock(mutex_);
  return carved_;
}

namespace {
class HostBuffer final : public GpuBuffer {
 public:
  HostBuffer(std::byte* data, std::size_t n, std::shared_ptr<std::atomic<std::size_t>> live)
      : data_(data), size_(n), live_(std::move(live)) {
    std::memset(data_, 0, n);
    live_->fetch_add(n, std::memory_order_relaxed);
  }
  ~HostBuffer() override {
    ::operator delete[](data_, std::align_val_t(256));
    live_->fetch_sub(size_, std::memory_order_relaxed);
  }
  std::size_t size() const noexcept override { return size_; }
  void* device_ptr() const noexcept override { return data_; }
  Result<void> copy_from_host(std::span<const std::byte> src, std::size_t offset) override {
    if (auto r = detail::check_buffer_range(offset, src.size(), size_, "copy_from_host"); !r) return r;
    std::memcpy(data_ + offset, src.data(), src.size());
    return {};
  }
  Result<void> copy_to_host(std::span<std::byte> dst, std::size_t offset) const override {
    if (auto r = detail::check_buffer_range(offset, dst.size(), size_, "copy_to_host"); !r) return r;
    std::memcpy(dst.data(), data_ + offset, dst.size());
    return {};
  }

 private:
  std::byte* data_;
  std::size_t size_;
  std::shared_ptr<std::atomic<std::size_t>> live_;  // the allocator's count of live bytes
};
}  // namespace

Result<std::unique_ptr<GpuBuffer>> HostDeviceMemory::allocate(std::size_t bytes) {
  if (bytes == 0) return Error(ErrorCode::InvalidArgument, "allocate: size 0");
  // More than the machine has can never succeed; refused before the allocator is asked
  // (some allocators, e.g. under AddressSanitizer, abort on absurd sizes instead of failing).
  if (const std::uint64_t total = availability(Backend::Cpu).memory_bytes; total != 0 && bytes > total)
    return Error(ErrorCode::OutOfMemory, "allocate: " + std::to_string(bytes) + " bytes is more than this machine's " +
                                             std::to_string(total) + " bytes of memory");
  auto* data = static_cast<std::byte*>(::operator new[](bytes, std::align_val_t(256), std::nothrow));
  if (data == nullptr) return Error(ErrorCode::OutOfMemory, "allocate: no host memory for " + std::to_string(bytes) + " bytes");
  return std::unique_ptr<GpuBuffer>(std::make_unique<HostBuffer>(data, bytes, live_));
}

}  // namespace ringkernel
