"""Typed observation values, their canonical text forms, and the answers
people write for them: the runner's one value vocabulary.

A probe records each value with a type (bool, int, str, errno, sigset). The
expected tables hold plain text; before comparing, both sides are put in the
type's canonical form, so `SIGTERM|SIGUSR1` equals `SIGUSR1|SIGTERM`.
Signal names come from the list the C++ library includes too
(cases/lib/include/kpc/signal_names.def): standard signals by name,
real-time signals by number (SIG34), because "SIGRTMIN" means 32 to the
kernel, 34 to glibc and 35 to musl.

A student's prediction is read in an answer *form* (FORMS below): what a
person writes for that kind of value. `Z (zombie)` is the state Z, `7` is
`exited 7` where a wait status is asked, `esrch` is ESRCH, `TERM,USR1` and
`0x4200` are the set SIGUSR1|SIGTERM, `SIGRTMIN+2` is glibc's SIG36. Each
form says what it expects and gives an example, so a prompt can show them.
"""

from __future__ import annotations

import dataclasses
import errno as errno_mod
import os
import re

SIGNAL_NAMES_DEF = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "cases", "lib", "include", "kpc", "signal_names.def")


def _read_signal_names(path: str) -> tuple[list[str], dict[str, str], int]:
    """kpc's one list of signal names (the C++ library includes the same
    file): names (index = number), each one's default action, and the
    highest signal number."""
    names, actions, top = [""], {}, None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.startswith("//"):
                continue
            m = re.fullmatch(r"KPC_SIGNAL\((\d+), (SIG[A-Z0-9]+), (Term|Core|Ign|Stop|Cont)\)"
                             r"|KPC_MAX_SIGNAL\((\d+)\)", line.strip())
            if not m or (m.group(1) and int(m.group(1)) != len(names)):
                raise RuntimeError(f"{path}:{n}: not KPC_SIGNAL({len(names)}, SIGNAME, Term|Core|Ign|Stop|Cont) "
                                   f"or KPC_MAX_SIGNAL(N)")
            if m.group(4):
                top = int(m.group(4))
            else:
                names.append(m.group(2))
                actions[m.group(2)] = m.group(3)
    if top is None:
        raise RuntimeError(f"{path}: no KPC_MAX_SIGNAL(N)")
    return names, actions, top


# DEFAULT_ACTION: signal(7)'s default action of each named signal (Term,
# Core, Ign, Stop, Cont); the real-time signals' default is Term.
SIGNAL_NAMES, DEFAULT_ACTION, MAX_SIGNAL = _read_signal_names(SIGNAL_NAMES_DEF)
GLIBC_SIGRTMIN = 34  # glibc keeps 32 and 33 for itself (SIGCANCEL, SIGSETXID)
ALL_SIGNALS = (1 << MAX_SIGNAL) - 1
TYPES = ("bool", "int", "str", "errno", "sigset")
_ALIASES = {"SIGIOT": 6, "SIGPOLL": 29, "SIGCLD": 17, "SIGUNUSED": 31}
_RT = re.compile(r"^(?:SIG)?RT(MIN|MAX)(?:([+-])(\d+))?$")
_BY_BARE_NAME = {full[3:]: i for i, full in enumerate(SIGNAL_NAMES) if i}   # "TERM" -> 15


class ValueError_(ValueError):
    """A table value (or an answer) that cannot be read as its type."""


def signal_name(sig: int) -> str:
    if 1 <= sig < len(SIGNAL_NAMES):
        return SIGNAL_NAMES[sig]
    if 32 <= sig <= MAX_SIGNAL:
        return f"SIG{sig}"
    raise ValueError_(f"no signal {sig}")


def signal_alias(sig: int) -> str:
    """What people call a signal kpc names by number: 'glibc SIGRTMIN+2'
    for 36, 'glibc-internal SIGCANCEL' for 32; '' for the named ones."""
    if sig == 32:
        return "glibc-internal SIGCANCEL"
    if sig == 33:
        return "glibc-internal SIGSETXID"
    if sig == MAX_SIGNAL:
        return "SIGRTMAX"
    if sig >= GLIBC_SIGRTMIN:
        return f"glibc SIGRTMIN+{sig - GLIBC_SIGRTMIN}"
    return ""


def signal_label(sig: int) -> str:
    """'SIG36 (glibc SIGRTMIN+2)'; a standard signal as its name."""
    alias = signal_alias(sig)
    return f"{signal_name(sig)} ({alias})" if alias else signal_name(sig)


def signal_number(name: str) -> int:
    """'SIGTERM', 'TERM', 'SIG34', '34', 'SIGRTMIN+2' (glibc: 36),
    'SIGRTMAX' -> int; raises ValueError_. Upper case, as tables write it."""
    text = name.strip()
    m = _RT.match(text)
    if m:
        base = GLIBC_SIGRTMIN if m.group(1) == "MIN" else MAX_SIGNAL
        n = base + (int(m.group(3)) * (1 if m.group(2) == "+" else -1) if m.group(2) else 0)
        if GLIBC_SIGRTMIN <= n <= MAX_SIGNAL:
            return n
        raise ValueError_(f"{text} is outside SIGRTMIN..SIGRTMAX (34..64 with glibc)")
    bare = text[3:] if text.startswith("SIG") else text
    if bare.isdigit():
        n = int(bare)
        if 1 <= n <= MAX_SIGNAL:
            return n
    if bare in _BY_BARE_NAME:
        return _BY_BARE_NAME[bare]
    if "SIG" + bare in _ALIASES:
        return _ALIASES["SIG" + bare]
    raise ValueError_(f"unknown signal '{name}'")


def parse_sigset(text: str) -> int:
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


def format_sigset(mask: int) -> str:
    names, sig, rest = [], 1, mask & ALL_SIGNALS
    while rest:   # the set bits only, lowest first
        if rest & 1:
            names.append(signal_name(sig))
        rest >>= 1
        sig += 1
    return "|".join(names) if names else "none"


# Tables and probes write the same few sets over and over: each is read once.
_SIGSET_TEXTS: dict[str, str] = {}


def describe_sigset(canonical: str) -> str:
    """A canonical set as a person reads it: real-time signals labelled, and
    a set of more than half the signals as 'all but ...' (a blocked-
    everything mask is 62 names)."""
    try:
        mask = parse_sigset(canonical)
    except ValueError_:
        return canonical
    if bin(mask).count("1") > MAX_SIGNAL // 2:
        missing = ALL_SIGNALS & ~mask
        return "all but " + ("|".join(signal_name(s) for s in range(1, MAX_SIGNAL + 1) if missing >> (s - 1) & 1)
                             or "none")
    odd = [s for s in range(32, MAX_SIGNAL + 1) if mask >> (s - 1) & 1]
    return canonical + (f"  ({', '.join(f'{signal_name(s)} = {signal_alias(s)}' for s in odd)})" if odd else "")


def canonical(vtype: str, value: object) -> str:
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
        text = str(value)
        known = _SIGSET_TEXTS.get(text)
        if known is None:
            known = format_sigset(parse_sigset(text))   # raises before anything is remembered
            if len(_SIGSET_TEXTS) < 4096:
                _SIGSET_TEXTS[text] = known
        return known
    if vtype == "errno":
        text = str(value)
        if not (text.startswith("E") and text[1:].replace("_", "").isalnum() and text.isupper()):
            raise ValueError_(f"'{value}' is not an errno name such as ENOMEM")
        return text
    if vtype == "str":
        return str(value)
    raise ValueError_(f"unknown value type '{vtype}'")


# ---------------------------------------------------------------- answers

_ERRNO_NAMES = set(errno_mod.errorcode.values())
_WS = re.compile(r"\s+")
_STATES = {"R": "running", "S": "sleeping", "D": "disk sleep", "Z": "zombie", "T": "stopped", "t": "tracing stop",
           "X": "dead", "I": "idle"}
_STATE_WORDS = {"running": "R", "sleeping": "S", "asleep": "S", "disk sleep": "D", "uninterruptible": "D",
                "zombie": "Z", "defunct": "Z", "stopped": "T", "tracing stop": "t", "traced": "t", "dead": "X",
                "idle": "I"}


def _squash(text):
    return _WS.sub(" ", text.strip())


def answer_signal(token: str) -> int:
    """One signal as a person writes it: any case, with or without SIG, a
    number, glibc's SIGRTMIN+n. Raises ValueError_."""
    t = token.strip().upper().replace(" ", "")
    if not t:
        raise ValueError_("an empty signal name")
    return signal_number(t)


def answer_sigset(text: str) -> int:
    """A set of signals as people write it -> bitmask. 'SIGUSR1|SIGTERM',
    'term, usr1', '15 10', '0x4200', a pasted '/proc' line 'SigBlk:
    0000000000004200', 'none', 'all', 'all but KILL STOP'."""
    t = _squash(text)
    if ":" in t and t.split(":", 1)[0].strip().lower() in ("sigblk", "sigign", "sigcgt", "sigpnd", "shdpnd"):
        t = t.split(":", 1)[1].strip()
    low = t.lower()
    if low in ("none", "empty", "nothing", "no signals", "-", "{}", "0", "0x0", "(none)", "∅"):
        return 0
    if re.fullmatch(r"0x[0-9a-f]{1,16}", low) or re.fullmatch(r"[0-9a-f]{16}", low):
        return int(low, 16)
    base, rest = 0, t
    m = re.match(r"(?i)^all(?:\s+(?:but|except)\b|\s*-\s*|$)(.*)$", t)
    if m:
        base, rest = ALL_SIGNALS, m.group(1)
    mask = 0
    for token in re.split(r"[|,;\s]+", rest):
        if token and token.lower() not in ("and", "but", "except", "+"):
            mask |= 1 << (answer_signal(token) - 1)
    if base:
        return base & ~mask
    if not mask:
        raise ValueError_(f"no signal in '{text}'")
    return mask


def answer_errno(text: str) -> str:
    t = _squash(text).upper()
    for prefix in ("-1 ", "ERRNO ", "FAILS WITH ", "FAILED WITH ", "ERROR "):
        if t.startswith(prefix):
            t = t[len(prefix):].strip()
    if t.isdigit() and int(t) in errno_mod.errorcode:
        return errno_mod.errorcode[int(t)]
    if t in _ERRNO_NAMES:
        return t
    if t == "-1":
        raise ValueError_("-1 says the call failed: name the errno it sets, e.g. ESRCH")
    if re.fullmatch(r"E[A-Z0-9_]+", t):
        raise ValueError_(f"{t} is not an errno name this system knows (e.g. ENOENT, ESRCH, EINVAL)")
    raise ValueError_(f"'{text}' is not an errno name such as ESRCH")


def answer_result(text: str) -> str:
    low = _squash(text).lower()
    if low in ("ok", "0", "success", "succeeds", "succeeded", "works", "it works", "no error"):
        return "ok"
    return answer_errno(text)


def answer_status(text: str) -> str:
    """How a child ended, as describe_wait_status prints it: 'exited N',
    'killed SIGX' (+ ' (core)'), 'stopped SIGX', 'continued'."""
    t = _squash(text)
    low = t.lower().strip("()")
    core = ""
    for tail in (" (core dumped)", " (core)", " core dumped", ", core dumped"):
        if low.endswith(tail):
            low, core = low[: -len(tail)].strip(), " (core)"
    if low in ("continued", "cont"):
        return "continued"
    m = re.fullmatch(r"(?:exited|exit|exits|exit status|exit code|status|returned|returns)?"
                     r"\s*(?:with\s+)?\(?(-?\d+)\)?", low)
    if m:
        return f"exited {int(m.group(1))}"
    m = re.fullmatch(r"(killed|stopped|terminated|signaled|signalled)?\s*(?:by\s+)?(?:signal\s+)?(\S+)", low)
    if m:
        try:
            sig = answer_signal(m.group(2))
        except ValueError_:
            sig = None
        if sig is not None:
            verb = "stopped" if m.group(1) == "stopped" else "killed"
            return f"{verb} {signal_name(sig)}" + (core if verb == "killed" else "")
    raise ValueError_(f"'{text}' is not a way a process ends: write exited N (or just N) or killed SIGNAME")


def answer_state(text: str) -> str:
    t = _squash(text)
    m = re.fullmatch(r"([A-Za-z])(?:\s*\(([a-z ]+)\))?", t)
    if m:
        letter = m.group(1)
        if letter != "t":
            letter = letter.upper()
        if letter in _STATES:
            return letter
    word = t.lower().strip("()")
    if word in _STATE_WORDS:
        return _STATE_WORDS[word]
    raise ValueError_(f"'{text}' is not a process state: one letter as in /proc/PID/stat (R, S, D, Z, T, t, X)")


def answer_bool(text: str) -> str:
    low = _squash(text).lower()
    if low in ("true", "t", "yes", "y", "1"):
        return "true"
    if low in ("false", "f", "no", "n", "0"):
        return "false"
    raise ValueError_(f"'{text}' is not true or false")


def answer_yesno(text: str) -> str:
    low = _squash(text).lower()
    if low in ("yes", "y", "true", "1", "hang", "hangs", "it hangs"):
        return "yes"
    if low in ("no", "n", "false", "0", "completes", "no hang"):
        return "no"
    raise ValueError_(f"'{text}' is not yes or no")


def answer_int(text: str) -> str:
    t = _squash(text).lower()
    try:
        return str(int(t, 0))
    except ValueError:
        raise ValueError_(f"'{text}' is not a number (a count or a value, e.g. 2)") from None


def answer_siglist(text: str) -> str:
    """An ordered list of deliveries, 'SIGUSR1,SIGRTMIN+2:3' (signal, and
    the value sent with it) -> canonical 'SIGUSR1,SIG36:3'."""
    items = []
    for token in re.split(r"\s*(?:,|;|->|→|\bthen\b)\s*|\s+", _squash(text)):
        if not token:
            continue
        name, sep, val = token.partition(":")
        n = answer_signal(name)
        if sep and not val.strip().isdigit():
            raise ValueError_(f"'{token}': after ':' comes the value sent with the signal, a number")
        items.append(signal_name(n) + (f":{int(val)}" if sep else ""))
    if not items:
        raise ValueError_("no delivery listed")
    return ",".join(items)


_SA_FLAGS = ("SA_NOCLDSTOP", "SA_NOCLDWAIT", "SA_SIGINFO", "SA_ONSTACK", "SA_RESTART", "SA_NODEFER", "SA_RESETHAND")
_DISPOSITIONS = {"default": "default", "sig_dfl": "default", "dfl": "default", "ignore": "ignore",
                 "ignored": "ignore", "sig_ign": "ignore", "ign": "ignore", "handler": "handler",
                 "caught": "handler", "a handler": "handler", "handled": "handler", "catch": "handler"}


def answer_disposition(text: str) -> str:
    low = _squash(text).lower()
    if low in _DISPOSITIONS:
        return _DISPOSITIONS[low]
    raise ValueError_(f"'{text}' is not a disposition: default (SIG_DFL), ignore (SIG_IGN) or handler")


def answer_saflags(text: str) -> str:
    """sigaction flags, any order and case, SA_ optional -> 'SA_X|SA_Y' in
    the library's order (state.cc), or 'none'."""
    low = _squash(text).lower()
    if low in ("none", "0", "-", "no flags", "nothing"):
        return "none"
    got = set()
    for token in re.split(r"[|,;\s]+", text.strip()):
        if not token:
            continue
        name = token.upper()
        name = name if name.startswith("SA_") else "SA_" + name
        if name not in _SA_FLAGS:
            raise ValueError_(f"'{token}' is not a sigaction flag ({', '.join(_SA_FLAGS)})")
        got.add(name)
    return "|".join(f for f in _SA_FLAGS if f in got)


def answer_intlist(text: str) -> str:
    items = [t for t in re.split(r"[,;\s]+", text.strip()) if t]
    try:
        return ",".join(str(int(t, 0)) for t in items) if items else _bad_intlist(text)
    except ValueError:
        return _bad_intlist(text)


def _bad_intlist(text):
    raise ValueError_(f"'{text}' is not a list of numbers, e.g. 1,1,2")


@dataclasses.dataclass(frozen=True)
class Form:
    """What an answer looks like: `read(text)` gives the canonical text the
    kernel's value is compared with (or raises ValueError_ saying what is
    expected); `hint` and `examples` are for the prompt."""
    name: str
    hint: str
    examples: tuple
    read: object
    choices: tuple = ()

    def example(self, avoid: tuple = ()) -> str:
        """An example that is not one of the values in `avoid` (the prompt
        must not give the answer away)."""
        avoid = {a.lower() for a in avoid}
        for ex in self.examples:
            if ex.lower() not in avoid:
                return ex
        return ""

    def prompt(self, avoid: tuple = ()) -> str:
        ex = self.example(avoid)
        return self.hint + (f"; e.g. {ex}" if ex else "")


def _choice_form(choices):
    def read(text):
        low = _squash(text).lower()
        for c in choices:
            if low == c.lower():
                return c
        hits = [c for c in choices if c.lower().startswith(low)] if low else []
        if len(hits) == 1:
            return hits[0]
        raise ValueError_(f"'{text}' is not one of: {' / '.join(choices)}")
    return Form("choice", "one of: " + " / ".join(choices), (), read, tuple(choices))


FORMS = {
    "bool": Form("bool", "true or false", ("true", "false"), answer_bool),
    "yesno": Form("yesno", "yes or no", ("yes", "no"), answer_yesno),
    "int": Form("int", "a number", ("2", "0"), answer_int),
    "sigset": Form("sigset", "signal names (any order, | or , between them), a /proc hex mask, none, or "
                   "all but ...", ("SIGINT|SIGHUP", "SIGQUIT", "none"), lambda t: format_sigset(answer_sigset(t))),
    "signal": Form("signal", "one signal name or number, or none",
                   ("SIGHUP", "SIGQUIT", "none"), lambda t: format_sigset(answer_sigset(t))),
    "errno": Form("errno", "an errno name", ("ENOENT", "EPERM"), answer_errno),
    "result": Form("result", "ok (the call succeeds) or the errno it fails with",
                   ("ok", "ENOENT", "EPERM"), answer_result),
    "status": Form("status", "how it ended: exited N (a bare N means exited N) or killed SIGNAME",
                   ("exited 3", "killed SIGINT"), answer_status),
    "state": Form("state", "a process state letter as in /proc/PID/stat: R, S, D, Z, T (names work too)",
                  ("R", "S", "T"), answer_state),
    "siglist": Form("siglist", "the deliveries in order, comma-separated, each SIGNAME or SIGNAME:value "
                    "(SIGRTMIN+n for real-time signals)", ("SIGINT,SIGRTMIN+1:7",), answer_siglist),
    "disposition": Form("disposition", "default (SIG_DFL), ignore (SIG_IGN) or handler",
                        ("default", "ignore", "handler"), answer_disposition),
    "saflags": Form("saflags", "sigaction flags joined by | (SA_RESTART|SA_ONSTACK), or none",
                    ("SA_NODEFER", "none"), answer_saflags),
    "intlist": Form("intlist", "numbers in order, comma-separated", ("1,1,2",), answer_intlist),
    "text": Form("text", "free text, compared without regard to case", (), lambda t: _squash(t)),
}


def form(spec: str) -> Form:
    """A Form from metadata: a FORMS name; choices 'alive|dead'; or
    alternatives 'status|result', 'a namespace|errno' (forms and literal
    choices mixed: the first that reads the answer wins)."""
    parts = [p.strip() for p in spec.split("|")]
    if any(not p for p in parts):
        raise ValueError_(f"empty choice in form '{spec}'")
    if len(parts) == 1 and parts[0] in FORMS:
        return FORMS[parts[0]]
    if not any(p in FORMS for p in parts):
        return _choice_form(parts)
    alts = []
    literal = [p for p in parts if p not in FORMS]
    for p in parts:
        if p in FORMS:
            alts.append(FORMS[p])
        elif p == literal[0]:
            alts.append(_choice_form(literal))

    def read(text):
        for f in alts:
            try:
                return f.read(text)
            except ValueError_:
                pass
        raise ValueError_(f"'{text}' is not " + " nor ".join(f.hint for f in alts))
    return Form(spec, " or ".join(f.hint for f in alts), tuple(e for f in alts for e in f.examples), read)


_STATUS = re.compile(r"^(exited -?\d+|killed SIG[A-Z0-9]+( \(core\))?|stopped SIG[A-Z0-9]+|continued)$")
_ERRNO = re.compile(r"^E[A-Z0-9]+$")


def infer_form(key: str, table_values: list[str]) -> Form:
    """The answer form of an observation from the shapes of its values in
    the expected tables (never their content: the form is shown before the
    run). Metadata (lab.forms) overrides it."""
    vals = [v for v in table_values if v]
    if key == "hang" or key.endswith(".hang"):
        return FORMS["yesno"]
    if ".flags." in key:
        return FORMS["saflags"]
    if ".disp." in key:
        return FORMS["disposition"]
    last = key.rsplit(".", 1)[-1]
    if last in ("blocked", "ignored", "caught", "pending", "shared_pending"):
        return FORMS["sigset"]
    if last in ("pdeathsig", "exit_signal"):
        return FORMS["signal"]
    if last == "altstack":
        return form("enabled|disabled")
    if vals and all(v in ("true", "false") for v in vals):
        return FORMS["bool"]
    if vals and all(re.fullmatch(r"-?\d+", v) for v in vals):
        return FORMS["int"]
    if vals and all(v == "ok" or _ERRNO.match(v) for v in vals):
        return FORMS["result"]
    if vals and all(_STATUS.match(v) for v in vals):
        return FORMS["status"]
    if vals and all(_STATUS.match(v) or v == "ok" or _ERRNO.match(v) for v in vals):
        return form("status|result")
    if vals and all(re.fullmatch(r"[RSDZTtXI]", v) for v in vals):
        return FORMS["state"]
    if vals and all(v in ("default", "ignore", "handler") for v in vals):
        return FORMS["disposition"]
    if vals and all(v == "none" or re.fullmatch(r"SA_[A-Z]+(\|SA_[A-Z]+)*", v) for v in vals) and \
            any(v != "none" for v in vals):
        return FORMS["saflags"]
    if vals and all(re.fullmatch(r"-?\d+(,-?\d+)+", v) for v in vals):
        return FORMS["intlist"]
    sigsetish = [v for v in vals if v == "none" or re.fullmatch(r"SIG[A-Z0-9]+(\|SIG[A-Z0-9]+)*", v)]
    if vals and len(sigsetish) == len(vals) and any(v != "none" for v in vals):
        if all("|" not in v for v in vals) and key.endswith(("exit_signal", "pdeathsig")):
            return FORMS["signal"]
        return FORMS["sigset"]
    if vals and all(re.fullmatch(r"(SIG[A-Z0-9]+(:\d+)?)(,SIG[A-Z0-9]+(:\d+)?)*", v) for v in vals):
        return FORMS["siglist"]
    return FORMS["text"]


def same(form_: Form, answer: str, observed: str) -> bool:
    """Does a read answer equal the kernel's canonical value?"""
    if form_.name in ("text", "choice") or form_.choices:
        return answer.casefold() == observed.casefold()
    return answer == observed
