/* What a run asks of LoRA (the run config's "lora" section): rank, alpha, dropout and the linears it adapts. Kept in
 * the model config, so that every model built from a run config (train, eval, generate, export-hf) holds the same
 * adapters; train/lora.h builds and applies them. */
#ifndef SX_TRAIN_LORA_SPEC_H
#define SX_TRAIN_LORA_SPEC_H

#include <stdbool.h>

#define LORA_TARGETS_CAP 8192

typedef struct {
    int r;                          /* rank; 0: no adapters */
    double alpha;                   /* peft's lora_alpha: the update is scaled by alpha / r (alpha / sqrt(r) with rslora) */
    double dropout;                 /* peft's lora_dropout, on the adapter's input (training only) */
    bool rslora;                    /* peft's use_rslora */
    char targets[LORA_TARGETS_CAP]; /* comma-separated patterns over HF module names (train/lora.h) */
} lora_spec;

#endif
