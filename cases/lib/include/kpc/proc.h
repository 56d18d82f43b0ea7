// Parsers for /proc/PID/status, /proc/PID/stat and /proc/PID/mountinfo.
//
// Parsing is separate from reading so the unit tests can feed captured text.
// A field the kernel does not print (older kernels lack NSpid, Seccomp, ...)
// stays at its default; the `has_*` flags tell which were present.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kpc/signals.h"

namespace kpc {

struct ProcStatus {
  std::string name;
  char state = '?';        // first letter of "State:", e.g. 'S', 'D', 'Z'
  std::string state_text;  // e.g. "S (sleeping)"
  pid_t tgid = -1, pid = -1, ppid = -1, tracer_pid = -1;
  std::vector<pid_t> nspid;  // outermost first; empty when the kernel lacks NSpid
  int threads = -1;
  SigSet sig_pnd, shd_pnd, sig_blk, sig_ign, sig_cgt;
  bool has_signals = false;
  uint64_t voluntary_ctxt_switches = 0, nonvoluntary_ctxt_switches = 0;
  bool has_ctxt_switches = false;
  std::optional<int> no_new_privs;
};

std::optional<ProcStatus> parse_status(std::string_view text);

struct ProcStat {
  pid_t pid = -1;
  std::string comm;
  char state = '?';
  pid_t ppid = -1, pgrp = -1, session = -1;
  int tty_nr = 0;
  unsigned long flags = 0;  // PF_* flags, e.g. PF_EXITING = 0x4
  int exit_signal = -1;     // field 38
  unsigned long long start_time = 0;
};

std::optional<ProcStat> parse_stat(std::string_view text);

inline constexpr unsigned long kPfExiting = 0x00000004;

struct MountInfo {
  int mount_id = -1, parent_id = -1;
  unsigned major = 0, minor = 0;
  std::string root, mount_point, fs_type, source, super_options;
};

std::vector<MountInfo> parse_mountinfo(std::string_view text);
// Some entry of this mountinfo text is mounted on "/". In a chroot whose
// directory is not itself a mount point (a plain chroot, sbuild's and
// schroot's directory chroots) none is: mountinfo lists only what lies
// under the process's root, and mount(2) on "/" is EINVAL.
bool root_is_mount_point(std::string_view mountinfo_text);

// unshare(CLONE_NEWNS), then every mount private (MS_REC | MS_PRIVATE on
// "/"), so that nothing the case mounts propagates out. The case skips
// where this cannot be done, saying why: no CAP_SYS_ADMIN, or "/" not a
// mount point (a chroot); any other failure makes the probe broken.
void enter_private_mount_namespace();
// Skips, with the reason enter_private_mount_namespace gives, where "/" is
// not a mount point (a chroot): for a case that makes its mounts private
// later, in a child (a new PID namespace's init mounting its own /proc).
void skip_unless_root_is_mount_point();

// Readers. `tid` < 0 reads /proc/PID/..., else /proc/PID/task/TID/...
std::optional<std::string> read_text(const std::string& path);
std::optional<ProcStatus> read_status(pid_t pid, pid_t tid = -1);
std::optional<ProcStat> read_stat(pid_t pid, pid_t tid = -1);
std::vector<pid_t> list_tasks(pid_t pid);  // threads of a process
// The calling thread's status through /proc/thread-self: right even inside
// a PID namespace whose /proc is still the outer one (where getpid() would
// name a different process).
std::optional<ProcStatus> read_self_status();
// The caller's PID as the mounted /proc numbers it (from read_self_status):
// inside a probe-made PID namespace, the number the probe outside can use.
pid_t pid_in_mounted_proc();
// kill(pid, 0) says ESRCH: no process (or zombie) has this PID.
bool pid_gone(pid_t pid);
// Writes /proc/sys/kernel/ns_last_pid of the caller's PID namespace: the
// next process created there gets `last + 1` if it is free (how CRIU and
// LTP recycle a PID on purpose). Skips the probe where the file is missing
// (no CONFIG_CHECKPOINT_RESTORE) or the write is refused (EPERM).
void set_ns_last_pid(long last);
// Poll /proc/PID/stat (1 ms steps) until the state letter is `want` or
// timeout_ms passes; returns the last state seen ('-' when PID is gone).
char wait_for_state(pid_t pid, char want, int timeout_ms = 2000);
std::vector<pid_t> list_children(pid_t pid);  // union over its threads' children files

}  // namespace kpc
