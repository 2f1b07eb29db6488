// SPDX-License-Identifier: MIT
// keel::asio::async_policy: how the asynchronous pipeline runs each policy. For
// keel's own policies (retry, timeout, the breaker, bulkhead and rate-limit
// guards, fallback) it calls the very decisions their synchronous execute()
// makes (retry::start and its schedule, timeout::deadline_from, the breaker
// policy's rejection/complete, the bulkhead's enqueue/withdraw, rate_limit::admit,
// fallback::substitute) and only waits differently: on an Asio timer instead of
// a sleeper, cancelled by Asio cancellation instead of a stop token.
#pragma once

#include <keel/asio/context.hpp>
#include <keel/asio/detail/asio.hpp>
#include <keel/asio/detail/deadline_queue.hpp>
#include <keel/asio/detail/scope.hpp>
#include <keel/asio/limiter.hpp>
#include <keel/asio/timer.hpp>
#include <keel/core/clock.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/detail/deadline_timer.hpp>
#include <keel/detail/time.hpp>
#include <keel/observe/pipeline_counters.hpp>
#include <keel/policy/bulkhead.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/fallback.hpp>
#include <keel/policy/rate_limit.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/timeout.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

KEEL_BEGIN_NAMESPACE

namespace asio {

namespace detail {
template <class Next, class Context>
using next_result_t = typename std::invoke_result_t<Next&, Context const&>::value_type::value_type;

/// The clock a policy that waits through `Sleeper` waits on asynchronously: a
/// virtual_sleeper's manual clock (virtual time in tests), else keel::steady_clock.
template <class Sleeper>
auto wait_clock(Sleeper const& sleeper) {
    if constexpr (requires {
                      sleeper.clock();
                      requires keel::detail::scheduling_clock<
                          std::remove_cvref_t<decltype(sleeper.clock())>>;
                  }) {
        return std::remove_cvref_t<decltype(sleeper.clock())>{sleeper.clock()};
    } else {
        return steady_clock{};
    }
}
} // namespace detail

/// Runs `Policy` in keel::asio::resilient: `execute(policy, next, ctx)` returns
/// `awaitable<outcome<R>>`, where `co_await next(ctx')` runs the rest of the
/// pipeline. This primary template calls the policy's own member
///
///     template <class Next, class Context>
///     keel::asio::awaitable<keel::outcome<R>> async_execute(Next next, Context const& ctx) const;
///
/// the asynchronous twin of a policy's execute() (a user's policy meets both
/// shapes, or only this one if it is only used asynchronously). `next` is taken by
/// value; co_await it at once (not after the context it got has gone). keel's
/// synchronous policies are specialised below.
template <class Policy>
struct async_policy {
    template <class Next, class Context>
    static auto execute(Policy const& policy, Next next, Context const& ctx) {
        static_assert(
            requires { policy.async_execute(std::move(next), ctx); },
            "keel::asio::resilient: this policy has no asynchronous form: give it a member "
            "async_execute(next, ctx) returning keel::asio::awaitable<keel::outcome<R>> "
            "(docs/async.md shows one)");
        return policy.async_execute(std::move(next), ctx);
    }
};

/// keel::retry, asynchronously: the same schedule (attempts, backoff and jitter,
/// Retry-After, max_duration and the deadline, the budget, on_retry), with the
/// waits on an Asio timer on the retry's clock. Cancellation during a wait ends
/// the call with the last outcome (the pipeline then reports errc::cancelled, or
/// an enclosing timeout errc::timeout).
template <class Predicate, class Clock, class Sleeper, class Random>
struct async_policy<keel::retry<Predicate, Clock, Sleeper, Random>> {
    template <class Next, class Context>
    static awaitable<outcome<detail::next_result_t<Next, Context>>>
    execute(keel::retry<Predicate, Clock, Sleeper, Random> const& policy, Next next,
            Context const& ctx) {
        static_assert(std::is_same_v<typename Context::time_point, typename Clock::time_point>,
                      "keel::retry: the pipeline's context must use the retry's clock");
        auto plan = policy.start(ctx);
        auto result = co_await next(ctx.attempt() == 1 ? ctx : ctx.with_attempt(1));
        if (plan.retryable(result)) [[unlikely]] {
            try {
                while (auto const delay = plan.next_delay(result, ctx.stop_requested())) {
                    if (!co_await sleep_for(policy.clock(), *delay)) {
                        plan.wait_interrupted();
                        break;
                    }
                    result = co_await next(ctx.with_attempt(plan.attempt()));
                    if (!plan.retryable(result)) {
                        break;
                    }
                }
            } catch (...) {
                // An on_retry listener threw: report it rather than escape.
                result = keel::failure::from_current_exception();
            }
            plan.finish(result);
        }
        co_return result;
    }
};

/// keel::timeout, asynchronously: the inner pipeline runs in a coroutine of its
/// own, whose cancellation slot is fired (terminal) at the deadline, on the
/// coroutine's executor; the deadline nests as in the synchronous pipeline. An
/// attempt the deadline ended, or that returned at or after it, is errc::timeout;
/// an outcome that arrives first (a fast failure too) is kept. Not built on
/// `op() || timer`, which in Asio drops a fast failure and reports the timeout.
/// The deadline waits in the execution context's queue for the timeout's clock
/// (detail::deadline_queue): one timer per context and clock, armed at the
/// earliest deadline, so a call neither arms nor cancels a timer of its own.
template <class Clock>
struct async_policy<basic_timeout<Clock>> {
    template <class Next, class Context>
    static awaitable<outcome<detail::next_result_t<Next, Context>>>
    execute(basic_timeout<Clock> const& policy, Next next, Context const& ctx) {
        using R = detail::next_result_t<Next, Context>;
        static_assert(std::is_same_v<typename Context::time_point, typename Clock::time_point>,
                      "keel::timeout: the pipeline's context must use the timeout's clock");
        auto const start = policy.clock().now();
        auto const deadline = policy.deadline_from(start, ctx.deadline());
        if (deadline <= start) {
            co_return keel::failure::from(errc::timeout);
        }
        if (ctx.stop_requested()) {
            co_return keel::failure::from(errc::cancelled);
        }
        auto scope = detail::make_cancel_scope();
        auto executor = co_await net::this_coro::executor;
        auto queue = detail::deadline_queue_for(executor, policy.clock());
        typename detail::deadline_queue<Clock>::entry const alarm{std::move(queue), deadline, scope,
                                                                  std::move(executor)};
        outcome<R> result =
            co_await detail::run_in_scope<R>(scope, ctx.with_deadline(deadline), std::move(next));
        // An attempt the timer ended is settled as ended at its deadline.
        co_return basic_timeout<Clock>::settle(
            std::move(result), scope->timed_out ? deadline : policy.clock().now(), deadline);
    }
};

/// keel::guard(breaker), asynchronously: the same permit, rejection and verdict;
/// an attempt the caller or a hedge cancelled releases its permit with no verdict
/// (resilience4j's releasePermission), one a timeout cut short is a failure.
template <class Breaker, class Classifier>
struct async_policy<circuit_breaker_policy<Breaker, Classifier>> {
    using policy_type = circuit_breaker_policy<Breaker, Classifier>;

    template <class Next, class Context>
    static awaitable<outcome<detail::next_result_t<Next, Context>>>
    execute(policy_type const& policy, Next next, Context const& ctx) {
        auto permit = policy.target().try_acquire();
        if (!permit) {
            co_return policy_type::rejection(permit);
        }
        auto result = co_await next(ctx);
        if (ctx.cancelled()) {
            permit.ignore();
        } else if (ctx.timed_out()) {
            permit.failure(); // cut short for being slow, whatever it returned
        } else {
            policy.complete(permit, result);
        }
        co_return result;
    }
};

namespace detail {
/// A queue waiter (keel::bulkhead_waiter, the adaptive limit's waiter: `Base`, with
/// a `wake` hook its owner calls when it hands over a slot) whose wake posts the
/// cancellation of its timer to the waiting coroutine's executor: the owner may call
/// it on any thread, under its lock. The timer lives in shared state, so a wake
/// posted after the wait has ended finds it.
template <class Base, class Clock>
struct async_waiter : Base {
    struct shared {
        shared(net::any_io_executor executor, Clock clock) : timer(std::move(executor), clock) {}
        basic_timer<Clock> timer;
    };

    async_waiter(net::any_io_executor const& on, Clock clock)
        : state(std::make_shared<shared>(on, std::move(clock))), executor(on) {
        this->wake = [](Base& w) noexcept {
            auto& self = static_cast<async_waiter&>(w);
            try {
                net::post(self.executor, [state = self.state] { state->timer.cancel(); });
            } catch (...) { // NOLINT(bugprone-empty-catch): the wait then ends at max_wait,
            }               // and the owner still finds the slot handed over
        };
    }

    std::shared_ptr<shared> state;
    net::any_io_executor executor;
};
} // namespace detail

/// keel::guard(bulkhead), asynchronously: the same admission and FIFO queue; a
/// queued call parks its coroutine on a timer (on the bulkhead sleeper's clock)
/// until release() hands it a slot, max_wait passes (errc::bulkhead_full) or the
/// caller cancels (errc::cancelled). No thread waits.
template <class Sleeper>
struct async_policy<bulkhead_policy<Sleeper>> {
    template <class Next, class Context>
    static awaitable<outcome<detail::next_result_t<Next, Context>>>
    execute(bulkhead_policy<Sleeper> const& policy, Next next, Context const& ctx) {
        auto& bulkhead = policy.target();
        if (!bulkhead.try_acquire()) {
            if (bulkhead.options().max_queued_calls == 0) {
                co_return keel::failure::from(errc::bulkhead_full);
            }
            if (ctx.stop_requested()) {
                co_return keel::failure::from(errc::cancelled);
            }
            auto const clock = detail::wait_clock(bulkhead.sleeper());
            detail::async_waiter<bulkhead_waiter, std::remove_cvref_t<decltype(clock)>> waiter{
                co_await net::this_coro::executor, clock};
            switch (bulkhead.enqueue(waiter)) {
            case basic_bulkhead<Sleeper>::queue_result::admitted: break;
            case basic_bulkhead<Sleeper>::queue_result::full:
                co_return keel::failure::from(errc::bulkhead_full);
            case basic_bulkhead<Sleeper>::queue_result::queued: {
                auto const until =
                    keel::detail::saturating_add(clock.now(), bulkhead.options().max_wait);
                co_await waiter.state->timer.async_wait_until(
                    until, net::experimental::as_tuple(net::use_awaitable));
                if (!bulkhead.withdraw(waiter)) {
                    co_return keel::failure::from(ctx.stop_requested() ? errc::cancelled
                                                                       : errc::bulkhead_full);
                }
                break;
            }
            }
        }
        struct release_on_exit {
            basic_bulkhead<Sleeper>* bulkhead;
            ~release_on_exit() { bulkhead->release(); }
        } const release{&bulkhead};
        co_return co_await next(ctx);
    }
};

/// keel::guard(limiter), asynchronously: the same admission (rate_limit::admit),
/// waiting the limiter's retry_after on a timer (on the policy sleeper's clock)
/// within max_wait and the deadline; a cancelled wait is errc::cancelled. A limiter
/// that decides without blocking (keel::asio::async_rate_limiter: keel's Redis
/// limiters) is awaited through keel::asio::async_try_acquire.
template <class Limiter, class Sleeper>
struct async_policy<rate_limit<Limiter, Sleeper>> {
    template <class Next, class Context>
    static awaitable<outcome<detail::next_result_t<Next, Context>>>
    execute(rate_limit<Limiter, Sleeper> const& policy, Next next, Context const& ctx) {
        using admission = typename rate_limit<Limiter, Sleeper>::admission;
        std::chrono::nanoseconds waited{0};
        for (;;) {
            admission step;
            if constexpr (async_rate_limiter<Limiter>) {
                // A Redis limiter: suspend while Redis decides, instead of blocking the thread.
                outcome<decision> d =
                    co_await async_try_acquire(policy.limiter(), policy.options().permits);
                if (!d) {
                    co_return d.failure();
                }
                step = policy.admit(*d, ctx, waited);
            } else {
                step = policy.admit(ctx, waited);
            }
            if (step.verdict == admission::kind::run) {
                auto result = co_await next(ctx);
                if (waited != std::chrono::nanoseconds::zero()) {
                    result.set_stats(
                        {result.attempts(), keel::detail::saturating_add(result.waited(), waited)});
                }
                co_return result;
            }
            if (step.verdict == admission::kind::reject) {
                co_return std::move(step.rejection);
            }
            if (!co_await sleep_for(detail::wait_clock(policy.sleeper()), step.delay)) {
                co_return keel::failure::from(errc::cancelled);
            }
            waited += step.delay;
        }
    }
};

/// keel::fallback, asynchronously: the same substitution, on the awaited outcome.
template <class Handler, class Predicate>
struct async_policy<fallback<Handler, Predicate>> {
    template <class Next, class Context>
    static awaitable<outcome<detail::next_result_t<Next, Context>>>
    execute(fallback<Handler, Predicate> const& policy, Next next, Context const& ctx) {
        co_return policy.substitute(co_await next(ctx));
    }
};

/// keel::observe::count(counters), asynchronously: records the awaited outcome.
template <>
struct async_policy<observe::count_policy> {
    template <class Next, class Context>
    static awaitable<outcome<detail::next_result_t<Next, Context>>>
    execute(observe::count_policy const& policy, Next next, Context const& ctx) {
        auto result = co_await next(ctx);
        policy.counters().record_call(result);
        co_return result;
    }
};

} // namespace asio

KEEL_END_NAMESPACE
