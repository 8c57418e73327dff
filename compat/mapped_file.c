/* compat/mapped_file.c — the mf_* API (mapped_file.h) on mmkit's window cache.
 *
 * One mf handle is one file attached to the process-wide cache
 * (mmk_cache_default()): reads and writes are the cache's guarded copies and
 * a map is a pin, so maps of one window share its mapping, maps crossing
 * windows share spans, and nothing is mapped until it is used.
 *
 * Map handles.  An mf_mapmem_handle_t is not a pointer but a number: the
 * map's slot in its mf's slab of records, and a stamp drawn from a
 * process-wide counter that the slot keeps while the map lives (0 once it is
 * free).  A handle already unmapped, one from another mf or one made up
 * finds no slot with its stamp (EINVAL) — nothing is ever dereferenced on
 * the caller's word.  The slab is split in shards, each with its own mutex,
 * so threads mapping at once rarely meet; it also lets mf_close find every
 * map still held.  (Stamps repeat after 2^32 maps of one shard on 64-bit
 * systems, 2^12 on 32-bit ones: a stale handle is missed only if its slot
 * was reused by exactly that many later maps.)
 *
 * Past the cache's budget.  The cache refuses a pin with -ENOMEM when the
 * range is larger than its byte budget (a quarter of RLIMIT_AS, say) or when
 * pins already hold all of it.  A caller of mf_map asked for that memory
 * explicitly, so such a map gets a direct mapping of its own, outside the
 * cache, shared with later overflow maps it covers (kept per mf, counted by
 * reference).  Likewise mf_read and mf_write fall back to pread and pwrite
 * on the descriptor when the cache has no room to copy through.
 *
 * Locks: each shard's mutex guards its slab; `dlock` guards the index of
 * direct mappings.  Neither is held while the other is taken, nor across
 * calls into the cache (but for reading the file size, an atomic load).
 */
#include <mapped_file.h>

#include <mmkit/cache.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MF_MAGIC 0x6d664f31u /* "mfO1": an open handle; cleared at close */

/* Map records: NSHARDS shards per handle (enough that a few threads mapping
 * at once rarely share one).  A map handle is, from the top, the slot number
 * in its shard (SLOT_BITS), the shard (SHARD_BITS) and a stamp (STAMP_BITS):
 * 28 + 4 + 32 bits on 64-bit systems, 16 + 4 + 12 on 32-bit ones (at most
 * 2^20 maps held at once there). */
#define SHARD_BITS 4
#define NSHARDS    ((size_t)1 << SHARD_BITS)
#if UINTPTR_MAX > 0xffffffffu
#define STAMP_BITS 32
#define SLOT_BITS  28
#else
#define STAMP_BITS 12
#define SLOT_BITS  16
#endif
#define STAMP_MASK     (((uintptr_t)1 << STAMP_BITS) - 1)
#define MAX_SLOTS      ((size_t)1 << SLOT_BITS)
#define NO_SLOT        SIZE_MAX
#define SLAB_BASE_BITS 4 /* 16 slots in a shard's first chunk, doubling after */
#define SLAB_BASE      ((size_t)1 << SLAB_BASE_BITS)
#define SLAB_CHUNKS    (SLOT_BITS - SLAB_BASE_BITS + 1) /* to hold MAX_SLOTS */
#define BLOCK_HASH_MIN_BITS 4             /* 16 chains in the first hash */
/* A direct mapping is grown to an aligned power of two (so that later maps
 * share it) only while that wastes at most this factor of the request. */
#define DIRECT_GROW_MAX 4
/* Under RLIMIT_AS, a grown extent must leave this much address space free:
 * an eighth of the limit, at most 64 MiB (room for malloc arenas, thread
 * stacks and exact maps after it). */
#define AS_RESERVE_DIV 8
#define AS_RESERVE_MAX ((uint64_t)64 << 20)

/* ---- records ------------------------------------------------------------ */

/* A mapping made outside the cache (see the top of the file): an aligned
 * power-of-two block (order >= 0), found by hashing, or another extent (the
 * whole file, or a request's exact pages) in a plain list. */
struct mf_direct {
    unsigned char    *base;
    uint64_t          start;  /* file offset of base */
    size_t            len;
    size_t            refs;   /* maps using it */
    int               order;  /* log2 of a block's size; -1: not a block */
    size_t            idx;    /* not a block: its index in `others` */
    struct mf_direct *next;   /* a block: the next in its hash chain */
};

/* One map: a cache pin (v.priv_ set) or a piece of a direct mapping (u.d).
 * A free slot has stamp 0 and links to the next free one. */
struct mf_entry {
    uintptr_t stamp;
    mmk_view  v;
    union {
        struct mf_direct *d;
        size_t            next_free;
    } u;
};

/* A shard's slots live in chunks that double in size (SLAB_BASE slots, then
 * SLAB_BASE, 2 * SLAB_BASE, 4 * ...): slots never move, so no table is
 * ever copied, and a handle with few maps costs little memory. */
struct mf_shard {
    pthread_mutex_t  lock;
    struct mf_entry *chunks[SLAB_CHUNKS];
    size_t           top;       /* slots ever used: [0, top) */
    size_t           free_head; /* NO_SLOT: none free below top */
};

struct mf_file {
    uint32_t        magic;
    bool            writable;
    int             fd;     /* ours: direct mappings, fallback I/O, fdatasync */
    uint64_t        window; /* the cache's window size */
    mmk_cache_file *cf;
    atomic_bool     fsync_needed; /* written outside the cache's accounting */
    pthread_mutex_t dlock;  /* the direct mappings: */
    struct mf_direct **bhash; /* blocks, chained, 2^bbits chains */
    size_t          bcap, bcount;
    unsigned        bbits;
    int             max_order; /* of any block made; -1 before the first */
    struct mf_direct **others; /* the rest */
    size_t          nothers, ocap;
    struct mf_shard shards[NSHARDS];
};

/* Draws for new maps: the shard (round robin) and the stamp, process-wide. */
static atomic_uintptr_t draws;

static struct mf_file *file_of(mf_handle_t h)
{
    struct mf_file *mf = h;
    return mf && mf->magic == MF_MAGIC ? mf : NULL;
}

static void *fail_null(int err)
{
    errno = err;
    return NULL;
}

static int fail_int(int err)
{
    errno = err;
    return -1;
}

/* ---- the map slabs (shard lock held) ---------------------------------------- */

static unsigned floor_log2(uint64_t v)
{
    unsigned r = 0;
    while (v >>= 1)
        r++;
    return r;
}

/* The chunk holding slot i, and i's place in it. */
static unsigned chunk_of(size_t i, size_t *at)
{
    size_t q = i >> SLAB_BASE_BITS;
    if (q == 0) {
        *at = i;
        return 0;
    }
    unsigned c = floor_log2(q) + 1; /* q in [2^(c-1), 2^c) */
    *at = i - ((size_t)1 << (c - 1 + SLAB_BASE_BITS));
    return c;
}

static size_t chunk_len(unsigned c)
{
    return c == 0 ? SLAB_BASE : (size_t)SLAB_BASE << (c - 1);
}

static struct mf_entry *slot(struct mf_shard *s, size_t i)
{
    size_t at;
    unsigned c = chunk_of(i, &at);
    return &s->chunks[c][at];
}

/* Take a free slot; NO_SLOT if memory (or the handle encoding) runs out. */
static size_t slab_alloc(struct mf_shard *s)
{
    if (s->free_head != NO_SLOT) {
        size_t i = s->free_head;
        s->free_head = slot(s, i)->u.next_free;
        return i;
    }
    if (s->top >= MAX_SLOTS)
        return NO_SLOT;
    size_t at;
    unsigned c = chunk_of(s->top, &at);
    if (!s->chunks[c]) {
        s->chunks[c] = calloc(chunk_len(c), sizeof(struct mf_entry));
        if (!s->chunks[c])
            return NO_SLOT;
    }
    return s->top++;
}

static void slab_free(struct mf_shard *s, size_t i)
{
    struct mf_entry *e = slot(s, i);
    e->stamp = 0;
    e->u.next_free = s->free_head;
    s->free_head = i;
}

/* A handle: (slot * NSHARDS + shard) above STAMP_BITS, the stamp below. */
static mf_mapmem_handle_t handle_make(size_t shard, size_t i, uintptr_t stamp)
{
    return (mf_mapmem_handle_t)((((uintptr_t)i * NSHARDS + shard) << STAMP_BITS) | stamp);
}

/* Record e as a new map; its handle, or NULL when out of memory. */
static mf_mapmem_handle_t map_record(struct mf_file *mf, const struct mf_entry *e)
{
    uintptr_t draw = atomic_fetch_add_explicit(&draws, 1, memory_order_relaxed);
    size_t k = draw % NSHARDS;
    /* Stamps run through 1 .. 2^STAMP_BITS - 1 in each shard. */
    uintptr_t stamp = (draw / NSHARDS) % STAMP_MASK + 1;
    struct mf_shard *s = &mf->shards[k];
    mf_mapmem_handle_t h = NULL;
    pthread_mutex_lock(&s->lock);
    size_t i = slab_alloc(s);
    if (i != NO_SLOT) {
        struct mf_entry *slot_e = slot(s, i);
        *slot_e = *e;
        slot_e->stamp = stamp;
        h = handle_make(k, i, stamp);
    }
    pthread_mutex_unlock(&s->lock);
    return h;
}

/* Remove the map h of mf into *out; false if h is no live map of mf. */
static bool map_take(struct mf_file *mf, mf_mapmem_handle_t h, struct mf_entry *out)
{
    uintptr_t v = (uintptr_t)h;
    uintptr_t stamp = v & STAMP_MASK;
    size_t k = (size_t)(v >> STAMP_BITS) % NSHARDS;
    size_t i = (size_t)(v >> STAMP_BITS) / NSHARDS;
    struct mf_shard *s = &mf->shards[k];
    bool found = false;
    if (stamp == 0)
        return false;
    pthread_mutex_lock(&s->lock);
    if (i < s->top) {
        struct mf_entry *e = slot(s, i);
        if (e->stamp == stamp) {
            *out = *e;
            slab_free(s, i);
            found = true;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}

/* ---- direct mappings (dlock held) ---------------------------------------- */

static uint64_t round_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

static bool covers(const struct mf_direct *d, uint64_t off, uint64_t end)
{
    return d->start <= off && end - d->start <= d->len;
}

static size_t block_slot(uint64_t start, int order, unsigned bits)
{
    /* Fibonacci hashing of the block's number and order. */
    uint64_t k = ((start >> order) ^ ((uint64_t)order << 57)) * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(k >> (64 - bits));
}

static int blocks_insert(struct mf_file *mf, struct mf_direct *d)
{
    if (mf->bcount + 1 > mf->bcap) { /* chains of one on average */
        unsigned bits = mf->bcap ? mf->bbits + 1 : BLOCK_HASH_MIN_BITS;
        size_t cap = (size_t)1 << bits;
        struct mf_direct **n = calloc(cap, sizeof *n);
        if (!n)
            return -ENOMEM;
        for (size_t i = 0; i < mf->bcap; i++) {
            for (struct mf_direct *c = mf->bhash[i], *next; c; c = next) {
                next = c->next;
                size_t j = block_slot(c->start, c->order, bits);
                c->next = n[j];
                n[j] = c;
            }
        }
        free(mf->bhash);
        mf->bhash = n;
        mf->bcap = cap;
        mf->bbits = bits;
    }
    size_t j = block_slot(d->start, d->order, mf->bbits);
    d->next = mf->bhash[j];
    mf->bhash[j] = d;
    mf->bcount++;
    if (d->order > mf->max_order)
        mf->max_order = d->order;
    return 0;
}

static void blocks_remove(struct mf_file *mf, struct mf_direct *d)
{
    struct mf_direct **pp = &mf->bhash[block_slot(d->start, d->order, mf->bbits)];
    while (*pp != d)
        pp = &(*pp)->next;
    *pp = d->next;
    mf->bcount--;
}

static int others_add(struct mf_file *mf, struct mf_direct *d)
{
    if (mf->nothers == mf->ocap) {
        size_t cap = mf->ocap ? mf->ocap * 2 : 4;
        struct mf_direct **n = realloc(mf->others, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        mf->others = n;
        mf->ocap = cap;
    }
    d->idx = mf->nothers;
    mf->others[mf->nothers++] = d;
    return 0;
}

static void others_remove(struct mf_file *mf, struct mf_direct *d)
{
    mf->others[d->idx] = mf->others[--mf->nothers];
    mf->others[d->idx]->idx = d->idx;
}

/* A direct mapping covering [off, end), or NULL.  Blocks that could cover it
 * are the aligned ones of `want` bytes (the least a block for it has) and
 * up: one hash probe per size. */
static struct mf_direct *direct_find(struct mf_file *mf, uint64_t off, uint64_t end,
                                     uint64_t want)
{
    if (mf->bcount) {
        for (int o = (int)floor_log2(want); o <= mf->max_order; o++) {
            uint64_t p = UINT64_C(1) << o, s = off & ~(p - 1);
            if (end - s > p)
                continue;
            for (struct mf_direct *c = mf->bhash[block_slot(s, o, mf->bbits)]; c; c = c->next)
                if (c->order == o && c->start == s && covers(c, off, end))
                    return c;
        }
    }
    for (size_t i = 0; i < mf->nothers; i++)
        if (covers(mf->others[i], off, end))
            return mf->others[i];
    return NULL;
}

/* The extent to map for [off, end), so that later maps of neighbouring and
 * overlapping ranges share it: the whole file if that is at most a few times
 * `want` (the request's size rounded up to a power of two, at least a cache
 * window); else the smallest aligned power-of-two block of at least `want`
 * bytes holding it, capped at the end of the file, with its order in *order;
 * or, when that block would be much larger, the request rounded to pages.
 * *order is -1 for extents that are not blocks.  (The caller falls back to
 * the exact range when the extent does not fit in the address space.) */
static void direct_extent(uint64_t off, uint64_t end, uint64_t file_end, uint64_t gran,
                          uint64_t want, uint64_t *start, uint64_t *stop, int *order)
{
    *order = -1;
    if (file_end / DIRECT_GROW_MAX <= want) { /* the whole file is not much more */
        *start = 0;
        *stop = file_end;
        return;
    }
    /* p = 0 after an overflow ends the loop (end < 2^63: never in practice) */
    for (uint64_t p = want; p && p / want <= DIRECT_GROW_MAX; p <<= 1) {
        uint64_t s = off & ~(p - 1);
        if (end - s <= p) {
            *start = s;
            *stop = p < file_end - s ? s + p : file_end;
            *order = (int)floor_log2(p);
            return;
        }
    }
    *start = off & ~(gran - 1);
    *stop = round_up(end, gran);
}

/* Whether a mapping of len bytes more than the request leaves the process
 * enough address space under RLIMIT_AS: grown extents must not take the last
 * of it from malloc, stacks and the caller's own exact maps. */
static bool room_for(uint64_t len)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return true;
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    if (!pages)
        return false; /* unknown: be frugal */
    uint64_t limit = (uint64_t)rl.rlim_cur;
    uint64_t used = (uint64_t)pages * mmk_page_size();
    uint64_t reserve = limit / AS_RESERVE_DIV < AS_RESERVE_MAX ? limit / AS_RESERVE_DIV
                                                                : AS_RESERVE_MAX;
    return used < limit && len + reserve <= limit - used;
}

static void *map_extent(const struct mf_file *mf, uint64_t start, uint64_t stop)
{
    if (stop - start > SIZE_MAX)
        return MAP_FAILED;
    int prot = PROT_READ | (mf->writable ? PROT_WRITE : 0);
    return mmap(NULL, (size_t)(stop - start), prot, MAP_SHARED, mf->fd, (off_t)start);
}

/* A new direct mapping for [off, end), indexed; NULL with *rc set. */
static struct mf_direct *direct_new(struct mf_file *mf, uint64_t off, uint64_t end,
                                    uint64_t want, int *rc)
{
    uint64_t gran = mmk_map_granularity();
    uint64_t file_end = round_up(mmk_cache_file_size(mf->cf), gran);
    const uint64_t xstart = off & ~(gran - 1), xstop = round_up(end, gran);
    uint64_t start, stop;
    int order;
    direct_extent(off, end, file_end, gran, want, &start, &stop, &order);
    if (stop - start > xstop - xstart && !room_for(stop - start)) {
        start = xstart;
        stop = xstop;
        order = -1;
    }
    void *p = map_extent(mf, start, stop);
    if (p == MAP_FAILED && (start != xstart || stop != xstop)) {
        start = xstart; /* no room for the grown extent: the exact one */
        stop = xstop;
        order = -1;
        p = map_extent(mf, start, stop);
    }
    if (p == MAP_FAILED) {
        *rc = errno == ENOMEM || errno == EOVERFLOW ? -ENOMEM : -errno;
        return NULL;
    }
    struct mf_direct *d = malloc(sizeof *d);
    if (d) {
        *d = (struct mf_direct){
            .base = p, .start = start, .len = (size_t)(stop - start), .order = order };
        if ((order >= 0 ? blocks_insert(mf, d) : others_add(mf, d)) < 0) {
            free(d);
            d = NULL;
        }
    }
    if (!d) {
        munmap(p, (size_t)(stop - start));
        *rc = -ENOMEM;
        return NULL;
    }
    if (mf->writable) /* the cache's sync does not know this mapping */
        atomic_store(&mf->fsync_needed, true);
    return d;
}

/* Serve [off, off + len) from a direct mapping: an existing one covering it,
 * or a new one.  The range lies inside the file (the cache checked). */
static int direct_get(struct mf_file *mf, uint64_t off, size_t len, struct mf_entry *e)
{
    uint64_t end = off + len;
    uint64_t want = mf->window;
    while (want < len && want < (UINT64_C(1) << 62))
        want <<= 1;
    int rc = 0;
    pthread_mutex_lock(&mf->dlock);
    struct mf_direct *d = direct_find(mf, off, end, want);
    if (!d)
        d = direct_new(mf, off, end, want, &rc);
    if (d) {
        d->refs++;
        e->u.d = d;
        e->v.ptr = d->base + (off - d->start);
        e->v.len = len;
        e->v.priv_ = NULL;
    }
    pthread_mutex_unlock(&mf->dlock);
    return rc;
}

static void direct_put(struct mf_file *mf, struct mf_direct *d)
{
    bool last;
    pthread_mutex_lock(&mf->dlock);
    last = --d->refs == 0;
    if (last) {
        if (d->order >= 0)
            blocks_remove(mf, d);
        else
            others_remove(mf, d);
    }
    pthread_mutex_unlock(&mf->dlock);
    if (last) { /* outside the lock: unmapping a large touched range is slow */
        munmap(d->base, d->len);
        free(d);
    }
}

static void entry_release(struct mf_file *mf, struct mf_entry *e)
{
    if (e->v.priv_)
        mmk_cache_unpin(&e->v);
    else
        direct_put(mf, e->u.d);
}

/* ---- plain I/O, when the cache has no room ------------------------------- */

static ssize_t fd_pread(struct mf_file *mf, unsigned char *buf, size_t n, uint64_t off)
{
    uint64_t size = mmk_cache_file_size(mf->cf);
    if (off >= size)
        return 0;
    if (n > size - off)
        n = (size_t)(size - off);
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(mf->fd, buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return done ? (ssize_t)done : -errno;
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

static ssize_t fd_pwrite(struct mf_file *mf, const unsigned char *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    atomic_store(&mf->fsync_needed, true);
    while (done < n) {
        ssize_t r = pwrite(mf->fd, buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return done ? (ssize_t)done : -errno;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

/* ---- the API --------------------------------------------------------------- */

mf_handle_t mf_open(const char *pathname)
{
    if (!pathname)
        return fail_null(EINVAL);
    mmk_cache *c = mmk_cache_default();
    if (!c)
        return fail_null(ENOMEM);

    /* O_NONBLOCK: opening a FIFO or a device must not wait for a peer. */
    const int oflags = O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    bool writable = true;
    int fd = open(pathname, O_RDWR | oflags);
    if (fd < 0 && (errno == EACCES || errno == EPERM || errno == EROFS || errno == ETXTBSY)) {
        writable = false;
        fd = open(pathname, O_RDONLY | oflags);
    }
    if (fd < 0)
        return NULL; /* open's errno: ENOENT, EISDIR, ... */

    int err = 0;
    struct stat st;
    struct mf_file *mf = NULL;
    if (fstat(fd, &st) < 0) {
        err = errno;
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        err = S_ISDIR(st.st_mode) ? EISDIR : ENODEV;
        goto fail;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        err = errno;
        goto fail;
    }
    mf = calloc(1, sizeof *mf);
    if (!mf) {
        err = ENOMEM;
        goto fail;
    }
    int rc = mmk_cache_attach(c, fd, writable ? MMK_RDWR : MMK_RDONLY, &mf->cf);
    if (rc < 0) {
        err = -rc;
        goto fail;
    }
    mf->magic = MF_MAGIC;
    mf->writable = writable;
    mf->fd = fd;
    mmk_cache_opts lim;
    mmk_cache_limits(c, &lim);
    mf->window = lim.window;
    atomic_init(&mf->fsync_needed, false);
    pthread_mutex_init(&mf->dlock, NULL);
    mf->max_order = -1;
    for (size_t k = 0; k < NSHARDS; k++) {
        pthread_mutex_init(&mf->shards[k].lock, NULL);
        mf->shards[k].free_head = NO_SLOT;
    }
    return mf;

fail:
    free(mf);
    close(fd);
    return fail_null(err);
}

int mf_close(mf_handle_t h)
{
    struct mf_file *mf = file_of(h);
    if (!mf)
        return fail_int(EINVAL);
    mf->magic = 0;
    int err = 0;

    /* Maps still held: release them all (direct mappings go with their last
     * reference). */
    for (size_t k = 0; k < NSHARDS; k++) {
        struct mf_shard *s = &mf->shards[k];
        for (size_t i = 0; i < s->top; i++) {
            struct mf_entry *e = slot(s, i);
            if (e->stamp)
                entry_release(mf, e);
        }
        for (size_t c = 0; c < SLAB_CHUNKS; c++)
            free(s->chunks[c]);
        pthread_mutex_destroy(&s->lock);
    }

    int rc = mmk_cache_sync(mf->cf);
    if (rc < 0)
        err = -rc;
    if (atomic_load(&mf->fsync_needed) && fdatasync(mf->fd) < 0 && !err)
        err = errno;
    rc = mmk_cache_detach(mf->cf);
    if (rc < 0 && !err)
        err = -rc;
    if (close(mf->fd) < 0 && errno != EINTR && !err)
        err = errno;

    free(mf->bhash); /* empty now: every map was released above */
    free(mf->others);
    pthread_mutex_destroy(&mf->dlock);
    free(mf);
    return err ? fail_int(err) : 0;
}

ssize_t mf_read(mf_handle_t h, void *buf, size_t count, off_t offset)
{
    struct mf_file *mf = file_of(h);
    if (!mf || offset < 0 || (!buf && count))
        return fail_int(EINVAL);
    if (count > SSIZE_MAX)
        count = SSIZE_MAX;
    unsigned char *b = buf;
    uint64_t off = (uint64_t)offset;
    size_t done = 0;
    while (done < count) {
        ssize_t r = mmk_cache_pread(mf->cf, b + done, count - done, off + done);
        if (r == -ENOMEM) /* every window pinned: read through the descriptor */
            r = fd_pread(mf, b + done, count - done, off + done);
        if (r == 0)
            break; /* end of file */
        if (r < 0) {
            if (done)
                break;
            return fail_int((int)-r);
        }
        done += (size_t)r;
    }
    return (ssize_t)done;
}

ssize_t mf_write(mf_handle_t h, const void *buf, size_t count, off_t offset)
{
    struct mf_file *mf = file_of(h);
    if (!mf || offset < 0 || (!buf && count))
        return fail_int(EINVAL);
    if (!mf->writable)
        return fail_int(EBADF);
    if (count > SSIZE_MAX)
        count = SSIZE_MAX;
    const unsigned char *b = buf;
    uint64_t off = (uint64_t)offset;
    size_t done = 0;
    while (done < count) {
        /* The cache grows the file before it copies, so when it runs out of
         * room part way the rest lies inside the file already. */
        ssize_t r = mmk_cache_pwrite(mf->cf, b + done, count - done, off + done);
        if (r == -ENOMEM)
            r = fd_pwrite(mf, b + done, count - done, off + done);
        if (r <= 0) {
            if (done)
                break;
            return fail_int(r < 0 ? (int)-r : EIO);
        }
        done += (size_t)r;
    }
    return (ssize_t)done;
}

void *mf_map(mf_handle_t h, off_t offset, size_t size, mf_mapmem_handle_t *out)
{
    struct mf_file *mf = file_of(h);
    if (out)
        *out = NULL;
    if (!mf || !out || offset < 0 || size == 0)
        return fail_null(EINVAL);
    uint64_t off = (uint64_t)offset;
    struct mf_entry e = { 0 };
    int rc = mmk_cache_pin(mf->cf, off, size, mf->writable ? MMK_RDWR : MMK_RDONLY, &e.v);
    if (rc == -ENOMEM) /* over the cache's budget: a mapping of our own */
        rc = direct_get(mf, off, size, &e);
    if (rc < 0)
        return fail_null(-rc);
    mf_mapmem_handle_t mh = map_record(mf, &e);
    if (!mh) {
        entry_release(mf, &e);
        return fail_null(ENOMEM);
    }
    *out = mh;
    return e.v.ptr;
}

int mf_unmap(mf_handle_t h, mf_mapmem_handle_t mh)
{
    struct mf_file *mf = file_of(h);
    struct mf_entry e;
    if (!mf || !mh || !map_take(mf, mh, &e))
        return fail_int(EINVAL);
    entry_release(mf, &e);
    return 0;
}

off_t mf_file_size(mf_handle_t h)
{
    struct mf_file *mf = file_of(h);
    if (!mf)
        return fail_int(EINVAL);
    return (off_t)mmk_cache_file_size(mf->cf);
}
