// SPDX-License-Identifier: MIT
// keel::fallback: replaces an outcome of the inner pipeline that a predicate
// selects (by default any failure but cancellation) with a value, or with what
// a function of the failure returns.
#pragma once

#include <keel/core/outcome.hpp>
#include <keel/policy/predicate.hpp>
#include <keel/version.hpp>

#include <functional>
#include <type_traits>
#include <utility>

KEEL_BEGIN_NAMESPACE

/// Substitutes the inner pipeline's outcome when `Predicate` handles it.
///
/// `Handler` is, in order of preference: a callable taking `keel::outcome<R> const&`
/// (sees the failure or the rejected result), a callable taking
/// `keel::failure const&` (then only failures are replaced, results pass through),
/// a callable taking nothing, or a value convertible to R. What a callable returns
/// (R, or keel::outcome<R> to fail on purpose) becomes the outcome; an exception it
/// throws becomes a failure. Put it outermost to cover every policy inside it.
/// Thread-safe if the handler is; a value type.
///
///     auto name = keel::resilient{fetch_name, keel::fallback{std::string{"anonymous"}},
///                                 keel::timeout{100ms}};
///     auto user = keel::resilient{fetch_user,
///         keel::fallback{[](keel::failure const& f) { return cached_user(f); },
///                        keel::on_error(keel::errc::timeout, keel::errc::circuit_open)}};
template <class Handler, class Predicate = on_failure>
class fallback {
public:
    /// Builds a fallback to `handler` for the outcomes `handles` selects.
    explicit fallback(Handler handler, Predicate handles = Predicate{})
        : m_handler(std::move(handler)), m_handles(std::move(handles)) {}

    /// Runs `next`; returns its outcome, or the fallback's when the predicate handles it.
    template <class Next, class Context>
    auto execute(Next const& next, Context const& ctx) const -> decltype(next(ctx)) {
        return substitute(next(ctx));
    }

    /// Returns `result` unchanged when the predicate does not handle it, else what
    /// the handler gives (see the class). Both pipelines end here.
    template <class Result>
    Result substitute(Result result) const {
        if (!m_handles(std::as_const(result))) {
            return result;
        }
        Result replaced = replace(result);
        replaced.set_stats(result.stats()); // the call still made its attempts and waits
        return replaced;
    }

private:
    template <class Result>
    Result replace(Result const& result) const {
        using value_type = typename Result::value_type;
        try {
            if constexpr (std::is_invocable_v<Handler const&, Result const&>) {
                return wrap<Result>([&]() -> decltype(auto) {
                    return std::invoke(m_handler, std::as_const(result));
                });
            } else if constexpr (std::is_invocable_v<Handler const&, keel::failure const&>) {
                if (result.has_value()) {
                    return result;
                }
                return wrap<Result>(
                    [&]() -> decltype(auto) { return std::invoke(m_handler, result.failure()); });
            } else if constexpr (std::is_invocable_v<Handler const&>) {
                return wrap<Result>([&]() -> decltype(auto) { return std::invoke(m_handler); });
            } else {
                static_assert(std::is_constructible_v<value_type, Handler const&>,
                              "keel::fallback: the handler must be a value convertible to the "
                              "call's result, or a callable of (outcome), (failure) or ()");
                return Result{std::in_place, m_handler};
            }
        } catch (...) {
            return keel::failure::from_current_exception();
        }
    }

    template <class Result, class Invoke>
    static Result wrap(Invoke const& invoke) {
        using returned = decltype(invoke());
        if constexpr (std::is_same_v<std::remove_cvref_t<returned>, Result>) {
            return invoke();
        } else if constexpr (std::is_void_v<typename Result::value_type>) {
            invoke();
            return Result{};
        } else {
            return Result{std::in_place, invoke()};
        }
    }

    Handler m_handler;
    [[no_unique_address]] Predicate m_handles;
};

KEEL_END_NAMESPACE
