# Which LibTorch this build uses (issue 19: Debian's CPU 1.13, PyPI's CUDA wheel, an official
# archive): checked, reported, and the few link details a wheel needs. Included right after
# find_package(Torch).

# TorchConfig.cmake looks for libtorch.so in its own prefix *after* the system paths, so a
# LibTorch named through CMAKE_PREFIX_PATH=<root>/share/cmake would be mixed with Debian's
# /usr/lib copy: the headers of one version, the libraries of another.
string(FIND "${TORCH_LIBRARY}" "${TORCH_INSTALL_PREFIX}/" distill_torch_lib_at)
if(NOT distill_torch_lib_at EQUAL 0)
  message(FATAL_ERROR
    "LibTorch's CMake config is in ${TORCH_INSTALL_PREFIX}, but its library was found at "
    "${TORCH_LIBRARY}: two LibTorch installations are mixed. Point CMAKE_PREFIX_PATH at the "
    "LibTorch root (the folder holding lib/ and share/cmake/Torch), not at share/cmake; "
    "Torch_DIR alone does not steer where libtorch.so is looked for.")
endif()

set(DISTILL_TORCH_CUDA OFF)
if(TORCH_CUDA_LIBRARIES OR TARGET torch_cuda)
  set(DISTILL_TORCH_CUDA ON)
endif()

# PyPI's wheel keeps the CUDA runtime, cuDNN and NCCL in nvidia-* wheels beside torch/, found at
# run time through libtorch_cuda's RPATH. The linker must see the same copies: otherwise it
# resolves libtorch_cuda's libnccl.so.2 to an older system NCCL (a CUDA toolkit's) and fails on
# symbols only the newer one has.
file(GLOB distill_wheel_nvidia_libs LIST_DIRECTORIES true "${TORCH_INSTALL_PREFIX}/../nvidia/*/lib")
if(distill_wheel_nvidia_libs)
  list(JOIN distill_wheel_nvidia_libs ":" distill_rpath_link)
  add_link_options("LINKER:-rpath-link,${distill_rpath_link}")
endif()

# NCCL for run.dist.backend = "nccl" (a CUDA LibTorch only): the nccl.h the LibTorch was built
# with, which is the pinned nvidia-nccl wheel's for PyPI's torch (ProcessGroupNCCL's layout
# depends on it), else the CUDA toolkit's.
set(DISTILL_WITH_NCCL OFF)
if(DISTILL_TORCH_CUDA)
  find_path(DISTILL_NCCL_INCLUDE_DIR nccl.h
    HINTS "${TORCH_INSTALL_PREFIX}/../nvidia/nccl/include" ${CUDAToolkit_INCLUDE_DIRS})
  if(DISTILL_NCCL_INCLUDE_DIR)
    set(DISTILL_WITH_NCCL ON)
  endif()
endif()

# torchrun of the same line (tests launch distill with it): its agent's TCPStore must speak this
# LibTorch's protocol. experiments/setup/libtorch_wheel.sh records which Python installed the
# wheel; Debian's python3-torch provides /usr/bin/torchrun.
set(DISTILL_TORCHRUN /usr/bin/torchrun)
get_filename_component(distill_wheel_root "${TORCH_INSTALL_PREFIX}/.." ABSOLUTE)
if(EXISTS "${distill_wheel_root}/.distill-python")
  file(STRINGS "${distill_wheel_root}/.distill-python" distill_wheel_python LIMIT_COUNT 1)
  set(DISTILL_TORCHRUN "${PROJECT_BINARY_DIR}/torchrun")
  file(WRITE "${DISTILL_TORCHRUN}" "#!/bin/sh\n# torchrun of the wheel this build links (written by cmake/libtorch.cmake)\n"
    "PYTHONPATH=\"${distill_wheel_root}\${PYTHONPATH:+:\$PYTHONPATH}\" exec \"${distill_wheel_python}\" -m torch.distributed.run \"\$@\"\n")
  file(CHMOD "${DISTILL_TORCHRUN}" PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endif()

if(DISTILL_TORCH_CUDA)
  message(STATUS "distill: LibTorch ${Torch_VERSION} (CUDA build; toolkit ${CUDAToolkit_VERSION}; NCCL backend ${DISTILL_WITH_NCCL}) from ${TORCH_INSTALL_PREFIX}")
else()
  message(STATUS "distill: LibTorch ${Torch_VERSION} (CPU only) from ${TORCH_INSTALL_PREFIX}")
endif()
