/* A compact double-array trie over byte strings, built once from a key set and then only walked: the piece
 * dictionary of the unigram encoder and the user-defined-symbol matcher of the normalizer (data/spm.c).
 * One 32-bit unit per node keeps the walk to one cache line per byte, which is what makes encoding fast. */
#ifndef SX_DATA_SPM_TRIE_H
#define SX_DATA_SPM_TRIE_H

#include <stdbool.h>
#include <stdint.h>

/* The payload of a node that ends a key: for pieces the id (negative for a user-defined piece, see spm.c) and the
 * piece score next to it, so a match costs one more load; for the matcher the key length. */
typedef struct {
    int32_t id;
    float score;
} spm_trie_val;

/* Unit layout: bits 0-7 the label of the edge into this node, bit 8 "a key ends here", bit 9 "in use",
 * bits 10-31 the base: the children of node s with label c live at base(s) + c. Bases are unique, so a child is
 * recognised by its label alone (no parent index needed). Node 0 is the root; units 1..256 are never used, and a
 * node without children gets base 1, so a walk from it lands on unused units and stops. The array always extends
 * 256 units past the largest base, so base + c never needs a bounds check. */
typedef struct {
    uint32_t *unit;    /* [size] */
    spm_trie_val *val; /* [size]: meaningful where bit 8 is set */
    int32_t size;
} spm_trie;

typedef struct {
    const uint8_t *key; /* no NUL bytes, non-empty */
    uint32_t len;
    spm_trie_val val;
} spm_trie_key;

#define SPM_TRIE_USED 0x200u
#define SPM_TRIE_HAS_VALUE 0x100u
#define SPM_TRIE_MAX_BASE ((1u << 22) - 1)

/* Builds the trie from n unique keys (sorted here, in place). Returns false when the trie would need more than
 * SPM_TRIE_MAX_BASE units (a vocabulary far beyond any real model); memory exhaustion aborts. */
bool spm_trie_build(spm_trie *t, spm_trie_key *keys, int32_t n);
void spm_trie_free(spm_trie *t);

/* One step: the child of node s along byte c, or -1. */
static inline int32_t spm_trie_step(const spm_trie *t, int32_t s, uint8_t c) {
    int32_t n = (int32_t)(t->unit[s] >> 10) + c;
    return (t->unit[n] & (SPM_TRIE_USED | 0xFFu)) == (SPM_TRIE_USED | c) ? n : -1;
}

#endif
