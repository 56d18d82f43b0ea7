// The event loop: start runs, collect their output, supervise, recover,
// report. Single-threaded; waits only in poll() with a timeout.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <memory>
#include <set>

#include "fuse_recovery.h"
#include "kpc/proc.h"
#include "kpc/raii.h"
#include "kpc/supervisor.h"
#include "launcher.h"

namespace kpcl {
namespace {

constexpr size_t kTailBytes = 16 * 1024;
constexpr int kRecheckMs = 20;  // a FUSE waiter nobody can answer is looked at again this soon

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

double ms_between(int64_t a, int64_t b) { return static_cast<double>(b - a) / 1e6; }

// L's own mount table, read again only when it has changed: an open
// mountinfo file polls POLLPRI once its namespace has gained or lost a
// mount since the last poll (proc(5)). Read afresh at every run's start and
// end, it was a tenth of L's CPU in a suite.
class OwnMounts {
 public:
  const std::vector<kpc::MountInfo>& now() {
    pollfd p{fd_.get(), POLLPRI, 0};
    if (fd_ && poll(&p, 1, 0) == 0) return mounts_;  // unchanged since it was read
    // Opened before the read: a change after the open shows at the next poll.
    fd_.reset(open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC));
    mounts_.clear();
    std::string text;
    char buf[16384];
    ssize_t n = 0;
    while (fd_ && ((n = read(fd_.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)))
      if (n > 0) text.append(buf, static_cast<size_t>(n));
    if (n < 0) fd_.reset();  // unread: read again next time
    else mounts_ = kpc::parse_mountinfo(text);
    return mounts_;
  }

 private:
  kpc::Fd fd_;
  std::vector<kpc::MountInfo> mounts_;
};

struct TaskHistory {
  char state;
  bool exiting;
  uint64_t ctxt;
  int64_t since_ns;
};

struct Stream {
  int fd = -1;
  std::string partial;  // incomplete last line (obs, status)
  std::string tail;     // last bytes (stdout, stderr)
};

struct Run {
  RunSpec spec;
  Spawned sp;
  int64_t start_ns = 0;
  Stream obs, out, err, status;

  json records = json::array();
  json protocol_errors = json::array();
  json marks = json::object();
  std::set<unsigned long> announced_conns;  // the probe's own mounts, as it said (reported; never aborted by id)
  bool fuse_request_timeouts = false;       // a connection the kernel itself will time out
  std::set<pid_t> unanswerable;             // FUSE waiters nobody could answer at the last scan
  std::optional<int> probe_status;
  double probe_status_ms = 0;  // when S's report of it arrived, from the run's start
  std::string shim_error;

  bool shim_exited = false;
  int shim_status = 0;

  // supervision
  std::map<pid_t, TaskHistory> history;
  int64_t last_scan_ns = 0;
  std::string outcome;  // "", "hang", "timeout", "interrupted"
  json trouble;         // details for hang / timeout
  bool recovering = false;
  int64_t recover_start_ns = 0;
  std::set<unsigned long> aborted;
  json abort_errors = json::array();
  bool asked_shim = false;
  bool gave_up = false;
  std::set<unsigned long> foreign;  // FUSE connections L saw when the run started
};

void read_stream(Stream& s, bool lines, const std::function<void(const std::string&)>& on_line) {
  if (s.fd < 0) return;
  char buf[8192];
  for (;;) {
    ssize_t n = read(s.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // EAGAIN: drained for now
    if (n == 0) {
      close(s.fd);
      s.fd = -1;
      return;
    }
    if (!lines) {
      s.tail.append(buf, static_cast<size_t>(n));
      if (s.tail.size() > kTailBytes) s.tail.erase(0, s.tail.size() - kTailBytes);
      continue;
    }
    s.partial.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = s.partial.find('\n')) != std::string::npos) {
      std::string line = s.partial.substr(0, nl);
      s.partial.erase(0, nl + 1);
      if (!line.empty()) on_line(line);
    }
  }
}

const std::set<std::string> kRecordKinds = {"obs", "note", "mark", "fuse_conn", "skip", "broken", "end"};

void on_obs_line(Run& r, const std::string& line) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  int kinds = 0;
  std::string kind;
  if (j.is_object())
    for (const auto& k : kRecordKinds)
      if (j.contains(k)) {
        ++kinds;
        kind = k;
      }
  if (kinds != 1) {
    r.protocol_errors.push_back(line.substr(0, 500));
    return;
  }
  if (kind == "obs" && (!j.contains("type") || !j.contains("value") || !j["obs"].is_string())) {
    r.protocol_errors.push_back(line.substr(0, 500));
    return;
  }
  if (kind == "fuse_conn" && j["fuse_conn"].is_number_unsigned()) {
    r.announced_conns.insert(j["fuse_conn"].get<unsigned long>());
    if (j.value("request_timeout_s", 0) > 0) r.fuse_request_timeouts = true;
  }
  // A broken record read once the recovery had begun (a hang, a timeout)
  // may be its consequence -- a KPC_SYS on a mount whose connection L has
  // just aborted -- not the probe's own fault: say so, the evaluator
  // tells the two apart.
  if (kind == "broken" && r.recovering) j["read_during_recovery"] = true;
  if (kind == "mark" && j["mark"].is_string())
    r.marks[j["mark"].get<std::string>()] = {{"probe_mono_ns", j.value("mono_ns", int64_t{0})},
                                             {"launcher_ms", ms_between(r.start_ns, now_ns())},
                                             {"launcher_mono_ns", now_ns()}};
  r.records.push_back(std::move(j));
}

void on_status_line(Run& r, const std::string& line) {
  if (line.starts_with("status ")) {
    r.probe_status = std::stoi(line.substr(7));
    r.probe_status_ms = ms_between(r.start_ns, now_ns());
  } else if (line.starts_with("error ")) r.shim_error = line.substr(6);
}

void drain(Run& r) {
  read_stream(r.obs, true, [&](const std::string& l) { on_obs_line(r, l); });
  read_stream(r.status, true, [&](const std::string& l) { on_status_line(r, l); });
  read_stream(r.out, false, {});
  read_stream(r.err, false, {});
}

json describe_status(int st) {
  if (WIFEXITED(st)) return {{"kind", "exited"}, {"code", WEXITSTATUS(st)}, {"text", kpc::describe_wait_status(st)}};
  if (WIFSIGNALED(st))
    return {{"kind", "killed"},
            {"signal", kpc::signal_name(WTERMSIG(st))},
            {"core", static_cast<bool>(WCOREDUMP(st))},
            {"text", kpc::describe_wait_status(st)}};
  return {{"kind", "other"}, {"text", kpc::describe_wait_status(st)}};
}

class Batch {
 public:
  Batch(const std::vector<RunSpec>& plan, const Options& opt, const std::function<void(const json&)>& emit)
      : plan_(plan), opt_(opt), emit_(emit) {}

  int run();

 private:
  void start_next();
  void start(const RunSpec& spec);
  void on_signal();
  void supervise(Run& r, int64_t now);
  void scan_for_hang(Run& r, int64_t now);
  void begin_recovery(Run& r, const std::string& outcome, int64_t now);
  void recover_step(Run& r, int64_t now);
  bool shim_has_ended(Run& r);
  void finish(Run& r);
  void kill_strays();

  const std::vector<RunSpec>& plan_;
  Options opt_;
  RecoveryScope scope_;
  kpc::Fd fusectl_;
  OwnMounts own_mounts_;
  std::function<void(const json&)> emit_;
  size_t next_ = 0;
  std::list<std::unique_ptr<Run>> active_;
  // Runs reported as not recovered whose S still lives: L keeps helping
  // them (and they keep trying themselves) until the batch's linger deadline.
  std::list<std::unique_ptr<Run>> lingering_;
  kpc::Fd sigfd_;
  bool interrupted_ = false;
};

void Batch::start_next() {
  while (!interrupted_ && next_ < plan_.size() && static_cast<int>(active_.size()) < opt_.jobs) {
    const RunSpec& spec = plan_[next_];
    bool exclusive_active =
        std::any_of(active_.begin(), active_.end(), [](const auto& r) { return r->spec.exclusive; });
    if (exclusive_active || (spec.exclusive && !active_.empty())) return;
    ++next_;
    start(spec);
  }
}

void Batch::start(const RunSpec& spec) {
  std::string error;
  int64_t t0 = now_ns();
  // Whatever FUSE mount L sees now is the machine's, not the run's.
  scope_.foreign = fuse::connections_of(own_mounts_.now());
  auto sp = spawn_run(spec, scope_, &error);
  if (!sp) {
    emit_({{"event", "result"},
           {"run", spec.run},
           {"case", spec.case_id},
           {"variant", spec.variant},
           {"flavor", flavor_name(spec.flavor)},
           {"outcome", "launch-error"},
           {"error", error},
           {"records", json::array()},
           {"duration_ms", ms_between(t0, now_ns())}});
    return;
  }
  auto r = std::make_unique<Run>();
  r->spec = spec;
  r->sp = *sp;
  r->start_ns = t0;
  r->last_scan_ns = t0;
  r->foreign = scope_.foreign;
  r->obs.fd = sp->obs_r;
  r->out.fd = sp->out_r;
  r->err.fd = sp->err_r;
  r->status.fd = sp->status_r;
  emit_({{"event", "start"},
         {"run", spec.run},
         {"case", spec.case_id},
         {"variant", spec.variant},
         {"flavor", flavor_name(spec.flavor)},
         {"shim_pid", sp->shim}});
  active_.push_back(std::move(r));
}

void Batch::on_signal() {
  signalfd_siginfo si;
  while (read(sigfd_.get(), &si, sizeof si) == sizeof si) {
    if (si.ssi_signo != SIGCHLD) {
      interrupted_ = true;
      for (auto& r : active_)
        if (!r->recovering) begin_recovery(*r, "interrupted", now_ns());
    }
  }
  for (;;) {
    int st = 0;
    pid_t w = waitpid(-1, &st, WNOHANG | __WALL);
    if (w <= 0) break;
    for (auto& r : lingering_)
      if (r->sp.shim == w) r->shim_exited = true;
    for (auto& r : active_)
      if (r->sp.shim == w) {
        r->shim_exited = true;
        r->shim_status = st;
      }
  }
}

void Batch::scan_for_hang(Run& r, int64_t now) {
  auto tasks = tree_tasks(r.sp.shim, false);
  std::map<pid_t, TaskHistory> next;
  std::vector<pid_t> stuck;
  int64_t earliest = now;
  // A FUSE waiter nobody can answer is stuck: seen so at two scans in a
  // row, not having run in between, it is a hang (the second scan comes
  // kRecheckMs after the first: a server's exit passes through the same
  // picture for a moment before the kernel ends its connection). For
  // everything else, no progress for hang_ms is the sign.
  const std::set<pid_t> unanswerable =
      r.fuse_request_timeouts ? std::set<pid_t>{} : unanswerable_fuse_waiters(tasks, r.sp.shim);
  bool recheck = false;
  for (const auto& t : tasks) {
    if (!may_be_stuck(t) && !unanswerable.count(t.tid)) continue;
    TaskHistory h{t.state, t.exiting, t.ctxt_switches, now};
    auto it = r.history.find(t.tid);
    bool still = it != r.history.end() && it->second.state == t.state && it->second.exiting == t.exiting &&
                 it->second.ctxt == t.ctxt_switches;
    if (still) h.since_ns = it->second.since_ns;  // has not run since we last looked
    next[t.tid] = h;
    bool structural = unanswerable.count(t.tid) && still && r.unanswerable.count(t.tid);
    if (unanswerable.count(t.tid) && !structural) recheck = true;
    if (structural || ms_between(h.since_ns, now) >= r.spec.hang_ms) {
      stuck.push_back(t.tid);
      earliest = std::min(earliest, h.since_ns);
    }
  }
  r.history = std::move(next);
  r.unanswerable = unanswerable;
  if (stuck.empty()) {
    if (recheck) r.last_scan_ns = now - static_cast<int64_t>(opt_.scan_interval_ms - kRecheckMs) * 1000000;
    return;
  }

  // A hang: capture every task of the tree with its kernel stack.
  json tasks_json = json::array();
  for (const auto& t : tree_tasks(r.sp.shim, true)) {
    json tj = task_json(t);
    tj["stuck"] = std::find(stuck.begin(), stuck.end(), t.tid) != stuck.end();
    auto h = r.history.find(t.tid);
    if (h != r.history.end()) tj["asleep_ms"] = ms_between(h->second.since_ns, now);
    tasks_json.push_back(std::move(tj));
  }
  r.trouble = {{"kind", "hang"},
               {"detected_ms", ms_between(r.start_ns, now)},
               {"stuck_since_ms", ms_between(r.start_ns, earliest)},
               {"detection_latency_ms", ms_between(earliest, now)},
               {"detected_mono_ns", now},
               {"hang_threshold_ms", r.spec.hang_ms},
               {"how", unanswerable.empty() ? "no progress for hang_threshold_ms"
                                            : "a FUSE request no task of the run can answer (seen twice)"},
               {"tasks", std::move(tasks_json)}};
  begin_recovery(r, "hang", now);
}

void Batch::begin_recovery(Run& r, const std::string& outcome, int64_t now) {
  if (r.recovering) return;
  r.outcome = outcome;
  if (outcome != "hang") {
    json tasks_json = json::array();
    for (const auto& t : tree_tasks(r.sp.shim, true)) tasks_json.push_back(task_json(t));
    r.trouble = {{"kind", outcome}, {"detected_ms", ms_between(r.start_ns, now)}, {"tasks", std::move(tasks_json)}};
  }
  r.recovering = true;
  r.recover_start_ns = now;
  recover_step(r, now);
}

// S does the recovery (it outlives L, it holds the devices a probe
// deposited, and it runs the run's cleanup command afterwards): ask it
// once. From outside, L only aborts the run's own FUSE connections (in case
// S cannot); it kills nothing -- S's cleanup command is in S's tree too,
// and whatever S leaves when it dies is reparented to L and killed as a
// stray. L never kills S (that would lose the devices and the cleanup).
void Batch::recover_step(Run& r, int64_t now) {
  // A hang with a grace period (RunSpec::hang_grace_ms): L aborts the run's
  // FUSE connections below and lets the run end by itself for that long;
  // only then is S asked to kill the tree. Without fusectl L cannot undo
  // anything itself: S at once.
  const bool grace = r.outcome == "hang" && r.spec.hang_grace_ms > 0 && scope_.fusectl_fd >= 0 && !interrupted_ &&
                     ms_between(r.recover_start_ns, now) < r.spec.hang_grace_ms;
  if (!r.asked_shim && r.sp.cmd_w >= 0 && !grace) {
    char c = kRecoverByte;
    r.asked_shim = write(r.sp.cmd_w, &c, 1) == 1;
  }
  if (scope_.fusectl_fd >= 0) {
    auto procs = tree_processes(r.sp.shim);
    procs.erase(std::remove(procs.begin(), procs.end(), r.sp.shim), procs.end());
    // Only what the run's tasks see now, pinned until aborted. Not the ids
    // its probe announced: a connection that has ended frees its id (the
    // mount's minor), and the next FUSE mount on the machine gets it --
    // another run's, another kpc's, anyone's. Aborting an announced id
    // aborted fresh mounts of other runs (ENOTCONN/ECONNABORTED on their
    // first open, beside a second kpc).
    fuse::PinnedConnections conns = fuse::run_connections(procs);
    std::set<unsigned long> foreign = r.foreign;
    foreign.merge(fuse::connections_of(own_mounts_.now()));
    for (auto c : conns.ids) {
      if (foreign.count(c) || !r.aborted.insert(c).second) continue;
      std::string err = fuse::abort_connection(scope_.fusectl_fd, c);
      if (!err.empty()) r.abort_errors.push_back(err);
    }
  }
  const int granted = r.outcome == "hang" && scope_.fusectl_fd >= 0 ? r.spec.hang_grace_ms : 0;
  if (ms_between(r.recover_start_ns, now) <= opt_.recovery_ms + granted) return;
  if (shim_has_ended(r)) return;
  r.gave_up = true;
}

// Before a deadline decides anything: the shim may have ended since
// on_signal() reaped (its SIGCHLD not read yet). Asked about it alone, or a
// run that finished at its deadline is called timed out or given up, with
// its zombie shim as the task left (tracer_waits_before_real_parent on 7.2
// at load 17: "deadline of 5 s exceeded: kpc-shim Z").
bool Batch::shim_has_ended(Run& r) {
  int st = 0;
  if (r.shim_exited || waitpid(r.sp.shim, &st, WNOHANG | __WALL) != r.sp.shim) return r.shim_exited;
  r.shim_exited = true;
  r.shim_status = st;
  return true;
}

void Batch::supervise(Run& r, int64_t now) {
  if (r.recovering) {
    if (ms_between(r.last_scan_ns, now) >= opt_.scan_interval_ms) {
      r.last_scan_ns = now;
      recover_step(r, now);
    }
    return;
  }
  if (ms_between(r.start_ns, now) > r.spec.timeout_ms) {
    if (!shim_has_ended(r)) begin_recovery(r, "timeout", now);
    return;
  }
  if (ms_between(r.last_scan_ns, now) >= opt_.scan_interval_ms) {
    r.last_scan_ns = now;
    scan_for_hang(r, now);
  }
}

void Batch::finish(Run& r) {
  int64_t end = now_ns();
  drain(r);
  for (Stream* s : {&r.obs, &r.out, &r.err, &r.status}) {
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
  }
  if (r.sp.cmd_w >= 0) close(r.sp.cmd_w);  // an S still working on a stuck tree now goes on alone
  r.sp.cmd_w = -1;
  if (!r.obs.partial.empty()) r.protocol_errors.push_back("unterminated record: " + r.obs.partial.substr(0, 500));

  json result = {{"event", "result"},
                 {"run", r.spec.run},
                 {"case", r.spec.case_id},
                 {"variant", r.spec.variant},
                 {"flavor", flavor_name(r.spec.flavor)},
                 {"records", r.records},
                 {"protocol_errors", r.protocol_errors},
                 {"marks", r.marks},
                 {"stdout", r.out.tail},
                 {"stderr", r.err.tail},
                 {"duration_ms", ms_between(r.start_ns, end)}};
  if (r.probe_status) {
    result["exit"] = describe_status(*r.probe_status);
    result["exit"]["launcher_ms"] = r.probe_status_ms;
  }
  if (!r.shim_error.empty()) result["error"] = "launcher shim: " + r.shim_error;

  std::string outcome = r.outcome;
  if (outcome.empty()) outcome = r.probe_status ? "completed" : "launch-error";
  if (outcome == "launch-error" && r.shim_error.empty())
    result["error"] =
        "shim ended (" + kpc::describe_wait_status(r.shim_status) + ") before reporting the probe's status";
  result["outcome"] = outcome;

  if (r.recovering) {
    r.trouble["recovered"] = !r.gave_up;
    r.trouble["recovery_ms"] = ms_between(r.recover_start_ns, end);
    r.trouble["aborted_fuse_connections"] = std::vector<unsigned long>(r.aborted.begin(), r.aborted.end());
    r.trouble["announced_fuse_connections"] =
        std::vector<unsigned long>(r.announced_conns.begin(), r.announced_conns.end());
    if (!r.abort_errors.empty()) r.trouble["abort_errors"] = r.abort_errors;
    if (r.gave_up) {
      json left = json::array();
      for (const auto& t : tree_tasks(r.sp.shim, true)) left.push_back(task_json(t));
      r.trouble["left_running"] = std::move(left);
    }
    result[r.outcome == "hang" ? "hang" : "trouble"] = r.trouble;
  }

  json mounts = unmount_leftovers(r.sp.tmpdir, own_mounts_.now());
  if (!mounts.empty()) result["leftover_mounts"] = mounts;
  kpc::remove_tree(r.sp.tmpdir);
  emit_(result);
}

// Anything reparented to us (a shim died without cleaning up) is a stray.
void Batch::kill_strays() {
  std::set<pid_t> shims;
  for (auto* runs : {&active_, &lingering_})
    for (auto& r : *runs) shims.insert(r->sp.shim);
  for (pid_t c : kpc::list_children(getpid()))
    if (!shims.count(c)) kill(c, SIGKILL);
}

int Batch::run() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  sigfd_.reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!sigfd_) {
    emit_({{"event", "fatal"}, {"error", std::string("signalfd: ") + strerror(errno)}});
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);  // a vanished reader must not kill us mid-recovery
  prctl(PR_SET_CHILD_SUBREAPER, 1);

  // How this batch can free FUSE deadlocks (kpc/supervisor.h): probes learn
  // it before they build one, and skip what nobody could undo.
  std::string why_not_fusectl;
  fusectl_.reset(fuse::open_fusectl(&why_not_fusectl));
  scope_.fusectl_fd = fusectl_.get();
  scope_.fuse_recovery = fusectl_ ? kpc::supervisor::kFusectl : kpc::supervisor::kDevice;
  emit_({{"event", "batch"}, {"fuse_recovery", scope_.fuse_recovery}, {"fusectl", fusectl_ ? "ok" : why_not_fusectl}});

  start_next();
  int64_t plan_done_ns = 0;
  for (;;) {
    bool plan_left = !active_.empty() || (!interrupted_ && next_ < plan_.size());
    if (!plan_left) {
      if (!plan_done_ns) plan_done_ns = now_ns();
      if (lingering_.empty() || ms_between(plan_done_ns, now_ns()) > opt_.linger_ms) break;
    }
    std::vector<pollfd> fds{{sigfd_.get(), POLLIN, 0}};
    for (auto& r : active_)
      for (Stream* s : {&r->obs, &r->out, &r->err, &r->status})
        if (s->fd >= 0) fds.push_back({s->fd, POLLIN, 0});
    // Wake for the next scan that is due (a recheck comes sooner than the
    // scan interval).
    int wait_ms = opt_.scan_interval_ms;
    int64_t t = now_ns();
    for (auto& r : active_) {
      int due = static_cast<int>(opt_.scan_interval_ms - ms_between(r->last_scan_ns, t));
      wait_ms = std::clamp(due, 1, wait_ms);
    }
    int rc = poll(fds.data(), fds.size(), wait_ms);
    if (rc < 0 && errno != EINTR) {
      emit_({{"event", "fatal"}, {"error", std::string("poll: ") + strerror(errno)}});
      break;
    }
    on_signal();
    int64_t now = now_ns();
    for (auto it = active_.begin(); it != active_.end();) {
      Run& r = **it;
      drain(r);
      if (!r.shim_exited) supervise(r, now);
      if (r.shim_exited || r.gave_up) {
        finish(r);
        if (!r.shim_exited) lingering_.push_back(std::move(*it));
        it = active_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = lingering_.begin(); it != lingering_.end();) {
      if ((*it)->shim_exited) {
        emit_({{"event", "recovered_late"}, {"run", (*it)->spec.run}, {"shim_pid", (*it)->sp.shim}});
        it = lingering_.erase(it);
        continue;
      }
      if (ms_between((*it)->last_scan_ns, now) >= opt_.scan_interval_ms) {
        (*it)->last_scan_ns = now;
        recover_step(**it, now);
      }
      ++it;
    }
    kill_strays();
    start_next();
  }
  if (!lingering_.empty()) {
    json runs = json::array();
    for (auto& r : lingering_) {
      json left = json::array();
      for (const auto& t : tree_tasks(r->sp.shim, true)) left.push_back(task_json(t));
      runs.push_back({{"run", r->spec.run},
                      {"shim_pid", r->sp.shim},
                      {"fuse_connections", std::vector<unsigned long>(r->aborted.begin(), r->aborted.end())},
                      {"left_running", std::move(left)}});
    }
    emit_({{"event", "unrecovered"},
           {"message",
            "tasks of these runs never died; their shims keep trying for a minute, then only root can "
            "free them (abort their FUSE connections: echo 1 > /sys/fs/fuse/connections/N/abort)"},
           {"runs", std::move(runs)}});
  }
  return interrupted_ ? 130 : 0;
}

}  // namespace

int run_batch(const std::vector<RunSpec>& plan, const Options& opt, const std::function<void(const json&)>& emit) {
  Batch b(plan, opt, emit);
  return b.run();
}

}  // namespace kpcl
