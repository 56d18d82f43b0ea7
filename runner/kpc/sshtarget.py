"""Another machine over SSH as a target (`kpc run --target ssh://[USER@]HOST[:PORT]`).

prepare(): one ssh connection copies the bundle (./kpc bundle, cached) into
a new private directory on the machine (mktemp -d) and asks it for its
facts (kpc/run --facts): the environment the session plans with.
start(): the plan goes over a second connection; a third runs
`kpc/run --serve PLAN --cleanup DIR`, whose standard output is the
launcher's event stream and whose standard input kpc holds open: when it
closes (kpc ended, was killed, or the connection died) the machine's
entry point tells its launcher to recover every run, and the directory is
removed when the launcher is done. So nothing kpc started stays there.

A connection that dies is a verdict, not a hang of kpc: ssh notices within
about 15 s (ServerAliveInterval 5, 3 misses), and each run has a deadline
(its timeout + 20 s of recovery, as for a QEMU guest). kpc then asks the
machine for its boot id over a new connection: the runs in flight become
`target-rebooted` (fail: the machine went down under the run) when it
changed, `guest-lost` (hang: the machine stopped answering) when it cannot
be reached, and `target-lost` (error: kpc lost its connection) when it
answers with the same boot id; runs not started are errors naming why.

ssh is OpenSSH's client with its own configuration (~/.ssh/config, agent,
known hosts); KPC_SSH_CONFIG=FILE adds `-F FILE`. BatchMode: never a
password prompt.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from typing import Callable, TYPE_CHECKING

from . import bundle, paths
from .targets import (RECOVERY_ALLOWANCE_S, Target, TargetError, checked_result, env_from_facts, overdue,
                      read_event_lines, unreported)

if TYPE_CHECKING:
    from . import envinfo

URL = re.compile(r"^ssh://(?:(?P<user>[a-z_][a-z0-9_.-]{0,31})@)?"
                 r"(?P<host>[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?$")
REMOTE_DIR = re.compile(r"^/[A-Za-z0-9._/-]{1,200}$")
COPY_TIMEOUT_S = 600.0
ALIVE = ["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]

COPY = r"""set -e
umask 077
d=$(mktemp -d "${TMPDIR:-/tmp}/kpc-target.XXXXXX")
if command -v xz >/dev/null 2>&1; then xz -dc; else unxz -c; fi | tar -xf - -C "$d"
echo "KPC-DIR $d"
exec "$d/kpc/run" --facts %s
"""


def parse_url(text: str) -> tuple[str | None, str, int | None]:
    """(user or None, host, port or None); ValueError with what is wrong."""
    m = URL.match(text or "")
    if not m:
        raise ValueError(f"--target {text!r}: want ssh://[USER@]HOST[:PORT] (a host name or address, no options)")
    port = m.group("port")
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"--target {text!r}: port {port} is not 1..65535")
    return m.group("user"), m.group("host"), int(port) if port else None


def bundle_for_targets() -> str:
    """A bundle of this build for the targets, cached by what it holds (the
    xz compression is the slow part: ~13 s at preset 3)."""
    from . import cases
    all_cases = cases.load_all()
    files = bundle.members(all_cases)
    import hashlib
    h = hashlib.sha256()
    for name, data, mode in files:
        if name == "manifest.json":
            continue  # its creation time changes every time
        h.update(f"{name}:{mode}:{len(data)}:".encode())
        h.update(data)
    d = paths.cache_dir("bundles")
    out = os.path.join(d, f"kpc-{h.hexdigest()[:16]}.tar.xz")
    if not os.path.exists(out):
        for old in os.listdir(d):
            if old.startswith("kpc-") and old.endswith(".tar.xz"):
                os.unlink(os.path.join(d, old))
        from . import safefile
        safefile.write(out, bundle.tar_bytes(files))
    return out


class SshTarget(Target):
    kind = "ssh"

    def __init__(self, url, slow=False):
        self.url = url
        self.user, self.host, self.port = parse_url(url)
        self.label = self.host + (f":{self.port}" if self.port else "")
        self.slow = slow
        self.remote_dir = None
        self.boot_id = None
        self.failure = None
        self.stats = {}
        self._proc = None
        self._thread = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- ssh

    def argv(self, command: str, alive: bool = True) -> list[str]:
        ssh = os.environ.get("KPC_SSH", "ssh")
        opts = ["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        if os.environ.get("KPC_SSH_CONFIG"):
            opts += ["-F", os.environ["KPC_SSH_CONFIG"]]
        if self.port:
            opts += ["-p", str(self.port)]
        dest = (f"{self.user}@" if self.user else "") + self.host.strip("[]")
        return [ssh, *opts, *(ALIVE if alive else []), dest, command]

    def _run(self, command, data=b"", timeout=60.0):
        try:
            return subprocess.run(self.argv(command), input=data, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        except OSError as e:
            raise TargetError(f"{self.url}: cannot run ssh: {e.strerror}") from None

    # -- prepare

    def prepare(self, bundle_path: str) -> envinfo.Environment:
        t0 = time.monotonic()
        with open(bundle_path, "rb") as f:
            data = f.read()
        r = self._run(COPY % ("--slow" if self.slow else ""), data, timeout=COPY_TIMEOUT_S)
        if r is None:
            raise TargetError(f"{self.url}: copying the bundle took more than {COPY_TIMEOUT_S:g} s")
        out = r.stdout.decode("utf-8", "replace").splitlines()
        dirs = [line[8:] for line in out if line.startswith("KPC-DIR ")]
        if dirs and REMOTE_DIR.match(dirs[0]):
            self.remote_dir = dirs[0]
        if r.returncode != 0 or not self.remote_dir:
            err = r.stderr.decode("utf-8", "replace").strip().splitlines()
            self.cleanup()
            raise TargetError(f"{self.url}: ssh exit {r.returncode}: {(err or ['no message'])[-1][:300]}")
        try:
            facts = json.loads(out[-1])
        except ValueError:
            self.cleanup()
            raise TargetError(f"{self.url}: kpc/run --facts printed no facts: {out[-1][:200]!r}") from None
        try:
            self.env = env_from_facts(facts, self.label, self.url)
        except TargetError as e:
            self.cleanup()
            raise TargetError(f"{self.url}: {e}") from None
        self.boot_id = facts.get("boot_id")
        self.stats["copy_s"] = round(time.monotonic() - t0, 3)
        self.stats["bundle_bytes"] = len(data)
        return self.env

    @property
    def probe_dir(self) -> str:
        return f"{self.remote_dir}/kpc/build/probes"

    # -- run

    def start(self, plan: list[dict], jobs: int, on_event: Callable[[dict], None]) -> None:
        self._thread = threading.Thread(target=self._execute, args=(plan, jobs, on_event), daemon=True)
        self._thread.start()

    def _execute(self, plan, jobs, on_event):
        t0 = time.monotonic()
        reported, inflight = set(), {}
        timeouts = {p["run"]: p.get("timeout_ms", 30000) / 1000.0 for p in plan}
        served = threading.Event()
        garbage = []
        try:
            text = "".join(json.dumps(p) + "\n" for p in plan).encode()
            r = self._run(f"cat > {self.remote_dir}/plan.jsonl", text)
            if r is None or r.returncode != 0:
                self.failure = f"{self.url}: could not send the plan (ssh exit {r.returncode if r else 'timeout'})"
                return
            with self._lock:
                if self._stop.is_set():
                    self.failure = "interrupted before the runs started"
                    return
                self._proc = subprocess.Popen(
                    self.argv(f"{self.remote_dir}/kpc/run --serve {self.remote_dir}/plan.jsonl "
                              f"--cleanup {self.remote_dir} --jobs {int(jobs)}"),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

            def line(event):
                kind = event["event"]
                now = time.monotonic()
                rid = event.get("run")
                if kind == "start" and rid in timeouts:
                    with self._lock:
                        inflight[rid] = now
                elif kind == "result" and rid in timeouts and rid not in reported:
                    with self._lock:
                        inflight.pop(rid, None)
                        reported.add(rid)
                    on_event(checked_result(event, rid))
                elif kind == "batch":
                    if isinstance(event.get("fuse_recovery"), (str, type(None))):
                        self.env.fuse_recovery = event.get("fuse_recovery")
                elif kind == "served":
                    self.stats["launcher_rc"] = event.get("launcher_rc") if isinstance(
                        event.get("launcher_rc"), int) else None
                    served.set()

            reader = threading.Thread(target=read_event_lines, args=(self._proc.stdout, line, garbage.append),
                                      daemon=True)
            reader.start()
            stderr = bytearray()
            drain = threading.Thread(target=self._drain, args=(self._proc.stderr, stderr), daemon=True)
            drain.start()
            total = sum(t + 5 for t in timeouts.values()) + 60
            while reader.is_alive():
                reader.join(0.2)
                now = time.monotonic()
                with self._lock:
                    why = overdue(self.url, now, t0, total, {
                        rid: (st, timeouts[rid] + RECOVERY_ALLOWANCE_S) for rid, st in inflight.items()})
                if why:
                    self.failure = why
                    break
                if self._stop.is_set():
                    break
            self._end_connection()
            reader.join(5)
            drain.join(5)
            if not served.is_set() and not self.failure and not self._stop.is_set():
                err = bytes(stderr).decode("utf-8", "replace").strip().splitlines()
                self.failure = (f"{self.url}: the connection ended before the plan did (ssh exit "
                                f"{self._proc.returncode}: {(err or ['no message'])[-1][:200]})")
            if garbage and not self.failure:
                self.failure = f"{self.url} sent {len(garbage)} unreadable lines, e.g. {garbage[0][:100]!r}"
            elif served.is_set() and self.stats.get("launcher_rc") not in (0, None):
                self.failure = f"kpc-launch on {self.url} exited {self.stats['launcher_rc']}"
        except OSError as e:
            self.failure = f"{self.url}: {e}"
        finally:
            self.stats["wall_s"] = round(time.monotonic() - t0, 3)
            self._finish(plan, reported, inflight, on_event, served.is_set())

    @staticmethod
    def _drain(stream, keep):
        """The remote side's standard error (the launcher's), last 64 KiB:
        a pipe nobody reads would stop the remote launcher when full."""
        for chunk in iter(lambda: stream.read1(65536), b""):
            keep += chunk
            del keep[:-65536]

    def _end_connection(self):
        """Close the runs' standard input (the machine ends them), then ssh."""
        proc = self._proc
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=RECOVERY_ALLOWANCE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _finish(self, plan, reported, inflight, on_event, served):
        """Every unreported run gets its result; the machine is cleaned."""
        missing = [p for p in plan if p["run"] not in reported]
        if not missing:
            if not served:
                self.cleanup()
            return
        outcome, why = "launch-error", self.failure or "the target ended without reporting this run"
        if inflight and not self._stop.is_set():
            outcome, why = self.lost_outcome(self.ask_boot_id())
        for p in missing:
            running = p["run"] in inflight
            for e in unreported([p], (), outcome if running else "launch-error",
                                why if running else f"not run on {self.url}: {self.failure or why}"):
                on_event(e)
        self.cleanup()

    def ask_boot_id(self) -> str | None:
        """The machine's boot id over a new connection, None when it does not
        answer within ~30 s (it may be rebooting)."""
        for _ in range(3):
            r = self._run("cat /proc/sys/kernel/random/boot_id", timeout=10)
            if r is not None and r.returncode == 0:
                return r.stdout.decode("ascii", "replace").strip()
            time.sleep(1)
        return None

    def lost_outcome(self, boot_id_now: str) -> tuple[str, str]:
        """(outcome, why) for the runs in flight when the connection died."""
        if boot_id_now is None:
            return "guest-lost", f"{self.url} stopped answering while this ran (no new connection either)"
        if self.boot_id and boot_id_now != self.boot_id:
            return "target-rebooted", (f"{self.url} rebooted while this ran (boot id {self.boot_id} -> "
                                       f"{boot_id_now[:36]}): a kernel crash or a watchdog; see its console or pstore")
        return "target-lost", (f"kpc lost its connection to {self.url} while this ran; the machine answers again "
                               f"with the same boot id ({(self.failure or 'ssh ended').replace(self.url + ': ', '')})")

    def cleanup(self) -> None:
        """Remove the bundle's directory there (the entry point removes it
        itself after --serve; this covers a copy or plan that failed)."""
        if self.remote_dir:
            r = self._run(f"rm -rf {self.remote_dir}", timeout=30)
            if r is not None and r.returncode == 0:
                self.remote_dir_removed = True

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def join(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)
        elif self.remote_dir:
            self.cleanup()  # prepared, but nothing of the plan ran here

    def report(self) -> dict:
        doc = self.env.to_json()
        doc["ssh"] = {"url": self.url, **self.stats, "failure": self.failure}
        return doc
