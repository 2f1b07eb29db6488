// SPDX-License-Identifier: MIT
// keel's error codes, their std::error_category, and the exceptions call() throws.
// Every rejection keel makes has a code in keel::errc; the exception types derive
// from keel::error (itself a std::runtime_error) and carry that code plus, where
// the rejection knows it, a hint of when trying again can succeed.
#pragma once

#include <keel/version.hpp>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>

KEEL_BEGIN_NAMESPACE

/// Enumerates why keel rejected or ended a call. Zero is never used, so a
/// default-constructed std::error_code means "no keel error".
enum class errc : int {
    circuit_open = 1,           ///< A circuit breaker is open (or half-open and out of probes).
    rate_limited = 2,           ///< A rate limiter refused the permits; retry_after says when.
    timeout = 3,                ///< An attempt or the whole call ran past its deadline.
    bulkhead_full = 4,          ///< The concurrency limit and its queue were full.
    retries_exhausted = 5,      ///< Every allowed attempt failed.
    retry_budget_exhausted = 6, ///< A retry was wanted but the shared retry budget refused it.
    cancelled = 7,              ///< The caller's stop token fired.
    exceeds_capacity = 8,       ///< More permits were asked for than the limit can ever grant.
    shutting_down = 9,          ///< The process is draining and takes no new work.
    unavailable = 10,           ///< A backing service (e.g. Redis) could not be reached.
};

namespace detail {
class error_category final : public std::error_category {
public:
    char const* name() const noexcept override { return "keel"; }
    std::string message(int code) const override {
        switch (static_cast<errc>(code)) {
        case errc::circuit_open: return "circuit breaker is open";
        case errc::rate_limited: return "rate limit exceeded";
        case errc::timeout: return "deadline expired";
        case errc::bulkhead_full: return "bulkhead is full";
        case errc::retries_exhausted: return "retries exhausted";
        case errc::retry_budget_exhausted: return "retry budget exhausted";
        case errc::cancelled: return "cancelled";
        case errc::exceeds_capacity: return "request exceeds the limit's capacity";
        case errc::shutting_down: return "shutting down";
        case errc::unavailable: return "backing service unavailable";
        }
        return "unknown keel error " + std::to_string(code);
    }
};
} // namespace detail

/// Returns the category of keel's error codes, named "keel"; one instance per program.
inline std::error_category const& error_category() noexcept {
    static detail::error_category const category;
    return category;
}

/// Makes a std::error_code in keel's category (found by ADL for `std::error_code ec = errc::x`).
inline std::error_code make_error_code(errc code) noexcept {
    return {static_cast<int>(code), error_category()};
}

/// The base of every exception keel throws: a std::runtime_error carrying a
/// keel::errc code and, for rejections that know it, when a retry may succeed.
class error : public std::runtime_error {
public:
    /// Builds an error whose what() is the code's message, optionally followed by `detail`.
    explicit error(std::error_code code, std::string const& detail = {},
                   std::optional<std::chrono::nanoseconds> retry_after = std::nullopt)
        : std::runtime_error(detail.empty() ? code.message() : code.message() + ": " + detail),
          m_code(code), m_retry_after(retry_after) {}

    /// Returns the code, in keel's category.
    std::error_code const& code() const noexcept { return m_code; }
    /// Returns how long to wait before a retry can succeed, if the rejection knows.
    std::optional<std::chrono::nanoseconds> retry_after() const noexcept { return m_retry_after; }

private:
    std::error_code m_code;
    std::optional<std::chrono::nanoseconds> m_retry_after;
};

namespace detail {
template <errc Code>
class coded_error : public error {
public:
    explicit coded_error(std::string const& detail = {},
                         std::optional<std::chrono::nanoseconds> retry_after = std::nullopt)
        : error(make_error_code(Code), detail, retry_after) {}
};
} // namespace detail

/// Thrown when a circuit breaker rejects a call; retry_after() is the time until it half-opens
/// (open), the open period failing probes would start (half-open), or empty (forced open).
class circuit_open final : public detail::coded_error<errc::circuit_open> {
    using coded_error::coded_error;
};
/// Thrown when a rate limiter rejects a call; retry_after() says when permits return.
class rate_limited final : public detail::coded_error<errc::rate_limited> {
    using coded_error::coded_error;
};
/// Thrown when an attempt or call runs past its deadline.
class timeout_expired final : public detail::coded_error<errc::timeout> {
    using coded_error::coded_error;
};
/// Thrown when a bulkhead has no free slot and no queue room.
class bulkhead_full final : public detail::coded_error<errc::bulkhead_full> {
    using coded_error::coded_error;
};
/// Thrown when every allowed attempt failed and the last failure carried no exception of its own.
class retries_exhausted final : public detail::coded_error<errc::retries_exhausted> {
    using coded_error::coded_error;
};
/// Thrown when a retry was wanted but the retry budget refused it and no exception of the attempt
/// remains.
class retry_budget_exhausted final : public detail::coded_error<errc::retry_budget_exhausted> {
    using coded_error::coded_error;
};
/// Thrown when the caller's stop token ended the call.
class cancelled final : public detail::coded_error<errc::cancelled> {
    using coded_error::coded_error;
};
/// Thrown when more permits are asked for than the limiter can ever grant.
class exceeds_capacity final : public detail::coded_error<errc::exceeds_capacity> {
    using coded_error::coded_error;
};
/// Thrown when new work arrives while the process drains.
class shutting_down final : public detail::coded_error<errc::shutting_down> {
    using coded_error::coded_error;
};
/// Thrown when a backing service (such as Redis) cannot be reached.
class unavailable final : public detail::coded_error<errc::unavailable> {
    using coded_error::coded_error;
};

/// Throws the keel exception type matching `code` (keel::error itself for codes
/// outside keel's category), with `detail` appended to its message.
[[noreturn]] inline void throw_error(std::error_code code, std::string const& detail = {},
                                     std::optional<std::chrono::nanoseconds> retry_after = {}) {
    if (code.category() == error_category()) {
        switch (static_cast<errc>(code.value())) {
        case errc::circuit_open: throw circuit_open(detail, retry_after);
        case errc::rate_limited: throw rate_limited(detail, retry_after);
        case errc::timeout: throw timeout_expired(detail, retry_after);
        case errc::bulkhead_full: throw bulkhead_full(detail, retry_after);
        case errc::retries_exhausted: throw retries_exhausted(detail, retry_after);
        case errc::retry_budget_exhausted: throw retry_budget_exhausted(detail, retry_after);
        case errc::cancelled: throw cancelled(detail, retry_after);
        case errc::exceeds_capacity: throw exceeds_capacity(detail, retry_after);
        case errc::shutting_down: throw shutting_down(detail, retry_after);
        case errc::unavailable: throw unavailable(detail, retry_after);
        }
    }
    throw error(code, detail, retry_after);
}

KEEL_END_NAMESPACE

template <>
struct std::is_error_code_enum<keel::errc> : std::true_type {};
