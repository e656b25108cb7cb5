// GLSL mirrors of the message and state types in examples/kernels.hpp (MessageId is its
// uint64_t value). Each kernel declares the ones it uses with RK_MESSAGE(T, index).
struct AddRequest {
  uint64_t id;
  float a;
  float b;
};
struct AddResponse {
  uint64_t id;
  float sum;
  uint reserved;
};
struct Ping {
  uint64_t seq;
  uint64_t sent_ns;
};
struct Pong {
  uint64_t seq;
  uint64_t sent_ns;
};
struct PongState {
  uint64_t pings;
};
struct Sample {
  uint64_t seq;
  double value;
};
struct Scaled {
  uint64_t seq;
  double value;
};
struct KvRequest {
  uint op;  // 0 = get, 1 = put
  uint key;
  int64_t value;
};
struct KvResponse {
  uint found;
  uint key;
  int64_t value;
};
struct KvState {
  int64_t values[64];
  uint64_t present;  // bit per key
};
