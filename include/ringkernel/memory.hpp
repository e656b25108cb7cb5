// ringkernel/memory.hpp — host and device memory abstractions.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "ringkernel/error.hpp"

namespace ringkernel {

/// How a PinnedMemory block is backed.
enum class PinnedKind : std::uint8_t {
  CudaPinned,  ///< cudaHostAlloc: page-locked and DMA-mapped for the GPU (CUDA linked)
  OsLocked,    ///< mmap + mlock: page-locked by the OS, not registered with any GPU
  Pageable,    ///< mlock refused (RLIMIT_MEMLOCK); ordinary memory — reason() says why
};
const char* to_string(PinnedKind k) noexcept;

/// Page-aligned, page-locked host memory for transfers. Move-only owner.
class PinnedMemory {
 public:
  /// Allocates `bytes` (rounded up to the page size), zeroed.
  static Result<PinnedMemory> allocate(std::size_t bytes);

  PinnedMemory(PinnedMemory&& o) noexcept;
  PinnedMemory& operator=(PinnedMemory&& o) noexcept;
  PinnedMemory(const PinnedMemory&) = delete;
  PinnedMemory& operator=(const PinnedMemory&) = delete;
  ~PinnedMemory();

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::span<std::byte> bytes() noexcept { return {data_, size_}; }
  PinnedKind kind() const noexcept { return kind_; }
  /// Why the memory is not page-locked (empty when it is).
  const std::string& reason() const noexcept { return reason_; }

 private:
  PinnedMemory() = default;
  void release() noexcept;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  PinnedKind kind_ = PinnedKind::Pageable;
  std::string reason_;
};

/// Fixed-size block pool: O(1) allocate/free from a free list over slabs carved once.
/// Thread-safe (a mutex guards the free list). Blocks are aligned to `alignment`.
class MemoryPool {
 public:
  MemoryPool(std::size_t block_size, std::size_t blocks_per_slab = 64, std::size_t alignment = 64);
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;
  ~MemoryPool();

  /// A block of block_size() bytes, or nullptr when `max_blocks` (0 = unbounded) is reached.
  void* allocate();
  /// Returns a block obtained from this pool.
  void deallocate(void* p) noexcept;

  std::size_t block_size() const noexcept { return block_size_; }
  std::size_t in_use() const;
  std::size_t capacity() const;  ///< blocks carved so far
  void set_max_blocks(std::size_t n) { max_blocks_ = n; }

 private:
  std::size_t block_size_;
  std::size_t blocks_per_slab_;
  std::size_t alignment_;
  std::size_t max_blocks_ = 0;
  mutable std::mutex mutex_;
  std::vector<void*> free_;
  std::vector<std::byte*> slabs_;
  std::size_t carved_ = 0;
};

namespace detail {
/// Ok when [offset, offset + bytes) lies inside a buffer of `size` bytes.
inline Result<void> check_buffer_range(std::size_t offset, std::size_t bytes, std::size_t size, const char* what) {
  if (offset > size || bytes > size - offset)
    return Error(ErrorCode::InvalidArgument, std::string(what) + ": bytes " + std::to_string(offset) + ".." +
                                                 std::to_string(offset + bytes) + " lie beyond the buffer's " +
                                                 std::to_string(size));
  return {};
}
}  // namespace detail

/// A buffer in some device's memory.
class GpuBuffer {
 public:
  virtual ~GpuBuffer() = default;
  virtual std::size_t size() const noexcept = 0;
  /// Address as the device sees it.
  virtual void* device_ptr() const noexcept = 0;
  virtual Result<void> copy_from_host(std::span<const std::byte> src, std::size_t offset = 0) = 0;
  virtual Result<void> copy_to_host(std::span<std::byte> dst, std::size_t offset = 0) const = 0;
};

/// Allocates GpuBuffers on one device (RingKernel::device_memory() gives the runtime's).
/// A buffer may outlive its allocator. On CUDA, buffers are device memory from the
/// stream-ordered allocator, copies run on a stream of their own, and neither an allocation,
/// a copy nor a free waits for the persistent kernels running on the GPU. A kernel reaches
/// a buffer through its address (device_ptr()) sent in a message or kept in its State, on
/// every backend with the same handler code.
class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  virtual Result<std::unique_ptr<GpuBuffer>> allocate(std::size_t bytes) = 0;
  virtual std::string name() const = 0;
  /// Bytes in buffers allocated here and not yet destroyed.
  virtual std::size_t allocated_bytes() const noexcept = 0;
};

/// DeviceMemory of the CPU backend: buffers are host memory (device_ptr is a host pointer).
class HostDeviceMemory final : public DeviceMemory {
 public:
  Result<std::unique_ptr<GpuBuffer>> allocate(std::size_t bytes) override;
  std::string name() const override { return "host memory (CPU backend)"; }
  std::size_t allocated_bytes() const noexcept override { return live_->load(std::memory_order_relaxed); }

 private:
  /// Shared with the buffers, which may outlive this object: each subtracts its size when
  /// it is destroyed (any thread).
  std::shared_ptr<std::atomic<std::size_t>> live_ = std::make_shared<std::atomic<std::size_t>>(0);
};

}  // namespace ringkernel
