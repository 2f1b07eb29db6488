// SPDX-License-Identifier: MIT
// Compiler attributes keel's hot paths need, defined once. KEEL_ALWAYS_INLINE
// forces inlining where g++ -O2 (what RelWithDebInfo services ship) would leave a
// small decision out of line and pass its result through memory; use it only on
// paths a benchmark shows, never as a default.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
/// Inlines the function into every caller, at -O2 as at -O3.
#define KEEL_ALWAYS_INLINE [[gnu::always_inline]] inline
#elif defined(_MSC_VER)
#define KEEL_ALWAYS_INLINE __forceinline
#else
#define KEEL_ALWAYS_INLINE inline
#endif
