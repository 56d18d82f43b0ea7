"""kpc as a relocatable bundle for a device under test (`./kpc bundle`).

    tar xf kpc-x86_64.tar.xz && kpc/run

The tarball holds one directory, kpc/, laid out like the checkout so the
runner's paths need no change:

  run                   the entry point (POSIX sh): judges with python3 >= 3.9, or records
                        events for `./kpc evaluate` (runner/bundle/run)
  build/bin/kpc-launch  the launcher, build/probes/* the probes and helpers, build/testprobes/*
                        the launcher's test probes: all static, stripped
  runner/kpc/*.py       the runner's stdlib-only modules, runner/kpc-dut its entry
  cases/lib/include/kpc/signal_names.def
                        the signal names (the probes' library and values.py share them)
  cases/cases.json      the case metadata, precompiled (no tomllib needed)
  cases/<area>/*.exp    the expected tables
  plan.jsonl            every run (case x variant x flavor), probes under @KPC_ROOT@; plan-slow.jsonl
                        the slow cases' runs
  needs                 what the requirement checks ask of a machine (kconfig, files, commands)
  manifest.json         the bundle's version, architecture, the probes' libc
  lava/kpc.yaml         the LAVA test definition; kirk/ an LTPROOT for kirk (runtest/kpc,
                        testcases/bin/kpc-ltp)
"""

from __future__ import annotations

import datetime
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile

from . import cases, envinfo, formats, launch, paths, safefile, tables, values

# The runner modules the device needs (Python >= 3.9, standard library only).
MODULES = ("__init__", "cases", "catalogue", "dut", "envinfo", "evaluate", "formats", "inputs", "kver", "launch",
           "paths", "render", "report", "requirements", "runtimes", "safefile", "session", "tables", "targets",
           "tomlread", "values")
ROOT_MARK = "@KPC_ROOT@"
TOP = "kpc"
XZ_PRESET = 3


class BundleError(Exception):
    pass


def _stripped(path):
    with tempfile.TemporaryDirectory(prefix="kpc-strip-") as d:
        out = os.path.join(d, "x")
        ok = shutil.which("strip") and subprocess.run(["strip", "-o", out, path], capture_output=True).returncode == 0
        with open(out if ok else path, "rb") as f:
            return f.read()


def _is_static(data):
    """An ELF without a program interpreter (PT_INTERP): it runs on a
    machine without this one's libraries."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    import struct
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        ptype, = struct.unpack_from("<I", data, phoff + i * phentsize)
        if ptype == 3:  # PT_INTERP
            return False
    return True


def binaries() -> list[tuple[str, str]]:
    """(path in the bundle, path here) of the launcher, probes, helpers and
    test probes."""
    out = []
    b = paths.build_dir()
    for sub in ("bin", "probes", "testprobes"):
        d = os.path.join(b, sub)
        for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            p = os.path.join(d, n)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                out.append((f"build/{sub}/{n}", p))
    if not any(rel == "build/bin/kpc-launch" for rel, _ in out):
        raise BundleError(f"{paths.launcher()} is missing: build first (./kpc run or ./kpc selftest)")
    return out


def plan(all_cases: dict[str, cases.Case], slow: bool) -> str:
    """Every run of the suite on a device (no runtimes: those are the
    controller's --runtime), the probes under ROOT_MARK."""
    out = []
    for case in all_cases.values():
        if bool(case.slow) != slow:
            continue
        for variant in case.variants or [""]:
            for flavor in case.flavors:
                rid = case.id + (f":{variant}" if variant else "") + f"@{flavor}"
                out.append(launch.plan_entry(rid, case, variant, flavor, probe_dir=f"{ROOT_MARK}/build/probes"))
    return "".join(json.dumps(p, sort_keys=True) + "\n" for p in out)


def needs(all_cases: dict[str, cases.Case]) -> str:
    """What requirements.skip_reason asks of a machine beyond root, caps,
    kernel and flavors: the shell entry point checks these."""
    lines = set()
    for case in all_cases.values():
        r = case.requires
        lines |= {f"kconfig {k}" for k in r.kconfig} | {f"file {f}" for f in r.files} | \
            {f"command {c}" for c in r.commands}
    for line in lines:
        if not all(c.isalnum() or c in " _-./+" for c in line):
            raise BundleError(f"requirement '{line}' has characters the device's shell would have to quote")
    return "".join(f"{x}\n" for x in sorted(lines))


def _git_describe():
    try:
        out = subprocess.run(["git", "-C", paths.ROOT, "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def manifest() -> dict:
    return {"kpc_bundle": 1, "version": _git_describe(), "arch": platform.machine(),
            "libc": envinfo.libc_version(), "python_min": "3.9",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def lava_definition() -> str:
    with open(os.path.join(paths.ROOT, "lava", "kpc.yaml"), encoding="utf-8") as f:
        return f.read()


KPC_LTP = """#!/bin/sh
# kirk (LTP's runner) runs this from $LTPROOT/testcases/bin: one kpc run,
# judged by the bundle, LTP's exit codes. The bundle is three levels up.
here=$(cd "$(dirname "$0")" && pwd -P)
exec "$here/../../../run" --ltp "$@"
"""


def members(all_cases: dict[str, cases.Case]) -> list[tuple[str, bytes, int]]:
    """(name in the bundle, bytes, mode) of everything the bundle holds."""
    files = [("run", _read(os.path.join(paths.RUNNER, "bundle", "run")), 0o755),
             ("runner/kpc-dut", _read(os.path.join(paths.RUNNER, "bundle", "kpc-dut")), 0o755)]
    for m in MODULES:
        files.append((f"runner/kpc/{m}.py", _read(os.path.join(paths.RUNNER, "kpc", f"{m}.py")), 0o644))
    # values.py reads the signal names where the C++ library has them
    files.append((os.path.relpath(values.SIGNAL_NAMES_DEF, paths.ROOT), _read(values.SIGNAL_NAMES_DEF), 0o644))
    for rel, path in binaries():
        data = _stripped(path)
        if not _is_static(data):
            raise BundleError(f"{path} is dynamically linked: the bundle needs static binaries (KPC_STATIC=ON)")
        files.append((rel, data, 0o755))
    files.append(("cases/cases.json", cases.precompile(all_cases).encode(), 0o644))
    for case in sorted(all_cases.values(), key=lambda c: (c.area, c.id)):   # each case's rows, and its area's sets
        for path in (os.path.join(paths.EXPECTED, case.area, tables.AREA_FILE), case.table_path):
            name = f"cases/{case.area}/{os.path.basename(path)}"
            if os.path.isfile(path) and name not in {f[0] for f in files}:
                files.append((name, _read(path), 0o644))
    files.append(("plan.jsonl", plan(all_cases, slow=False).encode(), 0o644))
    files.append(("plan-slow.jsonl", plan(all_cases, slow=True).encode(), 0o644))
    files.append(("needs", needs(all_cases).encode(), 0o644))
    files.append(("manifest.json", (json.dumps(manifest(), sort_keys=True) + "\n").encode(), 0o644))
    files.append(("lava/kpc.yaml", lava_definition().encode(), 0o644))
    files.append(("kirk/runtest/kpc", formats.kirk_runtest(all_cases).encode(), 0o644))
    files.append(("kirk/testcases/bin/kpc-ltp", KPC_LTP.encode(), 0o755))
    files.append(("kirk/metadata/ltp.json", b'{"tests": {}}\n', 0o644))
    return files


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def tar_bytes(files: list[tuple[str, bytes, int]], compress: bool = True) -> bytes:
    """The tarball: one top directory, root-owned, fixed modes and times, so
    the same inputs make the same archive."""
    buf = io.BytesIO()
    mtime = int(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc).timestamp())
    # xz preset 3: 8.7 MB in 13 s here, against 7.5 MB in 53 s at the
    # default 6 (134 MB of static binaries and tables, one core).
    xz = {"preset": XZ_PRESET} if compress else {}
    with tarfile.open(fileobj=buf, mode="w:xz" if compress else "w", format=tarfile.GNU_FORMAT, **xz) as tar:
        dirs = set()
        for name, data, mode in files:
            parts = f"{TOP}/{name}".split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
                    tar.addfile(info)
            info = tarfile.TarInfo(f"{TOP}/{name}")
            info.size, info.mode, info.mtime = len(data), mode, mtime
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(all_cases: dict[str, cases.Case], output: str, compress: bool = True) -> int:
    """Write the bundle to OUTPUT (safefile: no link followed). Returns its size.
    An OUTPUT safefile would refuse is refused before the work."""
    safefile.check(output)
    data = tar_bytes(members(all_cases), compress=compress)
    safefile.write(output, data)
    return len(data)
