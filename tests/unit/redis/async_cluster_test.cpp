// SPDX-License-Identifier: MIT
// keel::redis::async_cluster against the 3-master Redis Cluster the ctest fixture
// starts (and a private one for the test that kills a master): per-key limits
// spread over the masters decided by coroutines on one io thread, a live
// migration of a busy key (ASK, then MOVED), and a dead master while a heartbeat
// on the same loop shows it never stalls.
#include <keel/asio/limiter.hpp>
#include <keel/redis/async_cluster.hpp>
#include <keel/redis/fixed_window.hpp>
#include <keel/testing/manual_clock.hpp>

#include "redis_cluster.hpp"
#include "redis_server.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel::decision_source;
using keel::asio::awaitable;
using keel::redis::hash_slot;
namespace net = keel::asio::net;
using clock_type = std::chrono::steady_clock;

namespace {

keel::redis::cluster_options options_for(keel_test::redis_cluster const& c) {
    return {
        .seeds = c.seeds(),
        .node = {.connection = {.connect_timeout = 500ms, .command_timeout = 2000ms}, .size = 2}};
}

int port_of(keel::redis::async_cluster& c, std::string const& key) {
    auto const m = c.slots().master_of(key);
    return m ? m->port : 0;
}

/// Gives `slot` to `to` on every node, `to` first (as cluster_test does).
void assign(std::uint16_t slot, int to, int from, keel_test::redis_cluster const& c) {
    std::string const s = std::to_string(slot);
    std::string const to_id = keel_test::node_id(to);
    std::vector<int> order{to, from};
    for (int p : c.ports()) {
        if (p != to && p != from) {
            order.push_back(p);
        }
    }
    for (int p : order) {
        auto r = keel_test::node_command(p, {"CLUSTER", "SETSLOT", s, "NODE", to_id});
        REQUIRE(r);
        CHECK_FALSE(r->is_error());
    }
}

/// Marks `slot` MIGRATING from `from` and IMPORTING on `to`, then MIGRATEs `key`.
void migrate_key(std::uint16_t slot, int from, int to, std::string const& key) {
    std::string const s = std::to_string(slot);
    REQUIRE(keel_test::node_command(
        to, {"CLUSTER", "SETSLOT", s, "IMPORTING", keel_test::node_id(from)}));
    REQUIRE(keel_test::node_command(
        from, {"CLUSTER", "SETSLOT", s, "MIGRATING", keel_test::node_id(to)}));
    auto r = keel_test::node_command(
        from, {"MIGRATE", "127.0.0.1", std::to_string(to), key, "0", "5000", "REPLACE"});
    REQUIRE(r);
    CHECK_FALSE(r->is_error());
}

/// Runs an io_context on a thread of its own until destroyed.
class loop_thread {
public:
    loop_thread() : m_work(net::make_work_guard(io)), m_thread([this] { io.run(); }) {}
    loop_thread(loop_thread const&) = delete;
    loop_thread& operator=(loop_thread const&) = delete;
    ~loop_thread() {
        m_work.reset();
        m_thread.join();
    }
    net::io_context io;

private:
    net::executor_work_guard<net::io_context::executor_type> m_work;
    std::thread m_thread;
};

} // namespace

TEST_CASE("redis::async_cluster: coroutines on one thread decide per-key limits spread over the "
          "three masters, exactly the limit per key, the first ones waiting for the slot map",
          "[redis][cluster][async]") {
    auto const c = keel_test::redis_cluster::shared();
    REQUIRE(c.running());
    net::io_context io;
    keel::redis::async_cluster redis{io.get_executor(), options_for(c)};
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("async-spread"), .limit = 5, .window = 1h}};
    std::map<std::string, int> admitted;
    int not_remote = 0;
    for (int k = 0; k < 30; ++k) {
        for (int i = 0; i < 8; ++i) {
            net::co_spawn(
                io,
                [&, key = "client-" + std::to_string(k)]() -> awaitable<void> {
                    auto d = co_await keel::asio::async_try_acquire(limiter, key);
                    REQUIRE(d);
                    admitted[key] += d->allowed ? 1 : 0;
                    not_remote += d->source == decision_source::remote ? 0 : 1;
                },
                net::detached);
        }
    }
    io.run_for(20s);
    REQUIRE(io.stopped());
    CHECK(not_remote == 0);
    REQUIRE(admitted.size() == 30);
    std::set<int> masters;
    for (auto const& [key, n] : admitted) {
        CHECK(n == 5);
        masters.insert(port_of(redis, limiter.redis_key(key)));
    }
    CHECK(masters.size() == 3);
    CHECK(redis.slots().stats().refreshes >= 1);
    CHECK(redis.slots().stats().moved == 0);
}

TEST_CASE("redis::async_cluster: a live migration of a busy key goes through ASK (with the "
          "script loaded on the new node) and then MOVED, and admits exactly the limit",
          "[redis][cluster][async][concurrency]") {
    auto const c = keel_test::redis_cluster::shared();
    REQUIRE(c.running());
    loop_thread loop;
    keel::redis::async_cluster redis{loop.io.get_executor(), options_for(c)};
    constexpr std::int64_t limit = 400;
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("async-busy"), .limit = limit, .window = 1h}};
    std::string const key = limiter.redis_key("hot");
    std::atomic<bool> stop{false};
    std::atomic<std::int64_t> admitted{0};
    std::atomic<std::int64_t> not_remote{0};
    std::atomic<int> running{0};
    auto decide = [&]() -> awaitable<void> {
        net::steady_timer pause{co_await net::this_coro::executor};
        while (!stop) {
            auto d = co_await keel::asio::async_try_acquire(limiter, "hot");
            admitted += d && d->allowed ? 1 : 0;
            not_remote += d && d->source == decision_source::remote ? 0 : 1;
            pause.expires_after(200us);
            co_await pause.async_wait(net::use_awaitable);
        }
        --running;
    };
    running = 3;
    for (int i = 0; i < 3; ++i) {
        net::co_spawn(loop.io, decide(), net::detached);
    }
    while (admitted.load() == 0) {
        std::this_thread::sleep_for(1ms);
    }
    int const from = port_of(redis, key);
    int const to = from == c.ports()[2] ? c.ports()[1] : c.ports()[2];
    REQUIRE(keel_test::node_command(to, {"SCRIPT", "FLUSH"})); // NOSCRIPT behind ASKING
    std::uint64_t const loads = keel::redis::fixed_window::lua().loads();
    std::this_thread::sleep_for(20ms);
    migrate_key(hash_slot(key), from, to, key); // the old master now answers ASK
    std::this_thread::sleep_for(40ms);
    CHECK(redis.slots().stats().asks >= 1);
    CHECK(port_of(redis, key) == from); // ASK changes no map
    CHECK(keel::redis::fixed_window::lua().loads() > loads);
    assign(hash_slot(key), to, from, c); // and now MOVED
    std::this_thread::sleep_for(40ms);
    CHECK(redis.slots().stats().moved >= 1);
    CHECK(port_of(redis, key) == to);
    stop = true;
    while (running.load() > 0) {
        std::this_thread::sleep_for(1ms);
    }
    // Drain what is left from the test's thread (the blocking path, same cluster):
    // then the limit holds exactly.
    for (std::int64_t i = 0; i < limit + 10; ++i) {
        keel::decision const d = limiter.try_acquire("hot");
        admitted += d.allowed ? 1 : 0;
        not_remote += d.source == decision_source::remote ? 0 : 1;
    }
    CHECK(not_remote.load() == 0);
    CHECK(admitted.load() == limit);
}

TEST_CASE("redis::async_cluster: a killed master sends its keys to the failure policy while the "
          "others keep deciding, and the loop never stalls",
          "[redis][cluster][async]") {
    auto const c = keel_test::redis_cluster::start_private();
    REQUIRE(c.running());
    net::io_context io;
    keel::redis::async_cluster redis{
        io.get_executor(),
        {.seeds = c.seeds(),
         .node = {.connection = {.connect_timeout = 200ms, .command_timeout = 200ms}}}};
    keel::manual_clock clock; // the breakers' probe period never passes
    keel::redis::basic_fixed_window<keel::manual_clock> limiter{
        redis,
        {.name = "killed",
         .limit = 1000,
         .window = 1h,
         .on_failure = {.breaker_failures = 3, .breaker_open_for = 1s}},
        clock};
    std::array<std::vector<std::string>, 3> keys_of; // by master
    bool stop = false;
    clock_type::duration max_gap{0};
    int slow = 0;
    std::array<std::map<decision_source, int>, 3> sources_after;
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
            net::steady_timer t{co_await net::this_coro::executor};
            auto last = clock_type::now();
            while (!stop) {
                t.expires_after(1ms);
                co_await t.async_wait(net::use_awaitable);
                auto const now = clock_type::now();
                max_gap = std::max(max_gap, now - last);
                last = now;
            }
        },
        net::detached);
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
            for (int k = 0; k < 60; ++k) {
                std::string const key = "k" + std::to_string(k);
                auto d = co_await keel::asio::async_try_acquire(limiter, key);
                REQUIRE((d && d->source == decision_source::remote));
                int const port = port_of(redis, limiter.redis_key(key));
                for (std::size_t m = 0; m < 3; ++m) {
                    if (c.ports()[m] == port) {
                        keys_of[m].push_back(key);
                    }
                }
            }
            c.kill(c.ports()[0]);
            for (int round = 0; round < 4; ++round) {
                for (std::size_t m = 0; m < 3; ++m) {
                    for (std::string const& key : keys_of[m]) {
                        auto const start = clock_type::now();
                        auto d = co_await keel::asio::async_try_acquire(limiter, key);
                        slow += clock_type::now() - start > 250ms ? 1 : 0;
                        sources_after[m][d->source] += 1;
                    }
                }
            }
            stop = true;
        },
        net::detached);
    io.run_for(30s);
    REQUIRE(stop);
    for (auto const& keys : keys_of) {
        REQUIRE(keys.size() >= 3);
    }
    CHECK(slow == 0);
    CHECK(sources_after[0][decision_source::fallback_open] ==
          static_cast<int>(4 * keys_of[0].size()));
    CHECK(sources_after[1][decision_source::remote] == static_cast<int>(4 * keys_of[1].size()));
    CHECK(sources_after[2][decision_source::remote] == static_cast<int>(4 * keys_of[2].size()));
    std::size_t const dead_route = redis.route(limiter.redis_key(keys_of[0][0]));
    CHECK(limiter.breaker(dead_route).state() == keel::circuit_state::open);
    CHECK(limiter.breaker_trips() == 1);
    double const gap_ms = std::chrono::duration<double, std::milli>(max_gap).count();
    WARN("max heartbeat gap " << gap_ms << " ms with a dead master (200 ms timeouts)");
    CHECK(max_gap < 100ms); // a blocking cluster would hold the loop 200 ms per attempt
}

TEST_CASE("redis::async_cluster: options out of range are rejected naming the field",
          "[redis][cluster][async]") {
    net::io_context io;
    CHECK_THROWS_WITH((keel::redis::async_cluster{io.get_executor(), {}}),
                      Catch::Contains("keel::redis::cluster") && Catch::Contains("seeds"));
    CHECK_THROWS_WITH(
        (keel::redis::async_cluster{io.get_executor(),
                                    {.seeds = {{"127.0.0.1", 7000}}, .max_redirects = 17}}),
        Catch::Contains("max_redirects"));
}
