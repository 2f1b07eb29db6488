// SPDX-License-Identifier: MIT
// Helpers of the asynchronous tests: spawn an awaitable on an io_context (with a
// cancellation slot if asked), run the io_context in virtual time, and read what
// the awaitable gave; operations that take a virtual time or fail on cue.
#pragma once

#include <keel/asio/context.hpp>
#include <keel/asio/detail/asio.hpp>
#include <keel/asio/timer.hpp>
#include <keel/core/outcome.hpp>
#include <keel/testing/asio.hpp>
#include <keel/testing/manual_clock.hpp>

#if defined(KEEL_ASIO_BOOST) && KEEL_ASIO_BOOST
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#else
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#endif

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace keel::testing_asio {

namespace net = keel::asio::net;
using vcontext = keel::asio::basic_context<keel::manual_clock>;

/// What a spawned awaitable gave, once it completed.
template <class T>
struct completion {
    bool done = false;
    std::exception_ptr error;
    std::optional<T> value;
    keel::manual_clock::time_point at{};
};

/// Spawns `task` on `io` (bound to `slot` if connected); the returned record fills
/// in when it completes, stamped with `clock`'s time.
template <class T>
std::shared_ptr<completion<T>> spawn(net::io_context& io, keel::manual_clock clock,
                                     keel::asio::awaitable<T> task,
                                     net::cancellation_slot slot = {}) {
    // co_spawn needs a default-constructible result: keel::outcome is not.
    auto wrapped = [](keel::asio::awaitable<T> inner) -> keel::asio::awaitable<std::optional<T>> {
        co_return co_await std::move(inner);
    };
    auto record = std::make_shared<completion<T>>();
    net::co_spawn(io, wrapped(std::move(task)),
                  net::bind_cancellation_slot(
                      slot, [record, clock](std::exception_ptr e, std::optional<T> v) {
                          record->done = true;
                          record->error = e;
                          record->value = std::move(v);
                          record->at = clock.now();
                      }));
    return record;
}

/// Spawns `task` on `io`, runs `io` in virtual time on `clock` and returns what
/// the task gave; rethrows what it threw; throws if it never completed.
template <class T>
T run(net::io_context& io, keel::manual_clock& clock, keel::asio::awaitable<T> task) {
    auto record = spawn(io, clock, std::move(task));
    keel::asio::run_in_virtual_time(io, clock);
    if (record->error) {
        std::rethrow_exception(record->error);
    }
    if (!record->done) {
        throw std::logic_error{"the task did not complete"};
    }
    return std::move(*record->value);
}

/// Emits `type` on `signal` at `when` in virtual time.
inline void emit_at(net::io_context& io, keel::manual_clock clock, net::cancellation_signal& signal,
                    keel::manual_clock::time_point when,
                    net::cancellation_type type = net::cancellation_type::terminal) {
    net::co_spawn(
        io,
        [](keel::manual_clock c, net::cancellation_signal* s, keel::manual_clock::time_point t,
           net::cancellation_type k) -> keel::asio::awaitable<void> {
            co_await keel::asio::sleep_until(c, t);
            s->emit(k);
        }(std::move(clock), &signal, when, type),
        net::detached);
}

/// Returns the virtual time `d` after the epoch.
inline keel::manual_clock::time_point at(std::chrono::nanoseconds d) {
    return keel::manual_clock::time_point{d};
}

/// Waits `d` in virtual time in the operation's coroutine; returns false if the
/// wait was cancelled (a timeout, a hedge, the caller).
inline keel::asio::awaitable<bool> take(keel::manual_clock const& clock,
                                        std::chrono::nanoseconds d) {
    return keel::asio::sleep_for(clock, d);
}

/// The error an operation reports when its work was cancelled under it.
inline std::error_code aborted() {
    return std::make_error_code(std::errc::operation_canceled);
}

} // namespace keel::testing_asio
