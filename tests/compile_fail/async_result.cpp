// SPDX-License-Identifier: MIT
// keel::resilient rejects calls whose result is asynchronous work (it would guard
// only the creation of the future, awaitable or sender). Each KEEL_CASE_* macro
// selects one such call and must fail to compile with keel's static_assert
// (tests/compile_fail/CMakeLists.txt); without one, the file compiles and shows
// that the same shapes minus the asynchronous part are accepted.
#include <keel/resilient.hpp>

#include <future>

namespace asio {
// The shape of asio::awaitable<T>: awaitable through its own await_* members.
template <class T>
struct awaitable {
    bool await_ready() const noexcept { return false; }
    void await_suspend(void*) const noexcept {}
    T await_resume() const { return T{}; }
};
} // namespace asio

namespace tasks {
// A cppcoro-style task: awaitable through a member operator co_await.
struct member_co_await_task {
    struct awaiter {
        bool await_ready() const noexcept { return true; }
        void await_suspend(void*) const noexcept {}
        int await_resume() const noexcept { return 1; }
    };
    awaiter operator co_await() const noexcept { return {}; }
};
// A task awaitable only through a free operator co_await found by ADL.
struct free_co_await_task {};
inline member_co_await_task::awaiter operator co_await(free_co_await_task) noexcept {
    return {};
}
// A folly-style task: a coroutine type, recognised by its nested promise_type.
struct promise_task {
    struct promise_type {};
};
} // namespace tasks

namespace exec {
struct sender_t {};
// A P2300 (std::execution, stdexec) sender.
struct just_sender {
    using sender_concept = sender_t;
};
// A sender of earlier stdexec releases.
struct legacy_sender {
    using is_sender = void;
};
} // namespace exec

int main() {
#if defined(KEEL_CASE_STD_FUTURE)
    auto const guarded = keel::resilient{[] { return std::future<int>{}; }};
#elif defined(KEEL_CASE_SHARED_FUTURE)
    auto const guarded = keel::resilient{[] { return std::shared_future<void>{}; }};
#elif defined(KEEL_CASE_OUTCOME_OF_FUTURE)
    auto const guarded =
        keel::resilient{[]() -> keel::outcome<std::future<int>> { return std::future<int>{}; }};
#elif defined(KEEL_CASE_ASIO_AWAITABLE)
    auto const guarded =
        keel::resilient{[](keel::context const&) { return asio::awaitable<int>{}; }};
#elif defined(KEEL_CASE_MEMBER_CO_AWAIT)
    auto const guarded = keel::resilient{[] { return tasks::member_co_await_task{}; }};
#elif defined(KEEL_CASE_FREE_CO_AWAIT)
    auto const guarded = keel::resilient{[] { return tasks::free_co_await_task{}; }};
#elif defined(KEEL_CASE_PROMISE_TYPE)
    auto const guarded = keel::resilient{[] { return tasks::promise_task{}; }};
#elif defined(KEEL_CASE_SENDER)
    auto const guarded = keel::resilient{[] { return exec::just_sender{}; }};
#elif defined(KEEL_CASE_LEGACY_SENDER)
    auto const guarded = keel::resilient{[] { return exec::legacy_sender{}; }};
#else
    // The control: synchronous results of the same programs are guarded as usual.
    auto const guarded = keel::resilient{[] { return std::future<int>{}.valid() ? 0 : 1; }};
    static_assert(!keel::detail::asynchronous_result<exec::sender_t>);
    static_assert(!keel::detail::asynchronous_result<tasks::member_co_await_task::awaiter const*>);
#endif
    return guarded.try_call().has_value() ? 0 : 1;
}
