/* tools/mmk/torrent.c — parsing and validating a .torrent (see torrent.h). */
#include "torrent.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bencode.h"

static int bad(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, MMK_TORRENT_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return -EBADMSG;
}

/* A printable rendering of untrusted bytes for messages: control bytes, '"'
 * and '\\' escaped, cut to fit. */
static const char *show(char *dst, size_t cap, const unsigned char *s, size_t n)
{
    /* Room for one escape (4), "..." and the NUL. */
    size_t k = 0, i = 0;
    for (; i < n && k + 8 < cap; i++) {
        unsigned char c = s[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            k += (size_t)snprintf(dst + k, cap - k, "\\x%02x", c);
        else
            dst[k++] = (char)c;
    }
    if (i < n) {
        memcpy(dst + k, "...", 3);
        k += 3;
    }
    dst[k] = '\0';
    return dst;
}

const char *mmk_torrent_unsafe_component(const unsigned char *s, size_t n)
{
    if (n == 0)
        return "an empty path component";
    if (n == 1 && s[0] == '.')
        return "a \".\" component";
    if (n == 2 && s[0] == '.' && s[1] == '.')
        return "a \"..\" component (it would leave the torrent's directory)";
    if (memchr(s, '\0', n))
        return "a NUL byte";
    if (s[0] == '/')
        return "an absolute path";
    if (memchr(s, '/', n))
        return "a '/' inside a component";
    return NULL;
}

static char *dup_bytes(const unsigned char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* An optional string field: copied, or left NULL; -EBADMSG if not a string. */
static int opt_str(const benc_doc *d, const benc_node *dict, const char *key, char **out,
                   char *err)
{
    const benc_node *n = benc_dict_get(d, dict, key);
    if (!n)
        return 0;
    if (n->type != BENC_STR)
        return bad(err, "\"%s\" is not a string", key);
    if (!(*out = dup_bytes(benc_str(d, n), n->v.s.len)))
        return -ENOMEM;
    return 0;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One file of a multi-file torrent: NAME/c1/c2/... */
static int parse_file(const benc_doc *d, const benc_node *f, size_t i, const char *name,
                      mmk_torrent_file *out, char *err)
{
    char tmp[128];
    if (f->type != BENC_DICT)
        return bad(err, "file %zu: not a dictionary", i);
    const benc_node *len = benc_dict_get(d, f, "length");
    const benc_node *path = benc_dict_get(d, f, "path");
    if (!len || len->type != BENC_INT || len->v.i < 0)
        return bad(err, "file %zu: no \"length\", or not a non-negative integer", i);
    if (!path || path->type != BENC_LIST || path->count == 0)
        return bad(err, "file %zu: no \"path\", or not a non-empty list", i);
    size_t total = strlen(name);
    for (const benc_node *c = benc_first(d, path); c; c = benc_next(d, c)) {
        if (c->type != BENC_STR)
            return bad(err, "file %zu: a path component is not a string", i);
        const char *why = mmk_torrent_unsafe_component(benc_str(d, c), c->v.s.len);
        if (why)
            return bad(err, "file %zu: unsafe path: component \"%s\" is %s", i,
                       show(tmp, sizeof tmp, benc_str(d, c), c->v.s.len), why);
        total += 1 + c->v.s.len;
        if (total >= MMK_TORRENT_MAX_PATH)
            return bad(err, "file %zu: path longer than %d bytes", i,
                       MMK_TORRENT_MAX_PATH - 1);
    }
    char *p = malloc(total + 1);
    if (!p)
        return -ENOMEM;
    size_t k = strlen(name);
    memcpy(p, name, k);
    for (const benc_node *c = benc_first(d, path); c; c = benc_next(d, c)) {
        p[k++] = '/';
        memcpy(p + k, benc_str(d, c), c->v.s.len);
        k += c->v.s.len;
    }
    p[k] = '\0';
    out->path = p;
    out->length = (uint64_t)len->v.i;
    return 0;
}

static int parse_info(mmk_torrent *t, const benc_doc *d, const benc_node *info, char *err)
{
    char tmp[128];
    benc_error be;
    if (benc_check_sorted(d, info, &be) < 0)
        return bad(err, "info dictionary: %s", be.msg);
    int rc = mmk_sha1_buf(d->in + info->raw_off, info->raw_len, t->info_hash);
    if (rc < 0)
        return rc;
    t->info_len = info->raw_len;

    const benc_node *name = benc_dict_get(d, info, "name");
    if (!name || name->type != BENC_STR)
        return bad(err, "info: no \"name\" string");
    const char *why = mmk_torrent_unsafe_component(benc_str(d, name), name->v.s.len);
    if (why)
        return bad(err, "unsafe name \"%s\": %s",
                   show(tmp, sizeof tmp, benc_str(d, name), name->v.s.len), why);
    if (name->v.s.len >= MMK_TORRENT_MAX_PATH)
        return bad(err, "name longer than %d bytes", MMK_TORRENT_MAX_PATH - 1);
    if (!(t->name = dup_bytes(benc_str(d, name), name->v.s.len)))
        return -ENOMEM;

    const benc_node *pl = benc_dict_get(d, info, "piece length");
    if (!pl || pl->type != BENC_INT || pl->v.i <= 0 ||
        (uint64_t)pl->v.i > MMK_TORRENT_MAX_PIECE)
        return bad(err, "info: \"piece length\" missing, or not an integer in 1..%" PRIu64,
                   MMK_TORRENT_MAX_PIECE);
    t->piece_len = (uint64_t)pl->v.i;

    const benc_node *pieces = benc_dict_get(d, info, "pieces");
    if (!pieces || pieces->type != BENC_STR || pieces->v.s.len % MMK_SHA1_LEN)
        return bad(err, "info: \"pieces\" missing, or not a multiple of %d bytes",
                   MMK_SHA1_LEN);
    t->npieces = pieces->v.s.len / MMK_SHA1_LEN;
    if (!(t->pieces = malloc(pieces->v.s.len ? pieces->v.s.len : 1)))
        return -ENOMEM;
    memcpy(t->pieces, benc_str(d, pieces), pieces->v.s.len);

    const benc_node *priv = benc_dict_get(d, info, "private");
    if (priv && priv->type != BENC_INT)
        return bad(err, "info: \"private\" is not an integer");
    t->priv = priv && priv->v.i == 1;
    if ((rc = opt_str(d, info, "source", &t->source, err)) < 0)
        return rc;

    const benc_node *length = benc_dict_get(d, info, "length");
    const benc_node *files = benc_dict_get(d, info, "files");
    if (length && files)
        return bad(err, "info: both \"length\" and \"files\" (single- or multi-file?)");
    if (length) {
        if (length->type != BENC_INT || length->v.i < 0)
            return bad(err, "info: \"length\" is not a non-negative integer");
        if (!(t->files = calloc(1, sizeof *t->files)))
            return -ENOMEM;
        t->nfiles = 1;
        if (!(t->files[0].path = strdup(t->name)))
            return -ENOMEM;
        t->files[0].length = (uint64_t)length->v.i;
    } else if (files) {
        if (files->type != BENC_LIST)
            return bad(err, "info: \"files\" is not a list");
        t->multi = true;
        if (files->count && !(t->files = calloc(files->count, sizeof *t->files)))
            return -ENOMEM;
        size_t i = 0;
        for (const benc_node *f = benc_first(d, files); f; f = benc_next(d, f), i++) {
            if ((rc = parse_file(d, f, i, t->name, &t->files[i], err)) < 0)
                return rc;
            t->nfiles = i + 1;
        }
    } else {
        return bad(err, "info: neither \"length\" nor \"files\"");
    }

    uint64_t off = 0;
    for (size_t i = 0; i < t->nfiles; i++) {
        if (t->files[i].length > (uint64_t)INT64_MAX - off)
            return bad(err, "file sizes add up past 2^63 bytes");
        t->files[i].offset = off;
        off += t->files[i].length;
    }
    t->total = off;
    uint64_t want = off ? (off - 1) / t->piece_len + 1 : 0;
    if (want != t->npieces)
        return bad(err, "%" PRIu64 " bytes in pieces of %" PRIu64 " make %" PRIu64
                   " pieces, but the torrent has %zu hashes",
                   off, t->piece_len, want, t->npieces);

    /* The same path twice would be one file read as two. */
    if (t->nfiles > 1) {
        char **paths = malloc(t->nfiles * sizeof *paths);
        if (!paths)
            return -ENOMEM;
        for (size_t i = 0; i < t->nfiles; i++)
            paths[i] = t->files[i].path;
        qsort(paths, t->nfiles, sizeof *paths, cmp_path);
        for (size_t i = 1; i < t->nfiles; i++)
            if (strcmp(paths[i - 1], paths[i]) == 0) {
                rc = bad(err, "the file \"%s\" is listed twice",
                         show(tmp, sizeof tmp, (const unsigned char *)paths[i],
                              strlen(paths[i])));
                break;
            }
        free(paths);
    }
    return rc;
}

int mmk_torrent_parse(mmk_torrent **out, const void *buf, size_t len, char *err)
{
    if (err)
        err[0] = '\0';
    if (!out || (!buf && len))
        return -EINVAL;
    *out = NULL;
    if (len > MMK_TORRENT_MAX_FILE)
        return bad(err, "%zu bytes: larger than the %zu MiB a .torrent may have here", len,
                   MMK_TORRENT_MAX_FILE >> 20);
    benc_doc d;
    benc_error be;
    int rc = benc_decode(&d, buf, len, 0, NULL, &be);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0)
        return bad(err, "not valid bencode: %s", be.msg);
    mmk_torrent *t = calloc(1, sizeof *t);
    if (!t) {
        benc_free(&d);
        return -ENOMEM;
    }
    const benc_node *root = benc_root(&d);
    const benc_node *info = benc_dict_get(&d, root, "info");
    if (root->type != BENC_DICT) {
        rc = bad(err, "not a torrent: the top level is not a dictionary");
        goto done;
    }
    if (!info || info->type != BENC_DICT) {
        rc = bad(err, "not a torrent: no \"info\" dictionary");
        goto done;
    }
    if ((rc = parse_info(t, &d, info, err)) < 0)
        goto done;
    if ((rc = opt_str(&d, root, "announce", &t->announce, err)) < 0 ||
        (rc = opt_str(&d, root, "comment", &t->comment, err)) < 0 ||
        (rc = opt_str(&d, root, "created by", &t->created_by, err)) < 0)
        goto done;
    const benc_node *date = benc_dict_get(&d, root, "creation date");
    if (date && date->type == BENC_INT)
        t->creation_date = date->v.i;
    const benc_node *al = benc_dict_get(&d, root, "announce-list");
    if (al && al->type == BENC_LIST)
        for (const benc_node *tier = benc_first(&d, al); tier; tier = benc_next(&d, tier))
            if (tier->type == BENC_LIST)
                t->ntrackers += tier->count;
done:
    benc_free(&d);
    if (rc < 0) {
        mmk_torrent_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* The whole of fd, at most MMK_TORRENT_MAX_FILE + 1 bytes (one more tells
 * parse it is too large). */
static int read_all(int fd, unsigned char **out, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    unsigned char *p = malloc(cap);
    if (!p)
        return -ENOMEM;
    for (;;) {
        if (n == cap) {
            if (cap > MMK_TORRENT_MAX_FILE)
                break;
            unsigned char *q = realloc(p, cap * 2);
            if (!q) {
                free(p);
                return -ENOMEM;
            }
            p = q;
            cap *= 2;
        }
        ssize_t r = read(fd, p + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = -errno;
            free(p);
            return e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *out = p;
    *len = n;
    return 0;
}

int mmk_torrent_load(mmk_torrent **out, const char *path, char *err)
{
    if (err)
        err[0] = '\0';
    bool is_stdin = strcmp(path, "-") == 0;
    int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = read_all(fd, &buf, &len);
    if (!is_stdin)
        close(fd);
    if (rc < 0)
        return rc;
    rc = mmk_torrent_parse(out, buf, len, err);
    free(buf);
    return rc;
}

void mmk_torrent_free(mmk_torrent *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nfiles; i++)
        free(t->files[i].path);
    free(t->files);
    free(t->name);
    free(t->pieces);
    free(t->announce);
    free(t->comment);
    free(t->created_by);
    free(t->source);
    free(t);
}

size_t mmk_torrent_file_at(const mmk_torrent *t, uint64_t off)
{
    /* The last file starting at or before off: zero-length files before a
     * file at the same offset sort first, so this is the one holding off. */
    size_t lo = 0, hi = t->nfiles;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->files[mid].offset <= off)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}
