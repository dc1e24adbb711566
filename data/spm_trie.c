/* Building the compact double-array trie of spm_trie.h: keys sorted, nodes placed breadth-first, each node's
 * children at the lowest free base that fits all their labels. Free units are kept in a linked list, and a unit that
 * failed to host a first child many times leaves that list (it can still host later children), which bounds the
 * search the way darts-clone does with its closed blocks. */
#include "data/spm_trie.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/sx_error.h"

#define FIRST_FREE 257       /* 0 is the root, 1..256 the dead zone that childless nodes point into */
#define MAX_FAILS 16         /* a free unit tried this often as a first-child slot is dropped from the search */

typedef struct {
    int32_t node, lo, hi;    /* the node, and the range of sorted keys below it */
    uint32_t depth;          /* the length of the prefix they share */
} pending;

typedef struct {
    spm_trie *t;
    int32_t cap;             /* units allocated */
    int32_t *next, *prev;    /* free list over unit indices (-1 terminates); prev of the head is -1 */
    int32_t head;
    uint8_t *fails;
    uint8_t *base_used;      /* bases already taken (one bit would do; a byte is simpler) */
} builder;

static int cmp_keys(const void *a, const void *b) {
    const spm_trie_key *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    return (x->len > y->len) - (x->len < y->len);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    SX_ASSERT(q, "spm trie: out of memory (%zu bytes)", n);
    return q;
}

/* Grows the arrays to at least `need` units; new units are free and appended to the free list. */
static void grow(builder *b, int32_t need) {
    if (need <= b->cap) return;
    int32_t old = b->cap, cap = old ? old : 1024;
    while (cap < need) cap = cap > (1 << 29) ? need : cap * 2;
    spm_trie *t = b->t;
    t->unit = xrealloc(t->unit, (size_t)cap * sizeof *t->unit);
    t->val = xrealloc(t->val, (size_t)cap * sizeof *t->val);
    b->next = xrealloc(b->next, (size_t)cap * sizeof *b->next);
    b->prev = xrealloc(b->prev, (size_t)cap * sizeof *b->prev);
    b->fails = xrealloc(b->fails, (size_t)cap);
    b->base_used = xrealloc(b->base_used, (size_t)cap);
    memset(t->unit + old, 0, (size_t)(cap - old) * sizeof *t->unit);
    memset(t->val + old, 0, (size_t)(cap - old) * sizeof *t->val);
    memset(b->fails + old, 0, (size_t)(cap - old));
    memset(b->base_used + old, 0, (size_t)(cap - old));
    /* append [max(old, FIRST_FREE), cap) to the free list, in order */
    int32_t tail = -1;
    for (int32_t i = b->head; i >= 0; i = b->next[i]) tail = i;
    for (int32_t i = old > FIRST_FREE ? old : FIRST_FREE; i < cap; i++) {
        b->prev[i] = tail;
        b->next[i] = -1;
        if (tail >= 0) b->next[tail] = i; else b->head = i;
        tail = i;
    }
    b->cap = cap;
}

static void unlink_free(builder *b, int32_t i) {
    if (b->prev[i] >= 0) b->next[b->prev[i]] = b->next[i]; else b->head = b->next[i];
    if (b->next[i] >= 0) b->prev[b->next[i]] = b->prev[i];
    b->next[i] = b->prev[i] = -2; /* off the list */
}

/* Finds a base for the labels (ascending, k >= 1) and claims their units. Returns the base, or -1 when it would
 * exceed SPM_TRIE_MAX_BASE. */
static int64_t place(builder *b, const uint8_t *labels, int k) {
    int32_t p = b->head;
    for (;;) {
        if (p < 0) { /* no free unit left in the list: grow, the new units join it */
            int32_t old = b->cap;
            grow(b, b->cap * 2);
            p = old > FIRST_FREE ? old : FIRST_FREE;
            while (p < b->cap && (b->t->unit[p] & SPM_TRIE_USED)) p++;
        }
        int64_t base = (int64_t)p - labels[0];
        if (base >= 1 && base <= SPM_TRIE_MAX_BASE && !(base < b->cap && b->base_used[base])) {
            if (base + 256 > b->cap) grow(b, (int32_t)base + 256);
            int ok = 1;
            for (int i = 1; i < k && ok; i++) ok = !(b->t->unit[base + labels[i]] & SPM_TRIE_USED);
            if (ok) {
                b->base_used[base] = 1;
                for (int i = 0; i < k; i++) {
                    int32_t u = (int32_t)base + labels[i];
                    b->t->unit[u] = SPM_TRIE_USED | labels[i];
                    if (b->next[u] != -2) unlink_free(b, u);
                }
                return base;
            }
        }
        if (base > SPM_TRIE_MAX_BASE) return -1;
        int32_t next = b->next[p]; /* read after any growth above, which may have appended to the list */
        if (++b->fails[p] >= MAX_FAILS) unlink_free(b, p);
        p = next;
    }
}

bool spm_trie_build(spm_trie *t, spm_trie_key *keys, int32_t n) {
    memset(t, 0, sizeof *t);
    qsort(keys, (size_t)n, sizeof *keys, cmp_keys);
    builder b = {.t = t, .head = -1};
    grow(&b, 1024);
    t->unit[0] = SPM_TRIE_USED;
    pending *q = xrealloc(NULL, 64 * sizeof *q);
    size_t qcap = 64, qhead = 0, qtail = 0;
    q[qtail++] = (pending){0, 0, n, 0};
    int32_t max_node = 0;
    bool ok = true;
    uint8_t labels[256];
    int32_t starts[257];
    while (qhead < qtail && ok) {
        pending it = q[qhead++];
        int32_t lo = it.lo;
        if (lo < it.hi && keys[lo].len == it.depth) { /* the key equal to the prefix sorts first */
            t->unit[it.node] |= SPM_TRIE_HAS_VALUE;
            t->val[it.node] = keys[lo].val;
            while (lo < it.hi && keys[lo].len == it.depth) lo++; /* duplicates (callers have none): first wins */
        }
        int k = 0;
        for (int32_t i = lo; i < it.hi; i++) {
            uint8_t c = keys[i].key[it.depth];
            if (k == 0 || labels[k - 1] != c) {
                labels[k] = c;
                starts[k++] = i;
            }
        }
        starts[k] = it.hi;
        if (k == 0) {
            t->unit[it.node] = (t->unit[it.node] & 0x3FFu) | (1u << 10);
            continue;
        }
        int64_t base = place(&b, labels, k);
        if (base < 0) { ok = false; break; }
        t->unit[it.node] = (t->unit[it.node] & 0x3FFu) | ((uint32_t)base << 10);
        if (qtail + (size_t)k > qcap) {
            /* compact the consumed head away before growing */
            memmove(q, q + qhead, (qtail - qhead) * sizeof *q);
            qtail -= qhead;
            qhead = 0;
            while (qtail + (size_t)k > qcap) qcap *= 2;
            q = xrealloc(q, qcap * sizeof *q);
        }
        for (int i = 0; i < k; i++) {
            int32_t child = (int32_t)base + labels[i];
            if (child > max_node) max_node = child;
            q[qtail++] = (pending){child, starts[i], starts[i + 1], it.depth + 1};
        }
    }
    free(q);
    free(b.next);
    free(b.prev);
    free(b.fails);
    free(b.base_used);
    if (!ok) {
        spm_trie_free(t);
        return false;
    }
    /* Every base + 255 must stay inside the array; the largest base is at most max_node, and childless nodes point
     * at 1. Trim the rest. */
    int32_t size = 0;
    for (int32_t i = 0; i <= max_node; i++) {
        int32_t need = (int32_t)(t->unit[i] >> 10) + 256;
        if (need > size) size = need;
    }
    if (size < max_node + 1) size = max_node + 1;
    if (size > b.cap) size = b.cap; /* cannot happen: place() grew the array to base + 256 */
    t->size = size;
    t->unit = xrealloc(t->unit, (size_t)size * sizeof *t->unit);
    t->val = xrealloc(t->val, (size_t)size * sizeof *t->val);
    return true;
}

void spm_trie_free(spm_trie *t) {
    free(t->unit);
    free(t->val);
    memset(t, 0, sizeof *t);
}
