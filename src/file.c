/* src/file.c — POSIX-like file handles over the window cache.
 *
 * Each transfer is cut at window boundaries, and each piece takes the faster
 * of two paths:
 *   - a window that is already mapped: a guarded copy, no system call;
 *   - otherwise, a large piece (PLAIN_MIN or more) goes through pread/pwrite,
 *     which beats mapping fresh pages for a read-once pass (a first touch of a
 *     mapped page costs more than the copy pread does in the kernel), and a
 *     small read maps the window, so the next small reads nearby are hits.
 * Writes past the end of the file always go through pwrite, which grows the
 * file by exactly what POSIX says; the cache is told the new size.
 * MMK_COPY handles always use private windows (the only place their writes
 * can live).  Plain handles (network and FUSE filesystems, /proc) use the
 * descriptor for everything.
 */
#include <mmkit/file.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "cache_internal.h"
#include "file_internal.h"
#include "guard_internal.h"
#include "os/os.h"

/* Pieces of at least this size through unmapped windows use pread/pwrite:
 * below it, mapping the window pays off in the hits that follow. */
#define PLAIN_MIN ((size_t)64 << 10)

#define MMK_DEFAULT_MODE 0644

/* statfs f_type of filesystems where mapping is wrong (remote data that may
 * change or vanish under a mapping, or files whose size is not their
 * content).  From <linux/magic.h>, spelled out for older headers. */
static const long plain_fs_types[] = {
    0x6969,              /* NFS */
    0x517B,              /* SMB */
    (long)0xFF534D42,    /* CIFS */
    (long)0xFE534D42,    /* SMB2 */
    0x65735546,          /* FUSE */
    0x00C36400,          /* Ceph */
    0x01021997,          /* 9P (v9fs) */
    0x5346414F,          /* AFS */
    0x9FA0,              /* procfs */
    0x62656572,          /* sysfs */
    0x64626720,          /* debugfs */
    0x74726163,          /* tracefs */
};

struct mmk_file {
    int              fd;
    unsigned         flags;
    int              mode;          /* MMK_FILE_MAPPED or MMK_FILE_PLAIN */
    mmk_cache_file  *cf;            /* mapped mode */
    uint64_t         window;        /* the cache's window size */
    _Atomic int64_t  pos;           /* mapped mode (plain mode: the fd's own) */
    int              policy;
    uint64_t         every;
    atomic_uint_fast64_t pending_bytes, pending_writes;
    atomic_bool      plain_dirty;   /* bytes went through pwrite since a sync */
    atomic_bool      dirty;         /* anything to sync at all */
    pthread_mutex_t  sync_lock;
    mmk__syncer     *syncer;        /* PERIODIC */
    struct mmk_fs   *fs;            /* the fs it was opened in, or NULL */
    int              dirfd;         /* MMK_CREATE: its directory, or -1 */
    atomic_bool      dir_pending;   /* that directory not yet synced */
    uint64_t         next_sync_ms;  /* PERIODIC, under the syncer's lock */
    mmk_file        *sync_next;     /* the syncer's list */
};

/* ---- opening -------------------------------------------------------------- */

static int open_flags(unsigned flags)
{
    int of = O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    of |= (flags & MMK_RDWR) ? O_RDWR : O_RDONLY;
    if (flags & MMK_CREATE)
        of |= O_CREAT;
    if (flags & MMK_EXCL)
        of |= O_EXCL;
    if (flags & MMK_TRUNC)
        of |= O_TRUNC;
    if (flags & MMK_NOFOLLOW)
        of |= O_NOFOLLOW;
    return of;
}

int mmk__file_check_opts(const mmk_file_opts *o)
{
    unsigned ok = MMK_RDWR | MMK_COPY | MMK_CREATE | MMK_EXCL | MMK_TRUNC | MMK_NOFOLLOW |
                  MMK_APPEND | MMK_POPULATE;
    if (o->flags & ~ok)
        return -EINVAL;
    if ((o->flags & MMK_RDWR) && (o->flags & MMK_COPY))
        return -EINVAL;
    if ((o->flags & (MMK_CREATE | MMK_TRUNC | MMK_APPEND)) && !(o->flags & MMK_RDWR))
        return -EINVAL;
    if ((o->flags & MMK_EXCL) && !(o->flags & MMK_CREATE))
        return -EINVAL;
    if (o->sync < MMK_SYNC_CLOSE || o->sync > MMK_SYNC_PERIODIC)
        return -EINVAL;
    if (o->sync >= MMK_SYNC_BYTES && o->sync_every == 0)
        return -EINVAL;
    return 0;
}

int mmk__file_open_flags(const mmk_file_opts *o, mode_t *mode)
{
    *mode = o->mode ? o->mode : MMK_DEFAULT_MODE;
    return open_flags(o->flags);
}

static bool wants_plain(int fd, const struct stat *st)
{
    struct statfs sf;
    if (mmk__sys.fstatfs(fd, &sf) == 0) {
        for (size_t i = 0; i < sizeof plain_fs_types / sizeof plain_fs_types[0]; i++)
            if ((long)sf.f_type == plain_fs_types[i])
                return true;
    }
    /* A file whose size reads 0 while it has content (pseudo-files outside
     * the filesystems above): one byte tells. */
    if (st->st_size == 0) {
        unsigned char b;
        if (mmk__sys.pread(fd, &b, 1, 0) == 1)
            return true;
    }
    return false;
}

int mmk__file_from_fd(mmk_file **out, int fd, const mmk_file_opts *o)
{
    return mmk__file_from_fd_in(out, fd, o, NULL, NULL);
}

int mmk__file_from_fd_in(mmk_file **out, int fd, const mmk_file_opts *o, mmk__syncer *syncer,
                         struct mmk_fs *fs)
{
    struct stat st;
    int rc;
    *out = NULL;
    if (mmk__sys.fstat(fd, &st) < 0)
        return mmk__neg_errno();
    if (S_ISDIR(st.st_mode))
        return -EISDIR;
    if (!S_ISREG(st.st_mode))
        return -ENODEV;
    /* O_NONBLOCK served the open; it means nothing for regular files, but
     * keep the descriptor plain. */
    mmk_file *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    f->fd = fd;
    f->dirfd = -1;
    f->flags = o->flags;
    f->policy = o->sync;
    f->every = o->sync_every;
    pthread_mutex_init(&f->sync_lock, NULL);
    bool plain = wants_plain(fd, &st);
    if (plain && (o->flags & MMK_COPY)) {
        rc = -ENOTSUP; /* private copies need a mapping */
        goto fail;
    }
    if (plain) {
        f->mode = MMK_FILE_PLAIN;
    } else {
        f->mode = MMK_FILE_MAPPED;
        mmk_cache *c = o->cache ? o->cache : mmk_cache_default();
        if (!c) {
            rc = -ENOMEM;
            goto fail;
        }
        unsigned acc = (o->flags & MMK_RDWR) ? MMK_RDWR : (o->flags & MMK_COPY);
        if ((rc = mmk_cache_attach(c, fd, acc, &f->cf)) < 0)
            goto fail;
        mmk_cache_opts lim;
        mmk_cache_limits(c, &lim);
        f->window = lim.window;
        if (o->flags & MMK_POPULATE)
            mmk__cache_file_advise(f->cf, -1, true);
    }
    if (f->policy == MMK_SYNC_PERIODIC) {
        if ((rc = mmk__syncer_add(syncer ? syncer : mmk__syncer_global(), f)) < 0)
            goto fail;
    }
    f->fs = fs;
    *out = f;
    return 0;

fail:
    if (f->cf)
        mmk_cache_detach(f->cf);
    pthread_mutex_destroy(&f->sync_lock);
    free(f);
    return rc;
}

int mmk_file_open(mmk_file **out, const char *path, const mmk_file_opts *opts)
{
    static const mmk_file_opts defaults;
    const mmk_file_opts *o = opts ? opts : &defaults;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!path)
        return -EINVAL;
    int rc = mmk__file_check_opts(o);
    if (rc < 0)
        return rc;
    mode_t mode;
    int of = mmk__file_open_flags(o, &mode);
    int fd = mmk__sys.open(path, of, mode);
    if (fd < 0)
        return mmk__neg_errno();
    if ((rc = mmk__file_from_fd(out, fd, o)) < 0) {
        mmk__close_quiet(fd);
        return rc;
    }
    if (o->flags & MMK_CREATE) {
        /* The file may be new: its name is durable only once its directory
         * is synced, which the first sync does. */
        const char *slash = strrchr(path, '/');
        int dfd;
        if (!slash) {
            dfd = mmk__sys.open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        } else if (slash == path) {
            dfd = mmk__sys.open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        } else {
            char *dir = strndup(path, (size_t)(slash - path));
            dfd = dir ? mmk__sys.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0) : -1;
            free(dir);
        }
        mmk__file_set_dir(*out, dfd);
    }
    return 0;
}

void mmk__file_set_dir(mmk_file *f, int dirfd)
{
    /* Without a directory descriptor the file still works; its name is
     * then as durable as the filesystem makes it. */
    f->dirfd = dirfd;
    atomic_store(&f->dir_pending, dirfd >= 0);
}

int mmk_file_close(mmk_file *f)
{
    if (!f)
        return -EINVAL;
    if (f->cf && mmk__cache_file_pins(f->cf) != 0)
        return -EBUSY; /* unpin first; the handle stays open */
    if (f->syncer)
        mmk__syncer_remove(f->syncer, f);
    if (f->fs)
        mmk__fs_forget(f->fs, f);
    int rc = 0;
    if (f->policy != MMK_SYNC_NONE)
        rc = mmk_file_sync(f);
    if (f->cf)
        mmk_cache_detach(f->cf);
    int crc = mmk__close_quiet(f->fd);
    mmk__close_quiet(f->dirfd);
    pthread_mutex_destroy(&f->sync_lock);
    free(f);
    return rc ? rc : crc;
}

void mmk__file_leave_fs(mmk_file *f)
{
    f->fs = NULL;
    if (f->syncer) {
        mmk__syncer_remove(f->syncer, f);
        /* Still synced at close if the global syncer cannot take it. */
        (void)mmk__syncer_add(mmk__syncer_global(), f);
    }
}

/* ---- sizes ----------------------------------------------------------------- */

int64_t mmk_file_size(mmk_file *f)
{
    if (!f)
        return -EINVAL;
    struct stat st;
    if (f->mode == MMK_FILE_MAPPED && !(f->flags & MMK_COPY)) {
        /* The cache knows our own changes; fstat catches other processes'. */
        if (mmk__sys.fstat(f->fd, &st) < 0)
            return mmk__neg_errno();
        if ((uint64_t)st.st_size != mmk_cache_file_size(f->cf))
            mmk_cache_set_size(f->cf, (uint64_t)st.st_size);
        return (int64_t)st.st_size;
    }
    if (f->cf)
        return (int64_t)mmk_cache_file_size(f->cf);
    if (mmk__sys.fstat(f->fd, &st) < 0)
        return mmk__neg_errno();
    return (int64_t)st.st_size;
}

int mmk_file_truncate(mmk_file *f, uint64_t size)
{
    if (!f)
        return -EINVAL;
    if (!(f->flags & MMK_RDWR))
        return -EBADF;
    if (size > (uint64_t)INT64_MAX)
        return -EFBIG;
    if (mmk__sys.ftruncate(f->fd, (off_t)size) < 0)
        return mmk__neg_errno();
    if (f->cf)
        mmk_cache_set_size(f->cf, size);
    atomic_store(&f->plain_dirty, true); /* a size change: fdatasync */
    atomic_store(&f->dirty, true);
    return 0;
}

/* ---- the sync policies -------------------------------------------------- */

int mmk_file_sync(mmk_file *f)
{
    if (!f)
        return -EINVAL;
    if (!(f->flags & MMK_RDWR))
        return 0;
    pthread_mutex_lock(&f->sync_lock);
    atomic_store(&f->dirty, false);
    atomic_store(&f->pending_bytes, 0);
    atomic_store(&f->pending_writes, 0);
    bool plain = atomic_exchange(&f->plain_dirty, false);
    int rc;
    if (f->cf) {
        rc = mmk__cache_sync(f->cf, plain);
    } else {
        rc = mmk__sys.fdatasync(f->fd) < 0 ? mmk__neg_errno() : 0;
    }
    if (rc < 0) {
        if (plain)
            atomic_store(&f->plain_dirty, true);
        atomic_store(&f->dirty, true);
    } else if (atomic_load(&f->dir_pending)) {
        if (mmk__sys.fsync(f->dirfd) < 0)
            rc = mmk__neg_errno();
        else
            atomic_store(&f->dir_pending, false);
    }
    pthread_mutex_unlock(&f->sync_lock);
    return rc;
}

bool mmk__file_dirty(mmk_file *f)
{
    return atomic_load(&f->dirty);
}

uint64_t *mmk__file_next_sync(mmk_file *f)
{
    return &f->next_sync_ms;
}

mmk_file **mmk__file_sync_next(mmk_file *f)
{
    return &f->sync_next;
}

uint64_t mmk__file_sync_every(const mmk_file *f)
{
    return f->every;
}

void mmk__file_set_syncer(mmk_file *f, mmk__syncer *s)
{
    f->syncer = s;
}

/* After a successful write of n bytes: what the policy asks. */
static int after_write(mmk_file *f, size_t n)
{
    atomic_store(&f->dirty, true);
    switch (f->policy) {
    case MMK_SYNC_ALWAYS:
        return mmk_file_sync(f);
    case MMK_SYNC_BYTES:
        if (atomic_fetch_add(&f->pending_bytes, n) + n >= f->every)
            return mmk_file_sync(f);
        return 0;
    case MMK_SYNC_WRITES:
        if (atomic_fetch_add(&f->pending_writes, 1) + 1 >= f->every)
            return mmk_file_sync(f);
        return 0;
    default:
        return 0;
    }
}

/* ---- transfers --------------------------------------------------------------- */

static ssize_t plain_pread(int fd, void *buf, size_t n, uint64_t off)
{
    ssize_t r;
    do
        r = mmk__sys.pread(fd, buf, n, (off_t)off);
    while (r < 0 && errno == EINTR);
    return r < 0 ? mmk__neg_errno() : r;
}

static ssize_t plain_pwrite(int fd, const void *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = mmk__sys.pwrite(fd, (const char *)buf + done, n - done,
                                    (off_t)(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return done ? (ssize_t)done : (w < 0 ? mmk__neg_errno() : -EIO);
        done += (size_t)w;
    }
    return (ssize_t)done;
}

/* Bytes from off to the end of its window. */
static uint64_t window_room(const mmk_file *f, uint64_t off)
{
    return f->window - (off & (f->window - 1));
}

static ssize_t mapped_pread(mmk_file *f, void *buf, size_t n, uint64_t off)
{
    uint64_t size = mmk_cache_file_size(f->cf);
    if (!(f->flags & MMK_COPY) && off + n > size) {
        /* Maybe another process grew the file: ask before a short read. */
        struct stat st;
        if (mmk__sys.fstat(f->fd, &st) == 0 && (uint64_t)st.st_size != size) {
            size = (uint64_t)st.st_size;
            mmk_cache_set_size(f->cf, size);
        }
    }
    if (off >= size || n == 0)
        return 0;
    if (n > size - off)
        n = (size_t)(size - off);
    size_t done = 0;
    while (done < n) {
        uint64_t at = off + done;
        size_t piece = n - done;
        uint64_t room = window_room(f, at);
        if (piece > room)
            piece = (size_t)room;
        mmk_view v;
        int rc = mmk__cache_pin_mapped(f->cf, at, piece, MMK_RDONLY, &v);
        if (rc == -ENOENT && !(f->flags & MMK_COPY) &&
            (piece >= PLAIN_MIN || mmk__cache_would_evict(f->cf))) {
            ssize_t r = plain_pread(f->fd, (unsigned char *)buf + done, piece, at);
            if (r <= 0)
                return done ? (ssize_t)done : r;
            done += (size_t)r;
            if ((size_t)r < piece)
                break; /* the file ended earlier than we knew */
            continue;
        }
        if (rc == -ENOENT)
            rc = mmk_cache_pin(f->cf, at, piece, MMK_RDONLY, &v);
        if (rc < 0) {
            if (rc == -ENOMEM && !(f->flags & MMK_COPY)) {
                /* Budget spent by pins: the descriptor still works. */
                ssize_t r = plain_pread(f->fd, (unsigned char *)buf + done, piece, at);
                if (r <= 0)
                    return done ? (ssize_t)done : r;
                done += (size_t)r;
                continue;
            }
            return done ? (ssize_t)done : rc;
        }
        rc = mmk__guard_copy_at((unsigned char *)buf + done, v.ptr, piece, NULL);
        mmk_cache_unpin(&v);
        if (rc < 0) {
            /* Shrunk under us: the cache's pread knows how to end there. */
            ssize_t r = mmk_cache_pread(f->cf, (unsigned char *)buf + done, piece, at);
            if (r <= 0)
                return done ? (ssize_t)done : (r < 0 ? r : 0);
            done += (size_t)r;
            break;
        }
        done += piece;
    }
    return (ssize_t)done;
}

static ssize_t mapped_pwrite(mmk_file *f, const void *buf, size_t n, uint64_t off)
{
    if (f->flags & MMK_COPY)
        return mmk_cache_pwrite(f->cf, buf, n, off); /* private windows */
    uint64_t size = mmk_cache_file_size(f->cf);
    size_t done = 0;
    while (done < n) {
        uint64_t at = off + done;
        size_t piece = n - done;
        uint64_t room = window_room(f, at);
        if (piece > room)
            piece = (size_t)room;
        int rc = -ENOENT;
        mmk_view v;
        if (at + piece <= size)
            rc = mmk__cache_pin_mapped(f->cf, at, piece, MMK_RDWR, &v);
        if (rc == -ENOENT && at + piece <= size && piece < PLAIN_MIN &&
            !mmk__cache_would_evict(f->cf))
            rc = mmk_cache_pin(f->cf, at, piece, MMK_RDWR, &v);
        if (rc == 0) {
            void *fault = NULL;
            rc = mmk__guard_copy_at(v.ptr, (const unsigned char *)buf + done, piece, &fault);
            mmk_cache_unpin(&v);
            if (rc < 0)
                return done ? (ssize_t)done : rc;
            done += piece;
            continue;
        }
        /* Past the end, large, or no room in the budget: the descriptor. */
        ssize_t w = plain_pwrite(f->fd, (const unsigned char *)buf + done, n - done, at);
        if (w < 0)
            return done ? (ssize_t)done : w;
        atomic_store(&f->plain_dirty, true);
        if (at + (uint64_t)w > size) {
            size = at + (uint64_t)w;
            if (size > mmk_cache_file_size(f->cf))
                mmk_cache_set_size(f->cf, size);
        }
        done += (size_t)w;
        break;
    }
    return (ssize_t)done;
}

/* too_far: the error for an offset past INT64_MAX (file.h: -EOVERFLOW for
 * reads, -EFBIG for writes, as read(2) and write(2) say past the maximum). */
static int check_io(const mmk_file *f, const void *buf, size_t n, uint64_t off, int too_far)
{
    if (!f || (!buf && n))
        return -EINVAL;
    if (off > (uint64_t)INT64_MAX)
        return too_far;
    return 0;
}

ssize_t mmk_file_pread(mmk_file *f, void *buf, size_t n, uint64_t off)
{
    int rc = check_io(f, buf, n, off, -EOVERFLOW);
    if (rc < 0)
        return rc;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    if (n > (uint64_t)INT64_MAX - off)
        n = (size_t)((uint64_t)INT64_MAX - off);
    if (n == 0)
        return 0;
    if (f->mode == MMK_FILE_PLAIN)
        return plain_pread(f->fd, buf, n, off);
    return mapped_pread(f, buf, n, off);
}

ssize_t mmk_file_pwrite(mmk_file *f, const void *buf, size_t n, uint64_t off)
{
    int rc = check_io(f, buf, n, off, -EFBIG);
    if (rc < 0)
        return rc;
    if (!(f->flags & (MMK_RDWR | MMK_COPY)))
        return -EBADF;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    if (n == 0)
        return 0;
    if (n > (uint64_t)INT64_MAX - off)
        return -EFBIG;
    ssize_t w = f->mode == MMK_FILE_PLAIN ? plain_pwrite(f->fd, buf, n, off)
                                          : mapped_pwrite(f, buf, n, off);
    if (f->mode == MMK_FILE_PLAIN && w > 0)
        atomic_store(&f->plain_dirty, true);
    if (w > 0 && !(f->flags & MMK_COPY)) {
        int src = after_write(f, (size_t)w);
        if (src < 0)
            return src;
    }
    return w;
}

ssize_t mmk_file_read(mmk_file *f, void *buf, size_t n)
{
    if (!f)
        return -EINVAL;
    if (f->mode == MMK_FILE_PLAIN) {
        if (!buf && n)
            return -EINVAL;
        ssize_t r;
        do
            r = read(f->fd, buf, n);
        while (r < 0 && errno == EINTR);
        return r < 0 ? mmk__neg_errno() : r;
    }
    int64_t pos = atomic_load(&f->pos);
    ssize_t r = mmk_file_pread(f, buf, n, (uint64_t)pos);
    if (r > 0)
        atomic_store(&f->pos, pos + r);
    return r;
}

ssize_t mmk_file_write(mmk_file *f, const void *buf, size_t n)
{
    if (!f)
        return -EINVAL;
    if (!(f->flags & (MMK_RDWR | MMK_COPY)))
        return -EBADF;
    if (f->mode == MMK_FILE_PLAIN) {
        if (!buf && n)
            return -EINVAL;
        /* O_APPEND is not set on the descriptor (pwrite must place bytes),
         * so append by hand: seek to the end first (not for a write of
         * nothing, which leaves the position alone as O_APPEND's does). */
        if ((f->flags & MMK_APPEND) && n && lseek(f->fd, 0, SEEK_END) < 0)
            return mmk__neg_errno();
        ssize_t w;
        do
            w = write(f->fd, buf, n);
        while (w < 0 && errno == EINTR);
        if (w < 0)
            return mmk__neg_errno();
        atomic_store(&f->plain_dirty, true);
        int src = after_write(f, (size_t)w);
        return src < 0 ? src : w;
    }
    int64_t pos = atomic_load(&f->pos);
    if (f->flags & MMK_APPEND) {
        int64_t size = mmk_file_size(f);
        if (size < 0)
            return size;
        pos = size;
    }
    ssize_t w = mmk_file_pwrite(f, buf, n, (uint64_t)pos);
    if (w > 0)
        atomic_store(&f->pos, pos + w);
    return w;
}

int64_t mmk_file_seek(mmk_file *f, int64_t off, int whence)
{
    if (!f)
        return -EINVAL;
    if (f->mode == MMK_FILE_PLAIN) {
        off_t r = lseek(f->fd, (off_t)off, whence);
        return r < 0 ? mmk__neg_errno() : (int64_t)r;
    }
    int64_t base;
    switch (whence) {
    case SEEK_SET:
        base = 0;
        break;
    case SEEK_CUR:
        base = atomic_load(&f->pos);
        break;
    case SEEK_END: {
        int64_t size = mmk_file_size(f);
        if (size < 0)
            return size;
        base = size;
        break;
    }
#ifdef SEEK_DATA
    case SEEK_DATA:
    case SEEK_HOLE: {
        if (f->flags & MMK_COPY)
            return -EINVAL;
        off_t r = lseek(f->fd, (off_t)off, whence);
        if (r < 0)
            return mmk__neg_errno();
        atomic_store(&f->pos, (int64_t)r);
        return (int64_t)r;
    }
#endif
    default:
        return -EINVAL;
    }
    if ((off > 0 && base > INT64_MAX - off) || base + off < 0)
        return off > 0 ? -EOVERFLOW : -EINVAL;
    atomic_store(&f->pos, base + off);
    return base + off;
}

int mmk_file_fd(const mmk_file *f)
{
    return f ? f->fd : -EINVAL;
}

int mmk_file_mode(const mmk_file *f)
{
    return f ? f->mode : 0;
}

/* ---- pins --------------------------------------------------------------- */

int mmk_file_pin(mmk_file *f, uint64_t off, size_t n, unsigned access, mmk_view *v)
{
    if (!f || !v)
        return -EINVAL;
    if (f->mode != MMK_FILE_MAPPED)
        return -ENOTSUP;
    if ((access & MMK_RDWR) && !(f->flags & (MMK_RDWR | MMK_COPY)))
        return -EBADF;
    if (!(f->flags & MMK_COPY) && off + n > mmk_cache_file_size(f->cf))
        mmk_cache_set_size(f->cf, UINT64_MAX); /* grown by someone else? */
    int rc = mmk_cache_pin(f->cf, off, n, access, v);
    if (rc == 0 && (access & MMK_RDWR))
        atomic_store(&f->dirty, true);
    return rc;
}

int mmk_file_unpin(mmk_file *f, mmk_view *v)
{
    if (!f)
        return -EINVAL;
    return mmk_cache_unpin(v);
}

/* ---- locks and advice --------------------------------------------------- */

int mmk_file_lock(mmk_file *f, int op, uint64_t off, uint64_t n)
{
    if (!f)
        return -EINVAL;
    int kind = op & ~MMK_LOCK_NB;
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = kind == MMK_LOCK_SH ? F_RDLCK : kind == MMK_LOCK_EX ? F_WRLCK
              : kind == MMK_LOCK_UN ? F_UNLCK : -1;
    if (fl.l_type == (short)-1 || (op & ~(MMK_LOCK_NB | 3)))
        return -EINVAL;
    if (off > (uint64_t)INT64_MAX || n > (uint64_t)INT64_MAX - off)
        return -EINVAL;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)off;
    fl.l_len = (off_t)n; /* 0: to the end and beyond */
    fl.l_pid = 0;        /* required for OFD locks */
    int cmd = (op & MMK_LOCK_NB) || kind == MMK_LOCK_UN ? F_OFD_SETLK : F_OFD_SETLKW;
    int r;
    do
        r = fcntl(f->fd, cmd, &fl);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno == EACCES ? -EAGAIN : mmk__neg_errno();
    return 0;
}

int mmk_file_advise(mmk_file *f, int advice)
{
    if (!f)
        return -EINVAL;
    /* Readahead advice for the descriptor (plain transfers), madvise for
     * the windows.  DONTNEED drops cached pages, never data. */
    int fadv = -1, madv = -1;
    switch (advice) {
    case MMK_ADV_NORMAL:     fadv = POSIX_FADV_NORMAL;     madv = MADV_NORMAL; break;
    case MMK_ADV_RANDOM:     fadv = POSIX_FADV_RANDOM;     madv = MADV_RANDOM; break;
    case MMK_ADV_SEQUENTIAL: fadv = POSIX_FADV_SEQUENTIAL; madv = MADV_SEQUENTIAL; break;
    case MMK_ADV_WILLNEED:   fadv = POSIX_FADV_WILLNEED;   break;
    case MMK_ADV_DONTNEED:   fadv = POSIX_FADV_DONTNEED;   break;
#ifdef MADV_HUGEPAGE
    case MMK_ADV_HUGEPAGE:   madv = MADV_HUGEPAGE; break;
    case MMK_ADV_NOHUGEPAGE: madv = MADV_NOHUGEPAGE; break;
#endif
    case MMK_ADV_POPULATE_READ:
    case MMK_ADV_POPULATE_WRITE:
        if (f->cf)
            mmk__cache_file_advise(f->cf, -1, true);
        return 0;
    case MMK_ADV_COLD:
    case MMK_ADV_PAGEOUT:
        return 0; /* nothing to say to a descriptor; windows come and go */
    default:
        return -EINVAL;
    }
    if (fadv >= 0) {
        int r = posix_fadvise(f->fd, 0, 0, fadv);
        if (r)
            return -r;
    }
    if (madv >= 0 && f->cf)
        mmk__cache_file_advise(f->cf, madv, false);
    return 0;
}

/* ---- a FILE * on the handle (fopencookie) -------------------------------- */

static ssize_t cookie_read(void *c, char *buf, size_t n)
{
    ssize_t r = mmk_file_read(c, buf, n);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

static ssize_t cookie_write(void *c, const char *buf, size_t n)
{
    ssize_t w = mmk_file_write(c, buf, n);
    if (w < 0) {
        errno = (int)-w;
        return 0; /* fopencookie: 0 on error (a short write sets the error) */
    }
    return w;
}

static int cookie_seek(void *c, off64_t *off, int whence)
{
    int64_t r = mmk_file_seek(c, (int64_t)*off, whence);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    *off = (off64_t)r;
    return 0;
}

static int cookie_close(void *c)
{
    (void)c; /* the stream does not own the handle */
    return 0;
}

FILE *mmk_file_stdio(mmk_file *f, const char *mode)
{
    if (!f || !mode) {
        errno = EINVAL;
        return NULL;
    }
    bool wants_write = strchr(mode, 'w') || strchr(mode, 'a') || strchr(mode, '+');
    if (wants_write && !(f->flags & (MMK_RDWR | MMK_COPY))) {
        errno = EBADF;
        return NULL;
    }
    cookie_io_functions_t io = {
        .read = cookie_read,
        .write = cookie_write,
        .seek = cookie_seek,
        .close = cookie_close,
    };
    FILE *fp = fopencookie(f, mode, io);
    if (fp && strchr(mode, 'a'))
        fseeko(fp, 0, SEEK_END);
    return fp;
}
