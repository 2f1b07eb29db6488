// SPDX-License-Identifier: MIT
// Fuzzes keel::net::cidr::parse: never crashes; an accepted range round-trips through
// its text, contains its own network address, and matches an IPv4 address and its
// IPv4-mapped form alike.
#include <keel/net/cidr.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    std::string_view const text{reinterpret_cast<char const*>(data), size};
    auto const c = keel::net::cidr::parse(text);
    if (!c) {
        return 0;
    }
    auto const again = keel::net::cidr::parse(c->to_string());
    if (!again || *again != *c) {
        std::abort();
    }
    auto const network = c->network();
    if (c->prefix_length() > (network.is_v4() ? 32u : 128u)) {
        std::abort();
    }
    if (!c->contains(network)) { // a mapped network needs prefix >= 96, so it matches too
        std::abort();
    }
    auto const v4 = network.unmap();
    if (v4.is_v4() && c->contains(v4) != c->contains(v4.to_v6())) {
        std::abort();
    }
    return 0;
}
