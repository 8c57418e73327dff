/* mmkit/map.h — one mapping of a file, a file descriptor or anonymous memory.
 *
 * A map shows the caller exactly the bytes [offset, offset + len) of a file at
 * mmk_map_ptr(); page alignment is the library's business.  Every range taken by
 * the functions below is relative to that view (0 is the byte at `offset` in the
 * file), is checked for overflow, and is widened to page bounds internally.
 *
 * Thread safety: a map may be read and written through its pointer, and used
 * with mmk_map_read, mmk_map_write, mmk_map_sync, mmk_map_sync_async,
 * mmk_map_advise, mmk_map_lock, mmk_map_unlock and mmk_map_resident from many
 * threads at once.  mmk_map_protect, mmk_map_resize and mmk_map_close change
 * the mapping itself: the caller must make sure no other thread uses the map
 * (or a pointer into it) while they run.
 *
 * Errors are negative errno values (see mmkit/common.h).
 */
#ifndef MMKIT_MAP_H
#define MMKIT_MAP_H

#include <mmkit/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmk_map mmk_map;

/* Options for mmk_map_open and mmk_map_fd.  NULL or a zeroed struct means: the
 * whole file, read-only. */
typedef struct mmk_map_opts {
    uint64_t offset; /* first byte of the file to map; any value, no alignment */
    size_t   len;    /* bytes to map; 0 = from offset to end of file */
    unsigned flags;  /* MMK_RDONLY/RDWR/COPY/EXEC, CREATE, EXCL, TRUNC, NOFOLLOW,
                        POPULATE, HUGE, LOCKED, RESERVE */
    uint64_t size;   /* with MMK_RDWR: grow the file to at least this many bytes
                        before mapping (never shrinks it) */
    mode_t   mode;   /* permissions for MMK_CREATE; 0 = 0644 (the umask applies) */
} mmk_map_opts;

/* Map the file at `path` and store the new map in *out.
 *
 * Access (opts->flags):
 *   MMK_RDONLY (default)  read-only; the file is opened O_RDONLY and the
 *                         descriptor is closed before the call returns, so the
 *                         map holds no file descriptor.
 *   MMK_RDWR              shared read-write: writes through the map reach the
 *                         file.  The map keeps the descriptor (for resize and
 *                         sync).  A range reaching past end of file grows the
 *                         file to cover it, as does opts->size.
 *   MMK_COPY              private copy-on-write: writes are visible through this
 *                         map only and never reach the file (opened O_RDONLY).
 *   MMK_EXEC              may be added to any of them (PROT_EXEC); a filesystem
 *                         mounted noexec gives -EPERM.
 * Opening: MMK_CREATE (needs MMK_RDWR; mode opts->mode, default 0644, the umask
 * applies), MMK_EXCL, MMK_TRUNC (needs MMK_RDWR), MMK_NOFOLLOW (a symlink gives
 * -ELOOP).  Descriptors are opened O_CLOEXEC and O_NONBLOCK, so a FIFO never
 * blocks the call.
 *
 * Range: any opts->offset; opts->len 0 maps to end of file.  A range past end of
 * file is -EINVAL for read-only and copy maps.  An empty range (an empty file,
 * or offset at end of file with len 0) gives a valid map of length 0.
 * offset + len overflowing gives -EOVERFLOW.
 *
 * Extras: MMK_POPULATE prefaults every page and reports failure: it uses
 * madvise(MADV_POPULATE_READ / MADV_POPULATE_WRITE) where the kernel has them
 * (Linux 5.14+), where -EIO means part of the range cannot be read; on older
 * kernels it falls back to MAP_POPULATE, which cannot report failure.
 * MMK_HUGE is best effort and never an error: file maps are placed at an
 * address congruent to the file offset modulo 2 MiB and advised
 * MADV_HUGEPAGE, so the kernel can use large folios.  MMK_LOCKED mlocks the
 * map; a failure (RLIMIT_MEMLOCK: -ENOMEM or -EPERM) fails the open.
 * MMK_RESERVE (needs MMK_RDWR) allocates the blocks of the mapped range
 * (fallocate, falling back to posix_fallocate): with it, writes through the
 * map cannot meet a full disk, and a full disk fails the open with -ENOSPC
 * instead.  It holds on ext4, XFS and tmpfs.  It cannot hold where an
 * overwrite needs new blocks anyway: copy-on-write filesystems (btrfs, ZFS),
 * compressed or deduplicated ones, and NFS before v4.2, where the
 * posix_fallocate fallback only writes zeros; writes there can still fail
 * with -ENOSPC (mmk_map_write reports it; see mmkit/guard.h).  A created file keeps a descriptor of its
 * directory until close, so that mmk_map_sync can make the new name durable.
 *
 * Errors: -EINVAL (NULL out or path, bad flags, read-only range past EOF),
 * -EOVERFLOW, -EFBIG (a size past INT64_MAX), -EISDIR (a directory), -ENODEV
 * (a FIFO or device: only regular files are mapped; a socket path fails in
 * open(2) with -ENXIO), -ENOENT, -EEXIST, -EACCES, -ELOOP, -ENOMEM, -ENOSPC
 * (MMK_RESERVE or growing on a full disk), or whatever open, fstat, ftruncate
 * or mmap returned.  On error *out is set to NULL and nothing is left open or
 * mapped: a file created by this call is removed again and a file it grew is
 * shrunk back (MMK_TRUNC, done by open(2), cannot be undone). */
MMK_API int mmk_map_open(mmk_map **out, const char *path, const mmk_map_opts *opts);

/* Like mmk_map_open, on a file descriptor the caller opened.  The caller's `fd`
 * is never closed and may be closed right after the call: the map keeps its
 * own duplicate (F_DUPFD_CLOEXEC) for resize and sync, closed by
 * mmk_map_close.  The access asked for must fit how `fd` was opened (-EACCES
 * otherwise; an O_WRONLY descriptor cannot be mapped at all).  -EBADF for a
 * negative fd.  MMK_CREATE, MMK_EXCL, MMK_NOFOLLOW and opts->mode do not apply
 * (-EINVAL); MMK_TRUNC does. */
MMK_API int mmk_map_fd(mmk_map **out, int fd, const mmk_map_opts *opts);

/* Map `len` bytes of zeroed anonymous memory, read-write.  Flags: MMK_SHARED
 * (MAP_SHARED: shared with children forked later; default private),
 * MMK_EXEC, MMK_POPULATE, MMK_LOCKED, MMK_HUGE (tries MAP_HUGETLB, then falls
 * back to ordinary pages aligned to 2 MiB and advised for transparent huge
 * pages).  len 0 is -EINVAL. */
MMK_API int mmk_map_anon(mmk_map **out, size_t len, unsigned flags);

/* Unmap and free the map, and close its descriptor.  Does not sync: data
 * written through a MMK_RDWR map reaches the file through the kernel's
 * writeback, and is durable only after mmk_map_sync.  Returns 0, -EINVAL for
 * NULL, or the first error of munmap/close (the map is freed all the same). */
MMK_API int mmk_map_close(mmk_map *m);

/* The first byte of the view (file byte `offset`).  For a map of length 0 this
 * is a non-NULL pointer that must not be dereferenced.  NULL for NULL. */
MMK_API void *mmk_map_ptr(const mmk_map *m);

/* The length of the view in bytes (0 for NULL). */
MMK_API size_t mmk_map_len(const mmk_map *m);

/* The file offset of the view's first byte (0 for anonymous maps). */
MMK_API uint64_t mmk_map_offset(const mmk_map *m);

/* The MMK_ flags the map was created with, with the current access
 * (MMK_RDONLY or MMK_RDWR, after mmk_map_protect) in the access bits. */
MMK_API unsigned mmk_map_flags(const mmk_map *m);

/* Copy n bytes at view offset `off` into buf.  Returns 0, or -EINVAL (NULL map,
 * NULL buf with n > 0, off + n past the view or overflowing).  n 0 is a no-op. */
MMK_API int mmk_map_read(const mmk_map *m, size_t off, void *buf, size_t n);

/* Copy n bytes from buf into the view at `off`.  Returns 0, or -EINVAL (as
 * above), -EACCES (the map is not writable now). */
MMK_API int mmk_map_write(mmk_map *m, size_t off, const void *buf, size_t n);

/* Make [off, off + n) durable: returns only when that range of a MMK_RDWR map is
 * on stable storage (msync MS_SYNC over the pages covering it, and fdatasync
 * when the map changed the file's size; the directory entry of a file the map
 * created is synced too).  n 0 means to the end of the view.  Read-only, copy
 * and anonymous maps have nothing to write back and return 0.  Errors:
 * -EINVAL (bad range), -EIO (the storage failed: the data may be lost). */
MMK_API int mmk_map_sync(mmk_map *m, size_t off, size_t n);

/* Start writeback of [off, off + n) (n 0 = to the end) without waiting for it
 * (sync_file_range SYNC_FILE_RANGE_WRITE on Linux, msync MS_ASYNC elsewhere).
 * This is NOT durability: only mmk_map_sync is.  Use it to spread out I/O. */
MMK_API int mmk_map_sync_async(mmk_map *m, size_t off, size_t n);

/* Give the kernel advice (MMK_ADV_*) on [off, off + n) (n 0 = to the end).
 * Returns 0, -EINVAL (bad range or unknown advice), -EOPNOTSUPP (the running
 * kernel lacks this advice: COLD and PAGEOUT need Linux 5.4, POPULATE_* 5.14,
 * HUGEPAGE/NOHUGEPAGE transparent huge pages), -EACCES (POPULATE_WRITE on a map
 * that is not writable), -EIO (POPULATE_*: part of the range cannot be read,
 * e.g. the file shrank), -ENOMEM.  Beware MMK_ADV_DONTNEED on copy and
 * anonymous maps: it discards what was written there. */
MMK_API int mmk_map_advise(mmk_map *m, size_t off, size_t n, int advice);

/* Lock the pages of [off, off + n) (n 0 = to the end) in memory (mlock), or
 * unlock them.  Errors: -EINVAL, -ENOMEM (RLIMIT_MEMLOCK), -EPERM. */
MMK_API int mmk_map_lock(mmk_map *m, size_t off, size_t n);
MMK_API int mmk_map_unlock(mmk_map *m, size_t off, size_t n);

/* Change the access of the whole map: MMK_RDONLY or MMK_RDWR, optionally with
 * MMK_EXEC.  Making a map writable whose file was not opened writable (a
 * read-only map) gives -EACCES; copy and anonymous maps can always be made
 * writable.  Not thread-safe against users of the map. */
MMK_API int mmk_map_protect(mmk_map *m, unsigned access);

/* Change the length of the view to new_len; the pointer may move (mremap with
 * MREMAP_MAYMOVE), so take mmk_map_ptr() again afterwards.  A MMK_RDWR map
 * grows its file to cover the new length (never shrinks the file); read-only and
 * copy maps can grow only within the file (-EINVAL past end of file); a map
 * that holds no descriptor (read-only or copy, by path) re-opens the path to
 * check the file's size and gives -ESTALE if the file was removed or replaced.
 * new_len 0 leaves a valid empty map.  -ENOMEM if the length cannot be mapped.
 * MMK_LOCKED and MMK_POPULATE apply to the new part.  Not thread-safe against
 * users of the map.  On error the map is unchanged. */
MMK_API int mmk_map_resize(mmk_map *m, size_t new_len);

/* How many bytes of [off, off + n) (n 0 = to the end) are resident in memory
 * (mincore): stored in *bytes, counted in whole pages clipped to the range. */
MMK_API int mmk_map_resident(const mmk_map *m, size_t off, size_t n, size_t *bytes);

#ifdef __cplusplus
}
#endif
#endif /* MMKIT_MAP_H */
