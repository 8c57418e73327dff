/* tools/mmk/torrent_verify.c — checking a torrent's data on disk: which files
 * are there, which pieces that leaves verifiable, and hashing those through
 * a group of the present files (see torrent.h). */
#include "torrent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static bool usable(unsigned char state)
{
    return state == MMK_TFILE_OK || state == MMK_TFILE_LONG;
}

/* Look at every file: fstatat beneath the data directory (a stat only; the
 * group, which reads, refuses what leaves the directory). */
static void survey(const mmk_torrent *t, int dirfd, mmk_verify_result *r)
{
    for (size_t i = 0; i < t->nfiles; i++) {
        struct stat st;
        if (fstatat(dirfd, t->files[i].path, &st, 0) < 0) {
            r->file_state[i] = MMK_TFILE_MISSING;
            r->file_err[i] = -errno;
        } else if (!S_ISREG(st.st_mode)) {
            r->file_state[i] = MMK_TFILE_NOTFILE;
        } else {
            r->file_size[i] = (uint64_t)st.st_size;
            r->file_state[i] = r->file_size[i] < t->files[i].length ? MMK_TFILE_SHORT
                             : r->file_size[i] > t->files[i].length ? MMK_TFILE_LONG
                                                                    : MMK_TFILE_OK;
        }
    }
}

/* Open a group of the usable files; a file the group refuses is marked so
 * and left out, and the group tried again (a race with the survey, or a
 * symbolic link out of the directory).  *gstart gets each usable file's
 * offset in the group. */
static int open_present(const mmk_torrent *t, const char *data_dir, mmk_cache *cache,
                        mmk_verify_result *r, uint64_t *gstart, uint64_t *gsizes,
                        mmk_group **out, char *err)
{
    mmk_group_entry *ents = malloc((t->nfiles ? t->nfiles : 1) * sizeof *ents);
    size_t *index = malloc((t->nfiles ? t->nfiles : 1) * sizeof *index);
    int rc = 0;
    if (!ents || !index) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t attempt = 0; attempt <= t->nfiles; attempt++) {
        size_t n = 0;
        uint64_t off = 0;
        for (size_t i = 0; i < t->nfiles; i++) {
            if (!usable(r->file_state[i]))
                continue;
            ents[n].path = t->files[i].path;
            ents[n].size = t->files[i].length;
            gsizes[n] = t->files[i].length;
            index[n++] = i;
            gstart[i] = off;
            off += t->files[i].length;
        }
        size_t failed = SIZE_MAX;
        /* Copies are a read-once scan: plain pread, never through windows. */
        mmk_group_opts go = { .flags = MMK_RDONLY, .root = data_dir, .failed = &failed,
                              .cache = cache, .io = MMK_GROUP_PLAIN };
        rc = mmk_group_open(out, ents, n, &go);
        if (rc == 0)
            goto out;
        if (rc == -ENOMEM || failed >= n) {
            fail(err, rc, "%s: %s", data_dir, mmk_strerror(rc));
            goto out;
        }
        size_t i = index[failed];
        r->file_state[i] = rc == -ENOENT ? MMK_TFILE_MISSING
                         : rc == -EINVAL ? MMK_TFILE_SHORT
                         : rc == -EISDIR || rc == -ENODEV ? MMK_TFILE_NOTFILE
                                                          : MMK_TFILE_REFUSED;
        r->file_err[i] = rc;
    }
    rc = fail(err, -EIO, "%s: the files keep changing", data_dir);
out:
    free(ents);
    free(index);
    return rc;
}

/* Pieces that touch a file we cannot read are missing; the others form runs
 * of consecutive pieces, each contiguous in the group of present files. */
static int plan_runs(const mmk_torrent *t, mmk_verify_result *r, const uint64_t *gstart,
                     mmk_hash_run **runs_out, size_t *nruns_out)
{
    for (size_t i = 0; i < t->nfiles; i++) {
        const mmk_torrent_file *f = &t->files[i];
        if (usable(r->file_state[i]) || f->length == 0)
            continue;
        size_t a = (size_t)(f->offset / t->piece_len);
        size_t b = (size_t)((f->offset + f->length - 1) / t->piece_len);
        for (size_t p = a; p <= b; p++)
            r->status[p] = MMK_PIECE_MISSING;
    }
    size_t nruns = 0, cap = 16;
    mmk_hash_run *runs = malloc(cap * sizeof *runs);
    if (!runs)
        return -ENOMEM;
    for (size_t p = 0; p < t->npieces;) {
        if (r->status[p] == MMK_PIECE_MISSING) {
            p++;
            continue;
        }
        size_t q = p;
        while (q < t->npieces && r->status[q] != MMK_PIECE_MISSING)
            q++;
        if (nruns == cap) {
            cap *= 2;
            mmk_hash_run *nr = realloc(runs, cap * sizeof *nr);
            if (!nr) {
                free(runs);
                return -ENOMEM;
            }
            runs = nr;
        }
        uint64_t off = (uint64_t)p * t->piece_len;
        size_t fi = mmk_torrent_file_at(t, off);
        runs[nruns++] = (mmk_hash_run){ p, q - p, gstart[fi] + (off - t->files[fi].offset) };
        p = q;
    }
    *runs_out = runs;
    *nruns_out = nruns;
    return 0;
}

int mmk_torrent_verify(const mmk_torrent *t, const char *data_dir, const mmk_verify_opts *o,
                       mmk_verify_result *r, char *err)
{
    static const mmk_verify_opts defaults = { .depth = -1 };
    if (err)
        err[0] = '\0';
    if (!t || !data_dir || !r)
        return -EINVAL;
    if (!o)
        o = &defaults;
    memset(r, 0, sizeof *r);
    size_t nf = t->nfiles ? t->nfiles : 1;
    r->status = calloc(t->npieces ? t->npieces : 1, 1);
    r->file_state = calloc(nf, 1);
    r->file_err = calloc(nf, sizeof *r->file_err);
    r->file_size = calloc(nf, sizeof *r->file_size);
    uint64_t *gstart = calloc(nf, sizeof *gstart);
    uint64_t *gsizes = calloc(nf, sizeof *gsizes);
    mmk_hash_run *runs = NULL;
    size_t nruns = 0;
    mmk_group *g = NULL;
    mmk_cache *cache = NULL;
    int rc = 0;
    if (!r->status || !r->file_state || !r->file_err || !r->file_size || !gstart || !gsizes) {
        rc = -ENOMEM;
        goto out;
    }
    int dirfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        rc = fail(err, -errno, "%s: %s", data_dir, strerror(errno));
        goto out;
    }
    survey(t, dirfd, r);
    close(dirfd);
    if (o->read_mode != MMK_READ_PREAD &&
        (rc = mmk_hash_scan_cache(&cache, o->threads, o->depth)) < 0) {
        fail(err, rc, "%s", mmk_strerror(rc));
        goto out;
    }
    if ((rc = open_present(t, data_dir, cache, r, gstart, gsizes, &g, err)) < 0)
        goto out;
    if ((rc = plan_runs(t, r, gstart, &runs, &nruns)) < 0)
        goto out;
    mmk_hash_job job = {
        .group = g, .piece_len = t->piece_len, .total = t->total, .npieces = t->npieces,
        .runs = runs, .nruns = nruns, .expected = t->pieces, .status = r->status,
        .threads = o->threads, .read_mode = o->read_mode, .depth = o->depth,
        .chunk = o->chunk, .progress = o->progress, .progress_arg = o->progress_arg,
        .file_sizes = gsizes, .nfiles = mmk_group_count(g),
    };
    if ((rc = mmk_hash_pieces(&job)) < 0) {
        fail(err, rc, "hashing: %s", mmk_strerror(rc));
        goto out;
    }
    r->good = job.good;
    r->bad = job.bad;
    r->unreadable = job.unreadable;
    r->bytes = job.bytes;
    r->pinned = job.pinned;
    r->seconds = job.seconds;
    r->threads = job.threads_used;
    r->err = job.err;
    for (size_t p = 0; p < t->npieces; p++)
        r->missing += r->status[p] == MMK_PIECE_MISSING;
    for (size_t i = 0; i < t->nfiles; i++)
        r->files_bad += !usable(r->file_state[i]);
out:
    if (g)
        mmk_group_close(g);
    mmk_cache_free(cache);
    free(runs);
    free(gstart);
    free(gsizes);
    if (rc < 0)
        mmk_verify_result_free(r);
    return rc;
}

void mmk_verify_result_free(mmk_verify_result *r)
{
    if (!r)
        return;
    free(r->status);
    free(r->file_state);
    free(r->file_err);
    free(r->file_size);
    memset(r, 0, sizeof *r);
}
