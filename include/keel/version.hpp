// SPDX-License-Identifier: MIT
// keel's version, in the one place CMake reads it from, and the versioned inline
// namespace every keel entity lives in: two keel versions linked into one program
// fail to link instead of silently mixing layouts.
#pragma once

#define KEEL_VERSION_MAJOR 0
#define KEEL_VERSION_MINOR 1
#define KEEL_VERSION_PATCH 0

/// Encodes the version as one number, e.g. 0.1.0 -> 100, for preprocessor checks.
#define KEEL_VERSION (KEEL_VERSION_MAJOR * 10000 + KEEL_VERSION_MINOR * 100 + KEEL_VERSION_PATCH)

/// Opens `namespace keel` and its versioned inline namespace; pair with KEEL_END_NAMESPACE.
#define KEEL_BEGIN_NAMESPACE                                                                       \
    namespace keel {                                                                               \
    inline namespace v0_1 {
/// Closes what KEEL_BEGIN_NAMESPACE opened.
#define KEEL_END_NAMESPACE                                                                         \
    }                                                                                              \
    }
