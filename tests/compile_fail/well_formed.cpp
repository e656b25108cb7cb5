// Control case: the same constructs, correct, must compile.
#include <ringkernel/ringkernel.hpp>
struct Req {
  int x;
  float y;
};
RK_MESSAGE(Req, "cf.Req", x, y);
struct Good {
  using Request = Req;
  using Response = Req;
  RK_HOST_DEVICE bool operator()(ringkernel::RingContext&, ringkernel::NoState&, const Req& in, Req& out) const {
    out = in;
    return true;
  }
};
RK_KERNEL("cf.good", Good);
int main() {}
