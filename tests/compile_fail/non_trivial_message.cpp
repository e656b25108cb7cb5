#include <ringkernel/message.hpp>
#include <string>
struct HoldsString {
  std::string s;  // not trivially copyable: cannot cross a queue
};
RK_MESSAGE(HoldsString, "cf.HoldsString", s);
int main() {}
