// The probe's side of kpc/supervisor.h.
#include "kpc/supervisor.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "kpc/fdpass.h"

namespace kpc::supervisor {

namespace {
int channel_fd() {
  const char* s = getenv(kFdEnv);
  if (!s || !*s) return -1;
  char* end = nullptr;
  long v = strtol(s, &end, 10);
  return (*end == '\0' && v >= 0 && v < INT_MAX) ? static_cast<int>(v) : -1;
}
}  // namespace

std::string fuse_recovery() {
  const char* s = getenv(kFuseRecoveryEnv);
  return s ? s : "";
}

std::string deposit_fuse_device(int devfd, unsigned long conn) {
  int sock = channel_fd();
  if (sock < 0) return std::string("no supervisor channel (") + kFdEnv + " is not set)";
  if (!send_fd(sock, devfd, kFuseDevicePrefix + std::to_string(conn)))
    return std::string("sendmsg to the supervisor: ") + strerror(errno);
  pollfd p{sock, POLLIN, 0};
  int rc;
  do rc = poll(&p, 1, 5000);
  while (rc < 0 && errno == EINTR);
  if (rc == 0) return "the supervisor did not acknowledge the FUSE device within 5 s";
  char reply[512];
  ssize_t n;
  do n = recv(sock, reply, sizeof reply, 0);
  while (n < 0 && errno == EINTR);
  if (n <= 0) return n == 0 ? "the supervisor closed its channel" : std::string("recv: ") + strerror(errno);
  if (reply[0] == kAck) return "";
  return "the supervisor refused the FUSE device: " + std::string(reply + 1, static_cast<size_t>(n - 1));
}

}  // namespace kpc::supervisor
