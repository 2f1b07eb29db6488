// SPDX-License-Identifier: MIT
// keel::adaptive_limit: a concurrency limit that finds the downstream's capacity from
// latency instead of having it guessed, as Netflix's concurrency-limits and Envoy's
// adaptive concurrency filter do. Calls take a permit (one lock-free compare-and-swap
// on in-flight < limit) and complete it with success (its RTT is sampled), dropped
// (a timeout or an overload answer) or ignore; samples aggregate lock-free in a window
// and one thread at a time (a try-lock) feeds the algorithm: Vegas, Gradient2, AIMD or
// Envoy's gradient controller. When the limit is reached a call is rejected at once, or
// waits in a bounded queue that is LIFO under overload with CoDel expiry. Partitions
// reserve shares of the limit (80 % live, 20 % batch). keel::guard(limit) is the policy
// for keel::resilient.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/core/random.hpp>
#include <keel/core/sleeper.hpp>
#include <keel/detail/time.hpp>
#include <keel/detail/validate.hpp>
#include <keel/policy/adaptive/aimd.hpp>
#include <keel/policy/adaptive/gradient2.hpp>
#include <keel/policy/adaptive/gradient_controller.hpp>
#include <keel/policy/adaptive/sample.hpp>
#include <keel/policy/adaptive/vegas.hpp>
#include <keel/policy/detail/codel_queue.hpp>
#include <keel/policy/detail/sample_window.hpp>
#include <keel/version.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

KEEL_BEGIN_NAMESPACE

/// Chooses the algorithm of a keel::adaptive_limit by its options.
using limit_algorithm =
    std::variant<vegas_options, gradient2_options, aimd_options, gradient_controller_options>;

/// Netflix WindowedLimit's sampling window, used by Vegas, Gradient2 and AIMD (Envoy's
/// controller has its own interval, gradient_controller_options::update_interval).
struct limit_window_options {
    /// Default 1s (WindowedLimit DEFAULT_MIN_WINDOW_TIME); >= 100ms as the source requires.
    std::chrono::nanoseconds min_window = std::chrono::seconds{1};
    /// Default 1s (DEFAULT_MAX_WINDOW_TIME); >= min_window. A window lasts
    /// clamp(2 x its minimum RTT, min_window, max_window).
    std::chrono::nanoseconds max_window = std::chrono::seconds{1};
    /// Default 10 (DEFAULT_WINDOW_SIZE); >= 10 as the source requires. A window closes only
    /// once it holds more than this many samples.
    int window_size = 10;
    /// Default 100us (DEFAULT_MIN_RTT_THRESHOLD); >= 0. Faster samples are ignored.
    std::chrono::nanoseconds min_rtt_threshold = std::chrono::microseconds{100};
    /// Default 0: the window's mean RTT (AverageSampleWindowFactory); in (0, 1] the
    /// window's percentile instead (PercentileSampleWindowFactory).
    double percentile = 0;
};

/// How a keel::adaptive_limit sheds calls once its limit is reached.
struct limit_queue_options {
    /// Default 0: reject at once with errc::bulkhead_full (SimpleLimiter). > 0 lets that many
    /// calls wait (LifoBlockingLimiter's backlogSize is 100); >= 0.
    int max_queued = 0;
    /// Default 1s (LifoBlockingLimiter backlogTimeout); > 0 when max_queued > 0. The longest
    /// a call waits; nanoseconds::max() waits until granted, expired or cancelled.
    std::chrono::nanoseconds max_wait = std::chrono::seconds{1};
    /// Default 5ms (folly codel_target_delay; "Fail at Scale"); > 0. Overload is a minimum
    /// queueing delay above it over an interval; then waits above 2 x target are expired.
    std::chrono::nanoseconds codel_target = std::chrono::milliseconds{5};
    /// Default 100ms (folly codel_interval); > codel_target.
    std::chrono::nanoseconds codel_interval = std::chrono::milliseconds{100};
};

/// A share of the limit reserved for one kind of traffic (AbstractPartitionedLimiter).
struct limit_partition {
    std::string name; ///< How callers name it (keel::adaptive_limit::partition()).
    double share = 0; ///< In (0, 1]; shares sum to at most 1.
};

/// Options of keel::adaptive_limit.
struct adaptive_limit_options {
    /// Default Gradient2 (Gradient2Limit's defaults). concurrency-limits' AbstractLimiter
    /// defaults to VegasLimit; keel does not, because on the M/M/c proof
    /// (docs/adaptive_concurrency.md) Vegas keeps 57 % of capacity where Gradient2 keeps all of it.
    /// Each algorithm's options cite their own defaults.
    limit_algorithm algorithm = gradient2_options{};
    /// The sampling window of Vegas, Gradient2 and AIMD.
    limit_window_options window{};
    /// Load shedding once the limit is reached: reject (default) or queue.
    limit_queue_options queue{};
    /// Default none. Each partition is guaranteed max(1, ceil(limit x share)) slots and may
    /// borrow what the others leave while the total is below the limit; traffic naming no
    /// partition uses only what is left (AbstractPartitionedLimiter).
    std::vector<limit_partition> partitions{};
};

/// Describes an adaptive limit at one instant.
struct adaptive_limit_snapshot {
    int limit = 0;           ///< The current limit.
    int in_flight = 0;       ///< Calls holding a permit.
    int queued = 0;          ///< Calls waiting for one.
    bool overloaded = false; ///< True while the queue is in CoDel's overloaded (LIFO) regime.
};

/// How a guarded call's outcome feeds an adaptive limit.
enum class limit_result : std::uint8_t {
    success = 0, ///< Its RTT is a sample.
    dropped = 1, ///< It timed out or was shed downstream: the limit should fall.
    ignored = 2, ///< It tells nothing about the downstream's capacity.
};

/// Limits calls in flight to a limit an algorithm adapts from their latency.
///
/// Admission is a compare-and-swap on in-flight < limit, so the limit holds exactly under
/// any contention (Envoy's load-then-increment lets each racing thread through). A permit
/// remembers its start and the in-flight count it made; completing it adds to a lock-free
/// window, and whichever thread finds the window due first takes a try-lock and feeds the
/// algorithm: no thread ever waits for another to update the limit. Everything is a
/// function of `Clock`'s now, evaluated at acquisitions and completions (no thread, no timer).
/// Waiting goes through `Sleeper`; `Random` draws the algorithms' jitter. Thread-safe;
/// non-copyable; outlives its permits and policies.
///
///     keel::adaptive_limit db_limit{{.algorithm = keel::vegas_options{}}};
///     if (auto permit = db_limit.try_acquire()) {
///         run_query();
///         permit.success();
///     }
template <clock Clock = steady_clock, sleeper Sleeper = real_sleeper,
          random_generator Random = thread_random>
class basic_adaptive_limit {
public:
    using clock_type = Clock;

    /// Names no partition: the call may use only what the partitions leave.
    static constexpr std::size_t no_partition = std::numeric_limits<std::size_t>::max();

    /// A slot of the limit, held while a call runs; move-only.
    ///
    /// Complete it once with success(), dropped() or ignore(); destroying an uncompleted
    /// permit ignores it. Empty (false) when the limit refused.
    class permit {
    public:
        permit() = default;
        permit(permit&& other) noexcept
            : m_owner(std::exchange(other.m_owner, nullptr)), m_start_ns(other.m_start_ns),
              m_in_flight(other.m_in_flight), m_partition(other.m_partition) {}
        permit& operator=(permit&& other) noexcept {
            if (this != &other) {
                ignore();
                m_owner = std::exchange(other.m_owner, nullptr);
                m_start_ns = other.m_start_ns;
                m_in_flight = other.m_in_flight;
                m_partition = other.m_partition;
            }
            return *this;
        }
        ~permit() { ignore(); }

        /// Returns true if the permit holds a slot.
        explicit operator bool() const noexcept { return m_owner != nullptr; }

        /// Completes the call as a success: its RTT (now - start) is sampled.
        void success() noexcept { complete(limit_result::success); }
        /// Completes the call as dropped (timed out, shed downstream).
        void dropped() noexcept { complete(limit_result::dropped); }
        /// Completes the call without a sample.
        void ignore() noexcept { complete(limit_result::ignored); }
        /// Completes the call as `result` says.
        void complete(limit_result result) noexcept {
            if (auto* const owner = std::exchange(m_owner, nullptr)) {
                owner->finish(m_start_ns, m_in_flight, m_partition, result);
            }
        }

        /// Returns the in-flight count this permit made at acquisition (0 when empty).
        int in_flight() const noexcept { return m_owner != nullptr ? m_in_flight : 0; }

    private:
        friend class basic_adaptive_limit;
        permit(basic_adaptive_limit* owner, std::int64_t start_ns, int in_flight,
               std::size_t partition) noexcept
            : m_owner(owner), m_start_ns(start_ns), m_in_flight(in_flight), m_partition(partition) {
        }

        basic_adaptive_limit* m_owner = nullptr;
        std::int64_t m_start_ns = 0;
        int m_in_flight = 0;
        std::size_t m_partition = no_partition;
    };

    /// What try_enqueue() decided for an asynchronous waiter.
    enum class enqueue_result : std::uint8_t {
        granted = 0,  ///< A slot is the waiter's now: claim() it.
        queued = 1,   ///< It waits: its wake callback runs when granted or expired.
        rejected = 2, ///< No slot and no queue room (or no queue).
    };

    /// Builds a limit; throws std::invalid_argument when an option is out of range.
    explicit basic_adaptive_limit(
        adaptive_limit_options options = {}) requires std::default_initializable<Clock> &&
        std::default_initializable<Sleeper> && std::default_initializable<Random>
        : basic_adaptive_limit(std::move(options), Clock{}, Sleeper{}, Random{}) {}

    /// Builds a limit reading `clock` (keel::manual_clock in tests).
    basic_adaptive_limit(adaptive_limit_options options, Clock clock) requires
        std::default_initializable<Sleeper> && std::default_initializable<Random>
        : basic_adaptive_limit(std::move(options), std::move(clock), Sleeper{}, Random{}) {}

    /// Builds a limit reading `clock` and waiting through `sleeper` (keel::virtual_sleeper).
    basic_adaptive_limit(adaptive_limit_options options, Clock clock,
                         Sleeper sleeper) requires std::default_initializable<Random>
        : basic_adaptive_limit(std::move(options), std::move(clock), std::move(sleeper), Random{}) {
    }

    /// Builds a limit reading `clock`, waiting through `sleeper`; `random` seeds the
    /// algorithms' jitter (a keel::xoshiro256ss with a fixed seed in tests).
    basic_adaptive_limit(adaptive_limit_options options, Clock clock, Sleeper sleeper,
                         Random random)
        : m_options(std::move(options)), m_clock(std::move(clock)), m_sleeper(std::move(sleeper)),
          m_random(std::move(random)), m_window(window_percentile(m_options)),
          m_controller(make_controller(m_options, now_ns(), m_random)),
          m_queue(m_options.queue.codel_target.count(), m_options.queue.codel_interval.count()),
          m_partitions(m_options.partitions.size()) {
        validate(m_options);
        // Envoy's filter samples every response, a timeout (504) included, and has no
        // threshold; Netflix's WindowedLimit ignores fast samples and only flags drops.
        m_sample_drops = std::holds_alternative<gradient_controller_options>(m_options.algorithm);
        m_min_rtt_threshold_ns = m_sample_drops ? 0 : m_options.window.min_rtt_threshold.count();
        publish(std::visit([](auto const& c) { return c.limit(); }, m_controller));
    }

    basic_adaptive_limit(basic_adaptive_limit const&) = delete;
    basic_adaptive_limit& operator=(basic_adaptive_limit const&) = delete;

    /// Takes a slot if the limit allows and nobody is queued; never waits. Lock-free; a
    /// rejection reads no clock.
    permit try_acquire(std::size_t partition = no_partition) noexcept {
        if (m_queued.load(std::memory_order_seq_cst) != 0) {
            return {};
        }
        int const in_flight = admit(partition);
        if (in_flight == 0) {
            return {};
        }
        std::int64_t const now = now_ns();
        maybe_update(now); // a due window or minRTT epoch starts before this call's sample
        return permit{this, now, in_flight, partition};
    }

    /// Takes a slot, waiting in the queue if there is one: returns an empty code and sets
    /// `out` when admitted; errc::bulkhead_full when the limit and the queue are full or the
    /// wait ran out or CoDel expired it; errc::cancelled when `token` fired while waiting.
    std::error_code acquire(permit& out, std::stop_token token = {},
                            std::size_t partition = no_partition) {
        if ((out = try_acquire(partition))) {
            return {};
        }
        if (m_options.queue.max_queued == 0) {
            return make_error_code(errc::bulkhead_full);
        }
        struct sync_wait {
            std::stop_source wake;
        } state;
        detail::limit_waiter self;
        self.partition = partition;
        self.context = &state;
        self.wake = [](detail::limit_waiter& w) noexcept {
            static_cast<sync_wait*>(w.context)->wake.request_stop();
        };
        switch (try_enqueue(self)) {
        case enqueue_result::granted: out = claim(self); return {};
        case enqueue_result::rejected: return make_error_code(errc::bulkhead_full);
        case enqueue_result::queued: break;
        }
        {
            struct forward {
                std::stop_source* target;
                void operator()() const noexcept { target->request_stop(); }
            };
            std::stop_callback<forward> const link{token, forward{&state.wake}};
            Sleeper sleeper = m_sleeper;
            sleeper.sleep_for(m_options.queue.max_wait, state.wake.get_token());
        }
        if (cancel(self)) {
            out = claim(self);
            return {};
        }
        return make_error_code(token.stop_requested() ? errc::cancelled : errc::bulkhead_full);
    }

    /// Queues `w` (for an asynchronous caller) unless a slot is free now or the queue is full.
    ///
    /// `w.wake` and `w.context` must be set and `w` must stay put until granted, expired or
    /// cancel()ed. The decision never waits: the caller waits as it likes (a sleeper, a timer).
    enqueue_result try_enqueue(detail::limit_waiter& w) {
        std::int64_t const now = now_ns();
        if (m_options.queue.max_queued == 0) {
            int const in_flight =
                m_queued.load(std::memory_order_seq_cst) == 0 ? admit(w.partition) : 0;
            return grant_now(w, now, in_flight);
        }
        std::lock_guard lock{m_mutex};
        if (m_queue.empty()) {
            if (int const in_flight = admit(w.partition); in_flight != 0) {
                return grant_now(w, now, in_flight);
            }
        }
        if (static_cast<int>(m_queue.size()) >= m_options.queue.max_queued) {
            if (!m_queue.overloaded()) {
                return enqueue_result::rejected;
            }
            m_queue.expire_oldest_locked(); // LIFO under overload: the newest call wins the room
        }
        m_queue.push_locked(w, now);
        m_queued.store(static_cast<int>(m_queue.size()), std::memory_order_seq_cst);
        // A release that saw no waiter may have freed a slot just before the store above.
        dispatch_locked(now);
        return w.status == detail::limit_waiter::state::granted ? enqueue_result::granted
                                                                : enqueue_result::queued;
    }

    /// Ends `w`'s wait: returns true if it was granted a slot (claim() it), false if it was
    /// expired or is now unlinked (its wait ran out or was cancelled).
    bool cancel(detail::limit_waiter& w) {
        std::lock_guard lock{m_mutex};
        if (w.status == detail::limit_waiter::state::granted) {
            return true;
        }
        if (m_queue.remove_locked(w)) {
            m_queued.store(static_cast<int>(m_queue.size()), std::memory_order_seq_cst);
        }
        w.status = detail::limit_waiter::state::expired;
        return false;
    }

    /// Returns the permit of a granted waiter; its RTT counts from the grant.
    permit claim(detail::limit_waiter& w) noexcept {
        if (w.partition < m_partitions.size()) {
            m_partitions[w.partition].in_flight.fetch_add(1, std::memory_order_relaxed);
        }
        return permit{this, w.granted_ns, w.in_flight, w.partition};
    }

    /// Returns the index of the partition named `name`, or no_partition.
    std::size_t partition(std::string_view name) const noexcept {
        for (std::size_t i = 0; i < m_options.partitions.size(); ++i) {
            if (m_options.partitions[i].name == name) {
                return i;
            }
        }
        return no_partition;
    }

    /// Returns the current limit.
    int limit() const noexcept { return m_limit.load(std::memory_order_relaxed); }

    /// Returns the current limit of partition `index` (its guaranteed share).
    int partition_limit(std::size_t index) const noexcept {
        return index < m_partitions.size()
                   ? m_partitions[index].limit.load(std::memory_order_relaxed)
                   : 0;
    }

    /// Returns the limit, the calls in flight and queued now.
    adaptive_limit_snapshot snapshot() const {
        bool overloaded = false;
        if (m_options.queue.max_queued > 0) {
            std::lock_guard lock{m_mutex};
            overloaded = m_queue.overloaded();
        }
        return {limit(), m_in_flight.load(std::memory_order_relaxed),
                m_queued.load(std::memory_order_relaxed), overloaded};
    }

    /// Calls `f` with the algorithm's state (aimd_limit, vegas_limit, gradient2_limit or
    /// gradient_controller, const) under the updater's lock; spins while an update runs.
    template <class F>
    decltype(auto) inspect(F&& f) const {
        while (m_updating.exchange(true, std::memory_order_acquire)) {
        }
        struct unlock {
            std::atomic<bool>& flag;
            ~unlock() { flag.store(false, std::memory_order_release); }
        } const guard{m_updating};
        return std::visit(
            [&](auto const& c) -> decltype(auto) {
                if constexpr (requires { c.algorithm(); }) {
                    return std::forward<F>(f)(c.algorithm());
                } else {
                    return std::forward<F>(f)(c);
                }
            },
            m_controller);
    }

    /// Re-evaluates the algorithm at the clock's now (acquisitions and completions do it too).
    void poll() { maybe_update(now_ns()); }

    /// Returns the options the limit was built with.
    adaptive_limit_options const& options() const noexcept { return m_options; }

    /// Returns the sleeper queued calls wait through (the async pipeline waits on its clock).
    Sleeper const& sleeper() const noexcept { return m_sleeper; }

private:
    using controller =
        std::variant<detail::netflix_window<vegas_limit>, detail::netflix_window<gradient2_limit>,
                     detail::netflix_window<aimd_limit>, gradient_controller>;

    struct alignas(64) partition_state {
        std::atomic<int> in_flight{0};
        std::atomic<int> limit{1};
    };

    std::int64_t now_ns() const noexcept { return detail::to_ns(m_clock.now()); }

    static double window_percentile(adaptive_limit_options const& o) noexcept {
        if (auto const* g = std::get_if<gradient_controller_options>(&o.algorithm)) {
            return g->sample_percentile;
        }
        return o.window.percentile;
    }

    static controller make_controller(adaptive_limit_options const& o, std::int64_t now,
                                      Random& random) {
        detail::netflix_window_timing const timing{o.window.min_window.count(),
                                                   o.window.max_window.count(),
                                                   o.window.window_size, o.window.percentile > 0};
        validate_window(o);
        return std::visit(
            [&](auto const& a) -> controller {
                using A = std::decay_t<decltype(a)>;
                if constexpr (std::is_same_v<A, vegas_options>) {
                    return detail::netflix_window<vegas_limit>{vegas_limit{a, random()}, timing};
                } else if constexpr (std::is_same_v<A, gradient2_options>) {
                    return detail::netflix_window<gradient2_limit>{gradient2_limit{a}, timing};
                } else if constexpr (std::is_same_v<A, aimd_options>) {
                    return detail::netflix_window<aimd_limit>{aimd_limit{a}, timing};
                } else {
                    return gradient_controller{a, now, [seed = random()]() mutable {
                                                   seed += 0x9e3779b97f4a7c15ULL;
                                                   return xoshiro256ss{seed}();
                                               }};
                }
            },
            o.algorithm);
    }

    static void validate_window(adaptive_limit_options const& o) {
        constexpr std::string_view component = "keel::adaptive_limit";
        auto const& w = o.window;
        if (w.min_window < std::chrono::milliseconds{100}) {
            detail::invalid_option(component, "window.min_window", ">= 100ms", w.min_window);
        }
        if (w.max_window < w.min_window) {
            detail::invalid_option(component, "window.max_window", ">= window.min_window",
                                   w.max_window);
        }
        if (w.window_size < 10) {
            detail::invalid_option(component, "window.window_size", ">= 10", w.window_size);
        }
        if (w.min_rtt_threshold < std::chrono::nanoseconds::zero()) {
            detail::invalid_option(component, "window.min_rtt_threshold", ">= 0",
                                   w.min_rtt_threshold);
        }
        if (!(w.percentile >= 0.0 && w.percentile <= 1.0)) {
            detail::invalid_option(component, "window.percentile", "0 or in (0, 1]", w.percentile);
        }
    }

    static void validate(adaptive_limit_options const& o) {
        constexpr std::string_view component = "keel::adaptive_limit";
        auto const& q = o.queue;
        if (q.max_queued < 0) {
            detail::invalid_option(component, "queue.max_queued", ">= 0", q.max_queued);
        }
        if (q.max_queued > 0 && q.max_wait <= std::chrono::nanoseconds::zero()) {
            detail::invalid_option(component, "queue.max_wait", "> 0 when queue.max_queued > 0",
                                   q.max_wait);
        }
        if (q.codel_target <= std::chrono::nanoseconds::zero()) {
            detail::invalid_option(component, "queue.codel_target", "> 0", q.codel_target);
        }
        if (q.codel_interval <= q.codel_target) {
            detail::invalid_option(component, "queue.codel_interval", "> queue.codel_target",
                                   q.codel_interval);
        }
        double total = 0;
        for (auto const& p : o.partitions) {
            if (!(p.share > 0.0 && p.share <= 1.0)) {
                detail::invalid_option(component, "partitions[" + p.name + "].share", "in (0, 1]",
                                       p.share);
            }
            total += p.share;
        }
        if (total > 1.0 + 1e-9) {
            detail::invalid_option(component, "the sum of partition shares", "<= 1", total);
        }
    }

    // Returns the in-flight count the admission made, 0 if the limit refused.
    int admit(std::size_t partition) noexcept {
        if (partition < m_partitions.size()) {
            auto& p = m_partitions[partition];
            // Its guaranteed share first (the total may then exceed the limit by the shares
            // other partitions do not use: AbstractPartitionedLimiter admits a partition below
            // its share whatever the total), then what is left of the limit.
            int seen = p.in_flight.load(std::memory_order_relaxed);
            while (seen < p.limit.load(std::memory_order_relaxed)) {
                if (p.in_flight.compare_exchange_weak(seen, seen + 1, std::memory_order_relaxed)) {
                    return m_in_flight.fetch_add(1, std::memory_order_acquire) + 1;
                }
            }
            int const total = take_slot();
            if (total != 0) {
                p.in_flight.fetch_add(1, std::memory_order_relaxed);
            }
            return total;
        }
        return take_slot();
    }

    int take_slot() noexcept {
        int seen = m_in_flight.load(std::memory_order_seq_cst);
        while (seen < m_limit.load(std::memory_order_relaxed)) {
            if (m_in_flight.compare_exchange_weak(seen, seen + 1, std::memory_order_seq_cst,
                                                  std::memory_order_seq_cst)) {
                return seen + 1;
            }
        }
        return 0;
    }

    enqueue_result grant_now(detail::limit_waiter& w, std::int64_t now, int in_flight) noexcept {
        if (in_flight == 0) {
            return enqueue_result::rejected;
        }
        if (w.partition < m_partitions.size()) {
            // admit() counted the partition already; claim() will count it again.
            m_partitions[w.partition].in_flight.fetch_sub(1, std::memory_order_relaxed);
        }
        w.in_flight = in_flight;
        w.granted_ns = now;
        w.status = detail::limit_waiter::state::granted;
        return enqueue_result::granted;
    }

    void dispatch_locked(std::int64_t now) {
        m_queue.dispatch_locked(
            now, [this]() noexcept { return take_slot(); },
            [this]() noexcept { m_in_flight.fetch_sub(1, std::memory_order_seq_cst); });
        m_queued.store(static_cast<int>(m_queue.size()), std::memory_order_seq_cst);
    }

    void dispatch(std::int64_t now) {
        std::lock_guard lock{m_mutex};
        dispatch_locked(now);
    }

    void finish(std::int64_t start_ns, int in_flight, std::size_t partition,
                limit_result result) noexcept {
        std::int64_t const now = now_ns();
        if (result != limit_result::ignored &&
            start_ns >= m_epoch_ns.load(std::memory_order_relaxed)) {
            std::int64_t const rtt = now - start_ns;
            if (result == limit_result::dropped && !m_sample_drops) {
                m_window.add_dropped(in_flight);
            } else if (rtt >= m_min_rtt_threshold_ns) {
                m_window.add(rtt, in_flight);
            }
        }
        if (partition < m_partitions.size()) {
            m_partitions[partition].in_flight.fetch_sub(1, std::memory_order_relaxed);
        }
        m_in_flight.fetch_sub(1, std::memory_order_seq_cst);
        // seq_cst pairs with try_enqueue's store of m_queued then dispatch: either it sees
        // this slot free, or this load sees the waiter.
        if (m_queued.load(std::memory_order_seq_cst) != 0) {
            try {
                dispatch(now);
            } catch (...) { // std::mutex::lock failing: the waiter's own wait bounds it
            }
        }
        maybe_update(now);
    }

    void maybe_update(std::int64_t now) noexcept {
        std::int64_t const close_at = m_close_at.load(std::memory_order_relaxed);
        if (now < m_next_check_ns.load(std::memory_order_relaxed) &&
            (close_at == 0 || m_window.count() < close_at)) {
            return;
        }
        if (m_updating.load(std::memory_order_relaxed) ||
            m_updating.exchange(true, std::memory_order_acquire)) {
            return; // another thread is updating: never wait for it
        }
        int const before = limit();
        int after = before;
        try {
            after = std::visit(
                [&](auto& c) {
                    c.check(now, m_window);
                    m_next_check_ns.store(c.next_check_ns(), std::memory_order_relaxed);
                    m_close_at.store(c.close_at_count(), std::memory_order_relaxed);
                    m_epoch_ns.store(c.epoch_ns(), std::memory_order_relaxed);
                    return c.limit();
                },
                m_controller);
        } catch (...) { // a user's Vegas function threw: keep the limit
        }
        if (after != before) {
            publish(after);
        }
        m_updating.store(false, std::memory_order_release);
        if (after > before && m_queued.load(std::memory_order_seq_cst) != 0) {
            try {
                dispatch(now);
            } catch (...) { // as in finish()
            }
        }
    }

    void publish(int limit) noexcept {
        m_limit.store(limit, std::memory_order_relaxed);
        for (std::size_t i = 0; i < m_partitions.size(); ++i) {
            double const share = m_options.partitions[i].share;
            int const reserved = static_cast<int>(std::ceil(static_cast<double>(limit) * share));
            m_partitions[i].limit.store(std::max(1, reserved), std::memory_order_relaxed);
        }
    }

    adaptive_limit_options m_options;
    [[no_unique_address]] Clock m_clock;
    [[no_unique_address]] Sleeper m_sleeper;
    [[no_unique_address]] Random m_random;
    // The hot words, each on its own line: admissions, the limit and its due time.
    alignas(64) std::atomic<int> m_in_flight{0};
    alignas(64) std::atomic<int> m_limit{1};
    std::atomic<std::int64_t> m_next_check_ns{std::numeric_limits<std::int64_t>::min()};
    std::atomic<std::int64_t> m_close_at{0};
    std::atomic<std::int64_t> m_epoch_ns{std::numeric_limits<std::int64_t>::min()};
    std::int64_t m_min_rtt_threshold_ns = 0;
    bool m_sample_drops = false;
    alignas(64) std::atomic<int> m_queued{0};
    mutable std::atomic<bool> m_updating{false};
    alignas(64) detail::sample_window m_window;
    controller m_controller;
    mutable std::mutex m_mutex;
    detail::codel_queue m_queue;
    std::vector<partition_state> m_partitions;
};

/// An adaptive limit on keel::steady_clock, waiting with keel::real_sleeper.
using adaptive_limit = basic_adaptive_limit<>;

/// Classifies a guarded call's outcome for an adaptive limit: a value is a success,
/// errc::timeout (and keel's own overload rejections from further in) a drop,
/// errc::cancelled and any other failure ignored (a fast error says nothing about capacity;
/// Netflix's gRPC interceptors likewise sample only OK and drop on deadline exceeded).
struct classify_for_limit {
    /// Returns how `result` feeds the limit.
    template <class R>
    limit_result operator()(outcome<R> const& result) const noexcept {
        if (result.has_value()) {
            return limit_result::success;
        }
        auto const code = result.error();
        if (code == errc::timeout || code == errc::bulkhead_full || code == errc::rate_limited) {
            return limit_result::dropped;
        }
        return limit_result::ignored;
    }
};

/// The policy keel::guard(limit) returns: takes a permit before the inner pipeline (waiting
/// in the limit's queue if it has one) and completes it with the classified outcome, even
/// when the inner pipeline throws (then ignored).
///
/// Holds a pointer to the limit, which must outlive it. Thread-safe.
template <class Limit, class Classifier = classify_for_limit>
class adaptive_limit_policy {
public:
    using clock_type = typename Limit::clock_type;

    /// Guards with `limit`, classifying with `classify`, in `partition`.
    adaptive_limit_policy(Limit& limit, Classifier classify, std::size_t partition)
        : m_limit(&limit), m_classify(std::move(classify)), m_partition(partition) {}

    /// Runs `next` holding a permit, or returns errc::bulkhead_full / errc::cancelled.
    template <class Next, class Context>
    auto execute(Next const& next, Context const& ctx) const -> decltype(next(ctx)) {
        using result_type = decltype(next(ctx));
        typename Limit::permit permit = m_limit->try_acquire(m_partition);
        if (!permit) {
            std::error_code code;
            try {
                code = m_limit->acquire(permit, ctx.stop_token(), m_partition);
            } catch (...) { // the queue's allocation or the sleeper
                return result_type{failure::from_current_exception()};
            }
            if (code) {
                return result_type{failure{code, nullptr, std::nullopt}};
            }
        }
        result_type result = next(ctx);
        permit.complete(classify(result));
        return result;
    }

    /// Returns how `result` feeds the limit (a throwing classifier: ignored). Both pipelines
    /// call it.
    template <class R>
    limit_result classify(outcome<R> const& result) const noexcept {
        try {
            return m_classify(result);
        } catch (...) { // NOLINT(bugprone-empty-catch): a throwing classifier samples nothing
        }
        return limit_result::ignored;
    }

    /// Returns the partition the guarded calls take their permits in.
    std::size_t partition() const noexcept { return m_partition; }

    /// Returns the guarded limit.
    Limit& target() const noexcept { return *m_limit; }

private:
    Limit* m_limit;
    [[no_unique_address]] Classifier m_classify;
    std::size_t m_partition;
};

/// Options of keel::guard(adaptive_limit, ...).
struct adaptive_guard_options {
    /// Default "": no partition. The partition the guarded calls belong to.
    std::string_view partition{};
};

/// Returns the policy guarding with `limit` and letting `classify` map each
/// `outcome<R> const&` to a keel::limit_result (an HTTP 503 as dropped, say).
template <class Clock, class Sleeper, class Random, class Classifier>
requires(!std::same_as<std::remove_cvref_t<Classifier>, adaptive_guard_options>)
    adaptive_limit_policy<basic_adaptive_limit<Clock, Sleeper, Random>, Classifier> guard(
        basic_adaptive_limit<Clock, Sleeper, Random>& limit, Classifier classify,
        adaptive_guard_options options = {}) {
    using limit_type = basic_adaptive_limit<Clock, Sleeper, Random>;
    std::size_t partition = limit_type::no_partition;
    if (!options.partition.empty()) {
        partition = limit.partition(options.partition);
        if (partition == limit_type::no_partition) {
            detail::invalid_option("keel::guard(adaptive_limit)", "partition",
                                   "a partition of the limit", options.partition);
        }
    }
    return adaptive_limit_policy<limit_type, Classifier>{limit, std::move(classify), partition};
}

/// Returns the policy guarding a pipeline with `limit` (shared by reference), classifying
/// outcomes with keel::classify_for_limit; `options.partition` names a partition of it
/// (throws std::invalid_argument for an unknown name).
template <class Clock, class Sleeper, class Random>
adaptive_limit_policy<basic_adaptive_limit<Clock, Sleeper, Random>>
guard(basic_adaptive_limit<Clock, Sleeper, Random>& limit, adaptive_guard_options options = {}) {
    return guard(limit, classify_for_limit{}, options);
}

KEEL_END_NAMESPACE
