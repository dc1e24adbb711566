/* Every op of the CUDA table against the CPU table (DESIGN.md 6: the chain of trust CPU -> CUDA): one test per op
 * of autograd/ag_ops.def, running the op's cases from tests/op_cases.h (random f32 inputs on several shapes: dims of
 * 1, sizes that are not multiples of 8, broadcasts) forward and backward on both devices, |gpu - cpu| <= atol +
 * rtol |cpu| per tensor, with the tolerance and its reason beside each case there. An op with no case that runs
 * here fails its test; an op the CUDA table marks AG_UNSUPPORTED is reported, not compared. SKIPPED (visibly)
 * without a GPU. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>

#include "tests/gpu/gpu_compare.h"
#include "tests/op_cases.h"

static ag_arena L; /* host leaves of the current test */
static void setup(void) { ag_arena_init(&L, "leaves", 1 << 20); }
static void teardown(void) { ag_arena_free(&L); }
TestSuite(gpu_ops, .init = setup, .fini = teardown);

static void run_compare(oc_env *e, const oc_case *c) {
    ag_tensor *in[OC_MAX_IN];
    memcpy(in, c->in, sizeof in);
    g_check_op(c->name, c->f, c->arg, in, c->n_in, c->training, (gtol){c->fwd.atol, c->fwd.rtol},
               (gtol){c->bwd.atol, c->bwd.rtol});
}

/* the random inputs of g_rand (gpu_compare.h) */
static oc_env gpu_env(void) {
    return (oc_env){.suite = OC_GPU, .arena = &L, .dtype = AG_F32, .rng_step = 7, .rng_purpose = 11,
                    .run = run_compare};
}

ParameterizedTestParameters(gpu_ops, op) {
    static int ops[AG_OP_COUNT];
    for (int i = 0; i < AG_OP_COUNT; i++) ops[i] = i;
    return cr_make_param_array(int, ops, AG_OP_COUNT);
}

ParameterizedTest(int *op, gpu_ops, op) {
    const char *name = ag_op_name((ag_op)*op);
    char what[64];
    snprintf(what, sizeof what, "gpu_ops::%s", name);
    GPU_OR_SKIP(what);
    const char *why = ag_op_table(AG_DEV_CUDA)[*op].unsupported;
    if (why) {
        printf("gpu-ops %s: not on CUDA (%s): not compared\n", name, why);
        return;
    }
    oc_env e = gpu_env();
    OC_CASES[*op](&e);
    printf("gpu-ops %s: %d cases\n", name, e.n_run);
    cr_expect_eq(e.n_bad, 0, "%s: %d case(s) of tests/op_cases.h do not record the op", name, e.n_bad);
    cr_expect(e.n_run > 0, "%s: no case of tests/op_cases.h runs in the CPU-vs-CUDA test", name);
}

Test(gpu_ops, graphs) {
    GPU_OR_SKIP("gpu_ops::graphs");
    oc_env e = gpu_env();
    oc_graphs(&e);
}

/* A fully masked row of the causal mask must come out exactly uniform on the device (1/7 in every entry), as the
 * CPU makes it: the comparison above allows 1e-7. */
Test(gpu_ops, softmax_fully_masked_row_uniform) {
    GPU_OR_SKIP("gpu_ops::softmax_fully_masked_row_uniform");
    oc_env e = gpu_env();
    ag_tensor *x, *bias;
    oc_scores(&e, &x, &bias);
    g_pair p;
    g_pair_init(&p, false);
    ag_tensor *dx = ag_tensor_to_device(&p.dev_leaves, x), *db = ag_tensor_to_device(&p.dev_leaves, bias);
    ag_tensor *dc = ag_tensor_to_device(&p.dev_leaves, oc_causal(&e));
    ag_tensor *y = ag_softmax(&p.gpu, dx, db, dc);
    int bad = 0;
    for (int b = 0; b < 2; b++)
        for (int h = 0; h < 3; h++)
            for (int j = 0; j < 7; j++) bad += ag_get(y, ((b * 3 + h) * 5) * 7 + j) != (float)(1.0 / 7.0);
    cr_expect_eq(bad, 0, "softmax on CUDA: %d entries of the fully masked rows are not exactly 1/7", bad);
    g_pair_free(&p);
}
