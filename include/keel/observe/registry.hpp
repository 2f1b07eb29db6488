// SPDX-License-Identifier: MIT
// keel::observe::registry: the components a service runs (circuit breakers,
// rate limiters and keyed tables, bulkheads, retry budgets, pipelines' counters,
// the drain coordinator, the health registry), registered by name with optional
// constant labels, and rendered as one Prometheus or OpenMetrics page from the
// snapshots and counters the components already keep. resilience4j's
// CircuitBreakerRegistry and its Micrometer binders are the model; the series
// and what each means are listed in docs/observability.md.
#pragma once

#include <keel/detail/validate.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/limiter.hpp>
#include <keel/observe/exposition.hpp>
#include <keel/observe/pipeline_counters.hpp>
#include <keel/policy/bulkhead.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/retry_budget.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

KEEL_BEGIN_NAMESPACE
namespace observe {

/// One constant label of a registration: name and (unescaped) value.
struct label {
    std::string name;  ///< A label name: [a-zA-Z_][a-zA-Z0-9_]*, not starting with `__`.
    std::string value; ///< Any text; escaped when rendered.
};

/// Enumerates the kinds of component a registry renders; each has its own
/// metric families, and a name is unique within its kind.
enum class component_kind : std::uint8_t {
    circuit_breaker = 0, ///< keel::circuit_breaker: `keel_circuit_breaker_*`.
    rate_limiter = 1,    ///< keel's local limiters and keel::keyed: `keel_rate_limiter_*`.
    bulkhead = 2,        ///< keel::bulkhead: `keel_bulkhead_*`.
    retry_budget = 3,    ///< keel::retry_budget: `keel_retry_budget_*`.
    pipeline = 4,        ///< keel::observe::pipeline_counters: `keel_pipeline_*`.
    drain = 5,           ///< keel::ops::drain_coordinator: `keel_drain_*`.
    health = 6,          ///< keel::ops::health_registry: `keel_health_*`.
};

/// Returns the lower-case name of `kind`, e.g. "circuit_breaker".
constexpr std::string_view to_string(component_kind kind) noexcept {
    switch (kind) {
    case component_kind::circuit_breaker: return "circuit_breaker";
    case component_kind::rate_limiter: return "rate_limiter";
    case component_kind::bulkhead: return "bulkhead";
    case component_kind::retry_budget: return "retry_budget";
    case component_kind::pipeline: return "pipeline";
    case component_kind::drain: return "drain";
    case component_kind::health: return "health";
    }
    return "unknown";
}

/// Describes a circuit breaker the registry can render: keel::basic_circuit_breaker.
template <class B>
concept observable_breaker = requires(B& b) {
    { b.metrics() } -> std::same_as<circuit_metrics>;
    b.on_transition([](typename B::transition const&) {});
};

/// Describes a rate limiter the registry can render: keel's local limiters
/// (decisions() and a peek, try_acquire(0), that reads the quota left).
template <class L>
concept observable_limiter = rate_limiter<L> && requires(L const& l) {
    { l.decisions() } -> std::same_as<decision_counts>;
};

/// Describes a per-key limiter table the registry can render: keel::keyed.
template <class K>
concept observable_keyed = requires(K& k) {
    { k.decisions() } -> std::same_as<decision_counts>;
    { k.size() } -> std::convertible_to<std::size_t>;
    { k.max_keys() } -> std::convertible_to<std::size_t>;
    { k.overflow_limiter().try_acquire(std::int64_t{0}) } -> std::same_as<decision>;
};

/// Describes a bulkhead the registry can render: keel::basic_bulkhead.
template <class B>
concept observable_bulkhead = requires(B const& b) {
    { b.snapshot() } -> std::same_as<bulkhead_snapshot>;
};

/// Describes a retry budget the registry can render: keel::basic_retry_budget.
template <class B>
concept observable_retry_budget = requires(B const& b) {
    { b.snapshot() } -> std::same_as<retry_budget_snapshot>;
};

/// Describes a drain coordinator the registry can render: keel::ops::basic_drain_coordinator.
template <class D>
concept observable_drain = requires(D const& d) {
    { d.draining() } -> std::convertible_to<bool>;
    { d.shutdown_requested() } -> std::convertible_to<bool>;
    { d.in_flight() } -> std::convertible_to<std::uint64_t>;
    { d.admitted() } -> std::convertible_to<std::uint64_t>;
};

/// Describes a health registry the registry can render: keel::ops::basic_health_registry.
template <class H>
concept observable_health = requires(H const& h) {
    { h.started() } -> std::convertible_to<bool>;
    { h.broken_reason().has_value() } -> std::convertible_to<bool>;
    { h.not_ready_reason().has_value() } -> std::convertible_to<bool>;
    { h.check_count() } -> std::convertible_to<std::size_t>;
};

/// Configures a keel::observe::registry.
struct registry_options {
    /// Returns the wall-clock time a registration is stamped with: the value of
    /// its counters' OpenMetrics `_created` samples. Default empty:
    /// std::chrono::system_clock::now (OpenMetrics 1.0 defines `_created` as a
    /// Unix time). Set it to a fixed time for reproducible pages in tests.
    std::function<std::chrono::system_clock::time_point()> wall_clock{};
};

namespace detail {
struct registry_entry;
} // namespace detail

/// Holds named references to a service's keel components and renders their
/// metrics as one Prometheus 0.0.4 or OpenMetrics 1.0 text page.
///
/// Registration holds a reference: each component stays owned by the service
/// and must outlive its registration (remove() it before destroying it, or
/// destroy the registry first). A name is unique within its component_kind:
/// adding a second breaker named "users" throws std::invalid_argument, while a
/// breaker and a limiter may share a name. Every sample carries `name="<name>"`
/// and the registration's constant labels (e.g. `dependency="users"`). A
/// registered circuit breaker gets one transition-counting listener per
/// registration (breakers cannot drop listeners; the listener outlives the
/// registration harmlessly).
///
/// Rendering reads each component's snapshot once (the breaker's metrics(), the
/// limiters' decision counts and a peek, snapshot() of the others): no hot path
/// is touched and no user code runs. Thread-safe: renders run concurrently with
/// each other and with the components' use; add() and remove() wait for the
/// renders in progress, so once remove() returns the component may be destroyed.
///
///     keel::observe::registry metrics;
///     metrics.add("users", users_breaker, {{"dependency", "users"}});
///     metrics.add("per_client", per_client_limits);
///     auto const format = keel::observe::negotiate(request.header("Accept"));
///     respond(metrics.render(format), keel::observe::content_type(format));
class registry {
public:
    /// Builds an empty registry.
    explicit registry(registry_options options = {});
    registry(registry const&) = delete;
    registry& operator=(registry const&) = delete;

    /// Registers `breaker` as `name`; throws std::invalid_argument if a breaker is
    /// already registered under `name` or a label is invalid (see add's common rules).
    template <observable_breaker B>
    void add(std::string name, B& breaker, std::vector<label> labels = {});
    /// Registers the local rate limiter `limiter` as `name`.
    template <observable_limiter L>
    void add(std::string name, L& limiter, std::vector<label> labels = {});
    /// Registers the per-key limiter table `table` as `name` (a rate_limiter kind).
    template <observable_keyed K>
    void add(std::string name, K& table, std::vector<label> labels = {});
    /// Registers `bulkhead` as `name`.
    template <observable_bulkhead B>
    void add(std::string name, B const& bulkhead, std::vector<label> labels = {});
    /// Registers the retry budget `budget` as `name`.
    template <observable_retry_budget B>
    void add(std::string name, B const& budget, std::vector<label> labels = {});
    /// Registers a pipeline's counters as `name` (see keel::observe::pipeline_counters).
    void add(std::string name, pipeline_counters const& counters, std::vector<label> labels = {});
    /// Registers the drain coordinator `drain` as `name`.
    template <observable_drain D>
    void add(std::string name, D const& drain, std::vector<label> labels = {});
    /// Registers the health registry `health` as `name`.
    template <observable_health H>
    void add(std::string name, H const& health, std::vector<label> labels = {});

    /// Removes the registration of `kind` named `name`; returns false if there is
    /// none. Waits for renders in progress.
    bool remove(component_kind kind, std::string_view name);

    /// Returns true if a component of `kind` is registered as `name`.
    bool contains(component_kind kind, std::string_view name) const;

    /// Returns how many components are registered.
    std::size_t size() const;

    /// Appends the page in `format` to `out` (which a caller may reuse between
    /// scrapes: rendering then allocates only what the components' snapshots do).
    void render_to(std::string& out, exposition_format format) const;

    /// Returns the page in `format`, in a string reserved at the size of the last
    /// page rendered (one allocation for a steady registry).
    std::string render(exposition_format format) const {
        std::string out;
        auto const last = m_last_size.load(std::memory_order_relaxed);
        out.reserve(last + last / 8);
        render_to(out, format);
        m_last_size.store(out.size(), std::memory_order_relaxed);
        return out;
    }

private:
    void insert(detail::registry_entry entry, std::vector<label> const& labels);

    registry_options m_options;
    mutable std::shared_mutex m_mutex;
    std::vector<detail::registry_entry> m_entries; // sorted by (kind, name)
    mutable std::atomic<std::size_t> m_last_size{0};
};

namespace detail {

// What one read of a component gives: one struct per kind.
struct breaker_view {
    circuit_metrics metrics;
    std::array<std::uint64_t, 5> transitions{}; // indexed by the circuit_state entered
};
struct limiter_view {
    decision_counts decisions;
    std::int64_t available = 0;
    std::int64_t limit = 0;
    std::uint64_t keys = 0;
    std::uint64_t max_keys = 0;
    bool keyed = false;
};
struct drain_view {
    bool shutdown_requested = false;
    bool draining = false;
    std::uint64_t in_flight = 0;
    std::uint64_t admitted = 0;
};
struct health_view {
    bool started = false;
    bool broken = false;
    bool not_ready = false;
    std::uint64_t checks = 0;
};
using component_view =
    std::variant<breaker_view, limiter_view, bulkhead_snapshot, retry_budget_snapshot,
                 pipeline_snapshot, drain_view, health_view>;

// Transitions a breaker's listener counts for one registration.
struct transition_counts {
    std::array<std::atomic<std::uint64_t>, 5> to{};
};

struct registry_entry {
    component_kind kind{};
    std::string name;
    std::string labels; // name="..." and the constant labels, escaped
    // Non-const for the limiters' peeks; a component added as const is only read
    // through a const pointer by its `read`.
    void* component = nullptr;
    component_view (*read)(registry_entry const&) = nullptr;
    std::shared_ptr<transition_counts> transitions;
    std::chrono::system_clock::time_point created{};
};

// One metric family of a component kind: how to write its samples from a view.
struct family_spec {
    std::string_view name;
    metric_type type;
    std::string_view help;
    std::string_view unit;
    // Writes the family's samples for one entry; `scratch` holds label text.
    void (*write)(exposition_writer&, registry_entry const&, component_view const&,
                  std::string& scratch);
    // Whether an entry has samples in this family (null: every entry).
    bool (*applies)(component_view const&);
};

// Writes the sample `value` with the entry's labels and one more, `key="value"`.
inline void labelled(exposition_writer& w, registry_entry const& e, std::string& scratch,
                     std::string_view key, std::string_view value, double v) {
    scratch = e.labels;
    exposition_writer::append_label(scratch, key, value);
    w.sample(scratch, v, e.created);
}

template <class View>
View const& as(component_view const& v) noexcept {
    return *std::get_if<View>(&v);
}

inline double seconds(std::chrono::nanoseconds d) noexcept {
    return static_cast<double>(d.count()) / 1e9;
}

// A family whose one sample per entry is `get(view)`.
#define KEEL_OBSERVE_PLAIN(View, expr)                                                             \
    [](exposition_writer& w, registry_entry const& e, component_view const& cv, std::string&) {    \
        [[maybe_unused]] View const& v = as<View>(cv);                                             \
        w.sample(e.labels, static_cast<double>(expr), e.created);                                  \
    }

inline constexpr std::array<std::string_view, 5> breaker_states = {"closed", "open", "half_open",
                                                                   "forced_open", "disabled"};

inline constexpr family_spec breaker_families[] = {
    {"keel_circuit_breaker_state", metric_type::gauge,
     "The circuit breaker's state: 1 for the current one, 0 for the others.", "",
     [](exposition_writer& w, registry_entry const& e, component_view const& cv,
        std::string& scratch) {
         auto const state = static_cast<std::size_t>(as<breaker_view>(cv).metrics.state);
         for (std::size_t i = 0; i < breaker_states.size(); ++i) {
             labelled(w, e, scratch, "state", breaker_states[i], i == state ? 1 : 0);
         }
     },
     nullptr},
    {"keel_circuit_breaker_not_permitted_calls", metric_type::counter,
     "Calls the circuit breaker rejected without running them.", "",
     KEEL_OBSERVE_PLAIN(breaker_view, v.metrics.rejected_calls), nullptr},
    {"keel_circuit_breaker_calls", metric_type::counter,
     "Calls the circuit breaker admitted that completed, by outcome, since it was built.", "",
     [](exposition_writer& w, registry_entry const& e, component_view const& cv,
        std::string& scratch) {
         auto const& m = as<breaker_view>(cv).metrics;
         labelled(w, e, scratch, "kind", "successful",
                  static_cast<double>(m.total_successful_calls));
         labelled(w, e, scratch, "kind", "failed", static_cast<double>(m.total_failed_calls));
         labelled(w, e, scratch, "kind", "ignored", static_cast<double>(m.total_ignored_calls));
     },
     nullptr},
    {"keel_circuit_breaker_slow_calls", metric_type::counter,
     "Completed calls (failed or not) slower than the slow-call duration, since the circuit "
     "breaker was built.",
     "", KEEL_OBSERVE_PLAIN(breaker_view, v.metrics.total_slow_calls), nullptr},
    {"keel_circuit_breaker_transitions", metric_type::counter,
     "State changes of the circuit breaker since it was registered, by the state entered.", "",
     [](exposition_writer& w, registry_entry const& e, component_view const& cv,
        std::string& scratch) {
         auto const& v = as<breaker_view>(cv);
         for (std::size_t i = 0; i < breaker_states.size(); ++i) {
             labelled(w, e, scratch, "to", breaker_states[i],
                      static_cast<double>(v.transitions[i]));
         }
     },
     nullptr},
    {"keel_circuit_breaker_window_calls", metric_type::gauge,
     "Calls in the circuit breaker's sliding window, by outcome.", "",
     [](exposition_writer& w, registry_entry const& e, component_view const& cv,
        std::string& scratch) {
         auto const& m = as<breaker_view>(cv).metrics;
         labelled(w, e, scratch, "kind", "successful",
                  static_cast<double>(m.calls - m.failed_calls));
         labelled(w, e, scratch, "kind", "failed", static_cast<double>(m.failed_calls));
     },
     nullptr},
    {"keel_circuit_breaker_window_slow_calls", metric_type::gauge,
     "Slow calls (failed or not) in the circuit breaker's sliding window.", "",
     KEEL_OBSERVE_PLAIN(breaker_view, v.metrics.slow_calls), nullptr},
    {"keel_circuit_breaker_failure_ratio", metric_type::gauge,
     "Failed calls over calls in the sliding window, from 0 to 1; 0 when it is empty.", "",
     KEEL_OBSERVE_PLAIN(breaker_view, v.metrics.failure_rate / 100.0), nullptr},
    {"keel_circuit_breaker_slow_call_ratio", metric_type::gauge,
     "Slow calls over calls in the sliding window, from 0 to 1; 0 when it is empty.", "",
     KEEL_OBSERVE_PLAIN(breaker_view, v.metrics.slow_call_rate / 100.0), nullptr},
    {"keel_circuit_breaker_open_remaining_seconds", metric_type::gauge,
     "Time until an open circuit breaker admits a probe; 0 in every other state.", "seconds",
     KEEL_OBSERVE_PLAIN(breaker_view, seconds(v.metrics.time_until_half_open.value_or(
                                          std::chrono::nanoseconds{}))),
     nullptr},
    {"keel_circuit_breaker_consecutive_openings", metric_type::gauge,
     "Openings since the circuit breaker last closed (the reset backoff's exponent).", "",
     KEEL_OBSERVE_PLAIN(breaker_view, v.metrics.consecutive_openings), nullptr},
};

inline bool is_keyed(component_view const& v) noexcept {
    return as<limiter_view>(v).keyed;
}
inline bool is_single(component_view const& v) noexcept {
    return !as<limiter_view>(v).keyed;
}

inline constexpr family_spec limiter_families[] = {
    {"keel_rate_limiter_decisions", metric_type::counter,
     "Requests for permits the rate limiter decided, by decision (peeks not counted).", "",
     [](exposition_writer& w, registry_entry const& e, component_view const& cv,
        std::string& scratch) {
         auto const& d = as<limiter_view>(cv).decisions;
         labelled(w, e, scratch, "decision", "allowed", static_cast<double>(d.allowed));
         labelled(w, e, scratch, "decision", "refused", static_cast<double>(d.refused));
         labelled(w, e, scratch, "decision", "unsatisfiable", static_cast<double>(d.unsatisfiable));
     },
     nullptr},
    {"keel_rate_limiter_limit_permits", metric_type::gauge,
     "The rate limiter's quota: permits per window, or the bucket's burst (per key for a "
     "keyed table).",
     "", KEEL_OBSERVE_PLAIN(limiter_view, v.limit), nullptr},
    {"keel_rate_limiter_available_permits", metric_type::gauge,
     "Permits the rate limiter would grant now.", "", KEEL_OBSERVE_PLAIN(limiter_view, v.available),
     is_single},
    {"keel_rate_limiter_keys", metric_type::gauge, "Keys the keyed rate limiter table holds.", "",
     KEEL_OBSERVE_PLAIN(limiter_view, v.keys), is_keyed},
    {"keel_rate_limiter_max_keys", metric_type::gauge,
     "The most keys the keyed rate limiter table holds.", "",
     KEEL_OBSERVE_PLAIN(limiter_view, v.max_keys), is_keyed},
};

inline constexpr family_spec bulkhead_families[] = {
    {"keel_bulkhead_in_flight_calls", metric_type::gauge, "Calls holding a bulkhead slot.", "",
     KEEL_OBSERVE_PLAIN(bulkhead_snapshot, v.in_flight), nullptr},
    {"keel_bulkhead_queued_calls", metric_type::gauge, "Calls waiting for a bulkhead slot.", "",
     KEEL_OBSERVE_PLAIN(bulkhead_snapshot, v.queued), nullptr},
    {"keel_bulkhead_max_concurrent_calls", metric_type::gauge,
     "The bulkhead's limit on calls in flight.", "",
     KEEL_OBSERVE_PLAIN(bulkhead_snapshot, v.max_concurrent_calls), nullptr},
    {"keel_bulkhead_max_queued_calls", metric_type::gauge, "The bound of the bulkhead's queue.", "",
     KEEL_OBSERVE_PLAIN(bulkhead_snapshot, v.max_queued_calls), nullptr},
    {"keel_bulkhead_rejected_calls", metric_type::counter,
     "Calls the bulkhead turned away since it was built: full on arrival, or after waiting "
     "in its queue without getting a slot.",
     "",
     [](exposition_writer& w, registry_entry const& e, component_view const& cv,
        std::string& scratch) {
         auto const& v = as<bulkhead_snapshot>(cv);
         labelled(w, e, scratch, "kind", "full", static_cast<double>(v.rejected_full));
         labelled(w, e, scratch, "kind", "after_wait", static_cast<double>(v.rejected_waits));
     },
     nullptr},
};

inline constexpr family_spec retry_budget_families[] = {
    {"keel_retry_budget_window_calls", metric_type::gauge,
     "Calls deposited in the retry budget within its ttl.", "",
     KEEL_OBSERVE_PLAIN(retry_budget_snapshot, v.calls), nullptr},
    {"keel_retry_budget_window_retries", metric_type::gauge,
     "Retries withdrawn from the retry budget within its ttl.", "",
     KEEL_OBSERVE_PLAIN(retry_budget_snapshot, v.retries), nullptr},
    {"keel_retry_budget_available_retries", metric_type::gauge,
     "Retries the budget would grant now (its floor plus ratio times calls, less retries).", "",
     KEEL_OBSERVE_PLAIN(retry_budget_snapshot, v.balance), nullptr},
    {"keel_retry_budget_refused_retries", metric_type::counter, "Retries the budget refused.", "",
     KEEL_OBSERVE_PLAIN(retry_budget_snapshot, v.refused), nullptr},
};

inline constexpr family_spec pipeline_families[] = {
    {"keel_pipeline_calls", metric_type::counter,
     "Logical calls through the pipeline, by how they ended.", "",
     [](exposition_writer& w, registry_entry const& e, component_view const& cv,
        std::string& scratch) {
         auto const& v = as<pipeline_snapshot>(cv);
         for (std::size_t i = 0; i < call_outcome_count; ++i) {
             labelled(w, e, scratch, "outcome", to_string(static_cast<call_outcome>(i)),
                      static_cast<double>(v.calls[i]));
         }
     },
     nullptr},
    {"keel_pipeline_attempts", metric_type::counter,
     "Attempts the pipeline made: first attempts and retries.", "",
     KEEL_OBSERVE_PLAIN(pipeline_snapshot, v.attempts), nullptr},
    {"keel_pipeline_retries", metric_type::counter, "Retries the pipeline decided.", "",
     KEEL_OBSERVE_PLAIN(pipeline_snapshot, v.retries), nullptr},
    {"keel_pipeline_retry_wait_seconds", metric_type::counter,
     "Backoff the pipeline chose before its retries, summed.", "seconds",
     KEEL_OBSERVE_PLAIN(pipeline_snapshot, seconds(v.retry_wait)), nullptr},
};

inline constexpr family_spec drain_families[] = {
    {"keel_drain_shutdown_requested", metric_type::gauge,
     "1 once the shutdown has begun (readiness fails), else 0.", "",
     KEEL_OBSERVE_PLAIN(drain_view, v.shutdown_requested ? 1 : 0), nullptr},
    {"keel_drain_draining", metric_type::gauge, "1 once new work is refused, else 0.", "",
     KEEL_OBSERVE_PLAIN(drain_view, v.draining ? 1 : 0), nullptr},
    {"keel_drain_in_flight_requests", metric_type::gauge,
     "Units of work (drain tickets) in flight.", "", KEEL_OBSERVE_PLAIN(drain_view, v.in_flight),
     nullptr},
    {"keel_drain_admitted_requests", metric_type::counter,
     "Units of work (drain tickets) admitted, modulo 2^40.", "",
     KEEL_OBSERVE_PLAIN(drain_view, v.admitted), nullptr},
};

inline constexpr family_spec health_families[] = {
    {"keel_health_started", metric_type::gauge,
     "1 once the service marked its start-up finished (the startup probe passes), else 0.", "",
     KEEL_OBSERVE_PLAIN(health_view, v.started ? 1 : 0), nullptr},
    {"keel_health_broken", metric_type::gauge,
     "1 while the service is marked broken (the liveness probe fails), else 0.", "",
     KEEL_OBSERVE_PLAIN(health_view, v.broken ? 1 : 0), nullptr},
    {"keel_health_not_ready", metric_type::gauge,
     "1 while the manual not-ready flag is set (draining, warming up), else 0.", "",
     KEEL_OBSERVE_PLAIN(health_view, v.not_ready ? 1 : 0), nullptr},
    {"keel_health_checks", metric_type::gauge, "Readiness checks registered.", "",
     KEEL_OBSERVE_PLAIN(health_view, v.checks), nullptr},
};

#undef KEEL_OBSERVE_PLAIN

struct kind_families {
    family_spec const* begin;
    std::size_t size;
};

inline constexpr std::array<kind_families, 7> families_of_kind = {{
    {breaker_families, std::size(breaker_families)},
    {limiter_families, std::size(limiter_families)},
    {bulkhead_families, std::size(bulkhead_families)},
    {retry_budget_families, std::size(retry_budget_families)},
    {pipeline_families, std::size(pipeline_families)},
    {drain_families, std::size(drain_families)},
    {health_families, std::size(health_families)},
}};

// Label names the families add themselves, and the registration's own.
inline constexpr std::string_view reserved_labels[] = {"name",     "state",   "to", "kind",
                                                       "decision", "outcome", "le", "quantile"};

} // namespace detail

// Out of the class, where detail::registry_entry is complete.
inline registry::registry(registry_options options) : m_options(std::move(options)) {}

template <observable_breaker B>
void registry::add(std::string name, B& breaker, std::vector<label> labels) {
    if constexpr (requires { breaker.count_totals(); }) {
        breaker.count_totals(); // a breaker counts its completions only once observed
    }
    detail::registry_entry e;
    e.kind = component_kind::circuit_breaker;
    e.name = std::move(name);
    e.component = &breaker;
    e.read = [](detail::registry_entry const& entry) -> detail::component_view {
        detail::breaker_view v;
        v.metrics = static_cast<B*>(entry.component)->metrics();
        for (std::size_t i = 0; i < v.transitions.size(); ++i) {
            v.transitions[i] = entry.transitions->to[i].load(std::memory_order_relaxed);
        }
        return v;
    };
    e.transitions = std::make_shared<detail::transition_counts>();
    auto counts = e.transitions;
    insert(std::move(e), labels);
    // After the insert succeeded, so a rejected registration leaves no listener behind.
    breaker.on_transition([counts](typename B::transition const& t) {
        auto const i = static_cast<std::size_t>(t.to);
        if (i < counts->to.size()) {
            counts->to[i].fetch_add(1, std::memory_order_relaxed);
        }
    });
}

template <observable_limiter L>
void registry::add(std::string name, L& limiter, std::vector<label> labels) {
    if constexpr (requires { limiter.count_decisions(); }) {
        limiter.count_decisions(); // a lock-free limiter counts only once observed
    }
    detail::registry_entry e;
    e.kind = component_kind::rate_limiter;
    e.name = std::move(name);
    e.component = &limiter;
    e.read = [](detail::registry_entry const& entry) -> detail::component_view {
        auto& l = *static_cast<L*>(entry.component);
        detail::limiter_view v;
        v.decisions = l.decisions();
        decision const peek = l.try_acquire(std::int64_t{0});
        v.available = peek.remaining;
        v.limit = peek.limit;
        return v;
    };
    insert(std::move(e), labels);
}

template <observable_keyed K>
void registry::add(std::string name, K& table, std::vector<label> labels) {
    detail::registry_entry e;
    e.kind = component_kind::rate_limiter;
    e.name = std::move(name);
    e.component = &table;
    e.read = [](detail::registry_entry const& entry) -> detail::component_view {
        auto& k = *static_cast<K*>(entry.component);
        detail::limiter_view v;
        v.keyed = true;
        v.decisions = k.decisions();
        v.limit = k.overflow_limiter().try_acquire(std::int64_t{0}).limit;
        v.keys = static_cast<std::uint64_t>(k.size());
        v.max_keys = static_cast<std::uint64_t>(k.max_keys());
        return v;
    };
    insert(std::move(e), labels);
}

template <observable_bulkhead B>
void registry::add(std::string name, B const& bulkhead, std::vector<label> labels) {
    detail::registry_entry e;
    e.kind = component_kind::bulkhead;
    e.name = std::move(name);
    e.component = const_cast<B*>(&bulkhead);
    e.read = [](detail::registry_entry const& entry) -> detail::component_view {
        return static_cast<B const*>(entry.component)->snapshot();
    };
    insert(std::move(e), labels);
}

template <observable_retry_budget B>
void registry::add(std::string name, B const& budget, std::vector<label> labels) {
    detail::registry_entry e;
    e.kind = component_kind::retry_budget;
    e.name = std::move(name);
    e.component = const_cast<B*>(&budget);
    e.read = [](detail::registry_entry const& entry) -> detail::component_view {
        return static_cast<B const*>(entry.component)->snapshot();
    };
    insert(std::move(e), labels);
}

inline void registry::add(std::string name, pipeline_counters const& counters,
                          std::vector<label> labels) {
    detail::registry_entry e;
    e.kind = component_kind::pipeline;
    e.name = std::move(name);
    e.component = const_cast<pipeline_counters*>(&counters);
    e.read = [](detail::registry_entry const& entry) -> detail::component_view {
        return static_cast<pipeline_counters const*>(entry.component)->snapshot();
    };
    insert(std::move(e), labels);
}

template <observable_drain D>
void registry::add(std::string name, D const& drain, std::vector<label> labels) {
    detail::registry_entry e;
    e.kind = component_kind::drain;
    e.name = std::move(name);
    e.component = const_cast<D*>(&drain);
    e.read = [](detail::registry_entry const& entry) -> detail::component_view {
        auto const& d = *static_cast<D const*>(entry.component);
        return detail::drain_view{
            static_cast<bool>(d.shutdown_requested()), static_cast<bool>(d.draining()),
            static_cast<std::uint64_t>(d.in_flight()), static_cast<std::uint64_t>(d.admitted())};
    };
    insert(std::move(e), labels);
}

template <observable_health H>
void registry::add(std::string name, H const& health, std::vector<label> labels) {
    detail::registry_entry e;
    e.kind = component_kind::health;
    e.name = std::move(name);
    e.component = const_cast<H*>(&health);
    e.read = [](detail::registry_entry const& entry) -> detail::component_view {
        auto const& h = *static_cast<H const*>(entry.component);
        return detail::health_view{static_cast<bool>(h.started()), h.broken_reason().has_value(),
                                   h.not_ready_reason().has_value(),
                                   static_cast<std::uint64_t>(h.check_count())};
    };
    insert(std::move(e), labels);
}

inline void registry::insert(detail::registry_entry entry, std::vector<label> const& labels) {
    constexpr std::string_view component = "keel::observe::registry";
    for (std::size_t i = 0; i < labels.size(); ++i) {
        auto const& l = labels[i];
        if (!exposition_writer::valid_label_name(l.name)) {
            keel::detail::invalid_option(component, "label name",
                                         "[a-zA-Z_][a-zA-Z0-9_]* not starting with __", l.name);
        }
        for (auto const reserved : detail::reserved_labels) {
            if (l.name == reserved) {
                keel::detail::invalid_option(component, "label name",
                                             "none of name, state, to, kind, decision, outcome, "
                                             "le, quantile (the registry's own)",
                                             l.name);
            }
        }
        for (std::size_t j = 0; j < i; ++j) {
            if (labels[j].name == l.name) {
                keel::detail::invalid_configuration(component, "label \"" + l.name +
                                                                   "\" is given twice for \"" +
                                                                   entry.name + "\"");
            }
        }
    }
    exposition_writer::append_label(entry.labels, "name", entry.name);
    for (auto const& l : labels) {
        exposition_writer::append_label(entry.labels, l.name, l.value);
    }
    entry.created =
        m_options.wall_clock ? m_options.wall_clock() : std::chrono::system_clock::now();

    std::unique_lock lock{m_mutex};
    auto const key = [](detail::registry_entry const& e) {
        return std::pair<component_kind, std::string_view>{e.kind, e.name};
    };
    auto const at = std::lower_bound(
        m_entries.begin(), m_entries.end(), key(entry),
        [&](detail::registry_entry const& e, auto const& k) { return key(e) < k; });
    if (at != m_entries.end() && key(*at) == key(entry)) {
        keel::detail::invalid_configuration(component, "a " + std::string{to_string(entry.kind)} +
                                                           " is already registered as \"" +
                                                           entry.name + "\"");
    }
    m_entries.insert(at, std::move(entry));
}

inline bool registry::remove(component_kind kind, std::string_view name) {
    std::unique_lock lock{m_mutex};
    auto const it = std::find_if(m_entries.begin(), m_entries.end(),
                                 [&](auto const& e) { return e.kind == kind && e.name == name; });
    if (it == m_entries.end()) {
        return false;
    }
    m_entries.erase(it);
    return true;
}

inline bool registry::contains(component_kind kind, std::string_view name) const {
    std::shared_lock lock{m_mutex};
    return std::any_of(m_entries.begin(), m_entries.end(),
                       [&](auto const& e) { return e.kind == kind && e.name == name; });
}

inline std::size_t registry::size() const {
    std::shared_lock lock{m_mutex};
    return m_entries.size();
}

inline void registry::render_to(std::string& out, exposition_format format) const {
    // Reused across renders on a thread, so a steady scrape allocates nothing here.
    thread_local std::vector<detail::component_view> views;
    thread_local std::string scratch;
    exposition_writer w{out, format};
    std::shared_lock lock{m_mutex};
    views.clear();
    for (auto const& e : m_entries) {
        views.push_back(e.read(e)); // one read per component: its families agree
    }
    std::size_t begin = 0;
    while (begin < m_entries.size()) {
        auto const kind = m_entries[begin].kind;
        std::size_t end = begin;
        while (end < m_entries.size() && m_entries[end].kind == kind) {
            ++end;
        }
        auto const& families = detail::families_of_kind[static_cast<std::size_t>(kind)];
        for (std::size_t f = 0; f < families.size; ++f) {
            auto const& spec = families.begin[f];
            bool any = spec.applies == nullptr;
            for (std::size_t i = begin; i < end && !any; ++i) {
                any = spec.applies(views[i]);
            }
            if (!any) {
                continue;
            }
            w.family(spec.name, spec.type, spec.help, spec.unit);
            for (std::size_t i = begin; i < end; ++i) {
                if (spec.applies == nullptr || spec.applies(views[i])) {
                    spec.write(w, m_entries[i], views[i], scratch);
                }
            }
        }
        begin = end;
    }
    w.finish();
}

} // namespace observe
KEEL_END_NAMESPACE
