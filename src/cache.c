/* src/cache.c — windows of files mapped under a budget; pins of any range.
 *
 * Objects:
 *   mmk_cache       budgets, accounting, every mapping (for eviction), a pool
 *                   of mapping records; one mutex (`lock`) for all of that.
 *   mmk_cache_file  one attached file: its descriptor, size, and an index of
 *                   its mappings (a hash of single windows by window number,
 *                   plus a list of spans), under its own mutex.
 *   cmap            one mapping: [start, start + len) of the file at base,
 *                   an atomic pin count and the tick of its last release.
 *
 * Pin protocol.  `refs` counts pins; CMAP_DEAD (negative) marks a record that
 * is free or being evicted.  A pin takes a reference with a CAS that fails on
 * a negative count; an evictor claims an unpinned mapping with a CAS 0 ->
 * CMAP_DEAD under the cache lock, then removes it from its file's index under
 * the file lock.  Records come from a pool and are never freed before the
 * cache, so the lock-free last-hit path may look at a record that was
 * recycled meanwhile: after taking its reference it re-checks file and range,
 * and lets go if they no longer match.
 *
 * Lock order: cache lock, then a file lock.  No file lock is held while the
 * cache lock is taken.
 */
#include <mmkit/cache.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sched.h>
#include <sys/resource.h>

#include "cache_internal.h"
#include "guard_internal.h"
#include "os/os.h"

#define CMAP_DEAD (-(1 << 30))

#ifndef MADV_POPULATE_READ
#define MMK__MADV_POPULATE_READ 22 /* Linux 5.14 UAPI */
#else
#define MMK__MADV_POPULATE_READ MADV_POPULATE_READ
#endif

/* Auto budgets (see cache.h): pointer-width dependent window and byte caps,
 * a fraction of the kernel's and the rlimit's. */
#if UINTPTR_MAX > 0xffffffffu
#define AUTO_WINDOW     ((size_t)2 << 20)
#define AUTO_MAPPED_CAP ((size_t)32 << 30)
#else
#define AUTO_WINDOW     ((size_t)256 << 10)
#define AUTO_MAPPED_CAP ((size_t)512 << 20)
#endif
#define AUTO_FRACTION     4      /* of RLIMIT_AS and of vm.max_map_count */
#define MIN_MAPS          16
#define DEFAULT_MAP_COUNT 65530  /* vm.max_map_count when it cannot be read */

/* A sync with more dirty windows than this uses one fdatasync for the file
 * instead of an msync per window. */
#define SYNC_MSYNC_MAX 8

/* Records are allocated this many at a time and kept until the cache dies. */
#define POOL_CHUNK 256

typedef struct cmap {
    atomic_int            refs;
    atomic_uint_fast64_t  last_use;
    struct mmk_cache_file *_Atomic file;
    _Atomic uint64_t      start;   /* file offset of base (window aligned) */
    _Atomic size_t        len;     /* bytes mapped */
    unsigned char *_Atomic base;
    _Atomic uint64_t      dirty_lo, dirty_hi; /* dirty file range; lo >= hi: clean */
    atomic_bool           private_dirty;      /* COPY file written: keep it */
    bool                  span;    /* more than one window */
    size_t                all_idx; /* index in cache->all */
    struct cmap          *next_free;
} cmap;

struct mmk_cache {
    pthread_mutex_t lock;
    size_t          max_mapped, max_maps, window;
    unsigned        window_shift;
    size_t          mapped;            /* bytes, under lock (mirrored below) */
    cmap          **all;               /* every live mapping, for eviction; */
    size_t          nmaps;             /* ... nmaps of them, under lock */
    size_t          all_cap;
    cmap           *free_list;
    void          **chunks;            /* pool chunks, freed with the cache */
    size_t          nchunks, chunks_cap;
    struct mmk_cache_file *files;      /* attached files (list, under lock) */
    atomic_uint_fast64_t tick;
    atomic_uint_fast64_t hits, misses, maps, unmaps, evictions;
    atomic_size_t   mapped_now, maps_now, pins_now;
};

struct mmk_cache_file {
    mmk_cache      *cache;
    int             fd;
    unsigned        flags;
    int             prot, mflags;
    pthread_mutex_t lock;       /* the index below */
    cmap          **wins;       /* open-addressing hash: window number -> map */
    size_t          wcap, wcount;
    cmap          **spans;
    size_t          nspans, spans_cap;
    cmap *_Atomic   last;       /* last hit, for sequential patterns */
    pthread_mutex_t size_lock;  /* growing the file */
    _Atomic uint64_t size;
    atomic_bool     size_changed;   /* fdatasync needed at the next sync */
    atomic_size_t   pins;
    mmk__fd_source  src;        /* lazy files (fd -1): descriptors lent on demand */
    atomic_int      madv;       /* advice for new windows, -1 none */
    atomic_bool     populate;   /* prefault new windows */
    struct mmk_cache_file *next, *prev;
};

/* The file's descriptor for one system call: its own, or one lent by its
 * source (lazy files).  Negative errno if none can be had. */
static int fd_get(mmk_cache_file *f)
{
    if (f->fd >= 0)
        return f->fd;
    if (!f->src.get)
        return -EBADF;
    return f->src.get(f->src.arg);
}

static void fd_put(mmk_cache_file *f, int fd)
{
    if (fd >= 0 && fd != f->fd && f->src.put)
        f->src.put(f->src.arg, fd);
}

/* ---- helpers ------------------------------------------------------------ */

static inline uint64_t win_of(const mmk_cache *c, uint64_t off)
{
    return off >> c->window_shift;
}

static inline bool covers(const cmap *m, const mmk_cache_file *f, uint64_t off,
                          uint64_t end)
{
    uint64_t s = atomic_load_explicit(&m->start, memory_order_relaxed);
    size_t l = atomic_load_explicit(&m->len, memory_order_relaxed);
    return atomic_load_explicit(&m->file, memory_order_relaxed) == f && s <= off &&
           end <= s + l;
}

/* Take a reference unless the record is dead. */
static inline bool ref_get(cmap *m)
{
    int r = atomic_load_explicit(&m->refs, memory_order_relaxed);
    while (r >= 0) {
        if (atomic_compare_exchange_weak_explicit(&m->refs, &r, r + 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return true;
    }
    return false;
}

static inline void ref_put(mmk_cache *c, cmap *m)
{
    atomic_store_explicit(&m->last_use,
                          atomic_fetch_add_explicit(&c->tick, 1, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_fetch_sub_explicit(&m->refs, 1, memory_order_release);
}

static void mark_dirty(cmap *m, uint64_t lo, uint64_t hi)
{
    uint64_t cur = atomic_load(&m->dirty_lo);
    while (lo < cur && !atomic_compare_exchange_weak(&m->dirty_lo, &cur, lo))
        ;
    cur = atomic_load(&m->dirty_hi);
    while (hi > cur && !atomic_compare_exchange_weak(&m->dirty_hi, &cur, hi))
        ;
}

/* The smallest s with 2^s >= v, or the top bit's index if there is none (the
 * caller rejects that): never a shift past the width. */
static unsigned log2_exact(size_t v)
{
    unsigned s = 0;
    while (s < sizeof(size_t) * 8 - 1 && ((size_t)1 << s) < v)
        s++;
    return s;
}

static size_t read_max_map_count(void)
{
    FILE *fp = fopen("/proc/sys/vm/max_map_count", "re");
    unsigned long v = 0;
    if (fp) {
        if (fscanf(fp, "%lu", &v) != 1)
            v = 0;
        fclose(fp);
    }
    return v ? (size_t)v : DEFAULT_MAP_COUNT;
}

/* ---- construction ------------------------------------------------------- */

int mmk_cache_new(mmk_cache **out, const mmk_cache_opts *opts)
{
    static const mmk_cache_opts zero;
    const mmk_cache_opts *o = opts ? opts : &zero;
    if (!out)
        return -EINVAL;
    *out = NULL;
    mmk_cache *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;

    size_t gran = mmk__granularity();
    size_t win = o->window ? o->window : AUTO_WINDOW;
    if (win < gran)
        win = gran;
    unsigned shift = log2_exact(win);
    if (shift >= sizeof(size_t) * 8 - 1) {
        free(c);
        return -EINVAL;
    }
    c->window_shift = shift;
    c->window = (size_t)1 << shift;

    c->max_maps = o->max_maps;
    if (!c->max_maps) {
        c->max_maps = read_max_map_count() / AUTO_FRACTION;
        if (c->max_maps < MIN_MAPS)
            c->max_maps = MIN_MAPS;
    }
    c->max_mapped = o->max_mapped;
    if (!c->max_mapped) {
        size_t cap = AUTO_MAPPED_CAP;
        struct rlimit rl;
        if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            rl.rlim_cur / AUTO_FRACTION < cap)
            cap = (size_t)(rl.rlim_cur / AUTO_FRACTION);
        c->max_mapped = cap;
    }
    if (c->max_mapped < c->window)
        c->max_mapped = c->window;

    pthread_mutex_init(&c->lock, NULL);
    (void)mmk__guard_ensure();
    *out = c;
    return 0;
}

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static mmk_cache *default_cache;

static void default_init(void)
{
    if (mmk_cache_new(&default_cache, NULL) < 0)
        default_cache = NULL;
}

mmk_cache *mmk_cache_default(void)
{
    pthread_once(&default_once, default_init);
    return default_cache;
}

void mmk_cache_limits(const mmk_cache *c, mmk_cache_opts *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    out->max_mapped = c->max_mapped;
    out->max_maps = c->max_maps;
    out->window = c->window;
}

void mmk_cache_stats_get(const mmk_cache *c, mmk_cache_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    mmk_cache *m = (mmk_cache *)c; /* atomics are read, never written */
    out->hits = atomic_load(&m->hits);
    out->misses = atomic_load(&m->misses);
    out->maps = atomic_load(&m->maps);
    out->unmaps = atomic_load(&m->unmaps);
    out->evictions = atomic_load(&m->evictions);
    out->mapped_bytes = atomic_load(&m->mapped_now);
    out->mappings = atomic_load(&m->maps_now);
    out->pins = atomic_load(&m->pins_now);
}

/* ---- the record pool (cache lock held) ---------------------------------- */

static cmap *pool_get(mmk_cache *c)
{
    if (!c->free_list) {
        if (c->nchunks == c->chunks_cap) {
            size_t cap = c->chunks_cap ? c->chunks_cap * 2 : 16;
            void **n = realloc(c->chunks, cap * sizeof *n);
            if (!n)
                return NULL;
            c->chunks = n;
            c->chunks_cap = cap;
        }
        cmap *chunk = calloc(POOL_CHUNK, sizeof *chunk);
        if (!chunk)
            return NULL;
        c->chunks[c->nchunks++] = chunk;
        for (size_t i = 0; i < POOL_CHUNK; i++) {
            atomic_init(&chunk[i].refs, CMAP_DEAD);
            chunk[i].next_free = c->free_list;
            c->free_list = &chunk[i];
        }
    }
    cmap *m = c->free_list;
    c->free_list = m->next_free;
    return m;
}

static void pool_put(mmk_cache *c, cmap *m)
{
    atomic_store(&m->refs, CMAP_DEAD);
    atomic_store(&m->file, NULL);
    m->next_free = c->free_list;
    c->free_list = m;
}

static int all_add(mmk_cache *c, cmap *m)
{
    if (c->nmaps == c->all_cap) {
        size_t cap = c->all_cap ? c->all_cap * 2 : 64;
        cmap **n = realloc(c->all, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        c->all = n;
        c->all_cap = cap;
    }
    m->all_idx = c->nmaps;
    c->all[c->nmaps++] = m;
    return 0;
}

static void all_remove(mmk_cache *c, cmap *m)
{
    size_t i = m->all_idx;
    c->all[i] = c->all[--c->nmaps];
    c->all[i]->all_idx = i;
}

/* ---- a file's index (file lock held) ------------------------------------ */

static size_t hash_win(uint64_t w, size_t cap)
{
    w *= UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(w >> 17) & (cap - 1);
}

static cmap *idx_find_win(const mmk_cache_file *f, uint64_t w)
{
    if (!f->wcap)
        return NULL;
    for (size_t i = hash_win(w, f->wcap);; i = (i + 1) & (f->wcap - 1)) {
        cmap *m = f->wins[i];
        if (!m)
            return NULL;
        if (win_of(f->cache, atomic_load_explicit(&m->start, memory_order_relaxed)) == w)
            return m;
    }
}

static int idx_insert_win(mmk_cache_file *f, cmap *m)
{
    if ((f->wcount + 1) * 2 > f->wcap) { /* keep the load under one half */
        size_t cap = f->wcap ? f->wcap * 2 : 16;
        cmap **n = calloc(cap, sizeof *n);
        if (!n)
            return -ENOMEM;
        for (size_t i = 0; i < f->wcap; i++) {
            cmap *e = f->wins[i];
            if (!e)
                continue;
            size_t j = hash_win(win_of(f->cache, atomic_load(&e->start)), cap);
            while (n[j])
                j = (j + 1) & (cap - 1);
            n[j] = e;
        }
        free(f->wins);
        f->wins = n;
        f->wcap = cap;
    }
    size_t j = hash_win(win_of(f->cache, atomic_load(&m->start)), f->wcap);
    while (f->wins[j])
        j = (j + 1) & (f->wcap - 1);
    f->wins[j] = m;
    f->wcount++;
    return 0;
}

/* Linear probing with backward-shift deletion: no tombstones. */
static void idx_remove_win(mmk_cache_file *f, cmap *m)
{
    size_t mask = f->wcap - 1;
    size_t i = hash_win(win_of(f->cache, atomic_load(&m->start)), f->wcap);
    while (f->wins[i] != m)
        i = (i + 1) & mask;
    f->wins[i] = NULL;
    f->wcount--;
    for (size_t j = (i + 1) & mask; f->wins[j]; j = (j + 1) & mask) {
        cmap *e = f->wins[j];
        size_t home = hash_win(win_of(f->cache, atomic_load(&e->start)), f->wcap);
        /* e may move to the hole at i if its home is not in (i, j]. */
        bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            f->wins[i] = e;
            f->wins[j] = NULL;
            i = j;
        }
    }
}

static int idx_insert(mmk_cache_file *f, cmap *m)
{
    if (!m->span)
        return idx_insert_win(f, m);
    if (f->nspans == f->spans_cap) {
        size_t cap = f->spans_cap ? f->spans_cap * 2 : 8;
        cmap **n = realloc(f->spans, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        f->spans = n;
        f->spans_cap = cap;
    }
    f->spans[f->nspans++] = m;
    return 0;
}

static void idx_remove(mmk_cache_file *f, cmap *m)
{
    if (!m->span) {
        idx_remove_win(f, m);
    } else {
        for (size_t i = 0; i < f->nspans; i++) {
            if (f->spans[i] == m) {
                f->spans[i] = f->spans[--f->nspans];
                break;
            }
        }
    }
    cmap *expect = m;
    atomic_compare_exchange_strong(&f->last, &expect, NULL);
}

/* A mapping of f covering [off, end), referenced, or NULL. */
static cmap *idx_lookup_get(mmk_cache_file *f, uint64_t off, uint64_t end)
{
    mmk_cache *c = f->cache;
    uint64_t w = win_of(c, off);
    if (w == win_of(c, end - 1)) {
        cmap *m = idx_find_win(f, w);
        if (m && ref_get(m))
            return m;
    }
    /* Spans, smallest covering one first would be ideal; any will do. */
    for (size_t i = 0; i < f->nspans; i++) {
        cmap *m = f->spans[i];
        if (covers(m, f, off, end) && ref_get(m))
            return m;
    }
    return NULL;
}

/* ---- eviction (cache lock held) ----------------------------------------- */

/* Unmap one record that the caller has claimed (refs == CMAP_DEAD) and that
 * is out of every index. */
static void unmap_claimed(mmk_cache *c, cmap *m, bool eviction)
{
    mmk_cache_file *f = atomic_load(&m->file);
    unsigned char *base = atomic_load(&m->base);
    size_t len = atomic_load(&m->len);
    /* Dirty pages stay in the page cache after munmap, but msync cannot
     * reach them any more: the next sync of the file must fdatasync. */
    if (f && atomic_load(&m->dirty_lo) < atomic_load(&m->dirty_hi))
        atomic_store(&f->size_changed, true);
    mmk__sys.munmap(base, len);
    all_remove(c, m);
    c->mapped -= len;
    atomic_store(&c->mapped_now, c->mapped);
    atomic_store(&c->maps_now, c->nmaps);
    atomic_fetch_add(&c->unmaps, 1);
    if (eviction)
        atomic_fetch_add(&c->evictions, 1);
    pool_put(c, m);
}

/* Evict the least recently used unpinned mapping.  false if there is none. */
static bool evict_one(mmk_cache *c)
{
    for (;;) {
        cmap *victim = NULL;
        uint64_t oldest = UINT64_MAX;
        for (size_t i = 0; i < c->nmaps; i++) {
            cmap *m = c->all[i];
            if (atomic_load_explicit(&m->refs, memory_order_relaxed) != 0 ||
                atomic_load_explicit(&m->private_dirty, memory_order_relaxed))
                continue;
            uint64_t t = atomic_load_explicit(&m->last_use, memory_order_relaxed);
            if (t < oldest) {
                oldest = t;
                victim = m;
            }
        }
        if (!victim)
            return false;
        int zero = 0;
        if (!atomic_compare_exchange_strong(&victim->refs, &zero, CMAP_DEAD))
            continue; /* pinned meanwhile: look again */
        mmk_cache_file *f = atomic_load(&victim->file);
        pthread_mutex_lock(&f->lock);
        idx_remove(f, victim);
        pthread_mutex_unlock(&f->lock);
        unmap_claimed(c, victim, true);
        return true;
    }
}

/* ---- files --------------------------------------------------------------- */

/* Set up an attached file and put it on the cache's list (both attaches). */
static void file_start(mmk_cache *c, mmk_cache_file *f, unsigned flags, uint64_t size)
{
    f->cache = c;
    f->flags = flags;
    f->prot = PROT_READ | ((flags & (MMK_RDWR | MMK_COPY)) ? PROT_WRITE : 0);
    f->mflags = (flags & MMK_COPY) ? MAP_PRIVATE : MAP_SHARED;
    atomic_init(&f->size, size);
    atomic_init(&f->madv, -1);
    pthread_mutex_init(&f->lock, NULL);
    pthread_mutex_init(&f->size_lock, NULL);
    pthread_mutex_lock(&c->lock);
    f->next = c->files;
    if (c->files)
        c->files->prev = f;
    c->files = f;
    pthread_mutex_unlock(&c->lock);
}

int mmk_cache_attach(mmk_cache *c, int fd, unsigned flags, mmk_cache_file **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!c || (flags & ~(unsigned)(MMK_RDWR | MMK_COPY)) ||
        (flags & (MMK_RDWR | MMK_COPY)) == (MMK_RDWR | MMK_COPY))
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    int fl = mmk__sys.getfl(fd);
    if (fl < 0)
        return mmk__neg_errno();
    if ((fl & O_ACCMODE) == O_WRONLY || ((flags & MMK_RDWR) && (fl & O_ACCMODE) != O_RDWR))
        return -EACCES;

    mmk_cache_file *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    struct stat st;
    int rc;
    if ((f->fd = mmk__sys.dup(fd)) < 0) {
        rc = mmk__neg_errno();
        free(f);
        return rc;
    }
    if (mmk__sys.fstat(f->fd, &st) < 0) {
        rc = mmk__neg_errno();
        goto fail;
    }
    rc = S_ISDIR(st.st_mode) ? -EISDIR : !S_ISREG(st.st_mode) ? -ENODEV : 0;
    if (rc < 0)
        goto fail;
    file_start(c, f, flags, (uint64_t)st.st_size);
    *out = f;
    return 0;

fail:
    mmk__close_quiet(f->fd);
    free(f);
    return rc;
}

/* Remove every mapping of f (cache lock held; no pins). */
static void drop_all_maps(mmk_cache *c, mmk_cache_file *f)
{
    for (;;) {
        cmap *m = NULL;
        pthread_mutex_lock(&f->lock);
        if (f->nspans) {
            m = f->spans[0];
        } else {
            for (size_t i = 0; i < f->wcap && !m; i++)
                m = f->wins[i];
        }
        if (m) {
            /* No pin of ours holds it, but a stale last-hit lookup of another
             * file may hold a reference for an instant: wait it out. */
            int zero = 0;
            while (!atomic_compare_exchange_weak(&m->refs, &zero, CMAP_DEAD)) {
                zero = 0;
                sched_yield();
            }
            idx_remove(f, m);
        }
        pthread_mutex_unlock(&f->lock);
        if (!m)
            return;
        unmap_claimed(c, m, false);
    }
}

static void file_free(mmk_cache *c, mmk_cache_file *f)
{
    drop_all_maps(c, f);
    if (f->prev)
        f->prev->next = f->next;
    else
        c->files = f->next;
    if (f->next)
        f->next->prev = f->prev;
    mmk__close_quiet(f->fd);
    pthread_mutex_destroy(&f->lock);
    pthread_mutex_destroy(&f->size_lock);
    free(f->wins);
    free(f->spans);
    free(f);
}

int mmk_cache_detach(mmk_cache_file *f)
{
    if (!f)
        return -EINVAL;
    if (atomic_load(&f->pins) != 0)
        return -EBUSY;
    mmk_cache *c = f->cache;
    pthread_mutex_lock(&c->lock);
    file_free(c, f);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

void mmk_cache_free(mmk_cache *c)
{
    if (!c || c == default_cache)
        return;
    pthread_mutex_lock(&c->lock);
    while (c->files)
        file_free(c, c->files);
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < c->nchunks; i++)
        free(c->chunks[i]);
    free(c->chunks);
    free(c->all);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

uint64_t mmk_cache_file_size(const mmk_cache_file *f)
{
    return f ? atomic_load(&((mmk_cache_file *)f)->size) : 0;
}

int mmk_cache_set_size(mmk_cache_file *f, uint64_t size)
{
    if (!f)
        return -EINVAL;
    if (size == UINT64_MAX) {
        struct stat st;
        int fd = fd_get(f);
        if (fd < 0)
            return fd;
        int r = mmk__sys.fstat(fd, &st) < 0 ? mmk__neg_errno() : 0;
        fd_put(f, fd);
        if (r < 0)
            return r;
        size = (uint64_t)st.st_size;
    }
    /* A copy file is mapped whole, once: growing its view would need a new
     * private mapping that does not hold what was written.  It keeps the
     * size it was attached with (shrinking still applies). */
    if ((f->flags & MMK_COPY) && size > atomic_load(&f->size))
        return 0;
    /* Under the growth lock, so a concurrent pwrite's growth is not undone. */
    pthread_mutex_lock(&f->size_lock);
    uint64_t old = atomic_exchange(&f->size, size);
    pthread_mutex_unlock(&f->size_lock);
    if (old != size)
        atomic_store(&f->size_changed, true);
    if (size >= old)
        return 0;
    /* Unmap unpinned mappings wholly past the new end: their pages are gone. */
    mmk_cache *c = f->cache;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->nmaps;) {
        cmap *m = c->all[i];
        int zero = 0;
        if (atomic_load(&m->file) == f && atomic_load(&m->start) >= size &&
            atomic_compare_exchange_strong(&m->refs, &zero, CMAP_DEAD)) {
            pthread_mutex_lock(&f->lock);
            idx_remove(f, m);
            pthread_mutex_unlock(&f->lock);
            unmap_claimed(c, m, false); /* moves the last entry to i */
            continue;
        }
        i++;
    }
    pthread_mutex_unlock(&c->lock);
    return 0;
}

/* ---- pins ---------------------------------------------------------------- */

/* The extent to map for [off, end): its window, or for a range crossing
 * windows a span of whole windows, grown to a power of two of windows (capped
 * at the file's end) so that growing prefixes and widening ranges remap only
 * a logarithmic number of times.  The extra windows go on both sides (half
 * before, half after, whatever the file's ends cut off going to the other
 * side): a range widening to the left, or both ways, is then covered by its
 * span until it doubles, as a growing prefix is. */
static void extent_for(const mmk_cache_file *f, uint64_t off, uint64_t end, uint64_t *start,
                       uint64_t *len)
{
    const mmk_cache *c = f->cache;
    uint64_t w = c->window;
    uint64_t s = off & ~(w - 1);
    uint64_t e = (end + w - 1) & ~(w - 1);
    if (f->flags & MMK_COPY) {
        /* Private windows are separate copies: one mapping of the whole file
         * is the only way every pin sees the bytes written through another. */
        uint64_t file_end = (atomic_load(&f->size) + w - 1) & ~(w - 1);
        *start = 0;
        *len = file_end > e ? file_end : e;
        return;
    }
    if (e - s > w) {
        uint64_t n = (e - s) / w, p = 1;
        while (p < n)
            p <<= 1;
        uint64_t file_end = (atomic_load(&f->size) + w - 1) & ~(w - 1);
        uint64_t before = (p - n) / 2 * w;
        if (before > s)
            before = s;
        uint64_t lo = s - before, hi = lo + p * w;
        if (hi > file_end) {
            hi = file_end > e ? file_end : e;
            lo = hi > p * w ? hi - p * w : 0; /* <= s: hi was at most lo + p * w */
        }
        s = lo;
        e = hi;
    }
    *start = s;
    *len = e - s;
}

/* Make a mapping for [off, end) and reference it. */
static int pin_miss(mmk_cache_file *f, uint64_t off, uint64_t end, cmap **out)
{
    mmk_cache *c = f->cache;
    uint64_t start, len64;
    extent_for(f, off, end, &start, &len64);
    if ((len64 > c->max_mapped || len64 > SIZE_MAX) && (f->flags & MMK_COPY))
        return -ENOMEM; /* a copy file is mapped whole or not at all */
    if (len64 > c->max_mapped || len64 > SIZE_MAX) {
        /* A span rounded up may not fit where the exact windows would. */
        start = off & ~((uint64_t)c->window - 1);
        len64 = ((end + c->window - 1) & ~((uint64_t)c->window - 1)) - start;
        if (len64 > c->max_mapped || len64 > SIZE_MAX)
            return -ENOMEM;
    }
    size_t len = (size_t)len64;
    uint64_t exact_start = off & ~((uint64_t)c->window - 1);
    uint64_t exact_len = ((end + c->window - 1) & ~((uint64_t)c->window - 1)) - exact_start;

    /* Reserve the budget, evicting as needed.  If pins leave too little room
     * for the rounded-up span, the exact windows may still fit. */
    pthread_mutex_lock(&c->lock);
    while (c->mapped + len > c->max_mapped || c->nmaps + 1 > c->max_maps) {
        if (!evict_one(c)) {
            if (len > exact_len) {
                start = exact_start;
                len = (size_t)exact_len;
                continue;
            }
            pthread_mutex_unlock(&c->lock);
            return -ENOMEM;
        }
    }
    cmap *m = pool_get(c);
    if (!m || all_add(c, m) < 0) {
        if (m)
            pool_put(c, m);
        pthread_mutex_unlock(&c->lock);
        return -ENOMEM;
    }
    c->mapped += len; /* all_add counted the mapping */
    atomic_store(&c->mapped_now, c->mapped);
    atomic_store(&c->maps_now, c->nmaps);
    pthread_mutex_unlock(&c->lock);

    /* Map, outside the cache lock.  Out of address space (RLIMIT_AS) while
     * unpinned mappings exist: give one back and try again. */
    void *p;
    int mfd = fd_get(f);
    for (;;) {
        if (mfd < 0) {
            errno = -mfd;
            p = MAP_FAILED;
        } else {
            p = mmk__sys.mmap(NULL, len, f->prot, f->mflags, mfd, (off_t)start);
        }
        if (p != MAP_FAILED)
            break;
        int err = errno;
        if (mfd < 0)
            err = -mfd;
        bool retry = false;
        if (err == ENOMEM) {
            pthread_mutex_lock(&c->lock);
            retry = evict_one(c);
            pthread_mutex_unlock(&c->lock);
        }
        if (!retry) {
            pthread_mutex_lock(&c->lock);
            all_remove(c, m);
            c->mapped -= len;
            atomic_store(&c->mapped_now, c->mapped);
            atomic_store(&c->maps_now, c->nmaps);
            pool_put(c, m);
            pthread_mutex_unlock(&c->lock);
            fd_put(f, mfd);
            return err > 0 ? -err : -ENOMEM;
        }
    }
    fd_put(f, mfd); /* the mapping keeps the file, not the descriptor */

    int madv = atomic_load(&f->madv);
    if (madv >= 0)
        (void)mmk__sys.madvise(p, len, madv); /* advice: best effort */
    if (atomic_load(&f->populate))
        (void)mmk__sys.madvise(p, len, MMK__MADV_POPULATE_READ);
    atomic_store(&m->file, f);
    atomic_store(&m->start, start);
    atomic_store(&m->len, len);
    atomic_store(&m->base, (unsigned char *)p);
    atomic_store(&m->dirty_lo, UINT64_MAX);
    atomic_store(&m->dirty_hi, 0);
    atomic_store(&m->private_dirty, false);
    atomic_store(&m->last_use, atomic_fetch_add(&c->tick, 1));
    m->span = len > c->window;

    pthread_mutex_lock(&f->lock);
    /* Another thread may have mapped a covering range while we did: use
     * theirs and give ours back, so a range is mapped once. */
    cmap *other = idx_lookup_get(f, off, end);
    int rc = other ? 1 : idx_insert(f, m);
    if (rc == 0)
        atomic_store_explicit(&m->refs, 1, memory_order_release); /* published */
    pthread_mutex_unlock(&f->lock);
    atomic_fetch_add(&c->maps, 1);
    if (rc != 0) {
        pthread_mutex_lock(&c->lock);
        unmap_claimed(c, m, false);
        pthread_mutex_unlock(&c->lock);
        if (rc < 0)
            return rc;
        m = other;
    }
    *out = m;
    return 0;
}

static int pin_common(mmk_cache_file *f, uint64_t off, size_t len, unsigned access,
                      mmk_view *v, bool may_map);

int mmk_cache_pin(mmk_cache_file *f, uint64_t off, size_t len, unsigned access, mmk_view *v)
{
    return pin_common(f, off, len, access, v, true);
}

int mmk__cache_pin_mapped(mmk_cache_file *f, uint64_t off, size_t len, unsigned access,
                          mmk_view *v)
{
    return pin_common(f, off, len, access, v, false);
}

static int pin_common(mmk_cache_file *f, uint64_t off, size_t len, unsigned access,
                      mmk_view *v, bool may_map)
{
    if (!v)
        return -EINVAL;
    v->ptr = NULL;
    v->len = 0;
    v->priv_ = NULL;
    if (!f || len == 0 || (access & ~(unsigned)MMK_RDWR))
        return -EINVAL;
    v->ptr = NULL;
    v->len = 0;
    v->priv_ = NULL;
    if (off > UINT64_MAX - len)
        return -EINVAL;
    uint64_t end = off + len;
    if (end > atomic_load_explicit(&f->size, memory_order_relaxed))
        return -EINVAL;
    if ((access & MMK_RDWR) && !(f->prot & PROT_WRITE))
        return -EACCES;
    mmk_cache *c = f->cache;

    /* Last hit, without a lock. */
    cmap *m = atomic_load_explicit(&f->last, memory_order_acquire);
    if (m && ref_get(m)) {
        if (covers(m, f, off, end))
            goto hit;
        ref_put(c, m); /* recycled or elsewhere */
    }
    pthread_mutex_lock(&f->lock);
    m = idx_lookup_get(f, off, end);
    pthread_mutex_unlock(&f->lock);
    if (m) {
        atomic_store_explicit(&f->last, m, memory_order_release);
        goto hit;
    }
    if (!may_map)
        return -ENOENT;
    int rc = pin_miss(f, off, end, &m);
    if (rc < 0)
        return rc;
    atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
    atomic_store_explicit(&f->last, m, memory_order_release);
    goto pinned;

hit:
    atomic_fetch_add_explicit(&c->hits, 1, memory_order_relaxed);
pinned:
    if (access & MMK_RDWR) {
        if (f->flags & MMK_COPY)
            atomic_store(&m->private_dirty, true);
        else
            mark_dirty(m, off, end);
    }
    atomic_fetch_add_explicit(&f->pins, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->pins_now, 1, memory_order_relaxed);
    v->ptr = atomic_load_explicit(&m->base, memory_order_relaxed) +
             (off - atomic_load_explicit(&m->start, memory_order_relaxed));
    v->len = len;
    v->priv_ = m;
    return 0;
}

int mmk_cache_unpin(mmk_view *v)
{
    if (!v || !v->priv_)
        return -EINVAL;
    cmap *m = v->priv_;
    mmk_cache_file *f = atomic_load_explicit(&m->file, memory_order_relaxed);
    if (!f || atomic_load_explicit(&m->refs, memory_order_relaxed) <= 0)
        return -EINVAL;
    mmk_cache *c = f->cache;
    atomic_fetch_sub_explicit(&f->pins, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&c->pins_now, 1, memory_order_relaxed);
    ref_put(c, m);
    v->ptr = NULL;
    v->len = 0;
    v->priv_ = NULL;
    return 0;
}

/* ---- copies through windows ---------------------------------------------- */

/* Pin the part of [off, off + n) that lies in off's window. */
static int pin_chunk(mmk_cache_file *f, uint64_t off, size_t n, unsigned access,
                     mmk_view *v)
{
    uint64_t w = f->cache->window;
    uint64_t room = w - (off & (w - 1));
    return mmk_cache_pin(f, off, n < room ? n : (size_t)room, access, v);
}

ssize_t mmk_cache_pread(mmk_cache_file *f, void *buf, size_t n, uint64_t off)
{
    if (!f || (!buf && n))
        return -EINVAL;
    uint64_t size = atomic_load(&f->size);
    if (off >= size || n == 0)
        return 0;
    if (n > size - off)
        n = (size_t)(size - off);
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    size_t done = 0;
    while (done < n) {
        mmk_view v;
        int rc = pin_chunk(f, off + done, n - done, MMK_RDONLY, &v);
        if (rc < 0)
            return done ? (ssize_t)done : rc;
        rc = mmk__guard_copy_at((unsigned char *)buf + done, v.ptr, v.len, NULL);
        size_t got = v.len;
        mmk_cache_unpin(&v);
        if (rc < 0) {
            /* The file shrank under us (or its storage failed): end where it
             * ends now, as pread would; an error only if it did not shrink. */
            struct stat st;
            int sfd = fd_get(f);
            int sr = sfd < 0 ? -1 : mmk__sys.fstat(sfd, &st);
            fd_put(f, sfd);
            if (sr < 0 || (uint64_t)st.st_size >= off + n)
                return done ? (ssize_t)done : -EIO;
            mmk_cache_set_size(f, (uint64_t)st.st_size);
            uint64_t now = (uint64_t)st.st_size;
            if (now <= off + done)
                return (ssize_t)done;
            n = (size_t)(now - off); /* retry the part that still exists */
            continue;
        }
        done += got;
    }
    return (ssize_t)done;
}

/* Grow the file to at least `end` (pwrite past EOF). */
static int grow_to(mmk_cache_file *f, uint64_t end)
{
    int rc = 0;
    pthread_mutex_lock(&f->size_lock);
    if (end > atomic_load(&f->size)) {
        int fd = end > (uint64_t)INT64_MAX ? -EFBIG : fd_get(f);
        if (fd < 0)
            rc = fd;
        else if (mmk__sys.ftruncate(fd, (off_t)end) < 0)
            rc = mmk__neg_errno();
        fd_put(f, fd);
        if (rc == 0) {
            atomic_store(&f->size, end);
            atomic_store(&f->size_changed, true);
        }
    }
    pthread_mutex_unlock(&f->size_lock);
    return rc;
}

ssize_t mmk_cache_pwrite(mmk_cache_file *f, const void *buf, size_t n, uint64_t off)
{
    if (!f || (!buf && n))
        return -EINVAL;
    if (!(f->prot & PROT_WRITE))
        return -EACCES;
    if (n == 0)
        return 0;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    if (off > UINT64_MAX - n)
        return -EFBIG;
    int rc;
    if (f->flags & MMK_COPY) {
        /* Private windows cannot reach past the file, and the file itself
         * must never change: a copy file does not grow. */
        uint64_t size = atomic_load(&f->size);
        if (off >= size)
            return -EFBIG;
        if (n > size - off)
            n = (size_t)(size - off);
    } else if ((rc = grow_to(f, off + n)) < 0) {
        return rc;
    }
    size_t done = 0;
    while (done < n) {
        mmk_view v;
        rc = pin_chunk(f, off + done, n - done, MMK_RDWR, &v);
        if (rc < 0)
            return done ? (ssize_t)done : rc;
        void *fault = NULL;
        rc = mmk__guard_copy_at(v.ptr, (const unsigned char *)buf + done, v.len, &fault);
        size_t put = v.len;
        mmk_cache_unpin(&v);
        if (rc < 0) {
            if (rc == -ENOSPC && (f->flags & MMK_COPY))
                rc = -EIO;
            return done ? (ssize_t)done : rc;
        }
        done += put;
    }
    return (ssize_t)done;
}

int mmk_cache_sync(mmk_cache_file *f)
{
    return mmk__cache_sync(f, false);
}

int mmk__cache_sync(mmk_cache_file *f, bool datasync)
{
    if (!f)
        return -EINVAL;
    if ((f->flags & MMK_COPY) || !(f->prot & PROT_WRITE))
        return 0;
    mmk_cache *c = f->cache;
    size_t page = mmk__page_size();

    /* Take a reference on every dirty mapping (so none is evicted while we
     * sync it), then msync each outside the lock. */
    cmap **todo = NULL;
    size_t ntodo = 0, cap = 0;
    int rc = 0;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->wcap + f->nspans; i++) {
        cmap *m = i < f->wcap ? f->wins[i] : f->spans[i - f->wcap];
        if (!m || atomic_load(&m->dirty_lo) >= atomic_load(&m->dirty_hi) || !ref_get(m))
            continue;
        if (ntodo == cap) {
            cap = cap ? cap * 2 : 16;
            cmap **n = realloc(todo, cap * sizeof *n);
            if (!n) {
                ref_put(c, m);
                rc = -ENOMEM;
                break;
            }
            todo = n;
        }
        todo[ntodo++] = m;
    }
    pthread_mutex_unlock(&f->lock);

    /* Many dirty windows: one fdatasync writes them all back far faster
     * than an msync each (on ext4 every msync is a journal commit). */
    bool bulk = ntodo > SYNC_MSYNC_MAX;
    if (bulk)
        datasync = true;
    for (size_t i = 0; i < ntodo; i++) {
        cmap *m = todo[i];
        if (bulk) {
            /* Cleared now; marked again below if the fdatasync fails. */
            uint64_t lo = atomic_exchange(&m->dirty_lo, UINT64_MAX);
            uint64_t hi = atomic_exchange(&m->dirty_hi, 0);
            if (atomic_load(&m->refs) > 1)
                mark_dirty(m, lo, hi); /* still pinned for writing */
            continue;
        }
        if (rc == 0) {
            uint64_t lo = atomic_exchange(&m->dirty_lo, UINT64_MAX);
            uint64_t hi = atomic_exchange(&m->dirty_hi, 0);
            /* Pinned by others (beyond our reference): a write pin marked the
             * range when it was taken, but its holder may still write after
             * this msync, so the range stays dirty for the next sync. */
            bool held = atomic_load(&m->refs) > 1;
            uint64_t start = atomic_load(&m->start);
            size_t len = atomic_load(&m->len);
            if (lo < start)
                lo = start;
            if (hi > start + len)
                hi = start + len;
            if (lo < hi) {
                size_t a = (size_t)(lo - start) & ~(page - 1);
                size_t b = (size_t)(hi - start);
                if (mmk__sys.msync(atomic_load(&m->base) + a, b - a, MS_SYNC) < 0) {
                    rc = mmk__neg_errno();
                    mark_dirty(m, lo, hi); /* still not durable */
                } else if (held) {
                    mark_dirty(m, lo, hi);
                }
            }
        }
        ref_put(c, m);
    }
    bool need = atomic_exchange(&f->size_changed, false) || datasync;
    if (rc == 0 && need) {
        int fd = fd_get(f);
        rc = fd < 0 ? fd : mmk__sys.fdatasync(fd) < 0 ? mmk__neg_errno() : 0;
        fd_put(f, fd);
        if (rc < 0)
            atomic_store(&f->size_changed, true);
    } else if (rc < 0 && need) {
        atomic_store(&f->size_changed, true);
    }
    for (size_t i = 0; bulk && i < ntodo; i++) {
        cmap *m = todo[i];
        if (rc < 0)
            mark_dirty(m, atomic_load(&m->start), atomic_load(&m->start) + atomic_load(&m->len));
        ref_put(c, m);
    }
    free(todo);
    return rc;
}

mmk_cache *mmk__cache_of(const mmk_cache_file *f)
{
    return f ? f->cache : NULL;
}

size_t mmk__cache_file_pins(const mmk_cache_file *f)
{
    return f ? atomic_load(&((mmk_cache_file *)f)->pins) : 0;
}

int mmk__cache_file_advise(mmk_cache_file *f, int madv, bool populate)
{
    if (!f)
        return -EINVAL;
    atomic_store(&f->madv, madv);
    atomic_store(&f->populate, populate);
    if (madv < 0)
        return 0;
    /* The windows mapped now: pin each (so none goes away), advise, unpin. */
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->wcap + f->nspans; i++) {
        cmap *m = i < f->wcap ? f->wins[i] : f->spans[i - f->wcap];
        if (m && ref_get(m)) {
            (void)mmk__sys.madvise(atomic_load(&m->base), atomic_load(&m->len), madv);
            ref_put(f->cache, m);
        }
    }
    pthread_mutex_unlock(&f->lock);
    return 0;
}

int mmk__cache_attach_lazy(mmk_cache *c, unsigned flags, uint64_t size,
                           const mmk__fd_source *src, mmk_cache_file **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!c || !src || !src->get || (flags & ~(unsigned)(MMK_RDWR | MMK_COPY)) ||
        (flags & (MMK_RDWR | MMK_COPY)) == (MMK_RDWR | MMK_COPY))
        return -EINVAL;
    mmk_cache_file *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    f->fd = -1;
    f->src = *src;
    file_start(c, f, flags, size);
    *out = f;
    return 0;
}

/* ---- transfers that pick their path ------------------------------------- */

static ssize_t fd_pread_all(int fd, unsigned char *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = mmk__sys.pread(fd, buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return done ? (ssize_t)done : mmk__neg_errno();
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

static ssize_t fd_pwrite_all(int fd, const unsigned char *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = mmk__sys.pwrite(fd, buf + done, n - done, (off_t)(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return done ? (ssize_t)done : (w < 0 ? mmk__neg_errno() : -EIO);
        done += (size_t)w;
    }
    return (ssize_t)done;
}

/* One piece through the descriptor. */
static ssize_t piece_plain(mmk_cache_file *f, void *buf, size_t n, uint64_t off, bool write)
{
    int fd = fd_get(f);
    if (fd < 0)
        return fd;
    ssize_t r = write ? fd_pwrite_all(fd, buf, n, off) : fd_pread_all(fd, buf, n, off);
    fd_put(f, fd);
    if (write && r > 0)
        atomic_store(&f->size_changed, true); /* bytes msync cannot see */
    return r;
}

ssize_t mmk__cache_transfer(mmk_cache_file *f, void *buf, size_t n, uint64_t off, int how,
                            size_t plain_min, bool write)
{
    if (!f || (!buf && n))
        return -EINVAL;
    if (write && !(f->prot & PROT_WRITE))
        return -EACCES;
    uint64_t size = atomic_load(&f->size);
    if (off >= size || n == 0)
        return 0;
    if (n > size - off)
        n = (size_t)(size - off);
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    bool copy_file = (f->flags & MMK_COPY) != 0; /* its bytes live in windows */
    unsigned char *b = buf;
    size_t done = 0;
    while (done < n) {
        uint64_t at = off + done;
        uint64_t room = f->cache->window - (at & (f->cache->window - 1));
        size_t piece = n - done < room ? n - done : (size_t)room;
        ssize_t r;
        if (how == MMK__XFER_PLAIN && !copy_file) {
            r = piece_plain(f, b + done, piece, at, write);
        } else {
            mmk_view v;
            unsigned acc = write ? MMK_RDWR : MMK_RDONLY;
            int rc = how == MMK__XFER_MAPPED ? -ENOENT : mmk__cache_pin_mapped(f, at, piece, acc, &v);
            /* Unmapped: a large piece, or one whose window would push another
             * out (map, first touch and unmap cost ~10x a pread), goes
             * through the descriptor. */
            if (rc == -ENOENT && how == MMK__XFER_AUTO && !copy_file &&
                (piece >= plain_min || mmk__cache_would_evict(f))) {
                r = piece_plain(f, b + done, piece, at, write);
            } else {
                if (rc == -ENOENT)
                    rc = mmk_cache_pin(f, at, piece, acc, &v);
                if (rc == -ENOMEM && !copy_file) {
                    r = piece_plain(f, b + done, piece, at, write); /* budget spent by pins */
                } else if (rc < 0) {
                    r = rc;
                } else {
                    void *fault = NULL;
                    rc = write ? mmk__guard_copy_at(v.ptr, b + done, piece, &fault)
                               : mmk__guard_copy_at(b + done, v.ptr, piece, NULL);
                    mmk_cache_unpin(&v);
                    if (rc < 0 && !write) {
                        /* The file shrank: the guarded pread ends where it does. */
                        r = mmk_cache_pread(f, b + done, piece, at);
                        if (r >= 0 && (size_t)r < piece)
                            return (ssize_t)(done + (size_t)r);
                    } else {
                        r = rc < 0 ? (rc == -ENOSPC && copy_file ? -EIO : rc) : (ssize_t)piece;
                    }
                }
            }
        }
        if (r < 0)
            return done ? (ssize_t)done : r;
        done += (size_t)r;
        if ((size_t)r < piece)
            break; /* the file ended before we thought */
    }
    return (ssize_t)done;
}

bool mmk__cache_would_evict(const mmk_cache_file *f)
{
    /* A racy read is fine: it only picks the faster path. */
    const mmk_cache *c = f->cache;
    return atomic_load(&((mmk_cache *)c)->mapped_now) + c->window > c->max_mapped ||
           atomic_load(&((mmk_cache *)c)->maps_now) + 1 > c->max_maps;
}
