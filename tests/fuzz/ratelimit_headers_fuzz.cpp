// SPDX-License-Identifier: MIT
// Fuzzes the HTTP header builders of keel/limiter/headers.hpp. Input: bytes 0-39 are
// five little-endian int64 (quota, window ns, remaining, reset ns, retry_after ns), the
// rest is the policy name. Checks: never crashes; every value fits its buffer; and each
// value parses back, as a structured-field client reads it: the name as an sf-string
// equal to the name's printable ASCII (at most 64 characters), every parameter present
// in order, and each number equal to the one the decision gives.
#include <keel/limiter/headers.hpp>

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {
std::int64_t read_int64(std::uint8_t const* p) {
    std::uint64_t u = 0;
    for (int i = 7; i >= 0; --i) {
        u = (u << 8) | p[i];
    }
    std::int64_t n = 0;
    std::memcpy(&n, &u, sizeof n);
    return n;
}

void require(bool ok) {
    if (!ok) {
        std::abort();
    }
}

// What the name should read back as: its printable ASCII bytes, at most 64.
std::string expected_name(std::string_view name) {
    std::string out;
    for (char c : name) {
        if (out.size() == keel::header_value::max_name) {
            break;
        }
        if (c >= 0x20 && c <= 0x7e) {
            out += c;
        }
    }
    return out;
}

// Reads an sf-string (RFC 8941 3.3.3) from the front of `text`; aborts if malformed.
std::string parse_sf_string(std::string_view& text) {
    require(!text.empty() && text.front() == '"');
    std::string out;
    for (std::size_t i = 1; i < text.size(); ++i) {
        char const c = text[i];
        require(c >= 0x20 && c <= 0x7e);
        if (c == '\\') {
            require(i + 1 < text.size() && (text[i + 1] == '"' || text[i + 1] == '\\'));
            out += text[++i];
        } else if (c == '"') {
            text.remove_prefix(i + 1);
            return out;
        } else {
            out += c;
        }
    }
    std::abort(); // no closing quote
}

// Reads `;<key>=<integer>` from the front of `text` and returns the integer.
std::int64_t parse_param(std::string_view& text, std::string_view key) {
    require(text.size() > key.size() + 2 && text[0] == ';' && text.substr(1, key.size()) == key &&
            text[key.size() + 1] == '=');
    text.remove_prefix(key.size() + 2);
    std::int64_t n = 0;
    auto const r = std::from_chars(text.data(), text.data() + text.size(), n);
    require(r.ec == std::errc{} && r.ptr != text.data());
    text.remove_prefix(static_cast<std::size_t>(r.ptr - text.data()));
    return n;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    if (size < 40) {
        return 0;
    }
    auto const quota = read_int64(data);
    auto const window = std::chrono::nanoseconds{read_int64(data + 8)};
    keel::decision d;
    d.remaining = read_int64(data + 16);
    d.reset = std::chrono::nanoseconds{read_int64(data + 24)};
    d.retry_after = std::chrono::nanoseconds{read_int64(data + 32)};
    std::string_view const name{reinterpret_cast<char const*>(data + 40), size - 40};
    auto const want_name = expected_name(name);

    auto const policy = keel::ratelimit_policy_value(name, quota, window);
    std::string_view text = policy.view();
    require(parse_sf_string(text) == want_name);
    require(parse_param(text, "q") == quota);
    auto const w = keel::seconds_rounded_up(window);
    require(parse_param(text, "w") == (w < 1 ? 1 : w));
    require(text.empty());

    auto const item = keel::ratelimit_value(name, d);
    text = item.view();
    require(parse_sf_string(text) == want_name);
    require(parse_param(text, "r") == (d.remaining < 0 ? 0 : d.remaining));
    require(parse_param(text, "t") == keel::seconds_rounded_up(d.reset));
    require(text.empty());

    auto const retry = keel::retry_after_value(d);
    std::int64_t seconds = -1;
    auto const r = std::from_chars(retry.data(), retry.data() + retry.size(), seconds);
    require(r.ec == std::errc{} && r.ptr == retry.data() + retry.size());
    require(seconds == keel::seconds_rounded_up(d.retry_after));
    return 0;
}
