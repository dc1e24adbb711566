/* Backend selection: the op table for a device. The CPU table is the reference; the CUDA table (autograd/cuda/,
 * present in builds with SWITCHC_CUDA) has the same entries, each tested against the CPU one (tests/gpu/). */
#include "autograd/ag.h"
#include "autograd/ag_cuda.h"

const ag_op_entry *ag_cpu_op_table(void);

const ag_op_entry *ag_op_table(ag_device dev) {
    static const ag_op_entry *cpu, *cuda;
    if (dev == AG_DEV_CPU) {
        if (!cpu) cpu = ag_cpu_op_table();
        return cpu;
    }
    if (dev == AG_DEV_CUDA) {
        if (!cuda) cuda = ag_cuda_op_table(); /* aborts naming the build when CUDA is not compiled in */
        return cuda;
    }
    SX_FATAL("no op table for device %d", (int)dev);
}

const char *ag_op_name(ag_op op) {
    SX_ASSERT(op >= 0 && op < AG_OP_COUNT, "op %d out of range", (int)op);
    return ag_op_table(AG_DEV_CPU)[op].name;
}
