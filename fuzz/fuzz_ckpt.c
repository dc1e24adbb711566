/* libFuzzer target: the checkpoint reader on arbitrary bytes (written to a file, since HDF5 opens files): the run
 * config stored inside, then every parameter of the model it describes, as `switchc eval --checkpoint` loads them.
 * Model configs that would need more than 64 MB are skipped (the fuzzer looks for reader bugs, not allocations). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include <hdf5.h>

#include "train/model/model.h"
#include "train/run_config.h"
#include "train/trainer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    static int once;
    if (!once) {
        snprintf(path, sizeof path, "/tmp/fuzz_ckpt_%d.h5", (int)getpid());
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* HDF5's own error stack printing off: the status says it */
        once = 1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    run_config cfg;
    sx_status s = trainer_config_from_checkpoint(path, &cfg);
    if (!s.ok) return 0;
    double floats = (double)cfg.model.vocab_size * cfg.model.d_model * 2 +
                    (double)(cfg.model.num_layers + cfg.model.num_decoder_layers) * cfg.model.d_model * cfg.model.d_ff * 3 *
                        (cfg.model.num_experts > 0 ? cfg.model.num_experts : 1);
    if (floats > 16e6) return 0;
    model m;
    if (!model_init_inference(&m, &cfg.model).ok) return 0;
    trainer_load_params(&m, path);
    model_free(&m);
    return 0;
}
