// SPDX-License-Identifier: MIT
// What keel::net::client_resolver's walk reads: the node a header entry names, and the
// reader that splits comma-separated header lines from the end (the nearest hop first)
// within a byte budget. Internal: not part of keel's API.
#pragma once

#include <keel/net/detail/chars.hpp>
#include <keel/net/ip_address.hpp>
#include <keel/version.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

KEEL_BEGIN_NAMESPACE
namespace net::detail {

enum class node_kind : std::uint8_t { address, invalid, unknown, obfuscated, end, cut };

struct node {
    node_kind kind = node_kind::end;
    ip_address address{};
};

// Splits comma-separated header lines into items, last line's last item first, reading
// at most `budget` bytes from the end. With `quotes`, commas inside quoted strings do not
// split (a '"' preceded by an odd run of backslashes is escaped). Empty items are skipped.
class reverse_list_reader {
public:
    constexpr reverse_list_reader(std::span<std::string_view const> lines, std::size_t budget,
                                  bool quotes) noexcept
        : m_lines(lines), m_line(lines.size()), m_pos(lines.empty() ? 0 : lines.back().size()),
          m_budget(budget), m_quotes(quotes) {}

    // Returns end, cut (the next item crosses the byte budget) or address with `item` set.
    constexpr node_kind next(std::string_view& item) noexcept {
        // Locals, not members, in the loops: the header's chars may alias *this.
        bool const quotes = m_quotes;
        while (m_line > 0) {
            std::string_view const s = m_lines[m_line - 1];
            std::size_t const pos = m_pos;
            std::size_t const lowest = pos > m_budget ? pos - m_budget : 0;
            std::size_t j = pos;
            if (!quotes) {
                while (j > lowest && s[j - 1] != ',') {
                    --j;
                }
            } else {
                bool in_quote = false;
                while (j > lowest) {
                    char const c = s[j - 1];
                    if (c == ',' && !in_quote) {
                        break;
                    }
                    if (c == '"') {
                        std::size_t k = j - 1;
                        while (k > lowest && s[k - 1] == '\\') {
                            --k;
                        }
                        if ((j - 1 - k) % 2 == 0) {
                            in_quote = !in_quote;
                        }
                    }
                    --j;
                }
            }
            if (j > lowest) {
                --j; // the comma
                item = s.substr(j + 1, pos - j - 1);
                m_budget -= pos - j;
                m_pos = j;
            } else if (lowest == 0) {
                item = s.substr(0, pos);
                m_budget -= pos;
                --m_line;
                m_pos = m_line > 0 ? m_lines[m_line - 1].size() : 0;
            } else {
                return node_kind::cut;
            }
            item = trim_ows(item);
            if (!item.empty()) {
                return node_kind::address;
            }
        }
        return node_kind::end;
    }

private:
    std::span<std::string_view const> m_lines;
    std::size_t m_line;
    std::size_t m_pos;
    std::size_t m_budget;
    bool m_quotes;
};

} // namespace net::detail
KEEL_END_NAMESPACE
