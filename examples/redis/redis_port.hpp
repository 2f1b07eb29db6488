// SPDX-License-Identifier: MIT
// The Redis examples' server port: $KEEL_REDIS_PORT_FILE names a file holding it
// (the tests' redis-server fixture writes one), else $KEEL_REDIS_PORT, else 6379.
#pragma once

#include <cstdlib>
#include <fstream>

namespace keel_example {

inline int redis_port() {
    if (char const* file = std::getenv("KEEL_REDIS_PORT_FILE")) {
        std::ifstream in{file};
        int port = 0;
        if (in >> port) {
            return port;
        }
    }
    if (char const* port = std::getenv("KEEL_REDIS_PORT")) {
        return std::atoi(port);
    }
    return 6379;
}

} // namespace keel_example
