/* mmkit/common.h — errors, version, page geometry and the flags shared by
 * every mmkit module.
 *
 * Error convention (all of mmkit but the mf_* compat API): a function returns 0
 * or a count on success and a negative errno value on failure; errno itself is
 * never the only error channel.  mmk_strerror() turns either sign into text.
 *
 * Thread safety: every function in this header may be called from any thread
 * at any time.
 */
#ifndef MMKIT_COMMON_H
#define MMKIT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MMK_BUILDING) && defined(__GNUC__)
#define MMK_API __attribute__((visibility("default")))
#else
#define MMK_API
#endif

#define MMK_VERSION_MAJOR 0
#define MMK_VERSION_MINOR 1
#define MMK_VERSION_PATCH 0

/* Text for an error code; accepts -errno or errno (0 gives "Success").  The
 * string is static and must not be freed; safe from any thread. */
MMK_API const char *mmk_strerror(int err);

/* The library's version as "MAJOR.MINOR.PATCH" (of the library linked in, which
 * may differ from the MMK_VERSION_* macros a program was compiled with). */
MMK_API const char *mmk_version(void);

/* The system page size in bytes, read once. */
MMK_API size_t mmk_page_size(void);

/* The alignment a mapping's file offset must have (the page size on POSIX, the
 * allocation granularity on Windows), read once.  mmkit aligns internally, so
 * callers need this only to size things well, never to be correct. */
MMK_API size_t mmk_map_granularity(void);

/* Flags shared by map, file and group.  Access: MMK_RDONLY (0) is the default;
 * MMK_RDWR maps shared and writable (writes reach the file); MMK_COPY maps
 * private copy-on-write (writes are visible through this mapping only and never
 * reach the file); MMK_EXEC adds execute permission. */
enum {
    MMK_RDONLY   = 0,
    MMK_RDWR     = 1u << 0,
    MMK_COPY     = 1u << 1,
    MMK_EXEC     = 1u << 2,
    MMK_CREATE   = 1u << 3,  /* create the file if missing (needs MMK_RDWR) */
    MMK_EXCL     = 1u << 4,  /* with MMK_CREATE: fail with -EEXIST if it exists */
    MMK_TRUNC    = 1u << 5,  /* truncate to 0 first (needs MMK_RDWR) */
    MMK_NOFOLLOW = 1u << 6,  /* refuse a symbolic link as the last component (-ELOOP) */
    MMK_RESERVE  = 1u << 7,  /* allocate the file's blocks up front */
    MMK_POPULATE = 1u << 8,  /* prefault the mapping; a failure is reported */
    MMK_HUGE     = 1u << 9,  /* huge pages, best effort: never an error */
    MMK_LOCKED   = 1u << 10, /* mlock the mapping; a failure is reported */
    MMK_APPEND   = 1u << 11, /* file layer: every write goes to end of file */
    MMK_SHARED   = 1u << 12, /* anonymous maps: MAP_SHARED, seen by forked children */
};

/* Advice for mmk_map_advise() and the file layer (madvise(2) underneath). */
enum {
    MMK_ADV_NORMAL,
    MMK_ADV_RANDOM,
    MMK_ADV_SEQUENTIAL,
    MMK_ADV_WILLNEED,
    MMK_ADV_DONTNEED,
    MMK_ADV_HUGEPAGE,
    MMK_ADV_NOHUGEPAGE,
    MMK_ADV_POPULATE_READ,
    MMK_ADV_POPULATE_WRITE,
    MMK_ADV_COLD,
    MMK_ADV_PAGEOUT,
};

#ifdef __cplusplus
}
#endif
#endif /* MMKIT_COMMON_H */
