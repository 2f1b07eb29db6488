// SPDX-License-Identifier: MIT
#include <keel/fmt.hpp>
#include <keel/ops/drain.hpp>
#include <keel/ops/health.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

using namespace std::chrono_literals;
using keel::ops::drain_phase;
using hook_result = keel::ops::hook_report::result;

namespace {

using virtual_drain = keel::ops::basic_drain_coordinator<keel::manual_clock, keel::virtual_sleeper>;

struct virtual_fixture {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};

    virtual_drain make(keel::ops::drain_options options = {}) {
        return virtual_drain{options, clock, sleeper};
    }
    std::chrono::nanoseconds now() const { return clock.now().time_since_epoch(); }
};

} // namespace

TEST_CASE("drain_coordinator::try_enter grants tickets and counts them until released", "[drain]") {
    keel::ops::drain_coordinator drain;
    CHECK(drain.in_flight() == 0);
    {
        auto first = drain.try_enter();
        auto second = drain.try_enter();
        CHECK(first);
        CHECK(second.admitted());
        CHECK(drain.in_flight() == 2);
        CHECK(drain.admitted() == 2);
        first.release();
        CHECK_FALSE(first);
        CHECK(drain.in_flight() == 1);
        auto moved = std::move(second);
        CHECK_FALSE(second); // NOLINT(bugprone-use-after-move): moved-from state is specified
        CHECK(drain.in_flight() == 1);
    }
    CHECK(drain.in_flight() == 0);
    CHECK(drain.admitted() == 2);
    CHECK_FALSE(drain.draining());
}

TEST_CASE("drain_phase has a name, also through fmt", "[drain]") {
    CHECK(keel::ops::to_string(drain_phase::mark_not_ready) == "mark_not_ready");
    CHECK(keel::ops::to_string(drain_phase::close_resources) == "close_resources");
    CHECK(fmt::format("{}", drain_phase::drain_in_flight) == "drain_in_flight");
}

TEST_CASE("drain_coordinator rejects options outside their documented ranges", "[drain]") {
    using keel::ops::drain_options;
    CHECK_THROWS_WITH(keel::ops::drain_coordinator(drain_options{.total_budget = 0s}),
                      "keel::ops::drain_coordinator: total_budget must be > 0, got 0s");
    CHECK_THROWS_WITH(keel::ops::drain_coordinator(drain_options{.pre_stop_delay = -1ns}),
                      "keel::ops::drain_coordinator: pre_stop_delay must be >= 0, got -1ns");
    CHECK_THROWS_WITH(keel::ops::drain_coordinator(drain_options{.in_flight_budget = -1ns}),
                      "keel::ops::drain_coordinator: in_flight_budget must be >= 0, got -1ns");
    CHECK_THROWS_WITH(keel::ops::drain_coordinator(drain_options{.flush_budget = -2ns}),
                      "keel::ops::drain_coordinator: flush_budget must be >= 0, got -2ns");
    CHECK_NOTHROW(keel::ops::drain_coordinator(drain_options{.pre_stop_delay = 0s}));
}

TEST_CASE("drain_options defaults fit inside Kubernetes' 30 s grace period", "[drain]") {
    keel::ops::drain_options const o;
    CHECK(o.total_budget == 28s);
    CHECK(o.pre_stop_delay == 5s);
    CHECK(o.pre_stop_delay + o.stop_accepting_budget + o.in_flight_budget + o.close_budget +
              o.flush_budget ==
          o.total_budget);
    CHECK(o.total_budget < 30s);
}

TEST_CASE("drain_coordinator::shutdown with nothing in flight waits only the pre-stop delay",
          "[drain]") {
    virtual_fixture f;
    auto drain = f.make();
    auto const report = drain.shutdown();
    CHECK(f.now() == 5s);
    CHECK(report.total == 5s);
    CHECK(report[drain_phase::mark_not_ready].elapsed == 5s);
    CHECK(report[drain_phase::mark_not_ready].budget == 5s);
    CHECK(report[drain_phase::stop_accepting].started == 5s);
    CHECK(report[drain_phase::drain_in_flight].elapsed == 0s);
    CHECK(report[drain_phase::drain_in_flight].budget == 15s);
    CHECK(report.in_flight_at_drain == 0);
    CHECK(report.in_flight_abandoned == 0);
    CHECK(report.clean());
    CHECK(report.exit_code() == 0);
    CHECK(drain.draining());
    CHECK_FALSE(drain.try_enter());
    for (std::size_t i = 0; i < report.phases.size(); ++i) {
        CHECK(report.phases[i].phase == static_cast<drain_phase>(i));
    }
}

TEST_CASE("drain_coordinator keeps granting tickets during the pre-stop delay and waits for them",
          "[drain]") {
    virtual_fixture f;
    auto drain = f.make();
    std::vector<std::string> log;
    drain.on_not_ready([&] { log.push_back("not ready at " + std::to_string(f.now() / 1ms)); });
    auto held = drain.try_enter();
    keel::ops::drain_ticket during_delay;
    keel::ops::drain_ticket after_delay;
    f.clock.call_at(f.clock.now() + 2s, [&] { during_delay = drain.try_enter(); });
    f.clock.call_at(f.clock.now() + 6s, [&] { after_delay = drain.try_enter(); });
    f.clock.call_at(f.clock.now() + 7s, [&] { held.release(); });
    f.clock.call_at(f.clock.now() + 8s, [&] {
        CHECK(during_delay);
        during_delay.release();
    });
    auto const report = drain.shutdown();

    CHECK(log == std::vector<std::string>{"not ready at 0"});
    CHECK_FALSE(after_delay); // refused: new work is refused from 5 s on
    CHECK(report.admitted == 2);
    CHECK(report.in_flight_at_drain == 2);
    CHECK(report[drain_phase::stop_accepting].started == 5s);
    CHECK(report[drain_phase::drain_in_flight].elapsed == 3s);
    CHECK(report.total == 8s);
    CHECK(report.clean());
    CHECK(drain.in_flight() == 0);
}

TEST_CASE("drain_coordinator::attach fails a health registry's readiness before the pre-stop "
          "delay, while tickets are still granted",
          "[drain]") {
    virtual_fixture f;
    keel::ops::basic_health_registry<keel::manual_clock, keel::virtual_sleeper> health{
        {}, f.clock, f.sleeper};
    health.mark_started();
    REQUIRE(health.readiness().status == keel::ops::health_status::pass);
    auto drain = f.make({.pre_stop_delay = 5s});
    drain.attach(health, "shutting down");
    std::optional<keel::ops::health_report> during_delay;
    bool admitted_during_delay = false;
    f.clock.call_at(f.clock.now() + 1s, [&] {
        during_delay = health.readiness();
        admitted_during_delay = static_cast<bool>(drain.try_enter());
    });
    auto const report = drain.shutdown();
    REQUIRE(during_delay);
    CHECK(during_delay->status == keel::ops::health_status::fail);
    CHECK(during_delay->http_status() == 503);
    CHECK(during_delay->output.find("shutting down") != std::string::npos);
    CHECK(admitted_during_delay);
    CHECK(health.liveness().status == keel::ops::health_status::pass);
    CHECK(report.clean());
}

TEST_CASE("drain_coordinator::shutdown ends the in-flight wait when the last ticket is released",
          "[drain]") {
    virtual_fixture f;
    auto drain = f.make({.pre_stop_delay = 1s});
    auto ticket = drain.try_enter();
    f.clock.call_at(f.clock.now() + 4s, [&] { ticket.release(); });
    auto const report = drain.shutdown();
    CHECK(report[drain_phase::drain_in_flight].started == 1s);
    CHECK(report[drain_phase::drain_in_flight].elapsed == 3s);
    CHECK_FALSE(report[drain_phase::drain_in_flight].timed_out);
    CHECK(report.in_flight_at_drain == 1);
    CHECK(report.in_flight_abandoned == 0);
    CHECK(report.total == 4s);
    CHECK(report.exit_code() == 0);
}

TEST_CASE("drain_coordinator::shutdown reports work still in flight when its budget runs out",
          "[drain]") {
    virtual_fixture f;
    auto drain = f.make({.pre_stop_delay = 0s, .in_flight_budget = 10s});
    auto stuck = drain.try_enter();
    auto quick = drain.try_enter();
    f.clock.call_at(f.clock.now() + 1s, [&] { quick.release(); });
    auto const report = drain.shutdown();
    CHECK(report[drain_phase::drain_in_flight].elapsed == 10s);
    CHECK(report[drain_phase::drain_in_flight].timed_out);
    CHECK(report.in_flight_at_drain == 2);
    CHECK(report.in_flight_abandoned == 1);
    CHECK_FALSE(report.clean());
    CHECK(report.exit_code() == 1);
    CHECK(f.now() == 10s);
}

TEST_CASE("drain_coordinator clips each phase to what remains of the total budget", "[drain]") {
    virtual_fixture f;
    auto drain = f.make({.total_budget = 8s, .pre_stop_delay = 5s, .in_flight_budget = 15s});
    auto stuck = drain.try_enter();
    drain.on_close("pool", [](std::stop_token) {});
    auto const report = drain.shutdown();
    CHECK(report[drain_phase::drain_in_flight].budget == 3s);
    CHECK(report[drain_phase::drain_in_flight].elapsed == 3s);
    CHECK(report[drain_phase::close_resources].budget == 0s);
    CHECK(report[drain_phase::flush].budget == 0s);
    CHECK(report.total == 8s);
    CHECK(report.in_flight_abandoned == 1);
    // A hook with no budget left is still started (and reported), just not waited for.
    REQUIRE(report.hooks.size() == 1);
    CHECK(report.hooks[0].name == "pool");
}

TEST_CASE("drain_coordinator abandons a close hook that outlives its budget", "[drain]") {
    virtual_fixture f;
    auto drain = f.make({.pre_stop_delay = 0s, .close_budget = 5s});
    auto gate = std::make_shared<std::latch>(1);
    auto saw_stop = std::make_shared<std::atomic<bool>>(false);
    auto finished = std::make_shared<std::atomic<bool>>(false);
    drain.on_close("stuck pool", [gate, saw_stop, finished](std::stop_token token) {
        gate->wait();
        saw_stop->store(token.stop_requested());
        finished->store(true);
    });
    auto const report = drain.shutdown();
    CHECK(report[drain_phase::close_resources].elapsed == 5s);
    CHECK(report[drain_phase::close_resources].timed_out);
    REQUIRE(report.hooks.size() == 1);
    CHECK(report.hooks[0].phase == drain_phase::close_resources);
    CHECK(report.hooks[0].outcome == hook_result::timed_out);
    CHECK(report.exit_code() == 1);
    gate->count_down();
    while (!finished->load()) {
        std::this_thread::sleep_for(1ms);
    }
    CHECK(saw_stop->load()); // the hook's stop token fired when its budget ran out
}

TEST_CASE("drain_coordinator runs close hooks concurrently and hooks of each phase in order",
          "[drain][concurrency]") {
    keel::ops::drain_coordinator drain{
        {.total_budget = 20s, .pre_stop_delay = 0s, .close_budget = 10s, .flush_budget = 10s}};
    std::mutex mutex;
    std::vector<std::string> log;
    auto note = [&](std::string s) {
        std::lock_guard lock{mutex};
        log.push_back(std::move(s));
    };
    // Each close hook waits for the other: sequential hooks would never finish.
    std::latch both{2};
    drain.on_flush("metrics", [&](std::stop_token) { note("flush"); });
    drain.on_close("db", [&](std::stop_token) {
        both.arrive_and_wait();
        note("close");
    });
    drain.on_close("cache", [&](std::stop_token) {
        both.arrive_and_wait();
        note("close");
    });
    drain.on_stop_accepting("listener", [&](std::stop_token) { note("stop accepting"); });
    drain.on_not_ready([&] { note("not ready"); });
    auto const report = drain.shutdown();
    CHECK(log ==
          std::vector<std::string>{"not ready", "stop accepting", "close", "close", "flush"});
    CHECK(report.clean());
    REQUIRE(report.hooks.size() == 5);
    CHECK(report.hooks[0].name == "not_ready");
    CHECK(report.hooks[0].phase == drain_phase::mark_not_ready);
    CHECK(report.hooks[1].name == "listener");
    CHECK(report.hooks[2].name == "db");
    CHECK(report.hooks[3].name == "cache");
    CHECK(report.hooks[4].name == "metrics");
    CHECK(report.hooks[4].phase == drain_phase::flush);
    CHECK(report[drain_phase::close_resources].elapsed < 10s);
}

TEST_CASE("drain_coordinator reports a hook that throws and carries on", "[drain]") {
    keel::ops::drain_coordinator drain{{.pre_stop_delay = 0s}};
    std::atomic<bool> flushed{false};
    drain.on_not_ready([] { throw std::runtime_error{"readiness"}; });
    drain.on_close("pool", [](std::stop_token) { throw std::runtime_error{"close failed"}; });
    drain.on_flush("log", [&](std::stop_token) { flushed = true; });
    auto const report = drain.shutdown();
    CHECK(flushed);
    REQUIRE(report.hooks.size() == 3);
    CHECK(report.hooks[0].phase == drain_phase::mark_not_ready);
    CHECK(report.hooks[0].outcome == hook_result::threw);
    CHECK(report.hooks[1].name == "pool");
    CHECK(report.hooks[1].outcome == hook_result::threw);
    CHECK(report.hooks[2].outcome == hook_result::completed);
    CHECK_FALSE(report[drain_phase::close_resources].timed_out);
    CHECK(report.exit_code() == 1);
}

TEST_CASE("drain_coordinator::shutdown called twice runs the phases once", "[drain]") {
    virtual_fixture f;
    auto drain = f.make({.pre_stop_delay = 2s});
    int not_ready_calls = 0;
    drain.on_not_ready([&] { ++not_ready_calls; });
    auto const first = drain.shutdown();
    auto const second = drain.shutdown();
    CHECK(not_ready_calls == 1);
    CHECK(f.now() == 2s);
    CHECK(second.total == first.total);
    CHECK(second.admitted == first.admitted);
    CHECK(drain.shutdown_requested());
}

TEST_CASE("drain_coordinator::shutdown from two threads at once runs once and both get the report",
          "[drain][concurrency]") {
    keel::ops::drain_coordinator drain{{.pre_stop_delay = 20ms, .in_flight_budget = 5s}};
    std::atomic<int> not_ready_calls{0};
    drain.on_not_ready([&] { not_ready_calls.fetch_add(1); });
    auto ticket = drain.try_enter();
    std::optional<keel::ops::drain_report> a;
    std::optional<keel::ops::drain_report> b;
    std::thread first([&] { a = drain.shutdown(); });
    std::thread second([&] { b = drain.shutdown(); });
    while (!drain.draining()) {
        std::this_thread::sleep_for(1ms);
    }
    ticket.release();
    first.join();
    second.join();
    CHECK(not_ready_calls == 1);
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->total == b->total);
    CHECK(a->in_flight_at_drain == 1);
    CHECK(b->in_flight_at_drain == 1);
    CHECK(a->clean());
}

TEST_CASE("drain_coordinator admits nothing after draining begins, under contention",
          "[drain][concurrency]") {
    keel::ops::drain_coordinator drain{{.pre_stop_delay = 5ms, .in_flight_budget = 5s}};
    constexpr int threads = 4;
    std::atomic<std::uint64_t> granted{0};
    std::atomic<std::uint64_t> granted_after_report{0};
    std::atomic<bool> report_done{false};
    std::vector<std::thread> workers;
    for (int i = 0; i < threads; ++i) {
        workers.emplace_back([&] {
            while (!report_done.load()) {
                if (auto ticket = drain.try_enter()) {
                    granted.fetch_add(1);
                    if (report_done.load()) {
                        granted_after_report.fetch_add(1);
                    }
                }
            }
        });
    }
    while (drain.admitted() < 1000) {
        std::this_thread::yield();
    }
    auto const report = drain.shutdown();
    report_done = true;
    for (auto& w : workers) {
        w.join();
    }
    CHECK(report.clean());
    CHECK(report.admitted == granted.load());
    CHECK(granted_after_report.load() == 0);
    CHECK(drain.in_flight() == 0);
    CHECK(drain.admitted() == report.admitted);
}

TEST_CASE("drain_coordinator::attach takes anything with set_not_ready", "[drain]") {
    struct flag {
        std::string reason;
        void set_not_ready(std::string r) { reason = std::move(r); }
    };
    STATIC_REQUIRE(keel::ops::readiness_control<flag>);
    STATIC_REQUIRE(
        keel::ops::readiness_control<keel::ops::basic_health_registry<keel::manual_clock>>);
    STATIC_REQUIRE_FALSE(keel::ops::readiness_control<int>);
    virtual_fixture f;
    flag ready;
    auto drain = f.make({.pre_stop_delay = 0s});
    drain.attach(ready);
    CHECK(drain.shutdown().clean());
    CHECK(ready.reason == "draining");
}

// "Forever" is nanoseconds::max(): deadlines saturate instead of wrapping into the past. The
// clocks start at 100 s so that start + max() would overflow.

TEST_CASE("drain_coordinator with a total budget of nanoseconds::max() is bounded by its phases",
          "[drain]") {
    virtual_fixture f;
    f.clock.set(keel::manual_clock::time_point{100s});
    auto drain = f.make({.total_budget = std::chrono::nanoseconds::max(),
                         .pre_stop_delay = 5s,
                         .in_flight_budget = std::chrono::nanoseconds::max()});
    auto ticket = drain.try_enter();
    f.clock.call_at(f.clock.now() + 24h, [&] { ticket.release(); });
    auto const report = drain.shutdown();
    CHECK(report[drain_phase::mark_not_ready].elapsed == 5s);
    CHECK(report[drain_phase::drain_in_flight].elapsed == 24h - 5s);
    CHECK_FALSE(report[drain_phase::drain_in_flight].timed_out);
    CHECK(report.in_flight_abandoned == 0);
    CHECK(report.clean());
    CHECK(f.now() == 100s + 24h);
}

TEST_CASE("drain_coordinator with a pre-stop delay of nanoseconds::max() waits out the total",
          "[drain]") {
    virtual_fixture f;
    f.clock.set(keel::manual_clock::time_point{100s});
    auto drain = f.make({.total_budget = 8s, .pre_stop_delay = std::chrono::nanoseconds::max()});
    auto const report = drain.shutdown();
    CHECK(report[drain_phase::mark_not_ready].budget == 8s);
    CHECK(report.total == 8s);
}

TEST_CASE("drain_coordinator with hook budgets of nanoseconds::max() waits for the hooks",
          "[drain]") {
    keel::manual_clock clock{keel::manual_clock::time_point{100s}};
    // A real sleeper on a manual clock: the hooks' few real ms end the waits.
    keel::ops::basic_drain_coordinator<keel::manual_clock> drain{
        {.total_budget = std::chrono::nanoseconds::max(),
         .pre_stop_delay = 0s,
         .close_budget = std::chrono::nanoseconds::max(),
         .flush_budget = std::chrono::nanoseconds::max()},
        clock};
    drain.on_close("pool", [](std::stop_token) { std::this_thread::sleep_for(3ms); });
    drain.on_flush("log", [](std::stop_token) { std::this_thread::sleep_for(3ms); });
    auto const report = drain.shutdown();
    REQUIRE(report.hooks.size() == 2);
    CHECK(report.hooks[0].outcome == hook_result::completed);
    CHECK(report.hooks[1].outcome == hook_result::completed);
    CHECK(report.clean());
}

// ---------------------------------------------------------------------------------------------
// A real process: tests/support/drain_child.cpp serves requests until SIGTERM.

namespace {

class child_process {
public:
    explicit child_process(std::string const& mode) {
        int fds[2];
        REQUIRE(::pipe(fds) == 0);
        ::posix_spawn_file_actions_t actions;
        ::posix_spawn_file_actions_init(&actions);
        ::posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
        ::posix_spawn_file_actions_addclose(&actions, fds[0]);
        ::posix_spawn_file_actions_addclose(&actions, fds[1]);
        // The child starts with no signals blocked and SIGTERM at its default action,
        // whatever this test program did, so only its own signal_waiter handles SIGTERM.
        ::posix_spawnattr_t attr;
        ::posix_spawnattr_init(&attr);
        ::sigset_t empty;
        ::sigemptyset(&empty);
        ::sigset_t defaults;
        ::sigemptyset(&defaults);
        ::sigaddset(&defaults, SIGTERM);
        ::sigaddset(&defaults, SIGINT);
        ::posix_spawnattr_setsigmask(&attr, &empty);
        ::posix_spawnattr_setsigdefault(&attr, &defaults);
        ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        std::string path = KEEL_DRAIN_CHILD_PATH;
        std::string arg = mode;
        char* argv[] = {path.data(), arg.data(), nullptr};
        int const rc = ::posix_spawn(&m_pid, path.c_str(), &actions, &attr, argv, environ);
        ::posix_spawn_file_actions_destroy(&actions);
        ::posix_spawnattr_destroy(&attr);
        ::close(fds[1]);
        m_fd = fds[0];
        REQUIRE(rc == 0);
    }
    child_process(child_process const&) = delete;
    child_process& operator=(child_process const&) = delete;
    ~child_process() {
        if (m_pid > 0) {
            ::kill(m_pid, SIGKILL);
            ::waitpid(m_pid, nullptr, 0);
        }
        ::close(m_fd);
    }

    // Returns the next line, or nothing at end of output or after `timeout`.
    std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
        auto const deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            if (auto pos = m_buffer.find('\n'); pos != std::string::npos) {
                std::string line = m_buffer.substr(0, pos);
                m_buffer.erase(0, pos + 1);
                return line;
            }
            auto const left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left <= 0ms) {
                return std::nullopt;
            }
            ::pollfd pfd{m_fd, POLLIN, 0};
            if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
                continue;
            }
            char chunk[512];
            auto const n = ::read(m_fd, chunk, sizeof chunk);
            if (n <= 0) {
                return std::nullopt;
            }
            m_buffer.append(chunk, static_cast<std::size_t>(n));
        }
    }

    // Reads lines until end of output; returns them.
    std::vector<std::string> read_all(std::chrono::milliseconds timeout) {
        std::vector<std::string> lines;
        while (auto line = read_line(timeout)) {
            lines.push_back(*line);
        }
        return lines;
    }

    void signal(int sig) const { ::kill(m_pid, sig); }

    // Waits for the exit; returns the exit code, or -1 if it did not exit normally.
    int wait() {
        int status = 0;
        REQUIRE(::waitpid(m_pid, &status, 0) == m_pid);
        m_pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

private:
    ::pid_t m_pid = -1;
    int m_fd = -1;
    std::string m_buffer;
};

// Parses "word key=value key=value ..." into a map.
std::map<std::string, std::string> fields(std::string const& line) {
    std::map<std::string, std::string> out;
    std::istringstream in{line};
    std::string token;
    in >> token;
    while (in >> token) {
        auto const eq = token.find('=');
        if (eq != std::string::npos) {
            out[token.substr(0, eq)] = token.substr(eq + 1);
        }
    }
    return out;
}

std::string find_line(std::vector<std::string> const& lines, std::string const& prefix) {
    for (auto const& line : lines) {
        if (line.rfind(prefix, 0) == 0) {
            return line;
        }
    }
    return {};
}

std::vector<std::string> phases_in(std::vector<std::string> const& lines) {
    std::vector<std::string> out;
    for (auto const& line : lines) {
        if (line.rfind("phase ", 0) == 0) {
            out.push_back(line.substr(6));
        }
    }
    return out;
}

// Generous: process start-up under sanitizers on a loaded 2-core machine.
constexpr auto startup_timeout = 20000ms;

} // namespace

TEST_CASE("drain_coordinator in a real process drains every accepted request on SIGTERM",
          "[drain][process][concurrency]") {
    child_process child{"clean"};
    REQUIRE(child.read_line(startup_timeout) == "serving");
    child.signal(SIGTERM);
    auto const lines = child.read_all(10000ms);
    int const code = child.wait();
    INFO([&] {
        std::string all;
        for (auto const& l : lines) {
            all += l + "\n";
        }
        return all;
    }());

    CHECK(code == 0);
    CHECK(phases_in(lines) ==
          std::vector<std::string>{"mark_not_ready", "stop_accepting", "close_resources", "flush"});
    auto counts = fields(find_line(lines, "counts "));
    auto report = fields(find_line(lines, "report "));
    REQUIRE(counts.size() == 3);
    REQUIRE(report.size() == 7);
    // Every request accepted before draining completed ...
    CHECK(counts["accepted"] == counts["completed"]);
    // ... and none was accepted after it began: the child's own count of accepted requests
    // equals the tickets the coordinator had granted when it started refusing.
    CHECK(counts["accepted"] == report["admitted"]);
    CHECK(std::stol(counts["accepted"]) > 20);
    CHECK(counts["rejected"] == "4"); // each of the 4 workers stops at its first refusal
    CHECK(std::stol(report["in_flight_at_drain"]) <= 4);
    CHECK(report["abandoned"] == "0");
    CHECK(report["clean"] == "1");
    CHECK(report["timed_out"] == "00000");
    CHECK(std::stol(report["total_ms"]) < 2000);
}

TEST_CASE("drain_coordinator in a real process reports a request that outlives its budget and "
          "still exits within the total budget",
          "[drain][process][concurrency]") {
    child_process child{"stuck"};
    REQUIRE(child.read_line(startup_timeout) == "serving");
    auto const signalled = std::chrono::steady_clock::now();
    child.signal(SIGTERM);
    auto const lines = child.read_all(10000ms);
    int const code = child.wait();
    auto const took = std::chrono::steady_clock::now() - signalled;
    INFO([&] {
        std::string all;
        for (auto const& l : lines) {
            all += l + "\n";
        }
        return all;
    }());

    CHECK(code == 1); // forced, not clean
    CHECK(phases_in(lines) ==
          std::vector<std::string>{"mark_not_ready", "stop_accepting", "close_resources", "flush"});
    auto counts = fields(find_line(lines, "counts "));
    auto report = fields(find_line(lines, "report "));
    REQUIRE(counts.size() == 3);
    REQUIRE(report.size() == 7);
    CHECK(report["abandoned"] == "1");
    CHECK(std::stol(counts["accepted"]) - std::stol(counts["completed"]) == 1);
    CHECK(counts["accepted"] == report["admitted"]);
    CHECK(std::stol(report["in_flight_at_drain"]) >= 1);
    CHECK(report["timed_out"] == "00100");
    CHECK(report["clean"] == "0");
    // The child's total budget is 2 s; the in-flight budget is 200 ms.
    CHECK(std::stol(report["total_ms"]) < 2000);
    CHECK(took < 2000ms + 3000ms); // process exit and scheduling on a loaded machine
}

TEST_CASE("signal_waiter in a real process exits at once on a second SIGTERM",
          "[drain][process][concurrency]") {
    child_process child{"double"};
    REQUIRE(child.read_line(startup_timeout) == "serving");
    auto const signalled = std::chrono::steady_clock::now();
    child.signal(SIGTERM);
    // Wait until the drain is under way (it now waits up to 10 s for the long request) ...
    std::optional<std::string> line;
    do {
        line = child.read_line(10000ms);
    } while (line && *line != "phase stop_accepting");
    REQUIRE(line);
    // ... then ask again, harder.
    child.signal(SIGTERM);
    auto const rest = child.read_all(10000ms);
    int const code = child.wait();
    CHECK(code == 3);
    CHECK(find_line(rest, "report ").empty());
    CHECK(std::chrono::steady_clock::now() - signalled < 8s);
}

TEST_CASE("drain_coordinator::on_phase_end tells each phase's report as it ends, in order",
          "[drain]") {
    virtual_fixture f;
    auto drain = f.make({.pre_stop_delay = 2s, .in_flight_budget = 3s});
    std::vector<keel::ops::phase_report> seen;
    std::vector<std::chrono::nanoseconds> seen_at;
    drain.on_phase_end([&](keel::ops::phase_report const& p) {
        seen.push_back(p);
        seen_at.push_back(f.now());
    });
    drain.on_phase_end([](keel::ops::phase_report const&) { throw std::runtime_error("ignored"); });
    auto ticket = drain.try_enter(); // never released in time: the in-flight phase times out
    auto const report = drain.shutdown();
    REQUIRE(seen.size() == 5);
    for (std::size_t i = 0; i < seen.size(); ++i) {
        CHECK(seen[i].phase == static_cast<keel::ops::drain_phase>(i));
        CHECK(seen[i].elapsed == report.phases[i].elapsed);
        CHECK(seen[i].timed_out == report.phases[i].timed_out);
    }
    CHECK(seen_at[0] == 2s); // told when the pre-stop delay ended, not after the shutdown
    CHECK(seen[2].timed_out);
    CHECK(seen_at[2] == 5s);
    CHECK_FALSE(report.clean());
}
