// GridPos: indexing and the three boundary rules, on the host (the kernels run in the
// backend test body: a_simulation_actor_steps_stencils_over_grids_in_device_memory).
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include <ringkernel/stencil.hpp>

using namespace ringkernel::stencil;

TEST(Stencil, neighbours_inside_a_3d_grid_and_beyond_each_boundary) {
  const Extent e{4, 3, 2};
  std::vector<int> g(e.cells());
  std::iota(g.begin(), g.end(), 0);  // cell (x, y, z) holds x + 4y + 12z
  auto at = [&](Boundary b, std::uint32_t x, std::uint32_t y, std::uint32_t z, int dx, int dy, int dz) {
    return GridPos<int>(g.data(), e, b, x, y, z).at(dx, dy, dz);
  };
  for (Boundary b : {Boundary::Fixed, Boundary::Clamp, Boundary::Periodic}) {
    const GridPos<int> p(g.data(), e, b, 1, 1, 0);
    EXPECT_EQ(p.center(), 5);
    EXPECT_EQ(p.west(), 4);
    EXPECT_EQ(p.east(), 6);
    EXPECT_EQ(p.north(), 1);
    EXPECT_EQ(p.south(), 9);
    EXPECT_EQ(p.above(), 17);
    EXPECT_EQ(at(b, 1, 1, 0, 2, 1, 1), 3 + 8 + 12);
  }
  // Beyond the edges.
  EXPECT_EQ(at(Boundary::Clamp, 0, 0, 0, -1, 0, 0), 0);
  EXPECT_EQ(at(Boundary::Clamp, 3, 2, 1, 1, 1, 1), 23);
  EXPECT_EQ(at(Boundary::Clamp, 0, 1, 0, -2, 0, -1), 4);
  EXPECT_EQ(at(Boundary::Periodic, 0, 0, 0, -1, 0, 0), 3);
  EXPECT_EQ(at(Boundary::Periodic, 0, 0, 0, 0, -1, 0), 8);
  EXPECT_EQ(at(Boundary::Periodic, 3, 2, 1, 1, 1, 1), 0);
  EXPECT_EQ(at(Boundary::Periodic, 1, 1, 0, 0, 0, -1), 17);
  EXPECT_EQ(at(Boundary::Periodic, 1, 1, 0, -5, 0, 0), 4);  // wraps more than once
  EXPECT_TRUE(on_border(e, 0, 1, 1));
  EXPECT_FALSE(on_border(Extent{4, 3, 3}, 1, 1, 1));
  EXPECT_FALSE(on_border(Extent{4, 1, 1}, 2, 0, 0));  // a line has no y or z border
}
