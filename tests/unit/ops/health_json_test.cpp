// SPDX-License-Identifier: MIT
#include <keel/ops/health.hpp>
#include <keel/ops/health_json.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <limits>
#include <string>

using namespace std::chrono_literals;
using keel::ops::check_kind;
using keel::ops::check_result;
using keel::ops::health_status;

namespace {

std::chrono::system_clock::time_point wall(std::chrono::system_clock::duration since_epoch) {
    return std::chrono::system_clock::time_point{since_epoch};
}

keel::ops::health_registry_options<keel::manual_clock> manual_options() {
    return {.wall_time =
                [](keel::manual_clock::time_point t) {
                    return std::chrono::system_clock::time_point{
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(
                            t.time_since_epoch())};
                },
            .service_id = "orders",
            .version = "1.4.2"};
}

} // namespace

TEST_CASE("json_string escapes quotes, backslashes and control characters", "[health_json]") {
    CHECK(keel::ops::json_string("") == R"("")");
    CHECK(keel::ops::json_string("plain / text") == R"("plain / text")");
    CHECK(keel::ops::json_string(R"(say "hi" \o/)") == R"("say \"hi\" \\o/")");
    CHECK(keel::ops::json_string("a\nb\tc\rd") == R"("a\u000ab\u0009c\u000dd")");
    CHECK(keel::ops::json_string(std::string_view{"\0\x01\x1f\x7f", 4}) ==
          "\"\\u0000\\u0001\\u001f\x7f\"");
}

TEST_CASE("json_string passes valid UTF-8 through", "[health_json]") {
    CHECK(keel::ops::json_string("caf\xC3\xA9") == "\"caf\xC3\xA9\"");           // é
    CHECK(keel::ops::json_string("\xE2\x82\xAC 5") == "\"\xE2\x82\xAC 5\"");     // €
    CHECK(keel::ops::json_string("\xF0\x9F\x94\xA5") == "\"\xF0\x9F\x94\xA5\""); // U+1F525
    CHECK(keel::ops::json_string("\xEF\xBF\xBF\xF4\x8F\xBF\xBF") ==              // max BMP,
          "\"\xEF\xBF\xBF\xF4\x8F\xBF\xBF\"");                                   // U+10FFFF
    CHECK(keel::ops::json_string("\xE6\x97\xA5\xE6\x9C\xAC") == "\"\xE6\x97\xA5\xE6\x9C\xAC\"");
}

TEST_CASE("json_string replaces ill-formed UTF-8 with U+FFFD", "[health_json]") {
    std::string const r = "\xEF\xBF\xBD";
    CHECK(keel::ops::json_string("a\x80z") == "\"a" + r + "z\"");             // stray continuation
    CHECK(keel::ops::json_string("\xC3") == "\"" + r + "\"");                 // truncated at end
    CHECK(keel::ops::json_string("\xC3(") == "\"" + r + "(\"");               // truncated
    CHECK(keel::ops::json_string("\xC0\xAF") == "\"" + r + r + "\"");         // overlong '/'
    CHECK(keel::ops::json_string("\xE0\x80\xAF") == "\"" + r + r + r + "\""); // overlong
    CHECK(keel::ops::json_string("\xED\xA0\x80") == "\"" + r + r + r + "\""); // surrogate D800
    CHECK(keel::ops::json_string("\xF4\x90\x80\x80") == "\"" + r + r + r + r + "\""); // > 10FFFF
    CHECK(keel::ops::json_string("\xF5\xFF") == "\"" + r + r + "\"");
    // A truncated 3-byte sequence is one maximal subpart: one replacement.
    CHECK(keel::ops::json_string("\xE2\x82z") == "\"" + r + "z\"");
    CHECK(keel::ops::json_string("\xF0\x9F\x94") == "\"" + r + "\"");
}

TEST_CASE("format_rfc3339 writes UTC with milliseconds", "[health_json]") {
    CHECK(keel::ops::format_rfc3339(wall(0s)) == "1970-01-01T00:00:00.000Z");
    CHECK(keel::ops::format_rfc3339(wall(1'795'748'645'678ms)) == "2026-11-27T03:04:05.678Z");
    CHECK(keel::ops::format_rfc3339(wall(951'782'400s)) == "2000-02-29T00:00:00.000Z");
    CHECK(keel::ops::format_rfc3339(wall(1999us)) == "1970-01-01T00:00:00.001Z"); // truncated
    CHECK(keel::ops::format_rfc3339(wall(-1ms)) == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("render_health_json of a passing liveness report is minimal", "[health_json]") {
    keel::ops::health_report report;
    report.probe = keel::ops::probe_kind::liveness;
    CHECK(keel::ops::render_health_json(report) == R"({"status":"pass"})");
    report.output = "ignored for pass";
    CHECK(keel::ops::render_health_json(report) == R"({"status":"pass"})");

    report.status = health_status::fail;
    report.output = "broken: event loop stalled";
    report.service_id = "orders";
    report.version = "1";
    report.release_id = "1.0.0-rc1";
    report.description = "order service";
    CHECK(keel::ops::render_health_json(report) ==
          R"({"status":"fail","version":"1","releaseId":"1.0.0-rc1","serviceId":"orders",)"
          R"("description":"order service","output":"broken: event loop stalled"})");
}

TEST_CASE("render_health_json renders checks keyed component:measurement", "[health_json]") {
    keel::ops::health_report report;
    report.status = health_status::warn;
    report.output = "cache: timeout";
    keel::ops::check_report db;
    db.key = "postgres:responseTime";
    db.component_type = "datastore";
    db.status = health_status::pass;
    db.observed_value = 12.5;
    db.observed_unit = "ms";
    db.output = "not rendered for pass";
    db.time = wall(5s);
    db.last_change = wall(0s);
    keel::ops::check_report cache;
    cache.key = "cache";
    cache.component_type = "datastore";
    cache.critical = false;
    cache.status = health_status::fail;
    cache.output = "timeout";
    cache.time = wall(5s);
    cache.last_change = wall(3s);
    cache.consecutive_failures = 2;
    report.checks = {db, cache};

    CHECK(keel::ops::render_health_json(report) ==
          R"({"status":"warn","output":"cache: timeout","checks":{)"
          R"("postgres:responseTime":[{"componentType":"datastore","observedValue":12.5,)"
          R"("observedUnit":"ms","status":"pass","time":"1970-01-01T00:00:05.000Z",)"
          R"("consecutiveFailures":0,"lastChange":"1970-01-01T00:00:00.000Z"}],)"
          R"("cache":[{"componentType":"datastore","status":"fail",)"
          R"("time":"1970-01-01T00:00:05.000Z","output":"timeout","consecutiveFailures":2,)"
          R"("lastChange":"1970-01-01T00:00:03.000Z"}]}})");
}

TEST_CASE("render_health_json writes observed values as JSON numbers", "[health_json]") {
    keel::ops::health_report report;
    keel::ops::check_report c;
    c.key = "k";
    c.component_type = "system";
    report.checks = {c};
    auto value_of = [&](double v) {
        report.checks[0].observed_value = v;
        auto const body = keel::ops::render_health_json(report);
        auto const from = body.find("\"observedValue\":") + 16;
        return body.substr(from, body.find(',', from) - from);
    };
    CHECK(value_of(12.0) == "12");
    CHECK(value_of(0.1) == "0.1");
    CHECK(value_of(-3.25) == "-3.25");
    CHECK(value_of(1e21) == "1e+21");
    CHECK(value_of(std::numeric_limits<double>::quiet_NaN()) == "null");
    CHECK(value_of(std::numeric_limits<double>::infinity()) == "null");
}

TEST_CASE("render_health_json escapes every string it writes", "[health_json]") {
    keel::ops::health_report report;
    report.status = health_status::fail;
    report.service_id = "svc \"eu\"";
    report.output = "line1\nline2 \xC3\xA9 \xFF";
    keel::ops::check_report c;
    c.key = "caf\xC3\xA9:responseTime";
    c.component_type = "http://x/\\y";
    c.status = health_status::fail;
    c.output = "\x01quoted \"text\"";
    c.observed_unit = "\xC2\xB5s";
    report.checks = {c};
    CHECK(keel::ops::render_health_json(report) ==
          "{\"status\":\"fail\",\"serviceId\":\"svc \\\"eu\\\"\","
          "\"output\":\"line1\\u000aline2 \xC3\xA9 \xEF\xBF\xBD\",\"checks\":{"
          "\"caf\xC3\xA9:responseTime\":[{\"componentType\":\"http://x/\\\\y\","
          "\"observedUnit\":\"\xC2\xB5s\",\"status\":\"fail\","
          "\"time\":\"1970-01-01T00:00:00.000Z\",\"output\":\"\\u0001quoted \\\"text\\\"\","
          "\"consecutiveFailures\":0,\"lastChange\":\"1970-01-01T00:00:00.000Z\"}]}}");
}

TEST_CASE("to_http_response maps pass and warn to 200 and fail to 503", "[health_json]") {
    keel::ops::health_report report;
    auto response = keel::ops::to_http_response(report);
    CHECK(response.status == 200);
    CHECK(response.content_type == "application/health+json");
    CHECK(response.body == R"({"status":"pass"})");

    report.status = health_status::warn;
    CHECK(keel::ops::to_http_response(report).status == 200);

    report.status = health_status::fail;
    response = keel::ops::to_http_response(report);
    CHECK(response.status == 503);
    CHECK(response.body == R"({"status":"fail"})");
}

TEST_CASE("a registry's readiness renders to the exact health+json golden string",
          "[health_json]") {
    keel::manual_clock clock{keel::manual_clock::time_point{1'795'748'645s}};
    keel::ops::basic_health_registry<keel::manual_clock> health{manual_options(), clock};
    health.add_check(
        {.name = "postgres", .measurement = "responseTime", .kind = check_kind::database},
        [] { return check_result::pass(3, "ms"); });
    health.add_check({.name = "redis", .kind = check_kind::cache, .critical = false},
                     [] { return check_result::fail("connection refused"); });
    health.mark_started();

    auto response = keel::ops::to_http_response(health.readiness());
    CHECK(response.status == 200);
    CHECK(response.body ==
          R"({"status":"warn","version":"1.4.2","serviceId":"orders",)"
          R"("output":"redis: connection refused","checks":{)"
          R"("postgres:responseTime":[{"componentType":"datastore","observedValue":3,)"
          R"("observedUnit":"ms","status":"pass","time":"2026-11-27T03:04:05.000Z",)"
          R"("consecutiveFailures":0,"lastChange":"2026-11-27T03:04:05.000Z"}],)"
          R"("redis":[{"componentType":"datastore","status":"fail",)"
          R"("time":"2026-11-27T03:04:05.000Z","output":"connection refused",)"
          R"("consecutiveFailures":1,"lastChange":"2026-11-27T03:04:05.000Z"}]}})");

    health.set_not_ready("draining");
    response = keel::ops::to_http_response(health.readiness());
    CHECK(response.status == 503);
    CHECK(response.body.rfind(R"({"status":"fail","version":"1.4.2","serviceId":"orders",)"
                              R"("output":"draining","checks":{)",
                              0) == 0);

    response = keel::ops::to_http_response(health.liveness());
    CHECK(response.status == 200);
    CHECK(response.body == R"({"status":"pass","version":"1.4.2","serviceId":"orders"})");
}
