// CPU time the test process has used (user + system), for checks that idle kernels park.
#pragma once

#include <sys/resource.h>

namespace rktest {
inline double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}
}  // namespace rktest
