// SPDX-License-Identifier: MIT
// keel_service: the demo HTTP API, every keel part working together, on an
// asynchronous HTTP server (Boost.Beast on Asio coroutines, one or two threads).
//
// For each GET /api/work it
//   1. takes a drain ticket (503 "shutting down" once SIGTERM has stopped intake),
//   2. finds the real client address behind one trusted loopback proxy from every
//      X-Forwarded-For line (keel::net),
//   3. applies that client's rate limit (keel::keyed token buckets: 429 with
//      Retry-After, RateLimit and RateLimit-Policy when over),
//   4. takes a slot of the downstream's bulkhead (503 "downstream busy" when every
//      slot is taken: the service sheds instead of queueing without bound),
//   5. calls the downstream through keel::asio::resilient{call, guard(breaker),
//      retry, timeout}: each attempt an asynchronous HTTP GET whose connect, write
//      and read are cancelled at the attempt's deadline; no thread waits for it.
// It also serves /health/live, /health/ready, /health/startup (keel::ops health
// registry, health+json) and /metrics (Prometheus text), and drains on SIGTERM
// through keel::ops::drain_coordinator, then exits 0.
//
// The server bounds what a client can make it hold: a deadline for each request
// head (from its first byte) and for each request's whole life, an idle timeout
// between keep-alive requests, at most --max-header-bytes of head and
// --max-headers header lines (431 beyond either). From SIGTERM on, every response
// carries Connection: close; when intake stops, idle connections and heads still
// being read are closed; when the drain budget ends, connections still open are
// closed and counted in the report.
//
// Usage: keel_service --downstream-port N [--port N] [options below]
// Prints "listening port=<port> threads=<n>" once bound, and one "event ..." line per
// breaker transition and drain phase, with the steady-clock time in ns, for the driver.
#include <keel/asio/resilient.hpp>
#include <keel/core/error.hpp>
#include <keel/limiter/headers.hpp>
#include <keel/limiter/keyed.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/net/client_address.hpp>
#include <keel/net/ip_address.hpp>
#include <keel/net/trust.hpp>
#include <keel/observe/exposition.hpp>
#include <keel/observe/pipeline_counters.hpp>
#include <keel/observe/registry.hpp>
#include <keel/ops/drain.hpp>
#include <keel/ops/health.hpp>
#include <keel/ops/health_json.hpp>
#include <keel/ops/signals.hpp>
#include <keel/policy/backoff.hpp>
#include <keel/policy/bulkhead.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/timeout.hpp>
#include <keel/resilient.hpp>

#include "sanitizers.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fmt/format.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include <pthread.h>
#include <sys/resource.h>

using namespace std::chrono_literals;

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using request = http::request<http::string_body>;
using response = http::response<http::string_body>;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

// Command-line settings; the defaults suit the demo's compressed timescale.
struct settings {
    int port = 0;            // 0: chosen by the OS
    int downstream_port = 0; // required
    int timeout_ms = 500;    // per attempt
    int attempts = 3;        // total, the first included
    int min_calls = 10;      // breaker volume threshold
    int failure_rate = 50;   // percent
    int open_ms = 2000;      // breaker reset timeout (base)
    int window = 20;         // breaker count window
    int rate = 50;           // per client, permits per second
    int burst = 50;          // per client
    int pre_stop_ms = 1000;  // drain: keep serving after readiness fails
    int drain_ms = 10000;    // drain: wait for in-flight requests
    int threads = 2;         // threads running the server and every downstream call
    // Downstream calls in flight at once (the bulkhead); Envoy's per-cluster
    // max_requests default.
    int max_in_flight = 1024;
    // A request head must arrive within this from its first byte (from the accept
    // for a connection's first request). nginx's client_header_timeout is 60 s; the
    // demo's timescale is compressed.
    int head_timeout_ms = 10000;
    // A request's whole life, from its first byte to the last byte of its response.
    // Must exceed the downstream call's worst case (attempts x (timeout + 200 ms
    // backoff cap)), checked at start.
    int request_timeout_ms = 30000;
    // Keep-alive connections idle longer than this are closed: cpp-httplib's default
    // keep-alive timeout (CPPHTTPLIB_KEEPALIVE_TIMEOUT_SECOND), which this server replaces.
    int idle_timeout_ms = 5000;
    // The whole head, request line included: Beast's default header_limit (8 KiB),
    // nginx's large_client_header_buffers size.
    int max_header_bytes = 8192;
    // Header lines per request: Apache's LimitRequestFields default.
    int max_headers = 100;
};

// Parses argv into settings; throws std::invalid_argument naming an unknown option, a
// value that is not a whole decimal number, or one outside the option's range.
settings parse(int argc, char** argv) {
    struct option {
        int* value;
        int min;
        int max;
    };
    settings s;
    constexpr int max_ms = 24 * 3600 * 1000; // a day: beyond any sensible demo setting
    std::map<std::string_view, option> const known{
        {"--port", {&s.port, 0, 65535}},
        {"--downstream-port", {&s.downstream_port, 1, 65535}},
        {"--timeout-ms", {&s.timeout_ms, 1, max_ms}},
        {"--attempts", {&s.attempts, 1, 100}},
        {"--min-calls", {&s.min_calls, 1, 32768}},
        {"--failure-rate", {&s.failure_rate, 1, 100}},
        {"--open-ms", {&s.open_ms, 1, max_ms}},
        {"--window", {&s.window, 1, 32768}},
        {"--rate", {&s.rate, 1, 1000000}},
        {"--burst", {&s.burst, 1, 1000000}},
        {"--pre-stop-ms", {&s.pre_stop_ms, 0, max_ms}},
        {"--drain-ms", {&s.drain_ms, 1, max_ms}},
        {"--threads", {&s.threads, 1, 64}},
        {"--max-in-flight", {&s.max_in_flight, 1, 1000000}},
        {"--head-timeout-ms", {&s.head_timeout_ms, 1, max_ms}},
        {"--request-timeout-ms", {&s.request_timeout_ms, 1, max_ms}},
        {"--idle-timeout-ms", {&s.idle_timeout_ms, 1, max_ms}},
        {"--max-header-bytes", {&s.max_header_bytes, 256, 1 << 20}},
        {"--max-headers", {&s.max_headers, 1, 10000}},
    };
    for (int i = 1; i < argc; ++i) {
        auto const it = known.find(argv[i]);
        if (it == known.end()) {
            throw std::invalid_argument(fmt::format("keel_service: unknown option {}", argv[i]));
        }
        if (i + 1 == argc) {
            throw std::invalid_argument(fmt::format("keel_service: {} needs a value", argv[i]));
        }
        std::string_view const text = argv[++i];
        int const min = it->second.min;
        int const max = it->second.max;
        int value = 0;
        auto const [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (error != std::errc{} || end != text.data() + text.size() || value < min ||
            value > max) {
            throw std::invalid_argument(
                fmt::format("keel_service: {} must be a whole number in [{}, {}], got '{}'",
                            it->first, min, max, text));
        }
        *it->second.value = value;
    }
    if (s.downstream_port == 0) {
        throw std::invalid_argument("keel_service: --downstream-port is required");
    }
    // 200 ms: the retry backoff's cap (see the retry below).
    long long const worst_call = static_cast<long long>(s.attempts) * (s.timeout_ms + 200);
    if (s.request_timeout_ms <= worst_call) {
        throw std::invalid_argument(fmt::format(
            "keel_service: --request-timeout-ms must exceed attempts x (timeout + 200 ms) = {} "
            "ms, got '{}'",
            worst_call, s.request_timeout_ms));
    }
    return s;
}

// One line per event on stdout, whole lines only, flushed at once.
void emit(std::string const& line) {
    static std::mutex mutex;
    std::lock_guard lock{mutex};
    auto const at = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count();
    std::fprintf(stdout, "event at_ns=%lld %s\n", static_cast<long long>(at), line.c_str());
    std::fflush(stdout);
}

// What /metrics reports that keel's own components do not already count (the
// registry renders those): requests by how they ended, refusals before routing,
// connections and requests in flight.
struct counters {
    std::atomic<std::int64_t> ok{0};
    std::atomic<std::int64_t> downstream_failed{0};
    std::atomic<std::int64_t> timed_out{0};
    std::atomic<std::int64_t> circuit_open{0};
    std::atomic<std::int64_t> bulkhead_full{0};
    std::atomic<std::int64_t> rate_limited{0};
    std::atomic<std::int64_t> draining{0};
    std::atomic<std::int64_t> in_flight{0};
    // Requests the server refused before any handler saw them, by reason.
    std::atomic<std::int64_t> header_bytes{0};
    std::atomic<std::int64_t> header_count{0};
    std::atomic<std::int64_t> head_timeout{0};
    std::atomic<std::int64_t> bad_request{0};
    std::atomic<std::int64_t> connections{0}; // open now
};

// Counts a request in flight for as long as it lives.
class in_flight_mark {
public:
    explicit in_flight_mark(std::atomic<std::int64_t>& gauge) : m_gauge(gauge) { ++m_gauge; }
    ~in_flight_mark() { --m_gauge; }
    in_flight_mark(in_flight_mark const&) = delete;
    in_flight_mark& operator=(in_flight_mark const&) = delete;

private:
    std::atomic<std::int64_t>& m_gauge;
};

// A failed downstream call: a transport error or a 5xx answer.
class downstream_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Sends one GET /work to 127.0.0.1:`port` on a new connection and returns the body of a
// non-5xx answer; throws downstream_error otherwise. Every operation ends at `deadline`
// (a keel::errc::timeout) or when `slot` is cancelled (keel's timeout does that first).
net::awaitable<std::string> get_work(int port,
                                     std::optional<std::chrono::steady_clock::time_point> deadline,
                                     net::cancellation_slot slot) {
    beast::tcp_stream stream{co_await net::this_coro::executor};
    if (deadline) {
        stream.expires_at(*deadline);
    }
    auto const op = [&slot] { return net::bind_cancellation_slot(slot, use_tuple); };
    tcp::endpoint const to{net::ip::address_v4::loopback(), static_cast<unsigned short>(port)};
    auto const fail = [](beast::error_code const& ec) {
        if (ec == beast::error::timeout) {
            throw keel::error(make_error_code(keel::errc::timeout));
        }
        throw downstream_error(fmt::format("downstream: {}", ec.message()));
    };
    if (auto [ec] = co_await stream.async_connect(to, op()); ec) {
        fail(ec);
    }
    request req{http::verb::get, "/work", 11};
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(false);
    if (auto [ec, n] = co_await http::async_write(stream, req, op()); ec) {
        fail(ec);
    }
    beast::flat_buffer buffer{64 * 1024};
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024);
    if (auto [ec, n] = co_await http::async_read(stream, buffer, parser, op()); ec) {
        fail(ec);
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    if (parser.get().result_int() >= 500) {
        throw downstream_error(fmt::format("downstream: HTTP {}", parser.get().result_int()));
    }
    co_return std::move(parser.get().body());
}

// The downstream call: keel::asio::resilient{get_work, count(calls), guard(breaker),
// retry, timeout}, count(breaker(retry(timeout(call)))): every logical call counted
// with its outcome, attempts and backoff (the outcome's call_stats), calls the breaker
// rejects included; one breaker outcome per logical call, each attempt with its own
// deadline (its I/O cancelled when it passes), jittered exponential backoff between
// attempts (20 ms doubling to a 200 ms cap, full jitter).
auto make_downstream(settings const& cfg, keel::observe::pipeline_counters& calls,
                     keel::circuit_breaker& breaker) {
    return keel::asio::resilient{
        [port =
             cfg.downstream_port](keel::asio::context const& ctx) -> net::awaitable<std::string> {
            co_return co_await get_work(port, ctx.deadline(), ctx.cancellation_slot());
        },
        keel::observe::count(calls),
        keel::guard(breaker),
        keel::retry{{.max_attempts = cfg.attempts,
                     .backoff = keel::exponential{20ms, 2.0, 200ms},
                     .jitter = keel::jitter::full}},
        keel::timeout{std::chrono::milliseconds{cfg.timeout_ms}},
    };
}
using downstream_pipeline = decltype(make_downstream(
    std::declval<settings const&>(), std::declval<keel::observe::pipeline_counters&>(),
    std::declval<keel::circuit_breaker&>()));

// The service: keel's parts, the routes, and the connections it holds.
class service {
public:
    explicit service(settings const& cfg, net::io_context& io)
        : m_cfg(cfg), m_io(io), m_acceptor(std::in_place, net::make_strand(io)),
          m_breaker({.failure_rate_threshold = static_cast<double>(cfg.failure_rate),
                     .window_size = static_cast<std::uint32_t>(cfg.window),
                     .minimum_calls = static_cast<std::uint32_t>(cfg.min_calls),
                     .reset_timeout = std::chrono::milliseconds{cfg.open_ms},
                     .max_reset_timeout = std::chrono::milliseconds{cfg.open_ms} * 8,
                     .reset_jitter = std::chrono::milliseconds{cfg.open_ms} / 10,
                     .permitted_calls_in_half_open = 3}),
          m_bulkhead({.max_concurrent_calls = cfg.max_in_flight}),
          m_limits({.rate = cfg.rate, .period = 1s, .burst = cfg.burst}, {.max_keys = 100'000}),
          m_policy_header(
              keel::ratelimit_policy_value("per-client", m_limits.overflow_limiter()).str()),
          m_health({.service_id = "keel-demo", .description = "keel demo service"}),
          m_drain({.total_budget = std::chrono::milliseconds{cfg.pre_stop_ms + cfg.drain_ms} + 4s,
                   .pre_stop_delay = std::chrono::milliseconds{cfg.pre_stop_ms},
                   .in_flight_budget = std::chrono::milliseconds{cfg.drain_ms}}) {
        // The downstream's breaker: opens at `failure_rate` % failures among at least
        // `min_calls` calls of the last `window`, stays open `open_ms` (doubling on
        // consecutive re-openings, up to 8x), then lets 3 probes decide.
        m_breaker.on_transition([](auto const& t) {
            emit(fmt::format("kind=breaker from={} to={} why={}", keel::to_string(t.from),
                             keel::to_string(t.to), keel::to_string(t.why)));
        });
        for (int i = 0; i < cfg.threads; ++i) {
            m_lanes.push_back(std::make_unique<lane>(cfg, m_calls, m_breaker, io));
        }
        // Health: liveness has no dependencies; readiness adds the breaker check and
        // fails while draining; startup passes once the listener is bound.
        m_health.add_check({.name = "downstream",
                            .measurement = "circuit",
                            .kind = keel::ops::check_kind::downstream,
                            .ttl = 0s,
                            .critical = false},
                           [this] {
                               auto const state = m_breaker.state();
                               if (state == keel::circuit_state::closed) {
                                   return keel::ops::check_result::pass();
                               }
                               return keel::ops::check_result::warn(
                                   fmt::format("circuit breaker {}", keel::to_string(state)));
                           });
        // Drain: readiness fails at once and every response from then on closes its
        // connection, so keep-alive clients reconnect (to a replica still routed) instead
        // of sending on a connection about to close; the listener keeps serving for the
        // pre-stop delay, then closes together with the idle connections; requests in
        // flight finish within the drain budget.
        m_drain.attach(m_health, "draining");
        m_drain.on_not_ready([this] {
            m_closing = true;
            emit("kind=drain phase=not_ready");
        });
        m_drain.on_stop_accepting("listener", [this](std::stop_token) {
            auto const closed = stop_accepting();
            emit(fmt::format("kind=drain phase=listener_closed idle_closed={}", closed));
        });
        // /metrics: keel's components under the names the docs give (docs/demo.md).
        m_metrics.add("downstream", m_breaker);
        m_metrics.add("downstream", m_calls);
        m_metrics.add("downstream", m_bulkhead);
        m_metrics.add("per_client", m_limits);
        m_metrics.add("service", m_drain);
        m_metrics.add("service", m_health);
    }

    // Binds 127.0.0.1:`port` (0: any) and starts accepting; returns the bound port.
    int listen(int port) {
        tcp::endpoint const at{net::ip::address_v4::loopback(), static_cast<unsigned short>(port)};
        m_acceptor->open(at.protocol());
        m_acceptor->set_option(net::socket_base::reuse_address(true));
        m_acceptor->bind(at);
        m_acceptor->listen(net::socket_base::max_listen_connections);
        net::co_spawn(m_acceptor->get_executor(), accept(), net::detached);
        m_health.mark_started();
        return m_acceptor->local_endpoint().port();
    }

    keel::ops::drain_coordinator& drain() { return m_drain; }

    // Closes every connection still open (the drain budget has ended); returns how many
    // there were. Waits up to 1 s for their coroutines to see it.
    int close_all() { return close_connections(true); }

    // Destroys the listener, the lanes' strands and the connection registry: I/O objects
    // must not outlive their io_context. Call after the io_context's threads are joined
    // and before the io_context is destroyed (which destroys the coroutines still
    // suspended, and with them their drain tickets, so the service must still be alive).
    void release_io() {
        m_acceptor.reset();
        for (auto& l : m_lanes) {
            l->strand.reset();
        }
        std::lock_guard lock{m_mutex};
        m_connections.clear();
    }

private:
    // One accepted connection. `state` and the stream are touched only on its strand.
    struct connection {
        explicit connection(tcp::socket s) : stream(std::move(s)) {}
        enum class phase { idle, busy } state = phase::idle;
        beast::tcp_stream stream;
    };

    net::awaitable<void> accept() {
        while (true) {
            auto [ec, socket] =
                co_await m_acceptor->async_accept(net::make_strand(m_io), use_tuple);
            if (ec == net::error::operation_aborted || !m_acceptor->is_open()) {
                co_return;
            }
            if (ec) {
                // E.g. EMFILE: retrying at once would spin; a connection closing frees one.
                net::steady_timer pause{m_acceptor->get_executor(), 10ms};
                co_await pause.async_wait(use_tuple);
                continue;
            }
            auto c = std::make_shared<connection>(std::move(socket));
            {
                std::lock_guard lock{m_mutex};
                m_connections.insert(c);
            }
            ++m_stats.connections;
            net::co_spawn(c->stream.get_executor(), serve(c), [this, c](std::exception_ptr) {
                --m_stats.connections;
                std::lock_guard lock{m_mutex};
                m_connections.erase(c);
                m_gone.notify_all();
            });
        }
    }

    // Serves one connection: request after request until the client or the server
    // closes it, each head and each request within its deadline.
    net::awaitable<void> serve(std::shared_ptr<connection> c) {
        auto const max_body = std::size_t{64 * 1024};
        beast::flat_buffer buffer{static_cast<std::size_t>(m_cfg.max_header_bytes) + max_body};
        auto const peer = peer_address(c->stream.socket());
        auto started = std::chrono::steady_clock::now();
        for (bool first = true;; first = false) {
            c->state = connection::phase::idle;
            if (m_stopped) {
                co_return; // intake stopped while this connection was busy
            }
            if (buffer.size() == 0) {
                // Idle until the next request's first byte (the first request's head
                // deadline already runs from the accept).
                c->stream.expires_at(first ? started + head_timeout() : idle_deadline());
                auto [ec, n] = co_await c->stream.async_read_some(buffer.prepare(4096), use_tuple);
                if (ec) {
                    count_head_timeout(ec, !first);
                    co_return;
                }
                buffer.commit(n);
            }
            if (!first) {
                started = std::chrono::steady_clock::now(); // the first byte is already here
            }
            auto const life = started + std::chrono::milliseconds{m_cfg.request_timeout_ms};
            c->stream.expires_at(std::min(started + head_timeout(), life));
            http::request_parser<http::string_body> parser;
            parser.header_limit(static_cast<std::uint32_t>(m_cfg.max_header_bytes));
            parser.body_limit(max_body);
            auto [ec, n] = co_await http::async_read_header(c->stream, buffer, parser, use_tuple);
            if (!ec && parser.is_header_done()) {
                if (header_count(parser.get()) > static_cast<std::size_t>(m_cfg.max_headers)) {
                    ++m_stats.header_count;
                    co_await refuse(*c, http::status::request_header_fields_too_large,
                                    "too many header fields\n");
                    co_return;
                }
                c->stream.expires_at(life);
                std::tie(ec, n) = co_await http::async_read(c->stream, buffer, parser, use_tuple);
            }
            if (ec == http::error::header_limit) {
                ++m_stats.header_bytes;
                co_await refuse(*c, http::status::request_header_fields_too_large,
                                "request header too large\n");
                co_return;
            }
            if (ec == http::error::body_limit) {
                ++m_stats.bad_request;
                co_await refuse(*c, http::status::payload_too_large, "body too large\n");
                co_return;
            }
            if (ec) {
                if (ec == beast::error::timeout) {
                    ++m_stats.head_timeout;
                } else if (ec != http::error::end_of_stream && ec != net::error::eof &&
                           ec != net::error::operation_aborted &&
                           ec != net::error::connection_reset) {
                    ++m_stats.bad_request;
                    co_await refuse(*c, http::status::bad_request, "bad request\n");
                }
                co_return;
            }

            c->state = connection::phase::busy;
            auto const& req = parser.get();
            keel::ops::drain_ticket ticket;
            response res = co_await route(req, peer, ticket);
            res.version(req.version());
            bool const keep = req.keep_alive() && !m_closing && res.keep_alive();
            res.keep_alive(keep);
            res.prepare_payload();
            c->stream.expires_at(life);
            auto [wec, wn] = co_await http::async_write(c->stream, res, use_tuple);
            // Admitted work ends once its answer is written: the drain waits for it.
            ticket.release();
            if (wec || !keep) {
                co_await close_gracefully(*c);
                co_return;
            }
        }
    }

    std::chrono::milliseconds head_timeout() const {
        return std::chrono::milliseconds{m_cfg.head_timeout_ms};
    }
    std::chrono::steady_clock::time_point idle_deadline() const {
        return std::chrono::steady_clock::now() + std::chrono::milliseconds{m_cfg.idle_timeout_ms};
    }

    void count_head_timeout(beast::error_code const& ec, bool idle) {
        // An idle keep-alive connection timing out is normal; a first request whose head
        // never came is a slow (or silent) client.
        if (ec == beast::error::timeout && !idle) {
            ++m_stats.head_timeout;
        }
    }

    static std::size_t header_count(request const& req) {
        std::size_t n = 0;
        for (auto it = req.begin(); it != req.end(); ++it) {
            ++n;
        }
        return n;
    }

    static std::optional<keel::net::ip_address> peer_address(tcp::socket const& socket) {
        beast::error_code ec;
        auto const at = socket.remote_endpoint(ec);
        if (ec) {
            return std::nullopt;
        }
        return keel::net::ip_address::parse(at.address().to_string());
    }

    // Answers `status` and closes: the request is not read further.
    net::awaitable<void> refuse(connection& c, http::status status, std::string_view body) {
        response res{status, 11};
        res.set(http::field::content_type, "text/plain");
        res.body() = body;
        res.keep_alive(false);
        res.prepare_payload();
        c.stream.expires_after(1s);
        auto [ec, n] = co_await http::async_write(c.stream, res, use_tuple);
        if (!ec) {
            co_await close_gracefully(c);
        }
    }

    // Half-closes, then reads and discards what the client still sends, for up to 1 s
    // (nginx's lingering close, with a shorter lingering_time), before closing: closing
    // with unread input makes the kernel answer with a reset, which can destroy the
    // response before the client reads it (a client sending a huge head has megabytes
    // in flight when the 431 goes out). Bounded by time, not bytes: the bytes cost no
    // memory, and a byte bound would reset exactly the clients that send the most.
    static net::awaitable<void> close_gracefully(connection& c) {
        beast::error_code ignored;
        c.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        c.state = connection::phase::idle;
        c.stream.expires_after(1s);
        std::vector<char> sink(64 * 1024);
        while (true) {
            auto [ec, n] = co_await c.stream.async_read_some(net::buffer(sink), use_tuple);
            if (ec) {
                break;
            }
        }
        c.stream.close();
    }

    // Closes the listener and every connection not serving a request; returns how many
    // connections it closed. Runs on a drain hook's thread.
    int stop_accepting() {
        auto closed = std::make_shared<std::promise<void>>();
        net::post(m_acceptor->get_executor(), [this, closed] {
            m_stopped = true;
            beast::error_code ignored;
            m_acceptor->close(ignored);
            closed->set_value();
        });
        closed->get_future().wait_for(1s);
        return close_connections(false);
    }

    // Closes the connections (only those not serving a request, unless `busy_too`), each
    // on its own strand; waits up to 1 s for that, and with `busy_too` for their
    // coroutines to end. Returns how many it closed.
    int close_connections(bool busy_too) {
        std::vector<std::shared_ptr<connection>> all;
        {
            std::lock_guard lock{m_mutex};
            all.assign(m_connections.begin(), m_connections.end());
        }
        struct tally {
            std::mutex mutex;
            std::condition_variable done;
            std::size_t visited = 0;
            int closed = 0;
        };
        auto t = std::make_shared<tally>();
        for (auto const& c : all) {
            net::post(c->stream.get_executor(), [c, t, busy_too] {
                bool const close = busy_too || c->state == connection::phase::idle;
                if (close) {
                    c->stream.close(); // the coroutine's pending operation ends
                }
                std::lock_guard lock{t->mutex};
                t->closed += close ? 1 : 0;
                ++t->visited;
                t->done.notify_all();
            });
        }
        std::unique_lock lock{t->mutex};
        t->done.wait_for(lock, 1s, [&] { return t->visited == all.size(); });
        int const closed = t->closed;
        lock.unlock();
        if (busy_too) {
            std::unique_lock registry{m_mutex};
            m_gone.wait_for(registry, 1s, [&] { return m_connections.empty(); });
        }
        return closed;
    }

    net::awaitable<response> route(request const& req,
                                   std::optional<keel::net::ip_address> const& peer,
                                   keel::ops::drain_ticket& ticket) {
        auto const target = std::string_view{req.target().data(), req.target().size()};
        auto const path = target.substr(0, target.find('?'));
        if (req.method() != http::verb::get) {
            auto res = text(http::status::method_not_allowed, "GET only\n");
            res.set(http::field::allow, "GET");
            co_return res;
        }
        if (path == "/api/work") {
            co_return co_await work(req, peer, ticket);
        }
        if (path == "/health/live") {
            co_return probe(m_health.liveness());
        }
        if (path == "/health/ready") {
            co_return probe(m_health.readiness());
        }
        if (path == "/health/startup") {
            co_return probe(m_health.startup());
        }
        if (path == "/metrics") {
            auto const format = keel::observe::negotiate(
                std::string_view{req[http::field::accept].data(), req[http::field::accept].size()});
            auto res = text(http::status::ok, metrics_page(format));
            res.set(http::field::content_type, keel::observe::content_type(format));
            co_return res;
        }
        co_return text(http::status::not_found, "not found\n");
    }

    static response text(http::status status, std::string body) {
        response res{status, 11};
        res.set(http::field::content_type, "text/plain");
        res.body() = std::move(body);
        return res;
    }

    static response probe(keel::ops::health_report const& report) {
        auto const answer = keel::ops::to_http_response(report);
        response res{static_cast<http::status>(answer.status), 11};
        // A cached answer would report a health the service no longer has (docs/health.md).
        res.set(http::field::cache_control, "no-store");
        res.set(http::field::content_type, answer.content_type);
        res.body() = answer.body;
        return res;
    }

    net::awaitable<response> work(request const& req,
                                  std::optional<keel::net::ip_address> const& peer,
                                  keel::ops::drain_ticket& ticket) {
        in_flight_mark const mark{m_stats.in_flight};
        ticket = m_drain.try_enter();
        if (!ticket) {
            ++m_stats.draining;
            auto res = text(http::status::service_unavailable, "shutting down\n");
            res.keep_alive(false);
            co_return res;
        }

        // Every X-Forwarded-For line, in the order received: a proxy that adds its own
        // line (HAProxy's option forwardfor) leaves the client's own line first.
        std::vector<std::string_view> lines;
        auto const [from, to] = req.equal_range("X-Forwarded-For");
        for (auto it = from; it != to; ++it) {
            lines.emplace_back(it->value().data(), it->value().size());
        }
        auto const client = peer ? m_resolver.from_x_forwarded_for(*peer, lines).address.to_string()
                                 : std::string{"unknown"};
        response res{http::status::ok, 11};
        res.set(http::field::content_type, "text/plain");
        res.set("X-Client-Address", client);

        auto const decision = m_limits.try_acquire(client);
        res.set("RateLimit-Policy", m_policy_header);
        res.set("RateLimit", keel::ratelimit_value("per-client", decision).str());
        if (!decision) {
            ++m_stats.rate_limited;
            res.result(http::status::too_many_requests);
            res.set(http::field::retry_after, keel::retry_after_value(decision).str());
            res.body() = "rate limited\n";
            co_return res;
        }

        if (!m_bulkhead.try_acquire()) {
            ++m_stats.bulkhead_full;
            res.result(http::status::service_unavailable);
            res.set(http::field::retry_after, "1");
            res.body() = "downstream busy\n";
            co_return res;
        }
        // Each call runs on its lane's strand; the lanes take turns.
        auto& l = *m_lanes[m_next_lane++ % m_lanes.size()];
        auto const answer =
            co_await net::co_spawn(*l.strand, call_downstream(l), net::use_awaitable);
        auto const& result = *answer;
        m_bulkhead.release();
        // A call the breaker rejected made no attempt.
        res.set("X-Attempts", std::to_string(result.attempts()));
        if (result) {
            ++m_stats.ok;
            res.body() = *result;
        } else if (result.error() == keel::errc::circuit_open) {
            ++m_stats.circuit_open;
            res.result(http::status::service_unavailable);
            res.set(http::field::retry_after,
                    std::to_string(keel::seconds_rounded_up(result.retry_after().value_or(1s))));
            res.body() = "circuit open\n";
        } else if (result.error() == keel::errc::timeout) {
            ++m_stats.timed_out;
            res.result(http::status::gateway_timeout);
            res.body() = "downstream timed out\n";
        } else {
            ++m_stats.downstream_failed;
            res.result(http::status::bad_gateway);
            res.body() = "downstream failed\n";
        }
        co_return res;
    }

    // One downstream pipeline per io thread, each run on its own strand:
    // keel::asio::resilient runs one pipeline's calls on one executor at a time (its
    // timers and cancellation signals are Asio's, not thread-safe). The lanes share the
    // breaker, the bulkhead and the counters, which are thread-safe, so the downstream
    // still has one breaker and one limit on calls in flight.
    struct lane {
        lane(settings const& cfg, keel::observe::pipeline_counters& calls,
             keel::circuit_breaker& breaker, net::io_context& io)
            : pipeline(make_downstream(cfg, calls, breaker)), strand(net::make_strand(io)) {}
        downstream_pipeline pipeline;
        // Reset by release_io(): a strand must not outlive its io_context.
        std::optional<net::strand<net::io_context::executor_type>> strand;
    };

    // Runs one downstream call on `l` (on its strand). The optional only makes the result
    // default constructible, as co_spawn requires; it always holds an outcome.
    static net::awaitable<std::optional<keel::outcome<std::string>>> call_downstream(lane& l) {
        co_return co_await l.pipeline.async_call();
    }

    // The service's own families, then the registry's (which ends an OpenMetrics page
    // with its one `# EOF`), all through keel's exposition writer.
    std::string metrics_page(keel::observe::exposition_format format) const {
        using keel::observe::exposition_writer;
        using keel::observe::metric_type;
        std::string page;
        exposition_writer w{page, format};
        std::string labels;
        auto const labelled = [&](std::string_view key, std::string_view value,
                                  std::atomic<std::int64_t> const& v) {
            labels.clear();
            exposition_writer::append_label(labels, key, value);
            w.sample(labels, static_cast<double>(v.load()));
        };
        w.family("keel_demo_requests", metric_type::counter,
                 "Requests to /api/work by how they ended.");
        for (auto const& [name, v] : {std::pair{"ok", &m_stats.ok},
                                      std::pair{"downstream_failed", &m_stats.downstream_failed},
                                      std::pair{"timeout", &m_stats.timed_out},
                                      std::pair{"circuit_open", &m_stats.circuit_open},
                                      std::pair{"bulkhead_full", &m_stats.bulkhead_full},
                                      std::pair{"rate_limited", &m_stats.rate_limited},
                                      std::pair{"draining", &m_stats.draining}}) {
            labelled("outcome", name, *v);
        }
        w.family("keel_demo_http_refused", metric_type::counter,
                 "Requests the server refused before routing them, by reason.");
        for (auto const& [name, v] : {std::pair{"header_bytes", &m_stats.header_bytes},
                                      std::pair{"header_count", &m_stats.header_count},
                                      std::pair{"head_timeout", &m_stats.head_timeout},
                                      std::pair{"bad_request", &m_stats.bad_request}}) {
            labelled("reason", name, *v);
        }
        w.family("keel_demo_connections", metric_type::gauge, "Client connections open now.");
        w.sample({}, static_cast<double>(m_stats.connections.load()));
        w.family("keel_demo_in_flight_requests", metric_type::gauge,
                 "Requests to /api/work being served now.");
        w.sample({}, static_cast<double>(m_stats.in_flight.load()));
        m_metrics.render_to(page, format);
        return page;
    }

    settings m_cfg;
    net::io_context& m_io;
    std::optional<tcp::acceptor> m_acceptor; // reset before the io_context goes
    counters m_stats;
    keel::observe::pipeline_counters m_calls; // the downstream calls, counted by the lanes
    keel::circuit_breaker m_breaker;
    keel::bulkhead m_bulkhead;
    std::vector<std::unique_ptr<lane>> m_lanes; // one per io thread
    std::atomic<std::size_t> m_next_lane{0};
    // The real client: the socket peer is trusted only as one loopback proxy hop, so the
    // address that proxy appended is the client, and entries further left (written by
    // the client itself) are never believed.
    keel::net::client_resolver const m_resolver{
        {.trust = keel::net::trust_policy::predicate(
             [proxies = keel::net::cidr_list{"loopback"}](keel::net::ip_address const& a,
                                                          std::size_t hop) {
                 return hop == 0 && proxies.contains(a);
             })}};
    // Per-client limits: a token bucket per address, at most 100 000 addresses.
    keel::keyed<keel::token_bucket, std::string> m_limits;
    std::string m_policy_header;
    keel::ops::health_registry m_health;
    keel::ops::drain_coordinator m_drain;
    // Last: it holds references to the components above (destroyed first).
    keel::observe::registry m_metrics;

    std::atomic<bool> m_closing{false}; // from SIGTERM: every response closes its connection
    std::atomic<bool> m_stopped{false}; // intake stopped: no further request on any connection
    std::mutex m_mutex;
    std::condition_variable m_gone;
    std::unordered_set<std::shared_ptr<connection>> m_connections;
};

// Raises the open-file limit to its hard limit: every request in flight holds two
// sockets (the client's and the downstream's).
void raise_file_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

} // namespace

int main(int argc, char** argv) try {
    // First, before any thread starts: SIGTERM and SIGINT are blocked in every
    // thread and received by the waiter's own thread.
    keel::ops::signal_waiter signals;
    settings const cfg = parse(argc, argv);
    raise_file_limit();

    auto io = std::make_unique<net::io_context>(cfg.threads);
    auto svc = std::make_unique<service>(cfg, *io);
    int const port = svc->listen(cfg.port);
    auto work = net::make_work_guard(*io);
    // The threads that run the server and every downstream call; named so that a test
    // can count them (/proc/<pid>/task/*/comm).
    std::vector<std::thread> workers;
    for (int i = 0; i < cfg.threads; ++i) {
        workers.emplace_back([&io] {
            ::pthread_setname_np(::pthread_self(), "keel-io");
            io->run();
        });
    }
    fmt::print("listening port={} threads={}\n", port, cfg.threads);
    std::fflush(stdout);

    signals.wait();
    emit("kind=signal");
    auto const report = svc->drain().shutdown();
    // The drain budget has ended: whatever is still connected is closed now.
    int const forced = svc->close_all();
    work.reset();
    io->stop();
    for (auto& t : workers) {
        t.join();
    }
    svc->release_io();
    io.reset();
    for (auto const& phase : report.phases) {
        emit(fmt::format(
            "kind=drain phase={} elapsed_us={} timed_out={}", keel::ops::to_string(phase.phase),
            std::chrono::duration_cast<std::chrono::microseconds>(phase.elapsed).count(),
            phase.timed_out ? 1 : 0));
    }
    emit(fmt::format(
        "kind=drain_report in_flight_at_stop={} left={} admitted={} connections_closed={} exit={}",
        report.in_flight_at_drain, report.in_flight_abandoned, report.admitted, forced,
        report.exit_code()));
    return report.exit_code();
} catch (std::exception const& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 2;
}
