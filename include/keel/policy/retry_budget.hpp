// SPDX-License-Identifier: MIT
// keel::retry_budget: a shared limit on how many retries a client makes, so that
// retries cannot multiply the load on a dependency that is already failing.
// As Finagle's RetryBudget (and Envoy's retry_budget, failsafe-go's budget):
// over the last `ttl`, retries may be at most `retry_ratio` of the calls plus a
// floor of `min_retries_per_second`. Lock-free.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/version.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <stdexcept>
#include <string>

KEEL_BEGIN_NAMESPACE

/// Options of keel::retry_budget.
struct retry_budget_options {
    /// Default 0.2 (Finagle percentCanRetry, Envoy budget_percent 20 %, failsafe-go maxRate);
    /// in [0, 1000]; each call deposits this many retries. Zero leaves only the floor.
    double retry_ratio = 0.2;
    /// Default 10 (Finagle minRetriesPerSec); >= 0. The budget always holds
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
/// (try_withdraw(), which refuses when the balance is below one). Over any ttl,
/// retries <= retry_ratio * calls + min_retries_per_second * ttl. One budget is
/// shared by reference by every keel::retry guarding the same dependency.
/// Thread-safe and lock-free: each of ten buckets is one 64-bit atomic counter
/// tagged with its window (a compare-and-swap, no reset race). Non-copyable;
/// must outlive the policies referring to it.
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
        auto fail = [](std::string const& what) {
            throw std::invalid_argument("keel::retry_budget: " + what);
        };
        if (!(options.retry_ratio >= 0.0 && options.retry_ratio <= 1000.0)) {
            fail("retry_ratio must be in [0, 1000], got " + std::to_string(options.retry_ratio));
        }
        if (!(options.min_retries_per_second >= 0.0) ||
            !std::isfinite(options.min_retries_per_second)) {
            fail("min_retries_per_second must be >= 0, got " +
                 std::to_string(options.min_retries_per_second));
        }
        if (options.ttl < std::chrono::milliseconds{10} || options.ttl > std::chrono::hours{1}) {
            fail("ttl must be in [10 ms, 1 h], got " + std::to_string(options.ttl.count()) + " ns");
        }
        m_width = options.ttl.count() / buckets;
        m_reserve =
            options.min_retries_per_second * std::chrono::duration<double>(options.ttl).count();
    }

    basic_retry_budget(basic_retry_budget const&) = delete;
    basic_retry_budget& operator=(basic_retry_budget const&) = delete;

    /// Records one logical call (keel::retry does it once per call, before the first attempt).
    void deposit() noexcept { increment(m_calls, epoch()); }

    /// Takes one retry from the budget; returns false (and counts a refusal) when
    /// fewer than one retry is available.
    bool try_withdraw() noexcept {
        auto const now = epoch();
        auto& slot = m_retries[index(now)];
        std::uint64_t seen = slot.load(std::memory_order_acquire);
        for (;;) {
            double const available = m_reserve + m_options.retry_ratio * static_cast<double>(sum(m_calls, now)) -
                                     static_cast<double>(sum_except(m_retries, now)) -
                                     static_cast<double>(live_count(seen, now));
            if (available < 1.0) {
                m_refused.fetch_add(1, std::memory_order_relaxed);
                return false;
            }
            if (slot.compare_exchange_weak(seen, bumped(seen, now), std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
                return true;
            }
        }
    }

    /// Returns the counts within the last ttl and the balance.
    retry_budget_snapshot snapshot() const noexcept {
        auto const now = epoch();
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
    static constexpr int buckets = 10;
    static constexpr int count_bits = 40;
    static constexpr std::uint64_t count_mask = (std::uint64_t{1} << count_bits) - 1;
    static constexpr std::uint64_t tag_mask = (std::uint64_t{1} << (64 - count_bits)) - 1;
    using counters = std::array<std::atomic<std::uint64_t>, buckets>;

    std::uint64_t epoch() const noexcept {
        auto const since =
            std::chrono::duration_cast<std::chrono::nanoseconds>(m_clock.now().time_since_epoch())
                .count();
        return static_cast<std::uint64_t>(since < 0 ? 0 : since) /
               static_cast<std::uint64_t>(m_width);
    }
    static std::size_t index(std::uint64_t epoch) noexcept { return epoch % buckets; }
    static std::uint64_t tag(std::uint64_t epoch) noexcept { return epoch & tag_mask; }
    static std::uint64_t bumped(std::uint64_t value, std::uint64_t epoch) noexcept {
        return (value >> count_bits) == tag(epoch) ? value + 1 : (tag(epoch) << count_bits) | 1;
    }
    // The count a slot holds if its window is among the last `buckets` ones, else 0.
    static std::int64_t live_count(std::uint64_t value, std::uint64_t epoch) noexcept {
        auto const age = (tag(epoch) - (value >> count_bits)) & tag_mask;
        return age < buckets ? static_cast<std::int64_t>(value & count_mask) : 0;
    }
    static void increment(counters& slots, std::uint64_t epoch) noexcept {
        auto& slot = slots[index(epoch)];
        std::uint64_t seen = slot.load(std::memory_order_relaxed);
        while (!slot.compare_exchange_weak(seen, bumped(seen, epoch), std::memory_order_acq_rel,
                                           std::memory_order_relaxed)) {
        }
    }
    static std::int64_t sum(counters const& slots, std::uint64_t epoch) noexcept {
        std::int64_t total = 0;
        for (auto const& slot : slots) {
            total += live_count(slot.load(std::memory_order_acquire), epoch);
        }
        return total;
    }
    static std::int64_t sum_except(counters const& slots, std::uint64_t epoch) noexcept {
        std::int64_t total = 0;
        for (std::size_t i = 0; i < buckets; ++i) {
            if (i != index(epoch)) {
                total += live_count(slots[i].load(std::memory_order_acquire), epoch);
            }
        }
        return total;
    }

    retry_budget_options m_options;
    [[no_unique_address]] Clock m_clock;
    std::int64_t m_width = 1;
    double m_reserve = 0;
    counters m_calls{};
    counters m_retries{};
    std::atomic<std::int64_t> m_refused{0};
};

/// A retry budget on keel::steady_clock.
using retry_budget = basic_retry_budget<steady_clock>;

KEEL_END_NAMESPACE
