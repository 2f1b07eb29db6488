// SPDX-License-Identifier: MIT
#include <keel/ops/pool_sizing.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>

using namespace std::chrono_literals;
namespace ops = keel::ops;

namespace {

// Erlang C straight from its textbook definition, with factorials and powers in long
// double: independent of the library's Erlang B recursion. Good for small pools only.
long double erlang_c_by_factorials(int c, long double a) {
    long double sum = 0;
    long double term = 1; // a^k / k!
    for (int k = 0; k < c; ++k) {
        sum += term;
        term *= a / static_cast<long double>(k + 1);
    }
    long double const top = term * c / (c - a); // a^c / c! * c / (c - a)
    return top / (sum + top);
}

// Erlang C in log space with lgamma, normalised by the largest term: a second independent
// route that stays finite for pools of hundreds.
long double erlang_c_by_logs(int c, long double a) {
    auto log_term = [&](int k) { return k * std::log(a) - std::lgamma(k + 1.0L); };
    long double const log_top = log_term(c) + std::log(c / (c - a));
    long double max_log = log_top;
    for (int k = 0; k < c; ++k) {
        max_log = std::max(max_log, log_term(k));
    }
    long double sum = 0;
    for (int k = 0; k < c; ++k) {
        sum += std::exp(log_term(k) - max_log);
    }
    long double const top = std::exp(log_top - max_log);
    return top / (sum + top);
}

} // namespace

TEST_CASE("littles_law gives the article's 100 req/s x 50 ms = 5 connections", "[pool_sizing]") {
    static_assert(ops::littles_law(100.0, 50ms) == 5.0);
    static_assert(ops::offered_load(100.0, 50ms) == 5.0);
    CHECK(ops::littles_law(0.0, 1s) == 0.0);
    CHECK(ops::littles_law(2000.0, 250us) == Approx(0.5));
    CHECK_THROWS_AS(ops::littles_law(-1.0, 1s), std::invalid_argument);
    CHECK_THROWS_AS(ops::littles_law(1.0, -1ms), std::invalid_argument);
}

TEST_CASE("recommended_pool_size applies headroom and rounds up", "[pool_sizing]") {
    static_assert(ops::recommended_pool_size(100.0, 50ms) == 15); // the article: 5 x 3
    static_assert(ops::recommended_pool_size(100.0, 50ms, 2.0) == 10);
    static_assert(ops::recommended_pool_size(100.0, 51ms, 1.0) == 6); // 5.1 -> 6
    static_assert(ops::recommended_pool_size(0.0, 50ms) == 0);
    CHECK(ops::recommended_pool_size(30.0, 100ms) == 9); // 3 x 3, despite 0.1 in binary
    CHECK_THROWS_WITH(ops::recommended_pool_size(100.0, 50ms, 0.5),
                      "keel::ops::recommended_pool_size: headroom must be >= 1, got 0.5");
}

TEST_CASE("erlang_b matches the definition by factorials", "[pool_sizing]") {
    // B(c, a) = (a^c / c!) / sum_{k<=c} a^k / k!
    auto direct = [](int c, long double a) {
        long double sum = 0, term = 1;
        for (int k = 0; k <= c; ++k) {
            sum += term;
            if (k < c) {
                term *= a / (k + 1);
            }
        }
        return static_cast<double>(term / sum);
    };
    for (int c : {1, 2, 5, 10, 20}) {
        for (double a : {0.5, 2.0, 5.0, 12.5}) {
            CHECK(ops::erlang_b(static_cast<std::size_t>(c), a) ==
                  Approx(direct(c, a)).epsilon(1e-12));
        }
    }
    static_assert(ops::erlang_b(0, 3.0) == 1.0);
    static_assert(ops::erlang_b(1, 1.0) == 0.5);
}

TEST_CASE("erlang_c matches textbook values and the operations reference table", "[pool_sizing]") {
    // Textbook M/M/c: a = 2 Erlangs on 3 servers waits with probability 4/9; M/M/2 at 50%
    // utilisation with 1/3.
    CHECK(ops::erlang_c(3, 2.0) == Approx(4.0 / 9.0).epsilon(1e-12));
    CHECK(ops::erlang_c(2, 1.0) == Approx(1.0 / 3.0).epsilon(1e-12));
    CHECK(ops::erlang_c(1, 0.5) == Approx(0.5).epsilon(1e-12)); // M/M/1: P(wait) = rho

    // The article's example, a = 5 (100 req/s x 50 ms): the reference's worked table.
    CHECK(ops::erlang_c(6, 5.0) == Approx(0.588).margin(0.0005));
    CHECK(ops::erlang_c(7, 5.0) == Approx(0.324).margin(0.0005));
    CHECK(ops::erlang_c(8, 5.0) == Approx(0.167).margin(0.0005));
    CHECK(ops::erlang_c(9, 5.0) == Approx(0.081).margin(0.0005));
    CHECK(ops::erlang_c(10, 5.0) == Approx(0.036).margin(0.0005));
    CHECK(ops::erlang_c(12, 5.0) == Approx(0.0059).margin(0.00005));
    CHECK(ops::erlang_c(15, 5.0) == Approx(0.0002).margin(0.00005));

    // Unstable queues: everyone waits.
    CHECK(ops::erlang_c(5, 5.0) == 1.0);
    CHECK(ops::erlang_c(3, 7.5) == 1.0);
    CHECK(ops::erlang_c(0, 0.0) == 1.0);
    static_assert(ops::erlang_c(3, 2.0) > 0.44 && ops::erlang_c(3, 2.0) < 0.45);
}

TEST_CASE("erlang_c agrees with the factorial sum for small pools", "[pool_sizing]") {
    for (int c = 1; c <= 40; ++c) {
        for (double utilisation : {0.1, 0.5, 0.8, 0.95}) {
            double const a = utilisation * c;
            INFO("c = " << c << ", a = " << a);
            CHECK(ops::erlang_c(static_cast<std::size_t>(c), a) ==
                  Approx(static_cast<double>(erlang_c_by_factorials(c, a))).epsilon(1e-10));
        }
    }
}

TEST_CASE("erlang_c stays accurate for pools of hundreds", "[pool_sizing]") {
    // a^c / c! overflows double long before c = 500 (5^500 alone is ~1e349): only the
    // recursion (or logs) survives.
    for (int c : {100, 250, 500, 1000}) {
        for (double utilisation : {0.7, 0.9, 0.98}) {
            double const a = utilisation * c;
            double const p = ops::erlang_c(static_cast<std::size_t>(c), a);
            INFO("c = " << c << ", a = " << a);
            REQUIRE(std::isfinite(p));
            CHECK(p == Approx(static_cast<double>(erlang_c_by_logs(c, a))).epsilon(1e-9));
        }
    }
}

TEST_CASE("mean_wait and wait_quantile match the reference table for a = 5", "[pool_sizing]") {
    using ms = std::chrono::duration<double, std::milli>;
    CHECK(ms{ops::mean_wait(6, 100.0, 50ms)}.count() == Approx(29.4).margin(0.05));
    CHECK(ms{ops::mean_wait(7, 100.0, 50ms)}.count() == Approx(8.1).margin(0.05));
    CHECK(ms{ops::mean_wait(8, 100.0, 50ms)}.count() == Approx(2.8).margin(0.05));
    CHECK(ms{ops::mean_wait(10, 100.0, 50ms)}.count() == Approx(0.36).margin(0.005));
    CHECK(std::isinf(ops::mean_wait(5, 100.0, 50ms).count()));

    CHECK(ms{ops::wait_quantile(6, 100.0, 50ms, 0.99)}.count() == Approx(204).margin(0.5));
    CHECK(ms{ops::wait_quantile(7, 100.0, 50ms, 0.99)}.count() == Approx(87).margin(0.5));
    CHECK(ms{ops::wait_quantile(8, 100.0, 50ms, 0.99)}.count() == Approx(47).margin(0.5));
    CHECK(ms{ops::wait_quantile(9, 100.0, 50ms, 0.99)}.count() == Approx(26).margin(0.5));
    CHECK(ms{ops::wait_quantile(10, 100.0, 50ms, 0.99)}.count() == Approx(12.8).margin(0.05));
    CHECK(ops::wait_quantile(12, 100.0, 50ms, 0.99).count() == 0.0); // 0.59% wait at all
    CHECK(std::isinf(ops::wait_quantile(4, 100.0, 50ms, 0.5).count()));
    CHECK_THROWS_WITH(ops::wait_quantile(10, 100.0, 50ms, 1.0),
                      "keel::ops::wait_quantile: quantile must be in [0, 1), got 1.0");

    // Hand-computed M/M/1: lambda = 5/s, S = 100 ms: rho = 0.5, E[Wq] = rho S / (1 - rho).
    CHECK(ms{ops::mean_wait(1, 5.0, 100ms)}.count() == Approx(100.0));
    // P(Wq > t) = rho e^{-(mu - lambda) t}: the median wait is ln(0.5 / 0.5) = 0.
    CHECK(ops::wait_quantile(1, 5.0, 100ms, 0.5).count() == 0.0);
    CHECK(ms{ops::wait_quantile(1, 5.0, 100ms, 0.9)}.count() ==
          Approx(1000.0 / 5.0 * std::log(5.0)));
}

TEST_CASE("min_pool_for_* find the smallest pool meeting a target", "[pool_sizing]") {
    static_assert(ops::min_pool_for_wait_probability(100.0, 50ms, 0.05) == 10);
    static_assert(ops::min_pool_for_wait_probability(100.0, 50ms, 0.0360) == 11);
    CHECK(ops::min_pool_for_wait_probability(100.0, 50ms, 0.01) == 12);
    CHECK(ops::min_pool_for_wait_probability(100.0, 50ms, 1.0) == 6); // stable at all
    CHECK(ops::min_pool_for_wait_probability(0.0, 50ms, 0.01) == 0);

    static_assert(ops::min_pool_for_mean_wait(100.0, 50ms, 3ms) == 8);  // 2.8 ms
    static_assert(ops::min_pool_for_mean_wait(100.0, 50ms, 30ms) == 6); // 29.4 ms
    CHECK(ops::min_pool_for_mean_wait(100.0, 50ms, 0ms) > 15);

    CHECK(ops::min_pool_for_wait_quantile(100.0, 50ms, 0.99, 50ms) == 8);  // 47 ms
    CHECK(ops::min_pool_for_wait_quantile(100.0, 50ms, 0.99, 10ms) == 11); // 12.8 ms at 10
    CHECK(ops::min_pool_for_wait_quantile(100.0, 50ms, 0.99, 0ms) == 12);  // 0.59% wait

    // Each answer is minimal: one fewer misses the target.
    for (double target : {0.5, 0.2, 0.05, 0.01, 0.001}) {
        for (double a : {0.3, 5.0, 42.0, 400.0}) {
            auto const c = ops::min_pool_for_wait_probability(a, 1s, target);
            INFO("a = " << a << ", target = " << target);
            CHECK(ops::erlang_c(c, a) <= target);
            CHECK((static_cast<double>(c - 1) <= a || ops::erlang_c(c - 1, a) > target));
        }
    }
    // Square-root staffing for a large pool: a = 400 needs about a + beta sqrt(a).
    auto const big = ops::min_pool_for_wait_probability(400.0, 1s, 0.05);
    CHECK(big > 420);
    CHECK(big < 450);
    CHECK_THROWS_AS(ops::min_pool_for_wait_probability(100.0, 50ms, 0.0), std::invalid_argument);
}

TEST_CASE("hikari_pool_size and deadlock_free_pool_size follow HikariCP's examples",
          "[pool_sizing]") {
    static_assert(ops::hikari_pool_size(4, 1) == 9); // "call it 10"
    static_assert(ops::hikari_pool_size(8) == 16);
    static_assert(ops::deadlock_free_pool_size(3, 4) == 10);
    static_assert(ops::deadlock_free_pool_size(8, 1) == 1);
    static_assert(ops::deadlock_free_pool_size(0, 4) == 0);
}

TEST_CASE("connection_setup_cost reproduces the article's 3.5 RTT x 20 ms = 70 ms",
          "[pool_sizing]") {
    using ms = std::chrono::duration<double, std::milli>;
    static_assert(ops::handshake_round_trips(ops::transport::tcp_tls12) == 3.5);
    static_assert(ops::handshake_round_trips(ops::transport::tcp) == 1.5);
    static_assert(ops::handshake_round_trips(ops::transport::tcp_tls13) == 2.5);
    CHECK(ms{ops::connection_setup_cost(20ms)}.count() == Approx(70.0));
    CHECK(ms{ops::connection_setup_cost(20ms, ops::transport::tcp)}.count() == Approx(30.0));
    // First response byte: 2, 4 and 3 round trips (40, 80, 60 ms at 20 ms).
    static_assert(ops::round_trips_to_first_byte(ops::transport::tcp) == 2.0);
    static_assert(ops::round_trips_to_first_byte(ops::transport::tcp_tls12) == 4.0);
    static_assert(ops::round_trips_to_first_byte(ops::transport::tcp_tls13) == 3.0);
    // "If your query takes 5 ms, the connection overhead can be ~14x the query time."
    CHECK(ops::connection_overhead_ratio(20ms, 5ms) == Approx(14.0));
    CHECK(std::isinf(ops::connection_overhead_ratio(20ms, 0ms)));
    CHECK_THROWS_AS(ops::connection_setup_cost(-1ms), std::invalid_argument);
}
