# SPDX-License-Identifier: MIT
# One packaging test (cmake -P): configures and builds a consumer project in a
# fresh BUILD_DIR with strict warnings, checks in compile_commands.json that every
# source was compiled with them and saw keel's headers through -I (an -isystem
# directory would hide their warnings), and runs the program.
#   -DSOURCE_DIR=<consumer project>  -DBUILD_DIR=<build dir>  -DGENERATOR=<generator>
#   -DCXX=<compiler>  -DFLAGS=<CMAKE_CXX_FLAGS, space-separated>
#   -DOPTIONS=<-D options for the consumer, separated by |>
#   -DPROGRAM=<executable to run>
#   -DGIT_FROM=<keel checkout>   FetchContent from it as a git URL at its HEAD commit
#   -DEXPECT_FAILURE=ON          the configure step must fail (the test then reads its output)
cmake_minimum_required(VERSION 3.21)

string(REPLACE "|" ";" options "${OPTIONS}")
if(GIT_FROM)
  find_package(Git QUIET)
  if(NOT Git_FOUND)
    message("keel packaging test skipped: git not found")
    return()
  endif()
  execute_process(COMMAND ${GIT_EXECUTABLE} -C ${GIT_FROM} rev-parse HEAD
    OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message("keel packaging test skipped: ${GIT_FROM} is not a git checkout")
    return()
  endif()
  message(STATUS "FetchContent of file://${GIT_FROM} at ${commit}")
  list(APPEND options -DKEEL_GIT_REPOSITORY=file://${GIT_FROM} -DKEEL_GIT_TAG=${commit})
endif()

file(REMOVE_RECURSE ${BUILD_DIR})
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${BUILD_DIR} -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS=${FLAGS}"
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON ${options}
  RESULT_VARIABLE result)
if(EXPECT_FAILURE)
  if(result EQUAL 0)
    message(FATAL_ERROR "configuring ${SOURCE_DIR} succeeded; it should have failed")
  endif()
  return()
endif()
if(NOT result EQUAL 0)
  message(FATAL_ERROR "configuring ${SOURCE_DIR} failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "building ${SOURCE_DIR} failed")
endif()

separate_arguments(flags UNIX_COMMAND "${FLAGS}")
file(READ ${BUILD_DIR}/compile_commands.json commands)
string(JSON count LENGTH "${commands}")
if(count EQUAL 0)
  message(FATAL_ERROR "no compile commands in ${BUILD_DIR}")
endif()
math(EXPR last "${count} - 1")
foreach(i RANGE ${last})
  string(JSON command GET "${commands}" ${i} command)
  string(JSON file GET "${commands}" ${i} file)
  foreach(flag IN LISTS flags)
    string(FIND " ${command} " " ${flag} " at)
    if(at EQUAL -1)
      message(FATAL_ERROR "${file} was compiled without ${flag}: ${command}")
    endif()
  endforeach()
  string(REGEX MATCHALL "-isystem +[^ ]+" system_dirs "${command}")
  foreach(system_dir IN LISTS system_dirs)
    string(REGEX REPLACE "^-isystem +" "" dir "${system_dir}")
    if(EXISTS ${dir}/keel/version.hpp)
      message(FATAL_ERROR "${file} saw keel's headers through -isystem ${dir}: ${command}")
    endif()
  endforeach()
endforeach()

execute_process(COMMAND ${BUILD_DIR}/${PROGRAM} RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} failed: ${result}")
endif()
