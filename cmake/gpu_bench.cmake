# The GPU benchmark's measuring stick (bench/bench_gemm_cuda.cu): the bf16 cuBLASLt GEMM rate that switchc's MFU is
# taken against, and the versions of the GPU stack (driver, CUDA, cuBLAS, cuDNN, NCCL) for docs/benchmarks.md. Built
# only with CUDA; it runs without a GPU too (prints SKIPPED). scripts/bench_gpu.py runs it.
if(SWITCHC_CUDA)
  add_executable(bench_gemm_cuda ${CMAKE_SOURCE_DIR}/bench/bench_gemm_cuda.cu)
  target_link_libraries(bench_gemm_cuda PRIVATE CUDA::cudart CUDA::cublasLt ${CMAKE_DL_LIBS})

  # cuDNN is optional here: linked when found (its version then comes from the library switchc links), otherwise the
  # program looks for libcudnn.so at run time. Looked for beside the CUDA toolkit, under CUDNN_ROOT / CUDNN_PATH, and
  # in the standard places.
  find_path(SX_BENCH_CUDNN_INCLUDE_DIR cudnn_version.h
            HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{CUDNN_ROOT} $ENV{CUDNN_PATH} PATH_SUFFIXES include)
  find_library(SX_BENCH_CUDNN_LIBRARY cudnn
               HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib $ENV{CUDNN_ROOT} $ENV{CUDNN_PATH}
               PATH_SUFFIXES lib lib64)
  if(SX_BENCH_CUDNN_INCLUDE_DIR AND SX_BENCH_CUDNN_LIBRARY)
    target_compile_definitions(bench_gemm_cuda PRIVATE SX_HAVE_CUDNN=1)
    target_include_directories(bench_gemm_cuda PRIVATE ${SX_BENCH_CUDNN_INCLUDE_DIR})
    target_link_libraries(bench_gemm_cuda PRIVATE ${SX_BENCH_CUDNN_LIBRARY})
    message(STATUS "switchc: bench_gemm_cuda links cuDNN ${SX_BENCH_CUDNN_LIBRARY}")
  else()
    message(STATUS "switchc: cuDNN not found; bench_gemm_cuda looks for libcudnn.so at run time")
  endif()

  if(SWITCHC_NCCL)  # NCCL_INCLUDE_DIR and NCCL_LIBRARY were found by CMakeLists.txt
    target_compile_definitions(bench_gemm_cuda PRIVATE SWITCHC_HAVE_NCCL=1)
    target_include_directories(bench_gemm_cuda PRIVATE ${NCCL_INCLUDE_DIR})
    target_link_libraries(bench_gemm_cuda PRIVATE ${NCCL_LIBRARY})
  endif()
endif()
