// exit_closes_every_fd: when a process exits, the kernel closes every
// descriptor it held -- the peers of its pipes and sockets see EOF -- and
// exit_group() ends every thread, including threads blocked in system
// calls, so the process is reaped as one.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kpc/probe.h"

namespace {
int g_block_fd = -1;
void* blocked_reader(void*) {
  char c;
  (void)!read(g_block_fd, &c, 1);  // never returns: nobody writes
  return nullptr;
}
bool eof_within(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, ms) != 1) return false;
  char c;
  return read(fd, &c, 1) == 0;
}
}  // namespace

int probe_main(kpc::Probe&) {
  // 1. Three kinds of descriptors the child holds the writing side of: a
  //    pipe, a duplicate of another pipe's end, a stream socket.
  kpc::Pipe a = kpc::Pipe::make(O_CLOEXEC), b = kpc::Pipe::make(O_CLOEXEC), never = kpc::Pipe::make(O_CLOEXEC);
  int sv[2];
  KPC_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
  kpc::Fd sock_mine(sv[0]), sock_theirs(sv[1]);
  kpc::Pipe ready = kpc::Pipe::make(O_CLOEXEC);
  kpc::Child child = kpc::fork_child([&] {
    KPC_SYS(dup(b.write.get()));  // a second reference to the same end
    // 2. Two threads blocked in read(); then the main thread exits.
    g_block_fd = never.read.get();
    pthread_t t1, t2;
    KPC_ERRNUM(pthread_create(&t1, nullptr, blocked_reader, nullptr));
    KPC_ERRNUM(pthread_create(&t2, nullptr, blocked_reader, nullptr));
    kpc::send_byte(ready.write.get());
    // returning runs exit(0) -> exit_group
  });
  a.write.reset();
  b.write.reset();
  sock_theirs.reset();
  KPC_CHECK(kpc::recv_byte(ready.read.get(), 5000).has_value());
  // 3. The child is reaped as one; every peer sees EOF.
  kpc::observe("child.status", kpc::describe_wait_status(child.wait()));
  kpc::observe("pipe.eof", eof_within(a.read.get(), 2000));
  kpc::observe("duplicated_pipe.eof", eof_within(b.read.get(), 2000));
  kpc::observe("socket.eof", eof_within(sock_mine.get(), 2000));
  return 0;
}
