// SPDX-License-Identifier: MIT
#include <keel/redis/fixed_window.hpp>
#include <keel/redis/sentinel.hpp>

#include "redis_cluster.hpp"
#include "redis_sentinel.hpp"
#include "redis_server.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel::decision_source;

namespace {

using keel_test::options_for;
using keel_test::require_ready;
using keel_test::sentinel_setup;

/// The failover tests' start: the fixture's servers ready, a sentinel client and a
/// fixed window far from its limit whose breaker opens after 3 failures for
/// 100 ms, warmed by one decision Redis made on `old_master`.
struct failover_fixture {
    failover_fixture() { REQUIRE(limiter.try_acquire("warm").source == decision_source::remote); }

    sentinel_setup const s = sentinel_setup::shared();
    int const old_master = require_ready(s);
    int const promoted = s.other(old_master);
    keel::redis::sentinel redis{options_for(s)};
    keel::redis::fixed_window limiter{
        redis,
        {.name = keel_test::unique_name("failover"),
         .limit = 1000,
         .window = 1h,
         .on_failure = {.breaker_failures = 3, .breaker_open_for = 100ms}}};
};

/// What a run of decisions through a failover saw.
struct failover_run {
    int fallbacks = 0;
    int remote = 0;
    std::chrono::milliseconds until_back{-1}; // from the trigger to Redis deciding on `to`
    std::chrono::milliseconds longest{0};     // the slowest decision
};

/// Decides every ms from `trigger` on until 20 decisions in a row came from Redis
/// on master `to` (at most 15 s).
template <class Limiter, class Trigger>
failover_run through_failover(Limiter& limiter, keel::redis::sentinel const& redis, int to,
                              Trigger trigger) {
    failover_run run;
    auto const start = std::chrono::steady_clock::now();
    trigger();
    int streak = 0;
    int key = 0;
    while (std::chrono::steady_clock::now() - start < 15s && streak < 20) {
        auto const before = std::chrono::steady_clock::now();
        // A new key each time: the promoted replica may not have the last writes.
        keel::decision const d = limiter.try_acquire("k" + std::to_string(key++));
        auto const took = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - before);
        run.longest = std::max(run.longest, took);
        bool const on_new = redis.master() && redis.master()->port == to;
        if (d.source == decision_source::remote) {
            ++run.remote;
            if (on_new && streak++ == 0) {
                run.until_back = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - start);
            }
        } else {
            ++run.fallbacks;
            streak = 0;
        }
        std::this_thread::sleep_for(1ms);
    }
    return run;
}

} // namespace

TEST_CASE("redis::sentinel: options out of range are rejected naming the field",
          "[redis][sentinel]") {
    using keel::redis::sentinel;
    CHECK_THROWS_WITH(sentinel({.sentinels = {{}}}),
                      "keel::redis::sentinel: master_name must not be empty");
    CHECK_THROWS_WITH(sentinel({.master_name = "m"}),
                      "keel::redis::sentinel: sentinels must name at least one sentinel");
    CHECK_THROWS_WITH(sentinel({.master_name = "m", .sentinels = {{"127.0.0.1", 70000}}}),
                      "keel::redis::sentinel: sentinels[0].port must be in [1, 65535], got 70000");
    CHECK_THROWS_WITH(
        sentinel({.master_name = "m",
                  .sentinels = {{}},
                  .master = {.connection = {.connect_timeout = 0ms}}}),
        "keel::redis::sentinel: master.connection.connect_timeout must be positive, got 0s");
    CHECK_THROWS_AS(sentinel({.master_name = "m", .sentinels = {{}}, .resolve_interval = -1ms}),
                    std::invalid_argument);
    CHECK_THROWS_WITH(
        sentinel({.master_name = "m", .sentinels = {{}}, .recheck_interval = -1ms}),
        "keel::redis::sentinel: recheck_interval must be in [0 ms, 3600000 ms], got -1ms");
    CHECK_THROWS_AS(sentinel({.master_name = "m", .sentinels = {{}}, .master = {.size = 5000}}),
                    std::invalid_argument);
    CHECK_NOTHROW(sentinel({.master_name = "m", .sentinels = {{}}}));
}

TEST_CASE("redis::sentinel: finds the master by name, checks its ROLE, and decides there",
          "[redis][sentinel]") {
    auto const s = sentinel_setup::shared();
    int const master = require_ready(s);
    // The first sentinel is down: the next one answers.
    auto options = options_for(s);
    options.sentinels.insert(options.sentinels.begin(), {"127.0.0.1", 1});
    keel::redis::sentinel redis{options};
    CHECK_FALSE(redis.master());
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("sentinel"), .limit = 3, .window = 1h}};
    keel::decision const d = limiter.try_acquire("a");
    CHECK(d.source == decision_source::remote);
    CHECK(d.remaining == 2);
    REQUIRE(redis.master());
    CHECK(redis.master()->port == master);
    CHECK(redis.stats().lookups == 1);
    auto r = keel_test::node_command(master, {"EXISTS", limiter.redis_key("a")});
    REQUIRE(r);
    CHECK(r->integer() == 1);
}

TEST_CASE("redis::sentinel: a sentinel naming a replica is refused by the ROLE check",
          "[redis][sentinel]") {
    auto const s = sentinel_setup::shared();
    int const master = require_ready(s);
    int const replica = s.other(master);
    // One sentinel monitors the replica under another name, as a stale one would.
    REQUIRE(keel_test::node_command(s.sentinels[0], {"SENTINEL", "MONITOR", "keel-stale",
                                                     "127.0.0.1", std::to_string(replica), "2"}));
    keel::redis::sentinel redis{{.master_name = "keel-stale",
                                 .sentinels = {{"127.0.0.1", s.sentinels[0]}},
                                 .master = {.connection = {.command_timeout = 500ms}}}};
    bool const found = redis.resolve();
    REQUIRE(keel_test::node_command(s.sentinels[0], {"SENTINEL", "REMOVE", "keel-stale"}));
    CHECK_FALSE(found);
    CHECK(redis.stats().refused == 1);
    CHECK_FALSE(redis.master());
}

TEST_CASE_METHOD(failover_fixture,
                 "redis::sentinel: after SENTINEL FAILOVER decisions move to the promoted "
                 "replica within recheck_interval, before Sentinel demotes the old master",
                 "[redis][sentinel]") {
    REQUIRE(redis.master()->port == old_master);

    failover_run const run = through_failover(limiter, redis, promoted, [&] {
        auto r = keel_test::node_command(s.sentinels[1], {"SENTINEL", "FAILOVER", "keel-master"});
        REQUIRE(r);
        REQUIRE_FALSE(r->is_error());
    });
    WARN("SENTINEL FAILOVER: Redis decided again on the promoted replica "
         << run.until_back.count() << " ms after the command; " << run.fallbacks
         << " decisions by the failure policy, " << run.remote << " by Redis; slowest decision "
         << run.longest.count() << " ms");
    CHECK(run.until_back >= 0ms);
    // Redis 7.0 demotes the old master about 10 s later; keel asks the sentinels
    // every recheck_interval (1 s) and moves first.
    CHECK(run.until_back < 5s);
    CHECK(run.longest < 500ms);
    CHECK(redis.master()->port == promoted);
    CHECK(redis.stats().failovers == 1);
    auto role = keel_test::node_command(promoted, {"ROLE"});
    REQUIRE(role);
    CHECK(std::string_view{role->element(0)->str} == "master");
    // Demote the old master now rather than in the 10 s Sentinel takes, so the
    // next test finds a master with a replica in sync.
    REQUIRE(
        keel_test::node_command(old_master, {"REPLICAOF", "127.0.0.1", std::to_string(promoted)}));
    // Give the fixture time to have a master and a replica again for the next test
    // (which one is master is the sentinels' call: on a loaded machine they may fail
    // over again). Not checked here: the old master's resync under a sanitizer took
    // longer than this wait once, and the next test's require_ready() waits again
    // and fails if the fixture never gets ready.
    static_cast<void>(s.wait_ready());
}

TEST_CASE_METHOD(failover_fixture,
                 "redis::sentinel: the master killed, decisions fall back to the policy and "
                 "return to Redis after the promotion",
                 "[redis][sentinel]") {
    failover_run const run =
        through_failover(limiter, redis, promoted, [&] { s.kill(old_master); });
    WARN("master killed: Redis decided again on the promoted replica "
         << run.until_back.count() << " ms after the kill (down-after-milliseconds 500); "
         << run.fallbacks << " decisions by the failure policy; slowest decision "
         << run.longest.count() << " ms");
    CHECK(run.until_back >= 0ms);
    CHECK(run.until_back < 8s);
    CHECK(run.fallbacks >= 3);
    CHECK(run.longest < 500ms);
    CHECK(redis.master()->port == promoted);
    // Leave a master with a replica behind for the other tests.
    REQUIRE(s.revive(old_master, promoted));
    // Give the fixture time to have a master and a replica again for the next test
    // (which one is master is the sentinels' call: on a loaded machine they may fail
    // over again). Not checked here: the old master's resync under a sanitizer took
    // longer than this wait once, and the next test's require_ready() waits again
    // and fails if the fixture never gets ready.
    static_cast<void>(s.wait_ready());
}
