// SPDX-License-Identifier: MIT
// Test support: a real Prometheus server (the `prometheus` program, Debian's
// prometheus package) on a free loopback port, scraping one target every second,
// and its HTTP API: instant queries, a check of one stored value, and the wait
// for the target's first successful scrapes. Every wait is bounded; a failure
// throws std::runtime_error (naming the server's log where it helps), and the
// child_process inside kills a server still running when it is destroyed.
#pragma once

#include "child_process.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace keel_test {

/// A `prometheus` process scraping one target as one job, with a client for its
/// HTTP API. Not copyable or movable.
class prometheus_server {
public:
    /// Writes `work`/prometheus.yml (job `job` scraping 127.0.0.1:`target_port`,
    /// interval and timeout 1 s), starts `executable` on a free loopback port with
    /// its storage in `work`/data and its log in `work`/prometheus.log, and waits
    /// up to about 10 s for /-/ready. Throws std::runtime_error when it does not
    /// start or get ready.
    prometheus_server(std::string const& executable, std::filesystem::path const& work,
                      std::string job, int target_port)
        : m_log((work / "prometheus.log").string()), m_job(std::move(job)),
          m_port(free_loopback_port()), m_process{command_line(executable, work, m_job, target_port,
                                                               m_port),
                                                  m_log},
          m_api{"127.0.0.1", m_port} {
        m_api.set_connection_timeout(std::chrono::seconds{1});
        m_api.set_read_timeout(std::chrono::seconds{5});
        bool up = false;
        for (int i = 0; i < 200 && !up; ++i) {
            auto const r = m_api.Get("/-/ready");
            up = r && r->status == 200;
            if (!up) {
                std::this_thread::sleep_for(std::chrono::milliseconds{50});
            }
        }
        if (!up) {
            throw std::runtime_error("prometheus did not get ready (see " + m_log + ")");
        }
    }

    /// Runs an instant query; returns the value of its single sample, or nullopt
    /// when the result is empty. Throws std::runtime_error when the query fails or
    /// returns more than one series.
    std::optional<double> query(std::string const& promql) {
        auto const r =
            m_api.Get("/api/v1/query", httplib::Params{{"query", promql}}, httplib::Headers{});
        if (!r || r->status != 200) {
            throw std::runtime_error("query " + promql + ": HTTP " +
                                     (r ? std::to_string(r->status) : "error"));
        }
        auto const body = nlohmann::json::parse(r->body);
        if (body.at("status") != "success") {
            throw std::runtime_error("query " + promql + ": " + r->body);
        }
        auto const& result = body.at("data").at("result");
        if (result.empty()) {
            return std::nullopt;
        }
        if (result.size() != 1) {
            throw std::runtime_error("query " + promql + " has " + std::to_string(result.size()) +
                                     " series: " + r->body);
        }
        return std::stod(result[0].at("value")[1].get<std::string>());
    }

    /// Throws std::runtime_error unless Prometheus stored exactly `expected` for
    /// `series` (absent counts as wrong).
    void expect(std::string const& series, double expected) {
        auto const stored = query(series);
        if (!stored || *stored != expected) {
            throw std::runtime_error(series + " in Prometheus is " +
                                     (stored ? std::to_string(*stored) : "absent") + ", expected " +
                                     std::to_string(expected));
        }
    }

    /// Waits up to about 15 s until the job's target was scraped twice in the last
    /// minute, both times successfully: `up` is 1 only when Prometheus' parser took
    /// the page (it asks for OpenMetrics first, so `# EOF` included). Throws
    /// std::runtime_error when it was not.
    void wait_for_two_scrapes() {
        std::string const up = "up{job=\"" + m_job + "\"}[1m]";
        bool scraped = false;
        for (int i = 0; i < 150 && !scraped; ++i) {
            auto const n = query("count_over_time(" + up + ")");
            auto const ok = query("min_over_time(" + up + ")");
            scraped = n && *n >= 2 && ok && *ok == 1;
            if (!scraped) {
                std::this_thread::sleep_for(std::chrono::milliseconds{100});
            }
        }
        if (!scraped) {
            throw std::runtime_error("prometheus did not scrape job " + m_job +
                                     " twice successfully (see " + m_log + ")");
        }
    }

    /// Sends `sig` to the server.
    void signal(int sig) const { m_process.signal(sig); }

    /// Waits up to `limit` for the server to exit; returns its exit code, or
    /// nullopt if it still runs (see child_process::wait_exit).
    std::optional<int> wait_exit(std::chrono::steady_clock::duration limit) {
        return m_process.wait_exit(limit);
    }

private:
    // Writes `work`/prometheus.yml and returns the command line that runs
    // `executable` on it; m_process's initialiser calls it, so the file exists first.
    static std::vector<std::string> command_line(std::string const& executable,
                                                 std::filesystem::path const& work,
                                                 std::string const& job, int target_port,
                                                 int port) {
        auto const config = work / "prometheus.yml";
        {
            std::ofstream out{config};
            out << "global:\n"
                   "  scrape_interval: 1s\n"
                   "  scrape_timeout: 1s\n"
                   "scrape_configs:\n"
                   "  - job_name: "
                << job
                << "\n"
                   "    static_configs:\n"
                   "      - targets: ['127.0.0.1:"
                << target_port << "']\n";
        }
        return {executable, "--config.file=" + config.string(),
                "--storage.tsdb.path=" + (work / "data").string(),
                "--web.listen-address=127.0.0.1:" + std::to_string(port), "--log.level=warn"};
    }

    std::string m_log;
    std::string m_job;
    int m_port;
    child_process m_process;
    httplib::Client m_api;
};

} // namespace keel_test
