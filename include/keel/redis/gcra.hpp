// SPDX-License-Identifier: MIT
// keel::redis::gcra: the generic cell rate algorithm (a token bucket kept as one
// theoretical arrival time) in Redis, so every instance of a service shares one
// rate and burst. One Lua script per decision on Redis' own clock, as
// go-redis/redis_rate and redis-cell do; the same try_acquire / keel::decision
// interface as the local limiters, plus a per-key form.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/detail/validate.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/gcra.hpp>
#include <keel/redis/detail/remote_limiter.hpp>
#include <keel/redis/failure_policy.hpp>
#include <keel/redis/pool.hpp>
#include <keel/redis/script.hpp>
#include <keel/redis/target.hpp>
#include <keel/version.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

KEEL_BEGIN_NAMESPACE

namespace redis {

/// Configures a keel::redis::gcra.
struct gcra_options {
    /// Names the limit in Redis: the limiter-wide state is the key "keel:{name}",
    /// a per-key state "keel:{name:key}" (a Redis Cluster hash tag: each script
    /// touches one slot). Instances sharing a limit use the same name and
    /// parameters. Required: must not be empty.
    std::string name{};
    /// Sustained rate: `rate` permits per `period` (the name keel::gcra uses).
    /// Required; range [1, 2^31).
    std::int64_t rate = 0;
    /// The period of the rate. Default 1 s. Range [1 ms, 2^31 ms). The emission
    /// interval period / rate is kept in whole microseconds, rounded up (the
    /// rate never exceeds the configured one), and must be at least 1 µs.
    std::chrono::milliseconds period{1000};
    /// Most permits admitted at once after idleness (the bucket's capacity).
    /// Default 0: `rate`. Range [0, 2^31); burst x emission interval must stay
    /// below 2^53 µs.
    std::int64_t burst = 0;
    /// What to answer while Redis cannot decide. Default: fail open.
    failure_policy on_failure{};
};

/// A GCRA rate limiter shared through Redis: `rate` permits per `period`
/// sustained, up to `burst` at once, across every instance using the same name.
///
/// The state is one integer, the theoretical arrival time (TAT) in microseconds
/// of Redis' clock. A request for n permits is admitted when
/// max(TAT, now) + n x interval - burst x interval <= now, and then moves the TAT
/// there; the key expires when the bucket would be full again, so idle keys
/// vanish. In any span t it admits at most burst + t / interval. Each decision is
/// one EVALSHA reading Redis' TIME, so skewed instance clocks change nothing.
/// When Redis is slow or down the failure policy answers (decision::source says
/// which), and after `breaker_failures` consecutive failures a breaker stops
/// calling Redis for `breaker_open_for`, then probes. No leasing: a GCRA
/// permit's meaning depends on when it is spent. Thread-safe; the target (pool) must
/// outlive it.
///
///     keel::redis::pool redis{{.connection = {.host = "10.0.0.5"}}};
///     keel::redis::gcra api{redis, {.name = "api", .rate = 100,
///                                   .period = std::chrono::seconds{1}, .burst = 20}};
///     if (!api.try_acquire()) { /* 429 */ }
///     if (!api.try_acquire(client_id)) { /* this client is over its limit */ }
template <clock Clock = steady_clock>
class basic_gcra : public detail::remote_limiter_front<Clock> {
public:
    using typename detail::remote_limiter_front<Clock>::time_point;

    /// Builds the limiter on `redis` (a keel::redis::pool, cluster or sentinel); throws
    /// std::invalid_argument when an option is out of range.
    basic_gcra(target& redis, gcra_options options, Clock clock = {})
        : basic_gcra(redis, validated(std::move(options)), std::move(clock), validated_tag{}) {}

    /// Returns the options.
    gcra_options const& options() const noexcept { return m_options; }

    /// Returns the emission interval in microseconds: period / rate, rounded up.
    static std::int64_t interval_us(gcra_options const& o) noexcept {
        std::int64_t const period_us = o.period.count() * 1000;
        return (period_us + o.rate - 1) / o.rate;
    }

    /// Returns the script: ARGV = emission interval µs, burst, permits, (unused); returns
    /// {allowed, remaining, retry_after µs, reset µs, granted}.
    static script const& lua() {
        static script const s{R"lua(-- keel gcra
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local permits = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval * permits
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, math.floor((now + interval * burst - tat) / interval), allow_at - now, tat - now, 0}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now + interval * burst - new_tat) / interval), 0, new_tat - now, permits}
)lua"};
        return s;
    }

private:
    struct validated_tag {};

    // The base reads `o` before it moves into m_options (bases are built first).
    basic_gcra(target& redis, gcra_options&& o, Clock clock, validated_tag)
        : detail::remote_limiter_front<Clock>(
              redis, lua(), o.name, o.burst, o.on_failure, 1,
              {std::to_string(interval_us(o)), std::to_string(o.burst)}, std::move(clock)),
          m_options(std::move(o)) {
        if (m_options.on_failure.mode == failure_mode::local) {
            this->m_core.set_local(detail::make_local_share<keel::basic_gcra<Clock>>(
                keel::gcra_options{.rate = detail::share_of(m_options.rate,
                                                            m_options.on_failure.expected_instances,
                                                            std::int64_t{1} << 31),
                                   .period = m_options.period,
                                   .burst = detail::share_of(
                                       m_options.burst, m_options.on_failure.expected_instances,
                                       std::int64_t{1} << 31)},
                this->m_core.clock()));
        }
    }

    static gcra_options validated(gcra_options o) {
        constexpr std::string_view component = "keel::redis::gcra";
        constexpr std::int64_t max31 = std::int64_t{1} << 31;
        if (o.name.empty()) {
            keel::detail::invalid_configuration(component, "name must not be empty");
        }
        if (o.rate < 1 || o.rate >= max31) {
            keel::detail::invalid_option(component, "rate", "in [1, 2^31)", o.rate);
        }
        if (o.period.count() < 1 || o.period.count() >= max31) {
            keel::detail::invalid_option(component, "period", "in [1 ms, 2^31 ms)", o.period);
        }
        if (o.burst < 0 || o.burst >= max31) {
            keel::detail::invalid_option(component, "burst", "in [0, 2^31)", o.burst);
        }
        if (o.burst == 0) {
            o.burst = o.rate;
        }
        if (o.burst * interval_us(o) >= detail::lua_exact_max) {
            keel::detail::invalid_configuration(
                component, "burst x emission interval must stay below 2^53 µs, got " +
                               keel::detail::describe_value(
                                   std::chrono::microseconds{o.burst * interval_us(o)}));
        }
        detail::validate(o.on_failure, component);
        return o;
    }

    gcra_options m_options;
};

/// A Redis GCRA limiter on keel::steady_clock.
using gcra = basic_gcra<>;

} // namespace redis

KEEL_END_NAMESPACE
