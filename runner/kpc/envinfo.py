"""What machine the suite runs on: the results' "environment" block and the
facts requirement checks need (root, capabilities, kernel config, which
flavors work)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import platform
import shutil
import subprocess
from typing import TYPE_CHECKING

from . import kver, paths

if TYPE_CHECKING:
    from . import kernels


@dataclasses.dataclass
class Environment:
    kernel: str
    machine: str
    distro: str
    libc: str
    root: bool
    capabilities: str
    effective_caps: frozenset
    kconfig: dict | None     # None when no config could be read
    kconfig_source: str
    flavors: dict            # flavor -> "ok" or why not
    runtimes: dict | None = None    # --runtime: name -> runtimes.Runtime.describe()
    target: str = "host"     # "host", or the kernel's label under --kernels
    guest: dict | None = None       # a QEMU guest: its files, commands, boot facts
    fuse_recovery: str | None = None  # how the launcher can free FUSE deadlocks here (kpc/supervisor.h)
    chroot: bool | None = None        # in a chroot (sbuild, schroot): None when it cannot be told
    root_mount: bool | None = None    # "/" is a mount point (not in a directory chroot)

    def has_file(self, path: str) -> bool:
        if self.guest is not None:
            return path in self.guest["files"]
        return os.path.exists(path)

    def has_command(self, cmd: str) -> bool:
        if self.guest is not None:
            return cmd in self.guest["commands"]
        return shutil.which(cmd) is not None

    @property
    def kernel_version(self) -> tuple[int, ...] | None:
        return kver.parse(self.kernel)

    def to_json(self) -> dict:
        return {"kernel": self.kernel, "machine": self.machine, "distro": self.distro, "libc": self.libc,
                "root": self.root, "capabilities": self.capabilities,
                "runtime": ",".join(self.runtimes) if self.runtimes else "none",
                "kconfig_source": self.kconfig_source, "flavors": self.flavors,
                **({"runtimes": self.runtimes} if self.runtimes else {}),
                **({"fuse_recovery": self.fuse_recovery} if self.fuse_recovery else {}),
                **({"chroot": True} if self.chroot else {}),
                **({"target": self.target, "guest": {k: v for k, v in self.guest.items()
                                                     if k not in ("files", "commands")}}
                   if self.guest is not None else {})}

    @property
    def glibc_version(self) -> tuple[int, ...] | None:
        """(2, 36, 0) from "glibc 2.36"; None for another libc or an
        unreadable version (then no glibc>=/< row matches)."""
        name, _, version = self.libc.partition(" ")
        if name != "glibc":
            return None
        try:
            return kver.parse(version)
        except ValueError:
            return None

    def context(self, flavor: str, variant: str = "", profile: str = "none", runtime: str = "none") -> dict:
        """What expected-table conditions see."""
        libc = "musl" if "musl" in self.libc else "glibc"
        return {"kernel": self.kernel_version, "flavor": flavor, "variant": variant, "profile": profile,
                "runtime": runtime, "libc": libc, "glibc": self.glibc_version if libc == "glibc" else None,
                "arch": self.machine, "root": "yes" if self.root else "no"}


def distro_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def libc_version() -> str:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or "unknown"
    except (ValueError, OSError):
        return "unknown"


def in_chroot(root_mount: bool | None) -> bool | None:
    """True when this process's root is not its mount namespace's. A root
    that is not a mount point is a directory chroot (a namespace's root
    always is one); otherwise / is compared with /proc/1/root as
    ischroot(1) does. None when that cannot be told: /proc/1/root is often
    unreadable, even to root (EACCES here, and inside a chroot)."""
    if root_mount is False:
        return True
    try:
        here, init = os.stat("/"), os.stat("/proc/1/root/.")
    except OSError:
        return None
    return (here.st_dev, here.st_ino) != (init.st_dev, init.st_ino)


def root_is_mount_point() -> bool | None:
    """Some mount is on "/" (mountinfo lists only what lies under this
    process's root: in a plain chroot nothing is on "/"). None without /proc."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            return any(len(fields) > 4 and fields[4] == "/" for fields in (line.split() for line in f))
    except OSError:
        return None


def read_kconfig(release: str) -> tuple[dict[str, str] | None, str]:
    """{'CONFIG_X': 'y'|'m'|value}, and where it came from; (None, reason)
    when the running kernel's config is nowhere to be found."""
    for path in ("/proc/config.gz", f"/boot/config-{release}", f"/lib/modules/{release}/build/.config"):
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as f:
                config = {}
                for line in f:
                    line = line.strip()
                    if line.startswith("CONFIG_") and "=" in line:
                        k, v = line.split("=", 1)
                        config[k] = v
                return config, path
        except OSError:
            continue
    return None, "no kernel config found (/proc/config.gz, /boot/config-*)"


def launcher_json(*args: str, timeout: float = 30) -> dict:
    return _launcher_answers([args], timeout)[0]


def _launcher_answers(questions: list[tuple[str, ...]], timeout: float = 30) -> list[dict]:
    """kpc-launch's JSON answer to each of QUESTIONS (argument lists), the
    launchers run side by side; a failure raises as subprocess.run's
    check=True would."""
    procs = []
    try:
        for q in questions:
            procs.append(subprocess.Popen([paths.launcher(), *q], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        answers = []
        for q, p in zip(questions, procs):
            out, err = p.communicate(timeout=timeout)
            if p.returncode:
                raise subprocess.CalledProcessError(p.returncode, p.args, out, err)
            answers.append(json.loads(out))
        return answers
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def detect() -> Environment:
    uname = platform.uname()
    caps, flavors = _launcher_answers([("caps",), ("flavors",)])
    kconfig, source = read_kconfig(uname.release)
    root_mount = root_is_mount_point()
    return Environment(kernel=uname.release, machine=uname.machine, distro=distro_name(), libc=libc_version(),
                       root=os.geteuid() == 0, capabilities=caps["text"],
                       effective_caps=frozenset(caps["effective"]), kconfig=kconfig, kconfig_source=source,
                       flavors=flavors, chroot=in_chroot(root_mount), root_mount=root_mount)


class EveryCapability(frozenset):
    """A guest's init runs with the full set (confirmed by its report)."""

    def __contains__(self, item):
        return True


def busybox_applets(busybox: str = "/bin/busybox") -> set[str]:
    try:
        out = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return set()
    return set(out.split())


def for_kernel(kernel: kernels.Kernel, host: Environment) -> Environment:
    """The environment a guest booting `kernel` will have, as far as the
    host can tell before booting (the guest's init runs as root with every
    capability; its flavors are confirmed by the guest's own report)."""
    files = {"/bin/sh", "/bin/true", "/proc/self"}
    if kernel.config is None or (kernel.config.get("CONFIG_FUSE_FS") in ("y", "m")):
        files.add("/dev/fuse")
    from .kernels import MACHINE
    # (busybox applets: the host's busybox-static is the same Debian version as
    # the arm64 guest's, so its list stands for both)
    return Environment(kernel=kernel.release, machine=MACHINE.get(getattr(kernel, "arch", "amd64"), "x86_64"),
                       distro=f"kpc guest ({kernel.origin})",
                       libc=host.libc, root=True, capabilities="=ep",
                       effective_caps=EveryCapability(),
                       kconfig=kernel.config, kconfig_source=kernel.config_source,
                       flavors={"host": "ok", "pidns": "ok", "userns": "ok"},
                       target=kernel.label,
                       guest={"files": files, "commands": busybox_applets(), "origin": kernel.origin,
                              "image": kernel.image})
