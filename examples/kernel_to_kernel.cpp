// Kernel-to-kernel: host -> stage1 -(K2K)-> stage2 -> host. The middle hop never touches
// the host on a GPU backend.
#include <cstdio>

#include "kernels.hpp"

using namespace ringkernel;
using examples::Sample;
using examples::Scaled;

int main() {
  try {
    RingKernel runtime = RingKernel::builder().backend(Backend::Auto).build().value();
    const LaunchOptions k2k{.block_size = 1, .enable_k2k = true};
    KernelHandle stage1 = runtime.launch("stage1", k2k).value();
    KernelHandle stage2 = runtime.launch("stage2", k2k).value();
    runtime.connect(stage1, stage2).value();
    std::printf("stage1 (K2K address %u) -> stage2 (K2K address %u) on the %s backend\n", stage1.slot(), stage2.slot(),
                to_string(stage1.backend()));

    constexpr int kSamples = 1000;
    for (int i = 0; i < kSamples; ++i) stage1.send(Sample{static_cast<std::uint64_t>(i), double(i)}).value();
    double checksum = 0;
    for (int i = 0; i < kSamples; ++i) {
      const Scaled s = stage2.receive<Scaled>().value();
      if (s.seq != static_cast<std::uint64_t>(i)) {
        std::fprintf(stderr, "K2K broke FIFO order: got %llu, expected %d\n", static_cast<unsigned long long>(s.seq), i);
        return 1;
      }
      checksum += s.value;
    }
    const double expected = 2.0 * (kSamples - 1) * kSamples / 2.0 + kSamples;
    std::printf("%d samples through the pipeline, checksum %.0f (expected %.0f)\n", kSamples, checksum, expected);
    const KernelMetrics m = stage1.metrics();
    std::printf("stage1 sent %llu K2K messages, %llu dead letters\n", static_cast<unsigned long long>(m.telemetry.raw.k2k_sent),
                static_cast<unsigned long long>(m.k2k_dead_letters));
    return checksum == expected ? 0 : 1;
  } catch (const ErrorException& e) {
    std::fprintf(stderr, "kernel_to_kernel failed: %s\n", e.what());
    return 1;
  }
}
