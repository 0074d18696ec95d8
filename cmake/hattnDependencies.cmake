# Finds hattn's dependencies; shared by the build tree and the installed package config.
# Every dependency is a Debian package: libeigen3-dev, libtbb-dev, libopenblas-dev, librandom123-dev,
# nlohmann-json3-dev, and libdnnl-dev when HATTN_GEMM is onednn. Defines the imported targets hattn
# links to: Eigen3::Eigen, TBB::tbb, BLAS::BLAS, nlohmann_json::nlohmann_json, hattn::cblas_headers,
# hattn::random123 and (onednn) hattn::dnnl, all found on the consumer's machine, never baked in.
# HATTN_GEMM (onednn | openblas) must be set before this file is included.
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

# cblas.h (OpenBLAS's) and Random123 are plain headers without CMake packages: each becomes an
# imported INTERFACE target, or the package is marked not found with the Debian package to install.
macro(_hattn_header_target target var header debian_package)
  if(NOT TARGET ${target})
    find_path(${var} ${header} ${ARGN})
    if(NOT ${var})
      set(${CMAKE_FIND_PACKAGE_NAME}_FOUND FALSE)
      set(${CMAKE_FIND_PACKAGE_NAME}_NOT_FOUND_MESSAGE
          "${header} not found (Debian: apt-get install ${debian_package})")
      return()
    endif()
    add_library(${target} INTERFACE IMPORTED)
    set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${${var}}")
  endif()
endmacro()
_hattn_header_target(hattn::cblas_headers HATTN_CBLAS_INCLUDE_DIR cblas.h libopenblas-dev
                     PATH_SUFFIXES openblas openblas-pthread)
_hattn_header_target(hattn::random123 HATTN_RANDOM123_INCLUDE_DIR Random123/philox.h librandom123-dev)

# oneDNN (HATTN_GEMM=onednn): its library and headers as an imported target. Its own CMake package
# is not used: Debian's requires OpenCL development files for a GPU runtime hattn never touches.
if(HATTN_GEMM STREQUAL "onednn" AND NOT TARGET hattn::dnnl)
  find_path(HATTN_DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.h)
  find_library(HATTN_DNNL_LIBRARY NAMES dnnl)
  if(NOT HATTN_DNNL_INCLUDE_DIR OR NOT HATTN_DNNL_LIBRARY)
    set(${CMAKE_FIND_PACKAGE_NAME}_FOUND FALSE)
    set(${CMAKE_FIND_PACKAGE_NAME}_NOT_FOUND_MESSAGE
        "oneDNN not found (Debian: apt-get install libdnnl-dev), or configure hattn with -DHATTN_GEMM=openblas")
    return()
  endif()
  add_library(hattn::dnnl UNKNOWN IMPORTED)
  set_target_properties(hattn::dnnl PROPERTIES
    IMPORTED_LOCATION "${HATTN_DNNL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${HATTN_DNNL_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${CMAKE_DL_LIBS}")
endif()

# MPI, for hattn::dist, when the installed hattn has it (HATTN_MPI; Debian: libopenmpi-dev).
if(HATTN_MPI AND NOT TARGET MPI::MPI_CXX)
  find_dependency(MPI COMPONENTS CXX)
endif()
