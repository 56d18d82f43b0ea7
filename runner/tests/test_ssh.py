"""--target ssh://: against an sshd this test starts on 127.0.0.1 (Debian's
openssh-server; loopback only, throwaway keys). The sshd gives its sessions
the test's private $TMPDIR (SetEnv), so the bundle's copy, the remote
launcher, its shims and run directories all carry the test's mark and
conftest.Scope finds whatever would be left."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import run
from kpc import evaluate, paths, sshtarget

KPC = os.path.join(paths.ROOT, "kpc")
PY = "/usr/bin/python3"
SSHD = "/usr/sbin/sshd"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(SSHD) or not shutil.which("ssh"),
                                reason="needs root and openssh-server/openssh-client")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path, scope):
    d = tmp_path / "ssh"
    d.mkdir(mode=0o700)
    for key in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile {d}/sshd.pid
SetEnv TMPDIR={scope.tmp}
""")
    host_key = (d / "host.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    (d / "ssh_config").write_text(f"""Host 127.0.0.1
  IdentityFile {d}/client
  IdentitiesOnly yes
  UserKnownHostsFile {d}/known_hosts
  StrictHostKeyChecking yes
  LogLevel ERROR
""")
    os.makedirs("/run/sshd", exist_ok=True)   # sshd's privilege-separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    env = dict(os.environ, KPC_SSH_CONFIG=str(d / "ssh_config"))
    for _ in range(100):
        if subprocess.run(["ssh", "-F", str(d / "ssh_config"), "-p", str(port), "-o", "BatchMode=yes",
                           "root@127.0.0.1", "true"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"sshd did not start: {proc.stderr.read1(4000)}")
    yield {"url": f"ssh://root@127.0.0.1:{port}", "label": f"127.0.0.1:{port}", "env": env, "scope": scope}
    proc.terminate()
    proc.wait(timeout=10)


def verdicts(path):
    with open(path) as f:
        return {(r["case"], r["variant"], r["flavor"]): r["verdict"] for r in json.load(f)["results"]}


def remote_dirs(scope):
    return [n for n in os.listdir(scope.tmp) if n.startswith("kpc-target.")]


def test_ssh_target_judged_like_kpc_run(sshd, tmp_path, built):
    host = tmp_path / "host.json"
    r = run([PY, KPC, "run", "--no-build", "--case", "sig*", "--case", "pidns*", "--json", str(host)], timeout=600)
    assert r.returncode in (0, 1), r.stderr
    out = tmp_path / "ssh.json"
    r = run([PY, KPC, "run", "--no-build", "--no-host", "--case", "sig*", "--case", "pidns*", "--target",
             sshd["url"], "--json", str(out)], env=sshd["env"], timeout=900)
    assert r.returncode in (0, 1), r.stderr
    assert verdicts(out) == verdicts(host)
    doc = json.load(open(out))
    assert {x["target"] for x in doc["results"]} == {sshd["label"]}
    k = doc["kernels"][sshd["label"]]
    assert k["ssh"]["failure"] is None and k["ssh"]["launcher_rc"] == 0 and k["kernel"] == os.uname().release
    # nothing kpc started is left there: processes, run directories, the bundle's copy
    assert sshd["scope"].settle() == {} and remote_dirs(sshd["scope"]) == []


# After the connection dies kpc asks the machine for its boot id over a new
# connection; a wrapper around ssh stands in for a machine that came back
# rebooted or does not come back (everything else goes through real ssh).
FAKE_SSH = """#!/bin/sh
for last; do :; done
if [ "$last" = "cat /proc/sys/kernel/random/boot_id" ]; then
  case $KPC_TEST_BOOT in rebooted) echo 00000000-0000-0000-0000-000000000000; exit 0 ;; gone) exit 255 ;; esac
fi
exec ssh "$@"
"""


@pytest.mark.parametrize("machine, verdict, words", [
    ("same", "error", ["lost its connection", "same boot id"]),
    ("rebooted", "fail", ["rebooted while this ran", "boot id"]),
    ("gone", "hang", ["stopped answering"])])
def test_lost_connection_is_a_verdict_and_leaves_nothing(sshd, tmp_path, built, machine, verdict, words):
    """The connection dies under a long run (sshd's session process is
    killed): kpc ends within seconds with the verdict that says what became
    of the machine, and the machine keeps nothing of the run."""
    scope = sshd["scope"]
    out = tmp_path / "lost.json"
    fake = tmp_path / "fake-ssh"
    fake.write_text(FAKE_SSH)
    fake.chmod(0o755)
    env = dict(sshd["env"], KPC_SSH=str(fake), KPC_TEST_BOOT=machine)
    kpc = subprocess.Popen([PY, KPC, "run", "--no-build", "--no-host", "--slow", "--case",
                            "fuse_request_timeout_mitigation", "--target", sshd["url"], "--json", str(out)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    session = None
    deadline = time.monotonic() + 120
    while session is None and time.monotonic() < deadline:
        procs = scope.processes()
        probes = [p for p, (_, _, comm) in procs.items() if comm.startswith("fuse_request")]
        serve = [p for p in procs if b"--serve" in open(f"/proc/{p}/cmdline", "rb").read()] if probes else []
        # the entry point's parent: sshd's process for this connection (not the
        # entry point itself, whose watchdog subshell also says --serve)
        sshd_parents = [procs[p][0] for p in serve if open(f"/proc/{procs[p][0]}/comm").read().startswith("sshd")]
        if sshd_parents:
            session = sshd_parents[0]
        time.sleep(0.1)
    assert session, "the remote run never started"
    t0 = time.monotonic()
    os.kill(session, signal.SIGKILL)
    stdout, stderr = kpc.communicate(timeout=120)
    assert time.monotonic() - t0 < 60
    assert kpc.returncode == 1, stderr
    res = json.load(open(out))["results"]
    assert res and [r["verdict"] for r in res] == [verdict] * len(res), res
    assert all(w in res[0]["reason"] for w in words), res[0]["reason"]
    assert "connection ended" in stderr and "Traceback" not in stderr
    assert scope.settle(30) == {} and remote_dirs(scope) == []


@pytest.mark.parametrize("url", ["ssh://-oProxyCommand=touch%20x", "http://127.0.0.1", "ssh://root@127.0.0.1:99999",
                                 "ssh://ro ot@127.0.0.1", "ssh://127.0.0.1/path", "ssh://"])
def test_bad_target_is_one_line(url):
    r = run([PY, KPC, "run", "--no-build", "--target", url])
    assert r.returncode == 2 and r.stderr.startswith("kpc: ") and r.stderr.count("\n") == 1, r.stderr


def test_lost_runs_outcomes():
    """Which verdict a run in flight gets when the connection dies."""
    t = sshtarget.SshTarget("ssh://root@127.0.0.1:2222")
    t.boot_id = "b1"
    case = __import__("conftest").make_case()
    for boot_now, outcome, verdict in ((None, "guest-lost", "hang"), ("b2", "target-rebooted", "fail"),
                                       ("b1", "target-lost", "error")):
        got, why = t.lost_outcome(boot_now)
        assert got == outcome
        v = evaluate.evaluate(case, {"outcome": got, "error": why, "records": []}, None, {})
        assert v.verdict == verdict and v.reason
