// SPDX-License-Identifier: MIT
#include <keel/redis/pool.hpp>

#include "redis_server.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("redis::pool: size 0 uses default_pool_size", "[redis]") {
    keel::redis::pool p{{}};
    CHECK(p.size() == keel::redis::default_pool_size());
    CHECK(p.size() >= 2);
    CHECK(p.options().acquire_timeout == p.options().connection.command_timeout);
}

TEST_CASE("redis::pool: size 0 with an expected rate is sized by Erlang C", "[redis]") {
    // 20 000 decisions/s x 100 us = 2 Erlangs: 7 connections make at most 1 % wait.
    keel::redis::pool p{{.expected_rate = 20'000.0}};
    CHECK(p.size() == keel::ops::min_pool_for_wait_probability(20'000.0, 100us, 0.01));
    CHECK(p.size() == 7);
    CHECK(keel::redis::pool::sized({.expected_rate = 10.0}) == 2);
    CHECK(keel::redis::pool::sized({.expected_rate = 1e12}) == 1024);
    CHECK_THROWS_AS(keel::redis::pool({.expected_rate = -1.0}), std::invalid_argument);
}

TEST_CASE("redis::pool: hands out at most size connections and reuses returned ones", "[redis]") {
    keel::redis::pool p{{.connection = {.port = keel_test::shared_redis_port()},
                         .size = 2,
                         .acquire_timeout = 5ms}};
    auto a = p.acquire();
    auto b = p.acquire();
    REQUIRE(a);
    REQUIRE(b);
    auto const start = std::chrono::steady_clock::now();
    auto c = p.acquire();
    CHECK_FALSE(c);
    CHECK(std::chrono::steady_clock::now() - start >= 5ms);
    keel::redis::connection* const first = &*a;
    a = {};
    auto d = p.acquire();
    REQUIRE(d);
    CHECK(&*d == first);
}

TEST_CASE("redis::pool: threads share a small pool", "[redis][concurrency]") {
    keel::redis::pool p{keel_test::shared_pool(2)};
    std::atomic<int> pongs{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 50; ++i) {
                if (auto lease = p.acquire()) {
                    auto r = lease->command({"PING"});
                    if (r && r->text() == "PONG") {
                        pongs.fetch_add(1);
                    }
                }
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(pongs.load() == 200);
}

TEST_CASE("redis::pool: options out of range are rejected", "[redis]") {
    CHECK_THROWS_WITH(keel::redis::pool({.size = 2000}),
                      "keel::redis::pool: size must be in [0, 1024], got 2000");
    CHECK_THROWS_AS(keel::redis::pool({.connection = {.port = 70000}}), std::invalid_argument);
    CHECK_THROWS_WITH(keel::redis::pool({.connection = {.port = 70000}}),
                      "keel::redis::pool: connection.port must be in [1, 65535], got 70000");
}
