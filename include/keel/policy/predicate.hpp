// SPDX-License-Identifier: MIT
// Predicates that say which outcomes a policy handles: keel::retry retries them,
// keel::fallback replaces them. A predicate is any callable taking
// `keel::outcome<R> const&` and returning bool, so it can look at the exception
// type, the error code or the result value (an HTTP 503 is retried, a 404 is not).
#pragma once

#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/version.hpp>

#include <cstddef>
#include <exception>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

KEEL_BEGIN_NAMESPACE

/// Handles every failure except keel::errc::cancelled (the caller gave up, so
/// retrying or substituting is pointless); results are never handled.
///
/// The default of keel::retry and keel::fallback, following Polly v8's
/// ShouldHandle default (any exception except OperationCanceledException).
/// Stateless and thread-safe.
struct on_failure {
    /// Returns true if `o` failed for any reason but cancellation.
    template <class R>
    bool operator()(outcome<R> const& o) const noexcept {
        return !o.has_value() && !o.failure().is(errc::cancelled);
    }
};

/// Handles failures whose exception is one of `Exceptions` (or derives from one).
///
/// Failures without an exception (keel's own codes) are not handled. Looking at
/// the exception rethrows it, which costs a few microseconds on the failure path
/// only. Stateless and thread-safe.
template <class... Exceptions>
struct on_exception {
    /// Returns true if `o` failed with an exception of one of the listed types.
    template <class R>
    bool operator()(outcome<R> const& o) const noexcept {
        if (o.has_value() || !o.failure().exception) {
            return false;
        }
        return matches<Exceptions...>(o.failure().exception);
    }

private:
    template <class First = void, class... Rest>
    static bool matches(std::exception_ptr const& e) noexcept {
        if constexpr (std::is_void_v<First>) {
            return false;
        } else {
            try {
                std::rethrow_exception(e);
            } catch (First const&) {
                return true;
            } catch (...) { // NOLINT(bugprone-empty-catch): not this type, try the next
            }
            return matches<Rest...>(e);
        }
    }
};

/// Handles failures whose code matches one of a fixed set: keel::errc values, the
/// user's error code enums (equal codes) or error condition enums such as
/// std::errc (equivalent codes). Built by keel::on_error().
template <class... Codes>
struct on_error_codes {
    std::tuple<Codes...> codes; ///< The codes or conditions handled.

    /// Returns true if `o` failed with a code matching one of them.
    template <class R>
    bool operator()(outcome<R> const& o) const noexcept {
        if (o.has_value()) {
            return false;
        }
        auto const& code = o.failure().code;
        return std::apply([&](auto const&... c) { return (matches(code, c) || ...); }, codes);
    }

private:
    template <class Code>
    static bool matches(std::error_code const& code, Code const& c) noexcept {
        if constexpr (std::is_error_code_enum_v<Code>) {
            return code == std::error_code(c);
        } else {
            return code == std::error_condition(c);
        }
    }
};

/// Returns a predicate handling failures whose code matches one of `codes`, e.g.
/// `keel::on_error(keel::errc::timeout, std::errc::connection_refused)`.
template <class... Codes>
requires(sizeof...(Codes) > 0 &&
         ((std::is_error_code_enum_v<Codes> || std::is_error_condition_enum_v<Codes>)&&...))
    on_error_codes<Codes...> on_error(Codes... codes) {
    return on_error_codes<Codes...>{{codes...}};
}

/// Handles successful results for which a user predicate holds (an HTTP response
/// whose status is 503); failures are not handled. Built by keel::on_result().
template <class Predicate>
struct on_result_value {
    Predicate predicate; ///< Called with the result value; true means "handle it".

    /// Returns true if `o` holds a value and the predicate accepts it.
    template <class R>
    bool operator()(outcome<R> const& o) const {
        if constexpr (std::is_void_v<R>) {
            return false;
        } else {
            return o.has_value() && static_cast<bool>(predicate(*o));
        }
    }
};

/// Returns a predicate handling results for which `predicate(value)` is true, e.g.
/// `keel::on_result([](response const& r) { return r.status == 503; })`.
template <class Predicate>
on_result_value<std::decay_t<Predicate>> on_result(Predicate&& predicate) {
    return {std::forward<Predicate>(predicate)};
}

/// Handles an outcome if any of its predicates does. Built by keel::any_of().
template <class... Predicates>
struct any_of_predicates {
    std::tuple<Predicates...> predicates; ///< Tried in order; the first true wins.

    /// Returns true if one of the predicates handles `o`.
    template <class R>
    bool operator()(outcome<R> const& o) const {
        return std::apply([&](auto const&... p) { return (static_cast<bool>(p(o)) || ...); },
                          predicates);
    }
};

/// Returns a predicate that handles what any of `predicates` handles, e.g.
/// `keel::any_of(keel::on_failure{}, keel::on_result(is_503))`.
template <class... Predicates>
any_of_predicates<std::decay_t<Predicates>...> any_of(Predicates&&... predicates) {
    return {{std::forward<Predicates>(predicates)...}};
}

KEEL_END_NAMESPACE
