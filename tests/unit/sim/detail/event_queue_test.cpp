// SPDX-License-Identifier: MIT
#include <keel/sim/detail/event_queue.hpp>

#include <catch2/catch.hpp>

#include <vector>

TEST_CASE("sim::detail::event_queue: pops by time, equal times in scheduling order", "[sim]") {
    keel::sim::detail::event_queue q;
    for (std::uint32_t i = 0; i < 6; ++i) {
        q.push(keel::sim::detail::event{.at = i % 2 == 0 ? 20 : 10, .index = i});
    }
    std::vector<std::uint32_t> order;
    while (!q.empty()) {
        order.push_back(q.pop().index);
    }
    CHECK(order == std::vector<std::uint32_t>{1, 3, 5, 0, 2, 4});
}
