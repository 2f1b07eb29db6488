// SPDX-License-Identifier: MIT
// keel::ops::detail::in_flight_counter: the word behind keel::ops::drain_coordinator's
// tickets. The draining flag, the tickets in flight and the tickets ever granted
// live in one atomic word, so entering, leaving and beginning to drain are one
// read-modify-write each.
#pragma once

#include <keel/version.hpp>

#include <atomic>
#include <cstdint>
#include <stop_token>

KEEL_BEGIN_NAMESPACE
namespace ops::detail {

// The in-flight state in one 64-bit word, so that "draining begun" and "how many are in
// flight" change together: bit 0 is the draining flag, bits 1..23 count tickets in flight,
// bits 24..63 count tickets ever granted (modulo 2^40, the carry out of bit 63 is dropped).
// Entering adds one to both counts with a single fetch_add; if the flag was already set the
// add is undone and the ticket refused. Beginning to drain is a single fetch_or whose result
// says exactly how many tickets were in flight: a ticket either entered before it (and is
// counted, so waited for) or after it (and is refused). No window lets one slip through.
class in_flight_counter {
public:
    static constexpr std::uint64_t draining_bit = 1;
    static constexpr std::uint64_t in_flight_one = 2;
    static constexpr int in_flight_bits = 23;
    static constexpr std::uint64_t in_flight_mask = ((std::uint64_t{1} << in_flight_bits) - 1) << 1;
    static constexpr std::uint64_t admitted_one = std::uint64_t{1} << (in_flight_bits + 1);

    bool try_enter() noexcept {
        auto const prev = m_word.fetch_add(admitted_one + in_flight_one, std::memory_order_acq_rel);
        if ((prev & draining_bit) == 0) {
            return true;
        }
        leave_word(admitted_one + in_flight_one);
        return false;
    }

    void leave() noexcept { leave_word(in_flight_one); }

    // Sets the draining flag; returns the word as it was just before.
    std::uint64_t begin_draining() noexcept {
        auto const prev = m_word.fetch_or(draining_bit, std::memory_order_acq_rel);
        if (in_flight(prev) == 0) {
            m_drained.request_stop();
        }
        return prev;
    }

    std::uint64_t load() const noexcept { return m_word.load(std::memory_order_acquire); }
    std::stop_token drained_token() const noexcept { return m_drained.get_token(); }

    static constexpr std::uint64_t in_flight(std::uint64_t word) noexcept {
        return (word & in_flight_mask) >> 1;
    }
    static constexpr std::uint64_t admitted(std::uint64_t word) noexcept {
        return word >> (in_flight_bits + 1);
    }
    static constexpr bool draining(std::uint64_t word) noexcept {
        return (word & draining_bit) != 0;
    }

private:
    void leave_word(std::uint64_t amount) noexcept {
        auto const prev = m_word.fetch_sub(amount, std::memory_order_acq_rel);
        // The last ticket out after draining began wakes the shutdown. A refused entry's undo
        // may also land here when nothing is in flight; request_stop is idempotent.
        if (draining(prev) && in_flight(prev) == 1) {
            m_drained.request_stop();
        }
    }

    std::atomic<std::uint64_t> m_word{0};
    std::stop_source m_drained;
};

} // namespace ops::detail
KEEL_END_NAMESPACE
