# The text path end to end, as a user runs it: the built switchc prepares the committed text task
# (tests/fixtures/text_task, from scripts/make_text_task.py) with its spiece.model, trains a tiny model, evaluates and
# generates text. A shell script, since it drives the executable; about 10 s on 2 cores.
add_test(NAME text_task COMMAND ${CMAKE_SOURCE_DIR}/tests/text_task_test.sh $<TARGET_FILE:switchc> ${CMAKE_SOURCE_DIR})
set_tests_properties(text_task PROPERTIES LABELS "cpu" TIMEOUT 300 WORKING_DIRECTORY ${CMAKE_BINARY_DIR}
                     ENVIRONMENT "OPENBLAS_NUM_THREADS=1;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
                     FAIL_REGULAR_EXPRESSION "FAIL: ")
# The run config as the CLI builds it (demo vs library defaults, --set model.* over --init-from, freeze patterns).
add_test(NAME cli_config COMMAND ${CMAKE_SOURCE_DIR}/tests/cli_config_test.sh $<TARGET_FILE:switchc> ${CMAKE_SOURCE_DIR})
set_tests_properties(cli_config PROPERTIES LABELS "cpu" TIMEOUT 120 WORKING_DIRECTORY ${CMAKE_BINARY_DIR}
                     ENVIRONMENT "OPENBLAS_NUM_THREADS=1" FAIL_REGULAR_EXPRESSION "FAIL: ")
