/* tests/test_compat.c — the mf_* API (compat/include/mapped_file.h): every
 * function's normal and error paths, a random differential test against
 * pread/pwrite on a twin file, threads on one handle, and the scale that must
 * hold (500,000 maps held at once; terabytes of overlapping maps in 2 GiB of
 * address space; a file opened under a 512 MiB address-space limit). */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <mapped_file.h>
#include <mmkit.h>

#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define TiB ((uint64_t)1 << 40)
#define WINDOW (2 * MiB) /* the cache's default window on 64-bit */

/* Every test ends with a leak check (a no-op without LeakSanitizer). */
static void compat_fini(void)
{
    tu_teardown();
    /* Criterion ignores assertions here, but not a crash: the run fails. */
    if (tu_leaks()) {
        fprintf(stderr, "memory leaked: see the LeakSanitizer report above\n");
        abort();
    }
}

TestSuite(compat, .init = tu_setup, .fini = compat_fini, .timeout = 120);

/* Criterion does not run the .fini hook after cr_skip_test: clean up first. */
#define skip_test(...)                                                          \
    do {                                                                        \
        tu_teardown();                                                          \
        cr_skip_test(__VA_ARGS__);                                              \
    } while (0)

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: deterministic, good enough to pick offsets */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return n ? rng_next(s) % n : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Address space of this process now, in bytes (VmSize), 0 if unknown. */
static uint64_t vm_size(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    unsigned long kib = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %lu kB", &kib) == 1)
            break;
    fclose(f);
    return (uint64_t)kib * 1024;
}

/* A sparse file of `size` bytes holding `block` bytes of tu_pattern(seed) at
 * every multiple of `every`: byte o is expect_sparse(o, ...). */
static const char *sparse_file(const char *name, uint64_t size, size_t every, size_t block,
                               uint32_t seed)
{
    const char *path = tu_path(name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)size), 0);
    unsigned char *buf = malloc(block);
    cr_assert_not_null(buf);
    for (uint64_t off = 0; block && off + block <= size; off += every) {
        tu_pattern(buf, block, off, seed);
        cr_assert_eq(pwrite(fd, buf, block, (off_t)off), (ssize_t)block);
    }
    free(buf);
    close(fd);
    return path;
}

static uint8_t expect_sparse(uint64_t o, size_t every, size_t block, uint32_t seed)
{
    return o % every < block ? tu_pattern_byte(o, seed) : 0;
}

static mf_handle_t open_ok(const char *path)
{
    mf_handle_t mf = mf_open(path);
    cr_assert_neq(mf, MF_OPEN_FAILED, "mf_open(%s): %s", path, strerror(errno));
    return mf;
}

static void close_ok(mf_handle_t mf)
{
    cr_assert_eq(mf_close(mf), 0, "mf_close: %s", strerror(errno));
}

/* Read byte at p and write it back changed, then restore it: the byte is
 * readable and writable. */
static void touch_rw(volatile unsigned char *p)
{
    unsigned char v = *p;
    *p = (unsigned char)(v ^ 0x5a);
    cr_assert_eq(*p, (unsigned char)(v ^ 0x5a));
    *p = v;
}

static mmk_cache_stats cache_stats(void)
{
    mmk_cache_stats st;
    mmk_cache_stats_get(mmk_cache_default(), &st);
    return st;
}

/* ---- mf_open -------------------------------------------------------------- */

Test(compat, open_missing_is_enoent)
{
    errno = 0;
    cr_expect_eq(mf_open(tu_path("missing")), MF_OPEN_FAILED);
    cr_expect_eq(errno, ENOENT);
    cr_expect_eq(tu_file_size(tu_path("missing")), -1, "nothing was created");
}

Test(compat, open_null_is_einval)
{
    errno = 0;
    cr_expect_eq(mf_open(NULL), MF_OPEN_FAILED);
    cr_expect_eq(errno, EINVAL);
}

Test(compat, open_directory_is_eisdir)
{
    errno = 0;
    cr_expect_eq(mf_open(tu_dir()), MF_OPEN_FAILED);
    cr_expect_eq(errno, EISDIR);
}

Test(compat, open_fifo_and_device_are_refused_without_blocking, .timeout = 10)
{
    const char *fifo = tu_path("fifo");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    int fds = tu_open_fds();
    errno = 0;
    cr_expect_eq(mf_open(fifo), MF_OPEN_FAILED, "a FIFO with no writer: no wait");
    cr_expect_eq(errno, ENODEV);
    errno = 0;
    cr_expect_eq(mf_open("/dev/null"), MF_OPEN_FAILED);
    cr_expect_eq(errno, ENODEV);
    cr_expect_eq(tu_open_fds(), fds, "no descriptor leaked");
}

Test(compat, open_maps_nothing_up_front)
{
    const char *path = sparse_file("big", 4 * GiB, 0, 0, 0);
    uint64_t before = vm_size();
    mf_handle_t mf = open_ok(path);
    mmk_cache_stats st = cache_stats();
    cr_expect_eq(st.mappings, 0);
    cr_expect_eq(st.mapped_bytes, 0);
    cr_expect_lt(vm_size(), before + 64 * MiB, "no large mapping at open");
    cr_expect_eq(mf_file_size(mf), (off_t)(4 * GiB));
    close_ok(mf);
}

Test(compat, open_follows_symlinks_and_closes_cleanly)
{
    const char *path = tu_pattern_file("f", 1000, 3);
    const char *link = tu_path("link");
    cr_assert_eq(symlink(path, link), 0);
    int fds = tu_open_fds();
    mf_handle_t mf = open_ok(link);
    unsigned char buf[1000], want[1000];
    cr_expect_eq(mf_read(mf, buf, sizeof buf, 0), 1000);
    tu_pattern(want, sizeof want, 0, 3);
    cr_expect_arr_eq(buf, want, sizeof buf);
    close_ok(mf);
    cr_expect_eq(tu_open_fds(), fds, "mf_close closes every descriptor");
}

/* ---- read-only fallback ---------------------------------------------------- */

/* Checks on a handle that must have fallen back to read-only. */
static void expect_read_only_handle(mf_handle_t mf, uint32_t seed, size_t n)
{
    unsigned char buf[4096], want[4096];
    cr_assert_leq(n, sizeof buf);
    cr_expect_eq(mf_read(mf, buf, n, 0), (ssize_t)n);
    tu_pattern(want, n, 0, seed);
    cr_expect_arr_eq(buf, want, n);
    errno = 0;
    cr_expect_eq(mf_write(mf, "x", 1, 0), -1);
    cr_expect_eq(errno, EBADF);
    errno = 0;
    cr_expect_eq(mf_write(mf, "x", 1, (off_t)n), -1, "nor past the end");
    cr_expect_eq(errno, EBADF);
    cr_expect_eq(mf_file_size(mf), (off_t)n);
    mf_mapmem_handle_t h;
    const unsigned char *p = mf_map(mf, 1, n - 1, &h);
    cr_assert_not_null(p, "mf_map: %s", strerror(errno));
    cr_expect_arr_eq(p, want + 1, n - 1);
    char perms[5];
    cr_assert_eq(tu_mapping_perms(p, perms), 0);
    cr_expect_eq(perms[1], '-', "mapped read-only (%s)", perms);
    cr_expect_eq(mf_unmap(mf, h), 0);
}

/* Turn CAP_DAC_OVERRIDE off or back on in the effective set, so that root
 * is subject to permission bits.  0, or -1 if capabilities cannot be set. */
static int dac_override(int on)
{
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0)
        return -1;
    if (on)
        data[0].effective |= 1u << CAP_DAC_OVERRIDE;
    else
        data[0].effective &= ~(1u << CAP_DAC_OVERRIDE);
    return (int)syscall(SYS_capset, &hdr, data);
}

Test(compat, read_only_fallback_on_mode_0444)
{
    const size_t n = 3000;
    const char *path = tu_pattern_file("ro", n, 11);
    cr_assert_eq(chmod(path, 0444), 0);
    int dropped = 0;
    if (geteuid() == 0) { /* root ignores permission bits unless... */
        if (dac_override(0) != 0)
            skip_test("running as root and cannot drop CAP_DAC_OVERRIDE");
        dropped = 1;
    }
    cr_assert_eq(open(path, O_RDWR), -1, "the test's premise: no write access");
    mf_handle_t mf = open_ok(path);
    if (dropped)
        dac_override(1);
    expect_read_only_handle(mf, 11, n);
    close_ok(mf);
}

/* A mount made by a test in its private mount namespace (root only),
 * removed by the test's .fini hook. */
static const char *mounted;

static void mount_teardown(void)
{
    if (mounted)
        umount2(mounted, MNT_DETACH);
    mounted = NULL;
    compat_fini();
}

Test(compat, read_only_fallback_on_read_only_filesystem, .fini = mount_teardown)
{
    const size_t n = 4000;
    const char *rw = tu_path("rw"), *ro = tu_path("ro");
    cr_assert_eq(mkdir(rw, 0700), 0);
    cr_assert_eq(mkdir(ro, 0700), 0);
    char file[4096];
    snprintf(file, sizeof file, "%s/f", rw);
    unsigned char data[4000];
    tu_pattern(data, n, 0, 12);
    tu_write_file(file, data, n);
    if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 ||
        mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount(rw, ro, NULL, MS_BIND, NULL) != 0) {
        tu_teardown();
        cr_skip_test("needs root and mount namespaces");
    }
    mounted = ro;
    cr_assert_eq(mount(NULL, ro, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL), 0);
    snprintf(file, sizeof file, "%s/f", ro);
    errno = 0;
    cr_assert_eq(open(file, O_RDWR), -1);
    cr_assert_eq(errno, EROFS, "the test's premise: a read-only filesystem");
    mf_handle_t mf = open_ok(file);
    expect_read_only_handle(mf, 12, n);
    close_ok(mf);
}

/* ---- bad handles ------------------------------------------------------------ */

Test(compat, null_and_foreign_file_handles_are_einval)
{
    char junk[512] = { 0 }; /* not an mf handle: no magic number */
    mf_mapmem_handle_t h = (mf_mapmem_handle_t)1;
    char buf[8];
    mf_handle_t bad[2] = { NULL, junk };
    for (int i = 0; i < 2; i++) {
        errno = 0;
        cr_expect_eq(mf_close(bad[i]), -1);
        cr_expect_eq(errno, EINVAL);
        errno = 0;
        cr_expect_eq(mf_read(bad[i], buf, sizeof buf, 0), -1);
        cr_expect_eq(errno, EINVAL);
        errno = 0;
        cr_expect_eq(mf_write(bad[i], buf, sizeof buf, 0), -1);
        cr_expect_eq(errno, EINVAL);
        errno = 0;
        cr_expect_null(mf_map(bad[i], 0, 1, &h));
        cr_expect_eq(errno, EINVAL);
        cr_expect_null(h, "*h is cleared on failure");
        errno = 0;
        cr_expect_eq(mf_unmap(bad[i], (mf_mapmem_handle_t)1), -1);
        cr_expect_eq(errno, EINVAL);
        errno = 0;
        cr_expect_eq(mf_file_size(bad[i]), -1);
        cr_expect_eq(errno, EINVAL);
    }
}

/* ---- mf_read / mf_write ------------------------------------------------------ */

Test(compat, read_is_like_pread)
{
    const size_t n = 3 * WINDOW + 123; /* crosses windows */
    const char *path = tu_pattern_file("f", n, 5);
    mf_handle_t mf = open_ok(path);
    unsigned char *buf = malloc(n + 100), *want = malloc(n);
    cr_assert(buf && want);
    tu_pattern(want, n, 0, 5);

    cr_expect_eq(mf_read(mf, buf, n, 0), (ssize_t)n, "whole file");
    cr_expect_arr_eq(buf, want, n);
    cr_expect_eq(mf_read(mf, buf, WINDOW + 10, (off_t)(WINDOW - 5)), (ssize_t)(WINDOW + 10));
    cr_expect_arr_eq(buf, want + WINDOW - 5, WINDOW + 10, "across a window boundary");
    cr_expect_eq(mf_read(mf, buf, 100, (off_t)(n - 30)), 30, "short read at end of file");
    cr_expect_arr_eq(buf, want + n - 30, 30);
    cr_expect_eq(mf_read(mf, buf, n + 100, 0), (ssize_t)n);
    cr_expect_eq(mf_read(mf, buf, 10, (off_t)n), 0, "0 at end of file");
    cr_expect_eq(mf_read(mf, buf, 10, (off_t)(n + 12345)), 0, "0 past end of file");
    cr_expect_eq(mf_read(mf, buf, 10, INT64_MAX), 0);
    cr_expect_eq(mf_read(mf, buf, 0, 0), 0, "count 0");
    cr_expect_eq(mf_read(mf, NULL, 0, 0), 0, "count 0, NULL buffer");

    errno = 0;
    cr_expect_eq(mf_read(mf, buf, 10, -1), -1, "negative offset");
    cr_expect_eq(errno, EINVAL);
    errno = 0;
    cr_expect_eq(mf_read(mf, NULL, 10, 0), -1, "NULL buffer");
    cr_expect_eq(errno, EINVAL);
    free(buf);
    free(want);
    close_ok(mf);
}

Test(compat, write_is_like_pwrite_and_grows_the_file)
{
    const char *path = tu_pattern_file("f", 1000, 6);
    mf_handle_t mf = open_ok(path);
    unsigned char data[5000];
    tu_pattern(data, sizeof data, 0, 60);

    cr_expect_eq(mf_write(mf, data, 100, 10), 100, "inside the file");
    cr_expect_eq(mf_file_size(mf), 1000);
    cr_expect_eq(mf_write(mf, data, 500, 900), 500, "across the end");
    cr_expect_eq(mf_file_size(mf), 1400, "size follows the growth");
    const off_t far = (off_t)(3 * WINDOW + 7);
    cr_expect_eq(mf_write(mf, data, sizeof data, far), (ssize_t)sizeof data, "far past the end");
    cr_expect_eq(mf_file_size(mf), far + (off_t)sizeof data);
    cr_expect_eq(mf_write(mf, data, 0, 0), 0, "count 0");
    cr_expect_eq(mf_file_size(mf), far + (off_t)sizeof data);

    unsigned char back[5000], zero[5000] = { 0 };
    cr_expect_eq(mf_read(mf, back, 100, 10), 100);
    cr_expect_arr_eq(back, data, 100);
    cr_expect_eq(mf_read(mf, back, sizeof back, 1400), (ssize_t)sizeof back);
    cr_expect_arr_eq(back, zero, sizeof back, "the hole reads as zeros");
    cr_expect_eq(mf_read(mf, back, sizeof back, far), (ssize_t)sizeof back);
    cr_expect_arr_eq(back, data, sizeof back);

    errno = 0;
    cr_expect_eq(mf_write(mf, data, 1, -5), -1, "negative offset");
    cr_expect_eq(errno, EINVAL);
    errno = 0;
    cr_expect_eq(mf_write(mf, NULL, 1, 0), -1, "NULL buffer");
    cr_expect_eq(errno, EINVAL);
    errno = 0;
    cr_expect_eq(mf_write(mf, data, 2, INT64_MAX), -1, "past the largest offset");
    cr_expect_eq(errno, EFBIG);
    cr_expect_eq(mf_file_size(mf), far + (off_t)sizeof data, "failed writes change nothing");
    close_ok(mf);

    /* What mf_close wrote back is what a plain read sees. */
    size_t n;
    unsigned char *file = tu_read_file(path, &n);
    cr_assert_eq(n, (size_t)far + sizeof data);
    cr_expect_arr_eq(file + 10, data, 100);
    cr_expect_arr_eq(file + 900, data, 500);
    cr_expect_arr_eq(file + far, data, sizeof data);
    free(file);
}

Test(compat, read_after_truncation_is_short_not_sigbus)
{
    const size_t n = 4 * MiB;
    const char *path = tu_pattern_file("f", n, 15);
    mf_handle_t mf = open_ok(path);
    unsigned char *buf = malloc(n);
    cr_assert_not_null(buf);
    cr_assert_eq(mf_read(mf, buf, n, 0), (ssize_t)n, "every window mapped");
    cr_assert_eq(truncate(path, (off_t)MiB), 0); /* behind the handle's back */
    cr_expect_eq(mf_read(mf, buf, 4096, (off_t)(2 * MiB)), 0, "the lost part reads as EOF");
    cr_expect_eq(mf_read(mf, buf, 8192, (off_t)(MiB - 100)), 100, "short at the new end");
    unsigned char want[100];
    tu_pattern(want, sizeof want, MiB - 100, 15);
    cr_expect_arr_eq(buf, want, sizeof want);
    cr_expect_eq(mf_file_size(mf), (off_t)MiB, "the handle learnt the new size");
    mf_mapmem_handle_t h;
    errno = 0;
    cr_expect_null(mf_map(mf, (off_t)(2 * MiB), 10, &h), "nor maps it");
    cr_expect_eq(errno, EINVAL);
    free(buf);
    close_ok(mf);
}

#define TINY_FS_BYTES (1024 * 1024)

Test(compat, write_on_full_filesystem_is_enospc, .fini = mount_teardown)
{
    const char *dir = tu_path("tiny");
    cr_assert_eq(mkdir(dir, 0700), 0);
    char opts[64];
    snprintf(opts, sizeof opts, "size=%d,mode=0700", TINY_FS_BYTES);
    if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 ||
        mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("mmkit-test", dir, "tmpfs", 0, opts) != 0) {
        compat_fini();
        cr_skip_test("needs root and mount namespaces");
    }
    mounted = dir;
    char path[4096];
    snprintf(path, sizeof path, "%s/f", dir);
    tu_write_file(path, "", 0);
    mf_handle_t mf = open_ok(path);
    unsigned char block[64 * 1024];
    memset(block, 0x3c, sizeof block);
    off_t off = 0;
    ssize_t r;
    while ((r = mf_write(mf, block, sizeof block, off)) > 0 && off < 8 * TINY_FS_BYTES)
        off += r;
    cr_expect_eq(r, -1, "the write that found the disk full");
    cr_expect_eq(errno, ENOSPC);
    cr_expect_gt(off, 0);
    cr_expect_leq(off, (off_t)TINY_FS_BYTES);
    unsigned char back[4096];
    cr_expect_eq(mf_read(mf, back, sizeof back, 0), (ssize_t)sizeof back);
    cr_expect_arr_eq(back, block, sizeof back, "what was written before is there");
    mf_close(mf); /* its result does not matter here */
    unlink(path);
}

Test(compat, empty_file)
{
    const char *path = tu_path("empty");
    tu_write_file(path, "", 0);
    mf_handle_t mf = open_ok(path);
    char buf[16];
    mf_mapmem_handle_t h;
    cr_expect_eq(mf_file_size(mf), 0);
    cr_expect_eq(mf_read(mf, buf, sizeof buf, 0), 0);
    errno = 0;
    cr_expect_null(mf_map(mf, 0, 1, &h), "nothing to map");
    cr_expect_eq(errno, EINVAL);
    cr_expect_eq(mf_write(mf, "abc", 3, 0), 3);
    char *p = mf_map(mf, 0, 3, &h);
    cr_assert_not_null(p, "mapped after growth: %s", strerror(errno));
    cr_expect_arr_eq(p, "abc", 3);
    cr_expect_eq(mf_unmap(mf, h), 0);
    close_ok(mf);
}

/* ---- mf_map / mf_unmap -------------------------------------------------------- */

Test(compat, map_gives_exactly_the_range)
{
    const size_t n = 5 * WINDOW + 4321;
    const char *path = tu_pattern_file("f", n, 8);
    mf_handle_t mf = open_ok(path);
    unsigned char *want = malloc(n);
    cr_assert_not_null(want);
    tu_pattern(want, n, 0, 8);
    const struct { uint64_t off; size_t len; } r[] = {
        { 0, 1 }, { 1, 1 }, { 4095, 2 }, { 12345, 6789 }, { WINDOW - 1, 2 },
        { WINDOW - 100, 3 * WINDOW }, { 0, n }, { n - 1, 1 }, { n - 5000, 5000 },
        { 3 * WINDOW, WINDOW }, { 77, n - 77 },
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        mf_mapmem_handle_t h = NULL;
        unsigned char *p = mf_map(mf, (off_t)r[i].off, r[i].len, &h);
        cr_assert_not_null(p, "map %zu: %s", i, strerror(errno));
        cr_assert_not_null(h);
        cr_expect_arr_eq(p, want + r[i].off, r[i].len, "map %zu", i);
        touch_rw(p);
        touch_rw(p + r[i].len - 1);
        cr_expect_eq(mf_unmap(mf, h), 0);
    }
    free(want);
    close_ok(mf);
}

Test(compat, map_writes_reach_the_file_and_mf_read)
{
    const size_t n = 3 * WINDOW;
    const char *path = tu_pattern_file("f", n, 9);
    mf_handle_t mf = open_ok(path);
    mf_mapmem_handle_t h;
    unsigned char *p = mf_map(mf, (off_t)(WINDOW - 10), 20, &h);
    cr_assert_not_null(p);
    memcpy(p, "0123456789abcdefghij", 20);
    char buf[20];
    cr_expect_eq(mf_read(mf, buf, 20, (off_t)(WINDOW - 10)), 20);
    cr_expect_arr_eq(buf, "0123456789abcdefghij", 20, "mf_read sees the map's writes");
    cr_expect_eq(mf_write(mf, "ZZ", 2, (off_t)WINDOW), 2);
    cr_expect_arr_eq(p + 10, "ZZ", 2, "the map sees mf_write");
    cr_expect_eq(mf_unmap(mf, h), 0);
    close_ok(mf);
    size_t len;
    char *file = tu_read_file(path, &len);
    cr_expect_arr_eq(file + WINDOW - 10, "0123456789ZZcdefghij", 20);
    free(file);
}

Test(compat, map_errors)
{
    const size_t n = 10000;
    const char *path = tu_pattern_file("f", n, 10);
    mf_handle_t mf = open_ok(path);
    mf_mapmem_handle_t h = (mf_mapmem_handle_t)1;
    const struct { off_t off; size_t len; const char *what; } bad[] = {
        { 0, 0, "size 0" },
        { -1, 10, "negative offset" },
        { (off_t)n, 1, "at end of file" },
        { 0, n + 1, "one byte past the end" },
        { (off_t)n - 10, 11, "across the end" },
        { (off_t)n + 4096, 1, "past the end" },
        { INT64_MAX, SIZE_MAX, "offset + size overflows" },
        { 1, SIZE_MAX, "size overflows" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        h = (mf_mapmem_handle_t)1;
        cr_expect_null(mf_map(mf, bad[i].off, bad[i].len, &h), "%s", bad[i].what);
        cr_expect_eq(errno, EINVAL, "%s", bad[i].what);
        cr_expect_null(h, "%s: *h cleared", bad[i].what);
    }
    errno = 0;
    cr_expect_null(mf_map(mf, 0, 1, NULL), "NULL h");
    cr_expect_eq(errno, EINVAL);
    cr_expect_eq(cache_stats().pins, 0, "no failed map left a pin");
    close_ok(mf);
}

Test(compat, unmap_errors)
{
    const char *path = tu_pattern_file("f", 10000, 13);
    mf_handle_t a = open_ok(path), b = open_ok(path);
    mf_mapmem_handle_t ha, hb;
    cr_assert_not_null(mf_map(a, 0, 100, &ha));
    cr_assert_not_null(mf_map(b, 0, 100, &hb));
    const struct { mf_handle_t mf; mf_mapmem_handle_t h; const char *what; } bad[] = {
        { a, NULL, "NULL h" },
        { NULL, ha, "NULL mf" },
        { a, hb, "a handle of another mf" },
        { b, ha, "a handle of another mf (2)" },
        { a, (mf_mapmem_handle_t)(uintptr_t)0x1234567, "a made-up handle" },
        { a, (mf_mapmem_handle_t)&ha, "a pointer that is no handle" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        cr_expect_eq(mf_unmap(bad[i].mf, bad[i].h), -1, "%s", bad[i].what);
        cr_expect_eq(errno, EINVAL, "%s", bad[i].what);
    }
    cr_expect_eq(cache_stats().pins, 2, "the failed unmaps released nothing");
    cr_expect_eq(mf_unmap(a, ha), 0, "still valid on its own mf");
    errno = 0;
    cr_expect_eq(mf_unmap(a, ha), -1, "double unmap");
    cr_expect_eq(errno, EINVAL);
    cr_expect_eq(mf_unmap(b, hb), 0);
    cr_expect_eq(cache_stats().pins, 0);
    close_ok(a);
    close_ok(b);
}

Test(compat, overlapping_maps_share_mappings)
{
    const char *path = sparse_file("f", 64 * MiB, 0, 0, 0);
    mf_handle_t mf = open_ok(path);
    enum { N = 1000 };
    mf_mapmem_handle_t h[N];
    uint64_t seed = 42;
    for (int i = 0; i < N; i++) {
        uint64_t off = rng_below(&seed, 8 * MiB);
        size_t len = 1 + (size_t)rng_below(&seed, 4 * MiB);
        cr_assert_not_null(mf_map(mf, (off_t)off, len, &h[i]), "map %d", i);
    }
    mmk_cache_stats st = cache_stats();
    cr_expect_lt(st.mappings, 64, "%zu mappings for %d maps of 12 MiB", st.mappings, N);
    cr_expect_leq(st.mapped_bytes, 64 * MiB);
    for (int i = 0; i < N; i++)
        cr_assert_eq(mf_unmap(mf, h[i]), 0);
    close_ok(mf);
}

Test(compat, close_with_maps_held)
{
    const size_t n = 6 * WINDOW + 999;
    const char *path = tu_pattern_file("f", n, 14);
    int fds = tu_open_fds();
    mf_handle_t mf = open_ok(path);
    enum { N = 200 };
    uint64_t off[N], seed = 7;
    mf_mapmem_handle_t h;
    for (int i = 0; i < N; i++) {
        /* disjoint 16-byte slots: below (and one across) each of five window
         * boundaries, or one in each of the first pages */
        int j = i / 2;
        off[i] = (i % 2) ? (uint64_t)(j % 5 + 1) * WINDOW - 8 - (uint64_t)(j / 5) * 16
                         : (uint64_t)i * 4096 + rng_below(&seed, 4000);
        unsigned char *p = mf_map(mf, (off_t)off[i], 16, &h);
        cr_assert_not_null(p);
        memset(p, 0xc0 + i % 16, 16);
    }
    cr_expect_eq(cache_stats().pins, N);
    close_ok(mf);
    mmk_cache_stats st = cache_stats();
    cr_expect_eq(st.pins, 0, "mf_close released every map");
    cr_expect_eq(st.mappings, 0, "and every mapping of the file");
    cr_expect_eq(tu_open_fds(), fds);
    size_t len;
    unsigned char *file = tu_read_file(path, &len);
    cr_assert_eq(len, n);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 16; k++)
            cr_assert_eq(file[off[i] + (uint64_t)k], 0xc0 + i % 16, "map %d byte %d", i, k);
    free(file);
}

/* ---- past the cache's budget ---------------------------------------------------- */

Test(compat, map_larger_than_the_cache_budget)
{
    mmk_cache_opts lim;
    mmk_cache_limits(mmk_cache_default(), &lim);
    const uint64_t size = (uint64_t)lim.max_mapped + 2 * GiB; /* 34 GiB by default */
    const char *path = sparse_file("huge", size, 0, 0, 0);
    mf_handle_t mf = open_ok(path);
    cr_assert_eq(mf_write(mf, "head", 4, 10), 4);
    cr_assert_eq(mf_write(mf, "tail", 4, (off_t)(size - 4)), 4);
    mf_mapmem_handle_t h1, h2, h3;
    const uint64_t len = (uint64_t)lim.max_mapped + 1 * GiB;
    unsigned char *p = mf_map(mf, 1, (size_t)len, &h1);
    cr_assert_not_null(p, "a map larger than the budget: %s", strerror(errno));
    cr_expect_arr_eq(p + 9, "head", 4);
    touch_rw(p);
    touch_rw(p + len - 1);
    p[len - 1] = 'Z';
    unsigned char *q = mf_map(mf, (off_t)(size - len), (size_t)len, &h2);
    cr_assert_not_null(q, "another: %s", strerror(errno));
    cr_expect_arr_eq(q + len - 4, "tail", 4);
    unsigned char *r = mf_map(mf, 5, (size_t)len - 10, &h3);
    cr_assert_not_null(r);
    cr_expect_eq(r, p + 4, "a range inside the first shares its mapping");
    char c = 0;
    cr_expect_eq(mf_read(mf, &c, 1, (off_t)len), 1);
    cr_expect_eq(c, 'Z', "mf_read sees a write through the map");
    cr_expect_eq(mf_unmap(mf, h3), 0);
    cr_expect_eq(mf_unmap(mf, h1), 0);
    errno = 0;
    cr_expect_eq(mf_unmap(mf, h1), -1, "double unmap of a direct map");
    cr_expect_eq(errno, EINVAL);
    close_ok(mf); /* with h2 still held */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_expect_eq(pread(fd, &c, 1, (off_t)len), 1);
    cr_expect_eq(c, 'Z', "the write through the map reached the file");
    close(fd);
}

/* Hold more windows than the cache may map (its max_maps budget): the maps
 * past it get mappings of their own, and reads still work. */
Test(compat, maps_past_the_cache_mapping_budget)
{
    mmk_cache_opts lim;
    mmk_cache_limits(mmk_cache_default(), &lim);
    const size_t nwin = lim.max_maps + 2000;
    const uint64_t size = (uint64_t)nwin * lim.window;
    if (size > 64 * GiB)
        skip_test("the cache's budgets here make this test too large");
    const char *path = sparse_file("wide", size, 0, 0, 0);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    for (size_t w = 0; w < nwin; w++) {
        unsigned char v = (unsigned char)(w * 31 + 1);
        cr_assert_eq(pwrite(fd, &v, 1, (off_t)(w * lim.window + 100)), 1);
    }
    close(fd);
    /* A read-only handle: write pins of every window would make mf_close
     * msync each of them, which takes long. */
    cr_assert_eq(chmod(path, 0444), 0);
    int dropped = geteuid() == 0 && dac_override(0) == 0;
    if (geteuid() == 0 && !dropped)
        skip_test("running as root and cannot drop CAP_DAC_OVERRIDE");
    mf_handle_t mf = open_ok(path);
    if (dropped)
        dac_override(1);
    cr_assert_eq(mf_write(mf, "x", 1, 0), -1, "the handle is read-only");

    mf_mapmem_handle_t *h = malloc(nwin * sizeof *h);
    cr_assert_not_null(h);
    for (size_t w = 0; w < nwin; w++) {
        const unsigned char *p = mf_map(mf, (off_t)(w * lim.window + 90), 20, &h[w]);
        cr_assert_not_null(p, "window %zu: %s", w, strerror(errno));
        cr_assert_eq(p[10], (unsigned char)(w * 31 + 1), "window %zu", w);
        cr_assert_eq(p[19], 0);
    }
    mmk_cache_stats st = cache_stats();
    cr_expect_leq(st.mappings, lim.max_maps, "the cache kept to its budget");
    cr_expect_lt(st.pins, nwin, "some maps are the compat layer's own");
    /* A second map of a window served by an own mapping shares it. */
    mf_mapmem_handle_t h2;
    const unsigned char *p = mf_map(mf, (off_t)((nwin - 1) * lim.window + 95), 10, &h2);
    cr_assert_not_null(p);
    cr_expect_eq(p[5], (unsigned char)((nwin - 1) * 31 + 1));
    cr_expect_eq(mf_unmap(mf, h2), 0);
    /* Reads of windows the cache cannot map now go through the descriptor. */
    for (size_t w = nwin - 100; w < nwin; w++) {
        unsigned char c = 0;
        cr_assert_eq(mf_read(mf, &c, 1, (off_t)(w * lim.window + 100)), 1);
        cr_assert_eq(c, (unsigned char)(w * 31 + 1));
    }
    for (size_t w = 0; w < nwin; w += 2)
        cr_assert_eq(mf_unmap(mf, h[w]), 0);
    close_ok(mf); /* the odd ones still held */
    cr_expect_eq(cache_stats().pins, 0);
    free(h);
}

/* ---- a random differential test against pread/pwrite on a twin file ------------ */

#define DIFF_OPS      4000
#define DIFF_MAX_SIZE (12 * MiB)
#define DIFF_HELD     16

struct held { unsigned char *p; uint64_t off; size_t len; mf_mapmem_handle_t h; };

static uint64_t diff_off(uint64_t *s, uint64_t size)
{
    if (rng_below(s, 2)) { /* near a window boundary */
        uint64_t w = (rng_below(s, DIFF_MAX_SIZE / WINDOW) + 1) * WINDOW;
        return w - 8192 + rng_below(s, 16384);
    }
    return rng_below(s, size + 64 * KiB);
}

static size_t diff_len(uint64_t *s)
{
    uint64_t k = rng_below(s, 100);
    if (k < 60)
        return 1 + (size_t)rng_below(s, 4096);
    if (k < 88)
        return 1 + (size_t)rng_below(s, 256 * KiB);
    return 1 + (size_t)rng_below(s, 5 * MiB);
}

/* Compare a map with the twin, then change some bytes (the first and last
 * among them) through it and in the twin alike. */
static void diff_check_and_modify(struct held *m, int twin, uint64_t *s, unsigned char *buf,
                                  int op)
{
    cr_assert_eq(pread(twin, buf, m->len, (off_t)m->off), (ssize_t)m->len);
    cr_assert_arr_eq(m->p, buf, m->len, "op %d: map [%llu, +%zu) differs from the twin", op,
                     (unsigned long long)m->off, m->len);
    for (int k = 0; k < 16; k++) {
        size_t at = k == 0 ? 0 : k == 1 ? m->len - 1 : (size_t)rng_below(s, m->len);
        unsigned char v = (unsigned char)rng_next(s);
        m->p[at] = v;
        cr_assert_eq(pwrite(twin, &v, 1, (off_t)(m->off + at)), 1);
    }
}

Test(compat, random_differential_against_pread_pwrite, .timeout = 240)
{
    const size_t initial = 5 * MiB + 17;
    const char *path = tu_pattern_file("mf", initial, 21);
    const char *twin_path = tu_pattern_file("twin", initial, 21);
    int twin = open(twin_path, O_RDWR | O_CLOEXEC);
    cr_assert_geq(twin, 0);
    mf_handle_t mf = open_ok(path);
    unsigned char *a = malloc(6 * MiB), *b = malloc(6 * MiB);
    cr_assert(a && b);
    struct held held[DIFF_HELD];
    int nheld = 0;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    cr_log_info("seed %llu", (unsigned long long)seed);
    uint64_t size = initial;

    for (int op = 0; op < DIFF_OPS; op++) {
        uint64_t kind = rng_below(&seed, 100);
        uint64_t off = diff_off(&seed, size);
        size_t len = diff_len(&seed);
        if (kind < 30) { /* read */
            ssize_t got = mf_read(mf, a, len, (off_t)off);
            ssize_t want = pread(twin, b, len, (off_t)off);
            cr_assert_eq(got, want, "op %d: mf_read(%zu @ %llu)", op, len,
                         (unsigned long long)off);
            if (want > 0)
                cr_assert_arr_eq(a, b, (size_t)want, "op %d: read data", op);
        } else if (kind < 60) { /* write, maybe past the end */
            if (off + len > DIFF_MAX_SIZE)
                off = DIFF_MAX_SIZE - len;
            for (size_t i = 0; i < len; i += 8) {
                uint64_t r = rng_next(&seed);
                memcpy(a + i, &r, len - i < 8 ? len - i : 8);
            }
            cr_assert_eq(mf_write(mf, a, len, (off_t)off), (ssize_t)len, "op %d", op);
            cr_assert_eq(pwrite(twin, a, len, (off_t)off), (ssize_t)len);
            if (off + len > size)
                size = off + len;
        } else if (kind < 95) { /* map: now, or held for later */
            if (off >= size)
                off = rng_below(&seed, size);
            if (len > size - off)
                len = (size_t)(size - off);
            struct held m = { .off = off, .len = len };
            m.p = mf_map(mf, (off_t)off, len, &m.h);
            cr_assert_not_null(m.p, "op %d: mf_map(%llu, %zu): %s", op, (unsigned long long)off,
                               len, strerror(errno));
            diff_check_and_modify(&m, twin, &seed, b, op);
            if (kind < 80) {
                cr_assert_eq(mf_unmap(mf, m.h), 0);
            } else {
                if (nheld == DIFF_HELD) { /* let an old one go, checked again */
                    int k = (int)rng_below(&seed, DIFF_HELD);
                    diff_check_and_modify(&held[k], twin, &seed, b, op);
                    cr_assert_eq(mf_unmap(mf, held[k].h), 0);
                    held[k] = held[--nheld];
                }
                held[nheld++] = m;
            }
        } else { /* errors */
            mf_mapmem_handle_t h;
            errno = 0;
            cr_assert_null(mf_map(mf, (off_t)size, 1 + len % 100, &h), "op %d", op);
            cr_assert_eq(errno, EINVAL);
            cr_assert_eq(mf_read(mf, a, len, (off_t)(size + off)), 0);
        }
        struct stat st;
        cr_assert_eq(fstat(twin, &st), 0);
        cr_assert_eq(mf_file_size(mf), st.st_size, "op %d: size", op);
    }
    for (int k = 0; k < nheld; k++) {
        diff_check_and_modify(&held[k], twin, &seed, b, -1);
        if (k % 2) /* the other half stays for mf_close */
            cr_assert_eq(mf_unmap(mf, held[k].h), 0);
    }
    close_ok(mf);
    close(twin);
    size_t na, nb;
    unsigned char *fa = tu_read_file(path, &na), *fb = tu_read_file(twin_path, &nb);
    cr_assert_eq(na, nb);
    cr_assert_eq(memcmp(fa, fb, na), 0, "whole files differ after mf_close");
    free(fa);
    free(fb);
    free(a);
    free(b);
}

/* ---- threads on one handle --------------------------------------------------------- */

#define T_THREADS 6
#define T_ITERS   400
#define T_REGION  (3 * MiB + 12345) /* each thread's own, crossing windows */
#define T_SHARED  (4 * MiB)         /* read by everyone, written by no one */
#define T_SEED    31

struct tctx {
    mf_handle_t mf;
    int idx;
    uint64_t base; /* of the region */
    unsigned char *shadow;
    char err[256];
};

#define T_FAIL(c, ...)                                                                  \
    do {                                                                                \
        snprintf((c)->err, sizeof (c)->err, __VA_ARGS__);                              \
        return NULL;                                                                    \
    } while (0)

static void *t_worker(void *arg)
{
    struct tctx *c = arg;
    uint64_t seed = 1000 + (uint64_t)c->idx;
    unsigned char *buf = malloc(T_REGION);
    if (!buf)
        T_FAIL(c, "malloc");
    /* The last thread's region lies past the end at first: it grows the file
     * while the others work. */
    if (mf_write(c->mf, c->shadow, T_REGION, (off_t)c->base) != (ssize_t)T_REGION)
        T_FAIL(c, "initial write: %s", strerror(errno));
    for (int it = 0; it < T_ITERS; it++) {
        uint64_t off = rng_below(&seed, T_REGION);
        size_t len = 1 + (size_t)rng_below(&seed, T_REGION - off);
        if (len > 512 * KiB && rng_below(&seed, 4))
            len = 1 + len % (512 * KiB);
        mf_mapmem_handle_t h;
        unsigned char *p;
        switch (rng_below(&seed, 5)) {
        case 0:
            for (size_t i = 0; i < len; i++)
                buf[i] = (unsigned char)(it + c->idx * 17 + (int)i);
            if (mf_write(c->mf, buf, len, (off_t)(c->base + off)) != (ssize_t)len)
                T_FAIL(c, "write: %s", strerror(errno));
            memcpy(c->shadow + off, buf, len);
            break;
        case 1:
            if (mf_read(c->mf, buf, len, (off_t)(c->base + off)) != (ssize_t)len)
                T_FAIL(c, "read: %s", strerror(errno));
            if (memcmp(buf, c->shadow + off, len) != 0)
                T_FAIL(c, "iteration %d: read data differs", it);
            break;
        case 2:
            p = mf_map(c->mf, (off_t)(c->base + off), len, &h);
            if (!p)
                T_FAIL(c, "map: %s", strerror(errno));
            if (memcmp(p, c->shadow + off, len) != 0)
                T_FAIL(c, "iteration %d: mapped data differs", it);
            p[0] = c->shadow[off] = (unsigned char)(p[0] + 1);
            p[len - 1] = c->shadow[off + len - 1] = (unsigned char)(it ^ 0xa5);
            if (mf_unmap(c->mf, h) != 0)
                T_FAIL(c, "unmap: %s", strerror(errno));
            break;
        case 3:
            off %= T_SHARED;
            len = 1 + len % (T_SHARED - off);
            if (mf_read(c->mf, buf, len, (off_t)off) != (ssize_t)len)
                T_FAIL(c, "shared read: %s", strerror(errno));
            for (size_t i = 0; i < len; i++)
                if (buf[i] != tu_pattern_byte(off + i, T_SEED))
                    T_FAIL(c, "iteration %d: shared data differs at %zu", it, off + i);
            break;
        default:
            off %= T_SHARED;
            len = 1 + len % (T_SHARED - off);
            p = mf_map(c->mf, (off_t)off, len, &h);
            if (!p)
                T_FAIL(c, "shared map: %s", strerror(errno));
            if (p[0] != tu_pattern_byte(off, T_SEED) ||
                p[len - 1] != tu_pattern_byte(off + len - 1, T_SEED))
                T_FAIL(c, "iteration %d: shared map differs", it);
            if (mf_unmap(c->mf, h) != 0)
                T_FAIL(c, "shared unmap: %s", strerror(errno));
            break;
        }
    }
    free(buf);
    return NULL;
}

Test(compat, threads_share_one_handle, .timeout = 240)
{
    const uint64_t initial = T_SHARED + (uint64_t)(T_THREADS - 1) * T_REGION;
    const char *path = tu_pattern_file("f", (size_t)initial, T_SEED);
    mf_handle_t mf = open_ok(path);
    pthread_t t[T_THREADS];
    struct tctx c[T_THREADS];
    for (int i = 0; i < T_THREADS; i++) {
        c[i] = (struct tctx){ .mf = mf, .idx = i, .base = T_SHARED + (uint64_t)i * T_REGION };
        c[i].shadow = malloc(T_REGION);
        cr_assert_not_null(c[i].shadow);
        tu_pattern(c[i].shadow, T_REGION, c[i].base, 100 + (uint32_t)i);
    }
    for (int i = 0; i < T_THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, t_worker, &c[i]), 0);
    for (int i = 0; i < T_THREADS; i++) {
        pthread_join(t[i], NULL);
        cr_expect_eq(c[i].err[0], '\0', "thread %d: %s", i, c[i].err);
    }
    const uint64_t total = T_SHARED + (uint64_t)T_THREADS * T_REGION;
    cr_expect_eq(mf_file_size(mf), (off_t)total);
    unsigned char *buf = malloc(T_REGION);
    cr_assert_not_null(buf);
    for (int i = 0; i < T_THREADS; i++) {
        cr_expect_eq(mf_read(mf, buf, T_REGION, (off_t)c[i].base), (ssize_t)T_REGION);
        cr_expect_eq(memcmp(buf, c[i].shadow, T_REGION), 0, "region %d", i);
    }
    cr_expect_eq(cache_stats().pins, 0);
    close_ok(mf);
    size_t n;
    unsigned char *file = tu_read_file(path, &n);
    cr_assert_eq(n, total);
    for (int i = 0; i < T_THREADS; i++) {
        cr_expect_eq(memcmp(file + c[i].base, c[i].shadow, T_REGION), 0, "file region %d", i);
        free(c[i].shadow);
    }
    free(file);
    free(buf);
}

/* ---- scale ---------------------------------------------------------------------- */

#define SCALE_FILE  GiB
#define SCALE_EVERY (4 * MiB)  /* a pattern block at every multiple of this ... */
#define SCALE_BLOCK (64 * KiB) /* ... this long; holes elsewhere */
#define SCALE_SEED  77

static uint8_t scale_byte(uint64_t o)
{
    return expect_sparse(o, SCALE_EVERY, SCALE_BLOCK, SCALE_SEED);
}

static int range_matches(const unsigned char *p, uint64_t off, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != scale_byte(off + i))
            return 0;
    return 1;
}

Test(compat, scale_500000_small_maps_held_at_once, .timeout = 240)
{
    enum { N = 500000, LEN = 4096 };
    const char *path = sparse_file("big", SCALE_FILE, SCALE_EVERY, SCALE_BLOCK, SCALE_SEED);
    mf_handle_t mf = open_ok(path);
    unsigned char **p = malloc(N * sizeof *p);
    mf_mapmem_handle_t *h = malloc(N * sizeof *h);
    uint64_t *off = malloc(N * sizeof *off), seed = 5;
    cr_assert(p && h && off);

    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        /* a quarter inside the pattern blocks, the rest anywhere */
        off[i] = i % 4 == 0 ? rng_below(&seed, SCALE_FILE / SCALE_EVERY) * SCALE_EVERY +
                                  rng_below(&seed, SCALE_BLOCK)
                            : rng_below(&seed, SCALE_FILE - LEN + 1);
        p[i] = mf_map(mf, (off_t)off[i], LEN, &h[i]);
        if (!p[i])
            cr_assert_fail("map %d at %llu: %s", i, (unsigned long long)off[i], strerror(errno));
    }
    double t1 = now_s();
    mmk_cache_stats st = cache_stats();
    cr_expect_eq(st.pins, N);
    cr_log_info("500k maps: %.2f s, %zu mappings, %zu MiB mapped", t1 - t0, st.mappings,
                st.mapped_bytes >> 20);

    /* Every last byte is readable; a sample of whole ranges holds the data. */
    unsigned sum = 0;
    for (int i = 0; i < N; i++)
        sum += p[i][LEN - 1];
    (void)sum;
    for (int i = 0; i < N; i += 97)
        cr_assert(range_matches(p[i], off[i], LEN), "map %d at %llu", i,
                  (unsigned long long)off[i]);
    /* A sample is writable, and mf_read sees it. */
    for (int i = 0; i < N; i += 61) {
        unsigned char v = (unsigned char)(i * 7 + 1), back = 0;
        p[i][LEN - 1] = v;
        cr_assert_eq(mf_read(mf, &back, 1, (off_t)(off[i] + LEN - 1)), 1);
        cr_assert_eq(back, v, "map %d", i);
    }
    double t2 = now_s();
    for (int i = 0; i < N; i++)
        cr_assert_eq(mf_unmap(mf, h[i]), 0, "unmap %d", i);
    double t3 = now_s();
    cr_expect_eq(cache_stats().pins, 0);
    close_ok(mf);
    cr_log_info("500k: map %.2f s, check %.2f s, unmap %.2f s, close %.2f s", t1 - t0, t2 - t1,
                t3 - t2, now_s() - t3);
    free(p);
    free(h);
    free(off);
}

/* Limit the address space (soft limit only, so it can be raised again).  The
 * default cache reads RLIMIT_AS when it is made — at the first mf_open of
 * the test process — so call this before. */
static void limit_as(uint64_t bytes)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_AS, &rl), 0);
    rl.rlim_cur = (rlim_t)bytes;
    cr_assert_eq(setrlimit(RLIMIT_AS, &rl), 0);
}

static void unlimit_as(void)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_AS, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_AS, &rl), 0);
}

#define LIMIT_2G (2 * GiB)

Test(compat, scale_terabytes_of_one_range_in_2gib)
{
    if (UNDER_ASAN)
        skip_test("AddressSanitizer needs more address space than RLIMIT_AS allows");
    enum { N = 2100 };
    const char *path = sparse_file("big", SCALE_FILE, SCALE_EVERY, SCALE_BLOCK, SCALE_SEED);
    limit_as(LIMIT_2G);
    mf_handle_t mf = open_ok(path);
    mf_mapmem_handle_t h[N];
    uint64_t held = 0;
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        unsigned char *p = mf_map(mf, 0, SCALE_FILE, &h[i]);
        cr_assert_not_null(p, "map %d (%llu GiB held): %s", i, (unsigned long long)(held >> 30),
                           strerror(errno));
        held += SCALE_FILE;
        cr_assert_eq(p[0], scale_byte(0));
        cr_assert_eq(p[SCALE_FILE - 1], 0);
        touch_rw(p + SCALE_FILE - 1);
        if (i % 500 == 0)
            for (uint64_t o = 0; o < SCALE_FILE; o += SCALE_EVERY)
                cr_assert_eq(p[o + 123], scale_byte(o + 123), "map %d at %llu", i,
                             (unsigned long long)o);
    }
    cr_expect_geq(held, 2 * TiB);
    cr_expect_lt(vm_size(), LIMIT_2G);
    cr_log_info("%d maps of 1 GiB (%llu GiB) held in %.2f s; VmSize %llu MiB", N,
                (unsigned long long)(held >> 30), now_s() - t0,
                (unsigned long long)(vm_size() >> 20));
    for (int i = 0; i < N; i++)
        cr_assert_eq(mf_unmap(mf, h[i]), 0);
    /* Everything still works with nothing held. */
    unsigned char buf[256];
    cr_expect_eq(mf_read(mf, buf, sizeof buf, 1000), (ssize_t)sizeof buf);
    cr_expect(range_matches(buf, 1000, sizeof buf));
    close_ok(mf);
}

Test(compat, scale_overlapping_large_ranges_in_2gib)
{
    if (UNDER_ASAN)
        skip_test("AddressSanitizer needs more address space than RLIMIT_AS allows");
    enum { N = 3000 };
    const char *path = sparse_file("big", SCALE_FILE, SCALE_EVERY, SCALE_BLOCK, SCALE_SEED);
    limit_as(LIMIT_2G);
    mf_handle_t mf = open_ok(path);
    mf_mapmem_handle_t *h = malloc(N * sizeof *h);
    cr_assert_not_null(h);
    uint64_t held = 0, seed = 99;
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        /* ranges of 256 MiB up to the whole file, anywhere in it */
        uint64_t len = 256 * MiB + rng_below(&seed, SCALE_FILE - 256 * MiB + 1);
        uint64_t off = rng_below(&seed, SCALE_FILE - len + 1);
        unsigned char *p = mf_map(mf, (off_t)off, (size_t)len, &h[i]);
        cr_assert_not_null(p, "map %d [%llu, +%llu) (%llu GiB held): %s", i,
                           (unsigned long long)off, (unsigned long long)len,
                           (unsigned long long)(held >> 30), strerror(errno));
        held += len;
        cr_assert_eq(p[0], scale_byte(off));
        cr_assert_eq(p[len - 1], scale_byte(off + len - 1));
        touch_rw(p);
        touch_rw(p + len - 1);
        uint64_t o = (off + SCALE_EVERY - 1) / SCALE_EVERY * SCALE_EVERY; /* a block */
        if (i % 16 == 0 && o + SCALE_BLOCK <= off + len)
            cr_assert(range_matches(p + (o - off), o, SCALE_BLOCK), "map %d", i);
    }
    cr_expect_geq(held, TiB);
    cr_expect_lt(vm_size(), LIMIT_2G);
    cr_log_info("%d large maps (%llu GiB) held in %.2f s; VmSize %llu MiB", N,
                (unsigned long long)(held >> 30), now_s() - t0,
                (unsigned long long)(vm_size() >> 20));
    /* Reads and writes still work with the cache's budget held by pins. */
    unsigned char buf[4096];
    for (int k = 0; k < 64; k++) {
        uint64_t o = rng_below(&seed, SCALE_FILE - sizeof buf);
        cr_assert_eq(mf_read(mf, buf, sizeof buf, (off_t)o), (ssize_t)sizeof buf);
        cr_assert(range_matches(buf, o, sizeof buf), "read at %llu", (unsigned long long)o);
        cr_assert_eq(mf_write(mf, buf, sizeof buf, (off_t)o), (ssize_t)sizeof buf);
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(mf_unmap(mf, h[i]), 0);
    free(h);
    close_ok(mf);
}

Test(compat, file_opened_under_512mib_limit_works)
{
    if (UNDER_ASAN)
        skip_test("AddressSanitizer needs more address space than RLIMIT_AS allows");
    const uint64_t limit = 512 * MiB;
    const char *path = sparse_file("big", SCALE_FILE, SCALE_EVERY, SCALE_BLOCK, SCALE_SEED);
    const uint64_t base = vm_size();
    if (base + 200 * MiB > limit)
        skip_test("the test process alone uses %llu MiB", (unsigned long long)(base >> 20));
    cr_log_info("512 MiB limit: VmSize %llu MiB at the start", (unsigned long long)(base >> 20));
    limit_as(limit);
    mf_handle_t mf = open_ok(path);
    uint64_t seed = 3;
    unsigned char buf[8192];

    /* While still limited: reads, writes, many small maps held, a large one. */
    for (int k = 0; k < 200; k++) {
        uint64_t o = rng_below(&seed, SCALE_FILE - sizeof buf);
        cr_assert_eq(mf_read(mf, buf, sizeof buf, (off_t)o), (ssize_t)sizeof buf);
        cr_assert(range_matches(buf, o, sizeof buf), "read at %llu", (unsigned long long)o);
    }
    unsigned char *big;
    mf_mapmem_handle_t hb;
    big = mf_map(mf, (off_t)(100 * MiB + 5), 64 * MiB, &hb);
    cr_assert_not_null(big, "limited: 64 MiB map: %s", strerror(errno));
    cr_assert(range_matches(big, 100 * MiB + 5, 64 * MiB));
    touch_rw(big + 64 * MiB - 1);
    cr_assert_eq(mf_unmap(mf, hb), 0);
    enum { N = 2000 };
    mf_mapmem_handle_t h[N];
    uint64_t off[N];
    for (int i = 0; i < N; i++) {
        off[i] = rng_below(&seed, SCALE_FILE - 4096);
        unsigned char *p = mf_map(mf, (off_t)off[i], 4096, &h[i]);
        cr_assert_not_null(p, "limited: small map %d: %s", i, strerror(errno));
        cr_assert(range_matches(p, off[i], 4096), "small map %d", i);
        touch_rw(p + 4095);
    }
    cr_log_info("512 MiB limit: %d small maps held, VmSize %llu MiB", N,
                (unsigned long long)(vm_size() >> 20));
    for (int i = 0; i < N; i++)
        cr_assert_eq(mf_unmap(mf, h[i]), 0);
    memset(buf, 0xee, sizeof buf);
    cr_assert_eq(mf_write(mf, buf, sizeof buf, (off_t)(SCALE_FILE - 100)), (ssize_t)sizeof buf);
    cr_assert_eq(mf_file_size(mf), (off_t)(SCALE_FILE - 100 + sizeof buf));

    /* Raised again: the whole file maps at once. */
    unlimit_as();
    big = mf_map(mf, 0, SCALE_FILE, &hb);
    cr_assert_not_null(big, "whole file after raising the limit: %s", strerror(errno));
    for (uint64_t o = 0; o < SCALE_FILE - 100; o += SCALE_EVERY)
        cr_assert_eq(big[o + 7], scale_byte(o + 7), "at %llu", (unsigned long long)o);
    cr_assert_eq(big[SCALE_FILE - 1], 0xee);
    touch_rw(big + SCALE_FILE - 1);
    cr_assert_eq(mf_read(mf, buf, 100, (off_t)(SCALE_FILE - 50)), 100);
    cr_assert_eq(buf[0], 0xee);
    cr_assert_eq(mf_unmap(mf, hb), 0);
    close_ok(mf);
    cr_assert_eq(tu_file_size(path), (int64_t)(SCALE_FILE - 100 + sizeof buf));
}
