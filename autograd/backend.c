/* Backend selection: the op table for a device, and what autograd/ag_ops.def says of each op (its name, whether it
 * has a gradient). The CPU table is the reference; the CUDA table (autograd/cuda/, present in builds with
 * SWITCHC_CUDA) has an entry for every op (or an AG_UNSUPPORTED marker), each tested against the CPU one
 * (tests/gpu/test_gpu_ops.c). */
#include "autograd/ag.h"
#include "autograd/ag_cuda.h"
#include "autograd/ag_internal.h"

const ag_op_entry *ag_cpu_op_table(void);

static const char *const op_names[] = {
#define AG_OP(E, name, grad) [AG_OP_##E] = #name,
#include "autograd/ag_ops.def"
};
static const bool op_grad[] = {
#define AG_OP(E, name, grad) [AG_OP_##E] = grad,
#include "autograd/ag_ops.def"
};
_Static_assert(sizeof op_names / sizeof op_names[0] == AG_OP_COUNT, "one name per AG_OP_*");

const ag_op_entry *ag_op_table(ag_device dev) {
    static const ag_op_entry *cpu, *cuda;
    if (dev == AG_DEV_CPU) {
        if (!cpu) cpu = ag_op_table_checked(ag_cpu_op_table(), "CPU (autograd/cpu/kernels.c)", false);
        return cpu;
    }
    if (dev == AG_DEV_CUDA) {
        /* ag_cuda_op_table aborts naming the build when CUDA is not compiled in */
        if (!cuda) cuda = ag_op_table_checked(ag_cuda_op_table(), "CUDA (autograd/cuda/table.c)", true);
        return cuda;
    }
    SX_FATAL("no op table for device %d", (int)dev);
}

const ag_op_entry *ag_op_table_checked(const ag_op_entry *t, const char *backend, bool may_lack_ops) {
    for (int i = 0; i < AG_OP_COUNT; i++) {
        const ag_op_entry *e = &t[i];
        const char *name = op_names[i];
        if (e->unsupported) {
            SX_ASSERT(may_lack_ops, "%s op table: '%s' is marked unsupported, but this backend must have every op",
                      backend, name);
            SX_ASSERT(!e->forward && !e->backward, "%s op table: '%s' is marked unsupported and has kernels", backend,
                      name);
            continue;
        }
        SX_ASSERT(e->forward, "%s op table: no entry for '%s' (add its kernels%s)", backend, name,
                  may_lack_ops ? ", or mark it AG_UNSUPPORTED(\"why\")" : "");
        SX_ASSERT(!e->backward == !op_grad[i], "%s op table: '%s' %s a backward, but ag_ops.def says %s", backend, name,
                  e->backward ? "has" : "lacks", op_grad[i] ? "AG_GRAD" : "AG_NOGRAD");
    }
    return t;
}

const char *ag_op_name(ag_op op) {
    SX_ASSERT(op >= 0 && op < AG_OP_COUNT, "op %d out of range", (int)op);
    return op_names[op];
}

bool ag_op_differentiable(ag_op op) {
    SX_ASSERT(op >= 0 && op < AG_OP_COUNT, "op %d out of range", (int)op);
    return op_grad[op];
}
