"""Quotes in case metadata, checked against the man pages installed from
Debian's manpages / manpages-dev packages.

A quote is "SOURCE: words ... words": SOURCE is `page(N)`, optionally
followed by a label that is not part of the quote (`prctl(2)
PR_SET_PDEATHSIG: ...`); the words are fragments of the page's text, in
order, separated by "..." where the quote leaves something out. Each
fragment must occur verbatim (apart from line breaks and spacing) in the
page as `man` renders it. Quotes from other sources (kernel documentation,
mail, POSIX) are listed as not checked: there is no installed copy to
check them against.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import cases

MAN_DIR = "/usr/share/man"
_SOURCE = re.compile(r"^([a-z_][a-z0-9_.-]*)\((\d)\)([^:]*):\s+(.*)$", re.S)
_FOLD = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2014": "-", "\u2013": "-",
                       "\u2010": "-", "\u2212": "-", "\u00a0": " "})


class NotInstalled(Exception):
    """The man pages (or `man`) are not on this machine."""


def split_quote(quote: str) -> tuple[str, str, list[str]] | None:
    """'page(N) label: a ... b' -> ('page', 'N', ['a', 'b']); None when the
    source is not a man page."""
    m = _SOURCE.match(quote.strip())
    if not m:
        return None
    fragments = [f.strip() for f in re.split(r"\s*(?:\.\.\.|\u2026)\s*", m.group(4)) if f.strip()]
    return m.group(1), m.group(2), fragments


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.translate(_FOLD)).strip()


def available() -> str | None:
    """Why quotes cannot be checked here, or None."""
    if shutil.which("man") is None:
        return "`man` is not installed (apt install man-db)"
    if not os.path.exists(os.path.join(MAN_DIR, "man2", "execve.2.gz")):
        return "Debian's man pages are not installed (apt install manpages manpages-dev)"
    return None


@functools.lru_cache(maxsize=None)
def page_text(page: str, section: str) -> str:
    """The page as `man` renders it, without hyphenation or justification,
    on one very long line per paragraph, normalised."""
    path = os.path.join(MAN_DIR, f"man{section}", f"{page}.{section}.gz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no man page {page}({section}) in {MAN_DIR} (is it in manpages or manpages-dev?)")
    env = {"PATH": "/usr/bin:/bin", "MANWIDTH": "10000", "LC_ALL": "C.UTF-8", "MAN_KEEP_FORMATTING": ""}
    out = subprocess.run(["man", "--nh", "--nj", "-l", path], capture_output=True, text=True, env=env, timeout=60)
    if out.returncode != 0 or not out.stdout.strip():
        raise FileNotFoundError(f"man could not render {path}: {out.stderr.strip()[:200]}")
    return normalise(out.stdout)


def check_quote(quote: str) -> str | None:
    """None when every fragment is in the page, in order; else what is
    wrong. Raises NotInstalled when nothing can be checked here."""
    parts = split_quote(quote)
    if parts is None:
        return None
    page, section, fragments = parts
    why = available()
    if why:
        raise NotInstalled(why)
    try:
        text = page_text(page, section)
    except FileNotFoundError as e:
        return str(e)
    at = 0
    for frag in fragments:
        i = text.find(normalise(frag), at)
        if i < 0:
            where = "" if text.find(normalise(frag)) < 0 else " (it is there, but before the previous fragment)"
            return f"not in {page}({section}){where}: \"{frag[:120]}\""
        at = i + len(normalise(frag))
    return None


def quotes_of(case: cases.Case) -> list[str]:
    q = case.provenance.get("quote")
    if not q:
        return []
    return [q] if isinstance(q, str) else list(q)


def is_man_quote(quote: str) -> bool:
    return split_quote(quote) is not None
