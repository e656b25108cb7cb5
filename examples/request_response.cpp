// Request/response with call(): a key-value actor whose table lives in its persistent state,
// kept across deactivate/activate.
#include <cstdio>

#include "kernels.hpp"

using namespace ringkernel;
using examples::KvRequest;
using examples::KvResponse;

int main() {
  try {
    RingKernel runtime = RingKernel::builder().backend(Backend::Auto).build().value();
    KernelHandle kv = runtime.launch("kv_store", LaunchOptions{.block_size = 32}).value();
    std::printf("kv_store on the %s backend\n", to_string(kv.backend()));
    for (std::uint32_t k = 0; k < 8; ++k) kv.call<KvResponse>(KvRequest{1, k, std::int64_t{k} * 100}).value();

    kv.deactivate().value();  // state stays on the device
    kv.activate().value();

    int wrong = 0;
    for (std::uint32_t k = 0; k < 10; ++k) {
      const KvResponse r = kv.call<KvResponse>(KvRequest{0, k, 0}, std::chrono::seconds(2)).value();
      std::printf("get(%u) -> %s %lld\n", k, r.found ? "found" : "missing", static_cast<long long>(r.value));
      const bool ok = k < 8 ? (r.found && r.value == std::int64_t{k} * 100) : !r.found;
      wrong += ok ? 0 : 1;
    }
    kv.terminate().value();
    return wrong == 0 ? 0 : 1;
  } catch (const ErrorException& e) {
    std::fprintf(stderr, "request_response failed: %s\n", e.what());
    return 1;
  }
}
