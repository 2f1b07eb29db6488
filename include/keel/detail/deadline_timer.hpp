// SPDX-License-Identifier: MIT
// The one timer behind every keel::timeout on a real clock: pending deadlines in
// a heap, one background thread (started on first use) that sleeps until the
// earliest and fires its stop_source. Clocks that schedule their own
// callbacks (keel::manual_clock's call_at) use those instead, so tests run in
// virtual time.
#pragma once

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
/// std::chrono clock. Thread-safe. Lives until static destruction; a deadline
/// scheduled during static destruction is undefined.
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

    /// Returns the process-wide timer for this clock.
    static deadline_timer& instance() {
        static deadline_timer timer;
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
        if (!m_thread.joinable()) {
            m_thread = std::jthread{[this](std::stop_token token) { run(token); }};
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

    void run(std::stop_token token) {
        std::vector<std::stop_source> due;
        std::unique_lock lock{m_mutex};
        auto const earlier_arrived = [this] {
            return !m_heap.empty() && m_heap.front()->m_when < m_wake_at;
        };
        while (!token.stop_requested()) {
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
                m_wake.wait(lock, token, earlier_arrived);
            } else {
                m_wake_at = m_heap.front()->m_when;
                m_wake.wait_for(lock, token, m_wake_at - now, earlier_arrived);
            }
        }
    }

    mutable std::mutex m_mutex;
    std::condition_variable_any m_wake;
    std::vector<scheduled*> m_heap;           // earliest first (see sift_up / sift_down)
    time_point m_wake_at = time_point::min(); // when the thread wakes next; min: not waiting
    std::jthread m_thread; // last: joined before the members it uses are destroyed
};

} // namespace detail

KEEL_END_NAMESPACE
