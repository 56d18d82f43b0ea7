"""Run a probe as the process of an OCI container (runc, crun): the
--runtime prefix for OCI runtimes.

    /usr/bin/python3 runner/kpc/oci_run.py --runtime /usr/sbin/runc -- PROBE ARGS...

Builds a bundle in a private directory: an empty read-only rootfs, and a
config.json whose process is the probe, with kpc's build directory
bind-mounted read-only at the same path (probes, helpers), a tmpfs on /tmp,
the observation channel (fd 3) passed with --preserve-fds, and the KPC_*
environment. Runs `RUNTIME --root STATE run --bundle B ID` in the
foreground, then deletes the container and the bundle, always. Containers
left by a killed wrapper are found by the next one (their ids name the
wrapper's pid) and deleted.

Signal state: this wrapper does not change the signal mask or the ignored
set it inherited, and starts the runtime with subprocess's
restore_signals, which puts back SIGPIPE/SIGXFSZ (that Python itself
ignores) to their defaults — so the runtime sees the launcher's dirty
caller state unchanged (kpc's dirty caller does not ignore SIGPIPE/SIGXFSZ).

A runtime that refuses to run here (crun on a hybrid cgroup host, say)
leaves a `skip` record with its own error line, never a failure.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

STATE_ROOT = "/run/kpc-oci"


def _build_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    return os.environ.get("KPC_BUILD_DIR") or os.path.join(root, "build")


def config(argv, build_dir):
    env = ["PATH=/usr/bin:/bin", "KPC_TMPDIR=/tmp"]
    env += [f"{k}={v}" for k, v in os.environ.items() if k.startswith("KPC_") and k != "KPC_TMPDIR"]
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]  # runc spec's defaults
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": argv, "env": env, "cwd": "/",
                    "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                    "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "kpc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime",
                                                                                    "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
            {"destination": build_dir, "type": "bind", "source": build_dir, "options": ["rbind", "ro"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
                  "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
                  "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]},
    }


def _runtime_cmd(runtime, *args):
    return [runtime, "--root", STATE_ROOT, *args]


def sweep(runtime):
    """Delete containers and bundles of wrappers that no longer exist
    (killed with SIGKILL: the launcher's last resort)."""
    for b in glob.glob(os.path.join(tempfile.gettempdir(), "kpc-oci-*-*")):
        pid = os.path.basename(b).split("-")[2]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(b, ignore_errors=True)
    try:
        out = subprocess.run(_runtime_cmd(runtime, "list", "-q"), capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return
    for cid in out.split():
        parts = cid.split("-")
        if len(parts) >= 3 and parts[0] == "kpc" and parts[1].isdigit() and not os.path.exists(f"/proc/{parts[1]}"):
            subprocess.run(_runtime_cmd(runtime, "delete", "-f", cid), capture_output=True, timeout=20)


def _record_skip(reason):
    fd = int(os.environ.get("KPC_OBS_FD", "3"))
    try:
        os.write(fd, (json.dumps({"skip": reason[:900]}) + "\n").encode())
    except OSError:
        sys.stderr.write(f"kpc-oci: skip: {reason}\n")


def main(argv):
    if len(argv) < 4 or argv[0] != "--runtime" or argv[2] != "--":
        sys.stderr.write("usage: oci_run.py --runtime PATH -- PROBE [ARGS...]\n")
        return 2
    runtime, probe_argv = argv[1], argv[3:]
    name = os.path.basename(runtime)
    os.makedirs(STATE_ROOT, exist_ok=True)
    sweep(runtime)
    bundle = tempfile.mkdtemp(prefix=f"kpc-oci-{os.getpid()}-")
    cid = f"kpc-{os.getpid()}-{os.path.basename(bundle).rsplit('-', 1)[-1]}"
    rc = 1
    try:
        os.mkdir(os.path.join(bundle, "rootfs"))
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config(probe_argv, _build_dir()), f, indent=1)
        obs_fd = int(os.environ.get("KPC_OBS_FD", "3"))
        # Forward what the engine sends us to the runtime (which proxies it
        # into the container). Installed after the spawn: a handler set
        # before it would reset an ignored disposition the runtime must see.
        proc = subprocess.Popen(_runtime_cmd(runtime, "run", "--bundle", bundle, "--preserve-fds", "1", cid),
                                pass_fds=(obs_fd,) if obs_fd == 3 else (), stdin=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, restore_signals=True)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT):
            signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
        _, err = proc.communicate()
        rc = proc.returncode
        err = err.decode("utf-8", "replace").strip()
        if err:
            sys.stderr.write(err + "\n")
        if rc != 0 and _refused(err):
            _record_skip(f"{name} cannot run a container here: {err.splitlines()[-1]}")
            rc = 0
    finally:
        subprocess.run(_runtime_cmd(runtime, "delete", "-f", cid), capture_output=True, timeout=30)
        shutil.rmtree(bundle, ignore_errors=True)
    return rc if rc >= 0 else 128 - rc


def _refused(err):
    """The runtime's own setup failed (before the probe ran)."""
    low = err.lower()
    return any(w in low for w in ("cgroup", "container_linux.go", "error:", "level=error", "cannot"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
