# Multi-rank tests: plain programs run under mpirun by CTest (Criterion's one-process-per-test model cannot host
# MPI). As root in CI containers, mpirun needs --allow-run-as-root; --oversubscribe lets 4 ranks share 2 cores.
if(SWITCHC_MPI)
  set(SX_MPIRUN ${MPIEXEC_EXECUTABLE} --oversubscribe --allow-run-as-root --bind-to none --mca btl self,vader
      --mca btl_vader_single_copy_mechanism none)
  file(GLOB SX_MPI_TEST_SRCS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/mpi/mpi_*.c)
  foreach(src ${SX_MPI_TEST_SRCS})
    get_filename_component(tname ${src} NAME_WE)
    add_executable(${tname} ${src})
    target_link_libraries(${tname} PRIVATE ${SX_ALL_LIBS})
    target_compile_definitions(${tname} PRIVATE SX_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  endforeach()
  # the same global batch on 1, 2 and 4 ranks, for every expert-parallel size that divides the rank count
  foreach(np 1 2 4)
    foreach(ep 1 2 4)
      math(EXPR rem "${np} % ${ep}")
      if(ep LESS_EQUAL np AND rem EQUAL 0)
        add_test(NAME mpi_parity_np${np}_ep${ep} COMMAND ${SX_MPIRUN} -np ${np} $<TARGET_FILE:mpi_parity> ${ep})
        set_tests_properties(mpi_parity_np${np}_ep${ep} PROPERTIES LABELS "mpi" TIMEOUT 600 WORKING_DIRECTORY ${CMAKE_BINARY_DIR}
                             ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OPENBLAS_NUM_THREADS=1")
      endif()
    endforeach()
  endforeach()
  # the fine-tuning trajectories of transformers (tests/fixtures/finetune) with expert parallelism 1, 2 and 4
  foreach(case adamw adafactor)
    foreach(cfg "2;1" "2;2" "4;4")
      list(GET cfg 0 np)
      list(GET cfg 1 ep)
      add_test(NAME mpi_finetune_${case}_np${np}_ep${ep} COMMAND ${SX_MPIRUN} -np ${np} $<TARGET_FILE:mpi_finetune> ${case} ${ep})
      set_tests_properties(mpi_finetune_${case}_np${np}_ep${ep} PROPERTIES LABELS "mpi" TIMEOUT 600 WORKING_DIRECTORY ${CMAKE_BINARY_DIR}
                           ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OPENBLAS_NUM_THREADS=1")
    endforeach()
  endforeach()
  if(TARGET mpi_fault)
    add_test(NAME mpi_fault_kill_one_rank COMMAND ${CMAKE_SOURCE_DIR}/tests/mpi/fault_test.sh ${MPIEXEC_EXECUTABLE} $<TARGET_FILE:mpi_fault>)
    set_tests_properties(mpi_fault_kill_one_rank PROPERTIES LABELS "mpi" TIMEOUT 120 WORKING_DIRECTORY ${CMAKE_BINARY_DIR}
                         ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OPENBLAS_NUM_THREADS=1")
  endif()
endif()
