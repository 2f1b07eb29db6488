// SPDX-License-Identifier: MIT
#include <keel/policy/detail/codel_queue.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

using keel::detail::codel;
using keel::detail::codel_queue;
using keel::detail::limit_waiter;

namespace {
constexpr std::int64_t ms = 1'000'000;
} // namespace

TEST_CASE("codel: overload is a minimum delay above target over an interval (folly::Codel)",
          "[adaptive_limit]") {
    codel c{5 * ms, 100 * ms};
    CHECK_FALSE(c.overloaded(20 * ms, 0)); // the first request of an interval only resets
    CHECK_FALSE(c.overloaded(30 * ms, 50 * ms));
    CHECK_FALSE(c.is_overloaded());
    // the next interval starts: the minimum of the last one (20 ms) exceeded 5 ms
    CHECK_FALSE(c.overloaded(30 * ms, 101 * ms));
    CHECK(c.is_overloaded());
    CHECK(c.overloaded(11 * ms, 150 * ms));       // above the slough timeout, 2 x target
    CHECK_FALSE(c.overloaded(10 * ms, 160 * ms)); // not above it
    // the minimum of that interval was 10 ms: still overloaded; then a calm interval
    CHECK_FALSE(c.overloaded(1 * ms, 202 * ms));
    CHECK(c.is_overloaded());
    CHECK_FALSE(c.overloaded(1 * ms, 303 * ms));
    CHECK_FALSE(c.is_overloaded());
}

TEST_CASE("codel_queue: FIFO while calm, LIFO once overloaded, expiring stale waiters",
          "[adaptive_limit]") {
    codel_queue q{5 * ms, 100 * ms};
    std::vector<limit_waiter> w(4);
    std::vector<int> woken;
    for (int i = 0; i < 4; ++i) {
        w[static_cast<std::size_t>(i)].context = &woken;
        w[static_cast<std::size_t>(i)].partition = static_cast<std::size_t>(i);
        w[static_cast<std::size_t>(i)].wake = [](limit_waiter& self) noexcept {
            static_cast<std::vector<int>*>(self.context)
                ->push_back(static_cast<int>(self.partition));
        };
    }
    int slots = 1;
    auto take = [&] { return slots > 0 ? slots-- : 0; };
    auto give_back = [&] { ++slots; };
    q.push_locked(w[0], 0);
    q.push_locked(w[1], 1 * ms);
    q.dispatch_locked(30 * ms, take, give_back); // calm: the oldest gets the slot
    CHECK(woken == std::vector<int>{0});
    CHECK(w[0].status == limit_waiter::state::granted);
    // A new interval: the last one's minimum (30 ms) exceeded 5 ms, so it is overloaded, but
    // the first request of an interval only resets the minimum: w[1] is served.
    slots = 1;
    q.dispatch_locked(131 * ms, take, give_back);
    CHECK(q.overloaded());
    CHECK(woken == std::vector<int>{0, 1});
    // Overloaded: the newest waiter is served first (adaptive LIFO).
    q.push_locked(w[2], 125 * ms);
    q.push_locked(w[3], 129 * ms);
    slots = 1;
    q.dispatch_locked(132 * ms, take, give_back);
    CHECK(woken == std::vector<int>{0, 1, 3});
    CHECK(w[3].status == limit_waiter::state::granted);
    // w[2] has waited 15 ms > 2 x target: expired, and the slot stays free.
    slots = 1;
    q.dispatch_locked(140 * ms, take, give_back);
    CHECK(woken == std::vector<int>{0, 1, 3, 2});
    CHECK(w[2].status == limit_waiter::state::expired);
    CHECK(q.empty());
    CHECK(slots == 1);
}

TEST_CASE("codel_queue: a slot taken for a waiter CoDel expires goes to the next or back",
          "[adaptive_limit]") {
    codel_queue q{5 * ms, 100 * ms};
    limit_waiter a;
    limit_waiter b;
    limit_waiter c;
    int slots = 1;
    auto take = [&] { return slots > 0 ? slots-- : 0; };
    auto give_back = [&] { ++slots; };
    q.push_locked(a, 0);
    q.dispatch_locked(50 * ms, take, give_back); // an interval starts; its minimum is 50 ms
    CHECK(a.status == limit_waiter::state::granted);
    q.push_locked(b, 100 * ms);
    q.push_locked(c, 101 * ms);
    slots = 2;
    q.dispatch_locked(160 * ms, take, give_back);
    CHECK(b.status == limit_waiter::state::granted); // first of the new (overloaded) interval
    CHECK(c.status == limit_waiter::state::expired); // 59 ms > 10 ms under overload
    CHECK(slots == 1);
    CHECK(q.empty());
}
