// SPDX-License-Identifier: MIT
// keel::asio::async_try_acquire: awaits a rate limiter's decision where the
// limiter can decide without blocking the thread (keel's Redis limiters over a
// keel::redis::async_connection): the coroutine suspends while Redis answers
// and the io thread runs other work meanwhile. keel::asio's rate_limit policy
// awaits it for such limiters; for the others it asks try_acquire() as the
// blocking pipeline does.
#pragma once

#include <keel/asio/detail/asio.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/version.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

KEEL_BEGIN_NAMESPACE

namespace asio {

/// A limiter that answers through a callback: `async_try_acquire(permits, done)`
/// (and the per-key `async_try_acquire(key, permits, done)`) calls `done(decision)`
/// exactly once, from any thread. keel's Redis limiters are such limiters.
template <class Limiter>
concept async_rate_limiter = requires(Limiter& limiter, std::int64_t permits,
                                      std::function<void(decision)> done) {
    limiter.async_try_acquire(permits, std::move(done));
};

namespace detail {

/// One awaited decision: completes the awaiting coroutine's handler once, with the
/// limiter's decision or with errc::cancelled when the awaiting operation is
/// cancelled first, always through a post to the handler's executor (the limiter
/// may answer from another thread, or inline). The wait keeps that executor's
/// context busy, so its run() does not return while a decision is outstanding.
template <class Handler>
class decision_wait : public std::enable_shared_from_this<decision_wait<Handler>> {
public:
    explicit decision_wait(Handler handler)
        : m_handler(std::move(handler)),
          m_executor(net::prefer(net::get_associated_executor(m_handler),
                                 net::execution::outstanding_work.tracked)) {}

    template <class Limiter>
    void start(Limiter& limiter, std::optional<std::string_view> key, std::int64_t permits) {
        auto slot = net::get_associated_cancellation_slot(m_handler);
        if (slot.is_connected()) {
            slot.assign([self = this->shared_from_this()](net::cancellation_type) {
                self->complete(failure::from(errc::cancelled));
            });
        }
        auto done = [self = this->shared_from_this()](decision d) { self->complete(d); };
        if (key) {
            limiter.async_try_acquire(*key, permits, std::move(done));
        } else {
            limiter.async_try_acquire(permits, std::move(done));
        }
    }

private:
    void complete(outcome<decision> result) {
        if (m_done.exchange(true, std::memory_order_acq_rel)) {
            return; // cancelled first, or answered first: the other side is ignored
        }
        net::post(m_executor, [self = this->shared_from_this(), r = std::move(result)]() mutable {
            // On the handler's executor, outside any emit: the slot's handler (which
            // holds this wait) may go now.
            auto slot = net::get_associated_cancellation_slot(self->m_handler);
            if (slot.is_connected()) {
                slot.clear();
            }
            std::move(self->m_handler)(std::move(r));
        });
    }

    Handler m_handler;
    net::any_io_executor m_executor;
    std::atomic<bool> m_done{false};
};

template <class Limiter>
awaitable<outcome<decision>> async_decide(Limiter& limiter, std::optional<std::string_view> key,
                                          std::int64_t permits) {
    return net::async_initiate<decltype(net::use_awaitable) const&, void(outcome<decision>)>(
        [&limiter, key, permits](auto handler) {
            auto wait = std::make_shared<decision_wait<decltype(handler)>>(std::move(handler));
            wait->start(limiter, key, permits);
        },
        net::use_awaitable);
}

} // namespace detail

/// Awaits `limiter`'s decision on `permits` of its limiter-wide limit without
/// blocking the thread; resumes on the awaiting coroutine's executor. Cancelling
/// the awaiting operation (any cancellation type) ends the wait at once with
/// failure errc::cancelled; the decision still made later is dropped (permits
/// Redis granted meanwhile count as used, like a reply lost to a timeout). The
/// limiter must outlive its answer.
///
///     keel::redis::async_connection redis{io.get_executor(), {.port = 6379}};
///     keel::redis::fixed_window api{redis, {.name = "api", .limit = 1000}};
///     keel::outcome<keel::decision> d = co_await keel::asio::async_try_acquire(api);
template <async_rate_limiter Limiter>
awaitable<outcome<decision>> async_try_acquire(Limiter& limiter, std::int64_t permits = 1) {
    return detail::async_decide(limiter, std::nullopt, permits);
}

/// Awaits `limiter`'s decision on `permits` of `key`'s own limit, as the
/// limiter-wide overload does. `key` needs to live only until the call is awaited.
template <async_rate_limiter Limiter>
awaitable<outcome<decision>> async_try_acquire(Limiter& limiter, std::string_view key,
                                               std::int64_t permits = 1) {
    return detail::async_decide(limiter, key, permits);
}

} // namespace asio

KEEL_END_NAMESPACE
