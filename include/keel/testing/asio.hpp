// SPDX-License-Identifier: MIT
// keel::asio::run_in_virtual_time: runs an Asio io_context whose timers are
// keel::asio::basic_timer<keel::manual_clock>, moving the manual clock to the
// next timer whenever nothing else is ready. Asynchronous tests then take
// microseconds however long their waits are, and run the same way every time.
// Needs the keel::asio target (Asio); keel.hpp does not include it.
#pragma once

#include <keel/asio/detail/asio.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/version.hpp>

#if defined(KEEL_ASIO_BOOST) && KEEL_ASIO_BOOST
#include <boost/asio/io_context.hpp>
#else
#include <asio/io_context.hpp>
#endif

#include <cstddef>
#include <optional>

KEEL_BEGIN_NAMESPACE

namespace asio {

/// Runs `io` on the calling thread until no handler is ready and `clock` has no
/// timer before `until`: each time the ready handlers are done, moves `clock` to
/// its earliest timer (whose callbacks post the completions of virtual waits) and
/// goes on. Returns the number of handlers run. Waits with no end (until
/// time_point::max()) never move the clock; a program waiting only on them, or on
/// real I/O, makes this return. `io` may be run again afterwards (it is
/// restarted). Call from one thread; the clock may be shared with other code.
inline std::size_t
run_in_virtual_time(net::io_context& io, manual_clock& clock,
                    manual_clock::time_point until = manual_clock::time_point::max()) {
    std::size_t handlers = 0;
    for (;;) {
        io.restart();
        std::size_t const ran = io.poll();
        handlers += ran;
        if (ran != 0) {
            continue;
        }
        auto const next = clock.next_timer();
        if (!next || *next >= until) {
            return handlers;
        }
        clock.advance_to(*next);
    }
}

} // namespace asio

KEEL_END_NAMESPACE
