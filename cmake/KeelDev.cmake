# SPDX-License-Identifier: MIT
# keel_dev: the private target our own tests, benchmarks, examples and fuzzers
# link. It carries the warnings, -Werror and sanitizer flags; keel::keel, the
# target users link, carries none of them.

set(KEEL_SANITIZE "" CACHE STRING
  "Sanitizers for keel's own builds: empty, 'address,undefined' or 'thread'")
# -Werror only when keel is the top-level project (the presets and CI set it): a
# project that turns on keel's tests as a subproject, maybe with another compiler,
# gets the warnings without its build breaking on them.
option(KEEL_WERROR "Treat warnings as errors in keel's own builds" ${PROJECT_IS_TOP_LEVEL})

add_library(keel_dev INTERFACE)
target_link_libraries(keel_dev INTERFACE keel::keel)
target_compile_options(keel_dev INTERFACE
  $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
                                  -Wold-style-cast>
  $<$<AND:$<CXX_COMPILER_ID:GNU,Clang>,$<BOOL:${KEEL_WERROR}>>:-Werror>)

if(KEEL_SANITIZE)
  target_compile_options(keel_dev INTERFACE
    -fsanitize=${KEEL_SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(keel_dev INTERFACE -fsanitize=${KEEL_SANITIZE})
  # clang 14's -fsanitize=function puts a relative offset to each function's type
  # in front of it, which it cannot emit for the split parts of a coroutine in
  # other sections ("Cannot represent a difference across sections"): the Asio
  # coroutine tests would not build. The check (calls through mistyped function
  # pointers) is left out; every other UBSan check stays.
  if(KEEL_SANITIZE MATCHES "undefined" AND CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    target_compile_options(keel_dev INTERFACE -fno-sanitize=function)
  endif()
endif()
