/* src/cache_internal.h — what the file and group layers use of the cache
 * beyond its public API. */
#ifndef MMK_CACHE_INTERNAL_H
#define MMK_CACHE_INTERNAL_H

#include <stdbool.h>
#include <sys/types.h>

#include <mmkit/cache.h>

/* mmk_cache_pin served only by a mapping that already exists: -ENOENT where
 * the range would need a new mapping (the caller then takes another path,
 * e.g. plain pread for a large transfer). */
int mmk__cache_pin_mapped(mmk_cache_file *f, uint64_t off, size_t len, unsigned access,
                          mmk_view *v);

/* mmk_cache_sync, with an fdatasync even when the cache saw no size change
 * (the caller wrote through the descriptor too). */
int mmk__cache_sync(mmk_cache_file *f, bool datasync);

/* Where a lazy file gets a descriptor when it needs one (to map a window,
 * grow, fstat or fdatasync): get returns one (or -errno), put gives it back. */
typedef struct mmk__fd_source {
    int  (*get)(void *arg);
    void (*put)(void *arg, int fd);
    void  *arg;
} mmk__fd_source;

/* Attach a file that holds no descriptor of its own, of the given size
 * (flags as mmk_cache_attach).  Detach as usual. */
int mmk__cache_attach_lazy(mmk_cache *c, unsigned flags, uint64_t size,
                           const mmk__fd_source *src, mmk_cache_file **out);

/* Read or write [off, off + n) within the known size, each window-sized
 * piece by the path `how` says: MMK__XFER_AUTO copies from windows already
 * mapped and uses the descriptor (pread/pwrite) for pieces of plain_min
 * bytes or more through windows that are not, mapping the window for smaller
 * ones; MAPPED always maps; PLAIN always uses the descriptor (COPY files
 * always map).  Never grows the file.  Returns the count (short if the file
 * ended early) or a negative errno. */
enum { MMK__XFER_AUTO = 0, MMK__XFER_MAPPED = 1, MMK__XFER_PLAIN = 2 };
ssize_t mmk__cache_transfer(mmk_cache_file *f, void *buf, size_t n, uint64_t off, int how,
                            size_t plain_min, bool write);

/* Whether mapping one more window now would evict another (the budget is
 * full): transfers then prefer the descriptor. */
bool mmk__cache_would_evict(const mmk_cache_file *f);

/* The cache a file is attached to. */
mmk_cache *mmk__cache_of(const mmk_cache_file *f);

/* Pins held on the file now. */
size_t mmk__cache_file_pins(const mmk_cache_file *f);

/* madvise advice (MADV_*, or -1 for none) for the file's windows: applied to
 * those mapped now and to each new one; populate: prefault new windows
 * (MADV_POPULATE_READ, best effort). */
int mmk__cache_file_advise(mmk_cache_file *f, int madv, bool populate);

#endif
