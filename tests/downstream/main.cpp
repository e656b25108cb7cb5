#include <cstdio>

#include <ringkernel/ringkernel.hpp>

namespace app {
struct Doubled {
  std::int64_t v;
};
RK_MESSAGE(Doubled, "downstream.Doubled", v);
struct Doubler {
  using Request = Doubled;
  using Response = Doubled;
  RK_HOST_DEVICE bool operator()(ringkernel::RingContext& ctx, ringkernel::NoState&, const Doubled& in,
                                 Doubled& out) const {
    out.v = in.v * 2;
    return ctx.thread_id() == 0;
  }
};
}  // namespace app
RK_KERNEL("downstream.doubler", app::Doubler);

int main() {
  using namespace ringkernel;
  auto rt = RingKernel::builder().backend(Backend::Cpu).build().value();
  auto k = rt.launch("downstream.doubler", LaunchOptions{.block_size = 1}).value();
  k.send(app::Doubled{21}).value();
  const auto r = k.receive<app::Doubled>().value();
  std::printf("downstream: 21 * 2 = %lld\n", static_cast<long long>(r.v));
  return r.v == 42 ? 0 : 1;
}
