// SPDX-License-Identifier: MIT
#include <keel/policy/adaptive_limit.hpp>

#include <keel/resilient.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <queue>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
using limit_type =
    keel::basic_adaptive_limit<keel::manual_clock, keel::virtual_sleeper, keel::xoshiro256ss>;

struct fixture {
    keel::manual_clock clock;
    limit_type limit;
    explicit fixture(keel::adaptive_limit_options o)
        : limit{std::move(o), clock, keel::virtual_sleeper{clock}, keel::xoshiro256ss{11}} {}
};

// A fixed AIMD limit: min == max, so the limit never moves.
keel::adaptive_limit_options fixed(int n) {
    return {.algorithm = keel::aimd_options{.initial_limit = n, .min_limit = n, .max_limit = n}};
}
} // namespace

TEST_CASE("adaptive_limit: admits up to the limit and each permit remembers its in-flight count",
          "[adaptive_limit]") {
    fixture f{fixed(2)};
    auto a = f.limit.try_acquire();
    auto b = f.limit.try_acquire();
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a.in_flight() == 1);
    CHECK(b.in_flight() == 2);
    CHECK_FALSE(f.limit.try_acquire());
    CHECK(f.limit.snapshot().in_flight == 2);
    a.ignore();
    CHECK_FALSE(a);
    CHECK(f.limit.snapshot().in_flight == 1);
    auto c = f.limit.try_acquire();
    CHECK(c.in_flight() == 2);
    {
        auto moved = std::move(c);
        CHECK_FALSE(c); // NOLINT(bugprone-use-after-move): moved-from permits are empty
    }                   // destroying a permit ignores it
    CHECK(f.limit.snapshot().in_flight == 1);
    limit_type::permit out;
    CHECK(f.limit.acquire(out) == std::error_code{});
    CHECK(f.limit.snapshot().in_flight == 2);
    limit_type::permit none;
    CHECK(f.limit.acquire(none) == keel::errc::bulkhead_full);
}

TEST_CASE("adaptive_limit: a window of more than 10 samples past its end feeds the algorithm once",
          "[adaptive_limit]") {
    fixture f{{.algorithm = keel::aimd_options{.initial_limit = 20},
               .window = {.min_window = 100ms, .max_window = 100ms}}};
    std::vector<limit_type::permit> held;
    for (int i = 0; i < 11; ++i) {
        held.push_back(f.limit.try_acquire());
    }
    f.clock.advance(5ms);
    for (auto& p : held) {
        p.success(); // 11 samples of 5 ms with up to 11 in flight: 11 x 2 >= 20
    }
    CHECK(f.limit.limit() == 21);
    held.clear();
    // The next window ends 100 ms later (clamp(2 x 5 ms, 100ms, 100ms)).
    for (int i = 0; i < 11; ++i) {
        held.push_back(f.limit.try_acquire());
    }
    f.clock.advance(5ms);
    for (auto& p : held) {
        p.success();
    }
    CHECK(f.limit.limit() == 21);
    f.clock.advance(100ms);
    f.limit.poll();
    CHECK(f.limit.limit() == 22);
}

TEST_CASE("adaptive_limit: dropped calls lower an AIMD limit, fast samples are ignored",
          "[adaptive_limit]") {
    fixture f{{.algorithm = keel::aimd_options{.initial_limit = 30, .min_limit = 1},
               .window = {.min_window = 100ms, .max_window = 100ms}}};
    for (int i = 0; i < 20; ++i) {
        auto p = f.limit.try_acquire();
        f.clock.advance(50us); // below min_rtt_threshold (100us): not a sample
        p.success();
    }
    CHECK(f.limit.limit() == 30);
    std::vector<limit_type::permit> held;
    for (int i = 0; i < 12; ++i) {
        held.push_back(f.limit.try_acquire());
    }
    f.clock.advance(1ms);
    held[0].dropped();
    for (std::size_t i = 1; i < held.size(); ++i) {
        held[i].success();
    }
    CHECK(f.limit.limit() == 27);
}

TEST_CASE("adaptive_limit: partitions are guaranteed their share and borrow what is free",
          "[adaptive_limit]") {
    auto o = fixed(10);
    o.partitions = {{"live", 0.8}, {"batch", 0.2}};
    fixture f{o};
    auto const live = f.limit.partition("live");
    auto const batch = f.limit.partition("batch");
    CHECK(f.limit.partition("other") == limit_type::no_partition);
    CHECK(f.limit.partition_limit(live) == 8);
    CHECK(f.limit.partition_limit(batch) == 2);
    std::vector<limit_type::permit> held;
    for (int i = 0; i < 10; ++i) { // batch borrows the whole limit while live is idle
        held.push_back(f.limit.try_acquire(batch));
        REQUIRE(held.back());
    }
    CHECK_FALSE(f.limit.try_acquire(batch));
    CHECK_FALSE(f.limit.try_acquire()); // unpartitioned traffic uses only what is left
    // live is below its share: admitted even though the total is at the limit
    // (AbstractPartitionedLimiter: reject only if the total is at the limit AND the
    // partition exceeds its share)
    for (int i = 0; i < 8; ++i) {
        held.push_back(f.limit.try_acquire(live));
        REQUIRE(held.back());
    }
    CHECK_FALSE(f.limit.try_acquire(live));
    CHECK(f.limit.snapshot().in_flight == 18);
    held.clear();
    CHECK(f.limit.snapshot().in_flight == 0);
    CHECK(f.limit.try_acquire());
}

TEST_CASE("adaptive_limit: a queued call gives up after max_wait in virtual time",
          "[adaptive_limit]") {
    auto o = fixed(1);
    o.queue = {.max_queued = 2, .max_wait = 50ms};
    fixture f{o};
    auto held = f.limit.try_acquire();
    REQUIRE(held);
    limit_type::permit p;
    auto const start = f.clock.now();
    CHECK(f.limit.acquire(p) == keel::errc::bulkhead_full);
    CHECK(f.clock.now() - start == 50ms);
    CHECK(f.limit.snapshot().queued == 0);
}

TEST_CASE("adaptive_limit: a released slot goes to the queued call", "[adaptive_limit]") {
    auto o = fixed(1);
    o.queue = {.max_queued = 2, .max_wait = 1s};
    fixture f{o};
    auto held = f.limit.try_acquire();
    // Completed by a timer while the next call waits in virtual time.
    f.clock.call_at(f.clock.now() + 20ms, [&] { held.success(); });
    limit_type::permit p;
    CHECK(f.limit.acquire(p) == std::error_code{});
    CHECK(p);
    CHECK(f.clock.now() == keel::manual_clock::time_point{20ms});
    CHECK(f.limit.snapshot().in_flight == 1);
}

TEST_CASE("adaptive_limit: a queued call stops waiting when its stop token fires",
          "[adaptive_limit]") {
    auto o = fixed(1);
    o.queue = {.max_queued = 2, .max_wait = 1s};
    fixture f{o};
    auto held = f.limit.try_acquire();
    std::stop_source stop;
    f.clock.call_at(f.clock.now() + 10ms, [&] { stop.request_stop(); });
    limit_type::permit p;
    CHECK(f.limit.acquire(p, stop.get_token()) == keel::errc::cancelled);
    CHECK(f.limit.snapshot().queued == 0);
}

TEST_CASE("adaptive_limit: the asynchronous waiter API queues, is woken by release, and claims",
          "[adaptive_limit]") {
    auto o = fixed(1);
    o.queue = {.max_queued = 1, .max_wait = 1s};
    fixture f{o};
    auto held = f.limit.try_acquire();
    int woken = 0;
    keel::detail::limit_waiter w;
    w.context = &woken;
    w.wake = [](keel::detail::limit_waiter& self) noexcept { ++*static_cast<int*>(self.context); };
    CHECK(f.limit.try_enqueue(w) == limit_type::enqueue_result::queued);
    keel::detail::limit_waiter full;
    CHECK(f.limit.try_enqueue(full) == limit_type::enqueue_result::rejected);
    CHECK_FALSE(f.limit.try_acquire()); // a newcomer does not overtake the queue
    f.clock.advance(3ms);
    held.success();
    CHECK(woken == 1);
    CHECK(w.status == keel::detail::limit_waiter::state::granted);
    CHECK(f.limit.cancel(w)); // granted: the caller must claim
    auto p = f.limit.claim(w);
    CHECK(p);
    CHECK(f.limit.snapshot().in_flight == 1);
    CHECK(f.limit.snapshot().queued == 0);
}

TEST_CASE("adaptive_limit: under overload the queue serves the newest call and expires old ones",
          "[adaptive_limit]") {
    auto o = fixed(1);
    o.queue = {.max_queued = 3, .max_wait = 10s};
    fixture f{o};
    std::vector<int> order;
    std::vector<keel::detail::limit_waiter> w(4);
    for (std::size_t i = 0; i < w.size(); ++i) {
        w[i].context = &order;
        w[i].partition = limit_type::no_partition;
        w[i].wake = [](keel::detail::limit_waiter& self) noexcept {
            (void)self; // the test reads status
        };
    }
    auto held = f.limit.try_acquire();
    REQUIRE(f.limit.try_enqueue(w[0]) == limit_type::enqueue_result::queued);
    f.clock.advance(30ms);
    held.success(); // w[0] waited 30 ms: first of an interval, granted; its minimum is 30 ms
    REQUIRE(w[0].status == keel::detail::limit_waiter::state::granted);
    auto p0 = f.limit.claim(w[0]);
    REQUIRE(f.limit.try_enqueue(w[1]) == limit_type::enqueue_result::queued);
    f.clock.advance(100ms);
    REQUIRE(f.limit.try_enqueue(w[2]) == limit_type::enqueue_result::queued);
    f.clock.advance(1ms);
    p0.success(); // a new interval: overloaded; w[1] is first of it and granted
    CHECK(w[1].status == keel::detail::limit_waiter::state::granted);
    CHECK(f.limit.snapshot().overloaded);
    auto p1 = f.limit.claim(w[1]);
    REQUIRE(f.limit.try_enqueue(w[3]) == limit_type::enqueue_result::queued);
    f.clock.advance(1ms);
    p1.success(); // LIFO: w[3] (1 ms) before w[2] (2 ms)
    CHECK(w[3].status == keel::detail::limit_waiter::state::granted);
    CHECK(w[2].status == keel::detail::limit_waiter::state::waiting);
    auto p3 = f.limit.claim(w[3]);
    f.clock.advance(20ms);
    p3.success(); // w[2] has waited 22 ms > 2 x 5 ms while overloaded: expired
    CHECK(w[2].status == keel::detail::limit_waiter::state::expired);
    CHECK(f.limit.snapshot().in_flight == 0);
}

TEST_CASE("adaptive_limit: guard(limit) samples successes, drops timeouts and rejects when full",
          "[adaptive_limit]") {
    fixture f{{.algorithm = keel::aimd_options{.initial_limit = 30, .min_limit = 1},
               .window = {.min_window = 100ms, .max_window = 100ms}}};
    bool fail = false;
    auto call = keel::resilient{[&]() -> int {
                                    f.clock.advance(1ms);
                                    if (fail) {
                                        throw keel::timeout_expired{};
                                    }
                                    return 7;
                                },
                                keel::guard(f.limit)};
    for (int i = 0; i < 11; ++i) {
        CHECK(call() == 7);
    }
    CHECK(f.limit.limit() == 30); // one in flight at a time: app-limited, no growth
    f.clock.advance(100ms);
    fail = true;
    for (int i = 0; i < 11; ++i) {
        CHECK(call.try_call().error() == keel::errc::timeout);
    }
    fail = false;
    for (int i = 0; i < 11; ++i) {
        CHECK(call() == 7); // the window closes: a drop in it backs off
    }
    CHECK(f.limit.limit() == 27);
    std::vector<limit_type::permit> held;
    while (auto p = f.limit.try_acquire()) {
        held.push_back(std::move(p));
    }
    CHECK(call.try_call().error() == keel::errc::bulkhead_full);
    CHECK_THROWS_AS(call(), keel::bulkhead_full);
}

TEST_CASE("adaptive_limit: guard(limit, {.partition}) admits in that partition",
          "[adaptive_limit]") {
    auto o = fixed(2);
    o.partitions = {{"live", 0.5}, {"batch", 0.5}};
    fixture f{o};
    auto live = keel::resilient{[&] { return f.limit.snapshot().in_flight; },
                                keel::guard(f.limit, {.partition = "live"})};
    auto batch_held = f.limit.try_acquire(f.limit.partition("batch"));
    auto batch_held2 = f.limit.try_acquire(f.limit.partition("batch"));
    REQUIRE(batch_held2);
    CHECK(live() == 3); // live's guaranteed slot, above the total limit
    CHECK_THROWS_WITH(keel::guard(f.limit, {.partition = "nope"}),
                      "keel::guard(adaptive_limit): partition must be a partition of the limit, "
                      "got \"nope\"");
    auto classified = keel::resilient{[] { return 503; }, keel::guard(f.limit, [](auto const&) {
                                          return keel::limit_result::dropped;
                                      })};
    batch_held.ignore();
    CHECK(classified() == 503);
}

TEST_CASE("adaptive_limit: rejects invalid options naming the field and range",
          "[adaptive_limit]") {
    auto const make = [](keel::adaptive_limit_options o) { fixture f{std::move(o)}; };
    CHECK_THROWS_WITH(make({.window = {.min_window = 50ms}}),
                      "keel::adaptive_limit: window.min_window must be >= 100ms, got 50ms");
    CHECK_THROWS_WITH(make({.window = {.window_size = 5}}),
                      "keel::adaptive_limit: window.window_size must be >= 10, got 5");
    CHECK_THROWS_WITH(make({.window = {.min_window = 2s, .max_window = 1s}}),
                      "keel::adaptive_limit: window.max_window must be >= window.min_window, "
                      "got 1s");
    CHECK_THROWS_WITH(make({.window = {.percentile = 1.5}}),
                      "keel::adaptive_limit: window.percentile must be 0 or in (0, 1], got 1.5");
    CHECK_THROWS_WITH(make({.queue = {.max_queued = -1}}),
                      "keel::adaptive_limit: queue.max_queued must be >= 0, got -1");
    CHECK_THROWS_WITH(make({.queue = {.max_queued = 1, .max_wait = 0s}}),
                      "keel::adaptive_limit: queue.max_wait must be > 0 when queue.max_queued > "
                      "0, got 0s");
    CHECK_THROWS_WITH(make({.queue = {.codel_target = 100ms, .codel_interval = 100ms}}),
                      "keel::adaptive_limit: queue.codel_interval must be > queue.codel_target, "
                      "got 100ms");
    CHECK_THROWS_WITH(make({.partitions = {{"a", 0.7}, {"b", 0.7}}}),
                      "keel::adaptive_limit: the sum of partition shares must be <= 1, got 1.4");
    CHECK_THROWS_WITH(make({.partitions = {{"a", 0}}}),
                      "keel::adaptive_limit: partitions[a].share must be in (0, 1], got 0.0");
    CHECK_THROWS_WITH(make({.algorithm = keel::gradient2_options{.rtt_tolerance = 0.5}}),
                      "keel::gradient2_limit: rtt_tolerance must be >= 1, got 0.5");
}

TEST_CASE("adaptive_limit: defaults follow concurrency-limits (Gradient2, WindowedLimit) and folly",
          "[adaptive_limit]") {
    keel::adaptive_limit_options const o;
    CHECK(std::holds_alternative<keel::gradient2_options>(o.algorithm));
    CHECK(o.window.min_window == 1s);
    CHECK(o.window.max_window == 1s);
    CHECK(o.window.window_size == 10);
    CHECK(o.window.min_rtt_threshold == 100us);
    CHECK(o.queue.max_queued == 0);
    CHECK(o.queue.max_wait == 1s);
    CHECK(o.queue.codel_target == 5ms);
    CHECK(o.queue.codel_interval == 100ms);
    keel::adaptive_limit real;
    CHECK(real.limit() == 20);
}

TEST_CASE("adaptive_limit: never more calls in flight than the limit under threads",
          "[adaptive_limit][concurrency]") {
    keel::adaptive_limit limit{fixed(4)};
    std::atomic<int> inside{0};
    std::atomic<int> worst{0};
    std::atomic<int> admitted{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; ++t) {
        pool.emplace_back([&] {
            for (int i = 0; i < 20'000; ++i) {
                if (auto p = limit.try_acquire()) {
                    int const now = inside.fetch_add(1) + 1;
                    int seen = worst.load();
                    while (now > seen && !worst.compare_exchange_weak(seen, now)) {
                    }
                    admitted.fetch_add(1);
                    inside.fetch_sub(1);
                    p.success();
                }
            }
        });
    }
    for (auto& th : pool) {
        th.join();
    }
    CHECK(worst.load() <= 4);
    CHECK(admitted.load() > 0);
    CHECK(limit.snapshot().in_flight == 0);
}

TEST_CASE("adaptive_limit: the limit adapts while threads acquire and complete",
          "[adaptive_limit][concurrency]") {
    keel::adaptive_limit limit{
        {.algorithm = keel::gradient2_options{.initial_limit = 8, .min_limit = 2, .max_limit = 64},
         .window = {.min_window = 100ms, .max_window = 100ms, .min_rtt_threshold = 0ns}}};
    std::atomic<bool> stop{false};
    std::atomic<int> worst{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; ++t) {
        pool.emplace_back([&] {
            while (!stop.load()) {
                if (auto p = limit.try_acquire()) {
                    int const seen = p.in_flight();
                    int worst_seen = worst.load();
                    while (seen > worst_seen && !worst.compare_exchange_weak(worst_seen, seen)) {
                    }
                    p.success();
                }
            }
        });
    }
    std::this_thread::sleep_for(250ms);
    stop = true;
    for (auto& th : pool) {
        th.join();
    }
    CHECK(worst.load() <= 64);
    CHECK(limit.snapshot().in_flight == 0);
    CHECK(limit.limit() >= 2);
    CHECK(limit.limit() <= 64);
}

TEST_CASE("adaptive_limit: queued waiters are granted or time out under threads",
          "[adaptive_limit][concurrency]") {
    keel::adaptive_limit limit{[] {
        auto o = fixed(2);
        o.queue = {.max_queued = 8, .max_wait = 20ms};
        return o;
    }()};
    std::atomic<int> inside{0};
    std::atomic<int> worst{0};
    std::atomic<int> granted{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; ++t) {
        pool.emplace_back([&] {
            for (int i = 0; i < 300; ++i) {
                keel::adaptive_limit::permit p;
                if (limit.acquire(p) == std::error_code{}) {
                    int const now = inside.fetch_add(1) + 1;
                    int seen = worst.load();
                    while (now > seen && !worst.compare_exchange_weak(seen, now)) {
                    }
                    granted.fetch_add(1);
                    inside.fetch_sub(1);
                    p.success();
                }
            }
        });
    }
    for (auto& th : pool) {
        th.join();
    }
    CHECK(worst.load() <= 2);
    CHECK(granted.load() > 0);
    CHECK(limit.snapshot().in_flight == 0);
    CHECK(limit.snapshot().queued == 0);
}

// ---------------------------------------------------------------------------------------------
// The proof: the downstream is an M/M/c queue (c servers, exponential service of mean 1/mu,
// an unbounded FIFO queue) driven by Poisson arrivals on the manual clock. Clients give up
// after a timeout (the call is then "dropped"; the server still does the work, as a real one
// would). Capacity C = c x mu. Offered load: 0.5 C, then 2 C (the overload), then 0.5 C.

namespace {
using ns = std::chrono::nanoseconds;

struct scenario {
    int servers = 20;
    ns service_mean = 10ms; // no-load RTT (the "min-RTT" of the bounds below)
    ns client_timeout = 100ms;
    ns window = 100ms;
    struct phase {
        ns duration;
        double offered; // as a multiple of C
    };
    std::vector<phase> phases{{2s, 0.5}, {6s, 2.0}, {3s, 0.5}};
    std::uint64_t seed = 42;

    double capacity_rps() const {
        return servers / (static_cast<double>(service_mean.count()) * 1e-9);
    }
};

struct phase_result {
    double goodput_rps = 0; // calls completed within the client timeout, per second
    double p99_ms = 0;      // over admitted calls; a timed-out call counts as the timeout
    double rejected_share = 0;
};

struct run_result {
    std::vector<phase_result> phases;
    std::vector<int> limit_per_window; // the limit at each window's end (adaptive only)
    std::vector<double> goodput_per_window;
};

// An admission control the simulation drives: the adaptive limit, a fixed bulkhead, or none.
struct admission {
    virtual ~admission() = default;
    virtual bool admit(std::size_t id) = 0;
    virtual void complete(std::size_t id, bool dropped) = 0;
    virtual int limit() const = 0;
};

struct adaptive_admission final : admission {
    explicit adaptive_admission(keel::manual_clock clock, keel::adaptive_limit_options o)
        : limit_(std::move(o), clock, keel::virtual_sleeper{clock}, keel::xoshiro256ss{3}) {}
    bool admit(std::size_t id) override {
        auto p = limit_.try_acquire();
        if (!p) {
            return false;
        }
        if (permits.size() <= id) {
            permits.resize(id + 1);
        }
        permits[id] = std::move(p);
        return true;
    }
    void complete(std::size_t id, bool dropped) override {
        if (dropped) {
            permits[id].dropped();
        } else {
            permits[id].success();
        }
    }
    int limit() const override { return limit_.limit(); }
    limit_type limit_;
    std::vector<limit_type::permit> permits;
};

struct fixed_admission final : admission {
    explicit fixed_admission(int n) : n_(n) {}
    bool admit(std::size_t) override {
        return n_ == 0 || in_flight < n_ ? (++in_flight, true) : false;
    }
    void complete(std::size_t, bool) override { --in_flight; }
    int limit() const override { return n_; }
    int n_;
    int in_flight = 0;
};

run_result simulate(scenario const& s, keel::manual_clock clock, admission& adm) {
    enum class kind { arrival, service_done, timeout };
    struct event {
        std::int64_t at;
        std::uint64_t seq;
        kind what;
        std::size_t id;
        bool operator>(event const& o) const { return at != o.at ? at > o.at : seq > o.seq; }
    };
    struct request {
        std::int64_t start = 0;
        bool admitted = false;
        bool finished = false; // completed or timed out (the client's view)
    };
    keel::xoshiro256ss rng{s.seed};
    auto const exp_ns = [&](double mean_ns) {
        return static_cast<std::int64_t>(-std::log(1.0 - keel::uniform_unit(rng)) * mean_ns) + 1;
    };
    std::priority_queue<event, std::vector<event>, std::greater<>> events;
    std::uint64_t seq = 0;
    std::vector<request> requests;
    std::queue<std::size_t> waiting; // the downstream's FIFO
    int busy = 0;
    double const c_rps = s.capacity_rps();
    auto const t0 = clock.now().time_since_epoch().count();
    std::vector<std::int64_t> phase_end;
    std::int64_t acc = t0;
    for (auto const& p : s.phases) {
        acc += p.duration.count();
        phase_end.push_back(acc);
    }
    auto const phase_of = [&](std::int64_t t) {
        std::size_t i = 0;
        while (i + 1 < phase_end.size() && t >= phase_end[i]) {
            ++i;
        }
        return i;
    };
    struct tally {
        std::int64_t good = 0;
        std::int64_t rejected = 0;
        std::int64_t offered = 0;
        std::vector<double> latencies_ms;
    };
    std::vector<tally> tallies(s.phases.size());
    run_result out;
    std::int64_t next_window = t0 + s.window.count();
    std::int64_t window_good = 0;

    auto const start_service = [&](std::int64_t now, std::size_t id) {
        ++busy;
        events.push({now + exp_ns(static_cast<double>(s.service_mean.count())), seq++,
                     kind::service_done, id});
    };
    auto const finish = [&](std::int64_t now, std::size_t id, bool dropped) {
        auto& r = requests[id];
        r.finished = true;
        auto& t = tallies[phase_of(r.start)];
        t.latencies_ms.push_back(static_cast<double>(now - r.start) * 1e-6);
        if (!dropped) {
            ++t.good;
            ++window_good;
        }
        adm.complete(id, dropped);
    };
    events.push({t0 + exp_ns(1e9 / (c_rps * s.phases[0].offered)), seq++, kind::arrival, 0});
    while (!events.empty()) {
        event const e = events.top();
        events.pop();
        while (e.at >= next_window) { // sample the limit at each window boundary
            out.limit_per_window.push_back(adm.limit());
            out.goodput_per_window.push_back(static_cast<double>(window_good) /
                                             (static_cast<double>(s.window.count()) * 1e-9));
            window_good = 0;
            next_window += s.window.count();
        }
        clock.set(keel::manual_clock::time_point{ns{e.at}});
        switch (e.what) {
        case kind::arrival: {
            std::size_t const id = requests.size();
            requests.push_back({e.at, false, false});
            auto& t = tallies[phase_of(e.at)];
            ++t.offered;
            if (adm.admit(id)) {
                requests[id].admitted = true;
                if (busy < s.servers) {
                    start_service(e.at, id);
                } else {
                    waiting.push(id);
                }
                events.push({e.at + s.client_timeout.count(), seq++, kind::timeout, id});
            } else {
                ++t.rejected;
            }
            std::int64_t const next =
                e.at + exp_ns(1e9 / (c_rps * s.phases[phase_of(e.at)].offered));
            if (next < phase_end.back()) {
                events.push({next, seq++, kind::arrival, 0});
            }
            break;
        }
        case kind::service_done:
            --busy;
            if (!waiting.empty()) {
                start_service(e.at, waiting.front());
                waiting.pop();
            }
            if (!requests[e.id].finished) {
                finish(e.at, e.id, false);
            }
            break;
        case kind::timeout:
            if (!requests[e.id].finished) {
                finish(e.at, e.id, true);
            }
            break;
        }
    }
    for (std::size_t i = 0; i < s.phases.size(); ++i) {
        auto& t = tallies[i];
        phase_result r;
        r.goodput_rps = static_cast<double>(t.good) /
                        (static_cast<double>(s.phases[i].duration.count()) * 1e-9);
        std::sort(t.latencies_ms.begin(), t.latencies_ms.end());
        if (!t.latencies_ms.empty()) {
            r.p99_ms = t.latencies_ms[static_cast<std::size_t>(std::ceil(
                                          0.99 * static_cast<double>(t.latencies_ms.size()))) -
                                      1];
        }
        r.rejected_share =
            t.offered == 0 ? 0 : static_cast<double>(t.rejected) / static_cast<double>(t.offered);
        out.phases.push_back(r);
    }
    return out;
}

keel::adaptive_limit_options proof_options(scenario const& s) {
    return {.algorithm =
                keel::gradient2_options{.initial_limit = 10, .min_limit = 1, .max_limit = 200},
            .window = {.min_window = s.window, .max_window = s.window}};
}

} // namespace

namespace {
// Writes the side-by-side chart of docs/adaptive_concurrency.md: goodput (% of C) and the limit per
// window.
std::string svg_chart(scenario const& s,
                      std::vector<std::pair<std::string, run_result>> const& runs) {
    constexpr int width = 900;
    constexpr int panel = 220;
    constexpr int left = 60;
    constexpr int top = 30;
    constexpr int gap = 60;
    char const* const colors[] = {"#1b9e77", "#d95f02", "#7570b3", "#e7298a",
                                  "#66a61e", "#e6ab02", "#a6761d", "#666666"};
    std::size_t const windows = runs.front().second.goodput_per_window.size();
    double const plot_w = width - left - 170;
    auto const x = [&](std::size_t i) {
        return left + plot_w * static_cast<double>(i) / static_cast<double>(windows - 1);
    };
    std::ostringstream svg;
    svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\""
        << top + 2 * panel + gap + 40 << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
        << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    auto const axes = [&](int y0, char const* title, double max, char const* unit) {
        svg << "<text x=\"" << left << "\" y=\"" << y0 - 10 << "\" font-weight=\"bold\">" << title
            << "</text>\n";
        for (int k = 0; k <= 4; ++k) {
            double const y = y0 + panel - panel * k / 4.0;
            svg << "<line x1=\"" << left << "\" x2=\"" << left + plot_w << "\" y1=\"" << y
                << "\" y2=\"" << y << "\" stroke=\"#ddd\"/>\n<text x=\"" << left - 6 << "\" y=\""
                << y + 4 << "\" text-anchor=\"end\">" << max * k / 4 << unit << "</text>\n";
        }
        // the overload phase, shaded
        double const start = static_cast<double>(s.phases[0].duration / s.window);
        double const end = start + static_cast<double>(s.phases[1].duration / s.window);
        svg << "<rect x=\"" << x(static_cast<std::size_t>(start)) << "\" y=\"" << y0
            << "\" width=\""
            << x(static_cast<std::size_t>(end)) - x(static_cast<std::size_t>(start))
            << "\" height=\"" << panel << "\" fill=\"#f3e0e0\" opacity=\"0.6\"/>\n";
    };
    auto const line = [&](int y0, std::vector<double> const& v, double max, char const* color) {
        svg << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.5\" points=\"";
        for (std::size_t i = 0; i < v.size() && i < windows; ++i) {
            double const y = y0 + panel - panel * std::min(v[i], max) / max;
            svg << x(i) << ',' << y << ' ';
        }
        svg << "\"/>\n";
    };
    int const y1 = top;
    int const y2 = top + panel + gap;
    axes(y1, "Goodput per 100 ms window (% of capacity C); shaded: offered 2 C", 120, "%");
    axes(y2, "Concurrency limit", 100, "");
    double const c_rps = s.capacity_rps();
    for (std::size_t r = 0; r < runs.size(); ++r) {
        auto const& [name, run] = runs[r];
        std::vector<double> good;
        for (double g : run.goodput_per_window) {
            good.push_back(100 * g / c_rps);
        }
        line(y1, good, 120, colors[r % 8]);
        std::vector<double> lim(run.limit_per_window.begin(), run.limit_per_window.end());
        if (name != "no limit") {
            line(y2, lim, 100, colors[r % 8]);
        }
        svg << "<rect x=\"" << left + plot_w + 15 << "\" y=\"" << top + 18 * static_cast<int>(r)
            << "\" width=\"12\" height=\"3\" fill=\"" << colors[r % 8] << "\"/><text x=\""
            << left + plot_w + 32 << "\" y=\"" << top + 5 + 18 * static_cast<int>(r) << "\">"
            << name << "</text>\n";
    }
    svg << "<text x=\"" << left << "\" y=\"" << y2 + panel + 30 << "\">time (s): 0 to "
        << static_cast<double>(windows) / 10 << "; M/M/" << s.servers << ", mean service "
        << s.service_mean.count() / 1'000'000 << " ms, client timeout "
        << s.client_timeout.count() / 1'000'000 << " ms</text>\n</svg>\n";
    return svg.str();
}
} // namespace

TEST_CASE("adaptive_limit: on an M/M/c downstream offered 2 C, the limit settles, keeps goodput "
          "and latency, and rises back, fixed bulkheads 4x off and no limit do not",
          "[adaptive_limit][proof]") {
    scenario const s;
    double const c_rps = s.capacity_rps(); // 2000 calls/s: 20 servers, 10 ms each
    double const min_rtt_ms = static_cast<double>(s.service_mean.count()) * 1e-6;
    double const window_ms = static_cast<double>(s.window.count()) * 1e-6;
    auto const run_adaptive = [&](keel::limit_algorithm algorithm) {
        keel::manual_clock clock;
        auto o = proof_options(s);
        o.algorithm = std::move(algorithm);
        adaptive_admission adm{clock, std::move(o)};
        return simulate(s, clock, adm);
    };
    auto const run_fixed = [&](int n) {
        fixed_admission adm{n};
        return simulate(s, keel::manual_clock{}, adm);
    };
    auto const g2 = run_adaptive(proof_options(s).algorithm);
    std::size_t const overload_begin = static_cast<std::size_t>(s.phases[0].duration / s.window);
    std::size_t const overload_end =
        overload_begin + static_cast<std::size_t>(s.phases[1].duration / s.window);
    REQUIRE(g2.limit_per_window.size() >= overload_end + 10);

    // Settles: from some window within 10 of the overload's start to its end, the limit stays
    // within 20 % of its median over the overload's second half.
    std::vector<int> late(g2.limit_per_window.begin() +
                              static_cast<std::ptrdiff_t>((overload_begin + overload_end) / 2),
                          g2.limit_per_window.begin() + static_cast<std::ptrdiff_t>(overload_end));
    std::nth_element(late.begin(), late.begin() + static_cast<std::ptrdiff_t>(late.size() / 2),
                     late.end());
    double const settled = late[late.size() / 2];
    std::size_t settle = overload_end;
    for (std::size_t w = overload_end; w-- > overload_begin;) {
        if (std::abs(g2.limit_per_window[w] - settled) > 0.2 * settled) {
            break;
        }
        settle = w;
    }
    CHECK(settle - overload_begin <= 10);
    // Goodput at least 90 % of C; p99 at most 2 x min-RTT plus one window.
    CHECK(g2.phases[1].goodput_rps >= 0.9 * c_rps);
    CHECK(g2.phases[1].p99_ms <= 2 * min_rtt_ms + window_ms);
    // After the overload the limit rises back (no lower than during it).
    CHECK(g2.limit_per_window.back() >= settled);
    CHECK(g2.phases[2].goodput_rps >= 0.95 * 0.5 * c_rps);

    // Side by side in the same scenario.
    auto const too_large = run_fixed(4 * s.servers); // 4x the no-queue concurrency C x RTT
    auto const too_small = run_fixed(s.servers / 4);
    auto const none = run_fixed(0);
    CHECK(too_large.phases[1].p99_ms > g2.phases[1].p99_ms); // queueing inflates latency
    CHECK(too_small.phases[1].goodput_rps < 0.3 * c_rps);    // capacity left unused
    CHECK(none.phases[1].goodput_rps < 0.1 * c_rps);         // everything times out
    CHECK(none.phases[2].goodput_rps < 0.1 * c_rps); // and the backlog outlives the overload

    if (char const* out =
            std::getenv("KEEL_ADAPTIVE_DOCS")) { // regenerates docs/adaptive_concurrency.md's data
        std::vector<std::pair<std::string, run_result>> runs{
            {"gradient2", g2},
            {"vegas", run_adaptive(keel::vegas_options{.initial_limit = 10})},
            {"aimd (timeout 50 ms)", run_adaptive(keel::aimd_options{
                                         .initial_limit = 10, .min_limit = 1, .timeout = 50ms})},
            {"envoy gradient",
             run_adaptive(keel::gradient_controller_options{.min_concurrency = 5})},
            {"fixed 80 (4x too large)", too_large},
            {"fixed 5 (4x too small)", too_small},
            {"no limit", none}};
        std::ofstream{std::string{out} + ".svg"} << svg_chart(s, runs);
        std::ofstream table{std::string{out} + ".md"};
        table << "| admission | goodput during 2 C | p99 during 2 C | shed during 2 C | goodput "
                 "after |\n"
                 "|---|---|---|---|---|\n";
        for (auto const& [name, r] : runs) {
            char row[256];
            std::snprintf(row, sizeof row,
                          "| %s | %.0f %% of C | %.0f ms | %.0f %% | %.0f %% of C |\n",
                          name.c_str(), 100 * r.phases[1].goodput_rps / c_rps, r.phases[1].p99_ms,
                          100 * r.phases[1].rejected_share, 100 * r.phases[2].goodput_rps / c_rps);
            table << row;
        }
    }
}
