// What a probe must know about the architecture it was built for. The
// suite runs on x86_64 and, cross-built, inside arm64 guests (--arch arm64).
#pragma once

#include <linux/audit.h>

#include <cstdint>

namespace kpc {

// seccomp_data.arch of this build's system calls: a filter that checks it
// against AUDIT_ARCH_X86_64 lets every aarch64 call through untouched.
#if defined(__x86_64__)
inline constexpr std::uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
inline constexpr std::uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#else
#error "kpc/arch.h: give this architecture's AUDIT_ARCH_*"
#endif

}  // namespace kpc
