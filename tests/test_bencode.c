/* tests/test_bencode.c — the bencode decoder and encoder, and .torrent
 * validation, of the mmk tool's core (tools/mmk/bencode.c, torrent.c). */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bencode.h"
#include "sha1.h"
#include "torrent.h"

/* ---- helpers --------------------------------------------------------------- */

static int decode(const char *s, unsigned flags, benc_doc *d, benc_error *e)
{
    return benc_decode(d, s, strlen(s), flags, NULL, e);
}

static void expect_ok(const char *s, unsigned flags)
{
    benc_doc d;
    benc_error e;
    int rc = decode(s, flags, &d, &e);
    cr_assert_eq(rc, 0, "\"%s\" refused: %s", s, e.msg);
    benc_free(&d);
}

/* Refused with -EBADMSG, at byte `at`, with `words` in the message. */
static void expect_bad(const char *s, unsigned flags, size_t at, const char *words)
{
    benc_doc d;
    benc_error e;
    int rc = decode(s, flags, &d, &e);
    cr_assert_eq(rc, -EBADMSG, "\"%s\": rc %d, want -EBADMSG", s, rc);
    cr_expect_eq(e.offset, at, "\"%s\": offset %zu, want %zu (%s)", s, e.offset, at, e.msg);
    cr_expect(strstr(e.msg, words) != NULL, "\"%s\": message \"%s\" lacks \"%s\"", s, e.msg,
              words);
    cr_expect_eq(d.nodes, NULL, "nothing left to free after a failure");
}

static int64_t decode_int(const char *s)
{
    benc_doc d;
    benc_error e;
    cr_assert_eq(decode(s, 0, &d, &e), 0, "%s: %s", s, e.msg);
    cr_assert_eq(benc_root(&d)->type, BENC_INT);
    int64_t v = benc_root(&d)->v.i;
    benc_free(&d);
    return v;
}

/* ---- integers -------------------------------------------------------------- */

Test(bencode, integers)
{
    cr_expect_eq(decode_int("i0e"), 0);
    cr_expect_eq(decode_int("i42e"), 42);
    cr_expect_eq(decode_int("i-17e"), -17);
    cr_expect_eq(decode_int("i9223372036854775807e"), INT64_MAX);
    cr_expect_eq(decode_int("i-9223372036854775808e"), INT64_MIN);
}

Test(bencode, bad_integers)
{
    expect_bad("i9223372036854775808e", 0, 1, "too large");
    expect_bad("i-9223372036854775809e", 0, 2, "too large");
    expect_bad("i99999999999999999999999e", 0, 1, "too large");
    expect_bad("i01e", 0, 1, "leading zero");
    expect_bad("i-01e", 0, 2, "leading zero");
    expect_bad("i00e", 0, 1, "leading zero");
    expect_bad("i-0e", 0, 0, "\"-0\"");
    expect_bad("ie", 0, 1, "expected a digit");
    expect_bad("i-e", 0, 2, "expected a digit");
    expect_bad("i+1e", 0, 1, "expected a digit");
    expect_bad("i 1e", 0, 1, "expected a digit");
    expect_bad("i12", 0, 3, "ends inside");
    expect_bad("i12x", 0, 3, "expected 'e'");
    expect_bad("i", 0, 1, "ends inside");
}

/* ---- strings --------------------------------------------------------------- */

Test(bencode, strings)
{
    benc_doc d;
    benc_error e;
    cr_assert_eq(decode("5:hello", 0, &d, &e), 0);
    const benc_node *n = benc_root(&d);
    cr_assert_eq(n->type, BENC_STR);
    cr_expect_eq(n->v.s.len, 5);
    cr_expect(benc_str_eq(&d, n, "hello"));
    cr_expect(!benc_str_eq(&d, n, "hell"));
    benc_free(&d);
    expect_ok("0:", 0);
    /* Any bytes, NUL included. */
    static const char nul[] = "3:a\0b";
    cr_assert_eq(benc_decode(&d, nul, 5, 0, NULL, &e), 0);
    cr_expect_eq(benc_root(&d)->v.s.len, 3);
    benc_free(&d);
}

Test(bencode, bad_strings)
{
    expect_bad("4:abc", 0, 2, "past the end");
    expect_bad("1:", 0, 2, "past the end");
    expect_bad("03:abc", 0, 0, "leading zero");
    expect_bad("3abc", 0, 1, "expected ':'");
    expect_bad("3", 0, 1, "ends inside");
    expect_bad("18446744073709551616:x", 0, 0, "too large");
    expect_bad("18446744073709551615:x", 0, 21, "past the end");
    expect_bad("-1:a", 0, 0, "cannot start a value");
}

/* ---- lists, dictionaries, structure ------------------------------------------ */

Test(bencode, containers)
{
    benc_doc d;
    benc_error e;
    cr_assert_eq(decode("d1:ali1ei2ee1:b3:xyze", 0, &d, &e), 0, "%s", e.msg);
    const benc_node *root = benc_root(&d);
    cr_assert_eq(root->type, BENC_DICT);
    cr_expect_eq(root->count, 2);
    const benc_node *a = benc_dict_get(&d, root, "a");
    cr_assert(a && a->type == BENC_LIST);
    cr_expect_eq(a->count, 2);
    const benc_node *one = benc_first(&d, a);
    cr_expect_eq(one->v.i, 1);
    cr_expect_eq(benc_next(&d, one)->v.i, 2);
    cr_expect_eq(benc_next(&d, benc_next(&d, one)), NULL);
    cr_expect(benc_str_eq(&d, benc_dict_get(&d, root, "b"), "xyz"));
    cr_expect_eq(benc_dict_get(&d, root, "c"), NULL);
    cr_expect_eq(benc_dict_get(&d, a, "a"), NULL, "a list is not a dict");
    /* Raw spans: the exact bytes of each value. */
    cr_expect_eq(a->raw_off, 4);
    cr_expect_eq(a->raw_len, 8);
    cr_expect_eq(root->raw_len, strlen("d1:ali1ei2ee1:b3:xyze"));
    benc_free(&d);
    expect_ok("le", 0);
    expect_ok("de", 0);
    expect_ok("lllleeee", 0);
}

Test(bencode, bad_structure)
{
    expect_bad("", 0, 0, "ends where a value should start");
    expect_bad("l", 0, 0, "not closed");
    expect_bad("li1e", 0, 0, "not closed");
    expect_bad("d1:a", 0, 1, "without a value");
    expect_bad("d1:ae", 0, 4, "without a value");
    expect_bad("di1ei2ee", 0, 1, "not a string");
    expect_bad("dlei1ee", 0, 1, "not a string");
    expect_bad("i1ei2e", 0, 3, "trailing");
    expect_bad("le ", 0, 2, "trailing");
    expect_bad("x", 0, 0, "'x' cannot start a value");
    expect_bad("e", 0, 0, "cannot start a value");
    expect_bad("\x01", 0, 0, "byte 0x01");
}

Test(bencode, dict_key_order)
{
    /* Unsorted keys: accepted unless BENC_SORTED (outside the info dict,
     * real torrents have them); duplicates: never. */
    expect_ok("d1:b0:1:a0:e", 0);
    expect_bad("d1:b0:1:a0:e", BENC_SORTED, 6, "not in sorted order");
    expect_bad("d1:a0:1:a0:e", 0, 6, "duplicate");
    expect_bad("d1:a0:1:a0:e", BENC_SORTED, 6, "duplicate");
    /* A duplicate found only by sorting (not next to its twin). */
    expect_bad("d1:b0:1:a0:1:b0:e", 0, 11, "duplicate");
    expect_bad("d1:c0:1:a0:1:b0:1:a0:e", 0, 16, "duplicate");
    /* Byte order, not length first: "ab" < "b", and a prefix sorts first. */
    expect_ok("d2:ab0:1:b0:e", BENC_SORTED);
    expect_ok("d1:a0:2:ab0:e", BENC_SORTED);
    expect_bad("d2:ab0:1:a0:e", BENC_SORTED, 7, "not in sorted order");
    /* Bytes compare unsigned: 0xff sorts after 'z'. */
    expect_ok("d1:z0:1:\xff" "0:e", BENC_SORTED);
}

Test(bencode, check_sorted_subtree)
{
    benc_doc d;
    benc_error e;
    /* The outer dict is unsorted; its "info" subtree has an unsorted dict
     * two levels down. */
    const char *s = "d4:infod1:ald1:y0:1:x0:eee1:0i0ee";
    cr_assert_eq(decode(s, 0, &d, &e), 0, "%s", e.msg);
    const benc_node *info = benc_dict_get(&d, benc_root(&d), "info");
    cr_assert(info);
    cr_expect_eq(benc_check_sorted(&d, info, &e), -EBADMSG);
    cr_expect(strstr(e.msg, "not in sorted order"));
    cr_expect_eq(e.offset, 18);
    benc_free(&d);
    cr_assert_eq(decode("d4:infod1:ald1:x0:1:y0:eee1:0i0ee", 0, &d, &e), 0);
    info = benc_dict_get(&d, benc_root(&d), "info");
    cr_expect_eq(benc_check_sorted(&d, info, &e), 0, "sorted below, the outer dict not checked");
    benc_free(&d);
}

/* ---- limits ------------------------------------------------------------------ */

static char *nested(size_t depth)
{
    char *s = malloc(2 * depth + 1);
    memset(s, 'l', depth);
    memset(s + depth, 'e', depth);
    s[2 * depth] = '\0';
    return s;
}

Test(bencode, depth_limit)
{
    benc_doc d;
    benc_error e;
    benc_limits lim = { .max_depth = 3 };
    char *ok = nested(4), *deep = nested(5); /* depths 0..3, and 0..4 */
    cr_expect_eq(benc_decode(&d, ok, strlen(ok), 0, &lim, &e), 0, "%s", e.msg);
    benc_free(&d);
    cr_expect_eq(benc_decode(&d, deep, strlen(deep), 0, &lim, &e), -EBADMSG);
    cr_expect(strstr(e.msg, "nesting deeper than 3"), "%s", e.msg);
    cr_expect_eq(e.offset, 4);
    free(ok);
    free(deep);
    /* The default limit stops a stack-smashing input. */
    char *huge = nested(100000);
    cr_expect_eq(benc_decode(&d, huge, strlen(huge), 0, NULL, &e), -EBADMSG);
    cr_expect(strstr(e.msg, "nesting deeper"));
    free(huge);
    char *fine = nested(BENC_DEFAULT_MAX_DEPTH + 1);
    cr_expect_eq(benc_decode(&d, fine, strlen(fine), 0, NULL, &e), 0, "%s", e.msg);
    benc_free(&d);
    free(fine);
}

Test(bencode, node_limit)
{
    benc_doc d;
    benc_error e;
    benc_limits lim = { .max_nodes = 3 };
    cr_expect_eq(benc_decode(&d, "li1ei2ee", 8, 0, &lim, &e), 0);
    benc_free(&d);
    cr_expect_eq(benc_decode(&d, "li1ei2ei3ee", 11, 0, &lim, &e), -E2BIG);
    cr_expect(strstr(e.msg, "more than 3 values"), "%s", e.msg);
}

/* ---- encoder ------------------------------------------------------------------ */

static void expect_buf(const benc_buf *b, const char *want, size_t n)
{
    cr_assert_eq(b->err, 0);
    cr_assert_eq(b->len, n, "length %zu, want %zu", b->len, n);
    cr_expect_eq(memcmp(b->p, want, n), 0);
}

Test(bencode, encoder)
{
    benc_buf b = { 0 };
    benc_put_dict(&b);
    benc_put_cstr(&b, "a");
    benc_put_int(&b, INT64_MIN);
    benc_put_cstr(&b, "b");
    benc_put_list(&b);
    benc_put_int(&b, 0);
    benc_put_str(&b, "x\0y", 3);
    benc_put_cstr(&b, "");
    benc_put_end(&b);
    benc_put_end(&b);
    static const char want[] = "d1:ai-9223372036854775808e1:bli0e3:x\0y0:ee";
    expect_buf(&b, want, sizeof want - 1);
    benc_buf_free(&b);
    cr_expect_eq(b.p, NULL);
}

/* Canonical input decodes and re-encodes to the same bytes. */
Test(bencode, round_trip)
{
    static const char *const inputs[] = {
        "i0e", "i-5e", "0:", "le", "de",
        "d1:ali1ei-2e3:xyzle0:d1:k1:vee1:bde1:ci9223372036854775807ee",
        ("d8:announce3:url4:infod6:lengthi3e4:name1:x12:piece lengthi16384e"
         "6:pieces20:aaaaaaaaaaaaaaaaaaaaee"),
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        benc_doc d;
        benc_error e;
        cr_assert_eq(decode(inputs[i], BENC_SORTED, &d, &e), 0, "%s: %s", inputs[i], e.msg);
        benc_buf b = { 0 };
        benc_put_node(&b, &d, benc_root(&d));
        expect_buf(&b, inputs[i], strlen(inputs[i]));
        benc_buf_free(&b);
        benc_free(&d);
    }
}

/* ---- .torrent validation -------------------------------------------------------- */

/* A torrent's bytes, built with the encoder; `files` is a list of
 * "length:comp/comp" entries (NULL for single-file with `single_len`). */
typedef struct tspec {
    const char *name;
    int64_t     piece_len;
    int64_t     single_len;      /* < 0: multi-file */
    const char *files[8];
    int64_t     lengths[8];
    size_t      nfiles;
    int         hashes;          /* -1: the right number */
    bool        priv;
} tspec;

/* (Unsigned: a test adds lengths past INT64_MAX on purpose.) */
static uint64_t tspec_total(const tspec *s)
{
    if (s->single_len >= 0)
        return (uint64_t)s->single_len;
    uint64_t t = 0;
    for (size_t i = 0; i < s->nfiles; i++)
        t += (uint64_t)s->lengths[i];
    return t;
}

static void put_path(benc_buf *b, const char *path)
{
    benc_put_list(b);
    for (const char *p = path;;) {
        const char *sl = strchr(p, '/');
        size_t n = sl ? (size_t)(sl - p) : strlen(p);
        benc_put_str(b, p, n);
        if (!sl)
            break;
        p = sl + 1;
    }
    benc_put_end(b);
}

static benc_buf build(const tspec *s, size_t *info_off, size_t *info_len)
{
    benc_buf b = { 0 };
    uint64_t total = tspec_total(s);
    int hashes = s->hashes >= 0 ? s->hashes
               : s->piece_len <= 0 ? 1
               : (int)(total ? (total - 1) / (uint64_t)s->piece_len + 1 : 0);
    benc_put_dict(&b);
    benc_put_cstr(&b, "announce");
    benc_put_cstr(&b, "http://tracker.invalid/announce");
    benc_put_cstr(&b, "info");
    size_t at = b.len;
    benc_put_dict(&b);
    if (s->single_len < 0) {
        benc_put_cstr(&b, "files");
        benc_put_list(&b);
        for (size_t i = 0; i < s->nfiles; i++) {
            benc_put_dict(&b);
            benc_put_cstr(&b, "length");
            benc_put_int(&b, s->lengths[i]);
            benc_put_cstr(&b, "path");
            put_path(&b, s->files[i]);
            benc_put_end(&b);
        }
        benc_put_end(&b);
    } else {
        benc_put_cstr(&b, "length");
        benc_put_int(&b, s->single_len);
    }
    benc_put_cstr(&b, "name");
    benc_put_cstr(&b, s->name);
    benc_put_cstr(&b, "piece length");
    benc_put_int(&b, s->piece_len);
    benc_put_cstr(&b, "pieces");
    char *p = calloc((size_t)hashes + 1, MMK_SHA1_LEN);
    benc_put_str(&b, p, (size_t)hashes * MMK_SHA1_LEN);
    free(p);
    if (s->priv) {
        benc_put_cstr(&b, "private");
        benc_put_int(&b, 1);
    }
    benc_put_end(&b);
    if (info_off)
        *info_off = at;
    if (info_len)
        *info_len = b.len - at;
    benc_put_end(&b);
    cr_assert_eq(b.err, 0);
    return b;
}

static int parse_spec(const tspec *s, char *err, mmk_torrent **t)
{
    benc_buf b = build(s, NULL, NULL);
    int rc = mmk_torrent_parse(t, b.p, b.len, err);
    benc_buf_free(&b);
    return rc;
}

static void expect_refused(const tspec *s, const char *words)
{
    char err[MMK_TORRENT_ERRLEN];
    mmk_torrent *t = (mmk_torrent *)1;
    int rc = parse_spec(s, err, &t);
    cr_assert_eq(rc, -EBADMSG, "want -EBADMSG, got %d", rc);
    cr_expect_eq(t, NULL);
    cr_expect(strstr(err, words) != NULL, "message \"%s\" lacks \"%s\"", err, words);
}

Test(torrent, multi_file)
{
    tspec s = { .name = "dir", .piece_len = 16384, .single_len = -1,
                .files = { "a/one", "b", "empty" }, .lengths = { 20000, 1, 0 }, .nfiles = 3,
                .hashes = -1, .priv = true };
    size_t off, len;
    benc_buf b = build(&s, &off, &len);
    char err[MMK_TORRENT_ERRLEN];
    mmk_torrent *t;
    cr_assert_eq(mmk_torrent_parse(&t, b.p, b.len, err), 0, "%s", err);
    cr_expect_str_eq(t->name, "dir");
    cr_expect(t->multi);
    cr_expect(t->priv);
    cr_expect_eq(t->piece_len, 16384);
    cr_expect_eq(t->npieces, 2);
    cr_expect_eq(t->total, 20001);
    cr_assert_eq(t->nfiles, 3);
    cr_expect_str_eq(t->files[0].path, "dir/a/one");
    cr_expect_str_eq(t->files[1].path, "dir/b");
    cr_expect_eq(t->files[1].offset, 20000);
    cr_expect_eq(t->files[2].offset, 20001);
    cr_expect_str_eq(t->announce, "http://tracker.invalid/announce");
    /* The info-hash is the SHA-1 of the info dictionary's exact bytes. */
    unsigned char md[MMK_SHA1_LEN];
    cr_assert_eq(mmk_sha1_buf(b.p + off, len, md), 0);
    cr_expect_eq(memcmp(md, t->info_hash, MMK_SHA1_LEN), 0);
    cr_expect_eq(t->info_len, len);
    /* Which file holds a byte (zero-length files hold none). */
    cr_expect_eq(mmk_torrent_file_at(t, 0), 0);
    cr_expect_eq(mmk_torrent_file_at(t, 19999), 0);
    cr_expect_eq(mmk_torrent_file_at(t, 20000), 1);
    cr_expect_eq(mmk_torrent_piece_size(t, 0), 16384);
    cr_expect_eq(mmk_torrent_piece_size(t, 1), 20001 - 16384);
    mmk_torrent_free(t);
    benc_buf_free(&b);
}

Test(torrent, single_file)
{
    tspec s = { .name = "file.bin", .piece_len = 32768, .single_len = 32768, .hashes = -1 };
    char err[MMK_TORRENT_ERRLEN];
    mmk_torrent *t;
    cr_assert_eq(parse_spec(&s, err, &t), 0, "%s", err);
    cr_expect(!t->multi);
    cr_expect_eq(t->npieces, 1);
    cr_assert_eq(t->nfiles, 1);
    cr_expect_str_eq(t->files[0].path, "file.bin");
    mmk_torrent_free(t);
    /* An empty file: no pieces. */
    tspec z = { .name = "zero", .piece_len = 32768, .single_len = 0, .hashes = -1 };
    cr_assert_eq(parse_spec(&z, err, &t), 0, "%s", err);
    cr_expect_eq(t->npieces, 0);
    mmk_torrent_free(t);
}

Test(torrent, unsafe_paths)
{
    tspec s = { .name = "dir", .piece_len = 16384, .single_len = -1, .nfiles = 1,
                .lengths = { 1 }, .hashes = -1 };
    s.files[0] = "../etc/passwd";
    expect_refused(&s, "\"..\"");
    s.files[0] = "a/../../x";
    expect_refused(&s, "\"..\"");
    s.files[0] = "a/./b";
    expect_refused(&s, "\".\"");
    s.files[0] = "a//b";
    expect_refused(&s, "empty path component");
    s.files[0] = "/etc/passwd"; /* the first component is empty */
    expect_refused(&s, "empty path component");
    s.files[0] = "a/";
    expect_refused(&s, "empty path component");
    s.name = "..";
    s.files[0] = "x";
    expect_refused(&s, "unsafe name");
    s.name = "";
    expect_refused(&s, "unsafe name");
    s.name = "a/b";
    expect_refused(&s, "unsafe name");
}

Test(torrent, unsafe_component_bytes)
{
    cr_expect_neq(mmk_torrent_unsafe_component((const unsigned char *)"a\0b", 3), NULL);
    cr_expect_neq(mmk_torrent_unsafe_component((const unsigned char *)"/etc", 4), NULL);
    cr_expect_neq(mmk_torrent_unsafe_component((const unsigned char *)"a/b", 3), NULL);
    cr_expect_neq(mmk_torrent_unsafe_component((const unsigned char *)"..", 2), NULL);
    cr_expect_eq(mmk_torrent_unsafe_component((const unsigned char *)"...", 3), NULL);
    cr_expect_eq(mmk_torrent_unsafe_component((const unsigned char *)".hidden", 7), NULL);
    /* A NUL inside a path component of a real torrent. */
    static const char evil[] = "d4:infod5:filesld6:lengthi1e4:pathl3:a\0bee"
                               "e4:name1:x12:piece lengthi16384e6:pieces20:"
                               "aaaaaaaaaaaaaaaaaaaaee";
    char err[MMK_TORRENT_ERRLEN];
    mmk_torrent *t;
    cr_expect_eq(mmk_torrent_parse(&t, evil, sizeof evil - 1, err), -EBADMSG);
    cr_expect(strstr(err, "NUL"), "%s", err);
    cr_expect(strstr(err, "a\\x00b"), "the name is shown escaped: %s", err);
}

Test(torrent, inconsistent)
{
    char err[MMK_TORRENT_ERRLEN];
    mmk_torrent *t;
    tspec s = { .name = "f", .piece_len = 16384, .single_len = 16385, .hashes = 1 };
    expect_refused(&s, "make 2 pieces, but the torrent has 1 hashes");
    s.hashes = 3;
    expect_refused(&s, "has 3 hashes");
    s.hashes = -1;
    s.piece_len = 0;
    expect_refused(&s, "piece length");
    s.piece_len = -5;
    expect_refused(&s, "piece length");
    s.piece_len = 16384;
    s.single_len = -1;
    s.nfiles = 2;
    s.files[0] = "a";
    s.files[1] = "a";
    s.lengths[0] = s.lengths[1] = 1;
    expect_refused(&s, "listed twice");
    s.files[1] = "b";
    s.lengths[1] = -1;
    expect_refused(&s, "non-negative");
    s.lengths[0] = INT64_MAX;
    s.lengths[1] = 1;
    s.hashes = 0;
    expect_refused(&s, "2^63");
    /* Structural problems. */
    static const char *const bad[][2] = {
        { "i1e", "top level is not a dictionary" },
        { "de", "no \"info\" dictionary" },
        { "d4:infoi1ee", "no \"info\" dictionary" },
        { "d4:infod4:name1:x12:piece lengthi16384e6:pieces0:ee", "neither" },
        { "d4:infod5:filesle6:lengthi0e4:name1:x12:piece lengthi16384e6:pieces0:ee", "both" },
        { "d4:infod6:lengthi0e4:name1:x6:pieces0:12:piece lengthi16384eee", "sorted order" },
        { "d4:infod6:lengthi0e4:name1:x12:piece lengthi16384e6:pieces3:abcee", "multiple of 20" },
        { "d4:infod6:lengthi0e4:name1:x12:piece lengthi16384e6:pieces0:ee junk", "trailing" },
        { "d4:infod6:lengthi0e4:name1:x12:piece lengthi16384e6:pieces0:e", "not closed" },
        { "d4:infod5:filesl1:ae4:name1:x12:piece lengthi16384e6:pieces0:ee", "not a dictionary" },
        { "d4:infod5:filesld6:lengthi0e4:pathleee4:name1:x12:piece lengthi16384e"
          "6:pieces0:ee", "non-empty list" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = mmk_torrent_parse(&t, bad[i][0], strlen(bad[i][0]), err);
        cr_expect_eq(rc, -EBADMSG, "%s: rc %d", bad[i][0], rc);
        cr_expect(strstr(err, bad[i][1]), "%s: message \"%s\" lacks \"%s\"", bad[i][0], err,
                  bad[i][1]);
    }
    /* Unsorted keys outside the info dictionary are fine. */
    static const char ok[] = "d4:infod6:lengthi0e4:name1:x12:piece lengthi16384e6:pieces0:e"
                             "8:announce1:ue";
    cr_expect_eq(mmk_torrent_parse(&t, ok, sizeof ok - 1, err), 0, "%s", err);
    mmk_torrent_free(t);
}

/* ---- the hashing engine (verify.c) --------------------------------------------- */

#include <fcntl.h>
#include <unistd.h>

#include <mmkit/group.h>

#include "testutil.h"
#include "verify.h"

TestSuite(engine, .init = tu_setup, .fini = tu_teardown, .timeout = 120);

/* Three files of a piece layout that crosses file boundaries: 40000 + 1 +
 * 90000 bytes in 16 KiB pieces (8 pieces, the last short). */
#define E_PIECE 16384u
static const size_t e_sizes[] = { 40000, 1, 90000 };
#define E_FILES (sizeof e_sizes / sizeof e_sizes[0])

typedef struct efix {
    mmk_group     *g;
    uint64_t       total;
    size_t         npieces;
    unsigned char *data;     /* the concatenation */
    unsigned char *expected;
    uint64_t       sizes[E_FILES];
} efix;

static void efix_open(efix *f)
{
    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < E_FILES; i++)
        f->total += e_sizes[i];
    f->npieces = (size_t)((f->total - 1) / E_PIECE + 1);
    f->data = malloc(f->total);
    tu_pattern(f->data, f->total, 0, 7);
    mmk_group_entry ents[E_FILES];
    static const char *const names[] = { "f0", "f1", "f2" };
    uint64_t off = 0;
    for (size_t i = 0; i < E_FILES; i++) {
        tu_write_file(tu_path(names[i]), f->data + off, e_sizes[i]);
        ents[i] = (mmk_group_entry){ names[i], e_sizes[i] };
        f->sizes[i] = e_sizes[i];
        off += e_sizes[i];
    }
    f->expected = malloc(f->npieces * MMK_SHA1_LEN);
    for (size_t p = 0; p < f->npieces; p++) {
        uint64_t at = (uint64_t)p * E_PIECE;
        size_t n = (size_t)(f->total - at < E_PIECE ? f->total - at : E_PIECE);
        cr_assert_eq(mmk_sha1_buf(f->data + at, n, f->expected + p * MMK_SHA1_LEN), 0);
    }
    cr_assert_eq(mmk_group_open(&f->g, ents, E_FILES,
                                &(mmk_group_opts){ .root = tu_dir(), .io = MMK_GROUP_PLAIN }), 0);
}

static void efix_close(efix *f)
{
    cr_expect_eq(mmk_group_close(f->g), 0);
    free(f->data);
    free(f->expected);
}

static mmk_hash_job efix_job(efix *f, const mmk_hash_run *runs, size_t nruns,
                             unsigned char *status, unsigned char *digests)
{
    return (mmk_hash_job){
        .group = f->g, .piece_len = E_PIECE, .total = f->total, .npieces = f->npieces,
        .runs = runs, .nruns = nruns, .expected = f->expected, .digests = digests,
        .status = status, .depth = -1, .file_sizes = f->sizes, .nfiles = E_FILES,
    };
}

Test(engine, every_mode_and_thread_count)
{
    efix f;
    efix_open(&f);
    static const int modes[] = { MMK_READ_AUTO, MMK_READ_PREAD, MMK_READ_PIN };
    static const int depths[] = { 0, 1, 3 };
    static const size_t chunks[] = { 0, 4096, 5000, 20000 };
    for (size_t m = 0; m < 3; m++)
        for (unsigned t = 1; t <= 4; t++)
            for (size_t d = 0; d < 3; d++)
                for (size_t c = 0; c < 4; c++) {
                    unsigned char status[16], digests[16 * MMK_SHA1_LEN];
                    memset(digests, 0, sizeof digests);
                    mmk_hash_run run = { 0, f.npieces, 0 };
                    mmk_hash_job j = efix_job(&f, &run, 1, status, digests);
                    j.read_mode = modes[m];
                    j.threads = t;
                    j.depth = depths[d];
                    j.chunk = chunks[c];
                    cr_assert_eq(mmk_hash_pieces(&j), 0);
                    cr_expect_eq(j.good, f.npieces, "mode %d, %u threads, depth %d, chunk %zu",
                                 modes[m], t, depths[d], chunks[c]);
                    cr_expect_eq(j.bad + j.unreadable, 0);
                    cr_expect_eq(j.bytes, f.total);
                    cr_expect_eq(memcmp(digests, f.expected, f.npieces * MMK_SHA1_LEN), 0);
                    /* AUTO copies files under MMK_HASH_PIN_MIN_FILE: all of these. */
                    cr_expect_eq(j.pinned, modes[m] == MMK_READ_PIN ? f.total : 0);
                }
    efix_close(&f);
}

Test(engine, runs_and_bad_pieces)
{
    efix f;
    efix_open(&f);
    /* A wrong digest for piece 4: only it is bad. */
    f.expected[4 * MMK_SHA1_LEN] ^= 1;
    /* Pieces 1-2 and 4-7 only (the caller left 0 and 3 out). */
    mmk_hash_run runs[] = { { 1, 2, E_PIECE }, { 4, 4, 4 * (uint64_t)E_PIECE } };
    unsigned char status[16];
    memset(status, 0xee, sizeof status);
    mmk_hash_job j = efix_job(&f, runs, 2, status, NULL);
    j.threads = 3;
    int rc0 = mmk_hash_pieces(&j);
    cr_assert_eq(rc0, 0, "rc %d", rc0);
    cr_expect_eq(j.good, 5);
    cr_expect_eq(j.bad, 1);
    cr_expect_eq(status[0], 0xee, "pieces outside the runs are left alone");
    cr_expect_eq(status[3], 0xee);
    cr_expect_eq(status[4], MMK_PIECE_BAD);
    for (size_t p = 5; p < f.npieces; p++)
        cr_expect_eq(status[p], MMK_PIECE_GOOD);
    /* Inconsistent jobs. */
    mmk_hash_run past = { 8, 2, 0 };
    j = efix_job(&f, &past, 1, status, NULL);
    cr_expect_eq(mmk_hash_pieces(&j), -EINVAL);
    mmk_hash_run beyond = { 7, 1, f.total };
    j = efix_job(&f, &beyond, 1, status, NULL);
    cr_expect_eq(mmk_hash_pieces(&j), -EINVAL, "the run's bytes lie past the group");
    j = efix_job(&f, runs, 2, status, NULL);
    j.npieces = 3;
    cr_expect_eq(mmk_hash_pieces(&j), -EINVAL, "pieces do not match the total");
    efix_close(&f);
}

/* A file shrinking under the engine: its pieces are unreadable (-EIO),
 * never a SIGBUS, in both read modes. */
Test(engine, file_truncated_under_it)
{
    static const int modes[] = { MMK_READ_AUTO, MMK_READ_PREAD, MMK_READ_PIN };
    for (size_t m = 0; m < 2; m++) {
        efix f;
        efix_open(&f);
        cr_assert_eq(truncate(tu_path("f2"), 10000), 0);
        unsigned char status[16];
        mmk_hash_run run = { 0, f.npieces, 0 };
        mmk_hash_job j = efix_job(&f, &run, 1, status, NULL);
        j.read_mode = modes[m];
        j.threads = 2;
        cr_assert_eq(mmk_hash_pieces(&j), 0);
        /* f2 starts at 40001: byte 50001 on is gone, from piece 3 on. */
        cr_expect_eq(j.good, 3, "mode %d: %zu good", modes[m], j.good);
        cr_expect_eq(j.unreadable, f.npieces - 3);
        cr_expect_eq(j.err, -EIO, "mode %d: err %d", modes[m], j.err);
        for (size_t p = 3; p < f.npieces; p++)
            cr_expect_eq(status[p], MMK_PIECE_UNREADABLE);
        efix_close(&f);
        tu_teardown();
        tu_setup();
    }
}
