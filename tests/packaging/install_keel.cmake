# SPDX-License-Identifier: MIT
# Configures keel from SOURCE_DIR in a fresh BUILD_DIR with OPTIONS (separated
# by |) and installs it into PREFIX (cmake -P): a second install, built another way.
cmake_minimum_required(VERSION 3.21)
string(REPLACE "|" ";" options "${OPTIONS}")
file(REMOVE_RECURSE ${BUILD_DIR} ${PREFIX})
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${BUILD_DIR} -G ${GENERATOR} ${options}
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "configuring keel failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX}
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "installing keel failed")
endif()
