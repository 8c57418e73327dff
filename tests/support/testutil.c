/* tests/support/testutil.c — see testutil.h. */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define TU_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define TU_HAVE_LSAN 1
#endif
#endif
#ifdef TU_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#define TU_MAX_PATHS 256

static char dir[4096];
static char *paths[TU_MAX_PATHS];
static int npaths;

static void die(const char *what)
{
    perror(what);
    abort();
}

void tu_setup(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(dir, sizeof dir, "%s/mmkit-test-XXXXXX", base);
    if (!mkdtemp(dir))
        die("mkdtemp");
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    if (remove(p) != 0)
        perror(p);
    return 0;
}

void tu_teardown(void)
{
    if (dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    dir[0] = '\0';
    for (int i = 0; i < npaths; i++)
        free(paths[i]);
    npaths = 0;
}

const char *tu_dir(void)
{
    return dir;
}

const char *tu_path(const char *name)
{
    if (npaths == TU_MAX_PATHS)
        die("tu_path: too many paths");
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p)
        die("malloc");
    snprintf(p, n, "%s/%s", dir, name);
    paths[npaths++] = p;
    return p;
}

void tu_write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die(path);
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            die("write");
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

uint8_t tu_pattern_byte(uint64_t off, uint32_t seed)
{
    /* A cheap hash of (offset, seed): no period within test sizes. */
    uint64_t x = off * 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed << 32 | seed);
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    return (uint8_t)x;
}

void tu_pattern(void *buf, size_t n, uint64_t off, uint32_t seed)
{
    uint8_t *b = buf;
    for (size_t i = 0; i < n; i++)
        b[i] = tu_pattern_byte(off + i, seed);
}

const char *tu_pattern_file(const char *name, size_t n, uint32_t seed)
{
    const char *p = tu_path(name);
    void *buf = malloc(n ? n : 1);
    if (!buf)
        die("malloc");
    tu_pattern(buf, n, 0, seed);
    tu_write_file(p, buf, n);
    free(buf);
    return p;
}

void *tu_read_file(const char *path, size_t *n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        die("fstat");
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size ? size : 1);
    if (!buf)
        die("malloc");
    size_t got = 0;
    while (got < size) {
        ssize_t r = pread(fd, buf + got, size - got, (off_t)got);
        if (r <= 0)
            die("pread");
        got += (size_t)r;
    }
    close(fd);
    *n = size;
    return buf;
}

int64_t tu_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

int tu_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

int tu_dir_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

int tu_thread_count(void)
{
    return tu_dir_entries("/proc/self/task");
}

int tu_mapping_count(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        if (c == '\n')
            n++;
    fclose(f);
    return n;
}

int tu_mapping_perms(const void *addr, char perms[5])
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return -1;
    char line[512];
    int rc = -1;
    uintptr_t a = (uintptr_t)addr;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char p[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, p) != 3)
            continue;
        if (a >= lo && a < hi) {
            memcpy(perms, p, 5);
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

long tu_locked_kib(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmLck: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

#ifdef TU_HAVE_LSAN
/* Stack a finished test used, wiped so that stale pointers left there do not
 * count as references (the leak check scans the live stack conservatively). */
#define TU_STACK_SCRUB (256 * 1024)

__attribute__((noinline)) static void scrub_stack(void)
{
    volatile unsigned char buf[TU_STACK_SCRUB];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = 0;
}
#endif

#ifdef TU_HAVE_LSAN
/* No leak check at exit: Criterion ignores the exit status of a test process
 * once its test has reported, so the check at exit cannot fail a test (suites
 * call tu_leaks() in their .fini hook instead), while in the runner process it
 * reports only Criterion's own few leaked bytes and fails runs whose every test
 * passed.  A suppression cannot single those out: every test's allocations
 * have libcriterion frames too. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "leak_check_at_exit=0";
}
#endif

int tu_leaks(void)
{
#ifdef TU_HAVE_LSAN
    scrub_stack();
    return __lsan_do_recoverable_leak_check() != 0;
#else
    return 0;
#endif
}
