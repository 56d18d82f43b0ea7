#include "kpc/record.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "kpc/json.h"

namespace kpc {
namespace {

// -1: not yet looked up, -2: no launcher (print to stderr).
int g_fd = -1;

int channel() {
  if (g_fd == -1) {
    g_fd = -2;
    if (const char* s = getenv("KPC_OBS_FD")) {
      char* end = nullptr;
      long v = strtol(s, &end, 10);
      if (end != s && *end == '\0' && v >= 0 && v < INT_MAX) g_fd = static_cast<int>(v);
    }
  }
  return g_fd;
}

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // launcher gone; nothing sensible left to do
    s.remove_prefix(static_cast<size_t>(n));
  }
}

bool valid_key(std::string_view key) {
  if (key.empty() || key.size() > 128) return false;
  for (char c : key)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) return false;
  return true;
}

// One record, one write. Long string values are cut so the line stays
// within PIPE_BUF and therefore atomic.
void emit(const JsonObject& obj, std::string_view human) {
  int fd = channel();
  if (fd == -2) {
    std::string line(human);
    line += '\n';
    write_all(2, line);
    return;
  }
  std::string line = obj.line();
  if (line.size() > PIPE_BUF) {
    JsonObject cut;
    cut.str("broken", "record longer than PIPE_BUF: " + line.substr(0, 200));
    line = cut.line();
  }
  write_all(fd, line);
}

void check_key(std::string_view key) {
  if (!valid_key(key)) broken("invalid observation key '" + std::string(key) + "' (use [a-z0-9_.-])");
}

void typed(std::string_view key, std::string_view type, std::string_view json_value, std::string_view shown) {
  check_key(key);
  JsonObject o;
  o.str("obs", key).str("type", type).raw("value", json_value);
  emit(o, "observe " + std::string(key) + " = " + std::string(shown));
}

std::string truncate(std::string_view s, size_t n) {
  if (s.size() <= n) return std::string(s);
  return std::string(s.substr(0, n)) + "...(truncated)";
}

}  // namespace

std::string errno_name(int err) {
  if (err == 0) return "0";
  if (const char* n = strerrorname_np(err)) return n;
  return "E" + std::to_string(err);
}

bool recording_to_launcher() { return channel() >= 0; }

void observe(std::string_view key, bool value) {
  typed(key, "bool", value ? "true" : "false", value ? "true" : "false");
}

void observe(std::string_view key, int64_t value) {
  typed(key, "int", std::to_string(value), std::to_string(value));
}

void observe(std::string_view key, std::string_view value) {
  std::string v = truncate(value, 1024);
  typed(key, "str", json_quote(v), v);
}

void observe(std::string_view key, Errno value) {
  std::string n = errno_name(value.value);
  typed(key, "errno", json_quote(n), n);
}

void observe(std::string_view key, SigSet value) {
  std::string s = format_sigset(value);
  typed(key, "sigset", json_quote(s), s);
}

void observe_result(std::string_view key, long rc, int err) {
  if (rc == -1 && err == 0)
    broken("observe_result(\"" + std::string(key) + "\"): the call failed but errno is 0 (was errno read before the call? use KPC_OBSERVE_CALL)");
  observe(key, rc == -1 ? errno_name(err) : std::string("ok"));
}

void note(std::string_view key, std::string_view value) {
  check_key(key);
  std::string v = truncate(value, 3000);
  JsonObject o;
  o.str("note", key).str("value", v);
  emit(o, "note " + std::string(key) + " = " + v);
}

void note(std::string_view key, int64_t value) {
  check_key(key);
  JsonObject o;
  o.str("note", key).num("value", value);
  emit(o, "note " + std::string(key) + " = " + std::to_string(value));
}

void mark(std::string_view name) {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t ns = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  JsonObject o;
  o.str("mark", name).num("mono_ns", ns);
  emit(o, "mark " + std::string(name) + " at " + std::to_string(ns) + " ns");
}

void announce_fuse_connection(unsigned long conn, int request_timeout_s) {
  JsonObject o;
  o.num("fuse_conn", static_cast<int64_t>(conn));
  if (request_timeout_s > 0) o.num("request_timeout_s", request_timeout_s);
  emit(o, "fuse connection " + std::to_string(conn) +
              (request_timeout_s > 0 ? " (request timeout " + std::to_string(request_timeout_s) + " s)" : ""));
}

namespace {
struct ExitHook {
  pid_t pid;
  void (*fn)(void*);
  void* arg;
};
ExitHook g_exit_hooks[8];
int g_exit_hook_count = 0;

// The hooks this process registered, newest first, each once.
void run_exit_hooks() {
  static bool running = false;
  if (running) return;  // skip() or broken() from inside a hook
  running = true;
  for (int i = g_exit_hook_count - 1; i >= 0; --i)
    if (g_exit_hooks[i].pid == getpid()) g_exit_hooks[i].fn(g_exit_hooks[i].arg);
  g_exit_hook_count = 0;
}
}  // namespace

void at_abnormal_exit(void (*fn)(void*), void* arg) {
  if (g_exit_hook_count == 8) broken("at_abnormal_exit: more than 8 hooks");
  g_exit_hooks[g_exit_hook_count++] = ExitHook{getpid(), fn, arg};
}

void skip(std::string_view reason) {
  run_exit_hooks();
  JsonObject o;
  o.str("skip", truncate(reason, 1000));
  emit(o, "skip: " + std::string(reason));
  _exit(kExitSkip);
}

void broken(std::string_view message) {
  run_exit_hooks();
  JsonObject o;
  o.str("broken", truncate(message, 2000));
  emit(o, "broken: " + std::string(message));
  _exit(kExitBroken);
}

void finish() {
  JsonObject o;
  o.str("end", "ok");
  emit(o, "end");
  fflush(nullptr);
  _exit(0);
}

}  // namespace kpc
