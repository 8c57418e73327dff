/* tests/test_cache.c — the window cache (mmkit/cache.h): budgets, attach,
 * pins of any range, sharing and eviction, growth and shrinking, pread and
 * pwrite against the system calls, MMK_COPY, sync, injected failures and
 * threads.  Caches here are small with explicit budgets (64 KiB windows, a
 * few maps) so every rule is reached in a few steps. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mmkit.h>

#include "inject.h"
#include "testutil.h"

/* Every test ends with a leak check (a no-op without LeakSanitizer). */
static void cache_fini(void)
{
    tu_teardown();
    if (tu_leaks()) {
        fprintf(stderr, "memory leaked: see the LeakSanitizer report above\n");
        abort();
    }
}

TestSuite(cache, .init = tu_setup, .fini = cache_fini, .timeout = 60);

#define PS        (mmk_page_size())
#define KIB       ((size_t)1 << 10)
#define MIB       ((size_t)1 << 20)
#define W         (64 * KIB)   /* the window of most caches here */
#define UNUSED_FD 987654       /* far above anything this process has open */
#define SEED      7u           /* pattern of most files here */

/* ---- helpers ------------------------------------------------------------ */

/* A small deterministic generator (splitmix64): tests replay exactly. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return n ? rng_next(s) % n : 0;
}

static long pattern_mismatch(const void *p, size_t n, uint64_t off, uint32_t seed)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != tu_pattern_byte(off + i, seed))
            return (long)i;
    return -1;
}

static long nonzero_at(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return (long)i;
    return -1;
}

static int open_or_die(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    return fd;
}

/* Read file bytes through a descriptor of our own (not through the cache). */
static void file_bytes(const char *path, uint64_t off, void *buf, size_t n)
{
    int fd = open_or_die(path, O_RDONLY);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        cr_assert_gt(r, 0, "pread: short file?");
        got += (size_t)r;
    }
    close(fd);
}

static mmk_cache *new_cache(size_t window, size_t max_maps, size_t max_mapped)
{
    mmk_cache *c = NULL;
    int rc = mmk_cache_new(&c, &(mmk_cache_opts){ .window = window, .max_maps = max_maps,
                                                  .max_mapped = max_mapped });
    cr_assert_eq(rc, 0, "mmk_cache_new: %s", mmk_strerror(rc));
    cr_assert_not_null(c);
    return c;
}

/* Attach `path` opened for `flags` (O_RDWR for MMK_RDWR); the caller's
 * descriptor is closed right away: the cache holds its own. */
static mmk_cache_file *attach_path(mmk_cache *c, const char *path, unsigned flags)
{
    int fd = open_or_die(path, (flags & MMK_RDWR) ? O_RDWR : O_RDONLY);
    mmk_cache_file *f = NULL;
    int rc = mmk_cache_attach(c, fd, flags, &f);
    cr_assert_eq(rc, 0, "attach %s: %s", path, mmk_strerror(rc));
    cr_assert_not_null(f);
    close(fd);
    return f;
}

static mmk_cache_stats stats_of(const mmk_cache *c)
{
    mmk_cache_stats s;
    mmk_cache_stats_get(c, &s);
    return s;
}

static void expect_within_budget(const mmk_cache *c, const char *when)
{
    mmk_cache_opts lim;
    mmk_cache_limits(c, &lim);
    mmk_cache_stats s = stats_of(c);
    cr_expect_leq(s.mapped_bytes, lim.max_mapped, "%s: %zu bytes mapped, budget %zu", when,
                  s.mapped_bytes, lim.max_mapped);
    cr_expect_leq(s.mappings, lim.max_maps, "%s: %zu mappings, budget %zu", when, s.mappings,
                  lim.max_maps);
}

/* Pin [off, off + len) read-only and check the view against the pattern. */
static void pin_check(mmk_cache_file *f, uint64_t off, size_t len, uint32_t seed,
                      mmk_view *v)
{
    int rc = mmk_cache_pin(f, off, len, MMK_RDONLY, v);
    cr_assert_eq(rc, 0, "pin off %llu len %zu: %s", (unsigned long long)off, len,
                 mmk_strerror(rc));
    cr_assert_not_null(v->ptr);
    cr_assert_eq(v->len, len);
    const uint8_t *p = v->ptr;
    cr_assert_eq(p[0], tu_pattern_byte(off, seed), "first byte of off %llu len %zu",
                 (unsigned long long)off, len);
    cr_assert_eq(p[len - 1], tu_pattern_byte(off + len - 1, seed),
                 "last byte of off %llu len %zu", (unsigned long long)off, len);
    cr_assert_eq(pattern_mismatch(p, len, off, seed), -1, "content of off %llu len %zu",
                 (unsigned long long)off, len);
}

static void pin_unpin(mmk_cache_file *f, uint64_t off, size_t len, uint32_t seed)
{
    mmk_view v;
    pin_check(f, off, len, seed, &v);
    cr_assert_eq(mmk_cache_unpin(&v), 0);
}

static bool is_pow2(size_t v)
{
    return v && !(v & (v - 1));
}

/* ---- mmk_cache_new, limits, the default cache ---------------------------- */

Test(cache, auto_limits)
{
    mmk_cache *c;
    cr_assert_eq(mmk_cache_new(&c, NULL), 0);
    mmk_cache_opts lim;
    mmk_cache_limits(c, &lim);
    cr_expect(is_pow2(lim.window), "window %zu", lim.window);
    cr_expect_geq(lim.window, PS);
    cr_expect_eq(lim.window % mmk_map_granularity(), 0);
    cr_expect_geq(lim.max_maps, 16);
    cr_expect_geq(lim.max_mapped, lim.window);
    mmk_cache_stats s = stats_of(c);
    cr_expect_eq(s.mappings + s.mapped_bytes + s.pins + s.hits + s.misses + s.maps, 0);
    mmk_cache_free(c);

    /* A zeroed struct is the defaults too. */
    cr_assert_eq(mmk_cache_new(&c, &(mmk_cache_opts){ 0 }), 0);
    mmk_cache_opts again;
    mmk_cache_limits(c, &again);
    cr_expect_eq(again.window, lim.window);
    cr_expect_eq(again.max_maps, lim.max_maps);
    cr_expect_eq(again.max_mapped, lim.max_mapped);
    mmk_cache_free(c);
}

Test(cache, explicit_limits_are_kept)
{
    mmk_cache *c = new_cache(MIB, 5, 3 * MIB + 12345);
    mmk_cache_opts lim;
    mmk_cache_limits(c, &lim);
    cr_expect_eq(lim.window, MIB);
    cr_expect_eq(lim.max_maps, 5, "an explicit max_maps below 16 is kept");
    cr_expect_eq(lim.max_mapped, 3 * MIB + 12345);
    mmk_cache_free(c);

    /* max_mapped is at least one window. */
    c = new_cache(MIB, 1, 1);
    mmk_cache_limits(c, &lim);
    cr_expect_eq(lim.max_maps, 1);
    cr_expect_eq(lim.max_mapped, MIB);
    mmk_cache_free(c);
}

Test(cache, window_is_rounded_up_to_a_power_of_two)
{
    struct { size_t in, want; } cases[] = {
        { 1, PS },           { PS - 1, PS },     { PS, PS },
        { PS + 1, 2 * PS },  { 3 * PS, 4 * PS }, { W, W },
        { W + 1, 2 * W },    { 100000, 131072 }, { MIB - 1, MIB },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t want = cases[i].want < mmk_map_granularity() ? mmk_map_granularity()
                                                            : cases[i].want;
        mmk_cache *c = new_cache(cases[i].in, 0, 0);
        mmk_cache_opts lim;
        mmk_cache_limits(c, &lim);
        cr_expect_eq(lim.window, want, "window %zu gave %zu, want %zu", cases[i].in,
                     lim.window, want);
        cr_expect_geq(lim.max_mapped, lim.window);
        mmk_cache_free(c);
    }
}

Test(cache, new_errors)
{
    cr_expect_eq(mmk_cache_new(NULL, NULL), -EINVAL);
    cr_expect_eq(mmk_cache_new(NULL, &(mmk_cache_opts){ .window = W }), -EINVAL);
}

/* A window that cannot be rounded up to a power of two in a size_t. */
Test(cache, window_too_large_is_einval, .timeout = 10)
{
    size_t bad[] = { SIZE_MAX, SIZE_MAX / 2 + 2, (SIZE_MAX >> 1) + 1 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mmk_cache *c = (mmk_cache *)1;
        cr_expect_eq(mmk_cache_new(&c, &(mmk_cache_opts){ .window = bad[i] }), -EINVAL,
                     "window %zu", bad[i]);
        cr_expect_null(c);
    }
}

Test(cache, default_cache_is_stable)
{
    mmk_cache *d = mmk_cache_default();
    cr_assert_not_null(d);
    cr_expect_eq(mmk_cache_default(), d);
    mmk_cache_opts lim;
    mmk_cache_limits(d, &lim);
    cr_expect(is_pow2(lim.window));
    cr_expect_geq(lim.max_maps, 16);
    cr_expect_geq(lim.max_mapped, lim.window);

    /* It works like any other cache. */
    const char *p = tu_pattern_file("f", 10000, SEED);
    mmk_cache_file *f = attach_path(d, p, MMK_RDONLY);
    pin_unpin(f, 5, 9000, SEED);
    cr_expect_eq(mmk_cache_detach(f), 0);
    cr_expect_eq(mmk_cache_default(), d);
}

Test(cache, null_handles)
{
    mmk_cache_free(NULL);
    mmk_cache_stats s;
    memset(&s, 0xff, sizeof s);
    mmk_cache_stats_get(NULL, &s);
    cr_expect_eq(s.hits + s.misses + s.maps + s.unmaps + s.evictions, 0);
    cr_expect_eq(s.mapped_bytes + s.mappings + s.pins, 0);
    mmk_cache_stats_get(NULL, NULL);
    mmk_cache_opts lim;
    memset(&lim, 0xff, sizeof lim);
    mmk_cache_limits(NULL, &lim);
    cr_expect_eq(lim.window + lim.max_maps + lim.max_mapped, 0);
    mmk_cache_limits(NULL, NULL);
    cr_expect_eq(mmk_cache_detach(NULL), -EINVAL);
    cr_expect_eq(mmk_cache_file_size(NULL), 0);
    cr_expect_eq(mmk_cache_set_size(NULL, 0), -EINVAL);
    cr_expect_eq(mmk_cache_sync(NULL), -EINVAL);
    mmk_view v = { 0 };
    cr_expect_eq(mmk_cache_pin(NULL, 0, 1, MMK_RDONLY, &v), -EINVAL);
    cr_expect_eq(mmk_cache_unpin(NULL), -EINVAL);
    cr_expect_eq(mmk_cache_unpin(&v), -EINVAL, "a view never pinned");
    char b;
    cr_expect_eq(mmk_cache_pread(NULL, &b, 1, 0), -EINVAL);
    cr_expect_eq(mmk_cache_pwrite(NULL, &b, 1, 0), -EINVAL);
}

/* ---- attach and detach -------------------------------------------------- */

Test(cache, attach_bad_descriptors_are_ebadf)
{
    mmk_cache *c = new_cache(W, 4, 4 * W);
    mmk_cache_file *f = (mmk_cache_file *)1;
    cr_expect_eq(mmk_cache_attach(c, -1, MMK_RDONLY, &f), -EBADF);
    cr_expect_null(f);
    f = (mmk_cache_file *)1;
    cr_expect_eq(mmk_cache_attach(c, UNUSED_FD, MMK_RDONLY, &f), -EBADF);
    cr_expect_null(f);
    cr_expect_eq(mmk_cache_attach(c, -1, MMK_RDWR, &f), -EBADF);
    mmk_cache_free(c);
}

Test(cache, attach_access_must_fit_the_descriptor)
{
    const char *p = tu_pattern_file("f", 5000, SEED);
    mmk_cache *c = new_cache(W, 4, 4 * W);
    int before = tu_open_fds();
    int ro = open_or_die(p, O_RDONLY), wo = open_or_die(p, O_WRONLY);
    mmk_cache_file *f = (mmk_cache_file *)1;
    cr_expect_eq(mmk_cache_attach(c, ro, MMK_RDWR, &f), -EACCES);
    cr_expect_null(f);
    cr_expect_eq(mmk_cache_attach(c, wo, MMK_RDONLY, &f), -EACCES, "mappings need read");
    cr_expect_eq(mmk_cache_attach(c, wo, MMK_RDWR, &f), -EACCES);
    cr_expect_eq(mmk_cache_attach(c, wo, MMK_COPY, &f), -EACCES);
    cr_expect_eq(tu_open_fds(), before + 2, "failed attaches keep no descriptor");

    /* COPY needs only read access. */
    cr_assert_eq(mmk_cache_attach(c, ro, MMK_COPY, &f), 0);
    cr_expect_eq(mmk_cache_detach(f), 0);
    cr_assert_eq(mmk_cache_attach(c, ro, MMK_RDONLY, &f), 0);
    cr_expect_eq(mmk_cache_detach(f), 0);
    close(ro);
    close(wo);
    cr_expect_eq(tu_open_fds(), before);
    mmk_cache_free(c);
}

Test(cache, attach_bad_flags_are_einval)
{
    const char *p = tu_pattern_file("f", 5000, SEED);
    mmk_cache *c = new_cache(W, 4, 4 * W);
    int fd = open_or_die(p, O_RDWR);
    unsigned bad[] = { MMK_RDWR | MMK_COPY, MMK_CREATE, MMK_EXEC, MMK_TRUNC,
                       MMK_RDWR | MMK_POPULATE, 1u << 20, 1u << 31 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mmk_cache_file *f = (mmk_cache_file *)1;
        cr_expect_eq(mmk_cache_attach(c, fd, bad[i], &f), -EINVAL, "flags %#x", bad[i]);
        cr_expect_null(f);
    }
    mmk_cache_file *f;
    cr_expect_eq(mmk_cache_attach(NULL, fd, MMK_RDONLY, &f), -EINVAL);
    cr_expect_eq(mmk_cache_attach(c, fd, MMK_RDONLY, NULL), -EINVAL);
    close(fd);
    mmk_cache_free(c);
}

Test(cache, attach_directory_is_eisdir)
{
    mmk_cache *c = new_cache(W, 4, 4 * W);
    int fd = open_or_die(tu_dir(), O_RDONLY | O_DIRECTORY);
    int before = tu_open_fds();
    mmk_cache_file *f = (mmk_cache_file *)1;
    cr_expect_eq(mmk_cache_attach(c, fd, MMK_RDONLY, &f), -EISDIR);
    cr_expect_null(f);
    cr_expect_eq(mmk_cache_attach(c, fd, MMK_COPY, &f), -EISDIR);
    cr_expect_eq(tu_open_fds(), before, "the duplicate is closed again");
    close(fd);
    mmk_cache_free(c);
}

Test(cache, attach_pipe_and_device_are_enodev, .timeout = 10)
{
    mmk_cache *c = new_cache(W, 4, 4 * W);
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    int before = tu_open_fds();
    mmk_cache_file *f = (mmk_cache_file *)1;
    cr_expect_eq(mmk_cache_attach(c, pfd[0], MMK_RDONLY, &f), -ENODEV);
    cr_expect_null(f);
    cr_expect_eq(mmk_cache_attach(c, pfd[1], MMK_RDONLY, &f), -EACCES, "write end");
    cr_expect_eq(tu_open_fds(), before);
    close(pfd[0]);
    close(pfd[1]);

    int dn = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (dn >= 0) {
        cr_expect_eq(mmk_cache_attach(c, dn, MMK_RDWR, &f), -ENODEV);
        close(dn);
    }
    mmk_cache_free(c);
}

Test(cache, callers_descriptor_stays_the_callers)
{
    const char *p = tu_pattern_file("f", 3 * W, SEED);
    mmk_cache *c = new_cache(W, 4, 4 * W);
    int before = tu_open_fds();
    int fd = open_or_die(p, O_RDWR);
    mmk_cache_file *f;
    cr_assert_eq(mmk_cache_attach(c, fd, MMK_RDWR, &f), 0);
    cr_expect_eq(tu_open_fds(), before + 2, "the cache holds a duplicate");
    pin_unpin(f, 100, 2 * W, SEED);
    cr_expect_eq(mmk_cache_pwrite(f, "x", 1, 7), 1);
    cr_expect_eq(mmk_cache_detach(f), 0);
    cr_expect_eq(tu_open_fds(), before + 1);

    /* The caller's descriptor still works, its offset untouched. */
    cr_expect_eq(lseek(fd, 0, SEEK_CUR), 0);
    char b[2];
    cr_expect_eq(pread(fd, b, 2, 6), 2);
    cr_expect_eq(b[1], 'x');
    cr_expect_eq((uint8_t)b[0], tu_pattern_byte(6, SEED));
    cr_expect_eq(write(fd, "yz", 2), 2, "at offset 0");
    close(fd);
    cr_expect_eq(tu_open_fds(), before);

    /* Closing the caller's descriptor right after attach is fine. */
    f = attach_path(c, p, MMK_RDONLY);
    char back[8];
    cr_expect_eq(mmk_cache_pread(f, back, 8, 0), 8);
    cr_expect_eq(memcmp(back, "yz", 2), 0);
    cr_expect_eq(back[7], 'x');
    cr_expect_eq(mmk_cache_detach(f), 0);
    cr_expect_eq(tu_open_fds(), before);
    mmk_cache_free(c);
}

Test(cache, detach_while_pinned_is_ebusy)
{
    const char *p = tu_pattern_file("f", 3 * W, SEED);
    mmk_cache *c = new_cache(W, 4, 4 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    mmk_view a, b;
    pin_check(f, 10, 100, SEED, &a);
    pin_check(f, W - 5, 10, SEED, &b);
    cr_expect_eq(mmk_cache_detach(f), -EBUSY);
    cr_expect_eq(pattern_mismatch(a.ptr, 100, 10, SEED), -1, "still pinned and mapped");
    cr_expect_eq(mmk_cache_unpin(&a), 0);
    cr_expect_eq(mmk_cache_detach(f), -EBUSY, "one pin left");
    cr_expect_eq(pattern_mismatch(b.ptr, 10, W - 5, SEED), -1);
    cr_expect_eq(mmk_cache_unpin(&b), 0);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_stats s = stats_of(c);
    cr_expect_eq(s.mappings, 0, "detach unmaps");
    cr_expect_eq(s.mapped_bytes, 0);
    cr_expect_eq(s.unmaps, s.maps);
    cr_expect_eq(s.pins, 0);
    mmk_cache_free(c);
}

static void attach_use_free(const char *p)
{
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    mmk_cache_file *g = attach_path(c, p, MMK_COPY);
    pin_unpin(f, 0, 3 * W, SEED);
    pin_unpin(g, 5, 10, SEED);
    cr_expect_eq(mmk_cache_pwrite(g, "abc", 3, 1), 3);
    mmk_cache_free(c);
}

Test(cache, free_detaches_attached_files)
{
    const char *p = tu_pattern_file("f", 3 * W, SEED);
    attach_use_free(p); /* warm up: the allocator's own mappings stay */
    int fds = tu_open_fds(), maps = tu_mapping_count();
    attach_use_free(p);
    cr_expect_eq(tu_open_fds(), fds, "descriptors closed");
    cr_expect_eq(tu_mapping_count(), maps, "windows unmapped");
}

Test(cache, file_size)
{
    mmk_cache *c = new_cache(W, 4, 4 * W);
    size_t sizes[] = { 0, 1, PS, W - 1, 3 * W + 17 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const char *p = tu_pattern_file("f", sizes[i], SEED);
        mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
        cr_expect_eq(mmk_cache_file_size(f), sizes[i]);
        cr_expect_eq(mmk_cache_detach(f), 0);
    }
    mmk_cache_free(c);
}

/* ---- pins: content, bounds, sharing --------------------------------------- */

Test(cache, pins_match_the_file_for_any_range)
{
    size_t size = 5 * W + 1234;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 16, 16 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    int fd = open_or_die(p, O_RDONLY);
    uint64_t offs[] = { 0, 1, 17, PS - 1, PS, W - 10, W - 1, W, W + 1, 2 * W - 3,
                        3 * W + 777, size - W - 1, size - 2, size - 1 };
    size_t lens[] = { 1, 2, 10, PS - 1, PS, PS + 1, W - 1, W, W + 1, W + 20, 2 * W,
                      2 * W + 5, 3 * W + 9, 4 * W };
    unsigned char *buf = malloc(size);
    cr_assert_not_null(buf);
    int tried = 0;
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
        for (size_t j = 0; j < sizeof lens / sizeof lens[0]; j++) {
            uint64_t off = offs[i];
            size_t len = lens[j];
            if (off + len > size)
                continue;
            mmk_view v;
            pin_check(f, off, len, SEED, &v);
            cr_assert_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
            cr_assert_eq(memcmp(v.ptr, buf, len), 0, "pin equals pread at %llu+%zu",
                         (unsigned long long)off, len);
            cr_assert_eq(mmk_cache_unpin(&v), 0);
            cr_expect_null(v.ptr, "unpin clears the view");
            cr_expect_eq(v.len, 0);
            expect_within_budget(c, "pins_match");
            tried++;
        }
    /* The whole file, and each whole window. */
    pin_unpin(f, 0, size, SEED);
    for (uint64_t w = 0; w * W < size; w++)
        pin_unpin(f, w * W, w * W + W <= size ? W : size - w * W, SEED);
    cr_expect_gt(tried, 100);
    cr_expect_eq(stats_of(c).pins, 0);
    free(buf);
    close(fd);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, pin_bad_ranges)
{
    size_t size = 2 * W + 100;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 4, 4 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    struct { uint64_t off; size_t len; } bad[] = {
        { 0, 0 },           { 5, 0 },           { size, 1 },        { size - 1, 2 },
        { 0, size + 1 },    { size + 5, 1 },    { UINT64_MAX, 1 },  { UINT64_MAX - 5, 10 },
        { 1, SIZE_MAX },    { (uint64_t)1 << 40, 1 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mmk_view v = { (void *)1, 1, (void *)1 };
        cr_expect_eq(mmk_cache_pin(f, bad[i].off, bad[i].len, MMK_RDONLY, &v), -EINVAL,
                     "off %llu len %zu", (unsigned long long)bad[i].off, bad[i].len);
        if (bad[i].len) /* (len 0 is refused before the view is touched) */
            cr_expect_null(v.ptr, "off %llu len %zu", (unsigned long long)bad[i].off,
                           bad[i].len);
    }
    mmk_view v;
    cr_expect_eq(mmk_cache_pin(f, 0, 10, MMK_RDWR, &v), -EACCES, "read-only file");
    cr_expect_eq(mmk_cache_pin(f, 0, 10, MMK_COPY, &v), -EINVAL, "not an access mode");
    cr_expect_eq(mmk_cache_pin(f, 0, 10, 1u << 7, &v), -EINVAL);
    cr_expect_eq(mmk_cache_pin(f, 0, 10, MMK_RDONLY, NULL), -EINVAL);
    mmk_cache_stats s = stats_of(c);
    cr_expect_eq(s.pins + s.mappings + s.misses + s.hits, 0, "bad pins leave no trace");

    /* Unpin twice: the second finds a cleared view. */
    pin_check(f, 0, 10, SEED, &v);
    cr_expect_eq(mmk_cache_unpin(&v), 0);
    cr_expect_eq(mmk_cache_unpin(&v), -EINVAL);
    cr_expect_eq(stats_of(c).pins, 0);
    cr_expect_eq(mmk_cache_detach(f), 0);

    /* An empty file has nothing to pin. */
    const char *e = tu_path("empty");
    tu_write_file(e, "", 0);
    f = attach_path(c, e, MMK_RDONLY);
    cr_expect_eq(mmk_cache_pin(f, 0, 1, MMK_RDONLY, &v), -EINVAL);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, overlapping_pins_share_mappings)
{
    const char *p = tu_pattern_file("f", 4 * W, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    mmk_view a, b, d;
    pin_check(f, 0, 100, SEED, &a);
    mmk_cache_stats s0 = stats_of(c);
    cr_expect_eq(s0.mappings, 1);
    cr_expect_eq(s0.misses, 1);
    cr_expect_eq(s0.mapped_bytes, W);
    pin_check(f, 50, 200, SEED, &b);
    pin_check(f, 1000, W - 1000, SEED, &d);
    mmk_cache_stats s1 = stats_of(c);
    cr_expect_eq(s1.mappings, 1, "one window serves all three");
    cr_expect_eq(s1.hits, s0.hits + 2);
    cr_expect_eq(s1.misses, 1);
    cr_expect_eq(s1.pins, 3);
    cr_expect_eq((uint8_t *)b.ptr - (uint8_t *)a.ptr, 50, "the same mapping");
    cr_expect_eq(mmk_cache_unpin(&b), 0);
    cr_expect_eq(mmk_cache_unpin(&d), 0);

    /* The same range twice at once: the same pointer. */
    pin_check(f, 0, 100, SEED, &b);
    cr_expect_eq(b.ptr, a.ptr);
    cr_expect_eq(mmk_cache_unpin(&b), 0);
    cr_expect_eq(mmk_cache_unpin(&a), 0);

    /* A span across windows 1 and 2 serves ranges inside it. */
    pin_check(f, 2 * W - 10, 20, SEED, &a);
    s0 = stats_of(c);
    pin_check(f, 2 * W - 5, 10, SEED, &b);
    pin_check(f, 2 * W + 7, 3, SEED, &d);
    s1 = stats_of(c);
    cr_expect_eq(s1.mappings, s0.mappings, "the span covers them");
    cr_expect_eq(s1.maps, s0.maps);
    cr_expect_eq(s1.hits, s0.hits + 2);
    cr_expect_eq(mmk_cache_unpin(&a), 0);
    cr_expect_eq(mmk_cache_unpin(&b), 0);
    cr_expect_eq(mmk_cache_unpin(&d), 0);
    expect_within_budget(c, "overlap");
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, pin_is_never_served_by_a_mapping_short_of_its_end)
{
    size_t size = 4 * W;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    mmk_view a, b;
    pin_check(f, 0, 4096, SEED, &a); /* window 0, and the file's last hit */
    pin_check(f, W - 10, 20, SEED, &b);
    const uint8_t *q = b.ptr;
    for (size_t i = 0; i < 20; i++)
        cr_expect_eq(q[i], tu_pattern_byte(W - 10 + i, SEED), "byte %zu across the boundary",
                     i);
    cr_expect_eq(stats_of(c).mappings, 2, "a span, not window 0");
    cr_expect_eq(mmk_cache_unpin(&b), 0);

    /* Now a span [0, 2W) exists and is the last hit; a range past its end
     * must not be served by it. */
    pin_check(f, 2 * W - 10, 20, SEED, &b);
    cr_expect_eq(mmk_cache_unpin(&b), 0);
    pin_check(f, 3 * W - 1, W + 1 - 1, SEED, &b);
    cr_expect_eq(mmk_cache_unpin(&b), 0);
    pin_check(f, size - 1, 1, SEED, &b);
    cr_expect_eq(((uint8_t *)b.ptr)[0], tu_pattern_byte(size - 1, SEED));
    cr_expect_eq(mmk_cache_unpin(&b), 0);
    cr_expect_eq(mmk_cache_unpin(&a), 0);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, two_files_share_the_budget)
{
    const char *p = tu_pattern_file("f", 4 * W, 1);
    const char *q = tu_pattern_file("g", 4 * W, 2);
    mmk_cache *c = new_cache(W, 3, 3 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    mmk_cache_file *g = attach_path(c, q, MMK_RDONLY);
    for (int round = 0; round < 20; round++) {
        uint64_t off = (uint64_t)(round % 4) * W + (uint64_t)round * 37;
        pin_unpin(f, off, 100, 1);
        pin_unpin(g, off, 100, 2);
        expect_within_budget(c, "two files");
    }
    mmk_view a, b, d;
    pin_check(f, 0, 10, 1, &a);
    pin_check(g, 0, 10, 2, &b);
    pin_check(g, W, 10, 2, &d);
    mmk_view e;
    cr_expect_eq(mmk_cache_pin(f, 2 * W, 10, MMK_RDONLY, &e), -ENOMEM,
                 "the other file's pins hold the budget");
    cr_expect_eq(mmk_cache_unpin(&b), 0);
    pin_unpin(f, 2 * W, 10, 1);
    cr_expect_eq(mmk_cache_unpin(&a), 0);
    cr_expect_eq(mmk_cache_unpin(&d), 0);
    cr_expect_gt(stats_of(c).evictions, 0);
    cr_expect_eq(mmk_cache_detach(f), 0);
    cr_expect_eq(mmk_cache_detach(g), 0);
    mmk_cache_free(c);
}

/* ---- budgets and eviction ------------------------------------------------ */

#define MAX_HELD 5

Test(cache, random_pins_never_break_the_budget)
{
    size_t size = 32 * W + 999;
    const char *p = tu_pattern_file("f", size, SEED);
    size_t max_maps = 6, max_mapped = 8 * W;
    mmk_cache *c = new_cache(W, max_maps, max_mapped);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    mmk_view held[MAX_HELD];
    uint64_t held_off[MAX_HELD];
    size_t nheld = 0;
    uint64_t rng = 12345;
    int enomem = 0, pins = 0;
    for (int step = 0; step < 3000; step++) {
        if (nheld == MAX_HELD || (nheld && rng_below(&rng, 2))) {
            size_t i = (size_t)rng_below(&rng, nheld);
            cr_assert_eq(pattern_mismatch(held[i].ptr, held[i].len, held_off[i], SEED), -1,
                         "step %d: a held pin kept its bytes", step);
            cr_assert_eq(mmk_cache_unpin(&held[i]), 0);
            held[i] = held[nheld - 1];
            held_off[i] = held_off[nheld - 1];
            nheld--;
        } else {
            size_t len;
            switch (rng_below(&rng, 4)) {
            case 0: len = 1 + (size_t)rng_below(&rng, 64); break;
            case 1: len = 1 + (size_t)rng_below(&rng, W); break;
            case 2: len = W + (size_t)rng_below(&rng, W); break;
            default: len = 1 + (size_t)rng_below(&rng, 5 * W / 2); break;
            }
            uint64_t off = rng_below(&rng, size - len + 1);
            mmk_view v;
            int rc = mmk_cache_pin(f, off, len, MMK_RDONLY, &v);
            if (rc == -ENOMEM) {
                cr_assert_gt(nheld, 0, "step %d: -ENOMEM with nothing pinned", step);
                cr_expect_null(v.ptr);
                enomem++;
            } else {
                cr_assert_eq(rc, 0, "step %d: pin %llu+%zu: %s", step,
                             (unsigned long long)off, len, mmk_strerror(rc));
                const uint8_t *b = v.ptr;
                cr_assert_eq(b[len - 1], tu_pattern_byte(off + len - 1, SEED));
                cr_assert_eq(b[0], tu_pattern_byte(off, SEED));
                held[nheld] = v;
                held_off[nheld] = off;
                nheld++;
                pins++;
            }
        }
        mmk_cache_stats s = stats_of(c);
        cr_assert_leq(s.mapped_bytes, max_mapped, "step %d", step);
        cr_assert_leq(s.mappings, max_maps, "step %d", step);
        cr_assert_eq(s.pins, nheld, "step %d", step);
    }
    while (nheld)
        cr_assert_eq(mmk_cache_unpin(&held[--nheld]), 0);
    mmk_cache_stats s = stats_of(c);
    cr_expect_eq(s.pins, 0);
    cr_expect_gt(s.evictions, 100, "eviction ran");
    cr_expect_gt(pins, 1000);
    cr_log_info("random pins: %d pins, %d -ENOMEM, %llu evictions", pins, enomem,
                (unsigned long long)s.evictions);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, eviction_is_least_recently_used_first)
{
    const char *p = tu_pattern_file("f", 8 * W, SEED);
    mmk_cache *c = new_cache(W, 3, 16 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    uint64_t A = 0, B = W, C = 2 * W, D = 3 * W;
    pin_unpin(f, A + 5, 10, SEED);
    pin_unpin(f, B + 5, 10, SEED);
    pin_unpin(f, C + 5, 10, SEED);
    pin_unpin(f, A + 50, 10, SEED); /* A is now more recent than B and C */
    mmk_cache_stats s = stats_of(c);
    cr_expect_eq(s.misses, 3);
    cr_expect_eq(s.evictions, 0);
    pin_unpin(f, D + 5, 10, SEED); /* must evict B */
    mmk_cache_stats t = stats_of(c);
    cr_expect_eq(t.evictions, 1);
    cr_expect_eq(t.misses, 4);
    cr_expect_eq(t.mappings, 3);
    pin_unpin(f, A + 7, 10, SEED);
    pin_unpin(f, C + 7, 10, SEED);
    pin_unpin(f, D + 7, 10, SEED);
    mmk_cache_stats u = stats_of(c);
    cr_expect_eq(u.misses, t.misses, "A, C and D are still mapped");
    cr_expect_eq(u.hits, t.hits + 3);
    cr_expect_eq(u.evictions, 1);
    pin_unpin(f, B + 7, 10, SEED);
    mmk_cache_stats v = stats_of(c);
    cr_expect_eq(v.misses, u.misses + 1, "B was the one evicted");
    cr_expect_eq(v.evictions, 2);
    /* The least recently used of A, C, D was A: it goes next. */
    pin_unpin(f, C + 9, 10, SEED);
    pin_unpin(f, D + 9, 10, SEED);
    mmk_cache_stats x = stats_of(c);
    cr_expect_eq(x.misses, v.misses);
    pin_unpin(f, A + 9, 10, SEED);
    cr_expect_eq(stats_of(c).misses, x.misses + 1, "A was evicted by B");
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, eviction_by_bytes_is_lru_too)
{
    const char *p = tu_pattern_file("f", 16 * W, SEED);
    mmk_cache *c = new_cache(W, 100, 4 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    pin_unpin(f, 0, 10, SEED);          /* window 0 */
    pin_unpin(f, 2 * W - 5, 10, SEED);  /* span [W, 3W) */
    pin_unpin(f, 5 * W, 10, SEED);      /* window 5 */
    pin_unpin(f, 1, 10, SEED);          /* window 0 again */
    mmk_cache_stats s = stats_of(c);
    cr_expect_eq(s.mapped_bytes, 4 * W);
    /* Two windows' worth needed: the span (LRU) goes, windows 0 and 5 stay. */
    pin_unpin(f, 8 * W - 5, 10, SEED);
    mmk_cache_stats t = stats_of(c);
    cr_expect_eq(t.evictions, 1);
    cr_expect_leq(t.mapped_bytes, 4 * W);
    pin_unpin(f, 2, 10, SEED);
    pin_unpin(f, 5 * W + 2, 10, SEED);
    cr_expect_eq(stats_of(c).misses, t.misses, "windows 0 and 5 stayed");
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, enomem_when_pins_hold_the_budget)
{
    const char *p = tu_pattern_file("f", 16 * W, SEED);
    /* By mappings. */
    mmk_cache *c = new_cache(W, 4, 100 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    mmk_view v[4], x;
    for (int i = 0; i < 4; i++)
        pin_check(f, (uint64_t)i * W + 3, 10, SEED, &v[i]);
    mmk_cache_stats s = stats_of(c);
    cr_expect_eq(mmk_cache_pin(f, 4 * W, 10, MMK_RDONLY, &x), -ENOMEM);
    cr_expect_null(x.ptr);
    cr_expect_eq(mmk_cache_pin(f, 3 * W - 1, 2, MMK_RDONLY, &x), -ENOMEM, "a span too");
    char buf[10];
    cr_expect_eq(mmk_cache_pread(f, buf, 10, 6 * W), -ENOMEM, "pread needs a window too");
    mmk_cache_stats t = stats_of(c);
    cr_expect_eq(t.mappings, 4);
    cr_expect_eq(t.mapped_bytes, s.mapped_bytes);
    cr_expect_eq(t.maps, s.maps);
    cr_expect_eq(t.pins, 4);
    /* Pins served by existing mappings still work. */
    pin_unpin(f, 2 * W + 100, 1000, SEED);
    cr_expect_eq(mmk_cache_pread(f, buf, 10, W + 3), 10);
    cr_expect_eq(mmk_cache_unpin(&v[2]), 0);
    pin_check(f, 9 * W, 10, SEED, &x);
    cr_expect_eq(stats_of(c).evictions, 1);
    cr_expect_eq(mmk_cache_unpin(&x), 0);
    for (int i = 0; i < 4; i++)
        if (i != 2)
            cr_expect_eq(mmk_cache_unpin(&v[i]), 0);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);

    /* By bytes: two pinned spans spend four windows. */
    c = new_cache(W, 100, 4 * W);
    f = attach_path(c, p, MMK_RDONLY);
    pin_check(f, W - 1, 2, SEED, &v[0]);
    pin_check(f, 5 * W - 1, 2, SEED, &v[1]);
    cr_expect_eq(stats_of(c).mapped_bytes, 4 * W);
    cr_expect_eq(mmk_cache_pin(f, 10 * W, 1, MMK_RDONLY, &x), -ENOMEM);
    expect_within_budget(c, "by bytes");
    cr_expect_eq(mmk_cache_unpin(&v[0]), 0);
    pin_unpin(f, 10 * W, 1, SEED);
    pin_unpin(f, 11 * W, 1, SEED);
    expect_within_budget(c, "by bytes, after unpin");
    cr_expect_eq(mmk_cache_unpin(&v[1]), 0);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, range_larger_than_max_mapped_is_enomem)
{
    const char *p = tu_pattern_file("f", 16 * W, SEED);
    mmk_cache *c = new_cache(W, 100, 4 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    mmk_view v;
    cr_expect_eq(mmk_cache_pin(f, 0, 4 * W + 1, MMK_RDONLY, &v), -ENOMEM);
    cr_expect_eq(mmk_cache_pin(f, 1, 4 * W, MMK_RDONLY, &v), -ENOMEM, "five windows");
    cr_expect_eq(mmk_cache_pin(f, 0, 16 * W, MMK_RDONLY, &v), -ENOMEM);
    cr_expect_eq(stats_of(c).mappings, 0);
    pin_unpin(f, 0, 4 * W, SEED);
    pin_unpin(f, 4 * W, 4 * W, SEED);
    /* Three windows crossed: a span rounded up to four still fits. */
    pin_unpin(f, 9 * W + 1, 2 * W, SEED);
    expect_within_budget(c, "large ranges");
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);

    /* Five windows crossed under a six-window budget: rounding up to eight
     * would not fit, the exact five do. */
    c = new_cache(W, 100, 6 * W);
    f = attach_path(c, p, MMK_RDONLY);
    pin_unpin(f, 10, 4 * W, SEED);
    expect_within_budget(c, "exact span");
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

/* A range that fits in what pins leave free must not fail because its span
 * would be rounded up past it. */
Test(cache, span_fits_in_the_budget_pins_leave)
{
    const char *p = tu_pattern_file("f", 32 * W, SEED);
    mmk_cache *c = new_cache(W, 100, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    mmk_view v[5];
    for (int i = 0; i < 5; i++)
        pin_check(f, (uint64_t)(20 + i) * W, 10, SEED, &v[i]);
    mmk_view x;
    int rc = mmk_cache_pin(f, W, 3 * W, MMK_RDONLY, &x); /* exactly windows 1..3 */
    cr_expect_eq(rc, 0, "three windows free, three needed: %s", mmk_strerror(rc));
    if (rc == 0) {
        cr_expect_eq(pattern_mismatch(x.ptr, 3 * W, W, SEED), -1);
        cr_expect_eq(mmk_cache_unpin(&x), 0);
    }
    expect_within_budget(c, "span in what is left");
    for (int i = 0; i < 5; i++)
        cr_expect_eq(mmk_cache_unpin(&v[i]), 0);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

/* ---- sliding and growing ranges ---------------------------------------- */

Test(cache, sliding_ranges_hit_existing_mappings)
{
    size_t size = 32 * W;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 64, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    size_t len = 64 * KIB, step = 300;
    unsigned long pins = 0;
    for (uint64_t off = 0; off + len <= size; off += step) {
        mmk_view v;
        int rc = mmk_cache_pin(f, off, len, MMK_RDONLY, &v);
        cr_assert_eq(rc, 0, "off %llu: %s", (unsigned long long)off, mmk_strerror(rc));
        const uint8_t *b = v.ptr;
        cr_assert_eq(b[0], tu_pattern_byte(off, SEED));
        cr_assert_eq(b[len - 1], tu_pattern_byte(off + len - 1, SEED));
        if (pins % 61 == 0)
            cr_assert_eq(pattern_mismatch(b, len, off, SEED), -1);
        cr_assert_eq(mmk_cache_unpin(&v), 0);
        pins++;
    }
    mmk_cache_stats s = stats_of(c);
    cr_log_info("sliding: %lu pins, %llu misses", pins, (unsigned long long)s.misses);
    cr_expect_eq(s.hits + s.misses, pins);
    cr_expect_leq(s.misses, 2 * (size / W), "about one span per window: %llu misses",
                  (unsigned long long)s.misses);
    cr_expect_lt(s.misses * 50, pins);
    expect_within_budget(c, "sliding");
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

static unsigned log2_ceil(size_t v)
{
    unsigned s = 0;
    while (((size_t)1 << s) < v)
        s++;
    return s;
}

Test(cache, growing_prefixes_map_a_logarithmic_number_of_times)
{
    size_t nwin = 64, size = nwin * W;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 64, 4 * size);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    unsigned long pins = 0;
    for (size_t k = 1; k <= size; k += 7919) {
        mmk_view v;
        cr_assert_eq(mmk_cache_pin(f, 0, k, MMK_RDONLY, &v), 0, "prefix %zu", k);
        cr_assert_eq(((uint8_t *)v.ptr)[k - 1], tu_pattern_byte(k - 1, SEED));
        cr_assert_eq(mmk_cache_unpin(&v), 0);
        pins++;
    }
    pin_unpin(f, 0, size, SEED);
    mmk_cache_stats s = stats_of(c);
    cr_log_info("prefixes: %lu pins, %llu maps", pins, (unsigned long long)s.maps);
    cr_expect_leq(s.maps, log2_ceil(nwin) + 2, "%llu maps for %lu growing prefixes",
                  (unsigned long long)s.maps, pins);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, widening_centred_ranges_map_a_logarithmic_number_of_times)
{
    size_t nwin = 64, size = nwin * W;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 64, 4 * size);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    uint64_t centre = size / 2 + 12345;
    unsigned long pins = 0;
    for (size_t r = 1; centre + r <= size && r <= centre; r += 4099) {
        mmk_view v;
        uint64_t off = centre - r;
        cr_assert_eq(mmk_cache_pin(f, off, 2 * r, MMK_RDONLY, &v), 0, "radius %zu", r);
        cr_assert_eq(((uint8_t *)v.ptr)[0], tu_pattern_byte(off, SEED));
        cr_assert_eq(((uint8_t *)v.ptr)[2 * r - 1], tu_pattern_byte(off + 2 * r - 1, SEED));
        cr_assert_eq(mmk_cache_unpin(&v), 0);
        pins++;
    }
    mmk_cache_stats s = stats_of(c);
    cr_log_info("centred: %lu pins, %llu maps", pins, (unsigned long long)s.maps);
    cr_expect_leq(s.maps, 2 * log2_ceil(nwin) + 2, "%llu maps for %lu widening ranges",
                  (unsigned long long)s.maps, pins);
    /* Suffixes widening to the left, likewise. */
    uint64_t before = s.maps;
    for (size_t k = 1; k <= size; k += 7919) {
        mmk_view v;
        cr_assert_eq(mmk_cache_pin(f, size - k, k, MMK_RDONLY, &v), 0, "suffix %zu", k);
        cr_assert_eq(((uint8_t *)v.ptr)[0], tu_pattern_byte(size - k, SEED));
        cr_assert_eq(((uint8_t *)v.ptr)[k - 1], tu_pattern_byte(size - 1, SEED));
        cr_assert_eq(mmk_cache_unpin(&v), 0);
    }
    pin_unpin(f, 0, size, SEED);
    s = stats_of(c);
    cr_expect_leq(s.maps - before, 2 * log2_ceil(nwin) + 2, "%llu maps for growing suffixes",
                  (unsigned long long)(s.maps - before));
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

/* ---- growth and shrinking ------------------------------------------------ */

Test(cache, pwrite_past_end_grows_the_file)
{
    size_t old = 1000;
    const char *p = tu_pattern_file("f", old, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDWR);
    uint64_t at = 3 * W + 5;
    mmk_view v;
    cr_expect_eq(mmk_cache_pin(f, at, 4, MMK_RDWR, &v), -EINVAL, "past the end, for now");
    cr_expect_eq(mmk_cache_pwrite(f, "tail", 4, at), 4);
    cr_expect_eq(mmk_cache_file_size(f), at + 4);
    cr_expect_eq(tu_file_size(p), (int64_t)(at + 4));

    /* The hole reads as zeros, through the cache and the file. */
    size_t hole = (size_t)at - old;
    unsigned char *buf = malloc(hole + 4);
    cr_assert_not_null(buf);
    cr_expect_eq(mmk_cache_pread(f, buf, hole + 4, old), (ssize_t)(hole + 4));
    cr_expect_eq(nonzero_at(buf, hole), -1);
    cr_expect_eq(memcmp(buf + hole, "tail", 4), 0);
    file_bytes(p, old, buf, hole + 4);
    cr_expect_eq(nonzero_at(buf, hole), -1);
    cr_expect_eq(memcmp(buf + hole, "tail", 4), 0);
    cr_expect_eq(mmk_cache_pread(f, buf, 100, 0), 100);
    cr_expect_eq(pattern_mismatch(buf, 100, 0, SEED), -1, "the old bytes stay");

    /* Pins past the old end work now, across windows too. */
    cr_assert_eq(mmk_cache_pin(f, at, 4, MMK_RDONLY, &v), 0);
    cr_expect_eq(memcmp(v.ptr, "tail", 4), 0);
    cr_expect_eq(mmk_cache_unpin(&v), 0);
    cr_assert_eq(mmk_cache_pin(f, old - 10, (size_t)(at + 4 - (old - 10)), MMK_RDWR, &v), 0);
    cr_expect_eq(pattern_mismatch(v.ptr, 10, old - 10, SEED), -1);
    cr_expect_eq(memcmp((char *)v.ptr + (at - (old - 10)), "tail", 4), 0);
    memcpy((char *)v.ptr + 10, "hole", 4);
    cr_expect_eq(mmk_cache_unpin(&v), 0);
    file_bytes(p, old, buf, 4);
    cr_expect_eq(memcmp(buf, "hole", 4), 0);

    /* A write straddling the end grows it too. */
    cr_expect_eq(mmk_cache_pwrite(f, "0123456789", 10, at + 1), 10);
    cr_expect_eq(mmk_cache_file_size(f), at + 11);
    cr_expect_eq(tu_file_size(p), (int64_t)(at + 11));
    cr_expect_eq(mmk_cache_pwrite(f, "", 0, 10 * W), 0, "nothing written, no growth");
    cr_expect_eq(mmk_cache_file_size(f), at + 11);
    free(buf);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, set_size_shrink_unmaps_windows_past_the_end)
{
    size_t size = 8 * W;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 16, 16 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    for (int i = 0; i < 8; i++)
        pin_unpin(f, (uint64_t)i * W + 1, 10, SEED);
    mmk_view held;
    pin_check(f, 6 * W, 10, SEED, &held); /* window 6 stays pinned */
    mmk_cache_stats s = stats_of(c);
    cr_expect_eq(s.mappings, 8);

    uint64_t small = 3 * W + 10;
    int fd = open_or_die(p, O_RDWR);
    cr_assert_eq(ftruncate(fd, (off_t)small), 0);
    cr_expect_eq(mmk_cache_set_size(f, small), 0);
    cr_expect_eq(mmk_cache_file_size(f), small);
    mmk_cache_stats t = stats_of(c);
    cr_expect_eq(t.unmaps, s.unmaps + 3, "windows 4, 5 and 7 (6 is pinned)");
    cr_expect_eq(t.mappings, 5);
    cr_expect_eq(t.mapped_bytes, 5 * W);
    cr_expect_eq(t.evictions, s.evictions, "not an eviction");
    mmk_view v;
    cr_expect_eq(mmk_cache_pin(f, small, 1, MMK_RDONLY, &v), -EINVAL);
    pin_unpin(f, small - 1, 1, SEED);
    cr_expect_eq(mmk_cache_unpin(&held), 0);

    /* Unknown size: read it. */
    cr_assert_eq(ftruncate(fd, (off_t)(5 * W)), 0);
    cr_expect_eq(mmk_cache_set_size(f, UINT64_MAX), 0);
    cr_expect_eq(mmk_cache_file_size(f), 5 * W);
    char z[10];
    cr_expect_eq(mmk_cache_pread(f, z, 10, 5 * W - 10), 10);
    cr_expect_eq(nonzero_at(z, 10), -1, "the regrown part reads zeros");
    cr_expect_eq(mmk_cache_pread(f, z, 10, small - 5), 10);
    cr_expect_eq(pattern_mismatch(z, 5, small - 5, SEED), -1);
    cr_expect_eq(nonzero_at(z + 5, 5), -1);
    close(fd);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, pread_after_external_truncate_is_short_never_sigbus)
{
    size_t size = 4 * W;
    uint64_t cuts[] = { 2 * W + 100, 2 * W, PS + 1, 0 };
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        const char *p = tu_pattern_file("f", size, SEED);
        mmk_cache *c = new_cache(W, 8, 8 * W);
        mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
        unsigned char *buf = malloc(size);
        cr_assert_not_null(buf);
        if (k % 2 == 0) /* windows mapped before the cut, or not */
            cr_assert_eq(mmk_cache_pread(f, buf, size, 0), (ssize_t)size);
        uint64_t cut = cuts[k];
        int fd = open_or_die(p, O_RDWR);
        cr_assert_eq(ftruncate(fd, (off_t)cut), 0);
        close(fd);

        /* Across the old end, from before the cut: ends at the cut.  The
         * range reaches pages past the cut's page, so the cache sees it. */
        uint64_t from = cut > 5000 ? cut - 5000 : 0;
        memset(buf, 0xee, size);
        ssize_t n = mmk_cache_pread(f, buf, size - from, from);
        cr_expect_eq(n, (ssize_t)(cut - from), "cut %llu: read %zd", (unsigned long long)cut,
                     n);
        if (n > 0)
            cr_expect_eq(pattern_mismatch(buf, (size_t)n, from, SEED), -1);
        /* Wholly past the cut: 0. */
        cr_expect_eq(mmk_cache_pread(f, buf, 100, size - 100), 0);
        cr_expect_eq(mmk_cache_pread(f, buf, 100, cut + 2 * PS), 0);
        cr_expect_leq(mmk_cache_file_size(f), size);
        free(buf);
        cr_expect_eq(stats_of(c).pins, 0);
        cr_expect_eq(mmk_cache_detach(f), 0);
        mmk_cache_free(c);
    }
}

Test(cache, window_mapped_past_the_end_sees_later_growth)
{
    const char *p = tu_pattern_file("f", 1000, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    pin_unpin(f, 0, 1000, SEED); /* window 0 mapped whole, most of it past the end */
    int fd = open_or_die(p, O_RDWR);
    cr_assert_eq(pwrite(fd, "later", 5, 5000), 5);
    close(fd);
    cr_expect_eq(mmk_cache_file_size(f), 1000, "not told yet");
    char buf[5];
    cr_expect_eq(mmk_cache_pread(f, buf, 5, 5000), 0);
    cr_expect_eq(mmk_cache_set_size(f, UINT64_MAX), 0);
    cr_expect_eq(mmk_cache_file_size(f), 5005);
    mmk_cache_stats s = stats_of(c);
    cr_expect_eq(mmk_cache_pread(f, buf, 5, 5000), 5);
    cr_expect_eq(memcmp(buf, "later", 5), 0);
    cr_expect_eq(stats_of(c).misses, s.misses, "the same window");
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, pwrite_after_external_truncate_is_an_error_never_sigbus)
{
    const char *p = tu_pattern_file("f", 4 * W, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDWR);
    cr_expect_eq(mmk_cache_pwrite(f, "x", 1, 3 * W), 1); /* window 3 mapped */
    int fd = open_or_die(p, O_RDWR);
    cr_assert_eq(ftruncate(fd, (off_t)W), 0);
    close(fd);
    ssize_t n = mmk_cache_pwrite(f, "lost", 4, 3 * W + 100);
    cr_expect_lt(n, 0, "the pages are gone: %zd", n);
    cr_expect_eq(mmk_cache_pwrite(f, "kept", 4, 100), 4);
    char buf[4];
    file_bytes(p, 100, buf, 4);
    cr_expect_eq(memcmp(buf, "kept", 4), 0);
    cr_expect_eq(stats_of(c).pins, 0);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

/* ---- pread and pwrite against the system calls ------------------------- */

Test(cache, pread_pwrite_match_the_system_calls, .timeout = 120)
{
    size_t init = 300 * KIB + 7, limit = 1200 * KIB;
    const char *p = tu_pattern_file("f", init, SEED);
    const char *q = tu_pattern_file("twin", init, SEED);
    mmk_cache *c = new_cache(W, 3, 4 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDWR);
    int twin = open_or_die(q, O_RDWR);
    unsigned char *a = malloc(limit), *b = malloc(limit);
    cr_assert(a && b);
    uint64_t rng = 2024;
    unsigned long reads = 0, writes = 0;
    for (int op = 0; op < 3000; op++) {
        size_t n;
        switch (rng_below(&rng, 4)) {
        case 0: n = (size_t)rng_below(&rng, 17); break;
        case 1: n = (size_t)rng_below(&rng, 5000); break;
        case 2: n = (size_t)rng_below(&rng, W + 100); break;
        default: n = (size_t)rng_below(&rng, 200 * KIB); break;
        }
        uint64_t off = rng_below(&rng, limit - n);
        struct stat st;
        cr_assert_eq(fstat(twin, &st), 0);
        if (rng_below(&rng, 2)) {
            memset(a, 0x11, n + 1);
            memset(b, 0x22, n + 1);
            ssize_t got = mmk_cache_pread(f, a, n, off);
            ssize_t want = pread(twin, b, n, (off_t)off);
            cr_assert_eq(got, want, "op %d: pread %zu at %llu: %zd, want %zd", op, n,
                         (unsigned long long)off, got, want);
            if (want > 0)
                cr_assert_eq(memcmp(a, b, (size_t)want), 0, "op %d: pread data", op);
            cr_assert_eq(a[want > 0 ? want : 0], 0x11, "op %d: wrote past the count", op);
            reads++;
        } else {
            for (size_t i = 0; i < n; i++)
                a[i] = (uint8_t)rng_next(&rng);
            ssize_t got = mmk_cache_pwrite(f, a, n, off);
            ssize_t want = pwrite(twin, a, n, (off_t)off);
            cr_assert_eq(got, want, "op %d: pwrite %zu at %llu: %zd, want %zd", op, n,
                         (unsigned long long)off, got, want);
            writes++;
        }
        cr_assert_eq(fstat(twin, &st), 0);
        cr_assert_eq(mmk_cache_file_size(f), (uint64_t)st.st_size, "op %d: size", op);
        if (op % 100 == 0)
            expect_within_budget(c, "differential");
    }
    cr_expect_eq(mmk_cache_sync(f), 0);
    size_t na, nb;
    unsigned char *fa = tu_read_file(p, &na), *fb = tu_read_file(q, &nb);
    cr_expect_eq(na, nb);
    cr_expect_eq(memcmp(fa, fb, na < nb ? na : nb), 0, "the files agree");
    free(fa);
    free(fb);
    cr_expect_gt(reads, 1000);
    cr_expect_gt(writes, 1000);
    cr_expect_gt(stats_of(c).evictions, 100);
    cr_expect_eq(stats_of(c).pins, 0);
    free(a);
    free(b);
    close(twin);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, pread_pwrite_edges)
{
    size_t size = 2 * W + 3;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 4, 4 * W);
    mmk_cache_file *ro = attach_path(c, p, MMK_RDONLY);
    mmk_cache_file *rw = attach_path(c, p, MMK_RDWR);
    char buf[64];
    cr_expect_eq(mmk_cache_pread(ro, buf, 10, size), 0, "at end of file");
    cr_expect_eq(mmk_cache_pread(ro, buf, 10, size + 1), 0);
    cr_expect_eq(mmk_cache_pread(ro, buf, 10, UINT64_MAX), 0);
    cr_expect_eq(mmk_cache_pread(ro, buf, 0, 5), 0);
    cr_expect_eq(mmk_cache_pread(ro, buf, 10, size - 3), 3);
    cr_expect_eq(pattern_mismatch(buf, 3, size - 3, SEED), -1);
    cr_expect_eq(mmk_cache_pread(ro, buf, SIZE_MAX, size - 2), 2, "n clamped to the file");
    cr_expect_eq(mmk_cache_pread(ro, NULL, 10, 0), -EINVAL);
    cr_expect_eq(mmk_cache_pwrite(rw, NULL, 10, 0), -EINVAL);
    cr_expect_eq(mmk_cache_pwrite(ro, "x", 1, 0), -EACCES);
    cr_expect_eq(mmk_cache_pwrite(ro, "x", 1, size + 100), -EACCES);
    cr_expect_eq(mmk_cache_pwrite(rw, "xy", 2, UINT64_MAX - 1), -EFBIG);
    cr_expect_eq(mmk_cache_pwrite(rw, "x", 1, (uint64_t)INT64_MAX), -EFBIG);
    cr_expect_eq(mmk_cache_pwrite(rw, buf, 0, 7), 0);
    cr_expect_eq(mmk_cache_file_size(rw), size, "failed writes do not grow the file");
    cr_expect_eq(tu_file_size(p), (int64_t)size);

    /* Writes through one attachment are seen through the other. */
    cr_expect_eq(mmk_cache_pwrite(rw, "shared", 6, W - 3), 6);
    cr_expect_eq(mmk_cache_pread(ro, buf, 6, W - 3), 6);
    cr_expect_eq(memcmp(buf, "shared", 6), 0);
    cr_expect_eq(stats_of(c).pins, 0);
    cr_expect_eq(mmk_cache_detach(ro), 0);
    cr_expect_eq(mmk_cache_detach(rw), 0);
    mmk_cache_free(c);
}

/* ---- MMK_COPY ------------------------------------------------------------ */

Test(cache, copy_writes_stay_in_memory)
{
    size_t size = 3 * W;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_COPY);
    inject_install();
    cr_expect_eq(mmk_cache_pwrite(f, "private", 7, 100), 7);
    char buf[16];
    cr_expect_eq(mmk_cache_pread(f, buf, 7, 100), 7);
    cr_expect_eq(memcmp(buf, "private", 7), 0);
    mmk_view v;
    cr_assert_eq(mmk_cache_pin(f, 90, 30, MMK_RDONLY, &v), 0);
    cr_expect_eq(memcmp((char *)v.ptr + 10, "private", 7), 0);
    cr_expect_eq(pattern_mismatch(v.ptr, 10, 90, SEED), -1);
    cr_expect_eq(mmk_cache_unpin(&v), 0);

    /* Through a write pin too. */
    cr_assert_eq(mmk_cache_pin(f, 2 * W + 5, 6, MMK_RDWR, &v), 0);
    memcpy(v.ptr, "pinned", 6);
    cr_expect_eq(mmk_cache_unpin(&v), 0);
    cr_expect_eq(mmk_cache_pread(f, buf, 6, 2 * W + 5), 6);
    cr_expect_eq(memcmp(buf, "pinned", 6), 0);

    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count(INJ_MSYNC), 0, "nothing to make durable");
    cr_expect_eq(inject_count(INJ_FDATASYNC), 0);
    inject_reset();

    size_t n;
    unsigned char *all = tu_read_file(p, &n);
    cr_expect_eq(n, size);
    cr_expect_eq(pattern_mismatch(all, n, 0, SEED), -1, "the file never changes");
    free(all);
    cr_expect_eq(mmk_cache_detach(f), 0);
    all = tu_read_file(p, &n);
    cr_expect_eq(pattern_mismatch(all, n, 0, SEED), -1, "not after detach either");
    free(all);
    mmk_cache_free(c);
}

Test(cache, copy_written_file_is_never_evicted)
{
    const char *p = tu_pattern_file("f", 2 * W, SEED);
    const char *q = tu_pattern_file("g", 8 * W, SEED);
    mmk_cache *c = new_cache(W, 4, 4 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_COPY);
    mmk_cache_file *h = attach_path(c, q, MMK_RDONLY);
    /* A copy file is mapped whole (2 windows here); written, it stays. */
    cr_expect_eq(mmk_cache_pwrite(f, "keep me", 7, 10), 7);
    for (int round = 0; round < 3; round++)
        for (uint64_t w = 0; w < 8; w++)
            pin_unpin(h, w * W + (uint64_t)round, 100, SEED);
    cr_expect_gt(stats_of(c).evictions, 5, "the other file's windows evict each other");
    mmk_view v1, v2, x;
    pin_check(h, 3 * W, 10, SEED, &v1);
    pin_check(h, 5 * W, 10, SEED, &v2);
    cr_expect_eq(mmk_cache_pin(h, 6 * W, 10, MMK_RDONLY, &x), -ENOMEM,
                 "the written copy holds its memory: -ENOMEM rather than losing it");
    cr_expect_eq(mmk_cache_unpin(&v1), 0);
    cr_expect_eq(mmk_cache_unpin(&v2), 0);
    expect_within_budget(c, "copy");
    char buf[7];
    cr_expect_eq(mmk_cache_pread(f, buf, 7, 10), 7);
    cr_expect_eq(memcmp(buf, "keep me", 7), 0);

    /* A copy file only read is evicted like any other. */
    mmk_cache_file *g = attach_path(c, p, MMK_COPY);
    pin_unpin(g, 0, 10, SEED);
    pin_unpin(h, 7 * W, 10, SEED);
    pin_unpin(h, 6 * W, 10, SEED);
    pin_unpin(h, 5 * W, 10, SEED);
    expect_within_budget(c, "copy read");
    cr_expect_eq(mmk_cache_pread(f, buf, 7, 10), 7);
    cr_expect_eq(memcmp(buf, "keep me", 7), 0);
    cr_expect_eq(mmk_cache_detach(g), 0);
    cr_expect_eq(mmk_cache_detach(h), 0);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

/* Bytes written to a COPY file must be what every later read or pin of the
 * cache sees, whichever range serves it (a copy file is mapped whole, as one
 * private mapping). */
Test(cache, copy_writes_are_seen_across_windows)
{
    size_t size = 8 * W;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 16, 16 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_COPY);
    cr_expect_eq(mmk_cache_pwrite(f, "ACROSS", 6, W - 3), 6); /* windows 0 and 1 */
    mmk_view v;
    cr_assert_eq(mmk_cache_pin(f, W - 10, 20, MMK_RDONLY, &v), 0);
    cr_expect_eq(memcmp((char *)v.ptr + 7, "ACROSS", 6), 0, "a span sees window writes");
    cr_expect_eq(mmk_cache_unpin(&v), 0);

    /* Written through a span, read back window by window. */
    cr_assert_eq(mmk_cache_pin(f, 3 * W - 4, 8, MMK_RDWR, &v), 0);
    memcpy(v.ptr, "SPANNING", 8);
    cr_expect_eq(mmk_cache_unpin(&v), 0);
    pin_unpin(f, 6 * W, 10, SEED); /* some other last hit */
    char buf[8];
    cr_expect_eq(mmk_cache_pread(f, buf, 4, 3 * W - 4), 4);
    cr_expect_eq(memcmp(buf, "SPAN", 4), 0);
    cr_expect_eq(mmk_cache_pread(f, buf, 4, 3 * W), 4);
    cr_expect_eq(memcmp(buf, "NING", 4), 0);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, copy_pwrite_past_end_never_touches_the_file)
{
    size_t size = W + 10;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    int fd = open_or_die(p, O_RDWR);
    mmk_cache_file *f;
    cr_assert_eq(mmk_cache_attach(c, fd, MMK_COPY, &f), 0);
    close(fd);
    cr_expect_lt(mmk_cache_pwrite(f, "grow", 4, 2 * W), 0, "cannot grow");
    cr_expect_lt(mmk_cache_pwrite(f, "grow", 4, size), 0);
    cr_expect_eq(mmk_cache_pwrite(f, "0123456789", 10, size - 4), 4,
                 "a write straddling the end stops there");
    cr_expect_eq(mmk_cache_file_size(f), size);
    char buf[4];
    cr_expect_eq(mmk_cache_pread(f, buf, 4, size - 4), 4);
    cr_expect_eq(memcmp(buf, "0123", 4), 0);
    cr_expect_eq(tu_file_size(p), (int64_t)size, "a COPY file never changes on disk");
    unsigned char *all;
    size_t n;
    all = tu_read_file(p, &n);
    cr_expect_eq(pattern_mismatch(all, n, 0, SEED), -1);
    free(all);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

/* ---- sync ----------------------------------------------------------------- */

Test(cache, sync_msyncs_dirty_windows_only)
{
    size_t size = 4 * W;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDWR);
    pin_unpin(f, 3 * W, 10, SEED); /* mapped, never written */
    inject_install();
    cr_expect_eq(mmk_cache_pwrite(f, "one", 3, 10), 3);
    cr_expect_eq(mmk_cache_pwrite(f, "two", 3, 2 * W + 50), 3);
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count_msync_sync(), 2, "windows 0 and 2");
    cr_expect_eq(inject_count(INJ_MSYNC), 2);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 0, "the size did not change");
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count(INJ_MSYNC), 2, "nothing dirty: no msync");
    cr_expect_eq(inject_count(INJ_FDATASYNC), 0);
    inject_reset();
    char buf[3];
    file_bytes(p, 2 * W + 50, buf, 3);
    cr_expect_eq(memcmp(buf, "two", 3), 0);

    /* Read-only attachments have nothing to sync. */
    mmk_cache_file *ro = attach_path(c, p, MMK_RDONLY);
    pin_unpin(ro, 0, 10, SEED);
    inject_install();
    cr_expect_eq(mmk_cache_sync(ro), 0);
    cr_expect_eq(inject_count(INJ_MSYNC) + inject_count(INJ_FDATASYNC) +
                 inject_count(INJ_FSYNC), 0);
    inject_reset();
    cr_expect_eq(mmk_cache_detach(ro), 0);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, sync_fdatasyncs_once_after_growth)
{
    const char *p = tu_pattern_file("f", 1000, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDWR);
    inject_install();
    cr_expect_eq(mmk_cache_pwrite(f, "grown", 5, 2 * W), 5);
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count_msync_sync(), 1);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 1, "the size changed");
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count_msync_sync(), 1);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 1, "once");

    /* set_size to a new size counts as a change too. */
    cr_expect_eq(mmk_cache_set_size(f, UINT64_MAX), 0);
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 1, "the same size: no change");

    /* A failed fdatasync is reported and retried. */
    cr_expect_eq(mmk_cache_pwrite(f, "more", 4, 3 * W), 4);
    inject_fail(INJ_FDATASYNC, 1, EIO);
    cr_expect_eq(mmk_cache_sync(f), -EIO);
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 3);
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 3);
    inject_reset();
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, write_pin_marks_dirty)
{
    size_t size = 4 * W;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDWR);
    mmk_view v;
    cr_assert_eq(mmk_cache_pin(f, W - 4, 8, MMK_RDWR, &v), 0);
    memcpy(v.ptr, "THROUGHP", 8);
    cr_expect_eq(mmk_cache_unpin(&v), 0);
    inject_install();
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count_msync_sync(), 1, "one msync for the span");
    cr_expect_eq(inject_count(INJ_FDATASYNC), 0);
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count_msync_sync(), 1);
    inject_reset();
    char buf[8];
    file_bytes(p, W - 4, buf, 8);
    cr_expect_eq(memcmp(buf, "THROUGHP", 8), 0);

    /* A read pin does not dirty anything. */
    pin_unpin(f, 5, 10, SEED);
    inject_install();
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count(INJ_MSYNC), 0);
    inject_reset();
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

/* A sync while a write pin is held cannot know what the pin's holder will
 * still write: the next sync after the writes must reach them. */
Test(cache, sync_while_a_write_pin_is_held)
{
    size_t size = 4 * W;
    const char *p = tu_pattern_file("f", size, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDWR);
    mmk_view v;
    cr_assert_eq(mmk_cache_pin(f, 100, 8, MMK_RDWR, &v), 0);
    inject_install();
    cr_expect_eq(mmk_cache_sync(f), 0);
    unsigned long first = inject_count_msync_sync();
    memcpy(v.ptr, "LATEDATA", 8);
    cr_expect_eq(mmk_cache_unpin(&v), 0);
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_gt(inject_count_msync_sync(), first, "the bytes written after the first "
                                                   "sync are synced by the second");
    inject_reset();
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, failed_msync_stays_dirty)
{
    const char *p = tu_pattern_file("f", 4 * W, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDWR);
    cr_expect_eq(mmk_cache_pwrite(f, "abc", 3, W + 1), 3);
    inject_install();
    inject_fail(INJ_MSYNC, 1, EIO);
    cr_expect_eq(mmk_cache_sync(f), -EIO);
    cr_expect_eq(inject_count(INJ_MSYNC), 1);
    cr_expect_eq(mmk_cache_sync(f), 0, "retried");
    cr_expect_eq(inject_count(INJ_MSYNC), 2);
    cr_expect_eq(inject_count_msync_sync(), 1);
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count(INJ_MSYNC), 2, "clean now");

    /* Two dirty windows, the first msync fails: both are retried. */
    cr_expect_eq(mmk_cache_pwrite(f, "x", 1, 5), 1);
    cr_expect_eq(mmk_cache_pwrite(f, "y", 1, 3 * W + 5), 1);
    inject_fail(INJ_MSYNC, 1, EIO);
    cr_expect_eq(mmk_cache_sync(f), -EIO);
    unsigned long before = inject_count_msync_sync();
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count_msync_sync() - before, 2, "both windows still dirty");
    inject_reset();
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, evicted_dirty_window_makes_sync_fdatasync)
{
    const char *p = tu_pattern_file("f", 4 * W, SEED);
    mmk_cache *c = new_cache(W, 1, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDWR);
    cr_expect_eq(mmk_cache_pwrite(f, "gone", 4, 10), 4);
    pin_unpin(f, 2 * W, 10, SEED); /* evicts window 0 */
    cr_expect_eq(stats_of(c).evictions, 1);
    inject_install();
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count(INJ_MSYNC), 0, "window 0 is gone");
    cr_expect_eq(inject_count(INJ_FDATASYNC), 1, "its pages are reached by fdatasync");
    cr_expect_eq(mmk_cache_sync(f), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 1);
    inject_reset();
    char buf[4];
    file_bytes(p, 10, buf, 4);
    cr_expect_eq(memcmp(buf, "gone", 4), 0);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

/* ---- injected failures ---------------------------------------------------- */

Test(cache, mmap_failure_on_a_miss_changes_nothing)
{
    const char *p = tu_pattern_file("f", 8 * W, SEED);
    int errs[] = { ENOMEM, EACCES, ENODEV };
    for (size_t e = 0; e < sizeof errs / sizeof errs[0]; e++) {
        mmk_cache *c = new_cache(W, 8, 8 * W);
        mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
        mmk_view held;
        pin_check(f, 0, 10, SEED, &held); /* pinned: nothing to evict */
        mmk_cache_stats s = stats_of(c);
        int fds = tu_open_fds(), maps = tu_mapping_count();
        inject_install();
        inject_fail(INJ_MMAP, 1, errs[e]);
        mmk_view v = { (void *)1, 1, (void *)1 };
        cr_expect_eq(mmk_cache_pin(f, 2 * W, 10, MMK_RDONLY, &v), -errs[e], "%s",
                     strerror(errs[e]));
        cr_expect_null(v.ptr);
        cr_expect_null(v.priv_);
        cr_expect_eq(inject_count(INJ_MMAP), 1);
        mmk_cache_stats t = stats_of(c);
        cr_expect_eq(t.mapped_bytes, s.mapped_bytes);
        cr_expect_eq(t.mappings, s.mappings);
        cr_expect_eq(t.maps, s.maps);
        cr_expect_eq(t.pins, s.pins);
        cr_expect_eq(tu_open_fds(), fds);
        cr_expect_eq(tu_mapping_count(), maps);

        /* Through pread and a span as well. */
        char buf[10];
        inject_fail(INJ_MMAP, 1, errs[e]);
        cr_expect_eq(mmk_cache_pread(f, buf, 10, 3 * W), -errs[e]);
        inject_fail(INJ_MMAP, 1, errs[e]);
        cr_expect_eq(mmk_cache_pin(f, 4 * W - 1, 2, MMK_RDONLY, &v), -errs[e]);
        t = stats_of(c);
        cr_expect_eq(t.mapped_bytes, s.mapped_bytes);
        cr_expect_eq(t.mappings, s.mappings);
        inject_reset();

        /* And the next try works. */
        pin_unpin(f, 2 * W, 10, SEED);
        cr_expect_eq(mmk_cache_unpin(&held), 0);
        cr_expect_eq(mmk_cache_detach(f), 0);
        mmk_cache_free(c);
    }
}

Test(cache, mmap_enomem_gives_back_an_unpinned_mapping_and_retries)
{
    const char *p = tu_pattern_file("f", 8 * W, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    pin_unpin(f, 0, 10, SEED);
    inject_install();
    inject_fail(INJ_MMAP, 1, ENOMEM);
    pin_unpin(f, 2 * W, 10, SEED);
    cr_expect_eq(inject_count(INJ_MMAP), 2);
    mmk_cache_stats s = stats_of(c);
    cr_expect_eq(s.evictions, 1);
    cr_expect_eq(s.mappings, 1);

    /* Every mmap failing: everything unpinned is given back, then -ENOMEM. */
    pin_unpin(f, 4 * W, 10, SEED);
    inject_fail_always(INJ_MMAP, ENOMEM);
    mmk_view v;
    cr_expect_eq(mmk_cache_pin(f, 6 * W, 10, MMK_RDONLY, &v), -ENOMEM);
    s = stats_of(c);
    cr_expect_eq(s.mappings, 0);
    cr_expect_eq(s.mapped_bytes, 0);
    inject_reset();
    pin_unpin(f, 6 * W, 10, SEED);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, pwrite_growth_failure_keeps_the_size)
{
    const char *p = tu_pattern_file("f", 1000, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDWR);
    inject_install();
    inject_fail(INJ_FTRUNCATE, 1, ENOSPC);
    cr_expect_eq(mmk_cache_pwrite(f, "x", 1, 5000), -ENOSPC);
    cr_expect_eq(mmk_cache_file_size(f), 1000);
    cr_expect_eq(tu_file_size(p), 1000);
    inject_fail(INJ_FTRUNCATE, 1, EFBIG);
    cr_expect_eq(mmk_cache_pwrite(f, "x", 1, 5000), -EFBIG);
    inject_fail(INJ_MMAP, 1, EACCES);
    cr_expect_eq(mmk_cache_pwrite(f, "x", 1, 10), -EACCES);
    inject_reset();
    cr_expect_eq(mmk_cache_pwrite(f, "x", 1, 5000), 1);
    cr_expect_eq(mmk_cache_file_size(f), 5001);
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

Test(cache, attach_system_call_failures)
{
    const char *p = tu_pattern_file("f", 5000, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    struct { enum inject_call call; int err; } calls[] = {
        { INJ_GETFL, EBADF }, { INJ_DUP, EMFILE }, { INJ_FSTAT, EIO },
    };
    unsigned modes[] = { MMK_RDONLY, MMK_RDWR, MMK_COPY };
    int fd = open_or_die(p, O_RDWR);
    for (size_t m = 0; m < 3; m++)
        for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
            int fds = tu_open_fds();
            inject_install();
            inject_fail(calls[i].call, 1, calls[i].err);
            mmk_cache_file *f = (mmk_cache_file *)1;
            int rc = mmk_cache_attach(c, fd, modes[m], &f);
            bool fired = inject_count(calls[i].call) >= 1;
            inject_reset();
            cr_expect(fired, "%s was called", inject_name(calls[i].call));
            cr_expect_eq(rc, -calls[i].err, "%s: %d", inject_name(calls[i].call), rc);
            cr_expect_null(f);
            cr_expect_eq(tu_open_fds(), fds, "%s: descriptor leak",
                         inject_name(calls[i].call));
        }
    mmk_cache_file *f;
    cr_assert_eq(mmk_cache_attach(c, fd, MMK_RDWR, &f), 0, "works once nothing fails");
    pin_unpin(f, 0, 5000, SEED);
    cr_expect_eq(mmk_cache_detach(f), 0);
    close(fd);
    mmk_cache_free(c);
}

Test(cache, set_size_fstat_failure)
{
    const char *p = tu_pattern_file("f", 5000, SEED);
    mmk_cache *c = new_cache(W, 8, 8 * W);
    mmk_cache_file *f = attach_path(c, p, MMK_RDONLY);
    inject_install();
    inject_fail(INJ_FSTAT, 1, EIO);
    cr_expect_eq(mmk_cache_set_size(f, UINT64_MAX), -EIO);
    inject_reset();
    cr_expect_eq(mmk_cache_file_size(f), 5000, "unchanged");
    cr_expect_eq(mmk_cache_detach(f), 0);
    mmk_cache_free(c);
}

/* ---- threads ---------------------------------------------------------------- */

#define T_THREADS 8
#define T_ROUNDS  1500
#define T_SIZE_A  (24 * W + 333)
#define T_SIZE_B  (16 * W + 17)

struct tworker {
    mmk_cache_file *a, *b;
    unsigned        id;
    int             errors, enomem, shorts;
    pthread_t       tid;
};

static int check_range(const void *p, size_t n, uint64_t off, uint32_t seed)
{
    return pattern_mismatch(p, n, off, seed) == -1 ? 0 : 1;
}

static void *tworker_main(void *arg)
{
    struct tworker *w = arg;
    uint64_t rng = 777 + w->id;
    unsigned char *buf = malloc(3 * W);
    if (!buf) {
        w->errors++;
        return NULL;
    }
    for (int r = 0; r < T_ROUNDS; r++) {
        bool second = rng_below(&rng, 2);
        mmk_cache_file *f = second ? w->b : w->a;
        uint32_t seed = second ? 2 : 1;
        size_t size = second ? T_SIZE_B : T_SIZE_A;
        size_t len = rng_below(&rng, 4) ? 1 + (size_t)rng_below(&rng, 4096)
                                        : 1 + (size_t)rng_below(&rng, 2 * W);
        uint64_t off = rng_below(&rng, size - len + 1);
        if (rng_below(&rng, 3) == 0) {
            /* Pins of other threads may hold the budget: then -ENOMEM, or a
             * short count ending at a window boundary (pread maps a window
             * at a time and stops at the first it cannot map). */
            ssize_t n = mmk_cache_pread(f, buf, len, off);
            if (n == -ENOMEM) {
                w->enomem++;
            } else if (n <= 0 || n > (ssize_t)len || check_range(buf, (size_t)n, off, seed)) {
                w->errors++;
            } else if (n < (ssize_t)len) {
                w->shorts++;
                if ((off + (uint64_t)n) % W != 0)
                    w->errors++;
            }
            continue;
        }
        mmk_view v;
        int rc = mmk_cache_pin(f, off, len, MMK_RDONLY, &v);
        if (rc == -ENOMEM) {
            w->enomem++;
            continue;
        }
        if (rc != 0 || v.len != len) {
            w->errors++;
            continue;
        }
        w->errors += check_range(v.ptr, len, off, seed);
        if (mmk_cache_unpin(&v) != 0)
            w->errors++;
    }
    free(buf);
    return NULL;
}

Test(cache, threads_pin_and_pread_two_files, .timeout = 120)
{
    const char *p = tu_pattern_file("a", T_SIZE_A, 1);
    const char *q = tu_pattern_file("b", T_SIZE_B, 2);
    size_t max_maps = 10, max_mapped = 14 * W;
    mmk_cache *c = new_cache(W, max_maps, max_mapped);
    mmk_cache_file *a = attach_path(c, p, MMK_RDONLY);
    mmk_cache_file *b = attach_path(c, q, MMK_RDONLY);
    struct tworker w[T_THREADS];
    for (unsigned i = 0; i < T_THREADS; i++) {
        w[i] = (struct tworker){ .a = a, .b = b, .id = i };
        cr_assert_eq(pthread_create(&w[i].tid, NULL, tworker_main, &w[i]), 0);
    }
    for (unsigned i = 0; i < T_THREADS; i++) {
        pthread_join(w[i].tid, NULL);
        cr_expect_eq(w[i].errors, 0, "thread %u", i);
    }
    mmk_cache_stats s = stats_of(c);
    cr_expect_eq(s.pins, 0);
    cr_expect_leq(s.mapped_bytes, max_mapped);
    cr_expect_leq(s.mappings, max_maps);
    cr_expect_gt(s.evictions, 0);
    cr_expect_eq(mmk_cache_detach(a), 0);
    cr_expect_eq(mmk_cache_detach(b), 0);
    mmk_cache_free(c);
}
