// GLSL mirrors of the message and state types in tests/backend/test_kernels.hpp. Each
// kernel declares the ones it uses with RK_MESSAGE(T, index): index 0 is its request, 1 its
// response, 2.. the extra types RK_VULKAN_KERNEL lists (tests/backend/test_kernels_vulkan.cpp).
struct Item {
  uint64_t seq;
  int64_t value;
};
struct Reply {
  uint64_t seq;
  int64_t value;
  uint thread;
  uint source;
  uint64_t aux;
};
struct Other {
  uint64_t x;
};
struct Big {
  uint words[1024];  // uint8_t bytes[4096], four to a word (little-endian)
};
struct CounterState {
  int64_t total;
  uint64_t messages;
};
struct TableRead {
  uint64_t table;  // device address of an int64 table (GpuBuffer::device_ptr)
  uint index;
  uint reserved;
};
