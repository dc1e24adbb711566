/* Fault injection for tests/mpi/fault_test.sh: every rank all-reduces in a loop; one rank dies mid-run (SIGKILL, or
 * an error through par_abort with "error" as argv[2]) while the others wait in the collective. The job must end
 * non-zero within a bounded time: OpenMPI tears the job down when a rank dies, and parallel.timeout_s aborts a
 * collective that never completes. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parallel/par.h"

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "kill";
    par_ctx par;
    sx_status s = par_init(&par, &argc, &argv, 1, PAR_TRANSPORT_MPI, 10.0);
    if (!s.ok) {
        fprintf(stderr, "mpi_fault: %s\n", s.msg);
        return 1;
    }
    for (int it = 0; it < 1000; it++) {
        if (it == 3 && par.world_rank == par.world_size - 1) {
            if (!strcmp(mode, "kill")) raise(SIGKILL);
            if (!strcmp(mode, "hang")) sleep(100000); /* alive but silent: only the collective timeout ends the job */
            par_abort(&par, "injected error at iteration %d", it);
        }
        double v = 1.0;
        s = par_allreduce_sum(par.world, &v, 1, PAR_F64);
        if (!s.ok) par_abort(&par, "%s", s.msg);
        usleep(10000);
    }
    par_finalize(&par);
    return 0; /* not reached when the fault works */
}
