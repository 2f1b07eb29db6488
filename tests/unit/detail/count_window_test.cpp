// SPDX-License-Identifier: MIT
#include <keel/detail/count_window.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

using keel::detail::count_window;

TEST_CASE("count_window: holds the last N outcomes and evicts the oldest", "[count_window]") {
    count_window w{3};
    w.reset_locked(1);
    CHECK(w.record(1, true, false)->failures == 1);
    w.record(1, false, true);
    auto t = w.record(1, false, false);
    REQUIRE(t);
    CHECK(t->calls == 3);
    CHECK(t->failures == 1);
    CHECK(t->slow == 1);
    t = w.record(1, false, false); // evicts the failure
    CHECK(t->calls == 3);
    CHECK(t->failures == 0);
    CHECK(t->slow == 1);
    w.record(1, false, false); // evicts the slow call
    CHECK(w.read().slow == 0);
}

TEST_CASE("count_window: an outcome of another generation touches nothing", "[count_window]") {
    count_window w{4};
    w.reset_locked(7);
    w.record(7, true, true);
    CHECK_FALSE(w.record(6, true, true).has_value());
    w.reset_locked(8);
    CHECK_FALSE(w.record(7, true, true).has_value());
    CHECK(w.read().calls == 0);
    CHECK(w.record(8, false, false)->calls == 1);
}

TEST_CASE("count_window: concurrent recorders leave counts equal to the ring",
          "[count_window][concurrency]") {
    count_window w{64};
    w.reset_locked(1);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&w, t] {
            for (int i = 0; i < 20000; ++i) {
                w.record(1, (i + t) % 3 == 0, (i + t) % 5 == 0);
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    auto const t = w.read();
    CHECK(t.calls == 64);
    CHECK(t.failures <= 64);
    for (int i = 0; i < 64; ++i) {
        w.record(1, false, false); // evicts everything: any lost or leaked count would remain
    }
    CHECK(w.read().failures == 0);
    CHECK(w.read().slow == 0);
    CHECK(w.read().calls == 64);
}
