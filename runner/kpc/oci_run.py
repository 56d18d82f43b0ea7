"""Run a probe as the process of an OCI container (runc, crun): the
--runtime prefix for OCI runtimes.

    /usr/bin/python3 runner/kpc/oci_run.py --runtime /usr/sbin/runc -- PROBE ARGS...

Builds a bundle in a private directory: an empty read-only rootfs, and a
config.json whose process is the probe, with kpc's build directory
bind-mounted read-only at the same path (probes, helpers), a tmpfs on /tmp,
the observation channel (fd 3) passed with --preserve-fds, and the KPC_*
environment. Runs `RUNTIME --root STATE run --bundle B ID` in the
foreground, then deletes the container and the bundle, always. Containers
left by a killed wrapper are found by the next one and deleted: a wrapper
holds an exclusive flock on STATE/ID.lock for as long as it lives, so a
lock that can be taken means the wrapper is gone. (Its PID would not tell:
runtime_pid1_duties starts the wrapper as PID 1 of its own namespace, and
"pid 1 is alive" kept 18 dead containers once.)

Signal state: this wrapper does not change the signal mask or the ignored
set it inherited, and starts the runtime with subprocess's
restore_signals, which puts back SIGPIPE/SIGXFSZ (that Python itself
ignores) to their defaults — so the runtime sees the launcher's dirty
caller state unchanged (kpc's dirty caller does not ignore SIGPIPE/SIGXFSZ).

A runtime that refuses to run here (crun on a hybrid cgroup host, say)
leaves a `skip` record with its own error line, never a failure.
"""

import fcntl
import glob
import json
import os
import secrets
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


def _lock_path(cid):
    return os.path.join(STATE_ROOT, cid + ".lock")


def _bundle_path(cid):
    return os.path.join(tempfile.gettempdir(), "kpc-oci-" + cid[len("kpc-"):])


def _hold_lock(cid):
    """Create STATE/ID.lock already locked (flock on a temporary name, then
    rename), so a sweep never sees it unlocked while this wrapper lives.
    The fd stays open, and the lock held, until the process is gone."""
    tmp = _lock_path(cid) + ".new"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(tmp, _lock_path(cid))
    return fd


def _wrapper_gone(cid):
    """True when no live wrapper holds the container's lock (or it has none:
    a container of an older kpc, or one whose lock a sweep already took)."""
    try:
        fd = os.open(_lock_path(cid), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _remove(runtime, cid):
    subprocess.run(_runtime_cmd(runtime, "delete", "-f", cid), capture_output=True, timeout=30)
    shutil.rmtree(_bundle_path(cid), ignore_errors=True)
    for path in (_lock_path(cid), _lock_path(cid) + ".new"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def sweep(runtime):
    """Delete the containers, bundles and locks of wrappers that no longer
    exist (killed with SIGKILL, or with the PID namespace they were init
    of)."""
    ids = {os.path.basename(p)[:-len(".lock")] for p in glob.glob(os.path.join(STATE_ROOT, "kpc-*.lock"))}
    ids |= {"kpc-" + os.path.basename(b)[len("kpc-oci-"):]
            for b in glob.glob(os.path.join(tempfile.gettempdir(), "kpc-oci-*"))}
    try:
        out = subprocess.run(_runtime_cmd(runtime, "list", "-q"), capture_output=True, text=True, timeout=20).stdout
        ids |= {cid for cid in out.split() if cid.startswith("kpc-")}
    except (OSError, subprocess.TimeoutExpired):
        pass
    for cid in sorted(ids):
        if _wrapper_gone(cid):
            _remove(runtime, cid)


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
    cid = "kpc-" + secrets.token_hex(8)
    lock_fd = _hold_lock(cid)
    bundle = _bundle_path(cid)
    rc = 1
    try:
        os.mkdir(bundle, 0o700)
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
        _remove(runtime, cid)
        os.close(lock_fd)
    return rc if rc >= 0 else 128 - rc


def _refused(err):
    """The runtime's own setup failed (before the probe ran)."""
    low = err.lower()
    return any(w in low for w in ("cgroup", "container_linux.go", "error:", "level=error", "cannot"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
