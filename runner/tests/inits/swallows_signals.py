#!/usr/bin/python3
"""A user's init for the tests that does every PID-1 duty but one: it is
init_reference.py (exit code, 128+N, subreaper, reaping, a clean child),
except that it catches SIGTERM, SIGINT, SIGHUP and SIGUSR1 and forwards
none of them. Usage: swallows_signals.py -- PROGRAM ARGS..."""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data"))
import init_reference  # noqa: E402

init_reference.FORWARD = ()
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
    signal.signal(s, lambda sig, frame: None)   # caught, and dropped
init_reference.main()
