/* src/os/os.h — the table every system call of mmkit goes through.
 *
 * Each entry has the signature and the convention of the libc function it
 * stands for (-1 or MAP_FAILED with errno set).  Tests replace entries to inject
 * failures or to count calls (SQLite's aSyscall idea); the library never calls
 * these functions any other way.  The wrappers below turn errno into the
 * library's negative-errno convention.
 */
#ifndef MMK_OS_H
#define MMK_OS_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>

typedef struct mmk__os {
    int     (*open)(const char *path, int flags, mode_t mode);
    int     (*openat)(int dirfd, const char *path, int flags, mode_t mode);
    int     (*close)(int fd);
    int     (*dup)(int fd);                   /* F_DUPFD_CLOEXEC */
    int     (*getfl)(int fd);                 /* fcntl F_GETFL */
    int     (*fstat)(int fd, struct stat *st);
    int     (*fstatfs)(int fd, struct statfs *st);
    int     (*ftruncate)(int fd, off_t len);
    int     (*fallocate)(int fd, int mode, off_t off, off_t len);
    int     (*posix_fallocate)(int fd, off_t off, off_t len); /* returns errno */
    int     (*unlink)(const char *path);
    void   *(*mmap)(void *addr, size_t len, int prot, int flags, int fd, off_t off);
    int     (*munmap)(void *addr, size_t len);
    void   *(*mremap)(void *old, size_t old_len, size_t new_len, int flags, void *new_addr);
    int     (*mprotect)(void *addr, size_t len, int prot);
    int     (*msync)(void *addr, size_t len, int flags);
    int     (*madvise)(void *addr, size_t len, int advice);
    int     (*mincore)(void *addr, size_t len, unsigned char *vec);
    int     (*mlock)(const void *addr, size_t len);
    int     (*munlock)(const void *addr, size_t len);
    int     (*fsync)(int fd);
    int     (*fdatasync)(int fd);
    int     (*sync_file_range)(int fd, off_t off, off_t len, unsigned flags);
    ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
    ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
    /* rings and buffered I/O (ring.c, bufio.c) */
    int     (*memfd_create)(const char *name, unsigned flags); /* ENOSYS where missing */
    int     (*fchmod)(int fd, mode_t mode);
    int     (*shm_open)(const char *name, int flags, mode_t mode);
    int     (*shm_unlink)(const char *name);
    ssize_t (*read)(int fd, void *buf, size_t n);
    ssize_t (*write)(int fd, const void *buf, size_t n);
} mmk__os;

/* The live table.  Tests may overwrite entries; mmk__os_reset() restores the
 * real system calls. */
extern mmk__os mmk__sys;
extern const mmk__os mmk__sys_default;
void mmk__os_reset(void);

/* Page size and mapping granularity, read once at first use. */
size_t mmk__page_size(void);
size_t mmk__granularity(void);
/* The huge page size (Hugepagesize in /proc/meminfo; 2 MiB if unknown). */
size_t mmk__huge_page_size(void);

/* -errno of the last failed call, never 0 (EIO if errno was somehow 0). */
static inline int mmk__neg_errno(void)
{
    return errno > 0 ? -errno : -EIO;
}

/* Close a descriptor, retrying nothing (EINTR on close must not be retried on
 * Linux: the descriptor is gone).  Keeps errno of the caller. */
int mmk__close_quiet(int fd);

#endif /* MMK_OS_H */
