// SPDX-License-Identifier: MIT
#include <keel/policy/predicate.hpp>

#include <catch2/catch.hpp>

#include <stdexcept>
#include <system_error>

namespace {
struct response {
    int status = 200;
};
keel::outcome<int> thrown(std::exception_ptr e) {
    return keel::failure::from(std::move(e));
}
} // namespace

TEST_CASE("on_failure: handles failures except cancellation, never values", "[predicate]") {
    keel::on_failure const p;
    CHECK_FALSE(p(keel::outcome<int>{1}));
    CHECK(p(keel::outcome<int>{keel::failure::from(keel::errc::timeout)}));
    CHECK_FALSE(p(keel::outcome<int>{keel::failure::from(keel::errc::cancelled)}));
    CHECK(p(keel::outcome<void>{keel::failure::from(keel::errc::unavailable)}));
}

TEST_CASE("on_exception: handles the listed exception types and their subclasses", "[predicate]") {
    keel::on_exception<std::logic_error, std::bad_alloc> const p;
    CHECK(p(thrown(std::make_exception_ptr(std::invalid_argument{"x"}))));
    CHECK(p(thrown(std::make_exception_ptr(std::bad_alloc{}))));
    CHECK_FALSE(p(thrown(std::make_exception_ptr(std::runtime_error{"x"}))));
    CHECK_FALSE(p(keel::outcome<int>{keel::failure::from(keel::errc::timeout)}));
    CHECK_FALSE(p(keel::outcome<int>{3}));
}

TEST_CASE("on_error: handles the listed codes, keel's or the user's", "[predicate]") {
    auto const p = keel::on_error(keel::errc::timeout, std::errc::connection_refused);
    CHECK(p(keel::outcome<int>{keel::failure::from(keel::errc::timeout)}));
    CHECK(p(keel::outcome<int>{
        keel::failure{std::make_error_code(std::errc::connection_refused), nullptr, {}}}));
    CHECK_FALSE(p(keel::outcome<int>{keel::failure::from(keel::errc::circuit_open)}));
    CHECK_FALSE(p(keel::outcome<int>{1}));
}

TEST_CASE("on_result and any_of: 503 is handled, 404 is not", "[predicate]") {
    auto const p = keel::any_of(keel::on_exception<std::runtime_error>{},
                                keel::on_result([](response const& r) { return r.status == 503; }));
    CHECK(p(keel::outcome<response>{response{503}}));
    CHECK_FALSE(p(keel::outcome<response>{response{404}}));
    CHECK(p(keel::outcome<response>{
        keel::failure::from(std::make_exception_ptr(std::runtime_error{"x"}))}));
    CHECK_FALSE(keel::on_result([](int) { return true; })(keel::outcome<void>{}));
}
