// The seed's quick start: launch the "adder" kernel, send AddRequest{1, 2}, print 3.
#include <cstdio>

#include "kernels.hpp"

using namespace ringkernel;
using examples::AddRequest;
using examples::AddResponse;

int main() {
  try {
    // Backend::Auto: CUDA when a GPU and a CUDA build of the kernel exist, else the CPU.
    RingKernel runtime = RingKernel::builder().backend(Backend::Auto).build().value();
    KernelHandle kernel = runtime.launch("adder", LaunchOptions{.auto_activate = false}).value();
    kernel.activate().value();
    std::printf("kernel '%s' active on the %s backend\n", kernel.id().str().c_str(), to_string(kernel.backend()));

    kernel.send(AddRequest{MessageId::generate(), 1.0f, 2.0f}).value();
    const AddResponse response = kernel.receive<AddResponse>().value();
    std::printf("Result: %g\n", static_cast<double>(response.sum));

    kernel.terminate().value();
    return response.sum == 3.0f ? 0 : 1;
  } catch (const ErrorException& e) {
    std::fprintf(stderr, "quickstart failed: %s\n", e.what());
    return 1;
  }
}
