// What a probe and the supervisor of its run (kpc-launch's per-run shim)
// say to each other besides observations: one vocabulary for both sides.
//
// FUSE recovery. A FUSE deadlock (a task waiting in fuse_flush for a server
// that is itself exiting) can only be undone from outside the stuck
// process: by aborting the connection through fusectl (needs root, or a
// fusectl mounted by the system, where a connection's owner may abort it),
// or by answering its requests through another descriptor of the same
// connection. The launcher tells the probe which one it has:
//
//   KPC_FUSE_RECOVERY=fusectl   it can abort any connection the run made
//   KPC_FUSE_RECOVERY=device    it can only answer the requests of a
//                               connection whose /dev/fuse descriptor the
//                               probe handed it (deposit_fuse_device)
//
// and, for runs whose plan asks for it, gives the probe a SOCK_SEQPACKET
// socket to the shim in KPC_SUPERVISOR_FD. Without either variable the probe
// runs by hand, and only root can undo a deadlock.
#pragma once

#include <string>

namespace kpc::supervisor {

inline constexpr const char* kFdEnv = "KPC_SUPERVISOR_FD";
inline constexpr const char* kFuseRecoveryEnv = "KPC_FUSE_RECOVERY";
inline constexpr const char* kFusectl = "fusectl";
inline constexpr const char* kDevice = "device";

// The message that carries a /dev/fuse descriptor (SCM_RIGHTS): this
// prefix and the connection number. The shim answers one byte: kAck, or
// kNak followed by the reason.
inline constexpr const char* kFuseDevicePrefix = "fuse-device ";
inline constexpr char kAck = 'k';
inline constexpr char kNak = 'n';

// "fusectl", "device", or "" (not under kpc-launch).
std::string fuse_recovery();

// Hands the supervisor a duplicate of `devfd` (a /dev/fuse descriptor of
// connection `conn`) and waits up to 5 s for it to hold it. "" or what failed.
std::string deposit_fuse_device(int devfd, unsigned long conn);

}  // namespace kpc::supervisor
