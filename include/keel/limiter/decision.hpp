// SPDX-License-Identifier: MIT
// keel::decision: what every rate limiter (local or on Redis) answers for a
// request: allowed or not, the quota, what remains, when to retry and when the
// quota is whole again. Small and trivially copyable, so it is returned by value.
// The HTTP header values built from it live beside the limiters.
#pragma once

#include <keel/version.hpp>

#include <chrono>
#include <cstdint>
#include <type_traits>

KEEL_BEGIN_NAMESPACE

/// Says where a decision was made: by the local algorithm, by the shared store
/// (Redis), or by the failure policy while the store could not be asked.
enum class decision_source : std::uint8_t {
    local = 0,           ///< An in-process limiter.
    remote = 1,          ///< The shared store (keel::redis limiters).
    fallback_open = 2,   ///< Store unavailable; admitted by the fail-open policy.
    fallback_closed = 3, ///< Store unavailable; rejected by the fail-closed policy.
    fallback_local = 4,  ///< Store unavailable; decided by the local fallback limiter.
};

/// The answer of a rate limiter to try_acquire(permits).
///
/// `retry_after` is zero when allowed; when refused it is the wait after which
/// the same request can succeed (rounded up by the header helpers so clients do
/// not retry early). `remaining` and `reset` describe the state right after the
/// decision, whatever was asked: `reset` is the time until the quota is whole
/// again while `remaining` > 0, and with nothing remaining the time until a
/// permit is available again; on a refusal with nothing remaining it equals
/// `retry_after`, so a RateLimit `t` never contradicts Retry-After
/// (draft-ietf-httpapi-ratelimit-headers: t is when quota is available again).
/// `unsatisfiable` is set when the request asks for more permits than the limit
/// can ever grant: waiting will not help, so retry_after is zero; `remaining`
/// and `reset` are those a peek (0 permits) would report.
struct decision {
    bool allowed = false;                            ///< Whether the permits were granted.
    bool unsatisfiable = false;                      ///< More permits than the limit can ever give.
    decision_source source = decision_source::local; ///< Where the decision was made.
    std::int64_t limit = 0;                          ///< The quota: permits per window (or burst).
    std::int64_t remaining = 0;                      ///< Permits left right after this decision.
    std::chrono::nanoseconds retry_after{0}; ///< When a refused request can succeed; 0 if allowed.
    std::chrono::nanoseconds reset{0}; ///< Until the quota is whole (none left: a permit frees).

    /// Returns `allowed`.
    explicit constexpr operator bool() const noexcept { return allowed; }
};

static_assert(std::is_trivially_copyable_v<decision>);

/// Counts the decisions a limiter made since construction, by kind: requests
/// for one permit or more that were allowed, refused (the limit was reached:
/// waiting helps) and unsatisfiable (more permits than the limit can ever give,
/// or a negative count). Peeks (0 permits) are not counted.
struct decision_counts {
    std::uint64_t allowed = 0;       ///< Requests granted.
    std::uint64_t refused = 0;       ///< Requests refused with a retry_after.
    std::uint64_t unsatisfiable = 0; ///< Requests no wait could grant.
};

KEEL_END_NAMESPACE
