#!/usr/bin/python3
"""A broken user's init for the tests: it leaves SIGUSR1 blocked and pending
when it execs its workload (it blocked the signal for its own use and one
arrived). The workload dies of it as soon as it unblocks its signals.
Usage: leaves_usr1_pending.py -- PROGRAM ARGS..."""
import os
import signal
import sys

args = sys.argv[1:]
if args[:1] == ["--"]:
    args = args[1:]
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
os.kill(os.getpid(), signal.SIGUSR1)
os.execv(args[0], args)
