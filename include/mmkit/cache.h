/* mmkit/cache.h — map files in windows under a budget, and pin ranges.
 *
 * Mapping whole files fails at scale: files larger than the address space,
 * thousands of files at once (vm.max_map_count), mapped memory that alarms
 * users.  A cache maps pieces of files lazily — windows, aligned blocks of a
 * fixed size — under two budgets shared by every file attached to it: bytes
 * mapped and number of mappings.  A caller pins any range [off, off + len) of
 * an attached file and gets one contiguous pointer to exactly that range:
 * ranges inside one window use that window's mapping; a range that crosses
 * window boundaries gets a mapping (a span) that covers it, which later pins
 * inside it share.  Pins hold reference counts; unpinned mappings stay mapped
 * for the next pin and are evicted least recently used first when a new
 * mapping would break a budget.  When every mapping is pinned and the budget
 * is spent, a pin fails with -ENOMEM: never an over-budget mapping.
 *
 * Hits are cheap: a pin served by a mapping that already exists makes no
 * system call and no allocation and takes no lock shared between files (a
 * per-file last-hit pointer serves sequential patterns without any lock).
 *
 * Copies in and out of windows (mmk_cache_pread, mmk_cache_pwrite) go through
 * the fault guard (mmkit/guard.h): a file truncated under the cache gives
 * short reads or errors, never SIGBUS.  Pointers from pins are raw mappings:
 * touch them inside mmk_guard_run if the file may shrink.
 *
 * Thread safety: everything here may be called from many threads at once, on
 * the same or different files, except mmk_cache_free and mmk_cache_detach,
 * which must not race with other calls on what they free.
 */
#ifndef MMKIT_CACHE_H
#define MMKIT_CACHE_H

#include <mmkit/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmk_cache mmk_cache;

/* Budgets.  0 in a field means auto:
 *   window      2 MiB on 64-bit, 256 KiB on 32-bit (a power-of-two multiple
 *               of the mapping granularity; other values are rounded up);
 *   max_maps    a quarter of vm.max_map_count (16382 by default), at least 16;
 *   max_mapped  a quarter of RLIMIT_AS if it is set, and at most 32 GiB on
 *               64-bit, 512 MiB on 32-bit; at least one window. */
typedef struct mmk_cache_opts {
    size_t max_mapped; /* bytes mapped at most, pinned or not */
    size_t max_maps;   /* mappings at most, pinned or not */
    size_t window;     /* bytes per window */
} mmk_cache_opts;

/* A new cache.  Errors: -EINVAL (NULL out), -ENOMEM. */
MMK_API int mmk_cache_new(mmk_cache **out, const mmk_cache_opts *opts);

/* Unmap everything and free the cache.  Files still attached are detached
 * (their descriptors closed); pointers from pins still held become invalid.
 * Never call it on mmk_cache_default().  NULL is a no-op. */
MMK_API void mmk_cache_free(mmk_cache *c);

/* The process-wide cache with auto budgets, made at first use. */
MMK_API mmk_cache *mmk_cache_default(void);

/* The budgets in force (auto values resolved). */
MMK_API void mmk_cache_limits(const mmk_cache *c, mmk_cache_opts *out);

typedef struct mmk_cache_stats {
    uint64_t hits;      /* pins served by an existing mapping */
    uint64_t misses;    /* pins that needed a new mapping */
    uint64_t maps;      /* mappings made */
    uint64_t unmaps;    /* mappings removed (evictions, detach, shrink) */
    uint64_t evictions; /* unpinned mappings removed to make room */
    size_t   mapped_bytes; /* now */
    size_t   mappings;     /* now */
    size_t   pins;         /* now */
} mmk_cache_stats;

/* A snapshot of the counters (each read atomically; zeros for NULL). */
MMK_API void mmk_cache_stats_get(const mmk_cache *c, mmk_cache_stats *out);

/* A pinned range: ptr is the byte at the pinned offset, len the pinned length.
 * priv_ belongs to the cache. */
typedef struct mmk_view {
    void  *ptr;
    size_t len;
    void  *priv_;
} mmk_view;

/* ---- files in a cache ------------------------------------------------- */

typedef struct mmk_cache_file mmk_cache_file;

/* Attach the open file `fd` to the cache.  The cache keeps its own duplicate
 * of fd (the caller's stays the caller's).  flags: MMK_RDONLY, MMK_RDWR (fd
 * must be open read-write; windows are shared, writes reach the file) or
 * MMK_COPY (private: writes stay in memory and never reach the file; such a
 * file is mapped whole, as one private mapping, so every pin sees every
 * write, and once written it is never evicted: its data is kept until
 * detach, and a copy file larger than max_mapped cannot be pinned).  The file's size is read now; tell the cache about later changes
 * made outside it with mmk_cache_set_size (its own pwrite keeps track).
 * Errors: -EINVAL, -EBADF, -EACCES (RDWR on a read-only fd), -EISDIR,
 * -ENODEV (not a regular file), -ENOMEM. */
MMK_API int mmk_cache_attach(mmk_cache *c, int fd, unsigned flags, mmk_cache_file **out);

/* Unmap the file's windows and close the cache's descriptor.  Does not sync
 * (mmk_cache_sync does).  -EBUSY (and nothing done) while pins are held;
 * -EINVAL for NULL. */
MMK_API int mmk_cache_detach(mmk_cache_file *f);

/* The file size the cache knows. */
MMK_API uint64_t mmk_cache_file_size(const mmk_cache_file *f);

/* The size changed outside the cache (ftruncate by the caller, say): windows
 * wholly past a smaller size that no pin holds are unmapped.  Pins past the
 * new end stay mapped; touching their pages past the end raises SIGBUS (use
 * the guard).  If size is UINT64_MAX the cache reads it with fstat.  A
 * MMK_COPY file never grows its view (it keeps what was written). */
MMK_API int mmk_cache_set_size(mmk_cache_file *f, uint64_t size);

/* Pin [off, off + len) of the file: *v gets a pointer to exactly that range,
 * valid until mmk_cache_unpin(v).  access: MMK_RDONLY or MMK_RDWR (a write
 * pin: the range counts as dirty for mmk_cache_sync).  The range must lie
 * within the file size (grow the file first to write past its end).
 * Errors: -EINVAL (NULL, len 0, off + len overflowing or past end of file),
 * -EACCES (MMK_RDWR on a read-only file), -ENOMEM (the budget is spent by
 * pins, or the range is larger than max_mapped), or mmap's error. */
MMK_API int mmk_cache_pin(mmk_cache_file *f, uint64_t off, size_t len, unsigned access,
                          mmk_view *v);

/* Release a pin; *v is cleared.  -EINVAL for NULL or a view not pinned. */
MMK_API int mmk_cache_unpin(mmk_view *v);

/* Like pread(2) through the windows: copies min(n, size - off) bytes and
 * returns the count (0 at or past end of file).  If the file shrank under the
 * cache, the read ends at the new end (a short count, or 0) as pread's would
 * — to the page: within the page holding the new end, bytes past it read as
 * zeros, as they do through any mapping.  -EIO if the storage failed;
 * -ENOMEM (or a short count ending at a window boundary) when other pins hold
 * the whole budget. */
MMK_API ssize_t mmk_cache_pread(mmk_cache_file *f, void *buf, size_t n, uint64_t off);

/* Like pwrite(2) through the windows: a write past end of file grows the file
 * first (holes read as zeros).  Returns n (or the count written before a
 * failure), or -EACCES (read-only file), -EFBIG, -ENOSPC (a full disk met by
 * the write), -EIO.  A MMK_COPY file never grows: a write is cut at its end,
 * and one starting at or past the end is -EFBIG. */
MMK_API ssize_t mmk_cache_pwrite(mmk_cache_file *f, const void *buf, size_t n, uint64_t off);

/* Make everything written through the cache (pwrite and write pins) durable:
 * msync MS_SYNC of the dirty part of each window, and fdatasync when the
 * size changed or dirty windows were evicted since the last sync.  Returns 0
 * or -EIO.  COPY and read-only files return 0. */
MMK_API int mmk_cache_sync(mmk_cache_file *f);

#ifdef __cplusplus
}
#endif
#endif /* MMKIT_CACHE_H */
