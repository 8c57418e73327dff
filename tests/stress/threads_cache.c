/* tests/stress/threads_cache.c — many threads on one window cache at once,
 * with a budget so small that eviction runs all the time: pins of random
 * ranges (some crossing windows, some two files at once) and mmk_cache_pread
 * on a read-only file every thread reads, and on a read-write file where
 * each thread writes (pwrite and write pins) only its own slice while a
 * syncer thread syncs it and samples the budgets.  Every byte seen is checked
 * against what the file must hold.  A plain program (exit 0 pass, 1 fail) so
 * that it runs under ThreadSanitizer too. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mmkit.h>

#include "stress.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

#define THREADS    8
#ifdef UNDER_TSAN
#define ROUNDS     1000 /* every byte checked is instrumented: fewer rounds */
#else
#define ROUNDS     3000
#endif
#define WINDOW     (64 * 1024)
#define MAX_MAPS   12
#define MAX_MAPPED (24 * WINDOW)
#define SIZE_A     (48 * WINDOW + 333)          /* read by every thread */
#define SLICE      (WINDOW + 4096 + 7)          /* each thread's part of B */
#define SIZE_B     (THREADS * SLICE)
#define LONG_MAX_LEN (2 * WINDOW + 100)         /* crosses up to three windows */
#define SAMPLE_NS  (100 * 1000)                 /* between budget samples */

static mmk_cache *cache;
static mmk_cache_file *file_a, *file_b;
static atomic_bool done;
static atomic_ulong enomem, shorts, checked;

/* The bytes of the files: A never changes; in B, thread i's slice holds
 * generation g of its pattern after its writes (readers are the writer only). */
static uint8_t byte_a(uint64_t off)
{
    uint64_t x = off * UINT64_C(0x9E3779B97F4A7C15);
    x ^= x >> 29;
    return (uint8_t)(x ^ (x >> 11));
}

static uint8_t byte_b(uint64_t off, unsigned gen)
{
    return (uint8_t)(byte_a(off + 12345) + gen * 31u);
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t *s, uint64_t n)
{
    return n ? rng_next(s) % n : 0;
}

static size_t random_len(uint64_t *s, size_t max)
{
    size_t len;
    switch (below(s, 10)) {
    case 0: len = 1 + (size_t)below(s, LONG_MAX_LEN); break;
    case 1: case 2: len = 1 + (size_t)below(s, WINDOW); break;
    default: len = 1 + (size_t)below(s, 4096); break;
    }
    return len < max ? len : max;
}

static void check_a(const uint8_t *p, size_t n, uint64_t off, const char *what)
{
    for (size_t i = 0; i < n; i++)
        CHECK(p[i] == byte_a(off + i), "%s: file A byte %llu", what,
              (unsigned long long)(off + i));
    atomic_fetch_add_explicit(&checked, n, memory_order_relaxed);
}

static void check_b(const uint8_t *p, size_t n, uint64_t off, unsigned gen, const char *what)
{
    for (size_t i = 0; i < n; i++)
        CHECK(p[i] == byte_b(off + i, gen), "%s: file B byte %llu gen %u", what,
              (unsigned long long)(off + i), gen);
    atomic_fetch_add_explicit(&checked, n, memory_order_relaxed);
}

/* Pin, or -ENOMEM (the budget is held by other threads' pins): counted. */
static bool pin(mmk_cache_file *f, uint64_t off, size_t len, unsigned access, mmk_view *v)
{
    int rc = mmk_cache_pin(f, off, len, access, v);
    if (rc == -ENOMEM) {
        atomic_fetch_add_explicit(&enomem, 1, memory_order_relaxed);
        return false;
    }
    CHECK(rc == 0, "pin %llu+%zu: %s", (unsigned long long)off, len, mmk_strerror(rc));
    CHECK(v->len == len && v->ptr, "view");
    return true;
}

static void unpin(mmk_view *v)
{
    CHECK(mmk_cache_unpin(v) == 0, "unpin");
}

/* pread that may end early at a window boundary (or fail with -ENOMEM) when
 * other threads' pins hold the budget; returns the count. */
static size_t pread_some(mmk_cache_file *f, void *buf, size_t n, uint64_t off)
{
    ssize_t r = mmk_cache_pread(f, buf, n, off);
    if (r == -ENOMEM) {
        atomic_fetch_add_explicit(&enomem, 1, memory_order_relaxed);
        return 0;
    }
    CHECK(r > 0 && (size_t)r <= n, "pread %zu at %llu: %zd", n, (unsigned long long)off, r);
    if ((size_t)r < n) {
        CHECK((off + (uint64_t)r) % WINDOW == 0, "short pread ends inside a window");
        atomic_fetch_add_explicit(&shorts, 1, memory_order_relaxed);
    }
    return (size_t)r;
}

static void *worker(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    uint64_t rng = 1000 + id;
    uint64_t base = (uint64_t)id * SLICE; /* this thread's slice of B */
    unsigned gen = 0;                      /* what the slice holds */
    static _Thread_local uint8_t buf[LONG_MAX_LEN];
    for (int r = 0; r < ROUNDS; r++) {
        mmk_view v, x;
        size_t len = random_len(&rng, SIZE_A);
        uint64_t off = below(&rng, SIZE_A - len + 1);
        size_t blen = random_len(&rng, SLICE);
        uint64_t boff = base + below(&rng, SLICE - blen + 1);
        switch (below(&rng, 16)) {
        case 0: case 1: case 8: case 9: /* a pin of A */
            if (pin(file_a, off, len, MMK_RDONLY, &v)) {
                check_a(v.ptr, len, off, "pin");
                unpin(&v);
            }
            break;
        case 2: case 10: /* pins of both files at once */
            if (pin(file_a, off, len, MMK_RDONLY, &v)) {
                if (pin(file_b, boff, blen, MMK_RDONLY, &x)) {
                    check_b(x.ptr, blen, boff, gen, "pin of B with A");
                    unpin(&x);
                }
                check_a(v.ptr, len, off, "pin of A with B");
                unpin(&v);
            }
            break;
        case 3: case 11: case 12: { /* pread of A */
            size_t got = pread_some(file_a, buf, len, off);
            check_a(buf, got, off, "pread");
            break;
        }
        case 4: case 13: { /* pread of B */
            size_t got = pread_some(file_b, buf, blen, boff);
            check_b(buf, got, boff, gen, "pread of B");
            break;
        }
        case 5: { /* rewrite the whole slice with the next generation */
            static _Thread_local uint8_t slice[SLICE];
            for (size_t i = 0; i < SLICE; i++)
                slice[i] = byte_b(base + i, gen + 1);
            /* Other threads' pins may hold the budget: -ENOMEM, or a short
             * count at a window boundary.  Only this thread looks at its
             * slice, so write it again until all of it is the new one. */
            for (;;) {
                ssize_t w = mmk_cache_pwrite(file_b, slice, SLICE, base);
                if (w == (ssize_t)SLICE)
                    break;
                CHECK(w == -ENOMEM || (w > 0 && w < (ssize_t)SLICE), "pwrite: %zd", w);
                atomic_fetch_add_explicit(w < 0 ? &enomem : &shorts, 1, memory_order_relaxed);
            }
            gen++;
            break;
        }
        case 6: case 14: /* write through a pin: the same generation, a part of it */
            if (pin(file_b, boff, blen, MMK_RDWR, &x)) {
                uint8_t *p = x.ptr;
                check_b(p, blen, boff, gen, "write pin before");
                for (size_t i = 0; i < blen; i++)
                    p[i] = byte_b(boff + i, gen);
                unpin(&x);
            }
            break;
        default: { /* a range crossing a window boundary of A, exactly */
            uint64_t w = 1 + below(&rng, SIZE_A / WINDOW - 1);
            uint64_t from = w * WINDOW - 1 - below(&rng, 100);
            size_t n = (size_t)(w * WINDOW - from) + 1 + (size_t)below(&rng, 100);
            if (pin(file_a, from, n, MMK_RDONLY, &v)) {
                check_a(v.ptr, n, from, "pin across a boundary");
                unpin(&v);
            }
        }
        }
    }
    /* The slice holds the last generation. */
    for (uint64_t at = base; at < base + SLICE;) {
        size_t n = (size_t)(base + SLICE - at);
        if (n > sizeof buf)
            n = sizeof buf;
        size_t got = pread_some(file_b, buf, n, at);
        check_b(buf, got, at, gen, "final pread of B");
        at += got;
    }
    return (void *)(uintptr_t)gen;
}

/* Samples the budgets and syncs B while the workers run. */
static void *syncer(void *arg)
{
    unsigned long *samples = arg;
    while (!atomic_load(&done)) {
        mmk_cache_stats s;
        mmk_cache_stats_get(cache, &s);
        CHECK(s.mapped_bytes <= MAX_MAPPED, "%zu bytes mapped", s.mapped_bytes);
        CHECK(s.mappings <= MAX_MAPS, "%zu mappings", s.mappings);
        CHECK(s.pins <= 2 * THREADS + THREADS, "%zu pins", s.pins);
        if (++*samples % 64 == 0)
            CHECK(mmk_cache_sync(file_b) == 0, "sync");
        nanosleep(&(struct timespec){ .tv_nsec = SAMPLE_NS }, NULL);
    }
    return NULL;
}

static void make_file(char *path, size_t size, bool b)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(path, 4096, "%s/mmkit-stress-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    static uint8_t chunk[65536];
    for (size_t at = 0; at < size;) {
        size_t n = size - at < sizeof chunk ? size - at : sizeof chunk;
        for (size_t i = 0; i < n; i++)
            chunk[i] = b ? byte_b(at + i, 0) : byte_a(at + i);
        CHECK(pwrite(fd, chunk, n, (off_t)at) == (ssize_t)n, "write");
        at += n;
    }
    close(fd);
}

static mmk_cache_file *attach(const char *path, unsigned flags)
{
    int fd = open(path, ((flags & MMK_RDWR) ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    CHECK(fd >= 0, "open");
    mmk_cache_file *f;
    CHECK(mmk_cache_attach(cache, fd, flags, &f) == 0, "attach");
    close(fd);
    return f;
}

int main(void)
{
    static char path_a[4096], path_b[4096];
    make_file(path_a, SIZE_A, false);
    make_file(path_b, SIZE_B, true);
    CHECK(mmk_cache_new(&cache, &(mmk_cache_opts){ .window = WINDOW, .max_maps = MAX_MAPS,
                                                   .max_mapped = MAX_MAPPED }) == 0,
          "cache");
    file_a = attach(path_a, MMK_RDONLY);
    file_b = attach(path_b, MMK_RDWR);

    pthread_t t[THREADS], s;
    unsigned long samples = 0;
    CHECK(pthread_create(&s, NULL, syncer, &samples) == 0, "thread");
    for (unsigned i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) == 0, "thread");
    unsigned gens[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        void *g;
        pthread_join(t[i], &g);
        gens[i] = (unsigned)(uintptr_t)g;
    }
    atomic_store(&done, true);
    pthread_join(s, NULL);

    mmk_cache_stats st;
    mmk_cache_stats_get(cache, &st);
    CHECK(st.pins == 0, "%zu pins left", st.pins);
    CHECK(st.mapped_bytes <= MAX_MAPPED && st.mappings <= MAX_MAPS, "budget at the end");
    CHECK(st.evictions > 0, "no eviction ran");
    CHECK(st.hits > 0 && st.misses > 0, "hits %llu misses %llu",
          (unsigned long long)st.hits, (unsigned long long)st.misses);
    CHECK(mmk_cache_sync(file_b) == 0, "final sync");
    CHECK(mmk_cache_detach(file_a) == 0, "detach A");
    CHECK(mmk_cache_detach(file_b) == 0, "detach B");
    mmk_cache_free(cache);

    /* The file itself holds every slice's last generation. */
    int fd = open(path_b, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "reopen");
    static uint8_t slice[SLICE];
    for (unsigned i = 0; i < THREADS; i++) {
        uint64_t base = (uint64_t)i * SLICE;
        CHECK(pread(fd, slice, SLICE, (off_t)base) == (ssize_t)SLICE, "pread");
        for (size_t j = 0; j < SLICE; j++)
            CHECK(slice[j] == byte_b(base + j, gens[i]), "file B, slice %u byte %zu", i, j);
    }
    close(fd);
    unlink(path_a);
    unlink(path_b);
    printf("threads_cache: %d threads x %d rounds passed: %llu hits, %llu misses, "
           "%llu evictions, %lu -ENOMEM, %lu short preads, %lu budget samples, "
           "%lu bytes checked\n",
           THREADS, ROUNDS, (unsigned long long)st.hits, (unsigned long long)st.misses,
           (unsigned long long)st.evictions, atomic_load(&enomem), atomic_load(&shorts),
           samples, atomic_load(&checked));
    return 0;
}
