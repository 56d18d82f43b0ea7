#!/usr/bin/python3
"""kpc on every Debian userland: the README's two commands in a fresh rootfs.

For each suite (default: bullseye bookworm trixie sid) a minimal Debian
rootfs with only what README.md assumes (python3, git, ca-certificates) is
made with mmdebstrap (cached as a tarball under /var/cache/kpc-distros),
unpacked into a private directory, this checkout's committed HEAD is cloned
into it as /project, and there, as root, exactly the README's commands run:

    ./kpc run
    ./kpc selftest

The rootfs is entered with pivot_root in a private mount namespace (not
chroot: user namespaces and mount propagation then behave as on a real
machine), with /proc, /sys, /dev and the host's network; the kernel is this
machine's. One row per suite: the userland's glibc, Python and g++, the
verdict totals of `./kpc run`, whether `./kpc selftest` passed, and the wall
time of each. Exit 0 when every row is green (both commands exit 0, no fail
and no error), 1 otherwise, 2 on bad usage.

Usage: bench/distros.py [SUITE...] [--keep] [--refresh] [--logs DIR] [--json FILE]
Run as root. Logs of both commands go to DIR (default results/runs/distros).
The cache directory is KPC_DISTRO_CACHE (default /var/cache/kpc-distros).
"""

import argparse
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "runner"))

from kpc import safefile  # noqa: E402

SUITES = ("bullseye", "bookworm", "trixie", "sid")
# What README.md assumes a machine has; kpc installs the rest.
INCLUDE = "python3,git,ca-certificates"
CACHE = os.environ.get("KPC_DISTRO_CACHE", "/var/cache/kpc-distros")
MAX_AGE_S = 7 * 86400     # sid moves: a tarball older than a week is made again
SUITE_TIMEOUT_S = 45 * 60
VERDICTS = ("pass", "fail", "xfail", "skip", "hang", "error")

# Runs inside the rootfs, in /project, as root: the README's two commands,
# then the versions of what they ran with. Everything lands in /tmp/kpc-distro.
INSIDE = r"""
out=/tmp/kpc-distro; mkdir -p "$out"
now() { date +%s.%N; }
t0=$(now)
./kpc run >"$out/run.log" 2>&1; echo $? >"$out/run.rc"
t1=$(now)
cp results/runs/last.json "$out/run.json" 2>/dev/null || true
./kpc selftest >"$out/selftest.log" 2>&1; echo $? >"$out/selftest.rc"
t2=$(now)
{
  echo "glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | cut -d' ' -f2)"
  echo "python=$(/usr/bin/python3 -c 'import platform; print(platform.python_version())')"
  echo "gxx=$(g++ -dumpfullversion 2>/dev/null || echo none)"
  echo "run_s=$(echo "$t1 - $t0" | awk '{print $1 - $3}')"
  echo "selftest_s=$(echo "$t2 - $t1" | awk '{print $1 - $3}')"
} >"$out/facts"
"""

# Enters ROOT (argv 1) with pivot_root and runs the rest of argv in /project.
ENTER = r"""
R=$1; shift
mount --bind "$R" "$R"
mkdir -p "$R/proc" "$R/sys" "$R/dev" "$R/run" "$R/.old"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/run"
cd "$R"; pivot_root . .old; umount -l /.old; rmdir /.old
exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb \
  LANG=C.UTF-8 bash -c 'cd /project && "$@"' _ "$@"
"""


class Refused(Exception):
    """Bad usage or a machine this cannot run on: exit 2."""


def say(msg):
    sys.stderr.write(f"distros: {msg}\n")
    sys.stderr.flush()


def _private_root_dir(path):
    """PATH as a directory only root can write (made if missing); refused
    when it is a link, not a directory, not root's, or writable by others:
    the tarballs in it become root filesystems."""
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise Refused(f"{path}: not a directory of root's that only root can write; set KPC_DISTRO_CACHE")
    return path


def mirror():
    """The Debian mirror this machine's apt uses, or None (mmdebstrap's own
    default then)."""
    try:
        with open("/etc/apt/sources.list.d/debian.sources", encoding="utf-8") as f:
            for line in f:
                if line.startswith("URIs:"):
                    return line.split()[1]
    except (OSError, IndexError):
        pass
    try:
        with open("/etc/apt/sources.list", encoding="utf-8") as f:
            for line in f:
                words = line.split()
                if len(words) > 2 and words[0] == "deb" and "debian" in line:
                    return next(w for w in words[1:] if not w.startswith("["))
    except (OSError, StopIteration):
        pass
    return None


def tarball(suite, refresh=False):
    """CACHE/SUITE.tar, made with mmdebstrap when missing, older than a
    week, or --refresh; written under a temporary name, then renamed."""
    cache = _private_root_dir(CACHE)
    path = os.path.join(cache, f"{suite}.tar")
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode) and st.st_size > 0 and not refresh and time.time() - st.st_mtime < MAX_AGE_S:
            return path, 0.0
    except FileNotFoundError:
        pass
    if shutil.which("mmdebstrap") is None:
        say("installing mmdebstrap with apt-get")
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "mmdebstrap"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdout=subprocess.DEVNULL)
    fd, tmp = tempfile.mkstemp(prefix=f".{suite}-", suffix=".tar", dir=cache)
    os.close(fd)
    log = os.path.join(cache, f"{suite}.log")
    t0 = time.monotonic()
    say(f"{suite}: making the rootfs tarball with mmdebstrap (log: {log})")
    cmd = ["mmdebstrap", "--aptopt=Acquire::Check-Valid-Until \"false\"", "--variant=minbase",
           f"--include={INCLUDE}", suite, tmp, *([m] if (m := mirror()) else [])]
    with open(log, "w", encoding="utf-8") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        os.unlink(tmp)
        raise Refused(f"mmdebstrap {suite} failed (exit {rc}; see {log})")
    os.replace(tmp, path)
    return path, time.monotonic() - t0


def _copy_resolv_conf(root):
    """The host's name servers for apt inside; the rootfs's own
    etc/resolv.conf is removed first, never written through (a link there
    would point into this machine)."""
    try:
        with open("/etc/resolv.conf", "rb") as f:
            data = f.read()
    except OSError:
        return
    etc = os.open(os.path.join(root, "etc"), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        try:
            os.unlink("resolv.conf", dir_fd=etc)
        except FileNotFoundError:
            pass
        fd = os.open("resolv.conf", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=etc)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    finally:
        os.close(etc)


def _read(root, name):
    """A file the run left in the rootfs's /tmp/kpc-distro, not through a link."""
    try:
        fd = os.open(os.path.join(root, "tmp", "kpc-distro", name), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read().decode("utf-8", "replace")


def totals(doc_text, log_text):
    """{verdict: count} of the run: from its results file, else from the
    'totals:' line of its output; None when neither says."""
    try:
        doc = json.loads(doc_text)
        counts = dict.fromkeys(VERDICTS, 0)
        for r in doc["results"]:
            counts[r["verdict"]] += 1
        return counts
    except (TypeError, ValueError, KeyError):
        pass
    m = re.search(r"^totals: (.*?)  \(", log_text or "", re.M)
    if not m:
        return None
    return {v: int(n) for n, v in (part.split() for part in m.group(1).split(", "))}


def pytest_summary(log_text):
    """The closing line of pytest ('432 passed, 20 skipped in 303.29s'), or ''."""
    lines = [ln.strip("= ") for ln in (log_text or "").splitlines()]
    lines = [ln for ln in lines if re.fullmatch(r"\d+ (passed|failed|skipped|errors?)(, \d+ \w+)* in [\d.]+s.*", ln)]
    return re.sub(r" in [\d.]+s.*", "", lines[-1]) if lines else ""


def first_complaint(log_text, width=100):
    """The first `kpc:` line of a log, cut to WIDTH (a build failure's is the
    whole compiler output on one line), or ''."""
    for ln in (log_text or "").splitlines():
        if ln.startswith("kpc: "):
            ln = ln.split("\\n", 1)[0]
            return ln if len(ln) <= width else ln[:width - 3] + "..."
    return ""


def green(row):
    t = row.get("totals")
    return (row.get("run_rc") == 0 and row.get("selftest_rc") == 0 and t is not None
            and t.get("fail", 0) == 0 and t.get("error", 0) == 0)


def kill_inside(root, rounds=50):
    """SIGKILL every process whose root directory is ROOT (what the two
    commands started there and left running: a killed bench, a timeout --
    kpc's launcher runs in a session of its own, so killing the session
    of `bash` is not enough), until none is left."""
    try:
        want = os.stat(root)
    except OSError:
        return
    for _ in range(rounds):
        found = False
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                st = os.stat(f"/proc/{pid}/root")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino) and int(pid) != os.getpid():
                found = True
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if not found:
            return
        time.sleep(0.1)


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def one_suite(suite, refresh, keep, logs):
    row = {"suite": suite}
    t0 = time.monotonic()
    tar, row["tarball_s"] = tarball(suite, refresh)
    work = tempfile.mkdtemp(prefix=f"kpc-distro-{suite}-", dir="/var/tmp")   # 0700: only root reaches it
    root = os.path.join(work, "root")
    try:
        os.mkdir(root, 0o755)
        subprocess.run(["tar", "-C", root, "-xf", tar], check=True)
        _copy_resolv_conf(root)
        subprocess.run(["git", "clone", "-q", ROOT, os.path.join(root, "project")], check=True)
        say(f"{suite}: ./kpc run, then ./kpc selftest (logs: {logs})")
        try:
            proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-euc", ENTER, "_", root,
                                   "bash", "-c", INSIDE], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=SUITE_TIMEOUT_S, start_new_session=True)
            row["enter_rc"] = proc.returncode
            if proc.returncode != 0:
                row["problem"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        except subprocess.TimeoutExpired:
            row["problem"] = [f"did not finish in {SUITE_TIMEOUT_S} s"]
        facts = dict(line.split("=", 1) for line in (_read(root, "facts") or "").splitlines() if "=" in line)
        for name in ("run", "selftest"):
            rc = _read(root, f"{name}.rc")
            row[f"{name}_rc"] = int(rc) if rc and rc.strip().isdigit() else None
            row[f"{name}_s"] = float(facts[f"{name}_s"]) if facts.get(f"{name}_s") else None
            text = _read(root, f"{name}.log")
            if text is not None:
                safefile.write(os.path.join(logs, f"{suite}-{name}.log"), text)
        run_log = _read(root, "run.log")
        row["totals"] = totals(_read(root, "run.json"), run_log)
        row["selftest"] = pytest_summary(_read(root, "selftest.log")) or first_complaint(_read(root, "selftest.log"))
        row.update(glibc=facts.get("glibc", "?"), python=facts.get("python", "?"), gxx=facts.get("gxx", "?"))
    finally:
        kill_inside(root)
        if keep:
            say(f"{suite}: kept {root}")
        else:
            subprocess.run(["rm", "-rf", "--one-file-system", work])
    row["wall_s"] = time.monotonic() - t0
    row["green"] = green(row)
    return row


def _mins(s):
    return "-" if s is None else f"{int(s // 60)}m{int(s % 60):02d}s"


def table(rows):
    head = ("SUITE", "GLIBC", "PYTHON", "G++", "./kpc run", "./kpc selftest", "RUN", "SELFTEST", "TOTAL", "")
    body = []
    for r in rows:
        t = r.get("totals")
        run = ("exit ?" if r.get("run_rc") is None else f"exit {r['run_rc']}") + (
            ": " + ", ".join(f"{t[v]} {v}" for v in VERDICTS if t.get(v)) if t else "")
        st = ("exit ?" if r.get("selftest_rc") is None else f"exit {r['selftest_rc']}") + (
            f": {r['selftest']}" if r.get("selftest") else "")
        body.append((r["suite"], r.get("glibc", "?"), r.get("python", "?"), r.get("gxx", "?"), run, st,
                     _mins(r.get("run_s")), _mins(r.get("selftest_s")), _mins(r.get("wall_s")),
                     "green" if r["green"] else "RED" + (f" ({' '.join(r['problem'])})" if r.get("problem") else "")))
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [head, *body])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("suites", nargs="*", metavar="SUITE", help=f"Debian suites (default: {' '.join(SUITES)})")
    ap.add_argument("--keep", action="store_true", help="keep each unpacked rootfs (its path is printed)")
    ap.add_argument("--refresh", action="store_true", help="make the rootfs tarballs again")
    ap.add_argument("--logs", default=os.path.join(ROOT, "results", "runs", "distros"),
                    help="where both commands' output goes, as SUITE-run.log and SUITE-selftest.log")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    suites = args.suites or list(SUITES)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupted)
    try:
        bad = [s for s in suites if not re.fullmatch(r"[a-z]+", s)]
        if bad:
            raise Refused(f"'{bad[0]}' is not a Debian suite name (e.g. {', '.join(SUITES)})")
        if os.geteuid() != 0:
            raise Refused("run as root: it makes root filesystems and enters them (mount namespaces, pivot_root)")
        if subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                          capture_output=True, text=True).stdout.strip():
            say("note: uncommitted changes are not tested (the rootfs gets a clone of HEAD)")
        os.makedirs(args.logs, exist_ok=True)
        rows = []
        for suite in suites:
            rows.append(one_suite(suite, args.refresh, args.keep, args.logs))
            say(f"{suite}: {'green' if rows[-1]['green'] else 'RED'} in {_mins(rows[-1]['wall_s'])}")
    except Refused as e:
        say(str(e))
        return 2
    except KeyboardInterrupt:
        say("interrupted (what ran in the rootfs was killed and the rootfs removed)")
        return 130
    print(table(rows))
    if args.json:
        safefile.write(args.json, json.dumps(rows, indent=1) + "\n")
    return 0 if all(r["green"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
