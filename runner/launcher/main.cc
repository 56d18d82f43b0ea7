// kpc-launch command line. See launcher.h for what a run is.
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "launcher.h"

using kpcl::json;

namespace {

const char* const kUsage =
    "usage: kpc-launch COMMAND [OPTIONS]\n"
    "\n"
    "The kpc launcher: runs probes in a flavor (host, pidns, userns), supervises\n"
    "them, detects hangs (tasks stuck in uninterruptible sleep), captures kernel\n"
    "stacks, recovers (aborts FUSE connections, kills the tree) and reports JSON.\n"
    "Normally driven by ./kpc; usable by hand.\n"
    "\n"
    "commands:\n"
    "  run [--flavor F] [--timeout-ms N] [--hang-ms N] [--json] -- PROBE [ARGS...]\n"
    "        run one probe and print its observations and outcome\n"
    "  batch [--jobs N] [--plan FILE] [--recovery-ms N] [--frame]\n"
    "        read a plan (JSON lines: run, case, variant, flavor, argv, env,\n"
    "        timeout_ms, hang_ms, hang_grace_ms, exclusive) from FILE or stdin; print one JSON\n"
    "        line per event on stdout\n"
    "  flavors\n"
    "        try each flavor once; print {\"host\": \"ok\", \"pidns\": \"...error...\"}\n"
    "  caps  print this process's capabilities as JSON: libcap's text form and\n"
    "        the effective set by name\n"
    "  tsc-khz\n"
    "        measure this CPU's TSC frequency (x86): QEMU's TCG guests need it\n"
    "        (tsc_early_khz=) because calibrating against an emulated PIT fails\n"
    "  noop  do nothing (used by `flavors` and the overhead benchmark)\n"
    "\n"
    "exit status: 0 done, 1 failure to run, 2 usage error, 130 interrupted\n";

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "kpc-launch: %s\n(try kpc-launch --help)\n", msg.c_str());
  std::exit(2);
}

int parse_int(const std::string& opt, const char* value) {
  char* end = nullptr;
  long v = std::strtol(value, &end, 10);
  if (!*value || *end || v <= 0 || v > INT_MAX) usage_error(opt + " wants a positive integer, got '" + value + "'");
  return static_cast<int>(v);
}

std::string self_exe() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "/proc/self/exe";
  buf[n] = '\0';
  return buf;
}

// Our own death (the runner died) is a SIGTERM: clean up and leave.
void die_with_parent() {
  pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) raise(SIGTERM);
}

void emit_line(const json& j, bool frame) {
  std::string line = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (frame) line = "@@KPC " + std::to_string(line.size()) + " " + line;
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

void print_human(const json& r) {
  std::printf("run %s (%s): %s", r.value("case", "").c_str(), r.value("flavor", "").c_str(),
              r.value("outcome", "").c_str());
  if (r.contains("exit")) std::printf(", probe %s", r["exit"].value("text", "").c_str());
  std::printf(", %.1f ms\n", r.value("duration_ms", 0.0));
  if (r.contains("error")) std::printf("  error: %s\n", r["error"].get<std::string>().c_str());
  for (const auto& rec : r["records"]) {
    if (rec.contains("obs"))
      std::printf("  observe %-32s = %s\n", rec["obs"].get<std::string>().c_str(),
                  rec["value"].is_string() ? rec["value"].get<std::string>().c_str() : rec["value"].dump().c_str());
    else if (rec.contains("note"))
      std::printf("  note    %-32s = %s\n", rec["note"].get<std::string>().c_str(),
                  rec["value"].is_string() ? rec["value"].get<std::string>().c_str() : rec["value"].dump().c_str());
    else if (rec.contains("skip")) std::printf("  skip: %s\n", rec["skip"].get<std::string>().c_str());
    else if (rec.contains("broken")) std::printf("  broken: %s\n", rec["broken"].get<std::string>().c_str());
  }
  for (const char* k : {"hang", "trouble"}) {
    if (!r.contains(k)) continue;
    const json& h = r[k];
    std::printf("  %s detected after %.0f ms", k, h.value("detected_ms", 0.0));
    if (h.contains("detection_latency_ms"))
      std::printf(" (%.0f ms after the task stopped running)", h.value("detection_latency_ms", 0.0));
    std::printf("; recovered: %s in %.0f ms\n", h.value("recovered", false) ? "yes" : "NO",
                h.value("recovery_ms", 0.0));
    for (const auto& t : h["tasks"]) {
      std::printf("    %s%d/%d %s state %s wchan %s\n", t.value("stuck", false) ? "STUCK " : "", t.value("pid", 0),
                  t.value("tid", 0), t.value("comm", "").c_str(), t.value("state", "").c_str(),
                  t.value("wchan", "").c_str());
      for (const auto& line : t["stack"]) std::printf("        %s\n", line.get<std::string>().c_str());
    }
  }
  std::string out = r.value("stdout", ""), err = r.value("stderr", "");
  if (!out.empty()) std::printf("  --- stdout ---\n%s\n", out.c_str());
  if (!err.empty()) std::printf("  --- stderr ---\n%s\n", err.c_str());
}

int cmd_run(int argc, char** argv) {
  kpcl::RunSpec spec;
  bool as_json = false;
  int i = 0;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "--json") {
      as_json = true;
      continue;
    }
    if (a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (i + 1 >= argc) usage_error(a + " needs a value");
    if (a == "--flavor") {
      auto f = kpcl::parse_flavor(argv[++i]);
      if (!f) usage_error(std::string("unknown flavor '") + argv[i] + "' (host, pidns, userns)");
      spec.flavor = *f;
    } else if (a == "--timeout-ms") spec.timeout_ms = parse_int(a, argv[++i]);
    else if (a == "--hang-ms") spec.hang_ms = parse_int(a, argv[++i]);
    else if (a == "--variant") spec.variant = argv[++i];
    else usage_error("unknown option " + a);
  }
  if (i >= argc) usage_error("run: missing PROBE after --");
  for (; i < argc; ++i) spec.argv.emplace_back(argv[i]);
  if (spec.argv[0].find('/') == std::string::npos) usage_error("PROBE must be a path: " + spec.argv[0]);
  char resolved[PATH_MAX];
  if (!realpath(spec.argv[0].c_str(), resolved)) usage_error("cannot find probe " + spec.argv[0]);
  spec.argv[0] = resolved;
  spec.run = spec.case_id = spec.argv[0].substr(spec.argv[0].rfind('/') + 1);
  if (!spec.variant.empty()) {
    spec.argv.insert(spec.argv.begin() + 1, spec.variant);
    spec.argv.insert(spec.argv.begin() + 1, "--variant");
  }
  die_with_parent();
  json result;
  int rc = kpcl::run_batch({spec}, kpcl::Options{}, [&](const json& j) {
    if (j.value("event", "") == "result") result = j;
  });
  if (result.is_null()) return rc ? rc : 1;
  if (as_json) emit_line(result, false);
  else print_human(result);
  return rc;
}

int cmd_batch(int argc, char** argv) {
  kpcl::Options opt;
  std::string plan_path = "-";
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--frame") {
      opt.frame = true;
      continue;
    }
    if (a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (i + 1 >= argc) usage_error(a + " needs a value");
    if (a == "--jobs") opt.jobs = parse_int(a, argv[++i]);
    else if (a == "--plan") plan_path = argv[++i];
    else if (a == "--recovery-ms") opt.recovery_ms = parse_int(a, argv[++i]);
    else if (a == "--scan-ms") opt.scan_interval_ms = parse_int(a, argv[++i]);
    else usage_error("unknown option " + a);
  }
  std::ifstream file;
  if (plan_path != "-") {
    file.open(plan_path);
    if (!file) usage_error("cannot read plan " + plan_path);
  }
  std::istream& in = plan_path == "-" ? std::cin : file;
  std::vector<kpcl::RunSpec> plan;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      plan.push_back(kpcl::spec_from_json(json::parse(line)));
    } catch (const std::exception& e) { usage_error(plan_path + ":" + std::to_string(lineno) + ": " + e.what()); }
  }
  die_with_parent();
  return kpcl::run_batch(plan, opt, [&](const json& j) { emit_line(j, opt.frame); });
}

int cmd_flavors() {
  json out = json::object();
  for (auto f : {kpcl::Flavor::host, kpcl::Flavor::pidns, kpcl::Flavor::userns}) {
    kpcl::RunSpec spec;
    spec.run = spec.case_id = "noop";
    spec.flavor = f;
    spec.argv = {self_exe(), "noop"};
    // A flavor that does not work fails at once; only a starved machine is
    // slow. 5 s was too short for a TCG guest at load 17 (four guests on two
    // cores, bench/stability.py): every host-flavor run of that kernel was
    // then skipped as "host flavor unavailable: timeout".
    spec.timeout_ms = 30000;
    std::string verdict = "no result";
    kpcl::run_batch({spec}, kpcl::Options{}, [&](const json& j) {
      if (j.value("event", "") != "result") return;
      if (j.value("outcome", "") == "completed" && j["exit"].value("text", "") == "exited 0") verdict = "ok";
      else verdict = j.value("error", j.value("outcome", "failed"));
    });
    out[kpcl::flavor_name(f)] = verdict;
  }
  emit_line(out, false);
  return 0;
}

// TSC ticks per millisecond against CLOCK_MONOTONIC_RAW over ~100 ms,
// the median of three. Under TCG a guest's TSC runs at the host's rate.
int cmd_tsc_khz() {
#if defined(__x86_64__) || defined(__i386__)
  auto raw_ns = [] {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  };
  std::vector<int64_t> khz;
  for (int i = 0; i < 3; ++i) {
    int64_t t0 = raw_ns();
    uint64_t c0 = __builtin_ia32_rdtsc();
    timespec pause{0, 33 * 1000000};
    nanosleep(&pause, nullptr);
    uint64_t c1 = __builtin_ia32_rdtsc();
    int64_t t1 = raw_ns();
    khz.push_back(static_cast<int64_t>(static_cast<double>(c1 - c0) * 1e6 / static_cast<double>(t1 - t0)));
  }
  std::sort(khz.begin(), khz.end());
  emit_line({{"tsc_khz", khz[1]}}, false);
  return 0;
#else
  std::fprintf(stderr, "kpc-launch: tsc-khz: not an x86 CPU\n");
  return 1;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage_error("missing command");
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (cmd == "run" || cmd == "batch") kpcl::sweep_stale_run_dirs();
  if (cmd == "run") return cmd_run(argc - 2, argv + 2);
  if (cmd == "batch") return cmd_batch(argc - 2, argv + 2);
  if (cmd == "flavors") return cmd_flavors();
  if (cmd == "caps") {
    emit_line({{"text", kpcl::capabilities_text()}, {"effective", kpcl::effective_caps()}}, false);
    return 0;
  }
  if (cmd == "tsc-khz") return cmd_tsc_khz();
  if (cmd == "noop") return 0;
  usage_error("unknown command '" + cmd + "'");
}
