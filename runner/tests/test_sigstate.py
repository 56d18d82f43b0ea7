"""kpc decode / kpc inspect: /proc signal masks in names."""

import signal
import subprocess

import pytest

from kpc import sigstate
from test_cli import kpc


def test_decode_names_each_bit():
    assert sigstate.decode("0000000000014a02") == ["SIGINT", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGCHLD"]
    assert sigstate.decode("0x0") == []
    assert sigstate.decode("8000000000000000") == ["SIG64"]
    for bad in ("", "zz", "1" * 17, "-1"):
        with pytest.raises(ValueError, match="not a signal mask"):
            sigstate.decode(bad)


def test_decode_command_and_bad_input():
    r = kpc("decode", "0000000180000000")
    assert r.returncode == 0 and r.stdout.startswith("SIG32|SIG33  (SIG32 = glibc-internal SIGCANCEL")
    r = kpc("decode", "nothex")
    assert r.returncode == 2 and "not a signal mask" in r.stderr


def test_inspect_shows_a_live_process_state_per_thread():
    def dirty():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGALRM})
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "30"], preexec_fn=dirty)
    try:
        info = sigstate.inspect(child.pid)
        assert info["name"] == "sleep"
        assert "SIGUSR2" in info["process"]["ignored"]
        assert info["threads"][0]["blocked"] == ["SIGUSR1", "SIGALRM"]
        r = kpc("inspect", str(child.pid))
        assert r.returncode == 0
        assert "blocked  SIGUSR1|SIGALRM" in r.stdout and "SIGUSR2" in r.stdout
    finally:
        child.kill()
        child.wait()
    r = kpc("inspect", str(child.pid))
    assert r.returncode == 2 and f"no process {child.pid}" in r.stderr
