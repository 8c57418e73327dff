/* tools/mmk/torrent_create.c — making a v1 .torrent the way mktorrent does
 * (see torrent.h for what "the way mktorrent does" means, found by running
 * mktorrent 1.1 on trees with hidden, empty, FIFO and symlinked entries). */
#include "torrent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bencode.h"
#include "verify.h"

static int fail(char *err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, int rc, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, MMK_TORRENT_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ---- walking the tree ------------------------------------------------------ */

typedef struct found {
    char    *rel;  /* relative to the top directory, '/'-separated */
    uint64_t size;
} found;

typedef struct walk {
    found   *v;
    size_t   n, cap;
    char    *top;   /* the directory as given */
    struct { dev_t dev; ino_t ino; } *anc; /* directories from the top down */
    size_t   nanc, capanc;
    char    *err;
} walk;

static int add_found(walk *w, const char *rel, uint64_t size)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        found *v = realloc(w->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        w->v = v;
        w->cap = cap;
    }
    if (!(w->v[w->n].rel = strdup(rel)))
        return -ENOMEM;
    w->v[w->n++].size = size;
    return 0;
}

static int cmp_found(const void *a, const void *b)
{
    return strcmp(((const found *)a)->rel, ((const found *)b)->rel);
}

/* The names in directory `dir` (a path), without "." and "..". */
static int list_dir(const char *dir, char ***names, size_t *count)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    char **v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            rc = -errno;
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                rc = -ENOMEM;
                break;
            }
            v = nv;
        }
        if (!(v[n] = strdup(de->d_name))) {
            rc = -ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
        return rc;
    }
    *names = v;
    *count = n;
    return 0;
}

static char *join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *p = malloc(na + 1 + nb + 1);
    if (p) {
        memcpy(p, a, na);
        p[na] = '/';
        memcpy(p + na + 1, b, nb + 1);
    }
    return p;
}

/* Walk the directory `rel` (relative to w->top; "" for the top itself),
 * which stat says is st.  Symbolic links are followed, as mktorrent does; a
 * directory met again below itself is a loop. */
static int walk_dir(walk *w, const char *rel, const struct stat *st)
{
    for (size_t i = 0; i < w->nanc; i++)
        if (w->anc[i].dev == st->st_dev && w->anc[i].ino == st->st_ino)
            return fail(w->err, -ELOOP, "%s/%s: a symbolic link loop", w->top, rel);
    if (w->nanc == w->capanc) {
        size_t cap = w->capanc ? w->capanc * 2 : 16;
        void *p = realloc(w->anc, cap * sizeof *w->anc);
        if (!p)
            return -ENOMEM;
        w->anc = p;
        w->capanc = cap;
    }
    w->anc[w->nanc].dev = st->st_dev;
    w->anc[w->nanc].ino = st->st_ino;
    w->nanc++;

    char *dir = *rel ? join(w->top, rel) : strdup(w->top);
    char **names = NULL;
    size_t count = 0;
    int rc = dir ? list_dir(dir, &names, &count) : -ENOMEM;
    if (rc < 0 && rc != -ENOMEM)
        fail(w->err, rc, "%s: %s", dir, strerror(-rc));
    for (size_t i = 0; rc == 0 && i < count; i++) {
        char *child = *rel ? join(rel, names[i]) : strdup(names[i]);
        char *full = child ? join(w->top, child) : NULL;
        struct stat cst;
        if (!full) {
            rc = -ENOMEM;
        } else if (strlen(child) >= MMK_TORRENT_MAX_PATH) {
            rc = fail(w->err, -ENAMETOOLONG, "%s: path too long for a torrent", full);
        } else if (stat(full, &cst) < 0) {
            rc = -errno;
            fail(w->err, rc, "%s: %s", full, strerror(errno));
        } else if (S_ISDIR(cst.st_mode)) {
            rc = walk_dir(w, child, &cst);
        } else if (S_ISREG(cst.st_mode)) {
            rc = add_found(w, child, (uint64_t)cst.st_size);
        } /* FIFOs, sockets, devices: left out, as mktorrent does */
        free(child);
        free(full);
    }
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    free(dir);
    w->nanc--;
    return rc;
}

static void walk_free(walk *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->v[i].rel);
    free(w->v);
    free(w->anc);
    free(w->top);
}

/* ---- name ------------------------------------------------------------------ */

/* mktorrent names the torrent after the last component of the path as given
 * (trailing slashes aside); for ".", ".." or "/" there is none, so we use the
 * last component of the resolved path. */
static int default_name(const char *path, char **out, char *err)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    char *name = NULL;
    if (n - b > 0 && !(n - b == 1 && path[b] == '.') &&
        !(n - b == 2 && path[b] == '.' && path[b + 1] == '.')) {
        if (!(name = malloc(n - b + 1)))
            return -ENOMEM;
        memcpy(name, path + b, n - b);
        name[n - b] = '\0';
    } else {
        char *real = realpath(path, NULL);
        if (!real)
            return fail(err, -errno, "%s: %s", path, strerror(errno));
        const char *slash = strrchr(real, '/');
        const char *base = slash ? slash + 1 : real;
        if (!*base) {
            free(real);
            return fail(err, -EINVAL, "%s has no name to give the torrent: use -n NAME", path);
        }
        name = strdup(base);
        free(real);
        if (!name)
            return -ENOMEM;
    }
    *out = name;
    return 0;
}

/* ---- encoding ---------------------------------------------------------------- */

/* Split "a,b,c" into the URLs of one tier. */
static void put_tier(benc_buf *b, const char *tier)
{
    benc_put_list(b);
    for (const char *p = tier;;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        if (n)
            benc_put_str(b, p, n);
        if (!c)
            break;
        p = c + 1;
    }
    benc_put_end(b);
}

static size_t count_urls(const mmk_torrent_create_opts *o, const char **first, size_t *first_len)
{
    size_t urls = 0;
    *first = NULL;
    for (size_t t = 0; t < o->nannounce; t++)
        for (const char *p = o->announce[t];;) {
            const char *c = strchr(p, ',');
            size_t n = c ? (size_t)(c - p) : strlen(p);
            if (n) {
                if (!*first) {
                    *first = p;
                    *first_len = n;
                }
                urls++;
            }
            if (!c)
                break;
            p = c + 1;
        }
    return urls;
}

/* The info dictionary, keys in order: files | length, name, piece length,
 * pieces, private, source. */
static void put_info(benc_buf *b, const mmk_torrent_create_opts *o, const char *name,
                     bool multi, const walk *w, uint64_t piece_len,
                     const unsigned char *digests, size_t npieces)
{
    benc_put_dict(b);
    if (multi) {
        benc_put_cstr(b, "files");
        benc_put_list(b);
        for (size_t i = 0; i < w->n; i++) {
            benc_put_dict(b);
            benc_put_cstr(b, "length");
            benc_put_int(b, (int64_t)w->v[i].size);
            benc_put_cstr(b, "path");
            benc_put_list(b);
            for (const char *p = w->v[i].rel;;) {
                const char *s = strchr(p, '/');
                size_t n = s ? (size_t)(s - p) : strlen(p);
                benc_put_str(b, p, n);
                if (!s)
                    break;
                p = s + 1;
            }
            benc_put_end(b);
            benc_put_end(b);
        }
        benc_put_end(b);
    } else {
        benc_put_cstr(b, "length");
        benc_put_int(b, (int64_t)w->v[0].size);
    }
    benc_put_cstr(b, "name");
    benc_put_cstr(b, name);
    benc_put_cstr(b, "piece length");
    benc_put_int(b, (int64_t)piece_len);
    benc_put_cstr(b, "pieces");
    benc_put_str(b, digests, npieces * MMK_SHA1_LEN);
    if (o->priv) {
        benc_put_cstr(b, "private");
        benc_put_int(b, 1);
    }
    if (o->source) {
        benc_put_cstr(b, "source");
        benc_put_cstr(b, o->source);
    }
    benc_put_end(b);
}

/* ---- create ----------------------------------------------------------------- */

static int hash_files(const mmk_torrent_create_opts *o, const walk *w, bool multi,
                      uint64_t piece_len, uint64_t total, unsigned char *digests,
                      size_t npieces, double *seconds, char *err)
{
    /* The group reads every file by its resolved path, relative to "/":
     * files reached through symbolic links that point out of the directory
     * are part of the torrent, as with mktorrent, and a group refuses only
     * paths that leave its root. */
    mmk_group_entry *ents = calloc(w->n ? w->n : 1, sizeof *ents);
    char **real = calloc(w->n ? w->n : 1, sizeof *real);
    unsigned char *status = malloc(npieces ? npieces : 1);
    uint64_t *sizes = calloc(w->n ? w->n : 1, sizeof *sizes);
    mmk_group *g = NULL;
    mmk_cache *cache = NULL;
    int rc = 0;
    if (!ents || !real || !status || !sizes) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < w->n; i++) {
        char *full = multi ? join(w->top, w->v[i].rel) : strdup(w->top);
        if (!full) {
            rc = -ENOMEM;
            goto out;
        }
        real[i] = realpath(full, NULL);
        if (!real[i]) {
            rc = fail(err, -errno, "%s: %s", full, strerror(errno));
            free(full);
            goto out;
        }
        free(full);
        ents[i].path = real[i] + 1;
        ents[i].size = sizes[i] = w->v[i].size;
    }
    if (o->read_mode != MMK_READ_PREAD && (rc = mmk_hash_scan_cache(&cache, o->threads, -1)) < 0)
        goto out;
    size_t failed = SIZE_MAX;
    rc = mmk_group_open(&g, ents, w->n,
                        &(mmk_group_opts){ .flags = MMK_RDONLY, .root = "/", .cache = cache,
                                           .io = MMK_GROUP_PLAIN, .failed = &failed });
    if (rc < 0) {
        if (failed < w->n)
            fail(err, rc, "%s: %s", real[failed], mmk_strerror(rc));
        else
            fail(err, rc, "cannot open the files: %s", mmk_strerror(rc));
        goto out;
    }
    mmk_hash_run run = { 0, npieces, 0 };
    mmk_hash_job job = {
        .group = g, .piece_len = piece_len, .total = total, .npieces = npieces,
        .runs = &run, .nruns = 1, .digests = digests, .status = status,
        .threads = o->threads, .read_mode = o->read_mode, .depth = -1,
        .progress = o->progress, .progress_arg = o->progress_arg,
        .file_sizes = sizes, .nfiles = w->n,
    };
    if ((rc = mmk_hash_pieces(&job)) < 0) {
        fail(err, rc, "hashing: %s", mmk_strerror(rc));
        goto out;
    }
    *seconds = job.seconds;
    if (job.unreadable) {
        rc = fail(err, job.err ? job.err : -EIO, "reading the files: %s",
                  mmk_strerror(job.err ? job.err : -EIO));
        goto out;
    }
out:
    if (g)
        mmk_group_close(g);
    mmk_cache_free(cache);
    if (real)
        for (size_t i = 0; i < w->n; i++)
            free(real[i]);
    free(real);
    free(ents);
    free(status);
    free(sizes);
    return rc;
}

int mmk_torrent_create(const mmk_torrent_create_opts *o, mmk_torrent_created *out,
                       char *err)
{
    if (err)
        err[0] = '\0';
    if (!o || !o->path || !out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    if (o->piece_log < MMK_TORRENT_MIN_CREATE_LOG || o->piece_log > MMK_TORRENT_MAX_CREATE_LOG)
        return fail(err, -EINVAL, "piece length 2^%u out of range 2^%d..2^%d", o->piece_log,
                    MMK_TORRENT_MIN_CREATE_LOG, MMK_TORRENT_MAX_CREATE_LOG);
    uint64_t piece_len = (uint64_t)1 << o->piece_log;

    walk w = { .err = err };
    char *name = NULL;
    unsigned char *digests = NULL;
    benc_buf b = { 0 };
    int rc = 0;
    struct stat st;
    if (!(w.top = strdup(o->path))) {
        rc = -ENOMEM;
        goto out;
    }
    if (o->name) {
        if (!(name = strdup(o->name))) {
            rc = -ENOMEM;
            goto out;
        }
    } else if ((rc = default_name(o->path, &name, err)) < 0) {
        goto out;
    }
    const char *why = mmk_torrent_unsafe_component((const unsigned char *)name, strlen(name));
    if (why) {
        rc = fail(err, -EINVAL, "the name \"%s\" is unusable: %s", name, why);
        goto out;
    }
    if (stat(o->path, &st) < 0) {
        rc = fail(err, -errno, "%s: %s", o->path, strerror(errno));
        goto out;
    }
    bool multi = S_ISDIR(st.st_mode);
    if (multi) {
        if ((rc = walk_dir(&w, "", &st)) < 0) {
            if (err && !err[0])
                fail(err, rc, "%s: %s", o->path, mmk_strerror(rc));
            goto out;
        }
        /* strcmp order of the whole relative path, as mktorrent lists them
         * (so "a-b" < "a/b" < "a0"). */
        if (w.n > 1)
            qsort(w.v, w.n, sizeof *w.v, cmp_found);
    } else if (S_ISREG(st.st_mode)) {
        if ((rc = add_found(&w, name, (uint64_t)st.st_size)) < 0)
            goto out;
    } else {
        rc = fail(err, -EINVAL, "%s: not a regular file or a directory", o->path);
        goto out;
    }

    uint64_t total = 0;
    for (size_t i = 0; i < w.n; i++) {
        if (w.v[i].size > (uint64_t)INT64_MAX - total) {
            rc = fail(err, -EOVERFLOW, "the files add up to more than 2^63 bytes");
            goto out;
        }
        total += w.v[i].size;
    }
    uint64_t np = total ? (total - 1) / piece_len + 1 : 0;
    if (np > SIZE_MAX / MMK_SHA1_LEN || np * MMK_SHA1_LEN > MMK_TORRENT_MAX_FILE) {
        rc = fail(err, -EFBIG, "%llu pieces: too many for a .torrent; use a larger piece "
                  "length", (unsigned long long)np);
        goto out;
    }
    size_t npieces = (size_t)np;
    if (!(digests = malloc(npieces ? npieces * MMK_SHA1_LEN : 1))) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = hash_files(o, &w, multi, piece_len, total, digests, npieces, &out->seconds,
                         err)) < 0)
        goto out;

    const char *first_url;
    size_t first_len = 0;
    size_t urls = count_urls(o, &first_url, &first_len);
    benc_put_dict(&b);
    if (first_url) {
        benc_put_cstr(&b, "announce");
        benc_put_str(&b, first_url, first_len);
    }
    if (urls > 1) {
        benc_put_cstr(&b, "announce-list");
        benc_put_list(&b);
        for (size_t t = 0; t < o->nannounce; t++)
            put_tier(&b, o->announce[t]);
        benc_put_end(&b);
    }
    if (o->comment) {
        benc_put_cstr(&b, "comment");
        benc_put_cstr(&b, o->comment);
    }
    char created_by[64];
    snprintf(created_by, sizeof created_by, "mmk %s", mmk_version());
    benc_put_cstr(&b, "created by");
    benc_put_cstr(&b, created_by);
    if (!o->no_date) {
        benc_put_cstr(&b, "creation date");
        benc_put_int(&b, (int64_t)time(NULL));
    }
    benc_put_cstr(&b, "info");
    size_t info_at = b.len;
    put_info(&b, o, name, multi, &w, piece_len, digests, npieces);
    size_t info_end = b.len;
    benc_put_end(&b);
    if (b.err) {
        rc = b.err;
        goto out;
    }
    if ((rc = mmk_sha1_buf(b.p + info_at, info_end - info_at, out->info_hash)) < 0)
        goto out;
    out->data = b.p;
    out->len = b.len;
    b.p = NULL;
    out->name = name;
    name = NULL;
    out->nfiles = w.n;
    out->npieces = npieces;
    out->total = total;
    out->piece_len = piece_len;
out:
    benc_buf_free(&b);
    free(digests);
    free(name);
    walk_free(&w);
    return rc;
}

void mmk_torrent_created_free(mmk_torrent_created *c)
{
    if (!c)
        return;
    free(c->data);
    free(c->name);
    memset(c, 0, sizeof *c);
}
