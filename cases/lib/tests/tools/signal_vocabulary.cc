// signal_vocabulary: answers questions about the C++ signal vocabulary
// (kpc/signals.h) one line at a time, so runner/tests/test_vocabulary.py can
// put the same questions to the Python one (runner/kpc/values.py) and
// compare. Not a probe: a plain filter, stdin to stdout.
//
//   name N       signal_name(N)                      ("" for none)
//   number TEXT  signal_number(TEXT)                 ("-" when refused)
//   set TEXT     format_sigset(parse_sigset(TEXT))   ("-" when refused)
//   mask HEX     format_sigset of the 64-bit mask HEX
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>

#include "kpc/signals.h"

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    size_t space = line.find(' ');
    std::string verb = line.substr(0, space);
    std::string arg = space == std::string::npos ? "" : line.substr(space + 1);
    if (verb == "name") {
      std::cout << kpc::signal_name(std::stoi(arg)) << '\n';
    } else if (verb == "number") {
      auto n = kpc::signal_number(arg);
      std::cout << (n ? std::to_string(*n) : "-") << '\n';
    } else if (verb == "set") {
      auto s = kpc::parse_sigset(arg);
      std::cout << (s ? kpc::format_sigset(*s) : "-") << '\n';
    } else if (verb == "mask") {
      std::cout << kpc::format_sigset(kpc::SigSet{std::stoull(arg, nullptr, 16)}) << '\n';
    } else {
      std::cerr << "signal_vocabulary: unknown question '" << line << "'\n";
      return 2;
    }
  }
  return 0;
}
