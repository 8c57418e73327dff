/* tests/support/inject.c — see inject.h. */
#include "inject.h"

#include <errno.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "os/os.h"

static atomic_ulong counts[INJ_COUNT];
static atomic_ulong fail_at[INJ_COUNT];  /* absolute call number that fails, 0 none */
static atomic_int   fail_err[INJ_COUNT];
static atomic_int   fail_all[INJ_COUNT]; /* errno for every call, 0 none */
static atomic_ulong msync_sync;

static const char *const names[INJ_COUNT] = {
    "open", "openat", "close", "dup", "getfl", "fstat", "fstatfs", "ftruncate",
    "fallocate", "posix_fallocate", "unlink", "mmap", "munmap", "mremap",
    "mprotect", "msync", "madvise", "mincore", "mlock", "munlock", "fsync",
    "fdatasync", "sync_file_range", "pread", "pwrite",
    "memfd_create", "fchmod", "shm_open", "shm_unlink", "read", "write",
};

/* Count the call; return the errno to fail it with, or 0. */
static int hit(enum inject_call c)
{
    unsigned long n = atomic_fetch_add(&counts[c], 1) + 1;
    int all = atomic_load(&fail_all[c]);
    if (all)
        return all;
    unsigned long at = atomic_load(&fail_at[c]);
    if (at && n == at) {
        atomic_store(&fail_at[c], 0);
        return atomic_load(&fail_err[c]);
    }
    return 0;
}

#define FAIL_INT(c)                                                             \
    do {                                                                        \
        int e_ = hit(c);                                                        \
        if (e_) {                                                               \
            errno = e_;                                                         \
            return -1;                                                          \
        }                                                                       \
    } while (0)

static int w_open(const char *p, int f, mode_t m) { FAIL_INT(INJ_OPEN); return mmk__sys_default.open(p, f, m); }
static int w_openat(int d, const char *p, int f, mode_t m) { FAIL_INT(INJ_OPENAT); return mmk__sys_default.openat(d, p, f, m); }
static int w_close(int fd) { FAIL_INT(INJ_CLOSE); return mmk__sys_default.close(fd); }
static int w_dup(int fd) { FAIL_INT(INJ_DUP); return mmk__sys_default.dup(fd); }
static int w_getfl(int fd) { FAIL_INT(INJ_GETFL); return mmk__sys_default.getfl(fd); }
static int w_fstat(int fd, struct stat *st) { FAIL_INT(INJ_FSTAT); return mmk__sys_default.fstat(fd, st); }
static atomic_long fake_fs_type; /* reported by fstatfs when nonzero */
static int w_fstatfs(int fd, struct statfs *st)
{
    FAIL_INT(INJ_FSTATFS);
    int r = mmk__sys_default.fstatfs(fd, st);
    long t = atomic_load(&fake_fs_type);
    if (r == 0 && t)
        st->f_type = t;
    return r;
}
static int w_ftruncate(int fd, off_t l) { FAIL_INT(INJ_FTRUNCATE); return mmk__sys_default.ftruncate(fd, l); }
static int w_fallocate(int fd, int m, off_t o, off_t l) { FAIL_INT(INJ_FALLOCATE); return mmk__sys_default.fallocate(fd, m, o, l); }
static int w_posix_fallocate(int fd, off_t o, off_t l)
{
    int e = hit(INJ_POSIX_FALLOCATE);
    return e ? e : mmk__sys_default.posix_fallocate(fd, o, l);
}
static int w_unlink(const char *p) { FAIL_INT(INJ_UNLINK); return mmk__sys_default.unlink(p); }
static void *w_mmap(void *a, size_t l, int p, int f, int fd, off_t o)
{
    int e = hit(INJ_MMAP);
    if (e) {
        errno = e;
        return MAP_FAILED;
    }
    return mmk__sys_default.mmap(a, l, p, f, fd, o);
}
static int w_munmap(void *a, size_t l) { FAIL_INT(INJ_MUNMAP); return mmk__sys_default.munmap(a, l); }
static void *w_mremap(void *o, size_t ol, size_t nl, int f, void *na)
{
    int e = hit(INJ_MREMAP);
    if (e) {
        errno = e;
        return MAP_FAILED;
    }
    return mmk__sys_default.mremap(o, ol, nl, f, na);
}
static int w_mprotect(void *a, size_t l, int p) { FAIL_INT(INJ_MPROTECT); return mmk__sys_default.mprotect(a, l, p); }
static int w_msync(void *a, size_t l, int f)
{
    FAIL_INT(INJ_MSYNC);
    if (f & MS_SYNC)
        atomic_fetch_add(&msync_sync, 1);
    return mmk__sys_default.msync(a, l, f);
}
static int w_madvise(void *a, size_t l, int adv) { FAIL_INT(INJ_MADVISE); return mmk__sys_default.madvise(a, l, adv); }
static int w_mincore(void *a, size_t l, unsigned char *v) { FAIL_INT(INJ_MINCORE); return mmk__sys_default.mincore(a, l, v); }
static int w_mlock(const void *a, size_t l) { FAIL_INT(INJ_MLOCK); return mmk__sys_default.mlock(a, l); }
static int w_munlock(const void *a, size_t l) { FAIL_INT(INJ_MUNLOCK); return mmk__sys_default.munlock(a, l); }
static int w_fsync(int fd) { FAIL_INT(INJ_FSYNC); return mmk__sys_default.fsync(fd); }
static int w_fdatasync(int fd) { FAIL_INT(INJ_FDATASYNC); return mmk__sys_default.fdatasync(fd); }
static int w_sync_file_range(int fd, off_t o, off_t l, unsigned f) { FAIL_INT(INJ_SYNC_FILE_RANGE); return mmk__sys_default.sync_file_range(fd, o, l, f); }
static ssize_t w_pread(int fd, void *b, size_t n, off_t o) { FAIL_INT(INJ_PREAD); return mmk__sys_default.pread(fd, b, n, o); }
static ssize_t w_pwrite(int fd, const void *b, size_t n, off_t o) { FAIL_INT(INJ_PWRITE); return mmk__sys_default.pwrite(fd, b, n, o); }
static int w_memfd_create(const char *nm, unsigned f) { FAIL_INT(INJ_MEMFD_CREATE); return mmk__sys_default.memfd_create(nm, f); }
static int w_fchmod(int fd, mode_t m) { FAIL_INT(INJ_FCHMOD); return mmk__sys_default.fchmod(fd, m); }
static int w_shm_open(const char *nm, int f, mode_t m) { FAIL_INT(INJ_SHM_OPEN); return mmk__sys_default.shm_open(nm, f, m); }
static int w_shm_unlink(const char *nm) { FAIL_INT(INJ_SHM_UNLINK); return mmk__sys_default.shm_unlink(nm); }
static ssize_t w_read(int fd, void *b, size_t n) { FAIL_INT(INJ_READ); return mmk__sys_default.read(fd, b, n); }
static ssize_t w_write(int fd, const void *b, size_t n) { FAIL_INT(INJ_WRITE); return mmk__sys_default.write(fd, b, n); }

static void clear(void)
{
    for (int i = 0; i < INJ_COUNT; i++) {
        atomic_store(&counts[i], 0);
        atomic_store(&fail_at[i], 0);
        atomic_store(&fail_err[i], 0);
        atomic_store(&fail_all[i], 0);
    }
    atomic_store(&msync_sync, 0);
    atomic_store(&fake_fs_type, 0);
}

void inject_install(void)
{
    clear();
    mmk__sys = (mmk__os){
        .open = w_open, .openat = w_openat, .close = w_close, .dup = w_dup,
        .getfl = w_getfl, .fstat = w_fstat, .fstatfs = w_fstatfs,
        .ftruncate = w_ftruncate, .fallocate = w_fallocate,
        .posix_fallocate = w_posix_fallocate, .unlink = w_unlink, .mmap = w_mmap,
        .munmap = w_munmap, .mremap = w_mremap, .mprotect = w_mprotect,
        .msync = w_msync, .madvise = w_madvise, .mincore = w_mincore,
        .mlock = w_mlock, .munlock = w_munlock, .fsync = w_fsync,
        .fdatasync = w_fdatasync, .sync_file_range = w_sync_file_range,
        .pread = w_pread, .pwrite = w_pwrite,
        .memfd_create = w_memfd_create, .fchmod = w_fchmod, .shm_open = w_shm_open,
        .shm_unlink = w_shm_unlink, .read = w_read, .write = w_write,
    };
}

void inject_reset(void)
{
    mmk__os_reset();
    clear();
}

void inject_fail(enum inject_call c, unsigned long nth, int err)
{
    atomic_store(&fail_err[c], err);
    atomic_store(&fail_at[c], nth ? atomic_load(&counts[c]) + nth : 0);
}

void inject_fail_always(enum inject_call c, int err)
{
    atomic_store(&fail_all[c], err);
}

void inject_fake_fs_type(long type)
{
    atomic_store(&fake_fs_type, type);
}

unsigned long inject_count(enum inject_call c)
{
    return atomic_load(&counts[c]);
}

unsigned long inject_count_msync_sync(void)
{
    return atomic_load(&msync_sync);
}

const char *inject_name(enum inject_call c)
{
    return c < INJ_COUNT ? names[c] : "?";
}
