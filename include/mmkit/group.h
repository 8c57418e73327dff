/* mmkit/group.h — many files seen as one byte array (BitTorrent v1 style).
 *
 * The files of a group, in order, form one address space of mmk_group_size()
 * bytes: byte 0 is the first byte of the first file, and each file follows
 * the one before.  Reads, writes and zero-copy views address that space and
 * cross file boundaries freely.  Files are mapped in windows through a cache
 * (mmkit/cache.h), so memory and mappings stay within its budget, and a
 * group opens descriptors only to map a window, to read or write through
 * the descriptor, or to sync, keeping at most MMK_GROUP_MAX_FDS of them open
 * (least recently used closed first): groups of 100,000 files work under
 * default limits.
 *
 * Paths are relative to opts->root and stay beneath it: absolute paths,
 * ".." components, empty components ("a//b", a trailing "/") and symbolic
 * links that would leave the root are refused with -EXDEV (checked with
 * openat2 RESOLVE_BENEATH where available).  Untrusted paths (from a
 * .torrent) can be passed as they are.
 *
 * Thread safety: pread, pwrite, pin, unpin, locate, size and sync may be
 * called from many threads at once on one group (on overlapping ranges the
 * bytes are as racy as with pwrite); close must not race with them.
 */
#ifndef MMKIT_GROUP_H
#define MMKIT_GROUP_H

#include <sys/uio.h>

#include <mmkit/cache.h>
#include <mmkit/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmk_group mmk_group;

/* One file: its path (relative to the root) and its size in the group. */
typedef struct mmk_group_entry {
    const char *path;
    uint64_t    size;
} mmk_group_entry;

/* How pread/pwrite move bytes.  AUTO: copy from windows already mapped,
 * plain pread/pwrite for large transfers through windows that are not (a
 * read-once scan through fresh mappings loses to pread on a VM, where the
 * first touch of a mapped page costs about 1.5 us).  MAPPED: always through
 * windows.  PLAIN: always through descriptors. */
enum { MMK_GROUP_AUTO = 0, MMK_GROUP_MAPPED = 1, MMK_GROUP_PLAIN = 2 };

/* Descriptors a group keeps open at most. */
#define MMK_GROUP_MAX_FDS 64 /* fewer under a small RLIMIT_NOFILE: a quarter of it */

typedef struct mmk_group_opts {
    unsigned    flags;   /* MMK_RDONLY or MMK_RDWR, with MMK_CREATE, MMK_RESERVE */
    const char *root;    /* the directory the paths are relative to (NULL: ".") */
    mmk_cache  *cache;   /* NULL = mmk_cache_default() */
    int         io;      /* MMK_GROUP_AUTO, _MAPPED or _PLAIN */
    mode_t      mode;    /* for created files; 0 = 0644 (the umask applies) */
    size_t     *failed;  /* if not NULL: on failure, the index of the entry
                            that failed (SIZE_MAX if none was to blame) */
} mmk_group_opts;

/* A zero-copy view of a range: iovcnt segments (one per file touched; none for
 * zero-size files), ready for writev, sendmsg or a hash update loop. */
typedef struct mmk_group_view {
    const struct iovec *iov;
    int                 iovcnt;
    void               *priv_;
} mmk_group_view;

/* Open the n entries as one group (n 0 is a valid empty group).
 * Read-only: every file must exist and hold at least its size (-ENOENT for a
 * missing file, -EINVAL for a short one; opts->failed names it).  MMK_RDWR |
 * MMK_CREATE: missing directories and files are created, short files are
 * extended to their size (never shrunk), and with MMK_RESERVE their blocks
 * are allocated up front (-ENOSPC on a full disk).  Zero-size entries are
 * allowed.  Errors: -EINVAL (NULL, bad flags, NULL path), -EXDEV (a path
 * leaves the root), -ENOENT, -EISDIR, -ENOMEM, -EOVERFLOW (sizes add past
 * INT64_MAX). */
MMK_API int mmk_group_open(mmk_group **out, const mmk_group_entry *e, size_t n,
                           const mmk_group_opts *opts);

/* Close everything.  Does not sync (mmk_group_sync does).  -EBUSY while
 * views are pinned (nothing done); -EINVAL for NULL. */
MMK_API int mmk_group_close(mmk_group *g);

/* Total bytes (0 for NULL). */
MMK_API uint64_t mmk_group_size(const mmk_group *g);

/* Number of files. */
MMK_API size_t mmk_group_count(const mmk_group *g);

/* Which file holds byte `off`, and where in it: O(log n).  Zero-size files
 * hold no byte.  -EINVAL for off >= size. */
MMK_API int mmk_group_locate(const mmk_group *g, uint64_t off, size_t *index,
                             uint64_t *file_off);

/* Read or write [off, off + n) across files, fault-safe.  pread returns the
 * count (short at the end of the group, 0 past it); pwrite writes only
 * within the group (-EINVAL past its end: a group's layout is fixed) and
 * needs MMK_RDWR (-EBADF).  -EIO if a file shrank or the storage failed. */
MMK_API ssize_t mmk_group_pread(mmk_group *g, void *buf, size_t n, uint64_t off);
MMK_API ssize_t mmk_group_pwrite(mmk_group *g, const void *buf, size_t n, uint64_t off);

/* Pin [off, off + n) (within the group) as iovecs; MMK_RDWR pins mark their
 * ranges dirty for mmk_group_sync.  Many pins may be held at once; they share
 * windows through the cache.  Errors as mmk_cache_pin, and -EINVAL. */
MMK_API int mmk_group_pin(mmk_group *g, uint64_t off, size_t n, unsigned access,
                          mmk_group_view *v);
MMK_API int mmk_group_unpin(mmk_group *g, mmk_group_view *v);

/* Make everything written through the group durable (each written file:
 * msync of its dirty windows, fdatasync as needed).  The first error. */
MMK_API int mmk_group_sync(mmk_group *g);

#ifdef __cplusplus
}
#endif
#endif /* MMKIT_GROUP_H */
