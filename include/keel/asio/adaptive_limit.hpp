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
            detail::async_waiter<keel::detail::limit_waiter, std::remove_cvref_t<decltype(clock)>>
                waiter{co_await net::this_coro::executor, clock};
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
