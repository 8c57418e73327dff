/* bench/harness.c — options, the temporary directory, data files, timing,
 * calibration, interleaved rounds, statistics and the result table.
 *
 * Method (the project's benchmark rules): on a shared virtual machine an
 * absolute time means little and a ratio measured side by side means a lot.
 * So every round runs the mmkit side then the baseline side on the same ops,
 * and the table shows the median of each and the median of the per-round
 * ratios baseline time / mmkit time.
 */
#include "harness.h"

#include <mmkit/common.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- defaults ---------------------------------------------------------- */

#define KIB ((uint64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

/* Full mode: the 1 GiB file the issue asks for; 21 rounds give medians that
 * move by a few percent between runs on a shared 2-core VM, and 50 ms rounds
 * are long against the scheduler's tick and timer noise, while the whole run
 * stays under a minute there. */
#define FULL_SIZE     GIB
#define FULL_ROUNDS   21
#define FULL_ROUND_MS 50.0

/* --quick: a file far larger than the L2 caches (so a random read still misses
 * them) and short rounds: a few seconds in all. */
#define QUICK_SIZE     (64 * MIB)
#define QUICK_ROUNDS   9
#define QUICK_ROUND_MS 10.0

/* The smallest data file the scenarios can use (one 1 MiB window). */
#define MIN_SIZE MIB

/* Seed of the data and of the random streams: fixed, so runs are comparable. */
#define DEFAULT_SEED UINT64_C(0x6d6d6b6974)

/* Calibration stops growing the ops count once the faster side of a probe run
 * takes this fraction of a round: long enough for a usable per-op time. */
#define PROBE_FRACTION 0.125
/* A round of the slower side is cut to this many times --round-ms at most, so
 * one very slow baseline cannot take the whole time budget. */
#define SLOW_SIDE_CAP 3.0
/* Calibration runs get round numbers from here up (seeds apart from rounds'). */
#define CALIBRATION_INDEX UINT64_C(1000000)

/* Data files are written in 4 MiB pieces: large aligned writes are what
 * a bulk writer does, and they leave the page cache holding the file in large
 * folios, which the kernel can map with 2 MiB entries (see map-*-huge). */
#define IO_CHUNK (4 * MIB)

/* Files the run may register for removal; names are short, relative to the
 * temporary directory, so the signal handler can unlinkat() them. */
#define MAX_TMP_FILES 1024
#define TMP_NAME_MAX  64

/* ---- state ------------------------------------------------------------- */

typedef struct bench_opts {
    uint64_t    size;     /* 0 = mode default */
    unsigned    rounds;   /* 0 = mode default */
    double      round_ms; /* 0 = mode default */
    const char *filter;
    const char *dir;
    const char *json;     /* NULL: no JSON; "-": stdout instead of the table */
    uint64_t    seed;
    bool        quick, list;
} bench_opts;

struct bench_ctx {
    bench_opts opt;
    uint64_t   size;
    unsigned   rounds;
    double     round_ms;
};

typedef struct tmp_entry {
    char     name[TMP_NAME_MAX];
    char    *path;     /* full path, malloc'd */
    uint64_t size;
    bool     data;     /* made by bench_file */
} tmp_entry;

/* The cleanup state is global because the signal handler needs it.  An entry
 * is complete before g_ntmp counts it, so the handler sees whole entries. */
static tmp_entry g_tmp[MAX_TMP_FILES];
static volatile sig_atomic_t g_ntmp;
static volatile sig_atomic_t g_have_dir;
static int  g_dirfd = -1;
static char g_dir[PATH_MAX];

/* Every checksum ends up here, and is printed, so no read can be dropped. */
static volatile uint64_t g_sink;

typedef struct result {
    const bench_scenario *sc;
    const char *group;
    int      err;
    char     errmsg[200];
    double   t_mmk, t_base;       /* median seconds per op */
    double   ratio, r_lo, r_hi;   /* median, 25th and 75th percentile */
    double   bytes_per_op;
    uint64_t ops;
    unsigned rounds;
    double   wall;                /* seconds spent on the scenario */
} result;

/* ---- small utilities --------------------------------------------------- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t seed_for(const bench_ctx *ctx, uint64_t index)
{
    uint64_t s = ctx->opt.seed ^ (index * UINT64_C(0xD1B54A32D192ED03));
    return bench_rand(&s);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (0..1) of v[0..n), n > 0, by linear interpolation; sorts v. */
static double quantile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, cmp_double);
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    if (i + 1 >= n)
        return v[n - 1];
    return v[i] + (pos - (double)i) * (v[i + 1] - v[i]);
}

static void fmt_size(char *buf, size_t cap, uint64_t v)
{
    if (v >= GIB)
        snprintf(buf, cap, "%.2f GiB", (double)v / (double)GIB);
    else if (v >= MIB)
        snprintf(buf, cap, "%.1f MiB", (double)v / (double)MIB);
    else
        snprintf(buf, cap, "%.1f KiB", (double)v / (double)KIB);
}

/* Three or four significant digits, no exponent. */
static void fmt_num(char *buf, size_t cap, double v)
{
    if (v >= 1000)
        snprintf(buf, cap, "%.0f", v);
    else if (v >= 100)
        snprintf(buf, cap, "%.1f", v);
    else if (v >= 10)
        snprintf(buf, cap, "%.2f", v);
    else
        snprintf(buf, cap, "%.3f", v);
}

static const char *state_name(bench_state s)
{
    return s == BENCH_HOT ? "hot" : "first-touch";
}

static const char *unit_name(bench_unit u)
{
    switch (u) {
    case BENCH_NS_PER_OP: return "ns/op";
    case BENCH_US_PER_OP: return "us/op";
    case BENCH_MOPS:      return "Mops/s";
    case BENCH_GBPS:      return "GB/s";
    }
    return "?";
}

/* A median time per op, in the scenario's unit. */
static double in_unit(bench_unit u, double secs_per_op, double bytes_per_op)
{
    switch (u) {
    case BENCH_NS_PER_OP: return secs_per_op * 1e9;
    case BENCH_US_PER_OP: return secs_per_op * 1e6;
    case BENCH_MOPS:      return 1e-6 / secs_per_op;
    case BENCH_GBPS:      return bytes_per_op / secs_per_op / 1e9;
    }
    return 0;
}

/* ---- temporary directory and cleanup ----------------------------------- */

/* Async-signal-safe: unlinkat and rmdir only. */
static void remove_registered(void)
{
    for (sig_atomic_t i = g_ntmp; i > 0; i--)
        (void)unlinkat(g_dirfd, g_tmp[i - 1].name, 0);
}

static void on_signal(int sig)
{
    if (g_have_dir) {
        remove_registered();
        (void)rmdir(g_dir);
        g_have_dir = 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, NULL);
    raise(sig); /* delivered with the default action once we return */
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP)
        (void)rmdir(path);
    else
        (void)unlink(path);
    return 0;
}

/* At exit: everything registered, then whatever else a scenario left. */
static void cleanup(void)
{
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    if (g_have_dir) {
        remove_registered();
        (void)nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        (void)rmdir(g_dir);
        g_have_dir = 0;
    }
    if (g_dirfd >= 0)
        close(g_dirfd);
    g_dirfd = -1;
    for (sig_atomic_t i = 0; i < g_ntmp; i++)
        free(g_tmp[i].path);
    g_ntmp = 0;
    sigprocmask(SIG_SETMASK, &old, NULL);
}

static void install_signals(void)
{
    static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE };
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaddset(&sa.sa_mask, sigs[i]);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}

static int make_tmpdir(const bench_opts *o)
{
    const char *base = o->dir ? o->dir : getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    char tmpl[PATH_MAX];
    if (snprintf(tmpl, sizeof tmpl, "%s/mmk-bench.XXXXXX", base) >= (int)sizeof tmpl)
        return -ENAMETOOLONG;

    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    int rc = 0;
    if (!mkdtemp(tmpl)) {
        rc = -errno;
    } else if ((g_dirfd = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = -errno;
        rmdir(tmpl);
    } else {
        memcpy(g_dir, tmpl, strlen(tmpl) + 1);
        g_have_dir = 1;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (rc < 0)
        fprintf(stderr, "mmk-bench: cannot make a directory in %s: %s\n", base,
                mmk_strerror(rc));
    return rc;
}

static tmp_entry *find_tmp(const char *name)
{
    for (sig_atomic_t i = 0; i < g_ntmp; i++)
        if (strcmp(g_tmp[i].name, name) == 0)
            return &g_tmp[i];
    return NULL;
}

/* Register `name` for removal (before the file exists, so a signal can never
 * leave it behind). */
static tmp_entry *register_tmp(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= TMP_NAME_MAX || strchr(name, '/') || g_ntmp >= MAX_TMP_FILES ||
        !g_have_dir) {
        errno = EINVAL;
        return NULL;
    }
    tmp_entry *e = &g_tmp[g_ntmp];
    memset(e, 0, sizeof *e);
    memcpy(e->name, name, n + 1);
    size_t plen = strlen(g_dir) + 1 + n + 1;
    if (!(e->path = malloc(plen))) {
        errno = ENOMEM;
        return NULL;
    }
    snprintf(e->path, plen, "%s/%s", g_dir, name);
    g_ntmp = g_ntmp + 1;
    return e;
}

int bench_path(bench_ctx *ctx, const char *name, const char **path)
{
    (void)ctx;
    tmp_entry *e = find_tmp(name);
    if (!e && !(e = register_tmp(name)))
        return -errno;
    *path = e->path;
    return 0;
}

/* ---- data files -------------------------------------------------------- */

static int write_all(int fd, const unsigned char *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int fill_file(int fd, uint64_t size, uint64_t seed, unsigned char *buf)
{
    uint64_t s = seed;
    for (uint64_t off = 0; off < size; off += IO_CHUNK) {
        size_t n = size - off < IO_CHUNK ? (size_t)(size - off) : IO_CHUNK;
        for (size_t i = 0; i < n; i += 8) {
            uint64_t w = bench_rand(&s);
            memcpy(buf + i, &w, n - i < 8 ? n - i : 8);
        }
        int rc = write_all(fd, buf, n, off);
        if (rc < 0)
            return rc;
    }
    /* Flush now: dirty pages written back later, in the middle of a
     * measurement, would be noise. */
    return fdatasync(fd) < 0 ? -errno : 0;
}

/* Read the file once, so its pages are in the page cache. */
static int warm_file(int fd, uint64_t size, unsigned char *buf)
{
    for (uint64_t off = 0; off < size;) {
        ssize_t r = pread(fd, buf, IO_CHUNK, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EIO; /* shorter than we wrote it */
        g_sink += bench_load64(buf);
        off += (uint64_t)r;
    }
    return 0;
}

int bench_file(bench_ctx *ctx, const char *name, uint64_t size, const char **path)
{
    tmp_entry *e = find_tmp(name);
    if (e) {
        if (!e->data || e->size != size)
            return -EINVAL;
        *path = e->path;
        return 0;
    }
    if (!(e = register_tmp(name)))
        return -errno;

    unsigned char *buf = malloc(IO_CHUNK);
    if (!buf)
        return -ENOMEM;
    int rc = 0;
    char sz[32];
    fmt_size(sz, sizeof sz, size);
    fprintf(stderr, "mmk-bench: data file %s, %s: writing and syncing ...", name, sz);
    fflush(stderr);
    double t0 = now();
    int fd = open(e->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    uint64_t hash = 0;
    for (const char *c = name; *c; c++)
        hash = hash * 131 + (unsigned char)*c;
    if ((rc = fill_file(fd, size, ctx->opt.seed ^ hash, buf)) < 0)
        goto out;
    double t1 = now();
    if ((rc = warm_file(fd, size, buf)) < 0)
        goto out;
    fprintf(stderr, " %.1f s, warming the page cache %.2f s\n", t1 - t0, now() - t1);
    e->size = size;
    e->data = true;
    *path = e->path;

    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psz > 0 && size > (uint64_t)pages * (uint64_t)psz / 2)
        fprintf(stderr, "mmk-bench: warning: %s is more than half of RAM; the page cache "
                        "may not hold it, so \"hot\" may not be hot\n", sz);
out:
    if (rc < 0)
        fprintf(stderr, " failed: %s\n", mmk_strerror(rc));
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

uint64_t bench_size(const bench_ctx *ctx)
{
    return ctx->size;
}

uint64_t bench_touch(const void *p, size_t len, size_t page)
{
    const unsigned char *c = p;
    uint64_t s = 0;
    for (size_t i = 0; i + 8 <= len; i += page)
        s += bench_load64(c + i);
    return s;
}

void bench_keep(uint64_t sum)
{
    g_sink += sum;
}

/* ---- running a scenario ------------------------------------------------ */

static int run_side(bench_fn fn, void *state, const bench_round *r, double *secs,
                    uint64_t *sum)
{
    *sum = 0;
    double t0 = now();
    int rc = fn(state, r, sum);
    *secs = now() - t0;
    g_sink += *sum;
    return rc;
}

/* One round: A (mmkit) then B (baseline) on the same ops and seed. */
static int run_pair(const bench_scenario *sc, void *state, const bench_round *r,
                    double *ta, double *tb, result *res)
{
    uint64_t sa, sb;
    int rc = run_side(sc->mmkit, state, r, ta, &sa);
    if (rc < 0) {
        snprintf(res->errmsg, sizeof res->errmsg, "mmkit side: %s", mmk_strerror(rc));
        return rc;
    }
    if ((rc = run_side(sc->baseline, state, r, tb, &sb)) < 0) {
        snprintf(res->errmsg, sizeof res->errmsg, "baseline side: %s", mmk_strerror(rc));
        return rc;
    }
    if (sa != sb) {
        snprintf(res->errmsg, sizeof res->errmsg,
                 "checksums differ (mmkit %016llx, baseline %016llx): the two sides read "
                 "different bytes", (unsigned long long)sa, (unsigned long long)sb);
        return -EIO;
    }
    if (*ta <= 0 || *tb <= 0) {
        snprintf(res->errmsg, sizeof res->errmsg, "a round took no measurable time");
        return -ERANGE;
    }
    return 0;
}

static uint64_t round_up_to(double v, uint64_t mult)
{
    if (v < (double)mult)
        return mult;
    if (v > (double)(UINT64_MAX / 2))
        v = (double)(UINT64_MAX / 2);
    uint64_t n = (uint64_t)v;
    return (n + mult - 1) / mult * mult;
}

/* Find the ops count for which a round of the faster side takes about
 * --round-ms (and the slower side at most SLOW_SIDE_CAP times that).  The
 * probe runs double as warm-up for both sides. */
static int calibrate(const bench_ctx *ctx, const bench_scenario *sc, const bench_setup *su,
                     result *res)
{
    uint64_t mult = su->ops_multiple ? su->ops_multiple : 1;
    double target = ctx->round_ms / 1e3;
    uint64_t n = mult;
    for (uint64_t k = 0;; k++) {
        bench_round r = { CALIBRATION_INDEX + k, n, seed_for(ctx, CALIBRATION_INDEX + k) };
        double ta, tb;
        int rc = run_pair(sc, su->state, &r, &ta, &tb, res);
        if (rc < 0)
            return rc;
        double tmin = ta < tb ? ta : tb, tmax = ta < tb ? tb : ta;
        if (tmin >= target * PROBE_FRACTION || n >= UINT64_MAX / 200) {
            double want = target * (double)n / tmin;
            double cap = SLOW_SIDE_CAP * target * (double)n / tmax;
            res->ops = round_up_to(want < cap ? want : cap, mult);
            return 0;
        }
        double grow = target * PROBE_FRACTION * 1.5 / tmin;
        grow = grow < 2 ? 2 : grow > 100 ? 100 : grow;
        n = round_up_to((double)n * grow, mult);
    }
}

static int run_scenario(bench_ctx *ctx, const bench_scenario *sc, result *res)
{
    bench_setup su = { NULL, 0, 0 };
    double *ta = NULL, *tb = NULL, *ratio = NULL;
    bool announced = false;
    double t0 = now();
    int rc = sc->setup(ctx, &su);
    if (rc < 0) {
        snprintf(res->errmsg, sizeof res->errmsg, "setup: %s", mmk_strerror(rc));
        goto out;
    }
    res->bytes_per_op = su.bytes_per_op;
    fprintf(stderr, "mmk-bench: %-20s ", sc->name);
    fflush(stderr);
    announced = true;
    if ((rc = calibrate(ctx, sc, &su, res)) < 0)
        goto out;

    unsigned n = ctx->rounds;
    ta = calloc(n, sizeof *ta);
    tb = calloc(n, sizeof *tb);
    ratio = calloc(n, sizeof *ratio);
    if (!ta || !tb || !ratio) {
        rc = -ENOMEM;
        snprintf(res->errmsg, sizeof res->errmsg, "%s", mmk_strerror(rc));
        goto out;
    }
    for (unsigned i = 0; i < n; i++) {
        bench_round r = { i, res->ops, seed_for(ctx, i) };
        if ((rc = run_pair(sc, su.state, &r, &ta[i], &tb[i], res)) < 0)
            goto out;
        ratio[i] = tb[i] / ta[i];
    }
    res->rounds = n;
    res->t_mmk = quantile(ta, n, 0.5) / (double)res->ops;
    res->t_base = quantile(tb, n, 0.5) / (double)res->ops;
    res->r_lo = quantile(ratio, n, 0.25);
    res->ratio = quantile(ratio, n, 0.5);
    res->r_hi = quantile(ratio, n, 0.75);

out:
    if (su.state && sc->teardown)
        sc->teardown(su.state);
    res->wall = now() - t0;
    res->err = rc;
    if (rc < 0 && !announced)
        fprintf(stderr, "mmk-bench: %-20s FAILED: %s\n", sc->name, res->errmsg);
    else if (rc < 0)
        fprintf(stderr, "FAILED: %s\n", res->errmsg);
    else
        fprintf(stderr, "%u rounds x %llu ops, %.1f s\n", res->rounds,
                (unsigned long long)res->ops, res->wall);
    free(ta);
    free(tb);
    free(ratio);
    return rc;
}

/* ---- output ------------------------------------------------------------ */

static void fmt_target(char *buf, size_t cap, const result *r)
{
    if (r->sc->target <= 0 || r->err)
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, ">=%gx %s", r->sc->target,
                 r->ratio >= r->sc->target ? "met" : "MISSED");
}

static void print_table(FILE *f, const bench_ctx *ctx, const result *res, size_t n,
                        double total)
{
    char sz[32];
    fmt_size(sz, sizeof sz, ctx->size);
    fprintf(f, "mmk-bench (mmkit %s): %s data file, %u rounds per scenario, "
               "~%g ms per round%s\n", mmk_version(), sz, ctx->rounds, ctx->round_ms,
            ctx->opt.quick ? " (--quick)" : "");
    fprintf(f, "ratio = baseline time / mmkit time for the same ops, median over rounds: "
               "> 1 means mmkit is faster\n");
    fprintf(f, "mmkit, baseline = median of each side in `unit` (per op: lower is "
               "better; per second: higher is better)\n");
    fprintf(f, "state: hot = page cache warm, mapping faulted in; first-touch = page "
               "cache warm, each op maps and faults in afresh\n");
    fprintf(f, "target = the speed-up the issue asks for: reported, not asserted\n\n");

    int w = (int)strlen("scenario");
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(res[i].sc->name) > w)
            w = (int)strlen(res[i].sc->name);
    fprintf(f, "%-*s  %-11s  %10s  %10s  %7s  %-6s  %-12s  %s\n", w, "scenario", "state",
            "mmkit", "baseline", "ratio", "unit", "ratio p25-75", "target");
    for (size_t i = 0; i < n; i++) {
        const result *r = &res[i];
        const bench_scenario *sc = r->sc;
        if (r->err) {
            fprintf(f, "%-*s  %-11s  FAILED: %s\n", w, sc->name, state_name(sc->state),
                    r->errmsg);
            continue;
        }
        char a[32], b[32], rt[32], iqr[48], tg[32];
        fmt_num(a, sizeof a, in_unit(sc->unit, r->t_mmk, r->bytes_per_op));
        fmt_num(b, sizeof b, in_unit(sc->unit, r->t_base, r->bytes_per_op));
        snprintf(rt, sizeof rt, "%.2fx", r->ratio);
        snprintf(iqr, sizeof iqr, "%.2f-%.2f", r->r_lo, r->r_hi);
        fmt_target(tg, sizeof tg, r);
        fprintf(f, "%-*s  %-11s  %10s  %10s  %7s  %-6s  %-12s  %s\n", w, sc->name,
                state_name(sc->state), a, b, rt, unit_name(sc->unit), iqr, tg);
    }
    fprintf(f, "\ntotal %.1f s; checksum of everything read %016llx\n", total,
            (unsigned long long)g_sink);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void print_json(FILE *f, const bench_ctx *ctx, const result *res, size_t n,
                       double total)
{
    fprintf(f, "{\n  \"mmkit_version\": ");
    json_string(f, mmk_version());
    fprintf(f, ",\n  \"size\": %llu,\n  \"rounds\": %u,\n  \"round_ms\": %g,\n"
               "  \"quick\": %s,\n  \"seed\": %llu,\n  \"total_s\": %.3f,\n"
               "  \"ratio\": \"baseline time / mmkit time, median of per-round ratios; "
               "> 1 means mmkit is faster\",\n  \"scenarios\": [",
            (unsigned long long)ctx->size, ctx->rounds, ctx->round_ms,
            ctx->opt.quick ? "true" : "false", (unsigned long long)ctx->opt.seed, total);
    for (size_t i = 0; i < n; i++) {
        const result *r = &res[i];
        const bench_scenario *sc = r->sc;
        fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
        json_string(f, sc->name);
        fprintf(f, ", \"group\": ");
        json_string(f, r->group);
        fprintf(f, ", \"state\": \"%s\", \"unit\": \"%s\", ", state_name(sc->state),
                unit_name(sc->unit));
        if (r->err) {
            fprintf(f, "\"error\": ");
            json_string(f, r->errmsg);
            fprintf(f, "}");
            continue;
        }
        fprintf(f, "\"mmkit\": %.6g, \"baseline\": %.6g, \"ratio\": %.4f, "
                   "\"ratio_p25\": %.4f, \"ratio_p75\": %.4f, \"mmkit_s_per_op\": %.6g, "
                   "\"baseline_s_per_op\": %.6g, \"ops_per_round\": %llu, \"rounds\": %u",
                in_unit(sc->unit, r->t_mmk, r->bytes_per_op),
                in_unit(sc->unit, r->t_base, r->bytes_per_op), r->ratio, r->r_lo, r->r_hi,
                r->t_mmk, r->t_base, (unsigned long long)r->ops, r->rounds);
        if (sc->target > 0)
            fprintf(f, ", \"target\": %g, \"target_met\": %s", sc->target,
                    r->ratio >= sc->target ? "true" : "false");
        fprintf(f, "}");
    }
    fprintf(f, "\n  ]\n}\n");
}

/* ---- command line ------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: mmk-bench [OPTION]...\n"
        "Run mmkit and a plain baseline (pread, read, mmap ...) side by side, in\n"
        "interleaved rounds in one process, and print one table: the median of each\n"
        "side and the median of the per-round ratios baseline time / mmkit time\n"
        "(> 1 means mmkit is faster).  Data are generated in a temporary directory,\n"
        "removed at exit (also on error, SIGINT or SIGTERM).\n"
        "\n"
        "  --size SIZE     data file size; suffix K, M, G or T (powers of 1024)\n"
        "                  [default 1G; 64M with --quick]\n"
        "  --rounds N      timed rounds per side and scenario [%d; %d with --quick]\n"
        "  --round-ms MS   how long a round of the faster side should last; the ops\n"
        "                  count is calibrated once per scenario [%g; %g with --quick]\n"
        "  --filter TEXT   run only the scenarios whose name contains TEXT; a comma\n"
        "                  separates alternatives (--filter rand,window)\n"
        "  --quick         smaller file, fewer and shorter rounds: a few seconds in all\n"
        "  --dir DIR       make the temporary directory inside DIR\n"
        "                  [default $TMPDIR, else /tmp]\n"
        "  --seed N        seed of the data and of the random offsets [%llu]\n"
        "  --json[=FILE]   also write the results as JSON to FILE; without FILE, print\n"
        "                  JSON on stdout instead of the table\n"
        "  --list          list the scenarios and exit\n"
        "  -h, --help      show this help and exit\n"
        "\n"
        "Exit status: 0 if every scenario ran (targets missed included: they are\n"
        "reported, not asserted), 1 if one failed, 2 on a usage error.\n",
        FULL_ROUNDS, QUICK_ROUNDS, FULL_ROUND_MS, QUICK_ROUND_MS,
        (unsigned long long)DEFAULT_SEED);
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: return -1;
    }
    if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    else if (!shift && strcmp(end, "B") == 0)
        end++;
    if (*end || v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || *s == '-' || v > max)
        return -1;
    *out = v;
    return 0;
}

enum { OPT_SIZE = 256, OPT_ROUNDS, OPT_ROUND_MS, OPT_FILTER, OPT_QUICK, OPT_DIR, OPT_SEED,
       OPT_JSON, OPT_LIST };

/* Returns 0 to run, 1 to exit successfully (--help), -1 on a usage error. */
static int parse_args(int argc, char **argv, bench_opts *o)
{
    static const struct option longopts[] = {
        { "size", required_argument, NULL, OPT_SIZE },
        { "rounds", required_argument, NULL, OPT_ROUNDS },
        { "round-ms", required_argument, NULL, OPT_ROUND_MS },
        { "filter", required_argument, NULL, OPT_FILTER },
        { "quick", no_argument, NULL, OPT_QUICK },
        { "dir", required_argument, NULL, OPT_DIR },
        { "seed", required_argument, NULL, OPT_SEED },
        { "json", optional_argument, NULL, OPT_JSON },
        { "list", no_argument, NULL, OPT_LIST },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    unsigned long long v;
    char *end;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_SIZE:
            if (parse_size(optarg, &o->size) < 0 || o->size < MIN_SIZE) {
                fprintf(stderr, "mmk-bench: bad --size '%s' (e.g. 256M, 1G; at least 1M)\n",
                        optarg);
                return -1;
            }
            break;
        case OPT_ROUNDS:
            if (parse_uint(optarg, 100000, &v) < 0 || v == 0) {
                fprintf(stderr, "mmk-bench: bad --rounds '%s'\n", optarg);
                return -1;
            }
            o->rounds = (unsigned)v;
            break;
        case OPT_ROUND_MS:
            errno = 0;
            o->round_ms = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(o->round_ms > 0 && o->round_ms < 1e6)) {
                fprintf(stderr, "mmk-bench: bad --round-ms '%s'\n", optarg);
                return -1;
            }
            break;
        case OPT_FILTER: o->filter = optarg; break;
        case OPT_QUICK: o->quick = true; break;
        case OPT_DIR: o->dir = optarg; break;
        case OPT_SEED:
            if (parse_uint(optarg, ULLONG_MAX, &v) < 0) {
                fprintf(stderr, "mmk-bench: bad --seed '%s'\n", optarg);
                return -1;
            }
            o->seed = v;
            break;
        case OPT_JSON: o->json = optarg ? optarg : "-"; break;
        case OPT_LIST: o->list = true; break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mmk-bench: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Whether `name` contains one of the comma-separated parts of `filter`. */
static bool selected(const char *name, const char *filter)
{
    if (!filter || !*filter)
        return true;
    for (const char *p = filter; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        for (const char *q = name; n && *q; q++)
            if (strncmp(q, p, n) == 0)
                return true;
        p += n + (comma ? 1 : 0);
    }
    return false;
}

int bench_main(int argc, char **argv, const bench_group *const *groups, size_t ngroups)
{
    bench_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.opt.seed = DEFAULT_SEED;
    int prc = parse_args(argc, argv, &ctx.opt);
    if (prc != 0)
        return prc > 0 ? 0 : 2;
    ctx.size = ctx.opt.size ? ctx.opt.size : ctx.opt.quick ? QUICK_SIZE : FULL_SIZE;
    ctx.rounds = ctx.opt.rounds ? ctx.opt.rounds : ctx.opt.quick ? QUICK_ROUNDS : FULL_ROUNDS;
    ctx.round_ms = ctx.opt.round_ms > 0 ? ctx.opt.round_ms
                 : ctx.opt.quick ? QUICK_ROUND_MS : FULL_ROUND_MS;

    size_t total = 0;
    for (size_t g = 0; g < ngroups; g++)
        total += groups[g]->count;
    const bench_scenario **sel = calloc(total ? total : 1, sizeof *sel);
    const char **selgroup = calloc(total ? total : 1, sizeof *selgroup);
    result *res = calloc(total ? total : 1, sizeof *res);
    if (!sel || !selgroup || !res) {
        fprintf(stderr, "mmk-bench: out of memory\n");
        free(sel);
        free(selgroup);
        free(res);
        return 1;
    }
    size_t n = 0;
    for (size_t g = 0; g < ngroups; g++)
        for (size_t i = 0; i < groups[g]->count; i++)
            if (selected(groups[g]->scenarios[i].name, ctx.opt.filter)) {
                selgroup[n] = groups[g]->name;
                sel[n++] = &groups[g]->scenarios[i];
            }

    int status = 0;
    if (ctx.opt.list) {
        for (size_t i = 0; i < n; i++)
            printf("%-20s %-11s %-6s  %s\n", sel[i]->name, state_name(sel[i]->state),
                   unit_name(sel[i]->unit), sel[i]->what);
        goto done;
    }
    if (n == 0) {
        fprintf(stderr, "mmk-bench: no scenario matches --filter '%s' (see --list)\n",
                ctx.opt.filter);
        status = 2;
        goto done;
    }

    install_signals();
    if (make_tmpdir(&ctx.opt) < 0) {
        status = 1;
        goto done;
    }
    atexit(cleanup);

    double t0 = now();
    for (size_t i = 0; i < n; i++) {
        res[i].sc = sel[i];
        res[i].group = selgroup[i];
        if (run_scenario(&ctx, sel[i], &res[i]) < 0)
            status = 1;
    }
    double elapsed = now() - t0;
    cleanup();

    bool json_stdout = ctx.opt.json && strcmp(ctx.opt.json, "-") == 0;
    if (!json_stdout)
        print_table(stdout, &ctx, res, n, elapsed);
    if (json_stdout) {
        print_json(stdout, &ctx, res, n, elapsed);
    } else if (ctx.opt.json) {
        FILE *f = fopen(ctx.opt.json, "w");
        if (!f) {
            fprintf(stderr, "mmk-bench: %s: %s\n", ctx.opt.json, strerror(errno));
            status = 1;
        } else {
            print_json(f, &ctx, res, n, elapsed);
            if (fclose(f) != 0) {
                fprintf(stderr, "mmk-bench: %s: %s\n", ctx.opt.json, strerror(errno));
                status = 1;
            }
        }
    }
done:
    free(sel);
    free(selgroup);
    free(res);
    return status;
}
