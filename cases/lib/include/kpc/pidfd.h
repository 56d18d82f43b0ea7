// The raw pidfd and clone3 ABI, for probes that must run on kernels older
// and newer than the headers they were built with: system call numbers
// (x86_64 and the generic table agree for these), flags and struct
// pidfd_info, none taken from <linux/pidfd.h> (Debian 12's lacks most).
#pragma once

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "kpc/check.h"
#include "kpc/raii.h"
#include "kpc/record.h"

namespace kpc::pidfd {

constexpr long kSysSendSignal = 424, kSysOpen = 434, kSysClone3 = 435, kSysGetfd = 438, kSysProcessMrelease = 448;
constexpr int kPPidfd = 3;                                     // waitid idtype, 5.4
constexpr unsigned kThread = O_EXCL, kNonblock = O_NONBLOCK;   // pidfd_open flags
constexpr unsigned kSignalThread = 1, kSignalThreadGroup = 2,  // pidfd_send_signal flags, 6.9
    kSignalProcessGroup = 4;
constexpr uint64_t kClonePidfd = 0x1000;
// clone3 flags of Linux 7.1 (include/uapi/linux/sched.h).
constexpr uint64_t kCloneAutoreap = 1ULL << 34, kCloneNnp = 1ULL << 35, kClonePidfdAutokill = 1ULL << 36;

// struct pidfd_info's first fields (include/uapi/linux/pidfd.h, 6.13+).
struct Info {
  uint64_t mask;
  uint64_t cgroupid;
  uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
  int32_t exit_code;  // a wait status
  uint32_t coredump_mask, spare1;
};
constexpr uint64_t kInfoExit = 1u << 3;  // PIDFD_INFO_EXIT, 6.15
inline const unsigned long kGetInfo = _IOWR(0xFF, 11, Info);

// pidfd_open(pid, flags) as an owned descriptor. Skips the probe where the
// kernel has no pidfd_open (ENOSYS, before 5.3); any other failure is a
// broken probe.
inline Fd open_or_skip(pid_t pid, unsigned flags = 0) {
  long fd = syscall(kSysOpen, pid, flags);
  if (fd < 0 && errno == ENOSYS) skip("no pidfd_open (Linux 5.3)");
  return Fd(static_cast<int>(KPC_SYS(fd)));
}

// "ok", or the errno name; call it on a raw call's return value at once.
inline std::string result(long rc) { return rc >= 0 ? std::string("ok") : errno_name(errno); }

}  // namespace kpc::pidfd
