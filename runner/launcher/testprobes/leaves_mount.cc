// leaves_mount: mounts a tmpfs in its working directory (the run's tmpdir)
// and exits without unmounting. In the host flavor the launcher must detach
// it and report it as a leftover; in a PID+mount namespace it dies with the
// namespace.
#include <sys/mount.h>
#include <sys/stat.h>

#include "kpc/check.h"
#include "kpc/probe.h"

int probe_main(kpc::Probe&) {
  KPC_SYS(mkdir("mnt", 0700));
  KPC_SYS(mount("kpc-test", "mnt", "tmpfs", 0, "size=64k"));
  kpc::observe("mounted", true);
  return 0;
}
