// SPDX-License-Identifier: MIT
// keel::ops::detail::bounded_task: one piece of work on a thread of its own,
// which whoever waits for it gives up on at a deadline. The health registry runs
// each check run on one (shared by every probe waiting for that run), the drain
// coordinator each shutdown hook. Also the one wait both use: until a stop token
// fires or a deadline passes, through a sleeper, so tests run in virtual time.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/core/sleeper.hpp>
#include <keel/detail/integer.hpp>
#include <keel/detail/time.hpp>
#include <keel/version.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <stop_token>
#include <thread>
#include <utility>

KEEL_BEGIN_NAMESPACE
namespace ops::detail {

/// Returns `deadline - now` in nanoseconds, saturated instead of overflowing (a deadline of
/// max() minus a time before the epoch does not fit), so "forever" stays forever.
template <class TimePoint>
constexpr std::chrono::nanoseconds time_left(TimePoint deadline, TimePoint now) noexcept {
    typename TimePoint::duration const left{keel::detail::saturating_sub(
        deadline.time_since_epoch().count(), now.time_since_epoch().count())};
    return keel::detail::saturating_cast<std::chrono::nanoseconds>(left);
}

/// Waits through `sleeper` until `token` fires or `clock` reaches `deadline`; returns true if
/// the token fired. A deadline of Clock::time_point::max() (a saturated "now + forever") waits
/// for the token alone. Sleeps once, for the time left: a sleeper waits its whole interval
/// unless the token fires, and one sleep also ends the wait when the sleeper does not move the
/// clock (a manual clock with a real sleeper, in tests).
template <clock Clock, sleeper Sleeper>
bool wait_until(Clock const& clock, Sleeper& sleeper, typename Clock::time_point deadline,
                std::stop_token const& token) {
    if (token.stop_requested()) {
        return true;
    }
    auto const now = clock.now();
    if (now < deadline) {
        sleeper.sleep_for(time_left(deadline, now), token);
    }
    return token.stop_requested();
}

/// Says how a bounded task ended, as far as its waiters are concerned.
enum class task_end : unsigned char {
    running,  ///< Neither settled yet.
    finished, ///< The body returned first; its result counts.
    expired,  ///< A waiter gave up first; a later result is discarded.
};

// A bounded task: a body run on a thread of its own, settled exactly once, either by the
// body returning (finished) or by a waiter giving up at its deadline (expired).
//
// Settling is one compare-exchange on the state's `end`, from running to finished (the thread) or
// to expired (expire()), so exactly one side wins. The thread stores the body's result before its
// compare-exchange and result() reads it only after seeing finished (acquire on release), so the
// result never races: a waiter that lost the race to the body reads the body's result, and a result
// arriving after expiry is written where nobody reads it. `done` fires once the body has returned,
// in time or not, so a caller can tell whether the thread still runs; `cancel` is the body's stop
// token, fired by a waiter after expiring the task (outside any lock: stop callbacks the body
// registered run right there).
//
// Lifetime: the state is shared by the handle and the thread; the thread owns the state and
// its body (with whatever the body captured) and never the handle. So a hung task can be
// detached and outlive the handle and everything its owner had, touching only what it owns;
// and the handle's destructor never runs on the task's own thread, so it may join: it joins a
// thread whose body returned (the thread then only destroys the body and exits, so the body's
// captures are gone when the handle is) and detaches one still running. A body must not
// throw (callers catch inside it) and must not capture its own handle.
template <class Result>
class bounded_task {
public:
    using result_type = Result;

    /// Creates a task that has not started; waiters may wait for it already.
    bounded_task() : m_state(std::make_shared<state>()) {}
    bounded_task(bounded_task const&) = delete;
    bounded_task& operator=(bounded_task const&) = delete;
    /// Takes over `other`'s task and thread; `other` may then only be destroyed or assigned.
    bounded_task(bounded_task&& other) noexcept = default;
    /// Lets go of this task's thread (see the destructor), then takes over `other`'s.
    bounded_task& operator=(bounded_task&& other) noexcept {
        if (this != &other) {
            release();
            m_state = std::move(other.m_state);
            m_thread = std::move(other.m_thread);
        }
        return *this;
    }
    /// Joins the thread if its body returned, else detaches it.
    ~bounded_task() { release(); }

    /// Runs `body(cancel_token)` on a new thread; the task finishes with its result unless it
    /// expired first. Call at most once. Throws std::system_error if no thread can be started
    /// (nothing ran then; run_here() is the fallback).
    template <class Body>
    void start(Body body) {
        m_thread = std::thread{[state = m_state, body = std::move(body)]() mutable {
            state->finish(body(state->cancel.get_token()));
        }};
    }

    /// Runs `body(cancel_token)` on the calling thread, without a deadline (when no thread can
    /// be had). Call at most once, instead of start().
    template <class Body>
    void run_here(Body body) {
        m_state->finish(body(m_state->cancel.get_token()));
    }

    /// Waits through `sleeper` until the body returns or `clock` reaches `deadline`; returns
    /// true if the body returned. Any number of threads may wait at once.
    template <clock Clock, sleeper Sleeper>
    bool wait_until(Clock const& clock, Sleeper& sleeper,
                    typename Clock::time_point deadline) const {
        return detail::wait_until(clock, sleeper, deadline, m_state->done.get_token());
    }

    /// Settles the task as expired unless the body already returned; returns true if this
    /// call expired it (its result will be discarded). Call cancel() next, outside locks.
    bool expire() noexcept {
        auto expected = task_end::running;
        return m_state->end.compare_exchange_strong(expected, task_end::expired,
                                                    std::memory_order_acq_rel);
    }

    /// Fires the body's stop token. Idempotent; stop callbacks run on the calling thread.
    void cancel() const noexcept { m_state->cancel.request_stop(); }

    /// Returns how the task settled so far.
    task_end end() const noexcept { return m_state->end.load(std::memory_order_acquire); }

    /// Returns the body's result if the task finished, else nullptr.
    Result const* result() const noexcept {
        return end() == task_end::finished ? &*m_state->result : nullptr;
    }

    /// Returns true once the body has returned, whether in time or after expiring.
    bool returned() const noexcept { return m_state->done.get_token().stop_requested(); }

private:
    struct state {
        std::atomic<task_end> end{task_end::running};
        std::optional<Result> result; // written by the body's thread before it settles
        std::stop_source done;        // fired after the body returned
        std::stop_source cancel;      // the body's token

        void finish(Result value) {
            result.emplace(std::move(value));
            auto expected = task_end::running;
            end.compare_exchange_strong(expected, task_end::finished, std::memory_order_acq_rel);
            done.request_stop();
        }
    };

    void release() noexcept {
        if (!m_thread.joinable()) {
            return;
        }
        if (m_state->done.get_token().stop_requested()) {
            m_thread.join();
        } else {
            m_thread.detach();
        }
    }

    std::shared_ptr<state> m_state;
    std::thread m_thread;
};

} // namespace ops::detail
KEEL_END_NAMESPACE
