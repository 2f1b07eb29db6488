// SPDX-License-Identifier: MIT
// keel::asio::detail::deadline_queue: the one timer behind every keel::timeout of
// the asynchronous pipeline on an execution context and a clock (the asynchronous
// twin of keel::detail::deadline_timer). Pending deadlines wait in a heap; one
// keel::asio::basic_timer is armed at the earliest, so a call whose deadline is not
// the earliest (every call of a steady stream under one timeout) neither arms nor
// cancels an Asio timer, and a call that completes early only leaves the heap. The
// queues live in an Asio service of the execution context, one per clock.
#pragma once

#include <keel/asio/context.hpp>
#include <keel/asio/detail/asio.hpp>
#include <keel/asio/timer.hpp>
#include <keel/core/clock.hpp>
#include <keel/version.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace asio::detail {

/// Cancels, at their deadlines, the scopes of the calls of one execution context
/// that wait on `Clock`. Thread-safe.
///
/// Locking. Calls register and withdraw from any thread (coroutines on strands of
/// a multi-threaded io_context move between its threads), so the heap and the
/// timer are guarded by one mutex. It is held for a heap step (O(log n) pointer
/// moves) and, only when a new deadline is earlier than the armed one, for
/// re-arming the timer; never while user code runs. Per-thread queues would need
/// a timer per thread and still see withdrawals from other threads.
///
/// Timer. `m_armed_at` is the expiry of the wait in flight, or time_point::max()
/// when none is: an entry earlier than it re-arms (cancelling the wait in flight),
/// any other entry relies on that wait, whose handler takes out what has expired
/// and re-arms for the earliest left. A withdrawal leaves the timer as it is (no
/// system call on the success path), except that when the heap runs empty it posts
/// a check that cancels the wait if the heap is still empty by then, so that an
/// idle io_context's run() returns instead of waiting for a deadline nobody has.
///
/// Delivery. An expired entry's scope is fired (terminal cancellation, timed_out)
/// on the entry's own executor (dispatched there, after the lock is released): a
/// cancellation signal must be emitted where its slot's owner runs. The scope is
/// fired only if the calls under it have not completed by then (`done`, read on
/// that executor).
///
/// The timer runs its handler on the executor of the call that first armed it.
/// The queue outlives the service that made it while entries hold it; once the
/// execution context shuts down it arms nothing and fires nothing.
template <class Clock>
class deadline_queue {
public:
    using time_point = typename Clock::time_point;

    /// One call's deadline: fires `scope` at `when` on `executor`, unless destroyed
    /// first. Lives in the timeout's coroutine frame around the calls it bounds; the
    /// destructor withdraws it (no effect once fired).
    class entry {
    public:
        /// Registers the deadline (none for time_point::max(), which never comes).
        /// Throws std::bad_alloc if the heap must grow or the timer cannot be armed.
        entry(std::shared_ptr<deadline_queue> queue, time_point when,
              std::shared_ptr<cancel_scope> scope, net::any_io_executor executor)
            : m_queue(std::move(queue)), m_when(when), m_scope(std::move(scope)),
              m_executor(std::move(executor)) {
            if (m_when != time_point::max()) {
                m_queue->add(*this);
            }
        }
        ~entry() { m_queue->remove(*this); }
        entry(entry const&) = delete;
        entry& operator=(entry const&) = delete;

    private:
        friend class deadline_queue;
        std::shared_ptr<deadline_queue> m_queue;
        time_point m_when;
        std::uint64_t m_order = 0; // registration order: equal deadlines fire first come first
        std::shared_ptr<cancel_scope> m_scope;
        net::any_io_executor m_executor;
        std::size_t m_index = not_queued; // position in the heap
    };

    /// Makes an empty queue on `clock`; the timer is made when first armed.
    explicit deadline_queue(Clock clock) : m_clock(std::move(clock)) {}

    deadline_queue(deadline_queue const&) = delete;
    deadline_queue& operator=(deadline_queue const&) = delete;
    ~deadline_queue() = default;

    /// Returns the clock the deadlines are on.
    Clock const& clock() const noexcept { return m_clock; }

    /// Returns how many deadlines are pending.
    std::size_t pending() const {
        std::lock_guard lock{m_mutex};
        return m_heap.size();
    }

    /// Returns the expiry of the timer's wait in flight, if one is.
    std::optional<time_point> armed_at() const {
        std::lock_guard lock{m_mutex};
        if (m_armed_at == time_point::max()) {
            return std::nullopt;
        }
        return m_armed_at;
    }

    /// Forgets every pending deadline and destroys the timer; arms nothing after.
    /// Called when the execution context shuts down, before it destroys any service
    /// (the timer's among them) and the handlers it holds.
    void close() {
        std::lock_guard lock{m_mutex};
        m_closed = true;
        for (entry* e : m_heap) {
            e->m_index = not_queued;
        }
        m_heap.clear();
        m_armed_at = time_point::max();
        m_timer.reset();
    }

private:
    static constexpr std::size_t not_queued = static_cast<std::size_t>(-1);

    struct delivery {
        std::shared_ptr<cancel_scope> scope;
        net::any_io_executor executor;
    };

    void add(entry& e) {
        std::lock_guard lock{m_mutex};
        if (m_closed) {
            return;
        }
        e.m_order = m_next_order++;
        m_heap.push_back(&e);
        e.m_index = m_heap.size() - 1;
        sift_up(e.m_index);
        if (e.m_when < m_armed_at) {
            try {
                arm_locked(e.m_when, e.m_executor);
            } catch (...) {
                erase_at(e.m_index);
                throw;
            }
        }
    }

    void remove(entry& e) noexcept {
        std::optional<net::any_io_executor> check_on;
        {
            std::lock_guard lock{m_mutex};
            if (e.m_index == not_queued) {
                return;
            }
            erase_at(e.m_index);
            if (m_heap.empty() && m_armed_at != time_point::max() && !m_idle_check_posted) {
                m_idle_check_posted = true;
                check_on.emplace(m_timer->get_executor());
            }
        }
        if (check_on) {
            try {
                net::post(*check_on, [this] { disarm_if_idle(); });
            } catch (...) { // NOLINT(bugprone-empty-catch): the wait then just runs out
                std::lock_guard lock{m_mutex};
                m_idle_check_posted = false;
            }
        }
    }

    // Starts a wait until `when`, cancelling the one in flight; the timer is made
    // on `executor` the first time. Each wait has its generation, so that its handler
    // knows whether it is still the wait in flight.
    void arm_locked(time_point when, net::any_io_executor const& executor) {
        if (!m_timer) {
            // Untracked: the timer lives as long as the context, and must not keep
            // its run() from returning (an executor that tracks work would).
            m_timer.emplace(net::prefer(executor, net::execution::outstanding_work.untracked),
                            m_clock);
        }
        std::uint64_t const generation = m_generation + 1;
        m_armed_at = time_point::max(); // none in flight if async_wait_until throws
        m_timer->async_wait_until(
            when, [this, generation, when](error_code ec) { fired(ec, generation, when); });
        m_generation = generation;
        m_armed_at = when;
    }

    void fired(error_code ec, std::uint64_t generation, time_point when) {
        std::vector<delivery> due;
        std::exception_ptr rearm_failed;
        {
            std::lock_guard lock{m_mutex};
            if (m_closed) {
                return;
            }
            if (generation == m_generation) {
                m_armed_at = time_point::max();
            }
            if (ec) {
                return; // re-armed, or cancelled by an idle check
            }
            // The wait ended at `when` by the timer's clock; a clock that reads a
            // little behind it (keel::coarse_clock) must not make it wait again.
            auto const now = m_clock.now();
            auto const expired = now < when ? when : now;
            while (!m_heap.empty() && !(expired < m_heap.front()->m_when)) {
                entry* const e = m_heap.front();
                due.push_back({e->m_scope, e->m_executor});
                erase_at(0);
            }
            if (!m_heap.empty() && m_heap.front()->m_when < m_armed_at) {
                try {
                    arm_locked(m_heap.front()->m_when, m_heap.front()->m_executor);
                } catch (...) { // the expired ones are still fired; the rest wait for an add
                    rearm_failed = std::current_exception();
                }
            }
        }
        for (auto& d : due) {
            net::dispatch(d.executor, [scope = std::move(d.scope)] {
                if (!scope->done) {
                    scope->timed_out = true;
                    scope->emit(net::cancellation_type::terminal);
                }
            });
        }
        if (rearm_failed) {
            std::rethrow_exception(rearm_failed);
        }
    }

    void disarm_if_idle() {
        std::lock_guard lock{m_mutex};
        m_idle_check_posted = false;
        if (!m_closed && m_heap.empty() && m_armed_at != time_point::max()) {
            m_armed_at = time_point::max();
            m_timer->cancel();
        }
    }

    // The heap, under m_mutex: m_heap[0] is the earliest deadline (the first
    // registered among equal ones), and every entry knows its index so that a
    // withdrawal is O(log n) without a search.
    static bool before(entry const* a, entry const* b) noexcept {
        return a->m_when < b->m_when || (a->m_when == b->m_when && a->m_order < b->m_order);
    }

    void place(std::size_t i, entry* e) noexcept {
        m_heap[i] = e;
        e->m_index = i;
    }

    bool sift_up(std::size_t i) noexcept {
        entry* const e = m_heap[i];
        std::size_t const start = i;
        while (i > 0 && before(e, m_heap[(i - 1) / 2])) {
            place(i, m_heap[(i - 1) / 2]);
            i = (i - 1) / 2;
        }
        place(i, e);
        return i != start;
    }

    void sift_down(std::size_t i) noexcept {
        entry* const e = m_heap[i];
        std::size_t const n = m_heap.size();
        for (;;) {
            std::size_t child = 2 * i + 1;
            if (child >= n) {
                break;
            }
            if (child + 1 < n && before(m_heap[child + 1], m_heap[child])) {
                ++child;
            }
            if (!before(m_heap[child], e)) {
                break;
            }
            place(i, m_heap[child]);
            i = child;
        }
        place(i, e);
    }

    void erase_at(std::size_t i) noexcept {
        m_heap[i]->m_index = not_queued;
        entry* const last = m_heap.back();
        m_heap.pop_back();
        if (i < m_heap.size()) {
            place(i, last);
            if (!sift_up(i)) {
                sift_down(i);
            }
        }
    }

    mutable std::mutex m_mutex;
    [[no_unique_address]] Clock m_clock;
    std::vector<entry*> m_heap;                // earliest first (see sift_up / sift_down)
    std::optional<basic_timer<Clock>> m_timer; // made on first arming, gone at close()
    time_point m_armed_at = time_point::max(); // the wait in flight's expiry; max: none
    std::uint64_t m_generation = 0;            // of the latest wait started
    std::uint64_t m_next_order = 0;
    bool m_idle_check_posted = false;
    bool m_closed = false;
};

/// The deadline queues of one execution context, one per clock (per time line for
/// a clock with state, such as keel::manual_clock handles, told apart by ==).
/// Made by net::use_service on first use; shutting the context down closes them.
template <class Clock>
class deadline_service final : public net::execution_context::service {
public:
    /// The key net::use_service finds the service by.
    static inline net::execution_context::id id;

    /// Makes the service of `context` (called by net::use_service).
    explicit deadline_service(net::execution_context& context) : service(context) {
        if constexpr (single) {
            m_queues.push_back(std::make_shared<deadline_queue<Clock>>(Clock{}));
        }
    }

    /// Returns the queue of `clock`, made on first use.
    std::shared_ptr<deadline_queue<Clock>> queue(Clock const& clock) {
        if constexpr (single) {
            return m_queues.front(); // made in the constructor, never changed before shutdown
        } else {
            std::lock_guard lock{m_mutex};
            for (auto const& q : m_queues) {
                if (q->clock() == clock) {
                    return q;
                }
            }
            return m_queues.emplace_back(std::make_shared<deadline_queue<Clock>>(clock));
        }
    }

private:
    // A clock without state (keel::steady_clock) has one time line: one queue.
    static constexpr bool single = std::is_empty_v<Clock> && std::default_initializable<Clock>;
    static_assert(single || std::equality_comparable<Clock>,
                  "keel::timeout: a clock with state must tell its time lines apart with ==");

    void shutdown() override {
        std::lock_guard lock{m_mutex};
        for (auto const& q : m_queues) {
            q->close();
        }
    }

    std::mutex m_mutex;
    std::vector<std::shared_ptr<deadline_queue<Clock>>> m_queues;
};

/// Returns the deadline queue of `executor`'s execution context for `clock`.
template <class Clock>
std::shared_ptr<deadline_queue<Clock>> deadline_queue_for(net::any_io_executor const& executor,
                                                          Clock const& clock) {
    net::execution_context& context = net::query(executor, net::execution::context);
    return net::use_service<deadline_service<Clock>>(context).queue(clock);
}

} // namespace asio::detail

KEEL_END_NAMESPACE
