// SPDX-License-Identifier: MIT
// How long keel::retry waits between attempts: a backoff (constant, linear,
// exponential with a cap) and a jitter (none, full, equal, decorrelated as in
// the AWS Architecture Blog's "Exponential Backoff And Jitter", proportional
// +/- x % as Polly and gRPC do, or additive U(0, x) as in the article's
// min(base * 2^n + U(0, 1 s), max)). keel::backoff_sequence turns them into the
// delays of one logical call.
#pragma once

#include <keel/core/random.hpp>
#include <keel/detail/validate.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <variant>

KEEL_BEGIN_NAMESPACE

/// Waits the same `delay` before every retry (resilience4j's default: fixed 500 ms).
struct constant {
    /// Default 500 ms (resilience4j waitDuration); >= 0; zero retries at once.
    std::chrono::nanoseconds delay = std::chrono::milliseconds{500};
};

/// Waits `base + step * (n - 1)` before retry n (n = 1 for the first retry), at most `cap`.
///
/// Polly's linear backoff (Delay * attempt) is `linear{d, d}`.
struct linear {
    /// Default 500 ms (resilience4j's initial interval); >= 0.
    std::chrono::nanoseconds base = std::chrono::milliseconds{500};
    /// Default 500 ms (so the default is Polly's Delay * attempt); >= 0.
    std::chrono::nanoseconds step = std::chrono::milliseconds{500};
    /// Default 30 s (keel's choice: Polly has no cap by default, gRPC requires one); >= base.
    std::chrono::nanoseconds cap = std::chrono::seconds{30};
};

/// Waits `base * multiplier^(n - 1)` before retry n (n = 1 for the first retry), at most `cap`.
///
/// Example: `keel::exponential{100ms, 2.0, 5s}` waits 100, 200, 400, ... ms, never more than 5 s.
struct exponential {
    /// Default 500 ms (resilience4j's initial interval); >= 0.
    std::chrono::nanoseconds base = std::chrono::milliseconds{500};
    /// Default 2.0 (Polly, failsafe, Finagle; resilience4j uses 1.5); finite and >= 1.
    double multiplier = 2.0;
    /// Default 30 s (keel's choice: Polly has no cap by default, gRPC requires one); >= base.
    std::chrono::nanoseconds cap = std::chrono::seconds{30};
};

/// One of the backoff shapes; keel::retry's options hold one.
using backoff = std::variant<constant, linear, exponential>;

/// Says how a backoff delay is randomised so that clients do not retry in lockstep.
///
/// With `c` the capped backoff delay of retry n and `U` a uniform draw in [0, 1):
/// - `jitter::none`: c.
/// - `jitter::full` (AWS): U * c, in [0, c); mean c / 2.
/// - `jitter::equal` (AWS): c / 2 + U * c / 2, in [c / 2, c); mean 3c / 4.
/// - `jitter::decorrelated` (AWS): min(cap, base + U * (3 * previous - base)), with
///   previous = base before the first retry; in [base, min(cap, 3 * previous)).
///   It grows by itself, ignoring the backoff's multiplier or step.
/// - `jitter::proportional(x)`: min(cap, c * (1 - x + 2xU)): in [c(1 - x), c(1 + x)) and
///   never above the cap; mean c where c(1 + x) stays below the cap. Polly's
///   constant/linear jitter is x = 0.25, gRPC's is x = 0.2. Clamped after jitter, as
///   Polly clamps to MaxDelay: a linear or exponential delay never exceeds its cap;
///   keel::constant has no cap, so it spreads c +/- x.
/// - `jitter::additive(a)`: min(raw + U * a, cap) where raw is the uncapped delay,
///   the article's min(base * 2^n + U(0, 1 s), max) with a = 1 s.
struct jitter {
    /// Names the jitter kinds.
    enum class kind : std::uint8_t { none, full, equal, decorrelated, proportional, additive };

    kind which = kind::none;           ///< The formula.
    double fraction = 0.0;             ///< x of proportional, in [0, 1].
    std::chrono::nanoseconds amount{}; ///< a of additive, >= 0.

    static jitter const none;         ///< No randomisation.
    static jitter const full;         ///< AWS "full jitter".
    static jitter const equal;        ///< AWS "equal jitter".
    static jitter const decorrelated; ///< AWS "decorrelated jitter".

    /// Returns a jitter of +/- `x` (a fraction, 0.25 for Polly's +/- 25 %) around the delay.
    static constexpr jitter proportional(double x) noexcept {
        return jitter{kind::proportional, x, {}};
    }
    /// Returns a jitter adding U(0, `a`) to the uncapped delay, then capping.
    static constexpr jitter additive(std::chrono::nanoseconds a) noexcept {
        return jitter{kind::additive, 0.0, a};
    }

    friend constexpr bool operator==(jitter const&, jitter const&) = default;
};

inline constexpr jitter jitter::none{jitter::kind::none, 0.0, {}};
inline constexpr jitter jitter::full{jitter::kind::full, 0.0, {}};
inline constexpr jitter jitter::equal{jitter::kind::equal, 0.0, {}};
inline constexpr jitter jitter::decorrelated{jitter::kind::decorrelated, 0.0, {}};

namespace detail {
/// Throws std::invalid_argument unless `b` and `j` are within their documented ranges,
/// naming them as the options of `component` hold them (backoff.base, jitter.fraction).
inline void validate_backoff(std::string_view component, backoff const& b, jitter const& j) {
    using std::chrono::nanoseconds;
    if (auto const* c = std::get_if<constant>(&b)) {
        if (c->delay < nanoseconds::zero()) {
            invalid_option(component, "backoff.delay", ">= 0", c->delay);
        }
    } else if (auto const* l = std::get_if<linear>(&b)) {
        if (l->base < nanoseconds::zero()) {
            invalid_option(component, "backoff.base", ">= 0", l->base);
        }
        if (l->step < nanoseconds::zero()) {
            invalid_option(component, "backoff.step", ">= 0", l->step);
        }
        if (l->cap < l->base) {
            invalid_option(component, "backoff.cap",
                           ">= backoff.base (" + format_duration(l->base) + ")", l->cap);
        }
    } else if (auto const* e = std::get_if<exponential>(&b)) {
        if (e->base < nanoseconds::zero()) {
            invalid_option(component, "backoff.base", ">= 0", e->base);
        }
        if (!(e->multiplier >= 1.0) || !std::isfinite(e->multiplier)) {
            invalid_option(component, "backoff.multiplier", "finite and >= 1", e->multiplier);
        }
        if (e->cap < e->base) {
            invalid_option(component, "backoff.cap",
                           ">= backoff.base (" + format_duration(e->base) + ")", e->cap);
        }
    }
    if (j.which == jitter::kind::proportional && !(j.fraction >= 0.0 && j.fraction <= 1.0)) {
        invalid_option(component, "jitter.fraction", "in [0, 1]", j.fraction);
    }
    if (j.which == jitter::kind::additive && j.amount < nanoseconds::zero()) {
        invalid_option(component, "jitter.amount", ">= 0", j.amount);
    }
}

inline std::chrono::nanoseconds to_nanos(double nanos) noexcept {
    // 2^62 ns is about 146 years: any longer delay is "forever" for a retry.
    constexpr double limit = 0x1.0p62;
    return std::chrono::nanoseconds{static_cast<std::int64_t>(std::clamp(nanos, 0.0, limit))};
}
} // namespace detail

/// Produces the delays of one logical call's retries: next() before retry 1,
/// then retry 2, and so on.
///
/// A small value holding a copy of the backoff and the jitter, a reference to the
/// generator and, for decorrelated jitter, the previous delay: it may be built
/// from a temporary backoff. Not thread-safe: one per call. The generator must
/// outlive it.
template <std::uniform_random_bit_generator Random>
class backoff_sequence {
public:
    /// Starts before the first retry; `random` is drawn once per delay when jitter applies.
    /// Precondition: `b` and `j` are valid (keel::retry validates them at construction).
    backoff_sequence(backoff const& b, jitter const& j, Random& random) noexcept
        : m_backoff(b), m_jitter(j), m_random(&random) {}

    /// Returns the delay before the next retry and advances.
    std::chrono::nanoseconds next() {
        ++m_retry;
        double raw = 0;
        double base = 0;
        double cap = 0;
        // The user's cap, which jitter must not exceed: a constant has none.
        double limit = std::numeric_limits<double>::infinity();
        if (auto const* c = std::get_if<constant>(&m_backoff)) {
            raw = base = cap = static_cast<double>(c->delay.count());
        } else if (auto const* l = std::get_if<linear>(&m_backoff)) {
            base = static_cast<double>(l->base.count());
            cap = limit = static_cast<double>(l->cap.count());
            raw = base + static_cast<double>(l->step.count()) * (m_retry - 1);
        } else {
            auto const& e = std::get<exponential>(m_backoff);
            base = static_cast<double>(e.base.count());
            cap = limit = static_cast<double>(e.cap.count());
            raw = base * std::pow(e.multiplier, m_retry - 1);
        }
        double const capped = std::min(raw, cap);
        double delay = capped;
        switch (m_jitter.which) {
        case jitter::kind::none: break;
        case jitter::kind::full: delay = uniform_unit(*m_random) * capped; break;
        case jitter::kind::equal: delay = capped / 2 + uniform_unit(*m_random) * capped / 2; break;
        case jitter::kind::decorrelated: {
            double const previous = m_retry == 1 ? base : m_previous;
            double const upper = std::max(base, 3 * previous);
            delay = std::min(cap, base + uniform_unit(*m_random) * (upper - base));
            break;
        }
        case jitter::kind::proportional:
            delay = std::min(limit, capped * (1 - m_jitter.fraction +
                                              2 * m_jitter.fraction * uniform_unit(*m_random)));
            break;
        case jitter::kind::additive:
            delay = std::min(
                raw + uniform_unit(*m_random) * static_cast<double>(m_jitter.amount.count()), cap);
            break;
        }
        m_previous = delay;
        return detail::to_nanos(delay);
    }

    /// Returns how many delays next() has produced.
    int retries() const noexcept { return m_retry; }

private:
    backoff m_backoff; // a copy: a sequence built from a temporary must not dangle
    jitter m_jitter;
    Random* m_random;
    int m_retry = 0;
    double m_previous = 0;
};

KEEL_END_NAMESPACE
