/* Reading the HDF5 fixtures written by scripts/ (reference models, optimizer traces) in tests: whole datasets as
 * float/double/int arrays and string attributes. Header-only; failures are Criterion assertions. */
#ifndef SX_TEST_H5FIXTURE_H
#define SX_TEST_H5FIXTURE_H

#include <criterion/criterion.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

/* The fixture file at path, read-only, with HDF5's own error printing off (the tests report their errors);
 * writer (may be NULL) names the script that writes it, for the failure message. */
static inline hid_t h5f_open(const char *path, const char *writer) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0, "cannot open %s%s%s", path, writer ? ": written by " : "", writer ? writer : "");
    return f;
}

static inline bool h5f_exists(hid_t f, const char *path) {
    /* H5Lexists needs every intermediate group to exist: walk the path. */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (H5Lexists(f, buf, H5P_DEFAULT) <= 0) return false;
        *p = '/';
    }
    return H5Lexists(f, buf, H5P_DEFAULT) > 0;
}

/* Reads a dataset converted to the memory type; returns numel, dims in dims (up to 8). Caller frees. */
static inline void *h5f_read(hid_t f, const char *path, hid_t memtype, size_t elsize, int *ndim, hsize_t *dims, int64_t *numel) {
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    cr_assert(d >= 0, "fixture: no dataset %s", path);
    hid_t sp = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t dd[8] = {0};
    H5Sget_simple_extent_dims(sp, dd, NULL);
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= (int64_t)dd[i];
    void *buf = malloc((size_t)(n > 0 ? n : 1) * elsize);
    cr_assert(H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0, "fixture: cannot read %s", path);
    H5Sclose(sp);
    H5Dclose(d);
    if (ndim) *ndim = nd;
    if (dims) memcpy(dims, dd, sizeof(hsize_t) * (size_t)nd);
    if (numel) *numel = n;
    return buf;
}

static inline float *h5f_floats(hid_t f, const char *path, int64_t *numel) {
    return h5f_read(f, path, H5T_NATIVE_FLOAT, sizeof(float), NULL, NULL, numel);
}
static inline int32_t *h5f_ints(hid_t f, const char *path, int *ndim, hsize_t *dims) {
    return h5f_read(f, path, H5T_NATIVE_INT32, sizeof(int32_t), ndim, dims, NULL);
}
static inline double h5f_scalar(hid_t f, const char *path) {
    double *v = h5f_read(f, path, H5T_NATIVE_DOUBLE, sizeof(double), NULL, NULL, NULL);
    double r = v[0];
    free(v);
    return r;
}

/* A string attribute of the root (fixed or variable length). Caller frees. */
static inline char *h5f_attr_string(hid_t f, const char *name) {
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    cr_assert(a >= 0, "fixture: no attribute %s", name);
    hid_t t = H5Aget_type(a);
    char *out;
    if (H5Tis_variable_str(t) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        char *v = NULL;
        cr_assert(H5Aread(a, mt, &v) >= 0, "fixture: cannot read attribute %s", name);
        out = strdup(v);
        H5free_memory(v);
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(t);
        out = calloc(n + 1, 1);
        hid_t mt = H5Tcopy(t);
        cr_assert(H5Aread(a, mt, out) >= 0, "fixture: cannot read attribute %s", name);
        H5Tclose(mt);
    }
    H5Tclose(t);
    H5Aclose(a);
    return out;
}

#endif
