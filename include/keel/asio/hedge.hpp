// SPDX-License-Identifier: MIT
// keel::hedge: when an attempt is slow, start another one in parallel and take
// the first acceptable outcome (Polly v8's hedging strategy, gRPC A6's fatal
// status rule). Asynchronous only: it runs in keel::asio::resilient, each
// attempt in a coroutine of its own that the losers' terminal cancellation ends.
#pragma once

#include <keel/asio/context.hpp>
#include <keel/asio/detail/asio.hpp>
#include <keel/asio/detail/scope.hpp>
#include <keel/asio/timer.hpp>
#include <keel/core/clock.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/detail/time.hpp>
#include <keel/detail/validate.hpp>
#include <keel/policy/predicate.hpp>
#include <keel/policy/retry_budget.hpp>
#include <keel/version.hpp>

#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

KEEL_BEGIN_NAMESPACE

/// Options of keel::hedge (on `Clock`, which only the budget's type depends on).
template <clock Clock = steady_clock>
struct basic_hedge_options {
    /// Default 1, in [1, 10] (Polly v8's MaxHedgedAttempts and its range): hedged
    /// attempts on top of the primary, so at most 1 + max_hedged_attempts run.
    int max_hedged_attempts = 1;
    /// Default 2 s (Polly v8's Delay); >= 0. How long an attempt may run before the
    /// next one starts. 0 starts every attempt at once (Polly's parallel mode,
    /// gRPC A6's hedgingDelay 0s); nanoseconds::max() starts the next one only when
    /// an attempt fails (Polly's fallback mode).
    std::chrono::nanoseconds delay = std::chrono::seconds{2};
    /// Default empty. Overrides `delay`: called with the hedge about to be scheduled
    /// (1 for the first hedge) and returns its delay (Polly's DelayGenerator).
    std::function<std::chrono::nanoseconds(int hedge)> delay_generator{};
    /// Default null (no budget). A shared budget: each logical call deposits once,
    /// each hedge withdraws once; a refused withdrawal starts no more hedges (gRPC
    /// A6 sends no hedge beyond the throttle, and never blocks for one).
    basic_retry_budget<Clock>* budget = nullptr;
    /// Default empty. Called, holding no lock, when hedge `hedge` (1..) starts.
    std::function<void(int hedge)> on_hedge{};
};

/// Options of keel::hedge on keel::steady_clock.
using hedge_options = basic_hedge_options<>;

/// Handles no outcome: the default of keel::hedge's fatal classifier.
struct never {
    /// Returns false.
    template <class R>
    bool operator()(outcome<R> const&) const noexcept {
        return false;
    }
};

/// Runs the rest of the pipeline as a primary attempt and, while no acceptable
/// outcome has arrived, up to max_hedged_attempts hedges in parallel: the next
/// one when the delay passes, or at once when an attempt fails with an outcome
/// `Handles` handles (by default any failure but cancellation, Polly's
/// ShouldHandle).
///
/// - The first outcome `Handles` does not handle wins; every other attempt gets
///   terminal cancellation and is awaited before the call returns (their
///   breakers record no verdict).
/// - An outcome `Fatal` handles (gRPC A6's fatal status codes) ends the call at
///   once with that outcome, cancelling the others.
/// - When every attempt has failed, the outcome is the primary's.
/// - The caller's cancellation cancels every attempt and awaits them.
/// Each attempt sees `ctx.hedge()` (0 for the primary), so it can choose another
/// endpoint. Order it outside the per-attempt policies:
/// `resilient{op, hedge, guard(breaker), timeout}` times each attempt alone.
/// Asynchronous only: keel::resilient rejects it at compile time.
///
///     auto get = keel::asio::resilient{fetch_from_replica,
///         keel::hedge{{.max_hedged_attempts = 2, .delay = 50ms}}, keel::timeout{1s}};
template <class Handles = on_failure, class Fatal = never, clock Clock = steady_clock>
class hedge {
public:
    using clock_type = Clock;

    /// Builds the policy; throws std::invalid_argument when an option is out of range.
    explicit hedge(basic_hedge_options<Clock> options = {}, Handles handles = Handles{},
                   Fatal fatal = Fatal{}, Clock clock = Clock{})
        : m_options(std::move(options)), m_handles(std::move(handles)), m_fatal(std::move(fatal)),
          m_clock(std::move(clock)) {
        if (m_options.max_hedged_attempts < 1 || m_options.max_hedged_attempts > max_hedges) {
            detail::invalid_option("keel::hedge", "max_hedged_attempts", "in [1, 10]",
                                   m_options.max_hedged_attempts);
        }
        if (m_options.delay < std::chrono::nanoseconds::zero()) {
            detail::invalid_option("keel::hedge", "delay", ">= 0", m_options.delay);
        }
    }

    /// Returns the options.
    basic_hedge_options<Clock> const& options() const noexcept { return m_options; }

    /// Returns the delay before hedge `hedge` (1..) starts.
    std::chrono::nanoseconds delay_before(int hedge_index) const {
        auto const d =
            m_options.delay_generator ? m_options.delay_generator(hedge_index) : m_options.delay;
        return d < std::chrono::nanoseconds::zero() ? std::chrono::nanoseconds::zero() : d;
    }

    /// The synchronous pipeline cannot run attempts in parallel.
    template <class Next, class Context>
    auto execute(Next const&, Context const&) const
        -> decltype(std::declval<Next const&>()(std::declval<Context const&>())) = delete;

    /// Runs the attempts (see the class); the asynchronous pipeline's entry point.
    template <class Next, class Context>
    asio::awaitable<
        outcome<typename std::invoke_result_t<Next&, Context const&>::value_type::value_type>>
    async_execute(Next next, Context const& ctx) const {
        using R = typename std::invoke_result_t<Next&, Context const&>::value_type::value_type;
        using time_point = typename Clock::time_point;
        namespace net = asio::net;
        if (m_options.budget) {
            m_options.budget->deposit();
        }
        if (ctx.stop_requested()) {
            co_return failure::from(errc::cancelled);
        }
        auto const executor = co_await net::this_coro::executor;
        race<R> state{executor, m_clock};
        int const total = 1 + m_options.max_hedged_attempts;

        auto launch = [&](int index) {
            auto& attempt = state.attempts[static_cast<std::size_t>(index)];
            attempt.scope = asio::detail::make_cancel_scope();
            ++state.launched;
            net::co_spawn(
                executor,
                asio::detail::scope_body<R>(next, ctx.with_hedge(index), attempt.scope.get()),
                net::bind_cancellation_slot(
                    attempt.scope->signal.slot(),
                    [&state, index](std::exception_ptr error, std::optional<outcome<R>> result) {
                        auto& done = state.attempts[static_cast<std::size_t>(index)];
                        if (error || !result) {
                            done.result.emplace(failure::from(
                                error ? error : std::make_exception_ptr(std::bad_alloc{})));
                        } else {
                            done.result.emplace(std::move(*result));
                        }
                        done.scope->done = true;
                        state.finished_order[static_cast<std::size_t>(state.finished++)] = index;
                        state.wake.cancel();
                    }));
        };
        // Cancels every attempt still running, marked as the caller's (or an
        // enclosing timeout's) cancellation, or as a loser's.
        auto cancel_running = [&](bool timed_out) {
            for (int i = 0; i < state.launched; ++i) {
                auto& attempt = state.attempts[static_cast<std::size_t>(i)];
                if (!attempt.result && !attempt.scope->emitted) {
                    attempt.scope->timed_out = timed_out;
                    attempt.scope->cancelled = !timed_out;
                    attempt.scope->emit(net::cancellation_type::terminal);
                }
            }
        };
        auto next_start = [&](int hedge_index) -> time_point {
            auto const d = delay_before(hedge_index);
            return d == std::chrono::nanoseconds::max()
                       ? time_point::max()
                       : keel::detail::saturating_add(m_clock.now(), d);
        };
        auto try_launch = [&]() -> bool {
            int const index = state.launched;
            if (index >= total || state.no_more) {
                return false;
            }
            if (m_options.budget && !m_options.budget->try_withdraw()) {
                state.no_more = true;
                return false;
            }
            if (m_options.on_hedge) {
                try {
                    m_options.on_hedge(index);
                } catch (...) { // NOLINT(bugprone-empty-catch): a listener does not stop a hedge
                }
            }
            launch(index);
            return true;
        };

        launch(0);
        time_point start_next = next_start(1);
        int seen = 0;
        int winner = -1;
        bool cancelled_by_caller = false;
        for (;;) {
            bool launch_now = false;
            while (seen < state.finished) {
                int const index = state.finished_order[static_cast<std::size_t>(seen++)];
                auto const& result = *state.attempts[static_cast<std::size_t>(index)].result;
                if (call_fatal(result) || !call_handles(result)) {
                    winner = index;
                    break;
                }
                launch_now = true; // a handled failure starts the next hedge at once
            }
            if (winner >= 0 ||
                (state.finished == state.launched && (state.launched == total || state.no_more))) {
                break;
            }
            while (state.launched < total && !state.no_more &&
                   (launch_now || m_clock.now() >= start_next)) {
                if (!try_launch()) {
                    break;
                }
                launch_now = false;
                start_next =
                    state.launched < total ? next_start(state.launched) : time_point::max();
            }
            if (state.finished == state.launched && (state.launched == total || state.no_more)) {
                continue; // nothing runs and nothing more may start: decide above
            }
            auto const until =
                state.launched < total && !state.no_more ? start_next : time_point::max();
            co_await state.wake.async_wait_until(until,
                                                 net::experimental::as_tuple(net::use_awaitable));
            if (ctx.stop_requested()) {
                cancelled_by_caller = true;
                break;
            }
        }
        auto const* scope = ctx.scope();
        cancel_running(cancelled_by_caller && scope != nullptr && scope->timed_out);
        while (state.finished < state.launched) {
            co_await state.wake.async_wait_until(time_point::max(),
                                                 net::experimental::as_tuple(net::use_awaitable));
        }
        if (winner >= 0) {
            co_return std::move(*state.attempts[static_cast<std::size_t>(winner)].result);
        }
        if (cancelled_by_caller) {
            co_return failure::from(errc::cancelled);
        }
        co_return std::move(*state.attempts[0].result);
    }

private:
    static constexpr int max_hedges = 10;

    template <class R>
    struct race {
        struct attempt {
            std::shared_ptr<asio::detail::cancel_scope> scope;
            std::optional<outcome<R>> result;
        };
        race(asio::net::any_io_executor executor, Clock const& clock)
            : wake(std::move(executor), clock) {}
        std::array<attempt, max_hedges + 1> attempts{};
        std::array<int, max_hedges + 1> finished_order{};
        int launched = 0;
        int finished = 0;
        bool no_more = false; // the budget refused a hedge
        asio::basic_timer<Clock> wake;
    };

    template <class Result>
    bool call_handles(Result const& result) const noexcept {
        try {
            return m_handles(result);
        } catch (...) {
            return true; // a throwing classifier cannot accept the outcome
        }
    }
    template <class Result>
    bool call_fatal(Result const& result) const noexcept {
        try {
            return m_fatal(result);
        } catch (...) {
            return false;
        }
    }

    basic_hedge_options<Clock> m_options;
    [[no_unique_address]] Handles m_handles;
    [[no_unique_address]] Fatal m_fatal;
    [[no_unique_address]] Clock m_clock;
};

KEEL_END_NAMESPACE
