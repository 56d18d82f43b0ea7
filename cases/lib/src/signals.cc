#include "kpc/signals.h"

#include <array>
#include <charconv>

namespace kpc {
namespace {

// Index = signal number; the list is kpc/signal_names.def (shared with the
// Python runner). The numbers there must count up from 1 without a gap.
struct Entry {
  int number;
  std::string_view name;
};
constexpr Entry kEntries[] = {
    {0, ""},
#define KPC_SIGNAL(number, name, default_action) {number, #name},
#define KPC_MAX_SIGNAL(n)
#include "kpc/signal_names.def"
#undef KPC_MAX_SIGNAL
#undef KPC_SIGNAL
};
constexpr std::array<std::string_view, std::size(kEntries)> names_by_number() {
  std::array<std::string_view, std::size(kEntries)> out{};
  for (size_t i = 0; i < std::size(kEntries); ++i) out[i] = kEntries[i].name;
  return out;
}
constexpr bool numbered_in_order() {
  for (size_t i = 0; i < std::size(kEntries); ++i)
    if (kEntries[i].number != static_cast<int>(i)) return false;
  return true;
}
static_assert(numbered_in_order(), "kpc/signal_names.def: numbers must count up from 1");
static_assert(std::size(kEntries) == 32, "kpc/signal_names.def: the 31 standard signals");
constexpr auto kNames = names_by_number();

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
