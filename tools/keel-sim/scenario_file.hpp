// SPDX-License-Identifier: MIT
// Reads keel-sim's scenario files (JSON, through nlohmann-json) into
// keel::sim::scenario values, one per variant. Durations are numbers of seconds
// or strings with a unit ("250ms", "1.5s", "2m"); unknown keys are errors, so a
// typo never silently falls back to a default. See docs/simulation.md for the format.
#pragma once

#include <keel/sim/scenario.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace keel_sim {

/// A scenario file: its description and one scenario per variant.
struct scenario_file {
    std::string name;                          ///< The file's "name".
    std::string description;                   ///< Its "description".
    std::vector<keel::sim::scenario> variants; ///< Each with name "<name>: <variant>".
    std::vector<std::string> variant_names;    ///< The variants' own names.
};

namespace detail {

using json = nlohmann::json;
using keel::sim::nanoseconds;

[[noreturn]] inline void fail(std::string const& where, std::string const& what) {
    throw std::invalid_argument("keel-sim: " + where + ": " + what);
}

inline void only_keys(json const& object, std::string const& where,
                      std::initializer_list<std::string_view> keys) {
    if (!object.is_object()) {
        fail(where, "must be an object");
    }
    for (auto const& item : object.items()) {
        bool known = false;
        for (auto key : keys) {
            known = known || item.key() == key;
        }
        if (!known) {
            fail(where, "unknown key \"" + item.key() + "\"");
        }
    }
}

inline nanoseconds duration_of(json const& v, std::string const& where) {
    double seconds = 0;
    if (v.is_number()) {
        seconds = v.get<double>();
    } else if (v.is_string()) {
        std::string const text = v.get<std::string>();
        std::size_t used = 0;
        double number = 0;
        try {
            number = std::stod(text, &used);
        } catch (std::exception const&) {
            fail(where, "\"" + text + "\" is not a duration (e.g. \"250ms\", \"1.5s\")");
        }
        std::string const unit = text.substr(used);
        double scale = 0;
        if (unit == "ns") {
            scale = 1e-9;
        } else if (unit == "us") {
            scale = 1e-6;
        } else if (unit == "ms") {
            scale = 1e-3;
        } else if (unit == "s" || unit.empty()) {
            scale = 1;
        } else if (unit == "m" || unit == "min") {
            scale = 60;
        } else if (unit == "h") {
            scale = 3600;
        } else {
            fail(where, "unknown unit \"" + unit + "\" (ns, us, ms, s, m, h)");
        }
        seconds = number * scale;
    } else {
        fail(where, "must be a duration (seconds, or a string such as \"250ms\")");
    }
    if (!std::isfinite(seconds) || std::fabs(seconds) > 9.2e9) {
        fail(where, "duration out of range");
    }
    return nanoseconds{static_cast<std::int64_t>(std::llround(seconds * 1e9))};
}

template <class T>
T number_of(json const& v, std::string const& where) {
    if (!v.is_number()) {
        fail(where, "must be a number");
    }
    if constexpr (std::is_integral_v<T>) {
        if (!v.is_number_integer()) {
            fail(where, "must be an integer");
        }
        auto const n = v.get<std::int64_t>();
        if (n < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
            (n > 0 && static_cast<std::uint64_t>(n) >
                          static_cast<std::uint64_t>(std::numeric_limits<T>::max()))) {
            fail(where, "out of range");
        }
        return static_cast<T>(n);
    } else {
        return v.get<T>();
    }
}

inline bool bool_of(json const& v, std::string const& where) {
    if (!v.is_boolean()) {
        fail(where, "must be true or false");
    }
    return v.get<bool>();
}

inline std::string string_of(json const& v, std::string const& where) {
    if (!v.is_string()) {
        fail(where, "must be a string");
    }
    return v.get<std::string>();
}

inline keel::circuit_breaker_options breaker_of(json const& j, std::string const& where) {
    only_keys(j, where,
              {"failure_rate_threshold", "slow_call_rate_threshold", "slow_call_duration", "window",
               "window_size", "minimum_calls", "reset_timeout", "max_reset_timeout", "reset_jitter",
               "permitted_calls_in_half_open", "max_wait_in_half_open"});
    keel::circuit_breaker_options o;
    for (auto const& [key, v] : j.items()) {
        std::string const at = where + "." + key;
        if (key == "failure_rate_threshold") {
            o.failure_rate_threshold = number_of<double>(v, at);
        } else if (key == "slow_call_rate_threshold") {
            o.slow_call_rate_threshold = number_of<double>(v, at);
        } else if (key == "slow_call_duration") {
            o.slow_call_duration = duration_of(v, at);
        } else if (key == "window") {
            std::string const w = string_of(v, at);
            if (w == "count_based") {
                o.window = keel::circuit_window::count_based;
            } else if (w == "time_based") {
                o.window = keel::circuit_window::time_based;
            } else {
                fail(at, "must be \"count_based\" or \"time_based\"");
            }
        } else if (key == "window_size") {
            o.window_size = number_of<std::uint32_t>(v, at);
        } else if (key == "minimum_calls") {
            o.minimum_calls = number_of<std::uint32_t>(v, at);
        } else if (key == "reset_timeout") {
            o.reset_timeout = duration_of(v, at);
        } else if (key == "max_reset_timeout") {
            o.max_reset_timeout = duration_of(v, at);
        } else if (key == "reset_jitter") {
            o.reset_jitter = duration_of(v, at);
        } else if (key == "permitted_calls_in_half_open") {
            o.permitted_calls_in_half_open = number_of<std::uint32_t>(v, at);
        } else {
            o.max_wait_in_half_open = duration_of(v, at);
        }
    }
    return o;
}

inline keel::backoff backoff_of(json const& j, std::string const& where) {
    only_keys(j, where, {"kind", "delay", "base", "step", "multiplier", "cap"});
    std::string const kind =
        j.contains("kind") ? string_of(j["kind"], where + ".kind") : "exponential";
    auto const get = [&](char const* key, nanoseconds fallback) {
        return j.contains(key) ? duration_of(j[key], where + "." + key) : fallback;
    };
    if (kind == "constant") {
        keel::constant c;
        c.delay = get("delay", c.delay);
        return c;
    }
    if (kind == "linear") {
        keel::linear l;
        l.base = get("base", l.base);
        l.step = get("step", l.step);
        l.cap = get("cap", l.cap);
        return l;
    }
    if (kind != "exponential") {
        fail(where + ".kind", "must be \"constant\", \"linear\" or \"exponential\"");
    }
    keel::exponential e;
    e.base = get("base", e.base);
    e.cap = get("cap", e.cap);
    if (j.contains("multiplier")) {
        e.multiplier = number_of<double>(j["multiplier"], where + ".multiplier");
    }
    return e;
}

inline keel::jitter jitter_of(json const& j, std::string const& where) {
    if (j.is_string()) {
        std::string const name = j.get<std::string>();
        if (name == "none") {
            return keel::jitter::none;
        }
        if (name == "full") {
            return keel::jitter::full;
        }
        if (name == "equal") {
            return keel::jitter::equal;
        }
        if (name == "decorrelated") {
            return keel::jitter::decorrelated;
        }
        fail(where, "must be none, full, equal, decorrelated, {\"proportional\": x} or "
                    "{\"additive\": duration}");
    }
    only_keys(j, where, {"proportional", "additive"});
    if (j.contains("proportional")) {
        return keel::jitter::proportional(
            number_of<double>(j["proportional"], where + ".proportional"));
    }
    if (j.contains("additive")) {
        return keel::jitter::additive(duration_of(j["additive"], where + ".additive"));
    }
    fail(where, "must name a jitter");
}

inline keel::sim::stage stage_of(json const& j, std::string const& where) {
    if (!j.is_object() || j.size() != 1) {
        fail(where,
             "must be an object with one key: breaker, retry, timeout, bulkhead or rate_limit");
    }
    auto const first = j.begin();
    std::string const kind = first.key();
    json const& v = first.value();
    std::string const at = where + "." + kind;
    if (kind == "breaker") {
        return keel::sim::breaker_stage{breaker_of(v, at)};
    }
    if (kind == "timeout") {
        return keel::sim::timeout_stage{duration_of(v, at)};
    }
    if (kind == "bulkhead") {
        only_keys(v, at, {"max_concurrent_calls", "max_queued_calls", "max_wait"});
        keel::sim::bulkhead_stage b;
        if (v.contains("max_concurrent_calls")) {
            b.max_concurrent_calls =
                number_of<int>(v["max_concurrent_calls"], at + ".max_concurrent_calls");
        }
        if (v.contains("max_queued_calls")) {
            b.max_queued_calls = number_of<int>(v["max_queued_calls"], at + ".max_queued_calls");
        }
        if (v.contains("max_wait")) {
            b.max_wait = duration_of(v["max_wait"], at + ".max_wait");
        }
        return b;
    }
    if (kind == "rate_limit") {
        only_keys(v, at, {"rate", "period", "burst", "max_wait"});
        keel::sim::rate_limit_stage r;
        if (v.contains("rate")) {
            r.bucket.rate = number_of<std::int64_t>(v["rate"], at + ".rate");
        }
        if (v.contains("period")) {
            r.bucket.period = duration_of(v["period"], at + ".period");
        }
        if (v.contains("burst")) {
            r.bucket.burst = number_of<std::int64_t>(v["burst"], at + ".burst");
        }
        if (v.contains("max_wait")) {
            r.max_wait = duration_of(v["max_wait"], at + ".max_wait");
        }
        return r;
    }
    if (kind != "retry") {
        fail(where,
             "unknown policy \"" + kind + "\" (breaker, retry, timeout, bulkhead, rate_limit)");
    }
    only_keys(v, at,
              {"max_attempts", "max_duration", "backoff", "jitter", "honor_retry_after", "budget"});
    keel::sim::retry_stage r;
    for (auto const& [key, value] : v.items()) {
        std::string const field = at + "." + key;
        if (key == "max_attempts") {
            r.max_attempts = number_of<int>(value, field);
        } else if (key == "max_duration") {
            r.max_duration = duration_of(value, field);
        } else if (key == "backoff") {
            r.backoff = backoff_of(value, field);
        } else if (key == "jitter") {
            r.jitter = jitter_of(value, field);
        } else if (key == "honor_retry_after") {
            r.honor_retry_after = bool_of(value, field);
        } else {
            only_keys(value, field, {"retry_ratio", "min_retries_per_second", "ttl"});
            keel::retry_budget_options b;
            if (value.contains("retry_ratio")) {
                b.retry_ratio = number_of<double>(value["retry_ratio"], field + ".retry_ratio");
            }
            if (value.contains("min_retries_per_second")) {
                b.min_retries_per_second = number_of<double>(value["min_retries_per_second"],
                                                             field + ".min_retries_per_second");
            }
            if (value.contains("ttl")) {
                b.ttl = duration_of(value["ttl"], field + ".ttl");
            }
            r.budget = b;
        }
    }
    return r;
}

inline std::vector<keel::sim::stage> pipeline_of(json const& j, std::string const& where) {
    if (!j.is_array()) {
        fail(where, "must be an array of policies, outermost first");
    }
    std::vector<keel::sim::stage> stages;
    for (std::size_t i = 0; i < j.size(); ++i) {
        stages.push_back(stage_of(j[i], where + "[" + std::to_string(i) + "]"));
    }
    return stages;
}

inline keel::sim::phase phase_of(json const& j, std::string const& where) {
    only_keys(j, where,
              {"start", "instances", "state", "down", "mode", "failure_probability",
               "latency_factor", "capacity_factor", "flap_period"});
    keel::sim::phase p;
    for (auto const& [key, v] : j.items()) {
        std::string const at = where + "." + key;
        if (key == "start") {
            p.start = duration_of(v, at);
        } else if (key == "instances") {
            if (!v.is_array()) {
                fail(at, "must be an array of instance indexes");
            }
            for (std::size_t i = 0; i < v.size(); ++i) {
                p.instances.push_back(number_of<int>(v[i], at + "[" + std::to_string(i) + "]"));
            }
        } else if (key == "state") {
            // A name for readers; the fields below say what it means.
            (void)string_of(v, at);
        } else if (key == "down") {
            p.down = bool_of(v, at);
        } else if (key == "mode") {
            std::string const m = string_of(v, at);
            if (m == "refused") {
                p.mode = keel::sim::down_mode::refused;
            } else if (m == "hung") {
                p.mode = keel::sim::down_mode::hung;
            } else {
                fail(at, "must be \"refused\" or \"hung\"");
            }
        } else if (key == "failure_probability") {
            p.failure_probability = number_of<double>(v, at);
        } else if (key == "latency_factor") {
            p.latency_factor = number_of<double>(v, at);
        } else if (key == "capacity_factor") {
            p.capacity_factor = number_of<double>(v, at);
        } else {
            p.flap_period = duration_of(v, at);
        }
    }
    return p;
}

inline keel::sim::downstream_model downstream_of(json const& j, std::string const& where) {
    only_keys(j, where,
              {"instances", "balancing", "servers", "queue_limit", "discipline", "service",
               "load_failure_slope", "overload_latency_penalty", "overload_queue", "drop_abandoned",
               "phases"});
    keel::sim::downstream_model d;
    for (auto const& [key, v] : j.items()) {
        std::string const at = where + "." + key;
        if (key == "instances") {
            d.instances = number_of<int>(v, at);
        } else if (key == "balancing") {
            std::string const b = string_of(v, at);
            if (b == "random") {
                d.balancing = keel::sim::routing::random;
            } else if (b == "round_robin") {
                d.balancing = keel::sim::routing::round_robin;
            } else {
                fail(at, "must be \"random\" or \"round_robin\"");
            }
        } else if (key == "servers") {
            d.servers = number_of<int>(v, at);
        } else if (key == "queue_limit") {
            d.queue_limit = number_of<int>(v, at);
        } else if (key == "discipline") {
            std::string const q = string_of(v, at);
            if (q == "fifo") {
                d.discipline = keel::sim::queue_discipline::fifo;
            } else if (q == "lifo") {
                d.discipline = keel::sim::queue_discipline::lifo;
            } else {
                fail(at, "must be \"fifo\" or \"lifo\"");
            }
        } else if (key == "service") {
            only_keys(v, at, {"shape", "mean", "sigma"});
            if (v.contains("shape")) {
                std::string const s = string_of(v["shape"], at + ".shape");
                if (s == "constant") {
                    d.service.shape = keel::sim::distribution::constant;
                } else if (s == "exponential") {
                    d.service.shape = keel::sim::distribution::exponential;
                } else if (s == "lognormal") {
                    d.service.shape = keel::sim::distribution::lognormal;
                } else {
                    fail(at + ".shape", "must be constant, exponential or lognormal");
                }
            }
            if (v.contains("mean")) {
                d.service.mean = duration_of(v["mean"], at + ".mean");
            }
            if (v.contains("sigma")) {
                d.service.sigma = number_of<double>(v["sigma"], at + ".sigma");
            }
        } else if (key == "load_failure_slope") {
            d.load_failure_slope = number_of<double>(v, at);
        } else if (key == "overload_latency_penalty") {
            d.overload_latency_penalty = number_of<double>(v, at);
        } else if (key == "overload_queue") {
            d.overload_queue = number_of<int>(v, at);
        } else if (key == "drop_abandoned") {
            d.drop_abandoned = bool_of(v, at);
        } else {
            if (!v.is_array()) {
                fail(at, "must be an array");
            }
            for (std::size_t i = 0; i < v.size(); ++i) {
                d.phases.push_back(phase_of(v[i], at + "[" + std::to_string(i) + "]"));
            }
        }
    }
    return d;
}

inline keel::sim::probe_model probes_of(json const& j, std::string const& where) {
    only_keys(j, where,
              {"initial_delay", "period", "timeout", "success_threshold", "failure_threshold",
               "first_probe", "stagger"});
    keel::sim::probe_model p;
    auto const whole_seconds = [&](json const& v, std::string const& at) {
        nanoseconds const d = duration_of(v, at);
        if (d % std::chrono::seconds{1} != nanoseconds::zero()) {
            fail(at, "Kubernetes probe fields are whole seconds");
        }
        return std::chrono::duration_cast<std::chrono::seconds>(d);
    };
    for (auto const& [key, v] : j.items()) {
        std::string const at = where + "." + key;
        if (key == "initial_delay") {
            p.probe.initial_delay = whole_seconds(v, at);
        } else if (key == "period") {
            p.probe.period = whole_seconds(v, at);
        } else if (key == "timeout") {
            p.probe.timeout = whole_seconds(v, at);
        } else if (key == "success_threshold") {
            p.probe.success_threshold = number_of<int>(v, at);
        } else if (key == "failure_threshold") {
            p.probe.failure_threshold = number_of<int>(v, at);
        } else if (key == "first_probe") {
            p.first_probe = duration_of(v, at);
        } else {
            p.stagger = duration_of(v, at);
        }
    }
    return p;
}

inline keel::sim::client_group client_of(json const& j, std::string const& where) {
    only_keys(j, where,
              {"name", "kind", "rate", "rate_phases", "count", "think_time", "constant_think",
               "per_client_objects"});
    keel::sim::client_group g;
    for (auto const& [key, v] : j.items()) {
        std::string const at = where + "." + key;
        if (key == "name") {
            g.name = string_of(v, at);
        } else if (key == "kind") {
            std::string const k = string_of(v, at);
            if (k == "open") {
                g.kind = keel::sim::arrival::open;
            } else if (k == "closed") {
                g.kind = keel::sim::arrival::closed;
            } else {
                fail(at, "must be \"open\" or \"closed\"");
            }
        } else if (key == "rate") {
            g.rate = number_of<double>(v, at);
        } else if (key == "rate_phases") {
            if (!v.is_array()) {
                fail(at, "must be an array");
            }
            for (std::size_t i = 0; i < v.size(); ++i) {
                std::string const item = at + "[" + std::to_string(i) + "]";
                only_keys(v[i], item, {"start", "rate"});
                keel::sim::rate_phase r;
                if (v[i].contains("start")) {
                    r.start = duration_of(v[i]["start"], item + ".start");
                }
                if (v[i].contains("rate")) {
                    r.rate = number_of<double>(v[i]["rate"], item + ".rate");
                }
                g.rate_phases.push_back(r);
            }
        } else if (key == "count") {
            g.count = number_of<int>(v, at);
        } else if (key == "think_time") {
            g.think_time = duration_of(v, at);
        } else if (key == "constant_think") {
            g.constant_think = bool_of(v, at);
        } else {
            g.per_client_objects = bool_of(v, at);
        }
    }
    return g;
}

} // namespace detail

/// Parses a scenario file's text; throws std::invalid_argument naming the key at
/// fault ("keel-sim: variants[1].pipeline[0].retry.max_attempts: must be an
/// integer"), and keel::sim::validate's errors for values out of range.
inline scenario_file parse_scenario(std::string const& text) {
    using detail::fail;
    detail::json j;
    try {
        j = detail::json::parse(text);
    } catch (detail::json::parse_error const& e) {
        fail("JSON", e.what());
    }
    detail::only_keys(j, "scenario",
                      {"name", "description", "seed", "duration", "drain", "interval",
                       "outage_start", "outage_end", "downstream", "probes", "clients", "pipeline",
                       "variants"});
    scenario_file file;
    keel::sim::scenario base;
    std::vector<keel::sim::stage> pipeline;
    for (auto const& [key, v] : j.items()) {
        if (key == "name") {
            file.name = detail::string_of(v, key);
        } else if (key == "description") {
            file.description = detail::string_of(v, key);
        } else if (key == "seed") {
            base.seed = detail::number_of<std::uint64_t>(v, key);
        } else if (key == "duration") {
            base.duration = detail::duration_of(v, key);
        } else if (key == "drain") {
            base.drain = detail::duration_of(v, key);
        } else if (key == "interval") {
            base.interval = detail::duration_of(v, key);
        } else if (key == "outage_start") {
            base.outage_start = detail::duration_of(v, key);
        } else if (key == "outage_end") {
            base.outage_end = detail::duration_of(v, key);
        } else if (key == "downstream") {
            base.downstream = detail::downstream_of(v, key);
        } else if (key == "probes") {
            base.probes = detail::probes_of(v, key);
        } else if (key == "clients") {
            if (!v.is_array()) {
                fail(key, "must be an array of client groups");
            }
            base.clients.clear();
            for (std::size_t i = 0; i < v.size(); ++i) {
                base.clients.push_back(
                    detail::client_of(v[i], "clients[" + std::to_string(i) + "]"));
            }
        } else if (key == "pipeline") {
            pipeline = detail::pipeline_of(v, key);
        }
    }
    if (file.name.empty()) {
        fail("name", "is required");
    }
    if (j.contains("variants")) {
        auto const& variants = j["variants"];
        if (!variants.is_array() || variants.empty()) {
            fail("variants", "must be a non-empty array");
        }
        for (std::size_t i = 0; i < variants.size(); ++i) {
            std::string const where = "variants[" + std::to_string(i) + "]";
            detail::only_keys(
                variants[i], where,
                {"name", "description", "pipeline", "downstream", "probes", "clients", "seed"});
            if (!variants[i].contains("name")) {
                fail(where + ".name", "is required");
            }
            keel::sim::scenario s = base;
            std::string const name = detail::string_of(variants[i]["name"], where + ".name");
            s.name = file.name + ": " + name;
            s.pipeline = variants[i].contains("pipeline")
                             ? detail::pipeline_of(variants[i]["pipeline"], where + ".pipeline")
                             : pipeline;
            // A variant may replace whole sections of the base scenario.
            auto const& v = variants[i];
            if (v.contains("downstream")) {
                s.downstream = detail::downstream_of(v["downstream"], where + ".downstream");
            }
            if (v.contains("probes")) {
                s.probes = detail::probes_of(v["probes"], where + ".probes");
            }
            if (v.contains("clients")) {
                if (!v["clients"].is_array()) {
                    fail(where + ".clients", "must be an array of client groups");
                }
                s.clients.clear();
                for (std::size_t c = 0; c < v["clients"].size(); ++c) {
                    s.clients.push_back(detail::client_of(
                        v["clients"][c], where + ".clients[" + std::to_string(c) + "]"));
                }
            }
            if (v.contains("seed")) {
                s.seed = detail::number_of<std::uint64_t>(v["seed"], where + ".seed");
            }
            keel::sim::validate(s);
            file.variants.push_back(std::move(s));
            file.variant_names.push_back(name);
        }
    } else {
        base.name = file.name;
        base.pipeline = pipeline;
        keel::sim::validate(base);
        file.variants.push_back(std::move(base));
        file.variant_names.push_back(file.name);
    }
    return file;
}

/// Reads and parses the scenario file at `path`; throws std::invalid_argument.
inline scenario_file load_scenario(std::string const& path) {
    std::ifstream in{path};
    if (!in) {
        detail::fail(path, "cannot be read");
    }
    std::ostringstream text;
    text << in.rdbuf();
    return parse_scenario(text.str());
}

} // namespace keel_sim
