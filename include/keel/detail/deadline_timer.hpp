// SPDX-License-Identifier: MIT
// The one timer behind every keel::timeout on a real clock: pending deadlines in
// a heap, one background thread (started on first use) that sleeps until the
// earliest and fires its stop_source. It is never destroyed, so a call that
// returns while the process exits still finds it. Clocks that schedule their own
// callbacks (keel::manual_clock's call_at) use those instead, so tests run in
// virtual time.
#pragma once

#include <keel/detail/time.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
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
/// std::chrono clock. Thread-safe.
///
/// The instance and its thread are never destroyed: calls keep scheduling and
/// cancelling deadlines on threads that outlive main (keel itself leaves abandoned
/// health checks and drain hooks running at exit), so the timer must outlast
/// static destruction, and exit must not wait for a thread that may be running a
/// stop callback that never returns. The thread is detached and ends with the
/// process; the instance stays reachable, so leak checkers do not report it.
///
/// Pending deadlines are `scheduled` objects on their owners' stacks, kept in a
/// binary min-heap of pointers: scheduling and cancelling allocate nothing once the
/// heap has grown to the most deadlines ever pending at once.
template <class ChronoClock>
class deadline_timer {
public:
    using time_point = typename ChronoClock::time_point;

    /// A deadline: fires `source` at `when` unless destroyed first. Construct it on the
    /// stack around the work it bounds; the destructor cancels (no effect once fired).
    class scheduled {
    public:
        /// Schedules `source.request_stop()` at `when`; starts the thread on first use.
        /// Throws std::bad_alloc if the heap must grow, std::system_error if the thread
        /// cannot start.
        scheduled(time_point when, std::stop_source source, deadline_timer& timer = instance())
            : m_timer(timer), m_when(when), m_source(std::move(source)) {
            m_timer.add(*this);
        }
        ~scheduled() { m_timer.remove(*this); }
        scheduled(scheduled const&) = delete;
        scheduled& operator=(scheduled const&) = delete;

    private:
        friend class deadline_timer;
        deadline_timer& m_timer;
        time_point m_when;
        std::stop_source m_source;        // copied out (no allocation) when it fires
        std::size_t m_index = not_queued; // position in the heap
    };

    /// Returns the process-wide timer for this clock (never destroyed, see the class).
    static deadline_timer& instance() {
        static deadline_timer& timer = *new deadline_timer; // NOLINT: leaked on purpose
        return timer;
    }

    /// Returns how many deadlines are pending.
    std::size_t pending() const {
        std::lock_guard lock{m_mutex};
        return m_heap.size();
    }

    /// Returns the earliest pending deadline, if any.
    std::optional<time_point> earliest() const {
        std::lock_guard lock{m_mutex};
        if (m_heap.empty()) {
            return std::nullopt;
        }
        return m_heap.front()->m_when;
    }

private:
    static constexpr std::size_t not_queued = static_cast<std::size_t>(-1);

    deadline_timer() = default;

    void add(scheduled& s) {
        std::lock_guard lock{m_mutex};
        if (!m_started) {
            std::thread{[this] { run(); }}.detach();
            m_started = true;
        }
        m_heap.push_back(&s);
        s.m_index = m_heap.size() - 1;
        sift_up(s.m_index);
        // Wake the thread only if it sleeps past this deadline: in steady state
        // (deadlines of one duration, most cancelled) it wakes about once per duration.
        if (s.m_when < m_wake_at) {
            m_wake.notify_one();
        }
    }

    void remove(scheduled& s) {
        std::lock_guard lock{m_mutex};
        if (s.m_index != not_queued) {
            erase_at(s.m_index);
        }
    }

    // The heap, under m_mutex: m_heap[0] is the earliest deadline, and every entry
    // knows its index so that cancelling is O(log n) without a search.
    void place(std::size_t i, scheduled* s) noexcept {
        m_heap[i] = s;
        s->m_index = i;
    }

    bool sift_up(std::size_t i) noexcept {
        scheduled* const s = m_heap[i];
        std::size_t const start = i;
        while (i > 0 && s->m_when < m_heap[(i - 1) / 2]->m_when) {
            place(i, m_heap[(i - 1) / 2]);
            i = (i - 1) / 2;
        }
        place(i, s);
        return i != start;
    }

    void sift_down(std::size_t i) noexcept {
        scheduled* const s = m_heap[i];
        std::size_t const n = m_heap.size();
        while (true) {
            std::size_t child = 2 * i + 1;
            if (child >= n) {
                break;
            }
            if (child + 1 < n && m_heap[child + 1]->m_when < m_heap[child]->m_when) {
                ++child;
            }
            if (!(m_heap[child]->m_when < s->m_when)) {
                break;
            }
            place(i, m_heap[child]);
            i = child;
        }
        place(i, s);
    }

    void erase_at(std::size_t i) noexcept {
        m_heap[i]->m_index = not_queued;
        scheduled* const last = m_heap.back();
        m_heap.pop_back();
        if (i < m_heap.size()) {
            place(i, last);
            if (!sift_up(i)) {
                sift_down(i);
            }
        }
    }

    [[noreturn]] void run() {
        std::vector<std::stop_source> due;
        std::unique_lock lock{m_mutex};
        auto const earlier_arrived = [this] {
            return !m_heap.empty() && m_heap.front()->m_when < m_wake_at;
        };
        for (;;) {
            auto const now = ChronoClock::now();
            while (!m_heap.empty() && m_heap.front()->m_when <= now) {
                // A copy of the source: its owner may return and destroy the entry as
                // soon as the lock is released.
                due.push_back(m_heap.front()->m_source);
                erase_at(0);
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
            if (m_heap.empty()) {
                m_wake_at = time_point::max();
                m_wake.wait(lock, earlier_arrived);
                continue;
            }
            m_wake_at = m_heap.front()->m_when;
            // Wait on steady_clock for the time left on ChronoClock, saturated: a
            // deadline at the end of time is an untimed wait, never one whose
            // overflowed end lies in the past and wakes at once.
            using ticks = typename time_point::duration;
            auto const left = saturating_cast<std::chrono::nanoseconds>(ticks{saturating_sub(
                m_wake_at.time_since_epoch().count(), now.time_since_epoch().count())});
            auto const wake = saturating_add(std::chrono::steady_clock::now(), left);
            if (wake == std::chrono::steady_clock::time_point::max()) {
                m_wake.wait(lock, earlier_arrived);
            } else {
                m_wake.wait_until(lock, wake, earlier_arrived);
            }
        }
    }

    mutable std::mutex m_mutex;
    std::condition_variable m_wake;
    std::vector<scheduled*> m_heap;           // earliest first (see sift_up / sift_down)
    time_point m_wake_at = time_point::min(); // when the thread wakes next; min: not waiting
    bool m_started = false;                   // the thread runs (detached, see the class)
};

} // namespace detail

KEEL_END_NAMESPACE
