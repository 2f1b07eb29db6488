// SPDX-License-Identifier: MIT
// The networking half of the seam (keel/asio/detail/asio.hpp has the rest): TCP
// sockets, name resolution, strands, steady timers and whole-buffer writes, from
// standalone Asio or Boost.Asio as keel::asio::net. Only keel's own network
// clients include it (keel::redis::async_connection).
#pragma once

#include <keel/asio/detail/asio.hpp>

#if defined(KEEL_ASIO_BOOST) && KEEL_ASIO_BOOST
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#else
#include <asio/bind_executor.hpp>
#include <asio/connect.hpp>
#include <asio/dispatch.hpp>
#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/write.hpp>
#endif
