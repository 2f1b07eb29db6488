// SPDX-License-Identifier: MIT
// The one seam between keel::asio and an Asio: standalone Asio (1.22 and later,
// Debian's libasio-dev) by default, Boost.Asio (Boost 1.81's Asio 1.26) when
// KEEL_ASIO_BOOST is defined to 1 (the keel::asio_boost CMake target does so).
// Everything else in keel/asio names Asio only as keel::asio::net and uses only
// what both have: awaitable, co_spawn, this_coro, cancellation signals, slots
// and states, bind_cancellation_slot, experimental::as_tuple, post, dispatch,
// recycling allocators, basic_waitable_timer, and execution_context services
// (use_service, found through query(executor, execution::context)).
#pragma once

#include <keel/version.hpp>

// A standard header before Asio's: Asio picks its aligned allocation path
// (aligned_alloc or operator new) from what the standard library has declared,
// and two translation units that chose differently would break the one
// definition rule for its aligned_new/aligned_delete.
#include <cstddef>

// Asio 1.22 looks for coroutine support in clang only through the Coroutines TS
// (<experimental/coroutine>, which libstdc++ lacks), so with clang 14 and
// libstdc++ it would offer no awaitable at all; C++20 coroutines are there.
#if defined(__clang__) && defined(__cpp_impl_coroutine) && __has_include(<coroutine>)
#if !defined(ASIO_HAS_CO_AWAIT) && !defined(ASIO_DISABLE_CO_AWAIT)
#define ASIO_HAS_CO_AWAIT 1
#endif
#if !defined(BOOST_ASIO_HAS_CO_AWAIT) && !defined(BOOST_ASIO_DISABLE_CO_AWAIT)
#define BOOST_ASIO_HAS_CO_AWAIT 1
#endif
#endif

#if defined(KEEL_ASIO_BOOST) && KEEL_ASIO_BOOST
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/experimental/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>
#define KEEL_ASIO_NAMESPACE ::boost::asio
#else
#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/basic_waitable_timer.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/cancellation_state.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/co_spawn.hpp>
#include <asio/dispatch.hpp>
#include <asio/error.hpp>
#include <asio/error_code.hpp>
#include <asio/execution/context.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/execution_context.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/query.hpp>
#include <asio/recycling_allocator.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#define KEEL_ASIO_NAMESPACE ::asio
#endif

KEEL_BEGIN_NAMESPACE

namespace asio {
/// The Asio keel::asio is built on: ::asio, or ::boost::asio under KEEL_ASIO_BOOST.
namespace net = KEEL_ASIO_NAMESPACE;

#if defined(KEEL_ASIO_BOOST) && KEEL_ASIO_BOOST
/// The error code type of that Asio's completion handlers.
using error_code = ::boost::system::error_code;
#else
/// The error code type of that Asio's completion handlers.
using error_code = ::asio::error_code;
#endif

/// The awaitable type keel::asio's coroutines return (on any_io_executor).
template <class T>
using awaitable = net::awaitable<T>;
} // namespace asio

KEEL_END_NAMESPACE
