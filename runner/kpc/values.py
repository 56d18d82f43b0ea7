"""Typed observation values and their canonical text forms.

A probe records each value with a type (bool, int, str, errno, sigset). The
expected tables hold plain text; before comparing, both sides are put in the
type's canonical form, so `SIGTERM|SIGUSR1` equals `SIGUSR1|SIGTERM`.
Signal naming matches the C++ library (cases/lib/src/signals.cc): standard
signals by name, real-time signals by number (SIG34).
"""

SIGNAL_NAMES = [
    "", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
    "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
    "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
    "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
]
MAX_SIGNAL = 64
TYPES = ("bool", "int", "str", "errno", "sigset")


class ValueError_(ValueError):
    """A table value that cannot be read as the observation's type."""


def signal_name(sig):
    if 1 <= sig < len(SIGNAL_NAMES):
        return SIGNAL_NAMES[sig]
    if 32 <= sig <= MAX_SIGNAL:
        return f"SIG{sig}"
    raise ValueError_(f"no signal {sig}")


def signal_number(name):
    """'SIGTERM', 'TERM', 'SIG34', '34' -> int; raises ValueError_."""
    text = name.strip()
    bare = text[3:] if text.startswith("SIG") else text
    if bare.isdigit():
        n = int(bare)
        if 1 <= n <= MAX_SIGNAL:
            return n
    for i, full in enumerate(SIGNAL_NAMES):
        if i and full[3:] == bare:
            return i
    raise ValueError_(f"unknown signal '{name}'")


def parse_sigset(text):
    """'SIGINT|SIGTERM' or 'none' -> bitmask (bit N-1 = signal N)."""
    text = text.strip()
    if text == "none":
        return 0
    mask = 0
    for item in text.split("|"):
        if not item:
            raise ValueError_(f"malformed signal set '{text}'")
        mask |= 1 << (signal_number(item) - 1)
    return mask


def format_sigset(mask):
    names = [signal_name(s) for s in range(1, MAX_SIGNAL + 1) if mask >> (s - 1) & 1]
    return "|".join(names) if names else "none"


def canonical(vtype, value):
    """Canonical text of a value of `vtype`; `value` is an observed JSON value
    or a table's text. Raises ValueError_ when it does not fit the type."""
    if vtype == "bool":
        if isinstance(value, bool):
            return "true" if value else "false"
        if value in ("true", "false"):
            return value
        raise ValueError_(f"'{value}' is not a bool (true/false)")
    if vtype == "int":
        if isinstance(value, bool):
            raise ValueError_(f"'{value}' is not an int")
        try:
            return str(int(value))
        except (TypeError, ValueError):
            raise ValueError_(f"'{value}' is not an int") from None
    if vtype == "sigset":
        return format_sigset(parse_sigset(str(value)))
    if vtype == "errno":
        text = str(value)
        if not (text.startswith("E") and text[1:].replace("_", "").isalnum() and text.isupper()):
            raise ValueError_(f"'{value}' is not an errno name such as ENOMEM")
        return text
    if vtype == "str":
        return str(value)
    raise ValueError_(f"unknown value type '{vtype}'")
