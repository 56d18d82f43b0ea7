// bystander_fs MOUNTPOINT: somebody else's FUSE filesystem, for the tests
// that prove kpc never touches a FUSE connection it did not make (security
// audit finding 4: hang recovery aborted every FUSE mount the probe could
// see -- lxcfs, sshfs, ...). Mounts one read-only file, `hello`, on
// MOUNTPOINT in the caller's mount namespace, prints "ready", and serves
// until killed. Not a case: run by runner/tests only.
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "kpc/probe.h"

namespace {

const char kText[] = "hello from a bystander\n";

struct stat attr_of(fuse_ino_t ino) {
  struct stat st {};
  st.st_ino = ino;
  if (ino == FUSE_ROOT_ID) {
    st.st_mode = S_IFDIR | 0755;
    st.st_nlink = 2;
  } else {
    st.st_mode = S_IFREG | 0444;
    st.st_nlink = 1;
    st.st_size = sizeof kText - 1;
  }
  return st;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent != FUSE_ROOT_ID || std::strcmp(name, "hello") != 0) return (void)fuse_reply_err(req, ENOENT);
  fuse_entry_param e{};
  e.ino = 2;
  e.attr = attr_of(2);
  fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st = attr_of(ino);
  fuse_reply_attr(req, &st, 0);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino != 2) return (void)fuse_reply_err(req, EISDIR);
  fi->direct_io = 1;
  fuse_reply_open(req, fi);
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info*) {
  size_t len = sizeof kText - 1;
  size_t n = static_cast<size_t>(off) >= len ? 0 : std::min(size, len - static_cast<size_t>(off));
  fuse_reply_buf(req, kText + (n ? off : 0), n);
}

}  // namespace

int probe_main(kpc::Probe& p) {
  if (p.args.size() != 1) kpc::broken("usage: bystander_fs MOUNTPOINT");
  fuse_lowlevel_ops ops{};
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.open = op_open;
  ops.read = op_read;
  const char* argv[] = {"bystander_fs", "-o", "fsname=bystander,subtype=bystander,allow_other", nullptr};
  fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, nullptr);
  if (!se || fuse_session_mount(se, p.args[0].c_str()) != 0) kpc::broken("cannot mount on " + p.args[0]);
  std::printf("ready\n");
  std::fflush(stdout);
  fuse_session_loop(se);
  fuse_session_unmount(se);
  fuse_session_destroy(se);
  return 0;
}
