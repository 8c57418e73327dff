/* src/cache_internal.h — what the file and group layers use of the cache
 * beyond its public API. */
#ifndef MMK_CACHE_INTERNAL_H
#define MMK_CACHE_INTERNAL_H

#include <stdbool.h>

#include <mmkit/cache.h>

/* mmk_cache_pin served only by a mapping that already exists: -ENOENT where
 * the range would need a new mapping (the caller then takes another path,
 * e.g. plain pread for a large transfer). */
int mmk__cache_pin_mapped(mmk_cache_file *f, uint64_t off, size_t len, unsigned access,
                          mmk_view *v);

/* mmk_cache_sync, with an fdatasync even when the cache saw no size change
 * (the caller wrote through the descriptor too). */
int mmk__cache_sync(mmk_cache_file *f, bool datasync);

/* The cache a file is attached to. */
mmk_cache *mmk__cache_of(const mmk_cache_file *f);

/* Pins held on the file now. */
size_t mmk__cache_file_pins(const mmk_cache_file *f);

/* madvise advice (MADV_*, or -1 for none) for the file's windows: applied to
 * those mapped now and to each new one; populate: prefault new windows
 * (MADV_POPULATE_READ, best effort). */
int mmk__cache_file_advise(mmk_cache_file *f, int madv, bool populate);

#endif
