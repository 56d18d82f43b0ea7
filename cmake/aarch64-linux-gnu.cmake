# Cross build for arm64 guests (./kpc run --arch arm64 makes build-arm64/ with
# it; runner/kpc/cross.py). Debian's g++-aarch64-linux-gnu, static, with the
# arm64 libraries (libfuse3, libcap, nlohmann-json, musl) taken from
# KPC_SYSROOT: extracted .debs, not multiarch (which would upgrade amd64
# packages, and cannot install busybox-static:arm64 next to the amd64 one).
#
#   cmake -S . -B build-arm64 -G Ninja -DKPC_TESTS=OFF \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DKPC_SYSROOT=/path/to/sysroot
#
# The C library is the cross compiler's own (libc6-dev-arm64-cross), not the
# sysroot's: KPC_SYSROOT is searched for libraries and headers, it is not
# --sysroot.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_STRIP aarch64-linux-gnu-strip)

# try_compile projects see the cache variable too
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES KPC_SYSROOT)
if(NOT KPC_SYSROOT)
  message(FATAL_ERROR "give -DKPC_SYSROOT=DIR: the arm64 .debs (libfuse3-dev, libcap-dev, ...) extracted there")
endif()

set(CMAKE_FIND_ROOT_PATH ${KPC_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)   # cmake, ninja: the host's
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)    # never an x86_64 libcap.a
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_C_STANDARD_INCLUDE_DIRECTORIES ${KPC_SYSROOT}/usr/include)
set(CMAKE_CXX_STANDARD_INCLUDE_DIRECTORIES ${KPC_SYSROOT}/usr/include)

# pkg-config reads the sysroot's .pc files only, and prefixes their paths
set(ENV{PKG_CONFIG_LIBDIR} "${KPC_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${KPC_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} ${KPC_SYSROOT})
# what pkg-config --static lists by name (-lfuse3 -lpthread ...) is found there
set(CMAKE_EXE_LINKER_FLAGS_INIT "-L${KPC_SYSROOT}/usr/lib/aarch64-linux-gnu")
