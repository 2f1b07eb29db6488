// SPDX-License-Identifier: MIT
// The machinery the distributed limiters share: key naming under a hash tag, the
// script call through the target (a pool, a Cluster, a Sentinel master), the
// breakers guarding Redis (one per route), the failure policy, and leasing
// several permits per round trip. Internal to keel::redis.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/keyed.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/redis/failure_policy.hpp>
#include <keel/redis/script.hpp>
#include <keel/redis/target.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace redis::detail {

/// Largest integer a Lua 5.1 number (a double) holds exactly: 2^53.
inline constexpr std::int64_t lua_exact_max = std::int64_t{1} << 53;

/// The five integers every keel limiter script returns.
struct script_result {
    bool allowed = false;
    std::int64_t remaining = 0;
    std::int64_t retry_after_us = 0;
    std::int64_t reset_us = 0;
    std::int64_t granted = 0;
};

/// Reads {allowed, remaining, retry_after_us, reset_us, granted}; nullopt if the reply has
/// another shape.
inline std::optional<script_result> parse_result(reply const& r) {
    if (!r.is_array() || r.size() != 5) {
        return std::nullopt;
    }
    std::array<std::int64_t, 5> v{};
    for (std::size_t i = 0; i < 5; ++i) {
        redisReply const* e = r.element(i);
        if (e == nullptr || e->type != REDIS_REPLY_INTEGER) {
            return std::nullopt;
        }
        v[i] = e->integer;
    }
    return script_result{v[0] != 0, v[1], v[2], v[3], v[4]};
}

/// Returns the keel::circuit_breaker options that make it trip after
/// `breaker_failures` consecutive failed Redis calls (a count window of that size,
/// all of it failed), stay open `breaker_open_for` every time (no backoff, no
/// jitter: Redis is probed at a steady pace) and send one probe when half-open.
inline circuit_breaker_options breaker_options(failure_policy const& p) {
    auto const n = static_cast<std::uint32_t>(p.breaker_failures);
    return circuit_breaker_options{
        .failure_rate_threshold = 100.0,
        .window = circuit_window::count_based,
        .window_size = n,
        .minimum_calls = n,
        .reset_timeout = p.breaker_open_for,
        .max_reset_timeout = p.breaker_open_for,
        .reset_jitter = std::chrono::nanoseconds::zero(),
        .permitted_calls_in_half_open = 1,
    };
}

/// Shared body of the distributed limiters: one script per decision, one breaker
/// per route of the target (a Cluster master that dies opens only its own).
template <class Clock>
class remote_limiter {
public:
    using time_point = typename Clock::time_point;
    /// Decides for (key, permits, now) in process while Redis cannot; no key for the
    /// limiter-wide form.
    using local_decider =
        std::function<decision(std::optional<std::string_view>, std::int64_t, time_point)>;

    remote_limiter(target& redis, script const& lua, std::string const& name, std::int64_t limit,
                   failure_policy policy, std::int64_t lease, Clock clock)
        : m_target(redis), m_script(lua), m_name(name), m_key("keel:{" + name + "}"),
          m_limit(limit), m_policy(policy), m_lease(lease), m_clock(std::move(clock)) {
        std::size_t const routes = std::max<std::size_t>(m_target.routes(), 1);
        m_breakers.reserve(routes);
        for (std::size_t i = 0; i < routes; ++i) {
            m_breakers.push_back(
                std::make_unique<basic_circuit_breaker<Clock>>(breaker_options(policy), m_clock));
            m_breakers.back()->on_transition([this](auto const& t) {
                if (t.to == circuit_state::open) {
                    m_trips.fetch_add(1, std::memory_order_relaxed);
                }
            });
        }
    }

    Clock const& clock() const noexcept { return m_clock; }
    std::int64_t limit() const noexcept { return m_limit; }
    failure_policy const& policy() const noexcept { return m_policy; }
    std::size_t routes() const noexcept { return m_breakers.size(); }
    basic_circuit_breaker<Clock>& breaker(std::size_t route = 0) noexcept {
        return *m_breakers[std::min(route, m_breakers.size() - 1)];
    }
    /// True unless every route's breaker is closed.
    bool breaker_open() const noexcept {
        return std::any_of(m_breakers.begin(), m_breakers.end(),
                           [](auto const& b) { return b->state() != circuit_state::closed; });
    }
    std::uint64_t breaker_trips() const noexcept { return m_trips.load(std::memory_order_relaxed); }
    void set_local(local_decider local) { m_local = std::move(local); }

    /// Returns the Redis key of the limiter-wide form, or of `key`'s limit.
    std::string redis_key(std::optional<std::string_view> key) const {
        if (!key) {
            return m_key;
        }
        std::string k;
        k.reserve(m_name.size() + key->size() + 8);
        k.append("keel:{").append(m_name).append(":").append(*key).append("}");
        return k;
    }

    /// A decision that waits for Redis' reply: what finish() needs once it is in.
    struct remote_call {
        std::string keyed_text{};   // the per-key Redis key; empty for the limiter-wide form
        std::size_t key_length = 0; // the caller's key, at the end of keyed_text before '}'
        bool has_key = false;
        std::int64_t permits = 0;
        time_point now{};
        typename basic_circuit_breaker<Clock>::permit permit{};
        std::string permits_text{};
        std::string want_text{};
    };

    /// Decides `permits` for `key` (nullopt: limiter-wide), with `params` the
    /// algorithm's leading script arguments. Fewer than 1 or more than the limit
    /// is unsatisfiable, answered without asking Redis.
    decision acquire(std::optional<std::string_view> key, std::int64_t permits, time_point now,
                     std::span<std::string const> params) {
        remote_call call;
        if (std::optional<decision> local = prepare(key, permits, now, call)) {
            return *local;
        }
        std::array<std::string_view, 8> args{};
        auto const argv = arguments(call, params, args);
        return finish(call, m_target.run(m_script, redis_key(call), argv));
    }

    /// Decides as acquire() does and passes the decision to `done`, exactly once:
    /// before returning when Redis need not be asked, else once the target's
    /// run_async answers (from its event loop for keel::redis::async_connection).
    /// This limiter must outlive the call's answer.
    void acquire_async(std::optional<std::string_view> key, std::int64_t permits, time_point now,
                       std::span<std::string const> params, std::function<void(decision)> done) {
        auto call = std::make_shared<remote_call>();
        if (std::optional<decision> local = prepare(key, permits, now, *call)) {
            done(*local);
            return;
        }
        std::array<std::string_view, 8> args{};
        auto const argv = arguments(*call, params, args);
        std::string_view const k = redis_key(*call);
        m_target.run_async(
            m_script, k, argv,
            [this, call, done = std::move(done)](outcome<reply> r) { done(finish(*call, r)); });
    }

    /// Answers without Redis when it can: an unsatisfiable request, permits from a
    /// lease, or the failure policy while the key's breaker is open. Otherwise fills
    /// `call` (the breaker's permit taken) and returns nullopt: ask Redis, then finish().
    std::optional<decision> prepare(std::optional<std::string_view> key, std::int64_t permits,
                                    time_point now, remote_call& call) {
        if (permits < 1 || permits > m_limit) {
            decision d;
            d.unsatisfiable = true;
            d.limit = m_limit;
            return d;
        }
        if (!key && m_lease > 1) {
            std::lock_guard lock{m_lease_mutex};
            if (m_leased >= permits && now < m_lease_expiry) {
                m_leased -= permits;
                return remote_decision(true, m_leased + m_lease_remaining, 0, m_lease_reset_us);
            }
        }
        if (key) {
            call.keyed_text = redis_key(key);
            call.key_length = key->size();
            call.has_key = true;
        }
        call.permit = breaker(m_target.route(redis_key(call))).try_acquire();
        if (!call.permit) {
            // Open (or half-open with its probe out): no network at all.
            return fallback(key, permits, now, call.permit.retry_after());
        }
        call.permits = permits;
        call.now = now;
        call.permits_text = std::to_string(permits);
        call.want_text = std::to_string(key ? permits : std::max(permits, m_lease));
        return std::nullopt;
    }

    /// Turns Redis' answer `r` to `call` into the decision: records it with the
    /// breaker, takes a lease's surplus, or lets the failure policy answer.
    decision finish(remote_call& call, outcome<reply> const& r) {
        std::optional<script_result> result;
        if (r && !r->is_error()) {
            result = parse_result(*r);
        }
        std::optional<std::string_view> const key = caller_key(call);
        if (!result) {
            call.permit.failure();
            return fallback(key, call.permits, call.now, std::nullopt);
        }
        call.permit.success();
        if (!result->allowed) {
            return remote_decision(false, result->remaining, result->retry_after_us,
                                   result->reset_us);
        }
        std::int64_t const extra = result->granted - call.permits;
        if (!key && extra > 0) {
            // Leased permits are usable until the end of the window they were
            // counted in, as seen from when the request was sent (never later than
            // the server's window end, so they never spill into the next window).
            time_point const expiry = call.now + std::chrono::microseconds{result->reset_us};
            std::lock_guard lock{m_lease_mutex};
            if (call.now < m_lease_expiry) {
                // Another batch is still valid: keep both, until the earlier expiry
                // (safe whether or not the two were counted in the same window).
                m_leased += extra;
                m_lease_expiry = std::min(m_lease_expiry, expiry);
            } else {
                m_leased = extra;
                m_lease_expiry = expiry;
            }
            m_lease_remaining = result->remaining;
            m_lease_reset_us = result->reset_us;
            m_leases_taken += 1;
        }
        return remote_decision(true, result->remaining + std::max<std::int64_t>(extra, 0), 0,
                               result->reset_us);
    }

    /// Returns the answer of the failure policy for (key, permits) at `now`;
    /// `until_probe` is when the breaker lets a call through again, if known.
    decision fallback(std::optional<std::string_view> key, std::int64_t permits, time_point now,
                      std::optional<std::chrono::nanoseconds> until_probe) {
        decision d;
        d.limit = m_limit;
        switch (m_policy.mode) {
        case failure_mode::fail_closed:
            d.allowed = false;
            d.source = decision_source::fallback_closed;
            d.retry_after =
                std::max(until_probe.value_or(std::chrono::nanoseconds{m_policy.breaker_open_for}),
                         std::chrono::nanoseconds{std::chrono::milliseconds{1}});
            d.reset = d.retry_after;
            return d;
        case failure_mode::local:
            if (m_local) {
                d = m_local(key, permits, now);
                d.source = decision_source::fallback_local;
                return d;
            }
            [[fallthrough]];
        case failure_mode::fail_open: break;
        }
        d.allowed = true;
        d.source = decision_source::fallback_open;
        d.remaining = std::max<std::int64_t>(m_limit - permits, 0);
        return d;
    }

    /// Returns how many leases (round trips granting more than asked) were taken.
    std::uint64_t leases_taken() const {
        std::lock_guard lock{m_lease_mutex};
        return m_leases_taken;
    }

private:
    std::string_view redis_key(remote_call const& call) const noexcept {
        return call.has_key ? std::string_view{call.keyed_text} : std::string_view{m_key};
    }

    /// The caller's key of `call` ("keel:{name:" + key + "}"), or none.
    static std::optional<std::string_view> caller_key(remote_call const& call) noexcept {
        if (!call.has_key) {
            return std::nullopt;
        }
        std::string_view const k = call.keyed_text;
        return k.substr(k.size() - 1 - call.key_length, call.key_length);
    }

    /// Fills `out` with the script's arguments for `call`: `params`, then the
    /// permits asked for and the permits wanted (the lease).
    static std::span<std::string_view const> arguments(remote_call const& call,
                                                       std::span<std::string const> params,
                                                       std::array<std::string_view, 8>& out) {
        std::size_t n = 0;
        for (std::string const& p : params) {
            out[n++] = p;
        }
        out[n++] = call.permits_text;
        out[n++] = call.want_text;
        return {out.data(), n};
    }

    decision remote_decision(bool allowed, std::int64_t remaining, std::int64_t retry_us,
                             std::int64_t reset_us) const {
        decision d;
        d.allowed = allowed;
        d.source = decision_source::remote;
        d.limit = m_limit;
        d.remaining = std::clamp<std::int64_t>(remaining, 0, m_limit);
        d.retry_after = allowed ? std::chrono::nanoseconds{0} : std::chrono::microseconds{retry_us};
        d.reset = std::chrono::microseconds{reset_us};
        return d;
    }

    target& m_target;
    script const& m_script;
    std::string m_name;
    std::string m_key;
    std::int64_t m_limit;
    failure_policy m_policy;
    std::int64_t m_lease;
    std::vector<std::unique_ptr<basic_circuit_breaker<Clock>>> m_breakers;
    std::atomic<std::uint64_t> m_trips{0};
    local_decider m_local;
    mutable std::mutex m_lease_mutex;
    std::int64_t m_leased = 0;
    std::int64_t m_lease_remaining = 0;
    std::int64_t m_lease_reset_us = 0;
    std::uint64_t m_leases_taken = 0;
    time_point m_lease_expiry{};
    [[no_unique_address]] Clock m_clock;
};

/// The in-process limiter failure_mode::local asks: one `Local` limiter for the
/// limiter-wide form and a keel::keyed table of them (at most `max_keys`) for
/// the per-key form, each configured with the instance's share of the limit.
template <class Local>
class local_share {
public:
    using time_point = typename Local::time_point;

    /// At most this many keys are tracked in process while Redis is down;
    /// keel::keyed's overflow policy (a shared limiter) covers the rest.
    static constexpr std::size_t max_keys = std::size_t{1} << 16;

    local_share(typename Local::options const& options, typename Local::clock_type clock)
        : m_wide(options, clock), m_keyed(options, {.max_keys = max_keys, .shards = 16}, clock) {}

    decision operator()(std::optional<std::string_view> key, std::int64_t permits, time_point now) {
        if (!key) {
            return m_wide.try_acquire(permits, now);
        }
        return m_keyed.try_acquire(std::string{*key}, permits, now);
    }

private:
    Local m_wide;
    keyed<Local, std::string> m_keyed;
};

/// The public face every Redis limiter shares: the try_acquire overloads (limiter-wide
/// and per key) and the breaker and fallback accessors, over one remote_limiter. The
/// algorithm's class derives from it and adds its options, validation and script.
template <clock Clock>
class remote_limiter_front {
public:
    using clock_type = Clock;
    using time_point = typename Clock::time_point;

    /// Asks for `permits` of the limiter-wide limit now.
    decision try_acquire(std::int64_t permits = 1) {
        return try_acquire(permits, m_core.clock().now());
    }
    /// Asks for `permits` of the limiter-wide limit; `now` drives only the breaker, leases and
    /// the local fallback (Redis decides on its own clock).
    decision try_acquire(std::int64_t permits, time_point now) {
        return m_core.acquire(std::nullopt, permits, now, m_params);
    }
    /// Asks for `permits` of `key`'s own limit (one count per key, e.g. per client).
    decision try_acquire(std::string_view key, std::int64_t permits = 1) {
        return try_acquire(key, permits, m_core.clock().now());
    }
    /// Asks for `permits` of `key`'s own limit at `now` (see the limiter-wide overload).
    decision try_acquire(std::string_view key, std::int64_t permits, time_point now) {
        return m_core.acquire(key, permits, now, m_params);
    }

    /// Decides as try_acquire(permits) does without waiting for Redis on the calling
    /// thread: `done(decision)` is called exactly once, before returning when Redis
    /// need not be asked (a lease, an open breaker) or when the target answers
    /// synchronously (a pool, a Cluster, a Sentinel master: they block as
    /// try_acquire does), else from the event loop of the target
    /// (keel::redis::async_connection). keel::asio's rate_limit awaits it. The
    /// limiter must outlive the answer.
    template <std::invocable<decision> Handler>
    void async_try_acquire(std::int64_t permits, Handler&& done) {
        m_core.acquire_async(std::nullopt, permits, m_core.clock().now(), m_params,
                             std::forward<Handler>(done));
    }
    /// Decides as try_acquire(key, permits) does, answering as the limiter-wide
    /// async_try_acquire does.
    template <std::invocable<decision> Handler>
    void async_try_acquire(std::string_view key, std::int64_t permits, Handler&& done) {
        m_core.acquire_async(key, permits, m_core.clock().now(), m_params,
                             std::forward<Handler>(done));
    }

    /// The in-process decision failure_mode::local uses while Redis cannot decide:
    /// called with the key (none for the limiter-wide form), the permits and `now`.
    using local_fallback = typename remote_limiter<Clock>::local_decider;

    /// Replaces the limiter failure_mode::local asks while Redis cannot decide
    /// (its decision's source is then set to fallback_local). With none, the
    /// local mode admits like fail_open. Not thread-safe: call before sharing the
    /// limiter between threads.
    void set_local_fallback(local_fallback local) { m_core.set_local(std::move(local)); }

    /// Returns true unless every breaker guarding Redis is closed (one is open, or
    /// half-open while its probe runs).
    bool breaker_open() const noexcept { return m_core.breaker_open(); }
    /// Returns how many times a breaker guarding Redis opened.
    std::uint64_t breaker_trips() const noexcept { return m_core.breaker_trips(); }
    /// Returns the keel::circuit_breaker guarding `route` of the target (for its
    /// metrics() and on_transition() listeners; a route beyond the last names the
    /// last). A single server or a Sentinel master has one route, 0; a Cluster one
    /// per node (keel::redis::cluster::route). It lives as long as the limiter.
    basic_circuit_breaker<Clock>& breaker(std::size_t route = 0) noexcept {
        return m_core.breaker(route);
    }
    /// Returns how many breakers guard Redis: the target's routes().
    std::size_t breaker_count() const noexcept { return m_core.routes(); }
    /// Returns the Redis key holding the limiter-wide state, or `key`'s state.
    std::string redis_key(std::optional<std::string_view> key = std::nullopt) const {
        return m_core.redis_key(key);
    }

protected:
    /// `params` are the algorithm's leading script arguments, sent with every decision.
    remote_limiter_front(target& redis, script const& lua, std::string const& name,
                         std::int64_t limit, failure_policy policy, std::int64_t lease,
                         std::array<std::string, 2> params, Clock clock)
        : m_core(redis, lua, name, limit, policy, lease, std::move(clock)),
          m_params(std::move(params)) {}

    remote_limiter<Clock> m_core;
    std::array<std::string, 2> m_params;
};

/// Returns the instance's share of `limit`: limit / instances, at least 1, at most `max`.
inline std::int64_t share_of(std::int64_t limit, std::int64_t instances, std::int64_t max) {
    return std::clamp<std::int64_t>(limit / instances, 1, max);
}

/// Builds a local_decider over a new local_share<Local> (shared by the decider's copies).
template <class Local, class Clock>
typename remote_limiter<Clock>::local_decider
make_local_share(typename Local::options const& options, Clock const& clock) {
    auto share = std::make_shared<local_share<Local>>(options, clock);
    return [share](std::optional<std::string_view> key, std::int64_t permits,
                   typename Clock::time_point now) { return (*share)(key, permits, now); };
}

} // namespace redis::detail

KEEL_END_NAMESPACE
