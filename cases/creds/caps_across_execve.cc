// caps_across_execve: what execve does to the capability sets (the rules of
// capabilities(7), "Transformation of capabilities during execve()"), seen
// with two marker capabilities -- CAP_NET_BIND_SERVICE (X) and CAP_NET_RAW
// (Y) -- in a program without file capabilities (the creds_report helper):
//   variant root_exec:          root: P' = E' = the bounding set; I, A empty
//   variant root_bounding_drop: root drops Y from its bounding set: P' lacks Y
//   variant nonroot_exec:       uid 65534 holding X in P and E: all lost
//   variant nonroot_inheritable:the same with X in I: I' keeps X, P' does not
//   variant nonroot_ambient:    X in P, I and A: P' = E' = A' = X, and again
//                               after a second exec (ambient persists)
// Capabilities are changed with libcap.
#include <grp.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include "kpc/probe.h"

namespace {
constexpr uid_t kNobody = 65534;
const cap_value_t kX = CAP_NET_BIND_SERVICE, kY = CAP_NET_RAW;

// Sets P, E and I to exactly the given capabilities.
void set_caps(std::vector<cap_value_t> p, std::vector<cap_value_t> e, std::vector<cap_value_t> i) {
  cap_t c = cap_init();
  if (!p.empty()) cap_set_flag(c, CAP_PERMITTED, static_cast<int>(p.size()), p.data(), CAP_SET);
  if (!e.empty()) cap_set_flag(c, CAP_EFFECTIVE, static_cast<int>(e.size()), e.data(), CAP_SET);
  if (!i.empty()) cap_set_flag(c, CAP_INHERITABLE, static_cast<int>(i.size()), i.data(), CAP_SET);
  int r = cap_set_proc(c);
  cap_free(c);
  KPC_CHECK_MSG(r == 0, "cap_set_proc: " + kpc::errno_name(errno));
}

// Become uid/gid 65534, keeping the permitted set across the change
// (PR_SET_KEEPCAPS), then set P/E/I as asked.
void become_nobody(std::vector<cap_value_t> p, std::vector<cap_value_t> e, std::vector<cap_value_t> i) {
  set_caps({kX, kY, CAP_SETUID, CAP_SETGID, CAP_SETPCAP}, {kX, kY, CAP_SETUID, CAP_SETGID, CAP_SETPCAP}, i);
  KPC_SYS(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
  KPC_SYS(setgroups(0, nullptr));
  KPC_SYS(setresgid(kNobody, kNobody, kNobody));
  KPC_SYS(setresuid(kNobody, kNobody, kNobody));
  set_caps(p, e, i);
}

void exec_report(const std::string& h, bool twice) {
  if (twice) kpc::exec_or_broken({h, "--prefix", "exec", "--then-exec", h, "--prefix", "exec2"});
  kpc::exec_or_broken({h, "--prefix", "exec"});
}

bool has(cap_value_t cap, cap_flag_t set) {
  cap_t c = cap_get_proc();
  cap_flag_value_t v = CAP_CLEAR;
  cap_get_flag(c, cap, set, &v);
  cap_free(c);
  return v == CAP_SET;
}
}  // namespace

int probe_main(kpc::Probe& p) {
  if (!has(kX, CAP_PERMITTED) || !has(kY, CAP_PERMITTED) || !CAP_IS_SUPPORTED(kY))
    kpc::skip("the probe does not hold CAP_NET_BIND_SERVICE and CAP_NET_RAW to move around");
  // A child prepares its capabilities (then, for nonroot, becomes nobody)
  // and execs creds_report, which records them.
  auto child_execs = [&](bool nonroot, const std::function<void(const std::string&)>& prepare_and_exec) {
    if (nonroot && p.flavor() == "userns")
      kpc::skip("the userns flavor maps one uid: there is no non-root uid to become");
    kpc::Child child = kpc::fork_child([&] {
      prepare_and_exec(p.helper_for_any_uid("creds_report"));  // the helper's path before becoming nobody
    });
    kpc::observe("status", kpc::describe_wait_status(child.wait()));
    return 0;
  };
  return p.dispatch({
      {"root_exec", [&] { return child_execs(false, [](const std::string& h) { exec_report(h, false); }); }},
      {"root_bounding_drop",
       [&] {
         return child_execs(false, [](const std::string& h) {
           KPC_CHECK_MSG(cap_drop_bound(kY) == 0, "cap_drop_bound: " + kpc::errno_name(errno));
           exec_report(h, false);
         });
       }},
      {"nonroot_exec",
       [&] {
         return child_execs(true, [](const std::string& h) {
           become_nobody({kX}, {kX}, {});
           exec_report(h, false);
         });
       }},
      {"nonroot_inheritable",
       [&] {
         return child_execs(true, [](const std::string& h) {
           become_nobody({kX}, {kX}, {kX});
           exec_report(h, false);
         });
       }},
      {"nonroot_ambient",
       [&] {
         return child_execs(true, [](const std::string& h) {
           become_nobody({kX}, {kX}, {kX});
           KPC_CHECK_MSG(cap_set_ambient(kX, CAP_SET) == 0, "cap_set_ambient: " + kpc::errno_name(errno));
           exec_report(h, true);
         });
       }},
  });
}
