// SPDX-License-Identifier: MIT
// Helpers of the asynchronous tests: run one awaitable to completion on an
// io_context in virtual time and hand back what it gave.
#pragma once

#include <keel/asio/detail/asio.hpp>
#include <keel/testing/asio.hpp>
#include <keel/testing/manual_clock.hpp>

#include <exception>
#include <optional>
#include <stdexcept>
#include <utility>

namespace keel::testing_asio {

namespace net = keel::asio::net;

/// Spawns `task` on `io`, runs `io` in virtual time on `clock` and returns what
/// the task gave; rethrows what it threw; throws if it never completed.
template <class T>
T run(net::io_context& io, keel::manual_clock& clock, keel::asio::awaitable<T> task) {
    // co_spawn needs a default-constructible result: keel::outcome is not.
    auto wrapped = [](keel::asio::awaitable<T> inner) -> keel::asio::awaitable<std::optional<T>> {
        co_return co_await std::move(inner);
    };
    std::optional<T> value;
    std::exception_ptr error;
    bool done = false;
    net::co_spawn(io, wrapped(std::move(task)), [&](std::exception_ptr e, std::optional<T> v) {
        done = true;
        error = e;
        value = std::move(v);
    });
    keel::asio::run_in_virtual_time(io, clock);
    if (error) {
        std::rethrow_exception(error);
    }
    if (!done) {
        throw std::logic_error{"the task did not complete"};
    }
    return std::move(*value);
}

} // namespace keel::testing_asio
