// SPDX-License-Identifier: MIT
// keel::ops::drain_coordinator: graceful shutdown in the order the article
// prescribes. A cheap RAII ticket tracks each in-flight request (one atomic
// read-modify-write to enter, one to leave); shutdown() then fails readiness,
// waits a pre-stop delay so load balancers notice, stops accepting, waits for
// in-flight work, closes resources and flushes, each phase with its own budget
// inside one total budget below Kubernetes' 30 s grace period. The report says
// what each phase took and what was still running when a budget ran out.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/core/sleeper.hpp>
#include <keel/detail/time.hpp>
#include <keel/detail/validate.hpp>
#include <keel/ops/detail/bounded_task.hpp>
#include <keel/ops/detail/in_flight_counter.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE
namespace ops {

/// Names the phases of a shutdown, in the order they run.
enum class drain_phase : int {
    mark_not_ready = 0,  ///< Readiness fails, then the pre-stop delay lets load balancers notice.
    stop_accepting = 1,  ///< New work is refused; the user's hooks close listeners.
    drain_in_flight = 2, ///< In-flight work finishes, up to its budget.
    close_resources = 3, ///< Persistent resources close (hooks run concurrently).
    flush = 4,           ///< Logs, metrics and traces flush (hooks run concurrently).
};

/// Returns the phase's name, e.g. "drain_in_flight".
constexpr std::string_view to_string(drain_phase phase) noexcept {
    switch (phase) {
    case drain_phase::mark_not_ready: return "mark_not_ready";
    case drain_phase::stop_accepting: return "stop_accepting";
    case drain_phase::drain_in_flight: return "drain_in_flight";
    case drain_phase::close_resources: return "close_resources";
    case drain_phase::flush: return "flush";
    }
    return "unknown";
}

/// Configures a drain_coordinator. Every budget is a std::chrono::nanoseconds >= 0; a phase
/// runs for at most the smaller of its own budget and what remains of `total_budget`, so a
/// phase late in the order gets less (possibly nothing) when earlier phases overran.
/// nanoseconds::max() means no bound: as `total_budget`, a shutdown bounded only by its
/// phases; as a phase's budget, a phase bounded only by what remains of the total.
///
/// The defaults sum to 28 s, the budget rule of operations practice: pre-stop delay +
/// drain + close + flush must fit inside Kubernetes' terminationGracePeriodSeconds (30 s by
/// default; SIGKILL follows), with margin for the process to exit.
struct drain_options {
    /// Bounds the whole shutdown. Default 28 s: below Kubernetes' default
    /// terminationGracePeriodSeconds of 30 s (after which the kubelet sends SIGKILL), with
    /// 2 s left for destructors and exit. Must be > 0. If you raise the pod's grace period,
    /// raise this with it; if a preStop hook sleeps, subtract its time.
    std::chrono::nanoseconds total_budget = std::chrono::seconds{28};
    /// Keeps serving (tickets are still granted) after readiness fails, so that load
    /// balancers stop routing here before new work is refused. Default 5 s, the article's
    /// `await sleep(5000)` and lightship's shutdownDelay (which "should match
    /// readinessProbe.periodSeconds"). 0 skips the delay (when a preStop hook already waits).
    /// Must be >= 0.
    std::chrono::nanoseconds pre_stop_delay = std::chrono::seconds{5};
    /// Bounds the stop-accepting hooks (closing listeners). Default 1 s; 0 means the hooks
    /// are started but not waited for. Must be >= 0.
    std::chrono::nanoseconds stop_accepting_budget = std::chrono::seconds{1};
    /// Bounds the wait for in-flight tickets. Default 15 s (the drain line of the operations
    /// reference: delay 5 s, in-flight <= 15 s, resources <= 5 s, flush <= 2 s). 0 does not
    /// wait: whatever is in flight is reported as left over. Must be >= 0.
    std::chrono::nanoseconds in_flight_budget = std::chrono::seconds{15};
    /// Bounds the close hooks, which run concurrently, each with this as its timeout.
    /// Default 5 s, lightship's shutdownHandlerTimeout. Must be >= 0.
    std::chrono::nanoseconds close_budget = std::chrono::seconds{5};
    /// Bounds the flush hooks, which run concurrently. Default 2 s (the article flushes with
    /// Sentry.close(2000)). Must be >= 0.
    std::chrono::nanoseconds flush_budget = std::chrono::seconds{2};
};

/// Describes what drain_coordinator::attach() can fail readiness through: anything with
/// `set_not_ready(reason)`, such as keel::ops::health_registry (or a service's own flag).
template <class T>
concept readiness_control = requires(T& target, std::string const& reason) {
    target.set_not_ready(reason);
};

/// Describes how one phase of a shutdown went.
struct phase_report {
    drain_phase phase = drain_phase::mark_not_ready; ///< Which phase.
    std::chrono::nanoseconds started{}; ///< When it began, measured from the start of shutdown.
    std::chrono::nanoseconds budget{};  ///< Its budget after clipping to the total budget.
    std::chrono::nanoseconds elapsed{}; ///< How long it took.
    bool timed_out = false;             ///< True if its budget ran out before it finished.
};

/// Describes how one user hook ended.
struct hook_report {
    /// How a hook ended.
    enum class result {
        completed, ///< It returned within its phase's budget.
        threw,     ///< It threw; the exception was swallowed, the shutdown went on.
        timed_out, ///< It was still running when the budget ran out; its thread was detached.
    };
    drain_phase phase = drain_phase::close_resources; ///< The phase it ran in.
    std::string name;                                 ///< The name it was registered with.
    result outcome = result::completed;               ///< How it ended.
};

/// Describes a finished shutdown: what each phase took and how much work was cut short.
struct drain_report {
    /// One entry per phase, indexed by drain_phase.
    std::array<phase_report, 5> phases{};
    /// Every hook that ran, phase by phase, in registration order within each phase (the
    /// not-ready hooks are all named "not_ready").
    std::vector<hook_report> hooks;
    /// Time from the start of shutdown() to the end of the last phase.
    std::chrono::nanoseconds total{};
    /// Tickets granted before new work was refused, modulo 2^40.
    std::uint64_t admitted = 0;
    /// Tickets in flight when new work was refused (the start of stop_accepting).
    std::uint64_t in_flight_at_drain = 0;
    /// Tickets still in flight when the in-flight phase ended; nonzero only if its budget ran out.
    std::uint64_t in_flight_abandoned = 0;

    /// Returns the report of `phase`.
    phase_report const& operator[](drain_phase phase) const noexcept {
        return phases[static_cast<std::size_t>(phase)];
    }
    /// Returns true if no budget ran out, no work was abandoned and no hook threw or timed out.
    bool clean() const noexcept {
        return in_flight_abandoned == 0 &&
               std::none_of(phases.begin(), phases.end(),
                            [](phase_report const& p) { return p.timed_out; }) &&
               std::all_of(hooks.begin(), hooks.end(), [](hook_report const& h) {
                   return h.outcome == hook_report::result::completed;
               });
    }
    /// Returns the process exit code the operations reference recommends: 0 for a clean
    /// drain, 1 when anything was forced, so operators can tell the two apart.
    int exit_code() const noexcept { return clean() ? 0 : 1; }
};

/// Marks one unit of in-flight work (a request, a job); the shutdown waits for it.
///
/// Obtained from drain_coordinator::try_enter(); empty (false) when new work is refused.
/// Move-only; releases on destruction or release(). The coordinator must outlive it.
/// Thread-safe to release from any thread, but one ticket must not be used concurrently.
class drain_ticket {
public:
    /// Constructs an empty ticket.
    drain_ticket() noexcept = default;
    drain_ticket(drain_ticket const&) = delete;
    drain_ticket& operator=(drain_ticket const&) = delete;
    /// Takes over `other`'s work, leaving `other` empty.
    drain_ticket(drain_ticket&& other) noexcept
        : m_counter(std::exchange(other.m_counter, nullptr)) {}
    /// Releases this ticket's work, then takes over `other`'s.
    drain_ticket& operator=(drain_ticket&& other) noexcept {
        if (this != &other) {
            release();
            m_counter = std::exchange(other.m_counter, nullptr);
        }
        return *this;
    }
    /// Releases the work, if any.
    ~drain_ticket() { release(); }

    /// Returns true if this ticket holds admitted work.
    explicit operator bool() const noexcept { return m_counter != nullptr; }
    /// Returns true if this ticket holds admitted work.
    bool admitted() const noexcept { return m_counter != nullptr; }

    /// Marks the work finished now (the destructor then does nothing); no effect if empty.
    void release() noexcept {
        if (auto* counter = std::exchange(m_counter, nullptr)) {
            counter->leave();
        }
    }

private:
    template <clock, sleeper>
    friend class basic_drain_coordinator;
    explicit drain_ticket(detail::in_flight_counter* counter) noexcept : m_counter(counter) {}

    detail::in_flight_counter* m_counter = nullptr;
};

/// Coordinates a graceful shutdown: tracks in-flight work and runs the shutdown phases once.
///
/// The hot path is try_enter(): one atomic fetch_add, lock-free, refused (an empty ticket)
/// once new work is refused, so the server can answer 503 or close the connection.
/// shutdown() runs these phases in order, each bounded by its budget and all by
/// options.total_budget:
///  0. mark_not_ready: the readiness hooks run at once (inline, so they must not block:
///     flip a flag; attach() adds one for a keel::ops::health_registry or any other
///     readiness_control); then the
///     pre-stop delay.
///     Tickets are still granted during the delay: traffic still routed here is served.
///  1. stop_accepting: new tickets are refused from here on; the stop-accepting hooks run
///     (close listeners, send GOAWAY).
///  2. drain_in_flight: waits until no ticket is in flight, or the budget runs out.
///  3. close_resources: the close hooks run concurrently, each on its own thread, each
///     with the phase budget as its timeout (pools, consumers, websockets).
///  4. flush: the flush hooks run concurrently the same way (logs, metrics, traces).
/// Hooks taking a std::stop_token see it fire when their phase's budget runs out; a hook
/// that is still running then is abandoned on a detached thread and reported, so it must
/// not use objects that die before the process exits. Hook exceptions are caught and
/// reported. Waiting goes through `Sleeper` on `Clock`, so tests run in virtual time.
///
/// Thread-safe. shutdown() runs the phases once: a concurrent or later call waits for the
/// first to finish and returns the same report. Register hooks before shutdown() starts;
/// hooks registered later are ignored.
///
/// @code
/// keel::ops::drain_coordinator drain{{.pre_stop_delay = 5s, .in_flight_budget = 15s}};
/// drain.attach(health); // a keel::ops::health_registry: readiness fails at once
/// drain.on_stop_accepting("listener", [&](std::stop_token) { listener.close(); });
/// drain.on_close("db pool", [&](std::stop_token) { pool.close(); });
/// // per request:
/// auto ticket = drain.try_enter();
/// if (!ticket) return respond(503);
/// // on SIGTERM:
/// return drain.shutdown().exit_code();
/// @endcode
template <clock Clock = steady_clock, sleeper Sleeper = real_sleeper>
class basic_drain_coordinator {
public:
    using clock_type = Clock;
    using sleeper_type = Sleeper;
    /// A hook of phases 1, 3 and 4; the token fires when the phase's budget runs out.
    using hook = std::function<void(std::stop_token)>;

    /// Builds a coordinator; throws std::invalid_argument if an option is out of range.
    explicit basic_drain_coordinator(drain_options options = {}, Clock clock = Clock{},
                                     Sleeper sleeper = Sleeper{})
        : m_options(validate(options)), m_clock(std::move(clock)), m_sleeper(std::move(sleeper)) {}

    basic_drain_coordinator(basic_drain_coordinator const&) = delete;
    basic_drain_coordinator& operator=(basic_drain_coordinator const&) = delete;

    /// Returns a ticket for new work, or an empty ticket once new work is refused.
    ///
    /// Lock-free: one atomic fetch_add (plus one fetch_sub when refused).
    [[nodiscard]] drain_ticket try_enter() noexcept {
        return m_counter.try_enter() ? drain_ticket{&m_counter} : drain_ticket{};
    }

    /// Returns true once new work is refused (shutdown reached the stop_accepting phase).
    bool draining() const noexcept { return detail::in_flight_counter::draining(m_counter.load()); }
    /// Returns how many tickets are in flight now.
    std::uint64_t in_flight() const noexcept {
        return detail::in_flight_counter::in_flight(m_counter.load());
    }
    /// Returns how many tickets were ever granted, modulo 2^40.
    std::uint64_t admitted() const noexcept {
        return detail::in_flight_counter::admitted(m_counter.load());
    }
    /// Returns true once shutdown() has been called.
    bool shutdown_requested() const {
        std::lock_guard lock{m_mutex};
        return m_state != state::idle;
    }

    /// Adds a phase-0 hook that makes readiness fail; it runs inline and must not block.
    void on_not_ready(std::function<void()> hook_fn) {
        std::lock_guard lock{m_mutex};
        m_not_ready.push_back(std::move(hook_fn));
    }
    /// Makes `health`'s readiness fail at the start of phase 0: adds a not-ready hook calling
    /// `health.set_not_ready(reason)`; for a keel::ops::health_registry, readiness then
    /// answers 503 with `reason` as its output for the rest of the process's life (liveness
    /// is not affected). `health` must outlive the shutdown.
    template <readiness_control Health>
    void attach(Health& health, std::string reason = "draining") {
        on_not_ready([&health, reason = std::move(reason)] { health.set_not_ready(reason); });
    }

    /// Adds a phase-1 hook that stops accepting new connections (e.g. closes a listener).
    void on_stop_accepting(std::string name, hook hook_fn) {
        add(drain_phase::stop_accepting, std::move(name), std::move(hook_fn));
    }
    /// Adds a phase-3 hook that closes a persistent resource; close hooks run concurrently.
    void on_close(std::string name, hook hook_fn) {
        add(drain_phase::close_resources, std::move(name), std::move(hook_fn));
    }
    /// Adds a phase-4 hook that flushes logs, metrics or traces; flush hooks run concurrently.
    void on_flush(std::string name, hook hook_fn) {
        add(drain_phase::flush, std::move(name), std::move(hook_fn));
    }

    /// Adds a listener told each phase's report as the phase ends (phase_report::
    /// elapsed and timed_out set), in phase order, on the thread running shutdown()
    /// and without any lock held. Meant for logs and events: it should not block,
    /// since the time it takes counts against the next phase. An exception it
    /// throws is ignored.
    void on_phase_end(std::function<void(phase_report const&)> listener) {
        std::lock_guard lock{m_mutex};
        m_phase_listeners.push_back(std::move(listener));
    }

    /// Runs the shutdown phases once and returns their report.
    ///
    /// Blocks for at most options.total_budget (plus scheduling noise). A second caller,
    /// concurrent or later, blocks until the first finishes and gets the same report. Hook
    /// exceptions are caught and reported; if no thread can be started for a hook, it runs
    /// on the calling thread without a timeout.
    drain_report shutdown() {
        {
            std::unique_lock lock{m_mutex};
            if (m_state != state::idle) {
                m_done.wait(lock, [&] { return m_state == state::done; });
                return m_report;
            }
            m_state = state::running;
        }
        drain_report report;
        try {
            report = run();
        } catch (...) {
            // Only resource exhaustion gets here (hook exceptions are caught): let waiting
            // callers go with an empty report rather than hang.
            {
                std::lock_guard lock{m_mutex};
                m_state = state::done;
            }
            m_done.notify_all();
            throw;
        }
        {
            std::lock_guard lock{m_mutex};
            m_report = report;
            m_state = state::done;
        }
        m_done.notify_all();
        return report;
    }

    /// Returns the options in use.
    drain_options const& options() const noexcept { return m_options; }

private:
    enum class state { idle, running, done };
    using time_point = typename Clock::time_point;

    struct named_hook {
        drain_phase phase;
        std::string name;
        hook fn;
    };

    static drain_options validate(drain_options const& o) {
        constexpr std::string_view component = "keel::ops::drain_coordinator";
        auto const check = [&](std::chrono::nanoseconds value, char const* field) {
            if (value < std::chrono::nanoseconds::zero()) {
                keel::detail::invalid_option(component, field, ">= 0", value);
            }
        };
        if (o.total_budget <= std::chrono::nanoseconds::zero()) {
            keel::detail::invalid_option(component, "total_budget", "> 0", o.total_budget);
        }
        check(o.pre_stop_delay, "pre_stop_delay");
        check(o.stop_accepting_budget, "stop_accepting_budget");
        check(o.in_flight_budget, "in_flight_budget");
        check(o.close_budget, "close_budget");
        check(o.flush_budget, "flush_budget");
        return o;
    }

    void add(drain_phase phase, std::string name, hook hook_fn) {
        std::lock_guard lock{m_mutex};
        m_hooks.push_back(named_hook{phase, std::move(name), std::move(hook_fn)});
    }

    std::chrono::nanoseconds since(time_point from) const {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(m_clock.now() - from);
    }

    // Waits until `done` fires or `deadline` passes; returns true if `done` fired.
    bool wait_until(time_point deadline, std::stop_token const& done) {
        return detail::wait_until(m_clock, m_sleeper, deadline, done);
    }

    drain_report run() {
        std::vector<std::function<void()>> not_ready;
        std::vector<named_hook> hooks;
        std::vector<std::function<void(phase_report const&)>> listeners;
        {
            std::lock_guard lock{m_mutex};
            not_ready = m_not_ready;
            hooks = m_hooks;
            listeners = m_phase_listeners;
        }

        drain_report report;
        time_point const start = m_clock.now();
        // Saturating: a budget of nanoseconds::max() is "no bound", never a wrap into the past.
        time_point const end = keel::detail::saturating_add(start, m_options.total_budget);
        // Begins a phase: records its start and its budget clipped to the total; returns its
        // deadline.
        auto const begin = [&](drain_phase phase, std::chrono::nanoseconds budget) {
            auto& p = report.phases[static_cast<std::size_t>(phase)];
            p.phase = phase;
            auto const now = m_clock.now();
            p.started = std::chrono::duration_cast<std::chrono::nanoseconds>(now - start);
            auto const left =
                std::max(std::chrono::nanoseconds::zero(), detail::time_left(end, now));
            p.budget = std::min(budget, left);
            return keel::detail::saturating_add(now, p.budget);
        };
        auto const finish = [&](drain_phase phase, bool timed_out) {
            auto& p = report.phases[static_cast<std::size_t>(phase)];
            p.elapsed = since(start) - p.started;
            p.timed_out = timed_out;
            for (auto const& listener : listeners) {
                try {
                    listener(p);
                } catch (...) { // NOLINT(bugprone-empty-catch): a listener cannot stop a drain
                }
            }
        };

        // 0. Readiness fails at once; keep serving through the pre-stop delay.
        auto const ready_deadline = begin(drain_phase::mark_not_ready, m_options.pre_stop_delay);
        for (auto& fn : not_ready) {
            auto outcome = hook_report::result::completed;
            try {
                fn();
            } catch (...) {
                outcome = hook_report::result::threw;
            }
            report.hooks.push_back({drain_phase::mark_not_ready, "not_ready", outcome});
        }
        wait_until(ready_deadline, std::stop_token{});
        finish(drain_phase::mark_not_ready, false);

        // 1. Refuse new work, then let the user close listeners.
        auto const accept_deadline =
            begin(drain_phase::stop_accepting, m_options.stop_accepting_budget);
        auto const word = m_counter.begin_draining();
        report.admitted = detail::in_flight_counter::admitted(word);
        report.in_flight_at_drain = detail::in_flight_counter::in_flight(word);
        finish(drain_phase::stop_accepting,
               !run_hooks(drain_phase::stop_accepting, hooks, accept_deadline, report));

        // 2. Wait for in-flight work.
        auto const drain_deadline = begin(drain_phase::drain_in_flight, m_options.in_flight_budget);
        bool const drained = wait_until(drain_deadline, m_counter.drained_token());
        report.in_flight_abandoned = drained ? 0 : in_flight();
        finish(drain_phase::drain_in_flight, report.in_flight_abandoned != 0);

        // 3. Close persistent resources, concurrently.
        auto const close_deadline = begin(drain_phase::close_resources, m_options.close_budget);
        finish(drain_phase::close_resources,
               !run_hooks(drain_phase::close_resources, hooks, close_deadline, report));

        // 4. Flush logs and metrics, concurrently.
        auto const flush_deadline = begin(drain_phase::flush, m_options.flush_budget);
        finish(drain_phase::flush, !run_hooks(drain_phase::flush, hooks, flush_deadline, report));

        report.total = since(start);
        return report;
    }

    // Runs the hooks of `phase` concurrently, one bounded task each, until all return or
    // `deadline` passes. Hooks still running then expire, are told to stop and are abandoned
    // (their threads detached, see detail::bounded_task). Returns true if every hook returned
    // in time.
    bool run_hooks(drain_phase phase, std::vector<named_hook> const& hooks, time_point deadline,
                   drain_report& report) {
        std::vector<named_hook const*> mine;
        for (auto const& h : hooks) {
            if (h.phase == phase) {
                mine.push_back(&h);
            }
        }
        if (mine.empty()) {
            return true;
        }
        // Each task's result says whether its hook threw.
        std::vector<detail::bounded_task<bool>> tasks(mine.size());
        for (std::size_t i = 0; i < mine.size(); ++i) {
            auto body = [fn = mine[i]->fn](std::stop_token token) noexcept {
                try {
                    fn(std::move(token));
                    return false;
                } catch (...) {
                    return true;
                }
            };
            try {
                tasks[i].start(body);
            } catch (std::system_error const&) {
                // No thread to be had: run the hook here, without a timeout.
                tasks[i].run_here(std::move(body));
            }
        }
        for (auto const& task : tasks) {
            task.wait_until(m_clock, m_sleeper, deadline);
        }
        bool all = true;
        for (std::size_t i = 0; i < tasks.size(); ++i) {
            auto result = hook_report::result::completed;
            if (tasks[i].expire()) {
                result = hook_report::result::timed_out;
                all = false;
                tasks[i].cancel();
            } else if (*tasks[i].result()) {
                result = hook_report::result::threw;
            }
            report.hooks.push_back(hook_report{phase, mine[i]->name, result});
        }
        return all;
    }

    drain_options m_options;
    [[no_unique_address]] Clock m_clock;
    [[no_unique_address]] Sleeper m_sleeper;
    detail::in_flight_counter m_counter;

    mutable std::mutex m_mutex;
    std::condition_variable m_done;
    state m_state = state::idle;
    drain_report m_report;
    std::vector<std::function<void()>> m_not_ready;
    std::vector<named_hook> m_hooks;
    std::vector<std::function<void(phase_report const&)>> m_phase_listeners;
};

/// The drain coordinator on keel::steady_clock with a real, interruptible sleeper.
using drain_coordinator = basic_drain_coordinator<>;

} // namespace ops
KEEL_END_NAMESPACE
