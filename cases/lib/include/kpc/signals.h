// Signal numbers, names and sets in the kernel's numbering.
//
// A SigSet is the 64-bit mask the kernel shows in /proc/PID/status
// (bit N-1 set means signal N). Standard signals print by name (SIGTERM);
// real-time signals print by number (SIG34), because "SIGRTMIN" means 32 to
// the kernel, 34 to glibc and 35 to musl.
#pragma once

#include <signal.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kpc {

// The names and the highest number come from kpc/signal_names.def, the list
// the Python runner reads too.
#define KPC_SIGNAL(number, name, default_action)
#define KPC_MAX_SIGNAL(n) inline constexpr int kMaxSignal = n;
#include "kpc/signal_names.def"
#undef KPC_MAX_SIGNAL
#undef KPC_SIGNAL

struct SigSet {
  uint64_t bits = 0;

  static SigSet of(std::initializer_list<int> signals);
  static SigSet from(const sigset_t& set);
  sigset_t to_sigset() const;  // glibc may refuse to carry 32/33; see signals.cc

  bool has(int sig) const { return sig >= 1 && sig <= kMaxSignal && (bits >> (sig - 1)) & 1; }
  void add(int sig) {
    if (sig >= 1 && sig <= kMaxSignal) bits |= uint64_t{1} << (sig - 1);
  }
  void remove(int sig) {
    if (sig >= 1 && sig <= kMaxSignal) bits &= ~(uint64_t{1} << (sig - 1));
  }
  bool empty() const { return bits == 0; }
  friend bool operator==(SigSet, SigSet) = default;
};

// "SIGTERM" for 15, "SIG34" for 34, "" for numbers outside 1..64.
std::string signal_name(int sig);
// Accepts "SIGTERM", "TERM", "SIG34", "34". nullopt when unknown.
std::optional<int> signal_number(std::string_view name);

// "SIGINT|SIGTERM" in increasing signal number; "none" for the empty set.
std::string format_sigset(SigSet set);
// Inverse of format_sigset; also accepts names in any order and "none".
std::optional<SigSet> parse_sigset(std::string_view text);

}  // namespace kpc
