// The caching CPU allocator: reuse, size matching, the idle limit, and LibTorch's raw interface.
#include "src/core/caching_allocator.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace distill {
namespace {

constexpr size_t kMiB = size_t(1) << 20;

class CachingAllocatorTest : public ::testing::Test {
 protected:
  // The process-wide instance, as the CLI installs it, with a 64 MiB idle limit.
  CachingCpuAllocator& allocator = install_caching_cpu_allocator(64);
  void SetUp() override { allocator.release_idle(); }
};

TEST_F(CachingAllocatorTest, FreedBlockIsReusedForTheSameSize) {
  void* first = nullptr;
  {
    c10::DataPtr block = allocator.allocate(8 * kMiB);
    first = block.get();
    static_cast<char*>(first)[0] = 1;
  }
  auto before = allocator.stats();
  EXPECT_EQ(before.idle_bytes, 8 * kMiB);
  c10::DataPtr again = allocator.allocate(8 * kMiB);
  auto after = allocator.stats();
  EXPECT_EQ(again.get(), first);
  EXPECT_EQ(after.hits, before.hits + 1);
  EXPECT_EQ(after.misses, before.misses);
  EXPECT_EQ(after.idle_bytes, 0u);
}

TEST_F(CachingAllocatorTest, BlockMuchLargerThanTheRequestIsNotUsed) {
  { c10::DataPtr big = allocator.allocate(16 * kMiB); }
  auto before = allocator.stats();
  c10::DataPtr within = allocator.allocate(15 * kMiB);  // 16 <= 15 * 9/8: reused
  EXPECT_EQ(allocator.stats().hits, before.hits + 1);
  within.clear();
  c10::DataPtr small = allocator.allocate(4 * kMiB);  // 16 > 4 * 9/8: a fresh block
  auto after = allocator.stats();
  EXPECT_EQ(after.misses, before.misses + 1);
  EXPECT_EQ(after.idle_bytes, 16 * kMiB);
}

TEST_F(CachingAllocatorTest, IdleBytesStayWithinTheLimitOldestReleasedFirst) {
  std::vector<c10::DataPtr> blocks;
  for (size_t mib : {10, 20, 30, 40}) blocks.push_back(allocator.allocate(mib * kMiB));
  for (auto& b : blocks) b.clear();  // freed in order 10, 20, 30, 40 MiB; limit 64 MiB
  auto stats = allocator.stats();
  EXPECT_LE(stats.idle_bytes, 64 * kMiB);
  EXPECT_EQ(stats.idle_bytes, 40 * kMiB);  // 10+20+30 fit, then 40 pushes out 10, 20 and 30
  EXPECT_EQ(stats.in_use_bytes, 0u);
}

TEST_F(CachingAllocatorTest, SmallRequestsBypassTheCache) {
  auto before = allocator.stats();
  { c10::DataPtr small = allocator.allocate(1000); }
  auto after = allocator.stats();
  EXPECT_EQ(after.hits + after.misses, before.hits + before.misses);
  EXPECT_EQ(after.idle_bytes, 0u);
}

TEST_F(CachingAllocatorTest, RawInterfaceRoundTripsSmallAndLarge) {
  for (size_t bytes : {size_t(64), 3 * kMiB}) {
    void* data = allocator.raw_allocate(bytes);
    ASSERT_NE(data, nullptr);
    static_cast<char*>(data)[bytes - 1] = 7;
    allocator.raw_deallocate(data);
  }
  EXPECT_EQ(allocator.stats().in_use_bytes, 0u);
}

TEST_F(CachingAllocatorTest, TensorsUseItAndComputeCorrectly) {
  auto before = allocator.stats();
  at::Tensor a = at::arange(1 << 20, at::kDouble);  // 8 MiB
  at::Tensor b = a * 2;
  EXPECT_GT(allocator.stats().misses + allocator.stats().hits, before.misses + before.hits);
  EXPECT_DOUBLE_EQ(b[12345].item<double>(), 24690.0);
  EXPECT_DOUBLE_EQ(b.sum().item<double>(), double(1 << 20) * ((1 << 20) - 1));
}

}  // namespace
}  // namespace distill
