/* tests/test_guard.c — SIGBUS/SIGSEGV in mappings become error codes
 * (mmkit/guard.h), and faults that are not ours still reach their owner. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mmkit.h>

#include "inject.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define UNDER_ASAN 1
/* A raw mapping may reuse addresses ASan remembers as freed heap. */
#define FRESH(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define UNDER_ASAN 0
#define FRESH(p, n) ((void)0)
#endif

#define FILE_SIZE (256 * 1024)
#define PAGE ((size_t)mmk_page_size())

TestSuite(guard, .init = tu_setup, .fini = tu_teardown, .timeout = 120);

/* Map a pattern file read-only and open a second descriptor to shrink it. */
static mmk_map *map_pattern(const char **path_out, int *fd_out)
{
    const char *path = tu_pattern_file("f", FILE_SIZE, 7);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, path, NULL), 0);
    *fd_out = open(path, O_RDWR | O_CLOEXEC);
    cr_assert_geq(*fd_out, 0);
    if (path_out)
        *path_out = path;
    return m;
}

static void expect_prefix_intact(mmk_map *m, size_t keep)
{
    unsigned char buf[512], want[512];
    size_t n = keep < sizeof buf ? keep : sizeof buf;
    if (n == 0)
        return;
    cr_assert_eq(mmk_map_read(m, keep - n, buf, n), 0, "the part that still exists reads");
    tu_pattern(want, n, keep - n, 7);
    cr_assert_arr_eq(buf, want, n);
}

static void truncate_and_read(size_t new_size)
{
    int fd;
    mmk_map *m = map_pattern(NULL, &fd);
    cr_assert_eq(ftruncate(fd, (off_t)new_size), 0);
    unsigned char buf[4096];
    /* A read wholly in the lost part, and one straddling the new end. */
    size_t lost = (new_size + PAGE - 1) / PAGE * PAGE + PAGE;
    cr_expect_eq(mmk_map_read(m, lost, buf, sizeof buf), -EIO);
    cr_expect_eq(mmk_map_read(m, FILE_SIZE - sizeof buf, buf, sizeof buf), -EIO);
    expect_prefix_intact(m, new_size);
    cr_expect_eq(mmk_guard_active(), 1);
    cr_expect_eq(mmk_map_close(m), 0);
    close(fd);
}

Test(guard, read_after_truncate_to_zero) { truncate_and_read(0); }
Test(guard, read_after_truncate_to_half) { truncate_and_read(FILE_SIZE / 2); }
Test(guard, read_after_truncate_to_one_byte) { truncate_and_read(1); }

Test(guard, handler_keeps_working_1000_times)
{
    int fd;
    mmk_map *m = map_pattern(NULL, &fd);
    cr_assert_eq(ftruncate(fd, FILE_SIZE / 2), 0);
    unsigned char buf[256];
    for (int i = 0; i < 1000; i++) {
        size_t off = FILE_SIZE / 2 + PAGE + (size_t)(i % 16) * PAGE;
        cr_assert_eq(mmk_map_read(m, off, buf, sizeof buf), -EIO, "round %d", i);
        cr_assert_eq(mmk_map_read(m, (size_t)i * 64, buf, 64), 0, "round %d", i);
    }
    mmk_map_close(m);
    close(fd);
}

Test(guard, file_grows_back)
{
    int fd;
    mmk_map *m = map_pattern(NULL, &fd);
    unsigned char buf[64], zero[64] = { 0 };
    cr_assert_eq(ftruncate(fd, 0), 0);
    cr_assert_eq(mmk_map_read(m, 0, buf, sizeof buf), -EIO);
    cr_assert_eq(ftruncate(fd, FILE_SIZE), 0);
    cr_assert_eq(mmk_map_read(m, 0, buf, sizeof buf), 0, "pages come back as zeros");
    cr_assert_arr_eq(buf, zero, sizeof buf);
    mmk_map_close(m);
    close(fd);
}

struct thread_arg {
    mmk_map *m;
    int errors, oks;
};

static void *fault_thread(void *p)
{
    struct thread_arg *a = p;
    unsigned char buf[1024];
    for (int i = 0; i < 2000; i++) {
        if (mmk_map_read(a->m, FILE_SIZE - sizeof buf, buf, sizeof buf) == -EIO)
            a->errors++;
        if (mmk_map_read(a->m, 0, buf, 128) == 0)
            a->oks++;
        sched_yield();
    }
    return NULL;
}

Test(guard, four_threads_fault_at_once)
{
    int fd;
    mmk_map *m = map_pattern(NULL, &fd);
    cr_assert_eq(ftruncate(fd, FILE_SIZE / 4), 0);
    pthread_t t[4];
    struct thread_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thread_arg){ .m = m };
        cr_assert_eq(pthread_create(&t[i], NULL, fault_thread, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        cr_expect_eq(a[i].errors, 2000, "thread %d saw its own errors", i);
        cr_expect_eq(a[i].oks, 2000, "thread %d read the live part", i);
    }
    mmk_map_close(m);
    close(fd);
}

Test(guard, write_after_truncate_is_eio)
{
    const char *path = tu_pattern_file("w", FILE_SIZE, 3);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, path, &(mmk_map_opts){ .flags = MMK_RDWR }), 0);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    cr_assert_eq(ftruncate(fd, PAGE), 0);
    unsigned char buf[512] = { 1 };
    cr_expect_eq(mmk_map_write(m, FILE_SIZE - sizeof buf, buf, sizeof buf), -EIO);
    cr_expect_eq(mmk_map_write(m, 0, buf, sizeof buf), 0);
    cr_expect_eq(mmk_map_sync(m, 0, PAGE), 0);
    mmk_map_close(m);
    close(fd);
}

Test(guard, copy_map_write_after_truncate_is_eio)
{
    const char *path = tu_pattern_file("c", FILE_SIZE, 3);
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, path, &(mmk_map_opts){ .flags = MMK_COPY }), 0);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    cr_assert_eq(ftruncate(fd, 0), 0);
    unsigned char buf[64] = { 1 };
    cr_expect_eq(mmk_map_write(m, PAGE * 3, buf, sizeof buf), -EIO);
    mmk_map_close(m);
    close(fd);
}

/* Both copy paths (small copies in a scope, large ones through the fixup
 * routine) report the same errors. */
Test(guard, every_copy_size_reports_the_same_errors)
{
    static const size_t sizes[] = { 1,  2,  3,  4,  5,    7,    8,    9,    15,   16,
                                    17, 31, 32, 33, 64, 1000, 2047, 2048, 4096,
                                    3 * 4096 + 5, 65536 };
    const size_t len = 32 * 4096;
    cr_assert_eq(mmk_guard_install(), 0);
    unsigned char *buf = malloc(len + 32);
    cr_assert_not_null(buf);
    const char *path = tu_pattern_file("sizes", len, 9);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(p, MAP_FAILED);
    FRESH(p, len);
    void *none = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(none, MAP_FAILED);
    cr_assert_eq(ftruncate(fd, (off_t)len / 2), 0);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        /* Every byte lands, at an odd offset too, and nothing past the end. */
        for (size_t at = 0; at <= 3 && n + at <= len / 2; at += 3) {
            memset(buf, 0xee, n + 32);
            cr_expect_eq(mmk_guard_copy(buf + at, p + at, n), 0, "n=%zu", n);
            unsigned char *want = malloc(n);
            tu_pattern(want, n, at, 9);
            cr_expect_arr_eq(buf + at, want, n, "n=%zu at=%zu", n, at);
            free(want);
            for (size_t k = 0; k < 16; k++)
                cr_expect_eq(buf[at + n + k], 0xee, "n=%zu: wrote past the end", n);
        }
        /* A source that runs past the new end, and one wholly past it. */
        if (n > 1)
            cr_expect_eq(mmk_guard_copy(buf, p + len / 2 - n / 2, n), -EIO, "n=%zu", n);
        cr_expect_eq(mmk_guard_copy(buf, p + len / 2, n), -EIO, "n=%zu", n);
        cr_expect_eq(mmk_guard_copy(p + len - n, buf, n), -ENOSPC, "n=%zu", n);
        /* ASan checks its shadow of the range before the copy faults, and a
         * fresh mapping may sit where it remembers freed heap: skip there. */
        if (!UNDER_ASAN) {
            cr_expect_eq(mmk_guard_copy(buf, none, n), -EFAULT, "n=%zu", n);
            cr_expect_eq(mmk_guard_copy(none, buf, n), -EFAULT, "n=%zu", n);
        }
    }
    munmap(none, len);
    munmap(p, len);
    close(fd);
    free(buf);
}

Test(guard, copy_reports_efault_and_eio)
{
    unsigned char buf[256];
    cr_assert_eq(mmk_guard_install(), 0);
    void *none = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(none, MAP_FAILED);
    if (!UNDER_ASAN) { /* see every_copy_size_reports_the_same_errors */
        cr_expect_eq(mmk_guard_copy(buf, none, sizeof buf), -EFAULT, "unreadable source");
        cr_expect_eq(mmk_guard_copy(none, buf, sizeof buf), -EFAULT, "unwritable destination");
    }
    munmap(none, PAGE);
    cr_expect_eq(mmk_guard_copy(buf, buf + 128, 64), 0);
    cr_expect_eq(mmk_guard_copy(buf, NULL, 0), 0);
    cr_expect_eq(mmk_guard_copy(buf, NULL, 1), -EINVAL);
    cr_expect_eq(mmk_guard_copy(NULL, buf, 1), -EINVAL);

    /* A raw mapping of the caller's own, over a file that shrank. */
    const char *path = tu_pattern_file("raw", 4 * PAGE, 1);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    unsigned char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(p, MAP_FAILED);
    FRESH(p, 4 * PAGE);
    cr_assert_eq(ftruncate(fd, PAGE), 0);
    cr_expect_eq(mmk_guard_copy(buf, p + 2 * PAGE, 64), -EIO);
    cr_expect_eq(mmk_guard_copy(p + 2 * PAGE, buf, 64), -ENOSPC,
                 "the raw guard calls a failed write into a mapping ENOSPC");
    cr_expect_eq(mmk_guard_copy(buf, p, 64), 0);
    munmap(p, 4 * PAGE);
    close(fd);
}

struct run_arg {
    volatile const unsigned char *p;
    size_t n;
    mmk_map *m;
};

static int sum_bytes(void *v)
{
    struct run_arg *a = v;
    unsigned s = 0;
    for (size_t i = 0; i < a->n; i++)
        s += a->p[i];
    return (int)(s & 0xffff);
}

static int answer(void *v)
{
    (void)v;
    return 42;
}

static int nested(void *v)
{
    struct run_arg *a = v;
    unsigned char buf[64];
    /* The inner copy owns its fault; the outer scope sees a normal return. */
    int rc = mmk_map_read(a->m, FILE_SIZE - 64, buf, 64);
    return rc == -EIO ? 7 : -1;
}

Test(guard, run_returns_eio_on_sigbus)
{
    int fd;
    mmk_map *m = map_pattern(NULL, &fd);
    struct run_arg a = { .p = mmk_map_ptr(m), .n = FILE_SIZE, .m = m };
    cr_expect_eq(mmk_guard_run(answer, NULL), 42);
    cr_expect_geq(mmk_guard_run(sum_bytes, &a), 0);
    cr_assert_eq(ftruncate(fd, FILE_SIZE / 2), 0);
    cr_expect_eq(mmk_guard_run(sum_bytes, &a), -EIO);
    cr_expect_eq(mmk_guard_run(nested, &a), 7);
    a.n = FILE_SIZE / 2;
    cr_expect_geq(mmk_guard_run(sum_bytes, &a), 0);
    cr_expect_eq(mmk_guard_run(NULL, NULL), -EINVAL);
    mmk_map_close(m);
    close(fd);
}

/* Run fn in a child process and return how it ended (waitpid status). */
static int in_child(void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* The crash report is expected; keep it out of the test log. */
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, STDERR_FILENO);
        fn();
        _exit(0);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return status;
}

/* A genuine bug must still end the process the way it would without mmkit:
 * by the signal (and a core dump), or, under AddressSanitizer, with ASan's
 * report and a failing exit. */
static void expect_died_of(int status, int sig)
{
    if (UNDER_ASAN) {
        cr_expect(!(WIFEXITED(status) && WEXITSTATUS(status) == 0),
                  "ASan reported it (status %#x)", status);
    } else {
        cr_expect(WIFSIGNALED(status), "died of a signal (status %#x)", status);
        cr_expect_eq(WTERMSIG(status), sig);
    }
}

static void null_deref(void)
{
    mmk_map *m;
    if (mmk_map_anon(&m, PAGE, 0) != 0 || !mmk_guard_active())
        _exit(3);
    volatile int *volatile bad = NULL;
    *bad = 1;
}

Test(guard, null_dereference_still_crashes)
{
    expect_died_of(in_child(null_deref), SIGSEGV);
}

static void raw_sigbus(void)
{
    int fd;
    mmk_map *m = map_pattern(NULL, &fd);
    if (ftruncate(fd, 0) != 0)
        _exit(3);
    volatile const unsigned char *p = mmk_map_ptr(m);
    (void)p[PAGE * 2];
}

/* A SIGBUS outside any scope, on direct access, still dies of SIGBUS. */
Test(guard, raw_sigbus_outside_scope_still_crashes)
{
    expect_died_of(in_child(raw_sigbus), SIGBUS);
}

static sigjmp_buf own_jb;
static volatile sig_atomic_t own_hits;

static void own_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    (void)uc;
    if (sig == SIGBUS)
        own_hits++;
    siglongjmp(own_jb, 1);
}

Test(guard, previous_handler_gets_faults_that_are_not_ours)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = own_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGBUS, &sa, NULL), 0);

    int fd;
    mmk_map *m = map_pattern(NULL, &fd); /* installs mmkit's handler on top */
    cr_assert_eq(mmk_guard_active(), 1);
    cr_assert_eq(ftruncate(fd, 0), 0);

    unsigned char buf[64];
    cr_expect_eq(mmk_map_read(m, PAGE, buf, sizeof buf), -EIO, "ours: an error");
    cr_expect_eq(own_hits, 0);

    if (sigsetjmp(own_jb, 1) == 0) {
        volatile const unsigned char *p = mmk_map_ptr(m);
        (void)p[PAGE]; /* not in a scope: the program's handler gets it */
    }
    cr_expect_eq(own_hits, 1);
    if (sigsetjmp(own_jb, 1) == 0)
        raise(SIGBUS); /* a sent signal is never ours */
    cr_expect_eq(own_hits, 2);

    cr_expect_eq(mmk_map_read(m, PAGE, buf, sizeof buf), -EIO, "and still ours after");
    mmk_map_close(m);
    close(fd);
}

Test(guard, opt_out_by_environment)
{
    setenv("MMK_NO_SIGNALS", "1", 1);
    struct sigaction before, cur;
    sigaction(SIGBUS, NULL, &before);
    mmk_map *m;
    cr_assert_eq(mmk_map_anon(&m, PAGE, 0), 0);
    cr_expect_eq(mmk_guard_active(), 0);
    cr_expect_eq(mmk_guard_install(), -ECANCELED);
    sigaction(SIGBUS, NULL, &cur);
    cr_expect(cur.sa_handler == before.sa_handler, "nothing installed");
    unsigned char buf[16] = { 0 };
    cr_expect_eq(mmk_map_write(m, 0, "abc", 3), 0, "copies still work, unguarded");
    cr_expect_eq(mmk_map_read(m, 0, buf, 3), 0);
    cr_expect_arr_eq(buf, "abc", 3);
    mmk_map_close(m);
}

Test(guard, opt_out_by_call)
{
    cr_expect_eq(mmk_guard_disable(), 0);
    cr_expect_eq(mmk_guard_install(), -ECANCELED);
    cr_expect_eq(mmk_guard_active(), 0);
}

Test(guard, disable_after_install_is_ebusy)
{
    cr_assert_eq(mmk_guard_install(), 0);
    cr_expect_eq(mmk_guard_install(), 0, "idempotent");
    cr_expect_eq(mmk_guard_disable(), -EBUSY);
    cr_expect_eq(mmk_guard_active(), 1);
}

Test(guard, populate_advice_reports_eio_instead_of_signal)
{
    int fd;
    mmk_map *m = map_pattern(NULL, &fd);
    cr_assert_eq(ftruncate(fd, PAGE), 0);
    int rc = mmk_map_advise(m, 0, 0, MMK_ADV_POPULATE_READ);
    if (rc == -EOPNOTSUPP)
        cr_skip_test("kernel lacks MADV_POPULATE_READ");
    cr_expect_eq(rc, -EIO);
    cr_expect_eq(mmk_map_advise(m, 0, PAGE, MMK_ADV_POPULATE_READ), 0);
    mmk_map_close(m);
    close(fd);
}

/* ---- a full disk: a 1 MiB tmpfs in a private mount namespace (root only) -- */

#define TINY_FS_BYTES (1024 * 1024)

static const char *mount_tiny_tmpfs(void)
{
    if (geteuid() != 0)
        return NULL;
    if (unshare(CLONE_NEWNS) != 0)
        return NULL;
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return NULL;
    const char *dir = tu_path("tiny");
    cr_assert_eq(mkdir(dir, 0700), 0);
    char opts[64];
    snprintf(opts, sizeof opts, "size=%d,mode=0700", TINY_FS_BYTES);
    if (mount("mmkit-test", dir, "tmpfs", 0, opts) != 0) {
        rmdir(dir);
        return NULL;
    }
    return dir;
}

static void unmount_tiny(const char *dir)
{
    umount2(dir, MNT_DETACH);
}

Test(guard, write_on_full_disk_is_enospc)
{
    const char *dir = mount_tiny_tmpfs();
    if (!dir)
        cr_skip_test("needs root and mount namespaces");
    char path[4096];
    snprintf(path, sizeof path, "%s/sparse", dir);
    const size_t size = 4 * TINY_FS_BYTES; /* sparse: four times the disk */
    mmk_map *m;
    cr_assert_eq(mmk_map_open(&m, path, &(mmk_map_opts){
                     .flags = MMK_RDWR | MMK_CREATE, .len = size }), 0);
    unsigned char block[4096];
    memset(block, 0xab, sizeof block);
    int rc = 0;
    size_t off = 0;
    for (; off < size; off += sizeof block)
        if ((rc = mmk_map_write(m, off, block, sizeof block)) != 0)
            break;
    cr_expect_eq(rc, -ENOSPC, "the write that found the disk full");
    cr_expect_gt(off, 0);
    cr_expect_leq(off, (size_t)TINY_FS_BYTES);
    /* What was written before is still there. */
    unsigned char back[4096];
    cr_expect_eq(mmk_map_read(m, 0, back, sizeof back), 0);
    cr_expect_arr_eq(back, block, sizeof back);
    mmk_map_close(m);
    unlink(path);
    unmount_tiny(dir);
}

Test(guard, reserve_on_full_disk_fails_at_open)
{
    const char *dir = mount_tiny_tmpfs();
    if (!dir)
        cr_skip_test("needs root and mount namespaces");
    char path[4096];
    snprintf(path, sizeof path, "%s/reserved", dir);
    mmk_map *m = NULL;
    cr_expect_eq(mmk_map_open(&m, path, &(mmk_map_opts){
                     .flags = MMK_RDWR | MMK_CREATE | MMK_RESERVE,
                     .len = 4 * TINY_FS_BYTES }), -ENOSPC);
    cr_expect_null(m);
    cr_expect_eq(access(path, F_OK), -1, "the file it created is gone again");

    /* A reservation that fits makes every later write succeed. */
    cr_assert_eq(mmk_map_open(&m, path, &(mmk_map_opts){
                     .flags = MMK_RDWR | MMK_CREATE | MMK_RESERVE,
                     .len = TINY_FS_BYTES / 2 }), 0);
    unsigned char block[4096];
    memset(block, 1, sizeof block);
    for (size_t off = 0; off < TINY_FS_BYTES / 2; off += sizeof block)
        cr_assert_eq(mmk_map_write(m, off, block, sizeof block), 0);
    cr_expect_eq(mmk_map_sync(m, 0, 0), 0);
    mmk_map_close(m);
    unlink(path);
    unmount_tiny(dir);
}
