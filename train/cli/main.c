/* The switchc command line: one executable, one subcommand per job (DESIGN.md 7). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    (void)argc; (void)argv;
    printf("switchc\n");
    return 0;
}
