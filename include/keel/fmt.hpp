// SPDX-License-Identifier: MIT
// fmt formatters for keel's types. Optional: include it only where fmt (9 or
// later) is available; nothing else in keel needs fmt.
#pragma once

#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/headers.hpp>

#include <fmt/format.h>

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
