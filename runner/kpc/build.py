"""System packages and the CMake build, on first use."""

from __future__ import annotations

import importlib
import os
import shutil
import stat
import subprocess
import sys

from . import paths, safefile, tomlread

# Debian/Ubuntu package -> what it provides (for the message).
BUILD_PACKAGES = {
    "cmake": "cmake",
    "ninja-build": "ninja",
    "g++": "C++20 compiler",
    "pkg-config": "pkg-config",
    "libfuse3-dev": "libfuse3 (FUSE test filesystem)",
    "libcap-dev": "libcap (capability checks)",
    "nlohmann-json3-dev": "JSON for the launcher",
    "python3-pytest": "pytest (the runner)",
}
TEST_PACKAGES = {
    "libgtest-dev": "GoogleTest (unit tests)",
}
# ./kpc selftest installs these too when it runs as root; otherwise it names
# them and goes on (the tests that need them skip, naming the package). The
# large optional ones (chromium, qemu-system-x86, musl-tools, the runtimes)
# are never installed by selftest: their tests skip, naming the package
# (pytest -rs lists every skip with its reason).
TEST_EXTRAS = {
    "python3-yaml": "YAML (the GitHub workflow's test)",
    "gpg": "gpg (the kernel fetch tests sign a local archive)",
    "gpg-agent": "gpg-agent (gpg makes the tests' key through it)",
    "strace": "strace (lab notes' demos)",
    "libcap2-bin": "capsh, getcap (lab notes' demos)",
    "procps": "ps (lab notes' demos)",
    "flake8": "flake8 (the Python lint test; clang-format, ~160 MB with LLVM, is left to CI)",
}
# --kernels: boot Debian kernels under QEMU (runner/kpc/guest.py).
VM_PACKAGES = {
    "qemu-system-x86": "qemu-system-x86_64 (boots the kernels)",
    "busybox-static": "busybox (the guest's shell and mount)",
    "debian-archive-keyring": "the keys apt verifies Debian's kernel packages with",
    "xz-utils": "xz (some kernels ship .ko.xz modules)",
    "zstd": "zstd (newer kernels may ship .ko.zst modules)",
}


class BuildError(Exception):
    pass


def say(msg: str) -> None:
    sys.stderr.write(f"kpc: {msg}\n")
    sys.stderr.flush()


def _installed(pkg):
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg], capture_output=True, text=True)
    except FileNotFoundError:
        return None  # not a dpkg system
    return out.returncode == 0 and out.stdout.startswith("ii")


def ensure_packages(with_tests: bool = False, install: bool = True, extra: dict | None = None) -> None:
    wanted = dict(BUILD_PACKAGES)
    if with_tests:
        wanted.update(TEST_PACKAGES)
    wanted.update(extra or {})
    if shutil.which("dpkg-query") is None:
        missing_cmds = [c for c in ("cmake", "c++", "pkg-config") if shutil.which(c) is None]
        if missing_cmds:
            raise BuildError(f"missing commands: {', '.join(missing_cmds)}; this is not a Debian/Ubuntu system, so "
                             f"install the equivalents of: {', '.join(wanted)}")
        return
    missing = [p for p in wanted if not _installed(p)]
    can_install = os.geteuid() == 0 and install and shutil.which("apt-get") is not None
    extras = [p for p in TEST_EXTRAS if with_tests and not _installed(p)]
    if extras and not can_install:
        say(f"not installed: {', '.join(f'{p} ({TEST_EXTRAS[p]})' for p in extras)}: the tests that need them "
            f"skip (sudo apt-get install {' '.join(extras)})")
    if not missing and not (extras and can_install):
        return
    if missing and not can_install:
        described = ", ".join(f"{p} ({wanted[p]})" for p in missing)
        raise BuildError(f"missing packages: {described}\n"
                         f"  install them with: sudo apt-get install {' '.join(missing)}")
    _apt_install(missing + extras)


def _apt_env():
    return dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def _apt_update():
    proc = subprocess.run(["apt-get", "update", "-q"], env=_apt_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"apt-get update -q failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def _apt_install(missing, updated=False):
    say(f"installing missing packages with apt-get: {' '.join(missing)}")
    if not updated:
        _apt_update()
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    proc = subprocess.run(cmd, env=_apt_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def _has_candidate(pkg):
    """apt knows a version of pkg it could install (after apt-get update)."""
    proc = subprocess.run(["apt-cache", "policy", pkg], capture_output=True, text=True)
    return any(line.strip().startswith("Candidate:") and "(none)" not in line for line in proc.stdout.splitlines())


def ensure_toml() -> None:
    """Python < 3.11 has no tomllib. As root on a dpkg system, install the
    first of tomlread.PACKAGES apt has (Debian 11 has python3-toml only) and
    say so; otherwise leave it: loading the cases then says what to install,
    in one line."""
    if tomlread.parser() is not None:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None or shutil.which("apt-cache") is None:
        return
    _apt_update()
    pkg = next((p for p in tomlread.PACKAGES if _has_candidate(p)), None)
    if pkg is None:
        raise BuildError(f"none of {', '.join(tomlread.PACKAGES)} can be installed with apt-get here: "
                         f"Python {sys.version_info[0]}.{sys.version_info[1]} needs one to read TOML "
                         f"(or Python >= 3.11)")
    _apt_install([pkg], updated=True)
    importlib.invalidate_caches()
    if tomlread.parser() is None:
        raise BuildError(f"{pkg} was installed but Python cannot import it")


def check_trusted(bdir: str | None = None) -> None:
    """kpc executes what the build directory holds -- as root, on a shared
    machine. Refuse one that someone else could have put programs into: the
    directory and its bin/, probes/ and testprobes/ must belong to you or to
    root and be writable by nobody else (KPC_BUILD_DIR can point anywhere)."""
    bdir = bdir or paths.build_dir()
    euid = os.geteuid()
    for path in (bdir, *(os.path.join(bdir, d) for d in ("bin", "probes", "testprobes")), paths.launcher()):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise BuildError(f"{path}: {e.strerror}") from None
        if stat.S_ISLNK(st.st_mode) and path != bdir:
            raise BuildError(f"{path} is a symlink: kpc runs only a build it can vouch for")
        if st.st_uid not in (euid, 0):
            raise BuildError(f"{path} belongs to uid {st.st_uid}, not to you or root: kpc would run whatever "
                             f"they put there (set KPC_BUILD_DIR to a build of your own)")
        if st.st_mode & 0o022 and not stat.S_ISLNK(st.st_mode):
            raise BuildError(f"{path} is writable by {'others' if st.st_mode & 0o002 else 'its group'}: kpc would "
                             f"run whatever they put there (chmod go-w it)")


def build(with_tests: bool = False) -> None:
    """Configure on first use, then an incremental build (a no-op when
    nothing changed). A build directory we cannot write (another user built
    it) is used as it is. Two kpc processes building the same directory take
    turns (an flock on BUILD/.kpc-build.lock): together they once linked a
    half-written libkpcprobe.a."""
    bdir = paths.build_dir()
    if os.path.isdir(bdir) and not os.access(bdir, os.W_OK):
        if not os.path.exists(paths.launcher()):
            raise BuildError(f"{bdir} is not writable and holds no build; set KPC_BUILD_DIR to a writable directory")
        say(f"{bdir} is not writable by this user: using the binaries already built there")
        return
    try:
        os.makedirs(bdir, exist_ok=True)
        fd = safefile.lock(bdir, LOCK_NAME, waiting=lambda: say(f"waiting for another kpc building in {bdir}"))
    except OSError as e:
        raise BuildError(f"cannot lock {os.path.join(bdir, LOCK_NAME)}: {e}") from None
    try:
        _configure_and_build(bdir, with_tests)
    finally:
        os.close(fd)


LOCK_NAME = ".kpc-build.lock"


def _configure_and_build(bdir, with_tests):
    if not os.path.exists(os.path.join(bdir, "CMakeCache.txt")):
        say(f"configuring the C++ build in {os.path.relpath(bdir, paths.ROOT)}/ (first run)")
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        _run(["cmake", "-S", paths.ROOT, "-B", bdir, *gen, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
              f"-DKPC_TESTS={'ON' if with_tests else 'OFF'}"])
        say("building probes and launcher")
    elif with_tests:
        _run(["cmake", "-S", paths.ROOT, "-B", bdir, "-DKPC_TESTS=ON"])
    _run(["cmake", "--build", bdir, "--parallel", str(os.cpu_count() or 2)])


def _run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
