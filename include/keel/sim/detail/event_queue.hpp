// SPDX-License-Identifier: MIT
// keel::sim::detail::event_queue: the simulator's future events, a binary heap
// ordered by (time, sequence), so events due at the same time run in the order
// they were scheduled and a run is the same on every platform.
#pragma once

#include <keel/version.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace sim::detail {

/// One scheduled event: what to do (`kind`), on what (`target`, `index`), and a
/// generation that makes it stale when its target has moved on.
struct event {
    std::int64_t at = 0;     ///< Due time, ns on the simulation's clock.
    std::uint64_t seq = 0;   ///< Scheduling order, the tie-break.
    void* target = nullptr;  ///< The object it concerns (a coroutine, an instance, a client).
    std::uint32_t index = 0; ///< A slot or sub-object index.
    std::uint32_t gen = 0;   ///< The target's generation when scheduled.
    std::uint32_t epoch = 0; ///< A second generation (an instance's, for served calls).
    std::uint8_t kind = 0;   ///< What to do, as the engine numbers it.
    std::uint8_t flag = 0;   ///< A bit of payload (e.g. a served call's failure).
};

class event_queue {
public:
    void push(event e) {
        e.seq = m_next_seq++;
        m_heap.push_back(e);
        std::push_heap(m_heap.begin(), m_heap.end(), later);
    }
    bool empty() const noexcept { return m_heap.empty(); }
    event const& top() const noexcept { return m_heap.front(); }
    event pop() {
        std::pop_heap(m_heap.begin(), m_heap.end(), later);
        event e = m_heap.back();
        m_heap.pop_back();
        return e;
    }
    std::size_t size() const noexcept { return m_heap.size(); }

private:
    static bool later(event const& a, event const& b) noexcept {
        return a.at != b.at ? a.at > b.at : a.seq > b.seq;
    }
    std::vector<event> m_heap;
    std::uint64_t m_next_seq = 0;
};

} // namespace sim::detail

KEEL_END_NAMESPACE
