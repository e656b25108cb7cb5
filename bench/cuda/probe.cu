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
// mode 4: as mode 2, each poll also loads (relaxed, issued first) a word on another line
// mode 5: as mode 4 with that word on the polled word's line
__global__ void pingpong(Line* in, Line* out, int n, int mode, unsigned long long* stop) {
  unsigned long long expect = 1, extra = 0;
  for (int i = 0; i < n; ++i, ++expect) {
    unsigned long long s;
    for (;;) {
      if (mode >= 4) {
        const unsigned long long* w = mode == 4 ? &in[2].seq : &in->data[1];
        unsigned long long e;
        asm volatile("ld.relaxed.sys.global.u64 %0, [%1];" : "=l"(e) : "l"(w) : "memory");
        asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(s) : "l"(&in->seq) : "memory");
        extra += e;
      } else if (mode == 2) {
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
    if (mode == 2 || mode >= 4) {
      reinterpret_cast<volatile unsigned long long*>(out->data)[1] = extra;
      asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(&out->seq), "l"(expect) : "memory");
    } else {
      *reinterpret_cast<volatile unsigned long long*>(&out->seq) = expect;
    }
  }
}

/// Several poller warps (lane 0 of each, start times staggered by 300 ns) watch the host's
/// sequence word: all the same word (mirrored = 0) or one copy each on its own 128-byte line
/// (mirrored = 1). The first to see a new value claims it in shared memory and replies.
/// Shows whether concurrent polls shorten the time to notice a host write, or whether the
/// GPU merges reads of one line that are in flight together.
__global__ void pingpong_multi(const Line* in, Line* out, unsigned long long n, int mirrored, int relaxed) {
  __shared__ unsigned long long done;
  if (threadIdx.x == 0) done = 0;
  __syncthreads();
  if (threadIdx.x % 32 != 0) return;
  const int j = threadIdx.x / 32;
  __nanosleep(j * 300);
  const Line* src = mirrored ? in + j : in;
  for (;;) {
    unsigned long long s;
    if (relaxed)
      asm volatile("ld.relaxed.sys.global.u64 %0, [%1];" : "=l"(s) : "l"(&src->seq) : "memory");
    else
      asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(s) : "l"(&src->seq) : "memory");
    const unsigned long long d = atomicAdd(&done, 0ull);
    if (d >= n) break;
    if (s > d && atomicCAS(&done, d, s) == d) {
      if (relaxed) asm volatile("fence.acq_rel.sys;" ::: "memory");
      const unsigned long long v = reinterpret_cast<const volatile unsigned long long*>(src->data)[0];
      reinterpret_cast<volatile unsigned long long*>(out->data)[0] = v + 1;
      asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(&out->seq), "l"(s) : "memory");
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
  // an 80-byte slot written with 16-byte stores, then a release store of a tail (gpu scope)
  t0 = gt();
  for (int i = 0; i < N; ++i) {
    uint4* slot = reinterpret_cast<uint4*>(gmem + 64 + (i & 7) * 16);
    for (int k = 0; k < 5; ++k) slot[k] = make_uint4(i, k, 0, 0);
    asm volatile("st.release.gpu.u64 [%0], %1;" ::"l"(gmem + 32), "l"((unsigned long long)i) : "memory");
  }
  t1 = gt();
  res[8] = (t1 - t0) / N;
  t0 = gt();
  for (int i = 0; i < N; ++i) {
    unsigned long long v;
    asm volatile("ld.acquire.gpu.u64 %0, [%1];" : "=l"(v) : "l"(gmem + 16 + (x & 1)) : "memory");
    x += v;
  }
  t1 = gt();
  res[9] = (t1 - t0) / N;  // ld.acquire.gpu, dependent
  t0 = gt();
  for (int i = 0; i < N; ++i) {
    x += atomicAdd(&sh, 0ull);
    __threadfence_block();
  }
  t1 = gt();
  res[10] = (t1 - t0) / N;  // CTA-scope acquire as ringkernel does it
  t0 = gt();
  for (int i = 0; i < N; ++i) x += __match_any_sync(1u, (unsigned long long)gmem);
  t1 = gt();
  res[11] = (t1 - t0) / N;  // __match_any_sync
  t0 = gt();
  for (int i = 0; i < N; ++i) {
    x += atomicAdd(&sh, 0ull);
    asm volatile("fence.acq_rel.cta;" ::: "memory");
  }
  t1 = gt();
  res[12] = (t1 - t0) / N;  // CTA acquire with fence.acq_rel.cta
  res[15] = acc + x;
}

__device__ inline uint4 vload4(const uint4* p) {
  uint4 v;
  asm volatile("ld.volatile.global.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
  return v;
}
__device__ inline void vstore4(uint4* p, uint4 v) {
  asm volatile("st.volatile.global.v4.u32 [%0], {%1,%2,%3,%4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}

/// Waits for the peer's message `i` and reads it (see k2k_floor); returns a checksum word.
__device__ unsigned long long receive_message(int mode, const unsigned long long* tail_in, const uint4* slot_in, int i) {
  unsigned long long sum = 0;
  if (mode != 1) {
    unsigned long long v;
    do asm volatile("ld.acquire.gpu.u64 %0, [%1];" : "=l"(v) : "l"(tail_in) : "memory");
    while (v != (unsigned long long)i);
    for (int k = 0; k < 5; ++k) sum += vload4(slot_in + k).x;
  } else {
    uint4 v;
    do v = vload4(slot_in + 4);
    while (v.w != (unsigned)i);
    __threadfence();
    for (int k = 0; k < 4; ++k) sum += vload4(slot_in + k).x;
  }
  return sum;
}

/// Two blocks of one kernel exchange an 80-byte message through device memory `n` times
/// each way: mode 0 tail word + slot (release/acquire), mode 1 a sequence number in the
/// slot's last 16 bytes (one 16-byte store after a fence; the reader polls that word);
/// modes 2 and 3 as mode 0 with a CAS claim first (on the tail's line / on its own line).
__global__ void k2k_floor(unsigned long long* mem, int n, int mode, unsigned long long* out) {
  const int me = blockIdx.x;
  unsigned long long* tail_out = mem + (me ? 16 : 0);
  unsigned long long* tail_in = mem + (me ? 0 : 16);
  uint4* slot_out = reinterpret_cast<uint4*>(mem + 64 + (me ? 32 : 0));
  const uint4* slot_in = reinterpret_cast<const uint4*>(mem + 64 + (me ? 0 : 32));
  if (threadIdx.x != 0) return;
  const unsigned long long t0 = gt();
  unsigned long long sum = 0, t_cas = 0;
  for (int i = 1; i <= n; ++i) {
    if (me == 1) sum += receive_message(mode, tail_in, slot_in, i);  // block 1 answers block 0
    if (mode >= 2) {  // claim a position first, as a multi-producer ring does
      unsigned long long* claim = mode == 2 ? tail_out + 3 : mem + 512 + (me ? 16 : 0);
      t_cas -= gt();
      sum += atomicCAS(claim, (unsigned long long)(i - 1), (unsigned long long)i);
      t_cas += gt();
    }
    for (int k = 0; k < 4; ++k) slot_out[k] = make_uint4(i, k, 0, 0);
    if (mode != 1) {
      slot_out[4] = make_uint4(i, 4, 0, 0);
      asm volatile("st.release.gpu.u64 [%0], %1;" ::"l"(tail_out), "l"((unsigned long long)i) : "memory");
    } else {
      __threadfence();
      vstore4(&slot_out[4], make_uint4(i, 4, 0, (unsigned)i));
    }
    if (me == 0) sum += receive_message(mode, tail_in, slot_in, i);
  }
  if (me == 0) {
    out[mode] = (gt() - t0) / (2ull * n);
    out[4 + mode] = t_cas / n;
  }
  out[8 + me] = sum;
}

/// One side of a ping-pong between two GPUs: each polls a word in its own memory and writes
/// the peer's word across the peer link (P2P). The first side times 2n hops. Gives up after
/// ~2^26 empty polls (out[0] = 0): a link that never delivers does not hang the probe.
__global__ void p2p_side(unsigned long long* local, unsigned long long* remote, int n, int first,
                         unsigned long long* out) {
  const unsigned long long t0 = gt();
  for (unsigned long long i = 1; i <= static_cast<unsigned long long>(n); ++i) {
    if (!first || i > 1) {
      const unsigned long long want = first ? i - 1 : i;
      unsigned long long v = 0, spins = 0;
      do {
        asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(local) : "memory");
        if (++spins > (1ull << 26)) {
          if (first) out[0] = 0;
          return;
        }
      } while (v < want);
    }
    asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(remote), "l"(i) : "memory");
  }
  if (first) out[0] = (gt() - t0) / (2ull * n - 1);
}

int main() {
  Line *in, *out;
  CK(cudaHostAlloc(&in, 4 * sizeof(Line), cudaHostAllocMapped));
  CK(cudaHostAlloc(&out, 4 * sizeof(Line), cudaHostAllocMapped));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const char* names[] = {"volatile poll + threadfence_system", "relaxed poll + fence.acq_rel.sys x2",
                         "ld.acquire.sys poll + st.release.sys", "index + payload lines, fences x2",
                         "acquire poll + relaxed load, other line", "acquire poll + relaxed load, same line"};
  for (int mode = 0; mode < 6; ++mode) {
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
  {
    // Several pollers: same word vs one mirrored copy each.
    const int cfg[][3] = {{1, 0, 0}, {2, 0, 0}, {4, 0, 0}, {2, 1, 0}, {4, 1, 0}, {1, 0, 1}, {2, 1, 1}, {4, 1, 1}};
    for (const auto& c : cfg) {
      memset(in, 0, 4 * sizeof(Line));
      memset(out, 0, 4 * sizeof(Line));
      const int n = 20000;
      pingpong_multi<<<1, 32 * c[0], 0, s>>>(in, out, n, c[1], c[2]);
      std::vector<double> us;
      for (int i = 1; i <= n; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int j = 0; j < 4; ++j) in[j].data[0] = i;
        std::atomic_thread_fence(std::memory_order_release);
        for (int j = 0; j < 4; ++j)
          reinterpret_cast<std::atomic<unsigned long long>*>(&in[j].seq)->store(i, std::memory_order_release);
        while (reinterpret_cast<std::atomic<unsigned long long>*>(&out->seq)->load(std::memory_order_acquire) !=
               static_cast<unsigned long long>(i)) {
        }
        us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      }
      CK(cudaStreamSynchronize(s));
      std::sort(us.begin() + 1000, us.end());
      std::printf("ping-pong %d poller warp(s), %-25s %-8s p50 %.2f us  p99 %.2f us\n", c[0],
                  c[1] ? "one copy of the word each" : "one shared word", c[2] ? "relaxed" : "acquire",
                  us[1000 + (n - 1000) / 2],
                  us[1000 + (n - 1000) * 99 / 100]);
    }
  }
  unsigned long long *res, *gmem;
  CK(cudaHostAlloc(&res, 16 * 8, cudaHostAllocMapped));
  CK(cudaMalloc(&gmem, 4096));
  CK(cudaMemset(gmem, 0, 4096));
  costs<<<1, 1, 0, s>>>(res, gmem);
  CK(cudaStreamSynchronize(s));
  const char* cn[] = {"globaltimer read", "fence.acq_rel.sys (idle)", "__threadfence", "__nanosleep(32)",
                      "__nanosleep(200)", "shared CAS", "global CAS", "dependent L2 load",
                      "80 B slot + st.release.gpu", "ld.acquire.gpu", "CTA acquire (atomic+fence)", "__match_any_sync",
                      "CTA acquire (atomic+acq_rel)"};
  for (int i = 0; i < 13; ++i) std::printf("device cost %-28s %llu ns\n", cn[i], res[i]);
  unsigned long long* fl;
  CK(cudaMalloc(&fl, 8192));
  const char* fm[] = {"tail + slot (release/acquire)", "sequence in the slot (fence + 16 B)",
                      "CAS claim on the tail's line + tail + slot", "CAS claim on its own line + tail + slot"};
  for (int mode = 0; mode < 4; ++mode) {
    CK(cudaMemset(fl, 0, 8192));
    k2k_floor<<<2, 32, 0, s>>>(fl, 20000, mode, res);
    CK(cudaStreamSynchronize(s));
    std::printf("device hop floor, two blocks, %-44s %llu ns (CAS %llu ns)\n", fm[mode], res[mode], res[4 + mode]);
  }
  // Two GPUs: can they reach each other's memory, and what does one hop across cost?
  int gpus = 0;
  CK(cudaGetDeviceCount(&gpus));
  if (gpus < 2) {
    std::printf("p2p: one GPU here, nothing to measure\n");
    return 0;
  }
  int a01 = 0, a10 = 0;
  CK(cudaDeviceCanAccessPeer(&a01, 0, 1));
  CK(cudaDeviceCanAccessPeer(&a10, 1, 0));
  std::printf("p2p: GPU 0 -> 1 access %s, GPU 1 -> 0 access %s\n", a01 ? "yes" : "no", a10 ? "yes" : "no");
  for (int d = 0; d < 2; ++d) {
    int rank = 0, atomics = 0;
    if (cudaDeviceGetP2PAttribute(&rank, cudaDevP2PAttrPerformanceRank, d, 1 - d) == cudaSuccess &&
        cudaDeviceGetP2PAttribute(&atomics, cudaDevP2PAttrNativeAtomicSupported, d, 1 - d) == cudaSuccess)
      std::printf("p2p: GPU %d -> %d performance rank %d, native atomics %d\n", d, 1 - d, rank, atomics);
  }
  if (!a01 || !a10) return 0;
  unsigned long long* flag[2];
  cudaStream_t ps[2];
  for (int d = 0; d < 2; ++d) {
    CK(cudaSetDevice(d));
    const cudaError_t e = cudaDeviceEnablePeerAccess(1 - d, 0);
    if (e != cudaSuccess && e != cudaErrorPeerAccessAlreadyEnabled) {
      std::printf("p2p: enabling peer access from GPU %d: %s\n", d, cudaGetErrorString(e));
      return 0;
    }
    CK(cudaMalloc(&flag[d], 256));
    CK(cudaMemset(flag[d], 0, 256));
    CK(cudaStreamCreateWithFlags(&ps[d], cudaStreamNonBlocking));
    CK(cudaDeviceSynchronize());
  }
  const int n = 20000;
  CK(cudaSetDevice(1));
  p2p_side<<<1, 1, 0, ps[1]>>>(flag[1], flag[0], n, 0, res);
  CK(cudaSetDevice(0));
  p2p_side<<<1, 1, 0, ps[0]>>>(flag[0], flag[1], n, 1, res);
  CK(cudaStreamSynchronize(ps[0]));
  CK(cudaSetDevice(1));
  CK(cudaStreamSynchronize(ps[1]));
  if (res[0] == 0)
    std::printf("p2p: the ping-pong across GPUs stalled (writes across the link not seen)\n");
  else
    std::printf("p2p: one hop GPU -> GPU (poll own memory, release store to the peer's) %llu ns\n", res[0]);
  return 0;
}
