// SPDX-License-Identifier: MIT
// keel::sim::detail::task: the coroutine type the simulator runs each simulated
// call's pipeline stages in. Lazily started, awaited by its caller, resuming the
// caller by symmetric transfer; frames come from a per-thread free list, so a
// simulated call costs no malloc once the pools are warm. Single-threaded: one
// simulation runs on one thread.
#pragma once

#include <keel/version.hpp>

#include <array>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <new>
#include <optional>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace sim::detail {

/// Hands out coroutine frames from free lists of 64-byte size classes (up to 2 KiB),
/// falling back to operator new above. Per thread, so no locking.
class frame_pool {
public:
    static void* allocate(std::size_t size) {
        std::size_t const cls = (size + 63) / 64;
        if (cls >= classes) {
            return ::operator new(size);
        }
        auto& list = instance().m_free[cls];
        if (list.empty()) {
            return ::operator new(cls * 64);
        }
        void* block = list.back();
        list.pop_back();
        return block;
    }

    static void deallocate(void* block, std::size_t size) noexcept {
        std::size_t const cls = (size + 63) / 64;
        if (cls >= classes) {
            ::operator delete(block);
            return;
        }
        auto& list = instance().m_free[cls];
        try {
            list.push_back(block);
        } catch (...) {
            ::operator delete(block);
        }
    }

    frame_pool() = default;
    frame_pool(frame_pool const&) = delete;
    frame_pool& operator=(frame_pool const&) = delete;
    ~frame_pool() {
        for (auto& list : m_free) {
            for (void* block : list) {
                ::operator delete(block);
            }
        }
    }

private:
    static constexpr std::size_t classes = 33;
    static frame_pool& instance() {
        thread_local frame_pool pool;
        return pool;
    }
    std::array<std::vector<void*>, classes> m_free{};
};

/// A lazily started coroutine returning T to the coroutine that awaits it.
template <class T>
class task {
public:
    struct promise_type {
        std::optional<T> value{};
        std::exception_ptr error{};
        std::coroutine_handle<> continuation{};

        task get_return_object() noexcept {
            return task{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        struct final_awaiter {
            bool await_ready() noexcept { return false; }
            std::coroutine_handle<>
            await_suspend(std::coroutine_handle<promise_type> self) noexcept {
                return self.promise().continuation;
            }
            void await_resume() noexcept {}
        };
        final_awaiter final_suspend() noexcept { return {}; }
        template <class U>
        void return_value(U&& result) {
            value.emplace(std::forward<U>(result));
        }
        void unhandled_exception() noexcept { error = std::current_exception(); }

        static void* operator new(std::size_t size) { return frame_pool::allocate(size); }
        static void operator delete(void* frame, std::size_t size) noexcept {
            frame_pool::deallocate(frame, size);
        }
    };

    task(task&& other) noexcept : m_handle(std::exchange(other.m_handle, {})) {}
    task& operator=(task&&) = delete;
    task(task const&) = delete;
    ~task() {
        if (m_handle) {
            m_handle.destroy();
        }
    }

    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) noexcept {
        m_handle.promise().continuation = caller;
        return m_handle;
    }
    T await_resume() {
        auto& promise = m_handle.promise();
        if (promise.error) {
            std::rethrow_exception(promise.error);
        }
        return std::move(*promise.value);
    }

private:
    explicit task(std::coroutine_handle<promise_type> handle) noexcept : m_handle(handle) {}
    std::coroutine_handle<promise_type> m_handle;
};

/// A coroutine started at once and destroyed when it ends: one simulated call.
/// An exception escaping it goes to `*sink` (the simulation rethrows it).
struct detached {
    struct promise_type {
        detached get_return_object() noexcept { return {}; }
        std::suspend_never initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept {
            if (sink != nullptr && !*sink) {
                *sink = std::current_exception();
            }
        }
        static void* operator new(std::size_t size) { return frame_pool::allocate(size); }
        static void operator delete(void* frame, std::size_t size) noexcept {
            frame_pool::deallocate(frame, size);
        }
        static inline thread_local std::exception_ptr* sink = nullptr;
    };
};

} // namespace sim::detail

KEEL_END_NAMESPACE
