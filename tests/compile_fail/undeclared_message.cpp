#include <ringkernel/ringkernel.hpp>
struct NotDeclared {
  int x;
};
int main() {
  auto rt = ringkernel::RingKernel::builder().build().value();
  auto k = rt.launch("x").value();
  (void)k.send(NotDeclared{1});  // no RK_MESSAGE: rejected by the RingMessage concept
}
