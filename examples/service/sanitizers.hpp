// SPDX-License-Identifier: MIT
// ThreadSanitizer settings for the demo programs. cpp-httplib comes as a shared
// library built without TSan: its own atomic hand-offs (the fast path of a
// function-local static, for one) are invisible to TSan, so the memcmp and
// memcpy it calls report races that are not there. ignore_noninstrumented_modules
// stops checking memory accesses made by such interceptor calls from
// uninstrumented code only; locks taken there still count, and everything
// compiled here, keel included, is checked as usual.
#pragma once

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KEEL_DEMO_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define KEEL_DEMO_TSAN 1
#endif

#if defined(KEEL_DEMO_TSAN)
extern "C" char const* __tsan_default_options() {
    return "ignore_noninstrumented_modules=1";
}
#endif
