/* Backend selection: the op table for a device. The CPU table is the reference; the CUDA table covers the ops
 * that have device kernels (autograd/cuda/), each tested against the CPU one. */
#include "autograd/ag.h"
#include "autograd/ag_cuda.h"

const ag_op_entry *ag_cpu_op_table(void);

const ag_op_entry *ag_op_table(ag_device dev) {
    static const ag_op_entry *cpu;
    if (dev == AG_DEV_CPU) {
        if (!cpu) cpu = ag_cpu_op_table();
        return cpu;
    }
    SX_FATAL("no op table for device %d: the CUDA op table is not part of this build yet (see docs/gpu.md)", (int)dev);
}

const char *ag_op_name(ag_op op) {
    SX_ASSERT(op >= 0 && op < AG_OP_COUNT, "op %d out of range", (int)op);
    return ag_op_table(AG_DEV_CPU)[op].name;
}
