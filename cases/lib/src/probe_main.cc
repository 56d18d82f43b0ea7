// main() for every probe. Kept apart from the library proper so the unit
// tests can link the library without a probe_main.
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "kpc/probe.h"
#include "kpc/supervisor.h"

namespace kpc {

std::string Probe::flavor() const {
  const char* f = getenv("KPC_FLAVOR");
  return f && *f ? f : "host";
}

std::string Probe::helper(std::string_view name) const {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  KPC_CHECK_MSG(n > 0, "readlink /proc/self/exe failed");
  buf[n] = '\0';
  std::string dir = dirname(buf);
  return dir + "/" + std::string(name);
}

std::string Probe::helper_for_any_uid(std::string_view name) const {
  std::string path = helper(name);
  int fd = open(path.c_str(), O_PATH);  // kept: exec'd by its /proc/self/fd path
  KPC_CHECK_MSG(fd >= 0, "open " + path + ": " + errno_name(errno));
  return "/proc/self/fd/" + std::to_string(fd);
}

int Probe::dispatch(const std::map<std::string, std::function<int()>, std::less<>>& variants) const {
  auto it = variants.find(variant);
  if (it == variants.end()) {
    std::string known;
    for (const auto& [name, fn] : variants) known += (known.empty() ? "" : ", ") + name;
    broken("unknown variant '" + variant + "' (this probe knows: " + known + ")");
  }
  return it->second();
}

bool Probe::variant_is(std::string_view yes, std::string_view no) const {
  if (variant == yes) return true;
  if (variant == no) return false;
  broken("unknown variant '" + variant + "' (this probe knows: " + std::string(yes) + ", " + std::string(no) + ")");
}

void exec_or_broken(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execv(args[0], args.data());
  broken("execv " + argv.at(0) + ": " + errno_name(errno));
}

}  // namespace kpc

namespace {

void usage(const char* argv0) {
  std::printf(
      "usage: %s [--variant NAME] [ARGS...]\n\n"
      "A kpc probe. It records observations; the expected tables decide the verdict.\n"
      "Run it through the suite:   ./kpc run --case %s\n"
      "Run it by hand: observations print to stderr (no launcher, no namespaces).\n",
      argv0, basename(const_cast<char*>(argv0)));
}

}  // namespace

int main(int argc, char** argv) {
  // The channel to the supervisor is for this probe only: programs it
  // execs must not inherit it (the hygiene probes count open descriptors).
  if (const char* s = getenv(kpc::supervisor::kFdEnv)) {
    int fd = atoi(s);
    if (fd > 2) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  kpc::Probe probe;
  probe.id = basename(argv[0]);
  int i = 1;
  for (; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      usage(argv[0]);
      return 0;
    }
    if (std::strcmp(argv[i], "--variant") == 0 && i + 1 < argc) {
      probe.variant = argv[++i];
      continue;
    }
    if (std::strcmp(argv[i], "--") == 0) ++i;
    break;
  }
  for (; i < argc; ++i) probe.args.emplace_back(argv[i]);
  try {
    int rc = probe_main(probe);
    if (rc != 0) kpc::broken("probe_main returned " + std::to_string(rc));
  } catch (const std::exception& e) { kpc::broken(std::string("uncaught exception: ") + e.what()); }
  kpc::finish();
}
