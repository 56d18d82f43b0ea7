// scratch_cgroup_forever: makes a scratch cgroup (kpc::cgroup2::Scratch,
// with a child cgroup in it), records its name, then sleeps until the
// launcher's deadline kills it -- so no destructor removes the cgroups. The
// shim must (runner/tests/test_launcher.py). Not a case.
#include <unistd.h>

#include "kpc/cgroup2.h"
#include "kpc/probe.h"

int probe_main(kpc::Probe&) {
  auto cg = kpc::cgroup2::Scratch::create("leak");
  cg->make("child");
  const std::string& path = cg->path();
  kpc::observe("name", path.substr(path.rfind('/') + 1));
  for (;;) pause();
}
