// A tiny JSON object writer for one-line records. Probes must not allocate
// between vfork and exec, but everywhere else a std::string is fine.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kpc {

void json_escape_to(std::string& out, std::string_view s);
std::string json_quote(std::string_view s);

// Builds {"k":v,...} left to right. Values are already typed by the caller.
class JsonObject {
 public:
  JsonObject& str(std::string_view key, std::string_view value);
  JsonObject& num(std::string_view key, int64_t value);
  JsonObject& boolean(std::string_view key, bool value);
  JsonObject& raw(std::string_view key, std::string_view json);  // value is valid JSON
  std::string line() const { return text_ + "}\n"; }
  std::string text() const { return text_ + "}"; }

 private:
  void key(std::string_view k);
  std::string text_ = "{";
};

}  // namespace kpc
