// SPDX-License-Identifier: MIT
// keel::sim::scenario: what a simulation runs. A modelled downstream (instances
// with servers, a queue and its discipline, a service-time distribution, failure
// by load, a latency penalty when overloaded, scripted phases: healthy, slow,
// failing x %, down, flapping, recovering with limited capacity), the readiness
// probes and the load balancer routing by them, a client population (open-loop
// Poisson arrivals with rate phases, closed-loop clients with think time), and the
// pipeline: which keel policies in which order, with keel's own option types.
// Plain aggregates; validate() rejects a bad scenario naming the field.
#pragma once

#include <keel/detail/validate.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/ops/probe.hpp>
#include <keel/policy/backoff.hpp>
#include <keel/policy/bulkhead.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/retry_budget.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <variant>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace sim {

using std::chrono::nanoseconds;

/// Enumerates the service-time distributions of a modelled instance.
enum class distribution : std::uint8_t {
    constant = 0,    ///< Every call takes the mean.
    exponential = 1, ///< Exponential with the mean (an M/M/c server).
    lognormal = 2,   ///< Log-normal with the mean and `sigma` (long-tailed, as real services).
};

/// Describes how long one call keeps a server busy.
struct service_time {
    distribution shape = distribution::exponential;   ///< Default exponential (M/M/c).
    nanoseconds mean = std::chrono::milliseconds{10}; ///< Default 10 ms; > 0.
    double sigma = 0.5; ///< Log-normal shape (standard deviation of the log); default 0.5; > 0.
};

/// Enumerates how a down instance answers.
enum class down_mode : std::uint8_t {
    refused = 0, ///< At once, with a connection error (a dead process, a closed port).
    hung = 1,    ///< Never: calls wait until their deadline, probes until their timeout.
};

/// Enumerates the queue disciplines of an instance.
enum class queue_discipline : std::uint8_t {
    fifo = 0, ///< Oldest first: the usual server, and the one retry storms sustain.
    lifo = 1, ///< Newest first: fresh calls served while the old ones time out (Facebook's
              ///< adaptive LIFO).
};

/// Describes an instance's behaviour from `start` on, until the next phase.
///
/// The named shapes: healthy (the defaults), slow (`latency_factor` > 1), failing
/// x % (`failure_probability` x / 100), down (`down`), flapping (`flap_period` > 0:
/// down and up in turns, starting down) and recovering with limited capacity
/// (`capacity_factor` < 1).
struct phase {
    nanoseconds start{};                 ///< When the phase begins (>= 0).
    std::vector<int> instances{};        ///< Which instances it applies to; empty: all.
    bool down = false;                   ///< The instance does not serve.
    down_mode mode = down_mode::refused; ///< How a down instance answers.
    double failure_probability = 0.0;    ///< Chance a served call fails, in [0, 1].
    double latency_factor = 1.0;         ///< Multiplies service times; > 0.
    double capacity_factor = 1.0;        ///< Multiplies the servers (rounded down), in [0, 1].
    nanoseconds flap_period{};           ///< > 0: down for this long, then up as long, in turns.
};

/// Enumerates how the load balancer picks an instance among those in rotation.
enum class routing : std::uint8_t {
    random = 0,      ///< Uniformly at random: kube-proxy's iptables mode, the default.
    round_robin = 1, ///< In turn (kube-proxy's ipvs default, most proxies). A call and its
                     ///< retry take consecutive turns, which with two instances sends
                     ///< every first attempt to the same one.
};

/// Describes the downstream: identical instances behind a load balancer.
struct downstream_model {
    int instances = 1;                   ///< Default 1; >= 1.
    routing balancing = routing::random; ///< Default random, as kube-proxy's iptables mode.
    int servers = 10;                    ///< Calls one instance serves at once; default 10; >= 1.
    /// Calls that may wait for a server per instance; beyond it a call is rejected at
    /// once (an HTTP 503). Default 1000; >= 0.
    int queue_limit = 1000;
    queue_discipline discipline = queue_discipline::fifo; ///< Default fifo.
    service_time service{};                               ///< Default exponential, mean 10 ms.
    /// Failure probability added per unit of overload: a call arriving when the instance
    /// holds `q` calls beyond its servers fails with failure_probability +
    /// load_failure_slope * q / servers (clamped to 1). Default 0.
    double load_failure_slope = 0.0;
    /// Overload, the usual metastable trigger: a call that starts service while at least
    /// `overload_queue` calls wait takes (1 + overload_latency_penalty) times as long
    /// (thrashing caches, GC, contention). Default 0: no penalty.
    double overload_latency_penalty = 0.0;
    int overload_queue = 1; ///< See above; default 1; >= 1.
    /// Drop calls whose caller has gone (timed out) before serving them, as a server
    /// that checks propagated deadlines does. Default false: most servers do the work
    /// anyway, which is what sustains a retry storm.
    bool drop_abandoned = false;
    std::vector<phase> phases{}; ///< Scripted phases; before the first: healthy.
};

/// Configures the readiness probes and the load balancer that routes by them.
///
/// Each instance is probed every `probe.period`, the first probe at `first_probe`
/// plus `stagger` times its index. A probe fails when the instance is down
/// (refused: at once; hung: after probe.timeout). After probe.failure_threshold
/// failures in a row the balancer takes the instance out of rotation, after
/// probe.success_threshold successes it puts it back (Kubernetes readiness). The
/// balancer sends each call to the next instance in rotation (round robin); with
/// none, the call fails at once (no healthy upstream).
struct probe_model {
    ops::probe_config probe{}; ///< Kubernetes defaults: period 10 s, timeout 1 s, threshold 3.
    nanoseconds first_probe{}; ///< Time of the first probe of instance 0 (>= 0).
    nanoseconds stagger{};     ///< Offset between instances' probe times (>= 0).
};

/// Enumerates how a client group issues calls.
enum class arrival : std::uint8_t {
    open = 0,   ///< Poisson arrivals at a rate, whatever the answers (users, upstream traffic).
    closed = 1, ///< Each client calls, waits for the answer, thinks, calls again.
};

/// Changes an open-loop group's rate from `start` on.
struct rate_phase {
    nanoseconds start{}; ///< When the rate applies (>= 0).
    double rate = 0.0;   ///< Calls per second, >= 0.
};

/// Describes a group of clients that share a pipeline configuration.
struct client_group {
    std::string name = "clients"; ///< Shown in reports.
    arrival kind = arrival::open; ///< Default open loop.
    /// Open loop: the group's total rate in calls per second before any rate phase.
    double rate = 100.0;
    std::vector<rate_phase> rate_phases{}; ///< Open loop: later rates, by start time.
    int count = 1; ///< Clients in the group; >= 1 (open loop: calls go to one at random).
    nanoseconds think_time{};    ///< Closed loop: mean pause between calls (exponential); >= 0.
    bool constant_think = false; ///< Closed loop: pause exactly think_time.
    /// Gives each client its own breaker, budget, bulkhead and limiter (a client-side
    /// breaker per process); default false: the group shares one set (one service).
    bool per_client_objects = false;
};

/// The circuit-breaker stage: keel::guard(breaker), any failure a failure.
struct breaker_stage {
    circuit_breaker_options options{}; ///< keel's defaults.
};

/// The retry stage: keel::retry with keel::on_failure, with an optional budget.
struct retry_stage {
    int max_attempts = 3;                         ///< As keel::retry_options.
    nanoseconds max_duration{};                   ///< As keel::retry_options.
    keel::backoff backoff = exponential{};        ///< As keel::retry_options.
    keel::jitter jitter = jitter::full;           ///< As keel::retry_options.
    bool honor_retry_after = true;                ///< As keel::retry_options.
    std::optional<retry_budget_options> budget{}; ///< A shared keel::retry_budget, if any.
};

/// The timeout stage: keel::timeout{duration}.
struct timeout_stage {
    nanoseconds duration = std::chrono::seconds{1}; ///< In (0, 1 year], as keel::timeout.
};

/// The bulkhead stage: keel::guard(bulkhead), with an optional queue.
struct bulkhead_stage {
    int max_concurrent_calls = 25; ///< As keel::bulkhead_options.
    int max_queued_calls = 0;      ///< As keel::bulkhead_options (0: reject at once).
    nanoseconds max_wait{};        ///< As keel::bulkhead_options (> 0 with a queue).
};

/// The rate-limit stage: keel::guard(bucket, {.max_wait}) over a keel::token_bucket.
struct rate_limit_stage {
    token_bucket_options bucket{.rate = 100}; ///< The bucket.
    /// Default 0 (reject at once, as keel::rate_limit_options); >= 0. The longest a
    /// call waits for its permit, as keel::rate_limit_options::max_wait.
    nanoseconds max_wait{};
};

/// One policy of a pipeline.
using stage =
    std::variant<breaker_stage, retry_stage, timeout_stage, bulkhead_stage, rate_limit_stage>;

/// Describes a whole simulation.
struct scenario {
    std::string name = "scenario";                   ///< Shown in reports.
    std::uint64_t seed = 1;                          ///< Same seed, same result, to the byte.
    nanoseconds duration = std::chrono::seconds{60}; ///< Calls start before it; > 0.
    /// After `duration`, calls in flight get this long to finish (none start). Default 0.
    nanoseconds drain{};
    nanoseconds interval = std::chrono::seconds{1}; ///< Width of the series' intervals; > 0.
    downstream_model downstream{};
    std::optional<probe_model> probes{}; ///< Empty: every instance is always in rotation.
    std::vector<client_group> clients{client_group{}}; ///< At least one group.
    std::vector<stage> pipeline{}; ///< Outermost first, as keel::resilient's arguments.
    /// When the outage begins, for detection times; default: the first phase's start.
    std::optional<nanoseconds> outage_start{};
    /// When the outage ends, for recovery times; default: the first phase after
    /// outage_start that is healthy, or the end of a client rate spike.
    std::optional<nanoseconds> outage_end{};
};

/// Throws std::invalid_argument ("keel::sim::scenario: <field> must be <range>, got
/// <value>") when a field is outside its documented range. The policies' own options
/// are checked by their constructors when the simulation builds them.
inline void validate(scenario const& s) {
    constexpr std::string_view c = "keel::sim::scenario";
    using keel::detail::invalid_option;
    if (s.duration <= nanoseconds::zero()) {
        invalid_option(c, "duration", "> 0", s.duration);
    }
    if (s.drain < nanoseconds::zero()) {
        invalid_option(c, "drain", ">= 0", s.drain);
    }
    if (s.interval <= nanoseconds::zero()) {
        invalid_option(c, "interval", "> 0", s.interval);
    }
    if (s.duration / s.interval > 1'000'000) {
        invalid_option(c, "interval", "at least duration / 1000000", s.interval);
    }
    auto const& d = s.downstream;
    if (d.instances < 1 || d.instances > 10'000) {
        invalid_option(c, "downstream.instances", "in [1, 10000]", d.instances);
    }
    if (d.servers < 1) {
        invalid_option(c, "downstream.servers", ">= 1", d.servers);
    }
    if (d.queue_limit < 0) {
        invalid_option(c, "downstream.queue_limit", ">= 0", d.queue_limit);
    }
    if (d.service.mean <= nanoseconds::zero()) {
        invalid_option(c, "downstream.service.mean", "> 0", d.service.mean);
    }
    if (!(d.service.sigma > 0.0 && d.service.sigma <= 10.0)) {
        invalid_option(c, "downstream.service.sigma", "in (0, 10]", d.service.sigma);
    }
    if (!(d.load_failure_slope >= 0.0 && d.load_failure_slope <= 1e6)) {
        invalid_option(c, "downstream.load_failure_slope", "in [0, 1e6]", d.load_failure_slope);
    }
    if (!(d.overload_latency_penalty >= 0.0 && d.overload_latency_penalty <= 1e3)) {
        invalid_option(c, "downstream.overload_latency_penalty", "in [0, 1000]",
                       d.overload_latency_penalty);
    }
    if (d.overload_queue < 1) {
        invalid_option(c, "downstream.overload_queue", ">= 1", d.overload_queue);
    }
    for (auto const& p : d.phases) {
        if (p.start < nanoseconds::zero()) {
            invalid_option(c, "downstream.phases[].start", ">= 0", p.start);
        }
        for (int i : p.instances) {
            if (i < 0 || i >= d.instances) {
                invalid_option(c, "downstream.phases[].instances[]", "an instance index", i);
            }
        }
        if (!(p.failure_probability >= 0.0 && p.failure_probability <= 1.0)) {
            invalid_option(c, "downstream.phases[].failure_probability", "in [0, 1]",
                           p.failure_probability);
        }
        if (!(p.latency_factor > 0.0 && p.latency_factor <= 1e6)) {
            invalid_option(c, "downstream.phases[].latency_factor", "in (0, 1e6]",
                           p.latency_factor);
        }
        if (!(p.capacity_factor >= 0.0 && p.capacity_factor <= 1.0)) {
            invalid_option(c, "downstream.phases[].capacity_factor", "in [0, 1]",
                           p.capacity_factor);
        }
        if (p.flap_period < nanoseconds::zero()) {
            invalid_option(c, "downstream.phases[].flap_period", ">= 0", p.flap_period);
        }
    }
    if (s.probes) {
        s.probes->probe.validate();
        if (s.probes->first_probe < nanoseconds::zero()) {
            invalid_option(c, "probes.first_probe", ">= 0", s.probes->first_probe);
        }
        if (s.probes->stagger < nanoseconds::zero()) {
            invalid_option(c, "probes.stagger", ">= 0", s.probes->stagger);
        }
    }
    if (s.clients.empty()) {
        keel::detail::invalid_configuration(c, "clients must hold at least one group");
    }
    for (auto const& g : s.clients) {
        if (g.count < 1 || g.count > 1'000'000) {
            invalid_option(c, "clients[].count", "in [1, 1000000]", g.count);
        }
        if (!(g.rate >= 0.0 && g.rate <= 1e9)) {
            invalid_option(c, "clients[].rate", "in [0, 1e9]", g.rate);
        }
        for (auto const& r : g.rate_phases) {
            if (!(r.rate >= 0.0 && r.rate <= 1e9)) {
                invalid_option(c, "clients[].rate_phases[].rate", "in [0, 1e9]", r.rate);
            }
            if (r.start < nanoseconds::zero()) {
                invalid_option(c, "clients[].rate_phases[].start", ">= 0", r.start);
            }
        }
        if (g.think_time < nanoseconds::zero()) {
            invalid_option(c, "clients[].think_time", ">= 0", g.think_time);
        }
        // A closed-loop client answered in no time would call again at the same
        // instant forever.
        if (g.kind == arrival::closed && g.think_time <= nanoseconds::zero()) {
            invalid_option(c, "clients[].think_time", "> 0 for a closed-loop group", g.think_time);
        }
    }
}

} // namespace sim

KEEL_END_NAMESPACE
