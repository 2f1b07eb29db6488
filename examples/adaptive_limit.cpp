// SPDX-License-Identifier: MIT
// An adaptive concurrency limit in front of a downstream that serves 4 calls at a time
// (each takes 2 ms; more queue behind them): 16 threads call it as fast as they can. The
// limit learns from latency how many calls to let through and sheds the rest at once,
// instead of letting them queue. Runs for about 0.8 s.
#include <keel/keel.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// 4 workers: a call waits for one, then takes 2 ms.
class downstream {
public:
    int call() {
        {
            std::unique_lock lock{m_mutex};
            m_free.wait(lock, [&] { return m_busy < 4; });
            ++m_busy;
        }
        std::this_thread::sleep_for(2ms);
        {
            std::lock_guard lock{m_mutex};
            --m_busy;
        }
        m_free.notify_one();
        return 200;
    }

private:
    std::mutex m_mutex;
    std::condition_variable m_free;
    int m_busy = 0;
};

} // namespace

int main() {
    downstream service;
    keel::adaptive_limit limit{
        {.algorithm = keel::gradient2_options{.initial_limit = 4, .min_limit = 1, .max_limit = 64},
         .window = {.min_window = 100ms, .max_window = 100ms}}};
    auto guarded = keel::resilient{[&] { return service.call(); }, keel::guard(limit)};

    std::atomic<bool> stop{false};
    std::atomic<long> served{0};
    std::atomic<long> shed{0};
    std::vector<std::thread> clients;
    for (int i = 0; i < 16; ++i) {
        clients.emplace_back([&] {
            while (!stop.load()) {
                keel::outcome<int> r = guarded.try_call();
                if (r.has_value()) {
                    ++served;
                } else if (r.error() == keel::errc::bulkhead_full) {
                    ++shed;
                    std::this_thread::sleep_for(200us); // a shed caller backs off a little
                }
            }
        });
    }
    for (int tick = 0; tick < 8; ++tick) {
        std::this_thread::sleep_for(100ms);
        std::printf("t=%3d ms  limit %2d  in flight %2d  served %5ld  shed %6ld\n",
                    (tick + 1) * 100, limit.limit(), limit.snapshot().in_flight, served.load(),
                    shed.load());
    }
    stop = true;
    for (auto& c : clients) {
        c.join();
    }
    return served.load() > 0 ? 0 : 1;
}
