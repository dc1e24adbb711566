# bench_model's LoRA flags (scripts/bench_lora.py drives them): bad values are errors, a tiny LoRA step runs and
# reports its adapters. A shell script, since it drives the executable; about 1 s.
add_test(NAME bench_model_args COMMAND ${CMAKE_SOURCE_DIR}/tests/bench_model_args_test.sh $<TARGET_FILE:bench_model> ${CMAKE_SOURCE_DIR})
set_tests_properties(bench_model_args PROPERTIES LABELS "cpu" TIMEOUT 120 WORKING_DIRECTORY ${CMAKE_BINARY_DIR}
                     ENVIRONMENT "OPENBLAS_NUM_THREADS=1" FAIL_REGULAR_EXPRESSION "FAIL: ")
