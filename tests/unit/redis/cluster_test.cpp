// SPDX-License-Identifier: MIT
#include <keel/redis/cluster.hpp>
#include <keel/redis/fixed_window.hpp>
#include <keel/redis/gcra.hpp>

#include <keel/testing/manual_clock.hpp>

#include "redis_cluster.hpp"
#include "redis_server.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel::decision_source;
using keel::redis::hash_slot;

namespace {

keel::redis::pool_options node_options() {
    return {.connection = {.connect_timeout = 500ms, .command_timeout = 2000ms}, .size = 4};
}

keel::redis::cluster_options options_for(keel_test::redis_cluster const& c) {
    return {.seeds = c.seeds(), .node = node_options()};
}

int port_of(keel::redis::cluster const& c, std::string_view key) {
    auto const m = c.master_of(key);
    return m ? m->port : 0;
}

/// Gives `slot` to `to` on every node: `to` first, then `from` (the order of the
/// cluster specification and redis-cli: `from` would otherwise send MOVED to a node
/// still importing, which sends MOVED back).
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

/// Moves `slot` from `from` to `to` the way redis-cli --cluster reshard does,
/// stopping after `step` steps (1 IMPORTING/MIGRATING, 2 the keys MIGRATEd, 3 the
/// slot assigned).
void migrate(std::uint16_t slot, int from, int to, std::vector<std::string> const& keys,
             keel_test::redis_cluster const& c, int step = 3) {
    std::string const s = std::to_string(slot);
    std::string const from_id = keel_test::node_id(from);
    std::string const to_id = keel_test::node_id(to);
    REQUIRE(keel_test::node_command(to, {"CLUSTER", "SETSLOT", s, "IMPORTING", from_id}));
    REQUIRE(keel_test::node_command(from, {"CLUSTER", "SETSLOT", s, "MIGRATING", to_id}));
    if (step < 2) {
        return;
    }
    std::string const to_port = std::to_string(to);
    for (std::string const& k : keys) {
        auto r = keel_test::node_command(
            from, {"MIGRATE", "127.0.0.1", to_port, k, "0", "5000", "REPLACE"});
        REQUIRE(r);
        CHECK_FALSE(r->is_error());
    }
    if (step < 3) {
        return;
    }
    assign(slot, to, from, c);
}

} // namespace

TEST_CASE("redis::hash_slot: CRC16-XMODEM with the hash-tag rule", "[redis][cluster]") {
    STATIC_REQUIRE(keel::redis::detail::crc16("123456789") == 0x31C3);
    // Slots Redis 7.0 reports with CLUSTER KEYSLOT.
    CHECK(hash_slot("foo") == 12182);
    CHECK(hash_slot("{user1}:a") == 8106);
    CHECK(hash_slot("{user1}:b") == 8106);
    CHECK(hash_slot("keel:{api}") == 6541);
    CHECK(hash_slot("keel:{client:1.2.3.4}") == 6786);
    // Only the first {...} with something inside counts.
    CHECK(hash_slot("foo{}{bar}") == keel::redis::detail::crc16("foo{}{bar}") % 16384);
    CHECK(hash_slot("foo{{bar}}zap") == hash_slot("{bar"));
    CHECK(hash_slot("foo{bar}{zap}") == hash_slot("bar"));
    CHECK(hash_slot("foo{bar") == keel::redis::detail::crc16("foo{bar") % 16384);
    CHECK(hash_slot("") == 0);
}

TEST_CASE("redis::hash_slot: agrees with CLUSTER KEYSLOT on keel's keys", "[redis][cluster]") {
    auto const c = keel_test::redis_cluster::shared();
    REQUIRE(c.running());
    for (std::string const& key : std::vector<std::string>{
             "keel:{api}", "keel:{api:client-7}", "keel:{a}b:c}", "keel:{:}", "keel:{{x}", "plain",
             "keel:{name:{nested}}", std::string(300, 'k')}) {
        auto r = keel_test::node_command(c.ports()[0], {"CLUSTER", "KEYSLOT", key});
        REQUIRE(r);
        CHECK(r->integer() == hash_slot(key));
    }
}

TEST_CASE("redis::cluster: options out of range are rejected naming the field",
          "[redis][cluster]") {
    using keel::redis::cluster;
    using keel::redis::cluster_options;
    CHECK_THROWS_WITH(cluster(cluster_options{}),
                      "keel::redis::cluster: seeds must name at least one node");
    CHECK_THROWS_WITH(cluster({.seeds = {{"127.0.0.1", 0}}}),
                      "keel::redis::cluster: seeds[0].port must be in [1, 65535], got 0");
    CHECK_THROWS_WITH(cluster({.seeds = {{"", 7000}}}),
                      "keel::redis::cluster: seeds[0].host must not be empty");
    CHECK_THROWS_WITH(cluster({.seeds = {{}}, .max_redirects = 17}),
                      "keel::redis::cluster: max_redirects must be in [0, 16], got 17");
    CHECK_THROWS_WITH(cluster({.seeds = {{}}, .max_nodes = 0}),
                      "keel::redis::cluster: max_nodes must be in [1, 1024], got 0");
    CHECK_THROWS_WITH(
        cluster({.seeds = {{}}, .node = {.connection = {.database = 2}}}),
        "keel::redis::cluster: node.connection.database must be 0 (Redis Cluster has one "
        "database), got 2");
    CHECK_THROWS_WITH(cluster({.seeds = {{}}, .node = {.connection = {.command_timeout = 0ms}}}),
                      "keel::redis::cluster: node.connection.command_timeout must be positive, "
                      "got 0s");
    CHECK_THROWS_AS(cluster({.seeds = {{}}, .tryagain_delay = 2s}), std::invalid_argument);
    CHECK_THROWS_AS(cluster({.seeds = {{}}, .refresh_interval = -1ms}), std::invalid_argument);
    CHECK_THROWS_AS(cluster({.seeds = {{}}, .node = {.size = 5000}}), std::invalid_argument);
    CHECK_NOTHROW(cluster({.seeds = {{}}}));
}

TEST_CASE("redis::cluster: the slot map comes from one seed, and each key's script runs on its "
          "slot's master, spread over all three",
          "[redis][cluster]") {
    auto const c = keel_test::redis_cluster::shared();
    REQUIRE(c.running());
    keel::redis::cluster redis{{.seeds = {{"127.0.0.1", c.ports()[1]}}, .node = node_options()}};
    CHECK(redis.node_count() == 1);
    std::string const name = keel_test::unique_name("spread");
    keel::redis::fixed_window limiter{redis, {.name = name, .limit = 3, .window = 1h}};
    std::set<int> masters;
    for (int k = 0; k < 30; ++k) {
        std::string const key = "client-" + std::to_string(k);
        keel::decision const d = limiter.try_acquire(key);
        REQUIRE(d.source == decision_source::remote);
        CHECK(d.remaining == 2);
        std::string const redis_key = limiter.redis_key(key);
        int const port = port_of(redis, redis_key);
        masters.insert(port);
        // The state is on that master and nowhere else.
        for (int p : c.ports()) {
            auto r = keel_test::node_command(p, {"EXISTS", redis_key});
            REQUIRE(r);
            if (r->is_error()) {
                CHECK(p != port); // MOVED from the other masters
            } else {
                CHECK(r->integer() == (p == port ? 1 : 0));
            }
        }
    }
    CHECK(masters.size() == 3);
    CHECK(redis.node_count() == 3);
    CHECK(redis.stats().refreshes == 1);
    CHECK(redis.stats().moved == 0);
}

TEST_CASE("redis::cluster: CLUSTER SLOTS reads the same map as CLUSTER SHARDS, and is used when "
          "CLUSTER SHARDS is refused",
          "[redis][cluster]") {
    auto const c = keel_test::redis_cluster::shared();
    REQUIRE(c.running());
    auto shards = keel_test::node_command(c.ports()[0], {"CLUSTER", "SHARDS"});
    auto slots = keel_test::node_command(c.ports()[0], {"CLUSTER", "SLOTS"});
    REQUIRE(shards);
    REQUIRE(slots);
    auto a = keel::redis::detail::parse_shards(*shards, "127.0.0.1");
    auto b = keel::redis::detail::parse_slots(*slots, "127.0.0.1");
    REQUIRE(a);
    REQUIRE(b);
    auto const covered = [](std::vector<keel::redis::detail::slot_range> const& ranges) {
        std::vector<int> owner(16384, 0);
        for (auto const& r : ranges) {
            for (int s = r.first; s <= r.last; ++s) {
                owner[static_cast<std::size_t>(s)] = r.master.port;
            }
        }
        return owner;
    };
    std::vector<int> const owners = covered(*a);
    CHECK(owners == covered(*b));
    CHECK(std::count(owners.begin(), owners.end(), 0) == 0);

    // An ACL denying CLUSTER SHARDS to the default user on every node, as a
    // server older than 7.0 answers it with an error.
    for (int p : c.ports()) {
        auto r = keel_test::node_command(p, {"ACL", "SETUSER", "default", "-cluster|shards"});
        REQUIRE(r);
        REQUIRE_FALSE(r->is_error());
    }
    keel::redis::cluster redis{options_for(c)};
    bool const refreshed = redis.refresh();
    for (int p : c.ports()) {
        REQUIRE(keel_test::node_command(p, {"ACL", "SETUSER", "default", "+@all"}));
    }
    auto denied = keel_test::node_command(c.ports()[0], {"CLUSTER", "SHARDS"});
    REQUIRE(denied);
    CHECK_FALSE(denied->is_error()); // restored
    CHECK(refreshed);
    CHECK(redis.stats().refreshes == 1);
    keel::redis::gcra limiter{redis, {.name = keel_test::unique_name("slots"), .rate = 5}};
    CHECK(limiter.try_acquire("x").source == decision_source::remote);
    CHECK(redis.stats().moved == 0);
}

TEST_CASE("redis::cluster: MOVED after a slot moved refreshes the map and resends",
          "[redis][cluster]") {
    auto const c = keel_test::redis_cluster::shared();
    REQUIRE(c.running());
    keel::redis::cluster redis{options_for(c)};
    std::string const name = keel_test::unique_name("moved");
    keel::redis::fixed_window limiter{redis, {.name = name, .limit = 10, .window = 1h}};
    std::string const key = limiter.redis_key("k");
    REQUIRE(limiter.try_acquire("k").source == decision_source::remote);
    int const from = port_of(redis, key);
    int const to = from == c.ports()[0] ? c.ports()[1] : c.ports()[0];
    migrate(hash_slot(key), from, to, {key}, c);

    keel::decision const d = limiter.try_acquire("k");
    CHECK(d.source == decision_source::remote);
    CHECK(d.remaining == 8); // the count moved with the key
    CHECK(redis.stats().moved == 1);
    CHECK(redis.stats().refreshes >= 2);
    CHECK(port_of(redis, key) == to);
    CHECK(limiter.try_acquire("k").remaining == 7);
    CHECK(redis.stats().moved == 1);
}

TEST_CASE("redis::cluster: a live migration of a busy key goes through ASK (with the script "
          "loaded on the new node) and then MOVED, and admits exactly the limit",
          "[redis][cluster][concurrency]") {
    auto const c = keel_test::redis_cluster::shared();
    REQUIRE(c.running());
    keel::redis::cluster redis{options_for(c)};
    std::string const name = keel_test::unique_name("busy");
    constexpr std::int64_t limit = 400;
    keel::redis::fixed_window limiter{redis, {.name = name, .limit = limit, .window = 1h}};
    std::string const key = limiter.redis_key("hot");
    REQUIRE(limiter.try_acquire("hot").allowed);
    int const from = port_of(redis, key);
    int const to = from == c.ports()[2] ? c.ports()[1] : c.ports()[2];
    // The new node has never run the script: it answers NOSCRIPT once.
    REQUIRE(keel_test::node_command(to, {"SCRIPT", "FLUSH"}));
    std::uint64_t const loads = keel::redis::fixed_window::lua().loads();

    std::atomic<bool> stop{false};
    std::atomic<std::int64_t> admitted{1};
    std::atomic<std::int64_t> not_remote{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
        threads.emplace_back([&] {
            while (!stop.load()) {
                keel::decision const d = limiter.try_acquire("hot");
                admitted += d.allowed ? 1 : 0;
                not_remote += d.source == decision_source::remote ? 0 : 1;
                std::this_thread::sleep_for(200us);
            }
        });
    }
    std::this_thread::sleep_for(20ms);
    migrate(hash_slot(key), from, to, {key}, c, 2); // MIGRATING, key moved
    // The map still names the old master, which now answers ASK.
    keel::decision const during = limiter.try_acquire("hot");
    CHECK(during.source == decision_source::remote);
    admitted += during.allowed ? 1 : 0;
    CHECK(redis.stats().asks >= 1);
    CHECK(port_of(redis, key) == from); // ASK changes no map
    CHECK(keel::redis::fixed_window::lua().loads() > loads);
    std::this_thread::sleep_for(20ms);
    assign(hash_slot(key), to, from, c);
    keel::decision const after = limiter.try_acquire("hot");
    CHECK(after.source == decision_source::remote);
    admitted += after.allowed ? 1 : 0;
    CHECK(redis.stats().moved >= 1);
    CHECK(port_of(redis, key) == to);
    std::this_thread::sleep_for(20ms);
    stop = true;
    for (auto& t : threads) {
        t.join();
    }
    // Drain what is left, then the limit holds exactly.
    for (std::int64_t i = 0; i < limit + 10; ++i) {
        keel::decision const d = limiter.try_acquire("hot");
        admitted += d.allowed ? 1 : 0;
        not_remote += d.source == decision_source::remote ? 0 : 1;
    }
    CHECK(not_remote.load() == 0);
    CHECK(admitted.load() == limit);
}

TEST_CASE("redis::cluster: with auto-pipelined node pools, ASK (ASKING and the script back to "
          "back in one batch) and MOVED are followed the same way",
          "[redis][cluster][pipeline]") {
    auto const c = keel_test::redis_cluster::shared();
    REQUIRE(c.running());
    auto options = options_for(c);
    options.node.auto_pipelining = true;
    options.node.size = 1;
    keel::redis::cluster redis{options};
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("piped-ask"), .limit = 10, .window = 1h}};
    std::string const key = limiter.redis_key("k");
    REQUIRE(limiter.try_acquire("k").remaining == 9);
    int const from = port_of(redis, key);
    int const to = from == c.ports()[1] ? c.ports()[2] : c.ports()[1];
    REQUIRE(keel_test::node_command(to, {"SCRIPT", "FLUSH"})); // NOSCRIPT behind ASKING too
    migrate(hash_slot(key), from, to, {key}, c, 2);
    keel::decision const during = limiter.try_acquire("k");
    CHECK(during.source == decision_source::remote);
    CHECK(during.remaining == 8);
    CHECK(redis.stats().asks == 1);
    assign(hash_slot(key), to, from, c);
    keel::decision const after = limiter.try_acquire("k");
    CHECK(after.source == decision_source::remote);
    CHECK(after.remaining == 7);
    CHECK(redis.stats().moved == 1);
}

TEST_CASE("redis::cluster: TRYAGAIN (two keys of a migrating slot, one moved) is retried once "
          "after tryagain_delay",
          "[redis][cluster]") {
    auto const c = keel_test::redis_cluster::shared();
    REQUIRE(c.running());
    keel::redis::cluster redis{
        {.seeds = c.seeds(), .node = node_options(), .tryagain_delay = 30ms}};
    std::string const tag = keel_test::unique_name("tryagain");
    std::string const a = "{" + tag + "}a";
    std::string const b = "{" + tag + "}b";
    keel::redis::script const both{"return redis.call('MGET', KEYS[1], KEYS[2])"};
    std::string_view const keys[] = {a, b};
    REQUIRE(redis.refresh());
    int const from = port_of(redis, a);
    int const to = from == c.ports()[0] ? c.ports()[2] : c.ports()[0];
    REQUIRE(keel_test::node_command(from, {"MSET", a, "1", b, "2"}));
    auto r = redis.run(both, keys, {});
    REQUIRE(r);
    REQUIRE(r->size() == 2);
    migrate(hash_slot(a), from, to, {a}, c, 2);
    auto const start = std::chrono::steady_clock::now();
    r = redis.run(both, keys, {});
    auto const took = std::chrono::steady_clock::now() - start;
    REQUIRE(r);
    CHECK(r->is_error());
    CHECK(r->text().starts_with("TRYAGAIN"));
    CHECK(redis.stats().tryagains == 1);
    CHECK(took >= 30ms);
    migrate(hash_slot(a), from, to, {b}, c, 3); // finish it: both keys on `to`
    r = redis.run(both, keys, {});
    REQUIRE(r);
    CHECK(r->size() == 2);
    CHECK(redis.stats().moved == 1);
}

TEST_CASE("redis::cluster: CROSSSLOT needs two keys on two slots, keel's limiters send one "
          "key, so names and keys with braces still decide",
          "[redis][cluster]") {
    auto const c = keel_test::redis_cluster::shared();
    REQUIRE(c.running());
    keel::redis::cluster redis{options_for(c)};
    keel::redis::script const both{"return redis.call('MGET', KEYS[1], KEYS[2])"};
    std::string_view const keys[] = {"keel:{a}", "keel:{b}"};
    REQUIRE(hash_slot(keys[0]) != hash_slot(keys[1]));
    auto r = redis.run(both, keys, {});
    REQUIRE(r);
    CHECK(r->text().starts_with("CROSSSLOT"));

    std::string const name = keel_test::unique_name("br}ace{");
    keel::redis::gcra limiter{redis, {.name = name, .rate = 100}};
    for (std::string_view key : {"{x}", "}", "a{b}c", "{", ""}) {
        CHECK(limiter.try_acquire(key).source == decision_source::remote);
    }
    CHECK(limiter.try_acquire().source == decision_source::remote);
}

TEST_CASE("redis::cluster: 4 processes share per-key limits spread over the three masters, "
          "admitting exactly the limit of each key",
          "[redis][cluster]") {
    auto const c = keel_test::redis_cluster::shared();
    REQUIRE(c.running());
    std::string const name = keel_test::unique_name("procs");
    // 12 keys x 25 permits; 4 x 180 attempts = 60 per key.
    auto const reports = keel_test::run_clients(4, "cluster:" + std::to_string(c.ports()[0]),
                                                "fixed_window " + name + " 25 3600000 180 1 12");
    long admitted = 0;
    for (auto const& r : reports) {
        REQUIRE(r.admitted >= 0);
        CHECK(r.fallback == 0);
        admitted += r.admitted;
    }
    CHECK(admitted == 12 * 25);
    keel::redis::cluster redis{options_for(c)};
    REQUIRE(redis.refresh());
    std::set<int> masters;
    for (int k = 0; k < 12; ++k) {
        masters.insert(port_of(redis, "keel:{" + name + ":k" + std::to_string(k) + "}"));
    }
    CHECK(masters.size() == 3);
}

TEST_CASE("redis::cluster: a killed master sends its keys to the failure policy and opens only "
          "its breaker, the other masters keep deciding",
          "[redis][cluster]") {
    auto const c = keel_test::redis_cluster::start_private();
    REQUIRE(c.running());
    keel::redis::cluster redis{
        {.seeds = c.seeds(),
         .node = {.connection = {.connect_timeout = 200ms, .command_timeout = 200ms}, .size = 2}}};
    keel::manual_clock clock;
    keel::redis::basic_fixed_window<keel::manual_clock> limiter{
        redis,
        {.name = "killed",
         .limit = 1000,
         .window = 1h,
         .on_failure = {.breaker_failures = 3, .breaker_open_for = 1s}},
        clock};
    CHECK(limiter.breaker_count() == redis.options().max_nodes);
    std::array<std::vector<std::string>, 3> keys_of; // by master
    for (int k = 0; k < 60; ++k) {
        std::string const key = "k" + std::to_string(k);
        REQUIRE(limiter.try_acquire(key).source == decision_source::remote);
        int const port = port_of(redis, limiter.redis_key(key));
        for (std::size_t m = 0; m < 3; ++m) {
            if (c.ports()[m] == port) {
                keys_of[m].push_back(key);
            }
        }
    }
    for (auto const& keys : keys_of) {
        REQUIRE(keys.size() >= 3);
    }
    c.kill(c.ports()[0]);
    std::size_t const dead_route = redis.route(limiter.redis_key(keys_of[0][0]));
    for (int round = 0; round < 4; ++round) {
        for (std::size_t m = 0; m < 3; ++m) {
            for (std::string const& key : keys_of[m]) {
                auto const start = std::chrono::steady_clock::now();
                keel::decision const d = limiter.try_acquire(key);
                CHECK(std::chrono::steady_clock::now() - start < 250ms);
                if (m == 0) {
                    CHECK(d.source == decision_source::fallback_open);
                } else {
                    CHECK(d.source == decision_source::remote);
                }
            }
        }
    }
    CHECK(limiter.breaker(dead_route).state() == keel::circuit_state::open);
    CHECK(limiter.breaker_trips() == 1);
    CHECK(limiter.breaker(redis.route(limiter.redis_key(keys_of[1][0]))).state() ==
          keel::circuit_state::closed);
    CHECK(limiter.breaker(redis.route(limiter.redis_key(keys_of[2][0]))).state() ==
          keel::circuit_state::closed);
}
