// SPDX-License-Identifier: MIT
// keel::detail::count_window: the exact last-N window of keel::circuit_breaker's
// count-based mode, lock-free: a ring of the last N outcomes and one aggregate
// word, both tagged with the breaker generation they belong to.
#pragma once

#include <keel/detail/config.hpp>
#include <keel/version.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

KEEL_BEGIN_NAMESPACE
namespace detail {

// The count-based window: a ring of the last N outcomes plus one aggregate word.
//
// Aggregate word (64 bits): window tag (16) | wrapped (1) | position (15) |
// failures (16) | slow (16). The tag is the low 16 bits of the breaker generation
// the window belongs to; every recording CASes the word only while the tag matches,
// so a late recorder of an earlier generation never touches a newer window.
// Calls in the window = wrapped ? N : position.
//
// Slot (32 bits): window tag (16) | failed (1) | slow (1). A slot whose tag is older
// than the window's counts as an empty slot (a success, contributing nothing).
//
// Recording: (1) CAS the aggregate: advance the position, add the new outcome's
// failure/slow bits, learn the slot index; (2) CAS the slot from its old outcome
// to the new one (skipped when both contribute nothing, the common success case),
// (3) if the old outcome contributed, CAS the aggregate to subtract it.
// Guarantees: at quiescence the aggregate equals the sum of the ring's slots of
// its window exactly (each slot change adds new - old once); a slot's
// contribution is added before any recorder can subtract it, so the counters
// never go negative; while recordings are in flight a reading may include up to
// one not-yet-evicted outcome per in-flight recorder. When no recorder is
// overtaken by N others between steps (1) and (2), the ring holds exactly the
// last N outcomes in position order.
class count_window {
public:
    static constexpr std::uint32_t max_size = 32768;

    explicit count_window(std::uint32_t size)
        : m_size(size), m_slots(std::make_unique<std::atomic<std::uint32_t>[]>(size)) {
        for (std::uint32_t i = 0; i < size; ++i) {
            m_slots[i].store(0, std::memory_order_relaxed);
        }
    }

    struct totals {
        std::uint64_t calls = 0;
        std::uint64_t failures = 0;
        std::uint64_t slow = 0;
    };

    // Empties the window and gives it the tag of `generation`. Call with the
    // breaker's lock held, before publishing the generation.
    void reset_locked(std::uint64_t generation) noexcept {
        auto const tag = static_cast<std::uint16_t>(generation);
        // Older than the new tag, so late recorders of earlier windows see it as
        // theirs or older and never as newer.
        std::uint32_t const cleared = std::uint32_t{static_cast<std::uint16_t>(tag - 1)} << 16;
        for (std::uint32_t i = 0; i < m_size; ++i) {
            m_slots[i].store(cleared, std::memory_order_relaxed);
        }
        m_aggregate.store(std::uint64_t{tag} << 48, std::memory_order_release);
    }

    // Records one outcome for the window of `generation`; returns the totals right
    // after it, or nothing if the window belongs to another generation.
    KEEL_ALWAYS_INLINE std::optional<totals> record(std::uint64_t generation, bool failed,
                                                    bool slow) noexcept {
        auto const tag = static_cast<std::uint16_t>(generation);
        std::uint64_t const add = (failed ? std::uint64_t{1} << 16 : 0) | (slow ? 1U : 0U);
        std::uint64_t word = m_aggregate.load(std::memory_order_relaxed);
        std::uint64_t next = 0;
        std::uint32_t index = 0;
        do {
            if (tag_of(word) != tag) {
                return std::nullopt;
            }
            index = position_of(word);
            std::uint64_t const advanced = index + 1 == m_size ? 0 : index + 1;
            bool const wrapped = wrapped_of(word) || index + 1 == m_size;
            next = (word & ~(position_mask | wrapped_bit)) | (advanced << 32) |
                   (wrapped ? wrapped_bit : 0);
            next += add;
        } while (!m_aggregate.compare_exchange_weak(word, next, std::memory_order_acq_rel,
                                                    std::memory_order_relaxed));
        std::uint64_t after = next;

        std::uint32_t const outcome = (failed ? 2U : 0U) | (slow ? 1U : 0U);
        std::uint32_t const desired = (std::uint32_t{tag} << 16) | outcome;
        auto& slot = m_slots[index];
        std::uint32_t current = slot.load(std::memory_order_acquire);
        std::uint32_t old = 0;
        for (;;) {
            auto const distance = static_cast<std::int16_t>(
                static_cast<std::uint16_t>(tag - static_cast<std::uint16_t>(current >> 16)));
            if (distance < 0) {
                // The slot already belongs to a newer window: this recorder is late
                // and its aggregate update went to a window nobody reads any more.
                return totals_of(after);
            }
            old = distance == 0 ? (current & 3U) : 0U;
            if (outcome == 0 && old == 0) {
                return totals_of(after); // nothing to change
            }
            if (slot.compare_exchange_weak(current, desired, std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
                break;
            }
        }
        if (old != 0) {
            std::uint64_t const sub = ((old & 2U) ? std::uint64_t{1} << 16 : 0) | (old & 1U);
            word = m_aggregate.load(std::memory_order_relaxed);
            do {
                if (tag_of(word) != tag) {
                    return totals_of(after);
                }
                next = word - sub;
            } while (!m_aggregate.compare_exchange_weak(word, next, std::memory_order_acq_rel,
                                                        std::memory_order_relaxed));
            after = next;
        }
        return totals_of(after);
    }

    // Returns the current totals (whatever window the aggregate holds).
    totals read() const noexcept { return totals_of(m_aggregate.load(std::memory_order_acquire)); }

    std::uint32_t size() const noexcept { return m_size; }

private:
    static constexpr std::uint64_t position_mask = std::uint64_t{0x7FFF} << 32;
    static constexpr std::uint64_t wrapped_bit = std::uint64_t{1} << 47;

    static std::uint16_t tag_of(std::uint64_t word) noexcept {
        return static_cast<std::uint16_t>(word >> 48);
    }
    static std::uint32_t position_of(std::uint64_t word) noexcept {
        return static_cast<std::uint32_t>((word & position_mask) >> 32);
    }
    static bool wrapped_of(std::uint64_t word) noexcept { return (word & wrapped_bit) != 0; }

    totals totals_of(std::uint64_t word) const noexcept {
        return totals{wrapped_of(word) ? m_size : position_of(word), (word >> 16) & 0xFFFF,
                      word & 0xFFFF};
    }

    alignas(64) std::atomic<std::uint64_t> m_aggregate{0};
    std::uint32_t m_size;
    std::unique_ptr<std::atomic<std::uint32_t>[]> m_slots;
};

} // namespace detail
KEEL_END_NAMESPACE
