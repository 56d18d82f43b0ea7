"""Kernel versions: '6.18.44-fc-v595' -> (6, 18, 44)."""

from __future__ import annotations

import re

_VERSION = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def parse(text: str) -> tuple[int, ...]:
    """Leading numeric part of a kernel release, padded to three numbers.
    Raises ValueError for text that does not start with a number."""
    m = _VERSION.match(text.strip())
    if not m:
        raise ValueError(f"not a kernel version: '{text}'")
    return tuple(int(g) if g is not None else 0 for g in m.groups())


def show(version: tuple[int, ...]) -> str:
    major, minor, patch = version
    return f"{major}.{minor}" if patch == 0 else f"{major}.{minor}.{patch}"
