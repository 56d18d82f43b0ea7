"""--runtime: the runtime-capable cases run as a runtime's child, started
by a dirty caller, and are judged by the runtime's profile."""

import json
import shutil

import pytest

from conftest import processes
from kpc import runtimes
from test_cli import kpc


def test_known_runtimes_resolve_with_profile_and_source():
    rt = runtimes.resolve("dumb-init")
    assert rt.profile == "clean" and "sigprocmask(SIG_UNBLOCK" in rt.source
    if shutil.which("dumb-init"):
        assert rt.prefix[0].startswith("/") and rt.prefix[-1] == "--" and not rt.unavailable
    else:
        assert "not installed" in rt.unavailable
    assert runtimes.resolve("runc").unavailable  # no OCI bundles yet: a skip, with the reason


def test_a_command_prefix_is_a_runtime_with_the_asserted_profile():
    rt = runtimes.resolve("env --", profile="pass-through")
    assert rt.name == "env" and rt.prefix == [shutil.which("env"), "--"] and rt.profile == "pass-through"
    assert runtimes.resolve("env --").profile == "clean"


@pytest.mark.parametrize("spec,profile,message", [
    ("no-such-init-binary --", None, "not found"),
    ("tini,tini", None, "twice"),
    ("tini", "sloppy", "unknown profile"),
])
def test_bad_runtime_specs_are_refused(spec, profile, message):
    with pytest.raises(ValueError, match=message):
        runtimes.parse_list(spec, profile)


def test_profile_decides_the_verdict_and_names_the_leaked_signals(tmp_path, built):
    before = set(processes())
    out = tmp_path / "rt.json"
    # env passes the dirty caller's state through: right for pass-through...
    p = kpc("run", "--no-build", "--runtime", "/usr/bin/env --", "--profile", "pass-through", "--json", str(out))
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(out.read_text())
    (r,) = doc["results"]
    assert (r["case"], r["runtime"], r["profile"], r["verdict"]) == ("inherited_signal_state", "env", "pass-through",
                                                                     "pass")
    assert r["observations"]["self.blocked"] == "SIGUSR1|SIGALRM"
    assert doc["environment"]["runtimes"]["env"]["prefix"][-1] == "--"
    # ...and a fail that names the signals when it promises clean.
    p = kpc("run", "--no-build", "--runtime", "/usr/bin/env --", "--profile", "clean", "--json", str(out))
    assert p.returncode == 1
    assert "extra SIGUSR1|SIGALRM" in p.stdout and "extra SIGHUP|SIGUSR2" in p.stdout
    assert not [pid for pid, info in processes().items() if pid not in before and info[1] == "Z"]


def test_profile_without_runtime_is_bad_usage(built):
    p = kpc("run", "--no-build", "--profile", "clean")
    assert p.returncode == 2 and "--runtime" in p.stderr
