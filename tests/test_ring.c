/* tests/test_ring.c — mirrored ring buffers (mmkit/ring.h): geometry, the
 * mirror, the memory object (0600, linked nowhere, the shm fallback), every
 * call against a reference queue over millions of random operations,
 * overwrite mode, 64-bit positions past 4 GiB, a ring shared with a forked
 * child, and failures injected into every system call of mmk_ring_new.
 * (The two-thread tests are in tests/stress/threads_ring.c, which also runs
 * under ThreadSanitizer.) */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mmkit.h>

#include "inject.h"
#include "os/os.h"
#include "testutil.h"

static void ring_fini(void)
{
    inject_reset();
    tu_teardown();
    if (tu_leaks()) {
        fprintf(stderr, "memory leaked: see the LeakSanitizer report above\n");
        abort();
    }
}

TestSuite(ring, .init = tu_setup, .fini = ring_fini, .timeout = 120);

#define PS ((size_t)mmk_page_size())

/* ---- helpers ------------------------------------------------------------ */

/* An assertion for hot loops: Criterion reports every assertion it
 * evaluates, passing ones too, which costs microseconds; this one only
 * reaches Criterion when it fails.  `cond` must have no side effects. */
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond))                                                            \
            cr_assert(cond, __VA_ARGS__);                                       \
    } while (0)
#define CHECKEQ(a, b, ...) CHECK((a) == (b), __VA_ARGS__)
#define CHECKNULL(a, ...)  CHECK((a) == NULL, __VA_ARGS__)
#define CHECKNN(a, ...)    CHECK((a) != NULL, __VA_ARGS__)

static mmk_ring *ring_or_die(size_t size, unsigned flags)
{
    mmk_ring *r = NULL;
    int rc = mmk_ring_new(&r, size, flags);
    cr_assert_eq(rc, 0, "mmk_ring_new(%zu, %#x): %s", size, flags, mmk_strerror(rc));
    cr_assert_not_null(r);
    return r;
}

/* xorshift64*: fixed seeds, so failures repeat. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static size_t rnd_below(uint64_t *s, size_t n)
{
    return n ? (size_t)(rnd(s) % n) : 0;
}

/* A size from 1 to max, mostly small: a third up to 64 bytes, a third up to a
 * page, and the rest anywhere up to max, with max itself now and then. */
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
    return 1 + rnd_below(s, lim);
}

/* The byte at stream position p is pattern[p % PAT_PERIOD], and the table
 * runs on past the period, so the bytes of any range [p, p + n) with
 * n <= PAT_SLACK are the contiguous pattern + p % PAT_PERIOD: writers copy
 * from there, readers memcmp against it. */
#define PAT_PERIOD 65521u            /* prime: no alignment with ring sizes */
#define PAT_SLACK  ((size_t)1 << 20) /* longest range used */
static unsigned char *pattern;

static const unsigned char *pat_at(uint64_t p)
{
    if (!pattern) {
        pattern = malloc(PAT_PERIOD + PAT_SLACK);
        cr_assert_not_null(pattern);
        for (size_t i = 0; i < PAT_PERIOD + PAT_SLACK; i++)
            pattern[i] = tu_pattern_byte(i % PAT_PERIOD, 7);
    }
    return pattern + p % PAT_PERIOD;
}

static bool pat_ok(const void *buf, size_t n, uint64_t pos)
{
    return n <= PAT_SLACK && memcmp(buf, pat_at(pos), n) == 0;
}

/* The memory-object names this process may have left in /dev/shm. */
static int shm_leftovers(void)
{
    DIR *d = opendir("/dev/shm");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "mmkit-ring-", 11) == 0)
            n++;
    closedir(d);
    return n;
}

/* ---- creation and geometry ---------------------------------------------- */

Test(ring, capacity_is_rounded_up_to_granularity)
{
    const size_t sizes[] = { 1, PS - 1, PS, PS + 1, 3 * PS, 17 * PS - 5, 100000 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        mmk_ring *r = ring_or_die(sizes[i], 0);
        size_t g = mmk_map_granularity();
        size_t want = (sizes[i] + g - 1) / g * g;
        cr_expect_eq(mmk_ring_size(r), want, "size %zu: capacity %zu, want %zu", sizes[i],
                     mmk_ring_size(r), want);
        cr_expect_eq(mmk_ring_readable(r), 0);
        cr_expect_eq(mmk_ring_writable(r), want);
        cr_expect_eq(mmk_ring_flags(r), 0);
        cr_expect_eq(mmk_ring_lost(r), 0);
        mmk_ring_free(r);
    }
    mmk_ring *r = ring_or_die(PS, MMK_RING_OVERWRITE | MMK_RING_SHARED);
    cr_expect_eq(mmk_ring_flags(r), MMK_RING_OVERWRITE | MMK_RING_SHARED);
    cr_expect_eq(mmk_ring_size(r), PS);
    mmk_ring_free(r);
}

Test(ring, bad_arguments)
{
    mmk_ring *r = (mmk_ring *)&r;
    cr_expect_eq(mmk_ring_new(NULL, PS, 0), -EINVAL);
    cr_expect_eq(mmk_ring_new(&r, 0, 0), -EINVAL);
    cr_expect_null(r, "*out is NULL on error");
    r = (mmk_ring *)&r;
    cr_expect_eq(mmk_ring_new(&r, PS, 1u << 7), -EINVAL);
    cr_expect_null(r);
    cr_expect_eq(mmk_ring_new(&r, SIZE_MAX, 0), -ENOMEM);
    cr_expect_eq(mmk_ring_new(&r, SIZE_MAX / 2, 0), -ENOMEM);
    cr_expect_null(r);

    /* NULL rings: harmless. */
    size_t n = 99;
    cr_expect_eq(mmk_ring_size(NULL), 0);
    cr_expect_eq(mmk_ring_flags(NULL), 0);
    cr_expect_eq(mmk_ring_readable(NULL), 0);
    cr_expect_eq(mmk_ring_writable(NULL), 0);
    cr_expect_eq(mmk_ring_lost(NULL), 0);
    cr_expect_null(mmk_ring_write_ptr(NULL, &n));
    cr_expect_eq(n, 0);
    n = 99;
    cr_expect_null(mmk_ring_read_ptr(NULL, &n));
    cr_expect_eq(n, 0);
    cr_expect_null(mmk_ring_reserve(NULL, 1));
    mmk_ring_produce(NULL, 1);
    mmk_ring_consume(NULL, 1);
    mmk_ring_clear(NULL);
    mmk_ring_free(NULL);
    char c = 0;
    cr_expect_eq(mmk_ring_write(NULL, &c, 1), -EINVAL);
    cr_expect_eq(mmk_ring_read(NULL, &c, 1), -EINVAL);
    cr_expect_eq(mmk_ring_peek(NULL, &c, 1), -EINVAL);

    r = ring_or_die(PS, 0);
    cr_expect_eq(mmk_ring_write(r, NULL, 1), -EINVAL);
    cr_expect_eq(mmk_ring_read(r, NULL, 1), -EINVAL);
    cr_expect_eq(mmk_ring_peek(r, NULL, 1), -EINVAL);
    cr_expect_eq(mmk_ring_write(r, NULL, 0), 0);
    cr_expect_eq(mmk_ring_read(r, NULL, 0), 0);
    mmk_ring_free(r);
}

/* The byte after the last is the first again, through either copy. */
static void check_mirror(mmk_ring *r)
{
    size_t cap = mmk_ring_size(r), n;
    /* Move both positions to 10 bytes before the end of the first copy. */
    mmk_ring_produce(r, cap - 10);
    mmk_ring_consume(r, cap - 10);
    unsigned char *w = mmk_ring_write_ptr(r, &n);
    cr_assert_eq(n, cap, "all the space is free and contiguous");
    for (size_t i = 0; i < cap; i++)
        w[i] = (unsigned char)(i * 7 + 1);
    mmk_ring_produce(r, cap);
    const unsigned char *p = mmk_ring_read_ptr(r, &n);
    cr_assert_eq(n, cap);
    cr_assert_eq(p, w);
    const unsigned char *first = p - (cap - 10); /* data[0] */
    cr_expect_eq(first[0], p[10], "data[0] and data[cap] are one byte");
    cr_expect_eq(first[cap - 11], p[cap - 1]);
    w[10] = 0xAB;
    cr_expect_eq(first[0], 0xAB, "a store through the mirror shows in the first copy");
    char perms[5];
    cr_assert_eq(tu_mapping_perms(first, perms), 0);
    cr_expect_str_eq(perms, "rw-s");
    cr_assert_eq(tu_mapping_perms(first + cap, perms), 0);
    cr_expect_str_eq(perms, "rw-s");
    mmk_ring_consume(r, cap);
}

Test(ring, data_is_mapped_twice_back_to_back)
{
    const size_t pages[] = { 1, 3, 17 };
    for (size_t i = 0; i < 3; i++) {
        mmk_ring *r = ring_or_die(pages[i] * PS, 0);
        check_mirror(r);
        mmk_ring_free(r);
        r = ring_or_die(pages[i] * PS, MMK_RING_SHARED);
        check_mirror(r);
        mmk_ring_free(r);
    }
}

/* What the memory object looked like when it was mapped. */
static struct { int seen; mode_t mode; nlink_t nlink; bool regular; } obj;

static void *rec_mmap(void *a, size_t l, int p, int f, int fd, off_t o)
{
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0) {
        obj.seen++;
        obj.mode = st.st_mode & 07777;
        obj.nlink = st.st_nlink;
        obj.regular = S_ISREG(st.st_mode);
    }
    return mmk__sys_default.mmap(a, l, p, f, fd, o);
}

static void check_object(unsigned flags)
{
    memset(&obj, 0, sizeof obj);
    mmk__sys.mmap = rec_mmap;
    int fds = tu_open_fds(), maps = tu_mapping_count();
    mmk_ring *r = ring_or_die(3 * PS, flags);
    cr_expect_eq(obj.seen, 2, "two mappings of the object");
    cr_expect_eq(obj.mode, 0600, "mode %o", (unsigned)obj.mode);
    cr_expect_eq(obj.nlink, 0, "the object has no name in any filesystem");
    cr_expect(obj.regular);
    cr_expect_eq(tu_open_fds(), fds, "no descriptor kept");
    cr_expect_eq(shm_leftovers(), 0);
    check_mirror(r);
    mmk_ring_free(r);
    cr_expect_eq(tu_mapping_count(), maps, "everything unmapped");
    mmk__os_reset();
}

Test(ring, memory_object_is_private_and_unnamed)
{
    check_object(0);
    check_object(MMK_RING_SHARED | MMK_RING_OVERWRITE);
}

Test(ring, shm_fallback_where_memfd_is_missing)
{
    const int errs[] = { ENOSYS, EPERM, EACCES };
    for (size_t i = 0; i < 3; i++) {
        inject_install();
        inject_fail_always(INJ_MEMFD_CREATE, errs[i]);
        check_object(0);
        inject_install();
        inject_fail_always(INJ_MEMFD_CREATE, errs[i]);
        mmk_ring *r = ring_or_die(PS, MMK_RING_SHARED);
        cr_expect_eq(inject_count(INJ_SHM_OPEN), 1);
        cr_expect_eq(inject_count(INJ_SHM_UNLINK), 1, "the name is removed at once");
        mmk_ring_free(r);
        inject_reset();
    }
    cr_expect_eq(shm_leftovers(), 0);
}

Test(ring, memfd_without_noexec_seal)
{
    /* Kernels before 6.3 reject MFD_NOEXEC_SEAL with EINVAL. */
    inject_install();
    inject_fail(INJ_MEMFD_CREATE, 1, EINVAL);
    mmk_ring *r = ring_or_die(PS, 0);
    cr_expect_eq(inject_count(INJ_MEMFD_CREATE), 2);
    cr_expect_eq(inject_count(INJ_SHM_OPEN), 0);
    check_mirror(r);
    mmk_ring_free(r);
}

/* The last name shm_open was asked for, to clean up after a failed unlink;
 * the call goes on to the entry installed before (the injecting one). */
static char last_shm[128];
static int (*inner_shm_open)(const char *name, int f, mode_t m);
static int rec_shm_open(const char *name, int f, mode_t m)
{
    snprintf(last_shm, sizeof last_shm, "%s", name);
    return inner_shm_open(name, f, m);
}

Test(ring, every_failure_is_reported_and_cleaned_up)
{
    struct { enum inject_call call; unsigned long nth; int err; bool shm; } cases[] = {
        { INJ_MEMFD_CREATE, 1, EMFILE, false },
        { INJ_MEMFD_CREATE, 1, ENOMEM, false },
        { INJ_FCHMOD, 1, EPERM, false },
        { INJ_FTRUNCATE, 1, ENOSPC, false },
        { INJ_MMAP, 1, ENOMEM, false },
        { INJ_MMAP, 2, ENOMEM, false },
        { INJ_MMAP, 3, EAGAIN, false },
        { INJ_SHM_OPEN, 1, EMFILE, true },
        { INJ_SHM_OPEN, 1, EACCES, true },
        { INJ_SHM_UNLINK, 1, EACCES, true },
        { INJ_FTRUNCATE, 1, ENOSPC, true },
        { INJ_FALLOCATE, 1, ENOSPC, true }, /* a full /dev/shm: an error, not SIGBUS */
        { INJ_MMAP, 2, ENOMEM, true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (unsigned shared = 0; shared < 2; shared++) {
            int fds = tu_open_fds(), maps = tu_mapping_count();
            inject_install();
            inner_shm_open = mmk__sys.shm_open;
            mmk__sys.shm_open = rec_shm_open;
            if (cases[i].shm)
                inject_fail_always(INJ_MEMFD_CREATE, ENOSYS);
            inject_fail(cases[i].call, cases[i].nth, cases[i].err);
            mmk_ring *r = (mmk_ring *)&r;
            int rc = mmk_ring_new(&r, 2 * PS, shared ? MMK_RING_SHARED : 0);
            cr_expect_eq(rc, -cases[i].err, "%s #%lu: %d (%s)", inject_name(cases[i].call),
                         cases[i].nth, rc, mmk_strerror(rc));
            cr_expect_null(r);
            inject_reset();
            if (cases[i].call == INJ_SHM_UNLINK)
                shm_unlink(last_shm); /* we could not, so the test does */
            cr_expect_eq(tu_open_fds(), fds, "%s: descriptors", inject_name(cases[i].call));
            cr_expect_eq(tu_mapping_count(), maps, "%s: mappings", inject_name(cases[i].call));
        }
    }
    cr_expect_eq(shm_leftovers(), 0);
}

Test(ring, shm_pages_are_allocated_up_front)
{
    inject_install();
    inject_fail_always(INJ_MEMFD_CREATE, ENOSYS);
    mmk_ring *r = ring_or_die(3 * PS, 0);
    cr_expect_eq(inject_count(INJ_FALLOCATE), 1);
    mmk_ring_free(r);
    /* Where fallocate is missing, posix_fallocate; where neither can, the
     * ring is made all the same. */
    inject_fail_always(INJ_FALLOCATE, EOPNOTSUPP);
    r = ring_or_die(PS, 0);
    cr_expect_eq(inject_count(INJ_POSIX_FALLOCATE), 1);
    mmk_ring_free(r);
    inject_fail_always(INJ_POSIX_FALLOCATE, EOPNOTSUPP);
    r = ring_or_die(PS, 0);
    mmk_ring_free(r);
    inject_reset();
    /* A memfd is not allocated ahead. */
    inject_install();
    r = ring_or_die(PS, 0);
    cr_expect_eq(inject_count(INJ_FALLOCATE), 0);
    mmk_ring_free(r);
}

Test(ring, shm_name_collision_is_retried)
{
    inject_install();
    inject_fail_always(INJ_MEMFD_CREATE, ENOSYS);
    inject_fail(INJ_SHM_OPEN, 1, EEXIST);
    mmk_ring *r = ring_or_die(PS, 0);
    cr_expect_eq(inject_count(INJ_SHM_OPEN), 2);
    mmk_ring_free(r);
    inject_reset();
}

Test(ring, many_rings_at_once)
{
    enum { N = 200 };
    static mmk_ring *rs[N];
    int fds = tu_open_fds(), maps = tu_mapping_count();
    for (int i = 0; i < N; i++) {
        rs[i] = ring_or_die((size_t)(i % 5 + 1) * PS, i % 2 ? MMK_RING_SHARED : 0);
        cr_assert_eq(mmk_ring_write(rs[i], &i, sizeof i), (ssize_t)sizeof i);
    }
    cr_expect_eq(tu_open_fds(), fds);
    for (int i = 0; i < N; i++) {
        int v = -1;
        cr_expect_eq(mmk_ring_read(rs[i], &v, sizeof v), (ssize_t)sizeof v);
        cr_expect_eq(v, i, "each ring has its own memory");
        mmk_ring_free(rs[i]);
    }
    cr_expect_eq(tu_mapping_count(), maps);
}

/* ---- the calls one by one -------------------------------------------------- */

Test(ring, zero_copy_produce_and_consume)
{
    mmk_ring *r = ring_or_die(PS, 0);
    size_t cap = mmk_ring_size(r), n;
    unsigned char *w = mmk_ring_write_ptr(r, &n);
    cr_assert_not_null(w);
    cr_expect_eq(n, cap);
    memcpy(w, "hello", 5);
    cr_expect_eq(mmk_ring_readable(r), 0, "nothing visible before produce");
    mmk_ring_produce(r, 5);
    cr_expect_eq(mmk_ring_readable(r), 5);
    cr_expect_eq(mmk_ring_writable(r), cap - 5);
    const char *p = mmk_ring_read_ptr(r, &n);
    cr_expect_eq(n, 5);
    cr_expect_eq(memcmp(p, "hello", 5), 0);
    mmk_ring_consume(r, 2);
    p = mmk_ring_read_ptr(r, &n);
    cr_expect_eq(n, 3);
    cr_expect_eq(memcmp(p, "llo", 3), 0);
    w = mmk_ring_write_ptr(r, &n);
    cr_expect_eq(n, cap - 3);
    cr_expect_eq((const char *)w, p + 3, "free space starts where the data ends");

    /* Too much is clamped, never corrupts the positions. */
    mmk_ring_produce(r, cap * 2);
    cr_expect_eq(mmk_ring_readable(r), cap);
    cr_expect_eq(mmk_ring_writable(r), 0);
    w = mmk_ring_write_ptr(r, &n);
    cr_expect_not_null(w, "a full ring still gives a valid pointer");
    cr_expect_eq(n, 0);
    mmk_ring_consume(r, cap * 2);
    cr_expect_eq(mmk_ring_readable(r), 0);
    p = mmk_ring_read_ptr(r, &n);
    cr_expect_not_null(p);
    cr_expect_eq(n, 0);
    mmk_ring_produce(r, 0);
    mmk_ring_consume(r, 0);
    cr_expect_eq(mmk_ring_readable(r), 0);
    /* NULL n is tolerated. */
    cr_expect_not_null(mmk_ring_write_ptr(r, NULL));
    cr_expect_not_null(mmk_ring_read_ptr(r, NULL));
    mmk_ring_free(r);
}

Test(ring, copying_write_read_and_peek)
{
    mmk_ring *r = ring_or_die(PS, 0);
    size_t cap = mmk_ring_size(r);
    unsigned char *src = malloc(2 * cap), *dst = malloc(2 * cap);
    tu_pattern(src, 2 * cap, 0, 3);
    cr_expect_eq(mmk_ring_read(r, dst, 10), 0, "empty: 0");
    cr_expect_eq(mmk_ring_write(r, src, 100), 100);
    cr_expect_eq(mmk_ring_peek(r, dst, 2 * cap), 100);
    cr_expect_eq(memcmp(dst, src, 100), 0);
    cr_expect_eq(mmk_ring_readable(r), 100, "peek leaves the bytes");
    cr_expect_eq(mmk_ring_write(r, src + 100, 2 * cap), (ssize_t)(cap - 100),
                 "a write takes what fits");
    cr_expect_eq(mmk_ring_write(r, src, 1), 0, "full: 0");
    cr_expect_eq(mmk_ring_read(r, dst, 40), 40);
    cr_expect_eq(memcmp(dst, src, 40), 0);
    cr_expect_eq(mmk_ring_write(r, src + cap, 40), 40, "the write wraps");
    cr_expect_eq(mmk_ring_read(r, dst, 2 * cap), (ssize_t)cap);
    cr_expect_eq(memcmp(dst, src + 40, cap), 0, "the read wraps");
    cr_expect_eq(mmk_ring_read(r, dst, 1), 0);
    free(src);
    free(dst);
    mmk_ring_free(r);
}

Test(ring, reserve_without_overwrite)
{
    mmk_ring *r = ring_or_die(PS, 0);
    size_t cap = mmk_ring_size(r);
    cr_expect_null(mmk_ring_reserve(r, cap + 1));
    unsigned char *w = mmk_ring_reserve(r, cap);
    cr_assert_not_null(w);
    memset(w, 'a', 10);
    mmk_ring_produce(r, 10);
    cr_expect_null(mmk_ring_reserve(r, cap - 9), "only cap - 10 free");
    w = mmk_ring_reserve(r, cap - 10);
    cr_expect_not_null(w);
    cr_expect_not_null(mmk_ring_reserve(r, 0));
    cr_expect_eq(mmk_ring_readable(r), 10, "reserve publishes nothing");
    mmk_ring_free(r);
}

Test(ring, clear_empties_and_positions_go_on)
{
    const unsigned flag_sets[] = { 0, MMK_RING_SHARED, MMK_RING_OVERWRITE };
    for (size_t f = 0; f < 3; f++) {
        mmk_ring *r = ring_or_die(PS, flag_sets[f]);
        size_t cap = mmk_ring_size(r);
        unsigned char buf[300];
        for (int i = 0; i < 50; i++) {
            tu_pattern(buf, sizeof buf, (uint64_t)i * 1000, 5);
            cr_assert_eq(mmk_ring_write(r, buf, sizeof buf), (ssize_t)sizeof buf);
            if (i % 3 == 0) {
                mmk_ring_clear(r);
                cr_expect_eq(mmk_ring_readable(r), 0);
                cr_expect_eq(mmk_ring_writable(r), cap);
                continue;
            }
            unsigned char got[300];
            cr_assert_eq(mmk_ring_read(r, got, sizeof got), (ssize_t)sizeof got);
            cr_expect_eq(memcmp(got, buf, sizeof got), 0);
        }
        cr_expect_eq(mmk_ring_lost(r), 0, "clearing is not losing");
        mmk_ring_free(r);
    }
}

/* ---- random operations against a reference queue ---------------------------- */

/* The reference: a conventional circular queue that copies in two pieces. */
typedef struct refq {
    unsigned char *b;
    size_t cap, start, len;
} refq;

static void ref_push(refq *q, const unsigned char *src, size_t n)
{
    size_t at = (q->start + q->len) % q->cap;
    size_t first = n < q->cap - at ? n : q->cap - at;
    memcpy(q->b + at, src, first);
    memcpy(q->b, src + first, n - first);
    q->len += n;
}

static bool ref_equal(const refq *q, const unsigned char *got, size_t n)
{
    size_t first = n < q->cap - q->start ? n : q->cap - q->start;
    return memcmp(q->b + q->start, got, first) == 0 &&
           memcmp(q->b, got + first, n - first) == 0;
}

static void ref_pop(refq *q, size_t n)
{
    q->start = (q->start + n) % q->cap;
    q->len -= n;
}

static void random_ops(size_t pages, long ops, unsigned flags, uint64_t seed)
{
    mmk_ring *r = ring_or_die(pages * PS, flags);
    size_t cap = mmk_ring_size(r);
    CHECKEQ(cap, pages * PS);
    refq q = { malloc(cap), cap, 0, 0 };
    /* Source bytes: random, taken from a random offset for each write. */
    unsigned char *src = malloc(2 * cap), *dst = malloc(cap);
    uint64_t s = seed;
    for (size_t i = 0; i < 2 * cap; i++)
        src[i] = (unsigned char)rnd(&s);
    uint64_t moved = 0;
    for (long op = 0; op < ops; op++) {
        size_t room = cap - q.len, n = rnd_size(&s, cap), k = 0;
        const unsigned char *from = src + rnd_below(&s, cap);
        switch (rnd(&s) % 8) {
        case 0: case 1: { /* copying write */
            if ((flags & MMK_RING_OVERWRITE) && n > room)
                n = room; /* would drop: not what this test is about */
            ssize_t w = mmk_ring_write(r, from, n);
            k = n < room ? n : room;
            CHECKEQ(w, (ssize_t)k, "op %ld: write %zu with %zu free gave %zd", op, n,
                         room, w);
            ref_push(&q, from, k);
            break;
        }
        case 2: { /* zero copy: all the free space, produce part of it */
            size_t got;
            unsigned char *w = mmk_ring_write_ptr(r, &got);
            CHECKEQ(got, room, "op %ld: write_ptr %zu, want %zu", op, got, room);
            k = n < room ? n : room;
            memcpy(w, from, k);
            mmk_ring_produce(r, k);
            ref_push(&q, from, k);
            break;
        }
        case 3: { /* reserve exactly n */
            if ((flags & MMK_RING_OVERWRITE) && n > room)
                n = room;
            unsigned char *w = mmk_ring_reserve(r, n);
            if (n > room) {
                CHECKNULL(w, "op %ld: reserve %zu with %zu free", op, n, room);
                break;
            }
            CHECKNN(w, "op %ld: reserve %zu with %zu free", op, n, room);
            memcpy(w, from, n);
            mmk_ring_produce(r, n);
            ref_push(&q, from, n);
            break;
        }
        case 4: case 5: { /* copying read */
            ssize_t got = mmk_ring_read(r, dst, n);
            k = n < q.len ? n : q.len;
            CHECKEQ(got, (ssize_t)k, "op %ld: read %zu of %zu gave %zd", op, n, q.len,
                         got);
            CHECK(ref_equal(&q, dst, k), "op %ld: read data differ", op);
            ref_pop(&q, k);
            break;
        }
        case 6: { /* zero copy: all the data, consume part of it */
            size_t got;
            const unsigned char *p = mmk_ring_read_ptr(r, &got);
            CHECKEQ(got, q.len, "op %ld: read_ptr %zu, want %zu", op, got, q.len);
            k = n < q.len ? n : q.len;
            CHECK(ref_equal(&q, p, q.len), "op %ld: read_ptr data differ", op);
            mmk_ring_consume(r, k);
            ref_pop(&q, k);
            break;
        }
        default: { /* peek, and now and then clear */
            if (rnd(&s) % 64 == 0) {
                mmk_ring_clear(r);
                ref_pop(&q, q.len);
                break;
            }
            size_t want = n < q.len ? n : q.len;
            ssize_t got = mmk_ring_peek(r, dst, n);
            CHECKEQ(got, (ssize_t)want, "op %ld: peek %zu of %zu gave %zd", op, n, q.len, got);
            CHECK(ref_equal(&q, dst, want), "op %ld: peek data differ", op);
            break;
        }
        }
        moved += k;
        CHECKEQ(mmk_ring_readable(r), q.len, "op %ld", op);
        CHECKEQ(mmk_ring_writable(r), cap - q.len, "op %ld", op);
    }
    cr_expect_eq(mmk_ring_lost(r), 0);
    cr_log_info("%zu pages: %ld ops, %llu bytes moved", pages, ops, (unsigned long long)moved);
    cr_expect_gt(moved, (uint64_t)ops * 16, "the test moved data");
    free(q.b);
    free(src);
    free(dst);
    mmk_ring_free(r);
}

Test(ring, random_ops_1_page) { random_ops(1, 1500000, 0, 1); }
Test(ring, random_ops_3_pages) { random_ops(3, 1500000, MMK_RING_SHARED, 2); }
Test(ring, random_ops_17_pages) { random_ops(17, 1000000, 0, 3); }
/* Overwrite mode, never asked to write more than is free, behaves the same. */
Test(ring, random_ops_overwrite_without_drops) { random_ops(3, 500000, MMK_RING_OVERWRITE, 4); }

/* ---- 64-bit positions --------------------------------------------------------- */

Test(ring, positions_past_4_gib, .timeout = 120)
{
    /* 5 GiB through a 3-page ring in pieces of varying sizes, each piece
     * stamped at both ends with its stream position. */
    mmk_ring *r = ring_or_die(3 * PS, 0);
    size_t cap = mmk_ring_size(r);
    uint64_t total = 5ull << 30, pos = 0;
    size_t i = 0;
    while (pos < total) {
        size_t k = cap - 8 * (i++ % 97), n;
        unsigned char *w = mmk_ring_write_ptr(r, &n);
        cr_assert_eq(n, cap);
        memcpy(w, &pos, 8);
        uint64_t end = pos + k;
        memcpy(w + k - 8, &end, 8);
        mmk_ring_produce(r, k);
        const unsigned char *p = mmk_ring_read_ptr(r, &n);
        cr_assert_eq(n, k);
        cr_assert_eq((const void *)p, (const void *)w);
        uint64_t a, b;
        memcpy(&a, p, 8);
        memcpy(&b, p + k - 8, 8);
        cr_assert(a == pos && b == end, "at %llu", (unsigned long long)pos);
        mmk_ring_consume(r, k);
        pos = end;
    }
    /* Now well past 2^32: copying calls on a byte pattern across the wrap. */
    unsigned char buf[3 * 4096 * 2], got[sizeof buf];
    for (int j = 0; j < 1000; j++) {
        size_t n = 1 + (size_t)j * 37 % (cap - 1);
        tu_pattern(buf, n, pos, 9);
        cr_assert_eq(mmk_ring_write(r, buf, n), (ssize_t)n);
        cr_assert_eq(mmk_ring_read(r, got, n), (ssize_t)n);
        cr_assert_eq(memcmp(buf, got, n), 0, "at %llu", (unsigned long long)pos);
        pos += n;
    }
    cr_expect_eq(mmk_ring_readable(r), 0);
    cr_expect_eq(mmk_ring_writable(r), cap);
    mmk_ring_free(r);
}

/* ---- overwrite mode ------------------------------------------------------------- */

Test(ring, overwrite_drops_the_oldest_bytes)
{
    mmk_ring *r = ring_or_die(PS, MMK_RING_OVERWRITE);
    size_t cap = mmk_ring_size(r);
    unsigned char *buf = malloc(4 * cap), *got = malloc(4 * cap);
    tu_pattern(buf, 4 * cap, 0, 11);

    cr_expect_eq(mmk_ring_write(r, buf, cap / 2), (ssize_t)(cap / 2));
    cr_expect_eq(mmk_ring_write(r, buf + cap / 2, cap), (ssize_t)cap, "always takes all");
    cr_expect_eq(mmk_ring_readable(r), cap);
    cr_expect_eq(mmk_ring_writable(r), 0);
    cr_expect_eq(mmk_ring_read(r, got, 4 * cap), (ssize_t)cap);
    cr_expect_eq(memcmp(got, buf + cap / 2, cap), 0, "the newest cap bytes");
    cr_expect_eq(mmk_ring_lost(r), cap / 2);

    /* A single write longer than the ring keeps its last cap bytes. */
    cr_expect_eq(mmk_ring_write(r, buf, 3 * cap + 5), (ssize_t)(3 * cap + 5));
    cr_expect_eq(mmk_ring_readable(r), cap);
    cr_expect_eq(mmk_ring_writable(r), 0);
    cr_expect_eq(mmk_ring_read(r, got, 10), 10);
    cr_expect_eq(memcmp(got, buf + 2 * cap + 5, 10), 0);
    cr_expect_eq(mmk_ring_lost(r), cap / 2 + 2 * cap + 5);
    cr_expect_eq(mmk_ring_read(r, got, 4 * cap), (ssize_t)(cap - 10));
    cr_expect_eq(memcmp(got, buf + 2 * cap + 15, cap - 10), 0);
    cr_expect_eq(mmk_ring_read(r, got, 1), 0);
    free(buf);
    free(got);
    mmk_ring_free(r);
}

Test(ring, overwrite_zero_copy_and_reserve)
{
    mmk_ring *r = ring_or_die(PS, MMK_RING_OVERWRITE | MMK_RING_SHARED);
    size_t cap = mmk_ring_size(r), n;
    unsigned char chunk[300];
    tu_pattern(chunk, sizeof chunk, 0, 1);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(mmk_ring_write(r, chunk, 100), 100);
    /* write_ptr never drops: only the free space. */
    mmk_ring_write_ptr(r, &n);
    cr_expect_eq(n, cap - 1000);
    /* reserve drops what it must. */
    cr_expect_null(mmk_ring_reserve(r, cap + 1));
    unsigned char *w = mmk_ring_reserve(r, cap - 500);
    cr_assert_not_null(w);
    memset(w, 'z', cap - 500);
    mmk_ring_produce(r, cap - 500);
    const unsigned char *p = mmk_ring_read_ptr(r, &n);
    cr_expect_eq(n, cap, "500 old bytes and the new ones");
    cr_expect_eq(mmk_ring_lost(r), 500, "the first 500 were dropped");
    cr_expect_eq(memcmp(p, chunk, 100), 0, "bytes 500..: chunk #5 starts");
    cr_expect_eq(p[500], 'z');

    /* The producer overwrites bytes the consumer holds: consume counts them. */
    uint64_t before = mmk_ring_lost(r);
    cr_expect_eq(mmk_ring_write(r, chunk, 300), 300);
    mmk_ring_consume(r, 400);
    cr_expect_eq(mmk_ring_lost(r) - before, 300, "300 of the 400 held were overwritten");
    cr_expect_eq(mmk_ring_readable(r), cap - 100);

    /* produce past the free space makes room too. */
    w = mmk_ring_write_ptr(r, &n);
    cr_expect_eq(n, 100);
    mmk_ring_produce(r, 1000);
    cr_expect_eq(mmk_ring_readable(r), cap);
    mmk_ring_free(r);
}

/* Random writes (some longer than the ring) and reads in overwrite mode, one
 * thread: every byte returned is the right one for its stream position, which
 * the consumer knows from what it read plus mmk_ring_lost(). */
static void overwrite_random(size_t pages, long ops, uint64_t seed)
{
    mmk_ring *r = ring_or_die(pages * PS, MMK_RING_OVERWRITE);
    size_t cap = mmk_ring_size(r);
    unsigned char *buf = malloc(3 * cap);
    uint64_t s = seed, head = 0, got_total = 0, lost = 0;
    for (long op = 0; op < ops; op++) {
        size_t n = rnd_size(&s, 2 * cap);
        /* The consumer's position, and the first byte still there. */
        uint64_t cons = got_total + lost;
        uint64_t lo = head > cap && head - cap > cons ? head - cap : cons;
        switch (rnd(&s) % 4) {
        case 0: case 1: {
            ssize_t k = mmk_ring_write(r, pat_at(head), n);
            CHECKEQ(k, (ssize_t)n, "op %ld: write %zu gave %zd", op, n, k);
            head += n;
            break;
        }
        case 2: {
            ssize_t k = mmk_ring_read(r, buf, n);
            size_t want = head - lo < n ? (size_t)(head - lo) : n;
            CHECKEQ(k, (ssize_t)want, "op %ld", op);
            lost += lo - cons;
            CHECKEQ(mmk_ring_lost(r), lost, "op %ld", op);
            CHECK(pat_ok(buf, (size_t)k, lo), "op %ld: data", op);
            got_total += (uint64_t)k;
            break;
        }
        default: {
            size_t avail;
            const unsigned char *p = mmk_ring_read_ptr(r, &avail);
            CHECKEQ(avail, (size_t)(head - lo), "op %ld", op);
            lost += lo - cons;
            CHECKEQ(mmk_ring_lost(r), lost, "op %ld", op);
            CHECK(pat_ok(p, avail, lo), "op %ld: data", op);
            size_t k = n < avail ? n : avail;
            mmk_ring_consume(r, k);
            CHECKEQ(mmk_ring_lost(r), lost, "nothing overwritten meanwhile");
            got_total += k;
            break;
        }
        }
        cons = got_total + lost;
        lo = head > cap && head - cap > cons ? head - cap : cons;
        CHECKEQ(mmk_ring_readable(r), (size_t)(head - lo), "op %ld", op);
        CHECKEQ(mmk_ring_writable(r), cap - (size_t)(head - lo), "op %ld", op);
    }
    /* Drain: then every byte was read or counted lost. */
    ssize_t k;
    while ((k = mmk_ring_read(r, buf, cap)) > 0)
        got_total += (uint64_t)k;
    cr_expect_eq(got_total + mmk_ring_lost(r), head, "every byte read or counted lost");
    cr_expect_gt(mmk_ring_lost(r), 0);
    free(buf);
    mmk_ring_free(r);
}

Test(ring, overwrite_random_1_page) { overwrite_random(1, 1000000, 21); }
Test(ring, overwrite_random_3_pages) { overwrite_random(3, 1000000, 22); }
Test(ring, overwrite_random_17_pages) { overwrite_random(17, 500000, 23); }

Test(ring, overwrite_peek_and_clear)
{
    mmk_ring *r = ring_or_die(PS, MMK_RING_OVERWRITE);
    size_t cap = mmk_ring_size(r);
    unsigned char *buf = malloc(2 * cap), *got = malloc(2 * cap);
    tu_pattern(buf, 2 * cap, 0, 7);
    cr_assert_eq(mmk_ring_write(r, buf, cap + 100), (ssize_t)(cap + 100));
    cr_expect_eq(mmk_ring_peek(r, got, 50), 50);
    cr_expect_eq(memcmp(got, buf + 100, 50), 0);
    cr_expect_eq(mmk_ring_lost(r), 100, "peek counts the loss too");
    cr_expect_eq(mmk_ring_peek(r, got, 50), 50, "but consumes nothing");
    cr_expect_eq(memcmp(got, buf + 100, 50), 0);
    cr_expect_eq(mmk_ring_lost(r), 100, "counted once");
    cr_assert_eq(mmk_ring_write(r, buf + cap + 100, 200), 200);
    mmk_ring_clear(r);
    cr_expect_eq(mmk_ring_lost(r), 300, "dropped before the clear: lost; cleared: not");
    cr_expect_eq(mmk_ring_readable(r), 0);
    cr_expect_eq(mmk_ring_read(r, got, 10), 0);
    free(buf);
    free(got);
    mmk_ring_free(r);
}

/* ---- a ring shared with a forked child ------------------------------------------ */

#define FORK_BYTES ((uint64_t)32 << 20)
#define FORK_PATIENCE 30 /* seconds a side waits for the other at most */

/* Push FORK_BYTES of pattern, or pull and check them; returns 0 if good. */
static int fork_side(mmk_ring *r, bool produce, uint64_t seed)
{
    uint64_t s = seed, pos = 0;
    size_t cap = mmk_ring_size(r);
    unsigned char *buf = malloc(cap);
    int bad = 0;
    time_t deadline = time(NULL) + FORK_PATIENCE;
    while (pos < FORK_BYTES) {
        if (time(NULL) > deadline) {
            bad = 2; /* the other side stopped: do not hang the test */
            break;
        }
        size_t n = rnd_size(&s, cap);
        if (n > FORK_BYTES - pos)
            n = (size_t)(FORK_BYTES - pos);
        ssize_t k;
        if (produce) {
            k = mmk_ring_write(r, pat_at(pos), n);
        } else {
            k = mmk_ring_read(r, buf, n);
            if (k > 0 && !pat_ok(buf, (size_t)k, pos)) {
                bad = 1;
                break;
            }
        }
        if (k < 0) {
            bad = 1;
            break;
        }
        if (k == 0)
            sched_yield();
        pos += (uint64_t)k;
    }
    free(buf);
    return bad;
}

static void fork_pair(size_t pages, bool parent_produces)
{
    mmk_ring *r = ring_or_die(pages * PS, MMK_RING_SHARED);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int bad = fork_side(r, !parent_produces, 99);
        mmk_ring_free(r);
        _exit(bad);
    }
    int bad = fork_side(r, parent_produces, 99);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    cr_expect_eq(bad, 0);
    cr_expect_eq(mmk_ring_readable(r), 0, "the parent sees the child's position");
    mmk_ring_free(r);
}

Test(ring, shared_with_forked_child)
{
    fork_pair(1, true);
    fork_pair(3, false);
    fork_pair(17, true);
}

/* The producer and the consumer roles may move between processes: each
 * side's cached state is checked against the shared positions. */
Test(ring, roles_move_between_processes)
{
    mmk_ring *r = ring_or_die(PS, MMK_RING_SHARED);
    size_t cap = mmk_ring_size(r);
    unsigned char *buf = malloc(cap);
    cr_assert_eq(mmk_ring_write(r, pat_at(0), 1000), 1000);
    cr_assert_eq(mmk_ring_read(r, buf, 300), 300);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* The child writes and reads on where the parent left off. */
        int bad = mmk_ring_write(r, pat_at(1000), 2500) != 2500;
        bad |= mmk_ring_read(r, buf, 1500) != 1500 || !pat_ok(buf, 1500, 300);
        _exit(bad);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    /* Now the parent again: its own cached positions are stale. */
    cr_expect_eq(mmk_ring_readable(r), 1700);
    cr_expect_eq(mmk_ring_write(r, pat_at(3500), cap - 1700), (ssize_t)(cap - 1700));
    size_t n;
    const unsigned char *p = mmk_ring_read_ptr(r, &n);
    cr_expect_eq(n, cap);
    cr_expect(pat_ok(p, n, 1800), "the parent reads on from the child's position");
    mmk_ring_consume(r, n);
    cr_expect_eq(mmk_ring_readable(r), 0);
    free(buf);
    mmk_ring_free(r);
}
