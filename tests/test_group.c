/* tests/test_group.c — many files as one byte array (mmkit/group.h), checked
 * against a reference: the concatenation of the files, kept in memory. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <mmkit.h>

#include "inject.h"
#include "testutil.h"

TestSuite(group, .init = tu_setup, .fini = tu_teardown, .timeout = 180);

/* A layout: n entries with their names, sizes and the reference bytes. */
typedef struct layout {
    size_t           n;
    mmk_group_entry *e;
    char           **names;
    unsigned char   *ref;
    uint64_t         total;
} layout;

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Sizes drawn from: 0, 1, small, around a 64 KiB window, larger. */
static uint64_t pick_size(uint64_t *s)
{
    switch (rnd(s) % 6) {
    case 0: return 0;
    case 1: return 1;
    case 2: return rnd(s) % 100;
    case 3: return rnd(s) % 5000;
    case 4: return 65536 + rnd(s) % 300 - 150;
    default: return rnd(s) % 200000;
    }
}

static layout make_layout(size_t n, uint64_t seed, bool nested)
{
    layout l = { .n = n };
    l.e = calloc(n ? n : 1, sizeof *l.e);
    l.names = calloc(n ? n : 1, sizeof *l.names);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        l.names[i] = malloc(64);
        if (nested)
            snprintf(l.names[i], 64, "a%zu/b%zu/f%zu", i % 3, i % 5, i);
        else
            snprintf(l.names[i], 64, "f%zu", i);
        l.e[i].path = l.names[i];
        l.e[i].size = pick_size(&s);
        l.total += l.e[i].size;
    }
    l.ref = malloc(l.total ? l.total : 1);
    for (uint64_t i = 0; i < l.total; i++)
        l.ref[i] = (unsigned char)rnd(&s);
    return l;
}

/* Write the layout's files under the scratch dir the plain way. */
static void write_files(const layout *l)
{
    uint64_t at = 0;
    for (size_t i = 0; i < l->n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", tu_dir(), l->names[i]);
        /* mkdir -p of the parents */
        for (char *p = strchr(path + strlen(tu_dir()) + 1, '/'); p; p = strchr(p + 1, '/')) {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
        tu_write_file(path, l->ref + at, (size_t)l->e[i].size);
        at += l->e[i].size;
    }
}

static void free_layout(layout *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    free(l->e);
    free(l->ref);
}

static mmk_cache *small_cache(void)
{
    mmk_cache *c;
    cr_assert_eq(mmk_cache_new(&c, &(mmk_cache_opts){ .window = 64 << 10, .max_maps = 64,
                                                      .max_mapped = 4 << 20 }), 0);
    return c;
}

static void check_reads(mmk_group *g, const layout *l, uint64_t seed, int rounds)
{
    uint64_t s = seed;
    unsigned char *buf = malloc(300000);
    for (int k = 0; k < rounds; k++) {
        uint64_t off = l->total ? rnd(&s) % (l->total + 10) : 0;
        size_t n = (size_t)(rnd(&s) % 300000);
        ssize_t r = mmk_group_pread(g, buf, n, off);
        size_t want = off >= l->total ? 0 : (size_t)(l->total - off < n ? l->total - off : n);
        cr_assert_eq(r, (ssize_t)want, "pread(%zu @ %llu) = %zd", n, (unsigned long long)off, r);
        cr_assert(want == 0 || memcmp(buf, l->ref + off, want) == 0, "data @ %llu",
                  (unsigned long long)off);
    }
    free(buf);
}

static void random_layout_reads(int io)
{
    for (uint64_t seed = 1; seed <= 4; seed++) {
        layout l = make_layout(40, seed, seed % 2 == 0);
        write_files(&l);
        mmk_cache *c = small_cache();
        mmk_group *g;
        cr_assert_eq(mmk_group_open(&g, l.e, l.n, &(mmk_group_opts){
                         .root = tu_dir(), .cache = c, .io = io }), 0);
        cr_assert_eq(mmk_group_size(g), l.total);
        cr_assert_eq(mmk_group_count(g), l.n);
        check_reads(g, &l, seed * 77, 400);
        cr_assert_eq(mmk_group_close(g), 0);
        mmk_cache_free(c);
        free_layout(&l);
    }
}

Test(group, random_layouts_read_auto) { random_layout_reads(MMK_GROUP_AUTO); }
Test(group, random_layouts_read_mapped) { random_layout_reads(MMK_GROUP_MAPPED); }
Test(group, random_layouts_read_plain) { random_layout_reads(MMK_GROUP_PLAIN); }

Test(group, writes_match_reference_and_create_nested_layout)
{
    for (int io = MMK_GROUP_AUTO; io <= MMK_GROUP_PLAIN; io++) {
        layout l = make_layout(30, 100 + (uint64_t)io, true);
        mmk_cache *c = small_cache();
        mmk_group *g;
        cr_assert_eq(mmk_group_open(&g, l.e, l.n, &(mmk_group_opts){
                         .flags = MMK_RDWR | MMK_CREATE, .root = tu_dir(), .cache = c,
                         .io = io }), 0);
        /* Random writes of the reference, then read back everything. */
        uint64_t s = 9;
        for (int k = 0; k < 300 && l.total; k++) {
            uint64_t off = rnd(&s) % l.total;
            size_t n = (size_t)(rnd(&s) % 200000);
            if (n > l.total - off)
                n = (size_t)(l.total - off);
            cr_assert_eq(mmk_group_pwrite(g, l.ref + off, n, off), (ssize_t)n);
        }
        cr_assert_eq(mmk_group_pwrite(g, l.ref, (size_t)l.total, 0), (ssize_t)l.total);
        cr_assert_eq(mmk_group_sync(g), 0);
        check_reads(g, &l, 5, 200);
        cr_assert_eq(mmk_group_close(g), 0);
        /* The files on disk, the plain way. */
        uint64_t at = 0;
        for (size_t i = 0; i < l.n; i++) {
            size_t size;
            void *data = tu_read_file(tu_path(l.names[i]), &size);
            cr_assert_eq(size, l.e[i].size, "%s", l.names[i]);
            cr_assert(memcmp(data, l.ref + at, size) == 0, "%s", l.names[i]);
            free(data);
            at += size;
        }
        mmk_cache_free(c);
        /* Start the next layout in an empty directory. */
        tu_teardown();
        tu_setup();
        free_layout(&l);
    }
}

Test(group, writes_past_end_and_on_readonly_fail)
{
    layout l = make_layout(3, 7, false);
    cr_assert_gt(l.total, 0);
    write_files(&l);
    mmk_group *g;
    cr_assert_eq(mmk_group_open(&g, l.e, l.n, &(mmk_group_opts){ .root = tu_dir() }), 0);
    unsigned char b[8] = { 0 };
    cr_expect_eq(mmk_group_pwrite(g, b, 1, 0), -EBADF);
    mmk_group_view v;
    cr_expect_eq(mmk_group_pin(g, 0, 1, MMK_RDWR, &v), -EBADF);
    cr_expect_eq(mmk_group_pread(g, b, 8, l.total), 0);
    cr_expect_eq(mmk_group_pread(g, NULL, 8, 0), -EINVAL);
    cr_expect_eq(mmk_group_pin(g, l.total, 1, 0, &v), -EINVAL);
    cr_expect_eq(mmk_group_pin(g, 0, 0, 0, &v), -EINVAL);
    cr_expect_eq(mmk_group_locate(g, l.total, NULL, NULL), -EINVAL);
    mmk_group_close(g);
    cr_assert_eq(mmk_group_open(&g, l.e, l.n, &(mmk_group_opts){
                     .flags = MMK_RDWR, .root = tu_dir() }), 0);
    cr_expect_eq(mmk_group_pwrite(g, b, 2, l.total - 1), -EINVAL, "the layout is fixed");
    ssize_t w1 = mmk_group_pwrite(g, b, 1, l.total - 1);
    cr_expect_eq(w1, 1, "pwrite gave %zd", w1);
    mmk_group_close(g);
    free_layout(&l);
}

Test(group, pins_give_iovecs_of_the_reference)
{
    layout l = make_layout(25, 3, false);
    write_files(&l);
    mmk_group *g;
    cr_assert_eq(mmk_group_open(&g, l.e, l.n, &(mmk_group_opts){ .root = tu_dir() }), 0);
    uint64_t s = 4;
    mmk_group_view held[16];
    for (int k = 0; k < 300; k++) {
        uint64_t off = rnd(&s) % l.total;
        size_t n = 1 + (size_t)(rnd(&s) % 250000);
        if (n > l.total - off)
            n = (size_t)(l.total - off);
        mmk_group_view *v = &held[k % 16];
        if (k >= 16)
            cr_assert_eq(mmk_group_unpin(g, v), 0);
        cr_assert_eq(mmk_group_pin(g, off, n, MMK_RDONLY, v), 0);
        size_t sum = 0;
        for (int i = 0; i < v->iovcnt; i++) {
            cr_assert_gt(v->iov[i].iov_len, 0, "no empty segments");
            cr_assert(memcmp(v->iov[i].iov_base, l.ref + off + sum, v->iov[i].iov_len) == 0);
            sum += v->iov[i].iov_len;
        }
        cr_assert_eq(sum, n);
    }
    cr_expect_eq(mmk_group_close(g), -EBUSY, "pins held");
    for (int k = 0; k < 16; k++)
        cr_assert_eq(mmk_group_unpin(g, &held[k]), 0);
    cr_expect_eq(mmk_group_close(g), 0);
    free_layout(&l);
}

Test(group, write_pins_are_synced)
{
    mmk_group_entry e[] = { { "x", 5000 }, { "y", 7000 } };
    mmk_group *g;
    cr_assert_eq(mmk_group_open(&g, e, 2, &(mmk_group_opts){
                     .flags = MMK_RDWR | MMK_CREATE, .root = tu_dir() }), 0);
    mmk_group_view v;
    cr_assert_eq(mmk_group_pin(g, 4990, 20, MMK_RDWR, &v), 0);
    cr_assert_eq(v.iovcnt, 2);
    memset(v.iov[0].iov_base, 'A', v.iov[0].iov_len);
    memset(v.iov[1].iov_base, 'B', v.iov[1].iov_len);
    cr_assert_eq(mmk_group_unpin(g, &v), 0);
    inject_install();
    cr_assert_eq(mmk_group_sync(g), 0);
    cr_expect_geq(inject_count_msync_sync(), 2, "both files' dirty windows");
    inject_reset();
    mmk_group_close(g);
    size_t n;
    unsigned char *x = tu_read_file(tu_path("x"), &n), *y = tu_read_file(tu_path("y"), &n);
    cr_expect_eq(x[4999], 'A');
    cr_expect_eq(y[9], 'B');
    cr_expect_eq(y[10], 0);
    free(x);
    free(y);
}

Test(group, locate_is_right_around_empty_files)
{
    mmk_group_entry e[] = { { "a", 0 }, { "b", 3 }, { "c", 0 }, { "d", 0 }, { "e", 2 }, { "f", 0 } };
    mmk_group *g;
    cr_assert_eq(mmk_group_open(&g, e, 6, &(mmk_group_opts){
                     .flags = MMK_RDWR | MMK_CREATE, .root = tu_dir() }), 0);
    cr_assert_eq(mmk_group_size(g), 5);
    size_t idx;
    uint64_t fo;
    const size_t want_idx[] = { 1, 1, 1, 4, 4 };
    const uint64_t want_off[] = { 0, 1, 2, 0, 1 };
    for (uint64_t off = 0; off < 5; off++) {
        cr_assert_eq(mmk_group_locate(g, off, &idx, &fo), 0);
        cr_expect_eq(idx, want_idx[off], "byte %llu", (unsigned long long)off);
        cr_expect_eq(fo, want_off[off]);
    }
    cr_expect_eq(mmk_group_pwrite(g, "hello", 5, 0), 5);
    char b[5];
    cr_expect_eq(mmk_group_pread(g, b, 5, 0), 5);
    cr_expect_arr_eq(b, "hello", 5);
    mmk_group_close(g);
    cr_expect_eq(tu_file_size(tu_path("a")), 0, "empty files are created");
    cr_expect_eq(tu_file_size(tu_path("f")), 0);
}

Test(group, ten_thousand_tiny_files)
{
    layout l = make_layout(10000, 11, true);
    for (size_t i = 0; i < l.n; i++)
        l.e[i].size = i % 3; /* 0, 1, 2 bytes */
    l.total = 0;
    for (size_t i = 0; i < l.n; i++)
        l.total += l.e[i].size;
    mmk_group *g;
    cr_assert_eq(mmk_group_open(&g, l.e, l.n, &(mmk_group_opts){
                     .flags = MMK_RDWR | MMK_CREATE, .root = tu_dir() }), 0);
    cr_assert_eq(mmk_group_pwrite(g, l.ref, (size_t)l.total, 0), (ssize_t)l.total);
    cr_assert_eq(mmk_group_close(g), 0);
    cr_assert_eq(mmk_group_open(&g, l.e, l.n, &(mmk_group_opts){ .root = tu_dir() }), 0);
    check_reads(g, &l, 3, 200);
    mmk_group_view v;
    int prc = mmk_group_pin(g, 0, (size_t)l.total, 0, &v);
    cr_assert_eq(prc, 0, "pin gave %d", prc);
    cr_expect_eq(v.iovcnt, 6666, "one segment per nonempty file");
    mmk_group_unpin(g, &v);
    mmk_group_close(g);
    free_layout(&l);
}

Test(group, thousand_files_under_rlimit_nofile_64)
{
    layout l = make_layout(1000, 21, false);
    write_files(&l);
    struct rlimit rl = { 64, 64 };
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    for (int io = MMK_GROUP_AUTO; io <= MMK_GROUP_PLAIN; io++) {
        mmk_cache *c = small_cache();
        mmk_group *g;
        cr_assert_eq(mmk_group_open(&g, l.e, l.n, &(mmk_group_opts){
                         .root = tu_dir(), .cache = c, .io = io }), 0);
        check_reads(g, &l, 8, 300);
        unsigned char *all = malloc(l.total);
        cr_assert_eq(mmk_group_pread(g, all, (size_t)l.total, 0), (ssize_t)l.total);
        cr_assert(memcmp(all, l.ref, l.total) == 0);
        free(all);
        cr_expect_leq(tu_open_fds(), 64);
        mmk_group_close(g);
        mmk_cache_free(c);
    }
    free_layout(&l);
}

Test(group, paths_that_leave_the_root_are_refused)
{
    const char *bad[] = { "../x", "/etc/passwd", "a//b", "a/./b", "a/../b", "", "a/", ".", "..",
                          "out/x" };
    /* out -> a symbolic link leaving the root */
    char outside[4096];
    snprintf(outside, sizeof outside, "%s/outside", tu_dir());
    cr_assert_eq(mkdir(outside, 0755), 0);
    cr_assert_eq(mkdir(tu_path("root"), 0755), 0);
    cr_assert_eq(symlink("../outside", tu_path("root/out")), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mmk_group_entry e[] = { { "ok", 4 }, { bad[i], 4 } };
        mmk_group *g = (mmk_group *)1;
        size_t failed = 0;
        int rc = mmk_group_open(&g, e, 2, &(mmk_group_opts){
            .flags = MMK_RDWR | MMK_CREATE, .root = tu_path("root"), .failed = &failed });
        cr_expect_eq(rc, -EXDEV, "'%s' gave %d", bad[i], rc);
        cr_expect_null(g);
        cr_expect_eq(failed, 1, "'%s' is entry 1", bad[i]);
    }
    /* Nothing was created outside. */
    struct stat st;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/x", outside);
    cr_expect_neq(stat(probe, &st), 0);
    cr_expect_neq(stat("/etc/passwd-mmkit", &st), 0);
    mmk_group_entry n[] = { { NULL, 1 } };
    mmk_group *g;
    cr_expect_eq(mmk_group_open(&g, n, 1, &(mmk_group_opts){ .root = tu_dir() }), -EINVAL);
}

Test(group, missing_and_short_files_name_the_entry)
{
    tu_write_file(tu_path("a"), "abc", 3);
    tu_write_file(tu_path("b"), "de", 2);
    mmk_group *g;
    size_t failed;
    mmk_group_entry e1[] = { { "a", 3 }, { "b", 2 }, { "c", 1 } };
    cr_expect_eq(mmk_group_open(&g, e1, 3, &(mmk_group_opts){ .root = tu_dir(),
                                                               .failed = &failed }), -ENOENT);
    cr_expect_eq(failed, 2);
    mmk_group_entry e2[] = { { "a", 3 }, { "b", 3 } };
    cr_expect_eq(mmk_group_open(&g, e2, 2, &(mmk_group_opts){ .root = tu_dir(),
                                                               .failed = &failed }), -EINVAL);
    cr_expect_eq(failed, 1);
    cr_expect_eq(tu_file_size(tu_path("b")), 2, "a read-only open changes nothing");
    mmk_group_entry e3[] = { { "a", 3 }, { "b", 3 }, { "sub/c", 2 } };
    cr_assert_eq(mmk_group_open(&g, e3, 3, &(mmk_group_opts){
                     .flags = MMK_RDWR | MMK_CREATE, .root = tu_dir() }), 0);
    mmk_group_close(g);
    cr_expect_eq(tu_file_size(tu_path("b")), 3, "short files are extended");
    cr_expect_eq(tu_file_size(tu_path("sub/c")), 2);
    mmk_group_entry e4[] = { { "a", 1 } };
    cr_assert_eq(mmk_group_open(&g, e4, 1, &(mmk_group_opts){
                     .flags = MMK_RDWR | MMK_CREATE, .root = tu_dir() }), 0);
    mmk_group_close(g);
    cr_expect_eq(tu_file_size(tu_path("a")), 3, "never shrunk");
    cr_assert_eq(mkdir(tu_path("dir"), 0755), 0);
    mmk_group_entry e5[] = { { "dir", 1 } };
    cr_expect_eq(mmk_group_open(&g, e5, 1, &(mmk_group_opts){ .root = tu_dir(),
                                                               .failed = &failed }), -EISDIR);
    cr_expect_eq(failed, 0);
}

Test(group, bad_arguments)
{
    mmk_group *g;
    mmk_group_entry e[] = { { "a", 1 } };
    cr_expect_eq(mmk_group_open(NULL, e, 1, NULL), -EINVAL);
    cr_expect_eq(mmk_group_open(&g, NULL, 1, NULL), -EINVAL);
    cr_expect_eq(mmk_group_open(&g, e, 1, &(mmk_group_opts){ .flags = MMK_CREATE }), -EINVAL);
    cr_expect_eq(mmk_group_open(&g, e, 1, &(mmk_group_opts){ .io = 7 }), -EINVAL);
    cr_expect_eq(mmk_group_open(&g, NULL, 0, &(mmk_group_opts){ .root = tu_dir() }), 0);
    cr_expect_eq(mmk_group_size(g), 0);
    char b;
    cr_expect_eq(mmk_group_pread(g, &b, 1, 0), 0);
    cr_expect_eq(mmk_group_close(g), 0);
    cr_expect_eq(mmk_group_close(NULL), -EINVAL);
    cr_expect_eq(mmk_group_sync(NULL), -EINVAL);
    mmk_group_entry big[] = { { "a", (uint64_t)INT64_MAX }, { "b", 2 } };
    cr_expect_eq(mmk_group_open(&g, big, 2, &(mmk_group_opts){ .root = tu_dir() }),
                 -EOVERFLOW);
}

Test(group, reserve_allocates_blocks)
{
    mmk_group_entry e[] = { { "r/one", 1 << 20 }, { "r/two", 3 << 20 } };
    mmk_group *g;
    int rc = mmk_group_open(&g, e, 2, &(mmk_group_opts){
        .flags = MMK_RDWR | MMK_CREATE | MMK_RESERVE, .root = tu_dir() });
    cr_assert_eq(rc, 0);
    mmk_group_close(g);
    struct stat st;
    cr_assert_eq(stat(tu_path("r/two"), &st), 0);
    cr_expect_eq(st.st_size, 3 << 20);
    cr_expect_geq((uint64_t)st.st_blocks * 512, (uint64_t)3 << 20, "blocks allocated");
}

Test(group, truncated_file_gives_eio_not_sigbus)
{
    tu_write_file(tu_path("a"), "aaaaaaaa", 8);
    unsigned char big[200000];
    memset(big, 'b', sizeof big);
    tu_write_file(tu_path("b"), big, sizeof big);
    mmk_group_entry e[] = { { "a", 8 }, { "b", sizeof big } };
    mmk_group *g;
    cr_assert_eq(mmk_group_open(&g, e, 2, &(mmk_group_opts){ .root = tu_dir(),
                                                              .io = MMK_GROUP_MAPPED }), 0);
    unsigned char buf[1000];
    cr_assert_eq(mmk_group_pread(g, buf, 1000, 150000), 1000);
    cr_assert_eq(truncate(tu_path("b"), 1000), 0);
    ssize_t r = mmk_group_pread(g, buf, 1000, 150000);
    cr_expect(r == -EIO || r == 0, "gave %zd", r);
    cr_expect_eq(mmk_group_pread(g, buf, 100, 0), 100, "the rest still reads");
    mmk_group_close(g);
}
