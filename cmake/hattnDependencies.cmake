# Finds hattn's dependencies; shared by the build tree and the installed package config.
# Every dependency is a Debian package: libeigen3-dev, libtbb-dev, libopenblas-dev, librandom123-dev,
# nlohmann-json3-dev. Defines the imported targets hattn links to: Eigen3::Eigen, TBB::tbb, BLAS::BLAS,
# nlohmann_json::nlohmann_json,
# hattn::cblas_headers and hattn::random123 (found on the consumer's machine, never baked in).
include(CMakeFindDependencyMacro)

if(NOT TARGET Eigen3::Eigen)
  find_dependency(Eigen3 3.4 NO_MODULE)
endif()
if(NOT TARGET TBB::tbb)
  find_dependency(TBB)
endif()
if(NOT TARGET nlohmann_json::nlohmann_json)
  find_dependency(nlohmann_json 3)   # safetensors headers
endif()
if(NOT TARGET BLAS::BLAS)
  # OpenBLAS: hattn calls openblas_set_num_threads to keep BLAS single-threaded in TBB tasks.
  # The caller's own BLA_VENDOR is restored afterwards.
  set(_hattn_saved_bla_vendor "${BLA_VENDOR}")
  set(BLA_VENDOR OpenBLAS)
  find_dependency(BLAS)
  set(BLA_VENDOR "${_hattn_saved_bla_vendor}")
endif()

# cblas.h (OpenBLAS's) and Random123 are plain headers without CMake packages.
if(NOT TARGET hattn::cblas_headers)
  find_path(HATTN_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas openblas-pthread)
  if(NOT HATTN_CBLAS_INCLUDE_DIR)
    set(${CMAKE_FIND_PACKAGE_NAME}_FOUND FALSE)
    set(${CMAKE_FIND_PACKAGE_NAME}_NOT_FOUND_MESSAGE "cblas.h not found (Debian: apt-get install libopenblas-dev)")
    return()
  endif()
  add_library(hattn::cblas_headers INTERFACE IMPORTED)
  set_target_properties(hattn::cblas_headers PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${HATTN_CBLAS_INCLUDE_DIR}")
endif()
if(NOT TARGET hattn::random123)
  find_path(HATTN_RANDOM123_INCLUDE_DIR Random123/philox.h)
  if(NOT HATTN_RANDOM123_INCLUDE_DIR)
    set(${CMAKE_FIND_PACKAGE_NAME}_FOUND FALSE)
    set(${CMAKE_FIND_PACKAGE_NAME}_NOT_FOUND_MESSAGE "Random123/philox.h not found (Debian: apt-get install librandom123-dev)")
    return()
  endif()
  add_library(hattn::random123 INTERFACE IMPORTED)
  set_target_properties(hattn::random123 PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${HATTN_RANDOM123_INCLUDE_DIR}")
endif()
