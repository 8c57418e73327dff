/* tools/mmk/verify.c — the piece-hashing engine (see verify.h). */
#include "verify.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mmkit/cache.h>
#include <mmkit/guard.h>

/* Batches: a worker claims at most this many bytes of pieces at a time (long
 * sequential stretches for the disk's read-ahead), and at least one piece;
 * near the end batches shrink to 1/BATCH_SPLIT of what is left per worker,
 * so that the workers finish together. */
#define BATCH_MAX_BYTES ((uint64_t)8 << 20)
#define BATCH_SPLIT     4

/* The progress callback runs this often (nanoseconds). */
#define PROGRESS_NS 100000000L

/* Read buffers are page aligned. */
#define BUF_ALIGN 4096

/* One chunk to read: where it lies in the group, how to read it, and where
 * its first byte is in the torrent's pieces. */
typedef struct chunk {
    uint64_t off;
    size_t   len;
    bool     pin;
    size_t   piece;
    uint64_t poff;
} chunk;

/* A slot of a worker's ring.  FREE: unassigned; BUSY: a chunk is being read
 * into it (by the reader, or by the hasher itself); FULL: read, waiting to
 * be hashed. */
enum { SLOT_FREE, SLOT_BUSY, SLOT_FULL };

typedef struct slot {
    unsigned char *buf;  /* for copies (allocated lazily in pin mode) */
    mmk_group_view view; /* for pins */
    bool           pinned;
    int            state;
    size_t         len;
    size_t         piece; /* the piece holding the chunk's first byte ... */
    uint64_t       poff;  /* ... and where in it */
    int            err;
} slot;

typedef struct engine engine;

/* Where a worker is in its batches (under the worker's mutex). */
typedef struct cursor {
    size_t   w0, w1;     /* the claimed work indices not yet cut into chunks */
    uint64_t start;      /* the current stretch: group offset of its first byte */
    uint64_t bytes, pos; /* its length, and how much is cut already */
    size_t   first;      /* its first piece */
    bool     in_stretch;
    bool     done;       /* nothing left to claim */
} cursor;

typedef struct worker {
    engine         *e;
    mmk_sha1       *sha;
    slot           *slots;
    unsigned        nslots;
    /* The ring: slots head .. head + assigned - 1 hold chunks in order. */
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    unsigned        head, assigned;
    cursor          cur;
    bool            reader_done;
    bool            started_reader, sync_ok;
    pthread_t       hasher_tid, reader_tid;
    bool            started_hasher;
} worker;

struct engine {
    mmk_hash_job   *job;
    size_t         *run_work;   /* work index of each run's first piece */
    size_t          work;       /* pieces in all runs */
    atomic_size_t   next;       /* the next unclaimed work index */
    atomic_uint_least64_t done; /* bytes hashed so far */
    atomic_uint_least64_t pinned; /* of which through pins */
    atomic_int      err;        /* the first read error */
    atomic_int      fatal;      /* a worker could not start: stop claiming */
    size_t          batch_max, batch_min;
    size_t          chunk;
    uint64_t        window;     /* pin mode: chunks stay inside one window */
    unsigned        nworkers;
    worker         *workers;
    pthread_mutex_t mu;         /* for the end-of-job wait */
    pthread_cond_t  cv;
    unsigned        running;
};

unsigned mmk_hash_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return (unsigned)n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

/* The scan cache's budget is at least this (bytes). */
#define SCAN_CACHE_MIN ((size_t)64 << 20)

int mmk_hash_scan_cache(mmk_cache **out, unsigned threads, int depth)
{
    mmk_cache_opts def;
    mmk_cache_limits(mmk_cache_default(), &def);
    if (!threads)
        threads = mmk_hash_cpus();
    size_t slots = (size_t)(depth < 0 ? MMK_HASH_DEPTH : depth < 2 ? 2 : depth) + 1;
    size_t want = 2 * (size_t)threads * slots * def.window;
    if (want < SCAN_CACHE_MIN)
        want = SCAN_CACHE_MIN;
    if (def.max_mapped && want > def.max_mapped)
        want = def.max_mapped;
    return mmk_cache_new(out, &(mmk_cache_opts){ .max_mapped = want, .window = def.window });
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t piece_size(const mmk_hash_job *j, size_t i)
{
    if (i + 1 < j->npieces)
        return j->piece_len;
    return j->total - (uint64_t)i * j->piece_len;
}

/* ---- claiming work ------------------------------------------------------- */

/* Claim the next batch: [*w0, *w1) in work indices.  false when all is taken. */
static bool claim(engine *e, size_t *w0, size_t *w1)
{
    size_t cur = atomic_load_explicit(&e->next, memory_order_relaxed);
    for (;;) {
        if (cur >= e->work || atomic_load_explicit(&e->fatal, memory_order_relaxed))
            return false;
        size_t left = e->work - cur;
        size_t take = left / ((size_t)e->nworkers * BATCH_SPLIT);
        if (take > e->batch_max)
            take = e->batch_max;
        if (take < e->batch_min)
            take = e->batch_min;
        if (take > left)
            take = left;
        if (atomic_compare_exchange_weak_explicit(&e->next, &cur, cur + take,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *w0 = cur;
            *w1 = cur + take;
            return true;
        }
    }
}

/* The run holding work index w (binary search of run_work). */
static size_t run_of(const engine *e, size_t w)
{
    size_t lo = 0, hi = e->job->nruns;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (e->run_work[mid] <= w)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* ---- reading a chunk ------------------------------------------------------ */

typedef struct touch_arg {
    const struct iovec *iov;
    int                 iovcnt;
    size_t              page;
    unsigned            sum;
} touch_arg;

/* Fault in every page of the views (under the guard: a page that cannot be
 * read is -EIO). */
static int touch_pages(void *arg)
{
    touch_arg *t = arg;
    unsigned s = 0;
    for (int k = 0; k < t->iovcnt; k++) {
        const volatile unsigned char *p = t->iov[k].iov_base;
        size_t n = t->iov[k].iov_len;
        for (size_t i = 0; i < n; i += t->page)
            s += p[i];
        if (n)
            s += p[n - 1];
    }
    t->sum = s;
    return 0;
}

static void pread_chunk(engine *e, slot *s, uint64_t off, size_t len)
{
    ssize_t got = mmk_group_pread(e->job->group, s->buf, len, off);
    if (got < 0)
        s->err = (int)got;
    else if ((size_t)got != len)
        s->err = -EIO; /* the range lies inside the group: short means shrunk */
}

/* Fill s with the chunk [off, off + len) of the group: pinned or copied. */
static void read_chunk(engine *e, slot *s, uint64_t off, size_t len, bool pin)
{
    mmk_hash_job *j = e->job;
    s->len = len;
    s->err = 0;
    int rc = pin ? mmk_group_pin(j->group, off, len, MMK_RDONLY, &s->view) : -ENOMEM;
    if (rc == -ENOMEM) {
        /* A copy: asked for, or the cache's budget is held by pins (a
         * chunk over very many small files, say). */
        if (!s->buf) {
            void *p;
            if (posix_memalign(&p, BUF_ALIGN, e->chunk) != 0) {
                s->err = -ENOMEM;
                return;
            }
            s->buf = p;
        }
        pread_chunk(e, s, off, len);
        return;
    }
    if (rc < 0) {
        s->err = rc;
        return;
    }
    s->pinned = true;
    touch_arg t = { s->view.iov, s->view.iovcnt, mmk_page_size(), 0 };
    rc = mmk_guard_run(touch_pages, &t);
    if (rc < 0)
        s->err = rc;
}

static void release_chunk(engine *e, slot *s)
{
    if (s->pinned) {
        mmk_group_unpin(e->job->group, &s->view);
        s->pinned = false;
    }
}

/* Where the next chunk of a batch ends, and whether to pin it: at most
 * e->chunk bytes; a pin never crosses a window boundary of the file holding
 * its first byte (so it needs no span mapping), and in AUTO mode it stays
 * inside that file, which must be large. */
static size_t chunk_len(engine *e, uint64_t off, uint64_t left, bool *pin)
{
    const mmk_hash_job *j = e->job;
    uint64_t n = left < e->chunk ? left : e->chunk;
    *pin = false;
    if (j->read_mode == MMK_READ_PREAD || (j->read_mode == MMK_READ_AUTO && !j->file_sizes))
        return (size_t)n;
    size_t idx;
    uint64_t foff;
    if (mmk_group_locate(j->group, off, &idx, &foff) < 0)
        return (size_t)n;
    if (j->read_mode == MMK_READ_AUTO) {
        if (idx >= j->nfiles || j->file_sizes[idx] < MMK_HASH_PIN_MIN_FILE)
            return (size_t)n;
        if (n > j->file_sizes[idx] - foff)
            n = j->file_sizes[idx] - foff;
    }
    if (e->window) {
        uint64_t room = e->window - foff % e->window;
        if (n > room)
            n = room;
    }
    *pin = true;
    return (size_t)n;
}

/* ---- hashing a chunk ----------------------------------------------------- */

typedef struct update_arg {
    mmk_sha1   *sha;
    const void *p;
    size_t      n;
} update_arg;

static int guarded_update(void *arg)
{
    update_arg *u = arg;
    return mmk_sha1_update(u->sha, u->p, u->n);
}

static void finish_piece(worker *w, size_t p)
{
    mmk_hash_job *j = w->e->job;
    unsigned char md[MMK_SHA1_LEN];
    if (mmk_sha1_final(w->sha, md) < 0) {
        j->status[p] = MMK_PIECE_UNREADABLE;
        return;
    }
    if (j->digests)
        memcpy(j->digests + p * MMK_SHA1_LEN, md, MMK_SHA1_LEN);
    if (j->expected && memcmp(j->expected + p * MMK_SHA1_LEN, md, MMK_SHA1_LEN) != 0)
        j->status[p] = MMK_PIECE_BAD;
    else
        j->status[p] = MMK_PIECE_GOOD;
}

static void note_error(engine *e, int err)
{
    int zero = 0;
    atomic_compare_exchange_strong(&e->err, &zero, err);
}

static void hash_chunk(worker *w, const slot *s)
{
    engine *e = w->e;
    mmk_hash_job *j = e->job;
    size_t p = s->piece;
    uint64_t poff = s->poff;
    if (s->err) {
        note_error(e, s->err);
        size_t last = p + (size_t)((poff + s->len - 1) / j->piece_len);
        for (size_t q = p; q <= last; q++)
            j->status[q] = MMK_PIECE_UNREADABLE;
        atomic_fetch_add_explicit(&e->done, s->len, memory_order_relaxed);
        return;
    }
    if (s->pinned)
        atomic_fetch_add_explicit(&e->pinned, s->len, memory_order_relaxed);
    struct iovec one = { s->buf, s->len };
    const struct iovec *iov = s->pinned ? s->view.iov : &one;
    int iovcnt = s->pinned ? s->view.iovcnt : 1;
    for (int k = 0; k < iovcnt; k++) {
        const unsigned char *ptr = iov[k].iov_base;
        size_t n = iov[k].iov_len;
        while (n > 0) {
            uint64_t psz = piece_size(j, p);
            size_t take = psz - poff < n ? (size_t)(psz - poff) : n;
            if (j->status[p] != MMK_PIECE_UNREADABLE) {
                int rc = poff == 0 ? mmk_sha1_init(w->sha) : 0;
                if (rc == 0) {
                    if (s->pinned) {
                        update_arg u = { w->sha, ptr, take };
                        rc = mmk_guard_run(guarded_update, &u);
                    } else {
                        rc = mmk_sha1_update(w->sha, ptr, take);
                    }
                }
                if (rc < 0) {
                    note_error(e, rc);
                    j->status[p] = MMK_PIECE_UNREADABLE;
                } else if (poff + take == psz) {
                    finish_piece(w, p);
                }
            }
            poff += take;
            ptr += take;
            n -= take;
            if (poff == psz) {
                p++;
                poff = 0;
            }
        }
    }
    atomic_fetch_add_explicit(&e->done, s->len, memory_order_relaxed);
}

/* ---- the chunk sequence and the ring --------------------------------------- */

/* The next chunk of this worker's work, claiming a new batch when the last
 * one is used up; false when there is no more.  Called under w->mu: chunks
 * are handed out in order, to the reader or to the hasher. */
static bool next_chunk(worker *w, chunk *c)
{
    engine *e = w->e;
    const mmk_hash_job *j = e->job;
    cursor *k = &w->cur;
    while (!k->in_stretch) {
        if (k->done)
            return false;
        if (k->w0 == k->w1 && !claim(e, &k->w0, &k->w1)) {
            k->done = true;
            return false;
        }
        /* The part of the batch inside one run is one contiguous stretch. */
        size_t r = run_of(e, k->w0);
        const mmk_hash_run *run = &j->runs[r];
        size_t in_run = k->w0 - e->run_work[r];
        size_t avail = run->count - in_run;
        size_t cnt = k->w1 - k->w0 < avail ? k->w1 - k->w0 : avail;
        k->first = run->first + in_run;
        k->start = run->group_off + (uint64_t)in_run * j->piece_len;
        uint64_t end_t = (uint64_t)(k->first + cnt) * j->piece_len;
        if (end_t > j->total)
            end_t = j->total;
        k->bytes = end_t - (uint64_t)k->first * j->piece_len;
        k->pos = 0;
        k->w0 += cnt;
        k->in_stretch = k->bytes > 0;
    }
    c->off = k->start + k->pos;
    c->len = chunk_len(e, c->off, k->bytes - k->pos, &c->pin);
    c->piece = k->first + (size_t)(k->pos / j->piece_len);
    c->poff = k->pos % j->piece_len;
    k->pos += c->len;
    if (k->pos == k->bytes)
        k->in_stretch = false;
    return true;
}

/* Read chunk c into slot s (which the caller marked BUSY), then mark it FULL. */
static void fill_slot(worker *w, slot *s, const chunk *c)
{
    s->piece = c->piece;
    s->poff = c->poff;
    read_chunk(w->e, s, c->off, c->len, c->pin);
    pthread_mutex_lock(&w->mu);
    s->state = SLOT_FULL;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* The read-ahead thread: keep the ring's free slots filled, in order. */
static void *reader_main(void *arg)
{
    worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->assigned == w->nslots)
            pthread_cond_wait(&w->cv, &w->mu);
        chunk c;
        if (!next_chunk(w, &c))
            break;
        slot *s = &w->slots[(w->head + w->assigned) % w->nslots];
        s->state = SLOT_BUSY;
        w->assigned++;
        pthread_mutex_unlock(&w->mu);
        fill_slot(w, s, &c);
        pthread_mutex_lock(&w->mu);
    }
    w->reader_done = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* The hashing thread: hash the ring's chunks in order.  When the ring is
 * empty (no reader thread, or the reader lags: it was not scheduled, or the
 * job just started) it reads the next chunk itself instead of waiting, so a
 * worker is never slower than reading and hashing in turn; it waits only for
 * a chunk the reader is reading right now. */
static void hash_ring(worker *w)
{
    pthread_mutex_lock(&w->mu);
    for (;;) {
        slot *s = &w->slots[w->head];
        if (w->assigned == 0) {
            chunk c;
            if (!next_chunk(w, &c))
                break;
            s->state = SLOT_BUSY;
            w->assigned++;
            pthread_mutex_unlock(&w->mu);
            fill_slot(w, s, &c);
            pthread_mutex_lock(&w->mu);
        }
        if (s->state != SLOT_FULL) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        pthread_mutex_unlock(&w->mu);
        hash_chunk(w, s);
        release_chunk(w->e, s);
        pthread_mutex_lock(&w->mu);
        s->state = SLOT_FREE;
        w->head = (w->head + 1) % w->nslots;
        w->assigned--;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
}

static void *hasher_main(void *arg)
{
    worker *w = arg;
    engine *e = w->e;
    hash_ring(w);
    pthread_mutex_lock(&e->mu);
    e->running--;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- setup and teardown ---------------------------------------------------- */

static void worker_free(worker *w)
{
    if (w->slots)
        for (unsigned i = 0; i < w->nslots; i++) {
            release_chunk(w->e, &w->slots[i]);
            free(w->slots[i].buf);
        }
    free(w->slots);
    mmk_sha1_free(w->sha);
    if (w->sync_ok) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
    }
}

static int worker_init(engine *e, worker *w, unsigned nslots)
{
    w->e = e;
    w->nslots = nslots;
    if (!(w->sha = mmk_sha1_new()))
        return -ENOMEM;
    if (!(w->slots = calloc(nslots, sizeof *w->slots)))
        return -ENOMEM;
    if (e->job->read_mode != MMK_READ_PIN)
        for (unsigned i = 0; i < nslots; i++) {
            void *p;
            if (posix_memalign(&p, BUF_ALIGN, e->chunk) != 0)
                return -ENOMEM;
            w->slots[i].buf = p;
        }
    if (pthread_mutex_init(&w->mu, NULL) != 0)
        return -ENOMEM;
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        return -ENOMEM;
    }
    w->sync_ok = true;
    return 0;
}

static int check_job(const mmk_hash_job *j)
{
    if (!j->group || !j->status || !j->piece_len || (j->nruns && !j->runs))
        return -EINVAL;
    if (j->read_mode != MMK_READ_AUTO && j->read_mode != MMK_READ_PREAD &&
        j->read_mode != MMK_READ_PIN)
        return -EINVAL;
    if (j->file_sizes && j->nfiles != mmk_group_count(j->group))
        return -EINVAL;
    if (j->npieces && (j->total == 0 || (j->total - 1) / j->piece_len + 1 != j->npieces))
        return -EINVAL;
    if (!j->npieces && j->total)
        return -EINVAL;
    uint64_t gsize = mmk_group_size(j->group);
    for (size_t r = 0; r < j->nruns; r++) {
        const mmk_hash_run *run = &j->runs[r];
        if (run->first > j->npieces || run->count > j->npieces - run->first)
            return -EINVAL;
        if (!run->count)
            continue;
        uint64_t end_t = (uint64_t)(run->first + run->count) * j->piece_len;
        if (end_t > j->total)
            end_t = j->total;
        uint64_t bytes = end_t - (uint64_t)run->first * j->piece_len;
        if (run->group_off > gsize || bytes > gsize - run->group_off)
            return -EINVAL;
    }
    return 0;
}

static void count_results(engine *e)
{
    mmk_hash_job *j = e->job;
    j->good = j->bad = j->unreadable = 0;
    for (size_t r = 0; r < j->nruns; r++)
        for (size_t p = j->runs[r].first; p < j->runs[r].first + j->runs[r].count; p++) {
            if (j->status[p] == MMK_PIECE_GOOD)
                j->good++;
            else if (j->status[p] == MMK_PIECE_BAD)
                j->bad++;
            else if (j->status[p] == MMK_PIECE_UNREADABLE)
                j->unreadable++;
        }
}

/* Wait for the hashers, calling the progress callback on the way. */
static void wait_workers(engine *e)
{
    mmk_hash_job *j = e->job;
    uint64_t total = 0;
    for (size_t r = 0; r < j->nruns; r++) {
        if (!j->runs[r].count)
            continue;
        size_t first = j->runs[r].first;
        uint64_t end_t = (uint64_t)(first + j->runs[r].count) * j->piece_len;
        total += (end_t > j->total ? j->total : end_t) - (uint64_t)first * j->piece_len;
    }
    pthread_mutex_lock(&e->mu);
    while (e->running > 0) {
        if (!j->progress) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += PROGRESS_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->cv, &e->mu, &ts);
        if (e->running > 0) {
            pthread_mutex_unlock(&e->mu);
            j->progress(j->progress_arg, atomic_load(&e->done), total);
            pthread_mutex_lock(&e->mu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (j->progress)
        j->progress(j->progress_arg, atomic_load(&e->done), total);
}

int mmk_hash_pieces(mmk_hash_job *j)
{
    if (!j)
        return -EINVAL;
    int rc = check_job(j);
    if (rc < 0)
        return rc;
    j->bytes = 0;
    j->pinned = 0;
    j->seconds = 0;
    j->err = 0;
    engine e;
    memset(&e, 0, sizeof e);
    e.job = j;
    atomic_init(&e.next, 0);
    atomic_init(&e.done, 0);
    atomic_init(&e.pinned, 0);
    atomic_init(&e.err, 0);
    atomic_init(&e.fatal, 0);
    if (!(e.run_work = malloc((j->nruns + 1) * sizeof *e.run_work)))
        return -ENOMEM;
    for (size_t r = 0; r < j->nruns; r++) {
        e.run_work[r] = e.work;
        e.work += j->runs[r].count;
        for (size_t p = j->runs[r].first; p < j->runs[r].first + j->runs[r].count; p++)
            j->status[p] = MMK_PIECE_UNCHECKED;
    }
    e.chunk = j->chunk ? j->chunk : MMK_HASH_CHUNK;
    if (j->read_mode != MMK_READ_PREAD) {
        mmk_cache_opts lim;
        mmk_cache_limits(mmk_cache_default(), &lim);
        e.window = lim.window;
        if (e.window && e.chunk > e.window)
            e.chunk = (size_t)e.window;
    }
    uint64_t bm = BATCH_MAX_BYTES / j->piece_len;
    e.batch_max = bm ? (size_t)bm : 1;
    e.batch_min = 1;

    unsigned threads = j->threads ? j->threads : mmk_hash_cpus();
    if (threads > MMK_HASH_MAX_THREADS)
        threads = MMK_HASH_MAX_THREADS;
    if (threads > e.work)
        threads = e.work ? (unsigned)e.work : 1;
    e.nworkers = threads;
    int depth = j->depth < 0 ? MMK_HASH_DEPTH : j->depth;
    unsigned nslots = depth > 0 ? (unsigned)depth : 1;
    if (depth > 0 && nslots < 2)
        nslots = 2; /* one being hashed, one being read */

    double t0 = now_s();
    if (!(e.workers = calloc(threads, sizeof *e.workers))) {
        free(e.run_work);
        return -ENOMEM;
    }
    pthread_mutex_init(&e.mu, NULL);
    pthread_cond_init(&e.cv, NULL);
    unsigned made = 0;
    for (; made < threads; made++)
        if ((rc = worker_init(&e, &e.workers[made], nslots)) < 0) {
            made++;
            goto out;
        }
    for (unsigned i = 0; i < threads; i++) {
        worker *w = &e.workers[i];
        if (depth > 0) {
            int prc = pthread_create(&w->reader_tid, NULL, reader_main, w);
            if (prc != 0) {
                rc = -prc;
                break;
            }
            w->started_reader = true;
        }
        pthread_mutex_lock(&e.mu);
        e.running++;
        pthread_mutex_unlock(&e.mu);
        int prc = pthread_create(&w->hasher_tid, NULL, hasher_main, w);
        if (prc != 0) {
            pthread_mutex_lock(&e.mu);
            e.running--;
            pthread_mutex_unlock(&e.mu);
            rc = -prc;
            break;
        }
        w->started_hasher = true;
    }
    if (rc < 0) {
        /* Stop claiming; a reader whose hasher did not start drains its own
         * ring below. */
        atomic_store(&e.fatal, 1);
    }
    wait_workers(&e);
    for (unsigned i = 0; i < threads; i++) {
        worker *w = &e.workers[i];
        if (w->started_reader && !w->started_hasher) {
            /* Nobody hashes this ring: empty it so the reader can finish. */
            pthread_mutex_lock(&w->mu);
            while (!w->reader_done || w->assigned) {
                slot *s = &w->slots[w->head];
                if (w->assigned && s->state == SLOT_FULL) {
                    release_chunk(&e, s);
                    s->state = SLOT_FREE;
                    w->head = (w->head + 1) % w->nslots;
                    w->assigned--;
                    pthread_cond_broadcast(&w->cv);
                } else {
                    pthread_cond_wait(&w->cv, &w->mu);
                }
            }
            pthread_mutex_unlock(&w->mu);
        }
        if (w->started_reader)
            pthread_join(w->reader_tid, NULL);
        if (w->started_hasher)
            pthread_join(w->hasher_tid, NULL);
    }
    j->seconds = now_s() - t0;
    j->bytes = atomic_load(&e.done);
    j->pinned = atomic_load(&e.pinned);
    j->err = atomic_load(&e.err);
    j->threads_used = threads;
    count_results(&e);
out:
    for (unsigned i = 0; i < made; i++)
        worker_free(&e.workers[i]);
    free(e.workers);
    pthread_mutex_destroy(&e.mu);
    pthread_cond_destroy(&e.cv);
    free(e.run_work);
    return rc;
}
