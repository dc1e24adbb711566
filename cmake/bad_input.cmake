# The bad-input suite (tests/bad_input): the built switchc fed a table of bad inputs made at run time (configs, --set
# values, flags, HF folders, pickles, safetensors, checkpoints, datasets, tokenizer models, output paths, a full disk);
# each must fail with one clear line naming the file, key or line, and never crash, hang or trip a sanitizer. With
# SWITCHC_SANITIZE=ON it runs the sanitizer build. About 2 minutes on 2 cores.
add_test(NAME bad_input COMMAND ${CMAKE_SOURCE_DIR}/tests/bad_input/run.sh $<TARGET_FILE:switchc> ${CMAKE_SOURCE_DIR})
set_tests_properties(bad_input PROPERTIES LABELS "cpu" TIMEOUT 900 WORKING_DIRECTORY ${CMAKE_BINARY_DIR}
                     ENVIRONMENT "OPENBLAS_NUM_THREADS=1;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
                     FAIL_REGULAR_EXPRESSION "FAIL: ")
