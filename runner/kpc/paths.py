"""Where things are. KPC_BUILD_DIR overrides the build directory,
KPC_CASES_DIR the case metadata and expected tables (the probes are still
built from cases/), KPC_EXPECTED_DIR the expected tables alone (a
directory laid out like cases/: <area>/<id>.exp), KPC_CACHE_DIR the cache of kernels
and guest images (default images/cache/; CI keeps it outside the checkout
so downloads survive a clean clone)."""

from __future__ import annotations

import os
import pwd
import stat

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# KPC_CASES_DIR: another copy of cases/ for the metadata and tables (tests of bad metadata use it).
CASES = os.environ.get("KPC_CASES_DIR") or os.path.join(ROOT, "cases")
RESULTS = os.path.join(ROOT, "results")
# The expected tables, cases/<area>/<id>.exp beside each case's metadata.
# KPC_EXPECTED_DIR: try another set of tables, laid out the same way (the tests use it).
EXPECTED = os.environ.get("KPC_EXPECTED_DIR") or CASES
RUNNER = os.path.join(ROOT, "runner")


def build_dir() -> str:
    return os.environ.get("KPC_BUILD_DIR") or os.path.join(ROOT, "build")


def probe_dir() -> str:
    return os.path.join(build_dir(), "probes")


def launcher() -> str:
    return os.path.join(build_dir(), "bin", "kpc-launch")


# Kernel packages, extracted kernels, initramfs images, kpc's apt lists.
CACHE = os.environ.get("KPC_CACHE_DIR") or os.path.join(ROOT, "images", "cache")


class PrivateDirError(Exception):
    """A directory kpc would trust is unusable or someone else controls it."""


def _who(uid):
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def check_private(path: str, st: os.stat_result) -> None:
    """Refuse a directory another user could write: kpc boots and loads
    what the kernel cache holds, as root, so whoever can write a directory
    of it chooses the kernel. `st` is its lstat or fstat (a symlink is
    refused: the link's owner would choose where it points)."""
    euid = os.geteuid()
    if stat.S_ISLNK(st.st_mode):
        raise PrivateDirError(f"{path} is a symlink; kpc's cache directories must be real directories")
    if not stat.S_ISDIR(st.st_mode):
        raise PrivateDirError(f"{path} is not a directory")
    if st.st_uid != euid:
        raise PrivateDirError(f"{path} is owned by {_who(st.st_uid)}, not by you ({_who(euid)}): whoever owns "
                              f"it chooses what kpc boots; remove it or chown it")
    if st.st_mode & 0o022:
        raise PrivateDirError(f"{path} is writable by {'others' if st.st_mode & 0o002 else 'its group'} "
                              f"(mode {stat.S_IMODE(st.st_mode):04o}): whoever can write it chooses what kpc "
                              f"boots; chmod go-w it")


def private_dir(path: str) -> str:
    """`path` as a directory only the effective user can write: created
    0755 (whatever the umask) when missing, else checked. Checked through
    an O_NOFOLLOW descriptor, so what is checked is what is there."""
    created = False
    try:
        os.mkdir(path, 0o755)
        created = True
    except FileExistsError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        check_private(path, os.lstat(path))     # names a symlink or a file
        raise PrivateDirError(f"{path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if created and st.st_uid == os.geteuid():
            os.fchmod(fd, 0o755)
            st = os.fstat(fd)
        check_private(path, st)
    finally:
        os.close(fd)
    return path


def cache_dir(*parts: str, root: str | None = None) -> str:
    """The kernel and image cache (KPC_CACHE_DIR or images/cache) or a
    subdirectory of it, every level from the cache root down checked with
    private_dir (created when missing). Raises PrivateDirError."""
    top = os.path.realpath(root or CACHE)
    path = top
    try:
        os.makedirs(os.path.dirname(top), exist_ok=True)
        private_dir(top)
        for part in parts:
            path = os.path.join(path, part)
            private_dir(path)
    except PrivateDirError as e:
        raise PrivateDirError(f"kernel cache: {e}") from None
    except OSError as e:
        raise PrivateDirError(f"kernel cache: {path}: {e.strerror}") from None
    return path
