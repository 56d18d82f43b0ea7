#!/usr/bin/python3
"""A complete init for the init exercise: test_lab checks that it passes
every stage (and so that the stages can be passed). Not a starter: the
students' starters are labs/init-exercise/init.{py,c}."""

import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36
FORWARD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT,
           signal.SIGWINCH)


def main():
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    child = [0]

    def forward(sig, _frame):
        if child[0]:
            os.kill(child[0], sig)
    for s in FORWARD:
        signal.signal(s, forward)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    pid = os.fork()
    if pid == 0:
        for s in signal.valid_signals():
            if s not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(s, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    child[0] = pid
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            sys.exit(1)
        if done == pid:
            code = os.waitstatus_to_exitcode(status)
            sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
