#!/usr/bin/python3
"""A user's init for the tests: it does everything a clean runtime promises
(nothing blocked, every disposition back to default) and, like tini and
catatonit, puts its child in a process group of its own -- which no profile
promises or forbids. Usage: clean_own_group.py -- PROGRAM ARGS..."""
import os
import signal
import sys

args = sys.argv[1:]
if args[:1] == ["--"]:
    args = args[1:]
for sig in range(1, signal.NSIG):
    if sig in (signal.SIGKILL, signal.SIGSTOP) or 32 <= sig <= 33:
        continue
    try:
        signal.signal(sig, signal.SIG_DFL)
    except (OSError, ValueError):
        pass
signal.pthread_sigmask(signal.SIG_SETMASK, [])
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.execv(args[0], args)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
