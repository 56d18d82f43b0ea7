// The probe framework: every probe defines probe_main(); the library owns
// main(), parses the common arguments and turns exceptions into "broken".
//
//   int probe_main(kpc::Probe& p) {
//     // 1. narrate the scenario step by step ...
//     kpc::observe("child.blocked", ...);
//     return 0;
//   }
//
// Returning normally records "end"; a non-zero return is a broken probe.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kpc/check.h"
#include "kpc/raii.h"
#include "kpc/record.h"
#include "kpc/signals.h"

namespace kpc {

struct Probe {
  std::string id;                 // basename of argv[0]
  std::string variant;            // --variant NAME, empty when none
  std::vector<std::string> args;  // arguments after the common ones

  // "host", "pidns", "userns" as told by the launcher; "host" when run by hand.
  std::string flavor() const;
  // Absolute path of another kpc binary (helpers live beside the probes).
  std::string helper(std::string_view name) const;
  // The same helper as a path any uid can exec: /proc/self/fd/N of an O_PATH
  // descriptor opened now and kept open across exec (no O_CLOEXEC, so the
  // helper can exec it again). For a process about to become another uid:
  // the checkout may sit under a directory only its owner may search (a
  // 0700 home, a private bundle directory), and exec by path would be EACCES.
  std::string helper_for_any_uid(std::string_view name) const;

  // For a two-variant probe: true for `yes`, false for `no`; any other
  // variant is a broken probe, as with dispatch().
  bool variant_is(std::string_view yes, std::string_view no) const;

  // Run the function registered for the current variant; an unknown or
  // missing variant is a broken probe (the metadata and the code disagree).
  int dispatch(const std::map<std::string, std::function<int()>, std::less<>>& variants) const;
};

// execv(argv[0], argv); on failure the probe is broken. For the child side
// of a fork: never returns.
[[noreturn]] void exec_or_broken(const std::vector<std::string>& argv);

}  // namespace kpc

int probe_main(kpc::Probe& probe);
