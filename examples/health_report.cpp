// SPDX-License-Identifier: MIT
// A readiness report as a service would serve it on /health/ready: a critical
// database check, a non-critical cache check that fails (the service is degraded
// but still takes traffic: 200 with status "warn"), then the drain flag (503).
// Ends with the probe arithmetic for the Kubernetes defaults.
#include <keel/keel.hpp>

#include <fmt/format.h>

#include <chrono>
#include <stdexcept>
#include <stop_token>

using namespace std::chrono_literals;

namespace {

void serve(char const* path, keel::ops::health_report const& report) {
    auto const response = keel::ops::to_http_response(report);
    fmt::print("GET {} -> {} ({})\n{}\n\n", path, response.status, response.content_type,
               response.body);
}

} // namespace

int main() {
    keel::ops::health_registry health{{.service_id = "orders", .version = "1.4.2"}};

    health.add_check({.name = "postgres",
                      .measurement = "responseTime",
                      .kind = keel::ops::check_kind::database,
                      .timeout = 300ms,
                      .ttl = 2s},
                     [](std::stop_token) {
                         // A real check would run "SELECT 1" and time it.
                         return keel::ops::check_result::pass(3.2, "ms");
                     });
    health.add_check({.name = "redis",
                      .kind = keel::ops::check_kind::cache,
                      .timeout = 100ms,
                      .critical = false},
                     []() -> keel::ops::check_result {
                         throw std::runtime_error("connect to 10.0.0.7:6379: connection refused");
                     });

    serve("/health/startup", health.startup()); // 503 until initialisation finishes
    health.mark_started();
    serve("/health/live", health.liveness());
    serve("/health/ready", health.readiness()); // 200, "warn": the cache is optional

    health.set_not_ready("draining"); // what a SIGTERM handler does first
    auto const draining = health.readiness();
    serve("/health/ready", draining); // 503: load balancers stop sending traffic
    health.clear_not_ready();

    constexpr keel::ops::probe_config probe{}; // periodSeconds 10, failureThreshold 3, ...
    constexpr auto window = keel::ops::failure_detection_window(probe);
    fmt::print("a dead pod is detected {}-{} s after it fails; start-up gives up after {} s\n",
               window.earliest.count(), window.latest.count(),
               keel::ops::startup_bound(probe).count());
    fmt::print("at 10,000 req/s that is up to {:.0f} failed requests\n",
               keel::ops::failed_requests_during(window.latest, 10'000));
    fmt::print("99.9% over 30 days with 10 incidents allows {:.1f} s per incident "
               "(detection and repair)\n",
               keel::ops::outage_budget_per_incident(0.001, std::chrono::days{30}, 10).count());
    auto const wilson = keel::ops::wilson_interval(0.5, 10);
    fmt::print("5 failures in 10 calls: true failure rate {:.1f}%-{:.1f}% (Wilson, 95%)\n",
               100 * wilson.lower, 100 * wilson.upper);
    return draining.http_status() == 503 ? 0 : 1;
}
