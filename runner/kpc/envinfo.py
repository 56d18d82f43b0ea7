"""What machine the suite runs on: the results' "environment" block and the
facts requirement checks need (root, capabilities, kernel config, which
flavors work)."""

import dataclasses
import gzip
import json
import os
import platform
import subprocess

from . import kver, paths


@dataclasses.dataclass
class Environment:
    kernel: str
    machine: str
    distro: str
    libc: str
    root: bool
    capabilities: str
    effective_caps: frozenset
    kconfig: dict            # None when no config could be read
    kconfig_source: str
    flavors: dict            # flavor -> "ok" or why not
    runtimes: dict = None    # --runtime: name -> runtimes.Runtime.describe()

    @property
    def kernel_version(self):
        return kver.parse(self.kernel)

    def to_json(self):
        return {"kernel": self.kernel, "machine": self.machine, "distro": self.distro, "libc": self.libc,
                "root": self.root, "capabilities": self.capabilities,
                "runtime": ",".join(self.runtimes) if self.runtimes else "none",
                "kconfig_source": self.kconfig_source, "flavors": self.flavors,
                **({"runtimes": self.runtimes} if self.runtimes else {})}

    def context(self, flavor, variant="", profile="none", runtime="none"):
        """What expected-table conditions see."""
        libc = "musl" if "musl" in self.libc else "glibc"
        return {"kernel": self.kernel_version, "flavor": flavor, "variant": variant, "profile": profile,
                "runtime": runtime, "libc": libc, "arch": self.machine, "root": "yes" if self.root else "no"}


def distro_name():
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def libc_version():
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or "unknown"
    except (ValueError, OSError):
        return "unknown"


def read_kconfig(release):
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


def launcher_json(*args, timeout=30):
    out = subprocess.run([paths.launcher(), *args], check=True, capture_output=True, text=True, timeout=timeout)
    return json.loads(out.stdout)


def detect():
    uname = platform.uname()
    caps = launcher_json("caps")
    kconfig, source = read_kconfig(uname.release)
    return Environment(kernel=uname.release, machine=uname.machine, distro=distro_name(), libc=libc_version(),
                       root=os.geteuid() == 0, capabilities=caps["text"],
                       effective_caps=frozenset(caps["effective"]), kconfig=kconfig, kconfig_source=source,
                       flavors=launcher_json("flavors"))
