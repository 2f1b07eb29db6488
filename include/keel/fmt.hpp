// SPDX-License-Identifier: MIT
// fmt formatters for keel's types. Optional: include it only where fmt (9 or
// later) is available; nothing else in keel needs fmt.
#pragma once

#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/headers.hpp>
#include <keel/net/cidr.hpp>
#include <keel/net/client_address.hpp>
#include <keel/net/ip_address.hpp>
#include <keel/ops/drain.hpp>
#include <keel/ops/health_report.hpp>
#include <keel/policy/bulkhead.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/retry_budget.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <string_view>

/// Formats a keel::errc as its message, e.g. "circuit breaker is open".
template <>
struct fmt::formatter<keel::errc> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::errc code, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(make_error_code(code).message(), ctx);
    }
};

/// Formats a keel::failure as "<category>:<value> <message>", or the exception's what().
template <>
struct fmt::formatter<keel::failure> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::failure const& f, FormatContext& ctx) const {
        if (f.code) {
            return fmt::format_to(ctx.out(), "{}:{} {}", f.code.category().name(), f.code.value(),
                                  f.code.message());
        }
        if (f.exception) {
            try {
                std::rethrow_exception(f.exception);
            } catch (std::exception const& e) {
                return fmt::format_to(ctx.out(), "exception: {}", e.what());
            } catch (...) {
                return fmt::format_to(ctx.out(), "exception of unknown type");
            }
        }
        return fmt::format_to(ctx.out(), "failure");
    }
};

/// Formats a keel::circuit_state as its name, e.g. "half_open".
template <>
struct fmt::formatter<keel::circuit_state> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::circuit_state state, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(keel::to_string(state), ctx);
    }
};

/// Formats a keel::circuit_reason as its name, e.g. "failure_rate_exceeded".
template <>
struct fmt::formatter<keel::circuit_reason> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::circuit_reason reason, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(keel::to_string(reason), ctx);
    }
};

/// Formats a keel::bulkhead_snapshot as "in_flight 3/25, queued 0/0".
template <>
struct fmt::formatter<keel::bulkhead_snapshot> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::bulkhead_snapshot const& s, FormatContext& ctx) const {
        return fmt::format_to(ctx.out(), "in_flight {}/{}, queued {}/{}", s.in_flight,
                              s.max_concurrent_calls, s.queued, s.max_queued_calls);
    }
};

/// Formats a keel::retry_budget_snapshot as "calls 100, retries 20, refused 3, balance 10.00".
template <>
struct fmt::formatter<keel::retry_budget_snapshot> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::retry_budget_snapshot const& s, FormatContext& ctx) const {
        return fmt::format_to(ctx.out(), "calls {}, retries {}, refused {}, balance {:.2f}",
                              s.calls, s.retries, s.refused, s.balance);
    }
};

/// Formats a keel::ops::health_status as "pass", "warn" or "fail".
template <>
struct fmt::formatter<keel::ops::health_status> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::ops::health_status status, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(keel::ops::to_string(status), ctx);
    }
};

/// Formats a keel::ops::probe_kind as "liveness", "readiness" or "startup".
template <>
struct fmt::formatter<keel::ops::probe_kind> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::ops::probe_kind kind, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(keel::ops::to_string(kind), ctx);
    }
};

/// Formats a keel::ops::drain_phase as its name, e.g. "drain_in_flight".
template <>
struct fmt::formatter<keel::ops::drain_phase> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::ops::drain_phase phase, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(keel::ops::to_string(phase), ctx);
    }
};

/// Formats a keel::net::ip_address as its canonical text (RFC 5952 for IPv6), e.g.
/// "2001:db8::1"; width, fill and alignment apply as for strings.
template <>
struct fmt::formatter<keel::net::ip_address> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::net::ip_address const& a, FormatContext& ctx) const {
        char buffer[keel::net::ip_address::max_string_length];
        char* const end = a.write(buffer);
        return fmt::formatter<std::string_view>::format(
            std::string_view{buffer, static_cast<std::size_t>(end - buffer)}, ctx);
    }
};

/// Formats a keel::net::cidr as "network/prefix", e.g. "10.0.0.0/8".
template <>
struct fmt::formatter<keel::net::cidr> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::net::cidr const& c, FormatContext& ctx) const {
        char buffer[keel::net::cidr::max_string_length];
        char* const end = c.write(buffer);
        return fmt::formatter<std::string_view>::format(
            std::string_view{buffer, static_cast<std::size_t>(end - buffer)}, ctx);
    }
};

/// Formats a keel::net::stop_reason as its name, e.g. "untrusted".
template <>
struct fmt::formatter<keel::net::stop_reason> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::net::stop_reason r, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(keel::net::to_string(r), ctx);
    }
};

/// Formats a keel::decision, e.g. "allowed limit=100 remaining=99 retry_after=0ns
/// reset=1000000000ns"
/// ("refused ..." or "unsatisfiable ..." when not allowed).
template <>
struct fmt::formatter<keel::decision> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::decision const& d, FormatContext& ctx) const {
        std::string_view const verdict =
            d.allowed ? "allowed" : (d.unsatisfiable ? "unsatisfiable" : "refused");
        return fmt::format_to(ctx.out(), "{} limit={} remaining={} retry_after={}ns reset={}ns",
                              verdict, d.limit, d.remaining, d.retry_after.count(),
                              d.reset.count());
    }
};

/// Formats a keel::header_value as its text.
template <>
struct fmt::formatter<keel::header_value> : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(keel::header_value const& v, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(v.view(), ctx);
    }
};
