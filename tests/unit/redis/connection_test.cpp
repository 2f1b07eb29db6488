// SPDX-License-Identifier: MIT
#include <keel/redis/connection.hpp>

#include "redis_server.hpp"

#include <catch2/catch.hpp>

#include <chrono>

using namespace std::chrono_literals;

TEST_CASE("redis::connection: connects lazily and answers PING", "[redis]") {
    keel::redis::connection c{keel_test::shared_connection()};
    CHECK_FALSE(c.connected());
    auto r = c.command({"PING"});
    REQUIRE(r.has_value());
    CHECK(r->text() == "PONG");
    CHECK(c.connected());
    CHECK(c.connects() == 1);
}

TEST_CASE("redis::connection: arguments are binary-safe", "[redis]") {
    keel::redis::connection c{keel_test::shared_connection()};
    std::string const value{"a\0b\r\nc", 6};
    REQUIRE(c.command({"SET", "keel:test:{binary}", value}));
    auto r = c.command({"GET", "keel:test:{binary}"});
    REQUIRE(r.has_value());
    CHECK(r->text() == value);
}

TEST_CASE("redis::connection: an error reply is a reply, not a failure", "[redis]") {
    keel::redis::connection c{keel_test::shared_connection()};
    auto r = c.command({"NOSUCHCOMMAND"});
    REQUIRE(r.has_value());
    CHECK(r->is_error());
    CHECK(c.connected());
}

TEST_CASE("redis::connection: refused connection fails with unavailable", "[redis]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    int const port = server.port();
    server.kill();
    keel::redis::connection c{{.port = port, .command_timeout = 200ms}};
    auto r = c.command({"PING"});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.failure().is(keel::errc::unavailable));
    CHECK_FALSE(c.connected());
}

TEST_CASE("redis::connection: a hung server times out within command_timeout, then reconnects",
          "[redis]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    keel::redis::connection c{{.port = server.port(), .command_timeout = 50ms}};
    REQUIRE(c.command({"PING"}));
    server.freeze();
    auto const start = std::chrono::steady_clock::now();
    auto r = c.command({"PING"});
    auto const elapsed = std::chrono::steady_clock::now() - start;
    server.thaw();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.failure().is(keel::errc::timeout));
    CHECK(elapsed >= 45ms);
    CHECK(elapsed < 500ms);
    CHECK_FALSE(c.connected());
    auto again = c.command({"PING"});
    REQUIRE(again.has_value());
    CHECK(again->text() == "PONG");
    CHECK(c.connects() == 2);
}

TEST_CASE("redis::connection: reconnects after the server restarts", "[redis]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    keel::redis::connection c{{.port = server.port(), .command_timeout = 500ms}};
    REQUIRE(c.command({"PING"}));
    server.kill();
    CHECK_FALSE(c.command({"PING"}).has_value());
    REQUIRE(server.start());
    auto r = c.command({"PING"});
    REQUIRE(r.has_value());
    CHECK(r->text() == "PONG");
}

TEST_CASE("redis::connection: options out of range are rejected", "[redis]") {
    CHECK_THROWS_WITH(keel::redis::connection({.port = 0}),
                      "keel::redis::connection: port must be in [1, 65535], got 0");
    CHECK_THROWS_WITH(keel::redis::connection({.command_timeout = 0ms}),
                      "keel::redis::connection: command_timeout must be positive, got 0s");
    CHECK_THROWS_AS(keel::redis::connection({.host = ""}), std::invalid_argument);
}

TEST_CASE("redis::connection: writing to a dead server fails without SIGPIPE", "[redis]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    keel::redis::connection c{{.port = server.port(), .command_timeout = 500ms}};
    REQUIRE(c.command({"PING"}));
    server.kill();
    std::string const big(4 << 20, 'x'); // several writes: the later ones hit a reset socket
    auto r = c.command({"SET", "keel:test:{big}", big});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.failure().is(keel::errc::unavailable));
}

TEST_CASE("redis::connection: a connection the server closed is replaced transparently",
          "[redis]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    keel::redis::connection c{{.port = server.port(), .command_timeout = 500ms}};
    REQUIRE(c.command({"PING"}));
    REQUIRE(server.start()); // restarted: the open connection is dead
    auto r = c.command({"PING"});
    REQUIRE(r.has_value());
    CHECK(r->text() == "PONG");
    CHECK(c.connects() == 2);
}
