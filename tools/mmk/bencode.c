/* tools/mmk/bencode.c — the bencode decoder and encoder (see bencode.h). */
#include "bencode.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- decoder --------------------------------------------------------------- */

typedef struct parser {
    benc_doc            *doc;
    const unsigned char *p;
    size_t               len, pos;
    unsigned             flags, max_depth;
    uint32_t             max_nodes;
    benc_error          *err;
    int                  rc;
} parser;

static int fail(parser *ps, size_t at, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(parser *ps, size_t at, int rc, const char *fmt, ...)
{
    if (ps->rc == 0) {
        ps->rc = rc;
        if (ps->err) {
            ps->err->offset = at;
            int k = snprintf(ps->err->msg, sizeof ps->err->msg, "at byte %zu: ", at);
            if (k < 0)
                k = 0;
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(ps->err->msg + k, sizeof ps->err->msg - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

static uint32_t new_node(parser *ps, benc_type type, size_t at)
{
    benc_doc *d = ps->doc;
    if (d->n >= ps->max_nodes) {
        fail(ps, at, -E2BIG, "more than %" PRIu32 " values", ps->max_nodes);
        return UINT32_MAX;
    }
    if (d->n == d->cap) {
        uint32_t cap = d->cap ? d->cap : 64;
        cap = cap > ps->max_nodes / 2 ? ps->max_nodes : cap * 2;
        benc_node *nn = realloc(d->nodes, (size_t)cap * sizeof *nn);
        if (!nn) {
            fail(ps, at, -ENOMEM, "out of memory");
            return UINT32_MAX;
        }
        d->nodes = nn;
        d->cap = cap;
    }
    benc_node *n = &d->nodes[d->n];
    memset(n, 0, sizeof *n);
    n->type = (uint32_t)type;
    n->raw_off = (uint32_t)at;
    return d->n++;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Digits from ps->pos up to `stop`, as a non-negative number of at most
 * `max`.  Leading zeros are refused ("0" itself is fine). */
static int parse_digits(parser *ps, unsigned char stop, uint64_t max, const char *what,
                        uint64_t *out)
{
    size_t start = ps->pos;
    uint64_t v = 0;
    while (ps->pos < ps->len && is_digit(ps->p[ps->pos])) {
        unsigned d = (unsigned)(ps->p[ps->pos] - '0');
        if (ps->pos > start && ps->p[start] == '0')
            return fail(ps, start, -EBADMSG, "leading zero in %s", what);
        if (v > (max - d) / 10)
            return fail(ps, start, -EBADMSG, "%s too large", what);
        v = v * 10 + d;
        ps->pos++;
    }
    if (ps->pos == start) {
        if (ps->pos >= ps->len)
            return fail(ps, ps->pos, -EBADMSG, "input ends inside %s", what);
        return fail(ps, ps->pos, -EBADMSG, "expected a digit in %s, found %s", what,
                    ps->p[ps->pos] == stop ? "the end of it" : "another byte");
    }
    if (ps->pos >= ps->len)
        return fail(ps, ps->pos, -EBADMSG, "input ends inside %s", what);
    if (ps->p[ps->pos] != stop)
        return fail(ps, ps->pos, -EBADMSG, "expected '%c' after the digits of %s", stop, what);
    ps->pos++;
    *out = v;
    return 0;
}

static int parse_value(parser *ps, unsigned depth, uint32_t *out);

static int parse_int(parser *ps, uint32_t idx)
{
    size_t start = ps->pos;
    ps->pos++; /* 'i' */
    bool neg = ps->pos < ps->len && ps->p[ps->pos] == '-';
    if (neg)
        ps->pos++;
    uint64_t mag;
    /* The magnitude of INT64_MIN is one more than INT64_MAX. */
    int rc = parse_digits(ps, 'e', neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX,
                          "an integer", &mag);
    if (rc < 0)
        return rc;
    if (neg && mag == 0)
        return fail(ps, start, -EBADMSG, "\"-0\" is not a valid integer");
    benc_node *n = &ps->doc->nodes[idx];
    n->v.i = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag)
                 : (int64_t)mag;
    return 0;
}

static int parse_str(parser *ps, uint32_t idx)
{
    uint64_t n;
    int rc = parse_digits(ps, ':', UINT64_MAX, "a string length", &n);
    if (rc < 0)
        return rc;
    if (n > ps->len - ps->pos)
        return fail(ps, ps->pos, -EBADMSG,
                    "string of %" PRIu64 " bytes runs past the end of the input "
                    "(%zu bytes left)", n, ps->len - ps->pos);
    benc_node *node = &ps->doc->nodes[idx];
    node->v.s.off = (uint32_t)ps->pos;
    node->v.s.len = (uint32_t)n;
    ps->pos += (size_t)n;
    return 0;
}

/* Byte-wise comparison of two decoded strings, as memcmp then length. */
static int key_cmp(const benc_doc *d, const benc_node *a, const benc_node *b)
{
    size_t n = a->v.s.len < b->v.s.len ? a->v.s.len : b->v.s.len;
    int c = memcmp(d->in + a->v.s.off, d->in + b->v.s.off, n);
    if (c)
        return c;
    return (a->v.s.len > b->v.s.len) - (a->v.s.len < b->v.s.len);
}

/* Sort key node indices by key (a bottom-up merge sort: qsort has no context
 * argument in C11, and the parser must stay reentrant). */
static void sort_keys(const benc_doc *d, uint32_t *a, uint32_t *tmp, size_t n)
{
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = n - lo > w ? lo + w : n;
            size_t hi = n - mid > w ? mid + w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = key_cmp(d, &d->nodes[a[i]], &d->nodes[a[j]]) <= 0 ? a[i++] : a[j++];
            while (i < mid)
                tmp[k++] = a[i++];
            while (j < hi)
                tmp[k++] = a[j++];
        }
        memcpy(a, tmp, n * sizeof *a);
    }
}

/* A dict whose keys are not in order: sort them to find duplicates. */
static int check_duplicates(parser *ps, uint32_t dict)
{
    benc_doc *d = ps->doc;
    uint32_t count = d->nodes[dict].count, k = 0;
    uint32_t *keys = malloc(2 * (size_t)count * sizeof *keys);
    if (!keys)
        return fail(ps, d->nodes[dict].raw_off, -ENOMEM, "out of memory");
    for (uint32_t i = d->nodes[dict].child; i; i = d->nodes[d->nodes[i].next].next)
        keys[k++] = i;
    sort_keys(d, keys, keys + count, k);
    int rc = 0;
    for (uint32_t i = 1; i < k; i++)
        if (key_cmp(d, &d->nodes[keys[i - 1]], &d->nodes[keys[i]]) == 0) {
            rc = fail(ps, d->nodes[keys[i]].raw_off, -EBADMSG, "duplicate dictionary key");
            break;
        }
    free(keys);
    return rc;
}

static int parse_container(parser *ps, uint32_t idx, unsigned depth, bool dict)
{
    size_t start = ps->pos;
    ps->pos++; /* 'l' or 'd' */
    uint32_t last = 0, prev_key = 0, count = 0;
    bool sorted = true;
    for (;;) {
        if (ps->pos >= ps->len)
            return fail(ps, start, -EBADMSG, "%s starting here is not closed with 'e'",
                        dict ? "dictionary" : "list");
        if (ps->p[ps->pos] == 'e')
            break;
        uint32_t key = 0, val;
        if (dict) {
            size_t kat = ps->pos;
            if (!is_digit(ps->p[kat]))
                return fail(ps, kat, -EBADMSG, "dictionary key is not a string");
            int rc = parse_value(ps, depth + 1, &key);
            if (rc < 0)
                return rc;
            if (prev_key) {
                int c = key_cmp(ps->doc, &ps->doc->nodes[prev_key], &ps->doc->nodes[key]);
                if (c == 0)
                    return fail(ps, kat, -EBADMSG, "duplicate dictionary key");
                if (c > 0) {
                    if (ps->flags & BENC_SORTED)
                        return fail(ps, kat, -EBADMSG,
                                    "dictionary keys not in sorted order");
                    sorted = false;
                }
            }
            prev_key = key;
            if (ps->pos >= ps->len)
                return fail(ps, kat, -EBADMSG, "dictionary key without a value");
            if (ps->p[ps->pos] == 'e')
                return fail(ps, ps->pos, -EBADMSG, "dictionary key without a value");
        }
        int rc = parse_value(ps, depth + 1, &val);
        if (rc < 0)
            return rc;
        uint32_t first = dict ? key : val;
        if (last)
            ps->doc->nodes[last].next = first;
        else
            ps->doc->nodes[idx].child = first;
        if (dict)
            ps->doc->nodes[key].next = val;
        last = val;
        if (count == UINT32_MAX)
            return fail(ps, start, -E2BIG, "too many items");
        count++;
    }
    ps->pos++; /* 'e' */
    ps->doc->nodes[idx].count = count;
    if (dict && !sorted)
        return check_duplicates(ps, idx);
    return 0;
}

static int parse_value(parser *ps, unsigned depth, uint32_t *out)
{
    size_t at = ps->pos;
    if (at >= ps->len)
        return fail(ps, at, -EBADMSG, "input ends where a value should start");
    if (depth > ps->max_depth)
        return fail(ps, at, -EBADMSG, "nesting deeper than %u levels", ps->max_depth);
    unsigned char c = ps->p[at];
    benc_type type;
    if (c == 'i')
        type = BENC_INT;
    else if (c == 'l')
        type = BENC_LIST;
    else if (c == 'd')
        type = BENC_DICT;
    else if (is_digit(c))
        type = BENC_STR;
    else if (c >= 0x20 && c < 0x7f)
        return fail(ps, at, -EBADMSG, "'%c' cannot start a value", c);
    else
        return fail(ps, at, -EBADMSG, "byte 0x%02x cannot start a value", c);
    uint32_t idx = new_node(ps, type, at);
    if (idx == UINT32_MAX)
        return ps->rc;
    int rc;
    switch (type) {
    case BENC_INT: rc = parse_int(ps, idx); break;
    case BENC_STR: rc = parse_str(ps, idx); break;
    case BENC_LIST: rc = parse_container(ps, idx, depth, false); break;
    default: rc = parse_container(ps, idx, depth, true); break;
    }
    if (rc < 0)
        return rc;
    ps->doc->nodes[idx].raw_len = (uint32_t)(ps->pos - at);
    *out = idx;
    return 0;
}

int benc_decode(benc_doc *doc, const void *buf, size_t len, unsigned flags,
                const benc_limits *limits, benc_error *err)
{
    if (err) {
        err->offset = 0;
        err->msg[0] = '\0';
    }
    if (!doc)
        return -EINVAL;
    memset(doc, 0, sizeof *doc);
    parser ps = {
        .doc = doc, .p = buf, .len = len, .flags = flags, .err = err,
        .max_depth = limits && limits->max_depth ? limits->max_depth : BENC_DEFAULT_MAX_DEPTH,
        .max_nodes = limits && limits->max_nodes ? limits->max_nodes : BENC_DEFAULT_MAX_NODES,
    };
    if (ps.max_nodes == UINT32_MAX)
        ps.max_nodes--; /* UINT32_MAX is new_node's failure value */
    if (len > BENC_MAX_INPUT)
        return fail(&ps, 0, -E2BIG, "input of %zu bytes is too large", len);
    if (!buf && len)
        return -EINVAL;
    doc->in = buf;
    doc->in_len = len;
    uint32_t root;
    int rc = parse_value(&ps, 0, &root);
    if (rc == 0 && ps.pos != len)
        rc = fail(&ps, ps.pos, -EBADMSG, "%zu trailing bytes after the value", len - ps.pos);
    if (rc < 0) {
        benc_free(doc);
        return rc;
    }
    return 0;
}

void benc_free(benc_doc *doc)
{
    if (!doc)
        return;
    free(doc->nodes);
    memset(doc, 0, sizeof *doc);
}

bool benc_str_eq(const benc_doc *d, const benc_node *n, const char *s)
{
    size_t len = strlen(s);
    return n && n->type == BENC_STR && n->v.s.len == len &&
           memcmp(d->in + n->v.s.off, s, len) == 0;
}

const benc_node *benc_dict_get(const benc_doc *d, const benc_node *dict, const char *key)
{
    if (!dict || dict->type != BENC_DICT)
        return NULL;
    for (const benc_node *k = benc_first(d, dict); k; k = benc_next(d, benc_next(d, k)))
        if (benc_str_eq(d, k, key))
            return benc_next(d, k);
    return NULL;
}

int benc_check_sorted(const benc_doc *d, const benc_node *n, benc_error *err)
{
    if (!n || (n->type != BENC_LIST && n->type != BENC_DICT))
        return 0;
    /* Nodes are stored in input order, so the subtree of n is the index
     * range of nodes whose encoding lies inside n's: no recursion needed. */
    uint32_t first = (uint32_t)(n - d->nodes);
    uint64_t end = (uint64_t)n->raw_off + n->raw_len;
    for (uint32_t i = first; i < d->n && d->nodes[i].raw_off < end; i++) {
        const benc_node *x = &d->nodes[i];
        if (x->type != BENC_DICT)
            continue;
        const benc_node *prev = NULL;
        for (const benc_node *k = benc_first(d, x); k; k = benc_next(d, benc_next(d, k))) {
            if (prev && key_cmp(d, prev, k) >= 0) {
                if (err) {
                    err->offset = k->raw_off;
                    snprintf(err->msg, sizeof err->msg,
                             "at byte %" PRIu32 ": dictionary keys not in sorted order",
                             k->raw_off);
                }
                return -EBADMSG;
            }
            prev = k;
        }
    }
    return 0;
}

/* ---- encoder --------------------------------------------------------------- */

static unsigned char *reserve(benc_buf *b, size_t n)
{
    if (b->err)
        return NULL;
    if (n > SIZE_MAX - b->len) {
        b->err = -ENOMEM;
        return NULL;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->err = -ENOMEM;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    unsigned char *at = b->p + b->len;
    b->len += n;
    return at;
}

void benc_put_raw(benc_buf *b, const void *p, size_t n)
{
    unsigned char *at = reserve(b, n);
    if (at && n)
        memcpy(at, p, n);
}

void benc_put_int(benc_buf *b, int64_t v)
{
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, "i%" PRId64 "e", v);
    benc_put_raw(b, tmp, (size_t)k);
}

void benc_put_str(benc_buf *b, const void *s, size_t n)
{
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, "%zu:", n);
    benc_put_raw(b, tmp, (size_t)k);
    benc_put_raw(b, s, n);
}

void benc_put_cstr(benc_buf *b, const char *s)
{
    benc_put_str(b, s, strlen(s));
}

void benc_put_list(benc_buf *b)
{
    benc_put_raw(b, "l", 1);
}

void benc_put_dict(benc_buf *b)
{
    benc_put_raw(b, "d", 1);
}

void benc_put_end(benc_buf *b)
{
    benc_put_raw(b, "e", 1);
}

void benc_put_node(benc_buf *b, const benc_doc *d, const benc_node *n)
{
    switch (n->type) {
    case BENC_INT:
        benc_put_int(b, n->v.i);
        return;
    case BENC_STR:
        benc_put_str(b, benc_str(d, n), n->v.s.len);
        return;
    case BENC_LIST:
    case BENC_DICT:
        benc_put_raw(b, n->type == BENC_LIST ? "l" : "d", 1);
        for (const benc_node *c = benc_first(d, n); c; c = benc_next(d, c))
            benc_put_node(b, d, c);
        benc_put_end(b);
        return;
    default:
        b->err = b->err ? b->err : -EINVAL;
    }
}

void benc_buf_free(benc_buf *b)
{
    if (!b)
        return;
    free(b->p);
    memset(b, 0, sizeof *b);
}
