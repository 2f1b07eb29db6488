// SPDX-License-Identifier: MIT
#include <keel/policy/detail/sample_window.hpp>

#include <keel/policy/adaptive/aimd.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel::detail::sample_window;

TEST_CASE(
    "sample_window: take() returns count, mean, minimum, in-flight peak and drop, then empties",
    "[adaptive_limit]") {
    sample_window w;
    w.add(10'000'000, 3);
    w.add(20'000'000, 7);
    w.add_dropped(9);
    CHECK(w.count() == 2);
    auto const s = w.take();
    CHECK(s.count == 2);
    CHECK(s.average() == 15ms);
    CHECK(s.min_rtt_ns == 10'000'000);
    CHECK(s.max_in_flight == 9);
    CHECK(s.dropped);
    auto const empty = w.take();
    CHECK(empty.count == 0);
    CHECK(empty.min_rtt_ns == 0);
    CHECK_FALSE(empty.dropped);
    CHECK(empty.average() == 0ns);
}

TEST_CASE("sample_window: buckets keep two significant decimal digits of microseconds",
          "[adaptive_limit]") {
    CHECK(sample_window::bucket_of(0) == 0);
    CHECK(sample_window::bucket_of(99) == 99);
    CHECK(sample_window::bucket_of(100) == 100);
    CHECK(sample_window::bucket_of(109) == 100);
    CHECK(sample_window::bucket_of(110) == 101);
    CHECK(sample_window::bucket_of(999) == 189);
    CHECK(sample_window::bucket_of(1000) == 190);
    CHECK(sample_window::lower_us(sample_window::bucket_of(5099)) == 5000);
    CHECK(sample_window::lower_us(sample_window::bucket_of(13'000)) == 13'000);
    CHECK(sample_window::lower_us(sample_window::bucket_of(999'999)) == 990'000);
    std::uint64_t const top = (std::uint64_t{1} << 41) - 1;
    CHECK(sample_window::bucket_of(top) < sample_window::buckets);
    for (std::uint64_t us : {1ULL, 57ULL, 100ULL, 1234ULL, 98'765ULL, 4'000'000'000ULL}) {
        auto const lower = sample_window::lower_us(sample_window::bucket_of(us));
        CHECK(static_cast<std::uint64_t>(lower) <= us);
        CHECK(static_cast<double>(us - static_cast<std::uint64_t>(lower)) <=
              0.1 * static_cast<double>(us));
    }
}

TEST_CASE("sample_window: the percentile interpolates inside the bucket holding rank p x count",
          "[adaptive_limit]") {
    sample_window w{0.5};
    for (int ms = 1; ms <= 5; ++ms) {
        w.add(ms * 1'000'000, 1);
    }
    CHECK(w.take().percentile_ns == 3'050'000); // [3.0, 3.1) ms holds rank 2.5 of 5
    sample_window p90{0.9};
    for (int ms = 1; ms <= 10; ++ms) {
        p90.add(ms * 1'000'000, 1);
    }
    CHECK(p90.take().percentile_ns == 9'100'000);
}

TEST_CASE("sample_window: concurrent adds are all counted", "[adaptive_limit][concurrency]") {
    sample_window w{0.5};
    constexpr int threads = 4;
    constexpr int per_thread = 20'000;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&w, t] {
            for (int i = 0; i < per_thread; ++i) {
                w.add(1'000'000, t + 1);
            }
        });
    }
    for (auto& th : pool) {
        th.join();
    }
    auto const s = w.take();
    CHECK(s.count == threads * per_thread);
    CHECK(s.average() == 1ms);
    CHECK(s.max_in_flight == threads);
    CHECK(s.percentile_ns == 1'050'000);
}

TEST_CASE("netflix_window: closes only past its end with more than window_size samples",
          "[adaptive_limit]") {
    keel::detail::netflix_window<keel::aimd_limit> nw{keel::aimd_limit{{.initial_limit = 20}},
                                                      {.min_window_ns = 1'000'000'000,
                                                       .max_window_ns = 1'000'000'000,
                                                       .window_size = 10,
                                                       .percentile = false}};
    sample_window w;
    for (int i = 0; i < 10; ++i) {
        w.add(1'000'000, 15);
    }
    nw.check(0, w);
    CHECK(w.count() == 10); // 10 is not more than window_size: stays open
    w.add(1'000'000, 15);
    nw.check(0, w);
    CHECK(w.count() == 0);
    CHECK(nw.limit() == 21);
    // next window ends at now + clamp(2 x 1ms, 1s, 1s)
    CHECK(nw.next_check_ns() == 1'000'000'000);
    for (int i = 0; i < 11; ++i) {
        w.add(1'000'000, 15);
    }
    nw.check(999'999'999, w);
    CHECK(nw.limit() == 21);
    nw.check(1'000'000'000, w);
    CHECK(nw.limit() == 22);
}
