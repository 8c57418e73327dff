/* tests/fuzz/fuzz_bencode.c — libFuzzer target for the bencode decoder and
 * encoder and the .torrent parser of the mmk tool (tools/mmk).
 *
 * Besides "no crash, no leak, no undefined behaviour" (ASan + UBSan), it
 * checks what the code promises:
 *   - a refusal says why and where (a message, an offset inside the input);
 *   - every accepted node's bytes lie inside the input;
 *   - BENC_SORTED accepts exactly what the plain decoder accepts and
 *     benc_check_sorted passes, and re-encoding such input gives it back byte
 *     for byte;
 *   - a torrent that parses has sizes that add up and only safe paths.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bencode.h"
#include "torrent.h"

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "fuzz_bencode: check failed: %s (line %d)\n", #cond, \
                    __LINE__);                                                   \
            abort();                                                             \
        }                                                                        \
    } while (0)

/* Small limits, so that the fuzzer reaches them. */
static const benc_limits limits = { .max_depth = 16, .max_nodes = 4096 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_nodes(const benc_doc *d, size_t size)
{
    for (uint32_t i = 0; i < d->n; i++) {
        const benc_node *n = &d->nodes[i];
        CHECK(n->type >= BENC_INT && n->type <= BENC_DICT);
        CHECK((uint64_t)n->raw_off + n->raw_len <= size);
        CHECK(n->raw_len >= 2);
        if (n->type == BENC_STR)
            CHECK((uint64_t)n->v.s.off + n->v.s.len <= (uint64_t)n->raw_off + n->raw_len);
        CHECK(n->next < d->n && n->child < d->n);
    }
    CHECK(d->nodes[0].raw_off == 0 && d->nodes[0].raw_len == size);
}

static void check_torrent(const mmk_torrent *t)
{
    CHECK(t->name && *t->name);
    CHECK(!mmk_torrent_unsafe_component((const unsigned char *)t->name, strlen(t->name)));
    CHECK(t->piece_len > 0);
    uint64_t off = 0;
    for (size_t i = 0; i < t->nfiles; i++) {
        CHECK(t->files[i].offset == off);
        off += t->files[i].length;
        /* Every component of NAME/a/b is safe. */
        const char *p = t->files[i].path;
        for (;;) {
            const char *s = strchr(p, '/');
            size_t n = s ? (size_t)(s - p) : strlen(p);
            CHECK(!mmk_torrent_unsafe_component((const unsigned char *)p, n));
            if (!s)
                break;
            p = s + 1;
        }
    }
    CHECK(off == t->total);
    CHECK(t->npieces == (off ? (off - 1) / t->piece_len + 1 : 0));
    if (t->total)
        CHECK(mmk_torrent_file_at(t, t->total - 1) < t->nfiles);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    benc_doc d, ds;
    benc_error e, es;
    int rc = benc_decode(&d, data, size, 0, &limits, &e);
    int rcs = benc_decode(&ds, data, size, BENC_SORTED, &limits, &es);
    if (rc < 0) {
        CHECK(e.msg[0] != '\0');
        CHECK(e.offset <= size);
        CHECK(rcs < 0);
    } else {
        check_nodes(&d, size);
        int sorted = benc_check_sorted(&d, benc_root(&d), &e) == 0;
        CHECK(sorted == (rcs == 0));
        if (sorted) {
            benc_buf b = { 0 };
            benc_put_node(&b, &d, benc_root(&d));
            CHECK(b.err == 0);
            CHECK(b.len == size && memcmp(b.p, data, size) == 0);
            benc_buf_free(&b);
        }
        benc_free(&d);
    }
    benc_free(&ds);

    char err[MMK_TORRENT_ERRLEN];
    mmk_torrent *t = NULL;
    rc = mmk_torrent_parse(&t, data, size, err);
    if (rc == 0) {
        check_torrent(t);
        mmk_torrent_free(t);
    } else {
        CHECK(t == NULL);
        CHECK(rc != -EBADMSG || err[0] != '\0');
    }
    return 0;
}
