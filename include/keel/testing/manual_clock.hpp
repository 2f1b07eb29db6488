// SPDX-License-Identifier: MIT
// keel::manual_clock: a clock that moves only when told to, for deterministic
// tests (as Abseil's SimulatedClock). Copies are handles sharing one time, so a
// test keeps one and hands copies to the components under test. It can also run
// callbacks when time reaches a point, which is how timers (deadlines, virtual
// sleeps) work in virtual time.
#pragma once

#include <keel/detail/integer.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <utility>

KEEL_BEGIN_NAMESPACE

/// A thread-safe clock that advances only through advance() and set().
///
/// Copies share the same time and timers. now() is lock-free; advance, set and
/// the timer functions serialise on a mutex, and timer callbacks run without it
/// held, so a callback may read the clock or schedule more timers.
class manual_clock {
public:
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<manual_clock, duration>;
    /// set() may move time backwards, so the clock does not promise steadiness.
    static constexpr bool is_steady = false;

    /// Identifies a timer scheduled with call_at(); 0 is never a valid id.
    using timer_id = std::uint64_t;

    /// Starts a new time line at `start` (default: the epoch, time_since_epoch() == 0).
    explicit manual_clock(time_point start = time_point{})
        : m_state(std::make_shared<state>(start.time_since_epoch().count())) {}

    /// Returns the current manual time.
    time_point now() const noexcept {
        return time_point{duration{m_state->nanos.load(std::memory_order_acquire)}};
    }

    /// Moves time forward by `d` (negative `d` is treated as zero), running due timers in time
    /// order. Concurrent advances add up: two threads advancing by 1 s move time by 2 s.
    /// Time saturates at time_point::max() (advance(nanoseconds::max()) goes there).
    void advance(duration d) {
        rep target = 0;
        {
            std::lock_guard lock{m_state->mutex};
            // Start from the furthest time already requested, so an advance racing
            // with another one still moving through its timers is not lost.
            target = detail::saturating_add(
                std::max(m_state->requested, m_state->nanos.load(std::memory_order_relaxed)),
                std::max(d, duration::zero()).count());
            m_state->requested = target;
        }
        advance_to(time_point{duration{target}});
    }

    /// Sets the time to `t`. Moving forward runs due timers like advance(); moving
    /// backwards just sets the time (timers wait for time to reach them again).
    void set(time_point t) {
        if (t >= now()) {
            advance_to(t);
        } else {
            std::lock_guard lock{m_state->mutex};
            m_state->nanos.store(t.time_since_epoch().count(), std::memory_order_release);
            m_state->requested = t.time_since_epoch().count();
        }
    }

    /// Moves time forward to `target`, stopping early if `token` fires during a
    /// timer callback. Timers due at or before the new time run in time order, the
    /// clock reading each one's time while it runs. Returns true if time reached
    /// `target`, false if the token stopped it at an earlier timer's time.
    bool advance_to(time_point target, std::stop_token token = {}) {
        auto const target_nanos = target.time_since_epoch().count();
        {
            std::lock_guard lock{m_state->mutex};
            m_state->requested = std::max(m_state->requested, target_nanos);
        }
        for (;;) {
            std::function<void()> callback;
            {
                std::lock_guard lock{m_state->mutex};
                auto const due = m_state->timers.begin();
                if (due == m_state->timers.end() || due->first.first > target_nanos) {
                    if (target_nanos > m_state->nanos.load(std::memory_order_relaxed)) {
                        m_state->nanos.store(target_nanos, std::memory_order_release);
                    }
                    return true;
                }
                if (due->first.first > m_state->nanos.load(std::memory_order_relaxed)) {
                    m_state->nanos.store(due->first.first, std::memory_order_release);
                }
                callback = std::move(due->second);
                m_state->timers.erase(due);
            }
            callback();
            if (token.stop_requested()) {
                // Give up the claim on the time not reached (unless another advance
                // has asked for more since), so a later advance(d) moves d from here.
                std::lock_guard lock{m_state->mutex};
                if (m_state->requested == target_nanos) {
                    m_state->requested = m_state->nanos.load(std::memory_order_relaxed);
                }
                return false;
            }
        }
    }

    /// Schedules `callback` to run when time reaches `when` (during the advance or
    /// set that reaches it; a time already past runs at the next advance, even
    /// advance(0)). Returns an id for cancel().
    timer_id call_at(time_point when, std::function<void()> callback) {
        std::lock_guard lock{m_state->mutex};
        timer_id const id = ++m_state->next_id;
        m_state->timers.emplace(std::pair{when.time_since_epoch().count(), id},
                                std::move(callback));
        return id;
    }

    /// Cancels a timer; returns true if it had not run yet.
    bool cancel(timer_id id) {
        std::lock_guard lock{m_state->mutex};
        for (auto it = m_state->timers.begin(); it != m_state->timers.end(); ++it) {
            if (it->first.second == id) {
                m_state->timers.erase(it);
                return true;
            }
        }
        return false;
    }

    /// Returns the time of the earliest waiting timer, if any.
    std::optional<time_point> next_timer() const {
        std::lock_guard lock{m_state->mutex};
        if (m_state->timers.empty()) {
            return std::nullopt;
        }
        return time_point{duration{m_state->timers.begin()->first.first}};
    }

    /// Returns how many timers are waiting.
    std::size_t pending_timers() const {
        std::lock_guard lock{m_state->mutex};
        return m_state->timers.size();
    }

    /// Returns true if both handles share one time line.
    friend bool operator==(manual_clock const& a, manual_clock const& b) noexcept {
        return a.m_state == b.m_state;
    }

private:
    struct state {
        explicit state(rep start) : nanos(start), requested(start) {}
        std::atomic<rep> nanos;
        mutable std::mutex mutex;
        // Ordered by (due time, id): equal times run in scheduling order.
        std::map<std::pair<rep, timer_id>, std::function<void()>> timers;
        rep requested; // the furthest target any advance has asked for
        timer_id next_id = 0;
    };
    std::shared_ptr<state> m_state;
};

KEEL_END_NAMESPACE
