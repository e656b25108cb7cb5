#include <ringkernel/message.hpp>
struct Padded {
  char c;
  double d;  // 7 bytes of padding before this field
};
RK_MESSAGE(Padded, "cf.Padded", c, d);
int main() {}
