/* `switchc prepare`: examples in JSONL or TSV (text through a SentencePiece model, or token ids), or raw text one
 * document per line, -> an HDF5 token dataset (data/dataset.h). Also the tokenizer lookup the CLI shares. */
#ifndef SX_DATA_PREPARE_H
#define SX_DATA_PREPARE_H

#include "data/spm.h"

/* argv[0] is "prepare"; returns the process exit code. */
int data_prepare_main(int argc, char **argv);

/* Opens a SentencePiece tokenizer from a .model file, or from a folder's spiece.model (a Hugging Face model folder),
 * with extra_ids T5 sentinels appended. Errors name the file (a folder without spiece.model says so). */
sx_status data_tokenizer_open(const char *model_or_dir, int extra_ids, data_spm **out);

#endif
