// creds_report: the exec side of the credential cases. Records what the
// new program image got: for each capability set (/proc/self/status
// CapPrm, CapEff, CapInh, CapAmb, CapBnd) which of the two marker
// capabilities the cases move around it holds, the effective uid, the
// no_new_privs flag and the securebits.
//
//   creds_report --prefix exec [--then-exec PATH ARGS...]
//
// <prefix>.permitted etc. are "CAP_NET_BIND_SERVICE|CAP_NET_RAW", one of
// them, or "none"; <prefix>.euid_is_root, <prefix>.no_new_privs (bool);
// <prefix>.securebits (names of the set bits, or "none").
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kpc/proc.h"
#include "kpc/record.h"

namespace {
constexpr int kNetBindService = 10, kNetRaw = 13;

uint64_t field(const std::string& status, const char* name) {
  auto at = status.find(std::string("\n") + name + ":\t");
  if (at == std::string::npos) return 0;
  return std::strtoull(status.c_str() + at + strlen(name) + 3, nullptr, 16);
}

std::string markers(uint64_t set) {
  std::string out;
  if (set >> kNetBindService & 1) out = "CAP_NET_BIND_SERVICE";
  if (set >> kNetRaw & 1) out += std::string(out.empty() ? "" : "|") + "CAP_NET_RAW";
  return out.empty() ? "none" : out;
}

std::string securebits(int bits) {
  static const char* const names[] = {"SECBIT_NOROOT",
                                      "SECBIT_NOROOT_LOCKED",
                                      "SECBIT_NO_SETUID_FIXUP",
                                      "SECBIT_NO_SETUID_FIXUP_LOCKED",
                                      "SECBIT_KEEP_CAPS",
                                      "SECBIT_KEEP_CAPS_LOCKED",
                                      "SECBIT_NO_CAP_AMBIENT_RAISE",
                                      "SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED"};
  std::string out;
  for (int i = 0; i < 8; ++i)
    if (bits >> i & 1) out += std::string(out.empty() ? "" : "|") + names[i];
  return out.empty() ? "none" : out;
}
}  // namespace

int main(int argc, char** argv) {
  std::string prefix = "exec";
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--prefix" && i + 1 < argc) prefix = argv[++i];
    else if (a == "--then-exec") {
      ++i;
      break;
    } else kpc::broken("creds_report: unknown argument '" + a + "'");
  }
  std::string status = "\n" + kpc::read_text("/proc/self/status").value_or("");
  kpc::observe(prefix + ".permitted", markers(field(status, "CapPrm")));
  kpc::observe(prefix + ".effective", markers(field(status, "CapEff")));
  kpc::observe(prefix + ".inheritable", markers(field(status, "CapInh")));
  kpc::observe(prefix + ".ambient", markers(field(status, "CapAmb")));
  kpc::observe(prefix + ".bounding", markers(field(status, "CapBnd")));
  kpc::observe(prefix + ".euid_is_root", geteuid() == 0);
  kpc::observe(prefix + ".no_new_privs", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
  kpc::observe(prefix + ".securebits", securebits(prctl(PR_GET_SECUREBITS, 0, 0, 0, 0)));
  if (i < argc) {
    execv(argv[i], argv + i);
    kpc::broken(std::string("creds_report: execv ") + argv[i] + ": " + strerror(errno));
  }
  return 0;
}
