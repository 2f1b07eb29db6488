// SPDX-License-Identifier: MIT
// keel::sim::run: a deterministic discrete-event simulation of a keel pipeline
// against a modelled downstream, in virtual time. Each stage is keel's own policy
// object (keel::retry, keel::basic_timeout, keel::guard of a breaker, bulkhead or
// token bucket) on a keel::manual_clock that the event loop sets to each event's
// time, and each decision comes from the functions both of keel's pipelines call
// (retry::start and its schedule, timeout::deadline_from, the breaker policy's
// rejection and complete, rate_limit::admit). Each simulated call's pipeline runs
// as coroutines that suspend where the sync pipeline would block (the call in
// flight, a backoff or rate-limit wait), so thousands of calls interleave in time
// order on one thread. Same seed, same result.
#pragma once

#include <keel/core/context.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/core/random.hpp>
#include <keel/detail/time.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/policy/backoff.hpp>
#include <keel/policy/bulkhead.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/predicate.hpp>
#include <keel/policy/rate_limit.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/retry_budget.hpp>
#include <keel/policy/timeout.hpp>
#include <keel/sim/detail/event_queue.hpp>
#include <keel/sim/detail/histogram.hpp>
#include <keel/sim/detail/task.hpp>
#include <keel/sim/scenario.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace sim {

/// Enumerates how the modelled downstream fails a call (category "keel.sim").
enum class errc : int {
    server_error = 1,        ///< The instance served the call and failed it (an HTTP 500).
    overloaded = 2,          ///< The instance's queue was full (an HTTP 503).
    connection_refused = 3,  ///< The instance is down and refuses connections.
    no_healthy_upstream = 4, ///< The load balancer had no instance in rotation.
    abandoned = 5,           ///< The caller's deadline fired while the call was in flight.
};

/// Returns the category of the simulated downstream's errors, named "keel.sim".
inline std::error_category const& error_category() noexcept {
    class category final : public std::error_category {
    public:
        char const* name() const noexcept override { return "keel.sim"; }
        std::string message(int code) const override {
            switch (static_cast<errc>(code)) {
            case errc::server_error: return "server error";
            case errc::overloaded: return "overloaded: queue full";
            case errc::connection_refused: return "connection refused";
            case errc::no_healthy_upstream: return "no healthy upstream";
            case errc::abandoned: return "abandoned at the deadline";
            }
            return "unknown keel.sim error " + std::to_string(code);
        }
    };
    static category const instance;
    return instance;
}

/// Makes a std::error_code in the simulator's category.
inline std::error_code make_error_code(errc code) noexcept {
    return {static_cast<int>(code), error_category()};
}

} // namespace sim

KEEL_END_NAMESPACE

template <>
struct std::is_error_code_enum<keel::sim::errc> : std::true_type {};

KEEL_BEGIN_NAMESPACE

namespace sim {

/// Counts what happened in one interval of the series (calls by the interval they
/// started in; outcomes by the interval they ended in).
struct interval_stats {
    std::uint64_t requests = 0;         ///< Logical calls started.
    std::uint64_t succeeded = 0;        ///< Calls that ended with a value.
    std::uint64_t failed = 0;           ///< Calls that ended with a downstream error.
    std::uint64_t timed_out = 0;        ///< Calls that ended with errc::timeout.
    std::uint64_t shed = 0;             ///< Calls rejected by a breaker (errc::circuit_open).
    std::uint64_t rate_limited = 0;     ///< Calls rejected by a rate limit.
    std::uint64_t budget_exhausted = 0; ///< Calls whose retry the budget refused.
    std::uint64_t bulkhead_full = 0;    ///< Calls rejected by a bulkhead.
    std::uint64_t attempts = 0;         ///< Calls sent to the downstream (retries included).
    std::uint64_t probes = 0;           ///< Calls a half-open breaker admitted.
    double capacity = 0;      ///< Calls the instances in service could serve in the interval.
    std::uint64_t queued = 0; ///< Calls waiting in queues at the interval's start.
    int in_rotation = 0;      ///< Instances in rotation at the interval's start.
    int open_breakers = 0;    ///< Breakers open or half-open at the interval's start.

    /// Returns the calls that ended in the interval.
    std::uint64_t completed() const noexcept {
        return succeeded + failed + timed_out + shed + rate_limited + budget_exhausted +
               bulkhead_full;
    }
};

/// Records one breaker state change.
struct breaker_event {
    nanoseconds at{};     ///< When, since the start.
    int owner = 0;        ///< The object set (the client, or 0 when shared).
    circuit_state from{}; ///< The state left.
    circuit_state to{};   ///< The state entered.
    circuit_reason why{}; ///< Why.
};

/// Records an instance entering or leaving the load balancer's rotation.
struct rotation_event {
    nanoseconds at{};        ///< When, since the start.
    int instance = 0;        ///< Which.
    bool in_rotation = true; ///< Entered (true) or left.
};

/// Sums up a run.
struct summary {
    std::uint64_t requests = 0;         ///< Logical calls started.
    std::uint64_t succeeded = 0;        ///< Ended with a value.
    std::uint64_t failed = 0;           ///< Ended with a downstream error.
    std::uint64_t timed_out = 0;        ///< Ended with errc::timeout.
    std::uint64_t shed = 0;             ///< Rejected by a breaker.
    std::uint64_t rate_limited = 0;     ///< Rejected by a rate limit.
    std::uint64_t budget_exhausted = 0; ///< Retry refused by the budget.
    std::uint64_t bulkhead_full = 0;    ///< Rejected by a bulkhead.
    std::uint64_t in_flight = 0;        ///< Still running when the run ended.
    std::uint64_t attempts = 0;         ///< Calls sent to the downstream.
    std::uint64_t retries = 0;          ///< Extra attempts made by retry stages, all layers.
    std::uint64_t abandoned_work = 0;   ///< Calls the downstream served after their caller left.
    double amplification = 0;           ///< attempts / requests.
    double goodput = 0;                 ///< Succeeded calls per second over the run.
    double goodput_after = 0;           ///< Succeeded per second from outage_end to the end.
    nanoseconds p50{};                  ///< Median latency of ended calls (all outcomes).
    nanoseconds p99{};                  ///< 99th percentile latency of ended calls.
    nanoseconds max{};                  ///< Largest latency of an ended call.
    /// First breaker rejection at or after outage_start, as time since outage_start.
    std::optional<nanoseconds> detection{};
    /// First instance leaving rotation at or after outage_start, since outage_start.
    std::optional<nanoseconds> removal{};
    /// Calls that failed or timed out from outage_start until the first breaker opened
    /// after it (or until the end, if none opened).
    std::uint64_t failed_before_open = 0;
    /// Calls that failed or timed out from outage_start until the first instance left
    /// rotation after it (or until the end).
    std::uint64_t failed_before_removal = 0;
    /// First breaker closing at or after outage_end, since outage_end.
    std::optional<nanoseconds> breaker_closed{};
    /// From outage_end to the start of the first interval from which the success ratio
    /// stays at >= 90 % of its level before the outage for three intervals.
    std::optional<nanoseconds> recovery{};
    double peak_probe_rate = 0; ///< Most half-open admissions per second in one interval.
};

/// What a run produced: the summary, the per-interval series and the events.
struct result {
    std::string name;                         ///< The scenario's name.
    nanoseconds interval{};                   ///< Width of each series entry.
    nanoseconds duration{};                   ///< The scenario's duration.
    int instances = 1;                        ///< The downstream's instances.
    nanoseconds outage_start{};               ///< As used for detection.
    nanoseconds outage_end{};                 ///< As used for recovery.
    summary totals{};                         ///< The summary.
    std::vector<interval_stats> series{};     ///< One entry per interval.
    std::vector<breaker_event> transitions{}; ///< Every breaker transition, in time order.
    std::vector<rotation_event> rotation{};   ///< Every rotation change, in time order.
};

/// Describes one step of a simulated call, for an optional trace.
struct trace_event {
    /// Enumerates the steps traced.
    enum class kind : std::uint8_t {
        attempt = 0,  ///< A call went to the downstream.
        answered = 1, ///< The downstream's answer (or the abandonment) reached the caller.
        ended = 2,    ///< The logical call ended with `code`.
    };
    kind what = kind::attempt; ///< The step.
    nanoseconds at{};          ///< When, since the start.
    std::uint64_t call = 0;    ///< The logical call's number, from 0 in start order.
    std::error_code code{};    ///< The outcome (empty for success or an attempt).
    int attempts = 0;          ///< For `ended`: the outcome's attempts() (keel::call_stats).
    nanoseconds waited{};      ///< For `ended`: the outcome's waited() (keel::call_stats).
};

/// Returns the seed of random stream `stream` of a run seeded `seed` (splitmix64):
/// the run draws arrivals, service times, think times and each policy's jitter from
/// separate streams, so changing the pipeline leaves the arrivals as they were.
constexpr std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream) noexcept {
    std::uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (stream + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/// Returns the stream number the policy at `stage` of object set `owner` draws its
/// jitter from (a breaker's reset jitter, a retry's backoff jitter).
constexpr std::uint64_t stage_stream(int owner, std::size_t index) noexcept {
    return 1000 + static_cast<std::uint64_t>(owner) * 64 + index;
}

/// Runs `s` and returns what happened; `trace`, if set, sees every attempt, answer
/// and end of a logical call. Throws std::invalid_argument for a bad scenario or
/// policy option (keel's own constructors check the policies). Deterministic: the
/// same scenario gives the same result on every run and platform.
result run(scenario const& s, std::function<void(trace_event const&)> const& trace = {});

// ---------------------------------------------------------------------------
// Implementation.

namespace detail {

using sim_clock = manual_clock;
using sim_context = basic_context<sim_clock>;
using sim_breaker = basic_circuit_breaker<sim_clock, xoshiro256ss>;
using sim_breaker_guard = circuit_breaker_policy<sim_breaker>;
using sim_budget = basic_retry_budget<sim_clock>;
using sim_retry = retry<on_failure, sim_clock, virtual_sleeper, xoshiro256ss>;
using sim_timeout = basic_timeout<sim_clock>;
using sim_bulkhead = basic_bulkhead<virtual_sleeper>;
using sim_bulkhead_guard = bulkhead_policy<virtual_sleeper>;
using sim_bucket = basic_token_bucket<sim_clock>;
using sim_rate_limit = rate_limit<sim_bucket, virtual_sleeper>;

inline constexpr std::int64_t no_deadline = std::numeric_limits<std::int64_t>::max();

// The policy of one stage, as a service builds it (only the one its stage kind
// names is set), and the breaker, budget, bulkhead or bucket it guards with.
struct stage_objects {
    std::unique_ptr<sim_breaker> breaker;
    std::optional<sim_breaker_guard> breaker_guard;
    std::unique_ptr<sim_budget> budget;
    std::optional<sim_retry> retry;
    std::optional<sim_timeout> timeout;
    std::unique_ptr<sim_bulkhead> bulkhead;
    std::optional<sim_bulkhead_guard> bulkhead_guard;
    std::unique_ptr<sim_bucket> bucket;
    std::optional<sim_rate_limit> rate_limit;
};

// One set of shared objects: per group, or per client.
struct object_set {
    int owner = 0;
    std::vector<stage_objects> stages;
};

struct client_state {
    std::size_t group = 0;
    object_set* objects = nullptr;
};

struct job {
    std::uint32_t slot = 0;
    std::uint32_t gen = 0;
};

struct instance_state {
    int index = 0;
    int busy = 0;
    std::uint32_t epoch = 0; // raised when the instance goes down: its work is lost
    std::deque<job> queue;
    bool in_rotation = true;
    int probe_failures = 0;
    int probe_successes = 0;
    std::vector<phase const*> phases; // the phases that apply to it, by start
    std::size_t phase_index = 0;      // phases[phase_index - 1] is current (0: healthy)
    bool was_down = false;
};

// The state of an instance at one time, from its phases.
struct instance_condition {
    bool down = false;
    down_mode mode = down_mode::refused;
    double failure_probability = 0;
    double latency_factor = 1;
    double capacity_factor = 1;
};

class engine;

// Awaits the downstream's answer to one attempt, or the attempt's deadline.
struct downstream_call {
    engine* sim;
    std::int64_t deadline;
    std::uint64_t call;
    std::error_code answer{};
    std::coroutine_handle<> waiter{};

    bool await_ready();
    void await_suspend(std::coroutine_handle<> h) noexcept { waiter = h; }
    outcome<void> await_resume() const {
        if (!answer) {
            return outcome<void>{};
        }
        return outcome<void>{keel::failure{answer}};
    }
};

// Suspends until a time, as the sync pipeline's sleeper would block.
struct sleep_until {
    engine* sim;
    std::int64_t at;
    bool await_ready() const noexcept;
    void await_suspend(std::coroutine_handle<> h);
    void await_resume() const noexcept {}
};

class engine {
public:
    enum kind : std::uint8_t {
        resume_event = 0,
        arrival_event = 1,
        wake_event = 2,
        served_event = 3,
        deadline_event = 4,
        probe_event = 5,
        probe_answer_event = 6,
        condition_event = 7,
        sample_event = 8,
        wait_end_event = 9,
    };

    engine(scenario const& s, std::function<void(trace_event const&)> const& trace)
        : m_s(s), m_trace(trace), m_clock(), m_downstream_random(derive_seed(s.seed, 1)),
          m_think_random(derive_seed(s.seed, 2)) {
        validate(s);
        m_end = detail_ns(s.duration);
        m_stop = keel::detail::saturating_add(m_end, detail_ns(s.drain));
        m_interval = detail_ns(s.interval);
        m_series.resize(static_cast<std::size_t>((m_stop - 1) / m_interval + 1));
        m_result.name = s.name;
        m_result.interval = s.interval;
        m_result.duration = s.duration;
        m_result.instances = s.downstream.instances;
        find_outage();
        build_instances();
        build_clients();
    }

    result run() {
        std::exception_ptr failure;
        detached::promise_type::sink = &failure;
        start();
        while (!m_events.empty() && m_events.top().at <= m_stop && !failure) {
            step();
        }
        finish();
        // Calls still in flight hold permits and coroutine frames: answer them all as
        // abandoned and let them run to their ends (retries find every attempt
        // abandoned at once), so every frame is freed and nothing is counted.
        m_tearing_down = true;
        for (std::uint32_t s = 0; s < m_slots.size() && !failure; ++s) {
            if (m_slots[s].call != nullptr) {
                answer(s, make_error_code(errc::abandoned));
            }
        }
        while (!m_events.empty() && !failure) {
            step();
        }
        detached::promise_type::sink = nullptr;
        if (failure) {
            std::rethrow_exception(failure);
        }
        return std::move(m_result);
    }

    engine(engine const&) = delete;
    engine& operator=(engine const&) = delete;
    ~engine() = default;

    // --- used by the awaitables ---------------------------------------------------

    std::int64_t now() const noexcept { return m_now; }

    void schedule(std::int64_t at, std::uint8_t what, void* target, std::uint32_t index = 0,
                  std::uint32_t gen = 0, std::uint32_t epoch = 0, std::uint8_t flag = 0) {
        m_events.push(event{at, 0, target, index, gen, epoch, what, flag});
    }

    void park(std::coroutine_handle<> h, std::int64_t at) {
        schedule(at, resume_event, h.address());
    }

    // Starts an attempt; returns true if it is answered at once (call.answer set).
    bool begin_call(downstream_call& call) {
        if (m_tearing_down) {
            call.answer = make_error_code(errc::abandoned);
            return true;
        }
        ++m_result.totals.attempts;
        ++m_series[index_of(m_now)].attempts;
        trace(trace_event::kind::attempt, call.call, {});
        instance_state* target = route();
        if (target == nullptr) {
            return answer_now(call, errc::no_healthy_upstream);
        }
        instance_condition const cond = condition_of(*target);
        if (cond.down && cond.mode == down_mode::refused) {
            return answer_now(call, errc::connection_refused);
        }
        bool serve_now = false;
        if (!cond.down) {
            serve_now = target->busy < servers_of(cond);
            if (!serve_now &&
                target->queue.size() >= static_cast<std::size_t>(m_s.downstream.queue_limit)) {
                return answer_now(call, errc::overloaded);
            }
        }
        std::uint32_t const index = acquire_slot(call, target->index);
        if (call.deadline != no_deadline) {
            schedule(call.deadline, deadline_event, nullptr, index, m_slots[index].gen);
        }
        if (cond.down) {
            return false; // hung: only the deadline answers
        }
        job const j{index, m_slots[index].gen};
        if (serve_now) {
            start_service(*target, j, cond);
        } else {
            target->queue.push_back(j);
        }
        return false;
    }

    // The coroutine of one stage of a call's pipeline (and, past the last, the call).
    task<outcome<void>> run_stage(object_set& objects, std::size_t index, sim_context ctx,
                                  std::uint64_t call) {
        if (index == m_s.pipeline.size()) {
            auto const deadline = ctx.deadline();
            co_return co_await downstream_call{
                this, deadline ? deadline->time_since_epoch().count() : no_deadline, call};
        }
        stage_objects& live = objects.stages[index];
        static_assert(std::is_same_v<std::variant_alternative_t<0, stage>, breaker_stage> &&
                      std::is_same_v<std::variant_alternative_t<1, stage>, retry_stage> &&
                      std::is_same_v<std::variant_alternative_t<2, stage>, timeout_stage> &&
                      std::is_same_v<std::variant_alternative_t<3, stage>, bulkhead_stage> &&
                      std::is_same_v<std::variant_alternative_t<4, stage>, rate_limit_stage>);
        switch (m_s.pipeline[index].index()) {
        case 0: co_return co_await run_breaker(objects, live, index, ctx, call);
        case 1: co_return co_await run_retry(objects, live, index, ctx, call);
        case 2: co_return co_await run_timeout(objects, live, index, ctx, call);
        case 3: co_return co_await run_bulkhead(objects, live, index, ctx, call);
        default: co_return co_await run_rate_limit(objects, live, index, ctx, call);
        }
    }

private:
    static std::int64_t detail_ns(nanoseconds d) noexcept { return d.count(); }

    // A call queued in a bulkhead: resumed once, by the first of its wake (release()
    // handing it a slot) and its timer; both name (slot, generation), so the later
    // one finds the slot moved on.
    struct bulkhead_wait : bulkhead_waiter {
        bulkhead_wait(engine* owner, std::int64_t end) : sim(owner), until(end) {
            wake = [](bulkhead_waiter& w) noexcept {
                auto& self = static_cast<bulkhead_wait&>(w);
                self.sim->schedule_wait_end(self.slot, self.sim->m_now);
            };
        }
        engine* sim;
        std::int64_t until;
        std::uint32_t slot = 0;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) {
            slot = sim->park_waiter(h);
            sim->schedule_wait_end(slot, until);
        }
        void await_resume() const noexcept {}
    };

    struct wait_slot {
        std::coroutine_handle<> waiter{};
        std::uint32_t gen = 0;
    };

    std::uint32_t park_waiter(std::coroutine_handle<> h) {
        std::uint32_t index = 0;
        if (!m_free_waits.empty()) {
            index = m_free_waits.back();
            m_free_waits.pop_back();
        } else {
            index = static_cast<std::uint32_t>(m_waits.size());
            m_waits.push_back(wait_slot{});
        }
        m_waits[index].waiter = h;
        return index;
    }

    // Noexcept for the wake hook: the heap's growth failing leaves no way to resume.
    void schedule_wait_end(std::uint32_t slot, std::int64_t at) noexcept {
        schedule(at, wait_end_event, nullptr, slot, m_waits[slot].gen);
    }

    void on_wait_end(event const& e) {
        wait_slot& w = m_waits[e.index];
        if (w.gen != e.gen || !w.waiter) {
            return;
        }
        std::coroutine_handle<> const h = w.waiter;
        w.waiter = {};
        ++w.gen;
        m_free_waits.push_back(e.index);
        h.resume();
    }

    // The state of the stop token a timeout hands its inner stages, which fires at
    // the deadline (the only stop source in a simulation: no caller cancels), so
    // the context carries none and this stands for ctx.stop_requested().
    bool stop_requested(sim_context const& ctx) const noexcept {
        auto const deadline = ctx.deadline();
        return deadline && m_now >= deadline->time_since_epoch().count();
    }

    // The stages below are the loops of the policies' execute() (and of keel::asio's
    // async_policy) over the same decision functions; what differs is only how they
    // wait: co_await on this event loop instead of a sleeper or an Asio timer.

    // keel::guard(breaker): the policy's permit, rejection() and complete().
    task<outcome<void>> run_breaker(object_set& objects, stage_objects& live, std::size_t index,
                                    sim_context ctx, std::uint64_t call) {
        sim_breaker_guard const& policy = *live.breaker_guard;
        auto permit = policy.target().try_acquire();
        if (!permit) {
            note_shed();
            co_return sim_breaker_guard::rejection(permit);
        }
        if (permit.admitted_in() == circuit_state::half_open && !m_tearing_down) {
            ++m_series[index_of(m_now)].probes;
        }
        outcome<void> result = co_await run_stage(objects, index + 1, ctx, call);
        policy.complete(permit, result);
        co_return result;
    }

    // keel::retry: the schedule start() returns decides every retry (the predicate,
    // attempts, backoff and jitter, Retry-After, max_duration and the deadline, the
    // budget and its refusal) and records the call's stats; the stage only waits.
    task<outcome<void>> run_retry(object_set& objects, stage_objects& live, std::size_t index,
                                  sim_context ctx, std::uint64_t call) {
        auto plan = live.retry->start(ctx);
        outcome<void> result = co_await run_stage(
            objects, index + 1, ctx.attempt() == 1 ? ctx : ctx.with_attempt(1), call);
        if (plan.retryable(result)) {
            // next_delay() never asks for a wait past the deadline, so no wait is
            // interrupted; nothing here throws (no on_retry listener), so execute()'s
            // catch has no twin.
            while (auto const delay = plan.next_delay(result, stop_requested(ctx))) {
                co_await sleep_until{this, keel::detail::saturating_add(m_now, delay->count())};
                if (!m_tearing_down) {
                    ++m_result.totals.retries;
                }
                result =
                    co_await run_stage(objects, index + 1, ctx.with_attempt(plan.attempt()), call);
                if (!plan.retryable(result)) {
                    break;
                }
            }
            plan.finish(result);
        }
        co_return result;
    }

    // keel::timeout: the deadline from deadline_from(), the outcome from settle(); the downstream
    // call's deadline event stands for the stop token that fires at it.
    task<outcome<void>> run_timeout(object_set& objects, stage_objects& live, std::size_t index,
                                    sim_context ctx, std::uint64_t call) {
        sim_timeout const& policy = *live.timeout;
        auto const start = policy.clock().now();
        auto const deadline = policy.deadline_from(start, ctx.deadline());
        if (deadline <= start) {
            co_return failure::from(keel::errc::timeout);
        }
        outcome<void> result = co_await run_stage(
            objects, index + 1, ctx.with_deadline(deadline, ctx.stop_token()), call);
        co_return sim_timeout::settle(std::move(result), policy.clock().now(), deadline);
    }

    // keel::guard(bulkhead): the bulkhead's try_acquire(), its queue (enqueue(),
    // withdraw(), release() waking the first waiter) and release(), as
    // basic_bulkhead::acquire() and keel::asio's bulkhead use them. The wait ends at
    // max_wait, the wake, or the deadline (where the sync wait's token fires).
    task<outcome<void>> run_bulkhead(object_set& objects, stage_objects& live, std::size_t index,
                                     sim_context ctx, std::uint64_t call) {
        sim_bulkhead& bulkhead = live.bulkhead_guard->target();
        if (!bulkhead.try_acquire()) {
            if (bulkhead.options().max_queued_calls == 0) {
                co_return failure::from(keel::errc::bulkhead_full);
            }
            std::int64_t until =
                keel::detail::saturating_add(m_now, bulkhead.options().max_wait.count());
            if (auto const deadline = ctx.deadline()) {
                until = std::min(until, deadline->time_since_epoch().count());
            }
            bulkhead_wait waiter{this, until};
            switch (bulkhead.enqueue(waiter)) {
            case sim_bulkhead::queue_result::admitted: break;
            case sim_bulkhead::queue_result::full:
                co_return failure::from(keel::errc::bulkhead_full);
            case sim_bulkhead::queue_result::queued:
                co_await waiter;
                if (!bulkhead.withdraw(waiter)) {
                    co_return failure::from(stop_requested(ctx) ? keel::errc::cancelled
                                                                : keel::errc::bulkhead_full);
                }
                break;
            }
        }
        outcome<void> result = co_await run_stage(objects, index + 1, ctx, call);
        bulkhead.release();
        co_return result;
    }

    // keel::guard(bucket, {.max_wait}): admit() runs, rejects or asks for a wait.
    task<outcome<void>> run_rate_limit(object_set& objects, stage_objects& live, std::size_t index,
                                       sim_context ctx, std::uint64_t call) {
        using admission = sim_rate_limit::admission;
        std::chrono::nanoseconds waited{0};
        for (;;) {
            admission step = live.rate_limit->admit(ctx, waited);
            if (step.verdict == admission::kind::run) {
                outcome<void> result = co_await run_stage(objects, index + 1, ctx, call);
                if (waited != std::chrono::nanoseconds::zero()) {
                    result.set_stats(
                        {result.attempts(), keel::detail::saturating_add(result.waited(), waited)});
                }
                co_return result;
            }
            if (step.verdict == admission::kind::reject) {
                co_return std::move(step.rejection);
            }
            co_await sleep_until{this, keel::detail::saturating_add(m_now, step.delay.count())};
            if (stop_requested(ctx)) {
                // A wait ending at the deadline: the sleeper saw the token fire.
                co_return failure::from(keel::errc::cancelled);
            }
            waited += step.delay;
        }
    }

    detached run_call(client_state& client) {
        std::int64_t const start = m_now;
        std::uint64_t const call = m_next_call++;
        ++m_result.totals.requests;
        ++m_series[index_of(start)].requests;
        ++m_in_flight;
        outcome<void> const result = co_await run_stage(*client.objects, 0, sim_context{}, call);
        if (m_tearing_down) {
            co_return;
        }
        --m_in_flight;
        end_call(result, start, call);
        auto const& group = m_s.clients[client.group];
        if (group.kind == arrival::closed) {
            schedule(keel::detail::saturating_add(m_now, think_time(group)), wake_event, &client);
        }
    }

    void end_call(outcome<void> const& result, std::int64_t start, std::uint64_t call) {
        auto& totals = m_result.totals;
        auto& bucket = m_series[index_of(m_now)];
        m_latency.record(m_now - start);
        if (m_trace) {
            m_trace(trace_event{trace_event::kind::ended, nanoseconds{m_now}, call,
                                result.has_value() ? std::error_code{} : result.error(),
                                result.attempts(), result.waited()});
        }
        if (result.has_value()) {
            ++totals.succeeded;
            ++bucket.succeeded;
            if (m_now >= m_outage_end_ns) {
                ++m_succeeded_after;
            }
            return;
        }
        std::error_code const code = result.error();
        bool downstream_failure = false;
        if (code == keel::errc::circuit_open) {
            ++totals.shed;
            ++bucket.shed;
        } else if (code == keel::errc::rate_limited || code == keel::errc::exceeds_capacity) {
            ++totals.rate_limited;
            ++bucket.rate_limited;
        } else if (code == keel::errc::retry_budget_exhausted) {
            ++totals.budget_exhausted;
            ++bucket.budget_exhausted;
            downstream_failure = true;
        } else if (code == keel::errc::bulkhead_full) {
            ++totals.bulkhead_full;
            ++bucket.bulkhead_full;
        } else if (code == keel::errc::timeout) {
            ++totals.timed_out;
            ++bucket.timed_out;
            downstream_failure = true;
        } else {
            ++totals.failed;
            ++bucket.failed;
            downstream_failure = true;
        }
        if (downstream_failure && m_now >= m_outage_start_ns) {
            if (!m_opened_after_outage) {
                ++totals.failed_before_open;
            }
            if (!m_removed_after_outage) {
                ++totals.failed_before_removal;
            }
        }
    }

    void note_shed() {
        if (!m_tearing_down && !m_first_shed && m_now >= m_outage_start_ns) {
            m_first_shed = m_now - m_outage_start_ns;
        }
    }

    void trace(trace_event::kind what, std::uint64_t call, std::error_code code) const {
        if (m_trace) {
            m_trace(trace_event{what, nanoseconds{m_now}, call, code});
        }
    }

    std::size_t index_of(std::int64_t t) const noexcept {
        auto const i = static_cast<std::size_t>(std::max<std::int64_t>(t, 0) / m_interval);
        return std::min(i, m_series.size() - 1);
    }

    // --- downstream -----------------------------------------------------------------

    instance_state* route() {
        if (m_rotation.empty()) {
            return nullptr;
        }
        std::size_t pick = 0;
        if (m_s.downstream.balancing == routing::random) {
            pick = static_cast<std::size_t>(uniform_unit(m_routing_random) *
                                            static_cast<double>(m_rotation.size()));
        } else {
            pick = m_next_instance++ % m_rotation.size();
        }
        return &m_instances[m_rotation[std::min(pick, m_rotation.size() - 1)]];
    }

    // Keeps m_rotation, the instances in rotation by index, in step with in_rotation.
    void set_rotation(instance_state& inst, bool in) {
        inst.in_rotation = in;
        m_rotation.clear();
        for (auto const& i : m_instances) {
            if (i.in_rotation) {
                m_rotation.push_back(static_cast<std::size_t>(i.index));
            }
        }
        m_result.rotation.push_back(rotation_event{nanoseconds{m_now}, inst.index, in});
    }

    instance_condition condition_of(instance_state& inst) {
        while (inst.phase_index < inst.phases.size() &&
               inst.phases[inst.phase_index]->start.count() <= m_now) {
            ++inst.phase_index;
        }
        instance_condition cond;
        if (inst.phase_index == 0) {
            return cond;
        }
        phase const& p = *inst.phases[inst.phase_index - 1];
        cond.down = p.down;
        cond.mode = p.mode;
        cond.failure_probability = p.failure_probability;
        cond.latency_factor = p.latency_factor;
        cond.capacity_factor = p.capacity_factor;
        if (p.flap_period > nanoseconds::zero()) {
            std::int64_t const turn = (m_now - p.start.count()) / p.flap_period.count();
            cond.down = turn % 2 == 0;
        }
        return cond;
    }

    int servers_of(instance_condition const& cond) const {
        return static_cast<int>(std::floor(m_s.downstream.servers * cond.capacity_factor + 1e-9));
    }

    std::int64_t draw_service(double factor) {
        auto const& st = m_s.downstream.service;
        double const mean = static_cast<double>(st.mean.count());
        double ns = mean;
        switch (st.shape) {
        case distribution::constant: break;
        case distribution::exponential:
            ns = -mean * std::log1p(-uniform_unit(m_downstream_random));
            break;
        case distribution::lognormal: {
            // Box-Muller from two draws; mu so that the mean is `mean`.
            double const u1 = 1.0 - uniform_unit(m_downstream_random);
            double const u2 = uniform_unit(m_downstream_random);
            double const z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
            double const mu = std::log(mean) - st.sigma * st.sigma / 2;
            ns = std::exp(mu + st.sigma * z);
            break;
        }
        }
        return std::max<std::int64_t>(1, static_cast<std::int64_t>(ns * factor));
    }

    void start_service(instance_state& inst, job j, instance_condition const& cond) {
        auto const& d = m_s.downstream;
        double factor = cond.latency_factor;
        if (d.overload_latency_penalty > 0 &&
            inst.queue.size() >= static_cast<std::size_t>(d.overload_queue)) {
            factor *= 1.0 + d.overload_latency_penalty;
        }
        double p = cond.failure_probability;
        if (d.load_failure_slope > 0) {
            p += d.load_failure_slope * static_cast<double>(inst.queue.size()) / d.servers;
        }
        bool fails = false;
        if (p >= 1.0) {
            fails = true;
        } else if (p > 0.0) {
            fails = uniform_unit(m_downstream_random) < p;
        }
        ++inst.busy;
        std::int64_t const took = draw_service(factor);
        schedule(keel::detail::saturating_add(m_now, took), served_event, &inst, j.slot, j.gen,
                 inst.epoch, static_cast<std::uint8_t>(fails ? 1 : 0));
    }

    void on_served(event const& e) {
        auto& inst = *static_cast<instance_state*>(e.target);
        if (e.epoch != inst.epoch) {
            return; // the work was lost when the instance went down
        }
        --inst.busy;
        dispatch_queue(inst);
        if (m_slots[e.index].gen == e.gen && m_slots[e.index].call != nullptr) {
            answer(e.index, e.flag ? make_error_code(errc::server_error) : std::error_code{});
        } else {
            ++m_result.totals.abandoned_work;
        }
    }

    void dispatch_queue(instance_state& inst) {
        instance_condition const cond = condition_of(inst);
        if (cond.down) {
            return;
        }
        int const servers = servers_of(cond);
        while (inst.busy < servers && !inst.queue.empty()) {
            job j{};
            if (m_s.downstream.discipline == queue_discipline::fifo) {
                j = inst.queue.front();
                inst.queue.pop_front();
            } else {
                j = inst.queue.back();
                inst.queue.pop_back();
            }
            if (m_s.downstream.drop_abandoned &&
                (m_slots[j.slot].gen != j.gen || m_slots[j.slot].call == nullptr)) {
                continue;
            }
            start_service(inst, j, cond);
        }
    }

    // Condition changes (phase starts, flaps): a crash loses the instance's work, more
    // capacity starts queued calls.
    void on_condition(event const& e) {
        auto& inst = *static_cast<instance_state*>(e.target);
        instance_condition const cond = condition_of(inst);
        if (cond.down && !inst.was_down) {
            // A crash loses the queue and the calls in service; with refused
            // connections their callers learn it at once (a reset), hung ones wait.
            ++inst.epoch;
            inst.busy = 0;
            inst.queue.clear();
            if (cond.mode == down_mode::refused) {
                for (std::uint32_t s = 0; s < m_slots.size(); ++s) {
                    if (m_slots[s].call != nullptr && m_slots[s].instance == inst.index) {
                        answer(s, make_error_code(errc::connection_refused));
                    }
                }
            }
        }
        inst.was_down = cond.down;
        if (!cond.down) {
            dispatch_queue(inst);
        }
    }

    // A call waiting for the downstream. Its served, deadline and crash events all
    // name (slot, generation): the first to arrive answers and raises the
    // generation, so the others find it stale, even once the slot serves a later call.
    struct call_slot {
        downstream_call* call = nullptr;
        std::uint32_t gen = 0;
        int instance = -1;
    };

    std::uint32_t acquire_slot(downstream_call& call, int instance) {
        std::uint32_t index = 0;
        if (!m_free_slots.empty()) {
            index = m_free_slots.back();
            m_free_slots.pop_back();
        } else {
            index = static_cast<std::uint32_t>(m_slots.size());
            m_slots.push_back(call_slot{});
        }
        m_slots[index].call = &call;
        m_slots[index].instance = instance;
        return index;
    }

    bool answer_now(downstream_call& call, errc code) {
        call.answer = make_error_code(code);
        trace(trace_event::kind::answered, call.call, call.answer);
        return true;
    }

    // Delivers `code` to the call waiting in `index`, frees the slot (raising its
    // generation, so the call's other pending events go stale) and resumes the call.
    void answer(std::uint32_t index, std::error_code code) {
        downstream_call* call = m_slots[index].call;
        m_slots[index].call = nullptr;
        m_slots[index].instance = -1;
        ++m_slots[index].gen;
        m_free_slots.push_back(index);
        call->answer = code;
        if (!m_tearing_down) {
            trace(trace_event::kind::answered, call->call, code);
        }
        call->waiter.resume();
    }

    void on_deadline(event const& e) {
        if (m_slots[e.index].gen != e.gen || m_slots[e.index].call == nullptr) {
            return;
        }
        answer(e.index, make_error_code(errc::abandoned));
    }

    // --- probes ---------------------------------------------------------------------

    void on_probe(event const& e) {
        auto& inst = *static_cast<instance_state*>(e.target);
        auto const& p = m_s.probes->probe;
        schedule(m_now + std::chrono::nanoseconds{p.period}.count(), probe_event, &inst);
        instance_condition const cond = condition_of(inst);
        if (!cond.down) {
            probe_result(inst, true);
        } else if (cond.mode == down_mode::refused) {
            probe_result(inst, false);
        } else {
            schedule(m_now + std::chrono::nanoseconds{p.timeout}.count(), probe_answer_event,
                     &inst);
        }
    }

    void probe_result(instance_state& inst, bool ok) {
        auto const& p = m_s.probes->probe;
        if (ok) {
            inst.probe_failures = 0;
            if (++inst.probe_successes >= p.success_threshold && !inst.in_rotation) {
                set_rotation(inst, true);
            }
        } else {
            inst.probe_successes = 0;
            if (++inst.probe_failures >= p.failure_threshold && inst.in_rotation) {
                set_rotation(inst, false);
                if (!m_first_removal && m_now >= m_outage_start_ns) {
                    m_first_removal = m_now - m_outage_start_ns;
                    m_removed_after_outage = true;
                }
            }
        }
    }

    // --- clients --------------------------------------------------------------------

    double rate_at(client_group const& g, std::int64_t t, std::int64_t* next_change) const {
        double rate = g.rate;
        *next_change = no_deadline;
        for (auto const& r : g.rate_phases) {
            if (r.start.count() <= t) {
                rate = r.rate;
            } else {
                *next_change = std::min(*next_change, r.start.count());
            }
        }
        return rate;
    }

    // Schedules the group's next Poisson arrival after `from`: exact across rate changes
    // (memoryless: a draw past a change restarts there at the new rate).
    void schedule_arrival(std::size_t group, std::int64_t from) {
        auto const& g = m_s.clients[group];
        auto& random = m_arrival_random[group];
        std::int64_t t = from;
        for (;;) {
            std::int64_t change = 0;
            double const rate = rate_at(g, t, &change);
            if (rate > 0) {
                double const gap = -std::log1p(-uniform_unit(random)) / rate * 1e9;
                std::int64_t const at = keel::detail::saturating_add(
                    t, std::max<std::int64_t>(1, static_cast<std::int64_t>(gap)));
                if (at < change) {
                    if (at < m_end) {
                        schedule(at, arrival_event, nullptr, static_cast<std::uint32_t>(group));
                    }
                    return;
                }
            }
            if (change == no_deadline || change >= m_end) {
                return;
            }
            t = change;
        }
    }

    std::int64_t think_time(client_group const& g) {
        double const mean = static_cast<double>(g.think_time.count());
        if (g.constant_think) {
            return g.think_time.count();
        }
        return std::max<std::int64_t>(
            1, static_cast<std::int64_t>(-mean * std::log1p(-uniform_unit(m_think_random))));
    }

    // --- set-up and events ----------------------------------------------------------

    void find_outage() {
        std::optional<std::int64_t> start;
        std::optional<std::int64_t> end;
        std::vector<std::int64_t> starts;
        for (auto const& p : m_s.downstream.phases) {
            starts.push_back(p.start.count());
        }
        if (starts.empty()) {
            for (auto const& g : m_s.clients) {
                for (auto const& r : g.rate_phases) {
                    starts.push_back(r.start.count());
                }
            }
        }
        std::sort(starts.begin(), starts.end());
        if (!starts.empty()) {
            start = starts.front();
            for (auto t : starts) {
                if (t > *start) {
                    end = t;
                    break;
                }
            }
        }
        m_outage_start_ns = m_s.outage_start ? m_s.outage_start->count() : start.value_or(0);
        m_outage_end_ns = m_s.outage_end ? m_s.outage_end->count() : end.value_or(m_end);
        m_result.outage_start = nanoseconds{m_outage_start_ns};
        m_result.outage_end = nanoseconds{m_outage_end_ns};
    }

    void build_instances() {
        auto const& d = m_s.downstream;
        m_instances.resize(static_cast<std::size_t>(d.instances));
        std::vector<phase const*> ordered;
        for (auto const& p : d.phases) {
            ordered.push_back(&p);
        }
        std::stable_sort(ordered.begin(), ordered.end(),
                         [](phase const* a, phase const* b) { return a->start < b->start; });
        for (int i = 0; i < d.instances; ++i) {
            auto& inst = m_instances[static_cast<std::size_t>(i)];
            inst.index = i;
            m_rotation.push_back(static_cast<std::size_t>(i));
            for (phase const* p : ordered) {
                if (p->instances.empty() ||
                    std::find(p->instances.begin(), p->instances.end(), i) != p->instances.end()) {
                    inst.phases.push_back(p);
                }
            }
        }
    }

    void build_objects(object_set& set, int owner) {
        set.owner = owner;
        for (std::size_t i = 0; i < m_s.pipeline.size(); ++i) {
            stage_objects live;
            auto const& st = m_s.pipeline[i];
            if (auto const* b = std::get_if<breaker_stage>(&st)) {
                live.breaker = std::make_unique<sim_breaker>(
                    b->options, m_clock,
                    xoshiro256ss{derive_seed(m_s.seed, stage_stream(owner, i))});
                live.breaker->on_transition([this, owner](sim_breaker::transition const& t) {
                    if (m_tearing_down) {
                        return;
                    }
                    m_result.transitions.push_back(
                        breaker_event{t.when.time_since_epoch(), owner, t.from, t.to, t.why});
                    if (t.to == circuit_state::open && m_now >= m_outage_start_ns) {
                        m_opened_after_outage = true;
                    }
                    if (t.to == circuit_state::closed && m_now >= m_outage_end_ns &&
                        !m_closed_after) {
                        m_closed_after = m_now - m_outage_end_ns;
                    }
                });
                m_breakers.push_back(live.breaker.get());
                live.breaker_guard.emplace(guard(*live.breaker));
            } else if (auto const* r = std::get_if<retry_stage>(&st)) {
                basic_retry_options<sim_clock> options;
                options.max_attempts = r->max_attempts;
                options.max_duration = r->max_duration;
                options.backoff = r->backoff;
                options.jitter = r->jitter;
                options.honor_retry_after = r->honor_retry_after;
                if (r->budget) {
                    live.budget = std::make_unique<sim_budget>(*r->budget, m_clock);
                    options.budget = live.budget.get();
                }
                live.retry.emplace(std::move(options), on_failure{}, m_clock,
                                   virtual_sleeper{m_clock},
                                   xoshiro256ss{derive_seed(m_s.seed, stage_stream(owner, i))});
            } else if (auto const* t = std::get_if<timeout_stage>(&st)) {
                live.timeout.emplace(t->duration, m_clock);
            } else if (auto const* h = std::get_if<bulkhead_stage>(&st)) {
                live.bulkhead = std::make_unique<sim_bulkhead>(
                    bulkhead_options{.max_concurrent_calls = h->max_concurrent_calls,
                                     .max_queued_calls = h->max_queued_calls,
                                     .max_wait = h->max_wait},
                    virtual_sleeper{m_clock});
                live.bulkhead_guard.emplace(guard(*live.bulkhead));
            } else if (auto const* l = std::get_if<rate_limit_stage>(&st)) {
                live.bucket = std::make_unique<sim_bucket>(l->bucket, m_clock);
                live.rate_limit.emplace(*live.bucket, rate_limit_options{.max_wait = l->max_wait},
                                        virtual_sleeper{m_clock});
            }
            set.stages.push_back(std::move(live));
        }
    }

    void build_clients() {
        int owner = 0;
        for (std::size_t g = 0; g < m_s.clients.size(); ++g) {
            auto const& group = m_s.clients[g];
            m_arrival_random.emplace_back(derive_seed(m_s.seed, 100 + g));
            m_group_first.push_back(m_clients.size());
            object_set* shared = nullptr;
            for (int c = 0; c < group.count; ++c) {
                if (group.per_client_objects || shared == nullptr) {
                    m_objects.push_back(std::make_unique<object_set>());
                    build_objects(*m_objects.back(), owner++);
                    shared = m_objects.back().get();
                }
                m_clients.push_back(std::make_unique<client_state>(client_state{g, shared}));
            }
        }
    }

    void start() {
        for (std::size_t g = 0; g < m_s.clients.size(); ++g) {
            auto const& group = m_s.clients[g];
            if (group.kind == arrival::open) {
                schedule_arrival(g, 0);
            } else {
                for (int c = 0; c < group.count; ++c) {
                    auto* client = m_clients[m_group_first[g] + static_cast<std::size_t>(c)].get();
                    // Clients start spread over one think time, not in lockstep.
                    schedule(think_time(group), wake_event, client);
                }
            }
        }
        if (m_s.probes) {
            for (auto& inst : m_instances) {
                schedule(m_s.probes->first_probe.count() + inst.index * m_s.probes->stagger.count(),
                         probe_event, &inst);
            }
        }
        for (auto& inst : m_instances) {
            for (phase const* p : inst.phases) {
                schedule(p->start.count(), condition_event, &inst);
                if (p->flap_period > nanoseconds::zero()) {
                    // Flaps until the next phase for this instance, or the end.
                    std::int64_t until = m_stop;
                    for (phase const* q : inst.phases) {
                        if (q->start > p->start) {
                            until = std::min(until, q->start.count());
                        }
                    }
                    for (std::int64_t t = p->start.count() + p->flap_period.count(); t < until;
                         t += p->flap_period.count()) {
                        schedule(t, condition_event, &inst);
                    }
                }
            }
        }
        for (std::int64_t t = 0; t < m_stop; t += m_interval) {
            schedule(t, sample_event, nullptr);
        }
    }

    void step() {
        event const e = m_events.pop();
        if (e.at > m_now) {
            m_now = e.at;
            m_clock.advance_to(sim_clock::time_point{nanoseconds{m_now}});
        }
        // Tearing down, only the suspended calls still move: resumed, answered or
        // woken from a bulkhead's queue, they run to their ends.
        if (m_tearing_down && e.kind != resume_event && e.kind != wait_end_event) {
            return;
        }
        dispatch(e);
    }

    void dispatch(event const& e) {
        switch (e.kind) {
        case resume_event: std::coroutine_handle<>::from_address(e.target).resume(); break;
        case arrival_event: {
            auto const group = static_cast<std::size_t>(e.index);
            auto const& g = m_s.clients[group];
            std::size_t client = m_group_first[group];
            if (g.count > 1) {
                client += static_cast<std::size_t>(uniform_unit(m_arrival_random[group]) * g.count);
            }
            schedule_arrival(group, m_now);
            run_call(*m_clients[client]);
            break;
        }
        case wake_event:
            if (m_now < m_end) {
                run_call(*static_cast<client_state*>(e.target));
            }
            break;
        case served_event: on_served(e); break;
        case deadline_event: on_deadline(e); break;
        case probe_event: on_probe(e); break;
        case probe_answer_event:
            probe_result(*static_cast<instance_state*>(e.target), false);
            break;
        case condition_event: on_condition(e); break;
        case sample_event: on_sample(); break;
        case wait_end_event: on_wait_end(e); break;
        default: break;
        }
    }

    void on_sample() {
        auto& bucket = m_series[index_of(m_now)];
        double capacity = 0;
        std::uint64_t queued = 0;
        int in_rotation = 0;
        double const per_server = static_cast<double>(m_interval) /
                                  static_cast<double>(m_s.downstream.service.mean.count());
        for (auto& inst : m_instances) {
            instance_condition const cond = condition_of(inst);
            if (!cond.down) {
                capacity += servers_of(cond) * per_server / cond.latency_factor;
            }
            queued += inst.queue.size();
            in_rotation += inst.in_rotation ? 1 : 0;
        }
        int open = 0;
        for (auto const* b : m_breakers) {
            open += b->state() == circuit_state::closed ? 0 : 1;
        }
        bucket.capacity = capacity;
        bucket.queued = queued;
        bucket.in_rotation = in_rotation;
        bucket.open_breakers = open;
    }

    void finish() {
        auto& t = m_result.totals;
        t.in_flight = m_in_flight;
        double const seconds = static_cast<double>(m_end) / 1e9;
        t.amplification = t.requests == 0
                              ? 0.0
                              : static_cast<double>(t.attempts) / static_cast<double>(t.requests);
        t.goodput = static_cast<double>(t.succeeded) / seconds;
        if (m_outage_end_ns < m_end) {
            t.goodput_after = static_cast<double>(m_succeeded_after) /
                              (static_cast<double>(m_end - m_outage_end_ns) / 1e9);
        }
        t.p50 = nanoseconds{m_latency.quantile(0.50)};
        t.p99 = nanoseconds{m_latency.quantile(0.99)};
        t.max = nanoseconds{m_latency.max()};
        if (m_first_shed) {
            t.detection = nanoseconds{*m_first_shed};
        }
        if (m_first_removal) {
            t.removal = nanoseconds{*m_first_removal};
        }
        if (m_closed_after) {
            t.breaker_closed = nanoseconds{*m_closed_after};
        }
        auto const ratio = [](interval_stats const& s) {
            auto const done = s.completed();
            return done == 0 ? 1.0 : static_cast<double>(s.succeeded) / static_cast<double>(done);
        };
        std::size_t const before = index_of(m_outage_start_ns);
        double baseline = 1.0;
        if (before > 0) {
            std::uint64_t ok = 0;
            std::uint64_t done = 0;
            for (std::size_t i = 0; i < before; ++i) {
                ok += m_series[i].succeeded;
                done += m_series[i].completed();
            }
            baseline = done == 0 ? 1.0 : static_cast<double>(ok) / static_cast<double>(done);
        }
        std::size_t const last = index_of(m_end - 1);
        std::size_t const first =
            static_cast<std::size_t>((m_outage_end_ns + m_interval - 1) / m_interval);
        for (std::size_t i = first; i + 2 <= last; ++i) {
            if (ratio(m_series[i]) >= 0.9 * baseline && ratio(m_series[i + 1]) >= 0.9 * baseline &&
                ratio(m_series[i + 2]) >= 0.9 * baseline) {
                t.recovery =
                    nanoseconds{static_cast<std::int64_t>(i) * m_interval - m_outage_end_ns};
                break;
            }
        }
        double const per_second = 1e9 / static_cast<double>(m_interval);
        for (auto const& s : m_series) {
            t.peak_probe_rate =
                std::max(t.peak_probe_rate, static_cast<double>(s.probes) * per_second);
        }
        m_result.series = std::move(m_series);
    }

    scenario const& m_s;
    std::function<void(trace_event const&)> const& m_trace;
    sim_clock m_clock;
    event_queue m_events;
    std::int64_t m_now = 0;
    std::int64_t m_end = 0;
    std::int64_t m_stop = 0;
    std::int64_t m_interval = 1;
    std::int64_t m_outage_start_ns = 0;
    std::int64_t m_outage_end_ns = 0;
    std::vector<instance_state> m_instances;
    std::size_t m_next_instance = 0;
    std::vector<call_slot> m_slots;
    std::vector<std::uint32_t> m_free_slots;
    std::vector<wait_slot> m_waits;
    std::vector<std::uint32_t> m_free_waits;
    std::vector<std::unique_ptr<object_set>> m_objects;
    std::vector<std::unique_ptr<client_state>> m_clients;
    std::vector<std::size_t> m_group_first;
    std::vector<sim_breaker const*> m_breakers;
    std::vector<xoshiro256ss> m_arrival_random;
    xoshiro256ss m_downstream_random;
    xoshiro256ss m_think_random;
    xoshiro256ss m_routing_random{derive_seed(m_s.seed, 3)};
    std::vector<std::size_t> m_rotation;
    std::vector<interval_stats> m_series;
    histogram m_latency;
    result m_result;
    std::uint64_t m_next_call = 0;
    std::uint64_t m_in_flight = 0;
    std::uint64_t m_succeeded_after = 0;
    std::optional<std::int64_t> m_first_shed;
    std::optional<std::int64_t> m_first_removal;
    std::optional<std::int64_t> m_closed_after;
    bool m_opened_after_outage = false;
    bool m_removed_after_outage = false;
    bool m_tearing_down = false;
};

inline bool downstream_call::await_ready() {
    return sim->begin_call(*this);
}

inline bool sleep_until::await_ready() const noexcept {
    return at <= sim->now();
}
inline void sleep_until::await_suspend(std::coroutine_handle<> h) {
    sim->park(h, at);
}

} // namespace detail

inline result run(scenario const& s, std::function<void(trace_event const&)> const& trace) {
    detail::engine e{s, trace};
    return e.run();
}

} // namespace sim

KEEL_END_NAMESPACE
