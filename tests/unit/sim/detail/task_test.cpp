// SPDX-License-Identifier: MIT
#include <keel/sim/detail/task.hpp>

#include <catch2/catch.hpp>

#include <coroutine>
#include <stdexcept>
#include <vector>

namespace {

// Suspends and leaves its handle where the test can resume it, as the simulator's
// event loop does.
struct parked {
    std::vector<std::coroutine_handle<>>* queue;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) { queue->push_back(h); }
    void await_resume() const noexcept {}
};

keel::sim::detail::task<int> leaf(std::vector<std::coroutine_handle<>>& queue, int value) {
    co_await parked{&queue};
    if (value < 0) {
        throw std::runtime_error("negative");
    }
    co_return value * 2;
}

keel::sim::detail::task<int> middle(std::vector<std::coroutine_handle<>>& queue, int value) {
    int const a = co_await leaf(queue, value);
    int const b = co_await leaf(queue, value + 1);
    co_return a + b;
}

keel::sim::detail::detached top(std::vector<std::coroutine_handle<>>& queue, int value,
                                std::vector<int>& results) {
    results.push_back(co_await middle(queue, value));
}

} // namespace

TEST_CASE("sim::detail::task: nested tasks resume their callers and return values", "[sim]") {
    std::vector<std::coroutine_handle<>> queue;
    std::vector<int> results;
    top(queue, 1, results);
    top(queue, 10, results);
    while (!queue.empty()) {
        auto h = queue.front();
        queue.erase(queue.begin());
        h.resume();
    }
    CHECK(results == std::vector<int>{2 + 4, 20 + 22});
}

TEST_CASE("sim::detail::task: an exception reaches the awaiting coroutine, then the sink",
          "[sim]") {
    std::vector<std::coroutine_handle<>> queue;
    std::vector<int> results;
    std::exception_ptr sink;
    keel::sim::detail::detached::promise_type::sink = &sink;
    top(queue, -1, results);
    while (!queue.empty()) {
        auto h = queue.front();
        queue.erase(queue.begin());
        h.resume();
    }
    keel::sim::detail::detached::promise_type::sink = nullptr;
    CHECK(results.empty());
    CHECK_THROWS_WITH(std::rethrow_exception(sink), "negative");
}
