#include "kpc/signals.h"

#include <array>
#include <charconv>

namespace kpc {
namespace {

// x86-64 / generic numbering (asm-generic/signal.h). Index = signal number.
constexpr std::array<std::string_view, 32> kNames = {
    "",          "SIGHUP",  "SIGINT",    "SIGQUIT", "SIGILL",   "SIGTRAP", "SIGABRT", "SIGBUS",
    "SIGFPE",    "SIGKILL", "SIGUSR1",   "SIGSEGV", "SIGUSR2",  "SIGPIPE", "SIGALRM", "SIGTERM",
    "SIGSTKFLT", "SIGCHLD", "SIGCONT",   "SIGSTOP", "SIGTSTP",  "SIGTTIN", "SIGTTOU", "SIGURG",
    "SIGXCPU",   "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO",   "SIGPWR",  "SIGSYS"};

std::optional<int> parse_number(std::string_view s) {
  int n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end != s.data() + s.size() || n < 1 || n > kMaxSignal) return std::nullopt;
  return n;
}

}  // namespace

SigSet SigSet::of(std::initializer_list<int> signals) {
  SigSet s;
  for (int sig : signals) s.add(sig);
  return s;
}

SigSet SigSet::from(const sigset_t& set) {
  SigSet s;
  for (int sig = 1; sig <= kMaxSignal; ++sig)
    if (sigismember(&set, sig) == 1) s.add(sig);
  return s;
}

sigset_t SigSet::to_sigset() const {
  // glibc's sigaddset() refuses 32 and 33 (its internal signals); build the
  // set from the raw words so callers get exactly the bits they asked for.
  sigset_t set;
  sigemptyset(&set);
  static_assert(sizeof(set) >= sizeof(uint64_t));
  __builtin_memcpy(&set, &bits, sizeof bits);
  return set;
}

std::string signal_name(int sig) {
  if (sig >= 1 && sig < static_cast<int>(kNames.size())) return std::string(kNames[sig]);
  if (sig >= 32 && sig <= kMaxSignal) return "SIG" + std::to_string(sig);
  return "";
}

std::optional<int> signal_number(std::string_view name) {
  if (auto n = parse_number(name)) return n;
  std::string_view bare = name.starts_with("SIG") ? name.substr(3) : name;
  if (auto n = parse_number(bare)) return n;
  for (size_t i = 1; i < kNames.size(); ++i)
    if (kNames[i].substr(3) == bare) return static_cast<int>(i);
  return std::nullopt;
}

std::string format_sigset(SigSet set) {
  if (set.empty()) return "none";
  std::string out;
  for (int sig = 1; sig <= kMaxSignal; ++sig) {
    if (!set.has(sig)) continue;
    if (!out.empty()) out += '|';
    out += signal_name(sig);
  }
  return out;
}

std::optional<SigSet> parse_sigset(std::string_view text) {
  if (text == "none") return SigSet{};
  SigSet set;
  while (!text.empty()) {
    size_t bar = text.find('|');
    std::string_view item = text.substr(0, bar);
    auto sig = signal_number(item);
    if (!sig) return std::nullopt;
    set.add(*sig);
    if (bar == std::string_view::npos) break;
    text.remove_prefix(bar + 1);
    if (text.empty()) return std::nullopt;  // trailing '|'
  }
  if (set.empty()) return std::nullopt;
  return set;
}

}  // namespace kpc
