// setuid_report: the set-user-ID side of pdeathsig_cleared_by_setuid_exec.
// A copy of it, made set-user-ID root, is exec'd by an unprivileged child;
// it records what survived that exec and nothing else. It takes no
// arguments and execs nothing: even a copy that escaped its private tmpfs
// could not be used to run anything as root.
#include <cstdio>
#include <cstring>

#include "kpc/record.h"
#include "kpc/state.h"

int main(int argc, char** argv) {
  if (argc > 1) {
    std::fputs(std::strcmp(argv[1], "--help") == 0
                   ? "usage: setuid_report   (records exec.pdeathsig and exec.euid_is_root; no arguments)\n"
                   : "setuid_report takes no arguments\n",
               stderr);
    return 2;
  }
  kpc::record_state("exec", "pdeathsig,euid_is_root");
  return 0;
}
