/* bench/bench_ring.c — mirrored rings (mmk_ring) against a conventional ring
 * that copies in two pieces where a message wraps, and mmk_reader line
 * iteration against getline(3) and fgets(3).
 *
 * Both rings have the same capacity, RING_CAP: 65 pages, 260 KiB, not a power
 * of two.  The conventional ring below works like mmk_ring in everything but
 * the mirror: the same 64-bit positions with acquire/release atomics, the
 * same cached copy of the other side's position, the same cached index of
 * its own position (no division per call);
 * what differs is only what the mirror buys: one memcpy per message instead
 * of a branch and two, and a contiguous view of a message that wraps instead
 * of a copy of its two pieces into a scratch buffer.
 *
 * Messages are framed as a real stream would be: an 8-byte length, then the
 * payload.  So message boundaries drift against the end of the ring and a
 * message of m bytes wraps about once in RING_CAP / (m + 8) messages.  The
 * payloads are cut from a random source buffer at random offsets; the
 * consumer checksums what it got, and both sides must agree.
 *
 * ring-copy-*      one thread: write a message (length, payload) with
 *                  copying writes, then read the oldest one with copying
 *                  reads.  The ring holds a backlog of half its capacity, as
 *                  a ring between a producer and a slower consumer does (and
 *                  so the bytes read were not written a moment ago).
 * ring-inplace-*   the same, but the message is produced in place and the
 *                  oldest one parsed where it lies (sum every word); the
 *                  conventional ring must first gather a message that wraps
 *                  into a scratch buffer.
 * ring-threads-*   a producer thread and a consumer thread, copying writes and
 *                  reads, the consumer checksumming every message.
 * ring-lines-*     every line of a text file (warm in the page cache), in
 *                  place via mmk_reader_line vs getline(3) / fgets(3) on a
 *                  FILE with a buffer of the same size as the reader's ring.
 */
#include "harness.h"

#include <mmkit/bufio.h>
#include <mmkit/ring.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

/* 65 pages of 4 KiB: 260 KiB, a multiple of the mapping granularity on
 * 4 KiB-page systems and not a power of two. */
#define RING_CAP (65 * 4 * KIB)
/* Payloads are cut from random data of 16 times the payload size, at least
 * 16 KiB and at most 1 MiB: small messages come from L1 as a producer's
 * freshly built messages would.  Up to 4 KiB messages, ring and source fit
 * in a 512 KiB L2 together with room to spare: more, and which side wins
 * depends on how the kernel placed each ring's physical pages in the L2's
 * sets (seen: ratios flipping between 0.6 and 1.6 from run to run). */
#define SRC_MIN (16 * KIB)
#define SRC_MAX (1 * MIB)
#define SRC_PER_MSG 16
#define HDR     sizeof(uint64_t)

/* Text for the line scenarios: a quarter of --size, within these bounds
 * (64 MiB for the full run, 16 MiB with --quick).  Lines of 0 to
 * LINE_MAX_CHARS printable characters (about 60 on average, like logs and
 * CSV), each ended by '\n'. */
#define TEXT_MIN       (4 * MIB)
#define TEXT_MAX       (64 * MIB)
#define LINE_MAX_CHARS 120
#define FGETS_BUF      4096 /* longer than any line */

/* The bar: mmk_reader line iteration faster than getline. */
#define TARGET_LINES 1.0

/* Spins before a waiting thread yields its CPU. */
#define SPINS_BEFORE_YIELD 64

/* ---- a conventional ring ----------------------------------------------- */

typedef struct conv_ring {
    unsigned char *buf;
    size_t         cap;
    _Alignas(128) _Atomic uint64_t head;
    _Alignas(128) _Atomic uint64_t tail;
    _Alignas(128) uint64_t ptail; /* producer's cached tail */
    uint64_t ppos;                /* ... and index of its position */
    size_t   pidx;
    _Alignas(128) uint64_t chead; /* consumer's cached head */
    uint64_t cpos;
    size_t   cidx;
} conv_ring;

static inline size_t conv_idx(const conv_ring *q, uint64_t p, uint64_t pos, size_t idx)
{
    return p == pos ? idx : (size_t)(p % q->cap);
}

static inline size_t conv_add(const conv_ring *q, size_t idx, size_t k)
{
    idx += k;
    return idx >= q->cap ? idx - q->cap : idx;
}

static conv_ring *conv_new(size_t cap)
{
    conv_ring *q = aligned_alloc(128, sizeof *q);
    if (!q)
        return NULL;
    memset(q, 0, sizeof *q);
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    q->cap = cap;
    if (!(q->buf = aligned_alloc(4096, cap))) {
        free(q);
        return NULL;
    }
    memset(q->buf, 0, cap);
    return q;
}

static void conv_free(conv_ring *q)
{
    if (q)
        free(q->buf);
    free(q);
}

/* Out of line, as mmk_ring_write is (a library call): what is compared is
 * the two designs, not the compiler specialising an inlined copy. */
#if defined(__GNUC__)
#define CONV_CALL __attribute__((noinline))
#else
#define CONV_CALL
#endif

CONV_CALL static size_t conv_write(conv_ring *q, const void *src, size_t n)
{
    uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    size_t room = q->cap - (size_t)(h - q->ptail);
    if (room < n) {
        q->ptail = atomic_load_explicit(&q->tail, memory_order_acquire);
        room = q->cap - (size_t)(h - q->ptail);
    }
    size_t k = n < room ? n : room;
    size_t at = conv_idx(q, h, q->ppos, q->pidx);
    if (k <= q->cap - at) {
        memcpy(q->buf + at, src, k);
    } else { /* wraps: two pieces */
        size_t first = q->cap - at;
        memcpy(q->buf + at, src, first);
        memcpy(q->buf, (const unsigned char *)src + first, k - first);
    }
    q->ppos = h + k;
    q->pidx = conv_add(q, at, k);
    atomic_store_explicit(&q->head, h + k, memory_order_release);
    return k;
}

/* Bytes readable at tail t, refreshing the cached head when short of want. */
static size_t conv_avail(conv_ring *q, uint64_t t, size_t want)
{
    size_t avail = (size_t)(q->chead - t);
    if (avail < want) {
        q->chead = atomic_load_explicit(&q->head, memory_order_acquire);
        avail = (size_t)(q->chead - t);
    }
    return avail;
}

CONV_CALL static size_t conv_read(conv_ring *q, void *dst, size_t n)
{
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    size_t avail = conv_avail(q, t, n);
    size_t k = n < avail ? n : avail;
    size_t at = conv_idx(q, t, q->cpos, q->cidx);
    if (k <= q->cap - at) {
        memcpy(dst, q->buf + at, k);
    } else {
        size_t first = q->cap - at;
        memcpy(dst, q->buf + at, first);
        memcpy((unsigned char *)dst + first, q->buf, k - first);
    }
    q->cpos = t + k;
    q->cidx = conv_add(q, at, k);
    atomic_store_explicit(&q->tail, t + k, memory_order_release);
    return k;
}

/* ---- message scenarios ------------------------------------------------- */

typedef struct msg_bench {
    mmk_ring      *ring;
    conv_ring     *conv;
    unsigned char *src;     /* src_len random bytes */
    size_t         src_len;
    unsigned char *dst;     /* the consumer's buffer / scratch */
    size_t         m;       /* payload bytes */
} msg_bench;

static void msg_free(void *state)
{
    msg_bench *b = state;
    mmk_ring_free(b->ring);
    conv_free(b->conv);
    free(b->src);
    free(b->dst);
    free(b);
}

static inline const unsigned char *payload(const msg_bench *b, uint64_t *s);

static int msg_setup(bench_setup *out, size_t m, bool backlog)
{
    msg_bench *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->m = m;
    int rc = mmk_ring_new(&b->ring, RING_CAP, 0);
    if (rc < 0)
        goto fail;
    rc = -ENOMEM;
    if (mmk_ring_size(b->ring) != RING_CAP) { /* not a 4 KiB-page system */
        rc = -EINVAL;
        goto fail;
    }
    b->src_len = m * SRC_PER_MSG;
    b->src_len = b->src_len < SRC_MIN ? SRC_MIN : b->src_len > SRC_MAX ? SRC_MAX : b->src_len;
    if (!(b->conv = conv_new(RING_CAP)) || !(b->src = malloc(b->src_len)) ||
        !(b->dst = malloc(m + HDR)))
        goto fail;
    uint64_t s = 42;
    for (size_t i = 0; i < b->src_len; i += 8) {
        uint64_t w = bench_rand(&s);
        memcpy(b->src + i, &w, 8);
    }
    /* Touch both rings once so that no side pays the first page faults. */
    memset(mmk_ring_reserve(b->ring, RING_CAP), 0, RING_CAP);
    bench_keep(bench_touch(b->conv->buf, RING_CAP, 4096));
    if (backlog) {
        /* The same messages in both rings, half their capacity. */
        uint64_t len = m, bs = 99;
        for (size_t i = 0; i < RING_CAP / 2 / (m + HDR); i++) {
            const unsigned char *p = payload(b, &bs);
            if (mmk_ring_write(b->ring, &len, HDR) != (ssize_t)HDR ||
                mmk_ring_write(b->ring, p, m) != (ssize_t)m ||
                conv_write(b->conv, &len, HDR) != HDR || conv_write(b->conv, p, m) != m) {
                rc = -ENOBUFS;
                goto fail;
            }
        }
    }
    out->state = b;
    out->bytes_per_op = (double)m;
    return 0;
fail:
    msg_free(b);
    return rc;
}

/* What the consumer does with a message: sample it (copy scenarios) or read
 * every word of it (in place).  One out-of-line copy of each, shared by
 * both sides: inlined into each side, the same loop at two different code
 * alignments ran at speeds 1.6 times apart on the machine this was written
 * on, which side being faster depending on how the program was linked. */
CONV_CALL static uint64_t msg_sample(const void *p, size_t n)
{
    return bench_sum_sample(p, n);
}

CONV_CALL static uint64_t msg_parse(const void *p, size_t n)
{
    return bench_sum_all(p, n);
}

/* The payload of message i of a round: a random 8-byte-aligned offset. */
static inline const unsigned char *payload(const msg_bench *b, uint64_t *s)
{
    return b->src + (bench_rand_below(s, (b->src_len - b->m) / 8) * 8);
}

static int copy_mmkit(void *state, const bench_round *r, uint64_t *sum)
{
    msg_bench *b = state;
    uint64_t s = r->seed, acc = 0, len = b->m;
    for (uint64_t i = 0; i < r->ops; i++) {
        if (mmk_ring_write(b->ring, &len, HDR) != (ssize_t)HDR ||
            mmk_ring_write(b->ring, payload(b, &s), b->m) != (ssize_t)b->m)
            return -ENOBUFS;
        uint64_t got;
        if (mmk_ring_read(b->ring, &got, HDR) != (ssize_t)HDR ||
            mmk_ring_read(b->ring, b->dst, got) != (ssize_t)got)
            return -EIO;
        acc += msg_sample(b->dst, got);
    }
    *sum = acc;
    return 0;
}

static int copy_conv(void *state, const bench_round *r, uint64_t *sum)
{
    msg_bench *b = state;
    uint64_t s = r->seed, acc = 0, len = b->m;
    for (uint64_t i = 0; i < r->ops; i++) {
        if (conv_write(b->conv, &len, HDR) != HDR ||
            conv_write(b->conv, payload(b, &s), b->m) != b->m)
            return -ENOBUFS;
        uint64_t got;
        if (conv_read(b->conv, &got, HDR) != HDR || conv_read(b->conv, b->dst, got) != got)
            return -EIO;
        acc += msg_sample(b->dst, got);
    }
    *sum = acc;
    return 0;
}

/* Produce a message in place, then parse it in place. */
static int inplace_mmkit(void *state, const bench_round *r, uint64_t *sum)
{
    msg_bench *b = state;
    uint64_t s = r->seed, acc = 0, len = b->m;
    for (uint64_t i = 0; i < r->ops; i++) {
        unsigned char *w = mmk_ring_reserve(b->ring, HDR + b->m);
        if (!w)
            return -ENOBUFS;
        memcpy(w, &len, HDR);
        memcpy(w + HDR, payload(b, &s), b->m);
        mmk_ring_produce(b->ring, HDR + b->m);
        size_t avail;
        const unsigned char *p = mmk_ring_read_ptr(b->ring, &avail);
        uint64_t got;
        memcpy(&got, p, HDR);
        if (avail < HDR + got)
            return -EIO;
        acc += msg_parse(p + HDR, got);
        mmk_ring_consume(b->ring, HDR + got);
    }
    *sum = acc;
    return 0;
}

static int inplace_conv(void *state, const bench_round *r, uint64_t *sum)
{
    msg_bench *b = state;
    conv_ring *q = b->conv;
    uint64_t s = r->seed, acc = 0, len = b->m;
    for (uint64_t i = 0; i < r->ops; i++) {
        if (conv_write(q, &len, HDR) != HDR || conv_write(q, payload(b, &s), b->m) != b->m)
            return -ENOBUFS;
        uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
        if (conv_avail(q, t, HDR) < HDR)
            return -EIO;
        /* The header may wrap too. */
        uint64_t got;
        size_t at = conv_idx(q, t, q->cpos, q->cidx);
        if (HDR <= q->cap - at) {
            memcpy(&got, q->buf + at, HDR);
        } else {
            size_t first = q->cap - at;
            memcpy(&got, q->buf + at, first);
            memcpy((unsigned char *)&got + first, q->buf, HDR - first);
        }
        if (conv_avail(q, t, HDR + got) < HDR + got)
            return -EIO;
        size_t pat = conv_add(q, at, HDR);
        if (pat + got <= q->cap) {
            acc += msg_parse(q->buf + pat, got);
        } else { /* wraps: gather the two pieces first */
            size_t one = q->cap - pat;
            memcpy(b->dst, q->buf + pat, one);
            memcpy(b->dst + one, q->buf, got - one);
            acc += msg_parse(b->dst, got);
        }
        q->cpos = t + HDR + got;
        q->cidx = conv_add(q, pat, got);
        atomic_store_explicit(&q->tail, t + HDR + got, memory_order_release);
    }
    *sum = acc;
    return 0;
}

/* ---- two threads ------------------------------------------------------- */

typedef struct thread_run {
    msg_bench *b;
    bool       mmk;
    uint64_t   ops, sum;
    int        err;
} thread_run;

static inline void wait_a_bit(unsigned *spins)
{
    if (++*spins > SPINS_BEFORE_YIELD) {
        *spins = 0;
        sched_yield();
    }
}

/* All n bytes into whichever ring, waiting for room. */
static void put_all(thread_run *t, const unsigned char *p, size_t n)
{
    unsigned spins = 0;
    while (n) {
        size_t k = t->mmk ? (size_t)mmk_ring_write(t->b->ring, p, n)
                          : conv_write(t->b->conv, p, n);
        if (k == 0) {
            wait_a_bit(&spins);
            continue;
        }
        p += k;
        n -= k;
    }
}

static void get_all(thread_run *t, unsigned char *p, size_t n)
{
    unsigned spins = 0;
    while (n) {
        size_t k = t->mmk ? (size_t)mmk_ring_read(t->b->ring, p, n)
                          : conv_read(t->b->conv, p, n);
        if (k == 0) {
            wait_a_bit(&spins);
            continue;
        }
        p += k;
        n -= k;
    }
}

static void *consumer(void *arg)
{
    thread_run *t = arg;
    uint64_t acc = 0;
    for (uint64_t i = 0; i < t->ops; i++) {
        uint64_t len;
        get_all(t, (unsigned char *)&len, HDR);
        if (len != t->b->m) {
            t->err = -EIO;
            break;
        }
        get_all(t, t->b->dst, len);
        acc += msg_sample(t->b->dst, len);
    }
    t->sum = acc;
    return NULL;
}

static int threads_side(void *state, const bench_round *r, uint64_t *sum, bool mmk)
{
    msg_bench *b = state;
    thread_run t = { b, mmk, r->ops, 0, 0 };
    pthread_t tid;
    if (pthread_create(&tid, NULL, consumer, &t) != 0)
        return -EAGAIN;
    uint64_t s = r->seed, len = b->m;
    for (uint64_t i = 0; i < r->ops; i++) {
        put_all(&t, (const unsigned char *)&len, HDR);
        put_all(&t, payload(b, &s), b->m);
    }
    pthread_join(tid, NULL);
    *sum = t.sum;
    return t.err;
}

static int threads_mmkit(void *state, const bench_round *r, uint64_t *sum)
{
    return threads_side(state, r, sum, true);
}

static int threads_conv(void *state, const bench_round *r, uint64_t *sum)
{
    return threads_side(state, r, sum, false);
}

/* With a backlog (one thread), or empty (two threads). */
static int setup_16(bench_ctx *ctx, bench_setup *out) { (void)ctx; return msg_setup(out, 16, true); }
static int setup_4k(bench_ctx *ctx, bench_setup *out) { (void)ctx; return msg_setup(out, 4 * KIB, true); }
static int setup_64k(bench_ctx *ctx, bench_setup *out) { (void)ctx; return msg_setup(out, 64 * KIB, true); }
static int setup_t256(bench_ctx *ctx, bench_setup *out) { (void)ctx; return msg_setup(out, 256, false); }
static int setup_t64k(bench_ctx *ctx, bench_setup *out) { (void)ctx; return msg_setup(out, 64 * KIB, false); }

/* ---- lines ------------------------------------------------------------- */

typedef struct line_bench {
    int    fd;      /* the mmk_reader side's descriptor */
    FILE  *f;       /* the stdio side's stream (its own descriptor) */
    char  *buf;     /* the stdio side's line buffer */
    size_t bufcap;
} line_bench;

static void lines_free(void *state)
{
    line_bench *b = state;
    if (b->fd >= 0)
        close(b->fd);
    if (b->f)
        fclose(b->f);
    free(b->buf);
    free(b);
}

/* Write the text file once per run (both line scenarios share it). */
static int make_text(bench_ctx *ctx, const char **pathp)
{
    static uint64_t made;
    uint64_t want = bench_size(ctx) / 4;
    want = want < TEXT_MIN ? TEXT_MIN : want > TEXT_MAX ? TEXT_MAX : want;
    int rc = bench_path(ctx, "lines.txt", pathp);
    if (rc < 0 || made == want)
        return rc;
    int fd = open(*pathp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    size_t chunk = 4 * MIB;
    char *buf = malloc(chunk + LINE_MAX_CHARS + 2);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    uint64_t s = 7, total = 0;
    while (total < want && rc == 0) {
        size_t n = 0;
        while (n < chunk) {
            uint64_t x = bench_rand(&s);
            size_t len = (size_t)(x % (LINE_MAX_CHARS + 1));
            for (size_t i = 0; i < len; i++) {
                if (i % 8 == 0)
                    x = bench_rand(&s);
                buf[n++] = (char)(' ' + (x >> (i % 8 * 8)) % 95);
            }
            buf[n++] = '\n';
        }
        for (size_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, n - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = -errno;
                break;
            }
            off += (size_t)w;
        }
        total += n;
    }
    /* On disk before timing starts, so that no writeback runs meanwhile. */
    if (rc == 0 && fdatasync(fd) < 0)
        rc = -errno;
    close(fd);
    free(buf);
    if (rc == 0)
        made = want;
    return rc;
}

static int lines_setup(bench_ctx *ctx, bench_setup *out)
{
    const char *path;
    int rc = make_text(ctx, &path);
    if (rc < 0)
        return rc;
    line_bench *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->bufcap = FGETS_BUF;
    b->fd = open(path, O_RDONLY | O_CLOEXEC);
    b->f = fopen(path, "re");
    b->buf = malloc(b->bufcap);
    if (b->fd < 0 || !b->f || !b->buf) {
        rc = -ENOMEM;
        if (b->fd < 0 || !b->f)
            rc = -errno;
        lines_free(b);
        return rc;
    }
    /* The same buffer size as the reader's ring: both make one read(2) per
     * 64 KiB. */
    setvbuf(b->f, NULL, _IOFBF, MMK_BUFIO_DEFAULT_SIZE);
    /* Warm the page cache (the file was just written, but make sure). */
    char tmp[65536];
    uint64_t k = 0;
    ssize_t got;
    while ((got = read(b->fd, tmp, sizeof tmp)) > 0)
        k += (uint64_t)tmp[0] + (uint64_t)got;
    bench_keep(k);
    out->state = b;
    return 0;
}

static inline uint64_t line_sum(const char *p, size_t len)
{
    return len * 31 + (unsigned char)p[0] + ((uint64_t)(unsigned char)p[len - 1] << 8);
}

/* r->ops lines from the start of the file (again from the start at its end). */
static int lines_mmkit(void *state, const bench_round *r, uint64_t *sum)
{
    line_bench *b = state;
    mmk_reader *rd = NULL;
    uint64_t acc = 0;
    int rc = 0;
    for (uint64_t i = 0; i < r->ops;) {
        if (!rd) {
            if (lseek(b->fd, 0, SEEK_SET) < 0)
                return -errno;
            if ((rc = mmk_reader_new(&rd, b->fd, MMK_BUFIO_DEFAULT_SIZE)) < 0)
                return rc;
        }
        const char *line;
        ssize_t len = mmk_reader_line(rd, &line);
        if (len < 0) {
            rc = (int)len;
            break;
        }
        if (len == 0) {
            mmk_reader_free(rd);
            rd = NULL;
            continue;
        }
        acc += line_sum(line, (size_t)len);
        i++;
    }
    mmk_reader_free(rd);
    *sum = acc;
    return rc;
}

static int lines_getline(void *state, const bench_round *r, uint64_t *sum)
{
    line_bench *b = state;
    uint64_t acc = 0;
    if (fseek(b->f, 0, SEEK_SET) != 0)
        return -errno;
    for (uint64_t i = 0; i < r->ops;) {
        ssize_t len = getline(&b->buf, &b->bufcap, b->f);
        if (len < 0) {
            if (ferror(b->f))
                return -EIO;
            rewind(b->f);
            continue;
        }
        acc += line_sum(b->buf, (size_t)len);
        i++;
    }
    *sum = acc;
    return 0;
}

static int lines_fgets(void *state, const bench_round *r, uint64_t *sum)
{
    line_bench *b = state;
    uint64_t acc = 0;
    if (fseek(b->f, 0, SEEK_SET) != 0)
        return -errno;
    for (uint64_t i = 0; i < r->ops;) {
        if (!fgets(b->buf, (int)b->bufcap, b->f)) {
            if (ferror(b->f))
                return -EIO;
            rewind(b->f);
            continue;
        }
        acc += line_sum(b->buf, strlen(b->buf));
        i++;
    }
    *sum = acc;
    return 0;
}

static const bench_scenario ring_scenarios[] = {
    { "ring-copy-16", "16 B messages: mmk_ring_write/read vs a ring copying in two pieces",
      BENCH_HOT, BENCH_NS_PER_OP, 0, setup_16, copy_mmkit, copy_conv, msg_free },
    { "ring-copy-4k", "4 KiB messages: mmk_ring_write/read vs a ring copying in two pieces",
      BENCH_HOT, BENCH_GBPS, 0, setup_4k, copy_mmkit, copy_conv, msg_free },
    { "ring-copy-64k", "64 KiB messages: mmk_ring_write/read vs a ring copying in two pieces",
      BENCH_HOT, BENCH_GBPS, 0, setup_64k, copy_mmkit, copy_conv, msg_free },
    { "ring-inplace-4k", "4 KiB messages parsed in place vs gathered when they wrap",
      BENCH_HOT, BENCH_GBPS, 0, setup_4k, inplace_mmkit, inplace_conv, msg_free },
    { "ring-inplace-64k", "64 KiB messages parsed in place vs gathered when they wrap",
      BENCH_HOT, BENCH_GBPS, 0, setup_64k, inplace_mmkit, inplace_conv, msg_free },
    { "ring-threads-256", "256 B messages, producer and consumer threads: mmk_ring vs two-piece ring",
      BENCH_HOT, BENCH_MOPS, 0, setup_t256, threads_mmkit, threads_conv, msg_free },
    { "ring-threads-64k", "64 KiB messages, producer and consumer threads: mmk_ring vs two-piece ring",
      BENCH_HOT, BENCH_GBPS, 0, setup_t64k, threads_mmkit, threads_conv, msg_free },
    { "ring-lines-getline", "every line of a text file: mmk_reader_line vs getline(3), 64 KiB buffers",
      BENCH_HOT, BENCH_NS_PER_OP, TARGET_LINES, lines_setup, lines_mmkit, lines_getline,
      lines_free },
    { "ring-lines-fgets", "every line of a text file: mmk_reader_line vs fgets(3) + strlen, 64 KiB buffers",
      BENCH_HOT, BENCH_NS_PER_OP, TARGET_LINES, lines_setup, lines_mmkit, lines_fgets,
      lines_free },
};

const bench_group bench_group_ring = {
    "ring", ring_scenarios, sizeof ring_scenarios / sizeof ring_scenarios[0],
};
