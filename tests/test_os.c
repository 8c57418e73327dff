/* tests/test_os.c — the system-call table (src/os/os.h), its geometry helpers,
 * and the fault-injection harness built on it (tests/support/inject.h). */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mmkit.h>

#include "inject.h"
#include "os/os.h"
#include "testutil.h"

static void os_fini(void)
{
    tu_teardown();
    /* Criterion ignores assertions here, but not a crash: the run fails. */
    if (tu_leaks()) {
        fprintf(stderr, "memory leaked: see the LeakSanitizer report above\n");
        abort();
    }
}

TestSuite(os, .init = tu_setup, .fini = os_fini, .timeout = 60);

/* A descriptor number far above anything this process has open. */
#define UNUSED_FD 987654

static bool table_is_default(void)
{
    return memcmp(&mmk__sys, &mmk__sys_default, sizeof mmk__sys) == 0;
}

Test(os, table_starts_as_default)
{
    cr_expect(table_is_default());
    cr_expect(mmk__sys_default.fstat == fstat, "libc's own where signatures match");
    cr_expect(mmk__sys_default.mmap == mmap);
    cr_expect(mmk__sys_default.msync == msync);
}

Test(os, library_calls_go_through_the_table)
{
    const char *p = tu_pattern_file("f", 10000, 1);
    inject_install();
    cr_expect_not(table_is_default());
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, p, NULL), 0);
    cr_expect_eq(inject_count(INJ_OPEN), 1);
    cr_expect_eq(inject_count(INJ_FSTAT), 1);
    cr_expect_eq(inject_count(INJ_MMAP), 1);
    cr_expect_eq(inject_count(INJ_CLOSE), 1, "read-only map closes its descriptor");
    cr_expect_eq(inject_count(INJ_MUNMAP), 0);
    cr_expect_eq(mmk_map_close(m), 0);
    cr_expect_eq(inject_count(INJ_MUNMAP), 1);
    cr_expect_eq(inject_count(INJ_CLOSE), 1, "no descriptor left to close");
}

static int failing_open(const char *path, int flags, mode_t mode)
{
    (void)path; (void)flags; (void)mode;
    errno = EROFS;
    return -1;
}

Test(os, reset_restores_the_real_calls)
{
    const char *p = tu_pattern_file("f", 100, 1);
    mmk_map *m;
    mmk__sys.open = failing_open;
    cr_expect_eq(mmk_map_open(&m, p, NULL), -EROFS, "a replaced entry is what runs");
    cr_expect_null(m);
    mmk__os_reset();
    cr_expect(table_is_default());
    cr_assert_eq(mmk_map_open(&m, p, NULL), 0);
    cr_expect_eq(mmk_map_close(m), 0);

    inject_install();
    inject_fail_always(INJ_MMAP, ENOMEM);
    cr_expect_eq(mmk_map_open(&m, p, NULL), -ENOMEM);
    inject_reset();
    cr_expect(table_is_default());
    cr_expect_eq(inject_count(INJ_MMAP), 0, "reset clears the counters");
    cr_assert_eq(mmk_map_open(&m, p, NULL), 0);
    cr_expect_eq(inject_count(INJ_MMAP), 0, "nothing counts after reset");
    mmk_map_close(m);
}

Test(os, geometry)
{
    size_t ps = mmk__page_size();
    cr_expect_eq(ps, (size_t)sysconf(_SC_PAGESIZE));
    cr_expect_eq(mmk_page_size(), ps);
    cr_expect_eq(mmk__granularity(), mmk_map_granularity());
    cr_expect_eq(mmk__granularity() % ps, 0);
    cr_expect_eq(mmk__page_size(), ps, "stable across calls");

    size_t huge = mmk__huge_page_size();
    cr_expect_geq(huge, ps);
    cr_expect_eq(huge & (huge - 1), 0, "huge page size is a power of two");
    cr_expect_eq(huge % ps, 0);
    /* Compare with what the kernel says, where it says anything. */
    FILE *f = fopen("/proc/meminfo", "re");
    if (f) {
        char line[128];
        unsigned long kib = 0;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "Hugepagesize: %lu kB", &kib) == 1)
                break;
        fclose(f);
        if (kib)
            cr_expect_eq(huge, (size_t)kib * 1024);
    }
}

Test(os, neg_errno)
{
    errno = ENOENT;
    cr_expect_eq(mmk__neg_errno(), -ENOENT);
    errno = 0;
    cr_expect_eq(mmk__neg_errno(), -EIO, "never 0, even if errno is");
}

Test(os, close_quiet_keeps_errno)
{
    int fd = open(tu_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    errno = ERANGE;
    cr_expect_eq(mmk__close_quiet(fd), 0);
    cr_expect_eq(errno, ERANGE);
    cr_expect_eq(fcntl(fd, F_GETFD), -1, "the descriptor is closed");

    errno = ERANGE;
    cr_expect_eq(mmk__close_quiet(-1), 0, "-1 is nothing to close");
    cr_expect_eq(errno, ERANGE);

    errno = ERANGE;
    cr_expect_eq(mmk__close_quiet(UNUSED_FD), -EBADF);
    cr_expect_eq(errno, ERANGE);

    fd = open(tu_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    inject_install();
    inject_fail(INJ_CLOSE, 1, EIO);
    errno = EAGAIN;
    cr_expect_eq(mmk__close_quiet(fd), -EIO, "goes through the table");
    cr_expect_eq(errno, EAGAIN);
    inject_reset();
    close(fd);
}

Test(os, inject_fails_exactly_the_nth_call_once)
{
    const char *p = tu_pattern_file("f", 10, 1);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    struct stat st;
    inject_install();
    cr_expect_eq(mmk__sys.fstat(fd, &st), 0);
    inject_fail(INJ_FSTAT, 3, EIO); /* counts from now: calls 2 and 3 of the run */
    int want[] = { 0, 0, -1, 0, 0, 0 };
    for (int i = 0; i < 6; i++) {
        errno = 0;
        int rc = mmk__sys.fstat(fd, &st);
        cr_expect_eq(rc, want[i], "call %d from arming", i + 1);
        if (rc < 0)
            cr_expect_eq(errno, EIO);
        else
            cr_expect_eq(st.st_size, 10, "a passed-through call is the real one");
    }
    cr_expect_eq(inject_count(INJ_FSTAT), 7);
    cr_expect_eq(inject_count(INJ_OPEN), 0, "counters are per call");

    inject_fail(INJ_FSTAT, 1, EIO);
    inject_fail(INJ_FSTAT, 0, 0);
    cr_expect_eq(mmk__sys.fstat(fd, &st), 0, "0 disarms");

    inject_fail_always(INJ_FSTAT, EPERM);
    for (int i = 0; i < 3; i++) {
        errno = 0;
        cr_expect_eq(mmk__sys.fstat(fd, &st), -1);
        cr_expect_eq(errno, EPERM);
    }
    inject_reset();
    cr_expect_eq(mmk__sys.fstat(fd, &st), 0, "reset ends fail_always");
    close(fd);
}

Test(os, inject_counts_durable_msync_apart)
{
    size_t ps = mmk__page_size();
    void *p = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(p, MAP_FAILED);
    inject_install();
    cr_expect_eq(mmk__sys.msync(p, ps, MS_ASYNC), 0);
    cr_expect_eq(mmk__sys.msync(p, ps, MS_SYNC), 0);
    cr_expect_eq(mmk__sys.msync(p, ps, MS_ASYNC), 0);
    cr_expect_eq(inject_count(INJ_MSYNC), 3);
    cr_expect_eq(inject_count_msync_sync(), 1);
    inject_fail(INJ_MSYNC, 1, EIO);
    cr_expect_eq(mmk__sys.msync(p, ps, MS_SYNC), -1);
    cr_expect_eq(errno, EIO);
    cr_expect_eq(inject_count_msync_sync(), 1, "a failed msync did not sync");
    inject_reset();
    cr_expect_eq(inject_count_msync_sync(), 0);
    munmap(p, ps);
}

Test(os, inject_names)
{
    cr_expect_str_eq(inject_name(INJ_OPEN), "open");
    cr_expect_str_eq(inject_name(INJ_MMAP), "mmap");
    cr_expect_str_eq(inject_name(INJ_PWRITE), "pwrite");
    cr_expect_str_eq(inject_name(INJ_COUNT), "?");
}

/* The adapters in posix.c do what their comments promise. */
Test(os, adapters)
{
    const char *p = tu_path("new");
    int fd = mmk__sys.open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_expect_eq(st.st_mode & 0777 & ~0600u, 0, "mode passed through");

    cr_expect_eq(mmk__sys.getfl(fd) & O_ACCMODE, O_RDWR);
    int d = mmk__sys.dup(fd);
    cr_assert_geq(d, 0);
    cr_expect_neq(d, fd);
    cr_expect(fcntl(d, F_GETFD) & FD_CLOEXEC, "dup is close-on-exec");

    int dirfd = open(tu_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(dirfd, 0);
    int fd2 = mmk__sys.openat(dirfd, "new", O_RDONLY | O_CLOEXEC, 0);
    cr_assert_geq(fd2, 0);
    cr_expect_eq(mmk__sys.getfl(fd2) & O_ACCMODE, O_RDONLY);

    cr_expect_eq(mmk__sys.ftruncate(fd, 3 * 4096), 0);
    cr_expect_eq(tu_file_size(p), 3 * 4096);
    int rc = mmk__sys.fallocate(fd, 0, 0, 4096);
    cr_expect(rc == 0 || (rc == -1 && errno == EOPNOTSUPP));
    cr_expect_eq(mmk__sys.posix_fallocate(fd, 0, 8192), 0);
    cr_expect_eq(mmk__sys.sync_file_range(fd, 0, 4096, 2 /* WRITE */), 0);
    cr_expect_eq(mmk__sys.fdatasync(fd), 0);
    cr_expect_eq(mmk__sys.fsync(fd), 0);

    size_t ps = mmk__page_size();
    unsigned char *m = mmk__sys.mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(m, MAP_FAILED);
    unsigned char vec[4];
    cr_expect_eq(mmk__sys.mincore(m, ps, vec), 0);
    void *m2 = mmk__sys.mremap(m, ps, 2 * ps, MREMAP_MAYMOVE, NULL);
    cr_assert_neq(m2, MAP_FAILED);
    cr_expect_eq(mmk__sys.munmap(m2, 2 * ps), 0);

    /* posix_fallocate reports its error as a return value, not errno. */
    inject_install();
    inject_fail(INJ_POSIX_FALLOCATE, 1, ENOSPC);
    cr_expect_eq(mmk__sys.posix_fallocate(fd, 0, 4096), ENOSPC);
    inject_reset();

    cr_expect_eq(mmk__sys.close(fd2), 0);
    cr_expect_eq(mmk__sys.close(d), 0);
    cr_expect_eq(mmk__sys.close(fd), 0);
    close(dirfd);
    cr_expect_eq(mmk__sys.unlink(p), 0);
    cr_expect_eq(tu_file_size(p), -1);
}
