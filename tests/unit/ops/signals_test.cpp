// SPDX-License-Identifier: MIT
#include <keel/ops/signals.hpp>

#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

using namespace std::chrono_literals;

// Every waiter here blocks SIGTERM/SIGINT in this (single-threaded) test program before any
// other thread exists, as the documentation requires. The forced exit on a second signal
// is proved in a child process by keel_test.ops.drain.

namespace {
void wait_until_count(keel::ops::signal_waiter const& waiter, int n) {
    auto const deadline = std::chrono::steady_clock::now() + 10s;
    while (waiter.count() < n && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
    }
}
} // namespace

TEST_CASE("signal_waiter receives SIGTERM on its own thread and wakes wait()",
          "[signals][concurrency]") {
    std::atomic<int> from_callback{0};
    std::atomic<bool> on_waiter_thread{false};
    auto const main_thread = std::this_thread::get_id();
    keel::ops::signal_waiter waiter{{}, [&](int sig) {
                                        on_waiter_thread =
                                            std::this_thread::get_id() != main_thread;
                                        from_callback = sig;
                                    }};
    CHECK_FALSE(waiter.received());
    CHECK_FALSE(waiter.stop_token().stop_requested());
    REQUIRE(::kill(::getpid(), SIGTERM) == 0);
    CHECK(waiter.wait() == SIGTERM);
    CHECK(waiter.received() == SIGTERM);
    CHECK(waiter.stop_token().stop_requested());
    wait_until_count(waiter, 1);
    CHECK(waiter.count() == 1);
    // The callback ran before or after wait() returned; wait for it, then check it.
    auto const deadline = std::chrono::steady_clock::now() + 10s;
    while (from_callback.load() == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
    }
    CHECK(from_callback.load() == SIGTERM);
    CHECK(on_waiter_thread.load());
}

TEST_CASE("signal_waiter reports SIGINT too", "[signals][concurrency]") {
    keel::ops::signal_waiter waiter;
    REQUIRE(::kill(::getpid(), SIGINT) == 0);
    CHECK(waiter.wait_for(10s) == SIGINT);
}

TEST_CASE("signal_waiter without forced exit counts later signals and keeps the first",
          "[signals][concurrency]") {
    keel::ops::signal_waiter waiter{{.exit_on_second_signal = false}};
    REQUIRE(::kill(::getpid(), SIGTERM) == 0);
    wait_until_count(waiter, 1);
    REQUIRE(::kill(::getpid(), SIGINT) == 0);
    wait_until_count(waiter, 2);
    CHECK(waiter.count() == 2);
    CHECK(waiter.received() == SIGTERM);
}

TEST_CASE("signal_waiter::wait_for times out when no signal comes, and stops cleanly",
          "[signals][concurrency]") {
    keel::ops::signal_waiter waiter;
    CHECK_FALSE(waiter.wait_for(2ms));
    CHECK(waiter.count() == 0);
    // The destructor wakes its own thread without counting it as a signal.
}

TEST_CASE("signal_waiter rejects signals it cannot wait for", "[signals]") {
    CHECK_THROWS_WITH(keel::ops::signal_waiter({.signals = {}}),
                      "keel::ops::signal_waiter: signals must name at least one signal");
    CHECK_THROWS_WITH(keel::ops::signal_waiter({.signals = {SIGTERM, SIGKILL}}),
                      "keel::ops::signal_waiter: signals must be valid and catchable (not "
                      "SIGKILL or SIGSTOP), got 9");
    CHECK_THROWS_AS(keel::ops::signal_waiter({.signals = {100000}}), std::invalid_argument);
    CHECK_THROWS_AS(keel::ops::block_signals({-1}), std::system_error);
}

TEST_CASE("signal_waiter::wait_for(nanoseconds::max()) waits for the signal, not for nothing",
          "[signals][concurrency]") {
    keel::ops::signal_waiter waiter;
    std::thread sender{[] {
        std::this_thread::sleep_for(2ms);
        ::kill(::getpid(), SIGTERM);
    }};
    // "Forever": now() + max() must saturate, not wrap into the past and time out at once.
    CHECK(waiter.wait_for(std::chrono::nanoseconds::max()) == SIGTERM);
    sender.join();
}
