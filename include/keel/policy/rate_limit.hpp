// SPDX-License-Identifier: MIT
// keel::rate_limit: the policy that puts a rate limiter in front of a call in a
// keel::resilient pipeline. It rejects with errc::rate_limited carrying the
// limiter's retry-after, or waits for permits up to a configured maximum through
// a keel::sleeper, interruptible by the context's stop token. keel::guard(limiter)
// builds it, as keel::guard(breaker) and keel::guard(bulkhead) build theirs.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/core/context.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/core/sleeper.hpp>
#include <keel/detail/time.hpp>
#include <keel/detail/validate.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/limiter.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

KEEL_BEGIN_NAMESPACE

/// Configures a keel::rate_limit policy.
struct rate_limit_options {
    /// Permits each call takes. Default 1. Range [1, the limiter's limit]: more
    /// than the limit fails every call with errc::exceeds_capacity.
    std::int64_t permits = 1;
    /// The longest a call waits for permits in total. Default 0: reject at once
    /// (Polly's rate limiter default, QueueLimit = 0; resilience4j waits up to
    /// 5 s by default, which ties up the caller's thread). Must not be negative.
    /// nanoseconds::max() waits as long as the limiter asks, however long. A wait
    /// that would end after the context's deadline is not started, whatever max_wait.
    std::chrono::nanoseconds max_wait{0};
};

/// Guards a call with a rate limiter shared by reference.
///
/// execute() takes `permits` from the limiter; if refused it waits the
/// decision's retry_after through the sleeper and tries again, as long as the
/// total wait stays within max_wait and the context's deadline; otherwise it
/// returns failure errc::rate_limited with retry_after set. A request the
/// limiter can never grant fails with errc::exceeds_capacity, and a stop token
/// firing during a wait with errc::cancelled. The limiter must outlive the
/// policy. Thread-safe (the limiter is). Example:
///
///     keel::token_bucket bucket{{.rate = 100, .burst = 10}};
///     auto call = keel::resilient{fetch, keel::guard(bucket)};
///     auto waits = keel::guard(bucket, {.max_wait = 50ms});
template <rate_limiter Limiter, sleeper Sleeper = real_sleeper>
class rate_limit {
public:
    using clock_type = typename Limiter::clock_type;
    using limiter_type = Limiter;
    using options_type = rate_limit_options;

    /// Guards calls with `limiter` (validates `opts`; throws std::invalid_argument naming the
    /// field).
    explicit rate_limit(Limiter& limiter, options_type const& opts = {},
                        Sleeper sleeper = Sleeper{})
        : m_limiter(&limiter), m_options(opts), m_sleeper(std::move(sleeper)) {
        if (opts.permits < 1) {
            detail::invalid_option("keel::rate_limit", "permits", "at least 1", opts.permits);
        }
        if (opts.max_wait.count() < 0) {
            detail::invalid_option("keel::rate_limit", "max_wait", "non-negative", opts.max_wait);
        }
    }

    /// Runs `next(ctx)` once the limiter grants the permits, or returns the rejection.
    template <class Next, class Context>
    auto execute(Next const& next, Context const& ctx) const -> decltype(next(ctx)) {
        std::chrono::nanoseconds waited{0};
        Sleeper sleeper = m_sleeper; // sleepers are copyable handles; execute is const
        for (;;) {
            admission const step = admit(ctx, waited);
            if (step.verdict == admission::kind::run) {
                if (waited == std::chrono::nanoseconds::zero()) {
                    return next(ctx);
                }
                auto result = next(ctx);
                result.set_stats(
                    {result.attempts(), detail::saturating_add(result.waited(), waited)});
                return result;
            }
            if (step.verdict == admission::kind::reject) {
                return step.rejection;
            }
            if (!sleeper.sleep_for(step.delay, ctx.stop_token())) {
                return failure::from(errc::cancelled);
            }
            waited += step.delay;
        }
    }

    /// What admit() decided for one try.
    struct admission {
        enum class kind : std::uint8_t {
            run,    ///< The permits are taken: run the call.
            reject, ///< Return `rejection` without running the call.
            wait,   ///< Wait `delay`, then ask again.
        };
        kind verdict = kind::run;         ///< What to do.
        failure rejection{};              ///< The failure to return, for reject.
        std::chrono::nanoseconds delay{}; ///< How long to wait, for wait.
    };

    /// Asks the limiter for the permits once, having waited `waited` so far in this
    /// call: run, reject (exceeds_capacity, cancelled when ctx's stop was requested,
    /// rate_limited with the limiter's retry_after when the wait would pass max_wait
    /// or the context's deadline), or wait. Both pipelines loop on it and differ only
    /// in how they wait.
    template <class Context>
    admission admit(Context const& ctx, std::chrono::nanoseconds waited) const {
        return admit(m_limiter->try_acquire(m_options.permits), ctx, waited);
    }

    /// Decides as admit(ctx, waited) does from `d`, the limiter's answer to a request
    /// for the permits obtained elsewhere (keel::asio awaits a Redis limiter's
    /// async_try_acquire instead of blocking on try_acquire).
    template <class Context>
    admission admit(decision const& d, Context const& ctx, std::chrono::nanoseconds waited) const {
        if (d.allowed) {
            return {admission::kind::run};
        }
        if (d.unsatisfiable) {
            return {admission::kind::reject, failure::from(errc::exceeds_capacity)};
        }
        if (ctx.stop_requested()) {
            return {admission::kind::reject, failure::from(errc::cancelled)};
        }
        // waited <= max_wait always, so the subtraction cannot overflow.
        if (d.retry_after > m_options.max_wait - waited || past_deadline(ctx, d.retry_after)) {
            return {admission::kind::reject, failure::from(errc::rate_limited, d.retry_after)};
        }
        return {admission::kind::wait, {}, d.retry_after};
    }

    /// Returns the sleeper the policy waits through.
    Sleeper const& sleeper() const noexcept { return m_sleeper; }
    /// Returns the limiter this policy takes permits from.
    Limiter& limiter() const noexcept { return *m_limiter; }
    /// Returns the options.
    options_type const& options() const noexcept { return m_options; }

private:
    template <class Context>
    bool past_deadline(Context const& ctx, std::chrono::nanoseconds wait) const {
        if constexpr (requires {
                          {
                              ctx.deadline()
                              } -> std::same_as<std::optional<typename Limiter::time_point>>;
                          m_limiter->clock().now();
                      }) {
            auto const deadline = ctx.deadline();
            return deadline && detail::saturating_add(m_limiter->clock().now(), wait) > *deadline;
        } else {
            return false;
        }
    }

    Limiter* m_limiter;
    options_type m_options;
    Sleeper m_sleeper;
};

/// Deduces rate_limit<Limiter> from `keel::rate_limit{limiter}`.
template <class Limiter>
rate_limit(Limiter&) -> rate_limit<Limiter>;
/// Deduces rate_limit<Limiter> from `keel::rate_limit{limiter, options}`.
template <class Limiter>
rate_limit(Limiter&, rate_limit_options const&) -> rate_limit<Limiter>;
/// Deduces the sleeper from `keel::rate_limit{limiter, options, sleeper}`.
template <class Limiter, class Sleeper>
rate_limit(Limiter&, rate_limit_options const&, Sleeper) -> rate_limit<Limiter, Sleeper>;

/// Returns a policy for keel::resilient that guards the rest of the pipeline with
/// `limiter`, as keel::rate_limit{limiter, options} does (throws std::invalid_argument
/// on bad options). `limiter` must outlive the policy. Example:
/// `keel::guard(limiter, {.max_wait = 50ms})`.
template <rate_limiter Limiter>
rate_limit<Limiter> guard(Limiter& limiter, rate_limit_options const& options = {}) {
    return rate_limit<Limiter>{limiter, options};
}

/// Returns the rate_limit policy of guard(limiter, options) that waits with `sleeper`.
template <rate_limiter Limiter, sleeper Sleeper>
rate_limit<Limiter, Sleeper> guard(Limiter& limiter, rate_limit_options const& options,
                                   Sleeper sleeper) {
    return rate_limit<Limiter, Sleeper>{limiter, options, std::move(sleeper)};
}

KEEL_END_NAMESPACE
