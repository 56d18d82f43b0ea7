#include "kpc/json.h"

#include <cstdio>

namespace kpc {

void json_escape_to(std::string& out, std::string_view s) {
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);  // UTF-8 passes through unchanged
        }
    }
  }
}

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  json_escape_to(out, s);
  out += '"';
  return out;
}

void JsonObject::key(std::string_view k) {
  if (text_.size() > 1) text_ += ',';
  text_ += json_quote(k);
  text_ += ':';
}

JsonObject& JsonObject::str(std::string_view k, std::string_view value) {
  key(k);
  text_ += json_quote(value);
  return *this;
}

JsonObject& JsonObject::num(std::string_view k, int64_t value) {
  key(k);
  text_ += std::to_string(value);
  return *this;
}

JsonObject& JsonObject::boolean(std::string_view k, bool value) {
  key(k);
  text_ += value ? "true" : "false";
  return *this;
}

JsonObject& JsonObject::raw(std::string_view k, std::string_view json) {
  key(k);
  text_ += json;
  return *this;
}

}  // namespace kpc
