// SPDX-License-Identifier: MIT
// keel::ops::health_registry: the health state of a process, asked as three
// separate questions (liveness, readiness, startup), with cached, time-bounded
// dependency checks behind readiness. Reports are plain values
// (keel/ops/health_report.hpp); rendering them as application/health+json and
// mapping them to HTTP lives in keel/ops/health_json.hpp. keel has no HTTP server: wire the reports
// to /health/live, /health/ready and /health/startup yourself.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/core/sleeper.hpp>
#include <keel/detail/time.hpp>
#include <keel/detail/validate.hpp>
#include <keel/ops/detail/health_check.hpp>
#include <keel/ops/health_report.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace ops {

/// Enumerates what a check looks at; it selects the `componentType` of the report.
enum class check_kind {
    component,  ///< A part of this service or a generic dependency ("component").
    datastore,  ///< Any data store ("datastore").
    system,     ///< The host: CPU, memory, disk, uptime ("system").
    database,   ///< A database; reported as "datastore".
    cache,      ///< A cache such as Redis or memcached; reported as "datastore".
    downstream, ///< Another service this one calls; reported as "component".
};

/// Returns the draft's pre-defined componentType for `kind`: "component",
/// "datastore" or "system" (the draft names no others, so database and cache map to
/// "datastore" and downstream to "component").
constexpr std::string_view component_type(check_kind kind) noexcept {
    switch (kind) {
    case check_kind::component: return "component";
    case check_kind::datastore: return "datastore";
    case check_kind::system: return "system";
    case check_kind::database: return "datastore";
    case check_kind::cache: return "datastore";
    case check_kind::downstream: return "component";
    }
    return "component";
}

/// Configures one dependency check registered with health_registry::add_check.
///
/// Validated by add_check (std::invalid_argument names the field and its range).
struct check_options {
    /// The component name, the part of the health+json key before the colon (e.g.
    /// "postgres"). Required: non-empty, no ':'.
    std::string name{};
    /// The measurement name, the part after the colon (e.g. "responseTime",
    /// "connections"; the draft pre-defines utilization, responseTime, connections
    /// and uptime). Default empty: the key is the name alone, which the draft allows
    /// (its "uptime" example). No ':'. The key "name:measurement" must be unique.
    std::string measurement{};
    /// What the check looks at; selects componentType. Default component.
    check_kind kind = check_kind::component;
    /// Overrides the componentType derived from `kind` (e.g. a URI); default empty.
    std::string component_type{};
    /// How long a run may take before it counts as failed. Default 800 ms: below the
    /// Kubernetes probe timeoutSeconds default of 1 s, leaving room for the rest of
    /// the probe (operations notes: "per-check timeout about 1 s, below the probe's
    /// timeoutSeconds"). Must be > 0; nanoseconds::max() means no timeout of its own.
    /// Also bounded by the registry's `budget`.
    std::chrono::nanoseconds timeout = std::chrono::milliseconds{800};
    /// How long a result is reused before the check runs again, so a burst of probes
    /// (several load balancers, kubelet, a human with curl) does not hammer the
    /// dependency. Default 1 s, as ClickHouse's mcp-clickhouse health cache (users ask
    /// for 1-5 s). 0 disables caching (every probe runs the check, still
    /// single-flight); nanoseconds::max() keeps the first result forever. Must be >= 0.
    /// Failures and timeouts are cached like successes.
    std::chrono::nanoseconds ttl = std::chrono::seconds{1};
    /// Whether a failing result fails readiness (true, the default, as .NET's
    /// failureStatus Unhealthy) or only makes it warn (false: degraded, still 200).
    bool critical = true;
};

/// Configures a health_registry. Validated once, at construction.
template <clock Clock = steady_clock>
struct health_registry_options {
    /// The most a readiness probe waits for its checks, in total. Default 900 ms:
    /// within the Kubernetes probe timeoutSeconds default of 1 s. Must be > 0;
    /// nanoseconds::max() leaves each check to its own timeout. A check still running
    /// when the budget ends counts as failed for that run.
    std::chrono::nanoseconds budget = std::chrono::milliseconds{900};
    /// Maps a time of the registry's clock to wall-clock time for the reports' `time`
    /// fields. Default empty: the clock time plus the offset between the two clocks
    /// measured once at construction (system_clock::now() - clock.now()), which keeps
    /// report times steady even if the wall clock is stepped later. Tests with
    /// keel::manual_clock usually pass `[](auto t) { return sys_time{t.time_since_epoch()}; }`.
    /// Called without any lock held; must be thread-safe.
    std::function<std::chrono::system_clock::time_point(typename Clock::time_point)> wall_time{};
    std::string service_id{};  ///< health+json serviceId; default empty (omitted).
    std::string version{};     ///< health+json version; default empty (omitted).
    std::string release_id{};  ///< health+json releaseId; default empty (omitted).
    std::string description{}; ///< health+json description; default empty (omitted).
};

/// Holds a process's health state and answers the three probe questions, kept apart
/// as the article insists:
///
/// - liveness(): fails only when the process itself is marked broken (mark_broken(),
///   e.g. by a watchdog that saw a stuck event loop). It consults no dependency, so
///   a database outage never makes Kubernetes restart every pod.
/// - readiness(): fails while the process is broken, before mark_started(), while a
///   manual not-ready flag is set (set_not_ready(): warming up, draining), or when a
///   critical check fails; warns when a non-critical check fails or warns.
/// - startup(): fails until mark_started().
///
/// Checks run concurrently, each on a thread of its own started for that run, and a
/// probe waits for them at most `check_options::timeout` each and
/// `health_registry_options::budget` in total, through the Sleeper (real_sleeper
/// waits on a condition variable that the check's completion wakes; virtual_sleeper
/// advances a manual clock instead). A check still running at its deadline counts as
/// failed ("timed out after ..."), its std::stop_token fires, and the probe returns
/// without it. Its thread is detached and left to finish on its own, and the
/// check is not started again while it still runs (later probes report it as
/// "still running"); its late result is discarded. The thread of a run that
/// finished in time is joined. A check that throws counts as failed with the
/// exception's what() as output. Results are cached for the check's ttl, and
/// concurrent probes share one run (single-flight).
///
/// All member functions are thread-safe. Check functions and the wall_time mapping
/// are never called with a lock held. Lifetime: a run's thread shares ownership of
/// the check function and of its run's state only, never of the registry, so
/// destroying the registry while a check hangs is safe; the destructor fires the
/// stop token of every running check. Objects the check function refers to must
/// outlive that run, or the check must return when its stop token fires.
///
/// Example:
///
///     keel::ops::health_registry health{{.service_id = "orders"}};
///     health.add_check({.name = "postgres", .measurement = "responseTime",
///                       .kind = keel::ops::check_kind::database, .timeout = 300ms},
///                      [&](std::stop_token stop) {
///                          auto const ms = db.ping(stop); // throws on error
///                          return keel::ops::check_result::pass(ms, "ms");
///                      });
///     health.mark_started();
///     auto const r = keel::ops::to_http_response(health.readiness()); // health_json.hpp
///     // on SIGTERM: health.set_not_ready("draining");
template <clock Clock = steady_clock, sleeper Sleeper = real_sleeper>
class basic_health_registry {
public:
    using clock_type = Clock;
    using time_point = typename Clock::time_point;
    using options_type = health_registry_options<Clock>;

    /// Builds a registry reading `clock` and waiting through `sleeper`; not started,
    /// ready otherwise, not broken, with no checks. Throws std::invalid_argument if
    /// an option is out of range.
    explicit basic_health_registry(options_type options = {}, Clock clock = Clock{},
                                   Sleeper sleeper = Sleeper{})
        : m_options(std::move(options)), m_clock(std::move(clock)), m_sleeper(std::move(sleeper)) {
        if (m_options.budget <= std::chrono::nanoseconds::zero()) {
            keel::detail::invalid_option(component, "budget", "> 0", m_options.budget);
        }
        if (!m_options.wall_time) {
            auto const offset = std::chrono::system_clock::now().time_since_epoch() -
                                std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                    m_clock.now().time_since_epoch());
            m_options.wall_time = [offset](time_point t) {
                return std::chrono::system_clock::time_point{
                    offset + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                 t.time_since_epoch())};
            };
        }
    }

    basic_health_registry(basic_health_registry const&) = delete;
    basic_health_registry& operator=(basic_health_registry const&) = delete;

    /// Fires the stop token of every check still running; their threads finish later
    /// on their own and keep only the check's own state alive.
    ~basic_health_registry() {
        std::vector<std::shared_ptr<state_type>> checks;
        {
            std::lock_guard lock{m_mutex};
            checks = m_checks;
        }
        for (auto const& check : checks) {
            std::shared_ptr<run_type> run;
            {
                std::lock_guard lock{check->mutex};
                run = check->running;
            }
            if (run) {
                run->task.cancel();
            }
        }
    }

    /// Registers a readiness check: `check` is callable as `check(std::stop_token)`
    /// or `check()` and returns keel::ops::check_result or bool (false fails with
    /// "check returned false"). The token fires when the run times out. Throws
    /// std::invalid_argument if the name is empty or contains ':', the measurement
    /// contains ':', the key is already registered, timeout <= 0 or ttl < 0. A run
    /// calls at most one copy of `check` at a time; it must be copy-constructible.
    template <class F>
    void add_check(check_options options, F&& check) {
        validate(options);
        auto state = std::make_shared<state_type>();
        state->key =
            options.measurement.empty() ? options.name : options.name + ":" + options.measurement;
        state->component_type = options.component_type.empty()
                                    ? std::string{ops::component_type(options.kind)}
                                    : options.component_type;
        state->function = std::make_shared<std::function<check_result(std::stop_token)>>(
            detail::adapt_check(std::forward<F>(check)));
        state->options = std::move(options);
        std::lock_guard lock{m_mutex};
        for (auto const& existing : m_checks) {
            if (existing->key == state->key) {
                keel::detail::invalid_configuration(component, "check key must be unique, \"" +
                                                                   state->key +
                                                                   "\" is already registered");
            }
        }
        m_checks.push_back(std::move(state));
    }

    /// Returns how many checks are registered.
    std::size_t check_count() const {
        std::lock_guard lock{m_mutex};
        return m_checks.size();
    }

    /// Records that initialisation has finished: startup() passes from now on and
    /// readiness() stops failing with "starting". Idempotent.
    void mark_started() {
        change("started", true, {}, [&] { return !std::exchange(m_started, true); });
    }

    /// Returns true once mark_started() was called.
    bool started() const {
        std::lock_guard lock{m_mutex};
        return m_started;
    }

    /// Sets the manual not-ready flag (e.g. "warming up", "draining"): readiness()
    /// fails with `reason` as its output until clear_not_ready(). A second call
    /// replaces the reason. Liveness is not affected.
    void set_not_ready(std::string reason) {
        change("not_ready", true, reason, [&] {
            bool const changed = m_not_ready != reason;
            m_not_ready = reason;
            return changed;
        });
    }

    /// Clears the manual not-ready flag; readiness() goes back to the checks. No-op
    /// when the flag is not set.
    void clear_not_ready() {
        change("not_ready", false, {},
               [&] { return std::exchange(m_not_ready, std::nullopt).has_value(); });
    }

    /// Returns the manual not-ready reason, or nullopt when the flag is clear.
    std::optional<std::string> not_ready_reason() const {
        std::lock_guard lock{m_mutex};
        return m_not_ready;
    }

    /// Marks the process as broken (it cannot make progress: a stuck event loop, a
    /// corrupted state): liveness() and readiness() fail with `reason`. A second call
    /// replaces the reason. Meant for a watchdog; Kubernetes then restarts the process.
    void mark_broken(std::string reason) {
        change("broken", true, reason, [&] {
            bool const changed = m_broken != reason;
            m_broken = reason;
            return changed;
        });
    }

    /// Clears the broken mark (a watchdog saw the process recover).
    void clear_broken() {
        change("broken", false, {},
               [&] { return std::exchange(m_broken, std::nullopt).has_value(); });
    }

    /// Describes a change of one of the manual flags, as given to on_flag_change().
    struct flag_change {
        std::string_view flag;   ///< "started", "not_ready" or "broken".
        bool set = false;        ///< True when the flag was set (or its reason replaced).
        std::string_view reason; ///< The reason given when set; empty when cleared.
    };

    /// Adds a listener told each change of the manual flags (mark_started(),
    /// set_not_ready(), clear_not_ready(), mark_broken(), clear_broken(); a call that
    /// changes nothing is not told), on the calling thread, after the registry's lock
    /// is released. The strings live for the call only; an exception it throws is
    /// ignored. Meant for logs and events (keel::observe::event_hub::watch_health).
    void on_flag_change(std::function<void(flag_change const&)> listener) {
        std::lock_guard lock{m_mutex};
        m_flag_listeners.push_back(std::move(listener));
    }

    /// Returns the broken reason, or nullopt when the process is not marked broken.
    std::optional<std::string> broken_reason() const {
        std::lock_guard lock{m_mutex};
        return m_broken;
    }

    /// Answers "can this process make progress?": fail with the reason when marked
    /// broken, else pass. Runs no checks; never blocks beyond a mutex.
    health_report liveness() const {
        health_report report = base_report(probe_kind::liveness);
        std::lock_guard lock{m_mutex};
        if (m_broken) {
            report.status = health_status::fail;
            report.output = "broken: " + *m_broken;
        }
        return report;
    }

    /// Answers "has initialisation finished?": pass after mark_started(), else fail
    /// with output "starting". Runs no checks.
    health_report startup() const {
        health_report report = base_report(probe_kind::startup);
        std::lock_guard lock{m_mutex};
        if (!m_started) {
            report.status = health_status::fail;
            report.output = "starting";
        }
        return report;
    }

    /// Answers "can this process serve its contract now?". Runs (or reuses the cached
    /// result of) every check, waiting at most each check's timeout and the budget in
    /// total, then aggregates: fail if broken, not started, manually not ready, or a
    /// critical check fails; else warn if any check warns or a non-critical one fails;
    /// else pass. Checks are consulted even when the flags already decide the status,
    /// so the report always lists them. Blocks the caller for at most the budget
    /// (plus thread start-up).
    health_report readiness() const {
        health_report report = base_report(probe_kind::readiness);
        std::vector<std::shared_ptr<state_type>> checks;
        std::vector<std::string> reasons;
        {
            std::lock_guard lock{m_mutex};
            checks = m_checks;
            if (m_broken) {
                reasons.push_back("broken: " + *m_broken);
            }
            if (!m_started) {
                reasons.push_back("starting");
            }
            if (m_not_ready) {
                reasons.push_back(*m_not_ready);
            }
        }
        auto const views = evaluate(checks);

        health_status status = reasons.empty() ? health_status::pass : health_status::fail;
        std::vector<std::string> warnings;
        report.checks.reserve(checks.size());
        for (std::size_t i = 0; i < checks.size(); ++i) {
            state_type const& check = *checks[i];
            view_type const& view = views[i];
            check_report entry;
            entry.key = check.key;
            entry.name = check.options.name;
            entry.measurement = check.options.measurement;
            entry.component_type = check.component_type;
            entry.critical = check.options.critical;
            entry.status = view.result.status;
            entry.observed_value = view.result.observed_value;
            entry.observed_unit = view.result.observed_unit;
            entry.output = view.result.output;
            entry.time = m_options.wall_time(view.read_at);
            entry.last_change = m_options.wall_time(view.last_change);
            entry.consecutive_failures = view.consecutive_failures;
            entry.cached = view.cached;

            std::string reason = entry.key;
            if (!entry.output.empty()) {
                reason += ": " + entry.output;
            }
            if (entry.status == health_status::fail && entry.critical) {
                status = health_status::fail;
                reasons.push_back(std::move(reason));
            } else if (entry.status != health_status::pass) {
                status = worst(status, health_status::warn);
                warnings.push_back(std::move(reason));
            }
            report.checks.push_back(std::move(entry));
        }
        report.status = status;
        if (status == health_status::warn) {
            reasons = std::move(warnings);
        }
        for (std::size_t i = 0; i < reasons.size(); ++i) {
            report.output += i == 0 ? reasons[i] : "; " + reasons[i];
        }
        return report;
    }

private:
    static constexpr std::string_view component = "keel::ops::health_registry";
    using state_type = detail::health_check_state<Clock, check_options>;
    using run_type = typename state_type::run_type;
    using view_type = detail::health_check_view<time_point>;
    using reading_type = detail::health_reading<time_point>;

    static void validate(check_options const& options) {
        if (options.name.empty() || options.name.find(':') != std::string::npos) {
            keel::detail::invalid_option(component, "name", "non-empty and free of ':'",
                                         options.name);
        }
        if (options.measurement.find(':') != std::string::npos) {
            keel::detail::invalid_option(component, "measurement", "free of ':'",
                                         options.measurement);
        }
        if (options.timeout <= std::chrono::nanoseconds::zero()) {
            keel::detail::invalid_option(component, "timeout", "> 0", options.timeout);
        }
        if (options.ttl < std::chrono::nanoseconds::zero()) {
            keel::detail::invalid_option(component, "ttl", ">= 0", options.ttl);
        }
    }

    health_report base_report(probe_kind kind) const {
        health_report report;
        report.probe = kind;
        report.service_id = m_options.service_id;
        report.version = m_options.version;
        report.release_id = m_options.release_id;
        report.description = m_options.description;
        return report;
    }

    static view_type view_locked(state_type const& check, bool cached) {
        return view_type{check.last, check.read_at, check.last_change, check.consecutive_failures,
                         cached};
    }

    // Runs or reuses every check and returns one view per check, in order.
    std::vector<view_type> evaluate(std::vector<std::shared_ptr<state_type>> const& checks) const {
        struct pending {
            std::size_t index;
            std::shared_ptr<run_type> run;
            time_point deadline;
            bool budget_bound;
            bool starts; // this probe created the run and starts its thread
        };
        auto const start = m_clock.now();
        // Saturating: a budget or timeout of nanoseconds::max() means no bound, not the past.
        auto const budget_end = keel::detail::saturating_add(start, m_options.budget);
        std::vector<view_type> views(checks.size());
        std::vector<pending> waits;
        std::vector<std::shared_ptr<run_type>> over; // released outside the locks (may join)

        for (std::size_t i = 0; i < checks.size(); ++i) {
            state_type& check = *checks[i];
            std::lock_guard lock{check.mutex};
            if (check.fresh_locked(start)) {
                views[i] = view_locked(check, true);
                continue;
            }
            if (check.running && over_locked(*check.running)) {
                over.push_back(std::move(check.running));
            }
            if (check.running && check.running->task.end() == detail::task_end::expired) {
                // The previous run timed out and still hangs: do not pile another on it.
                check.record_locked(
                    check_result::fail("previous run still running after timing out; not "
                                       "restarted"),
                    start);
                views[i] = view_locked(check, false);
                continue;
            }
            bool const starts = !check.running;
            if (starts) {
                check.running = std::make_shared<run_type>();
                check.running->started = start;
            }
            auto const own_deadline =
                keel::detail::saturating_add(check.running->started, check.options.timeout);
            bool const budget_bound = budget_end < own_deadline;
            waits.push_back(pending{i, check.running, budget_bound ? budget_end : own_deadline,
                                    budget_bound, starts});
        }
        over.clear();

        for (pending const& wait : waits) {
            if (wait.starts) {
                start_run(*checks[wait.index], *wait.run);
            }
        }

        for (pending const& wait : waits) {
            state_type& check = *checks[wait.index];
            run_type& run = *wait.run;
            Sleeper sleeper = m_sleeper;
            run.task.wait_until(m_clock, sleeper, wait.deadline);
            bool timed_out_here = false;
            std::shared_ptr<run_type> ended;
            {
                std::lock_guard lock{check.mutex};
                if (run.task.expire()) {
                    std::string message =
                        wait.budget_bound
                            ? "did not finish within the probe budget of " +
                                  detail::describe_duration(m_options.budget)
                            : "timed out after " + detail::describe_duration(check.options.timeout);
                    check.record_locked(check_result::fail(std::move(message)), m_clock.now());
                    timed_out_here = true;
                } else if (auto const* reading = run.task.result(); reading && !run.recorded) {
                    // The first probe to see the run finished records its reading.
                    run.recorded = true;
                    check.record_locked(reading->result, reading->read_at);
                }
                if (check.running == wait.run && over_locked(run)) {
                    ended = std::move(check.running);
                }
                views[wait.index] = view_locked(check, false);
            }
            if (timed_out_here) {
                // Outside the lock: stop callbacks the check registered run here.
                run.task.cancel();
            }
        }
        return views;
    }

    // True once a run needs nobody any more: its reading is recorded, or it expired and its
    // thread has returned (the late reading is discarded). A new run may then start.
    static bool over_locked(run_type const& run) noexcept {
        switch (run.task.end()) {
        case detail::task_end::finished: return run.recorded;
        case detail::task_end::expired: return run.task.returned();
        case detail::task_end::running: return false;
        }
        return false;
    }

    // Starts the run's thread. It owns only the task state and the check function (see
    // detail::bounded_task), so it may outlive the registry. Without a thread the run
    // fails at once.
    void start_run(state_type const& check, run_type& run) const {
        try {
            run.task.start([function = check.function, clock = m_clock](std::stop_token token) {
                check_result result = detail::run_check_guarded(*function, std::move(token));
                return reading_type{std::move(result), clock.now()};
            });
        } catch (std::system_error const& e) {
            std::string message = std::string{"could not start the check: "} + e.what();
            run.task.run_here([&](std::stop_token) {
                return reading_type{check_result::fail(std::move(message)), m_clock.now()};
            });
        }
    }

    options_type m_options;
    [[no_unique_address]] Clock m_clock;
    [[no_unique_address]] Sleeper m_sleeper;
    // Applies `update` (true if it changed a flag) under the lock, then tells the
    // flag listeners, without it.
    template <class Update>
    void change(std::string_view flag, bool set, std::string const& reason, Update update) {
        std::vector<std::function<void(flag_change const&)>> listeners;
        {
            std::lock_guard lock{m_mutex};
            if (!update() || m_flag_listeners.empty()) {
                return;
            }
            listeners = m_flag_listeners;
        }
        flag_change const event{flag, set, reason};
        for (auto const& listener : listeners) {
            try {
                listener(event);
            } catch (...) { // NOLINT(bugprone-empty-catch): a listener cannot fail a probe
            }
        }
    }

    mutable std::mutex m_mutex;
    std::vector<std::shared_ptr<state_type>> m_checks;
    bool m_started = false;
    std::optional<std::string> m_not_ready;
    std::optional<std::string> m_broken;
    std::vector<std::function<void(flag_change const&)>> m_flag_listeners;
};

/// A health registry on keel::steady_clock with a real sleeper.
using health_registry = basic_health_registry<>;

} // namespace ops

KEEL_END_NAMESPACE
