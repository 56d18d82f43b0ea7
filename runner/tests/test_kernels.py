"""The kernel download path, which runs as root: KPC_DEBIAN_MIRROR is one
URI, every index of kpc's own sources must download and verify, apt keeps
its _apt sandbox, the kernel cache must be the caller's own, a cached
kernel is checked against the hashes recorded from the signed packages,
and --kernel garbage is one line and exit 2.

Offline: the Debian archive here is a small signed repository built in a
temporary directory (dpkg-deb, a throwaway gpg key) and served over HTTP on
127.0.0.1 by the test itself, which also sees which user each request
comes from. Audit §7, §8 and §15 #56/#57 (security-audit.md of the research notes).
"""

import email.utils
import fcntl
import functools
import hashlib
import http.server
import json
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
import threading
import types

import pytest


from kpc import kernels, paths
from test_cli import kpc

RELEASE = "6.66.6-cloud-amd64"
VERSION = "6.66.6-1"
IMAGE_PKG = f"linux-image-{RELEASE}"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, apt's _apt sandbox)")


# ------------------------------------------------------------ a Debian archive of our own

def bzimage(version=b"6.66.6-cloud-amd64 (kpc@test) #1 SMP", size=0x2000):
    """Bytes with an x86 boot sector and setup header, as a bzImage starts:
    0xAA55 at 0x1fe, "HdrS" at 0x202, kernel_version at 0x20e (+0x200)."""
    b = bytearray(size)
    b[0x1fe:0x200] = b"\x55\xaa"
    b[0x202:0x206] = b"HdrS"
    b[0x206:0x208] = (0x020f).to_bytes(2, "little")
    if version is not None:
        b[0x20e:0x210] = (0x400 - 0x200).to_bytes(2, "little")
        b[0x400:0x400 + len(version) + 1] = version + b"\0"
    return bytes(b)


def _deb(work, name, version, files=None, depends=None):
    """A .deb built with dpkg-deb: `files` is {path: bytes}."""
    tree = work / f"{name}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    control = (f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
               f"Maintainer: kpc tests <kpc@test.invalid>\n" + (f"Depends: {depends}\n" if depends else "")
               + "Description: fake kernel package for kpc's tests\n")
    (tree / "DEBIAN" / "control").write_text(control)
    for rel, data in (files or {}).items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    out = work / f"{name}_{version}_amd64.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--root-owner-group", "--build", str(tree), str(out)],
                   check=True, capture_output=True)
    return control, out


def make_repo(top, gnupghome, suites=("bookworm",), signed=True, image=None):
    """A Debian-style repository under top/repo with linux-image-cloud-amd64
    -> linux-image-RELEASE (a fake bzImage, config, fuse.ko). Returns the
    repo path and the .deb SHA256s."""
    repo, work = top / "repo", top / "work"
    pool = repo / "pool" / "main"
    pool.mkdir(parents=True)
    work.mkdir()
    mods = f"lib/modules/{RELEASE}"
    debs = [_deb(work, "linux-image-cloud-amd64", VERSION, depends=f"{IMAGE_PKG} (= {VERSION})"),
            _deb(work, IMAGE_PKG, VERSION, {
                f"boot/vmlinuz-{RELEASE}": image if image is not None else bzimage(),
                f"boot/config-{RELEASE}": b"CONFIG_FUSE_FS=m\nCONFIG_KPC_TEST=y\n",
                f"{mods}/kernel/fs/fuse/fuse.ko": b"\x7fELF" + b"\0" * 60 + b"\0license=GPL\0depends=\0name=fuse\0",
                f"{mods}/modules.builtin": b"kernel/fs/ext4/ext4.ko\n"})]
    stanzas, sha = [], {}
    for control, deb in debs:
        data = deb.read_bytes()
        shutil.copy(deb, pool / deb.name)
        sha[deb.name.split("_")[0]] = hashlib.sha256(data).hexdigest()
        stanzas.append(control + f"Filename: pool/main/{deb.name}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    packages = "\n".join(stanzas).encode()
    for suite in suites:
        d = repo / "dists" / suite
        (d / "main" / "binary-amd64").mkdir(parents=True)
        (d / "main" / "binary-amd64" / "Packages").write_bytes(packages)
        (d / "Release").write_text(
            f"Origin: kpc-test\nLabel: kpc-test\nSuite: {suite}\nCodename: {suite}\n"
            f"Date: {email.utils.formatdate(usegmt=True)}\nArchitectures: amd64\nComponents: main\n"
            f"SHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} main/binary-amd64/Packages\n")
        if signed:
            subprocess.run(["gpg", "--batch", "--yes", "--homedir", str(gnupghome), "--digest-algo", "SHA512",
                            "--clearsign", "-o", str(d / "InRelease"), str(d / "Release")],
                           check=True, capture_output=True)
    return repo, sha


@pytest.fixture(scope="module")
def gpg_key():
    """A throwaway signing key and its public keyring (signed-by=)."""
    if shutil.which("gpg") is None:
        pytest.fail("gpg is not installed (Debian package gpg; .ci/run installs it)")
    top = tempfile.mkdtemp(prefix="kpc-test-gpg.")
    os.chmod(top, 0o755)
    home = os.path.join(top, "gnupg")
    os.mkdir(home, 0o700)
    subprocess.run(["gpg", "--batch", "--homedir", home, "--passphrase", "", "--quick-gen-key",
                    "kpc test archive <kpc@test.invalid>", "ed25519", "sign", "never"], check=True, capture_output=True)
    keyring = os.path.join(top, "keyring.gpg")
    with open(keyring, "wb") as f:
        subprocess.run(["gpg", "--batch", "--homedir", home, "--export"], check=True, stdout=f)
    os.chmod(keyring, 0o644)
    yield home, keyring
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True)
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def area():
    """A directory apt's sandbox user can reach (pytest's tmp_path is under
    a 0700 directory): the cache lives here."""
    top = tempfile.mkdtemp(prefix="kpc-test-kernels.")
    os.chmod(top, 0o755)
    yield pathlib.Path(top)
    shutil.rmtree(top, ignore_errors=True)


def _peer_uid(port):
    """The uid owning the local TCP socket bound to 127.0.0.1:port."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want:
                return int(fields[7])
    return None


@pytest.fixture
def serve(area):
    """serve(directory, failing=paths) -> (URL, [(path, uid of the
    requesting socket)]); paths starting with one of `failing` get 503."""
    servers = []

    def start(directory, failing=()):
        seen = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, _peer_uid(self.client_address[1])))
                if self.path.startswith(tuple(failing)):
                    self.send_error(503)
                    return
                super().do_GET()

            def log_message(self, *args):
                pass
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}", seen
    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def debian(monkeypatch, area, gpg_key, serve):
    """kpc's kernel fetch pointed at a local signed archive, one suite,
    its cache in area/cache. Returns a namespace with the pieces."""
    home, keyring = gpg_key
    repo, sha = make_repo(area, home)
    url, seen = serve(repo)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KPC_DEBIAN_MIRROR", url)
    monkeypatch.setattr(kernels, "SUITES", ("bookworm",))
    monkeypatch.setattr(kernels, "KEYRING", keyring)
    monkeypatch.setattr(kernels, "CACHE", str(area / "cache"))

    class D:
        pass
    d = D()
    d.area, d.repo, d.sha, d.url, d.requests, d.cache, d.gnupghome = area, repo, sha, url, seen, area / "cache", home
    return d


def one_line(e):
    text = str(e)
    assert "\n" not in text, f"not one line: {text!r}"
    return text


class _NoRun:
    """kernels' subprocess module, with run() failing the test."""
    def __getattr__(self, name):
        return getattr(subprocess, name)

    @staticmethod
    def run(cmd, *args, **kw):
        raise AssertionError(f"ran {cmd[0]} although the input should have been refused first")


@pytest.fixture
def no_apt(monkeypatch):
    """Fail the test if kpc runs anything (apt-get, apt-cache, dpkg-deb)."""
    monkeypatch.setattr(kernels, "subprocess", _NoRun())


# ------------------------------------------------------------ KPC_DEBIAN_MIRROR (audit §7)

@pytest.mark.parametrize("mirror", [
    "http://127.0.0.1:9 bookworm main\ndeb [trusted=yes] file:/tmp/audit/fakerepo",   # apt_try.py
    "http://mirror.example/debian\n",
    "file:/srv/mirror [trusted=yes]",
    "http://mirror.example/debian\tbookworm",
    "[trusted=yes] http://mirror.example/debian",
    "http://mirror.example/debian#",
    "http://mirror.example/deb\x1bian",
    "ftp://mirror.example/debian",
    "mirror.example/debian",
    " ",
])
def test_a_mirror_that_is_not_one_uri_is_refused_before_apt_runs(mirror, monkeypatch, tmp_path, no_apt):
    monkeypatch.setenv("KPC_DEBIAN_MIRROR", mirror)
    monkeypatch.setattr(kernels, "CACHE", str(tmp_path / "cache"))
    with pytest.raises(kernels.KernelError) as e:
        kernels.fetch_debian(["bookworm"])
    assert one_line(e.value).startswith("KPC_DEBIAN_MIRROR: ")
    assert not (tmp_path / "cache" / "apt" / "etc" / "sources.list").exists()


@pytest.mark.parametrize("mirror", ["http://mirror.example/debian/", "https://u:p@mirror.example:8443/debian",
                                    "file:/srv/debian-mirror", "http://10.0.0.1:3142/debian"])
def test_a_mirror_uri_is_accepted(mirror, monkeypatch):
    monkeypatch.setenv("KPC_DEBIAN_MIRROR", mirror)
    assert kernels.debian_uri("/nonexistent") == mirror.rstrip("/")


def test_the_mirror_injection_is_refused_on_the_command_line(tmp_path, built):
    r = kpc("run", "--kernels", "bookworm", "--no-host", "--case", "sigmask_survives_execve", "--no-build",
            env={"KPC_DEBIAN_MIRROR": "http://127.0.0.1:9 bookworm main\ndeb [trusted=yes] file:/tmp/nothing",
                 "KPC_CACHE_DIR": str(tmp_path / "cache")})
    assert r.returncode == 2 and r.stderr.startswith("kpc: KPC_DEBIAN_MIRROR: "), r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert not (tmp_path / "cache" / "apt" / "etc" / "sources.list").exists()


# ------------------------------------------------------------ apt: signatures, failed indexes, sandbox

@needs_root
def test_a_signed_archive_is_fetched_by_the_sandboxed_apt_and_cached_with_hashes(debian, capsys):
    k = kernels.fetch_debian(["6.66"])[0]
    assert (k.label, k.release) == ("6.66", RELEASE)
    assert f"{IMAGE_PKG}={VERSION}" in k.origin and k.config["CONFIG_KPC_TEST"] == "y"
    # apt's HTTP method ran as _apt, not as root (APT::Sandbox::User=root before)
    apt_uid = pwd.getpwnam("_apt").pw_uid
    assert debian.requests and {uid for _, uid in debian.requests} == {apt_uid}, debian.requests
    assert any(p.endswith(".deb") for p, _ in debian.requests)
    # the stamp: the .deb's SHA256 from the signed index, every extracted file's SHA256
    stamp = json.loads((debian.cache / "kernels" / f"bookworm-{VERSION}" / "kpc-kernel.json").read_text())
    assert stamp["debs"] == {f"{IMAGE_PKG}={VERSION}": debian.sha[IMAGE_PKG]}
    assert stamp["files"]["vmlinuz"] == hashlib.sha256(bzimage()).hexdigest()
    assert "modules/kernel/fs/fuse/fuse.ko" in stamp["files"]
    assert [os.path.basename(p) for p in k.module_closure(["fuse"])] == ["fuse.ko"]
    assert k.builtin("ext4") and not k.builtin("fuse")
    # what apt's sandbox wrote into is _apt's, 0700, as apt makes its own partial/
    for d in ("lists/partial", "archives/partial"):
        st = os.stat(debian.cache / "apt" / d)
        assert (st.st_uid, st.st_mode & 0o777) == (apt_uid, 0o700)
    # a second run uses the cache: nothing downloaded
    n = len(debian.requests)
    capsys.readouterr()
    assert kernels.fetch_debian(["6.66"])[0].image == k.image
    assert "downloading" not in capsys.readouterr().err and len(debian.requests) == n


@needs_root
def test_an_unsigned_archive_is_refused(debian, area, monkeypatch, serve):
    (area / "unsigned").mkdir()
    repo, _ = make_repo(area / "unsigned", debian.gnupghome, signed=False)
    url, _ = serve(repo)
    monkeypatch.setenv("KPC_DEBIAN_MIRROR", url)
    with pytest.raises(kernels.KernelError) as e:
        kernels.fetch_debian(["6.66"])
    assert "is not signed" in one_line(e.value)
    assert not (debian.cache / "kernels" / f"bookworm-{VERSION}").exists()


@needs_root
def test_an_archive_signed_by_another_key_is_refused(debian, monkeypatch, tmp_path):
    other = tmp_path / "other.gpg"
    other.write_bytes(b"")
    monkeypatch.setattr(kernels, "KEYRING", str(other))
    with pytest.raises(kernels.KernelError) as e:
        kernels.fetch_debian(["6.66"])
    assert "apt-get update" in one_line(e.value)


@needs_root
def test_an_index_that_fails_to_download_is_an_error(debian, monkeypatch, serve):
    # trixie's index fails with a transient error: apt only warns ("W: Failed
    # to fetch", exit 0) and kpc went on with bookworm's (audit §7: how the
    # signed line of the injected sources.list was put out of the way)
    (debian.repo / "dists" / "trixie").symlink_to("bookworm")
    url, seen = serve(debian.repo, failing=["/dists/trixie/"])
    monkeypatch.setenv("KPC_DEBIAN_MIRROR", url)
    # no retries: quicker, and apt 2.6 can hang in its retry backoff after an immediate 503
    (debian.area / "apt.conf").write_text('Acquire::Retries "0";\n')
    monkeypatch.setenv("APT_CONFIG", str(debian.area / "apt.conf"))
    monkeypatch.setattr(kernels, "SUITES", ("bookworm", "trixie"))
    with pytest.raises(kernels.KernelError) as e:
        kernels.fetch_debian(["6.66"])
    assert "apt-get update" in one_line(e.value) and "trixie" in str(e.value), e.value
    assert any(p.startswith("/dists/trixie/") for p, _ in seen)
    assert not (debian.cache / "kernels" / f"bookworm-{VERSION}").exists()


@needs_root
def test_a_cache_apt_cannot_reach_is_refused_not_fetched_unsandboxed(debian, monkeypatch, tmp_path, no_apt):
    # a 0700 directory on the way: apt would download as root. Made here, not
    # taken from pytest (its own are 0700 from 7.3; Debian 11's 6.0 makes 0755)
    private = tmp_path / "private"
    private.mkdir()
    private.chmod(0o700)
    monkeypatch.setattr(kernels, "CACHE", str(private / "cache"))
    with pytest.raises(kernels.KernelError) as e:
        kernels.fetch_debian(["6.66"])
    assert "_apt" in one_line(e.value) and "KPC_CACHE_DIR" in str(e.value)


def test_fetches_into_one_cache_take_turns(tmp_path):
    cache = str(tmp_path)
    holder = os.open(os.path.join(cache, "kernels.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)
    got = threading.Event()

    def second():
        with kernels._locked(cache):
            got.set()
    t = threading.Thread(target=second)
    t.start()
    try:
        assert not got.wait(0.5), "a second fetch went ahead while the first held the cache"
    finally:
        os.close(holder)
    assert got.wait(10)
    t.join()
    opts = kernels.Apt._opts(types.SimpleNamespace(root="/r", sources="/r/etc/sources.list", arch="amd64"))
    assert "Debug::NoLocking=1" not in opts and "APT::Sandbox::User=_apt" in opts
    assert "APT::Sandbox::User=root" not in opts
    assert "APT::Architecture=amd64" in opts and "APT::Architectures::=amd64" in opts
    arm = kernels.Apt._opts(types.SimpleNamespace(root="/r", sources="/r/etc/sources.list", arch="arm64"))
    assert "APT::Architecture=arm64" in arm and "APT::Architectures::=arm64" in arm and "amd64" not in " ".join(arm)


# ------------------------------------------------------------ the kernel cache (audit §8)

def _hostile(path, uid=None, mode=None):
    path.mkdir(parents=True, exist_ok=True)
    if uid is not None:
        os.chown(path, uid, uid)
    if mode is not None:
        os.chmod(path, mode)


@needs_root
@pytest.mark.parametrize("where,uid,mode,expect", [
    ("", 65534, 0o755, "owned by uid 65534"),
    ("", None, 0o777, "writable by others (mode 0777)"),
    ("", None, 0o775, "writable by its group"),
    ("kernels", 65534, 0o755, "owned by uid 65534"),
    ("apt", None, 0o757, "writable by others"),
    ("apt/lists", 65534, 0o755, "owned by uid 65534"),
])
def test_a_cache_someone_else_can_write_is_refused(where, uid, mode, expect, monkeypatch, tmp_path, no_apt):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)
    _hostile(cache / where, uid, mode)
    monkeypatch.setattr(kernels, "CACHE", str(cache))
    monkeypatch.setenv("KPC_DEBIAN_MIRROR", "http://mirror.example/debian")
    with pytest.raises(kernels.KernelError) as e:
        kernels.fetch_debian(["6.1"])
    msg = one_line(e.value)
    assert expect in msg and str(cache / where).rstrip("/") in msg, msg


@needs_root
def test_a_symlinked_cache_directory_is_refused(monkeypatch, tmp_path, no_apt):
    cache = tmp_path / "cache"
    cache.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (cache / "kernels").symlink_to(tmp_path / "elsewhere")
    monkeypatch.setattr(kernels, "CACHE", str(cache))
    with pytest.raises(kernels.KernelError) as e:
        kernels.fetch_debian(["6.1"])
    assert "kernels is a symlink" in one_line(e.value)


@needs_root
def test_a_cache_planted_by_nobody_is_refused_on_the_command_line(tmp_path, built):
    """Audit reproduction 8 (apt_try2.py): nobody owns the cache and has put
    lists and an extracted "kernel" in it."""
    cache = tmp_path / "cache4"
    planted = cache / "kernels" / "bookworm-6.66.6-1"
    planted.mkdir(parents=True)
    (planted / "vmlinuz").write_text("NOT A KERNEL - planted in the cache by uid 65534\n")
    (planted / "kpc-kernel.json").write_text(json.dumps({"release": "6.66.6-evil", "suite": "bookworm",
                                                         "version": "6.66.6-1",
                                                         "packages": ["linux-image-6.66.6-evil=6.66.6-1"]}))
    for p in [cache, *cache.rglob("*")]:
        os.chown(p, 65534, 65534)
    r = kpc("run", "--kernels", "bookworm", "--no-host", "--case", "sigmask_survives_execve", "--no-build",
            env={"KPC_CACHE_DIR": str(cache), "KPC_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"})
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [f"kpc: kernel cache: {cache} is owned by uid 65534 (nobody), not by you "
                                     f"(uid 0 (root)): whoever owns it chooses what kpc boots; remove it or chown it"]


def test_cache_dir_makes_and_checks_each_level(tmp_path):
    old = os.umask(0o002)     # a group-writable umask must not leak into the cache
    try:
        path = paths.cache_dir("kernels", "x", root=str(tmp_path / "c"))
    finally:
        os.umask(old)
    assert path == str(tmp_path / "c" / "kernels" / "x")
    for p in (tmp_path / "c", tmp_path / "c" / "kernels", tmp_path / "c" / "kernels" / "x"):
        assert os.stat(p).st_mode & 0o777 == 0o755
    (tmp_path / "c" / "kernels").chmod(0o770)
    with pytest.raises(paths.PrivateDirError, match="writable by its group"):
        paths.cache_dir("kernels", root=str(tmp_path / "c"))


# ------------------------------------------------------------ a cached kernel is checked before use

def _stamp(debian):
    return debian.cache / "kernels" / f"bookworm-{VERSION}" / "kpc-kernel.json"


@needs_root
def test_a_changed_image_is_refused_until_refetched(debian):
    k = kernels.fetch_debian(["6.66"])[0]
    with open(k.image, "r+b") as f:
        f.seek(0x1000)
        f.write(b"evil")
    with pytest.raises(kernels.KernelError) as e:
        kernels.fetch_debian(["6.66"])
    assert "vmlinuz changed since it was extracted" in one_line(e.value) and "--refresh-kernels" in str(e.value)
    again = kernels.fetch_debian(["6.66"], refresh=True)[0]
    assert kernels.sha256_file(again.image) == hashlib.sha256(bzimage()).hexdigest()


@needs_root
def test_a_stamp_that_does_not_match_the_signed_index_is_refused(debian):
    kernels.fetch_debian(["6.66"])
    stamp = json.loads(_stamp(debian).read_text())
    stamp["debs"][f"{IMAGE_PKG}={VERSION}"] = "0" * 64
    stamp["files"]["vmlinuz"] = hashlib.sha256(b"anything").hexdigest()
    _stamp(debian).write_text(json.dumps(stamp))
    with pytest.raises(kernels.KernelError) as e:
        kernels.fetch_debian(["6.66"])
    assert "not extracted from the packages the signed index lists" in one_line(e.value)


@needs_root
def test_a_changed_module_is_refused_when_it_is_loaded(debian):
    k = kernels.fetch_debian(["6.66"])[0]
    ko = os.path.join(k.modules, "kernel", "fs", "fuse", "fuse.ko")
    with open(ko, "ab") as f:
        f.write(b"\0depends=evil\0")
    k = kernels.fetch_debian(["6.66"])[0]      # the image is fine: modules are checked when read
    with pytest.raises(kernels.KernelError, match="fuse.ko changed since it was extracted"):
        k.module_closure(["fuse"])
    os.unlink(ko)
    os.symlink("/etc/passwd", ko)
    with pytest.raises(kernels.KernelError):
        k.module_closure(["fuse"])


@needs_root
def test_a_stamp_from_an_older_kpc_is_fetched_again(debian, capsys):
    kernels.fetch_debian(["6.66"])
    _stamp(debian).write_text(json.dumps({"release": "6.66.6-evil", "suite": "bookworm", "version": VERSION,
                                          "packages": [f"{IMAGE_PKG}={VERSION}"]}))
    k = kernels.fetch_debian(["6.66"])[0]
    assert k.release == RELEASE and "older kpc" in capsys.readouterr().err


@needs_root
def test_a_cache_hit_hashes_the_image_not_the_whole_tree(debian, monkeypatch):
    """Checked at every use: the image and config (modules when they are
    read), not the modules tree (~100 MB in a real kernel)."""
    kernels.fetch_debian(["6.66"])
    hashed = []
    real = kernels.sha256_file
    monkeypatch.setattr(kernels, "sha256_file", lambda p: hashed.append(os.path.basename(p)) or real(p))
    kernels.fetch_debian(["6.66"])
    assert sorted(hashed) == ["config", "vmlinuz"]


# ------------------------------------------------------------ non-root

@needs_root
def test_an_unprivileged_user_fetches_into_a_cache_of_its_own(debian, area):
    os.chown(area, 65534, 65534)
    script = (f"import sys; sys.path.insert(0, {paths.RUNNER!r})\n"
              "from kpc import kernels\n"
              f"kernels.SUITES = ('bookworm',); kernels.KEYRING = {kernels.KEYRING!r}; kernels.CACHE = sys.argv[1]\n"
              "try:\n    print(kernels.fetch_debian(['6.66'])[0].release)\n"
              "except kernels.KernelError as e:\n    print('KernelError:', e)\n")
    env = {"PATH": os.environ["PATH"], "KPC_DEBIAN_MIRROR": debian.url, "HOME": "/nonexistent"}
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script]
    r = subprocess.run([*nobody, str(area / "mine")], capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout.strip() == RELEASE, r.stdout + r.stderr
    # root's cache is not nobody's: one line, no traceback
    os.makedirs(area / "roots", mode=0o755)
    os.chown(area / "roots", 0, 0)
    r = subprocess.run([*nobody, str(area / "roots")], capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout.startswith("KernelError: kernel cache: ") and "owned by uid 0" in r.stdout, r.stdout + r.stderr


# ------------------------------------------------------------ --kernel PATH[:MODDIR] (audit §15)

@pytest.fixture
def user_kernels(tmp_path):
    k = {}
    (tmp_path / "fake_bzimage").write_bytes(bzimage(version=b"   "))            # #57: HdrS, blank version
    (tmp_path / "noversion").write_bytes(bzimage(version=None))
    (tmp_path / "dotdot").write_bytes(bzimage(version=b"../../../etc/x"))
    (tmp_path / "good").write_bytes(bzimage(version=b"6.99.0-mine #1"))
    (tmp_path / "junk").write_bytes(b"\0" * 8192)
    (tmp_path / "lib" / "modules" / "6.99.0-mine").mkdir(parents=True)
    (tmp_path / "lib" / "modules" / "6.98.0-other").mkdir(parents=True)
    k["dir"] = tmp_path
    return k


GARBAGE = [
    ("/etc/passwd:/tmp", "is not a bzImage"),                    # #56
    ("{dir}/fake_bzimage", "cannot tell the kernel release"),    # #57
    ("/etc/passwd", "is not a bzImage"),
    ("", "give the path of a bzImage"),
    ("/dev/null", "no file /dev/null (not a regular file)"),
    ("{dir}", "not a regular file"),
    ("{dir}/junk:{dir}/lib/modules/6.99.0-mine", "is not a bzImage"),
    ("{dir}/noversion:/tmp", "must be named after the kernel release"),
    ("{dir}/fake_bzimage:{dir}", "must be named after the kernel release"),
    ("{dir}/dotdot", "not a kernel release"),
    ("{dir}/good:{dir}/lib/modules/6.98.0-other", "the image is release 6.99.0-mine"),
]


@pytest.mark.parametrize("spec,expect", GARBAGE)
def test_kernel_garbage_is_refused(spec, expect, user_kernels):
    with pytest.raises(kernels.KernelError) as e:
        kernels.from_path(spec.format(**user_kernels))
    assert expect in one_line(e.value)


def test_user_kernels_that_are_fine(user_kernels):
    d = user_kernels["dir"]
    k = kernels.from_path(f"{d}/good")
    assert (k.release, k.version, k.modules) == ("6.99.0-mine", (6, 99, 0), None)
    k = kernels.from_path(f"{d}/noversion:{d}/lib/modules/6.99.0-mine")
    assert k.release == "6.99.0-mine" and k.module_closure(["fuse"]) == []
    assert kernels.from_path(f"{d}/good:{d}/lib/modules/6.99.0-mine").label == "6.99.0-mine"


@needs_root
@pytest.mark.parametrize("spec", ["/etc/passwd:/tmp", "{dir}/fake_bzimage", "", "/dev/null", "/etc/passwd"])
def test_kernel_garbage_is_one_line_and_exit_2(spec, user_kernels, built):
    r = kpc("run", "--no-host", "--kernel", spec.format(**user_kernels), "--case", "sigmask_survives_execve",
            "--no-build")
    assert r.returncode == 2 and r.stderr.startswith(("kpc: --kernel ", "kpc: --kernel:")), r.stderr
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
