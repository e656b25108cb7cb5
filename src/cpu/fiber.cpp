// Cooperative fibers: a minimal x86-64 System V context switch (callee-saved registers,
// MXCSR and the x87 control word), with ucontext as the portable fallback. Annotated for
// AddressSanitizer and ThreadSanitizer, which otherwise lose track of the stacks.
#include "fiber.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define RK_ASAN 1
#else
#define RK_ASAN 0
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define RK_TSAN 1
#else
#define RK_TSAN 0
#endif

#if defined(__x86_64__)
extern "C" void rk_fiber_switch(void** save_sp, void* load_sp);
extern "C" void rk_fiber_trampoline();
asm(R"(
  .text
  .globl rk_fiber_switch
  .type rk_fiber_switch,@function
rk_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size rk_fiber_switch,.-rk_fiber_switch

  .globl rk_fiber_trampoline
  .type rk_fiber_trampoline,@function
rk_fiber_trampoline:
  movq %r12, %rdi
  call *%r13
  ud2
  .size rk_fiber_trampoline,.-rk_fiber_trampoline
  .section .note.GNU-stack,"",@progbits
  .text
)");
#else
#include <ucontext.h>
#endif

namespace ringkernel::detail {

namespace {
#if !defined(__x86_64__)
struct UContexts {
  ucontext_t main;
  std::vector<ucontext_t> fibers;
};
#endif
}  // namespace

FiberTeam::FiberTeam(std::uint32_t threads, std::size_t stack_size) : fibers_(threads), exchange_(threads, 0) {
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  stack_size = (stack_size + page - 1) / page * page;
  for (Fiber& f : fibers_) {
    f.mapping_size = stack_size + page;  // one guard page below the stack
    void* m = mmap(nullptr, f.mapping_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      std::fprintf(stderr, "ringkernel: cannot map a fiber stack\n");
      std::abort();
    }
    mprotect(m, page, PROT_NONE);
    f.mapping = static_cast<std::byte*>(m);
    f.stack_bottom = f.mapping + page;
    f.stack_size = stack_size;
#if RK_TSAN
    f.tsan = __tsan_create_fiber(0);
#endif
  }
}

FiberTeam::~FiberTeam() {
  for (Fiber& f : fibers_) {
#if RK_TSAN
    if (f.tsan) __tsan_destroy_fiber(f.tsan);
#endif
    munmap(f.mapping, f.mapping_size);
  }
}

void FiberTeam::entry(void* self) noexcept {
  auto* team = static_cast<FiberTeam*>(self);
  const std::uint32_t id = team->starting_;
#if RK_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &team->main_stack_bottom_, &team->main_stack_size_);
#endif
  for (;;) {
    team->fn_(team->arg_, id);
    team->fibers_[id].state = FiberState::Done;
    team->suspend(id);
  }
}

void FiberTeam::resume(std::uint32_t t) noexcept {
  Fiber& f = fibers_[t];
  if (!f.started) {
    f.started = true;
    starting_ = t;
#if defined(__x86_64__)
    // Initial frame popped by rk_fiber_switch: control words, r15, r14, r13 (entry),
    // r12 (argument), rbx, rbp, return address (the trampoline).
    auto* top = reinterpret_cast<std::uintptr_t*>(
        (reinterpret_cast<std::uintptr_t>(f.stack_bottom + f.stack_size) & ~std::uintptr_t{15}) - 16);
    std::uintptr_t* sp = top - 8;
    // MXCSR default in the low 4 bytes, x87 control word default at byte 4.
    const std::uint64_t control = 0x1F80u | (std::uint64_t{0x037F} << 32);
    sp[0] = control;
    sp[1] = 0;                                                 // r15
    sp[2] = 0;                                                 // r14
    sp[3] = reinterpret_cast<std::uintptr_t>(&FiberTeam::entry);  // r13
    sp[4] = reinterpret_cast<std::uintptr_t>(this);            // r12
    sp[5] = 0;                                                 // rbx
    sp[6] = 0;                                                 // rbp
    sp[7] = reinterpret_cast<std::uintptr_t>(&rk_fiber_trampoline);
    f.sp = sp;
#endif
  }
#if RK_TSAN
  main_tsan_ = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(f.tsan, 0);
#endif
#if RK_ASAN
  __sanitizer_start_switch_fiber(&main_asan_fake_, f.stack_bottom, f.stack_size);
#endif
#if defined(__x86_64__)
  rk_fiber_switch(&main_sp_, f.sp);
#else
  static_assert(sizeof(void*) == 8, "fallback expects 64-bit");
  // Portable fallback: ucontext (slower: saves the signal mask).
  {
    auto* ctx = static_cast<UContexts*>(f.sp);
    if (ctx == nullptr) {
      ctx = new UContexts();
      ctx->fibers.resize(1);
      getcontext(&ctx->fibers[0]);
      ctx->fibers[0].uc_stack.ss_sp = f.stack_bottom;
      ctx->fibers[0].uc_stack.ss_size = f.stack_size;
      ctx->fibers[0].uc_link = nullptr;
      makecontext(&ctx->fibers[0], reinterpret_cast<void (*)()>(&FiberTeam::entry), 1, this);
      f.sp = ctx;
    }
    main_sp_ = ctx;
    swapcontext(&ctx->main, &ctx->fibers[0]);
  }
#endif
#if RK_ASAN
  __sanitizer_finish_switch_fiber(main_asan_fake_, nullptr, nullptr);
#endif
}

void FiberTeam::suspend(std::uint32_t t) noexcept {
  Fiber& f = fibers_[t];
#if RK_TSAN
  __tsan_switch_to_fiber(main_tsan_, 0);
#endif
#if RK_ASAN
  __sanitizer_start_switch_fiber(&f.asan_fake, main_stack_bottom_, main_stack_size_);
#endif
#if defined(__x86_64__)
  rk_fiber_switch(&f.sp, main_sp_);
#else
  auto* ctx = static_cast<UContexts*>(f.sp);
  swapcontext(&ctx->fibers[0], &ctx->main);
#endif
#if RK_ASAN
  __sanitizer_finish_switch_fiber(f.asan_fake, &main_stack_bottom_, &main_stack_size_);
#endif
}

bool FiberTeam::run(void (*fn)(void*, std::uint32_t), void* arg) noexcept {
  if (broken_) return false;
  fn_ = fn;
  arg_ = arg;
  const auto n = static_cast<std::uint32_t>(fibers_.size());
  for (Fiber& f : fibers_) f.state = FiberState::Ready;
  for (;;) {
    for (std::uint32_t t = 0; t < n; ++t)
      if (fibers_[t].state == FiberState::Ready) resume(t);
    // Every fiber is now Done or waiting at a barrier.
    std::uint32_t done = 0, at_block = 0;
    for (const Fiber& f : fibers_) {
      done += f.state == FiberState::Done;
      at_block += f.state == FiberState::AtBlock;
    }
    if (done == n) return true;
    bool released = false;
    if (at_block == n) {
      for (Fiber& f : fibers_) f.state = FiberState::Ready;
      released = true;
    }
    for (std::uint32_t w = 0; w * 32 < n; ++w) {
      const std::uint32_t first = w * 32, last = std::min(n, first + 32);
      bool all = true;
      for (std::uint32_t t = first; t < last; ++t) all = all && fibers_[t].state == FiberState::AtWarp;
      if (all) {
        for (std::uint32_t t = first; t < last; ++t) fibers_[t].state = FiberState::Ready;
        released = true;
      }
    }
    if (!released) {
      broken_ = true;  // divergent barrier: fibers stay suspended; the kernel faults
      return false;
    }
  }
}

void FiberTeam::block_barrier(std::uint32_t t) noexcept {
  fibers_[t].state = FiberState::AtBlock;
  suspend(t);
}

void FiberTeam::warp_barrier(std::uint32_t t) noexcept {
  fibers_[t].state = FiberState::AtWarp;
  suspend(t);
}

std::uint64_t FiberTeam::exchange(std::uint32_t t, std::uint64_t value, std::uint32_t src_lane) noexcept {
  exchange_[t] = value;
  warp_barrier(t);
  const std::uint32_t base = t / 32 * 32;
  const std::uint32_t src = base + (src_lane % 32);
  const std::uint64_t out = src < exchange_.size() ? exchange_[src] : value;
  warp_barrier(t);  // nobody overwrites exchange_ before every lane has read
  return out;
}

std::uint32_t FiberTeam::ballot(std::uint32_t t, bool pred) noexcept {
  exchange_[t] = pred ? 1 : 0;
  warp_barrier(t);
  const std::uint32_t base = t / 32 * 32;
  const auto last = std::min<std::uint32_t>(static_cast<std::uint32_t>(exchange_.size()), base + 32);
  std::uint32_t bits = 0;
  for (std::uint32_t i = base; i < last; ++i)
    if (exchange_[i]) bits |= 1u << (i - base);
  warp_barrier(t);
  return bits;
}

}  // namespace ringkernel::detail
