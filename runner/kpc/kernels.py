"""Kernels to boot: Debian's cloud-amd64 kernel packages, fetched by version
series through a private apt configuration, or a kernel the user built.

    ./kpc run --kernels 5.10,6.1,6.12,7.2
    ./kpc run --kernel path/to/bzImage[:modules-dir]

Debian packages: the apt sources are built from the Debian archive URI this
machine's apt is already configured with (/etc/apt/sources.list[.d]) — kpc
never names a mirror itself; KPC_DEBIAN_MIRROR overrides. apt verifies the
suites' signatures (debian-archive-keyring) and every package's checksum.
State lives in images/cache/apt/ and never touches the system's apt.
Extracted kernels are cached by package version in images/cache/kernels/.
"""

import dataclasses
import glob
import gzip
import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
import time

from . import kver, paths
from .build import say

CACHE = paths.CACHE
# Which suite carries which series. Other suites are searched too: a
# request is matched against every suite's cloud-amd64 kernel.
SUITES = ("bullseye", "bookworm", "trixie", "sid")
META = "linux-image-cloud-amd64"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LISTS_MAX_AGE_S = 12 * 3600
_DEBIAN_SUITE = re.compile(r"^(buster|bullseye|bookworm|trixie|forky|duke|sid|stable|testing|unstable|oldstable)$")
# A kernel release: names the modules directory and the cached initramfs.
_RELEASE = re.compile(r"\d+\.\d+[0-9A-Za-z._+~-]{0,100}")


class KernelError(Exception):
    pass


@dataclasses.dataclass
class Kernel:
    """A bootable kernel: image, its modules tree, its config."""
    label: str              # the report's column: "6.1" or "bzImage"
    release: str            # uname -r
    image: str              # vmlinuz / bzImage path
    modules: str            # lib/modules/<release> directory, or None
    config: dict            # CONFIG_X -> value, or None
    config_source: str
    origin: str             # "debian bookworm linux-image-... 6.1.176-1" or the path given

    @property
    def version(self):
        return kver.parse(self.release)

    def module_closure(self, names):
        """Module files to load, dependencies first, for the wanted modules
        that are modules in this kernel (built-in or absent ones are not).
        Debian's packages ship no modules.dep (depmod makes it at install):
        dependencies come from each module's own .modinfo depends=."""
        if not self.modules:
            return []
        files = _module_files(self.modules)
        order = []

        def visit(name, chain):
            path = files.get(name)
            if path is None or path in order or name in chain:
                return
            for dep in module_depends(path):
                visit(dep, chain | {name})
            order.append(path)
        for n in names:
            visit(n, frozenset())
        return order

    def builtin(self, name):
        """True when the kernel has `name` built in (modules.builtin)."""
        if not self.modules:
            return False
        try:
            with open(os.path.join(self.modules, "modules.builtin"), encoding="utf-8") as f:
                return any(_mod_name(line.strip()) == name for line in f)
        except OSError:
            return False


def _mod_name(path):
    return os.path.basename(path).split(".ko")[0].replace("-", "_")


def _module_files(moddir):
    files = {}
    for dirpath, _, names in os.walk(moddir):
        for n in names:
            if ".ko" in n:
                files[_mod_name(n)] = os.path.join(dirpath, n)
    return files


def module_bytes(path):
    """A module's ELF, decompressed (.ko, .ko.xz, .ko.zst, .ko.gz)."""
    if path.endswith(".xz"):
        with lzma.open(path) as f:
            return f.read()
    if path.endswith(".gz"):
        with gzip.open(path) as f:
            return f.read()
    if path.endswith(".zst"):
        if shutil.which("zstd") is None:
            raise KernelError(f"{path} is zstd-compressed: install zstd")
        return subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
    with open(path, "rb") as f:
        return f.read()


def module_depends(path):
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", module_bytes(path))
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d] if m else []


def read_config(path):
    config = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("CONFIG_") and "=" in line:
                k, v = line.split("=", 1)
                config[k] = v
    return config


# ------------------------------------------------------------ the apt side

def debian_uri(etc="/etc/apt"):
    """The Debian archive URI configured on this machine (not -security)."""
    env = os.environ.get("KPC_DEBIAN_MIRROR")
    if env:
        return env.rstrip("/")
    found = []
    for path in sorted(glob.glob(f"{etc}/sources.list.d/*.sources")):
        try:
            text = open(path, encoding="utf-8").read()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            suites = fields.get("suites", "").split()
            if any(_DEBIAN_SUITE.match(s) for s in suites):
                found += fields.get("uris", "").split()
    for path in [f"{etc}/sources.list", *sorted(glob.glob(f"{etc}/sources.list.d/*.list"))]:
        try:
            lines = open(path, encoding="utf-8").read().splitlines()
        except OSError:
            continue
        for line in lines:
            line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb" and _DEBIAN_SUITE.match(line[2]):
                found.append(line[1])
    for uri in found:
        return uri.rstrip("/")
    raise KernelError("no Debian archive is configured in /etc/apt (a 'deb URI bookworm main' line or a "
                      ".sources stanza); set KPC_DEBIAN_MIRROR=URI of a Debian mirror")


class Apt:
    """apt-get / apt-cache with a private state directory."""

    def __init__(self, root=None):
        self.root = root or os.path.join(CACHE, "apt")
        for d in ("lists/partial", "archives/partial", "etc"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        self.sources = os.path.join(self.root, "etc", "sources.list")

    def _opts(self):
        r = self.root
        return ["-o", f"Dir::Etc::SourceList={self.sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
                "-o", f"Dir::State::Lists={r}/lists", "-o", f"Dir::Cache={r}", "-o", f"Dir::Cache::Archives={r}/archives",
                "-o", "Dir::State::status=/dev/null", "-o", "APT::Architecture=amd64", "-o", "Acquire::Languages=none",
                "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root"]

    def write_sources(self, uri):
        if not os.path.exists(KEYRING):
            raise KernelError(f"{KEYRING} is missing: install debian-archive-keyring (apt verifies the kernels with it)")
        text = "".join(f"deb [signed-by={KEYRING}] {uri} {s} main\n" for s in SUITES)
        old = open(self.sources).read() if os.path.exists(self.sources) else None
        if old != text:
            with open(self.sources, "w") as f:
                f.write(text)
            return True
        return False

    def lists_age_s(self):
        stamps = glob.glob(os.path.join(self.root, "lists", "*_InRelease"))
        if len(stamps) < len(SUITES):
            return None
        return time.time() - min(os.path.getmtime(p) for p in stamps)

    def update(self):
        proc = subprocess.run(["apt-get", *self._opts(), "-q", "update"], capture_output=True, text=True)
        if proc.returncode != 0 or "W: " in proc.stderr and "signature" in proc.stderr.lower():
            raise KernelError(f"apt-get update (kpc's private lists in {self.root}) failed:\n"
                              f"{(proc.stdout + proc.stderr)[-2000:]}")
        for s in SUITES:
            touch = glob.glob(os.path.join(self.root, "lists", f"*_dists_{s}_InRelease"))
            for t in touch:
                os.utime(t)

    def madison(self, pkg):
        """[(version, suite)] for a package."""
        proc = subprocess.run(["apt-cache", *self._opts(), "madison", pkg], capture_output=True, text=True)
        rows = []
        for line in proc.stdout.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) >= 3:
                m = re.search(r"\s(\w+)/main", parts[2])
                rows.append((parts[1], m.group(1) if m else "?"))
        return rows

    def show(self, pkg, version):
        proc = subprocess.run(["apt-cache", *self._opts(), "show", f"{pkg}={version}"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise KernelError(f"apt-cache show {pkg}={version}: {proc.stderr.strip()}")
        fields, key = {}, None
        for line in proc.stdout.split("\n\n")[0].splitlines():
            if line.startswith(" ") and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, v = line.split(":", 1)
                fields[key] = v.strip()
        return fields

    def download(self, pkg, version, dest):
        """apt-get download: checks the size and SHA256 from the signed lists."""
        proc = subprocess.run(["apt-get", *self._opts(), "-q", "download", f"{pkg}={version}"], cwd=dest,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise KernelError(f"apt-get download {pkg}={version} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
        debs = glob.glob(os.path.join(dest, f"{pkg}_*.deb"))
        if not debs:
            raise KernelError(f"apt-get download {pkg}={version} left no .deb in {dest}")
        return debs[0]


def _pinned_deps(fields):
    """Kernel packages a package pins with (= version): the real image,
    its modules, its base files (config)."""
    out = []
    for alt in fields.get("Depends", "").split(","):
        alt = alt.strip()
        if "|" in alt:
            continue
        m = re.match(r"^(linux-[\w.+-]+)\s*\(=\s*([^)]+)\)$", alt)
        if m:
            out.append((m.group(1), m.group(2).strip()))
    return out


def _matches(request, version, suite):
    if request == suite:
        return True
    return version == request or version.startswith(request + ".") or version.startswith(request + "-")


def resolve(requests, refresh=None):
    """Map each request (a version series like "6.1" or "7", or a suite
    name like "trixie") to (suite, version) of linux-image-cloud-amd64."""
    apt = Apt()
    changed = apt.write_sources(debian_uri())
    age = apt.lists_age_s()
    if refresh or changed or age is None or age > LISTS_MAX_AGE_S:
        say(f"apt: refreshing the package lists of {', '.join(SUITES)} (kpc's own, in {os.path.relpath(apt.root)})")
        try:
            apt.update()
        except KernelError:
            if age is None or changed:
                raise
            say("apt: refresh failed; using the lists from the last refresh")
    available = apt.madison(META)
    chosen = []
    for req in requests:
        hits = [(v, s) for v, s in available if _matches(req, v, s)]
        if not hits:
            have = ", ".join(f"{v} ({s})" for v, s in available) or "none"
            raise KernelError(f"no Debian cloud-amd64 kernel matches '{req}'; available: {have}")
        chosen.append((req, *hits[0]))
    return apt, chosen


def fetch_debian(requests, refresh=None):
    """Kernels for version requests, downloading and extracting what is not
    in the cache yet."""
    apt, chosen = resolve(requests, refresh)
    kernels = []
    for req, version, suite in chosen:
        kernels.append(_fetch_one(apt, req, version, suite))
    return kernels


def _fetch_one(apt, label, version, suite):
    cache = os.path.join(CACHE, "kernels", f"{suite}-{version}")
    stamp = os.path.join(cache, "kpc-kernel.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            info = json.load(f)
        return _kernel_from(cache, info, label)
    # Walk the pinned dependencies of the meta package.
    todo, seen = [(META, version)], []
    while todo:
        pkg, ver = todo.pop()
        if (pkg, ver) in seen:
            continue
        seen.append((pkg, ver))
        todo += _pinned_deps(apt.show(pkg, ver))
    # Meta packages (no version in the name) hold nothing.
    real = [(p, v) for p, v in seen if re.search(r"-\d+\.\d+", p)]
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{suite}-{version}.", dir=os.path.dirname(cache))
    try:
        say(f"kernel {label}: downloading {', '.join(p for p, _ in real)} ({suite} {version})")
        debs = [apt.download(p, v, tmp) for p, v in real]
        root = os.path.join(tmp, "root")
        os.makedirs(root)
        for deb in debs:
            proc = subprocess.run(["dpkg-deb", "-x", deb, root], capture_output=True, text=True)
            if proc.returncode != 0:
                raise KernelError(f"dpkg-deb -x {deb}: {proc.stderr.strip()}")
        # /boot/vmlinuz-R (up to 6.x) or /usr/lib/modules/R/vmlinuz (7.x).
        images = sorted(glob.glob(os.path.join(root, "boot", "vmlinuz-*")))
        if images:
            release = os.path.basename(images[0])[len("vmlinuz-"):]
        else:
            images = sorted(glob.glob(os.path.join(root, "usr", "lib", "modules", "*", "vmlinuz")))
            if not images:
                raise KernelError(f"{suite} {version}: no vmlinuz in {', '.join(p for p, _ in real)}")
            release = os.path.basename(os.path.dirname(images[0]))
        info = {"release": release, "suite": suite, "version": version,
                "packages": [f"{p}={v}" for p, v in real]}
        # Keep what booting needs; drop the rest (firmware, docs).
        keep = os.path.join(tmp, "keep")
        os.makedirs(keep)
        shutil.move(images[0], os.path.join(keep, "vmlinuz"))
        for cfg in (os.path.join(root, "boot", f"config-{release}"),
                    os.path.join(root, "usr", "lib", "modules", release, "config")):
            if os.path.exists(cfg):
                shutil.move(cfg, os.path.join(keep, "config"))
                break
        mods = None
        for base in ("lib", "usr/lib"):
            cand = os.path.join(root, base, "modules", release)
            if os.path.isdir(cand):
                mods = cand
        if mods:
            shutil.move(mods, os.path.join(keep, "modules"))
        with open(os.path.join(keep, "kpc-kernel.json"), "w") as f:
            json.dump(info, f, indent=1)
        if os.path.exists(cache):
            shutil.rmtree(cache)
        os.rename(keep, cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _kernel_from(cache, info, label)


def _kernel_from(cache, info, label):
    cfg = os.path.join(cache, "config")
    mods = os.path.join(cache, "modules")
    return Kernel(label=label, release=info["release"], image=os.path.join(cache, "vmlinuz"),
                  modules=mods if os.path.isdir(mods) else None,
                  config=read_config(cfg) if os.path.exists(cfg) else None,
                  config_source="the config in " + next((p for p in info['packages'] if re.search(r'-\d+\.\d+', p.split('=')[0])), info['packages'][0]) if os.path.exists(cfg)
                  else "no config in the package",
                  origin=f"debian {info['suite']} {' '.join(info['packages'])}")


def from_path(spec):
    """--kernel path/to/bzImage[:modules-dir]: a kernel the user built. The
    release comes from the image header (the x86 boot protocol's
    kernel_version), or from the modules dir's name when the header has
    none; anything that is not a bzImage, or whose release is not a kernel
    release, is refused here (one line, not a traceback later)."""
    image, _, moddir = spec.partition(":")
    if not image:
        raise KernelError(f"--kernel {spec!r}: give the path of a bzImage, optionally :its modules directory")
    if not os.path.isfile(image):
        raise KernelError(f"--kernel {spec}: no file {image}" + ("" if not os.path.exists(image)
                                                                 else " (not a regular file)"))
    release = _image_release(image, spec)
    if moddir:
        if not os.path.isdir(moddir):
            raise KernelError(f"--kernel {spec}: modules directory {moddir} does not exist")
        name = os.path.basename(os.path.normpath(moddir))
        if not _RELEASE.fullmatch(name):
            raise KernelError(f"--kernel {spec}: the modules directory must be named after the kernel release "
                              f"(lib/modules/RELEASE), not '{name}'")
        if release and release != name:
            raise KernelError(f"--kernel {spec}: the image is release {release}, the modules directory is for {name}")
        release = name
    if not release:
        raise KernelError(f"--kernel {spec}: cannot tell the kernel release (the bzImage has no version "
                          f"string); give its modules dir: --kernel {image}:lib/modules/RELEASE")
    config, source = None, "none found next to the image"
    for cand in (os.path.join(os.path.dirname(image), ".config"),
                 os.path.join(os.path.dirname(image), "..", "..", "..", ".config"),
                 os.path.join(os.path.dirname(image), f"config-{release}"),
                 os.path.join(os.path.dirname(image), "config")):
        if os.path.isfile(cand):
            try:
                config, source = read_config(cand), os.path.normpath(cand)
            except OSError as e:
                raise KernelError(f"--kernel {spec}: {cand}: {e.strerror}") from None
            break
    return Kernel(label=release, release=release,
                  image=os.path.abspath(image), modules=os.path.abspath(moddir) if moddir else None,
                  config=config, config_source=source, origin=os.path.abspath(image))


def _image_release(image, spec):
    """The release string from a bzImage's setup header (kernel_version),
    or None when the header has none. Not a bzImage (no 0xAA55 boot flag
    and "HdrS" magic): KernelError."""
    try:
        with open(image, "rb") as f:
            head = f.read(0x1000)
            if len(head) < 0x210 or head[0x1fe:0x200] != b"\x55\xaa" or head[0x202:0x206] != b"HdrS":
                raise KernelError(f"--kernel {spec}: {image} is not a bzImage (no x86 boot sector with a "
                                  f"'HdrS' setup header)")
            ptr = int.from_bytes(head[0x20e:0x210], "little")
            if not ptr:
                return None
            f.seek(ptr + 0x200)
            raw = f.read(256).split(b"\0")[0]
    except OSError as e:
        raise KernelError(f"--kernel {spec}: {image}: {e.strerror}") from None
    words = raw.decode("ascii", "replace").split()
    if not words:
        return None
    if not _RELEASE.fullmatch(words[0]):
        raise KernelError(f"--kernel {spec}: the image's version string starts with {words[0][:40]!r}, "
                          f"not a kernel release")
    return words[0]
