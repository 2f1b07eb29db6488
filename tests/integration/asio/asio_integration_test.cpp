// SPDX-License-Identifier: MIT
// keel::asio against real sockets on loopback, on Boost.Asio (and Beast for
// HTTP), with the real clock:
//   - cancellation reaches the I/O: an attempt blocked reading from a listener
//     that never answers is ended by keel::timeout and by the caller, and the
//     read completes with operation_aborted;
//   - a real dependency: keel_downstream (examples/service) called over HTTP
//     through guard(breaker), retry and timeout, as the demo's scenarios do;
//   - scale: 10,000 concurrent guarded calls on one io thread against a server
//     in a forked child process.
// One translation unit: Asio and Beast cost seconds of compile time each.
#include <keel/asio/resilient.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/timeout.hpp>

#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
namespace ki = keel::integration;
namespace net = keel::asio::net;
namespace http = boost::beast::http;
using ki::mono;
using ki::tcp;
using error_code = keel::asio::error_code;

namespace {

// Accepts every connection on 127.0.0.1 and never answers: a read from one of
// its connections blocks until something cancels it.
class silent_listener {
public:
    explicit silent_listener(net::io_context& io)
        : m_acceptor(io, {net::ip::address_v4::loopback(), 0}) {
        accept();
    }

    tcp::endpoint endpoint() const { return m_acceptor.local_endpoint(); }
    std::size_t accepted() const { return m_accepted.size(); }

private:
    void accept() {
        m_acceptor.async_accept([this](error_code ec, tcp::socket socket) {
            if (!ec) {
                m_accepted.push_back(std::move(socket));
                accept();
            }
        });
    }

    tcp::acceptor m_acceptor;
    std::vector<tcp::socket> m_accepted;
};

// One attempt against a silent_listener: connects, then reads with the read bound
// to the attempt's cancellation slot; records what the read completed with in
// `reads` and fails with it.
keel::asio::awaitable<std::size_t> read_once(tcp::endpoint at, keel::asio::context const& ctx,
                                             std::vector<error_code>& reads) {
    tcp::socket socket{co_await net::this_coro::executor};
    co_await socket.async_connect(
        at, net::bind_cancellation_slot(ctx.cancellation_slot(), net::use_awaitable));
    std::array<char, 64> buffer{};
    auto const [ec, n] = co_await socket.async_read_some(
        net::buffer(buffer),
        net::bind_cancellation_slot(ctx.cancellation_slot(),
                                    net::experimental::as_tuple(net::use_awaitable)));
    reads.push_back(ec);
    if (ec) {
        throw boost::system::system_error{ec};
    }
    co_return n;
}

// Runs `pipeline.async_call()` and emits terminal cancellation on its coroutine
// `after` the start; returns the outcome and how long after the emission it came.
template <class Pipeline>
auto cancel_after(net::io_context& io, Pipeline const& pipeline, mono::duration after) {
    net::cancellation_signal cancel;
    ki::completion<typename decltype(pipeline.async_call())::value_type> result;
    ki::spawn(io, pipeline.async_call(), result, cancel.slot());
    net::steady_timer timer{io, after};
    mono::time_point emitted{};
    timer.async_wait([&](error_code) {
        emitted = mono::now();
        cancel.emit(net::cancellation_type::terminal);
    });
    ki::run_until(io, [&] { return result.done; });
    auto const latency = mono::now() - emitted;
    return std::pair{result.get(), latency};
}

} // namespace

TEST_CASE(
    "keel::asio::resilient with keel::timeout cancels each attempt blocked reading a socket that "
    "never answers, ending the read with operation_aborted and the call with errc::timeout",
    "[asio][integration][timeout]") {
    net::io_context io{1};
    silent_listener listener{io};
    std::vector<error_code> reads;
    auto const pipeline = keel::asio::resilient{
        [&](keel::asio::context const& ctx) { return read_once(listener.endpoint(), ctx, reads); },
        keel::retry{
            {.max_attempts = 2, .backoff = keel::constant{1ms}, .jitter = keel::jitter::none}},
        keel::timeout{5ms}};

    auto const start = mono::now();
    auto const result = ki::run(io, pipeline.async_call());
    auto const elapsed = mono::now() - start;

    REQUIRE_FALSE(result.has_value());
    CHECK(result.failure().is(keel::errc::timeout));
    CHECK(listener.accepted() == 2);
    REQUIRE(reads.size() == 2);
    CHECK(reads[0] == net::error::operation_aborted);
    CHECK(reads[1] == net::error::operation_aborted);
    // Two 5 ms attempts and a 1 ms wait; the socket alone would block forever.
    CHECK(elapsed >= 11ms);
    CHECK(elapsed < 1s);
}

TEST_CASE(
    "keel::asio::resilient lets the caller's terminal cancellation reach a socket read that never "
    "completes, ending the read with operation_aborted and the call with errc::cancelled",
    "[asio][integration][cancel]") {
    net::io_context io{1};
    silent_listener listener{io};
    std::vector<error_code> reads;
    auto const op = [&](keel::asio::context const& ctx) {
        return read_once(listener.endpoint(), ctx, reads);
    };

    SECTION("the operation runs in the caller's coroutine (no timeout in the pipeline)") {
        auto const pipeline = keel::asio::resilient{op};
        auto const [result, latency] = cancel_after(io, pipeline, 5ms);
        REQUIRE_FALSE(result.has_value());
        CHECK(result.failure().is(keel::errc::cancelled));
        REQUIRE(reads.size() == 1);
        CHECK(reads[0] == net::error::operation_aborted);
        CHECK(latency < 100ms);
    }
    SECTION("under guard(breaker), retry and timeout, with no retry and no breaker verdict") {
        keel::circuit_breaker breaker{{.minimum_calls = 1}};
        auto const pipeline = keel::asio::resilient{
            op, keel::guard(breaker),
            keel::retry{{.max_attempts = 3, .backoff = keel::constant{1ms}}}, keel::timeout{10s}};
        auto const [result, latency] = cancel_after(io, pipeline, 5ms);
        REQUIRE_FALSE(result.has_value());
        CHECK(result.failure().is(keel::errc::cancelled));
        REQUIRE(reads.size() == 1);
        CHECK(reads[0] == net::error::operation_aborted);
        CHECK(latency < 100ms);
        auto const metrics = breaker.metrics();
        CHECK(metrics.calls == 0);
        CHECK(metrics.state == keel::circuit_state::closed);
    }
    CHECK(listener.accepted() == 1);
}

#if defined(KEEL_DOWNSTREAM_PROGRAM)
namespace {

// A failed call to keel_downstream: a 5xx answer (a transport error arrives as
// the system_error Asio throws).
struct http_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Changes how keel_downstream behaves (its control port), from the io thread.
keel::asio::awaitable<void> control(ki::downstream_process const& downstream, std::string path) {
    auto const response = co_await ki::http_get(downstream.control_port, std::move(path));
    if (response.result() != http::status::ok) {
        throw std::runtime_error{"keel_downstream refused a control request"};
    }
}

// Waits on the io thread.
keel::asio::awaitable<void> pause(mono::duration d) {
    net::steady_timer timer{co_await net::this_coro::executor, d};
    co_await timer.async_wait(net::use_awaitable);
}

} // namespace

TEST_CASE("keel::asio::resilient guards a Beast HTTP client calling keel_downstream, where retries "
          "absorb 30 % failures and the breaker opens during an outage, sheds in under a "
          "millisecond and closes again after it",
          "[asio][integration][downstream]") {
    ki::downstream_process downstream{KEEL_DOWNSTREAM_PROGRAM};
    net::io_context io{1};

    // As the demo service: breaker(retry(timeout(call))), one breaker verdict per
    // logical call, each attempt with its own deadline.
    keel::circuit_breaker breaker{{.failure_rate_threshold = 50,
                                   .window_size = 10,
                                   .minimum_calls = 4,
                                   .reset_timeout = 300ms,
                                   .max_reset_timeout = 300ms,
                                   .reset_jitter = 0ms,
                                   .permitted_calls_in_half_open = 2}};
    int attempts = 0;
    int retries = 0;
    auto const work = keel::asio::resilient{
        [&](keel::asio::context const&) -> keel::asio::awaitable<std::string> {
            ++attempts;
            auto response = co_await ki::http_get(downstream.data_port, "/work");
            if (response.result_int() >= 500) {
                throw http_error{"keel_downstream: HTTP " + std::to_string(response.result_int())};
            }
            co_return std::move(response.body());
        },
        keel::guard(breaker),
        keel::retry{{.max_attempts = 3,
                     .backoff = keel::exponential{2ms, 2.0, 20ms},
                     .jitter = keel::jitter::full,
                     .on_retry = [&](keel::retry_event const&) { ++retries; }}},
        keel::timeout{250ms}};

    struct report {
        int flaky_served = 0;
        int flaky_attempts = 0;
        int outage_timeouts = 0;
        bool opened = false;
        int shed = 0;
        int attempts_while_shedding = 0;
        std::vector<mono::duration> shed_latencies;
        bool closed_again = false;
        mono::duration recovery{};
        int served_after = 0;
    };
    auto const scenario = [&]() -> keel::asio::awaitable<report> {
        report r;
        // 30 % of the downstream's answers are 503, spread evenly: never two in a
        // row, so three attempts serve every call.
        co_await control(downstream, "/control?fail=0.3");
        int const before = attempts;
        for (int i = 0; i < 30; ++i) {
            r.flaky_served += (co_await work.async_call()).has_value() ? 1 : 0;
        }
        r.flaky_attempts = attempts - before;

        // Outage: every request hangs. Five calls at once (the closed breaker
        // admits them all) each end at their attempts' timeouts: with the five
        // served calls still in the window of 10, that is 50 %, and it opens.
        co_await control(downstream, "/control?hang=1");
        net::steady_timer all_done{co_await net::this_coro::executor, mono::time_point::max()};
        int pending = 5;
        auto const one = [&]() -> keel::asio::awaitable<void> {
            auto const result = co_await work.async_call();
            r.outage_timeouts += result.error() == keel::errc::timeout ? 1 : 0;
            if (--pending == 0) {
                all_done.cancel();
            }
        };
        for (int i = 0; i < 5; ++i) {
            net::co_spawn(all_done.get_executor(), one(), net::detached);
        }
        co_await all_done.async_wait(net::experimental::as_tuple(net::use_awaitable));
        r.opened = (co_await work.async_call()).error() == keel::errc::circuit_open;
        // While open: rejected without touching the network.
        int const attempts_open = attempts;
        for (int i = 0; i < 50; ++i) {
            auto const start = mono::now();
            auto const result = co_await work.async_call();
            r.shed_latencies.push_back(mono::now() - start);
            r.shed += result.error() == keel::errc::circuit_open ? 1 : 0;
        }
        r.attempts_while_shedding = attempts - attempts_open;

        // The outage ends (the hung requests are released); after the reset
        // timeout, the half-open probes succeed and the breaker closes.
        co_await control(downstream, "/control?hang=0");
        auto const back = mono::now();
        while (mono::now() - back < 10s) {
            auto const result = co_await work.async_call();
            if (result.has_value() && breaker.state() == keel::circuit_state::closed) {
                r.closed_again = true;
                break;
            }
            co_await pause(20ms);
        }
        r.recovery = mono::now() - back;
        for (int i = 0; i < 10; ++i) {
            r.served_after += (co_await work.async_call()).has_value() ? 1 : 0;
        }
        co_return r;
    };

    auto r = ki::run(io, scenario());
    auto const exit_code = downstream.stop();

    std::sort(r.shed_latencies.begin(), r.shed_latencies.end());
    auto const median = r.shed_latencies[r.shed_latencies.size() / 2];
    auto const worst = r.shed_latencies.back();
    UNSCOPED_INFO("30 % failures: " << r.flaky_served << " of 30 served in " << r.flaky_attempts
                                    << " attempts");
    UNSCOPED_INFO("outage: " << r.outage_timeouts << " of 5 calls timed out");
    UNSCOPED_INFO("shedding: median " << ki::ms(median) << " ms, max " << ki::ms(worst) << " ms");
    UNSCOPED_INFO("recovery: closed " << ki::ms(r.recovery) << " ms after the outage ended");
    CHECK(r.flaky_served == 30);
    CHECK(r.flaky_attempts > 30); // some calls were served by a retry
    CHECK(retries == r.flaky_attempts - 30 + 2 * r.outage_timeouts);
    CHECK(r.opened);
    CHECK(r.outage_timeouts == 5);
    CHECK(r.shed == 50);
    CHECK(r.attempts_while_shedding == 0);
    CHECK(median < 1ms);
    CHECK(worst < 250ms); // never an attempt's timeout
    CHECK(r.closed_again);
    CHECK(r.served_after == 10);
    CHECK(exit_code == 0);
    // Shown in the test log (ctest -V) as the measured figures.
    WARN("shed median " << ki::ms(median) << " ms, max " << ki::ms(worst) << " ms; recovered in "
                        << ki::ms(r.recovery) << " ms");
}
#endif

namespace {

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KEEL_INTEGRATION_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KEEL_INTEGRATION_SANITIZED 1
#endif
#if defined(__OPTIMIZE__) && !defined(KEEL_INTEGRATION_SANITIZED)
constexpr bool full_scale = true;
#else
constexpr bool full_scale = false;
#endif

// The scale test's server, in its own process: each call keeps one connection
// for its attempts (a keep-alive client); the server answers "fail" to the first
// two attempts of each call and "ok <id>" to the third, then closes the
// connection (so the TIME_WAIT stays on its side). The first attempts are held
// until every call has made one, so that all the calls are in flight at once,
// and then answered in arrival order, one every `pace`: 10,000 answers at once
// would measure how long one thread takes to read them all, not keel.
struct fail_twice_server {
    int calls;
    std::chrono::microseconds pace;

    struct state {
        std::vector<int> tries;
        int held = 0;
        net::steady_timer all_in;
        mono::time_point released{};
    };

    void operator()(net::io_context& io, tcp::acceptor& acceptor,
                    ki::forked_server::stop_socket& stop) const {
        state shared{std::vector<int>(static_cast<std::size_t>(calls), 0), 0,
                     net::steady_timer{io, mono::now() + 60s}};
        net::co_spawn(io, accept_loop(acceptor, shared), net::detached);
        char byte = 0;
        stop.async_read_some(net::buffer(&byte, 1), [&](error_code, std::size_t) { io.stop(); });
        io.run();
    }

    keel::asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, state& shared) const {
        for (;;) {
            auto [ec, socket] =
                co_await acceptor.async_accept(net::experimental::as_tuple(net::use_awaitable));
            if (!ec) {
                net::co_spawn(acceptor.get_executor(), serve(std::move(socket), shared),
                              net::detached);
            }
        }
    }

    keel::asio::awaitable<void> serve(tcp::socket socket, state& shared) const {
        auto const token = net::experimental::as_tuple(net::use_awaitable);
        std::string line;
        for (;;) {
            auto const [ec, n] =
                co_await net::async_read_until(socket, net::dynamic_buffer(line), '\n', token);
            int id = -1;
            std::from_chars(line.data(), line.data() + n, id);
            line.erase(0, n);
            if (ec || id < 0 || id >= calls) {
                co_return;
            }
            int const attempt = ++shared.tries[static_cast<std::size_t>(id)];
            if (attempt == 1) {
                int const order = shared.held++;
                if (shared.held == calls) {
                    shared.released = mono::now();
                    shared.all_in.cancel();
                } else {
                    co_await shared.all_in.async_wait(token);
                }
                net::steady_timer turn{socket.get_executor(), shared.released + order * pace};
                co_await turn.async_wait(token);
            }
            std::string const reply = attempt <= 2 ? "fail\n" : "ok " + std::to_string(id) + "\n";
            co_await net::async_write(socket, net::buffer(reply), token);
            if (attempt > 2) {
                error_code ignored;
                socket.shutdown(tcp::socket::shutdown_both, ignored);
                co_return;
            }
        }
    }
};

} // namespace

TEST_CASE("keel::asio::resilient runs 10,000 concurrent guarded calls on one io thread, each "
          "failing twice and retried with backoff, and all complete while the thread is never busy "
          "for more than 10 ms at a stretch and keel starts no thread",
          "[asio][integration][scale]") {
    // Sanitizers and unoptimised builds make every step 3 to 15 times slower:
    // they run a tenth of the calls and check the stall against a looser bound
    // (still far below a backoff or a timeout), so that the loop is never saturated.
    constexpr int calls = full_scale ? 10'000 : 1'000;
    constexpr auto stall_bound = full_scale ? 10ms : 50ms;
    // The server runs in a child process forked before this one has an io_context
    // or a thread: 10,000 client and 10,000 server sockets do not fit in one
    // process's 20,000 descriptors.
    ki::forked_server server{fail_twice_server{calls, 40us}};
    tcp::endpoint const at{net::ip::address_v4::loopback(), server.port};
    auto const threads_before = ki::thread_count();

    net::io_context io{1};
    keel::circuit_breaker breaker{{}};
    std::vector<int> attempts(calls, 0);
    std::vector<tcp::socket> connections;
    connections.reserve(calls);
    for (int id = 0; id < calls; ++id) {
        connections.emplace_back(io);
    }
    auto const call = keel::asio::resilient{
        [&](keel::asio::context const& ctx, int id) -> keel::asio::awaitable<keel::outcome<int>> {
            auto const index = static_cast<std::size_t>(id);
            attempts[index] = ctx.attempt();
            auto& socket = connections[index];
            auto const failed = [&](error_code ec) {
                socket.close();
                return keel::failure{ec};
            };
            auto const token = net::experimental::as_tuple(net::use_awaitable);
            if (!socket.is_open()) {
                if (auto const [ec] = co_await socket.async_connect(at, token); ec) {
                    co_return failed(ec);
                }
            }
            std::string const request = std::to_string(id) + "\n";
            if (auto const [ec, n] = co_await net::async_write(socket, net::buffer(request), token);
                ec) {
                co_return failed(ec);
            }
            std::string reply;
            auto const [ec, n] =
                co_await net::async_read_until(socket, net::dynamic_buffer(reply), '\n', token);
            if (ec) {
                co_return failed(ec);
            }
            if (reply == "fail\n") {
                co_return keel::failure{
                    std::make_error_code(std::errc::resource_unavailable_try_again)};
            }
            // The last answer: the server closes first, so the TIME_WAIT is its own.
            char byte = 0;
            co_await socket.async_read_some(net::buffer(&byte, 1), token);
            socket.close();
            int answered = -1;
            std::from_chars(reply.data() + 3, reply.data() + n, answered);
            co_return answered;
        },
        keel::guard(breaker),
        keel::retry{{.max_attempts = 3,
                     .backoff = keel::exponential{1s, 2.0, 2s},
                     .jitter = keel::jitter::full}},
        keel::timeout{10s}};

    ki::heartbeat beat{io, 1ms};
    std::vector<int> answers(calls, -1);
    int in_flight = 0;
    int most_in_flight = 0;
    int completed = 0;
    auto const one = [&](int id) -> keel::asio::awaitable<void> {
        most_in_flight = std::max(most_in_flight, ++in_flight);
        auto const result = co_await call.async_call(id);
        --in_flight;
        answers[static_cast<std::size_t>(id)] = result.has_value() ? *result : -1;
        if (++completed == calls) {
            beat.stop();
        }
    };
    // Starts the calls 20 per turn of the event loop, as connections arriving
    // at a server would; each turn runs the heartbeat too.
    auto const launch = [&]() -> keel::asio::awaitable<void> {
        for (int id = 0; id < calls; ++id) {
            net::co_spawn(io, one(id), net::detached);
            if (id % 20 == 19) {
                co_await net::post(io, net::use_awaitable);
            }
        }
    };

    auto const start = mono::now();
    beat.start();
    net::co_spawn(io, launch(), net::detached);
    ki::run_until(io, [&] { return completed == calls; });
    auto const elapsed = mono::now() - start;
    auto const cpu = ki::thread_cpu_time();
    auto const threads_after = ki::thread_count();
    auto const server_exit = server.stop();

    int correct = 0;
    int three_attempts = 0;
    for (int id = 0; id < calls; ++id) {
        correct += answers[static_cast<std::size_t>(id)] == id ? 1 : 0;
        three_attempts += attempts[static_cast<std::size_t>(id)] == 3 ? 1 : 0;
    }
    // The figures, in the test log (ctest -V). The wall-clock stall also counts
    // the time other processes held the core (on a 2-core machine running other
    // tests it measures the machine: a load average below the core count did not
    // keep it from 7-30 ms with the loop itself busy 2-4 ms), so it is reported;
    // what is checked is the loop's own part of its longest stall, the io thread's
    // CPU time in it: 2-6 ms measured here in the optimised build (a core of its own,
    // chrt -f, gave 2-3 ms before the timeouts shared one deadline queue).
    double const load = ki::load_average();
    WARN(calls << " calls in " << ki::ms(elapsed) << " ms (io thread CPU " << ki::ms(cpu)
               << " ms), " << most_in_flight << " in flight at once; heartbeat max stall "
               << ki::ms(beat.max_stall()) << " ms (busy " << ki::ms(beat.max_busy_stall())
               << " ms) over " << beat.ticks() << " ticks; threads " << threads_before << " / "
               << beat.max_threads() << " / " << threads_after << "; load " << load);
    CHECK(correct == calls);
    CHECK(three_attempts == calls);
    CHECK(most_in_flight == calls);
    CHECK(beat.max_busy_stall() < stall_bound);
    CHECK(beat.max_threads() == threads_before);
    CHECK(threads_after == threads_before);
    CHECK(breaker.metrics().failed_calls == 0);
    CHECK(server_exit == 0);
}
