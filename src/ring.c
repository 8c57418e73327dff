/* src/ring.c — mirrored ring buffers.
 *
 * Memory: one memory object (a memfd, or an unlinked POSIX shm object) of
 * [header page,] capacity bytes, mapped over a PROT_NONE reservation as
 *
 *     base: [header (MMK_RING_SHARED only)] [data 0 .. cap) [data 0 .. cap again)
 *
 * so data[i] and data[i + cap] are the same byte and any cap bytes from any
 * index are contiguous.
 *
 * Positions: `head` counts the bytes ever produced; `tail` is the oldest byte
 * still valid.  Both are 64-bit atomics and only grow; a byte at position p
 * lives at data[p % cap] (the capacity is a multiple of the page size, not a
 * power of two, so no masking).  Without MMK_RING_OVERWRITE only the producer
 * moves head and only the consumer moves tail, with release stores, each side
 * reading the other's with acquire loads: the classic single-producer,
 * single-consumer ring.  Each side also caches the other's position (a lower
 * bound, since positions only grow) and reloads it only when the cached value
 * shows too little room or data, so a steady stream does not bounce the
 * other side's cache line on every call.  And each side remembers the index
 * of its own position, so the 64-bit division of `p % cap` (tens of cycles)
 * runs only when the position moved some other way (a clear, a drop, a role
 * taken over by another process): the cache is keyed by the position.
 *
 * Overwrite mode: the producer may move tail too, forward only, with a
 * compare-and-swap, before it stores over unread bytes.  The consumer keeps
 * its own position in `cursor`; the valid range it sees is
 * [max(cursor, tail, head - cap), head), and whatever lies between cursor and
 * the start of that range was lost.  Copies out of the ring are checked after
 * the fact, seqlock style: the producer moves tail, issues a release fence and
 * only then overwrites; the consumer copies, issues an acquire fence and
 * re-reads tail, so if its copy saw any overwritten byte it also sees a tail
 * past that byte.  Bytes below that tail are dropped from the copy and
 * counted lost.  The copy itself races with the producer's stores by design;
 * under ThreadSanitizer those reads are annotated as ignored.
 */
#include <mmkit/ring.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "os/os.h"

/* Linux UAPI values, for headers older than the kernels we run on. */
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U /* Linux 6.3: never executable (older kernels: EINVAL) */
#endif

/* The unit of false sharing we keep the two sides apart by: 64-byte lines,
 * fetched in pairs by the adjacent-line prefetchers of x86 cores. */
#define RING_LINE 128

/* Permissions of the memory object: the owner only. */
#define RING_MODE 0600

/* Names tried for the shm_open fallback before giving up (each is unique
 * already; this only covers a collision with a stale object). */
#define SHM_NAME_TRIES 16
#define SHM_NAME_MAX   64

/* The name a memfd shows in /proc/PID/maps ("/memfd:mmkit-ring (deleted)"). */
#define MEMFD_NAME "mmkit-ring"

#define RING_FLAGS (MMK_RING_OVERWRITE | MMK_RING_SHARED)

#if defined(__SANITIZE_THREAD__)
#define RING_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RING_TSAN 1
#endif
#endif
#ifdef RING_TSAN
/* ThreadSanitizer's dynamic annotations: reads between the two calls are not
 * recorded, so the overwrite-mode copy (checked after the fact, see above)
 * does not show up as a data race. */
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define RACY_READS_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define RACY_READS_END()   AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define RACY_READS_BEGIN() ((void)0)
#define RACY_READS_END()   ((void)0)
#endif

#if defined(RING_TSAN) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
/* ThreadSanitizer does not model fences (GCC warns so).  Ours only order the
 * overwrite-mode copy against the producer's stores, and the reads of that
 * copy are hidden from ThreadSanitizer anyway: nothing it checks depends on
 * them, and they are still emitted. */
#pragma GCC diagnostic ignored "-Wtsan"
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* A fresh mapping may reuse addresses AddressSanitizer remembers as freed
 * heap; tell it the new pages are valid memory. */
#define FRESH_PAGES(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define FRESH_PAGES(p, n) ((void)0)
#endif

/* The shared positions: in the ring's header page with MMK_RING_SHARED, else
 * inside struct mmk_ring.  One line per writer. */
typedef struct ring_pos {
    _Alignas(RING_LINE) _Atomic uint64_t head; /* bytes ever produced (producer) */
    _Alignas(RING_LINE) _Atomic uint64_t tail; /* oldest valid byte (consumer; and
                                                  producer, in overwrite mode) */
    _Alignas(RING_LINE) _Atomic uint64_t cursor; /* overwrite mode: the consumer's
                                                    position */
    _Atomic uint64_t lost;                       /* overwrite mode: bytes lost */
} ring_pos;

struct mmk_ring {
    unsigned char *data;    /* first copy of the data; data + cap is the second */
    size_t         cap;
    unsigned       flags;
    ring_pos      *pos;     /* &local, or the header page */
    void          *map;     /* the whole reservation */
    size_t         map_len;
    /* Each side's cached copy of the other's position (a lower bound), and
     * the index of its own position ppos/cpos (pidx = ppos % cap ...). */
    _Alignas(RING_LINE) uint64_t ptail; /* producer's */
    uint64_t       ppos;
    size_t         pidx;
    _Alignas(RING_LINE) uint64_t chead; /* consumer's */
    uint64_t       cpos;
    size_t         cidx;
    ring_pos       local;
};

#if defined(__GNUC__)
#define RING_NOINLINE __attribute__((noinline))
#else
#define RING_NOINLINE
#endif

#define LOAD(a, mo)     atomic_load_explicit(&(a), memory_order_##mo)
#define STORE(a, v, mo) atomic_store_explicit(&(a), (v), memory_order_##mo)

static inline size_t ring_idx(const mmk_ring *r, uint64_t p)
{
    return (size_t)(p % r->cap);
}

/* The index of position p, from the side's cache when p is where that side
 * last left off. */
static inline size_t cached_idx(const mmk_ring *r, uint64_t p, uint64_t pos, size_t idx)
{
    return p == pos ? idx : ring_idx(r, p);
}

/* Index idx moved on by k bytes (k <= cap but for a rare overwrite-mode
 * consume). */
static inline size_t idx_add(const mmk_ring *r, size_t idx, size_t k)
{
    idx += k;
    if (idx >= r->cap) {
        idx -= r->cap;
        if (idx >= r->cap)
            idx %= r->cap;
    }
    return idx;
}

#define PROD_IDX(r, p) cached_idx((r), (p), (r)->ppos, (r)->pidx)
#define CONS_IDX(r, p) cached_idx((r), (p), (r)->cpos, (r)->cidx)

static inline void prod_moved(mmk_ring *r, uint64_t p, size_t idx)
{
    r->ppos = p;
    r->pidx = idx;
}

static inline void cons_moved(mmk_ring *r, uint64_t p, size_t idx)
{
    r->cpos = p;
    r->cidx = idx;
}

static inline bool overwrite(const mmk_ring *r)
{
    return (r->flags & MMK_RING_OVERWRITE) != 0;
}

/* ---- making the memory ------------------------------------------------- */

/* A memfd, with exec denied where the kernel knows how. */
static int open_memfd(void)
{
    int fd = mmk__sys.memfd_create(MEMFD_NAME, MFD_CLOEXEC | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL)
        fd = mmk__sys.memfd_create(MEMFD_NAME, MFD_CLOEXEC);
    return fd;
}

/* An shm object under a fresh name, unlinked at once. */
static int open_shm(int *fdp)
{
    static atomic_uint serial;
    for (int i = 0; i < SHM_NAME_TRIES; i++) {
        struct timespec ts;
        char name[SHM_NAME_MAX];
        clock_gettime(CLOCK_MONOTONIC, &ts);
        /* The address of a local differs between processes (ASLR); the serial
         * and the clock differ between calls. */
        snprintf(name, sizeof name, "/mmkit-ring-%lx-%x-%lx",
                 (unsigned long)(uintptr_t)&ts, atomic_fetch_add(&serial, 1),
                 (unsigned long)ts.tv_nsec);
        int fd = mmk__sys.shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, RING_MODE);
        if (fd < 0) {
            if (errno == EEXIST)
                continue;
            return mmk__neg_errno();
        }
        if (mmk__sys.shm_unlink(name) < 0) {
            int rc = mmk__neg_errno();
            mmk__close_quiet(fd);
            return rc;
        }
        *fdp = fd;
        return 0;
    }
    return -EEXIST;
}

/* Allocate the pages of an shm object now.  /dev/shm is often a small
 * tmpfs (64 MiB in a container, by default): without this, a ring larger
 * than what is left there would map fine and raise SIGBUS when touched.
 * 0, -ENOSPC, or 0 where the system cannot allocate ahead (best effort). */
static int reserve_shm(int fd, size_t len)
{
    if (mmk__sys.fallocate(fd, 0, 0, (off_t)len) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS)
        return mmk__neg_errno();
    int err = mmk__sys.posix_fallocate(fd, 0, (off_t)len);
    return err == 0 || err == EINVAL || err == EOPNOTSUPP ? 0 : -err;
}

/* The memory object of `len` bytes, mode 0600, linked nowhere. */
static int open_object(size_t len, int *fdp)
{
    bool shm = false;
    int rc, fd = open_memfd();
    if (fd < 0) {
        /* No memfd here (an old kernel, another system, or a policy that
         * forbids it): fall back to POSIX shared memory. */
        if (errno != ENOSYS && errno != EPERM && errno != EACCES)
            return mmk__neg_errno();
        if ((rc = open_shm(&fd)) < 0)
            return rc;
        shm = true;
    }
    /* A memfd lives on the kernel's internal mount, without a size limit:
     * its pages come on first touch, like anonymous memory. */
    if (mmk__sys.fchmod(fd, RING_MODE) < 0 || mmk__sys.ftruncate(fd, (off_t)len) < 0) {
        rc = mmk__neg_errno();
        mmk__close_quiet(fd);
        return rc;
    }
    if (shm && (rc = reserve_shm(fd, len)) < 0) {
        mmk__close_quiet(fd);
        return rc;
    }
    *fdp = fd;
    return 0;
}

/* Reserve hdr + 2 * cap bytes of address space and map the object there:
 * [0, hdr + cap) of the object at the start, [hdr, hdr + cap) again after it. */
static int map_mirrored(int fd, size_t hdr, size_t cap, unsigned char **basep)
{
    size_t span = hdr + 2 * cap;
    unsigned char *base = mmk__sys.mmap(NULL, span, PROT_NONE,
                                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return mmk__neg_errno();
    int prot = PROT_READ | PROT_WRITE;
    if (mmk__sys.mmap(base, hdr + cap, prot, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED ||
        mmk__sys.mmap(base + hdr + cap, cap, prot, MAP_SHARED | MAP_FIXED, fd,
                      (off_t)hdr) == MAP_FAILED) {
        int rc = mmk__neg_errno();
        mmk__sys.munmap(base, span);
        return rc;
    }
    FRESH_PAGES(base, span);
    *basep = base;
    return 0;
}

int mmk_ring_new(mmk_ring **out, size_t min_size, unsigned flags)
{
    if (out)
        *out = NULL;
    if (!out || min_size == 0 || (flags & ~(unsigned)RING_FLAGS))
        return -EINVAL;
    size_t gran = mmk__granularity();
    size_t hdr = (flags & MMK_RING_SHARED) ? gran : 0;
    _Static_assert(sizeof(ring_pos) <= 4096, "the positions fit in the smallest page");
    /* hdr + 2 * cap must fit in a size_t, and cap in an off_t. */
    size_t max = (SIZE_MAX / 2 - gran) / gran * gran;
    if ((uint64_t)max > (uint64_t)INT64_MAX / 2)
        max = (size_t)((uint64_t)INT64_MAX / 2 / gran * gran);
    if (min_size > max)
        return -ENOMEM;
    size_t cap = (min_size + gran - 1) / gran * gran;

    mmk_ring *r = aligned_alloc(RING_LINE, sizeof *r);
    if (!r)
        return -ENOMEM;
    memset(r, 0, sizeof *r);
    r->cap = cap;
    r->flags = flags;
    r->pos = &r->local;
    atomic_init(&r->local.head, 0);
    atomic_init(&r->local.tail, 0);
    atomic_init(&r->local.cursor, 0);
    atomic_init(&r->local.lost, 0);
    /* Across processes, atomics must not need a lock (the lock would be
     * private to each process). */
    if ((flags & MMK_RING_SHARED) &&
        (!atomic_is_lock_free(&r->local.head) || !atomic_is_lock_free(&r->local.lost))) {
        free(r);
        return -EOPNOTSUPP;
    }

    int fd;
    int rc = open_object(hdr + cap, &fd);
    if (rc < 0) {
        free(r);
        return rc;
    }
    unsigned char *base;
    rc = map_mirrored(fd, hdr, cap, &base);
    /* The mappings hold the object; the descriptor is not needed. */
    mmk__close_quiet(fd);
    if (rc < 0) {
        free(r);
        return rc;
    }
    r->map = base;
    r->map_len = hdr + 2 * cap;
    r->data = base + hdr;
    if (hdr) {
        /* Fresh zero pages are valid zero positions; say so to the compiler. */
        r->pos = (ring_pos *)(void *)base;
        atomic_init(&r->pos->head, 0);
        atomic_init(&r->pos->tail, 0);
        atomic_init(&r->pos->cursor, 0);
        atomic_init(&r->pos->lost, 0);
    }
    *out = r;
    return 0;
}

void mmk_ring_free(mmk_ring *r)
{
    if (!r)
        return;
    mmk__sys.munmap(r->map, r->map_len);
    free(r);
}

size_t mmk_ring_size(const mmk_ring *r)
{
    return r ? r->cap : 0;
}

unsigned mmk_ring_flags(const mmk_ring *r)
{
    return r ? r->flags : 0;
}

/* ---- positions --------------------------------------------------------- */

/* The first valid position in overwrite mode, given what was loaded. */
static inline uint64_t valid_start(const mmk_ring *r, uint64_t cur, uint64_t t, uint64_t h)
{
    uint64_t lo = cur > t ? cur : t;
    if (h > r->cap && h - r->cap > lo)
        lo = h - r->cap;
    return lo;
}

size_t mmk_ring_readable(const mmk_ring *r)
{
    if (!r)
        return 0;
    const ring_pos *p = r->pos;
    uint64_t t = LOAD(p->tail, acquire);
    uint64_t lo = t;
    if (overwrite(r)) {
        uint64_t cur = LOAD(p->cursor, acquire);
        uint64_t h = LOAD(p->head, acquire);
        lo = valid_start(r, cur, t, h);
        return h > lo ? (size_t)(h - lo) : 0;
    }
    uint64_t h = LOAD(p->head, acquire);
    return (size_t)(h - lo);
}

size_t mmk_ring_writable(const mmk_ring *r)
{
    return r ? r->cap - mmk_ring_readable(r) : 0;
}

uint64_t mmk_ring_lost(const mmk_ring *r)
{
    return r ? LOAD(r->pos->lost, relaxed) : 0;
}

/* ---- producer ---------------------------------------------------------- */

/* Free space from the producer's view at head h: from the cached tail when
 * that shows at least `want` bytes, else from a fresh (acquire) load. */
static inline size_t prod_free(mmk_ring *r, uint64_t h, size_t want)
{
    uint64_t used = h - r->ptail;
    if (used > r->cap || r->cap - (size_t)used < want) {
        r->ptail = LOAD(r->pos->tail, acquire);
        used = h - r->ptail;
        /* In overwrite mode a write longer than the ring leaves head more
         * than cap ahead of tail: full. */
        if (used > r->cap)
            return 0;
    }
    return r->cap - (size_t)used;
}

/* Overwrite mode: make sure tail >= h + k - cap (k <= cap) before storing k
 * bytes at position h, dropping the oldest unread bytes if need be. */
static void make_room(mmk_ring *r, uint64_t h, size_t k)
{
    if (h + k <= r->cap)
        return;
    uint64_t need = h + k - r->cap;
    if (r->ptail >= need)
        return;
    uint64_t t = LOAD(r->pos->tail, acquire);
    while (t < need) {
        if (atomic_compare_exchange_weak_explicit(&r->pos->tail, &t, need,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire)) {
            /* The bytes below `need` are the consumer's no more: publish that
             * before the first store over them (see the top of the file). */
            atomic_thread_fence(memory_order_release);
            t = need;
            break;
        }
    }
    r->ptail = t;
}

void *mmk_ring_write_ptr(mmk_ring *r, size_t *n)
{
    if (!r) {
        if (n)
            *n = 0;
        return NULL;
    }
    uint64_t h = LOAD(r->pos->head, relaxed);
    r->ptail = LOAD(r->pos->tail, acquire);
    uint64_t used = h - r->ptail;
    if (n)
        *n = used >= r->cap ? 0 : r->cap - (size_t)used;
    size_t idx = PROD_IDX(r, h);
    prod_moved(r, h, idx);
    return r->data + idx;
}

void *mmk_ring_reserve(mmk_ring *r, size_t n)
{
    if (!r || n > r->cap)
        return NULL;
    uint64_t h = LOAD(r->pos->head, relaxed);
    if (overwrite(r))
        make_room(r, h, n);
    else if (prod_free(r, h, n) < n)
        return NULL;
    size_t idx = PROD_IDX(r, h);
    prod_moved(r, h, idx);
    return r->data + idx;
}

void mmk_ring_produce(mmk_ring *r, size_t n)
{
    if (!r || n == 0)
        return;
    uint64_t h = LOAD(r->pos->head, relaxed);
    if (overwrite(r)) {
        if (n > r->cap)
            n = r->cap;
        make_room(r, h, n);
    } else {
        size_t room = prod_free(r, h, n);
        if (n > room)
            n = room;
    }
    prod_moved(r, h + n, idx_add(r, PROD_IDX(r, h), n));
    STORE(r->pos->head, h + n, release);
}

/* Overwrite mode's copying write: every byte taken.  (Kept out of line, so
 * that the plain mode's hot path saves no registers it does not use.) */
RING_NOINLINE static ssize_t write_overwrite(mmk_ring *r, const void *buf, size_t n)
{
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    uint64_t h = LOAD(r->pos->head, relaxed);
    /* Of a write longer than the ring only the last cap bytes can be read;
     * the first ones are skipped (the consumer counts them lost). */
    size_t skip = n > r->cap ? n - r->cap : 0;
    size_t k = n - skip;
    make_room(r, h, k);
    size_t idx = skip ? ring_idx(r, h + skip) : PROD_IDX(r, h);
    memcpy(r->data + idx, (const unsigned char *)buf + skip, k);
    prod_moved(r, h + n, idx_add(r, idx, k));
    STORE(r->pos->head, h + n, release);
    return (ssize_t)n;
}

ssize_t mmk_ring_write(mmk_ring *r, const void *buf, size_t n)
{
    if (!r || (!buf && n))
        return -EINVAL;
    if (overwrite(r))
        return write_overwrite(r, buf, n);
    /* The hot path: everything but the head is settled before the copy, so
     * little stays live across the memcpy call. */
    _Atomic uint64_t *head = &r->pos->head;
    uint64_t h = atomic_load_explicit(head, memory_order_relaxed);
    size_t k = prod_free(r, h, n);
    if (k > n)
        k = n;
    if (k == 0)
        return 0;
    size_t idx = PROD_IDX(r, h);
    prod_moved(r, h + k, idx_add(r, idx, k));
    memcpy(r->data + idx, buf, k);
    atomic_store_explicit(head, h + k, memory_order_release);
    return (ssize_t)k;
}

/* ---- consumer ---------------------------------------------------------- */

/* Bytes buffered from the consumer's view at tail t (normal mode): from the
 * cached head when that shows at least `want`, else from a fresh load. */
static inline size_t cons_avail(mmk_ring *r, uint64_t t, size_t want)
{
    uint64_t avail = r->chead > t ? r->chead - t : 0;
    if (avail < want) {
        r->chead = LOAD(r->pos->head, acquire);
        avail = r->chead - t;
    }
    return (size_t)avail;
}

static inline void add_lost(mmk_ring *r, uint64_t n)
{
    /* Only the consumer writes it; others read it. */
    STORE(r->pos->lost, LOAD(r->pos->lost, relaxed) + n, relaxed);
}

/* Overwrite mode: the consumer's position after accounting for what the
 * producer dropped; stores the head seen in *hp. */
static uint64_t cons_start(mmk_ring *r, uint64_t *hp)
{
    ring_pos *p = r->pos;
    uint64_t t = LOAD(p->tail, acquire);
    uint64_t h = LOAD(p->head, acquire);
    uint64_t cur = LOAD(p->cursor, relaxed);
    uint64_t lo = valid_start(r, cur, t, h);
    if (lo > cur) {
        add_lost(r, lo - cur);
        STORE(p->cursor, lo, relaxed);
    }
    *hp = h;
    return lo;
}

/* Overwrite mode: the first position of [from, end) that the producer has
 * not overwritten since the consumer read it (end if all of it was). */
static inline uint64_t intact_from(mmk_ring *r, uint64_t from, uint64_t end)
{
    atomic_thread_fence(memory_order_acquire);
    uint64_t t = LOAD(r->pos->tail, relaxed);
    /* Positions more than cap behind head are gone too (a write longer than
     * the ring skips some without moving tail past them). */
    uint64_t h = LOAD(r->pos->head, relaxed);
    if (h > r->cap && h - r->cap > t)
        t = h - r->cap;
    return t <= from ? from : t < end ? t : end;
}

/* Overwrite mode: the consumer is done with everything below `end`. */
static void cons_commit(mmk_ring *r, uint64_t end)
{
    ring_pos *p = r->pos;
    STORE(p->cursor, end, relaxed);
    uint64_t t = LOAD(p->tail, relaxed);
    while (t < end &&
           !atomic_compare_exchange_weak_explicit(&p->tail, &t, end, memory_order_release,
                                                  memory_order_relaxed)) {
    }
}

const void *mmk_ring_read_ptr(mmk_ring *r, size_t *n)
{
    if (!r) {
        if (n)
            *n = 0;
        return NULL;
    }
    uint64_t t, h;
    if (overwrite(r)) {
        t = cons_start(r, &h);
    } else {
        t = LOAD(r->pos->tail, relaxed);
        h = r->chead = LOAD(r->pos->head, acquire);
    }
    if (n)
        *n = h > t ? (size_t)(h - t) : 0;
    size_t idx = CONS_IDX(r, t);
    cons_moved(r, t, idx);
    return r->data + idx;
}

void mmk_ring_consume(mmk_ring *r, size_t n)
{
    if (!r || n == 0)
        return;
    ring_pos *p = r->pos;
    if (overwrite(r)) {
        uint64_t cur = LOAD(p->cursor, relaxed);
        uint64_t h = LOAD(p->head, acquire);
        if (n > h - cur)
            n = (size_t)(h - cur);
        uint64_t end = cur + n;
        /* Whatever the producer overwrote while the consumer held it. */
        uint64_t ok = intact_from(r, cur, end);
        if (ok > cur)
            add_lost(r, ok - cur);
        cons_moved(r, end, idx_add(r, CONS_IDX(r, cur), n));
        cons_commit(r, end);
        return;
    }
    uint64_t t = LOAD(p->tail, relaxed);
    size_t avail = cons_avail(r, t, n);
    if (n > avail)
        n = avail;
    cons_moved(r, t + n, idx_add(r, CONS_IDX(r, t), n));
    STORE(p->tail, t + n, release);
}

/* mmk_ring_read and mmk_ring_peek without overwrite: the hot path, settled
 * before the copy as in mmk_ring_write. */
static inline ssize_t copy_out(mmk_ring *r, void *buf, size_t n, bool take)
{
    _Atomic uint64_t *tail = &r->pos->tail;
    uint64_t t = atomic_load_explicit(tail, memory_order_relaxed);
    size_t k = cons_avail(r, t, n);
    if (k > n)
        k = n;
    if (k == 0)
        return 0;
    size_t idx = CONS_IDX(r, t);
    if (take)
        cons_moved(r, t + k, idx_add(r, idx, k));
    else
        cons_moved(r, t, idx);
    memcpy(buf, r->data + idx, k);
    if (take)
        atomic_store_explicit(tail, t + k, memory_order_release);
    return (ssize_t)k;
}

/* The same in overwrite mode: copy, then keep only what was intact. */
RING_NOINLINE static ssize_t copy_out_overwrite(mmk_ring *r, void *buf, size_t n, bool take)
{
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    for (;;) {
        uint64_t h, cur = cons_start(r, &h);
        size_t k = h - cur < n ? (size_t)(h - cur) : n;
        if (k == 0)
            return 0;
        size_t idx = CONS_IDX(r, cur);
        RACY_READS_BEGIN();
        memcpy(buf, r->data + idx, k);
        RACY_READS_END();
        uint64_t end = cur + k;
        uint64_t ok = intact_from(r, cur, end);
        if (ok == end) {
            /* All of it was overwritten under the copy: lost; try again
             * with what is there now. */
            add_lost(r, end - cur);
            STORE(r->pos->cursor, end, relaxed);
            continue;
        }
        if (ok > cur) {
            add_lost(r, ok - cur);
            memmove(buf, (unsigned char *)buf + (size_t)(ok - cur), (size_t)(end - ok));
        }
        if (take) {
            cons_moved(r, end, idx_add(r, idx, k));
            cons_commit(r, end);
        } else if (ok > cur) {
            STORE(r->pos->cursor, ok, relaxed);
        }
        return (ssize_t)(end - ok);
    }
}

ssize_t mmk_ring_read(mmk_ring *r, void *buf, size_t n)
{
    if (!r || (!buf && n))
        return -EINVAL;
    return overwrite(r) ? copy_out_overwrite(r, buf, n, true) : copy_out(r, buf, n, true);
}

ssize_t mmk_ring_peek(mmk_ring *r, void *buf, size_t n)
{
    if (!r || (!buf && n))
        return -EINVAL;
    return overwrite(r) ? copy_out_overwrite(r, buf, n, false) : copy_out(r, buf, n, false);
}

void mmk_ring_clear(mmk_ring *r)
{
    if (!r)
        return;
    if (overwrite(r)) {
        uint64_t h;
        (void)cons_start(r, &h); /* count what was dropped before */
        cons_commit(r, h);
        return;
    }
    STORE(r->pos->tail, LOAD(r->pos->head, acquire), release);
}
