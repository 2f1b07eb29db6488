// SPDX-License-Identifier: MIT
// Redis Cluster's key-to-slot function (CRC16-XMODEM of the key or of its hash
// tag, mod 16384) and the readers of what a node says about the cluster: the
// CLUSTER SHARDS and CLUSTER SLOTS replies, and MOVED / ASK redirects. Internal to
// keel::redis::cluster.
#pragma once

#include <keel/redis/connection.hpp>
#include <keel/version.hpp>

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace redis::detail {

/// Number of hash slots of a Redis Cluster.
inline constexpr std::size_t slot_count = 16384;
/// The highest slot number, 16383.
inline constexpr int last_slot = 16383;

/// CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection), the one
/// Redis Cluster hashes keys with; one table lookup per byte.
inline constexpr std::array<std::uint16_t, 256> crc16_table = [] {
    std::array<std::uint16_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i << 8;
        for (int b = 0; b < 8; ++b) {
            c = (c & 0x8000U) != 0 ? (c << 1) ^ 0x1021U : c << 1;
        }
        t[i] = static_cast<std::uint16_t>(c & 0xffffU);
    }
    return t;
}();

/// Returns CRC16-XMODEM of `bytes` ("123456789" gives 0x31C3).
constexpr std::uint16_t crc16(std::string_view bytes) noexcept {
    std::uint16_t crc = 0;
    for (char ch : bytes) {
        auto const byte = static_cast<std::uint8_t>(ch);
        crc = static_cast<std::uint16_t>((crc << 8) ^ crc16_table[((crc >> 8) ^ byte) & 0xffU]);
    }
    return crc;
}

/// Returns the part of `key` Redis hashes: the text between the first '{' and
/// the first '}' after it when that text is not empty, else the whole key (the
/// cluster specification's hash-tag rule).
constexpr std::string_view hash_tag(std::string_view key) noexcept {
    std::size_t const open = key.find('{');
    if (open == std::string_view::npos) {
        return key;
    }
    std::size_t const close = key.find('}', open + 1);
    if (close == std::string_view::npos || close == open + 1) {
        return key;
    }
    return key.substr(open + 1, close - open - 1);
}

/// Returns the slot of `key`: CRC16 of its hash tag, mod 16384.
constexpr std::uint16_t key_slot(std::string_view key) noexcept {
    return static_cast<std::uint16_t>(crc16(hash_tag(key)) & (slot_count - 1));
}

/// One contiguous slot range served by one master.
struct slot_range {
    std::uint16_t first = 0;
    std::uint16_t last = 0;
    endpoint master{};
};

/// Parses a decimal port or slot number; nullopt unless all of `s` is one in [lo, hi].
inline std::optional<int> parse_int(std::string_view s, int lo, int hi) noexcept {
    int v = 0;
    auto const [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size() || v < lo || v > hi) {
        return std::nullopt;
    }
    return v;
}

/// Reads an integer element, or a decimal string one (Redis 7.0.14 sent some slot
/// numbers as strings); nullopt otherwise or outside [lo, hi].
inline std::optional<int> integer_of(redisReply const* e, int lo, int hi) noexcept {
    if (e == nullptr) {
        return std::nullopt;
    }
    if (e->type == REDIS_REPLY_INTEGER) {
        if (e->integer < lo || e->integer > hi) {
            return std::nullopt;
        }
        return static_cast<int>(e->integer);
    }
    if ((e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) && e->str != nullptr) {
        return parse_int({e->str, e->len}, lo, hi);
    }
    return std::nullopt;
}

/// Returns the text of a string or status element; empty otherwise.
inline std::string_view text_of(redisReply const* e) noexcept {
    if (e == nullptr || e->str == nullptr ||
        (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS)) {
        return {};
    }
    return {e->str, e->len};
}

/// Returns the value after `name` in a RESP2 flat map (name, value, name, value...).
inline redisReply const* field(redisReply const* map, std::string_view name) noexcept {
    if (map == nullptr || map->type != REDIS_REPLY_ARRAY) {
        return nullptr;
    }
    for (std::size_t i = 0; i + 1 < map->elements; i += 2) {
        if (text_of(map->element[i]) == name) {
            return map->element[i + 1];
        }
    }
    return nullptr;
}

/// Reads a CLUSTER SHARDS reply (Redis 7.0+): per shard its slot ranges and the
/// master among its nodes (an online one first). An empty endpoint or "?" falls
/// back to the node's ip; an empty ip means `asked`'s host. Returns nullopt for a
/// reply of another shape; skips shards without a usable master.
inline std::optional<std::vector<slot_range>> parse_shards(reply const& r,
                                                           std::string_view asked_host) {
    if (!r.is_array()) {
        return std::nullopt;
    }
    std::vector<slot_range> ranges;
    for (std::size_t s = 0; s < r.size(); ++s) {
        redisReply const* shard = r.element(s);
        redisReply const* slots = field(shard, "slots");
        redisReply const* nodes = field(shard, "nodes");
        if (slots == nullptr || nodes == nullptr || slots->type != REDIS_REPLY_ARRAY ||
            nodes->type != REDIS_REPLY_ARRAY) {
            return std::nullopt;
        }
        std::optional<endpoint> master;
        bool online = false;
        for (std::size_t n = 0; n < nodes->elements; ++n) {
            redisReply const* node = nodes->element[n];
            if (text_of(field(node, "role")) != "master") {
                continue;
            }
            std::optional<int> const port = integer_of(field(node, "port"), 1, 65535);
            if (!port) {
                continue; // a TLS-only node: keel speaks plain TCP
            }
            bool const healthy = text_of(field(node, "health")) == "online";
            if (master && (online || !healthy)) {
                continue;
            }
            std::string_view host = text_of(field(node, "endpoint"));
            if (host.empty() || host == "?") {
                host = text_of(field(node, "ip"));
            }
            if (host.empty()) {
                host = asked_host;
            }
            master = endpoint{std::string{host}, *port};
            online = healthy;
        }
        if (!master) {
            continue;
        }
        for (std::size_t i = 0; i + 1 < slots->elements; i += 2) {
            auto const first = integer_of(slots->element[i], 0, last_slot);
            auto const last = integer_of(slots->element[i + 1], 0, last_slot);
            if (!first || !last || *last < *first) {
                return std::nullopt;
            }
            ranges.push_back(
                {static_cast<std::uint16_t>(*first), static_cast<std::uint16_t>(*last), *master});
        }
    }
    return ranges;
}

/// Reads a CLUSTER SLOTS reply (before Redis 7.0; deprecated since): per range
/// [first, last, [ip, port, id...], replicas...]. An empty ip means `asked`'s host.
/// Returns nullopt for a reply of another shape.
inline std::optional<std::vector<slot_range>> parse_slots(reply const& r,
                                                          std::string_view asked_host) {
    if (!r.is_array()) {
        return std::nullopt;
    }
    std::vector<slot_range> ranges;
    for (std::size_t i = 0; i < r.size(); ++i) {
        redisReply const* e = r.element(i);
        if (e == nullptr || e->type != REDIS_REPLY_ARRAY || e->elements < 3) {
            return std::nullopt;
        }
        auto const first = integer_of(e->element[0], 0, last_slot);
        auto const last = integer_of(e->element[1], 0, last_slot);
        redisReply const* master = e->element[2];
        if (!first || !last || *last < *first || master == nullptr ||
            master->type != REDIS_REPLY_ARRAY || master->elements < 2) {
            return std::nullopt;
        }
        auto const port = integer_of(master->element[1], 1, 65535);
        if (!port) {
            return std::nullopt;
        }
        std::string_view host = text_of(master->element[0]);
        if (host.empty() || host == "?") {
            host = asked_host;
        }
        ranges.push_back({static_cast<std::uint16_t>(*first), static_cast<std::uint16_t>(*last),
                          endpoint{std::string{host}, *port}});
    }
    return ranges;
}

/// A MOVED or ASK redirect: where the slot lives now (MOVED) or for this one
/// command (ASK).
struct redirect {
    bool ask = false;
    std::uint16_t slot = 0;
    endpoint to{};
};

/// Reads "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>"; an empty host
/// (Redis 7 may send ":port") means `replied_host`, the node that answered.
/// nullopt for any other error text.
inline std::optional<redirect> parse_redirect(std::string_view error,
                                              std::string_view replied_host) {
    redirect r;
    if (error.starts_with("MOVED ")) {
        error.remove_prefix(6);
    } else if (error.starts_with("ASK ")) {
        error.remove_prefix(4);
        r.ask = true;
    } else {
        return std::nullopt;
    }
    std::size_t const space = error.find(' ');
    if (space == std::string_view::npos) {
        return std::nullopt;
    }
    auto const slot = parse_int(error.substr(0, space), 0, last_slot);
    std::string_view const address = error.substr(space + 1);
    std::size_t const colon = address.rfind(':');
    if (!slot || colon == std::string_view::npos) {
        return std::nullopt;
    }
    auto const port = parse_int(address.substr(colon + 1), 1, 65535);
    if (!port) {
        return std::nullopt;
    }
    std::string_view const host = colon == 0 ? replied_host : address.substr(0, colon);
    r.slot = static_cast<std::uint16_t>(*slot);
    r.to = endpoint{std::string{host}, *port};
    return r;
}

} // namespace redis::detail

KEEL_END_NAMESPACE
