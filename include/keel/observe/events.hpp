// SPDX-License-Identifier: MIT
// keel::observe::event_listener: one interface for what a service logs about its
// resilience components (breaker state changes, retries with their attempt,
// delay and cause, rejections by component and reason, drain phases), and
// keel::observe::event_hub, which fans events out to listeners and connects to
// the components' own hooks. Listeners run on the thread that caused the event,
// never under a keel lock. keel ships no logging dependency: examples/observe
// bridges a listener to fmt.
#pragma once

#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/observe/registry.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE
namespace observe {

/// Describes a component's change of state (a circuit breaker's transition, a
/// health registry's manual flag).
struct state_change_event {
    component_kind kind{};      ///< What changed state.
    std::string_view component; ///< Its name.
    std::string_view from;      ///< The state left, e.g. "closed".
    std::string_view to;        ///< The state entered, e.g. "open".
    std::string_view reason;    ///< Why, e.g. "failure_rate_exceeded".
};

/// Describes a retry about to wait: the attempt that ended, the wait and the cause.
struct retry_attempt_event {
    std::string_view component;     ///< The pipeline's name.
    int attempt = 0;                ///< The attempt that just ended (1 for the first).
    std::chrono::nanoseconds delay; ///< The wait before the next attempt.
    std::error_code cause;          ///< The failure's code; empty when a result value is retried.
    std::string_view what;          ///< The failure's exception message, or its code's message.
};

/// Describes a call a component refused.
struct rejection_event {
    component_kind kind{};      ///< Which kind of component refused it.
    std::string_view component; ///< The component's (or the pipeline's) name.
    std::error_code why;        ///< keel's code: circuit_open, rate_limited, bulkhead_full, ...
    std::optional<std::chrono::nanoseconds> retry_after; ///< When a retry may succeed, if known.
};

/// Describes a phase of a graceful shutdown that has ended.
struct drain_phase_event {
    std::string_view component;       ///< The drain coordinator's name.
    std::string_view phase;           ///< The phase, e.g. "drain_in_flight".
    std::chrono::nanoseconds elapsed; ///< How long it took.
    bool timed_out = false;           ///< True if its budget ran out.
};

/// Receives events; override the ones of interest (each default does nothing).
///
/// Called on the thread where the event happened (a caller's, or the one running
/// the shutdown), possibly from several threads at once, never while keel holds
/// a lock; the strings live for the call only. An exception thrown is ignored.
class event_listener {
public:
    virtual ~event_listener() = default;
    /// Receives a state change.
    virtual void on_state_change(state_change_event const& /*event*/) {}
    /// Receives a retry about to wait.
    virtual void on_retry(retry_attempt_event const& /*event*/) {}
    /// Receives a rejection.
    virtual void on_rejection(rejection_event const& /*event*/) {}
    /// Receives the end of a drain phase.
    virtual void on_drain_phase(drain_phase_event const& /*event*/) {}
};

namespace detail {

// The hub's listeners, shared with every hook the hub installed, so hooks that
// outlive the hub (breakers keep their listeners) stay safe.
struct hub_state {
    std::mutex mutex;
    std::shared_ptr<std::vector<std::shared_ptr<event_listener>> const> listeners =
        std::make_shared<std::vector<std::shared_ptr<event_listener>> const>();

    auto snapshot() {
        std::lock_guard lock{mutex};
        return listeners;
    }

    template <class F>
    void each(F const& f) {
        auto const list = snapshot(); // called after the lock is released
        for (auto const& l : *list) {
            try {
                f(*l);
            } catch (...) { // NOLINT(bugprone-empty-catch): a listener cannot break a call
            }
        }
    }
};

// The component kind that refuses with `code`, if it is a rejection.
inline std::optional<component_kind> rejecting_kind(std::error_code code) noexcept {
    if (code.category() != error_category()) {
        return std::nullopt;
    }
    switch (static_cast<errc>(code.value())) {
    case errc::circuit_open: return component_kind::circuit_breaker;
    case errc::rate_limited:
    case errc::exceeds_capacity: return component_kind::rate_limiter;
    case errc::bulkhead_full: return component_kind::bulkhead;
    case errc::retry_budget_exhausted: return component_kind::retry_budget;
    case errc::shutting_down: return component_kind::drain;
    default: return std::nullopt;
    }
}

} // namespace detail

/// Fans events out to its listeners and connects to keel's components.
///
/// subscribe() listeners, then connect the sources: watch() a circuit breaker
/// (adds a transition listener), watch_drain() a drain coordinator (adds a
/// phase listener), watch_health() a health registry (adds a flag listener), pass retry_listener()
/// as keel::retry_options::on_retry, and report() each guarded call's outcome (a rejection becomes
/// an event). The hooks a hub installs share its listener list, so they stay valid if the hub is
/// destroyed first. Thread-safe: listeners are copied on subscribe and called without any lock.
///
///     keel::observe::event_hub events;
///     events.subscribe(std::make_shared<my_logger>());
///     events.watch("users", users_breaker);
///     keel::retry users_retry{{.on_retry = events.retry_listener("users")}};
class event_hub {
public:
    /// Builds a hub without listeners.
    event_hub() = default;
    event_hub(event_hub const&) = delete;
    event_hub& operator=(event_hub const&) = delete;

    /// Adds `listener` (shared with the caller); it receives every later event.
    void subscribe(std::shared_ptr<event_listener> listener) {
        std::lock_guard lock{m_state->mutex};
        auto next =
            std::make_shared<std::vector<std::shared_ptr<event_listener>>>(*m_state->listeners);
        next->push_back(std::move(listener));
        m_state->listeners = std::move(next);
    }

    /// Publishes `event` to every listener.
    void publish(state_change_event const& event) {
        m_state->each([&](event_listener& l) { l.on_state_change(event); });
    }
    /// Publishes `event` to every listener.
    void publish(retry_attempt_event const& event) {
        m_state->each([&](event_listener& l) { l.on_retry(event); });
    }
    /// Publishes `event` to every listener.
    void publish(rejection_event const& event) {
        m_state->each([&](event_listener& l) { l.on_rejection(event); });
    }
    /// Publishes `event` to every listener.
    void publish(drain_phase_event const& event) {
        m_state->each([&](event_listener& l) { l.on_drain_phase(event); });
    }

    /// Publishes a rejection_event if `code` is one of keel's rejections
    /// (circuit_open, rate_limited, exceeds_capacity, bulkhead_full,
    /// retry_budget_exhausted, shutting_down) of the call named `name`; returns
    /// whether it did.
    bool report(std::string_view name, std::error_code code,
                std::optional<std::chrono::nanoseconds> retry_after = std::nullopt) {
        auto const kind = detail::rejecting_kind(code);
        if (!kind) {
            return false;
        }
        publish(rejection_event{*kind, name, code, retry_after});
        return true;
    }

    /// Publishes a rejection_event if `result` failed with one of keel's rejections.
    template <class T>
    bool report(std::string_view name, outcome<T> const& result) {
        return !result.has_value() && report(name, result.error(), result.retry_after());
    }

    /// Publishes each state change of `breaker` as a state_change_event named
    /// `name` (adds a listener to the breaker, which keeps it for its lifetime).
    template <observable_breaker B>
    void watch(std::string name, B& breaker) {
        breaker.on_transition(
            [state = m_state, name = std::move(name)](typename B::transition const& t) {
                state_change_event const e{component_kind::circuit_breaker, name,
                                           keel::to_string(t.from), keel::to_string(t.to),
                                           keel::to_string(t.why)};
                state->each([&](event_listener& l) { l.on_state_change(e); });
            });
    }

    /// Publishes the end of each phase of `drain`'s shutdown as a drain_phase_event
    /// named `name` (keel::ops::drain_coordinator::on_phase_end).
    template <class Drain>
    void watch_drain(std::string name, Drain& drain) {
        drain.on_phase_end([state = m_state, name = std::move(name)](auto const& phase) {
            drain_phase_event const e{name, to_string(phase.phase), phase.elapsed, phase.timed_out};
            state->each([&](event_listener& l) { l.on_drain_phase(e); });
        });
    }

    /// Publishes each change of `health`'s manual flags as a state_change_event of
    /// kind health named `name` (keel::ops::health_registry::on_flag_change):
    /// "starting" to "started", "ready" to "not_ready" and back, "live" to "broken"
    /// and back, with the reason given.
    template <class Health>
    void watch_health(std::string name, Health& health) {
        health.on_flag_change([state = m_state, name = std::move(name)](auto const& change) {
            std::string_view from;
            std::string_view to;
            if (change.flag == "started") {
                from = "starting";
                to = "started";
            } else if (change.flag == "broken") {
                from = change.set ? "live" : "broken";
                to = change.set ? "broken" : "live";
            } else {
                from = change.set ? "ready" : "not_ready";
                to = change.set ? "not_ready" : "ready";
            }
            state_change_event const e{component_kind::health, name, from, to, change.reason};
            state->each([&](event_listener& l) { l.on_state_change(e); });
        });
    }

    /// Returns a callable for keel::retry_options::on_retry that publishes each
    /// retry of the pipeline named `name` as a retry_attempt_event.
    auto retry_listener(std::string name) const {
        return [state = m_state, name = std::move(name)](auto const& retry) {
            retry_attempt_event e{name, retry.attempt(), retry.delay(), {}, {}};
            std::string what;
            if (auto const* f = retry.failure()) {
                e.cause = f->code;
                if (f->exception) {
                    try {
                        std::rethrow_exception(f->exception);
                    } catch (std::exception const& x) {
                        what = x.what();
                    } catch (...) { // NOLINT(bugprone-empty-catch): no message to give
                    }
                } else if (f->code) {
                    what = f->code.message();
                }
            }
            e.what = what;
            state->each([&](event_listener& l) { l.on_retry(e); });
        };
    }

private:
    std::shared_ptr<detail::hub_state> m_state = std::make_shared<detail::hub_state>();
};

} // namespace observe
KEEL_END_NAMESPACE
