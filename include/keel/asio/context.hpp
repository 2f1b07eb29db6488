// SPDX-License-Identifier: MIT
// keel::asio::context: what an asynchronous guarded operation sees of the
// pipeline around it: which attempt (and which hedge) this is, the deadline if
// a timeout applies, the cancellation slot its I/O binds to, and a stop token
// for code that prefers one. The asynchronous twin of keel::context.
#pragma once

#include <keel/asio/detail/asio.hpp>
#include <keel/core/clock.hpp>
#include <keel/version.hpp>

#include <memory>
#include <optional>
#include <stop_token>

KEEL_BEGIN_NAMESPACE

namespace asio {

namespace detail {
/// The cancellation keel itself can request of the operations under a timeout or
/// a hedge: they run in a coroutine of their own whose cancellation slot is bound
/// to `signal`. Records why it was cancelled: a keel timeout (the operation was
/// too slow, a failure for the breaker) or the caller or a hedge giving up (no
/// verdict). Shared by the coroutine that owns it and the timer that may fire it;
/// used on one executor (a strand on a multi-threaded io_context).
struct cancel_scope {
    net::cancellation_signal signal;
    std::stop_source stop{std::nostopstate};
    bool timed_out = false; ///< A keel timeout fired it.
    bool cancelled = false; ///< The caller or a hedge did.
    bool emitted = false;   ///< It has fired.
    bool done = false;      ///< The operations under it have completed.

    /// Fires: the operations' cancellation slot and the stop token, once each kind.
    void emit(net::cancellation_type type) {
        emitted = true;
        if (stop.stop_possible()) {
            stop.request_stop();
        }
        signal.emit(type);
    }

    /// Returns the stop token of the scope, made on first use (already stopped if
    /// the scope has fired).
    std::stop_token token() {
        if (!stop.stop_possible()) {
            stop = std::stop_source{};
            if (emitted) {
                stop.request_stop();
            }
        }
        return stop.get_token();
    }
};

/// Makes a scope, its one allocation recycled through Asio's per-thread cache.
inline std::shared_ptr<cancel_scope> make_cancel_scope() {
    return std::allocate_shared<cancel_scope>(net::recycling_allocator<cancel_scope>{});
}
} // namespace detail

/// Describes one attempt of an asynchronous guarded operation, on `Clock`.
///
/// A small value passed by const reference to the operation. The operation binds
/// its asynchronous I/O to cancellation_slot() (keel's timeouts, hedges and the
/// caller's cancellation reach the I/O through it); code that prefers a
/// std::stop_token takes stop_token(). Read it on the operation's executor.
///
///     [&](keel::asio::context const& ctx, int id) -> asio::awaitable<User> {
///         co_return co_await http.async_get(
///             id, asio::bind_cancellation_slot(ctx.cancellation_slot(), asio::use_awaitable));
///     }
template <clock Clock = steady_clock>
class basic_context {
public:
    using clock_type = Clock;
    using time_point = typename Clock::time_point;

    /// Describes attempt 1 of a call with no deadline, no cancellation and no scope.
    basic_context() = default;

    /// Describes attempt 1 of a call running in the coroutine whose cancellation
    /// state is `state`; `throw_if_cancelled` is that coroutine's own setting,
    /// restored around the operation. Made by keel::asio::resilient.
    basic_context(net::cancellation_state state, bool throw_if_cancelled) noexcept
        : m_state(state), m_caller(state), m_throw_if_cancelled(throw_if_cancelled) {}

    /// Returns the attempt number: 1 for the first try, 2 for the first retry, ...
    int attempt() const noexcept { return m_attempt; }
    /// Returns which hedge this is: 0 for the primary, 1.. for hedged attempts
    /// (keel::hedge), so that each hedge can choose another endpoint.
    int hedge() const noexcept { return m_hedge; }
    /// Returns the deadline of this attempt, the earliest of all enclosing timeouts, if any.
    std::optional<time_point> deadline() const noexcept { return m_deadline; }

    /// Returns the slot the operation's I/O binds to (bind_cancellation_slot), so
    /// that a timeout, a losing hedge or the caller cancels it. It is the slot of
    /// the coroutine the operation runs in: operations co_awaited with
    /// use_awaitable and no slot of their own are bound to it already.
    net::cancellation_slot cancellation_slot() const noexcept { return m_state.slot(); }

    /// Returns a token that fires when a keel timeout or hedge cancels this attempt,
    /// or when the caller's cancellation reaches it through one. Without a timeout
    /// or hedge the operation runs in the caller's own coroutine, where the caller's
    /// cancellation reaches the I/O through cancellation_slot() only: this token
    /// then never fires.
    std::stop_token stop_token() const { return m_scope ? m_scope->token() : std::stop_token{}; }

    /// Returns true once cancellation of any kind has reached this attempt (a
    /// timeout, a hedge, the caller).
    bool stop_requested() const noexcept {
        return m_state.cancelled() != net::cancellation_type::none;
    }

    /// Returns true if the caller or a hedge gave up on this attempt (not a keel
    /// timeout): its outcome says nothing about the dependency, so a breaker
    /// records no verdict for it.
    bool cancelled() const noexcept {
        return m_scope ? m_scope->cancelled : m_caller.cancelled() != net::cancellation_type::none;
    }

    /// Returns true if an enclosing keel timeout has cut this attempt short (its
    /// outcome, whatever it is, came too late: a breaker counts it as a failure).
    bool timed_out() const noexcept { return m_scope != nullptr && m_scope->timed_out; }

    /// Returns a copy for attempt `attempt`.
    basic_context with_attempt(int attempt) const {
        basic_context copy = *this;
        copy.m_attempt = attempt;
        return copy;
    }

    /// Returns a copy whose deadline is the earlier of this one and `deadline` (an
    /// inner timeout never extends an outer one).
    basic_context with_deadline(time_point deadline) const {
        basic_context copy = *this;
        if (!m_deadline || deadline < *m_deadline) {
            copy.m_deadline = deadline;
        }
        return copy;
    }

    /// Returns a copy for hedge `hedge`.
    basic_context with_hedge(int hedge) const {
        basic_context copy = *this;
        copy.m_hedge = hedge;
        return copy;
    }

    /// Returns a copy running in the coroutine whose cancellation state is
    /// `state`, under `scope` (a timeout's or a hedge's). Used by keel's policies.
    basic_context in_scope(net::cancellation_state state, detail::cancel_scope* scope) const {
        basic_context copy = *this;
        copy.m_state = state;
        copy.m_scope = scope;
        return copy;
    }

    /// Returns the scope the attempt runs under, or null in the caller's coroutine.
    detail::cancel_scope* scope() const noexcept { return m_scope; }
    /// Returns the caller's throw_if_cancelled setting, which the operation runs with.
    bool throw_if_cancelled() const noexcept { return m_throw_if_cancelled; }

private:
    net::cancellation_state m_state;
    net::cancellation_state m_caller;
    detail::cancel_scope* m_scope = nullptr;
    std::optional<time_point> m_deadline;
    int m_attempt = 1;
    int m_hedge = 0;
    bool m_throw_if_cancelled = true;
};

/// The context of a pipeline on keel::steady_clock, the type most operations take.
using context = basic_context<>;

} // namespace asio

KEEL_END_NAMESPACE
