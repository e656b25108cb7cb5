// Private: cooperative fibers that run a block's threads on one OS thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ringkernel::detail {

/// A team of `threads` fibers. run() executes fn(arg, thread) on every fiber; inside fn,
/// block_barrier / warp_barrier / exchange / ballot suspend the fiber until the whole
/// group has arrived, as on a GPU. Used by one OS thread (the kernel's).
class FiberTeam {
 public:
  FiberTeam(std::uint32_t threads, std::size_t stack_size = 256 * 1024);
  FiberTeam(const FiberTeam&) = delete;
  FiberTeam& operator=(const FiberTeam&) = delete;
  ~FiberTeam();

  /// False when the fibers deadlocked on barriers (divergent barrier: some threads left
  /// the handler or wait at a different barrier); the team is then unusable.
  bool run(void (*fn)(void*, std::uint32_t), void* arg) noexcept;

  void block_barrier(std::uint32_t thread) noexcept;
  void warp_barrier(std::uint32_t thread) noexcept;
  std::uint64_t exchange(std::uint32_t thread, std::uint64_t value, std::uint32_t src_lane) noexcept;
  std::uint32_t ballot(std::uint32_t thread, bool pred) noexcept;
  std::uint32_t size() const noexcept { return static_cast<std::uint32_t>(fibers_.size()); }

 private:
  enum class FiberState : std::uint8_t { Ready, AtBlock, AtWarp, Done };
  struct Fiber {
    void* sp = nullptr;
    std::byte* mapping = nullptr;
    std::size_t mapping_size = 0;
    std::byte* stack_bottom = nullptr;
    std::size_t stack_size = 0;
    FiberState state = FiberState::Done;
    void* tsan = nullptr;
    void* asan_fake = nullptr;
    bool started = false;
  };
  static void entry(void* self) noexcept;
  void resume(std::uint32_t t) noexcept;   // scheduler -> fiber t
  void suspend(std::uint32_t t) noexcept;  // fiber t -> scheduler

  std::vector<Fiber> fibers_;
  std::vector<std::uint64_t> exchange_;
  void (*fn_)(void*, std::uint32_t) = nullptr;
  void* arg_ = nullptr;
  void* main_sp_ = nullptr;
  void* main_tsan_ = nullptr;
  void* main_asan_fake_ = nullptr;
  const void* main_stack_bottom_ = nullptr;
  std::size_t main_stack_size_ = 0;
  std::uint32_t starting_ = 0;  // id of the fiber being started (read by entry)
  bool broken_ = false;
};

}  // namespace ringkernel::detail
