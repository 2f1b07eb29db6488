// SPDX-License-Identifier: MIT
// Test support: the master, replica and three sentinels of the ctest fixture
// keel_redis_sentinel (ports read from $KEEL_TEST_REDIS_SENTINEL_DIR/ports), waiting
// until they are ready for a failover, killing and reviving a data node.
#pragma once

#include <keel/redis/sentinel.hpp>

#include "redis_cluster.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <thread>
#include <vector>

#ifndef KEEL_REDIS_SENTINEL_SCRIPT
#define KEEL_REDIS_SENTINEL_SCRIPT "tests/support/redis_sentinel_fixture.sh"
#endif

namespace keel_test {

/// The fixture's servers: two data nodes (either may be the master by now) and
/// three sentinels monitoring "keel-master".
struct sentinel_setup {
    std::string dir;
    std::array<int, 2> data{};
    std::array<int, 3> sentinels{};

    static sentinel_setup shared() {
        sentinel_setup s;
        char const* dir = std::getenv("KEEL_TEST_REDIS_SENTINEL_DIR");
        s.dir = dir != nullptr ? dir : "";
        std::ifstream in{s.dir + "/ports"};
        in >> s.data[0] >> s.data[1] >> s.sentinels[0] >> s.sentinels[1] >> s.sentinels[2];
        return s;
    }
    bool running() const { return data[0] > 0 && sentinels[2] > 0; }

    std::vector<keel::redis::endpoint> endpoints() const {
        return {
            {"127.0.0.1", sentinels[0]}, {"127.0.0.1", sentinels[1]}, {"127.0.0.1", sentinels[2]}};
    }

    /// Returns the master the first sentinel names, or 0.
    int named_master() const {
        auto r = keel_test::node_command(sentinels[0],
                                         {"SENTINEL", "get-master-addr-by-name", "keel-master"});
        if (!r || r->size() != 2) {
            return 0;
        }
        return std::atoi(r->element(1)->str);
    }
    int other(int port) const { return port == data[0] ? data[1] : data[0]; }

    /// Waits until every sentinel names the same master, whose replica is in sync
    /// and seen by all sentinels (a failover needs that); returns the master.
    int wait_ready() const {
        for (int i = 0; i < 500; ++i) {
            int const m = named_master();
            bool ready = m != 0;
            for (int s : sentinels) {
                auto r = keel_test::node_command(s, {"SENTINEL", "REPLICAS", "keel-master"});
                auto n = keel_test::node_command(
                    s, {"SENTINEL", "get-master-addr-by-name", "keel-master"});
                ready = ready && r && r->size() == 1 && n && n->size() == 2 &&
                        std::atoi(n->element(1)->str) == m;
                if (ready) {
                    // The replica's flags must be plain "slave" (not s_down, disconnected).
                    redisReply const* fields = r->element(0);
                    for (std::size_t f = 0; f + 1 < fields->elements; f += 2) {
                        if (std::string_view{fields->element[f]->str} == "flags") {
                            ready = std::string_view{fields->element[f + 1]->str} == "slave";
                        }
                    }
                }
            }
            if (ready) {
                auto info = keel_test::node_command(other(m), {"INFO", "replication"});
                if (info && info->text().find("master_link_status:up") != std::string_view::npos) {
                    return m;
                }
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{20});
        }
        return 0;
    }

    void kill(int port) const {
        std::ifstream in{dir + "/redis-" + std::to_string(port) + ".pid"};
        pid_t pid = 0;
        if (in >> pid && pid > 0) {
            ::kill(pid, SIGKILL);
        }
    }
    bool revive(int port, int master) const {
        std::string const command = std::string{"bash "} + KEEL_REDIS_SENTINEL_SCRIPT + " revive " +
                                    dir + " " + std::to_string(port) + " " +
                                    std::to_string(master) + " " + KEEL_REDIS_SERVER + " " +
                                    KEEL_REDIS_CLI + " >/dev/null";
        return std::system(command.c_str()) == 0;
    }
};

/// Returns the master of the fixture's servers once they are ready (wait_ready);
/// fails the test when they do not run or do not get ready.
inline int require_ready(sentinel_setup const& s) {
    REQUIRE(s.running());
    int const master = s.wait_ready();
    REQUIRE(master != 0);
    return master;
}

/// Returns options for the fixture's master, with 100 ms timeouts.
inline keel::redis::sentinel_options options_for(sentinel_setup const& s) {
    return {.master_name = "keel-master",
            .sentinels = s.endpoints(),
            .master = {.connection = {.connect_timeout = std::chrono::milliseconds{100},
                                      .command_timeout = std::chrono::milliseconds{100}},
                       .size = 2}};
}

} // namespace keel_test
