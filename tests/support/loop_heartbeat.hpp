// SPDX-License-Identifier: MIT
// Test support: a 1 ms heartbeat on an Asio event loop that records the longest
// gap between its wake-ups. A handler that blocks the loop's thread (a blocking
// Redis round trip, a timeout waited for) shows up as a gap that long.
#pragma once

#include <keel/asio/detail/asio.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <memory>

namespace keel_test {

/// Beats every millisecond on the executor it is started on until stop() is called.
class loop_heartbeat {
public:
    using clock = std::chrono::steady_clock;

    /// Starts beating on `executor`; the heartbeat must outlive the loop's run.
    explicit loop_heartbeat(keel::asio::net::any_io_executor const& executor) {
        keel::asio::net::co_spawn(executor, beat(m_state), keel::asio::net::detached);
    }

    /// Ends the beating at the next beat (the loop's run() can then return).
    void stop() noexcept { m_state->stop = true; }

    /// Returns the longest time between two beats so far.
    clock::duration longest_gap() const noexcept { return m_state->longest; }

private:
    struct state {
        bool stop = false;
        clock::duration longest{0};
    };

    static keel::asio::awaitable<void> beat(std::shared_ptr<state> s) {
        keel::asio::net::steady_timer t{co_await keel::asio::net::this_coro::executor};
        auto last = clock::now();
        while (!s->stop) {
            t.expires_after(std::chrono::milliseconds{1});
            co_await t.async_wait(keel::asio::net::use_awaitable);
            auto const now = clock::now();
            s->longest = std::max(s->longest, now - last);
            last = now;
        }
    }

    std::shared_ptr<state> m_state = std::make_shared<state>();
};

} // namespace keel_test
