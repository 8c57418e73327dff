/* tests/support/inject.h — fault injection and call counting through the
 * library's system-call table (src/os/os.h).
 *
 *   inject_install();                       route every call through counters
 *   inject_fail(INJ_MMAP, 2, ENOMEM);       the 2nd mmap from now fails, once
 *   ... call the library, expect -ENOMEM ...
 *   inject_count(INJ_MSYNC)                 calls seen since install/reset
 *   inject_reset();                         real calls again, counters cleared
 *
 * Counting is thread-safe (atomics); arming is meant for one test thread.
 */
#ifndef MMK_TEST_INJECT_H
#define MMK_TEST_INJECT_H

enum inject_call {
    INJ_OPEN, INJ_OPENAT, INJ_CLOSE, INJ_DUP, INJ_GETFL, INJ_FSTAT, INJ_FSTATFS,
    INJ_FTRUNCATE, INJ_FALLOCATE, INJ_POSIX_FALLOCATE, INJ_UNLINK, INJ_MMAP,
    INJ_MUNMAP, INJ_MREMAP, INJ_MPROTECT, INJ_MSYNC, INJ_MADVISE, INJ_MINCORE,
    INJ_MLOCK, INJ_MUNLOCK, INJ_FSYNC, INJ_FDATASYNC, INJ_SYNC_FILE_RANGE,
    INJ_PREAD, INJ_PWRITE,
    INJ_MEMFD_CREATE, INJ_FCHMOD, INJ_SHM_OPEN, INJ_SHM_UNLINK, INJ_READ, INJ_WRITE,
    INJ_COUNT
};

void          inject_install(void);
void          inject_reset(void);
/* The nth call of `c` from now (1 = the next one) fails with `err` (errno
 * value, positive), once; 0 disarms. */
void          inject_fail(enum inject_call c, unsigned long nth, int err);
/* Every call of `c` from now fails with `err` until inject_reset(). */
void          inject_fail_always(enum inject_call c, int err);
/* fstatfs reports this f_type (a statfs magic number, e.g. 0x6969 for NFS)
 * for every file from now until inject_reset(); 0 reports the real one.
 * Lets tests reach code paths meant for other filesystems. */
void          inject_fake_fs_type(long type);
unsigned long inject_count(enum inject_call c);
/* msync calls with MS_SYNC (durable) among INJ_MSYNC. */
unsigned long inject_count_msync_sync(void);
const char   *inject_name(enum inject_call c);

#endif
