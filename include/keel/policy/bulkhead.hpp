// SPDX-License-Identifier: MIT
// keel::bulkhead: a concurrency limit shared by reference by every call to one
// dependency, as resilience4j's SemaphoreBulkhead: at most N calls in flight,
// optionally a bounded queue whose waiters wait at most max_wait (through the
// sleeper, interruptible by the stop token), else errc::bulkhead_full.
// keel::guard(bulkhead) is the policy for keel::resilient.
#pragma once

#include <keel/core/context.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/core/sleeper.hpp>
#include <keel/detail/validate.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <deque>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

KEEL_BEGIN_NAMESPACE

/// Options of keel::bulkhead.
struct bulkhead_options {
    /// Default 25 (resilience4j maxConcurrentCalls); >= 1. Calls in flight at once.
    int max_concurrent_calls = 25;
    /// Default 0 (no queue: resilience4j's maxWaitDuration 0 rejects at once); >= 0.
    /// Calls that may wait for a slot; when it is > 0, max_wait must be > 0 too.
    int max_queued_calls = 0;
    /// Default 0 (resilience4j maxWaitDuration); >= 0. How long a queued call waits
    /// for a slot before errc::bulkhead_full; must be > 0 exactly when
    /// max_queued_calls > 0. nanoseconds::max() waits until a slot is handed over
    /// or the stop token fires (the sleeper treats it as forever).
    std::chrono::nanoseconds max_wait{};
};

/// Describes a bulkhead at one instant.
struct bulkhead_snapshot {
    int in_flight = 0;            ///< Calls holding a slot.
    int queued = 0;               ///< Calls waiting for one.
    int max_concurrent_calls = 0; ///< The limit.
    int max_queued_calls = 0;     ///< The queue's bound.
    /// Calls turned away on arrival since construction: no free slot and no room to wait
    /// (errc::bulkhead_full at once). Monotonic, as `rejected_waits`.
    std::uint64_t rejected_full = 0;
    /// Calls that waited in the queue and left it without a slot since construction:
    /// max_wait ran out (errc::bulkhead_full), or the call was cancelled while waiting
    /// (errc::cancelled; withdraw() cannot tell the two apart). Always 0 without a queue.
    std::uint64_t rejected_waits = 0;
};

/// One call waiting in a bulkhead's queue, as basic_bulkhead::enqueue() and
/// withdraw() see it: release() hands it a slot by setting `granted` and calling
/// `wake` (under the bulkhead's lock, possibly on another thread, so `wake` must
/// only signal: request a stop, post to an executor). The synchronous acquire()
/// waits through the sleeper; keel::asio's bulkhead waits on a timer.
struct bulkhead_waiter {
    void (*wake)(bulkhead_waiter&) noexcept = nullptr; ///< Signals the waiting call.
    bool granted = false; ///< Set by release() when a slot is handed over.
};

/// Limits how many calls run at once; extra calls wait in a bounded queue or are rejected.
///
/// Without a queue, admission is one compare-and-swap and release one atomic
/// decrement (lock-free). With a queue, a call finding no free slot (or others
/// already waiting) joins the queue if it has room: a freed slot is handed to the oldest waiter
/// (FIFO, as resilience4j's fair default), a waiter gives up after max_wait (errc::bulkhead_full)
/// or when its stop token fires (errc::cancelled). Waiting goes through `Sleeper`, so tests use
/// keel::virtual_sleeper. Thread-safe; non-copyable; must outlive the policies referring to it.
///
///     keel::bulkhead db_pool{{.max_concurrent_calls = 10}};
///     auto query = keel::resilient{run_query, keel::guard(db_pool)};
template <sleeper Sleeper = real_sleeper>
class basic_bulkhead {
public:
    /// Builds a bulkhead; throws std::invalid_argument when an option is out of range.
    explicit basic_bulkhead(
        bulkhead_options options = {}) requires std::default_initializable<Sleeper>
        : basic_bulkhead(options, Sleeper{}) {}

    /// Builds a bulkhead waiting through `sleeper` (a keel::virtual_sleeper in tests).
    basic_bulkhead(bulkhead_options options, Sleeper sleeper)
        : m_options(options), m_sleeper(std::move(sleeper)) {
        constexpr std::string_view component = "keel::bulkhead";
        if (options.max_concurrent_calls < 1) {
            detail::invalid_option(component, "max_concurrent_calls", ">= 1",
                                   options.max_concurrent_calls);
        }
        if (options.max_queued_calls < 0) {
            detail::invalid_option(component, "max_queued_calls", ">= 0", options.max_queued_calls);
        }
        if (options.max_wait < std::chrono::nanoseconds::zero()) {
            detail::invalid_option(component, "max_wait", ">= 0", options.max_wait);
        }
        if ((options.max_queued_calls > 0) !=
            (options.max_wait > std::chrono::nanoseconds::zero())) {
            detail::invalid_configuration(
                component, "max_wait must be > 0 exactly when max_queued_calls > 0, got "
                           "max_queued_calls " +
                               detail::describe_value(options.max_queued_calls) + " and max_wait " +
                               detail::format_duration(options.max_wait));
        }
    }

    basic_bulkhead(basic_bulkhead const&) = delete;
    basic_bulkhead& operator=(basic_bulkhead const&) = delete;

    /// Takes a slot if one is free and nobody is queued; never waits. Lock-free. Without
    /// a queue a false return is the call's answer (errc::bulkhead_full in every
    /// pipeline) and counts in snapshot().rejected_full; with one, the caller goes on to
    /// enqueue(), which counts.
    bool try_acquire() noexcept {
        if (take_free_slot()) [[likely]] {
            return true;
        }
        if (m_options.max_queued_calls == 0) {
            m_rejected_full.fetch_add(1, std::memory_order_relaxed);
        }
        return false;
    }

    /// Takes a slot, waiting in the queue if there is one; returns an empty code
    /// when admitted, errc::bulkhead_full when full (or the wait ran out) and
    /// errc::cancelled when `token` fired while waiting. Pair a success with release().
    std::error_code acquire(std::stop_token token = {}) {
        if (try_acquire()) {
            return {};
        }
        if (m_options.max_queued_calls == 0) {
            return make_error_code(errc::bulkhead_full);
        }
        return acquire_queued(token);
    }

    /// Gives a slot back: to the oldest waiter if any, else to the pool.
    void release() noexcept {
        if (m_options.max_queued_calls == 0) {
            m_in_flight.fetch_sub(1, std::memory_order_release);
            return;
        }
        std::lock_guard lock{m_mutex};
        if (m_waiters.empty()) {
            m_in_flight.fetch_sub(1, std::memory_order_release);
            return;
        }
        // Hand the slot over without freeing it, so no newcomer can barge in.
        bulkhead_waiter* const first = m_waiters.front();
        m_waiters.pop_front();
        m_queued.store(static_cast<int>(m_waiters.size()), std::memory_order_release);
        first->granted = true;
        first->wake(*first); // only signals the waiter; runs no user code
    }

    /// What enqueue() did with a call.
    enum class queue_result : std::uint8_t {
        admitted, ///< A slot was free: the call holds it (pair with release()).
        full,     ///< No slot and no room in the queue: errc::bulkhead_full.
        queued,   ///< The call waits: until withdraw(), which says if a slot came.
    };

    /// Takes a slot if one is free and nobody is queued, else puts `w` at the end of
    /// the queue if it has room (full counts in snapshot().rejected_full). A queued `w`
    /// must stay alive until withdraw(w).
    queue_result enqueue(bulkhead_waiter& w) {
        std::lock_guard lock{m_mutex};
        // Under the lock no release can slip between this check and queueing.
        int seen = m_in_flight.load(std::memory_order_relaxed);
        while (m_waiters.empty() && seen < m_options.max_concurrent_calls) {
            if (m_in_flight.compare_exchange_weak(seen, seen + 1, std::memory_order_acquire,
                                                  std::memory_order_relaxed)) {
                return queue_result::admitted;
            }
        }
        if (static_cast<int>(m_waiters.size()) >= m_options.max_queued_calls) {
            m_rejected_full.fetch_add(1, std::memory_order_relaxed);
            return queue_result::full;
        }
        m_waiters.push_back(&w);
        m_queued.store(static_cast<int>(m_waiters.size()), std::memory_order_release);
        return queue_result::queued;
    }

    /// Ends the wait of a queued `w` (its max_wait ran out, its caller gave up, or
    /// it was woken): returns true if release() handed it a slot (pair with
    /// release()), else takes it out of the queue, counts it in
    /// snapshot().rejected_waits and returns false.
    bool withdraw(bulkhead_waiter& w) noexcept {
        std::lock_guard lock{m_mutex};
        if (w.granted) {
            return true;
        }
        m_waiters.erase(std::find(m_waiters.begin(), m_waiters.end(), &w));
        m_queued.store(static_cast<int>(m_waiters.size()), std::memory_order_release);
        m_rejected_waits.fetch_add(1, std::memory_order_relaxed);
        return false;
    }

    /// Returns the sleeper queued calls of acquire() wait through.
    Sleeper const& sleeper() const noexcept { return m_sleeper; }

    /// Returns the calls in flight and queued now, the limits, and the rejections since
    /// construction.
    bulkhead_snapshot snapshot() const noexcept {
        return {m_in_flight.load(std::memory_order_acquire),
                m_queued.load(std::memory_order_acquire),
                m_options.max_concurrent_calls,
                m_options.max_queued_calls,
                m_rejected_full.load(std::memory_order_relaxed),
                m_rejected_waits.load(std::memory_order_relaxed)};
    }

    /// Returns the options the bulkhead was built with.
    bulkhead_options const& options() const noexcept { return m_options; }

private:
    // Takes a slot if one is free and nobody is queued; counts nothing.
    bool take_free_slot() noexcept {
        if (m_queued.load(std::memory_order_acquire) != 0) {
            return false;
        }
        int seen = m_in_flight.load(std::memory_order_relaxed);
        while (seen < m_options.max_concurrent_calls) {
            if (m_in_flight.compare_exchange_weak(seen, seen + 1, std::memory_order_acquire,
                                                  std::memory_order_relaxed)) {
                return true;
            }
        }
        return false;
    }

    struct stop_waiter : bulkhead_waiter {
        std::stop_source stop;
    };
    struct wake_waiter {
        stop_waiter* target;
        void operator()() const noexcept { target->stop.request_stop(); }
    };

    std::error_code acquire_queued(std::stop_token const& token) {
        stop_waiter self;
        self.wake = [](bulkhead_waiter& w) noexcept {
            static_cast<stop_waiter&>(w).stop.request_stop();
        };
        switch (enqueue(self)) {
        case queue_result::admitted: return {};
        case queue_result::full: return make_error_code(errc::bulkhead_full);
        case queue_result::queued: break;
        }
        {
            std::stop_callback<wake_waiter> const link{token, wake_waiter{&self}};
            Sleeper sleeper = m_sleeper;
            sleeper.sleep_for(m_options.max_wait, self.stop.get_token());
        }
        if (withdraw(self)) {
            return {};
        }
        return make_error_code(token.stop_requested() ? errc::cancelled : errc::bulkhead_full);
    }

    bulkhead_options m_options;
    [[no_unique_address]] Sleeper m_sleeper;
    std::atomic<int> m_in_flight{0};
    std::atomic<int> m_queued{0};
    std::mutex m_mutex;
    std::deque<bulkhead_waiter*> m_waiters;
    // Rejections, relaxed and written only on the rejection paths: off the line of
    // m_in_flight that every admission writes.
    alignas(64) std::atomic<std::uint64_t> m_rejected_full{0};
    std::atomic<std::uint64_t> m_rejected_waits{0};
};

/// A bulkhead that waits with keel::real_sleeper.
using bulkhead = basic_bulkhead<>;

/// The policy keel::guard(bulkhead) returns: takes a slot before the inner
/// pipeline and gives it back after, even if the inner pipeline throws.
///
/// Holds a pointer to the bulkhead, which must outlive it. Thread-safe.
template <sleeper Sleeper>
class bulkhead_policy {
public:
    /// Guards with `b`.
    explicit bulkhead_policy(basic_bulkhead<Sleeper>& b) noexcept : m_bulkhead(&b) {}

    /// Runs `next` holding a slot, or returns errc::bulkhead_full / errc::cancelled.
    template <class Next, class Context>
    auto execute(Next const& next, Context const& ctx) const -> decltype(next(ctx)) {
        if (!m_bulkhead->try_acquire()) {
            if (m_bulkhead->options().max_queued_calls == 0) {
                // try_acquire() decided (and counted it); acquire() would decide again.
                return keel::failure{make_error_code(errc::bulkhead_full), nullptr, std::nullopt};
            }
            std::error_code code;
            try {
                code = m_bulkhead->acquire(ctx.stop_token());
            } catch (...) { // the queue's allocation or the sleeper
                return keel::failure::from_current_exception();
            }
            if (code) {
                return keel::failure{code, nullptr, std::nullopt};
            }
        }
        struct release_on_exit {
            basic_bulkhead<Sleeper>* bulkhead;
            ~release_on_exit() { bulkhead->release(); }
        } const release{m_bulkhead};
        return next(ctx);
    }

    /// Returns the guarded bulkhead.
    basic_bulkhead<Sleeper>& target() const noexcept { return *m_bulkhead; }

private:
    basic_bulkhead<Sleeper>* m_bulkhead;
};

/// Returns the policy guarding a pipeline with `b` (shared by reference).
template <sleeper Sleeper>
bulkhead_policy<Sleeper> guard(basic_bulkhead<Sleeper>& b) noexcept {
    return bulkhead_policy<Sleeper>{b};
}

KEEL_END_NAMESPACE
