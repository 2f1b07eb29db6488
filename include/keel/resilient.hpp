// SPDX-License-Identifier: MIT
// keel::resilient: a call guarded by policies composed at compile time.
// `keel::resilient{call, a, b, c}` runs a(b(c(call))): the first policy is the
// outermost. call() returns the result or throws; try_call() returns a
// keel::outcome. The success path allocates nothing and calls nothing virtual.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/core/context.hpp>
#include <keel/core/outcome.hpp>
#include <keel/policy/policy.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

KEEL_BEGIN_NAMESPACE

namespace detail {

template <class Found, class... Clocks>
struct pick_clock {
    using type = Found;
};
template <class Found, class Clock, class... Rest>
struct pick_clock<Found, Clock, Rest...> {
    static_assert(std::is_void_v<Clock> || std::is_void_v<Found> || std::is_same_v<Found, Clock>,
                  "keel::resilient: all policies of a pipeline must read the same clock_type");
    using type =
        typename pick_clock<std::conditional_t<std::is_void_v<Clock>, Found, Clock>, Rest...>::type;
};

template <class T>
struct unwrap_outcome {
    using type = T;
};
template <class T>
struct unwrap_outcome<outcome<T>> {
    using type = T;
};

// (clang-format 14 splits disjunctions of requires-expressions badly.)
// clang-format off
/// Describes a future (std::future, std::shared_future, boost::future) by the members
/// they all have, so that <future> (about 4 % of keel.hpp's compile time) need not be
/// included to recognise one.
template <class T>
concept future_shape = requires(T& t) {
    t.valid();
    t.wait();
    t.get();
    t.wait_for(std::chrono::seconds{0});
};

/// Describes an awaitable (asio::awaitable, cppcoro and folly tasks, any coroutine
/// type) by its shape: a member await_ready() or operator co_await, a free
/// operator co_await found by ADL, or a nested promise_type.
template <class T>
concept awaitable_shape =
    requires(T& t) { t.await_ready(); } ||
    requires(T&& t) { static_cast<T&&>(t).operator co_await(); } ||
    requires(T&& t) { operator co_await(static_cast<T&&>(t)); } ||
    requires { typename T::promise_type; };

/// Describes a sender by the markers P2300 (std::execution, stdexec) gives it: a
/// nested `sender_concept`, `is_sender` (earlier stdexec) or `completion_signatures`.
template <class T>
concept sender_shape =
    requires { typename T::sender_concept; } ||
    requires { typename T::is_sender; } ||
    requires { typename T::completion_signatures; };
// clang-format on

/// Describes a result that stands for work still running or not yet started, which a
/// synchronous pipeline cannot guard (its policies would see only the handle):
/// futures, awaitables and senders by shape, so that neither <future>, Asio nor
/// std::execution need be included.
template <class T>
concept asynchronous_result = future_shape<T> || awaitable_shape<T> || sender_shape<T>;

/// What invoking `Call const&` with the context (if it takes one) and lvalue `Args` gives.
template <class Call, class Context, class... Args>
struct call_traits {
    static constexpr bool takes_context =
        std::is_invocable_v<Call const&, Context const&, Args&...>;
    static constexpr bool invocable = takes_context || std::is_invocable_v<Call const&, Args&...>;
    static_assert(invocable, "keel::resilient: the call must be const-invocable with "
                             "(keel::basic_context<Clock> const&, args...) or (args...)");
    using raw =
        typename std::conditional_t<takes_context,
                                    std::invoke_result<Call const&, Context const&, Args&...>,
                                    std::invoke_result<Call const&, Args&...>>::type;
    /// The pipeline's R: the call's result decayed, or T when the call returns keel::outcome<T>.
    using result = typename unwrap_outcome<std::remove_cvref_t<raw>>::type;
    static_assert(!asynchronous_result<result>,
                  "keel::resilient: the call returns an awaitable, a std::future or a sender; "
                  "a synchronous pipeline would guard only its creation, not the work (no "
                  "timeout, retry or breaker outcome would see it). Use keel::asio::resilient "
                  "for asynchronous calls, or wait for the result inside the call");
};

} // namespace detail

/// The clock a pipeline of `Policies` reads: the policies' common clock_type,
/// keel::steady_clock when none names one. Mismatched clocks fail to compile.
template <class... Policies>
using pipeline_clock_t = std::conditional_t<
    std::is_void_v<typename detail::pick_clock<void, policy_clock_t<Policies>...>::type>,
    steady_clock, typename detail::pick_clock<void, policy_clock_t<Policies>...>::type>;

/// Guards `Call` with `Policies`, applied outer to inner in argument order.
///
/// `resilient{call, breaker, retry, timeout}` is breaker(retry(timeout(call))):
/// one breaker outcome per logical call, each attempt with its own deadline (the
/// order the article recommends; the other order, timeout(retry(...)), gives one
/// deadline to all attempts and waits together, see docs/policies.md).
///
/// The call is invoked as a const callable with `keel::basic_context<Clock> const&`
/// (if it accepts one) followed by the arguments given to call()/try_call(). The
/// arguments are passed as lvalues, because a retry passes them again; a call
/// taking them by value gets copies, and move-only arguments must be taken by
/// reference. A call returning `keel::outcome<T>` reports failures as values: the
/// pipeline's result is T. Exceptions the call throws become failures holding
/// the exception, so call() rethrows them unchanged when no policy handles them.
///
/// Every policy must meet keel::policy_for. The pipeline's clock is the policies'
/// common clock_type (keel::steady_clock if none names one). A resilient is a
/// value; calling it is thread-safe when its call and policies are (keel's are);
/// shared state (breakers, bulkheads, budgets) is referenced, not owned.
///
///     auto get_user = keel::resilient{
///         [&](keel::context const& ctx) { return http.get("/users/42", ctx.stop_token()); },
///         keel::retry{{.max_attempts = 3, .backoff = keel::exponential{100ms, 2.0, 5s}}},
///         keel::timeout{1s}};
///     User u = get_user();                         // throws on failure
///     keel::outcome<User> r = get_user.try_call(); // never throws keel's errors
template <class Call, class... Policies>
class resilient {
public:
    using clock_type = pipeline_clock_t<Policies...>;
    using context_type = basic_context<clock_type>;

    /// The result type of calling with `Args` (the call's result, decayed, or T for outcome<T>).
    template <class... Args>
    using result_t =
        typename detail::call_traits<Call, context_type, std::remove_reference_t<Args>...>::result;

    /// Guards `guarded` with `policies` (outermost first).
    explicit(false) resilient(Call guarded, Policies... policies)
        : m_call(std::move(guarded)), m_policies(std::move(policies)...) {}

    /// Runs the pipeline with a fresh context (attempt 1, no deadline, no stop token);
    /// returns the result or the failure. Never throws keel's errors (only what
    /// copying the result or a policy's own allocation may throw).
    template <class... Args>
    outcome<result_t<Args...>> try_call(Args&&... args) const {
        return try_call_with(context_type{}, args...);
    }

    /// Runs the pipeline under `ctx`: its stop token (the caller's cancellation)
    /// and deadline reach every policy and the call.
    template <class... Args>
    outcome<result_t<Args...>> try_call_with(context_type const& ctx, Args&&... args) const {
        using R = result_t<Args...>;
        static_assert((policy_for<Policies, R, context_type> && ...),
                      "keel::resilient: every policy must meet keel::policy_for");
        return run<0, R>(ctx, args...);
    }

    /// Runs the pipeline and returns the result, or throws: the call's own
    /// exception unchanged, else the keel::error subtype of the failure's code.
    template <class... Args>
    result_t<Args...> call(Args&&... args) const {
        return try_call_with(context_type{}, args...).value();
    }

    /// Runs the pipeline under `ctx` and returns the result or throws, as call().
    template <class... Args>
    result_t<Args...> call_with(context_type const& ctx, Args&&... args) const {
        return try_call_with(ctx, args...).value();
    }

    /// Returns call(args...).
    template <class... Args>
    result_t<Args...> operator()(Args&&... args) const {
        return try_call_with(context_type{}, args...).value();
    }

    /// Returns the policy at `Index` (0 is the outermost).
    template <std::size_t Index>
    auto const& policy() const noexcept {
        return std::get<Index>(m_policies);
    }

private:
    template <std::size_t Index, class R, class... Args>
    outcome<R> run(context_type const& ctx, Args&... args) const {
        if constexpr (Index == sizeof...(Policies)) {
            return invoke_call<R>(ctx, args...);
        } else {
            auto const next = [this, &args...](context_type const& inner) -> outcome<R> {
                return this->template run<Index + 1, R>(inner, args...);
            };
            return std::get<Index>(m_policies).execute(next, ctx);
        }
    }

    template <class R, class... Args>
    outcome<R> invoke_call(context_type const& ctx, Args&... args) const {
        using traits = detail::call_traits<Call, context_type, Args...>;
        try {
            if constexpr (traits::takes_context) {
                return to_outcome<R>(
                    [&]() -> decltype(auto) { return std::invoke(m_call, ctx, args...); });
            } else {
                return to_outcome<R>(
                    [&]() -> decltype(auto) { return std::invoke(m_call, args...); });
            }
        } catch (...) {
            return failure::from_current_exception();
        }
    }

    template <class R, class Invoke>
    static outcome<R> to_outcome(Invoke const& invoke) {
        using raw = std::remove_cvref_t<decltype(invoke())>;
        if constexpr (std::is_same_v<raw, outcome<R>>) {
            return invoke();
        } else if constexpr (std::is_void_v<R>) {
            invoke();
            return outcome<void>{};
        } else {
            return outcome<R>{std::in_place, invoke()};
        }
    }

    [[no_unique_address]] Call m_call;
    [[no_unique_address]] std::tuple<Policies...> m_policies;
};

KEEL_END_NAMESPACE
