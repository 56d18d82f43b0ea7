// securebits_across_execve: the securebits (capabilities(7)) change what a
// uid change and an exec do to capabilities. All are inherited by fork and
// kept by exec -- except SECBIT_KEEP_CAPS, which exec always clears.
//   variant keep_caps:            KEEP_CAPS lets root become uid 65534 and
//                                 keep its permitted set; the exec clears
//                                 the bit, and the non-root exec drops all
//   variant noroot:               SECBIT_NOROOT: root's exec no longer
//                                 grants it capabilities
//   variant no_cap_ambient_raise: raising an ambient capability is EPERM;
//                                 the bit survives the exec
// Securebits and capabilities are set with libcap.
#include <grp.h>
#include <linux/securebits.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <functional>

#include "kpc/probe.h"

namespace {
constexpr uid_t kNobody = 65534;
const cap_value_t kX = CAP_NET_BIND_SERVICE, kY = CAP_NET_RAW;

std::string permitted_markers() {
  cap_t c = cap_get_proc();
  cap_flag_value_t x = CAP_CLEAR, y = CAP_CLEAR;
  cap_get_flag(c, kX, CAP_PERMITTED, &x);
  cap_get_flag(c, kY, CAP_PERMITTED, &y);
  cap_free(c);
  std::string out = x == CAP_SET ? "CAP_NET_BIND_SERVICE" : "";
  if (y == CAP_SET) out += std::string(out.empty() ? "" : "|") + "CAP_NET_RAW";
  return out.empty() ? "none" : out;
}

void set_bits(unsigned bits) {
  KPC_CHECK_MSG(cap_set_secbits(bits) == 0, "cap_set_secbits: " + kpc::errno_name(errno));
}
}  // namespace

int probe_main(kpc::Probe& p) {
  // A child sets the variant's bits (and what they govern), then execs
  // creds_report, which records its credentials.
  auto child_execs = [&](const std::function<void()>& set_and_act) {
    kpc::Child child = kpc::fork_child([&] {
      std::string h = p.helper_for_any_uid("creds_report");
      set_and_act();
      kpc::exec_or_broken({h, "--prefix", "exec"});
    });
    kpc::observe("status", kpc::describe_wait_status(child.wait()));
    return 0;
  };
  return p.dispatch({
      {"keep_caps",
       [&] {
         if (p.flavor() == "userns") kpc::skip("the userns flavor maps one uid: there is no non-root uid to become");
         return child_execs([] {
           set_bits(SECBIT_KEEP_CAPS);
           KPC_SYS(setgroups(0, nullptr));
           KPC_SYS(setresgid(kNobody, kNobody, kNobody));
           KPC_SYS(setresuid(kNobody, kNobody, kNobody));
           kpc::observe("after_setuid.permitted", permitted_markers());
         });
       }},
      {"noroot", [&] { return child_execs([] { set_bits(SECBIT_NOROOT); }); }},
      {"no_cap_ambient_raise",
       [&] {
         return child_execs([] {
           cap_t c = cap_get_proc();
           cap_set_flag(c, CAP_INHERITABLE, 1, &kX, CAP_SET);
           KPC_CHECK(cap_set_proc(c) == 0);
           cap_free(c);
           set_bits(SECBIT_NO_CAP_AMBIENT_RAISE);
           KPC_OBSERVE_CALL("raise_ambient", cap_set_ambient(kX, CAP_SET));
         });
       }},
  });
}
