/* tests/stress/threads_ring.c — one producer thread and one consumer thread
 * on a ring at once (mmkit/ring.h), and a ring shared with a forked child.
 *
 *   spsc       random-sized copying and zero-copy writes and reads through
 *              rings of 1, 3 and 17 pages (and one with MMK_RING_SHARED): every
 *              byte checked against its stream position, and a running
 *              checksum of the stream compared between the two sides.
 *   overwrite  MMK_RING_OVERWRITE with a producer that never waits: every
 *              byte the consumer gets is the right one for its stream
 *              position (what it read plus mmk_ring_lost()), and at the end
 *              every byte was read or counted lost.
 *   fork       MMK_RING_SHARED between a parent and a forked child, both ways
 *              round, and in overwrite mode.
 *
 * Run under ThreadSanitizer by `make check SANITIZE=thread`: the positions'
 * acquire/release ordering is what makes the data accesses race-free.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
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

/* Bytes per run: enough for thousands of laps of the largest ring; a third
 * of that under ThreadSanitizer, where every operation costs far more. */
#ifdef UNDER_TSAN
#define STRESS_MIB 16
#else
#define STRESS_MIB 48
#endif
#define SPSC_BYTES      ((uint64_t)STRESS_MIB << 20)
#define OVERWRITE_BYTES ((uint64_t)STRESS_MIB << 20)
#define FORK_BYTES      ((uint64_t)STRESS_MIB << 19)
/* Seconds a side waits for the other before calling it a hang. */
#define PATIENCE 60

/* The byte at stream position p is pattern[p % PAT_PERIOD]; the table runs on
 * past the period so that any range of up to PAT_SLACK bytes is contiguous. */
#define PAT_PERIOD 65521u
#define PAT_SLACK  ((size_t)1 << 20)
static unsigned char pattern[PAT_PERIOD + PAT_SLACK];

static void pattern_init(void)
{
    uint64_t x = 0x243F6A8885A308D3ull;
    for (size_t i = 0; i < PAT_PERIOD; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pattern[i] = (unsigned char)(x >> 24);
    }
    for (size_t i = PAT_PERIOD; i < sizeof pattern; i++)
        pattern[i] = pattern[i - PAT_PERIOD];
}

static const unsigned char *pat_at(uint64_t p)
{
    return pattern + p % PAT_PERIOD;
}

static bool pat_ok(const void *buf, size_t n, uint64_t pos)
{
    return n <= PAT_SLACK && memcmp(buf, pat_at(pos), n) == 0;
}

/* An order-dependent checksum of a byte stream, whatever the pieces. */
static uint64_t sum_bytes(uint64_t h, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001B3ull;
    return h;
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* 1..max, mostly small (see tests/test_ring.c). */
static size_t rnd_size(uint64_t *s, size_t max)
{
    size_t lim;
    switch (rnd(s) % 16) {
    case 0: return max;
    case 1: case 2: case 3: case 4: case 5: lim = 64; break;
    case 6: case 7: case 8: case 9: case 10: lim = 4096; break;
    default: lim = max; break;
    }
    if (lim > max)
        lim = max;
    return 1 + (size_t)(rnd(s) % lim);
}

/* Spin a little, then let the other side run. */
static void backoff(unsigned *idle, time_t *deadline)
{
    if (*idle == 0)
        *deadline = time(NULL) + PATIENCE;
    if (++*idle > 64)
        sched_yield();
    if ((*idle & 1023) == 0)
        CHECK(time(NULL) <= *deadline, "no progress for %d s", PATIENCE);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- one producer, one consumer -------------------------------------------- */

typedef struct side {
    mmk_ring *r;
    uint64_t  bytes, seed, sum;
} side;

static void *spsc_producer(void *arg)
{
    side *sd = arg;
    size_t cap = mmk_ring_size(sd->r);
    uint64_t s = sd->seed, pos = 0, h = 0xcbf29ce484222325ull;
    unsigned idle = 0;
    time_t deadline = 0;
    while (pos < sd->bytes) {
        size_t n = rnd_size(&s, cap), k;
        if (n > sd->bytes - pos)
            n = (size_t)(sd->bytes - pos);
        if (rnd(&s) % 2) {
            ssize_t w = mmk_ring_write(sd->r, pat_at(pos), n);
            CHECK(w >= 0 && (size_t)w <= n, "write gave %zd", w);
            k = (size_t)w;
        } else {
            size_t room;
            unsigned char *w = mmk_ring_write_ptr(sd->r, &room);
            CHECK(room <= cap, "room %zu", room);
            k = n < room ? n : room;
            memcpy(w, pat_at(pos), k);
            mmk_ring_produce(sd->r, k);
        }
        if (k == 0) {
            backoff(&idle, &deadline);
            continue;
        }
        idle = 0;
        h = sum_bytes(h, pat_at(pos), k);
        pos += k;
    }
    sd->sum = h;
    return NULL;
}

static void *spsc_consumer(void *arg)
{
    side *sd = arg;
    size_t cap = mmk_ring_size(sd->r);
    unsigned char *buf = malloc(cap);
    CHECK(buf != NULL, "malloc");
    uint64_t s = sd->seed, pos = 0, h = 0xcbf29ce484222325ull;
    unsigned idle = 0;
    time_t deadline = 0;
    while (pos < sd->bytes) {
        size_t n = rnd_size(&s, cap), k;
        const unsigned char *data;
        if (rnd(&s) % 2) {
            ssize_t got = mmk_ring_read(sd->r, buf, n);
            CHECK(got >= 0 && (size_t)got <= n, "read gave %zd", got);
            k = (size_t)got;
            data = buf;
        } else {
            size_t avail;
            data = mmk_ring_read_ptr(sd->r, &avail);
            CHECK(avail <= cap, "avail %zu", avail);
            k = n < avail ? n : avail;
        }
        if (k == 0) {
            backoff(&idle, &deadline);
            continue;
        }
        idle = 0;
        CHECK(pat_ok(data, k, pos), "wrong bytes at stream position %llu (+%zu)",
              (unsigned long long)pos, k);
        h = sum_bytes(h, data, k);
        if (data != buf)
            mmk_ring_consume(sd->r, k);
        pos += k;
    }
    free(buf);
    sd->sum = h;
    return NULL;
}

static void spsc(size_t pages, unsigned flags, uint64_t seed)
{
    mmk_ring *r;
    int rc = mmk_ring_new(&r, pages * mmk_page_size(), flags);
    CHECK(rc == 0, "mmk_ring_new: %s", mmk_strerror(rc));
    double t0 = now();
    side prod = { r, SPSC_BYTES, seed, 0 }, cons = { r, SPSC_BYTES, seed * 7 + 1, 0 };
    pthread_t tp, tc;
    CHECK(pthread_create(&tc, NULL, spsc_consumer, &cons) == 0, "thread");
    CHECK(pthread_create(&tp, NULL, spsc_producer, &prod) == 0, "thread");
    pthread_join(tp, NULL);
    pthread_join(tc, NULL);
    CHECK(prod.sum == cons.sum, "checksums differ: produced %016llx, consumed %016llx",
          (unsigned long long)prod.sum, (unsigned long long)cons.sum);
    CHECK(mmk_ring_readable(r) == 0, "left over");
    mmk_ring_free(r);
    printf("threads_ring: spsc %2zu pages%s: %llu MiB, checksum %016llx, %.2f s\n", pages,
           flags & MMK_RING_SHARED ? " (shared)" : "",
           (unsigned long long)(SPSC_BYTES >> 20), (unsigned long long)prod.sum, now() - t0);
}

/* ---- overwrite mode -------------------------------------------------------- */

typedef struct ow {
    mmk_ring   *r;
    uint64_t    bytes;
    atomic_bool done;
    uint64_t    got, zero_copy_checked;
} ow;

static void *ow_producer(void *arg)
{
    ow *o = arg;
    size_t cap = mmk_ring_size(o->r);
    uint64_t s = 5, pos = 0;
    while (pos < o->bytes) {
        size_t n = rnd_size(&s, 2 * cap);
        if (n > o->bytes - pos)
            n = (size_t)(o->bytes - pos);
        ssize_t w = mmk_ring_write(o->r, pat_at(pos), n);
        CHECK(w == (ssize_t)n, "overwrite-mode write gave %zd of %zu", w, n);
        pos += n;
        if (rnd(&s) % 8 == 0)
            sched_yield(); /* let the consumer catch up now and then */
    }
    atomic_store(&o->done, true);
    return NULL;
}

static void *ow_consumer(void *arg)
{
    ow *o = arg;
    size_t cap = mmk_ring_size(o->r);
    unsigned char *buf = malloc(cap);
    CHECK(buf != NULL, "malloc");
    uint64_t s = 9;
    for (;;) {
        bool done = atomic_load(&o->done);
        size_t n = rnd_size(&s, cap);
#ifndef UNDER_TSAN
        if (rnd(&s) % 4 == 0) {
            /* Zero copy: the producer may overwrite what we hold; whatever
             * it overwrote shows as growth of mmk_ring_lost by consume. */
            size_t avail;
            const unsigned char *p = mmk_ring_read_ptr(o->r, &avail);
            uint64_t lost0 = mmk_ring_lost(o->r);
            uint64_t at = o->got + lost0;
            size_t k = n < avail ? n : avail;
            memcpy(buf, p, k);
            mmk_ring_consume(o->r, k);
            uint64_t bad = mmk_ring_lost(o->r) - lost0;
            if (bad < k) {
                CHECK(pat_ok(buf + bad, k - bad, at + bad),
                      "zero copy: bytes after the first %llu overwritten ones are wrong",
                      (unsigned long long)bad);
                o->zero_copy_checked += k - bad;
                o->got += k - bad;
            }
            if (k == 0) {
                if (done)
                    break;
                sched_yield();
            }
            continue;
        }
#endif
        ssize_t k = mmk_ring_read(o->r, buf, n);
        CHECK(k >= 0 && (size_t)k <= n, "read gave %zd", k);
        if (k == 0) {
            if (done)
                break;
            sched_yield();
            continue;
        }
        /* The stream position of buf[0]: everything before it was read or lost. */
        uint64_t at = o->got + mmk_ring_lost(o->r);
        CHECK(pat_ok(buf, (size_t)k, at), "overwrite: wrong bytes at stream position %llu",
              (unsigned long long)at);
        o->got += (uint64_t)k;
    }
    free(buf);
    return NULL;
}

static void overwrite(size_t pages, unsigned flags)
{
    mmk_ring *r;
    int rc = mmk_ring_new(&r, pages * mmk_page_size(), MMK_RING_OVERWRITE | flags);
    CHECK(rc == 0, "mmk_ring_new: %s", mmk_strerror(rc));
    double t0 = now();
    ow o = { .r = r, .bytes = OVERWRITE_BYTES };
    atomic_init(&o.done, false);
    pthread_t tp, tc;
    CHECK(pthread_create(&tc, NULL, ow_consumer, &o) == 0, "thread");
    CHECK(pthread_create(&tp, NULL, ow_producer, &o) == 0, "thread");
    pthread_join(tp, NULL);
    pthread_join(tc, NULL);
    uint64_t lost = mmk_ring_lost(r);
    CHECK(o.got + lost == o.bytes, "read %llu + lost %llu != written %llu",
          (unsigned long long)o.got, (unsigned long long)lost, (unsigned long long)o.bytes);
    CHECK(o.got > 0, "the consumer got nothing");
    mmk_ring_free(r);
    printf("threads_ring: overwrite %2zu pages: %llu MiB written, %llu read (%llu zero-copy), "
           "%llu lost, %.2f s\n", pages, (unsigned long long)(o.bytes >> 20),
           (unsigned long long)o.got, (unsigned long long)o.zero_copy_checked,
           (unsigned long long)lost, now() - t0);
}

/* ---- a parent and a forked child ---------------------------------------------- */

/* Push `bytes` of pattern, or pull and check them (overwrite mode: with the
 * losses accounted).  Returns the checksum of what went through. */
static uint64_t fork_side(mmk_ring *r, bool produce, uint64_t bytes, uint64_t seed)
{
    size_t cap = mmk_ring_size(r);
    bool ow_mode = mmk_ring_flags(r) & MMK_RING_OVERWRITE;
    unsigned char *buf = malloc(cap);
    CHECK(buf != NULL, "malloc");
    uint64_t s = seed, pos = 0, h = 0xcbf29ce484222325ull;
    unsigned idle = 0;
    time_t deadline = 0;
    while (pos < bytes) {
        size_t n = rnd_size(&s, cap);
        if (n > bytes - pos)
            n = (size_t)(bytes - pos);
        ssize_t k;
        if (produce) {
            k = mmk_ring_write(r, pat_at(pos), n);
            if (k > 0)
                h = sum_bytes(h, pat_at(pos), (size_t)k);
        } else {
            k = mmk_ring_read(r, buf, n);
            if (k > 0) {
                uint64_t at = ow_mode ? pos + mmk_ring_lost(r) : pos;
                CHECK(pat_ok(buf, (size_t)k, at), "fork: wrong bytes at %llu",
                      (unsigned long long)at);
                h = sum_bytes(h, buf, (size_t)k);
            }
        }
        CHECK(k >= 0, "fork: %s", mmk_strerror((int)k));
        if (k == 0) {
            if (ow_mode && !produce && mmk_ring_readable(r) == 0 &&
                pos + mmk_ring_lost(r) >= bytes)
                break;
            backoff(&idle, &deadline);
            continue;
        }
        idle = 0;
        pos += (uint64_t)k;
        if (ow_mode && !produce && pos + mmk_ring_lost(r) >= bytes)
            break;
    }
    free(buf);
    return h;
}

static void fork_pair(size_t pages, unsigned flags, bool parent_produces)
{
    mmk_ring *r;
    int rc = mmk_ring_new(&r, pages * mmk_page_size(), MMK_RING_SHARED | flags);
    CHECK(rc == 0, "mmk_ring_new: %s", mmk_strerror(rc));
    double t0 = now();
    int fds[2];
    CHECK(pipe(fds) == 0, "pipe");
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(fds[0]);
        uint64_t h = fork_side(r, !parent_produces, FORK_BYTES, 3);
        ssize_t w = write(fds[1], &h, sizeof h);
        mmk_ring_free(r);
        _exit(w == (ssize_t)sizeof h ? 0 : 1);
    }
    close(fds[1]);
    uint64_t mine = fork_side(r, parent_produces, FORK_BYTES, 3), theirs = 0;
    ssize_t got = read(fds[0], &theirs, sizeof theirs);
    close(fds[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (status %#x)", status);
    CHECK(got == (ssize_t)sizeof theirs, "no checksum from the child");
    if (!(flags & MMK_RING_OVERWRITE))
        CHECK(mine == theirs, "fork: checksums differ");
    else
        CHECK(mmk_ring_readable(r) == 0, "overwrite fork: left over");
    mmk_ring_free(r);
    printf("threads_ring: fork %2zu pages%s, %s produces: passed, %.2f s\n", pages,
           flags & MMK_RING_OVERWRITE ? " (overwrite)" : "",
           parent_produces ? "parent" : "child", now() - t0);
}

int main(void)
{
    double t0 = now();
    pattern_init();
    spsc(1, 0, 1);
    spsc(3, 0, 2);
    spsc(17, 0, 3);
    spsc(3, MMK_RING_SHARED, 4);
    overwrite(1, 0);
    overwrite(3, MMK_RING_SHARED);
    overwrite(17, 0);
    fork_pair(1, 0, true);
    fork_pair(3, 0, false);
    fork_pair(17, 0, true);
    fork_pair(3, MMK_RING_OVERWRITE, true);
    printf("threads_ring: passed in %.1f s\n", now() - t0);
    return 0;
}
