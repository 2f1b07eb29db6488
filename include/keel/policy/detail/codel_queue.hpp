// SPDX-License-Identifier: MIT
// The bounded queue keel::adaptive_limit sheds load with when its limit is reached:
// FIFO while calm, LIFO under overload, and CoDel expiry as Facebook runs it
// (folly/executors/Codel.cpp; Maurer, "Fail at Scale", ACM Queue 2015). It decides
// only (who is granted, who is expired); waking is a callback each waiter brings, so
// a blocking waiter (sleeper) and an asynchronous one (a timer) share it.
#pragma once

#include <keel/version.hpp>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <limits>

KEEL_BEGIN_NAMESPACE
namespace detail {

/// One call waiting for a slot of an adaptive limit.
///
/// Owned by the waiting call; linked into the queue while it waits. `wake` runs under the
/// queue's lock when the waiter is granted or expired, and must only signal (stop a token,
/// post a completion): it runs no user code.
struct limit_waiter {
    enum class state : std::uint8_t { waiting, granted, expired };
    std::int64_t enqueued_ns = 0;                   ///< When it joined the queue.
    std::int64_t granted_ns = 0;                    ///< When it was granted a slot.
    int in_flight = 0;                              ///< The in-flight count its grant made.
    std::size_t partition = 0;                      ///< The partition it asked for.
    state status = state::waiting;                  ///< Written under the queue's lock.
    void (*wake)(limit_waiter&) noexcept = nullptr; ///< Signals the waiting call.
    void* context = nullptr;                        ///< The wake callback's own state.
};

/// folly::Codel's overload detector, without its atomics (the queue's lock serialises it).
///
/// Every `interval` the minimum queueing delay seen in the last interval is compared with
/// `target`: above it, the next interval is "overloaded", and while overloaded a request
/// whose delay exceeds 2 x target (the slough timeout) is expired. The first request of an
/// interval only resets the minimum ("more than one request must come in during an
/// interval before codel starts dropping requests").
class codel {
public:
    codel(std::int64_t target_ns, std::int64_t interval_ns) noexcept
        : m_target_ns(target_ns), m_interval_ns(interval_ns) {}

    /// Returns true if a request queued for `delay_ns` should be expired at `now_ns`.
    bool overloaded(std::int64_t delay_ns, std::int64_t now_ns) noexcept {
        if (now_ns > m_interval_end_ns) {
            m_interval_end_ns = now_ns + m_interval_ns;
            m_overloaded = m_min_delay_ns > m_target_ns;
            m_min_delay_ns = delay_ns;
            return false;
        }
        m_min_delay_ns = std::min(m_min_delay_ns, delay_ns);
        return m_overloaded && delay_ns > 2 * m_target_ns;
    }

    /// Returns true while the current interval is overloaded.
    bool is_overloaded() const noexcept { return m_overloaded; }

    /// Returns the slough timeout, 2 x target.
    std::int64_t slough_ns() const noexcept { return 2 * m_target_ns; }

private:
    std::int64_t m_target_ns;
    std::int64_t m_interval_ns;
    std::int64_t m_interval_end_ns = std::numeric_limits<std::int64_t>::min();
    std::int64_t m_min_delay_ns = 0;
    bool m_overloaded = false;
};

/// The waiters of one adaptive limit; every member needs the owner's lock held.
///
/// dispatch_locked() hands free slots out: it takes a slot through `take_slot` (a callable
/// returning the in-flight count it made, 0 when the limit is reached), picks the newest
/// waiter under overload and the oldest otherwise (adaptive LIFO), expires it instead if
/// CoDel says so (and offers the slot to the next), and gives an unused slot back through
/// `give_back`. Under overload, waiters older than the slough timeout are expired first.
class codel_queue {
public:
    codel_queue(std::int64_t target_ns, std::int64_t interval_ns) noexcept
        : m_codel(target_ns, interval_ns) {}

    std::size_t size() const noexcept { return m_waiters.size(); }
    bool empty() const noexcept { return m_waiters.empty(); }
    bool overloaded() const noexcept { return m_codel.is_overloaded(); }

    /// Appends `w`, queued since `now_ns`.
    void push_locked(limit_waiter& w, std::int64_t now_ns) {
        w.enqueued_ns = now_ns;
        w.status = limit_waiter::state::waiting;
        m_waiters.push_back(&w);
    }

    /// Expires the oldest waiter (to make room for a newer one under overload).
    void expire_oldest_locked() {
        if (!m_waiters.empty()) {
            limit_waiter* const w = m_waiters.front();
            m_waiters.pop_front();
            finish(*w, limit_waiter::state::expired);
        }
    }

    /// Unlinks `w` if it is still queued; returns true if it was.
    bool remove_locked(limit_waiter& w) noexcept {
        auto const it = std::find(m_waiters.begin(), m_waiters.end(), &w);
        if (it == m_waiters.end()) {
            return false;
        }
        m_waiters.erase(it);
        return true;
    }

    template <class TakeSlot, class GiveBack>
    void dispatch_locked(std::int64_t now_ns, TakeSlot&& take_slot, GiveBack&& give_back) {
        if (m_codel.is_overloaded()) {
            while (!m_waiters.empty() &&
                   now_ns - m_waiters.front()->enqueued_ns > m_codel.slough_ns()) {
                expire_oldest_locked();
            }
        }
        int held = 0;
        while (!m_waiters.empty()) {
            if (held == 0 && (held = take_slot()) == 0) {
                return;
            }
            bool const lifo = m_codel.is_overloaded();
            limit_waiter* const w = lifo ? m_waiters.back() : m_waiters.front();
            if (lifo) {
                m_waiters.pop_back();
            } else {
                m_waiters.pop_front();
            }
            if (m_codel.overloaded(now_ns - w->enqueued_ns, now_ns)) {
                finish(*w, limit_waiter::state::expired);
                continue;
            }
            w->in_flight = held;
            w->granted_ns = now_ns;
            held = 0;
            finish(*w, limit_waiter::state::granted);
        }
        if (held != 0) {
            give_back();
        }
    }

private:
    static void finish(limit_waiter& w, limit_waiter::state s) noexcept {
        w.status = s;
        if (w.wake != nullptr) {
            w.wake(w);
        }
    }

    codel m_codel;
    std::deque<limit_waiter*> m_waiters;
};

} // namespace detail
KEEL_END_NAMESPACE
