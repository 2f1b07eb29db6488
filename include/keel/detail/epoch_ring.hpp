// SPDX-License-Identifier: MIT
// keel::detail::epoch_ring: a sliding window of N lock-free buckets, bucket
// e mod N counting epoch e (a second, a tenth of a ttl). The time-based window
// of keel::circuit_breaker and the two windows of keel::retry_budget are built
// on it, so both follow one rule for a writer whose epoch is already old.
#pragma once

#include <keel/detail/config.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

KEEL_BEGIN_NAMESPACE
namespace detail {

/// Counts per epoch over the last `size` epochs, in `size` atomic 64-bit buckets.
///
/// A bucket word is stamp (StampBits) | payload (64 - StampBits). The stamp is
/// the epoch modulo 2^StampBits; what the payload holds is the user's (one count,
/// or several packed counts): a `step(payload, epoch)` computes the new payload
/// from the old one (0 for a bucket that holds no count of that epoch), or
/// returns nothing to leave the bucket as it is (a refusal, a full bucket).
/// `latest` is the largest epoch written since the last reset.
///
/// The late-writer rule: epochs never go backwards. update(epoch) acts at
/// max(epoch, latest), and read(now) reads the window ending at max(now, latest).
/// A writer whose epoch is old (a thread preempted between reading its clock and
/// writing, or a clock that moved back) is therefore counted once, at the latest
/// epoch, in a bucket every later reader still sees. It never overwrites a newer
/// epoch's bucket and is never dropped. Within the bucket it writes, the step
/// and the compare-and-swap see the same payload, so a step that checks a bound
/// (the retry budget's balance) is exact against every other writer of that
/// epoch.
///
/// Why it holds: a writer raises `latest` before it writes its bucket, and all
/// accesses are sequentially consistent. So a writer that loads a bucket stamped
/// with another epoch and then loads `latest` no higher than its own epoch knows
/// the bucket holds an older epoch (one that has left every window still read),
/// and replaces it; if `latest` is higher, the ring has moved on and the writer
/// retries at `latest`. The same ordering lets a writer that finds `latest`
/// raised past its epoch after its write know that a writer of the newer epoch
/// may have missed it (the retry budget takes such a withdrawal back and decides
/// again at the newer epoch: amend()).
///
/// Limits: epochs are >= 0. A bucket left untouched for a multiple of
/// 2^StampBits epochs can be misread as current. reset() is not atomic with
/// writers racing it: one of them may leave its count in the fresh ring. A
/// clock that moves back freezes the window at `latest` until it catches up or
/// the ring is reset.
template <unsigned StampBits>
class epoch_ring {
    static_assert(StampBits >= 8 && StampBits <= 56);

public:
    /// Bits left for the payload.
    static constexpr unsigned payload_bits = 64 - StampBits;
    /// The largest payload a bucket holds.
    static constexpr std::uint64_t payload_max = (std::uint64_t{1} << payload_bits) - 1;

    /// Builds an empty ring of `size` (>= 1) buckets.
    explicit epoch_ring(std::uint32_t size)
        : m_size(size), m_buckets(std::make_unique<std::atomic<std::uint64_t>[]>(size)) {
        for (std::uint32_t i = 0; i < size; ++i) {
            m_buckets[i].store(0, std::memory_order_relaxed);
        }
    }

    /// Returns the number of buckets (epochs in the window).
    std::uint32_t size() const noexcept { return m_size; }

    /// Returns the largest epoch written since the last reset, or -1.
    std::int64_t latest() const noexcept { return m_latest.load(); }

    /// Empties every bucket and forgets `latest`, so the window follows the
    /// writers' epochs again (even if they are older than before).
    void reset() noexcept {
        for (std::uint32_t i = 0; i < m_size; ++i) {
            m_buckets[i].store(0);
        }
        m_latest.store(-1);
    }

    /// Applies `step` to the payload of the bucket of max(`epoch`, latest())
    /// (`epoch` >= 0); returns the epoch it wrote at, or nothing if `step`
    /// declined. `step(std::uint64_t payload, std::int64_t at)` returns
    /// std::optional<std::uint64_t>, a payload <= payload_max; it may run several
    /// times (once per compare-and-swap attempt) and must have no side effects.
    template <class Step>
    KEEL_ALWAYS_INLINE std::optional<std::int64_t> update(std::int64_t epoch, Step step) noexcept {
        std::int64_t at = raise(epoch);
        auto* bucket = &m_buckets[index(at)];
        std::uint64_t word = bucket->load();
        for (;;) {
            std::uint64_t payload = 0;
            if (stamp_of(word) == stamp(at)) {
                payload = word & payload_max;
            } else if (std::int64_t const newest = m_latest.load(); newest > at) {
                // The ring moved on since `at` was chosen: act at its latest epoch.
                at = newest;
                bucket = &m_buckets[index(at)];
                word = bucket->load();
                continue;
            } // else the bucket holds an older epoch, outside every window: replace it
            std::optional<std::uint64_t> const next = step(payload, at);
            if (!next) {
                return std::nullopt;
            }
            if (bucket->compare_exchange_weak(word, pack(at, *next))) {
                return at;
            }
        }
    }

    /// Applies `step` to the payload of `epoch`'s bucket only while that bucket
    /// still holds `epoch` (no raising, no moving on); returns whether it wrote.
    /// Takes back what an update() at `epoch` added.
    template <class Step>
    bool amend(std::int64_t epoch, Step step) noexcept {
        auto& bucket = m_buckets[index(epoch)];
        std::uint64_t word = bucket.load();
        for (;;) {
            if (stamp_of(word) != stamp(epoch)) {
                return false;
            }
            std::optional<std::uint64_t> const next = step(word & payload_max, epoch);
            if (!next) {
                return false;
            }
            if (bucket.compare_exchange_weak(word, pack(epoch, *next))) {
                return true;
            }
        }
    }

    /// Calls `visit(payload, epoch)` for each bucket holding an epoch of the
    /// window ending at max(`now`, latest()), newest first; returns that end.
    template <class Visit>
    std::int64_t read(std::int64_t now, Visit visit) const noexcept {
        std::int64_t const at = std::max(now, m_latest.load());
        if (at < 0) {
            return at;
        }
        std::uint32_t i = index(at);
        std::int64_t const oldest = std::max<std::int64_t>(0, at - m_size + 1);
        for (std::int64_t e = at; e >= oldest; --e) {
            std::uint64_t const word = m_buckets[i].load();
            if (stamp_of(word) == stamp(e)) {
                visit(word & payload_max, e);
            }
            i = i == 0 ? m_size - 1 : i - 1;
        }
        return at;
    }

private:
    static constexpr std::uint64_t stamp_mask = (std::uint64_t{1} << StampBits) - 1;

    static std::uint64_t stamp(std::int64_t epoch) noexcept {
        return static_cast<std::uint64_t>(epoch) & stamp_mask;
    }
    static std::uint64_t stamp_of(std::uint64_t word) noexcept { return word >> payload_bits; }
    static std::uint64_t pack(std::int64_t epoch, std::uint64_t payload) noexcept {
        return (stamp(epoch) << payload_bits) | payload;
    }
    std::uint32_t index(std::int64_t epoch) const noexcept {
        return static_cast<std::uint32_t>(static_cast<std::uint64_t>(epoch) % m_size);
    }

    // Returns max(epoch, latest), raising latest to it.
    std::int64_t raise(std::int64_t epoch) noexcept {
        std::int64_t latest = m_latest.load();
        while (epoch > latest) {
            if (m_latest.compare_exchange_weak(latest, epoch)) {
                return epoch;
            }
        }
        return latest;
    }

    // Written once per epoch, read by every update: its own line, away from the buckets.
    alignas(64) std::atomic<std::int64_t> m_latest{-1};
    std::uint32_t m_size;
    std::unique_ptr<std::atomic<std::uint64_t>[]> m_buckets;
};

} // namespace detail
KEEL_END_NAMESPACE
