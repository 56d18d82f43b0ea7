"""What kpc says to its user, and with which exit code.

Exit codes: 0 every run passed, xfailed or skipped; 1 a fail, hang or error
verdict (or a failing selftest, or a regression in `kpc diff`); 2 bad usage
or bad input (case metadata, expected tables, a results file, a build that
cannot be made, an output file kpc will not write); 3 an internal error (a
bug in kpc: never read as a fail or a regression); 130 interrupted.
"""

from __future__ import annotations

import re
import sys

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 128 + 13   # SIGPIPE, as a shell reports a reader that went away


class InputError(Exception):
    """Bad usage or bad input files: exit code 2."""


# C0/C1 controls (ESC starts terminal escapes, CR rewrites the line, LF
# makes a second line), DEL, lone surrogates (undecodable bytes of a path),
# and Unicode's invisible format and line-separator characters.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def printable(text: str) -> str:
    """Text for the terminal: every unprintable character as its Python
    escape (\\x1b, \\n), so input quoted in a message (a file name, a
    table row, a --runtime) can neither move the cursor, recolour, rewrite
    or add lines, nor hide what it is."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


def say(msg: str) -> None:
    sys.stderr.write(f"kpc: {printable(str(msg))}\n")
