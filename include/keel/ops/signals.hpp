// SPDX-License-Identifier: MIT
// keel::ops::signal_waiter: SIGTERM and SIGINT received on a dedicated thread with
// sigwait(), never in a signal handler, so reacting to them may do anything (lock,
// allocate, log). The first signal wakes whoever waits (typically main, which then
// runs a drain_coordinator's shutdown); a second one can force an immediate exit.
// POSIX only.
#pragma once

#include <keel/detail/time.hpp>
#include <keel/detail/validate.hpp>
#include <keel/version.hpp>

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE
namespace ops {

/// Configures a signal_waiter.
struct signal_options {
    /// The signals to wait for. Default SIGTERM (what Kubernetes and systemd send to stop a
    /// process) and SIGINT (Ctrl-C). Must not be empty; each must be a valid signal other than
    /// SIGKILL and SIGSTOP, which cannot be caught.
    std::vector<int> signals{SIGTERM, SIGINT};
    /// Exits at once, without destructors, on the second signal while the first one's
    /// shutdown is still running. Default true: an operator pressing Ctrl-C twice, or a
    /// supervisor escalating, wants the process gone now. false ignores further signals.
    bool exit_on_second_signal = true;
    /// The exit code of a forced exit. Default 1: non-zero, so operators can tell a forced
    /// exit from a clean drain (exit 0). Any int; the OS keeps its low 8 bits.
    int forced_exit_code = 1;
};

/// Blocks `signals` in the calling thread, and so in every thread it starts afterwards.
///
/// Throws std::system_error if the mask cannot be changed (an invalid signal number).
/// signal_waiter calls it; call it yourself only to block before the waiter exists.
inline void block_signals(std::vector<int> const& signals) {
    ::sigset_t set;
    ::sigemptyset(&set);
    for (int sig : signals) {
        if (::sigaddset(&set, sig) != 0) {
            throw std::system_error(errno, std::generic_category(),
                                    "keel::ops::block_signals: invalid signal " +
                                        std::to_string(sig));
        }
    }
    if (int const rc = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) {
        throw std::system_error(rc, std::generic_category(), "keel::ops::block_signals");
    }
}

/// Receives termination signals on a dedicated thread and reports the first one.
///
/// The constructor blocks the signals in the calling thread, then starts a thread that
/// waits for them with sigwait(). A blocked signal is delivered only to a thread that
/// waits for it, so the signals must be blocked in EVERY thread of the process: construct
/// the waiter first thing in main(), before any other thread starts (threads inherit the
/// mask of the thread that creates them). A thread started earlier would still take the
/// signal with its default action and end the process.
///
/// On the first signal: received() and wait() report it, stop_token() fires, and the
/// `on_signal` callback runs on the waiter thread (keep it short: the waiter must stay free
/// to see a second signal). Do the long shutdown on another thread, usually main. On a
/// second signal, with options.exit_on_second_signal, the process ends with
/// std::_Exit(forced_exit_code).
///
/// The destructor stops the waiter thread. The signals stay blocked, so one arriving
/// after that stays pending and does no harm. Thread-safe; not copyable or movable.
///
/// @code
/// int main() {
///     keel::ops::signal_waiter signals;           // before any other thread starts
///     keel::ops::drain_coordinator drain;
///     start_server(drain);
///     signals.wait();                               // until SIGTERM or SIGINT
///     return drain.shutdown().exit_code();
/// }
/// @endcode
class signal_waiter {
public:
    /// Blocks the signals and starts the waiter thread; `on_signal` (may be empty) runs on
    /// it with the first signal's number. Throws std::invalid_argument for bad options.
    explicit signal_waiter(signal_options options = {}, std::function<void(int)> on_signal = {})
        : m_options(validate(std::move(options))), m_on_signal(std::move(on_signal)) {
        block_signals(m_options.signals);
        m_thread = std::thread([this] { loop(); });
    }

    signal_waiter(signal_waiter const&) = delete;
    signal_waiter& operator=(signal_waiter const&) = delete;

    /// Stops and joins the waiter thread. Must not run on the waiter thread (in on_signal).
    ~signal_waiter() {
        m_stopping.store(true, std::memory_order_release);
        // A signal sent to the waiter thread itself is pending only there, so its sigwait
        // returns it and the loop sees m_stopping.
        ::pthread_kill(m_thread.native_handle(), m_options.signals.front());
        m_thread.join();
    }

    /// Blocks until the first signal arrives; returns its number.
    int wait() {
        std::unique_lock lock{m_mutex};
        m_changed.wait(lock, [&] { return m_received.has_value(); });
        return *m_received;
    }

    /// Blocks until the first signal arrives or `timeout` passes (real time); returns the
    /// signal's number, or nothing on timeout. nanoseconds::max() waits as wait() does.
    std::optional<int> wait_for(std::chrono::nanoseconds timeout) {
        // An absolute, saturated deadline: condition_variable::wait_for adds the timeout to
        // now() and would wrap "forever" into the past.
        auto const deadline =
            keel::detail::saturating_add(std::chrono::steady_clock::now(), timeout);
        std::unique_lock lock{m_mutex};
        m_changed.wait_until(lock, deadline, [&] { return m_received.has_value(); });
        return m_received;
    }

    /// Returns the first signal received, if any.
    std::optional<int> received() const {
        std::lock_guard lock{m_mutex};
        return m_received;
    }

    /// Returns how many of the watched signals arrived so far.
    int count() const noexcept { return m_count.load(std::memory_order_acquire); }

    /// Returns a token that fires at the first signal.
    std::stop_token stop_token() const noexcept { return m_source.get_token(); }

private:
    static signal_options validate(signal_options options) {
        constexpr std::string_view component = "keel::ops::signal_waiter";
        if (options.signals.empty()) {
            keel::detail::invalid_configuration(component, "signals must name at least one signal");
        }
        for (int sig : options.signals) {
            ::sigset_t probe;
            ::sigemptyset(&probe);
            if (sig == SIGKILL || sig == SIGSTOP || ::sigaddset(&probe, sig) != 0) {
                keel::detail::invalid_option(component, "signals",
                                             "valid and catchable (not SIGKILL or SIGSTOP)", sig);
            }
        }
        return options;
    }

    void loop() {
        ::sigset_t set;
        ::sigemptyset(&set);
        for (int sig : m_options.signals) {
            ::sigaddset(&set, sig);
        }
        for (;;) {
            int sig = 0;
            if (::sigwait(&set, &sig) != 0) {
                continue;
            }
            if (m_stopping.load(std::memory_order_acquire)) {
                return;
            }
            int const n = m_count.fetch_add(1, std::memory_order_acq_rel) + 1;
            if (n == 1) {
                // The token fires first, so whoever sees received() sees it fired.
                m_source.request_stop();
                {
                    std::lock_guard lock{m_mutex};
                    m_received = sig;
                }
                m_changed.notify_all();
                if (m_on_signal) {
                    try {
                        m_on_signal(sig);
                    } catch (...) { // NOLINT(bugprone-empty-catch): the waiter must survive
                    }
                }
            } else if (m_options.exit_on_second_signal) {
                std::_Exit(m_options.forced_exit_code);
            }
        }
    }

    signal_options m_options;
    std::function<void(int)> m_on_signal;
    mutable std::mutex m_mutex;
    std::condition_variable m_changed;
    std::optional<int> m_received;
    std::atomic<int> m_count{0};
    std::atomic<bool> m_stopping{false};
    std::stop_source m_source;
    std::thread m_thread;
};

} // namespace ops
KEEL_END_NAMESPACE
