# Every command of README.md runs as written: tests/readme_test.sh reads the ```sh blocks at run time and runs each
# command that can run here (switchc, scripts/, python3) in a scratch directory, printing every one it skips (GPU,
# network, the build itself) and every substitution for the downloaded model and the user's data. 1.5-3 minutes
# on 2 shared cores (torch's import and the sweep's 12 runs are most of it).
add_test(NAME readme COMMAND ${CMAKE_SOURCE_DIR}/tests/readme_test.sh $<TARGET_FILE:switchc> ${CMAKE_SOURCE_DIR})
set_tests_properties(readme PROPERTIES LABELS "cpu" TIMEOUT 600 WORKING_DIRECTORY ${CMAKE_BINARY_DIR}
                     ENVIRONMENT "OPENBLAS_NUM_THREADS=1;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
                     FAIL_REGULAR_EXPRESSION "FAIL: ")
