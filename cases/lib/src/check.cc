#include "kpc/check.h"

#include <libgen.h>
#include <string.h>

#include "kpc/record.h"

namespace kpc::detail {

namespace {
std::string where(const char* file, int line) {
  std::string f = file;
  size_t slash = f.rfind('/');
  if (slash != std::string::npos) f = f.substr(slash + 1);
  return f + ":" + std::to_string(line);
}
}  // namespace

void sys_failed(const char* expr, const char* file, int line, int err) {
  broken(where(file, line) + ": " + expr + " failed: " + errno_name(err) + " (" + strerror(err) + ")");
}

void check_failed(const char* expr, const char* file, int line, const std::string& extra) {
  std::string msg = where(file, line) + ": check failed: " + expr;
  if (!extra.empty()) msg += " (" + extra + ")";
  broken(msg);
}

}  // namespace kpc::detail
