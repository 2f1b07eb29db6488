// SPDX-License-Identifier: MIT
// keel::redis::async_connection: one connection to a Redis server driven by an
// Asio event loop, and a keel::redis::target whose run_async never blocks: keel's
// Redis limiters built on it decide inside keel::asio::resilient (or any
// coroutine awaiting keel::asio::async_try_acquire) while the io thread runs
// other work. Needs both keel::redis (hiredis) and keel::asio (Asio).
#pragma once

#include <keel/asio/detail/asio.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/redis/connection.hpp>
#include <keel/redis/detail/async_session.hpp>
#include <keel/redis/script.hpp>
#include <keel/redis/target.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

KEEL_BEGIN_NAMESPACE

namespace redis {

/// A connection to one Redis server on an Asio executor, pipelined by the event
/// loop, and the keel::redis::target of limiters that must not block that loop.
///
/// run_async() queues the script call and returns; one write sends everything
/// queued (what callers submit during a write or a round trip goes out together,
/// so batches grow with concurrency and nothing waits for a timer: auto-pipelining
/// without a flush delay), replies are read in order with hiredis' reader, and each
/// caller's handler runs on the connection's strand. Every request ends within
/// command_timeout of its submission: one timer watches the earliest deadline; a
/// request still queued when due fails alone (it is never sent), and one in flight
/// when due drops the connection (its late reply would answer the next request),
/// so what was in flight on it fails with errc::timeout and the queue goes out on a
/// new connection. A refused or timed-out connect fails the requests waiting for it
/// (errc::unavailable, errc::timeout); the next request reconnects. A connection
/// that died while idle (a server restart) is noticed by the next write, whose
/// requests go out once more on a new connection (nothing of them ran), as
/// keel::redis::connection does. NOSCRIPT is answered by sending the script's
/// source once. AUTH and SELECT follow connection_options.
///
/// The blocking run() (the limiters' try_acquire) works from threads other than
/// the io_context's: it submits and waits, at most twice command_timeout; called
/// from the connection's own strand it fails with errc::unavailable rather than
/// wait for itself, and from another handler of a single-threaded io_context it
/// waits its bound and fails with errc::timeout: on an io thread use
/// keel::asio::async_try_acquire or keel::asio's rate_limit.
///
/// Thread-safe. The io_context must outlive it. Destroying it closes the connection
/// on its strand: what is still outstanding then fails with errc::unavailable
/// there, so the limiters using it must outlive that (or destroy it with no
/// decision in flight). Its socket reads only while a reply is due and its timer is
/// disarmed when nothing is outstanding, so an idle connection keeps no work on the
/// io_context.
///
///     asio::io_context io;
///     keel::redis::async_connection redis{io.get_executor(), {.port = 6379}};
///     keel::redis::fixed_window api{redis, {.name = "api", .limit = 1000}};
///     auto call = keel::asio::resilient{op, keel::guard(api)};   // awaits Redis
class async_connection final : public target {
public:
    /// Counters (monotonic); see the members.
    using statistics = detail::async_session::statistics;

    /// Stores `options` (validated; throws std::invalid_argument naming the field)
    /// without connecting; the first request connects on `executor` (the handlers run
    /// on a strand of it).
    async_connection(keel::asio::net::any_io_executor const& executor, connection_options options)
        : m_session(
              std::make_shared<detail::async_session>(executor, validated(std::move(options)))) {}

    async_connection(async_connection const&) = delete;
    async_connection& operator=(async_connection const&) = delete;
    /// Ends what is outstanding with errc::unavailable, on the strand soon after (see
    /// the class comment).
    ~async_connection() override { m_session->retire(); }

    /// Returns the options.
    connection_options const& options() const noexcept { return m_session->options(); }

    /// Queues `lua` with the key `key` and `args` and returns; `done` gets the reply
    /// or the transport failure on the connection's strand, within command_timeout.
    void run_async(script const& lua, std::string_view key, std::span<std::string_view const> args,
                   run_handler done) override {
        std::string_view const keys[] = {key};
        run_async(lua, keys, args, {}, std::move(done));
    }

    /// Queues `lua` with `keys` and `args` as run_async does, with `before` (a command
    /// such as ASKING after a Cluster ASK) sent right ahead of it, and of its EVAL
    /// after NOSCRIPT, on the same connection; an error reply to `before` is the answer.
    void run_async(script const& lua, std::span<std::string_view const> keys,
                   std::span<std::string_view const> args, std::span<std::string_view const> before,
                   run_handler done) {
        auto r = std::make_unique<detail::async_session::request>();
        r->bytes = lua.format(keys, args);
        if (!before.empty()) {
            r->before = connection::format(before);
        }
        r->lua = &lua;
        r->done = std::move(done);
        m_session->submit(std::move(r));
    }

    /// Sends one command (binary-safe arguments) and passes its reply, or the
    /// transport failure, to `done` as run_async does; for tools and tests.
    void async_command(std::span<std::string_view const> args, run_handler done) {
        auto r = std::make_unique<detail::async_session::request>();
        r->bytes = connection::format(args);
        r->done = std::move(done);
        m_session->submit(std::move(r));
    }

    /// Runs `lua` and waits for its answer on the calling thread (see the class
    /// comment for where that is not possible).
    outcome<reply> run(script const& lua, std::string_view key,
                       std::span<std::string_view const> args) override {
        if (m_session->in_strand()) {
            return failure::from(errc::unavailable);
        }
        auto answer = std::make_shared<std::promise<outcome<reply>>>();
        std::future<outcome<reply>> future = answer->get_future();
        run_async(lua, key, args, [answer](outcome<reply> r) { answer->set_value(std::move(r)); });
        if (future.wait_for(2 * options().command_timeout) != std::future_status::ready) {
            return failure::from(errc::timeout); // the io_context runs nothing of ours
        }
        return future.get();
    }

    /// Drops the connection and fails what is outstanding with errc::unavailable
    /// (from the strand, soon after the call); the next request reconnects.
    void close() { m_session->close(); }

    /// Returns the counters: connections opened, writes, requests answered,
    /// connections dropped with requests in flight.
    statistics stats() const noexcept { return m_session->stats(); }

private:
    static connection_options validated(connection_options o) {
        detail::validate(o, "keel::redis::async_connection");
        return o;
    }

    std::shared_ptr<detail::async_session> m_session;
};

} // namespace redis

KEEL_END_NAMESPACE
