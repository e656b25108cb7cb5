// Raw costs of the primitives the CUDA backend is built from, on this GPU (no ringkernel
// code): host<->kernel ping-pong through mapped memory with different orderings, and the
// device-side price of globaltimer, fences, __nanosleep and atomics. Used to decide where
// the persistent loop spends its time.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <vector>

#define CK(x)                                                                                        \
  do {                                                                                               \
    cudaError_t e_ = (x);                                                                            \
    if (e_ != cudaSuccess) {                                                                         \
      std::printf("%s: %s\n", #x, cudaGetErrorString(e_));                                           \
      return 1;                                                                                      \
    }                                                                                                \
  } while (0)

struct alignas(128) Line {
  unsigned long long seq;
  unsigned long long data[7];
  unsigned long long pad[8];
};

__device__ unsigned long long gt() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// mode 0: volatile poll, __threadfence_system before the reply flag
// mode 1: relaxed poll + fence.acq_rel.sys on change, fence.acq_rel.sys before the reply
// mode 2: ld.acquire.sys poll, st.release.sys reply
// mode 3: separate index and payload lines (two dependent reads), mode 1 fences
__global__ void pingpong(Line* in, Line* out, int n, int mode, unsigned long long* stop) {
  unsigned long long expect = 1;
  for (int i = 0; i < n; ++i, ++expect) {
    unsigned long long s;
    for (;;) {
      if (mode == 2) {
        asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(s) : "l"(&in->seq) : "memory");
      } else {
        s = *reinterpret_cast<volatile unsigned long long*>(&in->seq);
      }
      if (s == expect) break;
    }
    if (mode == 1 || mode == 3) asm volatile("fence.acq_rel.sys;" ::: "memory");
    unsigned long long v = reinterpret_cast<volatile unsigned long long*>(in->data)[mode == 3 ? 6 : 0];
    if (mode == 3) v += reinterpret_cast<volatile unsigned long long*>((in + 1)->data)[0];
    reinterpret_cast<volatile unsigned long long*>(out->data)[0] = v + 1;
    if (mode == 0) __threadfence_system();
    if (mode == 1 || mode == 3) asm volatile("fence.acq_rel.sys;" ::: "memory");
    if (mode == 2) {
      asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(&out->seq), "l"(expect) : "memory");
    } else {
      *reinterpret_cast<volatile unsigned long long*>(&out->seq) = expect;
    }
  }
}

__global__ void costs(unsigned long long* res, unsigned long long* gmem) {
  __shared__ unsigned long long sh;
  const int N = 1000;
  unsigned long long t0, t1, acc = 0;
  t0 = gt();
  for (int i = 0; i < N; ++i) acc += gt();
  t1 = gt();
  res[0] = (t1 - t0) / N;  // globaltimer read
  t0 = gt();
  for (int i = 0; i < N; ++i) asm volatile("fence.acq_rel.sys;" ::: "memory");
  t1 = gt();
  res[1] = (t1 - t0) / N;  // fence.acq_rel.sys, nothing outstanding
  t0 = gt();
  for (int i = 0; i < N; ++i) __threadfence();
  t1 = gt();
  res[2] = (t1 - t0) / N;  // fence gpu
  t0 = gt();
  for (int i = 0; i < 100; ++i) __nanosleep(32);
  t1 = gt();
  res[3] = (t1 - t0) / 100;  // nanosleep(32)
  t0 = gt();
  for (int i = 0; i < 100; ++i) __nanosleep(200);
  t1 = gt();
  res[4] = (t1 - t0) / 100;  // nanosleep(200)
  sh = 0;
  t0 = gt();
  for (int i = 0; i < N; ++i) atomicCAS(&sh, (unsigned long long)i, (unsigned long long)i + 1);
  t1 = gt();
  res[5] = (t1 - t0) / N;  // shared CAS (dependent chain)
  t0 = gt();
  for (int i = 0; i < N; ++i) atomicCAS(gmem, (unsigned long long)i, (unsigned long long)i + 1);
  t1 = gt();
  res[6] = (t1 - t0) / N;  // global CAS
  t0 = gt();
  unsigned long long x = 0;
  for (int i = 0; i < N; ++i) x = *reinterpret_cast<volatile unsigned long long*>(gmem + 16 + (x & 1));
  t1 = gt();
  res[7] = (t1 - t0) / N;  // dependent L2 load
  res[8] = acc + x;
}

int main() {
  Line *in, *out;
  CK(cudaHostAlloc(&in, 4 * sizeof(Line), cudaHostAllocMapped));
  CK(cudaHostAlloc(&out, 4 * sizeof(Line), cudaHostAllocMapped));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const char* names[] = {"volatile poll + threadfence_system", "relaxed poll + fence.acq_rel.sys x2",
                         "ld.acquire.sys poll + st.release.sys", "index + payload lines, fences x2"};
  for (int mode = 0; mode < 4; ++mode) {
    memset(in, 0, 4 * sizeof(Line));
    memset(out, 0, 4 * sizeof(Line));
    const int n = 20000;
    pingpong<<<1, 1, 0, s>>>(in, out, n, mode, nullptr);
    std::vector<double> us;
    for (int i = 1; i <= n; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      in->data[0] = i;
      in[1].data[0] = i;
      std::atomic_thread_fence(std::memory_order_release);
      reinterpret_cast<std::atomic<unsigned long long>*>(&in->seq)->store(i, std::memory_order_release);
      while (reinterpret_cast<std::atomic<unsigned long long>*>(&out->seq)->load(std::memory_order_acquire) !=
             static_cast<unsigned long long>(i)) {
      }
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    CK(cudaStreamSynchronize(s));
    std::sort(us.begin() + 1000, us.end());
    std::printf("ping-pong %-40s p50 %.2f us  p99 %.2f us\n", names[mode], us[1000 + (n - 1000) / 2],
                us[1000 + (n - 1000) * 99 / 100]);
  }
  unsigned long long *res, *gmem;
  CK(cudaHostAlloc(&res, 16 * 8, cudaHostAllocMapped));
  CK(cudaMalloc(&gmem, 4096));
  CK(cudaMemset(gmem, 0, 4096));
  costs<<<1, 1, 0, s>>>(res, gmem);
  CK(cudaStreamSynchronize(s));
  const char* cn[] = {"globaltimer read", "fence.acq_rel.sys (idle)", "__threadfence", "__nanosleep(32)",
                      "__nanosleep(200)", "shared CAS", "global CAS", "dependent L2 load"};
  for (int i = 0; i < 8; ++i) std::printf("device cost %-28s %llu ns\n", cn[i], res[i]);
  return 0;
}
