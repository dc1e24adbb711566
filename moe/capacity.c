/* Expert capacity policies (moe/capacity.h). */
#include "moe/capacity.h"

#include <math.h>

int64_t moe_capacity_from_factor(double cf, int64_t group_tokens, int num_experts, int min_capacity) {
    if (cf <= 0) return -1;
    int64_t c = (int64_t)llround(cf * (double)group_tokens / (double)num_experts);
    return c > min_capacity ? c : min_capacity;
}

moe_capacity_plan moe_capacity_for(const moe_capacity_policy *p, int num_experts, int64_t n_tokens, int64_t seq_len, bool training) {
    if (p->mode == MOE_CAPACITY_HF) return (moe_capacity_plan){seq_len, p->expert_capacity}; /* one group per sequence */
    int64_t g = p->group_size > 0 && n_tokens % p->group_size == 0 ? p->group_size : n_tokens;
    return (moe_capacity_plan){g, moe_capacity_from_factor(training ? p->train_factor : p->eval_factor, g, num_experts, p->min_capacity)};
}
