"""Driving kpc-launch in batch mode: a plan in, a stream of events out."""

import json
import subprocess
import threading

from . import paths, runtimes


def plan_entry(run_id, case, variant, flavor, runtime=None):
    env = {}
    if runtime is not None and case.runtime_workload:
        # The probe plays the engine: it starts the runtime itself.
        env["KPC_RUNTIME_PREFIX"] = "\x1f".join(runtime.prefix)
        runtime_in_argv = False
    else:
        runtime_in_argv = runtime is not None
    argv = list(runtime.prefix) if runtime_in_argv else []
    argv += [f"{paths.probe_dir()}/{case.probe}"]
    if variant:
        argv += ["--variant", variant]
    argv += case.args
    entry = {"run": run_id, "case": case.id, "variant": variant, "flavor": flavor, "argv": argv,
             "timeout_ms": case.timeout_ms, "hang_ms": case.hang_ms, "exclusive": case.exclusive}
    if env:
        entry["env"] = env
    if runtime_in_argv:
        entry["caller"] = runtimes.DIRTY_CALLER
    return entry


class Batch:
    """Runs a plan in the background. `on_event(dict)` is called from the
    reader thread for every event; `on_exit(rc, stderr)` once at the end."""

    def __init__(self, plan, jobs, on_event, on_exit):
        self._proc = subprocess.Popen([paths.launcher(), "batch", "--jobs", str(jobs)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._proc.stdin.write("".join(json.dumps(p) + "\n" for p in plan))
        self._proc.stdin.close()
        self._on_event, self._on_exit = on_event, on_exit
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self._proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "garbage", "line": line}
            self._on_event(event)
        stderr = self._proc.stderr.read()
        self._on_exit(self._proc.wait(), stderr)

    def stop(self):
        """Ask the launcher to recover every run and exit (SIGTERM)."""
        if self._proc.poll() is None:
            self._proc.terminate()
        self._thread.join(timeout=30)
