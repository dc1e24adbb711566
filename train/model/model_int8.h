/* 8-bit inference weights for the model: the nn.Linear weights that transformers' load_in_8bit replaces by
 * bitsandbytes' Linear8bitLt (every one of SwitchTransformersForConditionalGeneration but lm_head: attention q, k, v,
 * o; the dense FFN's wi/wi_0/wi_1/wo; each expert's, per expert; the router classifier; the embedding, the relative
 * bias table and the layer norms are not nn.Linear and stay f32), quantized row-wise as LLM.int8 (autograd/ag_int8.h),
 * and the f32 pages of those weights returned to the system. */
#ifndef SX_TRAIN_MODEL_INT8_H
#define SX_TRAIN_MODEL_INT8_H

#include "train/model/model.h"

/* Quantizes m's Linear weights (a CPU f32 model holding every expert) with the outlier threshold (bitsandbytes'
 * llm_int8_threshold, default 6.0; <= 0: no outlier decomposition). The quantized tensors' f32 data is released
 * (their m->t[i]->data set to NULL): the model then serves inference only (forward without gradients, generate,
 * encode), in CPU contexts. */
sx_status model_quantize_int8(model *m, double threshold);
/* Frees the int8 weights (model_free calls it). */
void model_int8_free(model *m);
/* The weight bytes the model holds: f32 parameters still kept plus int8 values and scales. */
size_t model_weight_bytes(const model *m);
/* The int8 forms of a sparse block's router and experts into w (for moe_switch_forward). */
void model_int8_moe_weights(const model *m, const block_params *bp, moe_weights *w);

#endif
