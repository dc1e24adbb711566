/* `switchc prepare`: examples in JSONL or TSV (token ids) -> an HDF5 token dataset (data/dataset.h). */
#ifndef SX_DATA_PREPARE_H
#define SX_DATA_PREPARE_H

/* argv[0] is "prepare"; returns the process exit code. */
int data_prepare_main(int argc, char **argv);

#endif
