"""Kernels to boot: Debian's cloud-amd64 (or, with --arch arm64, cloud-arm64)
kernel packages, fetched by version series through a private apt
configuration, or a kernel the user built.

    ./kpc run --kernels 5.10,6.1,6.12,7.2
    ./kpc run --kernels 6.1 --arch amd64,arm64
    ./kpc run --kernel path/to/bzImage[:modules-dir]

Debian packages: the apt sources are built from the Debian archive URI this
machine's apt is already configured with (/etc/apt/sources.list[.d]) — kpc
never names a mirror itself; KPC_DEBIAN_MIRROR overrides (one http(s):// or
file: URI, nothing else). apt verifies the suites' signatures
(debian-archive-keyring) and every package's checksum; an index that fails
to download or verify fails the fetch. apt's downloads run in its own
sandbox (user _apt), as for the system's apt. State lives in
images/cache/apt/ (amd64) and images/cache/apt-arm64/ (APT::Architecture=arm64)
and never touches the system's apt.

Extracted kernels are cached by package version in images/cache/kernels/
(<suite>-<version> for amd64, arm64-<suite>-<version> for arm64: the two
architectures' packages have the same version numbers),
with a stamp (kpc-kernel.json) holding the .debs' SHA256 from the signed
index and the SHA256 of every extracted file; the kernel image and each
module kpc loads are checked against it before use. The cache is trusted
only when the effective user owns it and no one else can write it
(paths.cache_dir): whoever writes it chooses the kernel kpc boots as root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import glob
import grp
import gzip
import hashlib
import json
import lzma
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
from typing import Callable, Iterable

from . import kver, paths
from .build import say

CACHE = paths.CACHE
# Which suite carries which series. Other suites are searched too: a
# request is matched against every suite's cloud-amd64 kernel.
SUITES = ("bullseye", "bookworm", "trixie", "sid")
META = "linux-image-cloud-amd64"
ARCHES = ("amd64", "arm64")   # Debian's names; uname -m: x86_64, aarch64
MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}


def meta(arch: str = "amd64") -> str:
    return f"linux-image-cloud-{arch}"


KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LISTS_MAX_AGE_S = 12 * 3600
SANDBOX_USER = "_apt"     # apt's default APT::Sandbox::User
APT_TIMEOUT_S = 1800      # apt 2.6 can wait forever after an immediate HTTP 503 (retry backoff)
STAMP = "kpc-kernel.json"
STAMP_FORMAT = 2          # 2: with "debs" and "files" hashes
_DEBIAN_SUITE = re.compile(r"^(buster|bullseye|bookworm|trixie|forky|duke|sid|stable|testing|unstable|oldstable)$")
# KPC_DEBIAN_MIRROR is pasted into sources.list: one URI, nothing apt could
# read as a second token, an option ([trusted=yes]), a comment or a new line.
_MIRROR = re.compile(r"(https?|file):[A-Za-z0-9._~:/?@!$&()*+,;=%-]+")
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
    modules: str | None     # lib/modules/<release> directory, or None
    config: dict | None     # CONFIG_X -> value, or None
    config_source: str
    origin: str             # "debian bookworm linux-image-... 6.1.176-1" or the path given
    arch: str = "amd64"     # Debian's architecture name: amd64 or arm64
    home: str | None = None        # a cached Debian kernel's directory
    files: dict | None = None      # its files (relative to home) -> SHA256 at extraction; None: a user's kernel
    _checked: set = dataclasses.field(default_factory=set, repr=False, compare=False)

    @property
    def version(self) -> tuple[int, ...] | None:
        return kver.parse(self.release)

    def checked(self, path: str) -> str:
        """`path`, after checking a cached kernel's file against the hash
        recorded when it was extracted: the cache is the only thing between
        the signed packages and what boots. A user's own kernel is taken
        as given."""
        if self.files is None or path in self._checked:
            return path
        rel = os.path.relpath(path, self.home)
        want = self.files.get(rel)
        if want is None:
            raise KernelError(f"kernel {self.label}: {path} is not one of the files extracted from "
                              f"{self.origin}: run with --refresh-kernels to extract it again")
        if sha256_file(path) != want:
            raise KernelError(f"kernel {self.label}: {path} changed since it was extracted from the signed "
                              f"package (SHA256 differs): run with --refresh-kernels to extract it again")
        self._checked.add(path)
        return path

    def module_closure(self, names: Iterable[str]) -> list[str]:
        """Module files to load, dependencies first, for the wanted modules
        that are modules in this kernel (built-in or absent ones are not).
        Debian's packages ship no modules.dep (depmod makes it at install):
        dependencies come from each module's own .modinfo depends=. Each
        file is checked against the stamp before it is read."""
        if not self.modules:
            return []
        files = _module_files(self.modules)
        order = []

        def visit(name, chain):
            path = files.get(name)
            if path is None or path in order or name in chain:
                return
            for dep in module_depends(self.checked(path)):
                visit(dep, chain | {name})
            order.append(path)
        for n in names:
            visit(n, frozenset())
        return order

    def builtin(self, name: str) -> bool:
        """True when the kernel has `name` built in (modules.builtin)."""
        if not self.modules:
            return False
        path = os.path.join(self.modules, "modules.builtin")
        if not os.path.exists(path):
            return False
        try:
            with open(self.checked(path), encoding="utf-8") as f:
                return any(_mod_name(line.strip()) == name for line in f)
        except OSError:
            return False


def sha256_file(path: str) -> str:
    """SHA256 of a file, opened without following a symlink."""
    h = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise KernelError(f"{path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _mod_name(path):
    return os.path.basename(path).split(".ko")[0].replace("-", "_")


def _module_files(moddir):
    files = {}
    for dirpath, _, names in os.walk(moddir):
        for n in names:
            if ".ko" in n:
                files[_mod_name(n)] = os.path.join(dirpath, n)
    return files


def module_bytes(path: str) -> bytes:
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


def module_depends(path: str) -> list[str]:
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", module_bytes(path))
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d] if m else []


def read_config(path: str) -> dict[str, str]:
    config = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("CONFIG_") and "=" in line:
                k, v = line.split("=", 1)
                config[k] = v
    return config


# ------------------------------------------------------------ the apt side

def _mirror(uri):
    """KPC_DEBIAN_MIRROR, refused unless it is one URI: it is pasted into
    sources.list, where a newline adds a source of the caller's choosing
    (say with [trusted=yes]) and a space or '[' adds options."""
    if not _MIRROR.fullmatch(uri):
        shown = repr(uri if len(uri) <= 80 else uri[:80] + "...")
        raise KernelError(f"KPC_DEBIAN_MIRROR: {shown} is not one http://, https:// or file: URI (no spaces, "
                          f"control characters, quotes, '[', ']' or '#')")
    return uri.rstrip("/")


def debian_uri(etc: str = "/etc/apt") -> str:
    """The Debian archive URI configured on this machine (not -security)."""
    env = os.environ.get("KPC_DEBIAN_MIRROR")
    if env:     # set and not empty
        return _mirror(env)
    found = []
    for path in sorted(glob.glob(f"{etc}/sources.list.d/*.sources")):
        try:
            text = open(path, encoding="utf-8").read()
        except (OSError, UnicodeError):
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
        except (OSError, UnicodeError):
            continue
        for line in lines:
            line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb" and _DEBIAN_SUITE.match(line[2]):
                found.append(line[1])
    for uri in found:
        if re.search(r"[\x00-\x20\x7f\[\]#]", uri):
            continue
        return uri.rstrip("/")
    raise KernelError("no Debian archive is configured in /etc/apt (a 'deb URI bookworm main' line or a "
                      ".sources stanza); set KPC_DEBIAN_MIRROR=URI of a Debian mirror")


def check_cache() -> str:
    """Check the cache and the directories a guest run uses in it before
    anything is fetched or booted (one line and exit 2 when someone else
    controls them, not a guest failure later). Returns the cache root."""
    for sub in ("kernels", "initramfs"):
        _cache(sub)
    return _cache()


def _cache(*parts):
    """The kernel cache or a subdirectory, checked (paths.cache_dir)."""
    try:
        return paths.cache_dir(*parts, root=CACHE)
    except paths.PrivateDirError as e:
        raise KernelError(str(e)) from None


@contextlib.contextmanager
def _locked(cache):
    """Hold the cache's fetch lock: apt's lists, its download directory and
    kernels/ are shared by every run using this cache. (apt's own lock on
    its lists makes a second apt-get update fail at once; kpc waits.)"""
    path = os.path.join(cache, "kernels.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise KernelError(f"kernel cache: {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise KernelError(f"kernel cache: {path} is not a file of yours: remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"kernels: waiting for another kpc that is fetching into {cache}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _sandbox_user():
    """(uid, gids) apt's download methods run as: apt drops to _apt when
    it runs as root, and cannot when it does not (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        raise KernelError(f"there is no user {SANDBOX_USER}: apt would download kpc's kernels as root "
                          f"(reinstall apt, which creates it)") from None
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if SANDBOX_USER in g.gr_mem}
    return pw.pw_uid, gids


def _blocks(path, uid, gids):
    """The first directory on the way to `path` (itself included) that
    uid/gids cannot search, with its mode; None when it can reach it."""
    cur = "/"
    for part in [""] + [p for p in os.path.realpath(path).split("/") if p]:
        cur = os.path.join(cur, part)
        st = os.stat(cur)
        bit = 0o100 if st.st_uid == uid else 0o010 if st.st_gid in gids else 0o001
        if not st.st_mode & bit:
            return cur, stat.S_IMODE(st.st_mode)
    return None


def _sandbox_dir(path, user):
    """A directory apt's download methods write into, made as apt makes
    its own partial/: owned by _apt, mode 0700 (by the caller when not
    root). Anything else there (a symlink, another user's directory) is
    refused."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        try:
            paths.check_private(path, os.lstat(path))
        except paths.PrivateDirError as why:
            raise KernelError(f"kernel cache: {why}") from None
        raise KernelError(f"kernel cache: {path}: {e.strerror}") from None
    try:
        owners = (os.geteuid(), user[0]) if user else (os.geteuid(),)
        st = os.fstat(fd)
        if st.st_uid not in owners:
            raise KernelError(f"kernel cache: {path} is owned by uid {st.st_uid}, not by you or {SANDBOX_USER}: "
                              f"remove it")
        if user:
            os.fchown(fd, user[0], 0)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path


@functools.lru_cache(maxsize=None)
def _error_mode():
    """apt >= 2.1.16 fails apt-get update on any failed index with
    APT::Update::Error-Mode=any; older apt only warns (W: Failed to fetch),
    which update() also catches."""
    try:
        out = subprocess.run(["apt-get", "--version"], capture_output=True, text=True).stdout
    except OSError:
        return ()
    m = re.match(r"apt (\d+)\.(\d+)\.(\d+)", out)
    if m and tuple(int(g) for g in m.groups()) >= (2, 1, 16):
        return ("-o", "APT::Update::Error-Mode=any")
    return ()


def _apt(argv, cwd=None):
    """Run apt-get/apt-cache with kpc's options, never forever."""
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise KernelError(f"{argv[0]} {argv[-1]} did not finish in {APT_TIMEOUT_S // 60} min: try again") from None


def _apt_problems(text):
    """apt's error and warning lines (E:, W:, and the notice that a
    download ran unsandboxed), errors first."""
    lines = [ln.strip() for ln in text.splitlines()]
    errors = [ln for ln in lines if ln.startswith("E:")]
    warnings = [ln for ln in lines if ln.startswith("W:") or "unsandboxed" in ln]
    return errors + warnings


class Apt:
    """apt-get / apt-cache with a private state directory. Nothing of it
    is trusted unless the effective user owns it (paths.cache_dir);
    apt's partial/ directories and the download directory belong to
    _apt, which apt's download methods run as."""

    def __init__(self, root=None, arch="amd64"):
        if arch not in ARCHES:
            raise KernelError(f"architecture {arch!r}: kpc knows {', '.join(ARCHES)}")
        self.arch = arch
        self.root = root or _cache("apt" if arch == "amd64" else f"apt-{arch}")
        self.user = _sandbox_user()
        for d in ("etc", "lists", "archives"):
            try:
                paths.private_dir(os.path.join(self.root, d))
            except (paths.PrivateDirError, OSError) as e:
                raise KernelError(f"kernel cache: {e}") from None
        for d in ("lists/partial", "lists/auxfiles", "archives/partial"):
            _sandbox_dir(os.path.join(self.root, d), self.user)
        if self.user:
            blocked = _blocks(os.path.join(self.root, "lists"), *self.user)
            if blocked:
                raise KernelError(f"kernel cache: apt downloads as user {SANDBOX_USER}, which cannot enter "
                                  f"{blocked[0]} (mode {blocked[1]:04o}) on the way to {self.root}: set "
                                  f"KPC_CACHE_DIR to a directory it can reach (such as /var/cache/kpc) or "
                                  f"chmod o+x {blocked[0]}")
        self.sources = os.path.join(self.root, "etc", "sources.list")

    def _opts(self):
        r = self.root
        return ["-o", f"Dir::Etc::SourceList={self.sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
                "-o", f"Dir::State::Lists={r}/lists", "-o", f"Dir::Cache={r}",
                "-o", f"Dir::Cache::Archives={r}/archives",
                # apt-cache reads the lists once into pkgcache.bin, not on each call (Docker images turn it off)
                "-o", "Dir::Cache::pkgcache=pkgcache.bin", "-o", "Dir::Cache::srcpkgcache=",
                "-o", "Dir::State::status=/dev/null", "-o", f"APT::Architecture={self.arch}",
                "-o", f"APT::Architectures::={self.arch}", "-o", "Acquire::Languages=none",
                # downloads in apt's sandbox and kpc's sources signed, whatever the machine's apt.conf says
                "-o", f"APT::Sandbox::User={SANDBOX_USER}",
                "-o", "Acquire::AllowInsecureRepositories=false",
                "-o", "Acquire::AllowDowngradeToInsecureRepositories=false",
                "-o", "APT::Get::AllowUnauthenticated=false"]

    def write_sources(self, uri: str) -> bool:
        if not os.path.exists(KEYRING):
            raise KernelError(f"{KEYRING} is missing: install debian-archive-keyring "
                              f"(apt verifies the kernels with it)")
        text = "".join(f"deb [signed-by={KEYRING}] {uri} {s} main\n" for s in SUITES)
        try:
            with open(self.sources, encoding="utf-8") as f:
                old = f.read()
        except FileNotFoundError:
            old = None
        if old == text:
            return False
        fd, tmp = tempfile.mkstemp(prefix=".sources.", dir=os.path.dirname(self.sources))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(fd, 0o644)
            f.write(text)
        os.rename(tmp, self.sources)
        return True

    def lists_age_s(self) -> float | None:
        stamps = glob.glob(os.path.join(self.root, "lists", "*_InRelease"))
        if len(stamps) < len(SUITES):
            return None
        return time.time() - min(os.path.getmtime(p) for p in stamps)

    def update(self) -> None:
        """apt-get update; any index that failed to download or verify is
        an error (an unreachable signed source next to a reachable other one
        was only a warning)."""
        proc = _apt(["apt-get", *self._opts(), *_error_mode(), "-q", "update"])
        problems = _apt_problems(proc.stdout + proc.stderr)
        if proc.returncode != 0 or problems:
            why = problems[0] if problems else f"exit {proc.returncode}"
            raise KernelError(f"apt-get update of kpc's own package lists ({self.root}) failed: {why}")
        for s in SUITES:
            touch = glob.glob(os.path.join(self.root, "lists", f"*_dists_{s}_InRelease"))
            for t in touch:
                os.utime(t)

    def madison(self, pkg: str) -> list[tuple[str, str]]:
        """[(version, suite)] for a package."""
        proc = _apt(["apt-cache", *self._opts(), "madison", pkg])
        if proc.returncode != 0:
            raise KernelError(f"apt-cache madison {pkg}: {' '.join(proc.stderr.split())}")
        rows = []
        for line in proc.stdout.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) >= 3:
                m = re.search(r"\s(\w+)/main", parts[2])
                rows.append((parts[1], m.group(1) if m else "?"))
        return rows

    def show(self, pkg: str, version: str) -> dict[str, str]:
        proc = _apt(["apt-cache", *self._opts(), "show", f"{pkg}={version}"])
        if proc.returncode != 0:
            raise KernelError(f"apt-cache show {pkg}={version}: {' '.join(proc.stderr.split())}")
        fields, key = {}, None
        for line in proc.stdout.split("\n\n")[0].splitlines():
            if line.startswith(" ") and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, v = line.split(":", 1)
                fields[key] = v.strip()
        return fields

    def download_dir(self) -> str:
        """An empty directory for apt-get download that apt's sandbox user
        can write (apt-get download writes into its working directory)."""
        path = os.path.join(self.root, "download")
        if os.path.lexists(path):
            shutil.rmtree(path)
        return _sandbox_dir(path, self.user)

    def download(self, pkg: str, version: str, dest: str) -> str:
        """apt-get download into `dest` (download_dir): apt checks the
        size and SHA256 from the signed lists."""
        proc = _apt(["apt-get", *self._opts(), "-q", "download", f"{pkg}={version}"], cwd=dest)
        problems = _apt_problems(proc.stdout + proc.stderr)
        if proc.returncode != 0 or problems:
            why = problems[0] if problems else f"exit {proc.returncode}"
            raise KernelError(f"apt-get download {pkg}={version} failed: {why}")
        debs = glob.glob(os.path.join(dest, f"{glob.escape(pkg)}_*.deb"))
        if len(debs) != 1:
            raise KernelError(f"apt-get download {pkg}={version} left {len(debs)} .deb files in {dest}, not one")
        return debs[0]


def _take(src, dest_dir, sha256):
    """Copy a downloaded .deb out of the sandbox's directory into kpc's own,
    checking the copy's SHA256 against the signed index's: what is
    extracted is what apt verified, whatever _apt does after."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise KernelError(f"{src}: {e.strerror}") from None
    dest = os.path.join(dest_dir, os.path.basename(src))
    h = hashlib.sha256()
    with os.fdopen(fd, "rb") as fin, open(dest, "xb") as fout:
        if not stat.S_ISREG(os.fstat(fin.fileno()).st_mode):
            raise KernelError(f"{src} is not a regular file")
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            h.update(chunk)
            fout.write(chunk)
    if h.hexdigest() != sha256:
        raise KernelError(f"{os.path.basename(src)}: SHA256 {h.hexdigest()} is not the signed index's {sha256}")
    return dest


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


def fresh_lists(apt: Apt, refresh: bool | None = None, uri: str | None = None) -> Apt:
    """`apt` with its lists written and refreshed when missing, changed or
    older than LISTS_MAX_AGE_S (the caller holds the cache's lock)."""
    changed = apt.write_sources(uri or debian_uri())
    age = apt.lists_age_s()
    if refresh or changed or age is None or age > LISTS_MAX_AGE_S:
        say(f"apt: refreshing the {apt.arch} package lists of {', '.join(SUITES)} (kpc's own, in "
            f"{os.path.relpath(apt.root)})")
        try:
            apt.update()
        except KernelError as e:
            if refresh or changed or age is None:
                raise
            say(f"{e}; using the lists verified {age / 3600:.0f} h ago")
    return apt


def resolve(requests: list[str], refresh: bool | None = None, apt: Apt | None = None,
            uri: str | None = None) -> tuple[Apt, list[tuple[str, str, str]]]:
    """Map each request (a version series like "6.1" or "7", or a suite
    name like "trixie") to (suite, version) of linux-image-cloud-<apt.arch>.
    A failed refresh is an error, except the periodic one of lists that
    were complete and verified before (then they are used, and said so)."""
    apt = fresh_lists(apt or Apt(), refresh, uri)
    available = apt.madison(meta(apt.arch))
    chosen = []
    for req in requests:
        hits = [(v, s) for v, s in available if _matches(req, v, s)]
        if not hits:
            have = ", ".join(f"{v} ({s})" for v, s in available) or "none"
            raise KernelError(f"no Debian cloud-{apt.arch} kernel matches '{req}'; available: {have}")
        chosen.append((req, *hits[0]))
    return apt, chosen


def fetch_debian(requests: list[str], refresh: bool | None = None, arch: str = "amd64",
                 label: Callable[[str], str] | None = None) -> list[Kernel]:
    """Kernels for version requests, downloading and extracting what is not
    in the cache yet, one kpc at a time per cache. The mirror is checked
    before anything is created or run. `label(request)`: the column's name
    (default: the request)."""
    uri = debian_uri()
    cache = check_cache()
    with _locked(cache):
        apt, chosen = resolve(requests, refresh, Apt(arch=arch), uri)
        return [_fetch_one(apt, label(req) if label else req, version, suite, refresh)
                for req, version, suite in chosen]


def _packages(apt, version):
    """{"pkg=version": SHA256 in the signed index} of the packages that make
    up the kernel: the meta package's pinned dependencies, followed down
    (meta packages, no version in the name, hold nothing)."""
    todo, seen, debs = [(meta(apt.arch), version)], [], {}
    while todo:
        pkg, ver = todo.pop()
        if (pkg, ver) in seen:
            continue
        seen.append((pkg, ver))
        fields = apt.show(pkg, ver)
        todo += _pinned_deps(fields)
        if re.search(r"-\d+\.\d+", pkg):
            if not re.fullmatch(r"[0-9a-f]{64}", fields.get("SHA256", "")):
                raise KernelError(f"the index lists no SHA256 for {pkg}={ver}")
            debs[f"{pkg}={ver}"] = fields["SHA256"]
    return debs


def cache_name(suite: str, version: str, arch: str = "amd64") -> str:
    """kernels/<this>: amd64 keeps the names older kpcs made."""
    return f"{suite}-{version}" if arch == "amd64" else f"{arch}-{suite}-{version}"


def _fetch_one(apt, label, version, suite, refresh=None):
    name = cache_name(suite, version, apt.arch)
    cache = os.path.join(_cache("kernels"), name)
    debs = _packages(apt, version)
    if os.path.lexists(cache):
        try:
            return _cached(cache, label, debs)
        except _Outdated as e:
            say(f"kernel {label}: {e}; fetching it again")
        except KernelError as e:
            if not refresh:
                raise
            say(f"kernel {label}: {e}; fetching it again (--refresh-kernels)")
    for stale in glob.glob(os.path.join(os.path.dirname(cache), f".{glob.escape(name)}.*")):
        shutil.rmtree(stale, ignore_errors=True)      # a killed fetch's (the lock is ours)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=os.path.dirname(cache))
    try:
        say(f"kernel {label}: downloading {', '.join(p.split('=')[0] for p in debs)} ({suite} {version} {apt.arch})")
        dl = apt.download_dir()
        files = [_take(apt.download(*p.split("=", 1), dl), tmp, sha) for p, sha in debs.items()]
        shutil.rmtree(dl, ignore_errors=True)
        info = _extract(files, tmp, suite, version, debs, apt.arch)
        if os.path.islink(cache) or os.path.isfile(cache):
            os.unlink(cache)
        elif os.path.lexists(cache):
            shutil.rmtree(cache)
        os.rename(os.path.join(tmp, "keep"), cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _kernel_from(cache, info, label)


def _extract(debs_files, tmp, suite, version, debs, arch="amd64"):
    """Unpack the .debs in tmp/root, keep what booting needs in tmp/keep
    (image, config, modules tree) with its stamp; returns the stamp."""
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    for deb in debs_files:
        proc = subprocess.run(["dpkg-deb", "-x", deb, root], capture_output=True, text=True)
        if proc.returncode != 0:
            raise KernelError(f"dpkg-deb -x {deb}: {' '.join(proc.stderr.split())}")
    # /boot/vmlinuz-R (up to 6.x) or /usr/lib/modules/R/vmlinuz (7.x).
    images = sorted(glob.glob(os.path.join(root, "boot", "vmlinuz-*")))
    if images:
        release = os.path.basename(images[0])[len("vmlinuz-"):]
    else:
        images = sorted(glob.glob(os.path.join(root, "usr", "lib", "modules", "*", "vmlinuz")))
        if not images:
            raise KernelError(f"{suite} {version}: no vmlinuz in {', '.join(debs)}")
        release = os.path.basename(os.path.dirname(images[0]))
    if not _RELEASE.fullmatch(release):
        raise KernelError(f"{suite} {version}: '{release}' is not a kernel release")
    # Keep what booting needs; drop the rest (firmware, docs).
    keep = os.path.join(tmp, "keep")
    os.mkdir(keep, 0o755)
    os.chmod(keep, 0o755)
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
    info = {"format": STAMP_FORMAT, "release": release, "suite": suite, "version": version, "arch": arch,
            "packages": list(debs), "debs": debs, "files": _hash_tree(keep)}
    with open(os.path.join(keep, STAMP), "x") as f:
        json.dump(info, f, indent=1)
    return info


def _hash_tree(top):
    """{path relative to top: SHA256} of every regular file under top."""
    out = {}
    for dirpath, _, names in os.walk(top):
        for n in names:
            path = os.path.join(dirpath, n)
            if stat.S_ISREG(os.lstat(path).st_mode):
                out[os.path.relpath(path, top)] = sha256_file(path)
    return out


class _Outdated(KernelError):
    """A cached kernel from an older kpc (no hashes): fetched again."""


def _cached(cache, label, debs):
    """The cached kernel, if its directory is private, its stamp names
    the packages the signed index lists for this version, with their
    SHA256, and its image is the one extracted from them."""
    try:
        paths.private_dir(cache)
    except (paths.PrivateDirError, OSError) as e:
        raise KernelError(f"kernel cache: {e}") from None
    stamp = os.path.join(cache, STAMP)
    try:
        fd = os.open(stamp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, encoding="utf-8") as f:
            info = json.load(f)
    except FileNotFoundError:
        raise _Outdated(f"{cache} has no {STAMP}") from None
    except (OSError, ValueError) as e:
        raise KernelError(f"kernel {label}: {stamp} is unreadable ({e}): run with --refresh-kernels") from None
    if not isinstance(info, dict) or info.get("format") != STAMP_FORMAT:
        raise _Outdated(f"{cache} was extracted by an older kpc (no hashes)")
    if info.get("debs") != debs:
        raise KernelError(f"kernel {label}: {cache} was not extracted from the packages the signed index lists "
                          f"({', '.join(debs)}) or their SHA256 differ: run with --refresh-kernels to fetch it again")
    if not isinstance(info.get("files"), dict) or not isinstance(info.get("release"), str) \
            or not _RELEASE.fullmatch(info["release"]):
        raise KernelError(f"kernel {label}: {stamp} is malformed: run with --refresh-kernels")
    return _kernel_from(cache, info, label)


def _kernel_from(cache, info, label):
    """The Kernel in a cache directory; its image and config are checked
    against the stamp's hashes here, its modules when they are read."""
    cfg = os.path.join(cache, "config")
    mods = os.path.join(cache, "modules")
    k = Kernel(label=label, release=info["release"], image=os.path.join(cache, "vmlinuz"),
               modules=mods if os.path.isdir(mods) else None, config=None,
               config_source="no config in the package",
               origin=f"debian {info['suite']} {' '.join(info['packages'])}",
               arch=info.get("arch", "amd64"), home=cache, files=info["files"])
    k.checked(k.image)
    if os.path.exists(cfg):
        k.config = read_config(k.checked(cfg))
        k.config_source = "the config in " + next((p for p in info['packages']
                                                   if re.search(r'-\d+\.\d+', p.split('=')[0])), info['packages'][0])
    return k


def from_path(spec: str) -> Kernel:
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
