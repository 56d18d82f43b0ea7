"""TOML for the case metadata on every Python kpc supports (3.9 and up).

Python 3.11 has tomllib. Before it, Debian's python3-tomli is the same
parser under its older name (Ubuntu 22.04, Debian 12 for Python 3.10
backports); Debian 11 has no python3-tomli, only python3-toml (toml 0.10:
TOML 0.5, its own API, and on malformed text it can raise more than its
own error). Whichever is found, a malformed file is one TOMLError."""

from __future__ import annotations

import importlib

# The modules in the order they are tried, and the Debian package of each.
PARSERS = (("tomllib", None), ("tomli", "python3-tomli"), ("toml", "python3-toml"))
PACKAGES = tuple(pkg for _, pkg in PARSERS if pkg)


class TOMLError(ValueError):
    pass


_parser = None


def parser() -> str | None:
    """The name of the module that reads TOML here, or None."""
    global _parser
    if _parser is None:
        for name, _ in PARSERS:
            try:
                importlib.import_module(name)
            except ImportError:
                continue
            _parser = name
            break
    return _parser


def missing_message() -> str:
    return ("Python < 3.11 reads TOML with Debian's python3-tomli (or, where there is none, as on Debian 11, "
            "python3-toml): run kpc as root once to install it, or: sudo apt-get install python3-tomli")


def loads(text: str) -> dict:
    name = parser()
    if name is None:
        raise TOMLError(missing_message())
    mod = importlib.import_module(name)
    if name == "toml":
        try:
            return mod.loads(text)
        except Exception as e:  # noqa: BLE001 - toml 0.10 raises IndexError, TypeError... on bad text
            raise TOMLError(f"{type(e).__name__}: {e}" if not isinstance(e, mod.TomlDecodeError) else str(e)) from None
    try:
        return mod.loads(text)
    except mod.TOMLDecodeError as e:
        raise TOMLError(str(e)) from None
