// SPDX-License-Identifier: MIT
// Everything in keel's core target, for those who want one include. The optional
// parts stay separate: keel/fmt.hpp (needs fmt) and keel/redis/ (needs hiredis).
#pragma once

#include <keel/version.hpp>

#include <keel/core/clock.hpp>
#include <keel/core/context.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/core/random.hpp>
#include <keel/core/sleeper.hpp>

#include <keel/limiter/decision.hpp>
#include <keel/limiter/fixed_window.hpp>
#include <keel/limiter/gcra.hpp>
#include <keel/limiter/headers.hpp>
#include <keel/limiter/keyed.hpp>
#include <keel/limiter/limiter.hpp>
#include <keel/limiter/sliding_counter.hpp>
#include <keel/limiter/sliding_log.hpp>
#include <keel/limiter/token_bucket.hpp>

#include <keel/policy/policy.hpp>
#include <keel/policy/rate_limit.hpp>
