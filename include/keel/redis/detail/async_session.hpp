// SPDX-License-Identifier: MIT
// keel::redis::detail::async_session: the state of one keel::redis::async_connection,
// driven by Asio on a strand. Requests queue until the socket is free; each write
// sends everything queued (pipelining falls out of the event loop: what callers
// submit while a write or a round trip is in progress goes out together), and
// replies are read with hiredis' reader and handed out in order. Internal to
// keel::redis::async_connection.
#pragma once

#include <keel/asio/detail/asio.hpp>
#include <keel/asio/detail/socket.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/redis/connection.hpp>
#include <keel/redis/script.hpp>
#include <keel/redis/target.hpp>
#include <keel/version.hpp>

#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace redis::detail {

struct reader_deleter {
    void operator()(redisReader* r) const noexcept { redisReaderFree(r); }
};

/// One connection's state, touched only on its strand (submit() and close() may be
/// called from any thread; they dispatch onto it).
///
/// Invariants: `m_sent` holds, in order, the requests written (or being written) on
/// the current connection and not yet answered, so the next reply answers its front;
/// `m_queued` holds requests not written yet. Every request is completed exactly once
/// (its reply, or a failure), at the latest at its deadline: the deadline timer fails
/// a queued request that is due, and drops the connection when a sent one is due
/// (its reply would answer the next request), failing what was in flight on it.
class async_session : public std::enable_shared_from_this<async_session> {
public:
    using clock = std::chrono::steady_clock;
    using net_executor = keel::asio::net::any_io_executor;

    /// One command to send: its bytes in wire format and who waits for its reply.
    struct request {
        std::string bytes;
        std::string before{};                // a command sent right ahead (ASKING), or empty
        script const* lua = nullptr;         // set for a script's EVALSHA: sent as EVAL on NOSCRIPT
        bool reloaded = false;               // already sent again as EVAL
        bool resent = false;                 // already sent again after its connection died idle
        bool internal = false;               // AUTH or SELECT of the connection's handshake
        bool before_answered = false;        // the reply to `before` was read
        std::optional<reply> before_error{}; // ... and was an error: the request's answer
        clock::time_point deadline{};
        run_handler done{};
    };

    /// Counters (monotonic).
    struct statistics {
        std::uint64_t connects = 0; ///< Connections opened.
        std::uint64_t batches = 0;  ///< Writes (each sends every request queued).
        std::uint64_t commands = 0; ///< Requests answered by the server.
        std::uint64_t dropped = 0;  ///< Connections dropped with requests in flight.
    };

    async_session(net_executor const& executor, connection_options options)
        : m_options(std::move(options)), m_strand(keel::asio::net::make_strand(executor)),
          m_socket(m_strand), m_resolver(m_strand), m_deadline_timer(m_strand),
          m_connect_timer(m_strand) {}

    connection_options const& options() const noexcept { return m_options; }

    /// Returns true when called from a handler running on this session's strand.
    bool in_strand() const noexcept { return m_strand.running_in_this_thread(); }

    /// Queues `r` (its deadline is set here: now + command_timeout); its `done` is
    /// called on the strand, never before submit() returns.
    void submit(std::unique_ptr<request> r) {
        r->deadline = clock::now() + m_options.command_timeout;
        keel::asio::net::post(m_strand, [self = shared_from_this(), req = std::move(r)]() mutable {
            self->enqueue(std::move(req));
        });
    }

    /// Drops the connection and fails everything outstanding with errc::unavailable.
    void close() {
        keel::asio::net::dispatch(m_strand, [self = shared_from_this()] { self->shut(); });
    }

    /// Closes for good (the owner's destructor): as close(), and requests submitted
    /// later fail at once with errc::unavailable. Never throws.
    void retire() noexcept {
        try {
            keel::asio::net::dispatch(m_strand, [self = shared_from_this()] {
                self->m_retired = true;
                self->shut();
            });
        } catch (...) { // NOLINT(bugprone-empty-catch): posting failed; the handlers run out
        }
    }

    statistics stats() const noexcept {
        return {
            m_connects.load(std::memory_order_relaxed), m_batches.load(std::memory_order_relaxed),
            m_commands.load(std::memory_order_relaxed), m_dropped.load(std::memory_order_relaxed)};
    }

private:
    /// Largest batch written at once (rueidis' ring holds 1024 per connection).
    static constexpr std::size_t max_batch = 1024;

    enum class phase : std::uint8_t { closed, connecting, open };

    void enqueue(std::unique_ptr<request> r) {
        if (m_retired) {
            complete(*r, failure::from(errc::unavailable));
            return;
        }
        m_queued.push_back(std::move(r));
        arm_deadline();
        if (m_phase == phase::closed) {
            connect();
        } else {
            write();
        }
    }

    // --- connecting -------------------------------------------------------------

    void connect() {
        m_phase = phase::connecting;
        std::uint64_t const gen = ++m_generation;
        m_connect_timed_out = false;
        m_connect_timer.expires_after(m_options.connect_timeout);
        m_connect_timer.async_wait([self = shared_from_this(), gen](keel::asio::error_code ec) {
            if (!ec && gen == self->m_generation && self->m_phase == phase::connecting) {
                self->m_connect_timed_out = true;
                keel::asio::error_code ignored;
                self->m_socket.close(ignored);
                self->m_resolver.cancel();
            }
        });
        keel::asio::error_code ec;
        auto const address = keel::asio::net::ip::make_address(m_options.host, ec);
        if (!ec) {
            m_socket.async_connect({address, static_cast<unsigned short>(m_options.port)},
                                   [self = shared_from_this(), gen](keel::asio::error_code e) {
                                       self->connected(gen, e);
                                   });
            return;
        }
        // A host name: resolved on each connect (Asio's resolver thread, not the loop's).
        m_resolver.async_resolve(
            m_options.host, std::to_string(m_options.port),
            [self = shared_from_this(), gen](keel::asio::error_code e, auto const& endpoints) {
                if (gen != self->m_generation) {
                    return;
                }
                if (e) {
                    self->connected(gen, e);
                    return;
                }
                keel::asio::net::async_connect(self->m_socket, endpoints,
                                               [self, gen](keel::asio::error_code e2, auto const&) {
                                                   self->connected(gen, e2);
                                               });
            });
    }

    void connected(std::uint64_t gen, keel::asio::error_code ec) {
        if (gen != m_generation) {
            return;
        }
        m_connect_timer.cancel();
        if (ec) {
            keel::asio::error_code ignored;
            m_socket.close(ignored);
            m_phase = phase::closed;
            // Nothing was sent: everything waiting for this connection fails as a
            // blocking connect would (errc::timeout after connect_timeout).
            fail_queued(m_connect_timed_out ? errc::timeout : errc::unavailable);
            return;
        }
        keel::asio::error_code ignored;
        m_socket.set_option(keel::asio::net::ip::tcp::no_delay{true}, ignored);
        m_phase = phase::open;
        m_reader.reset(redisReaderCreate());
        m_replies = 0;
        m_idle_probe = false;
        m_connects.fetch_add(1, std::memory_order_relaxed);
        // The handshake goes first, ahead of what waited for the connection.
        if (m_options.database != 0) {
            std::string const db = std::to_string(m_options.database);
            std::string_view const select[] = {"SELECT", db};
            m_queued.push_front(handshake(select));
        }
        if (!m_options.password.empty()) {
            std::string_view const auth[] = {"AUTH", m_options.password};
            m_queued.push_front(handshake(auth));
        }
        write();
    }

    std::unique_ptr<request> handshake(std::span<std::string_view const> args) const {
        auto r = std::make_unique<request>();
        r->bytes = connection::format(args);
        r->internal = true;
        r->deadline = clock::now() + m_options.command_timeout;
        return r;
    }

    // --- writing and reading ----------------------------------------------------

    void write() {
        if (m_phase != phase::open || m_writing || m_queued.empty()) {
            return;
        }
        if (m_sent.empty()) {
            // A write on a connection that has answered before and has nothing in
            // flight: if it fails before any reply, the connection had died idle.
            m_idle_probe = m_replies > 0;
        }
        auto batch = std::make_shared<std::string>();
        for (std::size_t n = 0; n < max_batch && !m_queued.empty(); ++n) {
            batch->append(m_queued.front()->before).append(m_queued.front()->bytes);
            m_sent.push_back(std::move(m_queued.front()));
            m_queued.pop_front();
        }
        m_writing = true;
        m_batches.fetch_add(1, std::memory_order_relaxed);
        keel::asio::net::async_write(m_socket, keel::asio::net::buffer(*batch),
                                     [self = shared_from_this(), batch,
                                      gen = m_generation](keel::asio::error_code ec, std::size_t) {
                                         self->written(gen, ec);
                                     });
        read();
    }

    void written(std::uint64_t gen, keel::asio::error_code ec) {
        m_writing = false;
        if (gen == m_generation && ec) {
            drop(errc::unavailable, true);
            return;
        }
        write(); // what queued meanwhile, on this connection or a new one
    }

    void read() {
        if (m_phase != phase::open || m_reading || m_sent.empty()) {
            return;
        }
        m_reading = true;
        m_socket.async_read_some(keel::asio::net::buffer(m_buffer),
                                 [self = shared_from_this(),
                                  gen = m_generation](keel::asio::error_code ec, std::size_t n) {
                                     self->got(gen, ec, n);
                                 });
    }

    void got(std::uint64_t gen, keel::asio::error_code ec, std::size_t n) {
        m_reading = false;
        if (gen != m_generation) {
            read(); // a stale read of a dropped connection: read on the new one
            return;
        }
        if (ec) {
            drop(errc::unavailable, true);
            return;
        }
        if (redisReaderFeed(m_reader.get(), m_buffer.data(), n) != REDIS_OK) {
            drop(errc::unavailable, false);
            return;
        }
        for (;;) {
            void* raw = nullptr;
            if (redisReaderGetReply(m_reader.get(), &raw) != REDIS_OK) {
                drop(errc::unavailable, false); // not RESP: nothing read after it is trusted
                return;
            }
            if (raw == nullptr) {
                break;
            }
            reply r{static_cast<redisReply*>(raw)};
            if (m_sent.empty()) {
                drop(errc::unavailable, false); // a reply nobody asked for
                return;
            }
            deliver(std::move(r));
            if (gen != m_generation) {
                return; // a completion closed the connection
            }
        }
        disarm_if_idle();
        read();
    }

    void deliver(reply r) {
        m_idle_probe = false;
        ++m_replies;
        if (!m_sent.front()->before.empty() && !m_sent.front()->before_answered) {
            // The reply to the command sent ahead (ASKING): its error is the answer.
            m_sent.front()->before_answered = true;
            if (r.is_error()) {
                m_sent.front()->before_error.emplace(std::move(r));
            }
            return;
        }
        std::unique_ptr<request> req = std::move(m_sent.front());
        m_sent.pop_front();
        req->before_answered = false;
        if (req->before_error) {
            m_commands.fetch_add(1, std::memory_order_relaxed);
            complete(*req, std::move(*req->before_error));
            return;
        }
        if (req->internal) {
            if (r.is_error()) {
                drop(errc::unavailable, false); // AUTH or SELECT refused
            }
            return;
        }
        if (req->lua != nullptr && !req->reloaded && script::is_noscript(r)) {
            // Not cached on this server (first use, SCRIPT FLUSH, a restart): send the
            // source once, ahead of the queue, as script::run does on a blocking connection.
            req->bytes = req->lua->reload(req->bytes);
            req->reloaded = true;
            m_queued.push_front(std::move(req));
            write();
            return;
        }
        m_commands.fetch_add(1, std::memory_order_relaxed);
        complete(*req, std::move(r));
    }

    // --- deadlines and failures -------------------------------------------------

    /// Arms the deadline timer for the earliest deadline outstanding unless it is
    /// armed for one no later; a timer that fires early finds nothing due and re-arms.
    void arm_deadline() {
        std::optional<clock::time_point> earliest;
        auto consider = [&](std::deque<std::unique_ptr<request>> const& q) {
            if (!q.empty()) {
                earliest =
                    std::min(earliest.value_or(clock::time_point::max()), q.front()->deadline);
            }
        };
        consider(m_sent);
        consider(m_queued);
        if (!earliest || (m_armed && m_armed_at <= *earliest)) {
            return;
        }
        m_armed = true;
        m_armed_at = *earliest;
        std::uint64_t const epoch = ++m_timer_epoch;
        m_deadline_timer.expires_at(*earliest);
        m_deadline_timer.async_wait([self = shared_from_this(), epoch](keel::asio::error_code) {
            if (epoch == self->m_timer_epoch) {
                self->m_armed = false;
                self->deadline_passed();
            }
        });
    }

    /// Disarms the deadline timer once nothing is outstanding, so an idle connection
    /// keeps no work on the io_context (its run() can return).
    void disarm_if_idle() {
        if (m_armed && m_sent.empty() && m_queued.empty()) {
            m_armed = false;
            ++m_timer_epoch;
            m_deadline_timer.cancel();
        }
    }

    void deadline_passed() {
        clock::time_point const now = clock::now();
        auto const due = [now](std::unique_ptr<request> const& r) { return r->deadline <= now; };
        // Queued requests that are due were never sent: they fail alone.
        std::vector<std::unique_ptr<request>> expired;
        for (auto it = m_queued.begin(); it != m_queued.end();) {
            if (due(*it)) {
                expired.push_back(std::move(*it));
                it = m_queued.erase(it);
            } else {
                ++it;
            }
        }
        bool const sent_due = std::any_of(m_sent.begin(), m_sent.end(), due);
        for (auto& r : expired) {
            complete(*r, failure::from(errc::timeout));
        }
        if (sent_due) {
            // Its reply may still come and would answer the next request.
            drop(errc::timeout, false);
        }
        arm_deadline();
        disarm_if_idle();
    }

    /// Closes the connection: the requests in flight on it fail with `reason`, or go
    /// out again on a new connection when it died idle (`io_error` before any reply
    /// to a write on a connection that had answered before: nothing of it ran).
    void drop(errc reason, bool io_error) {
        bool const resend = io_error && m_idle_probe;
        ++m_generation;
        keel::asio::error_code ignored;
        m_socket.close(ignored);
        m_phase = phase::closed;
        m_reader.reset();
        m_idle_probe = false;
        std::vector<std::unique_ptr<request>> failed;
        for (auto it = m_sent.rbegin(); it != m_sent.rend(); ++it) {
            if ((*it)->internal) {
                continue;
            }
            if (resend && !(*it)->resent) {
                (*it)->resent = true;
                (*it)->before_answered = false;
                (*it)->before_error.reset();
                m_queued.push_front(std::move(*it));
            } else {
                failed.push_back(std::move(*it));
            }
        }
        if (!m_sent.empty()) {
            m_dropped.fetch_add(1, std::memory_order_relaxed);
        }
        m_sent.clear();
        std::reverse(failed.begin(), failed.end());
        for (auto& r : failed) {
            complete(*r, failure::from(reason));
        }
        if (m_phase == phase::closed && !m_queued.empty()) {
            connect();
        }
        disarm_if_idle();
    }

    void fail_queued(errc reason) {
        std::deque<std::unique_ptr<request>> failed = std::move(m_queued);
        m_queued.clear();
        for (auto& r : failed) {
            if (!r->internal) {
                complete(*r, failure::from(reason));
            }
        }
        disarm_if_idle();
    }

    void shut() {
        fail_queued(errc::unavailable);
        drop(errc::unavailable, false);
        m_connect_timer.cancel();
        m_deadline_timer.cancel();
    }

    static void complete(request& r, outcome<reply> result) {
        run_handler done = std::move(r.done);
        if (done) {
            done(std::move(result));
        }
    }

    connection_options m_options;
    keel::asio::net::strand<net_executor> m_strand;
    keel::asio::net::ip::tcp::socket m_socket;
    keel::asio::net::ip::tcp::resolver m_resolver;
    keel::asio::net::steady_timer m_deadline_timer;
    keel::asio::net::steady_timer m_connect_timer;
    std::unique_ptr<redisReader, reader_deleter> m_reader;
    std::array<char, 16 * 1024> m_buffer{};
    std::deque<std::unique_ptr<request>> m_queued;
    std::deque<std::unique_ptr<request>> m_sent;
    phase m_phase = phase::closed;
    std::uint64_t m_generation = 0; // one per connection attempt; stale handlers see another
    std::uint64_t m_replies = 0;    // replies read on the current connection
    bool m_writing = false;
    bool m_reading = false;
    bool m_idle_probe = false;
    bool m_connect_timed_out = false;
    bool m_retired = false;
    bool m_armed = false;
    clock::time_point m_armed_at{};
    std::uint64_t m_timer_epoch = 0;
    std::atomic<std::uint64_t> m_connects{0};
    std::atomic<std::uint64_t> m_batches{0};
    std::atomic<std::uint64_t> m_commands{0};
    std::atomic<std::uint64_t> m_dropped{0};
};

} // namespace redis::detail

KEEL_END_NAMESPACE
