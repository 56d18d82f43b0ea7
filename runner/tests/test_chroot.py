"""Inside a chroot (sbuild, schroot, a Debian buildd: "/" is a directory,
not a mount point, and the kernel refuses user namespaces to a chrooted
process) every case that cannot run there skips, saying why -- never
'probe broken: mount(... "/" ...) EINVAL'."""

import json
import os
import subprocess

import pytest

from conftest import run
from kpc import envinfo, paths, requirements

# A directory chroot of this machine's own userland: /usr, /etc, /dev, /sys
# bound in, /proc and /tmp mounted, the checkout at its own path -- all in a
# private mount namespace, so nothing is left mounted when it ends.
CHROOT = r"""
set -eu
D=$1; P=$2; shift 2
for d in usr etc proc dev tmp sys; do mkdir -p "$D/$d"; done
for l in bin sbin lib lib32 lib64 libx32; do     # merged /usr (links) or not (Debian 11: directories)
  if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$D/$l"; elif [ -d "/$l" ]; then mkdir "$D/$l"; mount --rbind "/$l" "$D/$l"; fi
done
mount --rbind /usr "$D/usr"; mount --rbind /etc "$D/etc"; mount --rbind /dev "$D/dev"; mount --rbind /sys "$D/sys"
mount -t proc proc "$D/proc"; mount -t tmpfs -o mode=1777 tmpfs "$D/tmp"
mkdir -p "$D$P"; mount --bind "$P" "$D$P"
exec chroot "$D" /usr/bin/env -i PATH=/usr/sbin:/usr/bin HOME=/tmp /usr/bin/python3 "$P/kpc" "$@"
"""


def _env(**kw):
    base = dict(kernel="6.1.0", machine="x86_64", distro="d", libc="glibc 2.36", root=True, capabilities="=ep",
                effective_caps=frozenset(), kconfig=None, kconfig_source="", flavors={})
    base.update(kw)
    return envinfo.Environment(**base)


def test_chroot_flavor_reasons_name_the_chroot(demo_cases):
    case = demo_cases["demo"]
    env = _env(flavors={"host": "ok", "pidns": "launcher shim: make / private: Invalid argument",
                        "userns": "clone(userns): EPERM (Operation not permitted)"}, chroot=True, root_mount=False)
    assert requirements.skip_reason(case, "host", env) is None
    assert "/ is not a mount point (a chroot)" in requirements.skip_reason(case, "pidns", env)
    assert "user namespaces are refused inside a chroot" in requirements.skip_reason(case, "userns", env)
    # outside a chroot, EPERM for user namespaces is the sysctl's
    env = _env(flavors={"userns": "clone(userns): EPERM (Operation not permitted)"}, chroot=False, root_mount=True)
    assert "user.max_user_namespaces" in requirements.skip_reason(case, "userns", env)


def test_a_directory_root_is_a_chroot(monkeypatch):
    assert envinfo.in_chroot(False) is True
    monkeypatch.setattr(envinfo.os, "stat", lambda p: (_ for _ in ()).throw(PermissionError(13, "denied")))
    assert envinfo.in_chroot(True) is None      # /proc/1/root unreadable: cannot tell


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mounts)")
def test_the_suite_in_a_chroot_skips_with_reasons(built, tmp_path):
    root = tmp_path / "chroot"
    out = "/tmp/kpc-chroot.json"    # the chroot's own /tmp (a tmpfs gone with it): read through the bind below
    proc = run(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                CHROOT.replace('exec chroot', 'chroot') + '\ncp "$D/tmp/kpc-chroot.json" "$D.json"',
                "_", str(root), paths.ROOT, "run", "--no-build", "--json", out], timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    with open(str(root) + ".json", encoding="utf-8") as f:
        doc = json.load(f)
    assert doc["environment"].get("chroot") is True
    verdicts = {f"{r['case']}:{r.get('variant', '')}@{r['flavor']}": (r["verdict"], r.get("reason", ""))
                for r in doc["results"]}
    assert not [k for k, (v, _) in verdicts.items() if v in ("fail", "error")], proc.stdout[-3000:]
    v, why = verdicts["pdeathsig_cleared_by_setuid_exec:plain_program@host"]
    assert v == "skip" and "/ is not a mount point" in why
    v, why = verdicts["fuse_abort_releases_waiters:@host"]
    assert v == "skip" and "/ is not a mount point" in why
    v, why = verdicts["execveat_empty_path_needs_dev_fd:@host"]
    assert v == "skip" and "/ is not a mount point" in why
    v, why = verdicts["sig_ign_survives_execve:@userns"]
    assert v == "skip" and "user namespaces are refused inside a chroot" in why
    v, why = verdicts["sig_ign_survives_execve:@pidns"]
    assert v == "skip" and "/ is not a mount point" in why
    assert verdicts["sig_ign_survives_execve:@host"][0] == "pass"
    subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)
