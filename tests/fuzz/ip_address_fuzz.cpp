// SPDX-License-Identifier: MIT
// Fuzzes keel::net::ip_address::parse: never crashes; accepts exactly what inet_pton
// accepts, with the same bytes; and whatever it accepts writes canonical text that
// parses back to the same address and is a fixed point.
#include <keel/net/ip_address.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    std::string_view const text{reinterpret_cast<char const*>(data), size};
    auto const a = keel::net::ip_address::parse(text);

    // The reference: inet_pton on the same text (it needs a C string, so text holding
    // a NUL byte has no counterpart there).
    if (std::find(text.begin(), text.end(), '\0') == text.end()) {
        std::string const c_text{text};
        unsigned char bytes[16] = {};
        bool const v4 = inet_pton(AF_INET, c_text.c_str(), bytes) == 1;
        bool const v6 = !v4 && inet_pton(AF_INET6, c_text.c_str(), bytes) == 1;
        if (a.has_value() != (v4 || v6) || (a && (a->is_v4() != v4))) {
            std::abort();
        }
        if (a && !std::equal(a->bytes().begin(), a->bytes().end(), bytes)) {
            std::abort();
        }
    }
    if (!a) {
        return 0;
    }
    char buffer[keel::net::ip_address::max_string_length];
    char* const end = a->write(buffer);
    std::string_view const canonical{buffer, static_cast<std::size_t>(end - buffer)};
    if (canonical.size() > keel::net::ip_address::max_string_length || canonical.empty()) {
        std::abort();
    }
    auto const again = keel::net::ip_address::parse(canonical);
    if (!again || *again != *a || again->to_string() != canonical) {
        std::abort();
    }
    if (a->unmap().to_v6().unmap() != a->unmap() || (a->is_v4_mapped() && !a->unmap().is_v4())) {
        std::abort();
    }
    return 0;
}
