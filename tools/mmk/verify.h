/* tools/mmk/verify.h — the piece-hashing engine behind `mmk torrent verify`
 * and `mmk torrent create`: SHA-1 of every piece of a torrent, read through
 * an mmk_group, on many threads.
 *
 * The pieces to hash come as runs: `count` consecutive pieces starting with
 * piece `first`, whose bytes lie one after the other in the group from
 * `group_off` on.  A torrent whose files are all present is one run at group
 * offset 0; a verify that left missing files out of its group has one run per
 * stretch of pieces that touch no missing file.
 *
 * Work is shared by `threads` workers, each claiming batches of pieces from
 * one counter (large batches first, smaller ones at the end, so the workers
 * finish together).  Each worker hashes on its own thread and, with depth >
 * 0, has a reader thread that fetches the next chunks of its batch while it
 * hashes the current one (read-ahead), so on a machine with a spare core the
 * copy or the page faults cost no hashing time, and on a cold disk a read is
 * always waiting.  Ways to read:
 *
 *   MMK_READ_PREAD  mmk_group_pread into buffers the worker reuses;
 *   MMK_READ_PIN    mmk_group_pin: zero-copy views of the cache's windows,
 *                   faulted in by the reader (chunks never cross a window
 *                   boundary of a file, so no pin needs a span mapping),
 *                   hashed under mmk_guard_run (a file shrinking under us is
 *                   an unreadable piece, not a SIGBUS);
 *   MMK_READ_AUTO   pin inside files of at least MMK_HASH_PIN_MIN_FILE bytes,
 *                   pread elsewhere: the default.
 *
 * Measured side by side (bench/bench_torrent.c; 2-vCPU VM, SHA-NI, page
 * cache warm, fresh mappings as in a read-once verify): over a 1 GiB file,
 * one worker hashes at the SHA-1 speed of a core either way (its reader
 * copies or faults on the other core), and two workers hash 1.15x faster
 * with pins than with pread (no copy: a core's time goes to SHA-1); over
 * files of 1-2 MiB pins still win by 5%; over 20,000 files of 4-16 KiB they
 * lose (a mapping per file, and chunks spanning many files exhaust a scan
 * cache's budget).
 *
 * Thread safety: one job per call; the group may be shared with other
 * readers.
 */
#ifndef MMK_TOOL_VERIFY_H
#define MMK_TOOL_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include <mmkit/cache.h>
#include <mmkit/group.h>

#include "sha1.h"

enum { MMK_READ_AUTO = 0, MMK_READ_PREAD = 1, MMK_READ_PIN = 2 };

/* Piece states in job->status. */
enum {
    MMK_PIECE_UNCHECKED = 0, /* not hashed (not in a run, or the job stopped) */
    MMK_PIECE_GOOD,          /* the digest matches (or was stored) */
    MMK_PIECE_BAD,           /* the digest differs */
    MMK_PIECE_MISSING,       /* set by callers: a file it needs is absent */
    MMK_PIECE_UNREADABLE,    /* a read failed (job->err has the first error) */
};

/* Defaults (a value of 0 or -1 in the job picks them). */
#define MMK_HASH_CHUNK ((size_t)1 << 20) /* bytes per read or pin; measured:
                                            256 KiB-1 MiB are equal, smaller
                                            ones pay the handoff per chunk */
#define MMK_HASH_DEPTH 3                 /* chunks in flight per worker: one
                                            hashed, two read ahead */
#define MMK_HASH_MAX_THREADS 1024
/* MMK_READ_AUTO pins inside files at least this large (measured above). */
#define MMK_HASH_PIN_MIN_FILE ((uint64_t)1 << 20)

typedef struct mmk_hash_run {
    size_t   first, count;
    uint64_t group_off;
} mmk_hash_run;

typedef struct mmk_hash_job {
    /* in */
    mmk_group           *group;
    uint64_t             piece_len;
    uint64_t             total;     /* bytes of the torrent: the last piece is short */
    size_t               npieces;
    const mmk_hash_run  *runs;
    size_t               nruns;
    const unsigned char *expected;  /* npieces digests to compare with, or NULL */
    unsigned char       *digests;   /* npieces digests stored, or NULL */
    unsigned char       *status;    /* npieces MMK_PIECE_*: pieces in runs are written */
    unsigned             threads;   /* workers; 0: one per CPU we may run on */
    int                  read_mode; /* MMK_READ_AUTO, _PREAD or _PIN */
    const uint64_t      *file_sizes; /* for AUTO: the sizes of the group's files,
                                        in order (NULL: AUTO reads as PREAD) */
    size_t               nfiles;
    int                  depth;     /* chunks per worker; 0: no reader thread; -1: default */
    size_t               chunk;     /* 0: MMK_HASH_CHUNK */
    /* Called from the calling thread about 10 times a second, and once at the end. */
    void               (*progress)(void *arg, uint64_t done, uint64_t total);
    void                *progress_arg;
    /* out */
    uint64_t             bytes;     /* hashed */
    uint64_t             pinned;    /* of which hashed in place (pins) */
    double               seconds;   /* wall time of the hashing */
    unsigned             threads_used;
    size_t               good, bad, unreadable;
    int                  err;       /* the first read error, or 0 */
} mmk_hash_job;

/* Hash the pieces of the runs.  Returns 0 when every piece was handled
 * (bad and unreadable pieces included: see the counts and statuses), or a
 * negative errno if the job could not run (-EINVAL for an inconsistent job,
 * -ENOMEM, pthread_create's error). */
int mmk_hash_pieces(mmk_hash_job *job);

/* A cache for one read-once pin scan by `threads` workers: a small budget
 * (room for every worker's chunks in flight, twice over), so windows already
 * hashed are unmapped as the scan moves on instead of piling up as mapped
 * memory; mmk_cache_free it after the group.  Errors as mmk_cache_new. */
int mmk_hash_scan_cache(mmk_cache **out, unsigned threads, int depth);

/* CPUs this process may run on (at least 1). */
unsigned mmk_hash_cpus(void);

#endif
