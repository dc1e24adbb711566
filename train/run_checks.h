/* What a run needs, checked before anything is allocated or trained (DESIGN.md 4): the memory a model config's
 * parameters take, the largest activations of a batch, the KV cache of generation, the expert capacity a factor
 * gives, and the data sources the run will read. Each refusal names the config keys or flags and gives the figures,
 * so a config that would need terabytes, drop every token, or fail after the last step fails at once instead. */
#ifndef SX_TRAIN_RUN_CHECKS_H
#define SX_TRAIN_RUN_CHECKS_H

#include <stdbool.h>
#include <stdint.h>

#include "train/run_config.h"

/* Longest --max-len of generate (tokens, EOS included) and most --beams. */
#define RUN_CHECKS_MAX_GEN_LEN 8192
#define RUN_CHECKS_MAX_BEAMS 1024

/* The machine's physical memory in bytes: the bound of every estimate here. */
double run_checks_phys_bytes(void);

/* Parameter memory of a model config: weights (1 copy for inference; 4 for training: weights, gradients and two
 * optimizer moments), for the experts this rank holds (ep_size ranks share them). Refused above physical memory. */
sx_status run_checks_model_memory(const model_config *c, int ep_size, bool training);

/* Cross-field checks of a run beyond run_config_validate's: the factor-mode capacity rule (a capacity of 0 slots is
 * refused, as expert_capacity 0 is) and the largest activations of a training and an evaluation batch. */
sx_status run_checks_validate(const run_config *r);

/* Longest target a run's data can hold (EOS included): the built-in task's task_max_len + 1, a dataset's
 * max_target_len. Generating more than one token past it cannot change an exact match. */
int run_checks_target_bound(const run_config *r);
/* eval.max_gen_len bounded by the data: min(max_gen_len, target bound + 1). */
int run_checks_eval_gen_len(const run_config *r);

/* Generation of B sequences of S input tokens: max_len and beams within their maxima (beams within the vocabulary
 * too), and the KV cache within physical memory. flags names the options for messages ("--max-len/--beams"). */
sx_status run_checks_generate(const model_config *c, int64_t B, int64_t S, int64_t max_len, int64_t beams,
                              const char *flags);

/* Opens (and closes) the training data and, when need_eval, the evaluation data, so a missing or mismatched dataset
 * fails before the model is built and the first step runs, rather than after the last. */
sx_status run_checks_preflight(const run_config *r, bool need_eval);

#endif
