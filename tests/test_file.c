/* tests/test_file.c — file handles (mmkit/file.h): a differential test against
 * plain POSIX I/O on a twin file, the flush policies counted through the
 * system-call table (tests/support/inject.h), MMK_COPY isolation, locks, the
 * stdio view, the plain-I/O fallback, truncation under pins, and bad input. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mmkit.h>

#include "inject.h"
#include "testutil.h"

/* Every test ends with a leak check (a no-op without LeakSanitizer). */
static void file_fini(void)
{
    tu_teardown();
    /* Criterion ignores assertions here, but not a crash: the run fails. */
    if (tu_leaks()) {
        fprintf(stderr, "memory leaked: see the LeakSanitizer report above\n");
        abort();
    }
}

static void file_init(void)
{
    tu_setup();
    umask(022); /* the mode tests below assume it */
}

TestSuite(file, .init = file_init, .fini = file_fini, .timeout = 60);

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
/* What file.c calls PLAIN_MIN: pieces of at least this size through windows
 * not yet mapped go through pread/pwrite. */
#define PLAIN_PATH_MIN (64 * KIB)
/* statfs f_type of NFS (<linux/magic.h>): a filesystem file.c never maps. */
#define NFS_MAGIC 0x6969

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

/* ---- helpers ------------------------------------------------------------ */

static mmk_cache *new_cache(size_t window, size_t max_mapped, size_t max_maps)
{
    mmk_cache *c;
    int rc = mmk_cache_new(&c, &(mmk_cache_opts){ .window = window, .max_mapped = max_mapped,
                                                   .max_maps = max_maps });
    cr_assert_eq(rc, 0, "mmk_cache_new: %d", rc);
    return c;
}

static mmk_file *open_ok(const char *path, const mmk_file_opts *o)
{
    mmk_file *f = NULL;
    int rc = mmk_file_open(&f, path, o);
    cr_assert_eq(rc, 0, "mmk_file_open %s: %s", path, mmk_strerror(rc));
    cr_assert_not_null(f);
    return f;
}

static void close_ok(mmk_file *f)
{
    int rc = mmk_file_close(f);
    cr_assert_eq(rc, 0, "mmk_file_close: %s", mmk_strerror(rc));
}

static void pwrite_ok(mmk_file *f, const void *buf, size_t n, uint64_t off)
{
    ssize_t w = mmk_file_pwrite(f, buf, n, off);
    cr_assert_eq(w, (ssize_t)n, "pwrite %zu at %" PRIu64 ": %zd", n, off, w);
}

static void write_ok(mmk_file *f, const void *buf, size_t n)
{
    ssize_t w = mmk_file_write(f, buf, n);
    cr_assert_eq(w, (ssize_t)n, "write %zu: %zd", n, w);
}

/* Bytes of the file read through a descriptor of our own. */
static void disk_bytes(const char *path, uint64_t off, void *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        cr_assert_gt(r, 0, "pread %s: short file", path);
        got += (size_t)r;
    }
    close(fd);
}

static long nonzero_at(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return (long)i;
    return -1;
}

/* A sync, as this file counts them: one durable flush call reaching the
 * kernel, i.e. an fdatasync, an fsync, or an msync with MS_SYNC.  One
 * mmk_file_sync makes at most one fdatasync (if bytes went through pwrite or
 * the size changed) plus one msync(MS_SYNC) per dirty window. */
static unsigned long sync_events(void)
{
    return inject_count(INJ_FDATASYNC) + inject_count(INJ_FSYNC) + inject_count_msync_sync();
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ==== the differential test ============================================== */

/* Random sequences of operations on an mmk_file and, side by side, the same
 * POSIX calls on a twin file; every result is compared as it comes (a count,
 * or -errno against -1/errno), sizes and whole contents every DIFF_VERIFY
 * operations, the file itself as well as what the handle reads.
 *
 * Known modelling choices:
 *   - mmk_file_pwrite writes at its offset on MMK_APPEND handles (POSIX),
 *     while Linux's pwrite on an O_APPEND descriptor appends: the twin's
 *     pwrite goes through a second descriptor without O_APPEND.
 *   - ftruncate on a read-only descriptor is EINVAL on Linux; mmkit says
 *     -EBADF (POSIX allows either).
 *   - with a second handle, a handle learns that the other one shrank the
 *     file through mmk_file_size (see the two-handle notes in diff_truncate).
 */

#define DIFF_WIN       (64 * KIB)      /* the private caches' window */
#define DIFF_MAX_OFF   (1280 * KIB)    /* offsets: 5x the small budget below */
#define DIFF_MAX_IO    (200 * KIB)     /* largest transfer: > 3 windows */
#define DIFF_VERIFY    4096            /* ops between whole-file comparisons */
#define DIFF_LOG       16              /* ops remembered for a failure report */
#define DIFF_BUF       (DIFF_MAX_OFF + 2 * DIFF_MAX_IO + DIFF_WIN)

typedef struct diff {
    uint64_t   rng;
    unsigned   seed;
    mmk_cache *cache;         /* NULL: the default cache */
    const char *path, *tpath;
    mmk_file  *f, *f2;        /* the handle under test; a second one or NULL */
    bool       two;           /* this run uses a second handle */
    int        tfd;           /* twin: read, write, lseek (O_APPEND with MMK_APPEND) */
    int        tpfd;          /* twin: pread, pwrite, ftruncate, always O_RDWR */
    int        dfd;           /* the file under test, read directly */
    unsigned   flags;         /* the handle's */
    unsigned char *a, *b;     /* transfer buffers */
    unsigned char *va, *vb, *vc; /* whole-file buffers */
    uint64_t   ops, reopens, verifies, big, crossing, past_eof;
    char       log[DIFF_LOG][128];
    unsigned   nlog;
} diff;

/* The mode every handle of the run must get (the plain-mode run fakes the
 * filesystem type through the system-call table). */
static int diff_mode = MMK_FILE_MAPPED;

static uint64_t rnd(diff *d)
{
    /* splitmix64: fast, and every seed gives a different stream */
    uint64_t z = (d->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t below(diff *d, uint64_t n)
{
    return n ? rnd(d) % n : 0;
}

static void note(diff *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->log[d->nlog++ % DIFF_LOG], sizeof d->log[0], fmt, ap);
    va_end(ap);
}

static void diff_fail(diff *d, const char *what, int64_t got, int64_t want)
{
    fprintf(stderr, "differential mismatch: seed %u, op %" PRIu64 ": %s: mmkit %" PRId64
                    ", POSIX %" PRId64 "\nlast ops, oldest first:\n",
            d->seed, d->ops, what, got, want);
    unsigned n = d->nlog < DIFF_LOG ? d->nlog : DIFF_LOG;
    for (unsigned i = d->nlog - n; i < d->nlog; i++)
        fprintf(stderr, "  %s\n", d->log[i % DIFF_LOG]);
    cr_assert_fail("seed %u op %" PRIu64 ": %s: mmkit %" PRId64 " POSIX %" PRId64, d->seed,
                   d->ops, what, got, want);
}

#define DIFF_EQ(d, what, got, want)                                             \
    do {                                                                        \
        int64_t g_ = (int64_t)(got), w_ = (int64_t)(want);                      \
        if (g_ != w_)                                                           \
            diff_fail(d, what, g_, w_);                                         \
    } while (0)

/* A POSIX result in mmkit's convention. */
static int64_t px(int64_t r)
{
    return r < 0 ? -(int64_t)errno : r;
}

static void fill(diff *d, unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = rnd(d);
        memcpy(p + i, &v, 8);
    }
    uint64_t v = rnd(d);
    for (; i < n; i++, v >>= 8)
        p[i] = (unsigned char)v;
}

static int64_t twin_size(diff *d)
{
    struct stat st;
    cr_assert_eq(fstat(d->tpfd, &st), 0);
    return (int64_t)st.st_size;
}

/* An offset: anywhere, on or next to a window or page boundary, next to the
 * end of file, or past it. */
static uint64_t pick_off(diff *d)
{
    int64_t size = twin_size(d);
    int64_t delta = (int64_t)below(d, 9) - 4;
    int64_t off;
    switch (below(d, 8)) {
    case 0:
        off = (int64_t)below(d, DIFF_MAX_OFF);
        break;
    case 1:
        off = (int64_t)(below(d, DIFF_MAX_OFF / DIFF_WIN + 1) * DIFF_WIN) + delta;
        break;
    case 2:
        off = (int64_t)(below(d, DIFF_MAX_OFF / 4096 + 1) * 4096) + delta;
        break;
    case 3:
        off = size + delta;
        break;
    case 4:
        off = (int64_t)below(d, 3);
        break;
    case 5:
        off = size + (int64_t)below(d, 3 * DIFF_WIN); /* past the end: a hole */
        break;
    default:
        off = (int64_t)below(d, (uint64_t)size + 64);
        break;
    }
    if (off < 0)
        off = 0;
    if (off > (int64_t)DIFF_MAX_OFF)
        off = (int64_t)below(d, DIFF_MAX_OFF);
    return (uint64_t)off;
}

/* A length: mostly small (millions of ops must stay cheap), sometimes 0 or
 * 1, sometimes about a window (crossing boundaries), rarely large (more than
 * PLAIN_PATH_MIN: the pread/pwrite path). */
static size_t pick_len(diff *d)
{
    uint64_t k = below(d, 1000);
    if (k < 50)
        return 0;
    if (k < 150)
        return 1;
    if (k < 650)
        return 2 + (size_t)below(d, 63);
    if (k < 900)
        return 65 + (size_t)below(d, 4096);
    if (k < 985) {
        d->crossing++;
        /* a window give or take a few bytes, or between half and one */
        return below(d, 2) ? DIFF_WIN - 8 + (size_t)below(d, 17)
                           : DIFF_WIN / 2 + (size_t)below(d, DIFF_WIN / 2);
    }
    d->big++;
    return PLAIN_PATH_MIN + 1 + (size_t)below(d, DIFF_MAX_IO - PLAIN_PATH_MIN - 1);
}

static void diff_read(diff *d)
{
    size_t n = pick_len(d);
    note(d, "read %zu", n);
    ssize_t r = mmk_file_read(d->f, d->a, n);
    int64_t w = px(read(d->tfd, d->b, n));
    DIFF_EQ(d, "read count", r, w);
    if (r > 0 && memcmp(d->a, d->b, (size_t)r))
        diff_fail(d, "read bytes", 0, 1);
}

static void diff_write(diff *d)
{
    /* Keep the file within DIFF_BUF: writes start at DIFF_MAX_OFF at most. */
    if (lseek(d->tfd, 0, SEEK_CUR) > (off_t)DIFF_MAX_OFF) {
        int64_t to = (int64_t)below(d, DIFF_MAX_OFF);
        note(d, "seek %" PRId64 " (to stay in bounds)", to);
        DIFF_EQ(d, "seek", mmk_file_seek(d->f, to, SEEK_SET), px(lseek(d->tfd, to, SEEK_SET)));
    }
    size_t n = pick_len(d);
    note(d, "write %zu", n);
    fill(d, d->a, n);
    ssize_t r = mmk_file_write(d->f, d->a, n);
    int64_t w = px(write(d->tfd, d->a, n));
    DIFF_EQ(d, "write count", r, w);
}

static void diff_pread(diff *d, mmk_file *f, const char *who)
{
    uint64_t off = pick_off(d);
    size_t n = pick_len(d);
    note(d, "%s pread %zu at %" PRIu64, who, n, off);
    ssize_t r = mmk_file_pread(f, d->a, n, off);
    int64_t w = px(pread(d->tpfd, d->b, n, (off_t)off));
    DIFF_EQ(d, "pread count", r, w);
    if (r > 0 && memcmp(d->a, d->b, (size_t)r))
        diff_fail(d, "pread bytes", 0, 1);
}

static void diff_pwrite(diff *d, mmk_file *f, bool writable, const char *who)
{
    uint64_t off = pick_off(d);
    size_t n = pick_len(d);
    if (off > (uint64_t)twin_size(d))
        d->past_eof++;
    note(d, "%s pwrite %zu at %" PRIu64, who, n, off);
    fill(d, d->a, n);
    ssize_t r = mmk_file_pwrite(f, d->a, n, off);
    int64_t w = px(pwrite(writable ? d->tpfd : d->tfd, d->a, n, (off_t)off));
    DIFF_EQ(d, "pwrite count", r, w);
}

static void diff_seek(diff *d)
{
    static const int whences[] = { SEEK_SET, SEEK_CUR, SEEK_END };
    int wh = whences[below(d, 3)];
    int64_t off;
    switch (below(d, 5)) {
    case 0:
        off = 0;
        break;
    case 1:
        off = -(int64_t)below(d, DIFF_MAX_OFF); /* negative results: -EINVAL */
        break;
    case 2:
        off = (int64_t)below(d, 9) - 4;
        break;
    default:
        off = (int64_t)pick_off(d) - (wh == SEEK_SET ? 0 : (int64_t)below(d, DIFF_MAX_OFF));
        break;
    }
    note(d, "seek %" PRId64 " whence %d", off, wh);
    int64_t r = mmk_file_seek(d->f, off, wh);
    int64_t w = px(lseek(d->tfd, (off_t)off, wh));
    DIFF_EQ(d, "seek", r, w);
}

static void diff_truncate(diff *d, mmk_file *f, bool writable, const char *who)
{
    uint64_t size;
    switch (below(d, 6)) {
    case 0:
        size = 0;
        break;
    case 1:
        size = 1;
        break;
    case 2:
        size = below(d, 5) * DIFF_WIN + below(d, 3) - 1 + (below(d, 5) ? 1 : 0);
        break;
    default:
        size = below(d, DIFF_MAX_OFF);
        break;
    }
    if (size > DIFF_MAX_OFF)
        size = DIFF_MAX_OFF;
    note(d, "%s truncate %" PRIu64, who, size);
    int64_t old = twin_size(d);
    int r = mmk_file_truncate(f, size);
    int64_t w = px(ftruncate(writable ? d->tpfd : d->tfd, (off_t)size));
    if (!writable && w == -EINVAL)
        w = -EBADF; /* see the notes above */
    DIFF_EQ(d, "truncate", r, w);
    /* Two handles: one that did not shrink the file cannot know without a
     * system call on every transfer (a read of the tail of the last page
     * would see zeros past the new end); it learns through mmk_file_size,
     * as it would after another process truncated the file. */
    if (r == 0 && (int64_t)size < old) {
        mmk_file *other = f == d->f ? d->f2 : d->f;
        if (other)
            DIFF_EQ(d, "size after truncate", mmk_file_size(other), (int64_t)size);
    }
}

static void diff_verify(diff *d)
{
    d->verifies++;
    int64_t size = twin_size(d);
    DIFF_EQ(d, "size", mmk_file_size(d->f), size);
    if (d->f2)
        DIFF_EQ(d, "size (second handle)", mmk_file_size(d->f2), size);
    struct stat st;
    cr_assert_eq(fstat(d->dfd, &st), 0);
    DIFF_EQ(d, "size on disk", st.st_size, size);
    cr_assert_leq((uint64_t)size, DIFF_BUF);
    size_t n = (size_t)size;
    /* Read the whole file through the handle in random pieces. */
    memset(d->va, 0xA5, n + 1);
    size_t got = 0;
    while (got <= n) {
        size_t piece = 1 + (size_t)below(d, below(d, 2) ? 4096 : 3 * DIFF_WIN);
        ssize_t r = mmk_file_pread(d->f, d->va + got, piece, got);
        if (got == n) {
            DIFF_EQ(d, "pread at end of file", r, 0);
            break;
        }
        DIFF_EQ(d, "verify pread", r, (int64_t)(piece < n - got ? piece : n - got));
        got += (size_t)r;
    }
    cr_assert_eq(pread(d->tpfd, d->vb, n, 0), (ssize_t)n);
    cr_assert_eq(pread(d->dfd, d->vc, n, 0), (ssize_t)n);
    for (size_t i = 0; i < n; i++) {
        if (d->va[i] != d->vb[i])
            diff_fail(d, "content through the handle differs at", (int64_t)i, -1);
        if (d->vc[i] != d->vb[i])
            diff_fail(d, "content of the file differs at", (int64_t)i, -1);
    }
    DIFF_EQ(d, "position", mmk_file_seek(d->f, 0, SEEK_CUR), px(lseek(d->tfd, 0, SEEK_CUR)));
}

static void diff_open(diff *d, bool initial)
{
    unsigned flags;
    int tflags;
    uint64_t k = below(d, 10);
    if (initial || k >= 4) {
        flags = MMK_RDWR;
        tflags = O_RDWR;
    } else if (k == 0) {
        flags = MMK_RDONLY;
        tflags = O_RDONLY;
    } else if (k == 1) {
        flags = MMK_RDWR | MMK_TRUNC;
        tflags = O_RDWR | O_TRUNC;
    } else {
        flags = MMK_RDWR | MMK_APPEND;
        tflags = O_RDWR | O_APPEND;
    }
    /* Durability does not change what is read: any policy but ALWAYS and
     * small BYTES/WRITES steps (a disk flush each: too slow for millions). */
    mmk_file_opts o = { .flags = flags, .cache = d->cache };
    switch (below(d, 4)) {
    case 0:
        o.sync = MMK_SYNC_NONE;
        break;
    case 1:
        o.sync = MMK_SYNC_BYTES;
        o.sync_every = 4 * MIB + below(d, 4 * MIB);
        break;
    case 2:
        o.sync = MMK_SYNC_WRITES;
        o.sync_every = 2000 + below(d, 2000);
        break;
    default:
        o.sync = MMK_SYNC_CLOSE;
        break;
    }
    note(d, "open flags %#x sync %d", flags, o.sync);
    d->flags = flags;
    d->f = open_ok(d->path, &o);
    cr_assert_eq(mmk_file_mode(d->f), diff_mode);
    /* Advice must never change what is read; RANDOM also saves the time of
     * read-around on every fault of a window (holes included). */
    static const int advice[] = { MMK_ADV_RANDOM, MMK_ADV_RANDOM, MMK_ADV_SEQUENTIAL,
                                  MMK_ADV_NORMAL };
    uint64_t adv = below(d, 6);
    if (adv < sizeof advice / sizeof advice[0])
        cr_assert_eq(mmk_file_advise(d->f, advice[adv]), 0);
    d->tfd = open(d->tpath, tflags | O_CLOEXEC);
    cr_assert_geq(d->tfd, 0);
    d->tpfd = open(d->tpath, O_RDWR | O_CLOEXEC);
    cr_assert_geq(d->tpfd, 0);
    if (d->two)
        d->f2 = open_ok(d->path, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = d->cache,
                                                    .sync = MMK_SYNC_NONE });
}

static void diff_close(diff *d)
{
    note(d, "close");
    if (d->f2)
        close_ok(d->f2);
    d->f2 = NULL;
    close_ok(d->f);
    d->f = NULL;
    cr_assert_eq(close(d->tfd), 0);
    cr_assert_eq(close(d->tpfd), 0);
}

/* Ops between a sync, and between a close and reopen (both cost a disk
 * flush: rare). */
#define DIFF_SYNC_ODDS   8000
#define DIFF_REOPEN_ODDS 3000

static void diff_step(diff *d)
{
    bool writable = d->flags & MMK_RDWR;
    if (below(d, DIFF_REOPEN_ODDS) == 0) {
        d->reopens++;
        diff_close(d);
        diff_open(d, false);
        return;
    }
    if (below(d, DIFF_SYNC_ODDS) == 0) {
        note(d, "sync");
        DIFF_EQ(d, "sync", mmk_file_sync(d->f), px(fdatasync(d->tpfd)));
        return;
    }
    /* Appends grow the file without bound: cut it back now and then. */
    if (twin_size(d) > (int64_t)DIFF_MAX_OFF && (writable || d->f2)) {
        diff_truncate(d, writable ? d->f : d->f2, true, writable ? "1st" : "2nd");
        return;
    }
    uint64_t k = below(d, 100);
    if (d->f2 && k >= 94) {
        switch (k) {
        case 94:
        case 95:
            diff_pread(d, d->f2, "2nd");
            break;
        case 96:
        case 97:
            diff_pwrite(d, d->f2, true, "2nd");
            break;
        case 98:
            diff_truncate(d, d->f2, true, "2nd");
            break;
        default:
            DIFF_EQ(d, "size (second handle)", mmk_file_size(d->f2), twin_size(d));
            break;
        }
        return;
    }
    if (k < 18)
        diff_read(d);
    else if (k < 36)
        diff_write(d);
    else if (k < 56)
        diff_pread(d, d->f, "1st");
    else if (k < 76)
        diff_pwrite(d, d->f, writable, "1st");
    else if (k < 90)
        diff_seek(d);
    else if (k < 91) /* ftruncate is costly on a journalled filesystem */
        diff_truncate(d, d->f, writable, "1st");
    else {
        note(d, "size");
        DIFF_EQ(d, "size", mmk_file_size(d->f), twin_size(d));
    }
}

/* Ops per seed; MMK_DIFF_OPS overrides (and MMK_DIFF_SEED picks one seed, to
 * replay a failure). */
#define DIFF_OPS_PER_SEED (UNDER_SANITIZER ? 75000 : 200000)

static uint64_t diff_ops_per_seed(void)
{
    const char *e = getenv("MMK_DIFF_OPS");
    return e && *e ? strtoull(e, NULL, 10) : DIFF_OPS_PER_SEED;
}

/* One seed: a fresh pair of files (empty, one byte, or random content of a
 * random size) and a run of ops. */
static uint64_t diff_run(unsigned seed, mmk_cache *cache, bool two)
{
    diff *d = calloc(1, sizeof *d);
    cr_assert_not_null(d);
    d->seed = seed;
    d->rng = seed * 0x2545F4914F6CDD1Dull + 1;
    d->cache = cache;
    d->two = two;
    d->a = malloc(DIFF_MAX_IO);
    d->b = malloc(DIFF_MAX_IO);
    d->va = malloc(DIFF_BUF + 1);
    d->vb = malloc(DIFF_BUF);
    d->vc = malloc(DIFF_BUF);
    cr_assert(d->a && d->b && d->va && d->vb && d->vc);
    char name[64];
    snprintf(name, sizeof name, "diff-%u", seed);
    d->path = tu_path(name);
    snprintf(name, sizeof name, "twin-%u", seed);
    d->tpath = tu_path(name);

    size_t initial;
    switch (seed % 4) {
    case 0:
        initial = 0;
        break;
    case 1:
        initial = 1;
        break;
    default:
        initial = (size_t)below(d, DIFF_MAX_OFF);
        break;
    }
    fill(d, d->vb, initial);
    tu_write_file(d->path, d->vb, initial);
    tu_write_file(d->tpath, d->vb, initial);
    d->dfd = open(d->path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(d->dfd, 0);

    diff_open(d, true);
    uint64_t total = diff_ops_per_seed();
    for (d->ops = 0; d->ops < total; d->ops++) {
        diff_step(d);
        if (d->ops % DIFF_VERIFY == DIFF_VERIFY - 1)
            diff_verify(d);
    }
    diff_verify(d);
    diff_close(d);
    /* What a fresh handle reads after the last close. */
    diff_open(d, true);
    diff_verify(d);
    diff_close(d);
    close(d->dfd);
    fprintf(stderr,
            "differential seed %u: %" PRIu64 " ops (%" PRIu64 " large, %" PRIu64
            " about a window, %" PRIu64 " pwrites past EOF), %" PRIu64 " reopens, %" PRIu64
            " whole-file checks, 0 mismatches\n",
            seed, d->ops, d->big, d->crossing, d->past_eof, d->reopens, d->verifies);
    uint64_t ops = d->ops;
    free(d->a);
    free(d->b);
    free(d->va);
    free(d->vb);
    free(d->vc);
    free(d);
    return ops;
}

static void diff_seeds(unsigned first, unsigned count, mmk_cache *cache, bool two)
{
    const char *e = getenv("MMK_DIFF_SEED");
    uint64_t ops = 0;
    if (e && *e) {
        ops = diff_run((unsigned)strtoul(e, NULL, 10), cache, two);
    } else {
        for (unsigned s = first; s < first + count; s++)
            ops += diff_run(s, cache, two);
    }
    fprintf(stderr, "differential: %" PRIu64 " ops in total, 0 mismatches\n", ops);
}

/* The budget is smaller than the files (256 KiB, 4 mappings, 64 KiB windows):
 * windows are evicted all the time, dirty ones included. */
Test(file, differential_small_budget, .timeout = 300)
{
    mmk_cache *c = new_cache(DIFF_WIN, 256 * KIB, 4);
    diff_seeds(1, 2, c, false);
    mmk_cache_free(c);
}

/* The tightest budget: one window, one mapping. */
Test(file, differential_one_window, .timeout = 300)
{
    mmk_cache *c = new_cache(DIFF_WIN, DIFF_WIN, 1);
    diff_seeds(11, 2, c, false);
    mmk_cache_free(c);
}

/* 64 KiB windows, no pressure: windows stay mapped, transfers are hits. */
Test(file, differential_roomy_cache, .timeout = 300)
{
    mmk_cache *c = new_cache(DIFF_WIN, 0, 0);
    diff_seeds(21, 2, c, false);
    mmk_cache_free(c);
}

/* Two handles on one file, in the small budget. */
Test(file, differential_two_handles, .timeout = 300)
{
    mmk_cache *c = new_cache(DIFF_WIN, 256 * KIB, 4);
    diff_seeds(31, 2, c, true);
    mmk_cache_free(c);
}

/* Plain mode, as on NFS or FUSE: every transfer through the descriptor. */
Test(file, differential_plain_mode, .timeout = 300)
{
    inject_install();
    inject_fake_fs_type(NFS_MAGIC);
    diff_mode = MMK_FILE_PLAIN;
    diff_seeds(51, 1, NULL, false);
    diff_seeds(52, 1, NULL, true);
    inject_reset();
}

/* The default cache (2 MiB windows: one window holds the whole file). */
Test(file, differential_default_cache, .timeout = 300)
{
    diff_seeds(41, 2, NULL, false);
}

/* ==== creating ============================================================ */

Test(file, create_modes)
{
    const char *p = tu_path("default"), *q = tu_path("0640"), *x = tu_path("excl");
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_CREATE });
    close_ok(f);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644, "mode 0 means 0644 (umask 022)");
    f = open_ok(q, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_CREATE, .mode = 0640 });
    close_ok(f);
    cr_assert_eq(stat(q, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0640);
    f = open_ok(x, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_CREATE | MMK_EXCL });
    write_ok(f, "abc", 3);
    close_ok(f);
    f = open_ok(x, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_TRUNC });
    cr_assert_eq(mmk_file_size(f), 0, "MMK_TRUNC");
    close_ok(f);
}

/* ==== small and large files ============================================ */

Test(file, empty_and_one_byte_files)
{
    const char *p0 = tu_path("empty"), *p1 = tu_path("one");
    tu_write_file(p0, "", 0);
    tu_write_file(p1, "x", 1);
    unsigned char buf[16] = { 0 };
    mmk_view v;

    mmk_file *f = open_ok(p0, NULL);
    cr_assert_eq(mmk_file_mode(f), MMK_FILE_MAPPED, "an empty regular file is mapped");
    cr_assert_eq(mmk_file_size(f), 0);
    cr_assert_eq(mmk_file_read(f, buf, sizeof buf), 0);
    cr_assert_eq(mmk_file_pread(f, buf, 1, 0), 0);
    cr_assert_eq(mmk_file_pread(f, buf, 1, 12345), 0);
    cr_assert_eq(mmk_file_seek(f, 0, SEEK_END), 0);
    cr_assert_eq(mmk_file_pin(f, 0, 1, MMK_RDONLY, &v), -EINVAL, "nothing to pin");
    close_ok(f);

    f = open_ok(p1, NULL);
    cr_assert_eq(mmk_file_size(f), 1);
    cr_assert_eq(mmk_file_pread(f, buf, sizeof buf, 0), 1);
    cr_assert_eq(buf[0], 'x');
    cr_assert_eq(mmk_file_pread(f, buf, sizeof buf, 1), 0);
    cr_assert_eq(mmk_file_read(f, buf, sizeof buf), 1);
    cr_assert_eq(mmk_file_read(f, buf, sizeof buf), 0);
    cr_assert_eq(mmk_file_pin(f, 0, 1, MMK_RDONLY, &v), 0);
    cr_assert_eq(*(unsigned char *)v.ptr, 'x');
    cr_assert_eq(mmk_file_unpin(f, &v), 0);
    close_ok(f);

    /* Growing an empty file one byte at a time. */
    f = open_ok(p0, &(mmk_file_opts){ .flags = MMK_RDWR });
    for (int i = 0; i < 3; i++)
        write_ok(f, "abc" + i, 1);
    cr_assert_eq(mmk_file_size(f), 3);
    cr_assert_eq(mmk_file_pread(f, buf, sizeof buf, 0), 3);
    cr_assert_eq(memcmp(buf, "abc", 3), 0);
    close_ok(f);
}

/* A file eight times the budget, read and rewritten sequentially in pieces
 * that cross window boundaries: the budget holds, and the data is right. */
Test(file, larger_than_budget)
{
    const size_t size = 2 * MIB, budget = 256 * KIB, piece = 5000;
    mmk_cache *c = new_cache(64 * KIB, budget, 4);
    const char *p = tu_pattern_file("big", size, 3);
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c });
    unsigned char *buf = malloc(piece), *want = malloc(piece);
    mmk_cache_stats st;
    size_t got = 0;
    for (;;) {
        ssize_t r = mmk_file_read(f, buf, piece);
        cr_assert_geq(r, 0);
        if (r == 0)
            break;
        tu_pattern(want, (size_t)r, got, 3);
        cr_assert_eq(memcmp(buf, want, (size_t)r), 0, "bytes at %zu", got);
        got += (size_t)r;
        mmk_cache_stats_get(c, &st);
        cr_assert_leq(st.mapped_bytes, budget);
        cr_assert_leq(st.mappings, 4);
    }
    cr_assert_eq(got, size);
    /* Rewrite it with another pattern, then check the file itself. */
    cr_assert_eq(mmk_file_seek(f, 0, SEEK_SET), 0);
    for (size_t off = 0; off < size; off += piece) {
        size_t n = size - off < piece ? size - off : piece;
        tu_pattern(buf, n, off, 4);
        write_ok(f, buf, n);
        mmk_cache_stats_get(c, &st);
        cr_assert_leq(st.mapped_bytes, budget);
    }
    /* The budget was smaller than the file: pieces whose window would have
     * pushed another out went through the descriptor instead, so the budget
     * held without thrashing. */
    mmk_cache_stats_get(c, &st);
    cr_assert_leq(st.mapped_bytes, budget);
    close_ok(f);
    size_t n;
    unsigned char *all = tu_read_file(p, &n);
    cr_assert_eq(n, size);
    for (size_t i = 0; i < n; i++)
        if (all[i] != tu_pattern_byte(i, 4))
            cr_assert_fail("byte %zu of the file", i);
    free(all);
    free(buf);
    free(want);
    mmk_cache_free(c);
}

/* ==== flush policies, counted through the system-call table ============= */

#define POLICY_TOTAL (10 * MIB)

/* MMK_SYNC_BYTES, every 1 MiB, 10 MiB appended in 64 KiB writes: appends go
 * through pwrite, so each sync is one fdatasync. */
Test(file, sync_bytes_appends)
{
    const size_t chunk = 64 * KIB;
    mmk_cache *c = new_cache(64 * KIB, 0, 0);
    const char *p = tu_path("bytes");
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_CREATE, .cache = c,
                                                .sync = MMK_SYNC_BYTES, .sync_every = MIB });
    unsigned char *buf = malloc(chunk);
    inject_install();
    for (size_t done = 0; done < POLICY_TOTAL; done += chunk) {
        tu_pattern(buf, chunk, done, 9);
        write_ok(f, buf, chunk);
        /* Never more than one sync per MiB, and never a MiB behind. */
        unsigned long ev = sync_events(), mib = (done + chunk) / MIB;
        cr_assert(ev >= mib && ev <= mib + 1, "%lu syncs after %zu bytes", ev, done + chunk);
    }
    unsigned long ev = sync_events();
    cr_assert(ev >= 10 && ev <= 12, "%lu syncs for 10 MiB at 1 MiB each", ev);
    cr_assert_geq(inject_count(INJ_FDATASYNC), 10, "appends are synced with fdatasync");
    close_ok(f);
    cr_assert_leq(sync_events(), 12, "close syncs only what is left");
    cr_assert_eq(tu_file_size(p), (int64_t)POLICY_TOTAL);
    free(buf);
    mmk_cache_free(c);
}

/* The same over a file sized beforehand: 16 KiB writes go through windows
 * (1 MiB windows, aligned on the sync steps, room for all of them), so each
 * sync is one msync. */
Test(file, sync_bytes_windows)
{
    const size_t chunk = 16 * KIB;
    mmk_cache *c = new_cache(MIB, 16 * MIB, 0);
    const char *p = tu_path("bytes");
    tu_write_file(p, "", 0);
    cr_assert_eq(truncate(p, (off_t)POLICY_TOTAL), 0);
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c,
                                                .sync = MMK_SYNC_BYTES, .sync_every = MIB });
    unsigned char *buf = malloc(chunk);
    inject_install();
    for (size_t done = 0; done < POLICY_TOTAL; done += chunk) {
        tu_pattern(buf, chunk, done, 5);
        write_ok(f, buf, chunk);
        unsigned long ev = sync_events(), mib = (done + chunk) / MIB;
        cr_assert(ev >= mib && ev <= mib + 1, "%lu syncs after %zu bytes", ev, done + chunk);
    }
    unsigned long ev = sync_events();
    cr_assert(ev >= 10 && ev <= 12, "%lu syncs for 10 MiB at 1 MiB each", ev);
    cr_assert_geq(inject_count_msync_sync(), 10, "window writes are synced with msync");
    cr_assert_eq(inject_count(INJ_PWRITE), 0, "the writes went through windows");
    close_ok(f);
    cr_assert_leq(sync_events(), 12);
    /* What was synced is in the file. */
    unsigned char back[64];
    disk_bytes(p, POLICY_TOTAL - sizeof back, back, sizeof back);
    tu_pattern(buf, sizeof back, POLICY_TOTAL - sizeof back, 5);
    cr_assert_eq(memcmp(back, buf, sizeof back), 0);
    free(buf);
    mmk_cache_free(c);
}

/* MMK_SYNC_ALWAYS: every write call is followed by a sync before it returns,
 * through windows (msync) and past the end (fdatasync) alike. */
Test(file, sync_always)
{
    mmk_cache *c = new_cache(64 * KIB, 0, 0);
    const char *p = tu_pattern_file("always", 512 * KIB, 1);
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c,
                                                .sync = MMK_SYNC_ALWAYS });
    inject_install();
    unsigned char buf[100];
    memset(buf, 'a', sizeof buf);
    for (unsigned i = 0; i < 20; i++) {
        unsigned long before = sync_events(), ms = inject_count_msync_sync();
        pwrite_ok(f, buf, sizeof buf, (uint64_t)i * 25000);
        cr_assert_geq(sync_events(), before + 1, "write %u was not synced", i);
        cr_assert_geq(inject_count_msync_sync(), ms + 1, "a window write is msync'ed");
    }
    for (unsigned i = 0; i < 10; i++) {
        unsigned long before = inject_count(INJ_FDATASYNC);
        write_ok(f, buf, sizeof buf); /* position 0..: in place */
        cr_assert_geq(sync_events(), before + 1);
        pwrite_ok(f, buf, sizeof buf, 512 * KIB + i * sizeof buf); /* appends */
        cr_assert_geq(inject_count(INJ_FDATASYNC), before + 1, "append %u not synced", i);
    }
    unsigned long before = sync_events();
    cr_assert_eq(mmk_file_pwrite(f, buf, 0, 0), 0);
    cr_assert_eq(sync_events(), before, "a write of nothing syncs nothing");
    close_ok(f);
    mmk_cache_free(c);
}

/* MMK_SYNC_NONE: no msync (not even MS_ASYNC) and no fdatasync, at close
 * either, whatever was written and however; mmk_file_sync still works. */
Test(file, sync_none)
{
    mmk_cache *c = new_cache(64 * KIB, 128 * KIB, 0);
    const char *p = tu_pattern_file("none", 300 * KIB, 1);
    inject_install();
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c,
                                                .sync = MMK_SYNC_NONE });
    unsigned char *buf = malloc(MIB);
    memset(buf, 'n', MIB);
    for (size_t off = 0; off < 300 * KIB; off += 7000)
        pwrite_ok(f, buf, 3000, off);            /* windows, evicted dirty */
    pwrite_ok(f, buf, MIB, 300 * KIB);           /* past the end: pwrite */
    cr_assert_eq(mmk_file_truncate(f, 2 * MIB), 0);
    mmk_view v;
    cr_assert_eq(mmk_file_pin(f, 100, 1000, MMK_RDWR, &v), 0);
    memset(v.ptr, 'p', 1000);
    cr_assert_eq(mmk_file_unpin(f, &v), 0);
    close_ok(f);
    cr_assert_eq(sync_events(), 0);
    cr_assert_eq(inject_count(INJ_MSYNC), 0, "no msync of any kind");
    cr_assert_eq(inject_count(INJ_SYNC_FILE_RANGE), 0);

    f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c, .sync = MMK_SYNC_NONE });
    pwrite_ok(f, buf, 10, 0);
    cr_assert_eq(mmk_file_sync(f), 0);
    cr_assert_geq(sync_events(), 1, "mmk_file_sync still syncs under MMK_SYNC_NONE");
    close_ok(f);
    free(buf);
    mmk_cache_free(c);
}

/* MMK_SYNC_WRITES, every 4 write calls, 40 appends: 10 syncs. */
Test(file, sync_writes)
{
    mmk_cache *c = new_cache(64 * KIB, 0, 0);
    const char *p = tu_path("writes");
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_CREATE, .cache = c,
                                                .sync = MMK_SYNC_WRITES, .sync_every = 4 });
    inject_install();
    char buf[1000];
    memset(buf, 'w', sizeof buf);
    for (unsigned i = 1; i <= 40; i++) {
        write_ok(f, buf, sizeof buf);
        unsigned long ev = sync_events();
        cr_assert(ev >= i / 4 && ev <= i / 4 + 1, "%lu syncs after %u writes", ev, i);
    }
    cr_assert_geq(sync_events(), 10);
    cr_assert_leq(sync_events(), 12);
    /* Writes of nothing are not write calls that count. */
    unsigned long ev = sync_events();
    for (int i = 0; i < 8; i++)
        cr_assert_eq(mmk_file_write(f, buf, 0), 0);
    cr_assert_eq(sync_events(), ev);
    close_ok(f);
    mmk_cache_free(c);
}

/* Wait up to `ms` for sync_events() to pass `than`. */
static bool sync_within(unsigned long than, long ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (sync_events() <= than) {
        if (now_ms() > end)
            return false;
        sleep_ms(5);
    }
    return true;
}

/* Time the periodic syncer gets (generous: a loaded machine) and the quiet
 * period in which a clean file must see no sync. */
#define PERIODIC_MS      20
#define PERIODIC_WAIT_MS 3000
#define QUIET_MS         150

/* MMK_SYNC_PERIODIC: a write is synced within a few periods without any call
 * from us; with nothing dirty, nothing is synced. */
Test(file, sync_periodic)
{
    mmk_cache *c = new_cache(64 * KIB, 0, 0);
    const char *p = tu_pattern_file("periodic", 256 * KIB, 2);
    inject_install();
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c,
                                                .sync = MMK_SYNC_PERIODIC,
                                                .sync_every = PERIODIC_MS });
    sleep_ms(QUIET_MS);
    cr_assert_eq(sync_events(), 0, "nothing written, nothing synced");

    pwrite_ok(f, "window", 6, 1000);
    cr_assert(sync_within(0, PERIODIC_WAIT_MS), "a window write was never synced");
    cr_assert_geq(inject_count_msync_sync(), 1);

    sleep_ms(2 * PERIODIC_MS); /* let a sync in progress end */
    unsigned long ev = sync_events();
    sleep_ms(QUIET_MS);
    cr_assert_eq(sync_events(), ev, "a clean file was synced again");

    pwrite_ok(f, "append", 6, 256 * KIB);
    cr_assert(sync_within(ev, PERIODIC_WAIT_MS), "an append was never synced");
    cr_assert_geq(inject_count(INJ_FDATASYNC), 1);
    close_ok(f);
    mmk_cache_free(c);
}

/* A long period: no sync while we wait, and close syncs what is dirty. */
Test(file, sync_periodic_long_period_close)
{
    const char *p = tu_path("slow");
    inject_install();
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_CREATE,
                                                .sync = MMK_SYNC_PERIODIC,
                                                .sync_every = 3600 * 1000 });
    write_ok(f, "data", 4);
    sleep_ms(QUIET_MS);
    cr_assert_eq(sync_events(), 0);
    close_ok(f);
    cr_assert_geq(sync_events(), 1, "close syncs a dirty PERIODIC file");
}

/* MMK_SYNC_CLOSE: nothing until close, then everything. */
Test(file, sync_close)
{
    mmk_cache *c = new_cache(64 * KIB, 0, 0);
    const char *p = tu_pattern_file("close", 256 * KIB, 2);
    inject_install();
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c });
    pwrite_ok(f, "in a window", 11, 70000);
    pwrite_ok(f, "past the end", 12, 300 * KIB);
    cr_assert_eq(sync_events(), 0);
    close_ok(f);
    cr_assert_geq(inject_count_msync_sync(), 1, "the window was msync'ed");
    cr_assert_geq(inject_count(INJ_FDATASYNC), 1, "the append was fdatasync'ed");

    /* A handle that wrote nothing has nothing to sync at close. */
    unsigned long ev = sync_events();
    f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c });
    char rd[16];
    cr_assert_eq(mmk_file_pread(f, rd, sizeof rd, 70000), (ssize_t)sizeof rd);
    close_ok(f);
    cr_assert_eq(sync_events(), ev, "a clean handle was synced");

    /* Writes through pins alone are synced at close too. */
    f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c });
    unsigned long ms = inject_count_msync_sync();
    mmk_view v;
    cr_assert_eq(mmk_file_pin(f, 5000, 10, MMK_RDWR, &v), 0);
    memcpy(v.ptr, "through a ", 10);
    cr_assert_eq(mmk_file_unpin(f, &v), 0);
    close_ok(f);
    cr_assert_geq(inject_count_msync_sync(), ms + 1);
    mmk_cache_free(c);
}

/* Writes through RDWR pins are flushed like any other write: mmk_file_sync
 * msyncs them, another descriptor reads them, and a second sync has nothing
 * left to do. */
Test(file, sync_rdwr_pins)
{
    mmk_cache *c = new_cache(64 * KIB, 0, 0);
    const char *p = tu_pattern_file("pins", 256 * KIB, 2);
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c });
    inject_install();
    static const struct { uint64_t off; size_t n; } ranges[] = {
        { 100, 5000 },               /* crosses a page */
        { 64 * KIB - 300, 600 },     /* crosses a window: a span */
        { 200 * KIB, 1 },
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        mmk_view v;
        cr_assert_eq(mmk_file_pin(f, ranges[i].off, ranges[i].n, MMK_RDWR, &v), 0);
        memset(v.ptr, (int)('A' + i), ranges[i].n);
        cr_assert_eq(mmk_file_unpin(f, &v), 0);
        cr_assert_eq(sync_events(), 0, "a pin alone does not sync");
        unsigned long ms = inject_count_msync_sync();
        cr_assert_eq(mmk_file_sync(f), 0);
        cr_assert_geq(inject_count_msync_sync(), ms + 1, "range %zu not msync'ed", i);
        unsigned char *back = malloc(ranges[i].n);
        disk_bytes(p, ranges[i].off, back, ranges[i].n);
        for (size_t j = 0; j < ranges[i].n; j++)
            cr_assert_eq(back[j], 'A' + i);
        free(back);
        unsigned long ev = sync_events();
        cr_assert_eq(mmk_file_sync(f), 0);
        cr_assert_eq(sync_events(), ev, "nothing dirty, nothing synced");
        inject_reset();
        inject_install();
    }
    close_ok(f);
    mmk_cache_free(c);
}

/* A failed sync keeps everything dirty: the next sync does it again, and
 * close reports the error of its sync and frees the handle all the same. */
Test(file, sync_errors_are_kept)
{
    mmk_cache *c = new_cache(64 * KIB, 0, 0);
    const char *p = tu_pattern_file("err", 128 * KIB, 2);
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c });
    inject_install();

    pwrite_ok(f, "x", 1, 128 * KIB); /* append: fdatasync */
    inject_fail(INJ_FDATASYNC, 1, EIO);
    cr_assert_eq(mmk_file_sync(f), -EIO);
    unsigned long fds = inject_count(INJ_FDATASYNC);
    cr_assert_eq(mmk_file_sync(f), 0);
    cr_assert_eq(inject_count(INJ_FDATASYNC), fds + 1, "the failed fdatasync was retried");

    pwrite_ok(f, "y", 1, 10); /* a window: msync */
    inject_fail(INJ_MSYNC, 1, EIO);
    cr_assert_eq(mmk_file_sync(f), -EIO);
    unsigned long ms = inject_count_msync_sync();
    cr_assert_eq(mmk_file_sync(f), 0);
    cr_assert_eq(inject_count_msync_sync(), ms + 1, "the failed msync was retried");

    int fds_open = tu_open_fds();
    pwrite_ok(f, "z", 1, 129 * KIB);
    inject_fail(INJ_FDATASYNC, 1, EIO);
    cr_assert_eq(mmk_file_close(f), -EIO, "close reports the error of its sync");
    cr_assert_lt(tu_open_fds(), fds_open, "and closes the descriptors all the same");
    inject_reset();
    mmk_cache_free(c);
}

/* ==== MMK_COPY ============================================================ */

Test(file, copy_isolation)
{
    const size_t size = 200 * KIB;
    mmk_cache *c = new_cache(64 * KIB, 0, 0);
    const char *p = tu_pattern_file("copy", size, 6);
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_COPY, .cache = c });
    mmk_file *ro = open_ok(p, &(mmk_file_opts){ .cache = c });
    unsigned char *big = malloc(size), *want = malloc(size);
    memset(big, 'c', size);

    pwrite_ok(f, "copy", 4, 10);
    pwrite_ok(f, big, 100 * KIB, 50 * KIB);        /* large, across windows */
    cr_assert_eq(mmk_file_seek(f, 64 * KIB - 2, SEEK_SET), 64 * KIB - 2);
    write_ok(f, "XYZW", 4);                        /* across a window boundary */
    mmk_view v;
    cr_assert_eq(mmk_file_pin(f, 190 * KIB, 3, MMK_RDWR, &v), 0);
    memcpy(v.ptr, "pin", 3);
    cr_assert_eq(mmk_file_unpin(f, &v), 0);

    /* Seen through the handle... */
    unsigned char buf[8];
    cr_assert_eq(mmk_file_pread(f, buf, 4, 10), 4);
    cr_assert_eq(memcmp(buf, "copy", 4), 0);
    cr_assert_eq(mmk_file_pread(f, buf, 4, 64 * KIB - 2), 4);
    cr_assert_eq(memcmp(buf, "XYZW", 4), 0);
    cr_assert_eq(mmk_file_pread(f, buf, 3, 190 * KIB), 3);
    cr_assert_eq(memcmp(buf, "pin", 3), 0);
    cr_assert_eq(mmk_file_pread(f, want, 100 * KIB, 50 * KIB), (ssize_t)(100 * KIB));
    cr_assert_eq(memcmp(want, big, 64 * KIB - 2 - 50 * KIB), 0);

    /* ... and never in the file: past its end, a write is -EFBIG or cut. */
    cr_assert_eq(mmk_file_pwrite(f, "x", 1, size), -EFBIG);
    cr_assert_eq(mmk_file_pwrite(f, "x", 1, size + 12345), -EFBIG);
    cr_assert_eq(mmk_file_pwrite(f, big, 100, size - 40), 40, "cut at the end");
    cr_assert_eq(mmk_file_seek(f, 0, SEEK_END), (int64_t)size);
    cr_assert_eq(mmk_file_write(f, "x", 1), -EFBIG);
    cr_assert_lt(mmk_file_truncate(f, size + 1), 0, "a copy cannot grow");
    cr_assert_eq(mmk_file_size(f), (int64_t)size);
    cr_assert_eq(mmk_file_sync(f), 0);

    size_t n;
    unsigned char *disk = tu_read_file(p, &n);
    cr_assert_eq(n, size, "the file did not grow");
    tu_pattern(want, size, 0, 6);
    cr_assert_eq(memcmp(disk, want, size), 0, "the file did not change");
    free(disk);
    cr_assert_eq(mmk_file_pread(ro, buf, 4, 10), 4);
    cr_assert_eq(memcmp(buf, want + 10, 4), 0, "another handle sees the file");

    close_ok(f);
    disk = tu_read_file(p, &n);
    cr_assert_eq(n, size);
    cr_assert_eq(memcmp(disk, want, size), 0, "not at close either");
    free(disk);
    f = open_ok(p, &(mmk_file_opts){ .flags = MMK_COPY, .cache = c });
    cr_assert_eq(mmk_file_pread(f, buf, 4, 10), 4);
    cr_assert_eq(memcmp(buf, want + 10, 4), 0, "a new copy starts from the file");
    close_ok(f);
    close_ok(ro);

    /* An empty file has no room at all. */
    const char *e = tu_path("empty");
    tu_write_file(e, "", 0);
    f = open_ok(e, &(mmk_file_opts){ .flags = MMK_COPY, .cache = c });
    cr_assert_eq(mmk_file_write(f, "x", 1), -EFBIG);
    cr_assert_eq(mmk_file_size(f), 0);
    close_ok(f);
    cr_assert_eq(tu_file_size(e), 0);
    free(big);
    free(want);
    mmk_cache_free(c);
}

/* ==== locks =============================================================== */

Test(file, locks_across_handles)
{
    const char *p = tu_pattern_file("lock", 4096, 1);
    mmk_file *a = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR });
    mmk_file *b = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR });

    cr_assert_eq(mmk_file_lock(a, MMK_LOCK_EX, 0, 0), 0);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_SH | MMK_LOCK_NB, 0, 0), -EAGAIN);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX | MMK_LOCK_NB, 0, 0), -EAGAIN);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX | MMK_LOCK_NB, 1u << 30, 1), -EAGAIN,
                 "n 0 reaches past the end of file");
    cr_assert_eq(mmk_file_lock(a, MMK_LOCK_UN, 0, 0), 0);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX | MMK_LOCK_NB, 0, 0), 0);
    cr_assert_eq(mmk_file_lock(a, MMK_LOCK_SH | MMK_LOCK_NB, 0, 0), -EAGAIN);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_UN, 0, 0), 0);

    /* Shared with shared. */
    cr_assert_eq(mmk_file_lock(a, MMK_LOCK_SH, 0, 0), 0);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_SH | MMK_LOCK_NB, 0, 0), 0);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX | MMK_LOCK_NB, 0, 0), -EAGAIN);
    cr_assert_eq(mmk_file_lock(a, MMK_LOCK_UN, 0, 0), 0);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX | MMK_LOCK_NB, 0, 0), 0, "upgrade when alone");
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_UN, 0, 0), 0);

    /* Ranges: [100, 200) held; its neighbours are free. */
    cr_assert_eq(mmk_file_lock(a, MMK_LOCK_EX, 100, 100), 0);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX | MMK_LOCK_NB, 0, 100), 0);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX | MMK_LOCK_NB, 200, 50), 0);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_SH | MMK_LOCK_NB, 199, 1), -EAGAIN);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX | MMK_LOCK_NB, 50, 60), -EAGAIN);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX | MMK_LOCK_NB, 150, 0), -EAGAIN);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_UN, 0, 0), 0);
    /* Unlocking part of a range frees that part only. */
    cr_assert_eq(mmk_file_lock(a, MMK_LOCK_UN, 100, 50), 0);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX | MMK_LOCK_NB, 100, 50), 0);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX | MMK_LOCK_NB, 150, 1), -EAGAIN);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_UN, 0, 0), 0);

    /* Close releases. */
    cr_assert_eq(mmk_file_lock(a, MMK_LOCK_EX, 0, 0), 0);
    close_ok(a);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX | MMK_LOCK_NB, 0, 0), 0);

    /* Bad requests. */
    cr_assert_eq(mmk_file_lock(b, 0, 0, 0), -EINVAL);
    cr_assert_eq(mmk_file_lock(b, 4, 0, 0), -EINVAL);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_NB, 0, 0), -EINVAL);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX | 16, 0, 0), -EINVAL);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX, (uint64_t)INT64_MAX + 1, 1), -EINVAL);
    cr_assert_eq(mmk_file_lock(b, MMK_LOCK_EX, (uint64_t)INT64_MAX, 2), -EINVAL);
    cr_assert_eq(mmk_file_lock(NULL, MMK_LOCK_EX, 0, 0), -EINVAL);
    close_ok(b);
}

struct locker {
    mmk_file   *f;
    atomic_int  state; /* 0 waiting, 1 locked, <0 error */
};

static void *lock_blocking(void *arg)
{
    struct locker *l = arg;
    int rc = mmk_file_lock(l->f, MMK_LOCK_EX, 0, 0);
    atomic_store(&l->state, rc == 0 ? 1 : rc);
    return NULL;
}

/* A blocking lock waits for the other handle to let go. */
Test(file, lock_blocks_until_released)
{
    const char *p = tu_pattern_file("lock", 4096, 1);
    mmk_file *a = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR });
    struct locker l = { .f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR }) };
    cr_assert_eq(mmk_file_lock(a, MMK_LOCK_SH, 0, 0), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, lock_blocking, &l), 0);
    sleep_ms(100);
    cr_assert_eq(atomic_load(&l.state), 0, "the lock was granted while held elsewhere");
    cr_assert_eq(mmk_file_lock(a, MMK_LOCK_UN, 0, 0), 0);
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&l.state), 1);
    cr_assert_eq(mmk_file_lock(a, MMK_LOCK_SH | MMK_LOCK_NB, 0, 0), -EAGAIN);
    close_ok(l.f);
    close_ok(a);
}

/* ==== the stdio view ====================================================== */

Test(file, stdio_view)
{
    const char *p = tu_path("stdio");
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_CREATE });
    FILE *fp = mmk_file_stdio(f, "r+");
    cr_assert_not_null(fp, "mmk_file_stdio: %s", strerror(errno));
    cr_assert_gt(fprintf(fp, "hello %d\n", 42), 0);
    cr_assert_geq(fputs("second line\n", fp), 0);
    cr_assert_eq(fflush(fp), 0);
    char buf[64] = { 0 };
    cr_assert_eq(mmk_file_pread(f, buf, sizeof buf, 0), 21, "visible through the handle");
    cr_assert_str_eq(buf, "hello 42\nsecond line\n");
    cr_assert_eq(ftell(fp), 21);

    cr_assert_eq(fseek(fp, 0, SEEK_SET), 0);
    cr_assert_not_null(fgets(buf, sizeof buf, fp));
    cr_assert_str_eq(buf, "hello 42\n");
    cr_assert_not_null(fgets(buf, sizeof buf, fp));
    cr_assert_str_eq(buf, "second line\n");
    cr_assert_null(fgets(buf, sizeof buf, fp));
    cr_assert(feof(fp));
    cr_assert_eq(ftell(fp), 21);

    /* A blob larger than a window, written and read back. */
    const size_t n = 3 * MIB;
    unsigned char *blob = malloc(n), *back = malloc(n);
    tu_pattern(blob, n, 0, 8);
    cr_assert_eq(fseek(fp, 0, SEEK_END), 0);
    cr_assert_eq(fwrite(blob, 1, n, fp), n);
    cr_assert_eq(fflush(fp), 0);
    cr_assert_eq(mmk_file_size(f), (int64_t)(21 + n));
    cr_assert_eq(mmk_file_pread(f, back, n, 21), (ssize_t)n);
    cr_assert_eq(memcmp(back, blob, n), 0);
    cr_assert_eq(fseek(fp, 21, SEEK_SET), 0);
    memset(back, 0, n);
    cr_assert_eq(fread(back, 1, n, fp), n);
    cr_assert_eq(memcmp(back, blob, n), 0);
    cr_assert_eq(ftell(fp), (long)(21 + n));

    /* Overwrite in the middle through the stream, read through the handle. */
    cr_assert_eq(fseek(fp, 6, SEEK_SET), 0);
    cr_assert_geq(fputs("43", fp), 0);
    cr_assert_eq(fclose(fp), 0);
    cr_assert_eq(mmk_file_pread(f, buf, 9, 0), 9);
    cr_assert_eq(memcmp(buf, "hello 43\n", 9), 0);
    /* fclose left the handle open and usable. */
    cr_assert_eq(mmk_file_seek(f, 0, SEEK_CUR), 8, "the stream moved the handle's position");
    cr_assert_eq(mmk_file_size(f), (int64_t)(21 + n));

    /* "a": writes go to the end. */
    fp = mmk_file_stdio(f, "a");
    cr_assert_not_null(fp);
    cr_assert_gt(fprintf(fp, "tail"), 0);
    cr_assert_eq(fclose(fp), 0);
    cr_assert_eq(mmk_file_pread(f, buf, 4, 21 + n), 4);
    cr_assert_eq(memcmp(buf, "tail", 4), 0);
    close_ok(f);

    /* Read-only handles give read-only streams only. */
    f = open_ok(p, NULL);
    errno = 0;
    cr_assert_null(mmk_file_stdio(f, "w"));
    cr_assert_eq(errno, EBADF);
    cr_assert_null(mmk_file_stdio(f, "r+"));
    cr_assert_null(mmk_file_stdio(f, "a"));
    fp = mmk_file_stdio(f, "r");
    cr_assert_not_null(fp);
    cr_assert_not_null(fgets(buf, sizeof buf, fp));
    cr_assert_str_eq(buf, "hello 43\n");
    cr_assert_eq(fputs("no", fp), EOF, "writing a read stream fails");
    cr_assert_eq(fclose(fp), 0);
    errno = 0;
    cr_assert_null(mmk_file_stdio(NULL, "r"));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(mmk_file_stdio(f, NULL));
    cr_assert_eq(errno, EINVAL);
    close_ok(f);
    free(blob);
    free(back);
}

/* ==== the plain-I/O fallback ============================================== */

Test(file, proc_file_is_plain)
{
    mmk_file *f = open_ok("/proc/self/status", NULL);
    cr_assert_eq(mmk_file_mode(f), MMK_FILE_PLAIN);
    char buf[8192];
    size_t got = 0;
    for (;;) {
        ssize_t r = mmk_file_read(f, buf + got, sizeof buf - 1 - got);
        cr_assert_geq(r, 0, "read: %s", mmk_strerror((int)r));
        if (r == 0 || got + (size_t)r >= sizeof buf - 1) {
            got += (size_t)r;
            break;
        }
        got += (size_t)r;
    }
    buf[got] = '\0';
    cr_assert_gt(got, 0, "a /proc file has content although its size reads 0");
    cr_assert_eq(strncmp(buf, "Name:", 5), 0, "got \"%.20s\"", buf);
    cr_assert_not_null(strstr(buf, "\nPid:"));
    /* pread and seek work on the descriptor. */
    char head[5];
    cr_assert_eq(mmk_file_pread(f, head, 5, 0), 5);
    cr_assert_eq(memcmp(head, "Name:", 5), 0);
    cr_assert_eq(mmk_file_seek(f, 0, SEEK_SET), 0);
    cr_assert_eq(mmk_file_read(f, head, 5), 5);
    cr_assert_eq(memcmp(head, "Name:", 5), 0);
    mmk_view v;
    cr_assert_eq(mmk_file_pin(f, 0, 1, MMK_RDONLY, &v), -ENOTSUP);
    cr_assert_eq(mmk_file_write(f, "x", 1), -EBADF);
    cr_assert_eq(mmk_file_sync(f), 0);
    close_ok(f);

    cr_assert_eq(mmk_file_open(&f, "/proc/self/status", &(mmk_file_opts){ .flags = MMK_COPY }),
                 -ENOTSUP, "a private copy needs a mapping");
    cr_assert_null(f);
}

/* ==== bad input =========================================================== */

Test(file, bad_open)
{
    mmk_file *f = (mmk_file *)1;
    const char *p = tu_pattern_file("f", 100, 1);
    cr_assert_eq(mmk_file_open(NULL, p, NULL), -EINVAL);
    cr_assert_eq(mmk_file_open(&f, NULL, NULL), -EINVAL);
    cr_assert_null(f, "*out is cleared on error");

    int fds = tu_open_fds();
    cr_assert_eq(mmk_file_open(&f, tu_dir(), NULL), -EISDIR);
    cr_assert_eq(mmk_file_open(&f, tu_dir(), &(mmk_file_opts){ .flags = MMK_RDWR }), -EISDIR);
    cr_assert_eq(mmk_file_open(&f, "/dev/null", NULL), -ENODEV);

    const char *fifo = tu_path("fifo");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    uint64_t t0 = now_ms();
    cr_assert_eq(mmk_file_open(&f, fifo, NULL), -ENODEV);
    cr_assert_eq(mmk_file_open(&f, fifo, &(mmk_file_opts){ .flags = MMK_RDWR }), -ENODEV);
    cr_assert_lt(now_ms() - t0, 2000, "opening a FIFO must not wait for a writer");
    cr_assert_eq(tu_open_fds(), fds, "failed opens leave no descriptor behind");

    cr_assert_eq(mmk_file_open(&f, tu_path("missing"), NULL), -ENOENT);
    cr_assert_eq(mmk_file_open(&f, p, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_CREATE |
                                                                  MMK_EXCL }), -EEXIST);
    const char *link = tu_path("link");
    cr_assert_eq(symlink(p, link), 0);
    cr_assert_eq(mmk_file_open(&f, link, &(mmk_file_opts){ .flags = MMK_NOFOLLOW }), -ELOOP);
    f = open_ok(link, NULL); /* without NOFOLLOW it is followed */
    close_ok(f);

    /* Flags that do not go together, or that a file does not take. */
    const char *np = tu_path("never");
    static const unsigned bad_flags[] = {
        MMK_RDWR | MMK_COPY, MMK_CREATE, MMK_TRUNC, MMK_APPEND, MMK_COPY | MMK_APPEND,
        MMK_COPY | MMK_CREATE, MMK_COPY | MMK_TRUNC, MMK_RDWR | MMK_EXCL, MMK_EXEC,
        MMK_RDWR | MMK_HUGE, MMK_RESERVE, MMK_LOCKED, 1u << 20,
    };
    for (size_t i = 0; i < sizeof bad_flags / sizeof bad_flags[0]; i++) {
        int rc = mmk_file_open(&f, np, &(mmk_file_opts){ .flags = bad_flags[i] });
        cr_assert_eq(rc, -EINVAL, "flags %#x gave %d", bad_flags[i], rc);
        cr_assert_null(f);
    }
    cr_assert_eq(tu_file_size(np), -1, "nothing was created");

    /* Sync policies. */
    struct { int sync; uint64_t every; } bad_sync[] = {
        { -1, 0 }, { MMK_SYNC_PERIODIC + 1, 1 }, { MMK_SYNC_BYTES, 0 },
        { MMK_SYNC_WRITES, 0 }, { MMK_SYNC_PERIODIC, 0 },
    };
    for (size_t i = 0; i < sizeof bad_sync / sizeof bad_sync[0]; i++) {
        int rc = mmk_file_open(&f, p, &(mmk_file_opts){ .flags = MMK_RDWR,
                                                         .sync = bad_sync[i].sync,
                                                         .sync_every = bad_sync[i].every });
        cr_assert_eq(rc, -EINVAL, "sync %d every %" PRIu64 " gave %d", bad_sync[i].sync,
                     bad_sync[i].every, rc);
    }
    cr_assert_eq(tu_open_fds(), fds);
}

Test(file, bad_io)
{
    const char *p = tu_pattern_file("f", 1000, 1);
    mmk_file *f = open_ok(p, NULL);
    char buf[16];
    mmk_view v;

    /* NULL handles and buffers. */
    cr_assert_eq(mmk_file_read(NULL, buf, 1), -EINVAL);
    cr_assert_eq(mmk_file_write(NULL, buf, 1), -EINVAL);
    cr_assert_eq(mmk_file_pread(NULL, buf, 1, 0), -EINVAL);
    cr_assert_eq(mmk_file_pwrite(NULL, buf, 1, 0), -EINVAL);
    cr_assert_eq(mmk_file_seek(NULL, 0, SEEK_SET), -EINVAL);
    cr_assert_eq(mmk_file_size(NULL), -EINVAL);
    cr_assert_eq(mmk_file_truncate(NULL, 0), -EINVAL);
    cr_assert_eq(mmk_file_sync(NULL), -EINVAL);
    cr_assert_eq(mmk_file_close(NULL), -EINVAL);
    cr_assert_eq(mmk_file_pin(NULL, 0, 1, MMK_RDONLY, &v), -EINVAL);
    cr_assert_eq(mmk_file_pin(f, 0, 1, MMK_RDONLY, NULL), -EINVAL);
    cr_assert_eq(mmk_file_unpin(NULL, &v), -EINVAL);
    cr_assert_eq(mmk_file_unpin(f, NULL), -EINVAL);
    cr_assert_eq(mmk_file_advise(NULL, MMK_ADV_NORMAL), -EINVAL);
    cr_assert_eq(mmk_file_fd(NULL), -EINVAL);
    cr_assert_eq(mmk_file_mode(NULL), 0);
    cr_assert_eq(mmk_file_read(f, NULL, 1), -EINVAL);
    cr_assert_eq(mmk_file_pread(f, NULL, 1, 0), -EINVAL);
    cr_assert_eq(mmk_file_read(f, NULL, 0), 0);
    cr_assert_eq(mmk_file_pread(f, NULL, 0, 0), 0);

    /* Writes on a read-only handle. */
    cr_assert_eq(mmk_file_write(f, "x", 1), -EBADF);
    cr_assert_eq(mmk_file_write(f, "x", 0), -EBADF);
    cr_assert_eq(mmk_file_pwrite(f, "x", 1, 0), -EBADF);
    cr_assert_eq(mmk_file_pwrite(f, "x", 1, 5000), -EBADF);
    cr_assert_eq(mmk_file_truncate(f, 10), -EBADF);
    cr_assert_eq(mmk_file_pin(f, 0, 10, MMK_RDWR, &v), -EBADF);
    cr_assert_eq(mmk_file_size(f), 1000, "and nothing changed");

    /* Pins outside the file. */
    cr_assert_eq(mmk_file_pin(f, 0, 0, MMK_RDONLY, &v), -EINVAL);
    cr_assert_eq(mmk_file_pin(f, 999, 2, MMK_RDONLY, &v), -EINVAL);
    cr_assert_eq(mmk_file_pin(f, UINT64_MAX, 2, MMK_RDONLY, &v), -EINVAL);

    /* Seeks: a negative result, an unknown whence, overflow. */
    cr_assert_eq(mmk_file_seek(f, 10, SEEK_SET), 10);
    cr_assert_eq(mmk_file_seek(f, -1, SEEK_SET), -EINVAL);
    cr_assert_eq(mmk_file_seek(f, -11, SEEK_CUR), -EINVAL);
    cr_assert_eq(mmk_file_seek(f, -1001, SEEK_END), -EINVAL);
    cr_assert_eq(mmk_file_seek(f, INT64_MIN, SEEK_END), -EINVAL);
    cr_assert_eq(mmk_file_seek(f, 0, 42), -EINVAL);
    cr_assert_eq(mmk_file_seek(f, 0, -1), -EINVAL);
    cr_assert_eq(mmk_file_seek(f, 0, SEEK_CUR), 10, "failed seeks do not move");
    cr_assert_eq(mmk_file_seek(f, -1000, SEEK_END), 0);
    cr_assert_eq(mmk_file_seek(f, INT64_MAX, SEEK_SET), INT64_MAX);
    int64_t r = mmk_file_seek(f, 1, SEEK_CUR);
    cr_assert_eq(r, -EOVERFLOW, "past INT64_MAX: %" PRId64, r);
    cr_assert_eq(mmk_file_read(f, buf, sizeof buf), 0, "far past the end");
    cr_assert_eq(mmk_file_seek(f, INT64_MAX, SEEK_END), -EOVERFLOW);
    close_ok(f);

    /* Offsets past INT64_MAX (file.h: -EFBIG or -EOVERFLOW). */
    f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR });
    static const uint64_t offs[] = { (uint64_t)INT64_MAX + 1, UINT64_MAX - 1, UINT64_MAX };
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        ssize_t rr = mmk_file_pread(f, buf, 1, offs[i]);
        cr_assert(rr == -EOVERFLOW || rr == -EFBIG, "pread at %#" PRIx64 ": %zd", offs[i], rr);
        rr = mmk_file_pwrite(f, "x", 1, offs[i]);
        cr_assert(rr == -EFBIG || rr == -EOVERFLOW, "pwrite at %#" PRIx64 ": %zd", offs[i], rr);
    }
    cr_assert_eq(mmk_file_pread(f, buf, sizeof buf, INT64_MAX), 0, "INT64_MAX is past the end");
    cr_assert_eq(mmk_file_pread(f, buf, SIZE_MAX, 999), 1, "lengths are clamped");
    cr_assert_eq(mmk_file_pwrite(f, "x", 1, INT64_MAX), -EFBIG, "the byte after cannot exist");
    cr_assert_eq(mmk_file_pwrite(f, "xy", 2, INT64_MAX - 1), -EFBIG);
    cr_assert_eq(mmk_file_truncate(f, (uint64_t)INT64_MAX + 1), -EFBIG);
    cr_assert_eq(mmk_file_seek(f, INT64_MAX, SEEK_SET), INT64_MAX);
    cr_assert_eq(mmk_file_write(f, "x", 1), -EFBIG);
    cr_assert_eq(mmk_file_size(f), 1000, "nothing changed");
    cr_assert_eq(mmk_file_advise(f, 12345), -EINVAL);
    close_ok(f);
}

Test(file, advice)
{
    mmk_cache *c = new_cache(64 * KIB, 0, 0);
    const char *p = tu_pattern_file("adv", 300 * KIB, 1);
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_POPULATE, .cache = c });
    unsigned char buf[100];
    cr_assert_eq(mmk_file_pread(f, buf, sizeof buf, 70000), (ssize_t)sizeof buf);
    static const int advs[] = {
        MMK_ADV_NORMAL, MMK_ADV_RANDOM, MMK_ADV_SEQUENTIAL, MMK_ADV_WILLNEED,
        MMK_ADV_DONTNEED, MMK_ADV_HUGEPAGE, MMK_ADV_NOHUGEPAGE, MMK_ADV_POPULATE_READ,
        MMK_ADV_POPULATE_WRITE, MMK_ADV_COLD, MMK_ADV_PAGEOUT,
    };
    for (size_t i = 0; i < sizeof advs / sizeof advs[0]; i++) {
        cr_assert_eq(mmk_file_advise(f, advs[i]), 0, "advice %d", advs[i]);
        cr_assert_eq(mmk_file_pread(f, buf, sizeof buf, 130000), (ssize_t)sizeof buf);
        for (size_t j = 0; j < sizeof buf; j++)
            cr_assert_eq(buf[j], tu_pattern_byte(130000 + j, 1), "advice never changes data");
    }
    cr_assert_eq(mmk_file_advise(f, -1), -EINVAL);
    close_ok(f);
    mmk_cache_free(c);
}

/* SEEK_DATA and SEEK_HOLE go to the file. */
Test(file, seek_data_hole)
{
    const char *p = tu_path("sparse");
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_CREATE });
    pwrite_ok(f, "data", 4, 0);
    cr_assert_eq(mmk_file_truncate(f, 4 * MIB), 0);
    int64_t hole = mmk_file_seek(f, 0, SEEK_HOLE);
    cr_assert(hole >= 4 && hole <= (int64_t)(4 * MIB), "hole at %" PRId64, hole);
    cr_assert_eq(mmk_file_seek(f, 0, SEEK_CUR), hole, "SEEK_HOLE moves the position");
    cr_assert_eq(mmk_file_seek(f, 0, SEEK_DATA), 0);
    cr_assert_eq(mmk_file_seek(f, 4 * MIB + 10, SEEK_DATA), -ENXIO);
    close_ok(f);
}

/* ==== truncation and pins ================================================= */

struct touch {
    const volatile unsigned char *p;
    size_t n;
    unsigned sum;
};

static int touch_bytes(void *arg)
{
    struct touch *t = arg;
    for (size_t i = 0; i < t->n; i++)
        t->sum += t->p[i];
    return 0;
}

Test(file, truncate_semantics)
{
    const size_t size = 256 * KIB;
    mmk_cache *c = new_cache(64 * KIB, 0, 0);
    const char *p = tu_pattern_file("trunc", size, 7);
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c });
    unsigned char *buf = malloc(size + 100);

    /* Map every window, then shrink: reads stop at the new end. */
    cr_assert_eq(mmk_file_pread(f, buf, size, 0), (ssize_t)size);
    cr_assert_eq(mmk_file_truncate(f, 10000), 0);
    cr_assert_eq(mmk_file_size(f), 10000);
    cr_assert_eq(tu_file_size(p), 10000);
    cr_assert_eq(mmk_file_pread(f, buf, size, 0), 10000);
    for (size_t i = 0; i < 10000; i++)
        cr_assert_eq(buf[i], tu_pattern_byte(i, 7));
    cr_assert_eq(mmk_file_pread(f, buf, 100, 9990), 10);
    cr_assert_eq(mmk_file_pread(f, buf, 100, 10000), 0);
    cr_assert_eq(mmk_file_pread(f, buf, 100, 70000), 0);
    cr_assert_eq(mmk_file_seek(f, 0, SEEK_END), 10000);
    cr_assert_eq(mmk_file_read(f, buf, 100), 0);

    /* Grow: the new part reads as zeros, through windows mapped before. */
    cr_assert_eq(mmk_file_truncate(f, size + 50), 0);
    memset(buf, 0xff, size + 100);
    cr_assert_eq(mmk_file_pread(f, buf, size + 100, 0), (ssize_t)(size + 50));
    cr_assert_eq(nonzero_at(buf + 10000, size + 50 - 10000), -1, "grown part is zeros");
    for (size_t i = 0; i < 10000; i++)
        cr_assert_eq(buf[i], tu_pattern_byte(i, 7));

    /* To zero and back. */
    cr_assert_eq(mmk_file_truncate(f, 0), 0);
    cr_assert_eq(mmk_file_pread(f, buf, 10, 0), 0);
    cr_assert_eq(mmk_file_truncate(f, 1), 0);
    cr_assert_eq(mmk_file_pread(f, buf, 10, 0), 1);
    cr_assert_eq(buf[0], 0);
    close_ok(f);
    free(buf);
    mmk_cache_free(c);
}

/* A pin reaching past a smaller end: the library does not crash, copies
 * through the handle stop at the end, and touching the gone pages inside
 * mmk_guard_run is -EIO. */
Test(file, truncate_under_pin)
{
    const size_t size = 256 * KIB;
    mmk_cache *c = new_cache(64 * KIB, 0, 0);
    const char *p = tu_pattern_file("pin", size, 7);
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c });
    mmk_view v;
    cr_assert_eq(mmk_file_pin(f, 1000, 200 * KIB, MMK_RDONLY, &v), 0);
    cr_assert_eq(mmk_file_truncate(f, 8192), 0);

    unsigned char *buf = malloc(size);
    cr_assert_eq(mmk_file_pread(f, buf, 200 * KIB, 1000), 8192 - 1000, "a short count");
    for (size_t i = 0; i < 8192 - 1000; i++)
        cr_assert_eq(buf[i], tu_pattern_byte(1000 + i, 7));
    cr_assert_eq(mmk_file_pread(f, buf, 100, 100000), 0);
    cr_assert_eq(mmk_file_read(f, buf, size), 8192);

    struct touch live = { (const unsigned char *)v.ptr, 8192 - 1000, 0 };
    cr_assert_eq(mmk_guard_run(touch_bytes, &live), 0, "the part still in the file");
    struct touch gone = { (const unsigned char *)v.ptr + 100 * KIB, 10, 0 };
    cr_assert_eq(mmk_guard_run(touch_bytes, &gone), -EIO, "pages past the end");

    /* Writes past the new end grow the file again, pin or not. */
    pwrite_ok(f, "back", 4, 100 * KIB);
    cr_assert_eq(mmk_file_size(f), (int64_t)(100 * KIB + 4));
    cr_assert_eq(mmk_file_pread(f, buf, 4, 100 * KIB), 4);
    cr_assert_eq(memcmp(buf, "back", 4), 0);
    cr_assert_eq(memcmp((const char *)v.ptr + 100 * KIB - 1000, "back", 4), 0,
                 "the pin sees the file again");
    cr_assert_eq(mmk_file_unpin(f, &v), 0);
    close_ok(f);
    free(buf);
    mmk_cache_free(c);
}

/* Another descriptor shrinks the file under the handle's windows: reads end
 * at the new end as pread's do, writes into the gone pages fail with -EIO,
 * never SIGBUS. */
Test(file, truncated_by_someone_else)
{
    const size_t size = 256 * KIB;
    mmk_cache *c = new_cache(64 * KIB, 0, 0);
    const char *p = tu_pattern_file("other", size, 7);
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c });
    unsigned char *buf = malloc(size);
    for (size_t off = 0; off < size; off += 4096) /* small reads: map the windows */
        cr_assert_eq(mmk_file_pread(f, buf, 100, off), 100);
    cr_assert_eq(truncate(p, 8192), 0);

    cr_assert_eq(mmk_file_pread(f, buf, 100 * KIB, 0), 8192);
    cr_assert_eq(mmk_file_pread(f, buf, 100, 70000), 0);
    cr_assert_eq(mmk_file_pread(f, buf, 100, 8100), 92);
    ssize_t w = mmk_file_pwrite(f, "x", 1, 100000);
    cr_assert(w == -EIO || w == 1, "a write into a gone page: %zd", w);
    cr_assert_eq(mmk_file_size(f), w == 1 ? 100001 : 8192);
    close_ok(f);
    free(buf);
    mmk_cache_free(c);
}

Test(file, close_with_pins)
{
    mmk_cache *c = new_cache(64 * KIB, 0, 0);
    const char *p = tu_pattern_file("busy", 128 * KIB, 3);
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = c,
                                                .sync = MMK_SYNC_PERIODIC,
                                                .sync_every = PERIODIC_MS });
    mmk_view v1, v2;
    cr_assert_eq(mmk_file_pin(f, 0, 100, MMK_RDONLY, &v1), 0);
    cr_assert_eq(mmk_file_pin(f, 60 * KIB, 10 * KIB, MMK_RDWR, &v2), 0);
    cr_assert_eq(mmk_file_close(f), -EBUSY);
    /* Still open, still synced by the syncer. */
    inject_install();
    pwrite_ok(f, "still", 5, 1000);
    cr_assert(sync_within(0, PERIODIC_WAIT_MS), "the syncer let go of a busy handle");
    unsigned char buf[5];
    cr_assert_eq(mmk_file_pread(f, buf, 5, 1000), 5);
    cr_assert_eq(memcmp(buf, "still", 5), 0);
    cr_assert_eq(mmk_file_unpin(f, &v1), 0);
    cr_assert_eq(mmk_file_close(f), -EBUSY, "one pin is left");
    cr_assert_eq(mmk_file_unpin(f, &v2), 0);
    cr_assert_eq(mmk_file_unpin(f, &v2), -EINVAL, "not pinned any more");
    close_ok(f);
    mmk_cache_free(c);
}

/* Plain mode (NFS, FUSE, ...): the same policies, synced with fdatasync; no
 * pins and no private copies. */
Test(file, plain_mode_policies)
{
    const char *p = tu_pattern_file("plain", 64 * KIB, 1);
    inject_install();
    inject_fake_fs_type(NFS_MAGIC);
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .sync = MMK_SYNC_ALWAYS });
    cr_assert_eq(mmk_file_mode(f), MMK_FILE_PLAIN);
    for (unsigned i = 0; i < 5; i++) {
        unsigned long before = inject_count(INJ_FDATASYNC);
        write_ok(f, "abc", 3);
        cr_assert_eq(inject_count(INJ_FDATASYNC), before + 1, "write %u", i);
        pwrite_ok(f, "abc", 3, 100000 + i);
        cr_assert_eq(inject_count(INJ_FDATASYNC), before + 2, "pwrite %u", i);
    }
    mmk_view v;
    cr_assert_eq(mmk_file_pin(f, 0, 1, MMK_RDONLY, &v), -ENOTSUP);
    close_ok(f);
    mmk_file *c = NULL;
    cr_assert_eq(mmk_file_open(&c, p, &(mmk_file_opts){ .flags = MMK_COPY }), -ENOTSUP);
    cr_assert_null(c);

    f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR, .sync = MMK_SYNC_NONE });
    unsigned long ev = sync_events();
    pwrite_ok(f, "x", 1, 0);
    close_ok(f);
    cr_assert_eq(sync_events(), ev, "NONE: nothing at close");

    f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_APPEND });
    int64_t size = tu_file_size(p);
    write_ok(f, "end", 3);
    cr_assert_eq(mmk_file_seek(f, 0, SEEK_CUR), size + 3, "appended");
    cr_assert_eq(mmk_file_seek(f, 0, SEEK_SET), 0);
    cr_assert_eq(mmk_file_write(f, "", 0), 0);
    cr_assert_eq(mmk_file_seek(f, 0, SEEK_CUR), 0, "a write of nothing does not move");
    cr_assert_eq(mmk_file_pwrite(f, "P", 1, 0), 1);
    char b[3];
    cr_assert_eq(mmk_file_pread(f, b, 1, 0), 1);
    cr_assert_eq(b[0], 'P', "pwrite on an APPEND handle writes at its offset");
    ev = sync_events();
    close_ok(f);
    cr_assert_eq(sync_events(), ev + 1, "CLOSE: one fdatasync");
    inject_reset();
}

/* A file made by MMK_CREATE exists for sure only once its directory is
 * synced: the first sync does that, once; later syncs do not repeat it. */
Test(file, create_syncs_the_directory_once)
{
    const char *p = tu_path("new-file");
    inject_install();
    mmk_file *f = open_ok(p, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_CREATE,
                                                .sync = MMK_SYNC_NONE });
    cr_assert_eq(mmk_file_write(f, "abc", 3), 3);
    cr_assert_eq(mmk_file_sync(f), 0);
    cr_expect_eq(inject_count(INJ_FSYNC), 1, "the directory is fsynced");
    cr_assert_eq(mmk_file_write(f, "d", 1), 1);
    cr_assert_eq(mmk_file_sync(f), 0);
    cr_expect_eq(inject_count(INJ_FSYNC), 1, "only once");
    inject_fail(INJ_FSYNC, 1, EIO);
    cr_assert_eq(mmk_file_close(f), 0);
    inject_reset();

    /* A failed directory sync is reported and retried. */
    const char *q = tu_path("other");
    inject_install();
    f = open_ok(q, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_CREATE, .sync = MMK_SYNC_NONE });
    inject_fail(INJ_FSYNC, 1, EIO);
    cr_expect_eq(mmk_file_sync(f), -EIO);
    cr_expect_eq(mmk_file_sync(f), 0, "retried");
    cr_expect_eq(inject_count(INJ_FSYNC), 2);
    mmk_file_close(f);
    inject_reset();
}
