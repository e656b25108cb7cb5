// A kernel that dies on the GPU (trap) must surface as KernelFaulted within the caller's
// timeout, never as a hang. A trap poisons the whole CUDA context, so this runs in a
// process of its own.
#include <gtest/gtest.h>

#include <chrono>

#include "test_kernels.hpp"

using namespace ringkernel;
using namespace std::chrono_literals;
using rktest::Item;
using rktest::Reply;

namespace rktest {
struct Trapper {
  using Request = Item;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Reply& out) const {
    if (in.value == 666) {
#if RK_DEVICE_PASS
      __trap();
#else
      ctx.fail(99);  // the CPU build has no trap: a handler fault instead
#endif
    }
    out = Reply{in.seq, in.value, 0, 0, 0};
    return ctx.thread_id() == 0;
  }
};
}  // namespace rktest
RK_KERNEL("test.trapper", rktest::Trapper);

TEST(CudaFault, a_trapped_kernel_is_reported_within_the_timeout_not_as_a_hang) {
  const BackendAvailability a = availability(Backend::Cuda);
  if (!a.available) GTEST_SKIP() << "cuda backend not available here: " << a.reason;
  auto rt = RingKernel::builder().backend(Backend::Cuda).build().value();
  KernelHandle k = rt.launch("test.trapper", LaunchOptions{.block_size = 32}).value();
  ASSERT_TRUE(k.send(Item{1, 1}).ok());
  EXPECT_EQ(k.receive<Reply>(5s).value().value, 1);
  ASSERT_TRUE(k.send(Item{2, 666}).ok());
  const auto t0 = std::chrono::steady_clock::now();
  auto r = k.receive<Reply>(3s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::KernelFaulted) << r.error().what();
  EXPECT_NE(r.error().native_code(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  auto s = k.send(Item{3, 3});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::KernelFaulted);
  // Later launches on the poisoned context are refused with the reason.
  auto again = rt.launch("test.echo", LaunchOptions{.block_size = 1});
  ASSERT_FALSE(again.ok());
  std::printf("reported: %s\n", r.error().what().c_str());
}
