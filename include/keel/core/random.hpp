// SPDX-License-Identifier: MIT
// Randomness for jitter. Everything that draws takes a uniform random bit
// generator, so tests pass a fixed seed (keel::xoshiro256ss{42}) or a scripted
// sequence (keel::scripted_random). The default, keel::thread_random,
// keeps one fast generator per thread, seeded once.
#pragma once

#include <keel/version.hpp>

#include <bit>
#include <concepts>
#include <cstdint>
#include <limits>
#include <random>

KEEL_BEGIN_NAMESPACE

/// Describes a generator keel can draw from: std::uniform_random_bit_generator
/// that can be stored by value. Generators used by shared objects must be
/// thread-safe (keel::thread_random and keel::scripted_random are).
template <class G>
concept random_generator = std::uniform_random_bit_generator<G> && std::copy_constructible<G>;

/// Generates 64-bit numbers with xoshiro256** (Blackman and Vigna, 2018), seeded
/// through splitmix64 so that any 64-bit seed gives a well-mixed state.
///
/// A value type: copies continue independently. Not thread-safe; use one per
/// thread, or keel::thread_random.
class xoshiro256ss {
public:
    using result_type = std::uint64_t;

    /// Seeds the state from `seed` (every seed, 0 included, is valid).
    constexpr explicit xoshiro256ss(std::uint64_t seed = 0x853c49e6748fea9bULL) noexcept {
        for (auto& word : m_state) {
            seed += 0x9e3779b97f4a7c15ULL;
            std::uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            word = z ^ (z >> 31);
        }
    }

    static constexpr result_type min() noexcept { return 0; }
    static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }

    /// Returns the next number and advances the state.
    constexpr result_type operator()() noexcept {
        result_type const result = std::rotl(m_state[1] * 5, 7) * 9;
        result_type const t = m_state[1] << 17;
        m_state[2] ^= m_state[0];
        m_state[3] ^= m_state[1];
        m_state[1] ^= m_state[2];
        m_state[0] ^= m_state[3];
        m_state[2] ^= t;
        m_state[3] = std::rotl(m_state[3], 45);
        return result;
    }

private:
    result_type m_state[4]{};
};

/// Draws from a per-thread xoshiro256** generator, seeded once per thread from
/// std::random_device; keel's default generator for jitter.
///
/// An empty handle: every copy draws from the calling thread's generator, so it
/// is thread-safe without locks. Not reproducible; tests pass a seeded generator.
struct thread_random {
    using result_type = std::uint64_t;
    static constexpr result_type min() noexcept { return 0; }
    static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }

    /// Returns the next number from this thread's generator.
    result_type operator()() const {
        thread_local xoshiro256ss generator{seed()};
        return generator();
    }

private:
    static std::uint64_t seed() {
        std::random_device device;
        return (std::uint64_t{device()} << 32) ^ device();
    }
};

/// Returns a double drawn uniformly from [0, 1), using 53 random bits.
///
/// Deterministic for a given generator state across standard libraries (unlike
/// std::uniform_real_distribution), so seeded tests give the same numbers everywhere.
template <std::uniform_random_bit_generator G>
double uniform_unit(G& generator) {
    using result = typename G::result_type;
    constexpr auto range = G::max() - G::min();
    if constexpr (std::numeric_limits<result>::digits >= 64 &&
                  range == std::numeric_limits<std::uint64_t>::max()) {
        return static_cast<double>((generator() - G::min()) >> 11) * 0x1.0p-53;
    } else {
        // Narrower generators: accumulate draws until 53 bits are covered.
        std::uint64_t bits = 0;
        int covered = 0;
        constexpr int per_draw = std::bit_width(static_cast<std::uint64_t>(range) + 1) - 1;
        static_assert(per_draw > 0, "generator range is too small");
        while (covered < 53) {
            bits = (bits << per_draw) | (static_cast<std::uint64_t>(generator() - G::min()) &
                                         ((std::uint64_t{1} << per_draw) - 1));
            covered += per_draw;
        }
        return static_cast<double>(bits >> (covered - 53)) * 0x1.0p-53;
    }
}

static_assert(random_generator<xoshiro256ss>);
static_assert(random_generator<thread_random>);

KEEL_END_NAMESPACE
