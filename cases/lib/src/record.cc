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

const char* errno_symbol(int err) {
  // Linux's errnos (asm-generic/errno-base.h, errno.h), each by its first
  // name: EAGAIN not EWOULDBLOCK, EDEADLK not EDEADLOCK, as glibc names them.
  switch (err) {
    // A table, one errno a cell: not for clang-format.
    // clang-format off
#define KPC_E(name) \
  case name:        \
    return #name;
    KPC_E(EPERM) KPC_E(ENOENT) KPC_E(ESRCH) KPC_E(EINTR) KPC_E(EIO) KPC_E(ENXIO) KPC_E(E2BIG) KPC_E(ENOEXEC)
    KPC_E(EBADF) KPC_E(ECHILD) KPC_E(EAGAIN) KPC_E(ENOMEM) KPC_E(EACCES) KPC_E(EFAULT) KPC_E(ENOTBLK)
    KPC_E(EBUSY) KPC_E(EEXIST) KPC_E(EXDEV) KPC_E(ENODEV) KPC_E(ENOTDIR) KPC_E(EISDIR) KPC_E(EINVAL)
    KPC_E(ENFILE) KPC_E(EMFILE) KPC_E(ENOTTY) KPC_E(ETXTBSY) KPC_E(EFBIG) KPC_E(ENOSPC) KPC_E(ESPIPE)
    KPC_E(EROFS) KPC_E(EMLINK) KPC_E(EPIPE) KPC_E(EDOM) KPC_E(ERANGE) KPC_E(EDEADLK) KPC_E(ENAMETOOLONG)
    KPC_E(ENOLCK) KPC_E(ENOSYS) KPC_E(ENOTEMPTY) KPC_E(ELOOP) KPC_E(ENOMSG) KPC_E(EIDRM) KPC_E(ECHRNG)
    KPC_E(EL2NSYNC) KPC_E(EL3HLT) KPC_E(EL3RST) KPC_E(ELNRNG) KPC_E(EUNATCH) KPC_E(ENOCSI) KPC_E(EL2HLT)
    KPC_E(EBADE) KPC_E(EBADR) KPC_E(EXFULL) KPC_E(ENOANO) KPC_E(EBADRQC) KPC_E(EBADSLT) KPC_E(EBFONT)
    KPC_E(ENOSTR) KPC_E(ENODATA) KPC_E(ETIME) KPC_E(ENOSR) KPC_E(ENONET) KPC_E(ENOPKG) KPC_E(EREMOTE)
    KPC_E(ENOLINK) KPC_E(EADV) KPC_E(ESRMNT) KPC_E(ECOMM) KPC_E(EPROTO) KPC_E(EMULTIHOP) KPC_E(EDOTDOT)
    KPC_E(EBADMSG) KPC_E(EOVERFLOW) KPC_E(ENOTUNIQ) KPC_E(EBADFD) KPC_E(EREMCHG) KPC_E(ELIBACC) KPC_E(ELIBBAD)
    KPC_E(ELIBSCN) KPC_E(ELIBMAX) KPC_E(ELIBEXEC) KPC_E(EILSEQ) KPC_E(ERESTART) KPC_E(ESTRPIPE) KPC_E(EUSERS)
    KPC_E(ENOTSOCK) KPC_E(EDESTADDRREQ) KPC_E(EMSGSIZE) KPC_E(EPROTOTYPE) KPC_E(ENOPROTOOPT)
    KPC_E(EPROTONOSUPPORT) KPC_E(ESOCKTNOSUPPORT) KPC_E(EOPNOTSUPP) KPC_E(EPFNOSUPPORT) KPC_E(EAFNOSUPPORT)
    KPC_E(EADDRINUSE) KPC_E(EADDRNOTAVAIL) KPC_E(ENETDOWN) KPC_E(ENETUNREACH) KPC_E(ENETRESET)
    KPC_E(ECONNABORTED) KPC_E(ECONNRESET) KPC_E(ENOBUFS) KPC_E(EISCONN) KPC_E(ENOTCONN) KPC_E(ESHUTDOWN)
    KPC_E(ETOOMANYREFS) KPC_E(ETIMEDOUT) KPC_E(ECONNREFUSED) KPC_E(EHOSTDOWN) KPC_E(EHOSTUNREACH)
    KPC_E(EALREADY) KPC_E(EINPROGRESS) KPC_E(ESTALE) KPC_E(EUCLEAN) KPC_E(ENOTNAM) KPC_E(ENAVAIL) KPC_E(EISNAM)
    KPC_E(EREMOTEIO) KPC_E(EDQUOT) KPC_E(ENOMEDIUM) KPC_E(EMEDIUMTYPE) KPC_E(ECANCELED) KPC_E(ENOKEY)
    KPC_E(EKEYEXPIRED) KPC_E(EKEYREVOKED) KPC_E(EKEYREJECTED) KPC_E(EOWNERDEAD) KPC_E(ENOTRECOVERABLE)
    KPC_E(ERFKILL) KPC_E(EHWPOISON)
#undef KPC_E
    // clang-format on
  }
  return nullptr;
}

std::string errno_name(int err) {
  if (err == 0) return "0";
#if __GLIBC_PREREQ(2, 32)
  const char* n = strerrorname_np(err);
#else
  const char* n = errno_symbol(err);  // glibc < 2.32 has no strerrorname_np
#endif
  if (n) return n;
  return "E" + std::to_string(err);
}

bool recording_to_launcher() { return channel() >= 0; }

int observation_fd() { return channel() >= 0 ? channel() : -1; }

void observe(std::string_view key, bool value) {
  typed(key, "bool", value ? "true" : "false", value ? "true" : "false");
}

void observe(std::string_view key, int64_t value) { typed(key, "int", std::to_string(value), std::to_string(value)); }

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
    broken("observe_result(\"" + std::string(key) +
           "\"): the call failed but errno is 0 (was errno read before the call? use KPC_OBSERVE_CALL)");
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

namespace {
// The probe's last record ({"skip": ...} or {"broken": ...}), then _exit.
[[noreturn]] void end_with(const char* what, std::string_view text, size_t limit, int code) {
  run_exit_hooks();
  JsonObject o;
  o.str(what, truncate(text, limit));
  emit(o, what + (": " + std::string(text)));
  _exit(code);
}
}  // namespace

void skip(std::string_view reason) { end_with("skip", reason, 1000, kExitSkip); }

void broken(std::string_view message) { end_with("broken", message, 2000, kExitBroken); }

void finish() {
  JsonObject o;
  o.str("end", "ok");
  emit(o, "end");
  fflush(nullptr);
  _exit(0);
}

}  // namespace kpc
