// SPDX-License-Identifier: MIT
// keel::redis::cluster: the distributed limiters on a Redis Cluster. A slot map
// (CRC16 with the hash-tag rule; read with CLUSTER SHARDS, falling back to CLUSTER
// SLOTS), one keel::redis::pool per master, and the redirects a complete Cluster
// client follows: MOVED (refresh the map, resend), ASK (ASKING, resend once, no
// map change), TRYAGAIN (one retry after a short wait). NOSCRIPT is answered per
// node, on the connection that saw it.
#pragma once

#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/detail/validate.hpp>
#include <keel/redis/connection.hpp>
#include <keel/redis/detail/slot_map.hpp>
#include <keel/redis/pool.hpp>
#include <keel/redis/script.hpp>
#include <keel/redis/target.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace redis {

/// Returns the Redis Cluster hash slot of `key`, in [0, 16384): CRC16-XMODEM of
/// the key's hash tag (the text between its first '{' and the next '}', when not
/// empty) or of the whole key, mod 16384. keel's keys `keel:{name}` and
/// `keel:{name:key}` hash `name` and `name:key`.
constexpr std::uint16_t hash_slot(std::string_view key) noexcept {
    return detail::key_slot(key);
}

/// Configures a keel::redis::cluster.
struct cluster_options {
    /// Nodes asked for the slot map on first use (any node of the cluster will
    /// do; the others are learnt from its answer). Required: at least one, each
    /// with a non-empty host and a port in [1, 65535].
    std::vector<endpoint> seeds{};
    /// Options of each master's pool; `node.connection.host` and `port` are
    /// replaced by the node's. Defaults as keel::redis::pool's. Redis Cluster has
    /// only database 0, so `node.connection.database` must be 0.
    pool_options node{};
    /// Most MOVED or ASK redirects followed for one decision; one more redirect and
    /// Redis cannot decide. Default 5 (redis-py's and Jedis' clients allow 5,
    /// ioredis 16). Range [0, 16].
    int max_redirects = 5;
    /// Wait before the one retry after TRYAGAIN (a multi-key command while its slot
    /// migrates; keel's one-key scripts never get it). Default 10 ms: ioredis waits
    /// 100 ms, which is five times a limiter's default command timeout. Range
    /// [0 ms, 1000 ms]; 0 retries at once.
    std::chrono::milliseconds tryagain_delay{10};
    /// Most distinct nodes kept (each has a pool; the limiters keep one breaker per
    /// node). Default 64: far above the masters a rate limiter's cluster has. A
    /// redirect to a node beyond the limit counts as "Redis cannot decide". Range
    /// [1, 1024].
    std::size_t max_nodes = 64;
    /// Shortest time between two slot-map refreshes caused by a failing node (a
    /// MOVED always refreshes, once at a time). Default 100 ms: ioredis'
    /// retryDelayOnFailover. Range [0 ms, 60000 ms].
    std::chrono::milliseconds refresh_interval{100};
};

/// A Redis Cluster as a keel::redis::target: each key's script runs on the master
/// of its slot, through that master's pool.
///
/// The slot map is read lazily (on the first decision, after MOVED, and at most
/// once per `refresh_interval` after a node fails); a decision reads it with one
/// atomic load. Every redirect Redis can answer a one-key script with is followed
/// within the decision: MOVED refreshes the map and resends to the named node (at
/// most `max_redirects` times), ASK sends ASKING and the script once to the named
/// node without touching the map (a live migration), TRYAGAIN retries once after
/// `tryagain_delay`. What remains (a dead master, CLUSTERDOWN, too many redirects)
/// is an error or failure the limiters' failure policy answers, with one breaker
/// per node (route() is the node's index), so one dead master does not stop the
/// others. Scripts run by EVALSHA with the EVAL fallback on the connection that saw
/// NOSCRIPT: the script cache is per node. keel's limiters send one key per script,
/// so CROSSSLOT cannot happen. Thread-safe; building it touches no network; it must
/// outlive the limiters using it.
///
///     keel::redis::cluster redis{{.seeds = {{"10.0.0.5", 7000}, {"10.0.0.6", 7000}}}};
///     keel::redis::gcra per_client{redis, {.name = "client", .rate = 10}};
///     keel::decision d = per_client.try_acquire(client_ip); // on client_ip's master
class cluster final : public target {
public:
    /// What the cluster client did so far (monotonic counters).
    struct statistics {
        std::uint64_t moved = 0;     ///< MOVED redirects followed.
        std::uint64_t asks = 0;      ///< ASK redirects followed (ASKING sent).
        std::uint64_t tryagains = 0; ///< TRYAGAIN retries.
        std::uint64_t refreshes = 0; ///< Slot maps read.
    };

    /// Stores `options` (validated; throws std::invalid_argument naming the field)
    /// and builds the seeds' (unopened) pools.
    explicit cluster(cluster_options options) : m_options(validated(std::move(options))) {
        m_slots = std::make_unique<std::atomic<std::uint16_t>[]>(detail::slot_count);
        m_nodes = std::make_unique<std::atomic<node*>[]>(m_options.max_nodes);
        for (endpoint const& seed : m_options.seeds) {
            static_cast<void>(node_at(seed));
        }
    }

    /// Returns the options.
    cluster_options const& options() const noexcept { return m_options; }

    /// Runs `lua` with one key on the master of the key's slot, following
    /// redirects (see the class comment).
    outcome<reply> run(script const& lua, std::string_view key,
                       std::span<std::string_view const> args) override {
        std::string_view const keys[] = {key};
        return run(lua, keys, args);
    }

    /// Runs `lua` with `keys`, which must share one slot (else Redis answers
    /// CROSSSLOT), on that slot's master, following redirects. Empty `keys`: slot 0.
    outcome<reply> run(script const& lua, std::span<std::string_view const> keys,
                       std::span<std::string_view const> args) {
        std::uint16_t const slot = keys.empty() ? 0 : hash_slot(keys.front());
        redirects a{owner(slot)};
        if (a.at == nullptr) {
            refresh_now(refresh_mode::wait);
            a.at = owner(slot);
            if (a.at == nullptr) {
                return failure::from(errc::unavailable); // no node serves the slot
            }
        }
        std::string_view const asking[] = {"ASKING"};
        for (;;) {
            outcome<reply> r = run_at(*a.at, lua, keys, args,
                                      a.ask ? std::span<std::string_view const>{asking}
                                            : std::span<std::string_view const>{});
            switch (follow(r, a, [this](refresh_mode mode) { refresh_now(mode); })) {
            case next_step::answer: return r;
            case next_step::resend_later:
                std::this_thread::sleep_for(m_options.tryagain_delay);
                break;
            case next_step::resend: break;
            }
        }
    }

    /// What the cluster's decisions need from an event loop to run without
    /// blocking it (keel::redis::async_cluster gives it: a connection per node on
    /// the loop, a worker thread, the loop's timers).
    class event_loop {
    public:
        event_loop() = default;
        event_loop(event_loop const&) = delete;
        event_loop& operator=(event_loop const&) = delete;
        virtual ~event_loop() = default;
        /// Sends `lua` with `keys` and `args` to the master at `node`, with ASKING
        /// right ahead when `asking`, and passes its answer to `done` on the loop.
        virtual void send(endpoint const& node, script const& lua,
                          std::span<std::string_view const> keys,
                          std::span<std::string_view const> args, bool asking,
                          run_handler done) = 0;
        /// Runs `job` (it may block: it reads the slot map) off the loop, then
        /// `then` on the loop.
        virtual void offload(std::function<void()> job, std::function<void()> then) = 0;
        /// Calls `then` on the loop after `delay`.
        virtual void after(std::chrono::milliseconds delay, std::function<void()> then) = 0;
    };

    /// Runs `lua` with the one key `key` as run() does, following the same
    /// redirects through `loop` without blocking the calling thread: the slot map
    /// is read off the loop (a decision whose slot's master is unknown waits for
    /// that read), and TRYAGAIN's wait is a timer. `done` gets the answer on the
    /// loop. The cluster and `loop` must outlive the answer.
    void run_on(event_loop& loop, script const& lua, std::string_view key,
                std::span<std::string_view const> args, run_handler done) {
        auto call = std::make_shared<loop_call>(loop, lua, key, args, std::move(done));
        call->state.at = owner(hash_slot(key));
        if (call->state.at != nullptr) {
            send_on(std::move(call));
            return;
        }
        loop.offload([this] { refresh_now(refresh_mode::wait); },
                     [this, call]() mutable {
                         call->state.at = owner(hash_slot(call->key));
                         if (call->state.at == nullptr) {
                             call->done(failure::from(errc::unavailable));
                             return;
                         }
                         send_on(std::move(call));
                     });
    }

    /// Returns max_nodes: each node's route is its index in discovery order.
    std::size_t routes() const noexcept override { return m_options.max_nodes; }

    /// Returns the index of the node the slot map names for `key`'s slot (0 while
    /// the slot's master is unknown).
    std::size_t route(std::string_view key) const noexcept override {
        std::uint16_t const v = m_slots[hash_slot(key)].load(std::memory_order_acquire);
        return v == 0 ? 0 : std::size_t{v} - 1U;
    }

    /// Returns the master the slot map names for `key`, if known.
    std::optional<endpoint> master_of(std::string_view key) const {
        node const* n = owner(hash_slot(key));
        if (n == nullptr) {
            return std::nullopt;
        }
        return n->address;
    }

    /// Reads the slot map now from the known nodes (the first that answers);
    /// returns true if one answered with a map. Thread-safe; waits for a refresh
    /// already running.
    bool refresh() { return refresh_now(refresh_mode::wait); }

    /// Returns how many nodes are known (seeds and learnt masters).
    std::size_t node_count() const {
        std::lock_guard lock{m_mutex};
        return m_owned.size();
    }

    /// Returns the counters.
    statistics stats() const noexcept {
        return {m_moved.load(std::memory_order_relaxed), m_asks.load(std::memory_order_relaxed),
                m_tryagains.load(std::memory_order_relaxed),
                m_refreshes.load(std::memory_order_relaxed)};
    }

private:
    struct node {
        node(endpoint a, std::size_t i, pool_options const& o)
            : address(std::move(a)), index(i), connections(pool_options_at(o, address)) {}
        endpoint address;
        std::size_t index;
        pool connections;
    };

    static cluster_options validated(cluster_options o) {
        constexpr std::string_view component = "keel::redis::cluster";
        if (o.seeds.empty()) {
            keel::detail::invalid_configuration(component, "seeds must name at least one node");
        }
        for (std::size_t i = 0; i < o.seeds.size(); ++i) {
            std::string const name = "seeds[" + std::to_string(i) + "].";
            if (o.seeds[i].host.empty()) {
                keel::detail::invalid_configuration(component, name + "host must not be empty");
            }
            if (o.seeds[i].port < 1 || o.seeds[i].port > 65535) {
                keel::detail::invalid_option(component, name + "port", "in [1, 65535]",
                                             o.seeds[i].port);
            }
        }
        detail::validate(o.node.connection, component, "node.connection.");
        if (o.node.connection.database != 0) {
            keel::detail::invalid_option(component, "node.connection.database",
                                         "0 (Redis Cluster has one database)",
                                         o.node.connection.database);
        }
        if (o.max_redirects < 0 || o.max_redirects > 16) {
            keel::detail::invalid_option(component, "max_redirects", "in [0, 16]", o.max_redirects);
        }
        if (o.tryagain_delay < std::chrono::milliseconds::zero() ||
            o.tryagain_delay > std::chrono::milliseconds{1000}) {
            keel::detail::invalid_option(component, "tryagain_delay", "in [0 ms, 1000 ms]",
                                         o.tryagain_delay);
        }
        if (o.max_nodes < 1 || o.max_nodes > 1024) {
            keel::detail::invalid_option(component, "max_nodes", "in [1, 1024]", o.max_nodes);
        }
        if (o.refresh_interval < std::chrono::milliseconds::zero() ||
            o.refresh_interval > std::chrono::milliseconds{60000}) {
            keel::detail::invalid_option(component, "refresh_interval", "in [0 ms, 60000 ms]",
                                         o.refresh_interval);
        }
        // The pool validates the rest of `node` (size, timeouts) the same way.
        static_cast<void>(pool{pool_options_at(o.node, o.seeds.front())});
        return o;
    }

    static std::uint16_t index_plus_one(node const& n) noexcept {
        return static_cast<std::uint16_t>(n.index + 1);
    }

    node* owner(std::uint16_t slot) const noexcept {
        std::uint16_t const v = m_slots[slot].load(std::memory_order_acquire);
        return v == 0 ? nullptr : m_nodes[v - 1U].load(std::memory_order_acquire);
    }

    /// Returns the node at `address`, adding it when new; null beyond max_nodes.
    node* node_at(endpoint const& address) {
        std::lock_guard lock{m_mutex};
        for (auto const& n : m_owned) {
            if (n->address == address) {
                return n.get();
            }
        }
        if (m_owned.size() >= m_options.max_nodes) {
            return nullptr;
        }
        m_owned.push_back(std::make_unique<node>(address, m_owned.size(), m_options.node));
        node* const n = m_owned.back().get();
        m_nodes[n->index].store(n, std::memory_order_release);
        return n;
    }

    static outcome<reply> run_at(node& n, script const& lua, std::span<std::string_view const> keys,
                                 std::span<std::string_view const> args,
                                 std::span<std::string_view const> before) {
        return n.connections.run(lua, keys, args, before);
    }

    /// Where one decision stands while it follows redirects.
    struct redirects {
        node* at = nullptr;   ///< The node the script goes to next.
        bool ask = false;     ///< Send ASKING right ahead (after an ASK).
        bool retried = false; ///< TRYAGAIN was retried already.
        int followed = 0;     ///< MOVED and ASK redirects followed.
    };

    /// What follows an answer: return it, send again (to `redirects::at`), or send
    /// again after tryagain_delay.
    enum class next_step : std::uint8_t { answer, resend, resend_later };

    /// Decides what follows `r`, the answer of `a.at`, for both ways of running a
    /// decision: MOVED (the map is refreshed and trusted for that slot at once) and
    /// ASK redirect `a`, TRYAGAIN is retried once, a transport failure refreshes the
    /// map at a bounded pace and is the answer, as is every other error (CLUSTERDOWN,
    /// CROSSSLOT, a script error, too many redirects: Redis cannot decide).
    /// `refresh(mode)` reads the slot map (at once in run(), off the loop in an
    /// event loop's).
    template <class Refresh>
    next_step follow(outcome<reply> const& r, redirects& a, Refresh&& refresh) {
        if (!r) {
            // The master may have failed over: read the map again, at a bounded pace.
            refresh(refresh_mode::paced);
            return next_step::answer;
        }
        if (!r->is_error()) {
            return next_step::answer;
        }
        std::string_view const text = r->text();
        if (auto const to = detail::parse_redirect(text, a.at->address.host)) {
            if (a.followed++ >= m_options.max_redirects) {
                return next_step::answer;
            }
            node* const next = node_at(to->to);
            if (next == nullptr) {
                return next_step::answer; // beyond max_nodes
            }
            a.ask = to->ask;
            if (a.ask) {
                m_asks.fetch_add(1, std::memory_order_relaxed);
            } else {
                m_moved.fetch_add(1, std::memory_order_relaxed);
                // Many slots probably moved: read the whole map (one thread at a
                // time, the others go on), and trust this answer for its slot
                // whatever the map said.
                refresh(refresh_mode::try_now);
                m_slots[to->slot].store(index_plus_one(*next), std::memory_order_release);
            }
            a.at = next;
            return next_step::resend;
        }
        if (text.starts_with("TRYAGAIN") && !a.retried) {
            a.retried = true;
            m_tryagains.fetch_add(1, std::memory_order_relaxed);
            return next_step::resend_later;
        }
        return next_step::answer;
    }

    /// One decision run through an event loop: what its resends need, owned.
    struct loop_call {
        loop_call(event_loop& l, script const& s, std::string_view k,
                  std::span<std::string_view const> a, run_handler d)
            : loop(l), lua(s), key(k), args(a.begin(), a.end()), done(std::move(d)) {
            views.assign(args.begin(), args.end());
        }
        event_loop& loop;
        script const& lua;
        std::string key;
        std::vector<std::string> args;
        std::vector<std::string_view> views;
        run_handler done;
        redirects state{};
    };

    void send_on(std::shared_ptr<loop_call> call) {
        std::string_view const keys[] = {call->key};
        node const& n = *call->state.at;
        call->loop.send(n.address, call->lua, keys, call->views, call->state.ask,
                        [this, call](outcome<reply> r) mutable { answered(std::move(call), r); });
    }

    void answered(std::shared_ptr<loop_call> call, outcome<reply>& r) {
        auto const offload_refresh = [this, &call](refresh_mode mode) {
            // At most one read queued at a time: a migration's burst of MOVED needs one.
            if (!m_loop_refresh_queued.exchange(true, std::memory_order_acq_rel)) {
                call->loop.offload(
                    [this, mode] {
                        m_loop_refresh_queued.store(false, std::memory_order_release);
                        refresh_now(mode);
                    },
                    [] {});
            }
        };
        switch (follow(r, call->state, offload_refresh)) {
        case next_step::answer: call->done(std::move(r)); return;
        case next_step::resend: send_on(std::move(call)); return;
        case next_step::resend_later: {
            event_loop& loop = call->loop;
            loop.after(m_options.tryagain_delay,
                       [this, call]() mutable { send_on(std::move(call)); });
            return;
        }
        }
    }

    enum class refresh_mode : std::uint8_t {
        wait,    ///< Read it, after a refresh already running.
        try_now, ///< Read it unless another thread is reading it.
        paced,   ///< As try_now, but not within refresh_interval of the last read.
    };

    /// Reads the map (see refresh_mode); returns true if a map was read.
    bool refresh_now(refresh_mode mode) {
        std::int64_t const now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count();
        std::int64_t const interval = std::chrono::nanoseconds{m_options.refresh_interval}.count();
        if (mode == refresh_mode::paced &&
            now - m_last_refresh.load(std::memory_order_relaxed) < interval) {
            return false;
        }
        std::unique_lock lock{m_refresh_mutex, std::defer_lock};
        if (mode == refresh_mode::wait) {
            lock.lock();
        } else if (!lock.try_lock()) {
            return false; // another thread is reading it
        }
        m_last_refresh.store(now, std::memory_order_relaxed);
        std::vector<node*> candidates;
        {
            std::lock_guard nodes{m_mutex};
            for (auto const& n : m_owned) {
                candidates.push_back(n.get());
            }
        }
        for (node* n : candidates) {
            std::optional<std::vector<detail::slot_range>> ranges = read_map(*n);
            if (!ranges || ranges->empty()) {
                continue;
            }
            auto fresh = std::make_unique<std::uint16_t[]>(detail::slot_count);
            for (detail::slot_range const& range : *ranges) {
                node* const master = node_at(range.master);
                if (master == nullptr) {
                    continue;
                }
                std::fill(fresh.get() + range.first, fresh.get() + range.last + 1,
                          index_plus_one(*master));
            }
            for (std::size_t s = 0; s < detail::slot_count; ++s) {
                m_slots[s].store(fresh[s], std::memory_order_release);
            }
            m_refreshes.fetch_add(1, std::memory_order_relaxed);
            return true;
        }
        return false;
    }

    static std::optional<std::vector<detail::slot_range>> read_map(node& n) {
        pool::lease conn = n.connections.acquire();
        if (!conn) {
            return std::nullopt;
        }
        outcome<reply> shards = conn->command({"CLUSTER", "SHARDS"});
        if (!shards) {
            return std::nullopt;
        }
        if (!shards->is_error()) {
            return detail::parse_shards(*shards, n.address.host);
        }
        // Before Redis 7.0 (or where an ACL denies it): the deprecated CLUSTER SLOTS.
        outcome<reply> slots = conn->command({"CLUSTER", "SLOTS"});
        if (!slots || slots->is_error()) {
            return std::nullopt;
        }
        return detail::parse_slots(*slots, n.address.host);
    }

    cluster_options m_options;
    std::unique_ptr<std::atomic<std::uint16_t>[]> m_slots;
    std::unique_ptr<std::atomic<node*>[]> m_nodes;
    mutable std::mutex m_mutex; // guards m_owned
    std::vector<std::unique_ptr<node>> m_owned;
    std::mutex m_refresh_mutex;
    std::atomic<std::int64_t> m_last_refresh{std::numeric_limits<std::int64_t>::min() / 2};
    std::atomic<std::uint64_t> m_moved{0};
    std::atomic<std::uint64_t> m_asks{0};
    std::atomic<std::uint64_t> m_tryagains{0};
    std::atomic<std::uint64_t> m_refreshes{0};
    std::atomic<bool> m_loop_refresh_queued{false};
};

} // namespace redis

KEEL_END_NAMESPACE
