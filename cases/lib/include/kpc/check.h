// One-line syscall assertions for the probe's own setup.
//
//   int fd = KPC_SYS(open(path, O_RDONLY));   // -1 => verdict error, with errno
//   KPC_CHECK(pid == 1);                       // false => verdict error
//   auto r = KPC_CALL(setns(fd, 0));           // keep rc and errno to observe them
//
// KPC_SYS and KPC_CHECK are for steps that must work for the case to mean
// anything. The behaviour under test is observed, never asserted here: the
// expected tables decide.
#pragma once

#include <errno.h>

#include <string>

namespace kpc {

struct CallResult {
  long rc;
  int err;  // errno when rc == -1, else 0
  bool ok() const { return rc != -1; }
};

namespace detail {
[[noreturn]] void sys_failed(const char* expr, const char* file, int line, int err);
[[noreturn]] void check_failed(const char* expr, const char* file, int line, const std::string& extra);
}  // namespace detail

}  // namespace kpc

#define KPC_SYS(expr)                                                               \
  ({                                                                                \
    auto kpc_rc_ = (expr);                                                          \
    if (kpc_rc_ == -1) ::kpc::detail::sys_failed(#expr, __FILE__, __LINE__, errno); \
    kpc_rc_;                                                                        \
  })

// For calls that return an error number instead of setting errno
// (pthread_*, posix_spawn*).
#define KPC_ERRNUM(expr)                                                               \
  do {                                                                                 \
    int kpc_err_ = (expr);                                                             \
    if (kpc_err_ != 0) ::kpc::detail::sys_failed(#expr, __FILE__, __LINE__, kpc_err_); \
  } while (0)

#define KPC_CALL(expr)                                     \
  ({                                                       \
    errno = 0;                                             \
    long kpc_rc_ = static_cast<long>(expr);                \
    ::kpc::CallResult{kpc_rc_, kpc_rc_ == -1 ? errno : 0}; \
  })

#define KPC_CHECK(cond)                                                      \
  do {                                                                       \
    if (!(cond)) ::kpc::detail::check_failed(#cond, __FILE__, __LINE__, ""); \
  } while (0)

#define KPC_CHECK_MSG(cond, msg)                                                \
  do {                                                                          \
    if (!(cond)) ::kpc::detail::check_failed(#cond, __FILE__, __LINE__, (msg)); \
  } while (0)
