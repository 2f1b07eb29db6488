// SPDX-License-Identifier: MIT
// Everything in keel's core target, for those who want one include. The optional
// parts stay separate: keel/fmt.hpp (needs fmt) and keel/redis/redis.hpp (needs
// hiredis and the keel::redis target).
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

#include <keel/policy/adaptive_limit.hpp>
#include <keel/policy/backoff.hpp>
#include <keel/policy/bulkhead.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/fallback.hpp>
#include <keel/policy/policy.hpp>
#include <keel/policy/predicate.hpp>
#include <keel/policy/rate_limit.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/retry_budget.hpp>
#include <keel/policy/timeout.hpp>

#include <keel/resilient.hpp>

#include <keel/ops/drain.hpp>
#include <keel/ops/health.hpp>
#include <keel/ops/health_json.hpp>
#include <keel/ops/pool_sizing.hpp>
#include <keel/ops/probe.hpp>
#include <keel/ops/signals.hpp>
#include <keel/ops/slo.hpp>

#include <keel/net/cidr.hpp>
#include <keel/net/client_address.hpp>
#include <keel/net/ip_address.hpp>
#include <keel/net/trust.hpp>
