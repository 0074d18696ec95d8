# Finds hattn's dependencies; shared by the build tree and the installed package config.
# Every dependency is a Debian package: libeigen3-dev, libtbb-dev, libopenblas-dev, librandom123-dev.
include(CMakeFindDependencyMacro)

if(NOT TARGET Eigen3::Eigen)
  find_dependency(Eigen3 3.4 NO_MODULE)
endif()
if(NOT TARGET TBB::tbb)
  find_dependency(TBB)
endif()
if(NOT TARGET BLAS::BLAS)
  # OpenBLAS first: hattn calls openblas_set_num_threads to keep BLAS single-threaded in TBB tasks.
  set(BLA_VENDOR OpenBLAS)
  find_dependency(BLAS)
endif()

# cblas.h: Debian puts OpenBLAS's under the multiarch include dir (found by default);
# search the usual places so other layouts work too.
find_path(HATTN_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas openblas-pthread)
if(NOT HATTN_CBLAS_INCLUDE_DIR)
  message(FATAL_ERROR "hattn: cblas.h not found (Debian: apt-get install libopenblas-dev)")
endif()

# Random123 (Philox counter-based RNG) is header-only and ships no CMake package.
find_path(HATTN_RANDOM123_INCLUDE_DIR Random123/philox.h)
if(NOT HATTN_RANDOM123_INCLUDE_DIR)
  message(FATAL_ERROR "hattn: Random123/philox.h not found (Debian: apt-get install librandom123-dev)")
endif()
