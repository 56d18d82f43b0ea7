"""Signal state as people read it: `kpc decode MASK`, `kpc inspect PID` and
`kpc inspect --signal SIG PID` (what would happen if SIG were sent now).

/proc/PID/status shows signal sets as 64-bit hex masks (bit N-1 = signal
N): SigPnd (pending for the thread), ShdPnd (pending for the process),
SigBlk (blocked, per thread), SigIgn and SigCgt (ignored and caught: the
dispositions are shared by every thread). `inspect` prints them decoded,
per thread, like FreeBSD's `procstat -i` / `procstat -j`, with the hex next
to the names so the lab notes' masks can be matched with them.
"""

from __future__ import annotations

import os
import re

from . import values

FIELDS = ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
_HEX = re.compile(r"^(0x)?[0-9a-fA-F]{1,16}$")
_PASTED = re.compile(r"^\s*(SigPnd|ShdPnd|SigBlk|SigIgn|SigCgt)\s*:\s*(\S*)\s*$")

# signal(7)'s default actions, from the one signal list (values.py reads it).
DEFAULT_ACTION = values.DEFAULT_ACTION
_ACTION_TEXT = {"Term": "terminate the process", "Core": "terminate the process and dump core",
                "Ign": "ignore the signal", "Stop": "stop the process", "Cont": "continue the process if stopped"}
NOT_IN_PROC = ("/proc does not show sa_flags (SA_NOCLDWAIT, SA_RESTART, SA_RESETHAND), the parent-death signal "
               "or the child-subreaper flag: ask the process (sigaction, prctl) or see the lab cases")


def decode(text: str) -> list[str]:
    """'0000000000014a02' (or a pasted 'SigBlk:\t0000000000014a02' line) ->
    ['SIGINT', 'SIGUSR1', ...]; raises ValueError."""
    t = text.strip()
    m = _PASTED.match(t)
    if m:
        t = m.group(2)
    if not _HEX.match(t):
        raise ValueError(f"not a signal mask: '{text}' (want up to 16 hex digits as in /proc/PID/status, or a "
                         f"pasted line such as 'SigBlk: 0000000000004200')")
    mask = int(t, 16)
    return [values.signal_name(n) for n in range(1, 65) if mask >> (n - 1) & 1]


def decode_lines(text: str) -> list[tuple[str, str, list[str]]]:
    """A pasted /proc/PID/status (or some of its lines) -> [(field, hex,
    names)] for its signal lines, in order. Lines of other fields are
    skipped; raises ValueError when there is no signal line at all."""
    out = []
    for line in text.splitlines():
        m = _PASTED.match(line)
        if m:
            out.append((m.group(1), m.group(2), decode(m.group(2))))
    if not out:
        raise ValueError("no SigPnd/ShdPnd/SigBlk/SigIgn/SigCgt line in the input")
    return out


def names_of(names: list[str]) -> str:
    """A decoded list as one readable string: real-time and glibc-internal
    signals labelled, near-full sets as 'all but ...'."""
    return values.describe_sigset("|".join(names) or "none")


def _status(path):
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if ":" in line:
                k, v = line.split(":", 1)
                out[k] = v.strip()
    return out


def inspect(pid: int) -> dict:
    """{'pid', 'name', 'state', 'ppid', 'nspid', 'process': {...}, 'threads':
    [{'tid', 'name', 'state', 'pending', 'blocked'}]} with decoded sets.
    Raises OSError for a process that does not exist or cannot be read."""
    base = f"/proc/{pid}"
    st = _status(f"{base}/status")
    out = {"pid": pid, "name": st.get("Name", "?"), "state": st.get("State", "?"), "ppid": st.get("PPid"),
           "nspid": st.get("NSpid"), "sigq": st.get("SigQ"),
           "process": {"pending": decode(st.get("ShdPnd", "0")), "ignored": decode(st.get("SigIgn", "0")),
                       "caught": decode(st.get("SigCgt", "0"))},
           "raw": {k: st.get(k) for k in FIELDS}, "threads": []}
    try:
        tids = sorted(int(t) for t in os.listdir(f"{base}/task"))
    except OSError:
        tids = [pid]
    for tid in tids:
        try:
            ts = _status(f"{base}/task/{tid}/status")
        except OSError:
            continue  # the thread exited meanwhile
        out["threads"].append({"tid": tid, "name": ts.get("Name", "?"), "state": ts.get("State", "?"),
                               "pending": decode(ts.get("SigPnd", "0")), "blocked": decode(ts.get("SigBlk", "0")),
                               "raw": {k: ts.get(k) for k in ("SigPnd", "SigBlk")}})
    return out


def is_namespace_init(info: dict) -> bool:
    """PID 1 of its PID namespace (the last NSpid field is 1)."""
    nspid = (info.get("nspid") or str(info["pid"])).split()
    return nspid[-1] == "1"


def _hex(field, raw):
    return (f"  [{field} {raw}]" if field else f"  [{raw}]") if raw else ""


def format_inspect(info: dict) -> str:
    lines = [f"pid {info['pid']} ({info['name']}) state {info['state']} ppid {info['ppid']}"
             + (f" nspid {info['nspid']}" if info.get("nspid") and info["nspid"] != str(info["pid"]) else "")]
    if is_namespace_init(info):
        lines.append("  PID 1 of its PID namespace: signals it has no handler for are dropped (kpc inspect "
                     "--signal SIG PID says which)")
    if info["state"].startswith(("Z", "X")):
        lines.append(f"  a zombie: it has exited; nothing runs until its parent (pid {info['ppid']}) waits for it")
    raw = info.get("raw", {})
    lines += [f"  process  ignored  {names_of(info['process']['ignored'])}{_hex('SigIgn', raw.get('SigIgn'))}",
              f"           caught   {names_of(info['process']['caught'])}{_hex('SigCgt', raw.get('SigCgt'))}",
              f"           pending  {names_of(info['process']['pending'])}  (shared: ShdPnd)"
              f"{_hex('', raw.get('ShdPnd'))}"]
    for t in info["threads"]:
        traw = t.get("raw", {})
        lines.append(f"  thread {t['tid']} ({t['name']}) {t['state']}")
        lines.append(f"           blocked  {names_of(t['blocked'])}{_hex('SigBlk', traw.get('SigBlk'))}")
        lines.append(f"           pending  {names_of(t['pending'])}  (this thread: SigPnd)"
                     f"{_hex('', traw.get('SigPnd'))}")
    lines.append(f"  ({NOT_IN_PROC})")
    return "\n".join(lines)


def parse_signal(text: str) -> int:
    """'TERM', 'sigterm', '15', 'SIGRTMIN+2' -> signal number; ValueError."""
    try:
        return values.answer_signal(text)
    except values.ValueError_ as e:
        raise ValueError(f"--signal: {e} (a name such as TERM or a number 1-64)") from None


def what_if(info: dict, sig: int) -> dict:
    """What the kernel would do with `sig` sent by kill(2) to this process
    now: {'signal', 'outcome', 'because': [...]}. The rules are the ones the
    labs teach (signal(7), pid_namespaces(7)); sa_flags are not visible in
    /proc, so SA_RESETHAND and friends are not considered."""
    name = values.signal_name(sig)
    label = values.signal_label(sig)
    action = DEFAULT_ACTION.get(name, "Term")
    ignored = name in info["process"]["ignored"]
    caught = name in info["process"]["caught"]
    threads = info["threads"] or [{"tid": info["pid"], "blocked": [], "state": info["state"]}]
    blocking = [t["tid"] for t in threads if name in t["blocked"]]
    leader_blocks = any(t["tid"] == info["pid"] and name in t["blocked"] for t in threads)
    all_block = len(blocking) == len(threads)
    because = []
    init = is_namespace_init(info)
    top_init = init and (info.get("nspid") or str(info["pid"])).split() == ["1"]

    def result(outcome):
        return {"signal": label, "outcome": outcome, "because": because}

    if info["state"].startswith(("Z", "X")):
        because.append(f"the process has exited (state {info['state']}); kill() still succeeds while the PID "
                       f"exists, but nothing runs: its parent (pid {info['ppid']}) has to wait() for it")
        return result("nothing: it is a zombie")
    if name in ("SIGKILL", "SIGSTOP"):
        verb = "kills" if name == "SIGKILL" else "stops"
        because.append(f"{name} cannot be caught, blocked or ignored (signal(7))")
        if top_init:
            because.append("this is the system's first init: the kernel never lets userspace kill or stop it")
            return result("dropped")
        if init:
            because.append("PID 1 of a PID namespace: from a member of its namespace it is dropped; from an "
                           "ancestor namespace it is forced (pid_namespaces(7))"
                           + ("; when it dies the kernel SIGKILLs every process of its namespace"
                              if name == "SIGKILL" else ""))
            return result(f"from inside its namespace: dropped; from outside: {verb} it")
        return result(f"{verb} the process")
    if name == "SIGCONT" and info["state"].startswith(("T", "t")):
        because.append("SIGCONT resumes a stopped process whatever its disposition")
    if ignored or (not caught and action == "Ign"):
        why = "ignored (SIG_IGN: SigIgn)" if ignored else "its default action is to ignore it (signal(7))"
        if leader_blocks:
            because.append(f"{why}, but blocked by thread {info['pid']}: a blocked signal is queued, never "
                           f"discarded, because the disposition may change before it is unblocked")
            return result("stays pending (blocked); discarded if still ignored when unblocked")
        because.append(why)
        return result("discarded" + ("; the stopped process continues" if name == "SIGCONT" and info["state"]
                                     .startswith(("T", "t")) else ""))
    if caught:
        because.append("the process has a handler (SigCgt)")
        effect = "runs the process's handler"
    elif init:
        because.append("PID 1 of its PID namespace without a handler for it: the kernel drops signals with the "
                       "default action, from members and from ancestor namespaces alike; only SIGKILL/SIGSTOP "
                       "from an ancestor are forced (pid_namespaces(7))")
        return result("dropped")
    else:
        because.append(f"no handler, not ignored: the default action, {_ACTION_TEXT[action]} (signal(7))")
        effect = {"Term": "terminates the process", "Core": "terminates the process (core dump)",
                  "Stop": "stops the process", "Cont": "continues the process"}[action]
    if all_block:
        because.append(f"every thread blocks it ({', '.join(map(str, blocking))}): it waits in ShdPnd until a "
                       f"thread unblocks it or takes it with sigwait()/signalfd")
        return result(f"stays pending; then {effect}")
    if blocking:
        free = [t["tid"] for t in threads if t["tid"] not in blocking]
        because.append(f"threads {', '.join(map(str, blocking))} block it; the kernel delivers it to a thread "
                       f"that does not ({', '.join(map(str, free))})")
    if info["state"].startswith(("T", "t")) and name != "SIGCONT":
        because.append("the process is stopped: it acts when continued (SIGCONT)")
        return result(f"pending until continued; then {effect}")
    return result(effect)


def format_what_if(info: dict, answer: dict) -> str:
    lines = [f"{answer['signal']} to pid {info['pid']} ({info['name']}) now: {answer['outcome']}"]
    lines += [f"  - {b}" for b in answer["because"]]
    lines.append(f"  ({NOT_IN_PROC})")
    return "\n".join(lines)
