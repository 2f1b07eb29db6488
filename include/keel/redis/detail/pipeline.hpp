// SPDX-License-Identifier: MIT
// keel::redis::detail::pipeline: one auto-pipelined connection. Callers enqueue
// their commands; whichever caller finds the connection idle writes everything
// queued in one batch and reads the replies in order (rueidis' design, with the
// flusher taken from the callers instead of a thread of its own). Internal to
// keel::redis::pool (pool_options::auto_pipelining).
#pragma once

#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/redis/connection.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace redis::detail {

/// One connection shared by many callers, each command answered in order.
///
/// Invariant: at most one caller (the flusher) does I/O at a time, and it sends
/// only what was queued when it started; every request it sent is answered by
/// exactly the reply at its position, or fails with the batch. A batch that times
/// out or breaks drops the connection (the replies still coming would answer later
/// commands), so only that batch goes to the failure policy; requests queued behind
/// it go out on the next connection. Each caller waits at most until its own
/// deadline (enqueue time + command_timeout): the flusher reads with the earliest
/// deadline of its batch as the socket timeout, and a caller that gives up while
/// its request is still queued removes it (it is never sent). Thread-safe.
class pipeline {
public:
    /// Counters (monotonic).
    struct statistics {
        std::uint64_t batches = 0;  ///< Batches written.
        std::uint64_t commands = 0; ///< Requests sent in them.
        std::uint64_t dropped = 0;  ///< Connections dropped after a failed batch.
    };

    /// Uses `options` (already validated) for the connection; `max_flush_delay` is
    /// how long a flusher waits for more requests when at least two are queued.
    pipeline(connection_options options, std::chrono::microseconds max_flush_delay)
        : m_connection(std::move(options)), m_flush_delay(max_flush_delay) {}

    /// Sends `args` and returns its reply, or the failure of its batch, or
    /// errc::timeout at the caller's deadline.
    outcome<reply> command(std::span<std::string_view const> args) { return run({}, args); }

    /// Sends `before` and `args` back to back (no other command between them) and
    /// returns the reply to `args`, or the failure or error reply of `before`.
    outcome<reply> command_after(std::span<std::string_view const> before,
                                 std::span<std::string_view const> args) {
        return run(before, args);
    }

    /// Returns the counters.
    statistics stats() const {
        std::lock_guard lock{m_mutex};
        return m_stats;
    }
    /// Returns how many connections were opened so far.
    std::uint64_t connects() const {
        std::lock_guard lock{m_mutex};
        return m_connects;
    }

private:
    /// Largest batch written at once (rueidis' ring holds 1024 per connection).
    static constexpr std::size_t max_batch = 1024;

    struct request {
        std::string bytes;       // the command(s), wire format
        std::size_t replies = 1; // 2 with a `before` command
        std::chrono::steady_clock::time_point deadline;
        bool done = false; // guarded by m_mutex
        std::optional<outcome<reply>> result;
    };

    outcome<reply> run(std::span<std::string_view const> before,
                       std::span<std::string_view const> args) {
        auto req = std::make_shared<request>();
        if (!before.empty()) {
            req->bytes = connection::format(before);
            req->replies = 2;
        }
        req->bytes += connection::format(args);
        req->deadline = std::chrono::steady_clock::now() + m_connection.options().command_timeout;
        std::unique_lock lock{m_mutex};
        m_queue.push_back(req);
        for (;;) {
            if (req->done) {
                return *std::move(req->result);
            }
            if (!m_busy) {
                flush(lock);
                continue;
            }
            if (m_ready.wait_until(lock, req->deadline) == std::cv_status::timeout && !req->done) {
                auto const queued = std::find(m_queue.begin(), m_queue.end(), req);
                if (queued != m_queue.end()) {
                    m_queue.erase(queued); // never sent: nothing to answer later
                }
                // If it was sent, its flusher still reads its reply (or fails the batch).
                return failure::from(errc::timeout);
            }
        }
    }

    /// Becomes the flusher: sends what is queued and hands out the replies.
    /// Precondition: `lock` holds m_mutex and no flusher runs.
    void flush(std::unique_lock<std::mutex>& lock) {
        m_busy = true;
        if (m_flush_delay.count() > 0 && m_queue.size() >= 2) {
            // Others are waiting too: give the ones about to arrive a moment to join.
            lock.unlock();
            std::this_thread::sleep_for(m_flush_delay);
            lock.lock();
        }
        std::vector<std::shared_ptr<request>> batch;
        auto const now = std::chrono::steady_clock::now();
        auto earliest = std::chrono::steady_clock::time_point::max();
        while (!m_queue.empty() && batch.size() < max_batch) {
            std::shared_ptr<request> next = std::move(m_queue.front());
            m_queue.pop_front();
            if (next->deadline <= now) {
                // Its caller has given up (or is about to): never send it, and do not
                // let its spent deadline time out the others' batch.
                next->result.emplace(failure::from(errc::timeout));
                next->done = true;
                continue;
            }
            earliest = std::min(earliest, next->deadline);
            batch.push_back(std::move(next));
        }
        if (batch.empty()) {
            m_busy = false;
            m_ready.notify_all();
            return;
        }
        lock.unlock();

        std::vector<std::string> bytes;
        bytes.reserve(batch.size());
        std::size_t expected = 0;
        for (auto const& r : batch) {
            bytes.push_back(r->bytes);
            expected += r->replies;
        }
        // The socket timeout is what is left of the earliest caller's wait (at least
        // 1 ms, hiredis' resolution), so no caller of this batch waits past its deadline
        // by more than that.
        auto const left =
            std::max(std::chrono::duration_cast<std::chrono::milliseconds>(earliest - now),
                     std::chrono::milliseconds{1});
        std::uint64_t const connects_before = m_connection.connects();
        bool const reused = m_connection.connected();
        std::vector<reply> replies;
        replies.reserve(expected);
        connection::batch_result result = m_connection.batch(bytes, expected, replies, left);
        if (result.error && result.read == 0 && reused && result.error->is(errc::unavailable)) {
            // The connection had died idle (a server restart): nothing was read, so
            // nothing ran; send the batch once more on a new one, as connection does.
            replies.clear();
            result = m_connection.batch(bytes, expected, replies, left);
        }
        std::uint64_t const opened = m_connection.connects() - connects_before;

        // Hand out the replies in order: each request its own (the last of its pair).
        std::vector<outcome<reply>> outcomes;
        outcomes.reserve(batch.size());
        std::size_t at = 0;
        for (auto const& r : batch) {
            if (at + r->replies > result.read) {
                outcomes.emplace_back(*result.error);
                at += r->replies;
                continue;
            }
            if (r->replies == 2 && (replies[at].is_error())) {
                outcomes.emplace_back(std::move(replies[at]));
            } else {
                outcomes.emplace_back(std::move(replies[at + r->replies - 1]));
            }
            at += r->replies;
        }

        lock.lock();
        m_connects += opened;
        m_stats.batches += 1;
        m_stats.commands += batch.size();
        m_stats.dropped += result.error ? 1U : 0U;
        for (std::size_t i = 0; i < batch.size(); ++i) {
            batch[i]->result.emplace(std::move(outcomes[i]));
            batch[i]->done = true;
        }
        m_busy = false;
        m_ready.notify_all();
    }

    connection m_connection; // used only by the flusher
    std::chrono::microseconds m_flush_delay;
    mutable std::mutex m_mutex;
    std::condition_variable m_ready;
    std::deque<std::shared_ptr<request>> m_queue;
    bool m_busy = false;
    statistics m_stats{};
    std::uint64_t m_connects = 0;
};

} // namespace redis::detail

KEEL_END_NAMESPACE
