"""Files kpc writes as root where other users may also write (/tmp, a
shared checkout): results JSON, JUnit, reports, and the locks that keep two
kpc processes in one checkout from corrupting each other's build and results.

The rules (audit §9, §10): no predictable temporary name, no following a
symbolic link someone planted at the target, one directory looked up once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
import sys
from typing import Callable, Iterator


class UnsafePath(OSError):
    """A target kpc refuses to write (a symbolic link, a directory, a device
    or FIFO of another user). An OSError, so every caller that already turns
    a failed write into exit 2 does the same for a refusal."""

    def __str__(self):
        return self.args[0]


def write(path: str, data: str | bytes) -> None:
    """Write DATA (str or bytes) to PATH.

    '-' is standard output. An existing symbolic link at PATH is refused
    (give the file it points to, or '-'): as root in /tmp, a link someone
    else planted would make kpc overwrite whatever it points to. A character
    device or FIFO owned by root or the caller (/dev/null) is written
    through, never replaced; other non-regular files are refused. Otherwise
    the data goes to a new file with a random name created O_EXCL|O_NOFOLLOW
    in PATH's directory and is renamed over PATH: readers never see half a
    file and two writers never share a temporary file. The directory is
    opened once and both steps happen relative to that descriptor, so it
    cannot be swapped for a link between them (tempfile.mkstemp takes a path
    and would look the directory up twice)."""
    if path == "-":
        _to_stdout(data)
        return
    if isinstance(data, str):
        data = data.encode("utf-8")
    parent, name = os.path.split(os.path.abspath(path))
    if not name:
        raise UnsafePath(f"{path} is a directory")
    os.makedirs(parent, exist_ok=True)
    dfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            _write_through(dfd, name, path, st, data)
        else:
            _replace(dfd, name, data)
    finally:
        os.close(dfd)


def check(path: str) -> None:
    """Raise what write(PATH, ...) would refuse, before a caller spends a
    minute making the data (a bundle). Nothing is created; write() checks
    again when it writes."""
    if path == "-":
        return
    if not os.path.basename(os.path.abspath(path)):
        raise UnsafePath(f"{path} is a directory")
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        _refuse_unless_writable_through(path, st)


def _to_stdout(data):
    if isinstance(data, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        sys.stdout.write(data)
        sys.stdout.flush()


def _refuse_unless_writable_through(path, st):
    """A file that is not regular may be written only if it is a device or
    FIFO of root or the caller: refuse anything else (UnsafePath)."""
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        raise UnsafePath(f"refusing to write {path}: it is a symbolic link "
                         "(give the file it points to, or '-' for standard output)")
    if stat.S_ISDIR(mode):
        raise UnsafePath(f"{path} is a directory")
    if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        raise UnsafePath(f"refusing to write {path}: not a regular file, device or FIFO")
    if st.st_uid not in (0, os.geteuid()):
        raise UnsafePath(f"refusing to write {path}: a device or FIFO of uid {st.st_uid}, not yours")


def _write_through(dfd, name, path, st, data):
    """An existing device or FIFO: renaming over it would replace the device
    node itself (it once replaced /dev/null), so open it, without following
    a link and without blocking on a FIFO nobody reads, and check it is
    still the file that was looked at."""
    _refuse_unless_writable_through(path, st)
    fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise UnsafePath(f"refusing to write {path}: it was replaced while kpc opened it")
        os.set_blocking(fd, True)
        _write_all(fd, data)
    finally:
        os.close(fd)


def _replace(dfd, name, data):
    for _ in range(100):
        tmp = f".{name[:100]}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                         dir_fd=dfd)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temporary name for {name}")
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def lock(directory: str, name: str, waiting: Callable[[], None] | None = None) -> int:
    """An open descriptor of DIRECTORY/NAME holding an exclusive flock
    (closing it releases the lock). The file is created when missing, never
    through a symbolic link, and left in place: removing a lock file races
    with the next locker. WAITING(), when given, is called once if another
    process holds the lock, before waiting for it."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644,
                     dir_fd=dfd)
    finally:
        os.close(dfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"refusing to lock {os.path.join(directory, name)}: not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def flocked(directory: str, name: str, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """lock() for the duration of a with block."""
    fd = lock(directory, name, waiting)
    try:
        yield
    finally:
        os.close(fd)
