// SPDX-License-Identifier: MIT
// Test support for the plain test programs (the end-to-end tests, which are
// programs with their own checks rather than Catch2 cases): fail() ends the test
// by throwing, so the destructors of its child_process objects kill and reap the
// children first, and run_test_program() turns that into "FAILED: <why>" on
// stderr and exit code 1.
#pragma once

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

namespace keel_test {

/// The failure of a test program's check; run_test_program() reports it.
struct failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// Ends the test program: throws keel_test::failure with `what`.
[[noreturn]] inline void fail(std::string const& what) {
    throw failure{what};
}

/// Returns `run(argc, argv)`; when it throws (fail(), or a helper's
/// std::runtime_error), prints "FAILED: " and what() to stderr and returns 1.
inline int run_test_program(int (*run)(int, char**), int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (std::exception const& e) {
        std::fprintf(stderr, "FAILED: %s\n", e.what());
        return 1;
    }
}

} // namespace keel_test
