// Observations: what a probe saw, sent to the launcher as JSON lines.
//
// The channel is the fd named by $KPC_OBS_FD (the launcher passes 3), never
// stdout. Without it (a probe started by hand) records are printed to
// stderr in a readable form, so students can run a probe directly.
//
// Every record is one write() of at most PIPE_BUF bytes, so records from a
// probe and its children never interleave. Nothing is buffered, so a forked
// child can record and _exit() safely.
#pragma once

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>

#include "kpc/signals.h"

namespace kpc {

struct Errno {
  int value;
};

// "ENOMEM" for 12; "E<n>" for numbers without a name.
std::string errno_name(int err);
// The symbol of err from kpc's own table of Linux's errnos ("ENOENT"), or
// nullptr: errno_name's source where glibc has no strerrorname_np (< 2.32,
// Debian 11). Its unit test holds it to strerrorname_np where both exist.
const char* errno_symbol(int err);

// Values a probe can observe. Each carries its type to the evaluator, which
// compares it with the expected table in that type's canonical form.
void observe(std::string_view key, bool value);
void observe(std::string_view key, int64_t value);
inline void observe(std::string_view key, int value) { observe(key, static_cast<int64_t>(value)); }
void observe(std::string_view key, std::string_view value);
inline void observe(std::string_view key, const char* value) { observe(key, std::string_view(value)); }
inline void observe(std::string_view key, const std::string& value) { observe(key, std::string_view(value)); }
void observe(std::string_view key, Errno value);
void observe(std::string_view key, SigSet value);

// The outcome of a call as one observation: "ok" or the errno name.
// `rc` and `err` must be taken in that order: pass a call's result here only
// through KPC_OBSERVE_CALL (function arguments are evaluated in no fixed
// order, so `observe_result(k, open(...), errno)` may read errno first).
// rc == -1 with err == 0 is that mistake and makes the probe broken.
void observe_result(std::string_view key, long rc, int err);

// KPC_OBSERVE_CALL("after.open", open(path, O_RDONLY)): runs the call, then
// reads errno, then records "ok" or the errno name.
#define KPC_OBSERVE_CALL(key, call)                  \
  do {                                               \
    errno = 0;                                       \
    long kpc_rc_ = static_cast<long>(call);          \
    int kpc_err_ = errno;                            \
    ::kpc::observe_result((key), kpc_rc_, kpc_err_); \
  } while (0)

// Informational values: reported alongside the verdict, never compared
// (PIDs, timings, kernel stacks).
void note(std::string_view key, std::string_view value);
void note(std::string_view key, int64_t value);

// A named instant on CLOCK_MONOTONIC, for benchmarks ("deadlock-armed").
void mark(std::string_view name);

// Tell the launcher about a FUSE connection this probe created, so recovery
// can abort it even after the mounting process is gone.
// `request_timeout_s` > 0: the kernel fails the connection's requests
// after that long (FUSE request timeouts, 6.14+), so a waiter on it is not
// stuck for good and the launcher must not call it a hang before then.
void announce_fuse_connection(unsigned long conn, int request_timeout_s = 0);

// Runs `fn` when this process ends through skip() or broken(), which
// _exit() without destructors: for state outside the process a probe must
// not leave behind (kpc/cgroup2.h's scratch cgroup). Only in the process
// that registered it, not in children forked later; never on a signal.
void at_abnormal_exit(void (*fn)(void*), void* arg);

// The case cannot run here (missing syscall, flag, feature): verdict skip.
[[noreturn]] void skip(std::string_view reason);
// The probe's own setup failed (not the behaviour under test): verdict error.
[[noreturn]] void broken(std::string_view message);
// Record "end" (the probe finished normally) and exit 0. Called by the
// framework after probe_main returns; children call _exit() instead.
[[noreturn]] void finish();

// Exit codes, for the launcher's benefit when the channel is lost.
inline constexpr int kExitSkip = 77;
inline constexpr int kExitBroken = 99;

// True when records go to a launcher (not to stderr).
bool recording_to_launcher();

// The channel's descriptor ($KPC_OBS_FD, read strictly: digits only), or -1.
int observation_fd();

}  // namespace kpc
