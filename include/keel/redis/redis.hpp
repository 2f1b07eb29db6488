// SPDX-License-Identifier: MIT
// Everything in keel::redis, for those who want one include: the connection,
// the pool, Cluster and Sentinel targets, scripts, the failure policy and the
// distributed limiters. Needs the keel::redis CMake target (hiredis);
// keel/keel.hpp does not include it.
#pragma once

#include <keel/redis/cluster.hpp>
#include <keel/redis/connection.hpp>
#include <keel/redis/failure_policy.hpp>
#include <keel/redis/fixed_window.hpp>
#include <keel/redis/gcra.hpp>
#include <keel/redis/pool.hpp>
#include <keel/redis/script.hpp>
#include <keel/redis/sentinel.hpp>
#include <keel/redis/sliding_counter.hpp>
#include <keel/redis/target.hpp>
