// SPDX-License-Identifier: MIT
#include <keel/ops/detail/bounded_task.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <stop_token>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel::ops::detail::bounded_task;
using keel::ops::detail::task_end;

namespace {

// What a body shares with the test, so a thread left running past the test still owns it.
struct probe {
    std::latch open{1};
    std::atomic<bool> saw_stop{false};
    std::atomic<bool> returned{false};
};

// Waits (really, 1 ms at a time, at most 5 s) for another thread to make `done` true.
template <class Predicate>
bool eventually(Predicate done) {
    for (int i = 0; i < 5000 && !done(); ++i) {
        std::this_thread::sleep_for(1ms);
    }
    return done();
}

} // namespace

TEST_CASE("bounded_task finishes with its body's result and joins the thread", "[bounded_task]") {
    keel::manual_clock clock;
    keel::real_sleeper sleeper;
    bounded_task<int> task;
    CHECK(task.end() == task_end::running);
    CHECK(task.result() == nullptr);
    task.start([](std::stop_token) { return 42; });
    CHECK(task.wait_until(clock, sleeper, keel::manual_clock::time_point::max()));
    CHECK(task.returned());
    CHECK(task.end() == task_end::finished);
    REQUIRE(task.result() != nullptr);
    CHECK(*task.result() == 42);
    CHECK_FALSE(task.expire()); // too late: it finished
    CHECK(*task.result() == 42);
}

TEST_CASE("bounded_task::run_here runs the body on the calling thread", "[bounded_task]") {
    bounded_task<std::thread::id> task;
    task.run_here([](std::stop_token) { return std::this_thread::get_id(); });
    CHECK(task.returned());
    REQUIRE(task.result() != nullptr);
    CHECK(*task.result() == std::this_thread::get_id());
}

TEST_CASE("bounded_task waits in virtual time up to its deadline and then expires",
          "[bounded_task]") {
    keel::manual_clock clock{keel::manual_clock::time_point{100s}};
    keel::virtual_sleeper sleeper{clock};
    auto shared = std::make_shared<probe>();
    {
        bounded_task<int> task;
        task.start([shared](std::stop_token token) {
            shared->open.wait();
            shared->saw_stop = token.stop_requested();
            shared->returned = true;
            return 1;
        });
        CHECK_FALSE(task.wait_until(clock, sleeper, clock.now() + 250ms));
        CHECK(clock.now().time_since_epoch() == 100s + 250ms);
        CHECK(task.expire());
        CHECK_FALSE(task.expire()); // settled once
        task.cancel();
        CHECK(task.end() == task_end::expired);
        CHECK(task.result() == nullptr);
    } // the handle is gone; the hung thread is detached
    shared->open.count_down();
    CHECK(eventually([&] { return shared->returned.load(); }));
    CHECK(shared->saw_stop);
}

TEST_CASE("bounded_task's wait with a deadline already past returns at once", "[bounded_task]") {
    keel::manual_clock clock{keel::manual_clock::time_point{10s}};
    keel::virtual_sleeper sleeper{clock};
    auto shared = std::make_shared<probe>();
    bounded_task<int> task;
    task.start([shared](std::stop_token) {
        shared->open.wait();
        return 1;
    });
    CHECK_FALSE(task.wait_until(clock, sleeper, clock.now() - 1s));
    CHECK(sleeper.sleeps().empty());
    shared->open.count_down();
    keel::real_sleeper real; // a virtual sleep to max() would move the clock there at once
    CHECK(task.wait_until(clock, real, keel::manual_clock::time_point::max()));
}

TEST_CASE("wait_until with a deadline of max() waits for the token, also before the epoch",
          "[bounded_task]") {
    keel::manual_clock clock{keel::manual_clock::time_point{-5s}};
    keel::virtual_sleeper sleeper{clock};
    std::stop_source fired;
    clock.call_at(keel::manual_clock::time_point{3s}, [&] { fired.request_stop(); });
    CHECK(keel::ops::detail::wait_until(clock, sleeper, keel::manual_clock::time_point::max(),
                                        fired.get_token()));
    CHECK(clock.now().time_since_epoch() == 3s);
    REQUIRE(sleeper.sleeps().size() == 1);
    CHECK(sleeper.sleeps()[0] == std::chrono::nanoseconds::max()); // saturated, not wrapped
}

TEST_CASE("bounded_task settles exactly once when it finishes right at its deadline",
          "[bounded_task][concurrency]") {
    // The body is released by a timer at the deadline itself, so its return races the
    // waiter's expiry: whichever wins, the task settles once and the two views agree.
    int finished = 0;
    int expired = 0;
    for (int round = 0; round < 200; ++round) {
        keel::manual_clock clock;
        keel::virtual_sleeper sleeper{clock};
        auto shared = std::make_shared<probe>();
        auto const deadline = clock.now() + 1s;
        clock.call_at(deadline, [shared] { shared->open.count_down(); });
        bounded_task<int> task;
        task.start([shared](std::stop_token) {
            shared->open.wait();
            return 7;
        });
        bool const in_time = task.wait_until(clock, sleeper, deadline);
        CHECK(clock.now() == deadline);
        if (task.expire()) {
            ++expired;
            CHECK(task.result() == nullptr);
            CHECK(task.end() == task_end::expired);
        } else {
            ++finished;
            REQUIRE(task.result() != nullptr);
            CHECK(*task.result() == 7);
        }
        if (in_time) {
            CHECK(task.end() == task_end::finished);
        }
        task.cancel();
        keel::real_sleeper real; // a virtual sleep to max() would move the clock there at once
        CHECK(task.wait_until(clock, real, keel::manual_clock::time_point::max()));
    }
    CHECK(finished + expired == 200);
}

TEST_CASE("bounded_task tolerates cancel and expire racing the body's completion",
          "[bounded_task][concurrency]") {
    keel::manual_clock clock;
    keel::real_sleeper sleeper;
    for (int round = 0; round < 200; ++round) {
        auto stops = std::make_shared<std::atomic<int>>(0);
        bounded_task<int> task;
        task.start([stops](std::stop_token token) {
            std::stop_callback on_stop{token, [stops] { stops->fetch_add(1); }};
            return token.stop_requested() ? 1 : 2;
        });
        std::thread canceller{[&] {
            task.cancel();
            task.cancel(); // idempotent
        }};
        bool const expired = task.expire();
        canceller.join();
        task.wait_until(clock, sleeper, keel::manual_clock::time_point::max());
        CHECK(task.returned());
        if (expired) {
            CHECK(task.result() == nullptr);
        } else {
            REQUIRE(task.result() != nullptr);
            CHECK((*task.result() == 1 || *task.result() == 2));
        }
        CHECK(stops->load() <= 1);
    }
}

TEST_CASE("bounded_task lets several threads wait for one run", "[bounded_task][concurrency]") {
    keel::manual_clock clock;
    keel::real_sleeper sleeper;
    auto shared = std::make_shared<probe>();
    bounded_task<int> task;
    std::atomic<int> saw{0};
    std::latch waiting{4};
    std::vector<std::thread> waiters;
    for (int i = 0; i < 4; ++i) {
        waiters.emplace_back([&] {
            waiting.count_down();
            if (task.wait_until(clock, sleeper, keel::manual_clock::time_point::max()) &&
                task.result() != nullptr && *task.result() == 5) {
                ++saw;
            }
        });
    }
    waiting.wait();
    task.start([shared](std::stop_token) {
        shared->open.wait();
        return 5;
    });
    shared->open.count_down();
    for (auto& w : waiters) {
        w.join();
    }
    CHECK(saw == 4);
}
