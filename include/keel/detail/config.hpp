// SPDX-License-Identifier: MIT
// Compiler switches shared by keel's headers.
#pragma once

// Forces a hot path inline at -O2, where the compiler's size heuristics would
// otherwise leave a small lock-free function out of line.
#if defined(__GNUC__) || defined(__clang__)
#define KEEL_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define KEEL_ALWAYS_INLINE inline
#endif
