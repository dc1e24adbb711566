/* Finite-difference gradient checks, in f64 on the CPU, of every differentiable op of autograd/ag_ops.def: one test
 * per op, running the op's cases from tests/op_cases.h (shapes with dims of 1, sizes that are not multiples of 8,
 * broadcasts; the tolerance and step of each case and their reasons are there), plus the graphs of several ops.
 * An op with no case that runs here fails its test. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "tests/gradcheck.h"
#include "tests/op_cases.h"

#define TOL 1e-6
#define H 1e-6

static ag_arena A;
static void setup(void) { ag_arena_init(&A, "test-inputs", 1 << 20); }
static void teardown(void) { ag_arena_free(&A); }
TestSuite(grad, .init = setup, .fini = teardown);

/* gc_check's function type (its user pointer is the case) over the case's */
static ag_tensor *apply_case(ag_ctx *ctx, ag_tensor **in, void *user) {
    const oc_case *c = user;
    return c->f(ctx, in, c->arg);
}

static void run_gradcheck(oc_env *e, const oc_case *c) {
    ag_tensor *in[OC_MAX_IN];
    memcpy(in, c->in, sizeof in);
    double tol = c->grad_tol ? c->grad_tol : TOL, h = c->grad_h ? c->grad_h : H;
    gc_result r = gc_check(apply_case, in, c->n_in, (void *)c, h, c->training);
    printf("gradcheck %-28s max rel err %.3e (input %d, index %lld)\n", c->name, r.max_rel, r.worst_input,
           (long long)r.worst_index);
    cr_expect(r.max_rel <= tol, "%s: gradient rel error %.3e > %.1e at input %d index %lld", c->name, r.max_rel, tol,
              r.worst_input, (long long)r.worst_index);
}

static oc_env grad_env(void) {
    return (oc_env){.suite = OC_GRAD, .arena = &A, .dtype = AG_F64, .rng_step = 0, .rng_purpose = 77,
                    .run = run_gradcheck};
}

ParameterizedTestParameters(grad, op) {
    static int ops[AG_OP_COUNT];
    for (int i = 0; i < AG_OP_COUNT; i++) ops[i] = i;
    return cr_make_param_array(int, ops, AG_OP_COUNT);
}

ParameterizedTest(int *op, grad, op) {
    const char *name = ag_op_name((ag_op)*op);
    if (!ag_op_differentiable((ag_op)*op)) {
        printf("gradcheck %s: no gradient (AG_NOGRAD)\n", name);
        return;
    }
    oc_env e = grad_env();
    OC_CASES[*op](&e);
    printf("gradcheck %s: %d cases\n", name, e.n_run);
    cr_expect_eq(e.n_bad, 0, "%s: %d case(s) of tests/op_cases.h do not record the op", name, e.n_bad);
    cr_expect(e.n_run > 0, "%s: no case of tests/op_cases.h runs in the gradient check", name);
}

Test(grad, graphs) {
    oc_env e = grad_env();
    oc_graphs(&e);
    cr_expect(e.n_run > 0);
}
