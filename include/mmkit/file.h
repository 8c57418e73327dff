/* mmkit/file.h — a file handle that behaves like POSIX I/O, byte for byte,
 * over the window cache, and tells the truth about durability.
 *
 * read, write, seek, pread and pwrite have the semantics of their POSIX
 * namesakes: writes past end of file grow it and holes read as zeros, reads
 * stop short at end of file, one position is shared by read, write and seek,
 * MMK_APPEND writes always go to the end.  Underneath, bytes move through the
 * cache's windows (bounded memory whatever the file size), or through plain
 * pread/pwrite where that is faster (a large transfer through windows not yet
 * mapped) or where mapping is wrong: files on network or FUSE filesystems,
 * and files whose size reads 0 while they have content (/proc).  The caller
 * only sees the speed; mmk_file_mode() tells which mode a handle uses.
 *
 * Durability (opts.sync):
 *   MMK_SYNC_CLOSE     (default) mmk_file_close returns only when everything
 *                      written is on stable storage.  Costs one sync at close.
 *   MMK_SYNC_NONE      the kernel writes back in its own time; mmk_file_sync
 *                      still works.  Costs nothing.
 *   MMK_SYNC_ALWAYS    every write call is durable before it returns.  Costs
 *                      a sync (a disk flush) per write: slow, and honest.
 *   MMK_SYNC_BYTES     a sync after every sync_every bytes written.
 *   MMK_SYNC_WRITES    a sync after every sync_every write calls.
 *   MMK_SYNC_PERIODIC  a background thread syncs every sync_every
 *                      milliseconds while there is something to sync (one
 *                      thread for all such files, started with the first and
 *                      stopped with the last).
 * A sync writes back only what is dirty: msync(MS_SYNC) of the dirty part of
 * each window written through the cache, and fdatasync when the file's size
 * changed or bytes went through plain pwrite; for a handle opened with
 * MMK_CREATE, the first sync also fsyncs the file's directory, so a new
 * file's name is as durable as its bytes.  MS_ASYNC is never a sync.
 *
 * Faults: every copy between a window and the caller goes through the guard
 * (mmkit/guard.h): if another process (or handle) truncates the file, never
 * a SIGBUS.  A handle learns of such a shrink when a copy faults on a lost
 * page (reads then end at the new end, as pread's do; writes fail with
 * -EIO) or at mmk_file_size, which re-reads the size.  Until then, within the
 * page that holds the new end, reads past it see zeros and writes past it are
 * lost (the page is still mapped): call mmk_file_size after another party may
 * have shrunk the file.  MMK_APPEND is not atomic against other appenders
 * (the end is read, then written); use mmk_file_lock for that.
 *
 * Thread safety, as with POSIX descriptors: mmk_file_pread, mmk_file_pwrite,
 * mmk_file_pin/unpin, mmk_file_size, mmk_file_sync and mmk_file_lock may be
 * called from many threads at once on one handle.  mmk_file_read,
 * mmk_file_write and mmk_file_seek share the position: callers that use them
 * from several threads must serialise them.  mmk_file_truncate while other
 * threads do I/O on the same handle is safe but racy in the POSIX sense.
 * mmk_file_close must not race with anything on the handle.
 */
#ifndef MMKIT_FILE_H
#define MMKIT_FILE_H

#include <stdio.h>

#include <mmkit/cache.h>
#include <mmkit/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmk_file mmk_file;

enum { MMK_SYNC_CLOSE = 0, MMK_SYNC_NONE, MMK_SYNC_ALWAYS, MMK_SYNC_BYTES,
       MMK_SYNC_WRITES, MMK_SYNC_PERIODIC };

typedef struct mmk_file_opts {
    unsigned   flags;      /* MMK_RDONLY/RDWR/COPY, CREATE, EXCL, TRUNC, NOFOLLOW,
                              APPEND; plus advice flags MMK_POPULATE (prefetch
                              each window as it is mapped) */
    mode_t     mode;       /* for MMK_CREATE; 0 = 0644 (umask applies) */
    mmk_cache *cache;      /* NULL = mmk_cache_default() */
    int        sync;       /* MMK_SYNC_* */
    uint64_t   sync_every; /* bytes, writes or milliseconds, per `sync` */
} mmk_file_opts;

/* How a handle moves bytes. */
enum { MMK_FILE_MAPPED = 1, MMK_FILE_PLAIN = 2 };

/* Open `path`.  Access: MMK_RDONLY (default), MMK_RDWR, MMK_COPY (writes are
 * seen through this handle only and never reach the file; the file cannot
 * grow).  MMK_CREATE/EXCL/TRUNC need MMK_RDWR.  A directory gives -EISDIR; a
 * FIFO, socket or device -ENODEV (opened O_NONBLOCK: never blocks).
 * MMK_SYNC_BYTES, WRITES and PERIODIC need sync_every > 0 (-EINVAL).
 * MMK_COPY handles map the file whole (one private mapping in the cache), so
 * a copy handle on a file larger than the cache's max_mapped cannot read.
 * Errors: -EINVAL, -ENOENT, -EEXIST, -EACCES, -ELOOP, -ENOMEM, ... */
MMK_API int mmk_file_open(mmk_file **out, const char *path, const mmk_file_opts *opts);

/* Close.  With MMK_SYNC_CLOSE (and ALWAYS/BYTES/WRITES/PERIODIC: whatever is
 * not yet synced) returns only when the data is durable; the first error of
 * that sync is returned, and the handle is freed all the same.  -EINVAL for
 * NULL. */
MMK_API int mmk_file_close(mmk_file *f);

/* POSIX-like I/O.  Return a count or a negative errno: -EINVAL (NULL, bad
 * whence), -EBADF (write on a read-only handle), -EFBIG/-EOVERFLOW (offsets
 * past INT64_MAX), -EIO, -ENOSPC. */
MMK_API ssize_t mmk_file_read(mmk_file *f, void *buf, size_t n);
MMK_API ssize_t mmk_file_write(mmk_file *f, const void *buf, size_t n);
MMK_API ssize_t mmk_file_pread(mmk_file *f, void *buf, size_t n, uint64_t off);
MMK_API ssize_t mmk_file_pwrite(mmk_file *f, const void *buf, size_t n, uint64_t off);

/* SEEK_SET, SEEK_CUR, SEEK_END, and SEEK_DATA / SEEK_HOLE passed through to
 * the file (-ENXIO past the data).  Returns the new position.  A resulting
 * position below 0 is -EINVAL. */
MMK_API int64_t mmk_file_seek(mmk_file *f, int64_t off, int whence);

/* The file's size, or a negative errno. */
MMK_API int64_t mmk_file_size(mmk_file *f);

/* Shrink or grow the file (ftruncate).  Pins that reach past a smaller end
 * stay valid as memory, but their pages past the end are gone: touching them
 * directly raises SIGBUS (use mmk_guard_run), and copies through the handle
 * stop at the new end.  Never a crash inside mmkit. */
MMK_API int mmk_file_truncate(mmk_file *f, uint64_t size);

/* Make everything written so far durable (see the policies above). */
MMK_API int mmk_file_sync(mmk_file *f);

/* The handle's own descriptor (owned by the handle: do not close it). */
MMK_API int mmk_file_fd(const mmk_file *f);

/* MMK_FILE_MAPPED or MMK_FILE_PLAIN (0 for NULL). */
MMK_API int mmk_file_mode(const mmk_file *f);

/* Zero-copy view of [off, off + n) through the cache (mapped handles only:
 * -ENOTSUP in plain mode).  access MMK_RDWR marks the range dirty, so writes
 * through the pointer are flushed like any other write; the range must lie
 * within the file (grow it first with mmk_file_truncate or a write).
 * Unpin with mmk_file_unpin.  Errors as mmk_cache_pin. */
MMK_API int mmk_file_pin(mmk_file *f, uint64_t off, size_t n, unsigned access, mmk_view *v);
MMK_API int mmk_file_unpin(mmk_file *f, mmk_view *v);

/* A FILE * on the handle (fopencookie): fread, fwrite, fprintf, fgets, fseek
 * all work, at the handle's position.  fclose() flushes the stream but does
 * not close the handle.  mode as fopen's ("r", "w", "r+", "a" ...; "w" does
 * not truncate).  NULL with errno set on error. */
MMK_API FILE *mmk_file_stdio(mmk_file *f, const char *mode);

/* Record locks (open-file-description locks, F_OFD_SETLK/SETLKW): two
 * handles exclude each other even in one process.  op: MMK_LOCK_SH,
 * MMK_LOCK_EX or MMK_LOCK_UN, optionally | MMK_LOCK_NB (then -EAGAIN when
 * held elsewhere).  n 0 means from off to the end of the file and beyond.
 * Released at close. */
enum { MMK_LOCK_SH = 1, MMK_LOCK_EX = 2, MMK_LOCK_UN = 3, MMK_LOCK_NB = 8 };
MMK_API int mmk_file_lock(mmk_file *f, int op, uint64_t off, uint64_t n);

/* Advise the kernel about the access pattern of the whole file (MMK_ADV_*):
 * applied to windows now mapped and to windows mapped later, and to plain
 * reads (posix_fadvise). */
MMK_API int mmk_file_advise(mmk_file *f, int advice);

#ifdef __cplusplus
}
#endif
#endif /* MMKIT_FILE_H */
