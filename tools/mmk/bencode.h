/* tools/mmk/bencode.h — bencode, BitTorrent's encoding: a strict decoder into
 * a flat tree, and an encoder.
 *
 * The decoder accepts exactly one value and refuses, with the byte offset and
 * a sentence saying what is wrong: trailing bytes, integers with leading
 * zeros, "-0", no digits or more than int64_t holds, string lengths with
 * leading zeros or past the end of the input, dictionary keys that are not
 * strings or appear twice, nesting deeper than the limit, more values than
 * the limit, and (with BENC_SORTED, or later with benc_check_sorted on a
 * subtree such as a torrent's info dictionary) keys not in strictly
 * increasing byte order.  Every node remembers where its encoding lies in the
 * input, so a caller can hash the exact bytes of a subtree (the info-hash).
 *
 * The encoder appends to a growable buffer; the caller writes dictionary keys
 * in sorted order (bencode's canonical form).  benc_put_node re-encodes a
 * decoded subtree: for input the decoder accepts with BENC_SORTED the result
 * is the input, byte for byte.
 *
 * Thread safety: a decoded document is read-only and may be shared; a buffer
 * belongs to one thread.
 */
#ifndef MMK_TOOL_BENCODE_H
#define MMK_TOOL_BENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum benc_type {
    BENC_INT = 1,
    BENC_STR,
    BENC_LIST,
    BENC_DICT,
} benc_type;

/* Index 0 is the root, so 0 also means "none" for next and child. */
typedef struct benc_node {
    uint32_t type;     /* benc_type */
    uint32_t next;     /* the next sibling (in a dict: key, value, key, ...) */
    uint32_t child;    /* the first item of a list, the first key of a dict */
    uint32_t count;    /* items of a list, pairs of a dict */
    union {
        int64_t i;     /* BENC_INT */
        struct {
            uint32_t off, len; /* BENC_STR: the bytes, as an offset in the input */
        } s;
    } v;
    uint32_t raw_off;  /* the whole encoded value: input[raw_off, raw_off + raw_len) */
    uint32_t raw_len;
} benc_node;

/* Limits of the decoder (0 in a field: the default). */
#define BENC_DEFAULT_MAX_DEPTH 64          /* a torrent needs 5 levels */
#define BENC_DEFAULT_MAX_NODES (1u << 24)  /* 16 M values (512 MiB of nodes) */
/* Offsets are 32-bit: no input may be longer than this. */
#define BENC_MAX_INPUT ((size_t)UINT32_MAX)

typedef struct benc_limits {
    unsigned max_depth;
    uint32_t max_nodes;
} benc_limits;

enum {
    BENC_SORTED = 1u << 0, /* every dict's keys in strictly increasing order */
};

typedef struct benc_doc {
    benc_node           *nodes;
    uint32_t             n, cap;
    const unsigned char *in;  /* the input, not copied: it must outlive the doc */
    size_t               in_len;
} benc_doc;

typedef struct benc_error {
    size_t offset;    /* byte of the input where the problem was found */
    char   msg[160];  /* "at byte 17: leading zero in an integer" */
} benc_error;

/* Decode buf[0, len) into *doc (which the call initialises).  flags: 0 or
 * BENC_SORTED; limits NULL for the defaults.  Returns 0, -EBADMSG (malformed:
 * err says why and where), -E2BIG (input over BENC_MAX_INPUT, or over the node
 * limit: err says which) or -ENOMEM.  On failure *doc holds nothing to free
 * (benc_free is harmless). */
int benc_decode(benc_doc *doc, const void *buf, size_t len, unsigned flags,
                const benc_limits *limits, benc_error *err);
void benc_free(benc_doc *doc);

static inline const benc_node *benc_root(const benc_doc *d)
{
    return d->n ? &d->nodes[0] : NULL;
}

/* A node by index (0 = none: NULL). */
static inline const benc_node *benc_node_at(const benc_doc *d, uint32_t i)
{
    return i && i < d->n ? &d->nodes[i] : NULL;
}

/* Children: first item of a list or first key of a dict, and the next one. */
static inline const benc_node *benc_first(const benc_doc *d, const benc_node *n)
{
    return n ? benc_node_at(d, n->child) : NULL;
}

static inline const benc_node *benc_next(const benc_doc *d, const benc_node *n)
{
    return n ? benc_node_at(d, n->next) : NULL;
}

static inline const unsigned char *benc_str(const benc_doc *d, const benc_node *n)
{
    return d->in + n->v.s.off;
}

/* The value of `key` in a dict, or NULL (also when n is not a dict). */
const benc_node *benc_dict_get(const benc_doc *d, const benc_node *dict, const char *key);

/* Is the string node n equal to the C string s? */
bool benc_str_eq(const benc_doc *d, const benc_node *n, const char *s);

/* Check that every dict in the subtree n has its keys in strictly increasing
 * order: 0, or -EBADMSG with err set. */
int benc_check_sorted(const benc_doc *d, const benc_node *n, benc_error *err);

/* ---- encoder --------------------------------------------------------------- */

typedef struct benc_buf {
    unsigned char *p;
    size_t         len, cap;
    int            err; /* the first error (-ENOMEM); once set, puts do nothing */
} benc_buf;

void benc_put_int(benc_buf *b, int64_t v);
void benc_put_str(benc_buf *b, const void *s, size_t n);
void benc_put_cstr(benc_buf *b, const char *s);
void benc_put_list(benc_buf *b);  /* 'l': items follow, then benc_put_end */
void benc_put_dict(benc_buf *b);  /* 'd': key, value pairs follow (sorted keys) */
void benc_put_end(benc_buf *b);   /* 'e' */
void benc_put_raw(benc_buf *b, const void *p, size_t n);
/* Re-encode a decoded subtree. */
void benc_put_node(benc_buf *b, const benc_doc *d, const benc_node *n);
void benc_buf_free(benc_buf *b);

#endif
