// SPDX-License-Identifier: MIT
// keel::limit_sample: what an adaptive concurrency algorithm learns from once per
// window (the window's round-trip time, the most calls that were in flight, and
// whether any call was dropped), as Netflix concurrency-limits' Limit.onSample
// (startTime, rtt, inflight, didDrop) receives it.
#pragma once

#include <keel/version.hpp>

#include <chrono>

KEEL_BEGIN_NAMESPACE

/// Describes one window of completed calls, as an algorithm sees it.
///
/// Netflix's WindowedLimit feeds its delegate once per window with the window's average
/// (or percentile) RTT, the maximum in-flight count any sampled call saw at its acquisition,
/// and whether any call in the window was dropped (timed out or was rejected downstream).
struct limit_sample {
    std::chrono::nanoseconds rtt{}; ///< The window's round-trip time (average or percentile).
    int in_flight = 0;              ///< The most calls in flight when a sampled call began.
    bool dropped = false;           ///< True if any call of the window was dropped.
};

KEEL_END_NAMESPACE
