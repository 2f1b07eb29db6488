// SPDX-License-Identifier: MIT
// keel::keyed: one rate limiter per key (user id, client address, API key) in a
// sharded table with a hard bound on the number of keys. Eviction removes only
// keys whose limiter state is indistinguishable from a fresh one, so it can
// never hand a limited key a fresh allowance; when the table is full and
// nothing is at rest, new keys share an overflow limiter (or are refused).
#pragma once

#include <keel/core/clock.hpp>
#include <keel/detail/integer.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/limiter.hpp>
#include <keel/version.hpp>

#include <bit>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <utility>

KEEL_BEGIN_NAMESPACE

/// Says what keel::keyed does with a new key when its shard is full and its
/// bounded search and sweep free no room (no key in it is at rest, or none the
/// search has reached yet: see keel::keyed).
enum class keyed_overflow : std::uint8_t {
    /// All such keys share one limiter with the per-key configuration: together
    /// they get one key's quota. Keys already in the table are unaffected.
    shared = 0,
    /// Such keys are refused (allowed = false, retry_after = the earliest time a
    /// key in the shard comes to rest; 0 when one already has but the bounded
    /// search has not reached it, so a retry searches on).
    reject = 1,
};

/// Configures a keel::keyed table (the per-key limiter has its own options).
struct keyed_options {
    /// The most keys held at once. Default 1,048,576 (2^20: about 40 MB of 64-bit
    /// keys at the worst load factor; nginx sizes its limit_req zones by memory
    /// the same way, 8 k states per MB). Range [1, 2^40]. Rounded up to a
    /// multiple of `shards`: each shard holds max_keys / shards keys.
    std::size_t max_keys = std::size_t{1} << 20;
    /// Independent shards, each with its own mutex and table, so threads on
    /// different keys rarely contend. Default 64. A power of two in [1, 4096].
    std::size_t shards = 64;
    /// What a new key gets when no room can be made in its shard. Default
    /// keyed_overflow::shared (the fallback global bucket the reference designs
    /// recommend; never an LRU eviction of active state, Envoy's bug).
    keyed_overflow overflow = keyed_overflow::shared;
};

namespace detail {
/// The cache line size keel pads to (a constant: the standard's interference
/// size warns in headers with g++ 12).
inline constexpr std::size_t cache_line = 64;

/// Spreads the bits of a (possibly identity) hash over the whole word.
constexpr std::uint64_t mix_hash(std::uint64_t h) noexcept {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}
} // namespace detail

/// Keeps a `Limiter` state per key: a table of at most `max_keys` keys, each
/// holding the limiter's 64-bit state word next to the key, sharing the
/// limiter's configuration.
///
/// Eviction: a key is removed only when its word is at rest
/// (`Limiter::rest_after(word, t) == 0`): from then on it decides every
/// request exactly as a fresh limiter would, so dropping it and re-creating it
/// later changes no decision. A request that would not change a fresh state (a
/// peek, an unsatisfiable request) inserts nothing.
///
/// Time: try_acquire(key) reads the clock after taking the shard lock, so
/// waiting for the lock cannot age its `now` and a shard's readings never go
/// backwards; an explicit `now` is used as given (the limiter's step decides a
/// `now` older than the stored state against the state's own time). Each shard
/// keeps its time: the latest `now` at which a step wrote a word in it. A step
/// never writes a word newer than both its `now` and the word it read, so no
/// word is newer than its shard's time, and every rest judgement (the search,
/// the sweeps, sweep(now)) is made at the later of the request's `now` and the
/// shard's time. rest_after is thus only asked about a word's present or
/// future, and a stale `now` (for any key of the shard) cannot take a limited
/// key for one at rest. An explicit `now` ahead of the clock moves its shard's
/// time ahead with it: keys then come to rest by that time.
///
/// Room: a new key that finds its shard full (at its share of max_keys, or at
/// the 3/4 load limit) first evicts the oldest of the shard's latest arrivals
/// (a ring of the hashes of its last slots / 2 new keys) if that key is at
/// rest: where keys come to rest in the order they arrived (one-off clients of
/// a token bucket, say), that is the key at rest. Failing that it evicts the
/// keys at rest among the next 32 slots after the shard's cursor. If neither
/// frees room, a full sweep (every key at rest out, the table shrunk, and the
/// earliest time a remaining key comes to rest learnt, before which nothing is
/// searched) runs at most once per slots / 8 new keys that found the shard
/// full, and only once slots / 64 of them found no room the cheap ways;
/// failing that the shard grows (below its share) or the new key gets the
/// `overflow` policy. So a new key costs O(1) amortized, never O(keys), at the
/// price that a key at rest that neither the ring nor the search has reached
/// may wait for the next full sweep while new keys overflow.
///
/// Memory: one slot per key (the key and the 8-byte word; an empty slot holds
/// fresh_state) at a load factor kept between 3/8 and 3/4, and the ring of 8-byte
/// hashes of half as many arrivals as slots, so 27 to 53 bytes per 64-bit key;
/// shards shrink when a sweep empties them. A lookup touches one
/// cache line in the common case. Thread-safe: one mutex per shard, held for
/// the lookup and the limiter step; `Hash` and `Key`'s operator== run under it
/// (while the table probes, grows, searches or sweeps) and must not call back
/// into the table. Example:
///
///     keel::keyed<keel::sliding_counter, std::uint64_t> per_user{
///         {.limit = 100, .window = 1min}, {.max_keys = 100'000}};
///     if (auto d = per_user.try_acquire(user_id); !d) { return reply_429(d); }
template <word_limiter Limiter, std::semiregular Key, class Hash = std::hash<Key>>
requires std::equality_comparable<Key> && std::invocable<Hash const&, Key const&>
class keyed {
public:
    using limiter_type = Limiter;
    using key_type = Key;
    using clock_type = typename Limiter::clock_type;
    using time_point = typename Limiter::time_point;

    /// Builds the table (validating both option sets; throws std::invalid_argument
    /// naming the field). No memory per key is allocated until keys arrive.
    explicit keyed(typename Limiter::options const& limiter_options, keyed_options const& opts = {},
                   clock_type clock = clock_type{}, Hash hash = Hash{})
        : m_limiter(limiter_options, std::move(clock)), m_hash(std::move(hash)),
          m_overflow(opts.overflow) {
        if (opts.shards == 0 || opts.shards > 4096 || !std::has_single_bit(opts.shards)) {
            detail::invalid_option("keel::keyed", "shards", "a power of two in [1, 4096]",
                                   opts.shards);
        }
        if (opts.max_keys == 0 || opts.max_keys > (std::size_t{1} << 40)) {
            detail::invalid_option("keel::keyed", "max_keys", "in [1, 2^40]", opts.max_keys);
        }
        m_shard_count = opts.shards;
        m_shard_shift = 64 - std::countr_zero(opts.shards);
        m_shard_cap = (opts.max_keys + opts.shards - 1) / opts.shards;
        m_max_slots = std::bit_ceil(m_shard_cap + m_shard_cap / 3 + 1);
        m_shards = std::make_unique<shard[]>(m_shard_count);
        if constexpr (requires { m_limiter.count_decisions(); }) {
            m_limiter.count_decisions(); // only keys that overflow reach it
        }
    }

    /// Takes `permits` from `key`'s limiter; reads the clock once, after taking
    /// the shard lock.
    decision try_acquire(Key const& key, std::int64_t permits = 1) {
        return acquire(key, permits, [this] { return m_limiter.clock().now(); });
    }

    /// Takes `permits` from `key`'s limiter at time `now`.
    ///
    /// May allocate (a shard's table grows by doubling); never throws except
    /// std::bad_alloc from that growth.
    decision try_acquire(Key const& key, std::int64_t permits, time_point now) {
        return acquire(key, permits, [now] { return now; });
    }

    /// Removes every key at rest at `now` (or at its shard's time, if later);
    /// returns how many were removed.
    std::size_t sweep(time_point now) {
        std::size_t removed = 0;
        for (std::size_t i = 0; i < m_shard_count; ++i) {
            shard& s = m_shards[i];
            std::lock_guard lock{s.mutex};
            removed += sweep_locked(s, judge_time(s, detail::to_ns(now)));
        }
        return removed;
    }
    /// Removes every key at rest now; returns how many were removed.
    std::size_t sweep() { return sweep(m_limiter.clock().now()); }

    /// Returns how many keys the table holds (a snapshot; locks each shard in turn).
    std::size_t size() const {
        std::size_t n = 0;
        for (std::size_t i = 0; i < m_shard_count; ++i) {
            std::lock_guard lock{m_shards[i].mutex};
            n += m_shards[i].size;
        }
        return n;
    }

    /// Returns how many requests were allowed, refused and unsatisfiable since
    /// construction, over all keys: counted under the shard locks the requests
    /// take anyway, plus what the shared overflow limiter counted
    /// (overflow_limiter().decisions(), which the table turns on at construction;
    /// a user's word_limiter without decisions() has its overflow uncounted).
    /// Lock-free.
    decision_counts decisions() const noexcept {
        decision_counts total;
        if constexpr (requires { m_limiter.decisions(); }) {
            total = m_limiter.decisions();
        }
        for (std::size_t i = 0; i < m_shard_count; ++i) {
            auto const c = m_shards[i].decisions.read();
            total.allowed += c.allowed;
            total.refused += c.refused;
            total.unsatisfiable += c.unsatisfiable;
        }
        return total;
    }

    /// Returns the most keys the table holds (max_keys rounded up to a multiple of shards).
    std::size_t max_keys() const noexcept { return m_shard_cap * m_shard_count; }

    /// Returns the bytes the tables and shards occupy now (slots, rings of
    /// arrivals, shard headers).
    std::size_t memory_bytes() const {
        std::size_t bytes = sizeof(*this) + m_shard_count * sizeof(shard);
        for (std::size_t i = 0; i < m_shard_count; ++i) {
            std::lock_guard lock{m_shards[i].mutex};
            auto const slots = m_shards[i].mask == 0 ? 0 : m_shards[i].mask + 1;
            auto const ring = m_shards[i].arrivals_mask == 0 ? 0 : m_shards[i].arrivals_mask + 1;
            bytes += slots * sizeof(slot) + ring * sizeof(std::uint64_t);
        }
        return bytes;
    }

    /// Returns the limiter holding the configuration; it is also the shared overflow limiter.
    Limiter& overflow_limiter() noexcept { return m_limiter; }
    /// As above, for reading the configuration (limit(), window(), ...) through a const table.
    Limiter const& overflow_limiter() const noexcept { return m_limiter; }

private:
    // A slot whose word is fresh_state is empty: a word an admission wrote never
    // equals it (word_limiter's contract), and a key at fresh_state needs no slot.
    struct slot {
        Key key{};
        std::uint64_t word = Limiter::fresh_state;
    };

    struct alignas(detail::cache_line) shard {
        mutable std::mutex mutex;
        // The decisions made for keys of this shard, written under `mutex` (it fits
        // in the shard's padding).
        detail::decision_counters decisions;
        std::unique_ptr<slot[]> slots;
        std::size_t mask = 0; // slots - 1, or 0 before the first key
        std::size_t size = 0;
        // No key can come to rest before this time, so no search or sweep can free room earlier.
        std::int64_t next_sweep = std::numeric_limits<std::int64_t>::max();
        // The latest `now` at which a step wrote a word here: no word is newer.
        std::int64_t time = std::numeric_limits<std::int64_t>::min();
        std::size_t cursor = 0; // where the next search for keys at rest starts
        // The hashes of the latest keys inserted, oldest first (a ring of slots / 2,
        // dropping the oldest when full): where a key at rest is most likely when
        // keys come to rest in the order they arrived. A hint only: a key it names
        // may have left, or come back since.
        std::unique_ptr<std::uint64_t[]> arrivals;
        std::size_t arrivals_mask = 0; // ring size - 1, or 0 without a ring
        std::size_t arrivals_head = 0;
        std::size_t arrivals_size = 0;
        // New keys that found the shard full since its last full sweep (the first one is free).
        std::size_t full_since_sweep = std::numeric_limits<std::size_t>::max() / 2;
        // Of those, the ones the ring and the search found no room for.
        std::size_t missed_since_sweep = std::numeric_limits<std::size_t>::max() / 2;
    };

    // Slots a new key that finds its shard full searches for keys at rest: 512
    // bytes of 16-byte slots, a few hundred ns at worst.
    static constexpr std::size_t search_slots = 32;

    static std::int64_t judge_time(shard const& s, std::int64_t now_ns) noexcept {
        return now_ns > s.time ? now_ns : s.time;
    }

    std::uint64_t hash_of(Key const& key) const {
        return detail::mix_hash(static_cast<std::uint64_t>(m_hash(key)));
    }

    template <class Now>
    decision acquire(Key const& key, std::int64_t permits, Now read_now) {
        auto const h = hash_of(key);
        shard& s = m_shards[m_shard_count == 1 ? 0 : static_cast<std::size_t>(h >> m_shard_shift)];
        return acquire_in(s, h, key, permits, read_now);
    }

    template <class Now>
    decision acquire_in(shard& s, std::uint64_t h, Key const& key, std::int64_t permits,
                        Now read_now) {
        std::unique_lock lock{s.mutex};
        time_point const now = read_now();
        auto const now_ns = detail::to_ns(now);
        if (s.mask != 0) {
            for (auto i = static_cast<std::size_t>(h) & s.mask;; i = (i + 1) & s.mask) {
                if (s.slots[i].word == Limiter::fresh_state) {
                    break; // an empty slot ends the probe
                }
                if (s.slots[i].key == key) {
                    limiter_step const r = m_limiter.step(s.slots[i].word, permits, now_ns);
                    if (r.write) {
                        s.slots[i].word = r.next;
                        s.time = judge_time(s, now_ns);
                    }
                    s.decisions.record_locked(r.result, permits);
                    return r.result;
                }
            }
        }
        // A new key: what a fresh limiter would answer, stored only if it changes state.
        limiter_step const r = m_limiter.step(Limiter::fresh_state, permits, now_ns);
        if (!r.write) {
            s.decisions.record_locked(r.result, permits);
            return r.result;
        }
        if (!make_room_locked(s, judge_time(s, now_ns))) {
            auto const retry = detail::saturating_sub(s.next_sweep, now_ns);
            if (m_overflow == keyed_overflow::shared) {
                lock.unlock();
                // Counted by the overflow limiter itself (decisions() adds its counts).
                return m_limiter.try_acquire(permits, now);
            }
            decision d;
            d.limit = r.result.limit;
            d.retry_after = detail::non_negative(retry);
            s.decisions.record_locked(d, permits);
            return d;
        }
        insert_locked(s, key, h, r.next);
        s.time = judge_time(s, now_ns);
        auto const rest = detail::saturating_add(now_ns, m_limiter.rest_after(r.next, now_ns));
        s.next_sweep = rest < s.next_sweep ? rest : s.next_sweep;
        s.decisions.record_locked(r.result, permits);
        return r.result;
    }

    std::size_t slot_count(shard const& s) const noexcept { return s.mask == 0 ? 0 : s.mask + 1; }

    bool has_room(shard const& s) const noexcept {
        return s.size + 1 <= slot_count(s) * 3 / 4 && s.size < m_shard_cap;
    }

    // Ensures room for one more key, judging rest at `t`; false when none can be
    // made at O(1) amortized cost (see the class comment).
    bool make_room_locked(shard& s, std::int64_t t) {
        if (has_room(s)) {
            return true;
        }
        ++s.full_since_sweep;
        if (t >= s.next_sweep) {
            if (evict_oldest_locked(s, t) && has_room(s)) {
                return true;
            }
            if (search_locked(s, t) > 0 && has_room(s)) {
                return true;
            }
            // A full sweep costs O(slots): slots / 8 new keys pay for it, and it
            // waits for slots / 64 of them that the ring and the search missed.
            ++s.missed_since_sweep;
            if (s.full_since_sweep >= slot_count(s) / 8 &&
                s.missed_since_sweep >= slot_count(s) / 64) {
                sweep_locked(s, t);
                if (has_room(s)) {
                    return true;
                }
            }
        }
        if (s.size >= m_shard_cap) {
            return false;
        }
        auto const slots = slot_count(s);
        auto grown = slots == 0 ? std::size_t{8} : slots * 2;
        rebuild_locked(s, grown < m_max_slots ? grown : m_max_slots, t, false);
        return true;
    }

    // Evicts the oldest arrival in the ring if it is at rest at `t`. An arrival
    // whose key has left leaves the ring; one not at rest stays at the front,
    // since the keys behind it arrived later, until a full ring drops it. Looks
    // at most at 2 arrivals (a probe each, as a lookup).
    bool evict_oldest_locked(shard& s, std::int64_t t) {
        for (int n = 0; n < 2 && s.arrivals_size > 0; ++n) {
            auto const h = s.arrivals[s.arrivals_head];
            auto i = static_cast<std::size_t>(h) & s.mask;
            while (s.slots[i].word != Limiter::fresh_state && hash_of(s.slots[i].key) != h) {
                i = (i + 1) & s.mask;
            }
            auto const word = s.slots[i].word;
            if (word != Limiter::fresh_state && m_limiter.rest_after(word, t) > 0) {
                return false;
            }
            s.arrivals_head = (s.arrivals_head + 1) & s.arrivals_mask;
            --s.arrivals_size;
            if (word != Limiter::fresh_state) {
                erase_locked(s, i);
                return true;
            }
        }
        return false;
    }

    // Evicts the keys at rest at `t` among the next search_slots slots after the
    // cursor; returns how many. Each step either evicts at the cursor (which
    // then holds the next key of its probe run, looked at again) or moves on.
    std::size_t search_locked(shard& s, std::int64_t t) {
        auto const slots = slot_count(s);
        auto const steps = slots < search_slots ? slots : search_slots;
        std::size_t removed = 0;
        auto i = s.cursor & s.mask;
        for (std::size_t n = 0; n < steps; ++n) {
            auto const word = s.slots[i].word;
            if (word != Limiter::fresh_state && m_limiter.rest_after(word, t) == 0) {
                erase_locked(s, i);
                ++removed;
            } else {
                i = (i + 1) & s.mask;
            }
        }
        s.cursor = i;
        return removed;
    }

    // Empties slot i and shifts the later keys of its probe run back (no
    // tombstones), so every key stays reachable from its home slot.
    void erase_locked(shard& s, std::size_t i) {
        for (auto j = (i + 1) & s.mask; s.slots[j].word != Limiter::fresh_state;
             j = (j + 1) & s.mask) {
            auto const home = static_cast<std::size_t>(hash_of(s.slots[j].key)) & s.mask;
            // The key at j may fill the hole at i unless its home lies in (i, j].
            if (((j - home) & s.mask) >= ((j - i) & s.mask)) {
                s.slots[i] = std::move(s.slots[j]);
                i = j;
            }
        }
        s.slots[i] = slot{};
        --s.size;
    }

    // Removes the keys at rest at `t` and resizes the shard to fit the rest.
    std::size_t sweep_locked(shard& s, std::int64_t t) {
        auto const before = s.size;
        // Size for the survivors with room to grow; rebuild_locked drops keys at rest.
        std::size_t survivors = 0;
        for (std::size_t i = 0; i < slot_count(s); ++i) {
            if (s.slots[i].word != Limiter::fresh_state &&
                m_limiter.rest_after(s.slots[i].word, t) > 0) {
                ++survivors;
            }
        }
        auto target = std::bit_ceil(survivors + survivors / 2 + 2); // load in (3/8, 2/3]
        target = target < 8 ? 8 : target;
        rebuild_locked(s, target < m_max_slots ? target : m_max_slots, t, true);
        s.full_since_sweep = 0;
        s.missed_since_sweep = 0;
        return before - s.size;
    }

    void rebuild_locked(shard& s, std::size_t slots, std::int64_t t, bool drop_at_rest) {
        auto new_slots = std::make_unique<slot[]>(slots); // all empty
        auto const mask = slots - 1;
        std::size_t size = 0;
        auto next_sweep = std::numeric_limits<std::int64_t>::max();
        for (std::size_t i = 0; i < slot_count(s); ++i) {
            if (s.slots[i].word == Limiter::fresh_state) {
                continue;
            }
            auto const rest = m_limiter.rest_after(s.slots[i].word, t);
            if (drop_at_rest && rest == 0) {
                continue;
            }
            auto const at = detail::saturating_add(t, rest);
            next_sweep = at < next_sweep ? at : next_sweep;
            auto j = static_cast<std::size_t>(hash_of(s.slots[i].key)) & mask;
            while (new_slots[j].word != Limiter::fresh_state) {
                j = (j + 1) & mask;
            }
            new_slots[j] = std::move(s.slots[i]);
            ++size;
        }
        // A ring of slots / 2 arrivals (none below 16 slots), keeping the newest.
        auto const ring_mask = slots >= 16 ? slots / 2 - 1 : 0;
        if (ring_mask != s.arrivals_mask) {
            std::unique_ptr<std::uint64_t[]> ring;
            if (ring_mask != 0) {
                ring.reset(new std::uint64_t[ring_mask + 1]);
            }
            auto const kept = s.arrivals_size < ring_mask + 1 ? s.arrivals_size : ring_mask + 1;
            auto const skip = s.arrivals_size - (ring_mask == 0 ? 0 : kept);
            for (std::size_t n = 0; ring_mask != 0 && n < kept; ++n) {
                ring[n] = s.arrivals[(s.arrivals_head + skip + n) & s.arrivals_mask];
            }
            s.arrivals = std::move(ring);
            s.arrivals_mask = ring_mask;
            s.arrivals_head = 0;
            s.arrivals_size = ring_mask == 0 ? 0 : kept;
        }
        s.slots = std::move(new_slots);
        s.mask = mask;
        s.size = size;
        s.next_sweep = next_sweep;
    }

    void insert_locked(shard& s, Key const& key, std::uint64_t h, std::uint64_t word) {
        auto i = static_cast<std::size_t>(h) & s.mask;
        while (s.slots[i].word != Limiter::fresh_state) {
            i = (i + 1) & s.mask;
        }
        s.slots[i].key = key;
        s.slots[i].word = word;
        ++s.size;
        if (s.arrivals_mask != 0) {
            if (s.arrivals_size > s.arrivals_mask) { // full: drop the oldest
                s.arrivals_head = (s.arrivals_head + 1) & s.arrivals_mask;
                --s.arrivals_size;
            }
            s.arrivals[(s.arrivals_head + s.arrivals_size) & s.arrivals_mask] = h;
            ++s.arrivals_size;
        }
    }

    Limiter m_limiter; // the configuration, and the shared overflow limiter
    [[no_unique_address]] Hash m_hash;
    keyed_overflow m_overflow;
    std::size_t m_shard_count = 0;
    int m_shard_shift = 0;
    std::size_t m_shard_cap = 0;
    std::size_t m_max_slots = 0;
    std::unique_ptr<shard[]> m_shards;
};

KEEL_END_NAMESPACE
