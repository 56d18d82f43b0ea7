// Freeing a run's FUSE deadlocks -- and only the run's.
//
// A task waiting in fuse_flush/request_wait_answer for a server that will
// never answer is freed by ending its connection: writing to fusectl's
// connections/N/abort (root; or the connection's owner, where fusectl is
// mounted), or answering its requests through another descriptor of the
// same connection (no privilege needed, but the descriptor must have been
// taken before the deadlock: kpc/supervisor.h).
//
// Which connections are the run's: those whose mounts the run's tasks see
// and the launcher did not see when the run started or sees now. A probe's
// mount namespace is a copy of the host's, so it also lists every FUSE
// mount of the machine (lxcfs, sshfs, another user's...): those are never
// touched.
#pragma once

#include <sys/types.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kpc/proc.h"
#include "kpc/raii.h"

namespace kpcl::fuse {

// The FUSE connections of the FUSE mounts in one mountinfo file.
std::set<unsigned long> connections_in(const std::string& mountinfo_path);
// ... among these mounts (a mountinfo file already read).
std::set<unsigned long> connections_of(const std::vector<kpc::MountInfo>& mounts);

// The connections of the FUSE mounts any task of `procs` sees, pinned: the
// tasks' mount namespaces are held open, so none of those mounts -- and no
// connection found -- can end and free its number while this lives. (A
// connection's number is its superblock's minor, handed out lowest-free:
// the next FUSE mount on the machine, anyone's, gets an ended connection's
// number. Found, then killed with the run, then aborted by number: a
// stranger's fresh mount aborted.) Abort while holding it; subtract what is
// foreign *after* finding (a mount that reached the tasks' namespace by
// propagation is in the launcher's view by then). Not covered: a task of
// the run unmounting a FUSE mount between the finding and the abort.
struct PinnedConnections {
  std::set<unsigned long> ids;
  std::vector<kpc::Fd> namespaces;  // the mount namespaces read
};
PinnedConnections run_connections(const std::vector<pid_t>& procs);

// A descriptor of fusectl's root (the connections/ directory), or -1 and
// *why. Uses the system's fusectl when it is mounted; otherwise, with
// CAP_SYS_ADMIN, a fusectl mount of its own that only this descriptor
// reaches (made in a throwaway mount namespace: nothing is mounted where
// anyone could see it). Child processes inherit it.
int open_fusectl(std::string* why);

// Writes "1" to N/abort under `fusectl_fd`. "" or what failed; a
// connection that is already gone is not a failure.
std::string abort_connection(int fusectl_fd, unsigned long conn);

// A supervisor's own device on a connection: a FUSE_DEV_IOC_CLONE of a
// descriptor the probe handed over, non-blocking. Holding it keeps the
// connection alive (the kernel ends a connection when its last device
// closes), so it is taken only where that cannot change what a case
// observes, and closed as soon as the run is over.
class DeviceClone {
 public:
  static std::optional<DeviceClone> adopt(int devfd, unsigned long conn, std::string* why);
  DeviceClone(DeviceClone&& o) noexcept;
  DeviceClone& operator=(DeviceClone&&) = delete;
  DeviceClone(const DeviceClone&) = delete;
  ~DeviceClone();

  unsigned long connection() const { return conn_; }
  // Reads every request waiting on the connection and fails it with EIO
  // (FORGETs and INTERRUPTs need no answer). Returns how many were
  // answered; -1 once the connection has ended.
  int answer_pending();

 private:
  DeviceClone(int fd, unsigned long conn) : fd_(fd), conn_(conn) {}
  int fd_ = -1;
  unsigned long conn_ = 0;
};

}  // namespace kpcl::fuse
