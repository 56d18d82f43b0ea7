// Dropping capabilities for a probe's "unprivileged" side, with raw
// capget/capset (no library): a child that must be refused something
// drops what would let it through, in its effective and permitted sets.
#pragma once

#include <initializer_list>

namespace kpc {

// Removes `caps` (CAP_* numbers) from this thread's effective and permitted
// sets; the probe is broken when capset fails.
void drop_capabilities(std::initializer_list<int> caps);
// Empties this thread's effective, permitted and inheritable sets.
void drop_all_capabilities();
// Whether `cap` is in this thread's effective set.
bool has_effective_capability(int cap);

}  // namespace kpc
