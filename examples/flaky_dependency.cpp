// SPDX-License-Identifier: MIT
// A flaky dependency seen through keel's core vocabulary: each call returns a
// keel::outcome instead of throwing, failures carry keel's error codes, and the
// caller retries with jittered exponential backoff through a sleeper, which a
// stop token can interrupt. keel::resilient (keel/resilient.hpp) packages this.
#include <keel/keel.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>

using namespace std::chrono_literals;

namespace {

// A dependency that fails its first two calls of every three.
struct flaky_service {
    int calls = 0;
    keel::outcome<int> fetch() {
        ++calls;
        if (calls % 3 != 0) {
            return keel::failure::from(
                std::make_exception_ptr(std::runtime_error{"503 from upstream"}));
        }
        return 42;
    }
};

} // namespace

int main() {
    flaky_service service;
    keel::real_sleeper sleeper;
    keel::xoshiro256ss random{2024}; // fixed seed: the same delays every run
    std::stop_source caller;

    auto const base = 1ms;
    for (int attempt = 1; attempt <= 4; ++attempt) {
        keel::outcome<int> const result = service.fetch();
        if (result) {
            fmt::print("attempt {}: got {}\n", attempt, *result);
            return 0;
        }
        // Full jitter (AWS): sleep U(0, base * 2^attempt).
        auto const cap = base * (1 << attempt);
        auto const delay =
            std::chrono::duration_cast<std::chrono::nanoseconds>(cap * keel::uniform_unit(random));
        try {
            result.value();
        } catch (std::exception const& e) {
            fmt::print("attempt {}: failed ({}), retrying in {} us\n", attempt, e.what(),
                       std::chrono::duration_cast<std::chrono::microseconds>(delay).count());
        }
        if (!sleeper.sleep_for(delay, caller.get_token())) {
            fmt::print("cancelled\n");
            return 1;
        }
    }
    fmt::print("gave up\n");
    return 1;
}
