"""Signal state as people read it: `kpc decode MASK` and `kpc inspect PID`.

/proc/PID/status shows signal sets as 64-bit hex masks (bit N-1 = signal
N): SigPnd (pending for the thread), ShdPnd (pending for the process),
SigBlk (blocked, per thread), SigIgn and SigCgt (ignored and caught: the
dispositions are shared by every thread). `inspect` prints them decoded,
per thread, like FreeBSD's `procstat -i` / `procstat -j`.
"""

import os
import re

from . import values

FIELDS = ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
_HEX = re.compile(r"^(0x)?[0-9a-fA-F]{1,16}$")


def decode(text):
    """'0000000000014a02' -> ['SIGINT', 'SIGUSR1', ...]; raises ValueError."""
    t = text.strip()
    if not _HEX.match(t):
        raise ValueError(f"not a signal mask: '{text}' (want up to 16 hex digits, as in /proc/PID/status)")
    mask = int(t, 16)
    return [values.signal_name(n) for n in range(1, 65) if mask >> (n - 1) & 1]


def _status(path):
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if ":" in line:
                k, v = line.split(":", 1)
                out[k] = v.strip()
    return out


def inspect(pid):
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
                               "pending": decode(ts.get("SigPnd", "0")), "blocked": decode(ts.get("SigBlk", "0"))})
    return out


def format_inspect(info):
    names = lambda xs: "|".join(xs) or "none"  # noqa: E731
    lines = [f"pid {info['pid']} ({info['name']}) state {info['state']} ppid {info['ppid']}"
             + (f" nspid {info['nspid']}" if info.get("nspid") and info["nspid"] != str(info["pid"]) else ""),
             f"  process  ignored  {names(info['process']['ignored'])}",
             f"           caught   {names(info['process']['caught'])}",
             f"           pending  {names(info['process']['pending'])}  (shared: ShdPnd)"]
    for t in info["threads"]:
        lines.append(f"  thread {t['tid']} ({t['name']}) {t['state']}")
        lines.append(f"           blocked  {names(t['blocked'])}")
        lines.append(f"           pending  {names(t['pending'])}  (this thread: SigPnd)")
    return "\n".join(lines)
