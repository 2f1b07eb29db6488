// SPDX-License-Identifier: MIT
#include <keel/detail/epoch_ring.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <optional>
#include <thread>
#include <vector>

namespace {

using ring = keel::detail::epoch_ring<22>;

std::optional<std::uint64_t> add_one(std::uint64_t payload, std::int64_t) {
    return payload + 1;
}

std::uint64_t total(ring const& r, std::int64_t now) {
    std::uint64_t sum = 0;
    r.read(now, [&sum](std::uint64_t payload, std::int64_t) { sum += payload; });
    return sum;
}

} // namespace

TEST_CASE("epoch_ring: counts each epoch in its bucket and reads the last size epochs",
          "[epoch_ring]") {
    ring r{3};
    CHECK(r.latest() == -1);
    CHECK(total(r, 0) == 0);
    for (std::int64_t e = 0; e < 5; ++e) {
        for (std::int64_t i = 0; i <= e; ++i) {
            CHECK(r.update(e, add_one) == e);
        }
    }
    CHECK(r.latest() == 4);
    CHECK(total(r, 4) == 3 + 4 + 5);
    std::vector<std::int64_t> seen;
    CHECK(r.read(6, [&seen](std::uint64_t, std::int64_t e) { seen.push_back(e); }) == 6);
    CHECK(seen == std::vector<std::int64_t>{4}); // 5 and 6 are empty, 3 has left
    CHECK(total(r, 7) == 0);
}

TEST_CASE("epoch_ring: a late writer counts at the latest epoch and erases nothing",
          "[epoch_ring]") {
    ring r{3};
    REQUIRE(r.update(10, add_one) == 10);
    REQUIRE(r.update(10, add_one) == 10);
    // 7 and 10 share a bucket: a late 7 must not replace 10's count.
    CHECK(r.update(7, add_one) == 10);
    CHECK(r.update(9, add_one) == 10);
    CHECK(total(r, 10) == 4);
    CHECK(total(r, 2) == 4); // a reader behind the latest epoch reads at it
    CHECK(r.latest() == 10);
}

TEST_CASE("epoch_ring: reset empties the ring and follows earlier epochs again", "[epoch_ring]") {
    ring r{4};
    r.update(100, add_one);
    r.reset();
    CHECK(r.latest() == -1);
    CHECK(total(r, 100) == 0);
    CHECK(r.update(5, add_one) == 5);
    CHECK(total(r, 5) == 1);
    CHECK(total(r, 9) == 0);
}

TEST_CASE("epoch_ring: a step sees its epoch's payload, 0 for a stale bucket, and may decline",
          "[epoch_ring]") {
    ring r{2};
    r.update(1, [](std::uint64_t p, std::int64_t) { return std::optional<std::uint64_t>{p + 5}; });
    std::uint64_t seen = 99;
    r.update(3, [&seen](std::uint64_t p, std::int64_t at) {
        seen = p;
        CHECK(at == 3);
        return std::optional<std::uint64_t>{p + 1};
    });
    CHECK(seen == 0); // bucket 1 held epoch 1, out of the window ending at 3
    auto const declined =
        r.update(3, [](std::uint64_t, std::int64_t) { return std::optional<std::uint64_t>{}; });
    CHECK_FALSE(declined.has_value());
    CHECK(total(r, 3) == 1);
}

TEST_CASE("epoch_ring: amend changes a bucket only while it holds the epoch", "[epoch_ring]") {
    ring r{2};
    r.update(4, add_one);
    r.update(4, add_one);
    auto const minus_one = [](std::uint64_t p, std::int64_t) {
        return std::optional<std::uint64_t>{p - 1};
    };
    CHECK(r.amend(4, minus_one));
    CHECK(total(r, 4) == 1);
    r.update(6, add_one); // bucket 0 now holds 6
    CHECK_FALSE(r.amend(4, minus_one));
    CHECK(total(r, 6) == 1);
}

TEST_CASE("epoch_ring: replaces a bucket whose stamp wrapped around", "[epoch_ring]") {
    ring r{3};
    r.update(3, add_one);                                   // bucket 0, stamp 3
    std::int64_t const later = (std::int64_t{1} << 22) + 2; // bucket 0, stamp 2: looks older
    CHECK(r.update(later, add_one) == later);
    CHECK(total(r, later) == 1);
}

TEST_CASE("epoch_ring: concurrent writers, some late, conserve every count while the epoch "
          "advances",
          "[epoch_ring][concurrency]") {
    // 64 buckets and epochs up to 40: nothing leaves the window, so every update
    // must be in it at the end, late or not.
    ring r{64};
    std::atomic<std::int64_t> epoch{0};
    std::atomic<bool> done{false};
    int const threads = 4;
    int const per_thread = 20000;
    std::thread advancer([&] {
        while (!done.load()) {
            if (epoch.load() < 40) {
                epoch.fetch_add(1);
            }
            std::this_thread::yield();
        }
    });
    std::vector<std::thread> writers;
    for (int t = 0; t < threads; ++t) {
        writers.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                std::int64_t const e = epoch.load() - (i + t) % 3; // late by up to 2 epochs
                r.update(e < 0 ? 0 : e, add_one);
            }
        });
    }
    for (auto& w : writers) {
        w.join();
    }
    done.store(true);
    advancer.join();
    CHECK(total(r, r.latest()) == std::uint64_t{threads} * per_thread);
}

TEST_CASE("epoch_ring: a bounded step is exact against concurrent writers of its epoch",
          "[epoch_ring][concurrency]") {
    ring r{8};
    std::atomic<int> granted{0};
    std::vector<std::thread> writers;
    for (int t = 0; t < 4; ++t) {
        writers.emplace_back([&] {
            for (int i = 0; i < 5000; ++i) {
                auto const at = r.update(3, [](std::uint64_t p, std::int64_t) {
                    return p < 1000 ? std::optional<std::uint64_t>{p + 1} : std::nullopt;
                });
                granted.fetch_add(at ? 1 : 0);
            }
        });
    }
    for (auto& w : writers) {
        w.join();
    }
    CHECK(granted.load() == 1000);
    CHECK(total(r, 3) == 1000);
}
