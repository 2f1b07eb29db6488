// SPDX-License-Identifier: MIT
// A flaky dependency guarded by keel::resilient{call, retry, timeout}: each
// attempt gets a 50 ms deadline (a stop token the call honours), failures and
// HTTP 503 answers are retried with jittered exponential backoff, a 404 is not,
// and when the dependency is down the caller gets its exception after three
// attempts. Runs in well under a second.
#include <keel/keel.hpp>

#include <fmt/format.h>

#include <chrono>
#include <exception>
#include <stdexcept>
#include <stop_token>
#include <string>

using namespace std::chrono_literals;

namespace {

struct response {
    int status = 200;
    std::string body;
};

// A dependency that misbehaves in a scripted way: the first request hangs, the
// second answers 503, then it works; set `down` and it refuses connections.
class flaky_service {
public:
    bool down = false;

    response get(std::string const& path, std::stop_token stop) {
        ++m_requests;
        if (down) {
            throw std::runtime_error{"connection refused"};
        }
        if (m_requests == 1) {
            // Hangs for a second unless the deadline's stop token interrupts it.
            keel::real_sleeper{}.sleep_for(1s, stop);
            return {0, "interrupted"};
        }
        if (m_requests == 2) {
            return {503, "busy"};
        }
        if (path == "/users/7") {
            return {404, "no such user"};
        }
        return {200, "user " + path.substr(path.rfind('/') + 1)};
    }

private:
    int m_requests = 0;
};

double millis(std::chrono::nanoseconds d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

} // namespace

int main() {
    flaky_service service;
    auto const started = std::chrono::steady_clock::now();
    auto const elapsed = [&] { return millis(std::chrono::steady_clock::now() - started); };

    keel::retry_options options{
        .max_attempts = 3,
        .backoff = keel::exponential{10ms, 2.0, 200ms},
        .jitter = keel::jitter::full,
        .on_retry =
            [&](keel::retry_event const& e) {
                std::string why = "a failure";
                if (auto const* r = e.result<response>()) {
                    why = fmt::format("HTTP {}", r->status);
                } else if (e.failure() && e.failure()->code) {
                    why = e.failure()->code.message();
                } else if (e.failure() && e.failure()->exception) {
                    try {
                        std::rethrow_exception(e.failure()->exception);
                    } catch (std::exception const& ex) {
                        why = ex.what();
                    }
                }
                fmt::print("  [{:6.1f} ms] attempt {} failed ({}), retrying in {:.1f} ms\n",
                           elapsed(), e.attempt(), why, millis(e.delay()));
            },
    };
    // Retry failures (timeouts, exceptions) and 503 answers; a 404 is an answer.
    auto const retryable = keel::any_of(
        keel::on_failure{}, keel::on_result([](response const& r) { return r.status == 503; }));

    auto get = keel::resilient{
        [&](keel::context const& ctx, std::string const& path) {
            return service.get(path, ctx.stop_token());
        },
        keel::retry{options, retryable},
        keel::timeout{50ms}, // innermost: each attempt has its own deadline
    };

    fmt::print("GET /users/42 (hangs, then 503, then works):\n");
    response const user = get(std::string{"/users/42"});
    fmt::print("  [{:6.1f} ms] -> {} {}\n\n", elapsed(), user.status, user.body);

    fmt::print("GET /users/7 (404 is not retried):\n");
    response const missing = get(std::string{"/users/7"});
    fmt::print("  [{:6.1f} ms] -> {} {}\n\n", elapsed(), missing.status, missing.body);

    fmt::print("GET /users/42 while the service is down:\n");
    service.down = true;
    try {
        get(std::string{"/users/42"});
        fmt::print("  unexpected success\n");
        return 1;
    } catch (std::runtime_error const& e) {
        fmt::print("  [{:6.1f} ms] -> gave up after 3 attempts: {}\n", elapsed(), e.what());
    }

    bool const ok = user.status == 200 && missing.status == 404;
    return ok ? 0 : 1;
}
