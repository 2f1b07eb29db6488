// SPDX-License-Identifier: MIT
// keel::guard(adaptive_limit) in keel::asio::resilient: the same admission, queue
// decisions and classification as the synchronous policy (try_acquire, try_enqueue,
// cancel, claim, classify), waiting on an Asio timer instead of a sleeper. A queued
// call parks its coroutine, not a thread.
#pragma once

#include <keel/asio/detail/asio.hpp>
#include <keel/asio/policies.hpp>
#include <keel/asio/timer.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/detail/time.hpp>
#include <keel/policy/adaptive_limit.hpp>
#include <keel/version.hpp>

#include <memory>
#include <type_traits>
#include <utility>

KEEL_BEGIN_NAMESPACE

namespace asio {

namespace detail {
// A limit waiter whose wake posts the cancellation of its timer to the waiting
// coroutine's executor (a completion may run on any thread, under the limit's lock).
template <class Clock>
struct async_limit_waiter : keel::detail::limit_waiter {
    struct shared {
        shared(net::any_io_executor executor, Clock clock) : timer(std::move(executor), clock) {}
        basic_timer<Clock> timer;
    };

    async_limit_waiter(net::any_io_executor const& on, Clock clock)
        : state(std::make_shared<shared>(on, std::move(clock))), executor(on) {
        wake = [](keel::detail::limit_waiter& w) noexcept {
            auto& self = static_cast<async_limit_waiter&>(w);
            try {
                net::post(self.executor, [state = self.state] { state->timer.cancel(); });
            } catch (...) { // NOLINT(bugprone-empty-catch): the wait then ends at max_wait,
            }               // and cancel() still finds the grant
        };
    }

    std::shared_ptr<shared> state;
    net::any_io_executor executor;
};
} // namespace detail

/// keel::guard(adaptive_limit), asynchronously: a permit when the limit allows; else, with
/// a queue, the coroutine waits on a timer (on the limit sleeper's clock) until a
/// completion or a rising limit grants it a slot, CoDel expires it or max_wait passes
/// (errc::bulkhead_full), or the caller cancels (errc::cancelled). The outcome completes the
/// permit through the policy's classifier, as in the synchronous pipeline.
template <class Limit, class Classifier>
struct async_policy<adaptive_limit_policy<Limit, Classifier>> {
    template <class Next, class Context>
    static awaitable<outcome<detail::next_result_t<Next, Context>>>
    execute(adaptive_limit_policy<Limit, Classifier> const& policy, Next next, Context const& ctx) {
        auto& limit = policy.target();
        typename Limit::permit permit = limit.try_acquire(policy.partition());
        if (!permit) {
            if (limit.options().queue.max_queued == 0) {
                co_return keel::failure::from(errc::bulkhead_full);
            }
            if (ctx.stop_requested()) {
                co_return keel::failure::from(errc::cancelled);
            }
            auto const clock = detail::wait_clock(limit.sleeper());
            detail::async_limit_waiter<std::remove_cvref_t<decltype(clock)>> waiter{
                co_await net::this_coro::executor, clock};
            waiter.partition = policy.partition();
            switch (limit.try_enqueue(waiter)) {
            case Limit::enqueue_result::granted: permit = limit.claim(waiter); break;
            case Limit::enqueue_result::rejected:
                co_return keel::failure::from(errc::bulkhead_full);
            case Limit::enqueue_result::queued: {
                auto const until =
                    keel::detail::saturating_add(clock.now(), limit.options().queue.max_wait);
                co_await waiter.state->timer.async_wait_until(
                    until, net::experimental::as_tuple(net::use_awaitable));
                bool const granted = limit.cancel(waiter);
                if (granted) {
                    permit = limit.claim(waiter);
                }
                if (ctx.stop_requested()) {
                    co_return keel::failure::from(errc::cancelled); // the permit is ignored
                }
                if (!granted) {
                    co_return keel::failure::from(errc::bulkhead_full);
                }
                break;
            }
            }
        }
        auto result = co_await next(ctx);
        permit.complete(policy.classify(result));
        co_return result;
    }
};

} // namespace asio

KEEL_END_NAMESPACE
