#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

#include <ringkernel/ringkernel.hpp>

using namespace ringkernel;

TEST(Memory, pinned_memory_is_page_aligned_zeroed_and_says_how_it_is_backed) {
  auto m = PinnedMemory::allocate(10000);
  ASSERT_TRUE(m.ok());
  EXPECT_GE(m->size(), 10000u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(m->data()) % 4096, 0u);
  for (std::size_t i = 0; i < m->size(); ++i) ASSERT_EQ(m->data()[i], std::byte{0});
  if (m->kind() == PinnedKind::Pageable) {
    EXPECT_FALSE(m->reason().empty());
  }
  PinnedMemory moved = std::move(*m);
  EXPECT_GE(moved.size(), 10000u);
  EXPECT_FALSE(PinnedMemory::allocate(0).ok());
}

TEST(Memory, the_pool_reuses_blocks_and_honours_its_bound) {
  MemoryPool pool(100, 4);
  EXPECT_EQ(pool.block_size() % 64, 0u);
  std::vector<void*> blocks;
  for (int i = 0; i < 10; ++i) blocks.push_back(pool.allocate());
  EXPECT_EQ(std::set<void*>(blocks.begin(), blocks.end()).size(), 10u);
  EXPECT_EQ(pool.in_use(), 10u);
  void* last = blocks.back();
  pool.deallocate(last);
  EXPECT_EQ(pool.allocate(), last);
  for (void* b : blocks) pool.deallocate(b);
  EXPECT_EQ(pool.in_use(), 0u);
  MemoryPool bounded(64, 4);
  bounded.set_max_blocks(2);
  EXPECT_NE(bounded.allocate(), nullptr);
  EXPECT_NE(bounded.allocate(), nullptr);
  EXPECT_EQ(bounded.allocate(), nullptr);
}

TEST(Memory, host_device_memory_copies_in_and_out_and_checks_ranges) {
  HostDeviceMemory dm;
  auto b = dm.allocate(64);
  ASSERT_TRUE(b.ok());
  std::vector<std::byte> in(64, std::byte{7}), out(64);
  ASSERT_TRUE((*b)->copy_from_host(in).ok());
  ASSERT_TRUE((*b)->copy_to_host(out).ok());
  EXPECT_EQ(out, in);
  EXPECT_FALSE((*b)->copy_from_host(in, 8).ok());
  EXPECT_EQ(dm.allocated_bytes(), 64u);
}

TEST(Memory, host_device_memory_counts_live_bytes_from_any_thread) {
  auto dm = std::make_unique<HostDeviceMemory>();
  auto a = dm->allocate(100).value();
  {
    auto b = dm->allocate(28).value();
    EXPECT_EQ(dm->allocated_bytes(), 128u);
  }
  EXPECT_EQ(dm->allocated_bytes(), 100u);  // a destroyed buffer gives its bytes back
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        auto buf = dm->allocate(64);
        ASSERT_TRUE(buf.ok());
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(dm->allocated_bytes(), 100u);
  dm.reset();  // a buffer may outlive the memory it came from
  std::vector<std::byte> out(100);
  EXPECT_TRUE(a->copy_to_host(out).ok());
}

TEST(Availability, the_cpu_is_always_there_and_metal_says_why_not) {
  EXPECT_TRUE(is_available(Backend::Cpu));
  const BackendAvailability metal = availability(Backend::Metal);
  EXPECT_FALSE(metal.available);
  EXPECT_FALSE(metal.reason.empty());
  for (const BackendAvailability& a : availability())
    if (!a.available) {
      EXPECT_FALSE(a.reason.empty()) << to_string(a.backend);
    }
  auto rt = RingKernel::builder().backend(Backend::Metal).build();
  ASSERT_FALSE(rt.ok());
  EXPECT_EQ(rt.error().code(), ErrorCode::BackendUnavailable);
}
