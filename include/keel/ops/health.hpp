// SPDX-License-Identifier: MIT
// keel::ops::health_registry: the health state of a process, asked as three
// separate questions (liveness, readiness, startup), with cached, time-bounded
// dependency checks behind readiness. Reports are plain values; rendering them
// as application/health+json and mapping them to HTTP lives in
// keel/ops/health_json.hpp. keel has no HTTP server: wire the reports to
// /health/live, /health/ready and /health/startup yourself.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/core/sleeper.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace ops {

/// Enumerates the states of the health+json draft (draft-inadarei-api-health-check),
/// ordered from best to worst so that an aggregate is the worst of its parts.
enum class health_status {
    pass, ///< Healthy; HTTP 200.
    warn, ///< Healthy with concerns (a non-critical check fails); still HTTP 200.
    fail, ///< Unhealthy; HTTP 503.
};

/// Returns "pass", "warn" or "fail", the draft's spelling.
constexpr std::string_view to_string(health_status status) noexcept {
    switch (status) {
    case health_status::pass: return "pass";
    case health_status::warn: return "warn";
    case health_status::fail: return "fail";
    }
    return "fail";
}

/// Returns the worse of two statuses (fail > warn > pass).
constexpr health_status worst(health_status a, health_status b) noexcept {
    return static_cast<int>(a) >= static_cast<int>(b) ? a : b;
}

/// Names which of the three probe questions a report answers.
enum class probe_kind {
    liveness,  ///< Can the process make progress? No dependencies are consulted.
    readiness, ///< Can it serve its contract now? Dependency checks plus the manual flag.
    startup,   ///< Has initialisation finished?
};

/// Returns "liveness", "readiness" or "startup".
constexpr std::string_view to_string(probe_kind kind) noexcept {
    switch (kind) {
    case probe_kind::liveness: return "liveness";
    case probe_kind::readiness: return "readiness";
    case probe_kind::startup: return "startup";
    }
    return "readiness";
}

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

/// Holds what one run of a check found: a status, optionally an observed value with
/// its unit (health+json `observedValue` / `observedUnit`), and a free-text output
/// (health+json `output`, the error text; not rendered for pass).
///
/// A regular value type. Build it with the designated initialisers or with pass(),
/// warn() and fail().
struct check_result {
    health_status status = health_status::pass; ///< The check's verdict.
    std::optional<double> observed_value{};     ///< E.g. 12.5 for 12.5 ms; NaN renders as null.
    std::string observed_unit{};                ///< E.g. "ms"; empty omits it.
    std::string output{};                       ///< Why it warns or fails; empty omits it.

    /// Returns a passing result, optionally with an observed value and unit.
    static check_result pass(std::optional<double> value = std::nullopt, std::string unit = {}) {
        return check_result{health_status::pass, value, std::move(unit), {}};
    }
    /// Returns a warning result with the explanation `output`.
    static check_result warn(std::string output) {
        return check_result{health_status::warn, std::nullopt, {}, std::move(output)};
    }
    /// Returns a failing result with the explanation `output`.
    static check_result fail(std::string output) {
        return check_result{health_status::fail, std::nullopt, {}, std::move(output)};
    }
};

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
    /// timeoutSeconds"). Must be > 0. Also bounded by the registry's `budget`.
    std::chrono::nanoseconds timeout = std::chrono::milliseconds{800};
    /// How long a result is reused before the check runs again, so a burst of probes
    /// (several load balancers, kubelet, a human with curl) does not hammer the
    /// dependency. Default 1 s, as ClickHouse's mcp-clickhouse health cache (users ask
    /// for 1-5 s). 0 disables caching (every probe runs the check, still
    /// single-flight). Must be >= 0. Failures and timeouts are cached like successes.
    std::chrono::nanoseconds ttl = std::chrono::seconds{1};
    /// Whether a failing result fails readiness (true, the default, as .NET's
    /// failureStatus Unhealthy) or only makes it warn (false: degraded, still 200).
    bool critical = true;
};

/// Reports one check inside a health_report: the latest result plus its history.
///
/// Times are wall-clock times, mapped from the registry's clock (see
/// health_registry_options::wall_time). A regular value type.
struct check_report {
    std::string key{};            ///< "name:measurement", or "name" when there is no measurement.
    std::string name{};           ///< The component name.
    std::string measurement{};    ///< The measurement name, possibly empty.
    std::string component_type{}; ///< "datastore", "component", "system" or the override.
    bool critical = true;         ///< Whether failing fails readiness.
    health_status status = health_status::pass;          ///< The latest result's status.
    std::optional<double> observed_value{};              ///< The latest observed value.
    std::string observed_unit{};                         ///< Its unit.
    std::string output{};                                ///< The latest output (error text).
    std::chrono::system_clock::time_point time{};        ///< When the latest result was read.
    std::chrono::system_clock::time_point last_change{}; ///< When the status last changed.
    std::uint64_t consecutive_failures = 0; ///< Failed results in a row (warn does not count).
    bool cached = false; ///< True if this probe reused a cached result without running the check.
};

/// Reports the answer to one probe question: an overall status, why it is not
/// pass, the checks consulted (readiness only) and the service's identity.
///
/// A regular value type; keel/ops/health_json.hpp renders it.
struct health_report {
    probe_kind probe = probe_kind::readiness;   ///< The question answered.
    health_status status = health_status::pass; ///< The overall status.
    std::string output{}; ///< Reasons for warn or fail, "; "-separated; empty for pass.
    std::vector<check_report> checks{}; ///< The checks, in registration order (readiness only).
    std::string service_id{};           ///< health+json serviceId; empty omits it.
    std::string version{};              ///< health+json version; empty omits it.
    std::string release_id{};           ///< health+json releaseId; empty omits it.
    std::string description{};          ///< health+json description; empty omits it.

    /// Returns the HTTP status code for this report: 200 for pass and warn, 503 for
    /// fail (503 Service Unavailable tells a load balancer to try another backend:
    /// the service exists but cannot serve now; .NET's default mapping too).
    int http_status() const noexcept { return status == health_status::fail ? 503 : 200; }
    /// Returns true unless the status is fail (what a probe treats as success).
    bool ok() const noexcept { return status != health_status::fail; }
};

/// Configures a health_registry. Validated once, at construction.
template <clock Clock = steady_clock>
struct health_registry_options {
    /// The most a readiness probe waits for its checks, in total. Default 900 ms:
    /// within the Kubernetes probe timeoutSeconds default of 1 s. Must be > 0. A check
    /// still running when the budget ends counts as failed for that run.
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

namespace detail {

/// One execution of a check; shared by the worker thread and every probe waiting on it.
template <class TimePoint>
struct health_check_run {
    TimePoint started{};
    std::stop_source done;   // fired by the worker when the check returns
    std::stop_source cancel; // handed to the check; fired at its timeout
    // Set once, under the check's mutex: by the worker (it finished first) or by the
    // first probe that saw the timeout. A late result after a timeout is discarded.
    std::optional<check_result> outcome;
};

/// What the registry knows about one check; shared with its running worker thread, so
/// a detached worker never outlives the state it writes to.
template <class Clock>
struct health_check_state {
    using time_point = typename Clock::time_point;
    using run_type = health_check_run<time_point>;

    check_options options;
    std::string key;
    std::string component_type;
    std::function<check_result(std::stop_token)> function;

    std::mutex mutex;
    std::shared_ptr<run_type> running; // the run in progress (possibly past its timeout)
    bool has_result = false;
    check_result last;
    time_point read_at{};
    time_point last_change{};
    std::uint64_t consecutive_failures = 0;

    bool fresh_locked(time_point now) const { return has_result && now - read_at < options.ttl; }

    void record_locked(check_result result, time_point now) {
        if (!has_result || result.status != last.status) {
            last_change = now;
        }
        consecutive_failures = result.status == health_status::fail ? consecutive_failures + 1 : 0;
        last = std::move(result);
        read_at = now;
        has_result = true;
    }
};

/// A copy of a check's state taken under its lock, converted to a report outside it.
template <class TimePoint>
struct health_check_view {
    check_result result;
    TimePoint read_at{};
    TimePoint last_change{};
    std::uint64_t consecutive_failures = 0;
    bool cached = false;
};

inline std::string describe_duration(std::chrono::nanoseconds d) {
    // Qualified names: keel::ops::detail has a seconds() of its own (pool_sizing.hpp).
    using std::chrono::duration_cast, std::chrono::microseconds, std::chrono::milliseconds,
        std::chrono::nanoseconds;
    if (d % std::chrono::seconds{1} == nanoseconds::zero()) {
        return std::to_string(duration_cast<std::chrono::seconds>(d).count()) + "s";
    }
    if (d % milliseconds{1} == nanoseconds::zero()) {
        return std::to_string(duration_cast<milliseconds>(d).count()) + "ms";
    }
    if (d % microseconds{1} == nanoseconds::zero()) {
        return std::to_string(duration_cast<microseconds>(d).count()) + "us";
    }
    return std::to_string(d.count()) + "ns";
}

template <class F>
std::function<check_result(std::stop_token)> adapt_check(F&& f) {
    using fn_type = std::decay_t<F>;
    static_assert(std::is_invocable_v<fn_type&, std::stop_token> || std::is_invocable_v<fn_type&>,
                  "a health check is callable with a std::stop_token or with no argument");
    return [fn = fn_type(std::forward<F>(f))](std::stop_token token) mutable -> check_result {
        auto call = [&]() -> decltype(auto) {
            if constexpr (std::is_invocable_v<fn_type&, std::stop_token>) {
                return fn(std::move(token));
            } else {
                return fn();
            }
        };
        using result_type = std::remove_cvref_t<decltype(call())>;
        static_assert(std::is_same_v<result_type, check_result> ||
                          std::is_same_v<result_type, bool>,
                      "a health check returns keel::ops::check_result or bool");
        if constexpr (std::is_same_v<result_type, bool>) {
            return call() ? check_result::pass() : check_result::fail("check returned false");
        } else {
            return call();
        }
    };
}

inline check_result run_check_guarded(std::function<check_result(std::stop_token)>& function,
                                      std::stop_token token) noexcept {
    try {
        try {
            return function(std::move(token));
        } catch (std::exception const& e) {
            return check_result::fail(e.what());
        } catch (...) {
            return check_result::fail("check threw an exception of unknown type");
        }
    } catch (...) {
        // Building the failure itself failed (out of memory): report it without text.
        return check_result{health_status::fail, std::nullopt, {}, {}};
    }
}

} // namespace detail

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
/// without it. Its thread is left to finish on its own: it is not joined, and the
/// check is not started again while it still runs (later probes report it as
/// "still running"); its late result is discarded. A check that throws counts as
/// failed with the exception's what() as output. Results are cached for the check's
/// ttl, and concurrent probes share one run (single-flight).
///
/// All member functions are thread-safe. Check functions and the wall_time mapping
/// are never called with a lock held. Lifetime: a worker thread shares ownership of
/// its check's state (including the check function), so destroying the registry
/// while a check hangs is safe; the destructor fires the stop token of every running
/// check. Objects the check function refers to must outlive that run, or the check
/// must return when its stop token fires.
///
/// Example:
///
///     keel::ops::health_registry<> health{{.service_id = "orders"}};
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
class health_registry {
public:
    using clock_type = Clock;
    using time_point = typename Clock::time_point;
    using options_type = health_registry_options<Clock>;

    /// Builds a registry reading `clock` and waiting through `sleeper`; not started,
    /// ready otherwise, not broken, with no checks. Throws std::invalid_argument if
    /// an option is out of range.
    explicit health_registry(options_type options = {}, Clock clock = Clock{},
                             Sleeper sleeper = Sleeper{})
        : m_options(std::move(options)), m_clock(std::move(clock)), m_sleeper(std::move(sleeper)) {
        if (m_options.budget <= std::chrono::nanoseconds::zero()) {
            throw std::invalid_argument("keel::health_registry: budget must be > 0, got " +
                                        detail::describe_duration(m_options.budget));
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

    health_registry(health_registry const&) = delete;
    health_registry& operator=(health_registry const&) = delete;

    /// Fires the stop token of every check still running; their threads finish later
    /// on their own and keep only the check's own state alive.
    ~health_registry() {
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
                run->cancel.request_stop();
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
        state->function = detail::adapt_check(std::forward<F>(check));
        state->options = std::move(options);
        std::lock_guard lock{m_mutex};
        for (auto const& existing : m_checks) {
            if (existing->key == state->key) {
                throw std::invalid_argument("keel::health_registry: check key must be unique, \"" +
                                            state->key + "\" is already registered");
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
        std::lock_guard lock{m_mutex};
        m_started = true;
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
        std::lock_guard lock{m_mutex};
        m_not_ready = std::move(reason);
    }

    /// Clears the manual not-ready flag; readiness() goes back to the checks. No-op
    /// when the flag is not set.
    void clear_not_ready() {
        std::lock_guard lock{m_mutex};
        m_not_ready.reset();
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
        std::lock_guard lock{m_mutex};
        m_broken = std::move(reason);
    }

    /// Clears the broken mark (a watchdog saw the process recover).
    void clear_broken() {
        std::lock_guard lock{m_mutex};
        m_broken.reset();
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
    using state_type = detail::health_check_state<Clock>;
    using run_type = typename state_type::run_type;
    using view_type = detail::health_check_view<time_point>;

    static void validate(check_options const& options) {
        if (options.name.empty() || options.name.find(':') != std::string::npos) {
            throw std::invalid_argument(
                "keel::health_registry: check name must be non-empty and contain no ':', got \"" +
                options.name + "\"");
        }
        if (options.measurement.find(':') != std::string::npos) {
            throw std::invalid_argument(
                "keel::health_registry: check measurement must contain no ':', got \"" +
                options.measurement + "\"");
        }
        if (options.timeout <= std::chrono::nanoseconds::zero()) {
            throw std::invalid_argument("keel::health_registry: check timeout must be > 0, got " +
                                        detail::describe_duration(options.timeout));
        }
        if (options.ttl < std::chrono::nanoseconds::zero()) {
            throw std::invalid_argument("keel::health_registry: check ttl must be >= 0, got " +
                                        detail::describe_duration(options.ttl));
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
        };
        auto const start = m_clock.now();
        auto const budget_end =
            start + std::chrono::duration_cast<typename Clock::duration>(m_options.budget);
        std::vector<view_type> views(checks.size());
        std::vector<pending> waits;
        std::vector<std::size_t> to_start;

        for (std::size_t i = 0; i < checks.size(); ++i) {
            state_type& check = *checks[i];
            std::lock_guard lock{check.mutex};
            if (check.fresh_locked(start)) {
                views[i] = view_locked(check, true);
            } else if (check.running && check.running->outcome) {
                // The previous run timed out and still hangs: do not pile another on it.
                check.record_locked(
                    check_result::fail("previous run still running after timing out; not "
                                       "restarted"),
                    start);
                views[i] = view_locked(check, false);
            } else {
                if (!check.running) {
                    check.running = std::make_shared<run_type>();
                    check.running->started = start;
                    to_start.push_back(i);
                }
                auto const own_deadline =
                    check.running->started +
                    std::chrono::duration_cast<typename Clock::duration>(check.options.timeout);
                bool const budget_bound = budget_end < own_deadline;
                waits.push_back(pending{i, check.running, budget_bound ? budget_end : own_deadline,
                                        budget_bound});
            }
        }

        for (std::size_t i : to_start) {
            start_run(checks[i]);
        }

        for (pending const& wait : waits) {
            state_type& check = *checks[wait.index];
            auto const remaining =
                std::chrono::duration_cast<std::chrono::nanoseconds>(wait.deadline - m_clock.now());
            Sleeper sleeper = m_sleeper;
            sleeper.sleep_for(remaining, wait.run->done.get_token());
            bool timed_out_here = false;
            {
                std::lock_guard lock{check.mutex};
                if (!wait.run->outcome) {
                    std::string message =
                        wait.budget_bound
                            ? "did not finish within the probe budget of " +
                                  detail::describe_duration(m_options.budget)
                            : "timed out after " + detail::describe_duration(check.options.timeout);
                    wait.run->outcome = check_result::fail(message);
                    check.record_locked(check_result::fail(std::move(message)), m_clock.now());
                    timed_out_here = true;
                }
                views[wait.index] = view_locked(check, false);
            }
            if (timed_out_here) {
                // Outside the lock: stop callbacks the check registered run here.
                wait.run->cancel.request_stop();
            }
        }
        return views;
    }

    // Starts the check's pending run on a detached thread that owns the state it writes.
    void start_run(std::shared_ptr<state_type> const& check) const {
        std::shared_ptr<run_type> run;
        {
            std::lock_guard lock{check->mutex};
            run = check->running;
        }
        try {
            std::thread{[check, run, clock = m_clock]() mutable {
                check_result fresh =
                    detail::run_check_guarded(check->function, run->cancel.get_token());
                auto const now = clock.now();
                {
                    std::lock_guard lock{check->mutex};
                    if (!run->outcome) {
                        run->outcome = fresh;
                        check->record_locked(std::move(fresh), now);
                    }
                    if (check->running == run) {
                        check->running.reset();
                    }
                }
                run->done.request_stop();
            }}.detach();
        } catch (std::system_error const& e) {
            {
                std::lock_guard lock{check->mutex};
                if (!run->outcome) {
                    std::string message = std::string{"could not start the check: "} + e.what();
                    run->outcome = check_result::fail(message);
                    check->record_locked(check_result::fail(std::move(message)), m_clock.now());
                }
                if (check->running == run) {
                    check->running.reset();
                }
            }
            run->done.request_stop();
        }
    }

    options_type m_options;
    [[no_unique_address]] Clock m_clock;
    [[no_unique_address]] Sleeper m_sleeper;
    mutable std::mutex m_mutex;
    std::vector<std::shared_ptr<state_type>> m_checks;
    bool m_started = false;
    std::optional<std::string> m_not_ready;
    std::optional<std::string> m_broken;
};

} // namespace ops

KEEL_END_NAMESPACE
