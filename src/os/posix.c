/* src/os/posix.c — the POSIX (Linux first) system-call table. */
#include "os/os.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* libc's own functions where signatures match; thin adapters where they do not
 * (variadic open, dup with O_CLOEXEC, and calls a platform may lack). */
static int os_open(const char *path, int flags, mode_t mode)
{
    return open(path, flags, mode);
}

static int os_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    return openat(dirfd, path, flags, mode);
}

static int os_getfl(int fd)
{
    return fcntl(fd, F_GETFL);
}

static int os_dup(int fd)
{
    return fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

static int os_fallocate(int fd, int mode, off_t off, off_t len)
{
#ifdef __linux__
    return fallocate(fd, mode, off, len);
#else
    (void)fd; (void)mode; (void)off; (void)len;
    errno = EOPNOTSUPP;
    return -1;
#endif
}

static void *os_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr)
{
#ifdef __linux__
    return mremap(old, old_len, new_len, flags, new_addr);
#else
    (void)old; (void)old_len; (void)new_len; (void)flags; (void)new_addr;
    errno = ENOSYS;
    return MAP_FAILED;
#endif
}

static int os_mincore(void *addr, size_t len, unsigned char *vec)
{
    return mincore(addr, len, vec);
}

static int os_sync_file_range(int fd, off_t off, off_t len, unsigned flags)
{
#ifdef __linux__
    return sync_file_range(fd, off, len, flags);
#else
    (void)fd; (void)off; (void)len; (void)flags;
    errno = ENOSYS;
    return -1;
#endif
}

static int os_memfd_create(const char *name, unsigned flags)
{
#if defined(__linux__) && defined(MFD_CLOEXEC)
    return memfd_create(name, flags);
#elif defined(__linux__) && defined(SYS_memfd_create)
    return (int)syscall(SYS_memfd_create, name, flags);
#else
    (void)name; (void)flags;
    errno = ENOSYS;
    return -1;
#endif
}

static int os_shm_open(const char *name, int flags, mode_t mode)
{
    return shm_open(name, flags, mode);
}

/* The real calls; one list for the default and the live table. */
#define OS_REAL_CALLS { \
    .open            = os_open, \
    .openat          = os_openat, \
    .close           = close, \
    .dup             = os_dup, \
    .getfl           = os_getfl, \
    .fstat           = fstat, \
    .fstatfs         = fstatfs, \
    .ftruncate       = ftruncate, \
    .fallocate       = os_fallocate, \
    .posix_fallocate = posix_fallocate, \
    .unlink          = unlink, \
    .mmap            = mmap, \
    .munmap          = munmap, \
    .mremap          = os_mremap, \
    .mprotect        = mprotect, \
    .msync           = msync, \
    .madvise         = madvise, \
    .mincore         = os_mincore, \
    .mlock           = mlock, \
    .munlock         = munlock, \
    .fsync           = fsync, \
    .fdatasync       = fdatasync, \
    .sync_file_range = os_sync_file_range, \
    .pread           = pread, \
    .pwrite          = pwrite, \
    .memfd_create    = os_memfd_create, \
    .fchmod          = fchmod, \
    .shm_open        = os_shm_open, \
    .shm_unlink      = shm_unlink, \
    .read            = read, \
    .write           = write, \
}

const mmk__os mmk__sys_default = OS_REAL_CALLS;
mmk__os mmk__sys = OS_REAL_CALLS;

void mmk__os_reset(void)
{
    mmk__sys = mmk__sys_default;
}

int mmk__close_quiet(int fd)
{
    int saved = errno;
    int rc = fd >= 0 ? mmk__sys.close(fd) : 0;
    rc = rc < 0 ? mmk__neg_errno() : 0;
    errno = saved;
    return rc;
}

/* ---- geometry, read once ------------------------------------------------- */

/* Used when /proc/meminfo cannot tell: the x86-64 and arm64 (4 KiB base page)
 * PMD size. */
#define MMK_DEFAULT_HUGE_PAGE ((size_t)2 << 20)

static pthread_once_t geometry_once = PTHREAD_ONCE_INIT;
static size_t page_size;
static size_t huge_page_size;

static size_t read_huge_page_size(void)
{
    size_t kib = 0;
    char line[128];
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f)
        return MMK_DEFAULT_HUGE_PAGE;
    while (fgets(line, sizeof line, f)) {
        unsigned long v;
        if (sscanf(line, "Hugepagesize: %lu kB", &v) == 1) {
            kib = v;
            break;
        }
    }
    fclose(f);
    /* Accept only a power of two of at least one page. */
    if (kib == 0 || (kib & (kib - 1)) != 0 || kib * 1024 < page_size)
        return MMK_DEFAULT_HUGE_PAGE;
    return kib * 1024;
}

static void geometry_init(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    page_size = ps > 0 ? (size_t)ps : 4096;
    huge_page_size = read_huge_page_size();
}

size_t mmk__page_size(void)
{
    pthread_once(&geometry_once, geometry_init);
    return page_size;
}

size_t mmk__granularity(void)
{
    /* On POSIX a mapping's file offset must be a multiple of the page size. */
    return mmk__page_size();
}

size_t mmk__huge_page_size(void)
{
    pthread_once(&geometry_once, geometry_init);
    return huge_page_size;
}
