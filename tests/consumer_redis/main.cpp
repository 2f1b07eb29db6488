// SPDX-License-Identifier: MIT
// Builds a limiter on an unopened pool: links keel::redis without needing a server.
#include <keel/redis/redis.hpp>

int main() {
    keel::redis::pool redis{{.connection = {.port = 6379}, .size = 1}};
    keel::redis::gcra limiter{redis, {.name = "consumer", .rate = 10}};
    return limiter.options().burst == 10 && redis.size() == 1 ? 0 : 1;
}
