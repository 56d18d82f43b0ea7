"""Driving kpc-launch in batch mode: a plan in, a stream of events out."""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
from typing import TYPE_CHECKING

from . import paths, runtimes

if TYPE_CHECKING:
    from . import cases

ENGINE_HANG_MS = 10000  # the no-progress threshold for runs under a container engine or OCI runtime
# An emulated guest (QEMU's TCG) runs every kernel path several times slower,
# and slower still when the host is loaded: a D-state wait that ends in
# 100 ms on the host can last seconds there (oom_group_kill's allocator, 5 s
# and more on 7.2 at load 10). The no-progress fallback waits EMULATED_HANG_FACTOR
# times the case's threshold there, at most half the run's timeout (a hang
# is still found before the deadline). The structural FUSE rule needs no
# waiting and is not affected.
EMULATED_HANG_FACTOR = 5


def plan_entry(run_id: str, case: cases.Case, variant: str, flavor: str, runtime: runtimes.Runtime | None = None,
               probe_dir: str | None = None) -> dict:
    """One line of a launcher plan. PROBE_DIR: where the probes are on the
    machine that runs it (default: this build's)."""
    env = {}
    prefix, cleanup = runtime.for_run() if runtime is not None else ([], None)
    if runtime is not None and case.runtime_workload:
        # The probe plays the engine: it starts the runtime itself.
        env["KPC_RUNTIME_PREFIX"] = "\x1f".join(prefix)
        if runtime.engine:
            env["KPC_RUNTIME_ENGINE"] = runtime.engine   # engine_stop_grace asks it to stop its container
        runtime_in_argv = False
    else:
        runtime_in_argv = runtime is not None
    argv = list(prefix) if runtime_in_argv else []
    argv += [f"{probe_dir or paths.probe_dir()}/{case.probe}"]
    if variant:
        argv += ["--variant", variant]
    argv += case.args
    timeout_ms = case.timeout_ms
    if runtime is not None and runtime.start_ms:
        # a container engine's start and stop; a probe that plays the engine
        # starts one container per run but waits up to 60 s for it to get
        # ready (many starts at once on a loaded machine took over 10 s
        # each): five starts' worth
        timeout_ms += runtime.start_ms * (5 if case.runtime_workload else 1)
    hang_ms = case.hang_ms
    if runtime is not None and (runtime.engine or runtime.name in ("runc", "crun")):
        # The run's tree holds the runtime's own tasks, whose kernel work can
        # sleep in D for seconds under load: runc in synchronize_rcu for
        # 1.3 s called a docker run of runtime_delivers_every_signal a hang
        # (selftest, load ~6). The no-progress fallback waits longer there;
        # FUSE deadlocks are still found structurally at once.
        hang_ms = max(hang_ms, ENGINE_HANG_MS)
    entry = {"run": run_id, "case": case.id, "variant": variant, "flavor": flavor, "argv": argv,
             "timeout_ms": timeout_ms, "hang_ms": hang_ms, "exclusive": case.exclusive}
    if case.hang_grace_ms:
        entry["hang_grace_ms"] = case.hang_grace_ms
    if env:
        entry["env"] = env
    if case.area == "fuse":
        # A socket to the run's shim, where a FUSE server deposits its
        # /dev/fuse when only that lets kpc undo a deadlock without root.
        entry["supervisor_channel"] = True
    if runtime_in_argv:
        entry["caller"] = runtimes.DIRTY_CALLER
    if cleanup:
        # Run by the launcher once the run's whole process tree is gone,
        # however the run ended: deletes what the runtime left (oci_run.py).
        entry["cleanup"] = cleanup
    return entry


class Batch:
    """Runs a plan in the background. `on_event(dict)` is called from the
    reader thread for every event; `on_exit(rc, stderr)` once at the end.

    The runner watches the launcher process itself, not only its output: if
    kpc-launch dies (killed, OOM) while something else still holds its
    stdout, the batch ends within LINGER_S of its death instead of never."""

    LINGER_S = 3.0

    def __init__(self, plan, jobs, on_event, on_exit):
        # Its own session: no controlling terminal reaches the probes. From a
        # terminal (or LAVA's console shell) they inherited the runner's, and
        # inherited_signal_state failed (self.has_ctty true); a signal from
        # the terminal is the runner's to handle (stop() ends the launcher).
        self._proc = subprocess.Popen([paths.launcher(), "batch", "--jobs", str(jobs)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self._proc.stdin.write("".join(json.dumps(p) + "\n" for p in plan).encode())
        self._proc.stdin.close()
        self._on_event, self._on_exit = on_event, on_exit
        self._stderr = bytearray()
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _drain_stderr(self):
        fd = self._proc.stderr.fileno()
        while True:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return
                self._stderr += chunk
                del self._stderr[:-65536]
            elif self._proc.poll() is not None:
                return

    def _lines(self):
        fd = self._proc.stdout.fileno()
        pending, dead_since = b"", None
        while True:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                yield from lines
                continue
            if self._proc.poll() is not None:
                dead_since = dead_since or time.monotonic()
                if time.monotonic() - dead_since > self.LINGER_S:
                    break  # the launcher is gone; whoever holds its stdout is not ours to wait for
        if pending:
            yield pending

    def _read(self):
        for raw in self._lines():
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "garbage", "line": line}
            self._on_event(event)
        rc = self._proc.wait()
        self._stderr_thread.join(timeout=self.LINGER_S)
        self._on_exit(rc, bytes(self._stderr).decode("utf-8", "replace"))

    def stop(self) -> None:
        """Ask the launcher to recover every run and exit (SIGTERM)."""
        if self._proc.poll() is None:
            self._proc.terminate()
        self._thread.join(timeout=30)


def for_emulated_target(plan: list[dict]) -> list[dict]:
    """PLAN for a guest under emulation (TCG): each run's no-progress
    threshold stretched (see EMULATED_HANG_FACTOR), never below the case's."""
    return [{**e, "hang_ms": max(e["hang_ms"], min(e["hang_ms"] * EMULATED_HANG_FACTOR, e["timeout_ms"] // 2))}
            for e in plan]
