// SPDX-License-Identifier: MIT
// Uses keel through its umbrella header, as a consumer project would.
#include <keel/keel.hpp>

#include <cstdio>

int main() {
    keel::outcome<int> const ok = 42;
    keel::outcome<int> const rejected = keel::failure::from(keel::errc::circuit_open);
    if (!ok || rejected || rejected.error() != keel::errc::circuit_open) {
        std::puts("keel consumer: unexpected outcome");
        return 1;
    }
    std::printf("keel %d.%d.%d consumer: ok\n", KEEL_VERSION_MAJOR, KEEL_VERSION_MINOR,
                KEEL_VERSION_PATCH);
    return 0;
}
