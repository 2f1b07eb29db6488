// SPDX-License-Identifier: MIT
#include <keel/limiter/limiter.hpp>

#include <keel/core/random.hpp>
#include <keel/limiter/fixed_window.hpp>
#include <keel/limiter/gcra.hpp>
#include <keel/limiter/keyed.hpp>
#include <keel/limiter/sliding_counter.hpp>
#include <keel/limiter/sliding_log.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel::manual_clock;

namespace {

// A user's own one-word limiter: at most `total` permits, ever. It meets
// keel::word_limiter, so keel::keyed can hold one per key.
class lifetime_quota {
public:
    using clock_type = manual_clock;
    using time_point = manual_clock::time_point;
    struct options {
        std::int64_t total = 0;
    };
    static constexpr std::uint64_t fresh_state = 0;

    explicit lifetime_quota(options const& o, manual_clock clock = manual_clock{})
        : m_total(o.total), m_clock(clock) {}

    keel::decision try_acquire(std::int64_t permits = 1) {
        return try_acquire(permits, m_clock.now());
    }
    keel::decision try_acquire(std::int64_t permits, time_point now) {
        return keel::detail::acquire_word(*this, m_state, permits, keel::detail::to_ns(now));
    }
    keel::limiter_step step(std::uint64_t word, std::int64_t permits, std::int64_t) const noexcept {
        if (permits > m_total) {
            return {keel::detail::unsatisfiable(m_total)};
        }
        auto const used = static_cast<std::int64_t>(word);
        keel::decision d;
        d.limit = m_total;
        if (used + permits > m_total) {
            d.remaining = m_total - used;
            return {d};
        }
        d.allowed = true;
        d.remaining = m_total - used - permits;
        if (permits == 0) {
            return {d};
        }
        return {d, static_cast<std::uint64_t>(used + permits), true};
    }
    manual_clock const& clock() const noexcept { return m_clock; }
    std::int64_t rest_after(std::uint64_t word, std::int64_t) const noexcept {
        return word == fresh_state ? 0 : std::numeric_limits<std::int64_t>::max();
    }

private:
    std::atomic<std::uint64_t> m_state{fresh_state};
    std::int64_t m_total;
    manual_clock m_clock;
};

// Decides from one word but has no clock() to read the time from: not a word_limiter.
class no_clock : public lifetime_quota {
public:
    using lifetime_quota::lifetime_quota;
    void clock() const = delete;
};

struct not_a_limiter { // no try_acquire(permits, now)
    using clock_type = manual_clock;
    using time_point = manual_clock::time_point;
    keel::decision try_acquire(std::int64_t = 1);
};

} // namespace

static_assert(keel::rate_limiter<keel::fixed_window<>>);
static_assert(keel::rate_limiter<keel::sliding_log<>>);
static_assert(keel::rate_limiter<keel::sliding_counter<keel::coarse_clock>>);
static_assert(keel::rate_limiter<keel::token_bucket<manual_clock>>);
static_assert(keel::rate_limiter<keel::gcra<>>);
static_assert(keel::word_limiter<keel::fixed_window<>>);
static_assert(keel::word_limiter<keel::sliding_counter<>>);
static_assert(keel::word_limiter<keel::token_bucket<>>);
static_assert(keel::word_limiter<keel::gcra<>>);
static_assert(!keel::word_limiter<keel::sliding_log<>>); // a ring, not one word
static_assert(keel::word_limiter<lifetime_quota>);
static_assert(!keel::rate_limiter<not_a_limiter>);
static_assert(keel::rate_limiter<no_clock> && !keel::word_limiter<no_clock>);

TEST_CASE("a user's word_limiter decides through acquire_word and works in keel::keyed",
          "[limiter]") {
    manual_clock clock;
    lifetime_quota q{{.total = 3}, clock};
    CHECK(q.try_acquire(2).remaining == 1);
    CHECK(q.try_acquire(0).allowed); // a peek
    CHECK_FALSE(q.try_acquire(2).allowed);
    CHECK(q.try_acquire().allowed);
    CHECK(q.try_acquire(4).unsatisfiable);

    keel::keyed<lifetime_quota, int> per_user{{.total = 2}, {}, clock};
    CHECK(per_user.try_acquire(1).allowed);
    CHECK(per_user.try_acquire(1).allowed);
    CHECK_FALSE(per_user.try_acquire(1).allowed);
    CHECK(per_user.try_acquire(2, 2).allowed); // another key, its own quota
    CHECK(per_user.size() == 2);
}

TEST_CASE("acquire_word never grants more than the word allows across threads",
          "[limiter][concurrency]") {
    lifetime_quota q{{.total = 10'000}, manual_clock{}};
    std::atomic<std::int64_t> granted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 5'000; ++i) {
                if (q.try_acquire().allowed) {
                    granted.fetch_add(1, std::memory_order_relaxed);
                }
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(granted.load() == 10'000);
}

TEST_CASE("limiter helpers: rate parameters", "[limiter]") {
    auto const p = keel::detail::make_rate_params("keel::token_bucket", 3, 1s, 0);
    CHECK(p.burst == 3);              // 0 means the same as the rate
    CHECK(p.interval == 333'333'334); // rounded up: the rate is never exceeded
    CHECK(p.span == 3 * 333'333'334);
    CHECK_THROWS_WITH(keel::detail::make_rate_params("keel::token_bucket", 2'000'000'000, 1s, 0),
                      "keel::token_bucket: rate must be in [1, period in ns], got 2000000000");
    CHECK_THROWS_AS(keel::detail::make_rate_params("keel::token_bucket", 0, 1s, 0),
                    std::invalid_argument);
    CHECK_THROWS_AS(keel::detail::make_rate_params("keel::token_bucket", 1, 1s, -1),
                    std::invalid_argument);
}
