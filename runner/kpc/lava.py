"""kpc under a real LAVA dispatcher, without a LAVA server (lava-run).

What runner/tests/test_lava.py and bench/bundle.py use to prove the bundle
and the test definition (lava/kpc.yaml) on a real engine:

  ramdisk()   ONE newc archive (LAVA unpacks a ramdisk with GNU cpio to add
              its overlay, and cpio stops at the first trailer: a
              concatenation loses everything after its first archive):
              busybox and an init giving a root shell on the console, the
              bundle at /opt/kpc, a Python to run it (this machine's
              interpreter, its libraries and the standard-library modules the
              bundle's runner imports), the kernel's fuse module and config.
  job()       the job: deploy kernel + ramdisk to tmpfs with LAVA's overlay,
              boot under QEMU (TCG here), run kpc's test definition inline.
  run_job()   lava-run --job-id N --output-dir D --device lava/device-qemu-tcg.yaml JOB
  results()   LAVA's test cases from lava-run's log ({definition: {case: result}}).

lava-run needs root; lava-server's device templates are not needed: the
rendered device (lava/device-qemu-tcg.yaml, from lava-server's qemu.jinja2
with no_kvm) is in the repository.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import tempfile

import json

from . import guest_image, kernels, paths

PYTHON = "/usr/bin/python3"
PROMPT = "kpc-lava# "
DEVICE = os.path.join(paths.ROOT, "lava", "device-qemu-tcg.yaml")
DEFINITION = os.path.join(paths.ROOT, "lava", "kpc.yaml")

INIT = r"""#!/bin/busybox sh
# PID 1 of kpc's LAVA ramdisk: a root shell on the console for LAVA to type into.
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs shm /dev/shm
ln -s /proc/self/fd /dev/fd; ln -s fd/0 /dev/stdin; ln -s fd/1 /dev/stdout; ln -s fd/2 /dev/stderr
hostname kpc-lava
echo 0 > /proc/sys/kernel/printk_ratelimit 2>/dev/null
# LAVA waits for the kernel's banner (loglevel 6 or more shows it); from now
# on only warnings and worse, so kernel lines do not split LAVA's result lines
dmesg -n 4
for m in $(cat /kpc-modules 2>/dev/null); do insmod "$m" || echo "kpc-lava: insmod $m failed"; done
export HOME=/root PATH=/bin:/sbin:/usr/bin:/usr/sbin PS1='@PROMPT@'
echo "kpc-lava: shell on the console"
exec setsid cttyhack /bin/sh
"""


def _libs(binary):
    """The shared libraries BINARY loads (ldd), real paths."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = set()
    for line in out.splitlines():
        m = re.search(r"(/\S+)", line.split("=>")[-1])
        if m and os.path.exists(m.group(1)):
            libs.add(m.group(1))
    return libs


def python_files(bundle_dir: str) -> tuple[list[str], str]:
    """The files a Python needs to run the bundle's runner: found by running
    it here (-X importtime lists every module imported), for a real run that
    writes every format."""
    with tempfile.TemporaryDirectory(prefix="kpc-lava-py-") as tmp:
        argv = [PYTHON, "-X", "importtime", "-I", os.path.join(bundle_dir, "runner", "kpc-dut"),
                "--case", "sigmask_survives_execve", "--flavor", "host", "--json", f"{tmp}/r.json",
                "--junit", f"{tmp}/j.xml", "--ktap", f"{tmp}/k.tap", "--kcidb", f"{tmp}/k.json",
                "--tap", f"{tmp}/t.tap", "--lava"]
        r = subprocess.run(argv, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    names = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    names.discard("package")
    names |= {"encodings.latin_1", "encodings.ascii", "encodings.utf_8", "traceback", "linecache", "tokenize"}
    code = ("import importlib.util, sys, json\n"
            "out = []\n"
            "for n in json.loads(sys.stdin.read()):\n"
            "    try:\n"
            "        s = importlib.util.find_spec(n)\n"
            "    except Exception:\n"
            "        continue\n"
            "    if s and s.origin and s.origin.startswith('/usr/lib/python3'):\n"
            "        out.append(s.origin)\n"
            "print(json.dumps(sorted(set(out))))\n")
    found = json.loads(subprocess.run([PYTHON, "-I", "-c", code], input=json.dumps(sorted(names)),
                                      capture_output=True, text=True, check=True).stdout)
    files = set()
    for f in found:
        files.add(f)
        if f.endswith(".py"):
            d, base = os.path.split(f)
            pyc = os.path.join(d, "__pycache__", base[:-3] + f".cpython-{sys.version_info[0]}{sys.version_info[1]}.pyc")
            if os.path.exists(pyc):
                files.add(pyc)
    real = os.path.realpath(PYTHON)
    files |= {real} | _libs(real)
    for f in list(files):
        if f.endswith(".so"):
            files |= _libs(f)
    stdlib = os.path.dirname(os.__file__)
    files.add(os.path.join(stdlib, "os.py"))   # the landmark Python finds its prefix by
    return sorted(files), real


def ramdisk(bundle_tar: str | None, kernel: kernels.Kernel, out: str) -> int:
    """Write the single-archive ramdisk to OUT (uncompressed newc: LAVA
    repacks it on every job, and gzip is the slow part)."""
    c = guest_image.Cpio()
    for d in ("proc", "sys", "dev", "tmp", "run", "root", "etc", "opt", "usr/bin", "sbin", "usr/sbin"):
        c.dir(d)
    with open(guest_image.BUSYBOX, "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    c.symlink("bin/sh", "busybox")
    c.file("init", INIT.replace("@PROMPT@", PROMPT).encode(), 0o755)
    c.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    c.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    with tempfile.TemporaryDirectory(prefix="kpc-lava-") as tmp:
        with tarfile.open(bundle_tar) as tar:
            for m in tar.getmembers():
                if m.isfile():
                    c.file(f"opt/{m.name}", tar.extractfile(m).read(), m.mode & 0o7777)
                elif m.isdir():
                    c.dir(f"opt/{m.name}", m.mode & 0o7777)
            tar.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(tmp)
        files, real = python_files(os.path.join(tmp, "kpc"))
    for f in files:
        with open(f, "rb") as fh:
            c.file(f, fh.read(), 0o755 if os.access(f, os.X_OK) else 0o644)
    c.symlink("usr/bin/python3", os.path.basename(real))
    # the kernel's modules the cases need, in dependency order, and its config
    names = []
    for i, p in enumerate(kernel.module_closure(("fuse",))):
        name = f"lib/kpc-modules/{i:02d}-{os.path.basename(p).split('.ko')[0]}.ko"
        c.file(name, kernels.module_bytes(p))
        names.append("/" + name)
    c.file("kpc-modules", ("\n".join(names) + "\n").encode())
    if kernel.config:   # where envinfo.read_kconfig looks (Debian's kernels have no /proc/config.gz)
        c.file(f"boot/config-{kernel.release}", "".join(f"{k}={v}\n" for k, v in kernel.config.items()).encode())
    data = c.bytes()
    with open(out, "wb") as f:
        f.write(data)
    return len(data)


def job(kernel_image: str, ramdisk_path: str, append: str,
        definition_text: str,
        timeout_min: int = 20, parameters: dict[str, str] | None = None) -> dict:
    """The LAVA job as a dict (yaml.safe_dump it): deploy to tmpfs with
    LAVA's overlay in the ramdisk, boot with QEMU, run kpc's test
    definition (inline: the repository file's own content)."""
    import yaml
    definition = yaml.safe_load(definition_text)
    return {
        "device_type": "qemu", "job_name": "kpc: the bundle under LAVA (QEMU TCG)",
        "visibility": "public", "priority": "medium",
        "timeouts": {"job": {"minutes": timeout_min}, "action": {"minutes": timeout_min},
                     "connection": {"minutes": 5}},
        "context": {"arch": "amd64", "no_kvm": True},
        "actions": [
            {"deploy": {"to": "tmpfs", "timeout": {"minutes": 5}, "images": {
                "kernel": {"image_arg": f'-kernel {{kernel}} -append "{append}"', "url": f"file://{kernel_image}"},
                "ramdisk": {"image_arg": "-initrd {ramdisk}", "url": f"file://{ramdisk_path}",
                            "format": "cpio.newc", "overlays": {"lava": True}}}}},
            {"boot": {"method": "qemu", "media": "tmpfs", "timeout": {"minutes": 5}, "prompts": [PROMPT]}},
            {"test": {"timeout": {"minutes": timeout_min}, "definitions": [
                {"from": "inline", "name": "kpc", "path": "inline/kpc.yaml", "repository": definition,
                 **({"parameters": parameters} if parameters else {})}]}},
        ]}


def run_job(job_path: str, outdir: str, job_id: str) -> tuple[int, str]:
    """lava-run, its log in OUTDIR/job.log; returns (exit status, log path)."""
    log = os.path.join(outdir, "job.log")
    with open(log, "wb") as f:
        rc = subprocess.call(["lava-run", "--job-id", str(job_id), "--output-dir", outdir, "--device", DEVICE,
                              job_path], stdout=f, stderr=subprocess.STDOUT)
    return rc, log


def results(log_path: str) -> dict[str, dict[str, str]]:
    """{definition: {case: result}} from lava-run's log: each line is a YAML
    record; the test cases are the records of level 'results'."""
    import yaml
    out = {}
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"lvl": "results"' not in line and "lvl: results" not in line:
                continue
            try:
                rec = yaml.safe_load(line)
            except yaml.YAMLError:
                continue
            msg = rec.get("msg") if isinstance(rec, dict) else None
            if isinstance(msg, dict) and "case" in msg:
                out.setdefault(msg.get("definition"), {})[msg["case"]] = msg.get("result")
    return out
