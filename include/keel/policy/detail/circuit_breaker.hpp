// SPDX-License-Identifier: MIT
// Internals of keel::circuit_breaker: the time-based window (an epoch_ring of
// one-second buckets), the window a breaker chooses at construction, option
// validation, the reset backoff's arithmetic, and the transitions collected
// under the breaker's lock and reported after it.
#pragma once

#include <keel/detail/config.hpp>
#include <keel/detail/count_window.hpp>
#include <keel/detail/epoch_ring.hpp>
#include <keel/detail/integer.hpp>
#include <keel/detail/validate.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

KEEL_BEGIN_NAMESPACE
namespace detail {

// The time-based window: an epoch_ring of one-second buckets, each counting the
// calls, failures and slow calls of its second (14 bits each, under a 22-bit
// stamp: 48 days). Outcomes follow the ring's late-writer rule: one recorded at a
// second older than the latest recorded one counts at the latest. Within a second
// counts are exact; a bucket samples the first 16383 outcomes of its second
// (beyond that rate the window's rates are those of the sample, and `calls`
// saturates).
class time_window {
public:
    static constexpr std::uint32_t max_size = 3600;

    using totals = count_window::totals;

    explicit time_window(std::uint32_t seconds) : m_ring(seconds) {}

    // Empties every bucket and follows the clock again. Call with the breaker's lock held.
    void reset_locked() noexcept { m_ring.reset(); }

    // Records one outcome at `second` (>= 0); returns the second it counts at.
    KEEL_ALWAYS_INLINE std::int64_t record(std::int64_t second, bool failed, bool slow) noexcept {
        std::uint64_t const add = (std::uint64_t{1} << calls_shift) |
                                  (failed ? std::uint64_t{1} << failures_shift : 0) |
                                  (slow ? std::uint64_t{1} : 0);
        auto const at = m_ring.update(
            second, [add](std::uint64_t payload, std::int64_t) -> std::optional<std::uint64_t> {
                if ((payload >> calls_shift) == count_mask) {
                    return std::nullopt; // sampled out: the bucket is full for this second
                }
                return payload + add;
            });
        return at ? *at : second;
    }

    // Returns the totals of the window ending with second `now_second` (or with the
    // latest second recorded, if that is later).
    totals read(std::int64_t now_second) const noexcept {
        totals t;
        m_ring.read(now_second, [&t](std::uint64_t payload, std::int64_t) {
            t.calls += payload >> calls_shift;
            t.failures += (payload >> failures_shift) & count_mask;
            t.slow += payload & count_mask;
        });
        return t;
    }

    std::uint32_t size() const noexcept { return m_ring.size(); }

private:
    static constexpr unsigned calls_shift = 28;
    static constexpr unsigned failures_shift = 14;
    static constexpr std::uint64_t count_mask = 0x3FFF;

    epoch_ring<22> m_ring;
};

// The one window a breaker records into, chosen at construction (as resilience4j
// builds one kind of Metrics): the exact last-N calls, or the last N seconds.
class breaker_window {
public:
    using totals = count_window::totals;

    breaker_window(bool time_based, std::uint32_t size) : m_window(make(time_based, size)) {}

    // Whether outcomes are placed in time (record() then needs the second).
    bool time_based() const noexcept { return m_window.index() == 1; }

    // Empties the window for `generation`. Call with the breaker's lock held,
    // before publishing the generation.
    void reset_locked(std::uint64_t generation) noexcept {
        if (auto* w = std::get_if<count_window>(&m_window)) {
            w->reset_locked(generation);
        } else {
            std::get<time_window>(m_window).reset_locked();
        }
    }

    // Records one outcome of `generation` at `second` (read only by a time-based
    // window); returns the totals right after it when `want_totals`, unless the
    // window already belongs to a later generation.
    KEEL_ALWAYS_INLINE std::optional<totals> record(std::uint64_t generation, std::int64_t second,
                                                    bool failed, bool slow,
                                                    bool want_totals) noexcept {
        if (auto* w = std::get_if<count_window>(&m_window)) [[likely]] {
            auto const after = w->record(generation, failed, slow);
            return want_totals ? after : std::nullopt;
        }
        auto& w = *std::get_if<time_window>(&m_window);
        std::int64_t const at = w.record(second, failed, slow);
        return want_totals ? std::optional<totals>{w.read(at)} : std::nullopt;
    }

    // Returns the totals as of `second` (ignored by a count-based window).
    totals read(std::int64_t second) const noexcept {
        if (auto const* w = std::get_if<count_window>(&m_window)) {
            return w->read();
        }
        return std::get_if<time_window>(&m_window)->read(second);
    }

    // Returns the calls the window needs before a rate can trip the breaker: a
    // count-based window never holds more than its size (as resilience4j).
    std::uint64_t minimum(std::uint32_t minimum_calls) const noexcept {
        if (auto const* w = std::get_if<count_window>(&m_window)) {
            return std::min(minimum_calls, w->size());
        }
        return minimum_calls;
    }

private:
    using storage = std::variant<count_window, time_window>;

    // Built in place: neither window can move (their atomics stay where they are).
    static storage make(bool time_based, std::uint32_t size) {
        if (time_based) {
            return storage{std::in_place_type<time_window>, size};
        }
        return storage{std::in_place_type<count_window>, size};
    }

    storage m_window;
};

// A few transitions collected under the breaker's lock, reported after it is
// released; no allocation on any path.
template <class Transition>
struct pending_transitions {
    static constexpr std::size_t capacity = 4;
    Transition items[capacity];
    std::size_t size = 0;
    void push(Transition const& t) noexcept {
        if (size < capacity) {
            items[size++] = t;
        }
    }
};

// Throws std::invalid_argument naming the field and its range when an option of a
// keel::circuit_breaker_options is outside it; returns the options otherwise.
template <class Options>
Options const& validate_breaker_options(Options const& o) {
    using window = decltype(o.window);
    constexpr std::string_view component = "keel::circuit_breaker";
    if (!(o.failure_rate_threshold > 0.0 && o.failure_rate_threshold <= 100.0)) {
        invalid_option(component, "failure_rate_threshold", "in (0, 100]",
                       o.failure_rate_threshold);
    }
    if (!(o.slow_call_rate_threshold > 0.0 && o.slow_call_rate_threshold <= 100.0)) {
        invalid_option(component, "slow_call_rate_threshold", "in (0, 100]",
                       o.slow_call_rate_threshold);
    }
    if (o.slow_call_duration <= std::chrono::nanoseconds::zero()) {
        invalid_option(component, "slow_call_duration", "> 0", o.slow_call_duration);
    }
    if (o.window == window::count_based) {
        if (o.window_size < 1 || o.window_size > count_window::max_size) {
            invalid_option(component, "window_size", "in [1, 32768] calls for a count_based window",
                           o.window_size);
        }
    } else if (o.window == window::time_based) {
        if (o.window_size < 1 || o.window_size > time_window::max_size) {
            invalid_option(component, "window_size", "in [1, 3600] seconds for a time_based window",
                           o.window_size);
        }
    } else {
        invalid_configuration(component, "window must be count_based or time_based");
    }
    if (o.minimum_calls < 1) {
        invalid_option(component, "minimum_calls", ">= 1", o.minimum_calls);
    }
    if (o.reset_timeout <= std::chrono::nanoseconds::zero()) {
        invalid_option(component, "reset_timeout", "> 0", o.reset_timeout);
    }
    if (o.max_reset_timeout < o.reset_timeout) {
        invalid_option(component, "max_reset_timeout",
                       ">= reset_timeout (" + format_duration(o.reset_timeout) + ")",
                       o.max_reset_timeout);
    }
    if (o.reset_jitter < std::chrono::nanoseconds::zero()) {
        invalid_option(component, "reset_jitter", ">= 0", o.reset_jitter);
    }
    if (o.permitted_calls_in_half_open < 1 || o.permitted_calls_in_half_open > 1000) {
        invalid_option(component, "permitted_calls_in_half_open", "in [1, 1000]",
                       o.permitted_calls_in_half_open);
    }
    if (o.max_wait_in_half_open < std::chrono::nanoseconds::zero()) {
        invalid_option(component, "max_wait_in_half_open", ">= 0 (0: wait forever)",
                       o.max_wait_in_half_open);
    }
    return o;
}

// Returns min(base * 2^k, cap) for 0 < base <= cap, without overflowing.
constexpr std::int64_t doubled_period(std::int64_t base, std::uint32_t k,
                                      std::int64_t cap) noexcept {
    return k < 62 && base <= (cap >> k) ? base << k : cap;
}

// Returns now + d, kept below INT64_MAX (the breaker's sentinel for "no deadline").
constexpr std::int64_t finite_deadline(std::int64_t now_ns, std::int64_t d) noexcept {
    std::int64_t const t = saturating_add(now_ns, d);
    return t < INT64_MAX ? t : INT64_MAX - 1;
}

// Calls every listener with every transition; a listener's exception is dropped,
// so a listener cannot break a call.
template <class Listeners, class Transitions>
void notify_listeners(std::shared_ptr<Listeners const> const& listeners,
                      Transitions const& out) noexcept {
    if (!listeners) {
        return;
    }
    for (std::size_t i = 0; i < out.size; ++i) {
        for (auto const& callback : *listeners) {
            try {
                callback(out.items[i]);
            } catch (...) { // NOLINT(bugprone-empty-catch): see above
            }
        }
    }
}

} // namespace detail
KEEL_END_NAMESPACE
