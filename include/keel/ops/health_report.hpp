// SPDX-License-Identifier: MIT
// The values a health probe produces: the status vocabulary of the health+json
// draft, what one run of a check found (check_result), and the reports of one
// probe (health_report, with a check_report per check). Plain values, no threads:
// keel/ops/health.hpp's registry builds them, keel/ops/health_json.hpp renders
// them and keel/fmt.hpp formats their enums.
#pragma once

#include <keel/version.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
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

/// Reports one check inside a health_report: the latest result plus its history.
///
/// Times are wall-clock times, mapped from the registry's clock (see
/// health_registry_options::wall_time in keel/ops/health.hpp). A regular value type.
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

} // namespace ops

KEEL_END_NAMESPACE
