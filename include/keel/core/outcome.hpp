// SPDX-License-Identifier: MIT
// keel::outcome<T>: the value of a guarded call or why it failed, without throwing.
// A failure is a keel::failure: a std::error_code (keel's own rejections, or the
// user's codes), the exception the call threw if any, and an optional retry-after
// hint. value() gives the value or rethrows: the call's own exception unchanged,
// otherwise the keel::error subtype matching the code.
#pragma once

#include <keel/core/error.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

KEEL_BEGIN_NAMESPACE

/// Describes why a call failed. Either `code` is set (a keel rejection or a
/// user's error code), or `exception` holds what the call threw, or both (a
/// keel::error thrown by an inner layer keeps its code and its exception).
struct failure {
    std::error_code code{};         ///< Empty when only an exception is known.
    std::exception_ptr exception{}; ///< What the call threw, if it threw.
    std::optional<std::chrono::nanoseconds> retry_after{}; ///< When a retry may succeed, if known.

    /// Returns a failure for a keel rejection code.
    static failure from(errc code, std::optional<std::chrono::nanoseconds> retry_after = {}) {
        return failure{make_error_code(code), nullptr, retry_after};
    }

    /// Returns a failure for a caught exception; a keel::error keeps its code and hint.
    static failure from(std::exception_ptr exception) {
        failure f{{}, exception, std::nullopt};
        try {
            std::rethrow_exception(exception);
        } catch (error const& e) {
            f.code = e.code();
            f.retry_after = e.retry_after();
        } catch (...) { // NOLINT(bugprone-empty-catch): any other exception keeps no code
        }
        return f;
    }

    /// Returns the failure for the exception currently being handled; call only inside a catch
    /// block.
    static failure from_current_exception() { return from(std::current_exception()); }

    /// Returns true if this failure is keel's rejection `which`.
    bool is(errc which) const noexcept { return code == make_error_code(which); }

    /// Throws the failure: the exception if there is one, else keel's exception for the code.
    [[noreturn]] void raise() const {
        if (exception) {
            std::rethrow_exception(exception);
        }
        throw_error(code, {}, retry_after);
    }
};

/// Describes how a guarded call went besides its result: how many attempts it
/// made and how long its policies made it wait (retry backoffs and rate-limit
/// waits), so a caller can log both without instrumenting the pipeline. A call no
/// policy retried or delayed made 1 attempt and waited 0.
struct call_stats {
    int attempts = 1;                   ///< Attempts made, the first included.
    std::chrono::nanoseconds waited{0}; ///< Time spent in keel's waits.
    friend bool operator==(call_stats const&, call_stats const&) = default;
};

/// Holds the result of a guarded call: a T, or a keel::failure.
///
/// Access without throwing through has_value(), operator*, failure() and
/// error(); value() returns the value or raises the failure. For `outcome<void>`
/// there is no value, only success or failure. Not thread-safe to mutate; a
/// regular value type otherwise.
template <class T>
class outcome {
public:
    using value_type = T;

    /// Holds a value constructed from `args`.
    template <class... Args>
    requires std::is_constructible_v<T, Args...>
    explicit outcome(std::in_place_t, Args&&... args)
        : m_state(std::in_place_index<0>, std::forward<Args>(args)...) {}

    /// Holds `value` (implicit, so a function returning outcome<T> can `return value;`).
    template <class U = T>
    requires(std::is_constructible_v<T, U&&> && !std::is_same_v<std::remove_cvref_t<U>, outcome> &&
             !std::is_same_v<std::remove_cvref_t<U>, keel::failure> &&
             !std::is_same_v<std::remove_cvref_t<U>, std::in_place_t>) outcome(U&& value)
        : m_state(std::in_place_index<0>, std::forward<U>(value)) {}

    /// Holds the failure `f`.
    outcome(keel::failure f) : m_state(std::in_place_index<1>, std::move(f)) {}

    /// Returns true if this holds a value.
    bool has_value() const noexcept { return m_state.index() == 0; }
    /// Returns has_value().
    explicit operator bool() const noexcept { return has_value(); }

    /// Returns the value, or raises the failure (the call's exception, or keel's).
    T& value() & {
        raise_if_failed();
        return std::get<0>(m_state);
    }
    /// Returns the value, or raises the failure.
    T const& value() const& {
        raise_if_failed();
        return std::get<0>(m_state);
    }
    /// Returns the value moved out, or raises the failure.
    T&& value() && {
        raise_if_failed();
        return std::get<0>(std::move(m_state));
    }

    /// Returns the value; precondition: has_value().
    T& operator*() & noexcept { return *std::get_if<0>(&m_state); }
    /// Returns the value; precondition: has_value().
    T const& operator*() const& noexcept { return *std::get_if<0>(&m_state); }
    /// Returns the value moved out; precondition: has_value().
    T&& operator*() && noexcept { return std::move(*std::get_if<0>(&m_state)); }
    /// Returns a pointer to the value; precondition: has_value().
    T* operator->() noexcept { return std::get_if<0>(&m_state); }
    /// Returns a pointer to the value; precondition: has_value().
    T const* operator->() const noexcept { return std::get_if<0>(&m_state); }

    /// Returns the value if there is one, else `fallback`.
    template <class U>
    T value_or(U&& fallback) const& {
        return has_value() ? std::get<0>(m_state) : static_cast<T>(std::forward<U>(fallback));
    }

    /// Returns the failure; precondition: !has_value().
    keel::failure const& failure() const noexcept { return *std::get_if<1>(&m_state); }
    /// Returns the failure's code, or an empty code when this holds a value.
    std::error_code error() const noexcept {
        return has_value() ? std::error_code{} : failure().code;
    }
    /// Returns the exception the call threw, or null.
    std::exception_ptr exception() const noexcept {
        return has_value() ? nullptr : failure().exception;
    }
    /// Returns the failure's retry-after hint, if any.
    std::optional<std::chrono::nanoseconds> retry_after() const noexcept {
        return has_value() ? std::nullopt : failure().retry_after;
    }

    /// Returns the attempts made and the time waited (see keel::call_stats).
    call_stats const& stats() const noexcept { return m_stats; }
    /// Returns stats().attempts.
    int attempts() const noexcept { return m_stats.attempts; }
    /// Returns stats().waited.
    std::chrono::nanoseconds waited() const noexcept { return m_stats.waited; }
    /// Replaces the stats (keel's policies call it as the call goes).
    void set_stats(call_stats stats) noexcept { m_stats = stats; }

private:
    void raise_if_failed() const {
        if (!has_value()) {
            failure().raise();
        }
    }

    std::variant<T, keel::failure> m_state;
    call_stats m_stats{};
};

/// Holds success or a keel::failure for calls that return nothing.
template <>
class outcome<void> {
public:
    using value_type = void;

    /// Holds success.
    outcome() noexcept = default;
    /// Holds success.
    explicit outcome(std::in_place_t) noexcept {}
    /// Holds the failure `f`.
    outcome(keel::failure f) : m_failure(std::move(f)) {}

    /// Returns true on success.
    bool has_value() const noexcept { return !m_failure.has_value(); }
    /// Returns has_value().
    explicit operator bool() const noexcept { return has_value(); }
    /// Returns on success, or raises the failure.
    void value() const {
        if (m_failure) {
            m_failure->raise();
        }
    }
    /// Does nothing; present so generic code can write `*outcome`.
    void operator*() const noexcept {}

    /// Returns the failure; precondition: !has_value().
    keel::failure const& failure() const noexcept { return *m_failure; }
    /// Returns the failure's code, or an empty code on success.
    std::error_code error() const noexcept {
        return m_failure ? m_failure->code : std::error_code{};
    }
    /// Returns the exception the call threw, or null.
    std::exception_ptr exception() const noexcept {
        return m_failure ? m_failure->exception : nullptr;
    }
    /// Returns the failure's retry-after hint, if any.
    std::optional<std::chrono::nanoseconds> retry_after() const noexcept {
        return m_failure ? m_failure->retry_after : std::nullopt;
    }

    /// Returns the attempts made and the time waited (see keel::call_stats).
    call_stats const& stats() const noexcept { return m_stats; }
    /// Returns stats().attempts.
    int attempts() const noexcept { return m_stats.attempts; }
    /// Returns stats().waited.
    std::chrono::nanoseconds waited() const noexcept { return m_stats.waited; }
    /// Replaces the stats (keel's policies call it as the call goes).
    void set_stats(call_stats stats) noexcept { m_stats = stats; }

private:
    std::optional<keel::failure> m_failure;
    call_stats m_stats{};
};

KEEL_END_NAMESPACE
