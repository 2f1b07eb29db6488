// SPDX-License-Identifier: MIT
// The one timer behind every keel::timeout on a real clock: pending deadlines in
// an ordered map, one background thread (started on first use) that sleeps until
// the earliest and fires its stop_source. Clocks that schedule their own
// callbacks (keel::manual_clock's call_at) use those instead, so tests run in
// virtual time.
#pragma once

#include <keel/version.hpp>

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace detail {

/// Describes a clock that runs callbacks itself at a time point (keel::manual_clock).
template <class C>
concept scheduling_clock = requires(C& c, typename C::time_point t, std::function<void()> f,
                                    typename C::timer_id id) {
    { c.call_at(t, std::move(f)) } -> std::same_as<typename C::timer_id>;
    c.cancel(id);
};

/// Describes a time point whose own std::chrono clock can be read (real clocks).
template <class TimePoint>
concept real_time_point = requires {
    { TimePoint::clock::now() } -> std::same_as<TimePoint>;
};

/// Fires stop sources at their deadlines, on one lazily started thread per
/// std::chrono clock. Thread-safe. Lives until static destruction; a deadline
/// scheduled during static destruction is undefined.
template <class ChronoClock>
class deadline_timer {
public:
    using time_point = typename ChronoClock::time_point;

    /// Identifies a scheduled deadline for cancel().
    struct handle {
        time_point when;
        std::uint64_t id;
    };

    /// Returns the process-wide timer for this clock.
    static deadline_timer& instance() {
        static deadline_timer timer;
        return timer;
    }

    /// Schedules `source.request_stop()` at `when`; starts the thread on first use.
    handle schedule(time_point when, std::stop_source source) {
        std::lock_guard lock{m_mutex};
        if (!m_thread.joinable()) {
            m_thread = std::jthread{[this](std::stop_token token) { run(token); }};
        }
        handle const h{when, ++m_next_id};
        m_pending.emplace(std::pair{when, h.id}, std::move(source));
        // Wake the thread only if it sleeps past this deadline: in steady state
        // (deadlines of one duration, most cancelled) it wakes about once per duration.
        if (when < m_wake_at) {
            m_wake.notify_one();
        }
        return h;
    }

    /// Forgets a deadline that has not fired (no effect if it has).
    void cancel(handle h) {
        std::lock_guard lock{m_mutex};
        m_pending.erase(std::pair{h.when, h.id});
    }

    /// Returns how many deadlines are pending.
    std::size_t pending() const {
        std::lock_guard lock{m_mutex};
        return m_pending.size();
    }

private:
    deadline_timer() = default;

    void run(std::stop_token token) {
        std::vector<std::stop_source> due;
        std::unique_lock lock{m_mutex};
        auto const earlier_arrived = [this] {
            return !m_pending.empty() && m_pending.begin()->first.first < m_wake_at;
        };
        while (!token.stop_requested()) {
            auto const now = ChronoClock::now();
            while (!m_pending.empty() && m_pending.begin()->first.first <= now) {
                due.push_back(std::move(m_pending.begin()->second));
                m_pending.erase(m_pending.begin());
            }
            if (!due.empty()) {
                // Stop callbacks registered by calls run here: never under our lock.
                lock.unlock();
                for (auto& source : due) {
                    source.request_stop();
                }
                due.clear();
                lock.lock();
                continue;
            }
            if (m_pending.empty()) {
                m_wake_at = time_point::max();
                m_wake.wait(lock, token, earlier_arrived);
            } else {
                m_wake_at = m_pending.begin()->first.first;
                m_wake.wait_for(lock, token, m_wake_at - now, earlier_arrived);
            }
        }
    }

    mutable std::mutex m_mutex;
    std::condition_variable_any m_wake;
    std::map<std::pair<time_point, std::uint64_t>, std::stop_source> m_pending;
    std::uint64_t m_next_id = 0;
    time_point m_wake_at = time_point::min(); // when the thread wakes next; min: not waiting
    std::jthread m_thread; // last: joined before the members it uses are destroyed
};

} // namespace detail

KEEL_END_NAMESPACE
