"""The suite cross-built for another architecture's guests (--arch arm64).

The host keeps its own build (build/: the host run, kpc-launch's facts,
ctest); an arm64 guest gets a second build, build-arm64/ (KPC_BUILD_DIR +
"-arm64"), made with cmake/aarch64-linux-gnu.cmake and Debian's
g++-aarch64-linux-gnu. Only when asked: nothing here runs without --arch.

The arm64 libraries come from a sysroot of extracted .debs, not from
multiarch: `dpkg --add-architecture arm64` plus libfuse3-dev:arm64 upgrades
amd64 packages to match (Multi-Arch: same), and busybox-static:arm64 cannot
be installed next to the amd64 one at all. kpc's private apt (the kernels'
one, APT::Architecture=arm64; kernels.Apt) downloads the host's Debian
suite's versions of SYSROOT_PACKAGES, checks each against the signed index's
SHA256 and extracts them into images/cache/sysroot-arm64/ with a stamp:

  libfuse3 and libcap    static archives and headers the probes link
  nlohmann-json3-dev     the launcher's JSON (headers; found in the sysroot)
  busybox-static         the guest's shell: busybox for arm64
  musl-dev               musl's libc.a and gcc specs for the musl tracee
                         (rewritten to point into the sysroot)
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import typing

from . import build, kernels, paths
from .build import say

TRIPLET = {"arm64": "aarch64-linux-gnu"}
TOOLCHAIN = {"arm64": os.path.join(paths.ROOT, "cmake", "aarch64-linux-gnu.cmake")}
SYSROOT_PACKAGES = ("libfuse3-dev", "libfuse3-3", "libcap-dev", "libcap2", "nlohmann-json3-dev",
                    "busybox-static", "musl-dev")
# Host packages a cross build and an arm64 guest need (apt-get installs them
# like the other VM packages; all are Architecture: amd64 or all).
HOST_PACKAGES = {
    "arm64": {
        "g++-aarch64-linux-gnu": "the aarch64 cross compiler (and binutils: strip)",
        "qemu-system-arm": "qemu-system-aarch64 (boots the arm64 kernels)",
    },
}
STAMP = "kpc-sysroot.json"


class CrossError(Exception):
    pass


def build_dir(arch: str) -> str:
    return paths.build_dir().rstrip("/") + f"-{arch}"


def strip_tool(arch: str) -> str:
    return f"{TRIPLET[arch]}-strip" if arch in TRIPLET else "strip"


def host_suite() -> str:
    """The Debian suite this machine runs (the cross compiler's libc is
    its): the sysroot's libraries come from the same suite."""
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    except OSError:
        fields = {}
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    if codename not in kernels.SUITES:
        raise CrossError(f"the arm64 libraries are taken from this machine's Debian suite, and "
                         f"'{codename or 'unknown'}' is not one of {', '.join(kernels.SUITES)}")
    return codename


def sysroot(arch: str, refresh: bool | None = None) -> str:
    """The extracted sysroot for `arch`: downloaded, verified and extracted
    on first use (and when the suite's packages changed), under the kernel
    cache's lock."""
    suite = host_suite()
    uri = kernels.debian_uri()
    cache = kernels.check_cache()
    try:
        with kernels._locked(cache):
            apt = kernels.fresh_lists(kernels.Apt(arch=arch), refresh, uri)
            debs = {}
            for pkg in SYSROOT_PACKAGES:
                versions = [v for v, s in apt.madison(pkg) if s == suite]
                if not versions:
                    raise CrossError(f"{pkg}:{arch} is not in Debian {suite}")
                sha = apt.show(pkg, versions[0]).get("SHA256", "")
                if not re.fullmatch(r"[0-9a-f]{64}", sha):
                    raise CrossError(f"the index lists no SHA256 for {pkg}={versions[0]}")
                debs[f"{pkg}={versions[0]}"] = sha
            top = kernels._cache(f"sysroot-{arch}")
            root = os.path.join(top, "root")
            try:
                with open(os.path.join(top, STAMP), encoding="utf-8") as f:
                    if json.load(f).get("debs") == debs and os.path.isdir(root):
                        return root
            except (OSError, ValueError):
                pass
            say(f"{arch} sysroot: downloading {', '.join(debs)} ({suite})")
            for old in (root, os.path.join(top, STAMP)):
                if os.path.isdir(old):
                    shutil.rmtree(old)
                elif os.path.lexists(old):
                    os.unlink(old)
            for stale in glob.glob(os.path.join(top, ".debs.*")):
                shutil.rmtree(stale, ignore_errors=True)      # a killed fetch's (the lock is ours)
            tmp = tempfile.mkdtemp(prefix=".debs.", dir=top)
            try:
                dl = apt.download_dir()
                files = []
                for p, sha in debs.items():
                    pkg, version = p.split("=", 1)
                    files.append(kernels._take(apt.download(pkg, version, dl), tmp, sha))
                shutil.rmtree(dl, ignore_errors=True)
                staging = os.path.join(tmp, "root")
                os.mkdir(staging, 0o755)
                for deb in files:
                    proc = subprocess.run(["dpkg-deb", "-x", deb, staging], capture_output=True, text=True)
                    if proc.returncode != 0:
                        raise CrossError(f"dpkg-deb -x {os.path.basename(deb)}: {' '.join(proc.stderr.split())}")
                _musl_specs(staging, root, arch)
                os.rename(staging, root)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            with open(os.path.join(top, STAMP), "x", encoding="utf-8") as f:
                json.dump({"suite": suite, "arch": arch, "debs": debs}, f, indent=1)
            return root
    except kernels.KernelError as e:
        raise CrossError(str(e)) from None


def _musl_specs(staging, final, arch):
    """musl-dev's gcc specs name /usr/lib/<triplet-musl> and
    /usr/include/<triplet-musl>: a copy that names the sysroot's (Debian's
    musl-gcc wrapper is only `gcc -specs FILE`). `final`: where the
    staging directory will be."""
    musl = TRIPLET[arch].replace("-gnu", "-musl")
    specs = os.path.join(staging, "usr", "lib", musl, "musl-gcc.specs")
    if not os.path.exists(specs):
        return
    with open(specs, encoding="utf-8") as f:
        text = f.read()
    for d in ("/usr/lib/", "/usr/include/"):
        text = text.replace(f"{d}{musl}", f"{final}{d}{musl}")
    with open(os.path.join(staging, "usr", "lib", musl, "kpc-musl-gcc.specs"), "w", encoding="utf-8") as f:
        f.write(text)


def musl_specs(root: str, arch: str) -> str | None:
    path = os.path.join(root, "usr", "lib", TRIPLET[arch].replace("-gnu", "-musl"), "kpc-musl-gcc.specs")
    return path if os.path.exists(path) else None


class Build(typing.NamedTuple):
    """An architecture's cross build and the sysroot it was built against."""
    build_dir: str
    sysroot: str


def ensure(arch: str, no_build: bool = False, refresh: bool | None = None) -> Build:
    """The cross build for `arch` (configured on first use, then an
    incremental build), and its sysroot: a Build."""
    bdir = build_dir(arch)
    if no_build:
        if not os.path.exists(os.path.join(bdir, "bin", "kpc-launch")):
            raise CrossError(f"--no-build: there is no {arch} build in {bdir} (run once without --no-build)")
        root = os.path.join(kernels.CACHE, f"sysroot-{arch}", "root")
        if not os.path.isdir(root):
            raise CrossError(f"--no-build: there is no {arch} sysroot in {root} (run once without --no-build)")
        build.check_trusted(bdir)
        return Build(bdir, root)
    if shutil.which(f"{TRIPLET[arch]}-g++") is None:
        raise CrossError(f"{TRIPLET[arch]}-g++ is missing: install g++-{TRIPLET[arch]}")
    root = sysroot(arch, refresh)
    os.makedirs(bdir, exist_ok=True)
    fd = build.safefile.lock(bdir, build.LOCK_NAME, waiting=lambda: say(f"waiting for another kpc building in {bdir}"))
    try:
        if not os.path.exists(os.path.join(bdir, "CMakeCache.txt")):
            say(f"configuring the {arch} cross build in {os.path.relpath(bdir, paths.ROOT)}/ (first run)")
            gen = ["-G", "Ninja"] if shutil.which("ninja") else []
            specs = musl_specs(root, arch)
            musl = [f"-DKPC_MUSL_GCC:FILEPATH={shutil.which(TRIPLET[arch] + '-gcc')}",
                    f"-DKPC_MUSL_FLAGS=-specs={specs}"] if specs else []
            _run(["cmake", "-S", paths.ROOT, "-B", bdir, *gen, "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DKPC_TESTS=OFF",
                  f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN[arch]}", f"-DKPC_SYSROOT={root}", *musl])
            say(f"building probes and launcher for {arch}")
        _run(["cmake", "--build", bdir, "--parallel", str(os.cpu_count() or 2)])
    finally:
        os.close(fd)
    build.check_trusted(bdir)
    return Build(bdir, root)


def _run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CrossError(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")


def busybox(root: str) -> str:
    path = os.path.join(root, "bin", "busybox")
    if not os.path.isfile(path):
        raise CrossError(f"{path} is missing: the sysroot lacks busybox-static")
    return path


def binaries(bdir: str) -> dict[str, str]:
    """{host build path: cross build path} for every executable of the
    cross build: the guest image holds them at the host build's paths, so
    a plan made on the host runs unchanged."""
    out = {}
    for sub in ("probes", "bin", "testprobes"):
        for p in sorted(glob.glob(os.path.join(bdir, sub, "*"))):
            if os.path.isfile(p) and os.access(p, os.X_OK):
                out[os.path.join(paths.build_dir(), sub, os.path.basename(p))] = p
    return out
