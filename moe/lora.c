/* The experts' LoRA update on the grouped matmul (moe/lora.h): the same grouping as the base weights, so an expert's
 * rows meet only its own adapter, as peft's LoRA on each expert's nn.Linear. */
#include "moe/lora.h"

ag_tensor *moe_lora_add(ag_ctx *ctx, ag_tensor *x, ag_tensor *y, const struct moe_lora *l, ag_tensor *offsets) {
    ag_tensor *xd = ag_dropout(ctx, x, l->dropout, l->key);
    ag_tensor *h = ag_grouped_matmul(ctx, xd, l->a, offsets, true); /* [N, r] */
    ag_tensor *u = ag_grouped_matmul(ctx, h, l->b, offsets, true);  /* [N, out] */
    return ag_add(ctx, y, ag_scale(ctx, u, l->scale));              /* peft: result + lora_B(lora_A(x)) * scaling */
}
