// SPDX-License-Identifier: MIT
// keel::asio::resilient: an asynchronous operation (a coroutine returning an Asio
// awaitable) guarded by the same policy objects keel::resilient composes.
// `co_await pipeline.async_call(args...)` gives keel::outcome<R> and never throws
// keel's errors; `co_await pipeline(args...)` gives R or throws, as call() does.
// No thread is ever blocked: waits are Asio timers, cancellation is Asio's.
// Needs the keel::asio (or keel::asio_boost) target; keel.hpp does not include it.
#pragma once

#include <keel/asio/context.hpp>
#include <keel/asio/detail/asio.hpp>
#include <keel/asio/policies.hpp>
#include <keel/core/outcome.hpp>
#include <keel/resilient.hpp>
#include <keel/version.hpp>

#include <cstddef>
#include <functional>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

KEEL_BEGIN_NAMESPACE

namespace asio {

namespace detail {
template <class T>
struct awaited {
    static constexpr bool is_awaitable = false;
    using type = void;
};
template <class T, class Executor>
struct awaited<net::awaitable<T, Executor>> {
    static constexpr bool is_awaitable = true;
    using type = T;
};

/// What invoking `Op const&` with the context (if it takes one) and lvalue `Args` gives.
template <class Op, class Context, class... Args>
struct op_traits {
    static constexpr bool takes_context = std::is_invocable_v<Op const&, Context const&, Args&...>;
    static constexpr bool invocable = takes_context || std::is_invocable_v<Op const&, Args&...>;
    static_assert(invocable, "keel::asio::resilient: the operation must be const-invocable with "
                             "(keel::asio::basic_context<Clock> const&, args...) or (args...)");
    using raw = typename std::conditional_t<takes_context,
                                            std::invoke_result<Op const&, Context const&, Args&...>,
                                            std::invoke_result<Op const&, Args&...>>::type;
    static_assert(awaited<std::remove_cvref_t<raw>>::is_awaitable,
                  "keel::asio::resilient: the operation must return an awaitable<R> or "
                  "awaitable<keel::outcome<R>> of the Asio keel::asio is built on");
    /// What the operation's awaitable gives: R or keel::outcome<R>.
    using value = typename awaited<std::remove_cvref_t<raw>>::type;
    /// The pipeline's R.
    using result = typename keel::detail::unwrap_outcome<value>::type;
};
} // namespace detail

/// Guards the asynchronous operation `Op` with `Policies`, applied outer to inner
/// in argument order, as keel::resilient does for blocking calls.
///
/// `Op` is a const callable taking `keel::asio::basic_context<Clock> const&` (if it
/// accepts one) and the arguments, returning `awaitable<R>` or
/// `awaitable<keel::outcome<R>>`; exceptions it throws become failures. It should
/// bind its I/O to `ctx.cancellation_slot()` (operations co_awaited with
/// use_awaitable and no slot of their own already are). The policies are the
/// synchronous pipeline's own objects (keel::retry, keel::timeout,
/// keel::guard(breaker / bulkhead / limiter), keel::fallback) and keel::hedge,
/// each run through its async_policy; a policy of the user's runs through its
/// member async_execute (see async_policy).
///
/// The caller's cancellation (the awaiting coroutine's: terminal by default, and
/// partial or total when the caller's filter lets them through) ends a backoff or
/// queue wait at once, cancels the attempt in flight, and makes the outcome
/// errc::cancelled unless it has already succeeded. The pipeline sets its
/// coroutine's throw_if_cancelled to false while it runs, so it never throws for
/// it, and restores it for the operation and on return.
///
/// Run every call of one pipeline on one executor at a time: a single-threaded
/// io_context, or a strand on a multi-threaded one (its timers and cancellation
/// signals are Asio's, which are not thread-safe). The shared objects (breakers,
/// limiters, budgets, bulkheads) are thread-safe and may be shared with other
/// executors and with synchronous pipelines. The pipeline must outlive the
/// awaitables it returns; the arguments are copied into the coroutine (pass
/// std::ref for a reference).
///
///     auto get_user = keel::asio::resilient{
///         [&](keel::asio::context const& ctx, int id) -> asio::awaitable<User> {
///             co_return co_await http.async_get(id, ctx.cancellation_slot());
///         },
///         keel::guard(users_breaker),
///         keel::retry{{.max_attempts = 3, .backoff = keel::exponential{100ms, 2.0, 5s}}},
///         keel::timeout{1s}};
///     keel::outcome<User> r = co_await get_user.async_call(42);
template <class Op, class... Policies>
class resilient {
public:
    using clock_type = pipeline_clock_t<Policies...>;
    using context_type = basic_context<clock_type>;

    /// The result type of calling with `Args` (what the awaitable gives, or T for outcome<T>).
    template <class... Args>
    using result_t = typename detail::op_traits<Op, context_type, std::decay_t<Args>...>::result;

    /// Guards `op` with `policies` (outermost first).
    explicit(false) resilient(Op op, Policies... policies)
        : m_op(std::move(op)), m_policies(std::move(policies)...) {}

    /// Runs the pipeline; gives the result or the failure, never throwing keel's
    /// errors (nor operation_aborted for the caller's cancellation).
    template <class... Args>
    awaitable<outcome<result_t<Args...>>> async_call(Args... args) const {
        using R = result_t<Args...>;
        bool const throws = co_await net::this_coro::throw_if_cancelled();
        co_await net::this_coro::throw_if_cancelled(false);
        auto const state = co_await net::this_coro::cancellation_state;
        context_type const ctx{state, throws};
        outcome<R> result = co_await run<0, R>(ctx, args...);
        co_await net::this_coro::throw_if_cancelled(throws);
        if (!result.has_value() && state.cancelled() != net::cancellation_type::none) {
            co_return failure::from(errc::cancelled);
        }
        co_return result;
    }

    /// Runs the pipeline and gives the result, or throws: the operation's own
    /// exception unchanged, else the keel::error subtype of the failure's code.
    template <class... Args>
    awaitable<result_t<Args...>> operator()(Args... args) const {
        outcome<result_t<Args...>> result = co_await async_call(std::move(args)...);
        co_return std::move(result).value();
    }

    /// Returns the policy at `Index` (0 is the outermost).
    template <std::size_t Index>
    auto const& policy() const noexcept {
        return std::get<Index>(m_policies);
    }

private:
    template <std::size_t Index, class R, class... Args>
    awaitable<outcome<R>> run(context_type const& ctx, Args&... args) const {
        if constexpr (Index == sizeof...(Policies)) {
            return invoke_op<R>(ctx, args...);
        } else {
            using policy_type = std::tuple_element_t<Index, std::tuple<Policies...>>;
            auto next = [this, &args...](context_type const& inner) -> awaitable<outcome<R>> {
                return this->template run<Index + 1, R>(inner, args...);
            };
            return async_policy<policy_type>::execute(std::get<Index>(m_policies), std::move(next),
                                                      ctx);
        }
    }

    template <class R, class... Args>
    awaitable<outcome<R>> invoke_op(context_type const& ctx, Args&... args) const {
        // The operation runs with its caller's throw_if_cancelled, as if called directly.
        co_await net::this_coro::throw_if_cancelled(ctx.throw_if_cancelled());
        using traits = detail::op_traits<Op, context_type, Args...>;
        auto start = [&] {
            if constexpr (traits::takes_context) {
                return std::invoke(m_op, ctx, args...);
            } else {
                return std::invoke(m_op, args...);
            }
        };
        std::optional<outcome<R>> result;
        try {
            if constexpr (std::is_same_v<typename traits::value, outcome<R>>) {
                result.emplace(co_await start());
            } else if constexpr (std::is_void_v<R>) {
                co_await start();
                result.emplace();
            } else {
                result.emplace(std::in_place, co_await start());
            }
        } catch (...) {
            result.emplace(failure::from_current_exception());
        }
        co_await net::this_coro::throw_if_cancelled(false);
        co_return std::move(*result);
    }

    [[no_unique_address]] Op m_op;
    [[no_unique_address]] std::tuple<Policies...> m_policies;
};

} // namespace asio

KEEL_END_NAMESPACE
