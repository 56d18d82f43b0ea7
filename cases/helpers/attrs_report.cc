// attrs_report: the exec side of the process-attribute cases: records the
// attributes a new program got.
//
//   attrs_report --prefix exec [--record nice,sched_policy] [--then-exec PATH ARGS...]
//
// --record limits what is recorded (default: all of the following).
// <prefix>.nofile_soft, .nofile_hard   RLIMIT_NOFILE (int; -1 = unlimited)
// <prefix>.umask                       octal text, e.g. "027"
// <prefix>.nice                        int
// <prefix>.personality                 "ADDR_NO_RANDOMIZE|..." or "PER_LINUX"
// <prefix>.sched_policy                "SCHED_OTHER", "SCHED_BATCH|SCHED_RESET_ON_FORK", ...
// <prefix>.affinity                    CPUs allowed, e.g. "0" or "0-1"
#include <sched.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "kpc/record.h"

namespace {
std::string cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return kpc::errno_name(errno);
  std::string out;
  int start = -1;
  for (int c = 0; c <= CPU_SETSIZE; ++c) {
    bool in = c < CPU_SETSIZE && CPU_ISSET(c, &set);
    if (in && start < 0) start = c;
    if (!in && start >= 0) {
      out += (out.empty() ? "" : ",") + std::to_string(start) + (c - 1 > start ? "-" + std::to_string(c - 1) : "");
      start = -1;
    }
  }
  return out;
}
std::string policy() {
  int p = sched_getscheduler(0);
  if (p < 0) return kpc::errno_name(errno);
  std::string reset = (p & SCHED_RESET_ON_FORK) ? "|SCHED_RESET_ON_FORK" : "";
  switch (p & ~SCHED_RESET_ON_FORK) {
    case SCHED_OTHER:
      return "SCHED_OTHER" + reset;
    case SCHED_FIFO:
      return "SCHED_FIFO" + reset;
    case SCHED_RR:
      return "SCHED_RR" + reset;
    case SCHED_BATCH:
      return "SCHED_BATCH" + reset;
    case SCHED_IDLE:
      return "SCHED_IDLE" + reset;
    default:
      return std::to_string(p);
  }
}
std::string persona() {
  int p = personality(0xffffffff);
  std::string out;
  struct {
    int bit;
    const char* name;
  } flags[] = {{ADDR_NO_RANDOMIZE, "ADDR_NO_RANDOMIZE"},   {READ_IMPLIES_EXEC, "READ_IMPLIES_EXEC"},
               {ADDR_COMPAT_LAYOUT, "ADDR_COMPAT_LAYOUT"}, {MMAP_PAGE_ZERO, "MMAP_PAGE_ZERO"},
               {ADDR_LIMIT_3GB, "ADDR_LIMIT_3GB"},         {UNAME26, "UNAME26"}};
  for (auto& f : flags)
    if (p & f.bit) out += std::string(out.empty() ? "" : "|") + f.name;
  if ((p & PER_MASK) != PER_LINUX)
    out += std::string(out.empty() ? "" : "|") + "domain " + std::to_string(p & PER_MASK);
  return out.empty() ? "PER_LINUX" : out;
}
long lim(rlim_t v) { return v == RLIM_INFINITY ? -1 : static_cast<long>(v); }
}  // namespace

void record_attributes(const std::string& prefix, const std::string& only) {
  auto want = [&](const char* name) {
    return only.empty() || ("," + only + ",").find(std::string(",") + name + ",") != std::string::npos;
  };
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (want("nofile_soft")) kpc::observe(prefix + ".nofile_soft", static_cast<int64_t>(lim(rl.rlim_cur)));
  if (want("nofile_hard")) kpc::observe(prefix + ".nofile_hard", static_cast<int64_t>(lim(rl.rlim_max)));
  mode_t m = umask(0);
  umask(m);
  char buf[8];
  snprintf(buf, sizeof buf, "%03o", m);
  if (want("umask")) kpc::observe(prefix + ".umask", buf);
  errno = 0;
  if (want("nice")) kpc::observe(prefix + ".nice", static_cast<int64_t>(getpriority(PRIO_PROCESS, 0)));
  if (want("personality")) kpc::observe(prefix + ".personality", persona());
  if (want("sched_policy")) kpc::observe(prefix + ".sched_policy", policy());
  if (want("affinity")) kpc::observe(prefix + ".affinity", cpus());
}

int main(int argc, char** argv) {
  std::string prefix = "exec", only;
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--prefix" && i + 1 < argc) prefix = argv[++i];
    else if (a == "--record" && i + 1 < argc) only = argv[++i];
    else if (a == "--then-exec") {
      ++i;
      break;
    } else kpc::broken("attrs_report: unknown argument '" + a + "'");
  }
  record_attributes(prefix, only);
  if (i < argc) {
    execv(argv[i], argv + i);
    kpc::broken(std::string("attrs_report: execv ") + argv[i] + ": " + strerror(errno));
  }
  return 0;
}
