// A scratch cgroup v2 directory for a probe: cgroup2 mounted in the probe's
// own mount namespace (so nothing appears in the machine's mount table) and
// a fresh cgroup created below the probe's own cgroup, removed -- with
// everything in it killed -- when the object goes away.
//
//   auto cg = kpc::cgroup2::Scratch::create("kill");   // skips with the reason when impossible
//   cg->write("cgroup.procs", std::to_string(pid));
//   std::string events = cg->read("cgroup.events");
//
// Where the host has no writable cgroup2 (cgroup v1 only, or a user
// namespace without its own cgroup namespace), create() skips the probe and
// says why. On a hybrid host (v1 controllers, v2 "unified" hierarchy) the
// v2 core files (cgroup.procs, cgroup.kill, cgroup.freeze, cgroup.events)
// work; controllers such as memory stay with v1: enable() then says no.
//
// Removal: the destructor, or -- when the probe ends through skip() or
// broken() -- an at_abnormal_exit hook. A probe killed by a signal leaves
// its (then empty) scratch cgroup behind; the next scratch made below the
// same cgroup removes such leftovers once they are two hours old (no run
// outlives the maximum case timeout of one hour).
#pragma once

#include <memory>
#include <optional>
#include <string>

namespace kpc::cgroup2 {

class Scratch {
 public:
  static std::unique_ptr<Scratch> create(const std::string& name);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  // Absolute path of the scratch cgroup (or of `sub` below it).
  const std::string& path() const { return path_; }
  std::string path_of(const std::string& sub) const { return sub.empty() ? path_ : path_ + "/" + sub; }
  // mkdir of a child cgroup `sub` (relative to the scratch cgroup).
  void make(const std::string& sub) const;
  // Writes `text` to `file` (relative to the scratch cgroup): "" or the errno name.
  std::string write(const std::string& file, const std::string& text) const;
  // The file's contents, or nullopt (ENOENT: the kernel lacks that file).
  std::optional<std::string> read(const std::string& file) const;
  // The value of `key` in a flat-keyed file such as cgroup.events ("populated 1").
  std::optional<long> key(const std::string& file, const std::string& key) const;
  // Polls (1 ms steps) until key(file, k) == want or timeout; the last value.
  std::optional<long> wait_key(const std::string& file, const std::string& k, long want, int timeout_ms) const;
  // Enables `controller` for the scratch cgroup's children ("memory"):
  // "" or why not (not available here, bound to cgroup v1, ...).
  std::string enable(const std::string& controller) const;
  // Moves process `pid` into `sub` ("" = the scratch cgroup itself).
  void move(pid_t pid, const std::string& sub = "") const;

 private:
  Scratch() = default;
  std::string mount_, path_;
};

}  // namespace kpc::cgroup2
