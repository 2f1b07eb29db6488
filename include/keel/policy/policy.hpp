// SPDX-License-Identifier: MIT
// The policy concept: what keel::resilient composes. A policy wraps "the rest of
// the pipeline" (a callable taking the context and returning keel::outcome<R>)
// and returns an outcome of the same type. Users write their own policies (a
// metrics policy, a fallback of their own) by meeting this concept.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/core/context.hpp>
#include <keel/core/outcome.hpp>
#include <keel/version.hpp>

#include <concepts>
#include <type_traits>

KEEL_BEGIN_NAMESPACE

namespace detail {
/// The shape of "the rest of the pipeline" a policy receives: callable with the
/// context, returning an outcome. Used only to state the concept.
template <class Result, class Context>
struct next_archetype {
    outcome<Result> operator()(Context const&) const;
};

template <class P>
struct policy_clock {
    using type = void;
};
template <class P>
requires requires {
    typename P::clock_type;
}
struct policy_clock<P> {
    using type = typename P::clock_type;
};
} // namespace detail

/// Describes a policy that can wrap a pipeline returning `outcome<Result>` and
/// seeing `Context` (a keel::basic_context).
///
/// A policy is a copyable value with a const member template
///
///     template <class Next, class Context>
///     outcome<R> execute(Next const& next, Context const& ctx) const;
///
/// where `next(ctx)` runs the inner pipeline (other policies, then the call) and
/// returns `outcome<R>`. A policy may call `next` zero times (reject), once, or
/// several times (retry), may pass a derived context (a new attempt number, a
/// tighter deadline and stop token), and must not let exceptions escape: the
/// innermost layer already turns the call's exceptions into failures. `execute`
/// is const and must be thread-safe, because one keel::resilient is usually
/// called from many threads; shared state (a breaker, a bulkhead, a retry
/// budget) lives in objects the policy refers to. A policy that reads time names
/// its clock as `clock_type`; all policies of one pipeline must agree on it.
template <class P, class Result, class Context = context>
concept policy_for = std::copy_constructible<P> &&
    requires(P const& p, detail::next_archetype<Result, Context> const& next, Context const& ctx) {
    { p.execute(next, ctx) } -> std::same_as<outcome<Result>>;
};

/// The clock a policy reads (`P::clock_type`), or void for policies that read none.
template <class P>
using policy_clock_t = typename detail::policy_clock<std::remove_cvref_t<P>>::type;

KEEL_END_NAMESPACE
