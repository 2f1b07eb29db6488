// SPDX-License-Identifier: MIT
// keel::redis::fixed_window: a fixed-window limiter whose count lives in Redis,
// so every instance of a service shares one limit. One Lua script per decision,
// on Redis' own clock; the same try_acquire / keel::decision interface as the
// local limiters, plus a per-key form for per-client limits.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/detail/validate.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/fixed_window.hpp>
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

/// Configures a keel::redis::fixed_window.
struct fixed_window_options {
    /// Names the limit in Redis: the limiter-wide count is the key "keel:{name}",
    /// a per-key count "keel:{name:key}" (the braces are a Redis Cluster hash tag,
    /// so each script touches one slot). Instances sharing a limit use the same
    /// name and parameters. Required: must not be empty.
    std::string name{};
    /// Permits per window. Required; range [1, 2^31).
    std::int64_t limit = 0;
    /// Window length; windows are aligned on Redis' clock (multiples of the
    /// length since the Unix epoch), so all instances agree on them. Default 1 s.
    /// Range [1 ms, 2^31 ms); limit x window in microseconds must stay below 2^53.
    std::chrono::milliseconds window{1000};
    /// What to answer while Redis cannot decide. Default: fail open.
    failure_policy on_failure{};
    /// Permits taken from Redis per round trip by the limiter-wide form (the
    /// surplus is spent locally until the window ends). Default 1: no leasing.
    /// Range [1, limit]. Never admits more than `limit` per window; unused leased
    /// permits are lost to the other instances, up to (lease - 1) x instances per
    /// window. The per-key form always asks Redis.
    std::int64_t lease = 1;
};

/// A fixed-window rate limiter shared through Redis: at most `limit` permits in
/// each aligned window of Redis' clock, across every instance using the same name.
///
/// Each decision is one EVALSHA of a Lua script that reads Redis' TIME, keeps
/// "<window index>:<count>" in one string with its expiry at the window's end
/// (three Redis calls: TIME, GET, SET PX), so idle keys vanish. Skewed instance clocks change
/// nothing. When Redis is slow or down the failure policy answers (decision::source says which),
/// and after `breaker_failures` consecutive failures a breaker stops calling Redis for
/// `breaker_open_for`, then probes. Thread-safe; the target (pool) must outlive it.
///
///     keel::redis::pool redis{{.connection = {.host = "10.0.0.5"}}};
///     keel::redis::fixed_window api{redis, {.name = "api", .limit = 1000,
///                                           .window = std::chrono::seconds{1}}};
///     if (!api.try_acquire()) { /* 429 */ }
///     if (!api.try_acquire(client_id)) { /* this client is over its limit */ }
template <clock Clock = steady_clock>
class basic_fixed_window : public detail::remote_limiter_front<Clock> {
public:
    using typename detail::remote_limiter_front<Clock>::time_point;

    /// Builds the limiter on `redis` (a keel::redis::pool, cluster or sentinel); throws
    /// std::invalid_argument when an option is out of range.
    basic_fixed_window(target& redis, fixed_window_options options, Clock clock = {})
        : basic_fixed_window(redis, validated(std::move(options)), std::move(clock),
                             validated_tag{}) {}

    /// Returns the options.
    fixed_window_options const& options() const noexcept { return m_options; }
    /// Returns how many round trips leased more permits than asked for.
    std::uint64_t leases_taken() const { return this->m_core.leases_taken(); }

    /// Returns the script: ARGV = window µs, limit, permits, wanted permits (>= permits, the
    /// lease); returns {allowed, remaining, retry_after µs, reset µs, granted}.
    static script const& lua() {
        static script const s{R"lua(-- keel fixed window
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local window = ARGV[1] + 0
local limit = ARGV[2] + 0
local index = math.floor(now / window)
local reset = (index + 1) * window - now
local used = 0
local state = redis.call('GET', KEYS[1])
if state then
  local sep = string.find(state, ':', 1, true)
  if sep and tonumber(string.sub(state, 1, sep - 1)) == index then
    used = tonumber(string.sub(state, sep + 1)) or 0
  end
end
if used + ARGV[3] > limit then
  return {0, limit - used, reset, reset, 0}
end
local granted = math.min(ARGV[4] + 0, limit - used)
used = used + granted
redis.call('SET', KEYS[1], index .. ':' .. used, 'PX', math.ceil(reset / 1000))
return {1, limit - used, 0, reset, granted}
)lua"};
        return s;
    }

private:
    struct validated_tag {};

    // The base reads `o` before it moves into m_options (bases are built first).
    basic_fixed_window(target& redis, fixed_window_options&& o, Clock clock, validated_tag)
        : detail::remote_limiter_front<Clock>(
              redis, lua(), o.name, o.limit, o.on_failure, o.lease,
              {std::to_string(o.window.count() * 1000), std::to_string(o.limit)}, std::move(clock)),
          m_options(std::move(o)) {
        if (m_options.on_failure.mode == failure_mode::local) {
            this->m_core.set_local(detail::make_local_share<keel::basic_fixed_window<Clock>>(
                keel::fixed_window_options{
                    .limit =
                        detail::share_of(m_options.limit, m_options.on_failure.expected_instances,
                                         std::int64_t{0xffff'ffff}),
                    .window = m_options.window},
                this->m_core.clock()));
        }
    }

    static fixed_window_options validated(fixed_window_options o) {
        constexpr std::string_view component = "keel::redis::fixed_window";
        constexpr std::int64_t max31 = std::int64_t{1} << 31;
        if (o.name.empty()) {
            keel::detail::invalid_configuration(component, "name must not be empty");
        }
        if (o.limit < 1 || o.limit >= max31) {
            keel::detail::invalid_option(component, "limit", "in [1, 2^31)", o.limit);
        }
        if (o.window.count() < 1 || o.window.count() >= max31) {
            keel::detail::invalid_option(component, "window", "in [1 ms, 2^31 ms)", o.window);
        }
        if (o.limit * o.window.count() * 1000 >= detail::lua_exact_max) {
            keel::detail::invalid_configuration(
                component, "limit x window in microseconds must stay below 2^53, got " +
                               keel::detail::describe_value(o.limit * o.window.count() * 1000));
        }
        if (o.lease < 1 || o.lease > o.limit) {
            keel::detail::invalid_option(component, "lease", "in [1, limit]", o.lease);
        }
        detail::validate(o.on_failure, component);
        return o;
    }

    fixed_window_options m_options;
};

/// A Redis fixed window on keel::steady_clock.
using fixed_window = basic_fixed_window<>;

} // namespace redis

KEEL_END_NAMESPACE
