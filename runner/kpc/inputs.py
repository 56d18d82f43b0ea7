"""Reading kpc's own input files (expected tables, case metadata).

They are trusted to be kpc's, not to be well-formed: a directory, a FIFO or
a device where a file should be, or bytes that are not UTF-8, must be an
input error naming the file (exit 2), never a traceback, a hang on a FIFO
or an endless read of /dev/zero."""

from __future__ import annotations

import os
import stat


class InputFileError(Exception):
    """str() is the message without the file name; the caller adds the name
    (and `line`, when the problem is on one line)."""

    def __init__(self, message, line=None):
        super().__init__(message)
        self.line = line

    def where(self, name: str) -> str:
        return f"{name}:{self.line}" if self.line else name


def read_text(path: str) -> str:
    """The file's text (UTF-8). Opens without blocking (a FIFO with no
    writer would wait forever) and reads only regular files."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise InputFileError(f"cannot open: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputFileError("is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError("is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError as e:
        raise InputFileError(f"cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputFileError(f"not UTF-8 (byte 0x{data[e.start]:02x})", line=line) from None


def list_dir(path: str) -> list[str]:
    """Sorted names in a directory; OSError becomes InputFileError."""
    try:
        return sorted(os.listdir(path))
    except OSError as e:
        raise InputFileError(e.strerror) from None
