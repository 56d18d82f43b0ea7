#include "kpc/caps.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kpc/check.h"

namespace kpc {

namespace {
struct Sets {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
};

Sets current() {
  Sets s;
  KPC_SYS(syscall(SYS_capget, &s.header, s.data));
  return s;
}

void apply(Sets& s) { KPC_SYS(syscall(SYS_capset, &s.header, s.data)); }
}  // namespace

void drop_capabilities(std::initializer_list<int> caps) {
  Sets s = current();
  for (int cap : caps) {
    uint32_t bit = 1u << (cap % 32);
    s.data[cap / 32].effective &= ~bit;
    s.data[cap / 32].permitted &= ~bit;
  }
  apply(s);
}

void drop_all_capabilities() {
  Sets s = current();
  for (auto& d : s.data) d.effective = d.permitted = d.inheritable = 0;
  apply(s);
}

bool has_effective_capability(int cap) {
  Sets s = current();
  return (s.data[cap / 32].effective >> (cap % 32)) & 1;
}

}  // namespace kpc
