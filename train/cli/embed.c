/* switchc embed: the encoder alone (SwitchTransformersEncoderModel semantics: the last hidden state after the final
 * layer norm, optionally each sparse layer's router logits) over a file of inputs, batched in length order, written
 * to HDF5 (padded with a mask, or a group per example) or .npy; mean pooling over the non-pad tokens. */
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/sx_file.h"
#include "train/cli/cli.h"
#include "train/trainer.h"

static void embed_help(void) {
    printf(
        "usage: switchc embed --model DIR|CKPT --input-file F --output OUT.h5|OUT.npy [options]\n"
        "\n"
        "Runs the encoder alone over every input of F, as transformers' SwitchTransformersEncoderModel (eval mode):\n"
        "the last hidden state after the final layer norm, one D-vector per token, in batches of inputs of similar\n"
        "length. The inputs are read as by switchc generate --input-file (JSONL \"input\" text or ids, or one per\n"
        "line), text tokenized with the model's spiece.model (EOS appended).\n"
        "\n"
        "  --model DIR|CKPT     an HF folder or a switchc checkpoint (--checkpoint is the same flag)\n"
        "  --input-file F       the inputs\n"
        "  --output OUT         .h5: HDF5; .npy: one NumPy array (float32, little-endian)\n"
        "  --pool mean|none     mean: one vector per input, the mean over its tokens (padding excluded):\n"
        "                       pooled [N, D]. none (default): every token's vector\n"
        "  --layout padded|per-example   HDF5 with --pool none: padded (default) writes hidden [N, S, D] with\n"
        "                       zeros past each input, mask [N, S] (1 = token) and lengths [N]; per-example writes\n"
        "                       a group example_<i> per input holding hidden [len_i, D]. A .npy gets the padded\n"
        "                       array, and its mask beside it as OUT.mask.npy (int8)\n"
        "  --router-logits      HDF5 only: the raw router logits of each sparse encoder layer, as\n"
        "                       router_logits/block_<b> [N, S, E] (padded) or example_<i>/router_logits/block_<b>\n"
        "  --batch-size N       inputs encoded together (default 16)\n"
        "  --token-ids          the lines of a plain input file are ids even when the model has a tokenizer\n"
        "  --spm PATH.model     the tokenizer (default: the model's, as switchc generate)\n"
        "  --extra-ids N        T5 sentinels after the pieces (default 100)\n"
        CLI_INT8_HELP
        "\n"
        "Every HDF5 file also holds lengths [N] and input_ids (padded [N, S], or per example).\n"
        "\n"
        "Examples:\n"
        "  switchc embed --model switch-base-8/ --input-file texts.txt --output emb.h5 --pool mean\n"
        "  switchc embed --model switch-base-8/ --input-file texts.jsonl --output states.h5 --router-logits\n"
        "  switchc embed --model switch-base-8/ --input-file texts.txt --output emb.npy --pool mean\n");
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* ---- writers: HDF5 (padded or per example) and .npy -------------------------------------------------------------- */

typedef struct {
    const char *path;
    bool npy, padded, pooled, routes;
    int64_t N, S, D, E;
    int n_sparse;
    const int *sparse_block; /* encoder block of each sparse layer */
    hid_t f;                 /* HDF5 */
    hid_t hidden, mask, pooled_ds, *router;
    FILE *npy_f, *npy_mask;
    long npy_base, npy_mask_base; /* where the arrays' data start (after the headers) */
} embed_writer;

static sx_status h5_err(const embed_writer *w, const char *what) {
    return sx_errorf("%s: cannot write %s (HDF5)", w->path, what);
}

static hid_t h5_dataset(hid_t loc, const char *name, hid_t type, int nd, const hsize_t *dims) {
    hid_t sp = H5Screate_simple(nd, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(loc, name, type, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Sclose(sp);
    return d;
}

/* rows [row, row+1) of an [N, ...] dataset from buf */
static bool h5_write_row(hid_t d, hid_t type, int64_t row, int nd, const hsize_t *dims, const void *buf) {
    hsize_t start[4] = {(hsize_t)row, 0, 0, 0}, count[4];
    count[0] = 1;
    for (int i = 1; i < nd; i++) count[i] = dims[i];
    hid_t fs = H5Dget_space(d);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(nd, count, NULL);
    bool ok = H5Dwrite(d, type, ms, fs, H5P_DEFAULT, buf) >= 0;
    H5Sclose(ms);
    H5Sclose(fs);
    return ok;
}

static sx_status npy_header(FILE *f, const char *descr, int nd, const int64_t *shape, const char *path) {
    char dict[256], shp[128] = "";
    for (int i = 0; i < nd; i++)
        snprintf(shp + strlen(shp), sizeof shp - strlen(shp), nd == 1 ? "%lld," : i ? ", %lld" : "%lld",
                 (long long)shape[i]);
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shp);
    int total = 10 + n + 1, pad = (64 - total % 64) % 64; /* the header (with its newline) ends on 64 bytes */
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    uint16_t hl = (uint16_t)(n + pad + 1);
    pre[8] = (unsigned char)(hl & 0xff);
    pre[9] = (unsigned char)(hl >> 8);
    bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)n, f) == (size_t)n;
    for (int i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    return ok ? sx_ok() : sx_errorf("%s: cannot write: %s", path, strerror(errno));
}

static sx_status writer_open(embed_writer *w, const char *model_path) {
    if (w->npy) {
        int64_t shape[3] = {w->N, w->pooled ? w->D : w->S, w->D};
        w->npy_f = fopen(w->path, "wb");
        if (!w->npy_f) return sx_errorf("%s: cannot create: %s", w->path, strerror(errno));
        SX_TRY(npy_header(w->npy_f, "<f4", w->pooled ? 2 : 3, shape, w->path));
        w->npy_base = ftell(w->npy_f);
        if (!w->pooled) {
            char mp[1100];
            snprintf(mp, sizeof mp, "%.*s.mask.npy", (int)(strlen(w->path) - 4), w->path);
            w->npy_mask = fopen(mp, "wb");
            if (!w->npy_mask) return sx_errorf("%s: cannot create: %s", mp, strerror(errno));
            SX_TRY(npy_header(w->npy_mask, "|i1", 2, shape, mp));
            w->npy_mask_base = ftell(w->npy_mask);
        }
        return sx_ok();
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    w->f = H5Fcreate(w->path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->f < 0) return sx_errorf("%s: cannot create the HDF5 file", w->path);
    hid_t sp = H5Screate(H5S_SCALAR), st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, strlen(model_path) + 1);
    hid_t a = H5Acreate2(w->f, "model", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, model_path);
    H5Aclose(a);
    H5Tclose(st);
    H5Sclose(sp);
    hsize_t d3[3] = {(hsize_t)w->N, (hsize_t)w->S, (hsize_t)w->D}, d2[2] = {(hsize_t)w->N, (hsize_t)w->S};
    hsize_t dp[2] = {(hsize_t)w->N, (hsize_t)w->D};
    if (w->pooled) {
        w->pooled_ds = h5_dataset(w->f, "pooled", H5T_IEEE_F32LE, 2, dp);
        if (w->pooled_ds < 0) return h5_err(w, "pooled");
    }
    if (w->padded) {
        if (!w->pooled && (w->hidden = h5_dataset(w->f, "hidden", H5T_IEEE_F32LE, 3, d3)) < 0)
            return h5_err(w, "hidden");
        if ((w->mask = h5_dataset(w->f, "mask", H5T_STD_I8LE, 2, d2)) < 0) return h5_err(w, "mask");
        hid_t ids = h5_dataset(w->f, "input_ids", H5T_STD_I32LE, 2, d2);
        if (ids < 0) return h5_err(w, "input_ids");
        H5Dclose(ids);
    }
    hsize_t dl[1] = {(hsize_t)w->N};
    hid_t len = h5_dataset(w->f, "lengths", H5T_STD_I32LE, 1, dl);
    if (len < 0) return h5_err(w, "lengths");
    H5Dclose(len);
    if (w->routes) {
        w->router = calloc((size_t)(w->n_sparse > 0 ? w->n_sparse : 1), sizeof(hid_t));
        for (int l = 0; l < w->n_sparse && w->padded; l++) {
            char name[64];
            snprintf(name, sizeof name, "router_logits/block_%d", w->sparse_block[l]);
            hsize_t dr[3] = {(hsize_t)w->N, (hsize_t)w->S, (hsize_t)w->E};
            if ((w->router[l] = h5_dataset(w->f, name, H5T_IEEE_F32LE, 3, dr)) < 0) return h5_err(w, name);
        }
    }
    return sx_ok();
}

/* one input's results: hidden [n, D] (and router logits [n, E] per sparse layer) into row i */
static sx_status writer_put(embed_writer *w, int64_t i, const int32_t *ids, int64_t n, const float *hidden,
                            const float *const *router) {
    int64_t S = w->padded ? w->S : n, D = w->D;
    float *row = calloc((size_t)(S * (D > w->E ? D : w->E) + D), sizeof(float));
    float *pool = row + S * (D > w->E ? D : w->E);
    sx_status st = sx_ok();
    if (w->pooled) { /* the mean over the n real tokens, summed in double */
        for (int64_t d = 0; d < D; d++) {
            double acc = 0;
            for (int64_t s = 0; s < n; s++) acc += hidden[s * D + d];
            pool[d] = (float)(acc / (double)n);
        }
    }
    if (w->npy) {
        /* rows come in length order: each is written at its place */
        int64_t cnt = w->pooled ? D : w->S * D;
        const float *src = w->pooled ? pool : row;
        if (!w->pooled) memcpy(row, hidden, sizeof(float) * (size_t)(n * D));
        if (fseek(w->npy_f, w->npy_base + (long)(i * cnt * 4), SEEK_SET) ||
            fwrite(src, sizeof(float), (size_t)cnt, w->npy_f) != (size_t)cnt)
            st = sx_errorf("%s: cannot write: %s", w->path, strerror(errno));
        if (st.ok && w->npy_mask) {
            int8_t *mk = calloc((size_t)w->S, 1);
            for (int64_t s = 0; s < n; s++) mk[s] = 1;
            if (fseek(w->npy_mask, w->npy_mask_base + (long)(i * w->S), SEEK_SET) ||
                fwrite(mk, 1, (size_t)w->S, w->npy_mask) != (size_t)w->S)
                st = sx_errorf("%s.mask.npy: cannot write: %s", w->path, strerror(errno));
            free(mk);
        }
        free(row);
        return st;
    }
    hsize_t dl[1] = {(hsize_t)w->N};
    int32_t len32 = (int32_t)n;
    hid_t ld = H5Dopen2(w->f, "lengths", H5P_DEFAULT);
    bool ok = ld >= 0 && h5_write_row(ld, H5T_NATIVE_INT32, i, 1, dl, &len32);
    if (ld >= 0) H5Dclose(ld);
    if (ok && w->pooled) {
        hsize_t dp[2] = {(hsize_t)w->N, (hsize_t)D};
        ok = h5_write_row(w->pooled_ds, H5T_NATIVE_FLOAT, i, 2, dp, pool);
    }
    if (ok && w->padded) {
        hsize_t d3[3] = {(hsize_t)w->N, (hsize_t)w->S, (hsize_t)D}, d2[2] = {(hsize_t)w->N, (hsize_t)w->S};
        if (!w->pooled) {
            memcpy(row, hidden, sizeof(float) * (size_t)(n * D));
            ok = h5_write_row(w->hidden, H5T_NATIVE_FLOAT, i, 3, d3, row);
        }
        int8_t *mk = calloc((size_t)w->S, 1);
        int32_t *id = calloc((size_t)w->S, sizeof(int32_t));
        for (int64_t s = 0; s < n; s++) {
            mk[s] = 1;
            id[s] = ids[s];
        }
        ok = ok && h5_write_row(w->mask, H5T_NATIVE_INT8, i, 2, d2, mk);
        hid_t idd = H5Dopen2(w->f, "input_ids", H5P_DEFAULT);
        ok = ok && idd >= 0 && h5_write_row(idd, H5T_NATIVE_INT32, i, 2, d2, id);
        if (idd >= 0) H5Dclose(idd);
        free(mk);
        free(id);
        for (int l = 0; ok && w->routes && l < w->n_sparse; l++) {
            hsize_t dr[3] = {(hsize_t)w->N, (hsize_t)w->S, (hsize_t)w->E};
            memset(row, 0, sizeof(float) * (size_t)(w->S * w->E));
            memcpy(row, router[l], sizeof(float) * (size_t)(n * w->E));
            ok = h5_write_row(w->router[l], H5T_NATIVE_FLOAT, i, 3, dr, row);
        }
    } else if (ok) { /* per example */
        char name[96];
        hsize_t dh[2] = {(hsize_t)n, (hsize_t)D}, di[1] = {(hsize_t)n};
        if (!w->pooled) {
            snprintf(name, sizeof name, "example_%lld/hidden", (long long)i);
            hid_t d = h5_dataset(w->f, name, H5T_IEEE_F32LE, 2, dh);
            ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, hidden) >= 0;
            if (d >= 0) H5Dclose(d);
        }
        snprintf(name, sizeof name, "example_%lld/input_ids", (long long)i);
        hid_t d = ok ? h5_dataset(w->f, name, H5T_STD_I32LE, 1, di) : -1;
        ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids) >= 0;
        if (d >= 0) H5Dclose(d);
        for (int l = 0; ok && w->routes && l < w->n_sparse; l++) {
            hsize_t dr[2] = {(hsize_t)n, (hsize_t)w->E};
            snprintf(name, sizeof name, "example_%lld/router_logits/block_%d", (long long)i, w->sparse_block[l]);
            hid_t r = h5_dataset(w->f, name, H5T_IEEE_F32LE, 2, dr);
            ok = r >= 0 && H5Dwrite(r, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, router[l]) >= 0;
            if (r >= 0) H5Dclose(r);
        }
    }
    free(row);
    return ok ? sx_ok() : sx_errorf("%s: cannot write input %lld (HDF5)", w->path, (long long)i);
}

static sx_status writer_close(embed_writer *w, sx_status st) {
    if (w->npy) {
        if (w->npy_f && fclose(w->npy_f) != 0 && st.ok)
            st = sx_errorf("%s: cannot write: %s", w->path, strerror(errno));
        if (w->npy_mask && fclose(w->npy_mask) != 0 && st.ok)
            st = sx_errorf("%s.mask.npy: cannot write: %s", w->path, strerror(errno));
        return st;
    }
    if (w->f < 0) return st;
    if (w->hidden > 0) H5Dclose(w->hidden);
    if (w->mask > 0) H5Dclose(w->mask);
    if (w->pooled_ds > 0) H5Dclose(w->pooled_ds);
    for (int l = 0; w->router && l < w->n_sparse; l++)
        if (w->router[l] > 0) H5Dclose(w->router[l]);
    free(w->router);
    if (H5Fclose(w->f) < 0 && st.ok) st = sx_errorf("%s: cannot close the HDF5 file", w->path);
    return st;
}

/* ---- the command ----------------------------------------------------------------------------------------------- */

/* One batch: the encoder, then each row to the writer. */
typedef struct {
    model *m;
    ag_ctx *ctx;
    embed_writer *w;
    const cli_example *ex;
    const float **rl; /* per sparse layer: this row's router logits */
} embed_batch;

static sx_status embed_rows(void *user, const int32_t *ids, const int32_t *mask, int64_t B, int64_t S,
                            const int64_t *rows, int64_t *tokens) {
    embed_batch *e = user;
    const model_config *c = &e->m->cfg;
    model_route_stats *rs;
    int n_routes;
    ag_tensor *h = model_encode(e->m, e->ctx, ids, mask, B, S, &rs, &n_routes); /* [B, S, D] */
    SX_ASSERT(n_routes == e->w->n_sparse, "embed: %d sparse layers routed, %d expected", n_routes, e->w->n_sparse);
    sx_status s = sx_ok();
    for (int64_t b = 0; s.ok && b < B; b++) {
        const cli_example *x = &e->ex[rows[b]];
        for (int l = 0; l < n_routes; l++) e->rl[l] = (const float *)rs[l].logits->data + b * S * c->num_experts;
        s = writer_put(e->w, rows[b], x->ids, x->n, (const float *)h->data + b * S * c->d_model, e->rl);
        *tokens += x->n;
    }
    ag_ctx_reset(e->ctx);
    return s;
}

static int usage(const char *fmt, const char *arg) { return cli_usage("embed", fmt, arg); }

int cmd_embed(int argc, char **argv) {
    const char *pool = "none", *layout = "padded";
    bool routes = false;
    cli_infer_opts o = CLI_INFER_DEFAULT(16);
    const cli_flag FLAGS[] = {
        {"--router-logits", NULL, CLI_SET, &routes, 0, 0, NULL},
        {"--pool", NULL, CLI_CHOICE, &pool, 0, 0, (const char *const[]){"mean", "none", NULL}},
        {"--layout", NULL, CLI_CHOICE, &layout, 0, 0, (const char *const[]){"padded", "per-example", NULL}},
        {NULL, NULL, CLI_SET, NULL, 0, 0, NULL},
    };
    int rc = cli_parse_args("embed", argc, argv, embed_help, cli_infer_arg, &o, FLAGS);
    if (rc >= 0) return rc;
    if (!o.model || !o.in_file || !o.out_path) return usage("%s", "--model, --input-file and --output are required");
    if (!o.model[0]) return usage("%s", "--model: the path is empty");
    const char *out_path = o.out_path;
    bool npy = ends_with(out_path, ".npy");
    if (!npy && !ends_with(out_path, ".h5") && !ends_with(out_path, ".hdf5"))
        return usage("--output '%s' must end in .h5 (HDF5) or .npy", out_path);
    if (npy && routes) return usage("%s", "--router-logits needs an HDF5 --output (.h5)");
    /* the output paths before a large model is read */
    char mask_path[1100];
    snprintf(mask_path, sizeof mask_path, "%.*s.mask.npy", (int)strlen(out_path) - 4, out_path);
    sx_status os = cli_check_output(&o);
    if (os.ok && npy && !strcmp(pool, "none")) os = sx_file_check_output(mask_path, "--output's mask", false);
    if (!os.ok) return cli_fail(os);
    run_config cfg;
    sx_status s = trainer_config_from_checkpoint(o.model, &cfg);
    if (!s.ok) return cli_fail(s);
    data_spm *tok;
    s = cli_input_tokenizer(&o, &cfg, false, &tok);
    if (!s.ok) return cli_fail(s);
    cli_example *ex;
    int64_t n;
    s = cli_read_examples(o.in_file, tok, o.ids_only, cfg.model.eos_token_id, cfg.model.vocab_size, &ex, &n);
    data_spm_free(tok);
    if (!s.ok) return cli_fail(s);
    model m;
    s = cli_load_model(o.model, &cfg, &o.q8, &m);
    if (!s.ok) {
        cli_examples_free(ex, n);
        return cli_fail(s);
    }
    const model_config *c = &m.cfg;
    int sparse_block[256], n_sparse = 0;
    for (int b = 0; b < c->num_layers && n_sparse < 256; b++)
        if (m.enc[b].sparse) sparse_block[n_sparse++] = b;
    embed_writer w = {out_path, npy, !strcmp(layout, "padded") || npy, !strcmp(pool, "mean"), routes, n, 1,
                      c->d_model, c->num_experts, n_sparse, sparse_block, -1};
    for (int64_t i = 0; i < n; i++) w.S = ex[i].n > w.S ? ex[i].n : w.S;
    s = writer_open(&w, o.model);
    ag_arena act;
    ag_ctx ctx;
    ag_ctx_init_eval(&ctx, &act, "embed", 1 << 20);
    embed_batch eb = {&m, &ctx, &w, ex, calloc((size_t)(n_sparse > 0 ? n_sparse : 1), sizeof(float *))};
    int64_t tokens = 0;
    double seconds = 0;
    if (s.ok) s = cli_run_batches("embed", ex, n, o.batch, c->pad_token_id, embed_rows, &eb, &tokens, &seconds);
    s = writer_close(&w, s);
    if (s.ok) cli_progress("embed", n, n, tokens, seconds, true);
    free(eb.rl);
    ag_ctx_free_eval(&ctx);
    cli_examples_free(ex, n);
    model_free(&m);
    return s.ok ? 0 : cli_fail(s);
}
