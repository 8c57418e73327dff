/* tests/test_map.c — one mapping of a file, a descriptor or anonymous memory
 * (mmkit/map.h): every function, every flag, and the error paths, with fault
 * injection through the system-call table (tests/support/inject.h). */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mmkit.h>

#include "inject.h"
#include "os/os.h"
#include "testutil.h"

/* Every test ends with a leak check (a no-op without LeakSanitizer). */
static void map_fini(void)
{
    tu_teardown();
    /* Criterion ignores assertions here, but not a crash: the run fails. */
    if (tu_leaks()) {
        fprintf(stderr, "memory leaked: see the LeakSanitizer report above\n");
        abort();
    }
}

TestSuite(map, .init = tu_setup, .fini = map_fini, .timeout = 60);

#define PS          (mmk_page_size())
#define MIB         ((size_t)1 << 20)
#define HUGE_ALIGN  ((size_t)2 << 20) /* the PMD size MMK_HUGE aligns file maps to */
#define UNUSED_FD   987654            /* far above anything this process has open */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

/* ---- helpers ------------------------------------------------------------ */

/* Criterion does not run the .fini hook after cr_skip_test: clean up first. */
#define skip_test(...)                                                          \
    do {                                                                        \
        tu_teardown();                                                          \
        cr_skip_test(__VA_ARGS__);                                              \
    } while (0)

/* Index of the first byte of p[0..n) differing from the pattern at file offset
 * `off`, or -1 if all match. */
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

/* Read file bytes through a descriptor of our own (not through any map). */
static void file_bytes(const char *path, uint64_t off, void *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        cr_assert_gt(r, 0, "pread: short file?");
        got += (size_t)r;
    }
    close(fd);
}

static mode_t file_mode(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    return st.st_mode & 07777;
}

/* Drop the file's pages from the page cache, as far as the kernel lets us. */
static void evict(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

static int open_or_die(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    return fd;
}

static size_t resident(const mmk_map *m, size_t off, size_t n)
{
    size_t bytes = SIZE_MAX;
    cr_assert_eq(mmk_map_resident(m, off, n, &bytes), 0);
    return bytes;
}

static uintptr_t page_down(uintptr_t a) { return a - a % PS; }
static uintptr_t page_up(uintptr_t a) { return a % PS ? a + (PS - a % PS) : a; }

/* Records of the last call of a few table entries, to check page widening. */
static struct { void *addr; size_t len; int flags; int calls; } last_msync, last_madvise;
static struct { off_t off, len; int calls; } last_sfr;

static int rec_msync(void *a, size_t l, int f)
{
    last_msync.addr = a; last_msync.len = l; last_msync.flags = f; last_msync.calls++;
    return mmk__sys_default.msync(a, l, f);
}

static int rec_madvise(void *a, size_t l, int adv)
{
    last_madvise.addr = a; last_madvise.len = l; last_madvise.flags = adv;
    last_madvise.calls++;
    return mmk__sys_default.madvise(a, l, adv);
}

static int rec_sync_file_range(int fd, off_t o, off_t l, unsigned f)
{
    last_sfr.off = o; last_sfr.len = l; last_sfr.calls++;
    return mmk__sys_default.sync_file_range(fd, o, l, f);
}

/* VmLck now, or -1 if mlock has no visible effect here (AddressSanitizer
 * replaces mlock with a no-op), so that tests check locking only where it
 * really happens. */
static long locked_kib_if_real(void)
{
    static int real = -1;
    if (real < 0) {
        void *p = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        long before = tu_locked_kib();
        real = p != MAP_FAILED && mlock(p, PS) == 0 && tu_locked_kib() > before;
        if (p != MAP_FAILED) {
            munlock(p, PS);
            munmap(p, PS);
        }
        if (!real)
            cr_log_info("mlock has no visible effect here: lock effects not checked");
    }
    return real ? tu_locked_kib() : -1;
}

/* Take CAP_IPC_LOCK out of the effective set, so RLIMIT_MEMLOCK applies even to
 * root.  Returns whether mlock is now limited (checked for real). */
static bool make_mlock_limited(rlim_t limit)
{
    struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) == 0) {
        d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
        (void)syscall(SYS_capset, &h, d);
    }
    struct rlimit rl = { limit, limit };
    if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        return false;
    size_t n = 4 * MIB;
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return false;
    bool limited = mlock(p, n) != 0;
    munmap(p, n);
    return limited;
}

/* ---- mmk_map_open: read-only ------------------------------------------- */

Test(map, open_whole_file_read_only)
{
    size_t size = 3 * PS + 123;
    const char *p = tu_pattern_file("f", size, 7);
    mmk_map *m = (mmk_map *)1;
    cr_assert_eq(mmk_map_open(&m, p, NULL), 0);
    cr_assert_not_null(m);
    cr_expect_not_null(mmk_map_ptr(m));
    cr_expect_eq(mmk_map_len(m), size);
    cr_expect_eq(mmk_map_offset(m), 0);
    cr_expect_eq(mmk_map_flags(m), MMK_RDONLY);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), size, 0, 7), -1);
    cr_expect_eq(mmk_map_close(m), 0);

    mmk_map_opts zero = { 0 };
    cr_assert_eq(mmk_map_open(&m, p, &zero), 0, "a zeroed struct is the defaults");
    cr_expect_eq(mmk_map_len(m), size);
    cr_expect_eq(mmk_map_close(m), 0);
}

Test(map, open_any_offset_and_length)
{
    size_t ps = PS, size = 5 * ps + 77;
    const char *p = tu_pattern_file("f", size, 11);
    uint64_t offs[] = { 0, 1, ps - 1, ps, ps + 1, 2 * ps + 17, size - ps - 1, size - 2,
                        size - 1 };
    size_t lens[] = { 0, 1, 2, ps - 1, ps, ps + 1, 3 * ps + 5 };
    unsigned modes[] = { MMK_RDONLY, MMK_COPY, MMK_RDWR };
    char *buf = malloc(size);
    cr_assert_not_null(buf);
    int tried = 0;
    for (size_t a = 0; a < sizeof modes / sizeof modes[0]; a++)
        for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
            for (size_t j = 0; j < sizeof lens / sizeof lens[0]; j++) {
                uint64_t off = offs[i];
                size_t len = lens[j];
                if (off + len > size)
                    continue;
                mmk_map *m;
                mmk_map_opts o = { .offset = off, .len = len, .flags = modes[a] };
                cr_assert_eq(mmk_map_open(&m, p, &o), 0, "off %lu len %zu",
                             (unsigned long)off, len);
                size_t want = len ? len : size - (size_t)off;
                cr_expect_eq(mmk_map_len(m), want);
                cr_expect_eq(mmk_map_offset(m), off);
                cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), want, off, 11), -1,
                             "content at off %lu len %zu", (unsigned long)off, len);
                memset(buf, 0, size);
                cr_expect_eq(mmk_map_read(m, 0, buf, want), 0);
                cr_expect_eq(pattern_mismatch(buf, want, off, 11), -1);
                cr_expect_eq(mmk_map_close(m), 0);
                tried++;
            }
    free(buf);
    cr_expect_gt(tried, 100);
    cr_expect_eq(tu_file_size(p), (int64_t)size, "in-file maps never change the size");
}

Test(map, read_only_and_copy_maps_hold_no_descriptor)
{
    const char *p = tu_pattern_file("f", 10000, 1);
    unsigned modes[] = { MMK_RDONLY, MMK_COPY, MMK_RDONLY | MMK_POPULATE,
                         MMK_COPY | MMK_HUGE };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        int before = tu_open_fds();
        mmk_map *m;
        cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = modes[i] }), 0);
        cr_expect_eq(tu_open_fds(), before, "flags %#x", modes[i]);
        cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 10000, 0, 1), -1);
        cr_expect_eq(mmk_map_close(m), 0);
        cr_expect_eq(tu_open_fds(), before);
    }
}

Test(map, empty_file_gives_empty_map)
{
    const char *p = tu_path("empty");
    tu_write_file(p, "", 0);
    unsigned modes[] = { MMK_RDONLY, MMK_COPY, MMK_RDWR };
    for (size_t i = 0; i < 3; i++) {
        mmk_map *m;
        cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = modes[i] }), 0);
        cr_expect_not_null(mmk_map_ptr(m));
        cr_expect_eq(mmk_map_len(m), 0);
        char c;
        cr_expect_eq(mmk_map_read(m, 0, &c, 0), 0);
        cr_expect_eq(mmk_map_read(m, 0, &c, 1), -EINVAL);
        cr_expect_eq(resident(m, 0, 0), 0);
        cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
        cr_expect_eq(mmk_map_advise(m, 0, 0, MMK_ADV_WILLNEED), 0);
        cr_expect_eq(mmk_map_lock(m, 0, 0), 0);
        cr_expect_eq(mmk_map_unlock(m, 0, 0), 0);
        cr_expect_eq(mmk_map_close(m), 0);
    }
    cr_expect_eq(tu_file_size(p), 0);
}

Test(map, offset_at_end_of_file_gives_empty_map)
{
    const char *p = tu_pattern_file("f", 5000, 1);
    mmk_map *m;
    unsigned modes[] = { MMK_RDONLY, MMK_COPY, MMK_RDWR };
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .offset = 5000,
                                                          .flags = modes[i] }), 0);
        cr_expect_eq(mmk_map_len(m), 0);
        cr_expect_eq(mmk_map_offset(m), 5000);
        cr_expect_not_null(mmk_map_ptr(m));
        cr_expect_eq(mmk_map_close(m), 0);
    }
    cr_expect_eq(tu_file_size(p), 5000);
}

Test(map, range_past_end_of_file_is_einval_unless_rdwr)
{
    const char *p = tu_pattern_file("f", 5000, 1);
    struct { uint64_t off; size_t len; } bad[] = {
        { 5001, 0 }, { 5000, 1 }, { 0, 5001 }, { 4999, 2 }, { 4096, 4096 },
        { (uint64_t)1 << 40, 0 }, { (uint64_t)1 << 40, 1 },
    };
    unsigned modes[] = { MMK_RDONLY, MMK_COPY, MMK_RDONLY | MMK_EXEC };
    for (size_t a = 0; a < 3; a++)
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            mmk_map *m = (mmk_map *)1;
            mmk_map_opts o = { .offset = bad[i].off, .len = bad[i].len, .flags = modes[a] };
            cr_expect_eq(mmk_map_open(&m, p, &o), -EINVAL, "off %lu len %zu",
                         (unsigned long)bad[i].off, bad[i].len);
            cr_expect_null(m);
        }
    /* RDWR with len 0 cannot grow to an offset past the end: nothing to cover. */
    mmk_map *m;
    cr_expect_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .offset = 5001, .flags = MMK_RDWR }),
                 -EINVAL);
    cr_expect_eq(tu_file_size(p), 5000);
}

Test(map, offset_plus_len_overflow_is_eoverflow)
{
    const char *p = tu_pattern_file("f", 5000, 1);
    struct { uint64_t off; size_t len; } bad[] = {
        { UINT64_MAX, 0 },
        { UINT64_MAX, 1 },
        { (uint64_t)INT64_MAX + 1, 0 },
        { (uint64_t)INT64_MAX + 1, 4096 },
        { 1, SIZE_MAX },
        { 4096, SIZE_MAX - 100 },
    };
    unsigned modes[] = { MMK_RDONLY, MMK_COPY, MMK_RDWR };
    for (size_t a = 0; a < 3; a++)
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            mmk_map *m = (mmk_map *)1;
            mmk_map_opts o = { .offset = bad[i].off, .len = bad[i].len, .flags = modes[a] };
            cr_expect_eq(mmk_map_open(&m, p, &o), -EOVERFLOW, "flags %#x off %#lx len %#zx",
                         modes[a], (unsigned long)bad[i].off, bad[i].len);
            cr_expect_null(m);
            int fd = open_or_die(p, modes[a] == MMK_RDWR ? O_RDWR : O_RDONLY);
            m = (mmk_map *)1;
            cr_expect_eq(mmk_map_fd(&m, fd, &o), -EOVERFLOW, "fd: flags %#x off %#lx len %#zx",
                         modes[a], (unsigned long)bad[i].off, bad[i].len);
            cr_expect_null(m);
            close(fd);
        }
    cr_expect_eq(tu_file_size(p), 5000, "nothing grew the file");
}

Test(map, range_end_past_int64_max)
{
    /* No uint64 overflow, but no file can be that large: past EOF for read-only
     * maps, a size the file cannot grow to (-EFBIG) for RDWR. */
    const char *p = tu_pattern_file("f", 5000, 1);
    struct { uint64_t off; size_t len; } big[] = {
        { (uint64_t)INT64_MAX, 1 },
        { (uint64_t)INT64_MAX - 10, 4096 },
    };
    for (size_t i = 0; i < 2; i++) {
        mmk_map *m = (mmk_map *)1;
        mmk_map_opts o = { .offset = big[i].off, .len = big[i].len };
        cr_expect_eq(mmk_map_open(&m, p, &o), -EINVAL);
        o.flags = MMK_COPY;
        cr_expect_eq(mmk_map_open(&m, p, &o), -EINVAL);
        o.flags = MMK_RDWR;
        cr_expect_eq(mmk_map_open(&m, p, &o), -EFBIG);
        cr_expect_null(m);
    }
    mmk_map *m = (mmk_map *)1;
    cr_expect_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR,
                                                      .size = (uint64_t)INT64_MAX + 1 }),
                 -EFBIG);
    cr_expect_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR,
                                                      .size = UINT64_MAX }), -EFBIG);
    cr_expect_null(m);
    cr_expect_eq(tu_file_size(p), 5000, "nothing grew the file");
}

Test(map, bad_arguments_are_einval)
{
    const char *p = tu_pattern_file("f", 100, 1);
    const char *missing = tu_path("missing");
    mmk_map *m = (mmk_map *)1;
    cr_expect_eq(mmk_map_open(NULL, p, NULL), -EINVAL);
    cr_expect_eq(mmk_map_open(&m, NULL, NULL), -EINVAL);
    cr_expect_null(m, "*out is NULL on error");
    unsigned bad[] = {
        MMK_RDWR | MMK_COPY,
        MMK_CREATE,
        MMK_CREATE | MMK_COPY,
        MMK_CREATE | MMK_EXCL,
        MMK_EXCL,
        MMK_RDWR | MMK_EXCL,
        MMK_TRUNC,
        MMK_COPY | MMK_TRUNC,
        MMK_RESERVE,
        MMK_SHARED,     /* anonymous maps only */
        MMK_APPEND,     /* the file layer's */
        1u << 20,
        1u << 31,
        MMK_RDWR | (1u << 13),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = (mmk_map *)1;
        cr_expect_eq(mmk_map_open(&m, missing, &(mmk_map_opts){ .flags = bad[i] }), -EINVAL,
                     "flags %#x", bad[i]);
        cr_expect_null(m);
        cr_expect_eq(tu_file_size(missing), -1, "flags %#x created the file", bad[i]);
        m = (mmk_map *)1;
        cr_expect_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = bad[i] }), -EINVAL,
                     "flags %#x", bad[i]);
        cr_expect_null(m);
    }
    cr_expect_eq(tu_file_size(p), 100, "TRUNC without RDWR did nothing");
}

Test(map, directory_is_eisdir)
{
    mmk_map *m = (mmk_map *)1;
    int before = tu_open_fds();
    cr_expect_eq(mmk_map_open(&m, tu_dir(), NULL), -EISDIR);
    cr_expect_null(m);
    cr_expect_eq(mmk_map_open(&m, tu_dir(), &(mmk_map_opts){ .flags = MMK_COPY }), -EISDIR);
    cr_expect_eq(mmk_map_open(&m, tu_dir(), &(mmk_map_opts){ .flags = MMK_RDWR }), -EISDIR);
    cr_expect_eq(tu_open_fds(), before);
}

Test(map, fifo_is_enodev_and_does_not_block, .timeout = 10)
{
    const char *p = tu_path("fifo");
    cr_assert_eq(mkfifo(p, 0600), 0);
    int before = tu_open_fds();
    unsigned modes[] = { MMK_RDONLY, MMK_COPY, MMK_RDWR, MMK_RDWR | MMK_CREATE };
    for (size_t i = 0; i < 4; i++) {
        mmk_map *m = (mmk_map *)1;
        cr_expect_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = modes[i] }), -ENODEV,
                     "flags %#x", modes[i]);
        cr_expect_null(m);
    }
    cr_expect_eq(tu_open_fds(), before);
    struct stat st;
    cr_expect_eq(lstat(p, &st), 0, "the FIFO is still there");
    cr_expect(S_ISFIFO(st.st_mode));
}

Test(map, device_is_enodev)
{
    mmk_map *m;
    cr_expect_eq(mmk_map_open(&m, "/dev/null", NULL), -ENODEV);
    cr_expect_eq(mmk_map_open(&m, "/dev/zero", &(mmk_map_opts){ .flags = MMK_COPY }), -ENODEV);
}

Test(map, missing_file_is_enoent)
{
    const char *p = tu_path("missing");
    mmk_map *m = (mmk_map *)1;
    int before = tu_open_fds();
    cr_expect_eq(mmk_map_open(&m, p, NULL), -ENOENT);
    cr_expect_null(m);
    cr_expect_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR }), -ENOENT);
    cr_expect_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_COPY }), -ENOENT);
    cr_expect_eq(mmk_map_open(&m, tu_path("no/such/dir"),
                              &(mmk_map_opts){ .flags = MMK_RDWR | MMK_CREATE }), -ENOENT);
    cr_expect_eq(tu_file_size(p), -1);
    cr_expect_eq(tu_open_fds(), before);
}

Test(map, nofollow_refuses_symlink)
{
    const char *target = tu_pattern_file("target", 5000, 3);
    const char *link = tu_path("link");
    cr_assert_eq(symlink(target, link), 0);
    mmk_map *m = (mmk_map *)1;
    unsigned modes[] = { MMK_NOFOLLOW, MMK_COPY | MMK_NOFOLLOW, MMK_RDWR | MMK_NOFOLLOW,
                         MMK_RDWR | MMK_CREATE | MMK_NOFOLLOW };
    for (size_t i = 0; i < 4; i++) {
        cr_expect_eq(mmk_map_open(&m, link, &(mmk_map_opts){ .flags = modes[i] }), -ELOOP,
                     "flags %#x", modes[i]);
        cr_expect_null(m);
    }
    /* Without NOFOLLOW the link is followed; NOFOLLOW on a plain file is fine. */
    cr_assert_eq(mmk_map_open(&m, link, NULL), 0);
    cr_expect_eq(mmk_map_len(m), 5000);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 5000, 0, 3), -1);
    mmk_map_close(m);
    cr_assert_eq(mmk_map_open(&m, target, &(mmk_map_opts){ .flags = MMK_NOFOLLOW }), 0);
    mmk_map_close(m);
}

Test(map, create_through_dangling_symlink_creates_target, .timeout = 10)
{
    const char *target = tu_path("target");
    const char *link = tu_path("link");
    cr_assert_eq(symlink(target, link), 0);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, link, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_CREATE,
                                                         .size = 100 }), 0);
    cr_expect_eq(mmk_map_len(m), 100);
    cr_expect_eq(mmk_map_close(m), 0);
    cr_expect_eq(tu_file_size(target), 100, "open(2) semantics: the target is made");
    cr_expect_eq(mmk_map_open(&m, link, &(mmk_map_opts){
                     .flags = MMK_RDWR | MMK_CREATE | MMK_EXCL }), -EEXIST);
}

/* ---- mmk_map_open: MMK_RDWR -------------------------------------------- */

Test(map, rdwr_writes_reach_the_file)
{
    size_t size = 4 * PS;
    const char *p = tu_pattern_file("f", size, 5);
    mmk_map *m;
    uint64_t off = 100;
    size_t len = 2 * PS;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .offset = off, .len = len,
                                                      .flags = MMK_RDWR }), 0);
    cr_expect_eq(mmk_map_flags(m), MMK_RDWR);
    char *v = mmk_map_ptr(m);
    memcpy(v, "via pointer", 11);
    cr_expect_eq(mmk_map_write(m, PS - 5, "via mmk_map_write", 17), 0);
    cr_expect_eq(mmk_map_write(m, len - 3, "end", 3), 0);
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);

    char buf[32];
    file_bytes(p, off, buf, 11);
    cr_expect_eq(memcmp(buf, "via pointer", 11), 0);
    file_bytes(p, off + PS - 5, buf, 17);
    cr_expect_eq(memcmp(buf, "via mmk_map_write", 17), 0);
    file_bytes(p, off + len - 3, buf, 3);
    cr_expect_eq(memcmp(buf, "end", 3), 0);
    cr_expect_eq(mmk_map_read(m, PS - 5, buf, 17), 0);
    cr_expect_eq(memcmp(buf, "via mmk_map_write", 17), 0);
    cr_expect_eq(mmk_map_close(m), 0);

    /* Bytes outside the view were not touched, even in shared pages. */
    size_t n;
    unsigned char *all = tu_read_file(p, &n);
    cr_expect_eq(n, size);
    cr_expect_eq(pattern_mismatch(all, off, 0, 5), -1);
    cr_expect_eq(pattern_mismatch(all + off + len, size - off - len, off + len, 5), -1);
    free(all);
}

Test(map, rdwr_map_keeps_its_descriptor)
{
    const char *p = tu_pattern_file("f", 10000, 1);
    int before = tu_open_fds();
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR }), 0);
    cr_expect_eq(tu_open_fds(), before + 1);
    cr_expect_eq(mmk_map_close(m), 0);
    cr_expect_eq(tu_open_fds(), before);

    /* A created file also holds its directory until close. */
    cr_assert_eq(mmk_map_open(&m, tu_path("new"),
                              &(mmk_map_opts){ .flags = MMK_RDWR | MMK_CREATE }), 0);
    cr_expect_geq(tu_open_fds(), before + 1);
    cr_expect_leq(tu_open_fds(), before + 2);
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(mmk_map_close(m), 0);
    cr_expect_eq(tu_open_fds(), before);
}

Test(map, rdwr_range_past_end_grows_the_file)
{
    const char *p = tu_pattern_file("f", 1000, 9);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .offset = 5000, .len = 3000,
                                                      .flags = MMK_RDWR }), 0);
    cr_expect_eq(tu_file_size(p), 8000);
    cr_expect_eq(mmk_map_len(m), 3000);
    cr_expect_eq(nonzero_at(mmk_map_ptr(m), 3000), -1, "the grown part reads zero");
    memset(mmk_map_ptr(m), 0x5a, 3000);
    cr_expect_eq(mmk_map_close(m), 0);

    size_t n;
    unsigned char *all = tu_read_file(p, &n);
    cr_assert_eq(n, 8000);
    cr_expect_eq(pattern_mismatch(all, 1000, 0, 9), -1, "old content kept");
    cr_expect_eq(nonzero_at(all + 1000, 4000), -1);
    for (size_t i = 5000; i < 8000; i++)
        if (all[i] != 0x5a) {
            cr_expect_fail("byte %zu not written", i);
            break;
        }
    free(all);
}

Test(map, rdwr_size_grows_never_shrinks)
{
    const char *p = tu_pattern_file("f", 1000, 2);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR, .size = 10 * PS }),
                 0);
    cr_expect_eq(tu_file_size(p), (int64_t)(10 * PS));
    cr_expect_eq(mmk_map_len(m), 10 * PS, "len 0 maps the grown file");
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 1000, 0, 2), -1);
    cr_expect_eq(nonzero_at((char *)mmk_map_ptr(m) + 1000, 10 * PS - 1000), -1);
    mmk_map_close(m);

    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR, .size = 100 }), 0);
    cr_expect_eq(tu_file_size(p), (int64_t)(10 * PS), "never shrinks");
    cr_expect_eq(mmk_map_len(m), 10 * PS);
    mmk_map_close(m);

    /* .size and a range: the larger wins. */
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR, .size = 20 * PS,
                                                      .offset = 1, .len = 10 }), 0);
    cr_expect_eq(tu_file_size(p), (int64_t)(20 * PS));
    cr_expect_eq(mmk_map_len(m), 10);
    mmk_map_close(m);
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR, .size = 30 * PS,
                                                      .offset = 40 * PS, .len = 10 }), 0);
    cr_expect_eq(tu_file_size(p), (int64_t)(40 * PS + 10));
    mmk_map_close(m);

    /* .size means nothing without RDWR. */
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .size = 100 * PS }), 0);
    cr_expect_eq(tu_file_size(p), (int64_t)(40 * PS + 10));
    mmk_map_close(m);
}

static void expect_created_mode(mode_t umask_value, mode_t mode, mode_t want)
{
    const char *p = tu_path("created");
    unlink(p);
    mode_t old = umask(umask_value);
    mmk_map *m;
    int rc = mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_CREATE,
                                                  .mode = mode, .size = 10 });
    umask(old);
    cr_assert_eq(rc, 0);
    cr_expect_eq(file_mode(p), want, "umask %03o mode %03o: got %03o want %03o",
                 (unsigned)umask_value, (unsigned)mode, (unsigned)file_mode(p),
                 (unsigned)want);
    mmk_map_close(m);
    unlink(p);
}

Test(map, create_mode_and_umask)
{
    expect_created_mode(022, 0, 0644);
    expect_created_mode(077, 0, 0600);
    expect_created_mode(0, 0, 0644);
    expect_created_mode(0, 0640, 0640);
    expect_created_mode(022, 0777, 0755);
    expect_created_mode(0, 0600, 0600);
}

Test(map, create_new_file)
{
    const char *p = tu_path("new");
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_CREATE }), 0);
    cr_expect_eq(tu_file_size(p), 0);
    cr_expect_eq(mmk_map_len(m), 0);
    cr_expect_not_null(mmk_map_ptr(m));
    cr_expect_eq(mmk_map_flags(m) & (MMK_RDWR | MMK_CREATE), MMK_RDWR | MMK_CREATE);
    cr_expect_eq(mmk_map_resize(m, 100), 0);
    cr_expect_eq(tu_file_size(p), 100);
    cr_expect_eq(mmk_map_close(m), 0);

    /* CREATE on an existing file opens it and keeps its content. */
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_CREATE }), 0);
    cr_expect_eq(mmk_map_len(m), 100);
    mmk_map_close(m);

    const char *q = tu_pattern_file("existing", 3000, 4);
    cr_assert_eq(mmk_map_open(&m, q, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_CREATE }), 0);
    cr_expect_eq(mmk_map_len(m), 3000);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 3000, 0, 4), -1);
    mmk_map_close(m);
}

Test(map, excl_on_existing_file_is_eexist)
{
    const char *p = tu_pattern_file("f", 3000, 4);
    mmk_map *m = (mmk_map *)1;
    int before = tu_open_fds();
    cr_expect_eq(mmk_map_open(&m, p, &(mmk_map_opts){
                     .flags = MMK_RDWR | MMK_CREATE | MMK_EXCL | MMK_TRUNC }), -EEXIST);
    cr_expect_null(m);
    cr_expect_eq(tu_open_fds(), before);
    cr_expect_eq(tu_file_size(p), 3000, "neither truncated nor removed");

    const char *q = tu_path("new");
    cr_assert_eq(mmk_map_open(&m, q, &(mmk_map_opts){
                     .flags = MMK_RDWR | MMK_CREATE | MMK_EXCL, .size = 50 }), 0);
    cr_expect_eq(tu_file_size(q), 50);
    mmk_map_close(m);
}

Test(map, trunc_truncates)
{
    const char *p = tu_pattern_file("f", 5000, 4);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_TRUNC }), 0);
    cr_expect_eq(mmk_map_len(m), 0);
    cr_expect_eq(tu_file_size(p), 0);
    mmk_map_close(m);

    tu_pattern_file("f", 5000, 4);
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_TRUNC,
                                                      .size = 100 }), 0);
    cr_expect_eq(mmk_map_len(m), 100);
    cr_expect_eq(tu_file_size(p), 100);
    cr_expect_eq(nonzero_at(mmk_map_ptr(m), 100), -1, "old bytes are gone");
    mmk_map_close(m);

    tu_pattern_file("f", 5000, 4);
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){
                     .flags = MMK_RDWR | MMK_CREATE | MMK_TRUNC }), 0);
    cr_expect_eq(tu_file_size(p), 0);
    mmk_map_close(m);
}

Test(map, failed_open_removes_the_file_it_created)
{
    const char *p = tu_path("new");
    unsigned modes[] = { MMK_RDWR | MMK_CREATE, MMK_RDWR | MMK_CREATE | MMK_EXCL };
    for (size_t i = 0; i < 2; i++) {
        int before = tu_open_fds();
        inject_install();
        inject_fail(INJ_MMAP, 1, ENOMEM);
        mmk_map *m = (mmk_map *)1;
        cr_expect_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = modes[i], .size = 4096 }),
                     -ENOMEM);
        cr_expect_null(m);
        cr_expect_eq(inject_count(INJ_UNLINK), 1);
        inject_reset();
        cr_expect_eq(tu_file_size(p), -1, "flags %#x: the created file is gone", modes[i]);
        cr_expect_eq(tu_open_fds(), before);
    }
    /* A file that was there before is never removed. */
    const char *q = tu_pattern_file("existing", 3000, 4);
    inject_install();
    inject_fail(INJ_MMAP, 1, ENOMEM);
    mmk_map *m;
    cr_expect_eq(mmk_map_open(&m, q, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_CREATE }),
                 -ENOMEM);
    cr_expect_eq(inject_count(INJ_UNLINK), 0);
    inject_reset();
    cr_expect_eq(tu_file_size(q), 3000);
}

Test(map, failed_open_shrinks_back_a_file_it_grew)
{
    const char *p = tu_pattern_file("f", 3000, 4);
    mmk_map_opts opts[] = {
        { .flags = MMK_RDWR, .size = 10 * PS },
        { .flags = MMK_RDWR, .offset = 5 * PS, .len = 100 },
        { .flags = MMK_RDWR | MMK_CREATE | MMK_LOCKED, .size = 4 * PS },
    };
    for (size_t i = 0; i < 3; i++) {
        int fd = open_or_die(p, O_RDWR);
        for (int by_fd = 0; by_fd < 2; by_fd++) {
            if (by_fd && (opts[i].flags & MMK_CREATE))
                continue;
            inject_install();
            inject_fail(INJ_MMAP, 1, ENOMEM);
            mmk_map *m = (mmk_map *)1;
            int rc = by_fd ? mmk_map_fd(&m, fd, &opts[i]) : mmk_map_open(&m, p, &opts[i]);
            cr_expect_eq(rc, -ENOMEM);
            cr_expect_null(m);
            inject_reset();
            cr_expect_eq(tu_file_size(p), 3000, "case %zu by_fd %d", i, by_fd);
        }
        close(fd);
    }
    size_t n;
    unsigned char *all = tu_read_file(p, &n);
    cr_expect_eq(pattern_mismatch(all, n, 0, 4), -1);
    free(all);
}

/* ---- MMK_COPY ----------------------------------------------------------- */

Test(map, copy_writes_stay_private)
{
    size_t size = 3 * PS + 10;
    const char *p = tu_pattern_file("f", size, 6);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .offset = 7, .flags = MMK_COPY }), 0);
    cr_expect(mmk_map_flags(m) & MMK_COPY);
    size_t len = mmk_map_len(m);
    cr_expect_eq(len, size - 7);
    memset(mmk_map_ptr(m), 0xee, 100);
    cr_expect_eq(mmk_map_write(m, len - 50, "private!", 8), 0);
    char buf[8];
    cr_expect_eq(mmk_map_read(m, len - 50, buf, 8), 0);
    cr_expect_eq(memcmp(buf, "private!", 8), 0);
    cr_expect_eq(((unsigned char *)mmk_map_ptr(m))[99], 0xee);
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);

    /* A second map of the same file does not see them either. */
    mmk_map *r;
    cr_assert_eq(mmk_map_open(&r, p, NULL), 0);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(r), size, 0, 6), -1);
    mmk_map_close(r);
    cr_expect_eq(mmk_map_close(m), 0);

    size_t n;
    unsigned char *all = tu_read_file(p, &n);
    cr_expect_eq(n, size);
    cr_expect_eq(pattern_mismatch(all, n, 0, 6), -1, "the file is unchanged");
    free(all);
}

/* ---- MMK_EXEC ----------------------------------------------------------- */

static void expect_perms(const void *addr, const char *want)
{
    char perms[5] = "";
    cr_assert_eq(tu_mapping_perms(addr, perms), 0, "no mapping at %p", addr);
    cr_expect_str_eq(perms, want);
}

Test(map, exec_maps_with_prot_exec)
{
    const char *p = tu_pattern_file("f", 3 * PS, 1);
    struct { unsigned flags; const char *perms; } cases[] = {
        { MMK_RDONLY, "r--s" },
        { MMK_EXEC, "r-xs" },
        { MMK_COPY | MMK_EXEC, "rwxp" }, /* copy maps are (privately) writable */
        { MMK_RDWR | MMK_EXEC, "rwxs" },
        { MMK_RDWR, "rw-s" },
        { MMK_COPY, "rw-p" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mmk_map *m;
        int rc = mmk_map_open(&m, p, &(mmk_map_opts){ .flags = cases[i].flags, .offset = 5 });
        if (rc == -EPERM && (cases[i].flags & MMK_EXEC))
            skip_test("scratch filesystem is mounted noexec");
        cr_assert_eq(rc, 0, "flags %#x", cases[i].flags);
        expect_perms(mmk_map_ptr(m), cases[i].perms);
        expect_perms((char *)mmk_map_ptr(m) + mmk_map_len(m) - 1, cases[i].perms);
        cr_expect_eq(!!(mmk_map_flags(m) & MMK_EXEC), !!(cases[i].flags & MMK_EXEC));
        cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 3 * PS - 5, 5, 1), -1);
        mmk_map_close(m);
    }
    mmk_map *a;
    cr_assert_eq(mmk_map_anon(&a, PS, MMK_EXEC), 0);
    expect_perms(mmk_map_ptr(a), "rwxp");
    cr_expect(mmk_map_flags(a) & MMK_EXEC);
    cr_expect_eq(mmk_map_protect(a, MMK_RDONLY), 0);
    expect_perms(mmk_map_ptr(a), "r--p");
    cr_expect_eq(mmk_map_flags(a) & (MMK_EXEC | MMK_RDWR), 0);
    cr_expect_eq(mmk_map_protect(a, MMK_RDONLY | MMK_EXEC), 0);
    expect_perms(mmk_map_ptr(a), "r-xp");
    mmk_map_close(a);
}

/* ---- mmk_map_fd --------------------------------------------------------- */

Test(map, fd_is_never_closed)
{
    const char *p = tu_pattern_file("f", 10000, 8);
    int fd = open_or_die(p, O_RDONLY);
    int before = tu_open_fds();
    mmk_map *m;
    cr_assert_eq(mmk_map_fd(&m, fd, &(mmk_map_opts){ .offset = 12, .len = 5000 }), 0);
    cr_expect_eq(tu_open_fds(), before + 1, "the map holds its own duplicate");
    cr_expect_eq(mmk_map_len(m), 5000);
    cr_expect_eq(mmk_map_offset(m), 12);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 5000, 12, 8), -1);
    cr_expect_eq(mmk_map_close(m), 0);
    cr_expect_eq(tu_open_fds(), before);
    cr_expect_neq(fcntl(fd, F_GETFD), -1, "the caller's fd is still open");
    char c;
    cr_expect_eq(pread(fd, &c, 1, 0), 1);
    cr_expect_eq((uint8_t)c, tu_pattern_byte(0, 8));
    cr_expect_eq(lseek(fd, 0, SEEK_CUR), 0, "the caller's file position is untouched");
    close(fd);
}

Test(map, fd_may_be_closed_right_after)
{
    const char *p = tu_pattern_file("f", 1000, 8);
    int fd = open_or_die(p, O_RDWR);
    mmk_map *m;
    cr_assert_eq(mmk_map_fd(&m, fd, &(mmk_map_opts){ .flags = MMK_RDWR }), 0);
    close(fd);
    cr_expect_eq(mmk_map_flags(m), MMK_RDWR);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 1000, 0, 8), -1);
    cr_expect_eq(mmk_map_write(m, 0, "hello", 5), 0);
    cr_expect_eq(mmk_map_resize(m, 3 * PS), 0, "resize uses the map's own fd");
    cr_expect_eq(tu_file_size(p), (int64_t)(3 * PS));
    cr_expect_eq(mmk_map_write(m, 3 * PS - 5, "world", 5), 0);
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    char buf[5];
    file_bytes(p, 0, buf, 5);
    cr_expect_eq(memcmp(buf, "hello", 5), 0);
    file_bytes(p, 3 * PS - 5, buf, 5);
    cr_expect_eq(memcmp(buf, "world", 5), 0);
    cr_expect_eq(mmk_map_close(m), 0);
}

Test(map, fd_access_must_fit)
{
    const char *p = tu_pattern_file("f", 1000, 8);
    int ro = open_or_die(p, O_RDONLY);
    int wo = open_or_die(p, O_WRONLY);
    int rw = open_or_die(p, O_RDWR);
    int before = tu_open_fds();
    mmk_map *m = (mmk_map *)1;
    cr_expect_eq(mmk_map_fd(&m, ro, &(mmk_map_opts){ .flags = MMK_RDWR }), -EACCES);
    cr_expect_null(m);
    cr_expect_eq(mmk_map_fd(&m, ro, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_TRUNC }),
                 -EACCES);
    cr_expect_eq(tu_file_size(p), 1000, "not truncated");
    cr_expect_eq(mmk_map_fd(&m, wo, NULL), -EACCES, "a mapping always reads");
    cr_expect_eq(mmk_map_fd(&m, wo, &(mmk_map_opts){ .flags = MMK_RDWR }), -EACCES);
    cr_expect_eq(mmk_map_fd(&m, wo, &(mmk_map_opts){ .flags = MMK_COPY }), -EACCES);
    cr_expect_eq(tu_open_fds(), before);

    /* What does fit works: COPY on a read-only fd is writable, privately. */
    cr_assert_eq(mmk_map_fd(&m, ro, &(mmk_map_opts){ .flags = MMK_COPY }), 0);
    cr_expect_eq(mmk_map_write(m, 0, "xx", 2), 0);
    mmk_map_close(m);
    cr_assert_eq(mmk_map_fd(&m, rw, NULL), 0);
    cr_expect_eq(mmk_map_write(m, 0, "xx", 2), -EACCES, "read-only map of an O_RDWR fd");
    mmk_map_close(m);
    char buf[2];
    file_bytes(p, 0, buf, 2);
    cr_expect_neq(memcmp(buf, "xx", 2), 0);
    close(ro);
    close(wo);
    close(rw);
}

Test(map, fd_bad_descriptor_is_ebadf)
{
    mmk_map *m = (mmk_map *)1;
    cr_expect_eq(mmk_map_fd(&m, -1, NULL), -EBADF);
    cr_expect_null(m);
    m = (mmk_map *)1;
    cr_expect_eq(mmk_map_fd(&m, UNUSED_FD, NULL), -EBADF);
    cr_expect_null(m);
    cr_expect_eq(mmk_map_fd(NULL, 0, NULL), -EINVAL);
}

Test(map, fd_open_only_flags_are_einval)
{
    const char *p = tu_pattern_file("f", 1000, 8);
    int fd = open_or_die(p, O_RDWR);
    struct { unsigned flags; mode_t mode; } bad[] = {
        { MMK_RDWR | MMK_CREATE, 0 },
        { MMK_RDWR | MMK_CREATE | MMK_EXCL, 0 },
        { MMK_RDWR | MMK_EXCL, 0 },
        { MMK_NOFOLLOW, 0 },
        { MMK_RDWR, 0600 },
        { MMK_RDONLY, 0644 },
        { MMK_RDWR | MMK_COPY, 0 },
        { MMK_TRUNC, 0 },
        { MMK_RESERVE, 0 },
        { MMK_SHARED, 0 },
        { MMK_APPEND, 0 },
        { 1u << 20, 0 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mmk_map *m = (mmk_map *)1;
        cr_expect_eq(mmk_map_fd(&m, fd, &(mmk_map_opts){ .flags = bad[i].flags,
                                                        .mode = bad[i].mode }), -EINVAL,
                     "flags %#x mode %o", bad[i].flags, (unsigned)bad[i].mode);
        cr_expect_null(m);
    }
    cr_expect_eq(tu_file_size(p), 1000);
    close(fd);
}

Test(map, fd_trunc_and_size)
{
    const char *p = tu_pattern_file("f", 5000, 8);
    int fd = open_or_die(p, O_RDWR);
    mmk_map *m;
    cr_assert_eq(mmk_map_fd(&m, fd, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_TRUNC }), 0);
    cr_expect_eq(mmk_map_len(m), 0);
    cr_expect_eq(tu_file_size(p), 0);
    mmk_map_close(m);

    tu_pattern_file("f", 5000, 8); /* a new inode; fd still sees the old one */
    close(fd);
    fd = open_or_die(p, O_RDWR);
    cr_assert_eq(mmk_map_fd(&m, fd, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_TRUNC,
                                                    .size = 3 * PS }), 0);
    cr_expect_eq(mmk_map_len(m), 3 * PS);
    cr_expect_eq(tu_file_size(p), (int64_t)(3 * PS));
    cr_expect_eq(nonzero_at(mmk_map_ptr(m), 3 * PS), -1);
    mmk_map_close(m);

    cr_assert_eq(mmk_map_fd(&m, fd, &(mmk_map_opts){ .flags = MMK_RDWR, .offset = PS + 1,
                                                    .len = 4 * PS }), 0);
    cr_expect_eq(tu_file_size(p), (int64_t)(5 * PS + 1), "a range past EOF grows it");
    mmk_map_close(m);
    close(fd);
}

Test(map, fd_not_a_regular_file)
{
    int dfd = open_or_die(tu_dir(), O_RDONLY | O_DIRECTORY);
    mmk_map *m = (mmk_map *)1;
    int before = tu_open_fds();
    cr_expect_eq(mmk_map_fd(&m, dfd, NULL), -EISDIR);
    cr_expect_null(m);
    close(dfd);

    const char *f = tu_path("fifo");
    cr_assert_eq(mkfifo(f, 0600), 0);
    int ffd = open_or_die(f, O_RDONLY | O_NONBLOCK);
    cr_expect_eq(mmk_map_fd(&m, ffd, NULL), -ENODEV);
    close(ffd);
    int nfd = open_or_die("/dev/null", O_RDONLY);
    cr_expect_eq(mmk_map_fd(&m, nfd, NULL), -ENODEV);
    close(nfd);
    cr_expect_eq(tu_open_fds(), before - 1);
}

/* ---- mmk_map_anon ------------------------------------------------------- */

Test(map, anon_is_zeroed_and_writable)
{
    size_t len = 3 * PS + 5;
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, len, 0), 0);
    cr_expect_eq(mmk_map_len(m), len);
    cr_expect_eq(mmk_map_offset(m), 0);
    cr_expect_eq(mmk_map_flags(m) & MMK_RDWR, MMK_RDWR);
    cr_expect_eq(nonzero_at(mmk_map_ptr(m), len), -1);
    tu_pattern(mmk_map_ptr(m), len, 0, 3);
    unsigned char *buf = malloc(len);
    cr_expect_eq(mmk_map_read(m, 0, buf, len), 0);
    cr_expect_eq(pattern_mismatch(buf, len, 0, 3), -1);
    cr_expect_eq(mmk_map_write(m, len - 1, "z", 1), 0);
    cr_expect_eq(((char *)mmk_map_ptr(m))[len - 1], 'z');
    free(buf);
    cr_expect_eq(mmk_map_close(m), 0);
}

Test(map, anon_bad_arguments)
{
    mmk_map *m = (mmk_map *)1;
    cr_expect_eq(mmk_map_anon(&m, 0, 0), -EINVAL);
    cr_expect_null(m);
    cr_expect_eq(mmk_map_anon(NULL, PS, 0), -EINVAL);
    unsigned bad[] = { MMK_CREATE, MMK_COPY, MMK_TRUNC, MMK_EXCL, MMK_NOFOLLOW,
                       MMK_RESERVE, MMK_APPEND, 1u << 20 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = (mmk_map *)1;
        cr_expect_eq(mmk_map_anon(&m, PS, bad[i]), -EINVAL, "flags %#x", bad[i]);
        cr_expect_null(m);
    }
    m = (mmk_map *)1;
    cr_expect_eq(mmk_map_anon(&m, SIZE_MAX, 0), -ENOMEM);
    cr_expect_null(m);
    m = (mmk_map *)1;
    cr_expect_eq(mmk_map_anon(&m, SIZE_MAX, MMK_HUGE), -ENOMEM);
    cr_expect_null(m);
    cr_assert_eq(mmk_map_anon(&m, PS, MMK_RDWR), 0, "RDWR is allowed (and implied)");
    mmk_map_close(m);
}

static void child_writes(mmk_map *m)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        memcpy(mmk_map_ptr(m), "from child", 10);
        _exit(0);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

Test(map, anon_shared_is_seen_by_forked_child)
{
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, 2 * PS, MMK_SHARED), 0);
    child_writes(m);
    cr_expect_eq(memcmp(mmk_map_ptr(m), "from child", 10), 0);
    mmk_map_close(m);

    cr_assert_eq(mmk_map_anon(&m, 2 * PS, 0), 0);
    memcpy(mmk_map_ptr(m), "from parent", 11);
    child_writes(m);
    cr_expect_eq(memcmp(mmk_map_ptr(m), "from parent", 11), 0, "private: not shared");
    mmk_map_close(m);
}

Test(map, anon_huge_never_fails)
{
    size_t lens[] = { 1, PS, 3 * MIB + 1, 4 * MIB };
    unsigned extra[] = { 0, MMK_SHARED, MMK_POPULATE, MMK_SHARED | MMK_POPULATE };
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 4; j++) {
            mmk_map *m;
            cr_assert_eq(mmk_map_anon(&m, lens[i], MMK_HUGE | extra[j]), 0);
            cr_expect_eq(mmk_map_len(m), lens[i]);
            /* MAP_HUGETLB memory and the fallback are both huge-page aligned. */
            cr_expect_eq((uintptr_t)mmk_map_ptr(m) % mmk__huge_page_size(), 0,
                         "len %zu: %p", lens[i], mmk_map_ptr(m));
            cr_expect_eq(nonzero_at(mmk_map_ptr(m), lens[i]), -1);
            memset(mmk_map_ptr(m), 0x11, lens[i]);
            cr_expect_eq(((unsigned char *)mmk_map_ptr(m))[lens[i] - 1], 0x11);
            cr_expect(mmk_map_flags(m) & MMK_HUGE);
            cr_expect_eq(mmk_map_close(m), 0);
        }
}

Test(map, anon_populate_prefaults)
{
    size_t len = 64 * PS;
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, len, 0), 0);
    cr_expect_eq(resident(m, 0, 0), 0, "untouched anonymous memory is not resident");
    mmk_map_close(m);
    cr_assert_eq(mmk_map_anon(&m, len, MMK_POPULATE), 0);
    cr_expect_eq(resident(m, 0, 0), len);
    cr_expect_eq(nonzero_at(mmk_map_ptr(m), len), -1);
    mmk_map_close(m);
    cr_assert_eq(mmk_map_anon(&m, len, MMK_POPULATE | MMK_SHARED), 0);
    cr_expect_eq(resident(m, 0, 0), len);
    mmk_map_close(m);
}

Test(map, anon_locked)
{
    size_t len = 256 * 1024;
    long before = locked_kib_if_real();
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, len, MMK_LOCKED), 0);
    if (before >= 0)
        cr_expect_eq(resident(m, 0, 0), len, "locked memory is resident");
    if (before >= 0)
        cr_expect_geq(tu_locked_kib() - before, (long)(len / 1024));
    mmk_map_close(m);
    if (before >= 0)
        cr_expect_eq(tu_locked_kib(), before);
    cr_assert_eq(mmk_map_anon(&m, len, MMK_LOCKED | MMK_POPULATE | MMK_SHARED), 0);
    mmk_map_close(m);
}

Test(map, locked_beyond_rlimit_fails)
{
    if (!make_mlock_limited(64 * 1024))
        skip_test("mlock is not limited here (CAP_IPC_LOCK cannot be dropped, "
                  "or a sanitizer made mlock a no-op)");
    mmk_map *m = (mmk_map *)1;
    int before = tu_mapping_count();
    int rc = mmk_map_anon(&m, 4 * MIB, MMK_LOCKED);
    cr_expect(rc == -ENOMEM || rc == -EPERM || rc == -EAGAIN, "got %d", rc);
    cr_expect_null(m);
    cr_expect_eq(tu_mapping_count(), before, "nothing left mapped");

    const char *p = tu_pattern_file("f", 4 * MIB, 1);
    m = (mmk_map *)1;
    rc = mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_LOCKED });
    cr_expect(rc == -ENOMEM || rc == -EPERM || rc == -EAGAIN, "got %d", rc);
    cr_expect_null(m);

    cr_assert_eq(mmk_map_anon(&m, 4 * MIB, 0), 0);
    rc = mmk_map_lock(m, 0, 0);
    cr_expect(rc == -ENOMEM || rc == -EPERM || rc == -EAGAIN, "got %d", rc);
    cr_expect_eq(mmk_map_lock(m, 0, 4096), 0, "a small range fits the limit");
    cr_expect_eq(mmk_map_unlock(m, 0, 0), 0);
    mmk_map_close(m);
}

/* ---- MMK_HUGE on files -------------------------------------------------- */

Test(map, huge_file_maps_are_placed_congruent_to_the_offset)
{
    size_t size = 5 * MIB + 999;
    const char *p = tu_pattern_file("f", size, 12);
    uint64_t offs[] = { 0, 1, PS, HUGE_ALIGN - 1, HUGE_ALIGN + 12345, 3 * MIB };
    unsigned modes[] = { MMK_HUGE, MMK_COPY | MMK_HUGE, MMK_RDWR | MMK_HUGE,
                         MMK_HUGE | MMK_POPULATE };
    for (size_t a = 0; a < 4; a++)
        for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
            mmk_map *m;
            mmk_map_opts o = { .offset = offs[i], .len = i % 2 ? MIB : 0,
                               .flags = modes[a] };
            cr_assert_eq(mmk_map_open(&m, p, &o), 0);
            size_t len = mmk_map_len(m);
            cr_expect_eq((uintptr_t)mmk_map_ptr(m) % HUGE_ALIGN, offs[i] % HUGE_ALIGN,
                         "flags %#x off %lu: %p", modes[a], (unsigned long)offs[i],
                         mmk_map_ptr(m));
            cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), len, offs[i], 12), -1);
            cr_expect(mmk_map_flags(m) & MMK_HUGE);
            mmk_map_close(m);
        }
    cr_expect_eq(tu_file_size(p), (int64_t)size);
}

Test(map, huge_placement_failures_are_not_errors)
{
    const char *p = tu_pattern_file("f", 3 * MIB, 12);
    mmk_map *m;
    /* No room for the reservation: an ordinary mmap instead. */
    inject_install();
    inject_fail(INJ_MMAP, 1, ENOMEM);
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_HUGE }), 0);
    cr_expect_eq(inject_count(INJ_MMAP), 2);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 3 * MIB, 0, 12), -1);
    mmk_map_close(m);
    /* MADV_HUGEPAGE refused (no transparent huge pages). */
    inject_fail(INJ_MADVISE, 1, EINVAL);
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_HUGE, .offset = 3 }), 0);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 3 * MIB - 3, 3, 12), -1);
    mmk_map_close(m);
    inject_fail(INJ_MADVISE, 1, EINVAL);
    cr_assert_eq(mmk_map_anon(&m, 3 * MIB, MMK_HUGE), 0);
    mmk_map_close(m);
    inject_reset();
}

/* ---- MMK_POPULATE on files ---------------------------------------------- */

Test(map, populate_file_makes_it_resident)
{
    size_t size = 1 * MIB + 3;
    const char *p = tu_pattern_file("f", size, 13);
    unsigned modes[] = { MMK_POPULATE, MMK_COPY | MMK_POPULATE, MMK_RDWR | MMK_POPULATE };
    for (size_t i = 0; i < 3; i++) {
        evict(p);
        mmk_map *m;
        cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = modes[i], .offset = 10 }),
                     0);
        cr_expect_eq(resident(m, 0, 0), size - 10, "flags %#x", modes[i]);
        cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), size - 10, 10, 13), -1);
        mmk_map_close(m);
    }
}

Test(map, populate_falls_back_to_map_populate)
{
    size_t size = 256 * 1024;
    const char *p = tu_pattern_file("f", size, 13);
    evict(p);
    inject_install();
    inject_fail(INJ_MADVISE, 1, EINVAL); /* a kernel without MADV_POPULATE_READ */
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_POPULATE }), 0);
    cr_expect_eq(inject_count(INJ_MMAP), 2, "mapped again with MAP_POPULATE");
    cr_expect_eq(resident(m, 0, 0), size);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), size, 0, 13), -1);
    mmk_map_close(m);
    /* Remembered: the next populate goes straight to MAP_POPULATE. */
    unsigned long adv = inject_count(INJ_MADVISE);
    cr_assert_eq(mmk_map_anon(&m, size, MMK_POPULATE), 0);
    cr_expect_eq(inject_count(INJ_MADVISE), adv);
    cr_expect_eq(resident(m, 0, 0), size);
    mmk_map_close(m);
    inject_reset();
}

Test(map, populate_failure_is_reported)
{
    const char *p = tu_pattern_file("f", 100000, 13);
    int fds = tu_open_fds();
    inject_install();
    mmk_map *m = (mmk_map *)1;
    inject_fail(INJ_MADVISE, 1, EFAULT); /* a page that cannot be read */
    cr_expect_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_POPULATE }), -EIO);
    cr_expect_null(m);
    cr_expect_eq(inject_count(INJ_MUNMAP), 1, "the mapping was undone");
    inject_fail(INJ_MADVISE, 1, ENOMEM);
    cr_expect_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_POPULATE | MMK_RDWR }),
                 -ENOMEM);
    cr_expect_null(m);
    inject_fail(INJ_MADVISE, 1, EFAULT);
    cr_expect_eq(mmk_map_anon(&m, PS, MMK_POPULATE), -EIO);
    cr_expect_null(m);
    inject_reset();
    cr_expect_eq(tu_open_fds(), fds);
}

/* ---- MMK_RESERVE -------------------------------------------------------- */

Test(map, reserve_allocates_blocks)
{
    const char *p = tu_path("f");
    mmk_map *m;
    size_t len = 1 * MIB;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){
                     .flags = MMK_RDWR | MMK_CREATE | MMK_RESERVE, .size = len }), 0);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_expect_geq((uint64_t)st.st_blocks * 512, len, "blocks allocated up front");
    cr_expect_eq(mmk_map_close(m), 0);

    /* Without fallocate: posix_fallocate; its error is reported. */
    const char *q = tu_path("g");
    inject_install();
    inject_fail(INJ_FALLOCATE, 1, EOPNOTSUPP);
    cr_assert_eq(mmk_map_open(&m, q, &(mmk_map_opts){
                     .flags = MMK_RDWR | MMK_CREATE | MMK_RESERVE, .size = len }), 0);
    cr_expect_eq(inject_count(INJ_POSIX_FALLOCATE), 1);
    mmk_map_close(m);
    unlink(q);
    inject_fail(INJ_FALLOCATE, 1, EOPNOTSUPP);
    inject_fail(INJ_POSIX_FALLOCATE, 1, ENOSPC);
    m = (mmk_map *)1;
    cr_expect_eq(mmk_map_open(&m, q, &(mmk_map_opts){
                     .flags = MMK_RDWR | MMK_CREATE | MMK_RESERVE, .size = len }), -ENOSPC);
    cr_expect_null(m);
    cr_expect_eq(tu_file_size(q), -1);
    inject_fail(INJ_FALLOCATE, 1, ENOSPC);
    cr_expect_eq(mmk_map_open(&m, q, &(mmk_map_opts){
                     .flags = MMK_RDWR | MMK_CREATE | MMK_RESERVE, .size = len }), -ENOSPC);
    inject_reset();
}

/* ---- mmk_map_sync / mmk_map_sync_async ---------------------------------- */

Test(map, sync_is_one_msync_without_size_change)
{
    const char *p = tu_pattern_file("f", 3 * PS, 1);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR }), 0);
    memcpy(mmk_map_ptr(m), "durable", 7);
    inject_install();
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(inject_count_msync_sync(), 1);
    cr_expect_eq(inject_count(INJ_MSYNC), 1);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 0, "the size did not change");
    cr_expect_eq(inject_count(INJ_FSYNC), 0);
    char buf[7];
    file_bytes(p, 0, buf, 7);
    cr_expect_eq(memcmp(buf, "durable", 7), 0);
    inject_reset();
    mmk_map_close(m);
}

Test(map, sync_fdatasyncs_once_after_the_size_changed)
{
    const char *p = tu_pattern_file("f", 1000, 1);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR, .size = 4 * PS }),
                 0);
    inject_install();
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(inject_count_msync_sync(), 1);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 1);
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(inject_count_msync_sync(), 2);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 1, "nothing new to fdatasync");
    cr_expect_eq(inject_count(INJ_FSYNC), 0, "we did not create the file");
    inject_reset();
    mmk_map_close(m);

    /* MMK_TRUNC changed the size too. */
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_TRUNC }), 0);
    inject_install();
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 1, "a truncation is new metadata");
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 1);
    inject_reset();
    mmk_map_close(m);
    int fd = open_or_die(p, O_RDWR);
    cr_assert_eq(ftruncate(fd, 500), 0);
    cr_assert_eq(mmk_map_fd(&m, fd, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_TRUNC }), 0);
    close(fd);
    inject_install();
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 1, "mmk_map_fd with TRUNC too");
    inject_reset();
    mmk_map_close(m);

    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR, .size = 4 * PS }),
                 0);
    inject_install();
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 1);

    cr_expect_eq(mmk_map_resize(m, 8 * PS), 0);
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 2, "resize grew the file");

    /* A failed fdatasync is retried by the next sync. */
    cr_expect_eq(mmk_map_resize(m, 9 * PS), 0);
    inject_fail(INJ_FDATASYNC, 1, EIO);
    cr_expect_eq(mmk_map_sync(m, 0, 0), -EIO);
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 4);
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 4);
    inject_reset();
    mmk_map_close(m);
}

Test(map, sync_of_a_created_file_syncs_its_directory_once)
{
    const char *p = tu_path("new");
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_CREATE,
                                                      .size = PS }), 0);
    inject_install();
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 1);
    cr_expect_eq(inject_count(INJ_FSYNC), 1, "the directory entry");
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 1);
    cr_expect_eq(inject_count(INJ_FSYNC), 1);
    inject_reset();
    mmk_map_close(m);

    /* A failed directory sync is reported and retried. */
    const char *q = tu_path("new2");
    cr_assert_eq(mmk_map_open(&m, q, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_CREATE,
                                                      .size = PS }), 0);
    inject_install();
    inject_fail(INJ_FSYNC, 1, EIO);
    cr_expect_eq(mmk_map_sync(m, 0, 0), -EIO);
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(inject_count(INJ_FSYNC), 2);
    inject_reset();
    mmk_map_close(m);
}

Test(map, sync_has_nothing_to_do_for_read_only_copy_and_anon)
{
    const char *p = tu_pattern_file("f", 3 * PS, 1);
    mmk_map *maps[5];
    cr_assert_eq(mmk_map_open(&maps[0], p, NULL), 0);
    cr_assert_eq(mmk_map_open(&maps[1], p, &(mmk_map_opts){ .flags = MMK_COPY }), 0);
    cr_assert_eq(mmk_map_anon(&maps[2], 3 * PS, 0), 0);
    cr_assert_eq(mmk_map_anon(&maps[3], 3 * PS, MMK_SHARED), 0);
    int fd = open_or_die(p, O_RDONLY);
    cr_assert_eq(mmk_map_fd(&maps[4], fd, NULL), 0);
    close(fd);
    memset(mmk_map_ptr(maps[1]), 1, 10);
    memset(mmk_map_ptr(maps[2]), 1, 10);
    inject_install();
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(mmk_map_sync(maps[i], 0, 0), 0, "map %d", i);
        cr_expect_eq(mmk_map_sync(maps[i], 5, 100), 0);
        cr_expect_eq(mmk_map_sync_async(maps[i], 0, 0), 0);
        cr_expect_eq(mmk_map_sync(maps[i], 0, 3 * PS + 1), -EINVAL, "ranges still checked");
    }
    cr_expect_eq(inject_count(INJ_MSYNC), 0);
    cr_expect_eq(inject_count(INJ_FDATASYNC), 0);
    cr_expect_eq(inject_count(INJ_FSYNC), 0);
    cr_expect_eq(inject_count(INJ_SYNC_FILE_RANGE), 0);
    inject_reset();
    for (int i = 0; i < 5; i++)
        mmk_map_close(maps[i]);
}

Test(map, sync_ranges)
{
    size_t size = 8 * PS;
    const char *p = tu_pattern_file("f", size, 1);
    uint64_t off = PS + 100;  /* the view starts 100 bytes into a page */
    size_t len = 5 * PS;
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR, .offset = off,
                                                      .len = len }), 0);
    uintptr_t v = (uintptr_t)mmk_map_ptr(m);

    cr_expect_eq(mmk_map_sync(NULL, 0, 0), -EINVAL);
    cr_expect_eq(mmk_map_sync(m, len + 1, 0), -EINVAL);
    cr_expect_eq(mmk_map_sync(m, 0, len + 1), -EINVAL);
    cr_expect_eq(mmk_map_sync(m, 1, len), -EINVAL);
    cr_expect_eq(mmk_map_sync(m, SIZE_MAX, 1), -EINVAL);
    cr_expect_eq(mmk_map_sync(m, 1, SIZE_MAX), -EINVAL);
    cr_expect_eq(mmk_map_sync(m, SIZE_MAX, SIZE_MAX), -EINVAL);

    mmk__sys.msync = rec_msync;
    memset(&last_msync, 0, sizeof last_msync);
    cr_expect_eq(mmk_map_sync(m, len, 0), 0, "an empty range at the end");
    cr_expect_eq(last_msync.calls, 0);

    struct { size_t off, n; } r[] = {
        { 0, 0 }, { 10, 1 }, { PS - 100, 1 }, { PS - 101, 2 }, { 2 * PS, 0 }, { 0, len },
        { len - 1, 1 }, { 3 * PS, PS },
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        memset(&last_msync, 0, sizeof last_msync);
        cr_expect_eq(mmk_map_sync(m, r[i].off, r[i].n), 0);
        size_t n = r[i].n ? r[i].n : len - r[i].off;
        uintptr_t lo = page_down(v + r[i].off), hi = page_up(v + r[i].off + n);
        cr_expect_eq(last_msync.calls, 1);
        cr_expect_eq((uintptr_t)last_msync.addr, lo, "range %zu+%zu", r[i].off, r[i].n);
        cr_expect_eq(last_msync.len, hi - lo, "range %zu+%zu", r[i].off, r[i].n);
        cr_expect(last_msync.flags & MS_SYNC);
    }
    mmk__os_reset();

    inject_install();
    inject_fail(INJ_MSYNC, 1, EIO);
    cr_expect_eq(mmk_map_sync(m, 0, 0), -EIO);
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    inject_reset();
    mmk_map_close(m);
}

Test(map, sync_async_starts_writeback_only)
{
    size_t size = 8 * PS;
    const char *p = tu_pattern_file("f", size, 1);
    uint64_t off = PS + 100;
    size_t len = 5 * PS;
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR, .offset = off,
                                                      .len = len }), 0);
    memset(mmk_map_ptr(m), 0x77, len);
    inject_install();
    cr_expect_eq(mmk_map_sync_async(m, 0, 0), 0);
    cr_expect_eq(inject_count(INJ_SYNC_FILE_RANGE), 1);
    cr_expect_eq(inject_count_msync_sync(), 0, "not durable, not MS_SYNC");
    cr_expect_eq(inject_count(INJ_FDATASYNC), 0);

    /* The range given to sync_file_range is the file's, widened to pages. */
    mmk__sys.sync_file_range = rec_sync_file_range;
    memset(&last_sfr, 0, sizeof last_sfr);
    cr_expect_eq(mmk_map_sync_async(m, 10, 1), 0);
    cr_expect_eq(last_sfr.calls, 1);
    cr_expect_eq(last_sfr.off, (off_t)PS);
    cr_expect_eq(last_sfr.len, (off_t)PS);
    cr_expect_eq(mmk_map_sync_async(m, PS - 101, 2), 0);
    cr_expect_eq(last_sfr.off, (off_t)PS);
    cr_expect_eq(last_sfr.len, (off_t)(2 * PS));
    cr_expect_eq(mmk_map_sync_async(m, 2 * PS, 0), 0);
    cr_expect_eq(last_sfr.off, (off_t)(3 * PS));
    cr_expect_eq(last_sfr.len, (off_t)(4 * PS), "n 0 = to the end of the view");
    inject_reset();

    inject_install();
    inject_fail(INJ_SYNC_FILE_RANGE, 1, ENOSYS); /* falls back to MS_ASYNC */
    cr_expect_eq(mmk_map_sync_async(m, 0, 0), 0);
    cr_expect_eq(inject_count(INJ_MSYNC), 1);
    cr_expect_eq(inject_count_msync_sync(), 0);
    inject_fail(INJ_SYNC_FILE_RANGE, 1, EIO);
    cr_expect_eq(mmk_map_sync_async(m, 0, 0), -EIO);
    cr_expect_eq(mmk_map_sync_async(m, len, 0), 0);
    cr_expect_eq(mmk_map_sync_async(m, len + 1, 0), -EINVAL);
    cr_expect_eq(mmk_map_sync_async(m, 0, len + 1), -EINVAL);
    cr_expect_eq(mmk_map_sync_async(m, SIZE_MAX, 2), -EINVAL);
    cr_expect_eq(mmk_map_sync_async(NULL, 0, 0), -EINVAL);
    inject_reset();
    mmk_map_close(m);
}

/* ---- mmk_map_advise ----------------------------------------------------- */

static const int all_advice[] = {
    MMK_ADV_NORMAL, MMK_ADV_RANDOM, MMK_ADV_SEQUENTIAL, MMK_ADV_WILLNEED,
    MMK_ADV_DONTNEED, MMK_ADV_HUGEPAGE, MMK_ADV_NOHUGEPAGE, MMK_ADV_POPULATE_READ,
    MMK_ADV_POPULATE_WRITE, MMK_ADV_COLD, MMK_ADV_PAGEOUT,
};
#define N_ADVICE (sizeof all_advice / sizeof all_advice[0])

Test(map, advise_file_maps)
{
    size_t size = 16 * PS + 3;
    const char *p = tu_pattern_file("f", size, 14);
    unsigned modes[] = { MMK_RDWR, MMK_RDONLY, MMK_RDWR | MMK_HUGE };
    for (size_t a = 0; a < 3; a++) {
        mmk_map *m;
        cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = modes[a], .offset = 1 }),
                     0);
        for (size_t i = 0; i < N_ADVICE; i++) {
            size_t ranges[][2] = { { 0, 0 }, { 5, 1 }, { PS, 2 * PS }, { size - 2, 1 } };
            for (size_t r = 0; r < 4; r++) {
                int rc = mmk_map_advise(m, ranges[r][0], ranges[r][1], all_advice[i]);
                if (all_advice[i] == MMK_ADV_POPULATE_WRITE && !(modes[a] & MMK_RDWR))
                    cr_expect_eq(rc, -EACCES, "POPULATE_WRITE on a read-only map");
                else
                    cr_expect(rc == 0 || rc == -EOPNOTSUPP, "flags %#x advice %d: %d",
                              modes[a], all_advice[i], rc);
            }
        }
        cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), size - 1, 1, 14), -1,
                     "advice does not change a file map's content");
        mmk_map_close(m);
    }
}

Test(map, advise_dontneed_discards_private_data)
{
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, 4 * PS, 0), 0);
    memset(mmk_map_ptr(m), 0xab, 4 * PS);
    cr_expect_eq(mmk_map_advise(m, 0, 0, MMK_ADV_DONTNEED), 0);
    cr_expect_eq(nonzero_at(mmk_map_ptr(m), 4 * PS), -1, "anonymous data becomes zero");
    mmk_map_close(m);

    const char *p = tu_pattern_file("f", 4 * PS, 14);
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_COPY }), 0);
    memset(mmk_map_ptr(m), 0xab, 4 * PS);
    cr_expect_eq(mmk_map_advise(m, PS, PS, MMK_ADV_DONTNEED), 0);
    unsigned char *v = mmk_map_ptr(m);
    cr_expect_eq(v[0], 0xab, "outside the range: kept");
    cr_expect_eq(v[2 * PS], 0xab);
    cr_expect_eq(pattern_mismatch(v + PS, PS, PS, 14), -1, "copy: the file shows again");
    mmk_map_close(m);
}

Test(map, advise_errors)
{
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, 4 * PS, 0), 0);
    int unknown[] = { -1, (int)N_ADVICE, 100, INT_MAX, INT_MIN };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        cr_expect_eq(mmk_map_advise(m, 0, 0, unknown[i]), -EINVAL, "advice %d", unknown[i]);
    cr_expect_eq(mmk_map_advise(NULL, 0, 0, MMK_ADV_NORMAL), -EINVAL);
    cr_expect_eq(mmk_map_advise(m, 4 * PS + 1, 0, MMK_ADV_NORMAL), -EINVAL);
    cr_expect_eq(mmk_map_advise(m, 0, 4 * PS + 1, MMK_ADV_NORMAL), -EINVAL);
    cr_expect_eq(mmk_map_advise(m, 1, SIZE_MAX, MMK_ADV_WILLNEED), -EINVAL);
    cr_expect_eq(mmk_map_advise(m, SIZE_MAX, 1, MMK_ADV_WILLNEED), -EINVAL);
    cr_expect_eq(mmk_map_advise(m, 4 * PS, 0, MMK_ADV_WILLNEED), 0, "empty range");

    cr_expect_eq(mmk_map_protect(m, MMK_RDONLY), 0);
    cr_expect_eq(mmk_map_advise(m, 0, 0, MMK_ADV_POPULATE_WRITE), -EACCES);
    cr_expect_eq(mmk_map_advise(m, 0, 0, MMK_ADV_POPULATE_READ), 0);

    /* errno translation */
    inject_install();
    inject_fail(INJ_MADVISE, 1, EINVAL);
    cr_expect_eq(mmk_map_advise(m, 0, 0, MMK_ADV_COLD), -EOPNOTSUPP, "newer advice");
    inject_fail(INJ_MADVISE, 1, EINVAL);
    cr_expect_eq(mmk_map_advise(m, 0, 0, MMK_ADV_HUGEPAGE), -EOPNOTSUPP);
    inject_fail(INJ_MADVISE, 1, EINVAL);
    cr_expect_eq(mmk_map_advise(m, 0, 0, MMK_ADV_RANDOM), -EINVAL, "old advice");
    inject_fail(INJ_MADVISE, 1, EFAULT);
    cr_expect_eq(mmk_map_advise(m, 0, 0, MMK_ADV_POPULATE_READ), -EIO);
    inject_fail(INJ_MADVISE, 1, ENOMEM);
    cr_expect_eq(mmk_map_advise(m, 0, 0, MMK_ADV_WILLNEED), -ENOMEM);
    inject_fail(INJ_MADVISE, 1, EFAULT);
    cr_expect_eq(mmk_map_advise(m, 0, 0, MMK_ADV_WILLNEED), -EFAULT, "only POPULATE_* -> EIO");
    inject_reset();

    /* The range handed to madvise covers the pages of the view range. */
    mmk__sys.madvise = rec_madvise;
    uintptr_t v = (uintptr_t)mmk_map_ptr(m);
    cr_expect_eq(mmk_map_advise(m, PS - 1, 2, MMK_ADV_WILLNEED), 0);
    cr_expect_eq((uintptr_t)last_madvise.addr, v);
    cr_expect_eq(last_madvise.len, 2 * PS);
    cr_expect_eq(last_madvise.flags, MADV_WILLNEED);
    cr_expect_eq(mmk_map_advise(m, 2 * PS, 0, MMK_ADV_RANDOM), 0);
    cr_expect_eq((uintptr_t)last_madvise.addr, v + 2 * PS);
    cr_expect_eq(last_madvise.len, 2 * PS);
    cr_expect_eq(last_madvise.flags, MADV_RANDOM);
    mmk__os_reset();
    mmk_map_close(m);
}

/* ---- lock / unlock ------------------------------------------------------ */

Test(map, lock_and_unlock)
{
    const char *p = tu_pattern_file("f", 64 * PS, 1);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .offset = 3 }), 0);
    size_t len = mmk_map_len(m);
    long before = locked_kib_if_real();
    cr_expect_eq(mmk_map_lock(m, 0, 0), 0);
    if (before >= 0)
        cr_expect_geq(tu_locked_kib() - before, (long)(len / 1024));
    cr_expect_eq(mmk_map_unlock(m, 0, 0), 0);
    if (before >= 0)
        cr_expect_eq(tu_locked_kib(), before);
    cr_expect_eq(mmk_map_lock(m, 10, PS), 0);
    if (before >= 0)
        cr_expect_eq(tu_locked_kib() - before, (long)(2 * PS / 1024), "two pages");
    cr_expect_eq(mmk_map_unlock(m, 10, PS), 0);
    cr_expect_eq(mmk_map_lock(m, len, 0), 0);

    cr_expect_eq(mmk_map_lock(NULL, 0, 0), -EINVAL);
    cr_expect_eq(mmk_map_unlock(NULL, 0, 0), -EINVAL);
    cr_expect_eq(mmk_map_lock(m, len + 1, 0), -EINVAL);
    cr_expect_eq(mmk_map_lock(m, 0, len + 1), -EINVAL);
    cr_expect_eq(mmk_map_lock(m, SIZE_MAX, SIZE_MAX), -EINVAL);
    cr_expect_eq(mmk_map_unlock(m, len + 1, 0), -EINVAL);
    cr_expect_eq(mmk_map_unlock(m, 1, len), -EINVAL);

    inject_install();
    inject_fail(INJ_MLOCK, 1, ENOMEM);
    cr_expect_eq(mmk_map_lock(m, 0, 0), -ENOMEM);
    inject_fail(INJ_MUNLOCK, 1, EPERM);
    cr_expect_eq(mmk_map_unlock(m, 0, 0), -EPERM);
    inject_reset();
    mmk_map_close(m);

    mmk_map *a;
    cr_assert_eq(mmk_map_anon(&a, 16 * PS, 0), 0);
    cr_expect_eq(mmk_map_lock(a, 0, 0), 0);
    if (before >= 0)
        cr_expect_eq(resident(a, 0, 0), 16 * PS, "locking faults the pages in");
    cr_expect_eq(mmk_map_unlock(a, 0, 0), 0);
    mmk_map_close(a);
}

/* ---- mmk_map_protect ---------------------------------------------------- */

Test(map, protect_read_only_file_cannot_become_writable)
{
    const char *p = tu_pattern_file("f", 3 * PS, 1);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, NULL), 0);
    cr_expect_eq(mmk_map_protect(m, MMK_RDWR), -EACCES);
    cr_expect_eq(mmk_map_protect(m, MMK_RDWR | MMK_EXEC), -EACCES);
    cr_expect_eq(mmk_map_flags(m), MMK_RDONLY);
    cr_expect_eq(mmk_map_write(m, 0, "x", 1), -EACCES);
    cr_expect_eq(mmk_map_protect(m, MMK_RDONLY), 0);
    mmk_map_close(m);

    int fd = open_or_die(p, O_RDONLY);
    cr_assert_eq(mmk_map_fd(&m, fd, NULL), 0);
    close(fd);
    cr_expect_eq(mmk_map_protect(m, MMK_RDWR), -EACCES);
    mmk_map_close(m);
}

Test(map, protect_rdwr_round_trip)
{
    const char *p = tu_pattern_file("f", 3 * PS, 1);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR, .offset = 9 }), 0);
    cr_expect_eq(mmk_map_protect(m, MMK_RDONLY), 0);
    cr_expect_eq(mmk_map_flags(m) & MMK_RDWR, 0);
    expect_perms(mmk_map_ptr(m), "r--s");
    cr_expect_eq(mmk_map_write(m, 0, "x", 1), -EACCES);
    cr_expect_eq(mmk_map_protect(m, MMK_RDWR), 0);
    cr_expect_eq(mmk_map_flags(m) & MMK_RDWR, MMK_RDWR);
    expect_perms(mmk_map_ptr(m), "rw-s");
    cr_expect_eq(mmk_map_write(m, 0, "x", 1), 0);
    cr_expect_eq(mmk_map_sync(m, 0, 1), 0);
    char c;
    file_bytes(p, 9, &c, 1);
    cr_expect_eq(c, 'x');

    /* A failed mprotect changes nothing. */
    inject_install();
    inject_fail(INJ_MPROTECT, 1, ENOMEM);
    cr_expect_eq(mmk_map_protect(m, MMK_RDONLY), -ENOMEM);
    inject_reset();
    cr_expect_eq(mmk_map_flags(m) & MMK_RDWR, MMK_RDWR);
    cr_expect_eq(mmk_map_write(m, 1, "y", 1), 0);

    cr_expect_eq(mmk_map_protect(NULL, MMK_RDONLY), -EINVAL);
    unsigned bad[] = { MMK_COPY, MMK_CREATE, MMK_HUGE, MMK_SHARED, 1u << 20 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(mmk_map_protect(m, MMK_RDWR | bad[i]), -EINVAL, "access %#x", bad[i]);
    cr_expect_eq(mmk_map_flags(m) & MMK_RDWR, MMK_RDWR);
    mmk_map_close(m);
}

Test(map, protect_copy_and_anon_can_become_writable)
{
    const char *p = tu_pattern_file("f", 3 * PS, 1);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_COPY }), 0);
    cr_expect_eq(mmk_map_protect(m, MMK_RDONLY), 0);
    cr_expect_eq(mmk_map_write(m, 0, "x", 1), -EACCES);
    cr_expect_eq(mmk_map_protect(m, MMK_RDWR), 0);
    cr_expect_eq(mmk_map_write(m, 0, "x", 1), 0);
    mmk_map_close(m);
    char c;
    file_bytes(p, 0, &c, 1);
    cr_expect_eq((uint8_t)c, tu_pattern_byte(0, 1), "still private");

    cr_assert_eq(mmk_map_anon(&m, PS, 0), 0);
    cr_expect_eq(mmk_map_protect(m, MMK_RDONLY), 0);
    cr_expect_eq(mmk_map_write(m, 0, "x", 1), -EACCES);
    cr_expect_eq(mmk_map_protect(m, MMK_RDWR), 0);
    cr_expect_eq(mmk_map_write(m, 0, "x", 1), 0);
    mmk_map_close(m);

    /* An empty map changes its access too (it applies when it grows). */
    const char *q = tu_path("empty");
    tu_write_file(q, "", 0);
    cr_assert_eq(mmk_map_open(&m, q, &(mmk_map_opts){ .flags = MMK_RDWR }), 0);
    cr_expect_eq(mmk_map_protect(m, MMK_RDONLY), 0);
    cr_expect_eq(mmk_map_flags(m) & MMK_RDWR, 0);
    cr_expect_eq(mmk_map_resize(m, 10), -EINVAL, "not writable now: stays within the file");
    cr_expect_eq(tu_file_size(q), 0);
    cr_expect_eq(mmk_map_protect(m, MMK_RDWR), 0);
    cr_expect_eq(mmk_map_resize(m, 10), 0);
    cr_expect_eq(tu_file_size(q), 10);
    cr_expect_eq(mmk_map_write(m, 9, "x", 1), 0);
    cr_expect_eq(mmk_map_protect(m, MMK_RDONLY), 0);
    cr_expect_eq(mmk_map_write(m, 0, "x", 1), -EACCES);
    cr_expect_eq(mmk_map_resize(m, 5), 0, "shrinking is fine");
    mmk_map_close(m);
}

/* Sanitizers catch SIGSEGV themselves and exit instead of dying of it; the
 * default action is what a user gets.  Set before the first map, so mmkit's
 * guard handler (installed then) chains to it for faults that are not its own. */
static void default_segv(void)
{
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
}

Test(map, writing_a_read_only_map_is_sigsegv, .signal = SIGSEGV)
{
    default_segv();
    const char *p = tu_pattern_file("f", PS, 1);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, NULL), 0);
    tu_teardown(); /* the .fini hook does not run after a crash */
    *(volatile char *)mmk_map_ptr(m) = 1;
}

Test(map, writing_after_protect_rdonly_is_sigsegv, .signal = SIGSEGV)
{
    default_segv();
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, PS, 0), 0);
    cr_assert_eq(mmk_map_protect(m, MMK_RDONLY), 0);
    tu_teardown(); /* the .fini hook does not run after a crash */
    *(volatile char *)mmk_map_ptr(m) = 1;
}

/* ---- mmk_map_resize ----------------------------------------------------- */

Test(map, resize_rdwr_grows_the_file)
{
    const char *p = tu_pattern_file("f", 1000, 15);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR, .offset = 10 }), 0);
    cr_expect_eq(mmk_map_len(m), 990);
    size_t new_len = 3 * PS + 5;
    cr_assert_eq(mmk_map_resize(m, new_len), 0);
    cr_expect_eq(mmk_map_len(m), new_len);
    cr_expect_eq(mmk_map_offset(m), 10);
    cr_expect_eq(tu_file_size(p), (int64_t)(10 + new_len));
    unsigned char *v = mmk_map_ptr(m);
    cr_expect_eq(pattern_mismatch(v, 990, 10, 15), -1, "old content kept");
    cr_expect_eq(nonzero_at(v + 990, new_len - 990), -1, "new bytes are zero");
    memcpy(v + new_len - 4, "tail", 4);
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    char buf[4];
    file_bytes(p, 10 + new_len - 4, buf, 4);
    cr_expect_eq(memcmp(buf, "tail", 4), 0);

    /* Big enough that the pointer probably moves: still right. */
    cr_assert_eq(mmk_map_resize(m, 64 * MIB), 0);
    v = mmk_map_ptr(m);
    cr_expect_eq(pattern_mismatch(v, 990, 10, 15), -1);
    cr_expect_eq(memcmp(v + new_len - 4, "tail", 4), 0);
    cr_expect_eq(v[64 * MIB - 1], 0);
    cr_expect_eq(tu_file_size(p), (int64_t)(10 + 64 * MIB));
    mmk_map_close(m);
}

Test(map, resize_shrink_keeps_the_file)
{
    const char *p = tu_pattern_file("f", 5 * PS, 15);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR, .offset = 3 }), 0);
    cr_assert_eq(mmk_map_resize(m, 10), 0);
    cr_expect_eq(mmk_map_len(m), 10);
    cr_expect_eq(tu_file_size(p), (int64_t)(5 * PS), "shrinking never truncates");
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 10, 3, 15), -1);
    cr_expect_eq(mmk_map_read(m, 10, (char[1]){ 0 }, 1), -EINVAL, "the view is shorter");
    cr_expect_eq(mmk_map_resize(m, 0), 0);
    cr_expect_eq(mmk_map_len(m), 0);
    cr_expect_not_null(mmk_map_ptr(m));
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(resident(m, 0, 0), 0);
    cr_expect_eq(tu_file_size(p), (int64_t)(5 * PS));
    cr_assert_eq(mmk_map_resize(m, 2 * PS), 0, "and back up");
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 2 * PS, 3, 15), -1);
    cr_expect_eq(mmk_map_resize(NULL, 1), -EINVAL);
    mmk_map_close(m);
}

Test(map, resize_anon)
{
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, 3 * PS, 0), 0);
    tu_pattern(mmk_map_ptr(m), 3 * PS, 0, 16);
    cr_assert_eq(mmk_map_resize(m, 32 * MIB), 0);
    unsigned char *v = mmk_map_ptr(m);
    cr_expect_eq(pattern_mismatch(v, 3 * PS, 0, 16), -1, "content kept");
    cr_expect_eq(nonzero_at(v + 3 * PS, 32 * MIB - 3 * PS), -1);
    v[32 * MIB - 1] = 1;
    cr_assert_eq(mmk_map_resize(m, PS + 1), 0);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), PS + 1, 0, 16), -1);
    cr_assert_eq(mmk_map_resize(m, 0), 0);
    cr_expect_eq(mmk_map_len(m), 0);
    cr_assert_eq(mmk_map_resize(m, 2 * PS), 0);
    cr_expect_eq(nonzero_at(mmk_map_ptr(m), 2 * PS), -1);
    memset(mmk_map_ptr(m), 1, 2 * PS);
    mmk_map_close(m);
}

Test(map, resize_anon_shared_keeps_working)
{
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, PS, MMK_SHARED), 0);
    memcpy(mmk_map_ptr(m), "shared", 6);
    cr_assert_eq(mmk_map_resize(m, 4 * PS), 0);
    unsigned char *v = mmk_map_ptr(m);
    cr_expect_eq(memcmp(v, "shared", 6), 0);
    v[4 * PS - 1] = 9;  /* must not be a SIGBUS */
    cr_expect_eq(nonzero_at(v + 6, 4 * PS - 7), -1);
    child_writes(m);
    cr_expect_eq(memcmp(mmk_map_ptr(m), "from child", 10), 0, "still shared after resize");
    cr_assert_eq(mmk_map_resize(m, PS), 0);
    cr_assert_eq(mmk_map_resize(m, 2 * PS), 0);
    ((unsigned char *)mmk_map_ptr(m))[2 * PS - 1] = 9;
    mmk_map_close(m);
}

Test(map, resize_read_only_by_path)
{
    const char *p = tu_pattern_file("f", 10000, 17);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .offset = 5, .len = 100 }), 0);
    cr_assert_eq(mmk_map_resize(m, 5000), 0);
    cr_expect_eq(mmk_map_len(m), 5000);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 5000, 5, 17), -1);
    cr_expect_eq(mmk_map_resize(m, 9995), 0, "exactly to the end");
    cr_expect_eq(mmk_map_resize(m, 9996), -EINVAL);
    cr_expect_eq(mmk_map_len(m), 9995, "unchanged on error");
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 9995, 5, 17), -1);
    cr_expect_eq(tu_file_size(p), 10000);

    /* The file grew behind our back: the map may follow it. */
    int fd = open_or_die(p, O_WRONLY | O_APPEND);
    cr_assert_eq(write(fd, "more", 4), 4);
    close(fd);
    cr_assert_eq(mmk_map_resize(m, 9999), 0);
    cr_expect_eq(memcmp((char *)mmk_map_ptr(m) + 9995, "more", 4), 0);
    cr_expect_eq(mmk_map_close(m), 0);

    /* An empty map grows from nothing. */
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .offset = 10004 }), 0);
    cr_expect_eq(mmk_map_len(m), 0);
    cr_expect_eq(mmk_map_resize(m, 1), -EINVAL);
    mmk_map_close(m);
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .offset = 10, .len = 1 }), 0);
    cr_assert_eq(mmk_map_resize(m, 0), 0);
    cr_assert_eq(mmk_map_resize(m, 2 * PS), 0);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 2 * PS, 10, 17), -1);
    int before = tu_open_fds();
    cr_assert_eq(mmk_map_resize(m, 2 * PS + 1), 0);
    cr_expect_eq(tu_open_fds(), before, "the re-opened descriptor is closed again");
    mmk_map_close(m);
}

Test(map, resize_read_only_of_a_replaced_file_is_estale)
{
    const char *p = tu_pattern_file("f", 10000, 17);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .len = 100 }), 0);
    const char *q = tu_pattern_file("other", 20000, 18);
    cr_assert_eq(rename(q, p), 0);
    cr_expect_eq(mmk_map_resize(m, 200), -ESTALE);
    cr_expect_eq(mmk_map_len(m), 100);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 100, 0, 17), -1, "still the old file");
    cr_expect_eq(mmk_map_resize(m, 50), 0, "shrinking needs no check");
    mmk_map_close(m);

    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_COPY, .len = 100 }), 0);
    cr_assert_eq(unlink(p), 0);
    cr_expect_eq(mmk_map_resize(m, 200), -ESTALE);
    cr_expect_eq(mmk_map_len(m), 100);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 100, 0, 18), -1);
    mmk_map_close(m);
}

Test(map, resize_copy_grows_within_the_file_only)
{
    const char *p = tu_pattern_file("f", 4 * PS, 19);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_COPY, .len = PS }), 0);
    memcpy(mmk_map_ptr(m), "mine", 4);
    cr_assert_eq(mmk_map_resize(m, 4 * PS), 0);
    unsigned char *v = mmk_map_ptr(m);
    cr_expect_eq(memcmp(v, "mine", 4), 0, "private changes survive the move");
    cr_expect_eq(pattern_mismatch(v + 4, 4 * PS - 4, 4, 19), -1);
    cr_expect_eq(mmk_map_resize(m, 4 * PS + 1), -EINVAL);
    cr_expect_eq(tu_file_size(p), (int64_t)(4 * PS), "copy maps never grow the file");
    mmk_map_close(m);

    /* Same through a descriptor, even an O_RDWR one. */
    int fd = open_or_die(p, O_RDWR);
    cr_assert_eq(mmk_map_fd(&m, fd, &(mmk_map_opts){ .flags = MMK_COPY }), 0);
    cr_expect_eq(mmk_map_resize(m, 4 * PS + 1), -EINVAL);
    mmk_map_close(m);
    cr_assert_eq(mmk_map_fd(&m, fd, NULL), 0);
    cr_expect_eq(mmk_map_resize(m, 4 * PS + 1), -EINVAL, "a read-only map never grows it");
    mmk_map_close(m);
    close(fd);
    fd = open_or_die(p, O_RDONLY);
    cr_assert_eq(mmk_map_fd(&m, fd, &(mmk_map_opts){ .len = 10 }), 0);
    close(fd);
    cr_expect_eq(mmk_map_resize(m, 4 * PS), 0);
    cr_expect_eq(mmk_map_resize(m, 4 * PS + 1), -EINVAL);
    mmk_map_close(m);
    cr_expect_eq(tu_file_size(p), (int64_t)(4 * PS));
}

Test(map, resize_failure_leaves_the_map_unchanged)
{
    const char *p = tu_pattern_file("f", 1000, 20);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR }), 0);
    void *before = mmk_map_ptr(m);
    inject_install();
    inject_fail(INJ_MREMAP, 1, ENOMEM);
    cr_expect_eq(mmk_map_resize(m, 10 * PS), -ENOMEM);
    cr_expect_eq(mmk_map_len(m), 1000);
    cr_expect_eq(mmk_map_ptr(m), before);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 1000, 0, 20), -1);
    cr_expect_eq(tu_file_size(p), 1000, "the file size is restored");
    inject_fail(INJ_FTRUNCATE, 1, ENOSPC);
    cr_expect_eq(mmk_map_resize(m, 10 * PS), -ENOSPC);
    cr_expect_eq(mmk_map_len(m), 1000);
    cr_expect_eq(tu_file_size(p), 1000);
    inject_fail(INJ_FSTAT, 1, EIO);
    cr_expect_eq(mmk_map_resize(m, 10 * PS), -EIO);
    cr_expect_eq(mmk_map_len(m), 1000);
    inject_reset();
    cr_expect_eq(mmk_map_resize(m, SIZE_MAX), -ENOMEM);
    cr_expect_lt(mmk_map_resize(m, SIZE_MAX - PS), 0);
    cr_expect_eq(mmk_map_len(m), 1000);
    cr_expect_eq(tu_file_size(p), 1000);
    cr_assert_eq(mmk_map_resize(m, 10 * PS), 0, "works once the failure is gone");
    mmk_map_close(m);

    mmk_map *a;
    cr_assert_eq(mmk_map_anon(&a, PS, 0), 0);
    memcpy(mmk_map_ptr(a), "keep", 4);
    inject_install();
    inject_fail(INJ_MREMAP, 1, ENOMEM);
    cr_expect_eq(mmk_map_resize(a, 10 * PS), -ENOMEM);
    inject_reset();
    cr_expect_eq(mmk_map_len(a), PS);
    cr_expect_eq(memcmp(mmk_map_ptr(a), "keep", 4), 0);
    mmk_map_close(a);

    /* A read-only map whose path cannot be opened again. */
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .len = 10 }), 0);
    inject_install();
    inject_fail(INJ_OPEN, 1, EMFILE);
    cr_expect_eq(mmk_map_resize(m, 20), -EMFILE);
    inject_reset();
    cr_expect_eq(mmk_map_len(m), 10);
    mmk_map_close(m);
}

Test(map, resize_applies_populate_and_lock_to_the_new_part)
{
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, 4 * PS, MMK_POPULATE), 0);
    cr_assert_eq(mmk_map_resize(m, 64 * PS), 0);
    cr_expect_eq(resident(m, 0, 0), 64 * PS, "the new part is populated");
    mmk_map_close(m);

    long before = locked_kib_if_real();
    cr_assert_eq(mmk_map_anon(&m, 4 * PS, MMK_LOCKED), 0);
    cr_assert_eq(mmk_map_resize(m, 64 * PS), 0);
    if (before >= 0)
        cr_expect_eq(resident(m, 0, 0), 64 * PS);
    if (before >= 0)
        cr_expect_geq(tu_locked_kib() - before, (long)(64 * PS / 1024), "new part locked");
    mmk_map_close(m);

    /* A populate failure on the new part undoes the resize. */
    const char *p = tu_pattern_file("f", 1000, 21);
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_POPULATE }),
                 0);
    inject_install();
    inject_fail(INJ_MADVISE, 1, EFAULT);
    cr_expect_eq(mmk_map_resize(m, 64 * PS), -EIO);
    inject_reset();
    cr_expect_eq(mmk_map_len(m), 1000);
    cr_expect_eq(tu_file_size(p), 1000);
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), 1000, 0, 21), -1);
    cr_assert_eq(mmk_map_resize(m, 64 * PS), 0);
    cr_expect_eq(resident(m, 0, 0), 64 * PS);
    mmk_map_close(m);
}

/* ---- mmk_map_resident --------------------------------------------------- */

/* Touching one page must fault in one page, not a transparent huge page
 * (where THP is "always"), for exact residency counts. */
static void no_thp(mmk_map *m)
{
    int rc = mmk_map_advise(m, 0, 0, MMK_ADV_NOHUGEPAGE);
    cr_assert(rc == 0 || rc == -EOPNOTSUPP, "NOHUGEPAGE: %d", rc);
}

Test(map, resident_counts_bytes_of_the_range)
{
    size_t len = 16 * PS;
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, len, 0), 0);
    size_t bytes = 1;
    cr_expect_eq(mmk_map_resident(m, 0, 0, NULL), -EINVAL);
    cr_expect_eq(mmk_map_resident(NULL, 0, 0, &bytes), -EINVAL);
    cr_expect_eq(mmk_map_resident(m, len + 1, 0, &bytes), -EINVAL);
    cr_expect_eq(mmk_map_resident(m, 0, len + 1, &bytes), -EINVAL);
    cr_expect_eq(mmk_map_resident(m, SIZE_MAX, SIZE_MAX, &bytes), -EINVAL);
    cr_expect_eq(resident(m, len, 0), 0, "an empty range");
    cr_expect_eq(resident(m, 0, 0), 0);
    no_thp(m);

    unsigned char *v = mmk_map_ptr(m);
    for (size_t i = 0; i < len; i += 2 * PS)
        v[i] = 1; /* every other page */
    cr_expect_eq(resident(m, 0, 0), len / 2);
    cr_expect_eq(resident(m, 0, PS), PS);
    cr_expect_eq(resident(m, PS, PS), 0);
    cr_expect_eq(resident(m, 10, 20), 20, "clipped to the range");
    cr_expect_eq(resident(m, PS - 10, 20), 10);
    cr_expect_eq(resident(m, PS - 10, PS + 20), 10 + 10, "pages 0 and 2 of three");
    memset(v, 2, len);
    cr_expect_eq(resident(m, 0, 0), len);
    cr_expect_eq(resident(m, 3, len - 7), len - 7);
    cr_expect_eq(resident(m, len - 1, 0), 1);

    inject_install();
    inject_fail(INJ_MINCORE, 1, ENOMEM);
    bytes = 1;
    cr_expect_eq(mmk_map_resident(m, 0, 0, &bytes), -ENOMEM);
    inject_reset();
    mmk_map_close(m);
}

Test(map, resident_of_an_unaligned_file_view)
{
    const char *p = tu_pattern_file("f", 10 * PS, 22);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .offset = 100, .len = 5000 }), 0);
    volatile unsigned char sum = 0;
    for (size_t i = 0; i < 5000; i++)
        sum += ((unsigned char *)mmk_map_ptr(m))[i];
    (void)sum;
    cr_expect_eq(resident(m, 0, 0), 5000, "whole pages, clipped to the view");
    cr_expect_eq(resident(m, 4000, 0), 1000);
    cr_expect_eq(resident(m, 1, 1), 1);
    mmk_map_close(m);
}

Test(map, resident_of_a_large_map)
{
    /* More pages than one mincore chunk, and a length that is not whole pages. */
    size_t len = 17 * MIB + 3;
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, len, 0), 0);
    no_thp(m);
    unsigned char *v = mmk_map_ptr(m);
    size_t pages = 0;
    for (size_t i = 0; i < len; i += 2 * PS) {
        v[i] = 1;
        pages++;
    }
    size_t last_page = (len - 1) / PS;
    size_t want = pages * PS;
    if (last_page % 2 == 0)
        want -= PS - (len - last_page * PS); /* the last touched page is partial */
    cr_expect_eq(resident(m, 0, 0), want);
    memset(v, 1, len);
    cr_expect_eq(resident(m, 0, 0), len);
    cr_expect_eq(resident(m, 1, len - 2), len - 2);
    mmk_map_close(m);
}

/* ---- mmk_map_read / mmk_map_write, NULLs -------------------------------- */

Test(map, read_write_bounds)
{
    size_t len = 2 * PS + 1;
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, len, 0), 0);
    char buf[16] = { 0 };
    cr_expect_eq(mmk_map_read(m, len, buf, 0), 0);
    cr_expect_eq(mmk_map_write(m, len, buf, 0), 0);
    cr_expect_eq(mmk_map_read(m, len, NULL, 0), 0, "NULL buf is fine with n 0");
    cr_expect_eq(mmk_map_write(m, 0, NULL, 0), 0);
    cr_expect_eq(mmk_map_read(m, len - 1, buf, 1), 0);
    cr_expect_eq(mmk_map_read(m, len - 1, buf, 2), -EINVAL);
    cr_expect_eq(mmk_map_write(m, len - 1, buf, 2), -EINVAL);
    cr_expect_eq(mmk_map_read(m, len + 1, buf, 0), -EINVAL);
    cr_expect_eq(mmk_map_write(m, len + 1, buf, 0), -EINVAL);
    cr_expect_eq(mmk_map_read(m, SIZE_MAX, buf, 1), -EINVAL);
    cr_expect_eq(mmk_map_write(m, SIZE_MAX, buf, 1), -EINVAL);
    cr_expect_eq(mmk_map_read(m, 1, buf, SIZE_MAX), -EINVAL);
    cr_expect_eq(mmk_map_write(m, 1, buf, SIZE_MAX), -EINVAL);
    cr_expect_eq(mmk_map_read(m, SIZE_MAX, buf, SIZE_MAX), -EINVAL);
    cr_expect_eq(mmk_map_read(m, 0, NULL, 1), -EINVAL);
    cr_expect_eq(mmk_map_write(m, 0, NULL, 1), -EINVAL);
    cr_expect_eq(mmk_map_read(NULL, 0, buf, 1), -EINVAL);
    cr_expect_eq(mmk_map_write(NULL, 0, buf, 1), -EINVAL);
    cr_expect_eq(mmk_map_read(NULL, 0, buf, 0), -EINVAL);
    cr_expect_eq(nonzero_at(mmk_map_ptr(m), len), -1, "failed writes wrote nothing");
    cr_expect_eq(mmk_map_write(m, PS - 2, "abcd", 4), 0);
    cr_expect_eq(mmk_map_read(m, PS - 2, buf, 4), 0);
    cr_expect_eq(memcmp(buf, "abcd", 4), 0);
    mmk_map_close(m);
}

Test(map, null_handles)
{
    cr_expect_eq(mmk_map_close(NULL), -EINVAL);
    cr_expect_null(mmk_map_ptr(NULL));
    cr_expect_eq(mmk_map_len(NULL), 0);
    cr_expect_eq(mmk_map_offset(NULL), 0);
    cr_expect_eq(mmk_map_flags(NULL), 0);
}

Test(map, close_reports_errors_and_frees_anyway)
{
    const char *p = tu_pattern_file("f", 1000, 1);
    mmk_map *m;
    int before = tu_open_fds();
    int probe = dup(0); /* the lowest free number: the one the map will get */
    close(probe);
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR }), 0);
    inject_install();
    inject_fail(INJ_CLOSE, 1, EIO);
    cr_expect_eq(mmk_map_close(m), -EIO);
    cr_expect_eq(inject_count(INJ_CLOSE), 1, "not retried (EINTR/EIO on close is final)");
    inject_reset();
    /* The injected failure skipped the real close; do it for the map. */
    cr_expect_eq(close(probe), 0);
    cr_expect_eq(tu_open_fds(), before);

    cr_assert_eq(mmk_map_anon(&m, PS, 0), 0);
    void *ptr = mmk_map_ptr(m);
    inject_install();
    inject_fail(INJ_MUNMAP, 1, EINVAL);
    cr_expect_eq(mmk_map_close(m), -EINVAL);
    inject_reset();
    munmap(ptr, PS); /* the mapping the failed munmap left */
}

/* ---- failure injection sweep -------------------------------------------- */

enum sweep_kind { SW_OPEN, SW_FD, SW_ANON };

struct sweep {
    const char     *name;
    enum sweep_kind kind;
    mmk_map_opts    opts;
    bool            creates;     /* the path does not exist beforehand */
    size_t          file_size;   /* existing file (or anon length) */
    int             fd_flags;    /* SW_FD: how the caller opens the file */
};

static const struct { enum inject_call call; int err; } sweep_calls[] = {
    { INJ_OPEN, EACCES },     { INJ_FSTAT, EIO },  { INJ_FTRUNCATE, ENOSPC },
    { INJ_MMAP, ENOMEM },     { INJ_MADVISE, ENOMEM }, { INJ_MLOCK, EAGAIN },
    { INJ_DUP, EMFILE },      { INJ_GETFL, EBADF }, { INJ_FALLOCATE, ENOSPC },
    { INJ_POSIX_FALLOCATE, ENOSPC },
};
#define N_SWEEP_CALLS (sizeof sweep_calls / sizeof sweep_calls[0])

static void sweep_prepare(const struct sweep *s, const char *path)
{
    unlink(path);
    if (!s->creates && s->kind != SW_ANON)
        tu_pattern_file("sweep", s->file_size, 23);
}

static int sweep_run(const struct sweep *s, const char *path, mmk_map **out)
{
    if (s->kind == SW_ANON)
        return mmk_map_anon(out, s->file_size, s->opts.flags);
    if (s->kind == SW_OPEN)
        return mmk_map_open(out, path, &s->opts);
    int fd = open(path, s->fd_flags | O_CLOEXEC); /* not through the table */
    cr_assert_geq(fd, 0);
    int rc = mmk_map_fd(out, fd, &s->opts);
    close(fd);
    return rc;
}

static void sweep_check_map(const struct sweep *s, mmk_map *m)
{
    cr_assert_not_null(m);
    size_t len = mmk_map_len(m);
    if (s->kind == SW_ANON) {
        cr_expect_eq(len, s->file_size);
        cr_expect_eq(nonzero_at(mmk_map_ptr(m), len), -1);
        return;
    }
    uint64_t off = s->opts.offset;
    size_t old = s->creates || (s->opts.flags & MMK_TRUNC) ? 0 : s->file_size;
    size_t from_file = off < old ? old - (size_t)off : 0;
    if (from_file > len)
        from_file = len;
    cr_expect_eq(pattern_mismatch(mmk_map_ptr(m), from_file, off, 23), -1, "%s", s->name);
    cr_expect_eq(nonzero_at((char *)mmk_map_ptr(m) + from_file, len - from_file), -1);
}

static void sweep(const struct sweep *s)
{
    const char *path = tu_path("sweep");
    bool huge = s->opts.flags & MMK_HUGE;
    unsigned long calls[N_SWEEP_CALLS];
    mmk_map *m;

    /* A clean run, counting; it also warms up whatever the first run maps. */
    sweep_prepare(s, path);
    inject_install();
    cr_assert_eq(sweep_run(s, path, &m), 0, "%s: clean run", s->name);
    for (size_t c = 0; c < N_SWEEP_CALLS; c++)
        calls[c] = inject_count(sweep_calls[c].call);
    sweep_check_map(s, m);
    mmk_map_close(m);
    inject_reset();

    int failures = 0;
    for (size_t c = 0; c < N_SWEEP_CALLS; c++) {
        enum inject_call call = sweep_calls[c].call;
        int err = sweep_calls[c].err;
        for (unsigned long n = 1; n <= calls[c]; n++) {
            sweep_prepare(s, path);
            int fds = tu_open_fds();
            int maps = tu_mapping_count();
            inject_install();
            inject_fail(call, n, err);
            m = (mmk_map *)1;
            int rc = sweep_run(s, path, &m);
            bool fired = inject_count(call) >= n;
            inject_reset();
            if (rc == 0) {
                /* Only best-effort steps may fail without failing the call. */
                bool best_effort = huge && (call == INJ_MMAP || call == INJ_MADVISE);
                cr_expect(!fired || best_effort, "%s: %s #%lu failed, yet success",
                          s->name, inject_name(call), n);
                sweep_check_map(s, m);
                mmk_map_close(m);
                continue;
            }
            failures++;
            cr_expect(fired, "%s: failed (%d) with no failure injected", s->name, rc);
            cr_expect_eq(rc, -err, "%s: %s #%lu: got %d want %d", s->name,
                         inject_name(call), n, rc, -err);
            cr_expect_null(m, "%s: %s #%lu: *out", s->name, inject_name(call), n);
            cr_expect_eq(tu_open_fds(), fds, "%s: %s #%lu: fd leak", s->name,
                         inject_name(call), n);
            cr_expect_eq(tu_mapping_count(), maps, "%s: %s #%lu: mapping leak", s->name,
                         inject_name(call), n);
            if (s->creates)
                cr_expect_eq(tu_file_size(path), -1, "%s: %s #%lu: created file left",
                             s->name, inject_name(call), n);
            else if (s->kind != SW_ANON) {
                /* Grown files shrink back; a truncation cannot be undone. */
                int64_t size = tu_file_size(path);
                cr_expect(size == (int64_t)s->file_size ||
                          (size == 0 && (s->opts.flags & MMK_TRUNC)),
                          "%s: %s #%lu: file size %ld not restored", s->name,
                          inject_name(call), n, (long)size);
            }
        }
    }
    cr_expect_gt(failures, 0, "%s: the sweep injected nothing", s->name);
    unlink(path);
}

Test(map, sweep_open_rdwr_create)
{
    sweep(&(struct sweep){ "rdwr|create", SW_OPEN,
                           { .flags = MMK_RDWR | MMK_CREATE, .size = 3 * PS + 5 }, .creates = true });
    sweep(&(struct sweep){ "rdwr|create|excl|reserve", SW_OPEN,
                           { .flags = MMK_RDWR | MMK_CREATE | MMK_EXCL | MMK_RESERVE,
                             .size = 64 * 1024, .offset = 100, .len = 5000 }, .creates = true });
}

Test(map, sweep_open_existing)
{
    sweep(&(struct sweep){ "rdonly|populate", SW_OPEN,
                           { .flags = MMK_POPULATE, .offset = 7 }, .file_size = 5 * PS });
    sweep(&(struct sweep){ "copy|populate|locked", SW_OPEN,
                           { .flags = MMK_COPY | MMK_POPULATE | MMK_LOCKED, .len = 3 * PS },
                           .file_size = 5 * PS });
    sweep(&(struct sweep){ "rdwr|populate|locked|size", SW_OPEN,
                           { .flags = MMK_RDWR | MMK_POPULATE | MMK_LOCKED, .size = 9 * PS },
                           .file_size = 5 * PS });
    sweep(&(struct sweep){ "rdwr|trunc|reserve", SW_OPEN,
                           { .flags = MMK_RDWR | MMK_TRUNC | MMK_RESERVE, .size = 2 * PS },
                           .file_size = 5 * PS });
}

Test(map, sweep_open_huge)
{
    sweep(&(struct sweep){ "rdonly|huge", SW_OPEN, { .flags = MMK_HUGE, .offset = 3 },
                           .file_size = 3 * MIB });
    sweep(&(struct sweep){ "rdwr|create|huge|populate|locked|reserve", SW_OPEN,
                           { .flags = MMK_RDWR | MMK_CREATE | MMK_HUGE | MMK_POPULATE |
                                      MMK_LOCKED | MMK_RESERVE,
                             .size = 3 * MIB }, .creates = true });
}

Test(map, sweep_fd)
{
    sweep(&(struct sweep){ "fd rdonly", SW_FD, { .offset = 1 }, .fd_flags = O_RDONLY,
                           .file_size = 3 * PS });
    sweep(&(struct sweep){ "fd rdwr|trunc|reserve|size", SW_FD,
                           { .flags = MMK_RDWR | MMK_TRUNC | MMK_RESERVE, .size = 4 * PS },
                           .fd_flags = O_RDWR, .file_size = 3 * PS });
    sweep(&(struct sweep){ "fd copy|populate|locked|huge", SW_FD,
                           { .flags = MMK_COPY | MMK_POPULATE | MMK_LOCKED | MMK_HUGE },
                           .fd_flags = O_RDONLY, .file_size = 3 * MIB });
}

Test(map, sweep_anon)
{
    sweep(&(struct sweep){ "anon populate|locked", SW_ANON,
                           { .flags = MMK_POPULATE | MMK_LOCKED }, .file_size = 5 * PS });
    sweep(&(struct sweep){ "anon shared|huge|populate|locked", SW_ANON,
                           { .flags = MMK_SHARED | MMK_HUGE | MMK_POPULATE | MMK_LOCKED },
                           .file_size = 3 * MIB });
}

/* ---- threads ------------------------------------------------------------ */

#define N_THREADS   4
#define THREAD_SPAN (64 * 1024)
#define ROUNDS      40

struct worker {
    mmk_map *m;
    int      id;
    int      errors;
    pthread_t tid;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    size_t base = (size_t)w->id * THREAD_SPAN + 1; /* ranges straddle pages */
    unsigned char *buf = malloc(THREAD_SPAN), *back = malloc(THREAD_SPAN);
    if (!buf || !back) {
        w->errors++;
        goto out;
    }
    for (int r = 0; r < ROUNDS; r++) {
        uint32_t seed = (uint32_t)(w->id * 1000 + r);
        tu_pattern(buf, THREAD_SPAN, base, seed);
        if (mmk_map_write(w->m, base, buf, THREAD_SPAN) != 0)
            w->errors++;
        if (mmk_map_read(w->m, base, back, THREAD_SPAN) != 0 ||
            memcmp(buf, back, THREAD_SPAN) != 0)
            w->errors++;
        size_t bytes;
        if (mmk_map_resident(w->m, base, THREAD_SPAN, &bytes) != 0 || bytes != THREAD_SPAN)
            w->errors++;
        if (mmk_map_advise(w->m, base, THREAD_SPAN, MMK_ADV_WILLNEED) != 0)
            w->errors++;
        if (mmk_map_sync_async(w->m, base, THREAD_SPAN) != 0)
            w->errors++;
        if (r % 10 == 9 && mmk_map_sync(w->m, base, THREAD_SPAN) != 0)
            w->errors++;
    }
out:
    free(buf);
    free(back);
    return NULL;
}

Test(map, threads_on_disjoint_ranges)
{
    const char *p = tu_path("f");
    size_t size = N_THREADS * THREAD_SPAN + 2;
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_CREATE,
                                                      .size = size }), 0);
    struct worker w[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (struct worker){ .m = m, .id = i };
        cr_assert_eq(pthread_create(&w[i].tid, NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(w[i].tid, NULL);
        cr_expect_eq(w[i].errors, 0, "thread %d", i);
    }
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    cr_expect_eq(mmk_map_close(m), 0);
    size_t n;
    unsigned char *all = tu_read_file(p, &n);
    cr_assert_eq(n, size);
    for (int i = 0; i < N_THREADS; i++) {
        size_t base = (size_t)i * THREAD_SPAN + 1;
        cr_expect_eq(pattern_mismatch(all + base, THREAD_SPAN, base,
                                      (uint32_t)(i * 1000 + ROUNDS - 1)), -1, "thread %d", i);
    }
    free(all);
}

/* ---- big sparse file ---------------------------------------------------- */

Test(map, sparse_3gib_file)
{
    const char *p = tu_path("sparse");
    uint64_t size = (uint64_t)3 << 30;
    int fd = open_or_die(p, O_RDWR | O_CREAT | O_EXCL);
    if (ftruncate(fd, (off_t)size) != 0) {
        close(fd);
        skip_test("scratch filesystem refuses a 3 GiB sparse file: %s", strerror(errno));
    }
    cr_assert_eq(pwrite(fd, "END", 3, (off_t)(size - 3)), 3);
    close(fd);
    mmk_map *m;
    int rc = mmk_map_open(&m, p, NULL);
    if (rc == -ENOMEM && UNDER_SANITIZER)
        skip_test("no room for 3 GiB of address space under the sanitizer");
    cr_assert_eq(rc, 0, "%s", mmk_strerror(rc));
    cr_expect_eq((uint64_t)mmk_map_len(m), size);
    unsigned char buf[4096];
    cr_expect_eq(mmk_map_read(m, (size_t)size - sizeof buf, buf, sizeof buf), 0);
    cr_expect_eq(nonzero_at(buf, sizeof buf - 3), -1);
    cr_expect_eq(memcmp(buf + sizeof buf - 3, "END", 3), 0);
    cr_expect_eq(((unsigned char *)mmk_map_ptr(m))[(size_t)2 << 30], 0);
    cr_expect_eq(mmk_map_close(m), 0);

    cr_assert_eq(mmk_map_open(&m, p, &(mmk_map_opts){ .offset = size - 10 }), 0);
    cr_expect_eq(mmk_map_len(m), 10);
    cr_expect_eq(memcmp((char *)mmk_map_ptr(m) + 7, "END", 3), 0);
    mmk_map_close(m);
}
