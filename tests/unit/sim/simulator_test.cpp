// SPDX-License-Identifier: MIT
#include <keel/sim/simulator.hpp>

#include <keel/limiter/token_bucket.hpp>
#include <keel/ops/probe.hpp>
#include <keel/resilient.hpp>
#include <keel/sim/report.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <system_error>
#include <tuple>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

// A traced step: kind, time, call, code, and for an ended call its attempts and wait.
using step = std::tuple<keel::sim::trace_event::kind, std::int64_t, std::uint64_t, std::error_code,
                        int, std::int64_t>;
using change =
    std::tuple<std::int64_t, keel::circuit_state, keel::circuit_state, keel::circuit_reason>;

// One closed-loop client calling a single server with a constant 20 ms service
// time: failing from 1 s, hung from 4 s, healthy from 6 s. Nothing queues, so each
// attempt's answer is a function of its start time, which the reference below
// computes the same way.
keel::sim::scenario lone_client(std::vector<keel::sim::stage> pipeline) {
    keel::sim::scenario s;
    s.name = "lone client";
    s.seed = 7;
    s.duration = 8s;
    s.drain = 5s;
    s.downstream.instances = 1;
    s.downstream.servers = 1;
    s.downstream.service = {keel::sim::distribution::constant, 20ms, 0.5};
    s.downstream.phases = {
        keel::sim::phase{.start = 1s, .failure_probability = 1.0},
        keel::sim::phase{.start = 4s, .down = true, .mode = keel::sim::down_mode::hung},
        keel::sim::phase{.start = 6s},
    };
    s.clients = {keel::sim::client_group{.name = "one",
                                         .kind = keel::sim::arrival::closed,
                                         .count = 1,
                                         .think_time = 7ms,
                                         .constant_think = true}};
    s.pipeline = std::move(pipeline);
    return s;
}

keel::circuit_breaker_options const breaker_options{.window_size = 10,
                                                    .minimum_calls = 5,
                                                    .reset_timeout = 300ms,
                                                    .max_reset_timeout = 2s,
                                                    .reset_jitter = 100ms,
                                                    .permitted_calls_in_half_open = 2};
keel::retry_budget_options const budget_options{
    .retry_ratio = 0.5, .min_retries_per_second = 3, .ttl = 1s};

std::uint64_t sum(std::vector<keel::sim::interval_stats> const& series,
                  std::uint64_t keel::sim::interval_stats::*field) {
    std::uint64_t total = 0;
    for (auto const& s : series) {
        total += s.*field;
    }
    return total;
}

// The reference: a closed-loop client of keel::resilient on a manual clock and a
// virtual sleeper, whose call advances the clock by the downstream's answer time
// exactly as lone_client's downstream answers (and hangs until the deadline's stop
// token when the instance is hung), recording the same steps as the trace.
struct reference_client {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    std::vector<step> steps;
    std::vector<change> changes;
    std::uint64_t call_number = 0;

    std::int64_t now() const { return clock.now().time_since_epoch().count(); }

    keel::outcome<void> downstream(keel::basic_context<keel::manual_clock> const& ctx) {
        using keel::sim::trace_event;
        steps.emplace_back(trace_event::kind::attempt, now(), call_number, std::error_code{}, 0, 0);
        nanoseconds const start = clock.now().time_since_epoch();
        std::error_code answer;
        bool const hung = (start >= 4s && start < 6s) || (start < 4s && start + 20ms >= 4s);
        if (hung) {
            clock.advance_to(keel::manual_clock::time_point::max(), ctx.stop_token());
            answer = keel::sim::errc::abandoned;
        } else {
            clock.advance_to(clock.now() + 20ms, ctx.stop_token());
            if (ctx.stop_requested()) {
                answer = keel::sim::errc::abandoned; // an outer deadline cut it short
            } else if (start >= 1s && start < 4s) {
                answer = keel::sim::errc::server_error;
            }
        }
        steps.emplace_back(trace_event::kind::answered, now(), call_number, answer, 0, 0);
        return answer ? keel::outcome<void>{keel::failure{answer}} : keel::outcome<void>{};
    }

    template <class Breaker>
    void watch(Breaker& breaker) {
        breaker.on_transition([this](auto const& t) {
            changes.emplace_back(t.when.time_since_epoch().count(), t.from, t.to, t.why);
        });
    }

    // Calls through `pipeline` until `duration`, thinking 7 ms before each call.
    template <class Pipeline>
    void run(Pipeline& pipeline, nanoseconds duration) {
        clock.advance(7ms);
        while (clock.now().time_since_epoch() < duration) {
            auto const r = pipeline.try_call();
            steps.emplace_back(keel::sim::trace_event::kind::ended, now(), call_number,
                               r.has_value() ? std::error_code{} : r.error(), r.attempts(),
                               r.waited().count());
            ++call_number;
            clock.advance(7ms);
        }
    }
};

struct simulated_run {
    keel::sim::result result;
    std::vector<step> steps;
    std::vector<change> changes;
};

simulated_run simulate(keel::sim::scenario const& s) {
    simulated_run out;
    out.result = keel::sim::run(s, [&](keel::sim::trace_event const& e) {
        out.steps.emplace_back(e.what, e.at.count(), e.call, e.code, e.attempts, e.waited.count());
    });
    for (auto const& t : out.result.transitions) {
        out.changes.emplace_back(t.at.count(), t.from, t.to, t.why);
    }
    return out;
}

void require_same_steps(simulated_run const& simulated, reference_client const& reference) {
    auto const& a = reference.steps;
    auto const& b = simulated.steps;
    for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
        INFO("step " << i << " at " << std::get<1>(a[i]) << " ns, simulated at "
                     << std::get<1>(b[i]) << " ns, kinds " << static_cast<int>(std::get<0>(a[i]))
                     << " and " << static_cast<int>(std::get<0>(b[i])) << ", codes "
                     << std::get<3>(a[i]).message() << " and " << std::get<3>(b[i]).message()
                     << ", attempts " << std::get<4>(a[i]) << " and " << std::get<4>(b[i])
                     << ", waited " << std::get<5>(a[i]) << " and " << std::get<5>(b[i]));
        REQUIRE(b[i] == a[i]);
    }
    CHECK(b.size() == a.size());
    CHECK(simulated.changes == reference.changes);
}

std::uint64_t ended_with(simulated_run const& run, std::error_code code) {
    std::uint64_t n = 0;
    for (auto const& e : run.steps) {
        n += std::get<0>(e) == keel::sim::trace_event::kind::ended && std::get<3>(e) == code;
    }
    return n;
}

} // namespace

TEST_CASE("keel::sim::run: the simulated pipeline decides exactly as keel::resilient on the same "
          "clock values",
          "[sim]") {
    using seeded = keel::xoshiro256ss;
    auto const stream = [](std::uint64_t seed, std::size_t stage) {
        return seeded{keel::sim::derive_seed(seed, keel::sim::stage_stream(0, stage))};
    };
    reference_client reference;
    auto& clock = reference.clock;
    auto const downstream = [&](keel::basic_context<keel::manual_clock> const& ctx) {
        return reference.downstream(ctx);
    };
    keel::basic_retry_options<keel::manual_clock> retry_options{
        .max_attempts = 3,
        .backoff = keel::exponential{10ms, 2.0, 100ms},
        .jitter = keel::jitter::full};
    using sim_retry =
        keel::retry<keel::on_failure, keel::manual_clock, keel::virtual_sleeper, seeded>;

    SECTION("rate limit with a wait, breaker, retry with a budget, bulkhead, timeout") {
        keel::token_bucket_options const bucket_options{.rate = 30, .burst = 2};
        keel::sim::scenario s = lone_client(
            {keel::sim::rate_limit_stage{bucket_options, 12ms},
             keel::sim::breaker_stage{breaker_options},
             keel::sim::retry_stage{.max_attempts = 3,
                                    .backoff = keel::exponential{10ms, 2.0, 100ms},
                                    .jitter = keel::jitter::full,
                                    .budget = budget_options},
             keel::sim::bulkhead_stage{.max_concurrent_calls = 1}, keel::sim::timeout_stage{50ms}});
        auto const simulated = simulate(s);

        keel::basic_token_bucket<keel::manual_clock> bucket{bucket_options, clock};
        keel::rate_limit<keel::basic_token_bucket<keel::manual_clock>, keel::virtual_sleeper> const
            limit{bucket, {.max_wait = 12ms}, reference.sleeper};
        keel::basic_circuit_breaker<keel::manual_clock, seeded> breaker{breaker_options, clock,
                                                                        stream(s.seed, 1)};
        reference.watch(breaker);
        keel::basic_retry_budget<keel::manual_clock> budget{budget_options, clock};
        retry_options.budget = &budget;
        sim_retry const retry{retry_options, keel::on_failure{}, clock, reference.sleeper,
                              stream(s.seed, 2)};
        keel::basic_bulkhead<keel::virtual_sleeper> bulkhead{{.max_concurrent_calls = 1},
                                                             reference.sleeper};
        keel::basic_timeout<keel::manual_clock> const timeout{50ms, clock};
        keel::resilient pipeline{
            downstream, limit, keel::guard(breaker), retry, keel::guard(bulkhead), timeout};
        reference.run(pipeline, s.duration);

        // The run exercised every decision: openings, probes, retries, refusals,
        // timeouts, rate-limit waits and rejections.
        auto const& t = simulated.result.totals;
        CHECK(t.shed > 0);
        CHECK(t.retries > 0);
        CHECK(t.budget_exhausted > 0);
        CHECK(t.timed_out > 0);
        CHECK(t.rate_limited > 0);
        CHECK(simulated.result.transitions.size() >= 4);
        CHECK(std::any_of(simulated.steps.begin(), simulated.steps.end(), [](step const& e) {
            return std::get<0>(e) == keel::sim::trace_event::kind::ended && std::get<5>(e) > 0 &&
                   std::get<4>(e) == 1;
        })); // a call that waited for the bucket, not for a retry
        require_same_steps(simulated, reference);
    }

    SECTION("a timeout around the retry: the deadline ends the schedule") {
        keel::sim::scenario s =
            lone_client({keel::sim::timeout_stage{90ms},
                         keel::sim::retry_stage{.max_attempts = 4,
                                                .backoff = keel::exponential{10ms, 2.0, 100ms},
                                                .jitter = keel::jitter::full},
                         keel::sim::timeout_stage{30ms}});
        // A second server serves the next call while the rest of an attempt the outer
        // deadline cut short runs on (for under 20 ms), so nothing queues here either.
        s.downstream.servers = 2;
        auto const simulated = simulate(s);

        keel::basic_timeout<keel::manual_clock> const outer{90ms, clock};
        retry_options.max_attempts = 4;
        sim_retry const retry{retry_options, keel::on_failure{}, clock, reference.sleeper,
                              stream(s.seed, 1)};
        keel::basic_timeout<keel::manual_clock> const inner{30ms, clock};
        keel::resilient pipeline{downstream, outer, retry, inner};
        reference.run(pipeline, s.duration);

        CHECK(simulated.result.totals.retries > 0);
        // Calls the outer deadline cut short, while failing fast and while hung.
        CHECK(ended_with(simulated, keel::errc::timeout) > 0);
        CHECK(ended_with(simulated, keel::sim::errc::server_error) > 0);
        require_same_steps(simulated, reference);
    }
}

TEST_CASE("keel::sim::run: every call is accounted for once and attempts are calls plus retries",
          "[sim]") {
    auto s = lone_client({});
    s.name = "conservation";
    s.downstream.servers = 20;
    s.downstream.queue_limit = 50;
    s.downstream.service = {keel::sim::distribution::exponential, 10ms, 0.5};
    s.downstream.phases = {keel::sim::phase{.start = 2s, .failure_probability = 0.4},
                           keel::sim::phase{.start = 3s, .latency_factor = 8.0},
                           keel::sim::phase{.start = 4s, .down = true},
                           keel::sim::phase{.start = 5s}};
    s.clients = {keel::sim::client_group{.rate = 1500},
                 keel::sim::client_group{
                     .kind = keel::sim::arrival::closed, .count = 30, .think_time = 20ms}};
    s.drain = 0s; // calls still running at the end stay in flight

    SECTION("retry and timeout: attempts = requests + retries") {
        s.pipeline = {
            keel::sim::retry_stage{.max_attempts = 3, .backoff = keel::exponential{5ms, 2.0, 50ms}},
            keel::sim::timeout_stage{40ms}};
        auto const r = keel::sim::run(s);
        auto const& t = r.totals;
        CHECK(t.requests == t.succeeded + t.failed + t.timed_out + t.shed + t.rate_limited +
                                t.budget_exhausted + t.bulkhead_full + t.in_flight);
        CHECK(t.attempts == t.requests + t.retries);
        CHECK(t.failed > 0);
        CHECK(t.timed_out > 0);
        CHECK(t.retries > 0);
    }
    SECTION("breaker outermost: attempts = requests - shed + retries") {
        s.pipeline = {keel::sim::breaker_stage{{.minimum_calls = 10, .reset_timeout = 500ms}},
                      keel::sim::retry_stage{.max_attempts = 2,
                                             .backoff = keel::constant{5ms},
                                             .budget = keel::retry_budget_options{}},
                      keel::sim::timeout_stage{40ms}};
        auto const r = keel::sim::run(s);
        auto const& t = r.totals;
        CHECK(t.requests == t.succeeded + t.failed + t.timed_out + t.shed + t.rate_limited +
                                t.budget_exhausted + t.bulkhead_full + t.in_flight);
        CHECK(t.attempts == t.requests - t.shed + t.retries);
        CHECK(t.shed > 0);
        // The series add up to the totals.
        using stats = keel::sim::interval_stats;
        CHECK(sum(r.series, &stats::requests) == t.requests);
        CHECK(sum(r.series, &stats::attempts) == t.attempts);
        CHECK(sum(r.series, &stats::succeeded) == t.succeeded);
        CHECK(sum(r.series, &stats::shed) == t.shed);
        CHECK(sum(r.series, &stats::failed) + sum(r.series, &stats::timed_out) +
                  sum(r.series, &stats::budget_exhausted) ==
              t.failed + t.timed_out + t.budget_exhausted);
    }
    SECTION("bulkhead and rate limit reject as keel's do") {
        s.pipeline = {keel::sim::rate_limit_stage{{.rate = 1000, .burst = 50}},
                      keel::sim::bulkhead_stage{.max_concurrent_calls = 15},
                      keel::sim::timeout_stage{40ms}};
        auto const r = keel::sim::run(s);
        auto const& t = r.totals;
        CHECK(t.rate_limited > 0);
        CHECK(t.bulkhead_full > 0);
        CHECK(t.requests == t.succeeded + t.failed + t.timed_out + t.shed + t.rate_limited +
                                t.budget_exhausted + t.bulkhead_full + t.in_flight);
        CHECK(t.attempts == t.requests - t.rate_limited - t.bulkhead_full);
    }

    SECTION("a bulkhead's queue holds calls until a release hands them a slot") {
        s.pipeline = {keel::sim::timeout_stage{40ms},
                      keel::sim::bulkhead_stage{.max_concurrent_calls = 15}};
        auto const unqueued = keel::sim::run(s).totals;
        s.pipeline = {keel::sim::timeout_stage{40ms},
                      keel::sim::bulkhead_stage{
                          .max_concurrent_calls = 15, .max_queued_calls = 30, .max_wait = 5ms}};
        auto const r = keel::sim::run(s);
        auto const& t = r.totals;
        CHECK(t.bulkhead_full > 0);
        CHECK(t.bulkhead_full < unqueued.bulkhead_full);
        CHECK(t.succeeded > unqueued.succeeded);
        CHECK(t.requests == t.succeeded + t.failed + t.timed_out + t.shed + t.rate_limited +
                                t.budget_exhausted + t.bulkhead_full + t.in_flight);
        CHECK(t.attempts <= t.requests - t.bulkhead_full);
        CHECK_THROWS_WITH(
            keel::sim::run(lone_client({keel::sim::bulkhead_stage{.max_queued_calls = 1}})),
            Catch::Contains("max_wait"));
    }
}

TEST_CASE("keel::sim::run: the same seed gives the same bytes, another seed other ones", "[sim]") {
    auto s = lone_client({keel::sim::retry_stage{}, keel::sim::timeout_stage{100ms}});
    s.clients = {keel::sim::client_group{.rate = 300}};
    s.downstream.service.shape = keel::sim::distribution::lognormal;
    auto const text = [](keel::sim::result const& r) {
        return keel::sim::format_summary(r) + keel::sim::format_series(r);
    };
    std::string const first = text(keel::sim::run(s));
    CHECK(text(keel::sim::run(s)) == first);
    s.seed = 8;
    CHECK(text(keel::sim::run(s)) != first);
}

TEST_CASE("keel::sim::run: a readiness probe removes a dead instance within the window "
          "keel::ops::failure_detection_window gives",
          "[sim]") {
    keel::ops::probe_config const probe{};
    auto const window = keel::ops::failure_detection_window(probe);
    REQUIRE(window.earliest == 20s);
    REQUIRE(window.latest == 31s);
    for (auto const mode : {keel::sim::down_mode::refused, keel::sim::down_mode::hung}) {
        nanoseconds earliest = nanoseconds::max();
        nanoseconds latest = nanoseconds::min();
        // The outage starts at ten points of the probe period.
        for (auto offset = 0ms; offset < 10s; offset += 1s) {
            keel::sim::scenario s;
            s.duration = 50s;
            s.downstream.instances = 2;
            s.downstream.phases = {keel::sim::phase{
                .start = 5s + offset + 1ms, .instances = {1}, .down = true, .mode = mode}};
            s.outage_start = 5s + offset + 1ms;
            s.probes = keel::sim::probe_model{.probe = probe, .first_probe = 5s};
            s.clients = {keel::sim::client_group{.rate = 20}};
            s.pipeline = {keel::sim::timeout_stage{1s}};
            auto const r = keel::sim::run(s);
            REQUIRE(r.totals.removal);
            earliest = std::min(earliest, *r.totals.removal);
            latest = std::max(latest, *r.totals.removal);
            REQUIRE(r.rotation.size() == 1);
            CHECK(r.rotation.front().instance == 1);
        }
        CHECK(earliest >= window.earliest);
        CHECK(latest <= window.latest);
        if (mode == keel::sim::down_mode::refused) {
            CHECK(latest == 30s - 1ms); // just after a probe: three more periods
            CHECK(earliest == 21s - 1ms);
        } else {
            CHECK(latest == 31s - 1ms); // the last probe waits out its timeout
        }
    }
}

TEST_CASE("keel::sim::run: with no instance in rotation calls fail at once", "[sim]") {
    keel::sim::scenario s;
    s.duration = 40s;
    s.downstream.phases = {keel::sim::phase{.start = 1s, .down = true}};
    s.probes = keel::sim::probe_model{};
    s.clients = {keel::sim::client_group{.rate = 50}};
    std::vector<keel::sim::trace_event> ends;
    auto const r = keel::sim::run(s, [&](keel::sim::trace_event const& e) {
        if (e.what == keel::sim::trace_event::kind::answered && e.at > 35s) {
            ends.push_back(e);
        }
    });
    REQUIRE(r.totals.removal);
    REQUIRE(!ends.empty());
    for (auto const& e : ends) {
        CHECK(e.code == keel::sim::errc::no_healthy_upstream);
    }
}

TEST_CASE("keel::sim::run: a crash answers the calls in service and queued with a reset", "[sim]") {
    keel::sim::scenario s;
    s.duration = 3s;
    s.downstream.servers = 2;
    s.downstream.service = {keel::sim::distribution::constant, 500ms, 0.5};
    s.downstream.phases = {keel::sim::phase{.start = 1200ms, .down = true}};
    s.clients = {keel::sim::client_group{.rate = 20}};
    std::uint64_t resets_at_crash = 0;
    keel::sim::run(s, [&](keel::sim::trace_event const& e) {
        if (e.what == keel::sim::trace_event::kind::answered && e.at == 1200ms &&
            e.code == keel::sim::errc::connection_refused) {
            ++resets_at_crash;
        }
    });
    CHECK(resets_at_crash > 2); // both calls in service and the queued ones
}

TEST_CASE("keel::sim::run: a hung downstream without a deadline leaves calls in flight, and "
          "the run still ends and frees them",
          "[sim]") {
    keel::sim::scenario s;
    s.duration = 2s;
    s.downstream.phases = {
        keel::sim::phase{.start = 1s, .down = true, .mode = keel::sim::down_mode::hung}};
    s.clients = {keel::sim::client_group{.rate = 100}};
    s.pipeline = {keel::sim::breaker_stage{}, keel::sim::retry_stage{}};
    auto const r = keel::sim::run(s);
    CHECK(r.totals.in_flight > 50);
    CHECK(r.totals.requests == r.totals.succeeded + r.totals.in_flight);
}

TEST_CASE("keel::sim::run: rejects bad scenarios and bad policy options with keel's messages",
          "[sim]") {
    keel::sim::scenario s;
    s.pipeline = {keel::sim::retry_stage{.max_attempts = 0}};
    CHECK_THROWS_WITH(keel::sim::run(s), "keel::retry: max_attempts must be >= 1, got 0");
    s.pipeline = {keel::sim::timeout_stage{0s}};
    CHECK_THROWS_WITH(keel::sim::run(s), Catch::Contains("keel::timeout: duration must be"));
    s.pipeline = {keel::sim::breaker_stage{{.failure_rate_threshold = 0}}};
    CHECK_THROWS_WITH(keel::sim::run(s), Catch::Contains("failure_rate_threshold"));
    s.pipeline = {keel::sim::rate_limit_stage{.max_wait = -1ms}};
    CHECK_THROWS_WITH(keel::sim::run(s), Catch::Contains("keel::rate_limit: max_wait must be"));
    s.pipeline = {};
    s.clients = {keel::sim::client_group{.kind = keel::sim::arrival::closed}};
    CHECK_THROWS_WITH(keel::sim::run(s), Catch::Contains("think_time must be > 0"));
}

TEST_CASE("keel::sim::run: the downstream model's knobs have their documented effect", "[sim]") {
    keel::sim::scenario base;
    base.duration = 6s;
    base.downstream.servers = 10;
    base.downstream.queue_limit = 500;
    base.clients = {keel::sim::client_group{.rate = 1200}}; // 120 % of 1,000 calls/s
    base.pipeline = {keel::sim::timeout_stage{100ms}};

    SECTION("drop_abandoned: less work for callers that left, more served in time") {
        auto const served_anyway = keel::sim::run(base);
        auto s = base;
        s.downstream.drop_abandoned = true;
        auto const dropped = keel::sim::run(s);
        CHECK(served_anyway.totals.abandoned_work > 100);
        CHECK(dropped.totals.abandoned_work <
              served_anyway.totals.abandoned_work); // only those cut short in service
        CHECK(dropped.totals.succeeded > served_anyway.totals.succeeded);
    }
    SECTION("lifo: fresh calls are served while old ones time out") {
        auto s = base;
        s.downstream.discipline = keel::sim::queue_discipline::lifo;
        CHECK(keel::sim::run(s).totals.succeeded > keel::sim::run(base).totals.succeeded);
    }
    SECTION("overload_latency_penalty and load_failure_slope: overload costs more") {
        auto s = base;
        s.clients[0].rate = 950;
        auto const plain = keel::sim::run(s);
        auto penalised = s;
        penalised.downstream.overload_latency_penalty = 0.5;
        penalised.downstream.overload_queue = 5;
        CHECK(keel::sim::run(penalised).totals.timed_out > plain.totals.timed_out);
        auto failing = s;
        failing.downstream.load_failure_slope = 0.05;
        CHECK(keel::sim::run(failing).totals.failed > plain.totals.failed);
    }
    SECTION("capacity_factor and latency_factor lower the capacity in the series") {
        auto s = base;
        s.downstream.phases = {keel::sim::phase{.start = 2s, .capacity_factor = 0.5},
                               keel::sim::phase{.start = 4s, .latency_factor = 4.0}};
        auto const r = keel::sim::run(s);
        CHECK(r.series.at(1).capacity == Approx(1000.0));
        CHECK(r.series.at(3).capacity == Approx(500.0));
        CHECK(r.series.at(5).capacity == Approx(250.0));
    }
    SECTION("flap_period: refused in the down turns, served in the up turns") {
        auto s = base;
        s.clients[0].rate = 200;
        s.downstream.phases = {keel::sim::phase{.start = 1s, .down = true, .flap_period = 500ms},
                               keel::sim::phase{.start = 5s}};
        std::uint64_t refused = 0;
        std::uint64_t misplaced = 0;
        keel::sim::run(s, [&](keel::sim::trace_event const& e) {
            if (e.what != keel::sim::trace_event::kind::answered || e.at < 1s || e.at >= 5s) {
                return;
            }
            bool const down_turn = ((e.at - 1s) / 500ms) % 2 == 0;
            if (e.code == keel::sim::errc::connection_refused) {
                ++refused;
                misplaced += down_turn || e.at % 500ms == 0ns ? 0U : 1U;
            }
        });
        CHECK(refused > 100);
        CHECK(misplaced == 0);
    }
}
