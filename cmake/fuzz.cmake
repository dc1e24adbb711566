# libFuzzer targets (clang only): cmake -S . -B build-fuzz -DSWITCHC_FUZZ=ON -DSWITCHC_CUDA=OFF -DCMAKE_C_COMPILER=clang
# then scripts/fuzz.sh runs each for a given time. The targets compile the parsers' sources directly, instrumented.
if(SWITCHC_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "SWITCHC_FUZZ needs clang (CC=clang or -DCMAKE_C_COMPILER=clang)")
  endif()
  set(SX_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer -g -O1)
  set(SX_HF_SRCS ${CMAKE_SOURCE_DIR}/train/hf/hf_weights.c ${CMAKE_SOURCE_DIR}/train/hf/hf_safetensors.c ${CMAKE_SOURCE_DIR}/train/hf/hf_torchbin.c
      ${CMAKE_SOURCE_DIR}/train/cfg_util.c ${CMAKE_SOURCE_DIR}/autograd/sx_error.c
      ${CMAKE_SOURCE_DIR}/autograd/sx_file.c ${CMAKE_SOURCE_DIR}/autograd/tensor.c
      ${CMAKE_SOURCE_DIR}/autograd/cuda_stub.c) # tensor.c calls the CUDA host functions (stubs without CUDA)
  foreach(t fuzz_safetensors fuzz_torchbin)
    add_executable(${t} ${CMAKE_SOURCE_DIR}/fuzz/${t}.c ${SX_HF_SRCS})
    target_compile_options(${t} PRIVATE ${SX_FUZZ_FLAGS})
    target_link_options(${t} PRIVATE ${SX_FUZZ_FLAGS})
    target_include_directories(${t} PRIVATE ${CMAKE_SOURCE_DIR})
    target_link_libraries(${t} PRIVATE PkgConfig::CJSON ${MATH_LIB})
  endforeach()
  # the SentencePiece reader, tokenizer and decoder (data/spm*.c)
  add_executable(fuzz_spm ${CMAKE_SOURCE_DIR}/fuzz/fuzz_spm.c ${CMAKE_SOURCE_DIR}/data/spm.c ${CMAKE_SOURCE_DIR}/data/spm_trie.c
                 ${CMAKE_SOURCE_DIR}/autograd/sx_error.c ${CMAKE_SOURCE_DIR}/autograd/sx_file.c)
  target_compile_options(fuzz_spm PRIVATE ${SX_FUZZ_FLAGS})
  target_link_options(fuzz_spm PRIVATE ${SX_FUZZ_FLAGS})
  target_include_directories(fuzz_spm PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(fuzz_spm PRIVATE ${MATH_LIB} pthread)
  # the run config / HF config.json readers and the checkpoint reader: the whole project's sources, instrumented
  # (they reach most of train/), linked into each target
  file(GLOB SX_FUZZ_ALL CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/autograd/*.c ${CMAKE_SOURCE_DIR}/autograd/cpu/*.c
       ${CMAKE_SOURCE_DIR}/parallel/*.c ${CMAKE_SOURCE_DIR}/moe/*.c ${CMAKE_SOURCE_DIR}/data/*.c ${CMAKE_SOURCE_DIR}/train/*.c
       ${CMAKE_SOURCE_DIR}/train/model/*.c ${CMAKE_SOURCE_DIR}/train/hf/*.c)
  foreach(t fuzz_config fuzz_ckpt)
    add_executable(${t} ${CMAKE_SOURCE_DIR}/fuzz/${t}.c ${SX_FUZZ_ALL})
    target_compile_options(${t} PRIVATE ${SX_FUZZ_FLAGS})
    target_link_options(${t} PRIVATE ${SX_FUZZ_FLAGS})
    target_include_directories(${t} PRIVATE ${CMAKE_SOURCE_DIR} ${HDF5_C_INCLUDE_DIRS})
    target_link_libraries(${t} PRIVATE PkgConfig::CJSON PkgConfig::OPENBLAS ${HDF5_C_LIBRARIES} Threads::Threads ${MATH_LIB})
  endforeach()
endif()
