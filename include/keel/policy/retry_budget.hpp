// SPDX-License-Identifier: MIT
// keel::retry_budget: a shared limit on how many retries a client makes, so that
// retries cannot multiply the load on a dependency that is already failing.
// As Finagle's RetryBudget (and Envoy's retry_budget, failsafe-go's budget):
// over the last `ttl`, retries may be at most `retry_ratio` of the calls plus a
// floor of `min_retries_per_second`. Lock-free.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/detail/epoch_ring.hpp>
#include <keel/detail/time.hpp>
#include <keel/detail/validate.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string_view>

KEEL_BEGIN_NAMESPACE

/// Options of keel::retry_budget.
struct retry_budget_options {
    /// Default 0.2 (Finagle percentCanRetry, Envoy budget_percent 20 %, failsafe-go maxRate);
    /// in [0, 1000]; each call deposits this many retries. Zero leaves only the floor.
    double retry_ratio = 0.2;
    /// Default 10 (Finagle minRetriesPerSec); finite and >= 0. The budget always holds
    /// `min_retries_per_second * ttl` retries on top of the deposits, so a client
    /// with little traffic can still retry. Zero means no floor.
    double min_retries_per_second = 10.0;
    /// Default 10 s (Finagle's TTL); in [10 ms, 1 h]. Deposits and retries count
    /// for this long, tracked in 10 buckets of ttl / 10.
    std::chrono::nanoseconds ttl = std::chrono::seconds{10};
};

/// Describes a retry budget at one instant.
struct retry_budget_snapshot {
    std::int64_t calls = 0;   ///< Calls deposited within the last ttl.
    std::int64_t retries = 0; ///< Retries withdrawn within the last ttl.
    std::int64_t refused = 0; ///< Retries refused since construction.
    double balance = 0;       ///< Retries available now (floor + ratio * calls - retries).
};

/// Limits retries to a fraction of calls plus a floor, over a sliding window.
///
/// Every logical call deposits once (deposit()); every retry withdraws one
/// (try_withdraw(), which refuses when the balance is below one). Over the last
/// ttl (ten buckets of ttl / 10), retries <= retry_ratio * calls +
/// min_retries_per_second * ttl. One budget is shared by reference by every
/// keel::retry guarding the same dependency. Thread-safe and lock-free: calls and
/// retries are counted in two keel::detail::epoch_ring windows, so a withdrawal
/// that read the clock late is counted at the latest bucket instead of erasing
/// it, and a withdrawal is decided by a compare-and-swap on the bucket it is
/// counted in (one racing the start of a new bucket is taken back and decided
/// again in that bucket). Non-copyable; must outlive the policies referring to it.
///
///     keel::retry_budget budget{{.retry_ratio = 0.1}};
///     auto guarded = keel::resilient{call, keel::retry{{.budget = &budget}}};
template <clock Clock = steady_clock>
class basic_retry_budget {
public:
    using clock_type = Clock;

    /// Builds a budget; throws std::invalid_argument when an option is out of range.
    explicit basic_retry_budget(
        retry_budget_options options = {}) requires std::default_initializable<Clock>
        : basic_retry_budget(options, Clock{}) {}

    /// Builds a budget reading `clock` (a keel::manual_clock in tests).
    basic_retry_budget(retry_budget_options options, Clock clock)
        : m_options(options), m_clock(std::move(clock)) {
        constexpr std::string_view component = "keel::retry_budget";
        if (!(options.retry_ratio >= 0.0 && options.retry_ratio <= 1000.0)) {
            detail::invalid_option(component, "retry_ratio", "in [0, 1000]", options.retry_ratio);
        }
        if (!(options.min_retries_per_second >= 0.0) ||
            !std::isfinite(options.min_retries_per_second)) {
            detail::invalid_option(component, "min_retries_per_second", "finite and >= 0",
                                   options.min_retries_per_second);
        }
        if (options.ttl < std::chrono::milliseconds{10} || options.ttl > std::chrono::hours{1}) {
            detail::invalid_option(component, "ttl", "in [10 ms, 1 h]", options.ttl);
        }
        m_width = options.ttl.count() / buckets;
        m_reserve =
            options.min_retries_per_second * std::chrono::duration<double>(options.ttl).count();
    }

    basic_retry_budget(basic_retry_budget const&) = delete;
    basic_retry_budget& operator=(basic_retry_budget const&) = delete;

    /// Records one logical call (keel::retry does it once per call, before the first attempt).
    void deposit() noexcept {
        m_calls.update(epoch(),
                       [](std::uint64_t calls, std::int64_t) -> std::optional<std::uint64_t> {
                           return std::min(calls + 1, ring::payload_max);
                       });
    }

    /// Takes one retry from the budget; returns false (and counts a refusal) when
    /// fewer than one retry is available.
    bool try_withdraw() noexcept {
        std::int64_t at = epoch();
        for (;;) {
            auto const granted = m_retries.update(
                at, [this](std::uint64_t here, std::int64_t e) -> std::optional<std::uint64_t> {
                    if (available(e, here) < 1.0 || here == ring::payload_max) {
                        return std::nullopt;
                    }
                    return here + 1;
                });
            if (!granted) {
                m_refused.fetch_add(1, std::memory_order_relaxed);
                return false;
            }
            // A withdrawal that moved the ring to a later bucket may have read this
            // bucket before the retry above landed in it (the ring's ordering makes
            // one of the two see the other): take it back and decide in that bucket.
            std::int64_t const latest = m_retries.latest();
            if (latest <= *granted) {
                return true;
            }
            m_retries.amend(*granted, [](std::uint64_t here, std::int64_t) {
                return std::optional<std::uint64_t>{here - 1};
            });
            at = latest;
        }
    }

    /// Returns the counts within the last ttl and the balance.
    retry_budget_snapshot snapshot() const noexcept {
        std::int64_t const now = epoch();
        retry_budget_snapshot s;
        s.calls = sum(m_calls, now);
        s.retries = sum(m_retries, now);
        s.refused = m_refused.load(std::memory_order_relaxed);
        s.balance = m_reserve + m_options.retry_ratio * static_cast<double>(s.calls) -
                    static_cast<double>(s.retries);
        return s;
    }

    /// Returns the options the budget was built with.
    retry_budget_options const& options() const noexcept { return m_options; }

private:
    static constexpr std::uint32_t buckets = 10;
    // 24-bit stamps, 40-bit counts: a stamp repeats after 2^24 buckets (4.6 h at the
    // smallest ttl, 19 years at the default).
    using ring = detail::epoch_ring<24>;

    std::int64_t epoch() const noexcept {
        return std::max<std::int64_t>(0, detail::to_ns(m_clock.now())) / m_width;
    }

    static std::int64_t sum(ring const& r, std::int64_t now) noexcept {
        std::int64_t total = 0;
        r.read(now, [&total](std::uint64_t count, std::int64_t) {
            total += static_cast<std::int64_t>(count);
        });
        return total;
    }

    // Retries available to a withdrawal counted in bucket `at`, which holds `here`.
    double available(std::int64_t at, std::uint64_t here) const noexcept {
        std::int64_t others = 0;
        m_retries.read(at, [&others, at](std::uint64_t count, std::int64_t e) {
            if (e != at) {
                others += static_cast<std::int64_t>(count);
            }
        });
        return m_reserve + m_options.retry_ratio * static_cast<double>(sum(m_calls, at)) -
               static_cast<double>(others) - static_cast<double>(here);
    }

    retry_budget_options m_options;
    [[no_unique_address]] Clock m_clock;
    std::int64_t m_width = 1;
    double m_reserve = 0;
    ring m_calls{buckets};
    ring m_retries{buckets};
    std::atomic<std::int64_t> m_refused{0};
};

/// A retry budget on keel::steady_clock.
using retry_budget = basic_retry_budget<>;

KEEL_END_NAMESPACE
