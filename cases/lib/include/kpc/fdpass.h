// Passing a descriptor over a Unix socket (SCM_RIGHTS), with a short text:
// how a probe hands its /dev/fuse to the run's supervisor, and how the
// launcher's fusectl helper hands back a descriptor of its private mount.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kpc {

// Sends `text` (non-empty) and a duplicate of `fd` as one message. false
// and errno on failure.
bool send_fd(int sock, int fd, std::string_view text);

// Receives one message: its text and the descriptor it carried (-1 when it
// carried none), made close-on-exec. nullopt on EOF (errno 0), on error
// (errno) or, with `nonblocking`, when nothing is there yet (EAGAIN).
struct ReceivedFd {
  std::string text;
  int fd = -1;
};
std::optional<ReceivedFd> recv_fd(int sock, bool nonblocking = false);

}  // namespace kpc
