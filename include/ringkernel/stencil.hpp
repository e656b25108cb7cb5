// ringkernel/stencil.hpp — stencil computations inside an actor, single source.
//
// A stencil is a function of a cell and its neighbours, RK_HOST_DEVICE like every
// handler: the same code runs on the CPU backend and, compiled by nvcc, on CUDA. There is
// nothing to transpile. A handler runs `steps` steps over a grid kept in device memory (two
// GpuBuffers, double-buffered) with all of its block's threads, a barrier between steps, so
// a simulation lives in a persistent actor: launched once, stepped by messages, its grid
// never leaving the device.
//
//   struct Heat {
//     float alpha;
//     RK_HOST_DEVICE float operator()(const stencil::GridPos<float>& p) const {
//       return p.center() + alpha * (p.north() + p.south() + p.east() + p.west() - 4 * p.center());
//     }
//   };
//   // in the handler (actor mode; every thread of the block calls it):
//   float* now = stencil::run(ctx, a, b, {nx, ny}, stencil::Boundary::Fixed, steps, Heat{0.1f});
//
// Cells are stored x fastest, then y, then z. Threads take cells i, i + block_dim(), ...;
// ctx.sync_threads() separates steps. Needs actor mode (the block's threads cooperate on one
// message); on CUDA a block larger than a warp is a multiple of 32 threads, as always.
#pragma once

#include <cstdint>

#include "ringkernel/context.hpp"

namespace ringkernel::stencil {

/// What a neighbour beyond the grid's edge is.
enum class Boundary : std::uint32_t {
  Fixed,     ///< border cells are not computed: they keep their values (Dirichlet)
  Clamp,     ///< reads beyond the edge give the edge cell (zero gradient)
  Periodic,  ///< the grid wraps around (a torus)
};

/// Grid dimensions (ny = nz = 1: a line; nz = 1: a plane).
struct Extent {
  std::uint32_t nx = 1, ny = 1, nz = 1;
  RK_HOST_DEVICE std::uint64_t cells() const noexcept { return std::uint64_t{nx} * ny * nz; }
};

/// A cell of the grid being read, and its neighbours (per the boundary rule).
template <class T>
class GridPos {
 public:
  RK_HOST_DEVICE GridPos(const T* grid, Extent e, Boundary b, std::uint32_t x, std::uint32_t y, std::uint32_t z) noexcept
      : g_(grid), e_(e), b_(b), x_(x), y_(y), z_(z), i_(index(x, y, z)) {}
  RK_HOST_DEVICE std::uint32_t x() const noexcept { return x_; }
  RK_HOST_DEVICE std::uint32_t y() const noexcept { return y_; }
  RK_HOST_DEVICE std::uint32_t z() const noexcept { return z_; }
  RK_HOST_DEVICE Extent extent() const noexcept { return e_; }
  RK_HOST_DEVICE T center() const noexcept { return g_[i_]; }
  /// The cell at offset (dx, dy, dz). Inside the grid (the common case) this is the
  /// cell's index plus a fixed offset; only a neighbour beyond an edge goes through the
  /// boundary rule.
  RK_HOST_DEVICE T at(int dx, int dy, int dz = 0) const noexcept {
    const std::int64_t x = std::int64_t{x_} + dx, y = std::int64_t{y_} + dy, z = std::int64_t{z_} + dz;
    if (inside(x, e_.nx) && inside(y, e_.ny) && inside(z, e_.nz))
      return g_[static_cast<std::int64_t>(i_) + (std::int64_t{dz} * e_.ny + dy) * static_cast<std::int64_t>(e_.nx) + dx];
    return g_[index(wrap(x, e_.nx), wrap(y, e_.ny), wrap(z, e_.nz))];
  }
  RK_HOST_DEVICE T west() const noexcept { return at(-1, 0); }
  RK_HOST_DEVICE T east() const noexcept { return at(1, 0); }
  RK_HOST_DEVICE T north() const noexcept { return at(0, -1); }
  RK_HOST_DEVICE T south() const noexcept { return at(0, 1); }
  RK_HOST_DEVICE T below() const noexcept { return at(0, 0, -1); }
  RK_HOST_DEVICE T above() const noexcept { return at(0, 0, 1); }

 private:
  RK_HOST_DEVICE std::uint64_t index(std::uint32_t x, std::uint32_t y, std::uint32_t z) const noexcept {
    return (std::uint64_t{z} * e_.ny + y) * e_.nx + x;
  }
  RK_HOST_DEVICE static bool inside(std::int64_t v, std::uint32_t n) noexcept { return static_cast<std::uint64_t>(v) < n; }
  RK_HOST_DEVICE std::uint32_t wrap(std::int64_t v, std::uint32_t n) const noexcept {
    if (inside(v, n)) return static_cast<std::uint32_t>(v);
    if (b_ == Boundary::Periodic) {
      const std::int64_t m = v % static_cast<std::int64_t>(n);
      return static_cast<std::uint32_t>(m < 0 ? m + n : m);
    }
    return v < 0 ? 0u : n - 1;  // Clamp (and Fixed, whose border cells are never computed)
  }
  const T* g_;
  Extent e_;
  Boundary b_;
  std::uint32_t x_, y_, z_;
  std::uint64_t i_;  ///< index of (x, y, z)
};

/// Whether (x, y, z) lies on the grid's border (in the dimensions larger than 1).
RK_HOST_DEVICE inline bool on_border(Extent e, std::uint32_t x, std::uint32_t y, std::uint32_t z) noexcept {
  return (e.nx > 1 && (x == 0 || x == e.nx - 1)) || (e.ny > 1 && (y == 0 || y == e.ny - 1)) ||
         (e.nz > 1 && (z == 0 || z == e.nz - 1));
}

/// Runs `steps` steps of `fn` from `a` (the current state) using `b` as the other buffer,
/// with every thread of the block (each must call it). Returns the buffer that holds the
/// result: `a` after an even number of steps, `b` after an odd one. `T` is a cell type that
/// can be default-constructed and copied (a number, a small struct).
///
/// Thread t takes cells t, t + block_dim(), ... It walks them by coordinates: the stride
/// is split into (sx, sy, sz) once, so the next cell costs additions and two carries
/// instead of three divisions. It computes kBatch cells before it stores them: `a` and `b`
/// are distinct buffers, so their loads can be in flight together (a store between them
/// would make the compiler wait for each load, since it cannot know the buffers apart).
template <class T, class F>
RK_HOST_DEVICE T* run(RingContext& ctx, T* a, T* b, Extent e, Boundary boundary, std::uint32_t steps, const F& fn) {
  constexpr std::uint32_t kBatch = 4;
  const std::uint64_t threads = ctx.block_dim();
  const std::uint64_t plane = std::uint64_t{e.nx} * e.ny;
  const std::uint64_t t = ctx.thread_id();
  const auto x0 = static_cast<std::uint32_t>(t % e.nx), y0 = static_cast<std::uint32_t>((t / e.nx) % e.ny);
  const std::uint64_t z0 = t / plane;  // >= nz: this thread has no cell
  const auto sx = static_cast<std::uint32_t>(threads % e.nx), sy = static_cast<std::uint32_t>((threads / e.nx) % e.ny);
  const std::uint64_t sz = threads / plane;
  const bool fixed = boundary == Boundary::Fixed;
  T* in = a;
  T* out = b;
  for (std::uint32_t s = 0; s < steps; ++s) {
    std::uint32_t x = x0, y = y0;
    std::uint64_t z = z0, i = t;
    while (z < e.nz) {
      T v[kBatch];
      const std::uint64_t first = i;  // cell j of the batch is first + j * threads
      std::uint32_t k = 0;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
      for (std::uint32_t j = 0; j < kBatch; ++j) {  // unrolled: v stays in registers
        if (z >= e.nz) break;
        const auto zz = static_cast<std::uint32_t>(z);
        v[j] = fixed && on_border(e, x, y, zz) ? in[i] : fn(GridPos<T>(in, e, boundary, x, y, zz));
        k = j + 1;
        i += threads;
        x += sx;  // x < nx and sx < nx: at most one carry
        if (x >= e.nx) {
          x -= e.nx;
          ++y;
        }
        y += sy;  // y <= ny and sy < ny: at most one carry
        if (y >= e.ny) {
          y -= e.ny;
          ++z;
        }
        z += sz;
      }
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
      for (std::uint32_t j = 0; j < kBatch; ++j)
        if (j < k) out[first + j * threads] = v[j];
    }
    ctx.sync_threads();  // every cell of this step written before any is read by the next
    T* tmp = in;
    in = out;
    out = tmp;
  }
  return in;
}

}  // namespace ringkernel::stencil
