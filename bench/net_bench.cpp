// SPDX-License-Identifier: MIT
// What finding the client address costs: a 3-hop X-Forwarded-For with a 3-entry CIDR
// trust list and a 3-element Forwarded header, beside the floor of parsing the same three
// addresses with inet_pton(3). Global operator new is replaced by a counting one; the
// "allocs" counter is the number of allocations per iteration (expected 0).
#include <keel/net/client_address.hpp>

#include <benchmark/benchmark.h>

#include <arpa/inet.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <string_view>

namespace {
std::atomic<std::size_t> g_allocations{0};
} // namespace

[[gnu::noinline]] void* operator new(std::size_t size) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
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

namespace {
using keel::net::client_resolver;
using keel::net::ip_address;
using keel::net::trust_policy;

constexpr std::string_view xff = "203.0.113.7, 10.1.2.3, 192.168.4.5";
constexpr std::string_view forwarded =
    "for=203.0.113.7, for=\"[2001:db8::17]:4711\";proto=https, for=10.1.2.3;by=_edge";

client_resolver const& resolver() {
    static client_resolver const r{
        {.trust = trust_policy::ranges({"10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"})}};
    return r;
}

ip_address const peer = *ip_address::parse("10.0.0.1");

void report_allocations(benchmark::State& state, std::size_t before) {
    state.counters["allocs"] = benchmark::Counter(
        static_cast<double>(g_allocations.load(std::memory_order_relaxed) - before),
        benchmark::Counter::kAvgIterations);
}

void baseline_inet_pton_3_addresses(benchmark::State& state) {
    constexpr char const* addresses[] = {"192.168.4.5", "10.1.2.3", "203.0.113.7"};
    auto const before = g_allocations.load();
    for (auto _ : state) {
        in_addr out{};
        for (char const* a : addresses) {
            benchmark::DoNotOptimize(inet_pton(AF_INET, a, &out));
        }
        benchmark::DoNotOptimize(out);
    }
    report_allocations(state, before);
}
BENCHMARK(baseline_inet_pton_3_addresses);

void keel_ip_address_parse_3_addresses(benchmark::State& state) {
    constexpr std::string_view addresses[] = {"192.168.4.5", "10.1.2.3", "203.0.113.7"};
    auto const before = g_allocations.load();
    for (auto _ : state) {
        for (auto a : addresses) {
            benchmark::DoNotOptimize(ip_address::parse(a));
        }
    }
    report_allocations(state, before);
}
BENCHMARK(keel_ip_address_parse_3_addresses);

void keel_x_forwarded_for_3_hops(benchmark::State& state) {
    auto const& r = resolver();
    std::string_view header = xff;
    auto const before = g_allocations.load();
    for (auto _ : state) {
        benchmark::DoNotOptimize(header);
        auto const c = r.from_x_forwarded_for(peer, header);
        benchmark::DoNotOptimize(c.address);
    }
    report_allocations(state, before);
    if (r.from_x_forwarded_for(peer, xff).address != *ip_address::parse("203.0.113.7")) {
        state.SkipWithError("wrong client");
    }
}
BENCHMARK(keel_x_forwarded_for_3_hops);

void keel_forwarded_3_elements(benchmark::State& state) {
    auto const& r = resolver();
    std::string_view header = forwarded;
    auto const before = g_allocations.load();
    for (auto _ : state) {
        benchmark::DoNotOptimize(header);
        auto const c = r.from_forwarded(peer, header);
        benchmark::DoNotOptimize(c.address);
    }
    report_allocations(state, before);
    if (r.from_forwarded(peer, forwarded).address != *ip_address::parse("203.0.113.7")) {
        state.SkipWithError("wrong client");
    }
}
BENCHMARK(keel_forwarded_3_elements);

void keel_x_forwarded_for_untrusted_peer(benchmark::State& state) {
    auto const& r = resolver();
    auto const direct = *ip_address::parse("198.51.100.1");
    std::string_view header = xff;
    auto const before = g_allocations.load();
    for (auto _ : state) {
        benchmark::DoNotOptimize(header);
        auto const c = r.from_x_forwarded_for(direct, header);
        benchmark::DoNotOptimize(c.address);
    }
    report_allocations(state, before);
}
BENCHMARK(keel_x_forwarded_for_untrusted_peer);

void keel_x_forwarded_for_3_hops_2_threads(benchmark::State& state) {
    auto const& r = resolver();
    std::string_view header = xff;
    for (auto _ : state) {
        benchmark::DoNotOptimize(header);
        auto const c = r.from_x_forwarded_for(peer, header);
        benchmark::DoNotOptimize(c.address);
    }
}
BENCHMARK(keel_x_forwarded_for_3_hops_2_threads)->Threads(2);

void keel_ip_address_to_string_buffer(benchmark::State& state) {
    auto const a = *ip_address::parse("2001:db8::17");
    for (auto _ : state) {
        char buffer[ip_address::max_string_length];
        benchmark::DoNotOptimize(a.write(buffer));
        benchmark::ClobberMemory();
    }
}
BENCHMARK(keel_ip_address_to_string_buffer);
} // namespace

BENCHMARK_MAIN();
