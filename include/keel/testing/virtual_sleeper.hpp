// SPDX-License-Identifier: MIT
// keel::virtual_sleeper: a sleeper that advances a keel::manual_clock instead of
// waiting, and remembers every interval it was asked to sleep. Retry and backoff
// tests run in microseconds and can assert the exact delays.
#pragma once

#include <keel/core/sleeper.hpp>
#include <keel/detail/time.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <stop_token>
#include <vector>

KEEL_BEGIN_NAMESPACE

/// Sleeps in virtual time: sleep_for(d) advances the shared manual clock by `d`.
///
/// Timers on the clock that fall due during the sleep run in order (a deadline
/// can fire the sleeper's own stop token), and the sleep ends early at the timer
/// whose callback fired the token. Copies share the clock and the record of
/// sleeps. Thread-safe, though concurrent sleepers advance one shared time line.
class virtual_sleeper {
public:
    /// Sleeps on `clock`'s time line.
    explicit virtual_sleeper(manual_clock clock)
        : m_clock(std::move(clock)), m_record(std::make_shared<record>()) {}

    /// Advances the clock by `d` unless `token` fires first; records `d` as asked.
    /// Returns true if the whole interval passed.
    bool sleep_for(std::chrono::nanoseconds d, std::stop_token token = {}) {
        {
            std::lock_guard lock{m_record->mutex};
            m_record->sleeps.push_back(d);
        }
        if (token.stop_requested()) {
            return false;
        }
        if (d <= std::chrono::nanoseconds::zero()) {
            return true;
        }
        // Saturating: a sleep of nanoseconds::max() must not wrap the target into the past.
        return m_clock.advance_to(detail::saturating_add(m_clock.now(), d), token);
    }

    /// Returns every interval asked for, in order (including interrupted ones).
    std::vector<std::chrono::nanoseconds> sleeps() const {
        std::lock_guard lock{m_record->mutex};
        return m_record->sleeps;
    }

    /// Returns the sum of all intervals asked for.
    std::chrono::nanoseconds total() const {
        std::lock_guard lock{m_record->mutex};
        std::chrono::nanoseconds sum{};
        for (auto d : m_record->sleeps) {
            sum += d;
        }
        return sum;
    }

    /// Forgets the recorded intervals.
    void clear() {
        std::lock_guard lock{m_record->mutex};
        m_record->sleeps.clear();
    }

    /// Returns the clock this sleeper advances.
    manual_clock const& clock() const noexcept { return m_clock; }

private:
    struct record {
        mutable std::mutex mutex;
        std::vector<std::chrono::nanoseconds> sleeps;
    };
    manual_clock m_clock;
    std::shared_ptr<record> m_record;
};

static_assert(sleeper<virtual_sleeper>);

KEEL_END_NAMESPACE
