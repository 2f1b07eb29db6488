// SPDX-License-Identifier: MIT
// Test support: the 3-master Redis Cluster of the ctest fixture (its ports read
// from $KEEL_TEST_REDIS_CLUSTER_DIR/ports), a private cluster a test may kill
// masters of (started by the same script in a temporary directory), and
// commands sent to one node.
#pragma once

#include <keel/redis/cluster.hpp>
#include <keel/redis/connection.hpp>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace keel_test {

#ifndef KEEL_REDIS_SERVER
#define KEEL_REDIS_SERVER "redis-server"
#endif
#ifndef KEEL_REDIS_CLI
#define KEEL_REDIS_CLI "redis-cli"
#endif
#ifndef KEEL_REDIS_CLUSTER_SCRIPT
#define KEEL_REDIS_CLUSTER_SCRIPT "tests/support/redis_cluster_fixture.sh"
#endif

/// A 3-master cluster started by tests/support/redis_cluster_fixture.sh in
/// `dir`; stop() (or the destructor of an owning instance) stops it.
class redis_cluster {
public:
    /// Attaches to the fixture's cluster (owns nothing).
    static redis_cluster shared() {
        char const* dir = std::getenv("KEEL_TEST_REDIS_CLUSTER_DIR");
        redis_cluster c{dir != nullptr ? dir : "", false};
        if (!c.read_ports()) {
            // Run by hand without ctest: start a private one.
            return redis_cluster::start_private();
        }
        return c;
    }

    /// Starts a private cluster in a new temporary directory (owned: stopped on destruction).
    static redis_cluster start_private() {
        std::mt19937_64 gen{std::random_device{}()};
        auto const dir =
            std::filesystem::temp_directory_path() / ("keel-cluster-" + std::to_string(gen()));
        redis_cluster c{dir.string(), true};
        std::string const command = std::string{"bash "} + KEEL_REDIS_CLUSTER_SCRIPT + " start " +
                                    dir.string() + " " + KEEL_REDIS_SERVER + " " + KEEL_REDIS_CLI +
                                    " >/dev/null";
        if (std::system(command.c_str()) == 0) {
            c.read_ports();
        }
        return c;
    }

    redis_cluster(redis_cluster&& other) noexcept
        : m_dir(std::move(other.m_dir)), m_owned(std::exchange(other.m_owned, false)),
          m_ports(other.m_ports) {}
    redis_cluster& operator=(redis_cluster&&) = delete;
    ~redis_cluster() {
        if (m_owned) {
            std::string const command =
                std::string{"bash "} + KEEL_REDIS_CLUSTER_SCRIPT + " stop " + m_dir;
            static_cast<void>(std::system(command.c_str()));
            std::error_code ignored;
            std::filesystem::remove_all(m_dir, ignored);
        }
    }

    /// Returns true if the cluster answered when started.
    bool running() const noexcept { return m_ports[0] != 0; }
    /// Returns the three masters' ports.
    std::array<int, 3> const& ports() const noexcept { return m_ports; }
    /// Returns the masters as seeds.
    std::vector<keel::redis::endpoint> seeds() const {
        return {{"127.0.0.1", m_ports[0]}, {"127.0.0.1", m_ports[1]}, {"127.0.0.1", m_ports[2]}};
    }

    /// Kills the master on `port` with SIGKILL (its pid file is in the directory).
    void kill(int port) const {
        std::ifstream in{m_dir + "/node-" + std::to_string(port) + ".pid"};
        pid_t pid = 0;
        if (in >> pid && pid > 0) {
            ::kill(pid, SIGKILL);
        }
    }

private:
    redis_cluster(std::string dir, bool owned) : m_dir(std::move(dir)), m_owned(owned) {}

    bool read_ports() {
        std::ifstream in{m_dir + "/ports"};
        std::array<int, 3> p{};
        if (in >> p[0] >> p[1] >> p[2] && p[0] > 0) {
            m_ports = p;
            return true;
        }
        return false;
    }

    std::string m_dir;
    bool m_owned = false;
    std::array<int, 3> m_ports{};
};

/// Sends one command to the node on `port` (a fresh connection, generous timeouts).
inline keel::outcome<keel::redis::reply>
node_command(int port, std::initializer_list<std::string_view> args) {
    keel::redis::connection c{{.port = port,
                               .connect_timeout = std::chrono::milliseconds{500},
                               .command_timeout = std::chrono::milliseconds{5000}}};
    return c.command(args);
}

/// Returns the node id of the node on `port` (CLUSTER MYID).
inline std::string node_id(int port) {
    auto r = node_command(port, {"CLUSTER", "MYID"});
    return r ? std::string{r->text()} : std::string{};
}

} // namespace keel_test
