#include <ringkernel/ringkernel.hpp>
struct Req {
  int x;
};
RK_MESSAGE(Req, "cf.Req", x);
struct NoOperator {  // has types but no call operator
  using Request = Req;
  using Response = Req;
};
RK_KERNEL("cf.bad", NoOperator);
int main() {}
