// See kpc/fdpass.h.
#include "kpc/fdpass.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace kpc {

namespace {
// A message of one buffer with room for one descriptor (SCM_RIGHTS).
struct OneFdMessage {
  iovec iov;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  OneFdMessage(void* data, size_t size) : iov{data, size} {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
  }
  OneFdMessage(const OneFdMessage&) = delete;  // msg points into it
};
}  // namespace

bool send_fd(int sock, int fd, std::string_view text) {
  OneFdMessage m(const_cast<char*>(text.data()), text.size());
  msghdr& msg = m.msg;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t n;
  do n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n >= 0;
}

std::optional<ReceivedFd> recv_fd(int sock, bool nonblocking) {
  char body[512];
  OneFdMessage m(body, sizeof body);
  msghdr& msg = m.msg;
  ssize_t n;
  do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | (nonblocking ? MSG_DONTWAIT : 0));
  while (n < 0 && errno == EINTR);
  if (n == 0) errno = 0;  // EOF: not a stale EAGAIN
  if (n <= 0) return std::nullopt;
  ReceivedFd out{std::string(body, static_cast<size_t>(n)), -1};
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) std::memcpy(&out.fd, CMSG_DATA(c), sizeof out.fd);
  return out;
}

}  // namespace kpc
