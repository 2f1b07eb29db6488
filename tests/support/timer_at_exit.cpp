// SPDX-License-Identifier: MIT
// timer_at_exit: keel::timeout calls on a detached thread while the process exits,
// as happens when keel abandons a hung health check or drain hook. Each scenario
// is a ctest test (tests/support/CMakeLists.txt); it passes when the process exits
// with status 0, and the sanitizer builds fail it on any report.
//
//   late_return       a call returns, and another starts and times out, after static
//                     destruction has begun (it must not touch a destroyed timer)
//   blocked_callback  the timer thread is stuck in a stop callback that never
//                     returns when main returns (exit must not wait for it)
#include <keel/core/sleeper.hpp>
#include <keel/policy/timeout.hpp>
#include <keel/resilient.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stop_token>
#include <string_view>
#include <thread>

using namespace std::chrono_literals;

namespace {

std::atomic<bool> exiting{false};     // set during static destruction
std::atomic<bool> in_call{false};     // the worker's first call is running
std::atomic<bool> worker_done{false}; // the worker's calls after exit began returned
std::atomic<int> late_timeouts{0};

// Constructed before the first timeout, so destroyed after keel's timer would be:
// its destructor runs while static destruction is under way, lets the worker's call
// return and waits until the worker has made one more call.
struct exit_gate {
    exit_gate() = default;
    exit_gate(exit_gate const&) = delete;
    exit_gate& operator=(exit_gate const&) = delete;
    ~exit_gate() {
        exiting.store(true);
        for (int i = 0; i < 10000 && !worker_done.load(); ++i) {
            std::this_thread::sleep_for(1ms);
        }
        if (!worker_done.load() || late_timeouts.load() != 1) {
            std::fputs("timer_at_exit: the late calls did not complete as expected\n", stderr);
            std::_Exit(1);
        }
    }
};

void late_return() {
    static exit_gate const gate;
    std::thread{[] {
        auto const until_exit =
            keel::resilient{[](keel::context const& ctx) {
                                in_call.store(true);
                                while (!exiting.load() && !ctx.stop_requested()) {
                                    std::this_thread::sleep_for(1ms);
                                }
                                return 0;
                            },
                            keel::timeout{1h}};
        auto const short_deadline =
            keel::resilient{[](keel::context const& ctx) {
                                return keel::real_sleeper{}.sleep_for(1h, ctx.stop_token());
                            },
                            keel::timeout{2ms}};
        (void)until_exit.try_call(); // returns during static destruction
        if (short_deadline.try_call().error() == keel::errc::timeout) {
            late_timeouts.fetch_add(1);
        }
        worker_done.store(true);
    }}.detach();
    while (!in_call.load()) {
        std::this_thread::sleep_for(1ms);
    }
}

struct block_forever {
    void operator()() const noexcept {
        in_call.store(true);
        for (;;) {
            std::this_thread::sleep_for(1h);
        }
    }
};

void blocked_callback() {
    std::thread{[] {
        auto const guarded = keel::resilient{
            [](keel::context const& ctx) {
                std::stop_callback<block_forever> const stuck{ctx.stop_token(), block_forever{}};
                return keel::real_sleeper{}.sleep_for(1h, ctx.stop_token());
            },
            keel::timeout{1ms}};
        (void)guarded.try_call(); // never returns: the callback holds the timer thread
    }}.detach();
    while (!in_call.load()) {
        std::this_thread::sleep_for(1ms);
    }
}

} // namespace

int main(int argc, char** argv) {
    std::string_view const scenario = argc > 1 ? argv[1] : "";
    if (scenario == "late_return") {
        late_return();
    } else if (scenario == "blocked_callback") {
        blocked_callback();
    } else {
        std::fputs("usage: keel_timer_at_exit late_return|blocked_callback\n", stderr);
        return 2;
    }
    return 0;
}
