// SPDX-License-Identifier: MIT
#include <keel/redis/fixed_window.hpp>
#include <keel/redis/gcra.hpp>
#include <keel/redis/pool.hpp>

#include "redis_server.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <string>
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

TEST_CASE("redis::pool: auto_pipelining keeps the exact admission sequence", "[redis][pipeline]") {
    keel::redis::pool plain{keel_test::shared_pool(1)};
    auto options = keel_test::shared_pool(1);
    options.auto_pipelining = true;
    keel::redis::pool piped{options};
    std::string const name = keel_test::unique_name("pipe-seq");
    keel::redis::fixed_window a{plain, {.name = name + "-a", .limit = 5, .window = 1h}};
    keel::redis::fixed_window b{piped, {.name = name + "-b", .limit = 5, .window = 1h}};
    for (int i = 0; i < 8; ++i) {
        keel::decision const x = a.try_acquire("k", 2);
        keel::decision const y = b.try_acquire("k", 2);
        CHECK(y.source == keel::decision_source::remote);
        CHECK(x.allowed == y.allowed);
        CHECK(x.remaining == y.remaining);
    }
    CHECK(piped.pipeline_stats().commands >= 8);
    CHECK(piped.pipeline_connects() == 1);
}

TEST_CASE("redis::pool: auto_pipelining batches concurrent callers on one connection and admits "
          "exactly the limit",
          "[redis][pipeline][concurrency]") {
    auto options = keel_test::shared_pool(1);
    options.auto_pipelining = true;
    keel::redis::pool redis{options};
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("pipe-threads"), .limit = 500, .window = 1h}};
    std::uint64_t const loads = keel::redis::fixed_window::lua().loads();
    std::atomic<int> admitted{0};
    std::atomic<int> not_remote{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 16; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 50; ++i) {
                keel::decision const d = limiter.try_acquire();
                admitted += d.allowed ? 1 : 0;
                not_remote += d.source == keel::decision_source::remote ? 0 : 1;
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(not_remote.load() == 0);
    CHECK(admitted.load() == 500);
    auto const stats = redis.pipeline_stats();
    // One command per decision, plus an EVAL after each NOSCRIPT (callers that
    // met a server without the script in the same batch each load it).
    CHECK(stats.commands == 800 + (keel::redis::fixed_window::lua().loads() - loads));
    CHECK(stats.batches < stats.commands); // some batches held several callers
    CHECK(stats.dropped == 0);
    CHECK(redis.pipeline_connects() == 1);
}

TEST_CASE("redis::pool: auto_pipelining on a frozen server: every decision returns within its "
          "timeout, the connection is replaced, and decisions return to Redis after SIGCONT",
          "[redis][pipeline][concurrency]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    auto options = keel_test::private_pool(server.port()); // command timeout 100 ms
    options.size = 1;
    options.auto_pipelining = true;
    keel::redis::pool redis{options};
    keel::redis::fixed_window limiter{
        redis,
        {.name = "frozen",
         .limit = 1'000'000,
         .window = 1h,
         .on_failure = {.breaker_failures = 1000, .breaker_open_for = 50ms}}};
    REQUIRE(limiter.try_acquire().source == keel::decision_source::remote);
    std::atomic<bool> frozen{false};
    std::atomic<bool> stop{false};
    std::atomic<long> slow{0};
    std::atomic<long> fallbacks_while_frozen{0};
    std::atomic<long> remote_after{0};
    std::atomic<bool> thawed{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 16; ++t) {
        threads.emplace_back([&] {
            while (!stop.load()) {
                auto const start = std::chrono::steady_clock::now();
                keel::decision const d = limiter.try_acquire();
                if (std::chrono::steady_clock::now() - start > 100ms + 60ms) {
                    slow += 1;
                }
                if (frozen.load() && d.source != keel::decision_source::remote) {
                    fallbacks_while_frozen += 1;
                }
                if (thawed.load() && d.source == keel::decision_source::remote) {
                    remote_after += 1;
                }
            }
        });
    }
    std::this_thread::sleep_for(30ms);
    frozen = true;
    server.freeze();
    std::this_thread::sleep_for(350ms);
    server.thaw();
    frozen = false;
    std::this_thread::sleep_for(50ms);
    thawed = true;
    for (int i = 0; i < 200 && remote_after.load() < 100; ++i) {
        std::this_thread::sleep_for(5ms);
    }
    stop = true;
    for (auto& t : threads) {
        t.join();
    }
    CHECK(slow.load() == 0);
    CHECK(fallbacks_while_frozen.load() >= 16);
    CHECK(remote_after.load() >= 100);
    CHECK(redis.pipeline_stats().dropped >= 1);
    CHECK(redis.pipeline_connects() >= 2);
}

TEST_CASE("redis::pool: auto_pipelining recovers NOSCRIPT in a batch", "[redis][pipeline]") {
    auto options = keel_test::shared_pool(1);
    options.auto_pipelining = true;
    keel::redis::pool redis{options};
    keel::redis::gcra limiter{redis, {.name = keel_test::unique_name("pipe-noscript"), .rate = 9}};
    REQUIRE(limiter.try_acquire().source == keel::decision_source::remote);
    {
        keel::redis::connection c{keel_test::shared_connection()};
        REQUIRE(c.command({"SCRIPT", "FLUSH"}));
    }
    std::uint64_t const loads = keel::redis::gcra::lua().loads();
    keel::decision const d = limiter.try_acquire();
    CHECK(d.source == keel::decision_source::remote);
    CHECK(d.remaining == 7);
    CHECK(keel::redis::gcra::lua().loads() == loads + 1);
}

TEST_CASE("redis::pool: max_flush_delay out of range is rejected", "[redis][pipeline]") {
    CHECK_THROWS_WITH(keel::redis::pool({.auto_pipelining = true, .max_flush_delay = 2000us}),
                      "keel::redis::pool: max_flush_delay must be in [0 us, 1000 us], got 2ms");
    CHECK_NOTHROW(keel::redis::pool({.auto_pipelining = true, .max_flush_delay = 20us}));
}
