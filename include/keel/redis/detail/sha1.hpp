// SPDX-License-Identifier: MIT
// SHA-1 of a script's source, the name Redis gives a script (EVALSHA <sha1>), so
// keel can run a script by hash without asking the server for it first.
// Internal to keel::redis; SHA-1 is used here as an identifier, not for security.
#pragma once

#include <keel/version.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

KEEL_BEGIN_NAMESPACE

namespace redis::detail {

/// Returns the lowercase hexadecimal SHA-1 digest (40 characters) of `text` (FIPS 180-4).
inline std::string sha1_hex(std::string_view text) {
    std::array<std::uint32_t, 5> h{0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    auto rotl = [](std::uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
    std::string message{text};
    std::uint64_t const bit_length = static_cast<std::uint64_t>(text.size()) * 8u;
    message.push_back(static_cast<char>(0x80));
    while (message.size() % 64 != 56) {
        message.push_back('\0');
    }
    for (int i = 7; i >= 0; --i) {
        message.push_back(static_cast<char>((bit_length >> (i * 8)) & 0xffu));
    }
    for (std::size_t block = 0; block < message.size(); block += 64) {
        std::array<std::uint32_t, 80> w{};
        for (std::size_t i = 0; i < 16; ++i) {
            auto byte = [&](std::size_t k) {
                return static_cast<std::uint32_t>(
                    static_cast<unsigned char>(message[block + i * 4 + k]));
            };
            w[i] = (byte(0) << 24) | (byte(1) << 16) | (byte(2) << 8) | byte(3);
        }
        for (std::size_t i = 16; i < 80; ++i) {
            w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        }
        std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (std::size_t i = 0; i < 80; ++i) {
            std::uint32_t f = 0;
            std::uint32_t k = 0;
            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5A827999u;
            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ED9EBA1u;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8F1BBCDCu;
            } else {
                f = b ^ c ^ d;
                k = 0xCA62C1D6u;
            }
            std::uint32_t const t = rotl(a, 5) + f + e + k + w[i];
            e = d;
            d = c;
            c = rotl(b, 30);
            b = a;
            a = t;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(40);
    for (std::uint32_t word : h) {
        for (int shift = 28; shift >= 0; shift -= 4) {
            out.push_back(digits[(word >> shift) & 0xfu]);
        }
    }
    return out;
}

} // namespace redis::detail

KEEL_END_NAMESPACE
