// SPDX-License-Identifier: MIT
// keel::asio::basic_timer: an Asio timer on a keel clock. On a real clock
// (keel::steady_clock, keel::coarse_clock) it is an Asio basic_waitable_timer;
// on a clock that runs its own callbacks (keel::manual_clock) the wait completes
// when the test moves the clock past its time, so asynchronous code runs in
// virtual time exactly as the synchronous pipeline does with virtual_sleeper.
// keel::asio::sleep_until/sleep_for are the waits every keel::asio policy uses.
#pragma once

#include <keel/asio/detail/asio.hpp>
#include <keel/core/clock.hpp>
#include <keel/detail/deadline_timer.hpp>
#include <keel/detail/time.hpp>
#include <keel/version.hpp>

#include <atomic>
#include <chrono>
#include <concepts>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

KEEL_BEGIN_NAMESPACE

namespace asio {

namespace detail {
/// One pending wait of a virtual-time timer: completed once, by the clock reaching
/// its time, by cancel(), or by the cancellation slot of its handler, whichever
/// comes first (the three may run on different threads).
class virtual_wait {
public:
    virtual ~virtual_wait() = default;
    virtual_wait() = default;
    virtual_wait(virtual_wait const&) = delete;
    virtual_wait& operator=(virtual_wait const&) = delete;

    /// Completes the wait with `ec` unless it has completed; returns true if this
    /// call did. A wait ended early also takes its timer off the clock, so virtual
    /// time does not run on to a wait nobody awaits.
    bool finish(error_code ec) {
        if (m_done.exchange(true, std::memory_order_acq_rel)) {
            return false;
        }
        if (ec) {
            unschedule();
        }
        complete(ec);
        return true;
    }

private:
    virtual void unschedule() = 0;
    virtual void complete(error_code ec) = 0;
    std::atomic<bool> m_done{false};
};

template <class Handler, class Executor, class Clock>
class virtual_wait_for final : public virtual_wait {
public:
    virtual_wait_for(Handler handler, Executor const& fallback, Clock clock)
        : m_handler(std::move(handler)),
          m_work(net::prefer(net::get_associated_executor(m_handler, fallback),
                             net::execution::outstanding_work.tracked)),
          m_clock(std::move(clock)) {}

    /// Schedules the completion on the clock at `when` (never, for time_point::max()).
    void schedule(typename Clock::time_point when, std::weak_ptr<virtual_wait> self) {
        if (when == Clock::time_point::max()) {
            return;
        }
        m_id.store(m_clock.call_at(when,
                                   [self = std::move(self)] {
                                       if (auto pending = self.lock()) {
                                           pending->finish(error_code{});
                                       }
                                   }),
                   std::memory_order_release);
    }

private:
    void unschedule() override {
        if (auto const id = m_id.load(std::memory_order_acquire); id != 0) {
            m_clock.cancel(id);
        }
    }

    void complete(error_code ec) override {
        // Run the handler where it asked to run, never inside the clock's advance.
        auto work = std::move(m_work);
        net::post(work, [handler = std::move(m_handler), ec]() mutable { std::move(handler)(ec); });
    }

    Handler m_handler;
    std::decay_t<decltype(net::prefer(std::declval<net::associated_executor_t<Handler, Executor>>(),
                                      net::execution::outstanding_work.tracked))>
        m_work;
    Clock m_clock;
    std::atomic<typename Clock::timer_id> m_id{0};
};
} // namespace detail

/// Waits on `Clock` in an Asio program: one pending wait at a time, like
/// asio::steady_timer, with async_wait_until(time_point, token) completing with
/// void(error_code): success at the time, net::error::operation_aborted when
/// cancelled (by cancel(), by the token's cancellation slot, or by destruction).
///
/// On a clock whose time points belong to a std::chrono clock it is an Asio
/// basic_waitable_timer. On a keel::manual_clock (a clock with call_at/cancel)
/// the wait is a timer of that clock, completed (through a post to the handler's
/// executor) by the advance that reaches it; a wait until time_point::max() is
/// never scheduled and ends only when cancelled. Not thread-safe (as Asio's
/// timers): use one from its executor. Cheap to build; not copyable.
template <clock Clock = steady_clock>
class basic_timer {
public:
    using clock_type = Clock;
    using time_point = typename Clock::time_point;
    using executor_type = net::any_io_executor;

    /// Waits on `clock` (a keel::manual_clock handle in tests), completing on `executor`.
    explicit basic_timer(executor_type executor, Clock clock = Clock{})
        : m_executor(std::move(executor)), m_clock(std::move(clock)) {
        if constexpr (!virtual_time) {
            m_timer.emplace(m_executor);
        }
    }

    basic_timer(basic_timer const&) = delete;
    basic_timer& operator=(basic_timer const&) = delete;

    /// Cancels the pending wait, if any.
    ~basic_timer() { cancel(); }

    /// Starts waiting until `when` (cancelling a wait still pending); `token`
    /// receives void(error_code).
    template <class Token>
    auto async_wait_until(time_point when, Token&& token) {
        if constexpr (virtual_time) {
            cancel();
            return net::async_initiate<Token, void(error_code)>(
                [this, when](auto handler) { this->start_virtual(std::move(handler), when); },
                token);
        } else {
            m_timer->expires_at(when);
            return m_timer->async_wait(std::forward<Token>(token));
        }
    }

    /// Starts waiting for `duration` from now (see async_wait_until).
    template <class Token>
    auto async_wait_for(std::chrono::nanoseconds duration, Token&& token) {
        return async_wait_until(keel::detail::saturating_add(m_clock.now(), duration),
                                std::forward<Token>(token));
    }

    /// Cancels the pending wait (it completes with operation_aborted); returns how
    /// many waits it cancelled (0 or 1).
    std::size_t cancel() {
        if constexpr (virtual_time) {
            auto pending = std::move(m_pending);
            return pending && pending->finish(net::error::operation_aborted) ? 1 : 0;
        } else {
            return m_timer->cancel();
        }
    }

    /// Returns the executor handlers complete on by default.
    executor_type get_executor() const noexcept { return m_executor; }
    /// Returns the clock.
    Clock const& clock() const noexcept { return m_clock; }

private:
    static constexpr bool virtual_time = keel::detail::scheduling_clock<Clock>;
    static_assert(virtual_time || keel::detail::real_time_point<time_point>,
                  "keel::asio::basic_timer: the clock must offer call_at/cancel (virtual time) "
                  "or use the time_point of a std::chrono clock");

    struct no_timer {};
    template <class C, bool Virtual>
    struct real_timer {
        using type = no_timer;
    };
    template <class C>
    struct real_timer<C, false> {
        using type = net::basic_waitable_timer<typename C::time_point::clock>;
    };

    template <class Handler>
    void start_virtual(Handler handler, time_point when) {
        auto slot = net::get_associated_cancellation_slot(handler);
        auto wait = std::make_shared<detail::virtual_wait_for<Handler, executor_type, Clock>>(
            std::move(handler), m_executor, m_clock);
        std::weak_ptr<detail::virtual_wait> const weak = wait;
        if (slot.is_connected()) {
            slot.assign([weak](net::cancellation_type) {
                if (auto pending = weak.lock()) {
                    pending->finish(net::error::operation_aborted);
                }
            });
        }
        m_pending = wait;
        wait->schedule(when, weak);
    }

    executor_type m_executor;
    [[no_unique_address]] Clock m_clock;
    std::optional<typename real_timer<Clock, virtual_time>::type> m_timer;
    std::shared_ptr<detail::virtual_wait> m_pending;
};

/// A timer on keel::steady_clock.
using timer = basic_timer<>;

/// Waits until `when` on `clock`, from a coroutine: returns true when the time
/// came, false when the coroutine's cancellation (terminal, or what its filter
/// lets through) ended the wait or had already been requested. Never throws
/// operation_aborted.
template <clock Clock>
awaitable<bool> sleep_until(Clock const& clock, typename Clock::time_point when) {
    auto const state = co_await net::this_coro::cancellation_state;
    if (state.cancelled() != net::cancellation_type::none) {
        co_return false;
    }
    basic_timer<Clock> waiter{co_await net::this_coro::executor, clock};
    auto [ec] =
        co_await waiter.async_wait_until(when, net::experimental::as_tuple(net::use_awaitable));
    co_return !ec;
}

/// Waits `duration` on `clock` (see sleep_until); a non-positive duration
/// returns at once, true unless cancellation had been requested.
template <clock Clock>
awaitable<bool> sleep_for(Clock const& clock, std::chrono::nanoseconds duration) {
    if (duration <= std::chrono::nanoseconds::zero()) {
        auto const state = co_await net::this_coro::cancellation_state;
        co_return state.cancelled() == net::cancellation_type::none;
    }
    co_return co_await sleep_until(clock, keel::detail::saturating_add(clock.now(), duration));
}

} // namespace asio

KEEL_END_NAMESPACE
