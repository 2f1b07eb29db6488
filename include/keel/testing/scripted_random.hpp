// SPDX-License-Identifier: MIT
// keel::scripted_random: a "random" generator that returns a sequence the test
// chose, so a test can say "the jitter draws 0.25, then 0.75" and check exact
// delays (as Polly.Testing does with its randomizer seam).
#pragma once

#include <keel/detail/validate.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

KEEL_BEGIN_NAMESPACE

/// Returns the given 64-bit values in order, cycling; a uniform random bit generator.
///
/// Copies share the sequence and position, and drawing is thread-safe.
/// from_units() builds the values so that keel::uniform_unit() returns exactly the
/// given fractions (for fractions that are multiples of 2^-53, e.g. 0.25).
class scripted_random {
public:
    using result_type = std::uint64_t;

    /// Cycles through `values`; throws std::invalid_argument if there are none.
    scripted_random(std::initializer_list<result_type> values)
        : scripted_random(std::vector<result_type>(values)) {}

    /// Cycles through `values`; throws std::invalid_argument if there are none.
    explicit scripted_random(std::vector<result_type> values) : m_state(std::make_shared<state>()) {
        if (values.empty()) {
            detail::invalid_configuration("keel::scripted_random",
                                          "the sequence must not be empty");
        }
        m_state->values = std::move(values);
    }

    /// Builds a sequence whose uniform_unit() draws are `units`, each in [0, 1).
    /// Throws std::invalid_argument for an empty list or a value outside [0, 1).
    static scripted_random from_units(std::initializer_list<double> units) {
        std::vector<result_type> values;
        for (double unit : units) {
            if (!(unit >= 0.0 && unit < 1.0)) {
                detail::invalid_option("keel::scripted_random::from_units", "each value",
                                       "in [0, 1)", unit);
            }
            values.push_back(static_cast<result_type>(std::ldexp(unit, 53)) << 11);
        }
        return scripted_random(std::move(values));
    }

    static constexpr result_type min() noexcept { return 0; }
    static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }

    /// Returns the next value of the sequence.
    result_type operator()() {
        std::lock_guard lock{m_state->mutex};
        result_type const value = m_state->values[m_state->next % m_state->values.size()];
        ++m_state->next;
        return value;
    }

    /// Returns how many values have been drawn so far.
    std::size_t draws() const {
        std::lock_guard lock{m_state->mutex};
        return m_state->next;
    }

private:
    struct state {
        std::mutex mutex;
        std::vector<result_type> values;
        std::size_t next = 0;
    };
    std::shared_ptr<state> m_state;
};

KEEL_END_NAMESPACE
