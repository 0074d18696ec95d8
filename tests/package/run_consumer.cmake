# Builds and runs the consumer project against hattn; run in script mode (cmake -P).
#   MODE                 find_package | add_subdirectory
#   HATTN_SOURCE_DIR     hattn's source tree
#   HATTN_VERSION        the version the consumer asks find_package for
#   CONSUMER_SOURCE_DIR  the consumer project
#   WORK_DIR             scratch directory, wiped first
#   GENERATOR, MAKE_PROGRAM, CXX_COMPILER   taken from the build that runs the test
#   HATTN_GEMM           the GEMM backend to configure hattn with (the consumer checks it runs it)
#   HATTN_MPI            ON: configure hattn with hattn::dist, which the consumer must then find and use
cmake_minimum_required(VERSION 3.21)

foreach(_var IN ITEMS MODE HATTN_SOURCE_DIR HATTN_VERSION CONSUMER_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER HATTN_GEMM)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: ${_var} is not set")
  endif()
endforeach()

if(NOT HATTN_MPI)
  set(HATTN_MPI OFF)
endif()
set(_common -G "${GENERATOR}" -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=Release)
if(MAKE_PROGRAM)
  list(APPEND _common -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM})
endif()

# Runs one step; its output goes to the test log, and any non-zero exit fails the test.
function(step name)
  message(STATUS "[${MODE}] ${name}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    list(JOIN ARGN " " _command)
    message(FATAL_ERROR "[${MODE}] step '${name}' failed (exit ${_rc}): ${_command}")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(_consumer_build "${WORK_DIR}/consumer-build")

if(MODE STREQUAL "find_package")
  set(_hattn_build "${WORK_DIR}/hattn-build")
  set(_prefix "${WORK_DIR}/prefix")
  step("configure hattn" ${CMAKE_COMMAND} -S "${HATTN_SOURCE_DIR}" -B "${_hattn_build}" ${_common}
       -DHATTN_BUILD_TESTS=OFF -DHATTN_BUILD_EXAMPLES=OFF -DHATTN_BUILD_BENCHMARKS=OFF -DHATTN_GEMM=${HATTN_GEMM}
       -DHATTN_MPI=${HATTN_MPI})
  step("install hattn" ${CMAKE_COMMAND} --install "${_hattn_build}" --prefix "${_prefix}" --config Release)
  foreach(_file IN ITEMS include/hattn/ops/linear.hpp include/hattn/core/rng.hpp)
    if(NOT EXISTS "${_prefix}/${_file}")
      message(FATAL_ERROR "[${MODE}] ${_file} was not installed")
    endif()
  endforeach()
  # Only the prefix may provide hattn: no package registries, and the source tree is never named.
  step("configure consumer" ${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}" -B "${_consumer_build}" ${_common}
       -DCMAKE_PREFIX_PATH=${_prefix}
       -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF
       -DHATTN_CONSUMER_VERSION=${HATTN_VERSION} -DHATTN_CONSUMER_EXPECT_GEMM=${HATTN_GEMM}
       -DHATTN_CONSUMER_EXPECT_DIST=${HATTN_MPI})
  file(STRINGS "${_consumer_build}/CMakeCache.txt" _hattn_dir REGEX "^hattn_DIR:")
  string(REGEX REPLACE "^hattn_DIR:[A-Z]+=" "" _hattn_dir "${_hattn_dir}")
  cmake_path(IS_PREFIX _prefix "${_hattn_dir}" NORMALIZE _in_prefix)
  if(NOT _in_prefix)
    message(FATAL_ERROR "[${MODE}] hattn was found at '${_hattn_dir}', not in the prefix ${_prefix}")
  endif()
elseif(MODE STREQUAL "add_subdirectory")
  step("configure consumer" ${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}" -B "${_consumer_build}" ${_common}
       -DHATTN_CONSUMER_SOURCE_DIR=${HATTN_SOURCE_DIR} -DHATTN_GEMM=${HATTN_GEMM} -DHATTN_MPI=${HATTN_MPI}
       -DHATTN_CONSUMER_EXPECT_GEMM=${HATTN_GEMM} -DHATTN_CONSUMER_EXPECT_DIST=${HATTN_MPI})
else()
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}'")
endif()

step("build consumer" ${CMAKE_COMMAND} --build "${_consumer_build}" --config Release)
find_program(_exe NAMES hattn_consumer PATHS "${_consumer_build}" "${_consumer_build}/Release"
             NO_DEFAULT_PATH NO_CACHE)
if(NOT _exe)
  message(FATAL_ERROR "[${MODE}] the consumer executable was not built")
endif()
step("run consumer" "${_exe}")
