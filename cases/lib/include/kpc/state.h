// The process-lifecycle state a probe can record about itself.
//
// Signal masks and dispositions come from /proc/thread-self/status, i.e.
// the kernel's view, not glibc's (glibc hides its signals 32 and 33).
//
// record_state("exec", "blocked,ignored,disp:SIGUSR1") records
//   exec.blocked, exec.ignored, exec.disp.sigusr1
// Property names (also the key suffixes):
//   blocked ignored caught pending shared_pending   signal sets
//   altstack            "disabled" | "enabled"
//   pdeathsig           signal set of at most one signal
//   subreaper           bool (PR_GET_CHILD_SUBREAPER)
//   itimer_real itimer_virtual itimer_prof   bool: armed
//   posix_timers        int: POSIX timers this process owns
//   exit_signal         signal set of at most one signal (stat field 38)
//   pgrp_leader session_leader has_ctty no_new_privs   bool
//   fds                 open fds above 2, except the observation fd: "none" or "3,7"
//   threads             int: threads in this process
//   euid_is_root        bool
//   tid_is_pid          bool: the calling thread is the thread-group leader
//   disp:SIG            "default" | "ignore" | "handler"
//   flags:SIG           sa_flags names: "SA_RESTART|SA_SIGINFO" or "none"
#pragma once

#include <string>
#include <string_view>

#include "kpc/proc.h"

namespace kpc {

// Raises broken() for an unknown property name.
void record_state(std::string_view prefix, std::string_view properties);

// Building blocks, exposed for probes that need one value.
ProcStatus self_status();             // /proc/thread-self/status
std::string disposition_of(int sig);  // "default" | "ignore" | "handler"
std::string sa_flags_of(int sig);
std::string open_fds_above_stdio();
// Dequeue (sigtimedwait, no wait) every pending instance of the given
// signals, so that unblocking them later delivers nothing.
void consume_pending(SigSet signals);

}  // namespace kpc
