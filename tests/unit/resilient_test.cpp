// SPDX-License-Identifier: MIT
#include <keel/resilient.hpp>

#include <keel/policy/retry.hpp>
#include <keel/policy/timeout.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;

// Counts allocations while `counting` is set, to show the success path allocates
// nothing. Sanitizers replace operator new themselves, so they skip the count.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KEEL_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KEEL_TEST_SANITIZED 1
#endif
#endif

namespace {
std::atomic<bool> counting{false};
std::atomic<int> allocations{0};
} // namespace

#ifndef KEEL_TEST_SANITIZED
// noinline: g++ -O2 otherwise inlines these into library code and reports a
// mismatched new/delete pair that is not one.
[[gnu::noinline]] void* operator new(std::size_t size) {
    if (counting.load(std::memory_order_relaxed)) {
        allocations.fetch_add(1, std::memory_order_relaxed);
    }
    if (void* p = std::malloc(size == 0 ? 1 : size)) {
        return p;
    }
    throw std::bad_alloc{};
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
#endif

namespace {

struct upstream_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A policy recording when it enters and leaves, to show the order of composition.
struct trace {
    std::vector<std::string>* log;
    std::string name;
    template <class Next, class Context>
    auto execute(Next const& next, Context const& ctx) const -> decltype(next(ctx)) {
        log->push_back(name + "+");
        auto result = next(ctx);
        log->push_back(name + "-");
        return result;
    }
};

// A user-written policy: counts failures, a metrics policy in miniature.
struct count_failures {
    std::atomic<int>* failures;
    template <class Next, class Context>
    auto execute(Next const& next, Context const& ctx) const -> decltype(next(ctx)) {
        auto result = next(ctx);
        if (!result) {
            failures->fetch_add(1);
        }
        return result;
    }
};

} // namespace

static_assert(keel::policy_for<trace, int>);
static_assert(keel::policy_for<keel::retry<>, int>);
static_assert(keel::policy_for<keel::timeout, std::string>);
static_assert(std::is_same_v<keel::pipeline_clock_t<>, keel::steady_clock>);
static_assert(std::is_same_v<keel::pipeline_clock_t<trace, keel::basic_timeout<keel::manual_clock>>,
                             keel::manual_clock>);

TEST_CASE("resilient: without policies it calls the call", "[resilient]") {
    auto guarded = keel::resilient{[] { return 42; }};
    CHECK(guarded() == 42);
    CHECK(guarded.call() == 42);
    CHECK(*guarded.try_call() == 42);
}

namespace {
int twice(int x) {
    return 2 * x;
}
} // namespace

// g++ -Wshadow (an error in keel's builds) flagged the constructor's parameter
// `call` as shadowing the member function call() when Call is a function pointer.
TEST_CASE("resilient: guards a plain function pointer", "[resilient]") {
    int (*const fn)(int) = &twice;
    auto const guarded = keel::resilient{fn};
    CHECK(guarded(21) == 42);
    auto const retried = keel::resilient{&twice, keel::retry{{.max_attempts = 2}}};
    CHECK(*retried.try_call(4) == 8);
}

TEST_CASE("resilient: policies apply outer to inner in argument order", "[resilient]") {
    std::vector<std::string> log;
    auto guarded = keel::resilient{[&] {
                                       log.push_back("call");
                                       return 1;
                                   },
                                   trace{&log, "a"}, trace{&log, "b"}, trace{&log, "c"}};
    guarded();
    CHECK(log == std::vector<std::string>{"a+", "b+", "c+", "call", "c-", "b-", "a-"});
}

TEST_CASE("resilient: arguments reach the call, again on each attempt", "[resilient]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    std::vector<std::string> seen;
    auto guarded = keel::resilient{
        [&](keel::basic_context<keel::manual_clock> const& ctx, std::string const& key, int n) {
            seen.push_back(key);
            if (ctx.attempt() < 2) {
                throw upstream_error{"x"};
            }
            return key.size() + static_cast<std::size_t>(n);
        },
        keel::retry{keel::basic_retry_options<keel::manual_clock>{.max_attempts = 2},
                    keel::on_failure{}, clock, sleeper}};
    CHECK(guarded(std::string{"user"}, 3) == 7);
    CHECK(seen == std::vector<std::string>{"user", "user"});
}

TEST_CASE("resilient: the call's exceptions propagate unchanged through call()", "[resilient]") {
    auto guarded = keel::resilient{[]() -> int { throw upstream_error{"boom"}; }};
    CHECK_THROWS_AS(guarded(), upstream_error);
    auto const r = guarded.try_call();
    REQUIRE_FALSE(r.has_value());
    CHECK_FALSE(r.error());
    CHECK_THROWS_WITH(std::rethrow_exception(r.exception()), "boom");
}

TEST_CASE("resilient: keel errors thrown by the call keep their code", "[resilient]") {
    auto guarded = keel::resilient{[]() -> int { throw keel::unavailable{"redis"}; }};
    CHECK(guarded.try_call().error() == keel::errc::unavailable);
    CHECK_THROWS_AS(guarded(), keel::unavailable);
}

TEST_CASE("resilient: a call returning outcome<T> reports failures as values", "[resilient]") {
    auto guarded = keel::resilient{[](bool ok) -> keel::outcome<int> {
        if (ok) {
            return 5;
        }
        return keel::failure::from(keel::errc::rate_limited, std::chrono::nanoseconds{2s});
    }};
    static_assert(std::is_same_v<decltype(guarded.try_call(true)), keel::outcome<int>>);
    CHECK(guarded(true) == 5);
    auto const r = guarded.try_call(false);
    CHECK(r.error() == keel::errc::rate_limited);
    CHECK(r.retry_after() == std::chrono::nanoseconds{2s});
    CHECK_THROWS_AS(guarded(false), keel::rate_limited);
}

TEST_CASE("resilient: void calls work", "[resilient]") {
    int calls = 0;
    auto guarded = keel::resilient{[&] { ++calls; }, keel::retry{}};
    static_assert(std::is_same_v<decltype(guarded.try_call()), keel::outcome<void>>);
    guarded();
    CHECK(guarded.try_call().has_value());
    CHECK(calls == 2);
}

TEST_CASE("resilient: user-written policies compose with keel's", "[resilient]") {
    std::atomic<int> failures{0};
    int calls = 0;
    auto guarded =
        keel::resilient{[&]() -> int {
                            if (++calls == 1) {
                                throw upstream_error{"x"};
                            }
                            return 3;
                        },
                        count_failures{&failures},
                        keel::retry{{.max_attempts = 2, .backoff = keel::constant{0ms}}}};
    CHECK(guarded() == 3);
    CHECK(failures.load() == 0); // the retry hid the first failure from the outer policy
}

TEST_CASE("resilient: the caller's context reaches the call", "[resilient]") {
    std::stop_source caller;
    caller.request_stop();
    auto guarded = keel::resilient{[](keel::context const& ctx) { return ctx.stop_requested(); }};
    CHECK(guarded.call_with(keel::context{}.with_stop_token(caller.get_token())));
    CHECK_FALSE(guarded());
}

TEST_CASE("resilient: the success path allocates nothing", "[resilient]") {
    auto direct = keel::resilient{[](int x) { return x + 1; }};
    auto with_retry = keel::resilient{[](int x) { return x + 1; }, keel::retry{}};
    allocations = 0;
    counting = true;
    int sum = 0;
    for (int i = 0; i < 100; ++i) {
        sum += direct(i) + with_retry(i) + *with_retry.try_call(i);
    }
    counting = false;
#ifndef KEEL_TEST_SANITIZED
    CHECK(allocations.load() == 0);
#endif
    CHECK(sum == 3 * 5050);
}

TEST_CASE("resilient: a real-clock timeout allocates only its stop state per attempt",
          "[resilient]") {
    auto guarded = keel::resilient{[](int x) { return x + 1; }, keel::timeout{10s}};
    (void)guarded(0); // starts the timer thread and sizes its heap
    allocations = 0;
    counting = true;
    int sum = 0;
    for (int i = 0; i < 100; ++i) {
        sum += guarded(i);
    }
    counting = false;
#ifndef KEEL_TEST_SANITIZED
    CHECK(allocations.load() == 100); // one std::stop_source each; the deadline none
#endif
    CHECK(sum == 5050);
}

TEST_CASE("resilient: the DESIGN example's shape with retry and timeout", "[resilient]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    using context = keel::basic_context<keel::manual_clock>;
    int calls = 0;
    auto get_user = keel::resilient{[&](context const& ctx) -> std::string {
                                        ++calls;
                                        if (ctx.attempt() == 1) {
                                            sleeper.sleep_for(
                                                10s, ctx.stop_token()); // hangs until the deadline
                                            return "late";
                                        }
                                        return "user 42";
                                    },
                                    keel::retry{keel::basic_retry_options<keel::manual_clock>{
                                                    .max_attempts = 3,
                                                    .backoff = keel::exponential{100ms, 2.0, 5s},
                                                    .jitter = keel::jitter::none},
                                                keel::on_failure{}, clock, sleeper},
                                    keel::basic_timeout{5s, clock}};
    CHECK(get_user() == "user 42");
    CHECK(calls == 2);
    CHECK(clock.now().time_since_epoch() == 5s + 100ms);
}

namespace {
struct user {
    int id = 0;
};
// Stands in for keel::guard(breaker), which lives in its own header: an outermost
// policy on the steady clock that sees one outcome per logical call.
struct outcome_counter {
    using clock_type = keel::steady_clock;
    int* outcomes;
    template <class Next, class Context>
    auto execute(Next const& next, Context const& ctx) const -> decltype(next(ctx)) {
        auto result = next(ctx);
        ++*outcomes;
        return result;
    }
};
} // namespace

TEST_CASE("resilient: the DESIGN example compiles and runs on the real clock", "[resilient]") {
    int outcomes = 0;
    int requests = 0;
    auto get_user = keel::resilient{
        [&](keel::context const& ctx) {
            ++requests;
            if (ctx.stop_requested()) {
                throw keel::cancelled{};
            }
            if (ctx.attempt() == 1) {
                throw upstream_error{"503"};
            }
            return user{42};
        },
        outcome_counter{&outcomes}, // outermost: one outcome per logical call
        keel::retry{{.max_attempts = 3,
                     .backoff = keel::exponential{1ms, 2.0, 5ms},
                     .jitter = keel::jitter::full}},
        keel::timeout{5s}, // innermost: each attempt has its own deadline
    };
    user const u = get_user();
    keel::outcome<user> const r = get_user.try_call();
    CHECK(u.id == 42);
    CHECK(r->id == 42);
    CHECK(requests == 4);
    CHECK(outcomes == 2);
}

namespace detection {
struct awaitable_like {
    bool await_ready() const noexcept;
};
struct sender_like {
    using sender_concept = void;
};
struct plain {
    int await_ready = 0; // a data member named like the protocol is not an awaitable
};
} // namespace detection

TEST_CASE("resilient: asynchronous results are recognised without Asio or std::execution",
          "[resilient]") {
    STATIC_REQUIRE(keel::detail::asynchronous_result<std::future<int>>);
    STATIC_REQUIRE(keel::detail::asynchronous_result<std::shared_future<void>>);
    STATIC_REQUIRE(keel::detail::asynchronous_result<detection::awaitable_like>);
    STATIC_REQUIRE(keel::detail::asynchronous_result<detection::sender_like>);
    STATIC_REQUIRE_FALSE(keel::detail::asynchronous_result<int>);
    STATIC_REQUIRE_FALSE(keel::detail::asynchronous_result<void>);
    STATIC_REQUIRE_FALSE(keel::detail::asynchronous_result<std::string>);
    STATIC_REQUIRE_FALSE(keel::detail::asynchronous_result<detection::plain>);
    STATIC_REQUIRE_FALSE(keel::detail::asynchronous_result<std::vector<std::future<int>>>);
}
