/* bench/harness.h — the generic part of mmk-bench: a table of scenarios, each
 * run side by side with its baseline in interleaved rounds (A B A B ...).
 *
 * A module adds benchmarks by writing bench/bench_NAME.c with a
 * `const bench_group bench_group_NAME` (its scenarios), declaring it below and
 * listing it in bench/main.c.  A scenario is:
 *
 *   setup     prepares a state (files, mappings, buffers) outside the timed
 *             part; it may ask the harness for data files (bench_file).
 *   mmkit     does `r->ops` operations the mmkit way,
 *   baseline  does the same operations the plain way (pread, read, mmap ...).
 *             Both get the same round (ops count and seed), so they must do
 *             the same work on the same bytes, and return the same checksum
 *             of what they read: the harness compares the two and fails the
 *             scenario on a mismatch (a free correctness check).
 *   teardown  frees the state.
 *
 * The harness times each side with CLOCK_MONOTONIC, calibrates the ops count
 * once so that a round of the faster side lasts about --round-ms, and reports
 * the median of each side and the median of the per-round ratios
 * baseline time / mmkit time (> 1 means mmkit is faster).
 */
#ifndef MMK_BENCH_HARNESS_H
#define MMK_BENCH_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* What the caches look like while a scenario's operations run (printed in the
 * table: the numbers mean different things). */
typedef enum bench_state {
    BENCH_HOT,         /* page cache warm, mapping already faulted in */
    BENCH_FIRST_TOUCH, /* page cache warm, but every op maps and faults afresh */
} bench_state;

/* How one op is reported.  The ratio does not depend on it: it is always
 * baseline time / mmkit time for the same work. */
typedef enum bench_unit {
    BENCH_NS_PER_OP, /* nanoseconds per op (lower is better) */
    BENCH_US_PER_OP, /* microseconds per op (lower is better) */
    BENCH_MOPS,      /* millions of ops per second (higher is better) */
    BENCH_GBPS,      /* 10^9 bytes per second, with bench_setup.bytes_per_op */
} bench_unit;

/* One timed run of one side. */
typedef struct bench_round {
    uint64_t index; /* round number (calibration runs have their own numbers) */
    uint64_t ops;   /* how many operations to do */
    uint64_t seed;  /* seed of this round's random stream, the same for both sides */
} bench_round;

/* What a setup hands back to the harness. */
typedef struct bench_setup {
    void    *state;        /* passed to mmkit, baseline and teardown */
    uint64_t ops_multiple; /* ops per round is a multiple of this (0: any) */
    double   bytes_per_op; /* for BENCH_GBPS */
} bench_setup;

typedef struct bench_ctx bench_ctx;

/* A side: do r->ops operations, store a checksum of the bytes read in *sum.
 * Returns 0 or a negative errno. */
typedef int (*bench_fn)(void *state, const bench_round *r, uint64_t *sum);

typedef struct bench_scenario {
    const char *name;     /* unique, starts with the group name: "map-rand-4k" */
    const char *what;     /* one line for --list: "mmkit thing vs baseline thing" */
    bench_state state;
    bench_unit  unit;
    double      target;   /* the speed-up an issue asks for; 0 = none.
                             Reported as met or missed, never asserted. */
    int       (*setup)(bench_ctx *ctx, bench_setup *out); /* 0 or -errno; on
                             failure it frees what it made, out->state NULL */
    bench_fn    mmkit;
    bench_fn    baseline;
    void      (*teardown)(void *state);
} bench_scenario;

typedef struct bench_group {
    const char           *name;
    const bench_scenario *scenarios;
    size_t                count;
} bench_group;

/* The groups, one per module (bench/bench_NAME.c). */
extern const bench_group bench_group_map;
extern const bench_group bench_group_guard;
extern const bench_group bench_group_cache;
extern const bench_group bench_group_file;
extern const bench_group bench_group_ring;
extern const bench_group bench_group_torrent; /* with the mmk tool (MMK_BENCH_TORRENT) */

/* Parse the command line, run the selected scenarios, print the table.
 * Returns the process exit status. */
int bench_main(int argc, char **argv, const bench_group *const *groups, size_t ngroups);

/* ---- for setups ---------------------------------------------------------- */

/* The data size chosen by --size (or --quick), in bytes. */
uint64_t bench_size(const bench_ctx *ctx);

/* The path of a data file `name` of `size` bytes in the run's temporary
 * directory, filled with fixed-seed pseudo-random bytes, flushed to disk (so
 * no writeback runs during the measurements) and read once to warm the page
 * cache.  Made on first use and shared by every scenario asking for the same
 * name; asking again with another size is -EINVAL.  The string lives until
 * the end of the run. */
int bench_file(bench_ctx *ctx, const char *name, uint64_t size, const char **path);

/* The path of `name` in the temporary directory, registered for removal at
 * exit and on SIGINT/SIGTERM, for scenarios that make their own files. */
int bench_path(bench_ctx *ctx, const char *name, const char **path);

/* Read one word of every page of [p, p + len) (faults the pages in) and
 * return their sum. */
uint64_t bench_touch(const void *p, size_t len, size_t page);

/* Fold a checksum computed outside the timed part (in a setup) into the
 * printed one, so that the reads behind it cannot be optimised away. */
void bench_keep(uint64_t sum);

/* ---- helpers for the timed part ------------------------------------------ */

/* splitmix64: a fixed-seed generator, cheap enough to call once per op. */
static inline uint64_t bench_rand(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* A value in [0, n), n > 0.  Multiply-shift (no division) while n fits in 32
 * bits, which covers 64-byte blocks of a 256 GiB file. */
static inline uint64_t bench_rand_below(uint64_t *s, uint64_t n)
{
    uint64_t r = bench_rand(s);
    if (n <= UINT32_MAX)
        return ((r >> 32) * n) >> 32;
    return r % n;
}

static inline uint64_t bench_load64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* A checksum of a buffer just read, n >= 8: every word of a short buffer; the
 * first, middle and last words of a long one.  Reading these words keeps the
 * copy alive and catches a read of the wrong bytes (the data are random)
 * while costing both sides the same few nanoseconds. */
static inline uint64_t bench_sum_sample(const void *buf, size_t n)
{
    const unsigned char *p = buf;
    uint64_t s = 0;
    if (n <= 64) {
        for (size_t i = 0; i + 8 <= n; i += 8)
            s += bench_load64(p + i);
        return s;
    }
    return bench_load64(p) + bench_load64(p + (n / 2 & ~(size_t)7)) +
           bench_load64(p + n - 8);
}

/* The sum of all the 64-bit words of [p, p + n), n a multiple of 8: the
 * "use every byte" work of a scan. */
static inline uint64_t bench_sum_all(const void *buf, size_t n)
{
    const unsigned char *p = buf;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i += 8)
        s += bench_load64(p + i);
    return s;
}

#endif /* MMK_BENCH_HARNESS_H */
