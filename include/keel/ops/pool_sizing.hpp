// SPDX-License-Identifier: MIT
// Connection-pool sizing: Little's law (L = lambda x W) for the mean number of busy
// connections, a headroom rule on top of it (the article's 100 req/s x 50 ms = 5,
// x3 = 15), Erlang C for an M/M/c queue (how likely a request waits for a
// connection, how long, and the smallest pool meeting a target), HikariCP's rule
// of thumb for the database side, and the article's cost of opening a connection.
// Everything except the wait quantiles (which need std::log) is constexpr.
#pragma once

#include <keel/ops/detail/pool_sizing.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>

KEEL_BEGIN_NAMESPACE
namespace ops {

/// Returns L = lambda x W (Little's law): the mean number of requests in the system, here
/// the mean number of busy connections, for `arrival_rate` requests per second each holding
/// a connection for `mean_time` on average.
///
/// Holds for long-run averages of any stable system, whatever the distributions; it gives
/// the mean, not the peak. Throws std::invalid_argument for a negative rate or time.
/// @code
/// static_assert(keel::ops::littles_law(100.0, 50ms) == 5.0);
/// @endcode
template <class Rep, class Period>
constexpr double littles_law(double arrival_rate, std::chrono::duration<Rep, Period> mean_time) {
    detail::require(arrival_rate >= 0.0, "keel::ops::littles_law", "arrival_rate",
                    ">= 0 requests per second", arrival_rate);
    detail::require(mean_time >= std::chrono::duration<Rep, Period>::zero(),
                    "keel::ops::littles_law", "mean_time", ">= 0", mean_time);
    return arrival_rate * detail::seconds(mean_time);
}

/// Returns the offered load a = lambda x S in Erlangs (the same number as Little's L when
/// S is the mean hold time); the input of the Erlang formulas below.
template <class Rep, class Period>
constexpr double offered_load(double arrival_rate, std::chrono::duration<Rep, Period> mean_hold) {
    return littles_law(arrival_rate, mean_hold);
}

/// Returns ceil(lambda x W x headroom): a pool size with room for variance.
///
/// Default headroom 3, the top of the article's "2-3x" (100 req/s x 50 ms = 5, x3 = 15).
/// The headroom is a heuristic; for a stated waiting target use
/// min_pool_for_wait_probability() instead (Erlang C says 10 connections already make
/// only 3.6 % of requests wait in the article's example). Throws std::invalid_argument for
/// a negative rate or time or a headroom below 1.
template <class Rep, class Period>
constexpr std::size_t recommended_pool_size(double arrival_rate,
                                            std::chrono::duration<Rep, Period> mean_time,
                                            double headroom = 3.0) {
    detail::require(headroom >= 1.0, "keel::ops::recommended_pool_size", "headroom", ">= 1",
                    headroom);
    return detail::ceil_to_size(littles_law(arrival_rate, mean_time) * headroom);
}

/// Returns the Erlang B blocking probability B(c, a): the share of requests turned away by
/// `servers` servers with no queue at offered load `offered_load` Erlangs.
///
/// Computed with the recursion B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1)), which is stable
/// for pools of thousands (no factorials or powers). Throws std::invalid_argument for a
/// negative load.
constexpr double erlang_b(std::size_t servers, double offered_load) {
    detail::require(offered_load >= 0.0, "keel::ops::erlang_b", "offered_load", ">= 0",
                    offered_load);
    double b = 1.0;
    for (std::size_t k = 1; k <= servers; ++k) {
        double const ab = offered_load * b;
        b = ab / (static_cast<double>(k) + ab);
    }
    return b;
}

/// Returns the Erlang C probability C(c, a) that a request must wait for one of `servers`
/// connections (an M/M/c queue: Poisson arrivals, exponential hold times) at offered load
/// `offered_load` Erlangs.
///
/// Returns 1 when servers <= offered_load: the queue is unstable and grows without bound.
/// Stable for pools of hundreds or thousands (uses the Erlang B recursion). Throws
/// std::invalid_argument for a negative load.
constexpr double erlang_c(std::size_t servers, double offered_load) {
    double const b = erlang_b(servers, offered_load);
    auto const c = static_cast<double>(servers);
    if (c <= offered_load) {
        return 1.0;
    }
    return detail::erlang_c_from_b(c, offered_load, b);
}

/// Returns the mean time E[Wq] = C(c, a) x S / (c - a) a request waits for a connection,
/// over all requests (those that do not wait count as 0), for `servers` connections,
/// `arrival_rate` requests per second and mean hold time `mean_hold`.
///
/// Returns +infinity seconds when the pool cannot keep up (servers <= lambda x S). Throws
/// std::invalid_argument for a negative rate or time.
template <class Rep, class Period>
constexpr std::chrono::duration<double> mean_wait(std::size_t servers, double arrival_rate,
                                                  std::chrono::duration<Rep, Period> mean_hold) {
    double const a = offered_load(arrival_rate, mean_hold);
    auto const c = static_cast<double>(servers);
    if (c <= a) {
        return std::chrono::duration<double>{std::numeric_limits<double>::infinity()};
    }
    return std::chrono::duration<double>{erlang_c(servers, a) * detail::seconds(mean_hold) /
                                         (c - a)};
}

/// Returns the `quantile` (e.g. 0.99) of the time a request waits for a connection, from
/// P(Wq > t) = C(c, a) e^{-(c - a) t / S}: zero when fewer than 1 - quantile of requests
/// wait at all.
///
/// Returns +infinity seconds when the pool cannot keep up. Not constexpr (std::log).
/// Throws std::invalid_argument unless 0 <= quantile < 1, or for a negative rate or time.
template <class Rep, class Period>
std::chrono::duration<double> wait_quantile(std::size_t servers, double arrival_rate,
                                            std::chrono::duration<Rep, Period> mean_hold,
                                            double quantile) {
    detail::require(quantile >= 0.0 && quantile < 1.0, "keel::ops::wait_quantile", "quantile",
                    "in [0, 1)", quantile);
    double const a = offered_load(arrival_rate, mean_hold);
    auto const c = static_cast<double>(servers);
    if (c <= a) {
        return std::chrono::duration<double>{std::numeric_limits<double>::infinity()};
    }
    double const p_wait = erlang_c(servers, a);
    double const tail = 1.0 - quantile;
    if (p_wait <= tail) {
        return std::chrono::duration<double>{0.0};
    }
    return std::chrono::duration<double>{detail::seconds(mean_hold) / (c - a) *
                                         std::log(p_wait / tail)};
}

/// Returns the smallest pool for which at most `target` of requests wait for a connection
/// (Erlang C <= target), for `arrival_rate` requests per second of mean hold `mean_hold`.
///
/// Returns 0 when there is no load. O(result) steps. Throws std::invalid_argument unless
/// 0 < target <= 1, or for a negative rate or time.
/// @code
/// keel::ops::min_pool_for_wait_probability(100.0, 50ms, 0.05) == 10   // C = 3.6 %
/// @endcode
template <class Rep, class Period>
constexpr std::size_t min_pool_for_wait_probability(double arrival_rate,
                                                    std::chrono::duration<Rep, Period> mean_hold,
                                                    double target) {
    detail::require(target > 0.0 && target <= 1.0, "keel::ops::min_pool_for_wait_probability",
                    "target", "in (0, 1]", target);
    double const a = offered_load(arrival_rate, mean_hold);
    if (a == 0.0) {
        return 0;
    }
    double b = 1.0;
    for (std::size_t c = 1;; ++c) {
        double const ab = a * b;
        b = ab / (static_cast<double>(c) + ab);
        auto const cd = static_cast<double>(c);
        if (cd > a && detail::erlang_c_from_b(cd, a, b) <= target) {
            return c;
        }
    }
}

/// Returns the smallest pool whose mean wait for a connection (over all requests) is at
/// most `target_wait`, for `arrival_rate` requests per second of mean hold `mean_hold`.
///
/// Returns 0 when there is no load. Throws std::invalid_argument for a negative rate, time
/// or target.
template <class Rep, class Period, class Rep2, class Period2>
constexpr std::size_t min_pool_for_mean_wait(double arrival_rate,
                                             std::chrono::duration<Rep, Period> mean_hold,
                                             std::chrono::duration<Rep2, Period2> target_wait) {
    detail::require(target_wait >= std::chrono::duration<Rep2, Period2>::zero(),
                    "keel::ops::min_pool_for_mean_wait", "target_wait", ">= 0", target_wait);
    double const a = offered_load(arrival_rate, mean_hold);
    if (a == 0.0) {
        return 0;
    }
    double const s = detail::seconds(mean_hold);
    double const target = detail::seconds(target_wait);
    double b = 1.0;
    for (std::size_t c = 1;; ++c) {
        double const ab = a * b;
        b = ab / (static_cast<double>(c) + ab);
        auto const cd = static_cast<double>(c);
        // C underflows to 0 for very large pools, so the loop always ends.
        if (cd > a && detail::erlang_c_from_b(cd, a, b) * s / (cd - a) <= target) {
            return c;
        }
    }
}

/// Returns the smallest pool whose `quantile` wait for a connection is at most
/// `target_wait` (e.g. p99 <= 10 ms). Not constexpr (std::log). Throws
/// std::invalid_argument unless 0 <= quantile < 1, or for a negative rate, time or target.
template <class Rep, class Period, class Rep2, class Period2>
std::size_t
min_pool_for_wait_quantile(double arrival_rate, std::chrono::duration<Rep, Period> mean_hold,
                           double quantile, std::chrono::duration<Rep2, Period2> target_wait) {
    detail::require(quantile >= 0.0 && quantile < 1.0, "keel::ops::min_pool_for_wait_quantile",
                    "quantile", "in [0, 1)", quantile);
    detail::require(target_wait >= std::chrono::duration<Rep2, Period2>::zero(),
                    "keel::ops::min_pool_for_wait_quantile", "target_wait", ">= 0", target_wait);
    double const a = offered_load(arrival_rate, mean_hold);
    if (a == 0.0) {
        return 0;
    }
    double const s = detail::seconds(mean_hold);
    double const target = detail::seconds(target_wait);
    double const tail = 1.0 - quantile;
    double b = 1.0;
    for (std::size_t c = 1;; ++c) {
        double const ab = a * b;
        b = ab / (static_cast<double>(c) + ab);
        auto const cd = static_cast<double>(c);
        if (cd <= a) {
            continue;
        }
        double const p_wait = detail::erlang_c_from_b(cd, a, b);
        if (p_wait <= tail || s / (cd - a) * std::log(p_wait / tail) <= target) {
            return c;
        }
    }
}

/// Returns HikariCP's rule of thumb for a database's total pool size, summed over all its
/// clients: connections = (core_count x 2) + effective_spindle_count ("About Pool Sizing",
/// after PostgreSQL).
///
/// Count physical cores, not hyper-threads. The effective spindle count is 0 when the
/// active data set is fully cached and grows as the cache hit rate falls; SSDs need fewer.
/// HikariCP's example: 4 cores, 1 disk -> 9 ("call it 10").
constexpr std::size_t hikari_pool_size(std::size_t core_count,
                                       std::size_t effective_spindle_count = 0) noexcept {
    return core_count * 2 + effective_spindle_count;
}

/// Returns HikariCP's pool-locking minimum Tn x (Cm - 1) + 1: the smallest pool that cannot
/// deadlock when `max_threads` threads each hold up to `connections_per_thread` connections
/// at once (HikariCP's example: 3 threads x 4 connections -> 10). 0 when either is 0.
constexpr std::size_t deadlock_free_pool_size(std::size_t max_threads,
                                              std::size_t connections_per_thread) noexcept {
    if (max_threads == 0 || connections_per_thread == 0) {
        return 0;
    }
    return max_threads * (connections_per_thread - 1) + 1;
}

/// Names a protocol stack for the connection-cost model.
enum class transport {
    tcp,       ///< Plain TCP.
    tcp_tls12, ///< TCP and a full TLS 1.2 handshake (2 more round trips, RFC 5246).
    tcp_tls13, ///< TCP and a full TLS 1.3 handshake (1 more round trip, RFC 8446).
};

/// Returns the article's handshake cost in round trips: the TCP three-way handshake
/// ~1.5 RTT, plus ~2 RTT for TLS (1.2), or 1 RTT for TLS 1.3: 1.5, 3.5 or 2.5.
///
/// This is the article's model: 3.5 RTT is when the request reaches the server. The first
/// response byte arrives later; see round_trips_to_first_byte().
constexpr double handshake_round_trips(transport stack) noexcept {
    switch (stack) {
    case transport::tcp: return 1.5;
    case transport::tcp_tls12: return 3.5;
    case transport::tcp_tls13: return 2.5;
    }
    return 0.0;
}

/// Returns the round trips before the first response byte on a new connection: 2 for
/// plain TCP, 4 with TLS 1.2, 3 with TLS 1.3 (the handshakes, then one for the request).
constexpr double round_trips_to_first_byte(transport stack) noexcept {
    switch (stack) {
    case transport::tcp: return 2.0;
    case transport::tcp_tls12: return 4.0;
    case transport::tcp_tls13: return 3.0;
    }
    return 0.0;
}

/// Returns the article's overhead of opening a connection: handshake_round_trips(stack) x
/// `rtt`. The article's example: 3.5 RTT x 20 ms = 70 ms for TCP and TLS to MongoDB Atlas.
/// Throws std::invalid_argument for a negative `rtt`.
template <class Rep, class Period>
constexpr std::chrono::duration<double>
connection_setup_cost(std::chrono::duration<Rep, Period> rtt,
                      transport stack = transport::tcp_tls12) {
    detail::require(rtt >= std::chrono::duration<Rep, Period>::zero(),
                    "keel::ops::connection_setup_cost", "rtt", ">= 0", rtt);
    return std::chrono::duration<double>{handshake_round_trips(stack) * detail::seconds(rtt)};
}

/// Returns how many times a request's own duration `work` the cost of opening a connection
/// for it would be: the article's "70 ms setup for a 5 ms query is ~14x". Returns +infinity
/// for zero work. Throws std::invalid_argument for a negative `rtt` or `work`.
template <class Rep, class Period, class Rep2, class Period2>
constexpr double connection_overhead_ratio(std::chrono::duration<Rep, Period> rtt,
                                           std::chrono::duration<Rep2, Period2> work,
                                           transport stack = transport::tcp_tls12) {
    detail::require(work >= std::chrono::duration<Rep2, Period2>::zero(),
                    "keel::ops::connection_overhead_ratio", "work", ">= 0", work);
    double const setup = connection_setup_cost(rtt, stack).count();
    double const w = detail::seconds(work);
    return w == 0.0 ? std::numeric_limits<double>::infinity() : setup / w;
}

} // namespace ops
KEEL_END_NAMESPACE
