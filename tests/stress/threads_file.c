/* tests/stress/threads_file.c — many threads on file handles at once:
 *   - THREADS workers doing mmk_file_pread / pwrite / pin on disjoint ranges
 *     of one mapped handle whose private cache is far smaller than the file
 *     (windows are evicted under their feet), the last one also growing the
 *     file past its end, while a checker thread calls mmk_file_size and
 *     mmk_file_sync on the same handle;
 *   - a MMK_SYNC_PERIODIC handle written while the syncer thread syncs it;
 *   - an fs with PERIODIC defaults whose files are opened, written and closed
 *     while another thread calls mmk_fs_sync.
 * Every byte is checked against a per-thread shadow copy at the end.
 * Run under ThreadSanitizer by the TSan build (Criterion cannot). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mmkit.h>

#include "stress.h"

#define KIB       ((size_t)1 << 10)
#define THREADS   4
#define SLICE     (512 * KIB)                 /* each worker's range */
#define INITIAL   ((THREADS - 1) * SLICE + SLICE / 2) /* the last slice half past EOF */
#define ROUNDS    3000
#define WINDOW    (64 * KIB)
#define BUDGET    (256 * KIB)                 /* an eighth of the file */
#define MAX_MAPS  4
#define MAX_IO    (100 * KIB)                 /* > 64 KiB: the pwrite path too */

#define LOG_SIZE     (256 * KIB)              /* the PERIODIC file */
#define LOG_ROUNDS   4000
#define PERIODIC_MS  5
#define FS_FILES     8
#define FS_ROUNDS    150

static mmk_file *shared;
static atomic_bool workers_done;
static atomic_uint_fast64_t grown_to; /* the last worker's furthest write */

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t pick_len(uint64_t *r)
{
    uint64_t k = next_rand(r) % 100;
    if (k < 50)
        return 1 + next_rand(r) % 64;
    if (k < 80)
        return 1 + next_rand(r) % 8192;
    if (k < 95)
        return WINDOW - 100 + next_rand(r) % 200; /* about a window: crosses one */
    return 64 * KIB + 1 + next_rand(r) % (MAX_IO - 64 * KIB);
}

struct worker {
    unsigned       id;
    unsigned char *shadow; /* what its slice must hold */
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t r = w->id * 7919u + 1, base = (uint64_t)w->id * SLICE;
    unsigned char *buf = malloc(MAX_IO), *back = malloc(MAX_IO);
    CHECK(buf && back, "malloc");
    for (int round = 0; round < ROUNDS; round++) {
        size_t n = pick_len(&r);
        uint64_t off = next_rand(&r) % (SLICE - n);
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)(w->id * 61 + (unsigned)round + i * 7);
        ssize_t put = mmk_file_pwrite(shared, buf, n, base + off);
        CHECK(put == (ssize_t)n, "worker %u round %d: pwrite %zu at %llu gave %zd", w->id,
              round, n, (unsigned long long)(base + off), put);
        memcpy(w->shadow + off, buf, n);
        if (w->id == THREADS - 1) {
            uint64_t end = base + off + n, cur = atomic_load(&grown_to);
            while (end > cur && !atomic_compare_exchange_weak(&grown_to, &cur, end))
                ;
        }

        /* Read back a random part of the slice. */
        n = pick_len(&r);
        off = next_rand(&r) % (SLICE - n);
        ssize_t got = mmk_file_pread(shared, back, n, base + off);
        size_t want = n;
        if (w->id == THREADS - 1) {
            /* Only this worker grows the file: its end is known here. */
            uint64_t end = atomic_load(&grown_to);
            if (end < INITIAL)
                end = INITIAL;
            want = base + off >= end ? 0 : (size_t)(end - base - off < n ? end - base - off : n);
        }
        CHECK(got == (ssize_t)want, "worker %u round %d: pread %zu gave %zd, want %zu", w->id,
              round, n, got, want);
        CHECK(memcmp(back, w->shadow + off, want) == 0, "worker %u round %d: data", w->id,
              round);

        /* Now and then, through a pin. */
        if (round % 16 == 0 && w->id != THREADS - 1) {
            mmk_view v;
            size_t pn = 1 + next_rand(&r) % 3000;
            uint64_t po = next_rand(&r) % (SLICE - pn);
            int rc = mmk_file_pin(shared, base + po, pn, MMK_RDWR, &v);
            if (rc == -ENOMEM)
                continue; /* every mapping pinned by the others: allowed */
            CHECK(rc == 0, "worker %u: pin: %d", w->id, rc);
            CHECK(memcmp(v.ptr, w->shadow + po, pn) == 0, "worker %u: pinned data", w->id);
            memset(v.ptr, (int)(w->id + 1), pn);
            memset(w->shadow + po, (int)(w->id + 1), pn);
            CHECK(mmk_file_unpin(shared, &v) == 0, "unpin");
        }
    }
    free(buf);
    free(back);
    return NULL;
}

/* Calls that may run beside the transfers on the same handle. */
static void *checker_main(void *arg)
{
    (void)arg;
    unsigned n = 0;
    while (!atomic_load(&workers_done)) {
        int64_t size = mmk_file_size(shared);
        CHECK(size >= (int64_t)INITIAL && size <= (int64_t)(THREADS * SLICE), "size %lld",
              (long long)size);
        if (++n % 8 == 0)
            CHECK(mmk_file_sync(shared) == 0, "sync");
        usleep(1000);
    }
    return NULL;
}

/* A PERIODIC handle written while the syncer syncs it. */
static mmk_file *log_handle;
static unsigned char *log_shadow;

static void *log_main(void *arg)
{
    (void)arg;
    uint64_t r = 99;
    unsigned char buf[512];
    for (int round = 0; round < LOG_ROUNDS; round++) {
        size_t n = 1 + next_rand(&r) % sizeof buf;
        uint64_t off = next_rand(&r) % (LOG_SIZE - n);
        memset(buf, (int)(round & 0xff), n);
        CHECK(mmk_file_pwrite(log_handle, buf, n, off) == (ssize_t)n, "log pwrite");
        memcpy(log_shadow + off, buf, n);
        if (round % 500 == 0)
            usleep(2 * PERIODIC_MS * 1000); /* let the syncer find it dirty and idle */
    }
    return NULL;
}

/* An fs whose files come and go while another thread syncs them all. */
static mmk_fs *fs;
static atomic_bool fs_done;

static void *fs_writer_main(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    char name[32], buf[64];
    for (int round = 0; round < FS_ROUNDS; round++) {
        snprintf(name, sizeof name, "w%u-%d", id, round % FS_FILES);
        mmk_file *f;
        int rc = mmk_fs_open(fs, &f, name, MMK_RDWR | MMK_CREATE);
        CHECK(rc == 0, "fs open %s: %d", name, rc);
        int len = snprintf(buf, sizeof buf, "%u %d\n", id, round);
        CHECK(mmk_file_pwrite(f, buf, (size_t)len, 0) == len, "fs write");
        CHECK(mmk_file_truncate(f, (uint64_t)len) == 0, "fs truncate");
        if (round % 3 == 0)
            usleep(PERIODIC_MS * 1000);
        CHECK(mmk_file_close(f) == 0, "fs close");
    }
    return NULL;
}

static void *fs_syncer_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&fs_done)) {
        CHECK(mmk_fs_sync(fs) == 0, "mmk_fs_sync");
        usleep(500);
    }
    return NULL;
}

static void read_all(const char *path, unsigned char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open %s", path);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
        CHECK(r > 0, "pread %s", path);
        got += (size_t)r;
    }
    close(fd);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    char dir[4096], path[4200], logpath[4200], fsroot[4200];
    snprintf(dir, sizeof dir, "%s/mmkit-stress-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(dir), "mkdtemp");
    snprintf(path, sizeof path, "%s/shared", dir);
    snprintf(logpath, sizeof logpath, "%s/log", dir);
    snprintf(fsroot, sizeof fsroot, "%s/fs", dir);
    CHECK(mkdir(fsroot, 0755) == 0, "mkdir");

    /* The shared file: a known pattern, its last slice half past the end. */
    unsigned char *init = malloc(INITIAL);
    CHECK(init, "malloc");
    for (size_t i = 0; i < INITIAL; i++)
        init[i] = (unsigned char)(i * 13 + 5);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0 && write(fd, init, INITIAL) == (ssize_t)INITIAL, "create");
    close(fd);

    mmk_cache *cache;
    CHECK(mmk_cache_new(&cache, &(mmk_cache_opts){ .window = WINDOW, .max_mapped = BUDGET,
                                                   .max_maps = MAX_MAPS }) == 0, "cache");
    CHECK(mmk_file_open(&shared, path, &(mmk_file_opts){ .flags = MMK_RDWR, .cache = cache,
                                                         .sync = MMK_SYNC_NONE }) == 0, "open");
    CHECK(mmk_file_mode(shared) == MMK_FILE_MAPPED, "mapped");

    struct worker w[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        w[i].id = i;
        w[i].shadow = calloc(1, SLICE);
        CHECK(w[i].shadow, "malloc");
        size_t have = INITIAL > i * SLICE ? INITIAL - i * SLICE : 0;
        memcpy(w[i].shadow, init + i * SLICE, have < SLICE ? have : SLICE);
    }

    log_shadow = calloc(1, LOG_SIZE);
    CHECK(log_shadow, "malloc");
    CHECK(mmk_file_open(&log_handle, logpath, &(mmk_file_opts){ .flags = MMK_RDWR | MMK_CREATE,
                                                          .cache = cache,
                                                          .sync = MMK_SYNC_PERIODIC,
                                                          .sync_every = PERIODIC_MS }) == 0,
          "open log");
    CHECK(mmk_file_truncate(log_handle, LOG_SIZE) == 0, "size log");

    CHECK(mmk_fs_new(&fs, fsroot, &(mmk_file_opts){ .sync = MMK_SYNC_PERIODIC,
                                                    .sync_every = PERIODIC_MS }) == 0, "fs");

    pthread_t t[THREADS], checker, logger, fsw[2], fss;
    for (unsigned i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker_main, &w[i]) == 0, "thread");
    CHECK(pthread_create(&checker, NULL, checker_main, NULL) == 0, "thread");
    CHECK(pthread_create(&logger, NULL, log_main, NULL) == 0, "thread");
    for (unsigned i = 0; i < 2; i++)
        CHECK(pthread_create(&fsw[i], NULL, fs_writer_main, (void *)(uintptr_t)i) == 0, "thread");
    CHECK(pthread_create(&fss, NULL, fs_syncer_main, NULL) == 0, "thread");

    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    atomic_store(&workers_done, true);
    pthread_join(checker, NULL);
    pthread_join(logger, NULL);
    for (unsigned i = 0; i < 2; i++)
        pthread_join(fsw[i], NULL);
    atomic_store(&fs_done, true);
    pthread_join(fss, NULL);

    /* The shared file, read through a descriptor of our own. */
    uint64_t end = atomic_load(&grown_to);
    if (end < INITIAL)
        end = INITIAL;
    CHECK(mmk_file_size(shared) == (int64_t)end, "final size %lld, want %llu",
          (long long)mmk_file_size(shared), (unsigned long long)end);
    CHECK(mmk_file_close(shared) == 0, "close");
    unsigned char *all = malloc(end);
    CHECK(all, "malloc");
    read_all(path, all, end);
    for (unsigned i = 0; i < THREADS; i++) {
        size_t n = end - (uint64_t)i * SLICE < SLICE ? (size_t)(end - (uint64_t)i * SLICE) : SLICE;
        for (size_t j = 0; j < n; j++)
            CHECK(all[(size_t)i * SLICE + j] == w[i].shadow[j], "slice %u byte %zu", i, j);
    }

    CHECK(mmk_file_close(log_handle) == 0, "close log");
    unsigned char *logall = malloc(LOG_SIZE);
    CHECK(logall, "malloc");
    read_all(logpath, logall, LOG_SIZE);
    CHECK(memcmp(logall, log_shadow, LOG_SIZE) == 0, "the PERIODIC file");

    CHECK(mmk_fs_free(fs) == 0, "fs free");
    for (unsigned i = 0; i < 2; i++) {
        for (int k = 0; k < FS_FILES; k++) {
            char p[4300], want[64], got[64] = { 0 };
            snprintf(p, sizeof p, "%s/w%u-%d", fsroot, i, k);
            int last = FS_ROUNDS - 1; /* back to the last round that wrote it */
            while (last % FS_FILES != k)
                last--;
            int len = snprintf(want, sizeof want, "%u %d\n", i, last);
            int rfd = open(p, O_RDONLY | O_CLOEXEC);
            CHECK(rfd >= 0, "open %s", p);
            CHECK(read(rfd, got, sizeof got) == len && memcmp(got, want, (size_t)len) == 0,
                  "%s holds \"%s\"", p, got);
            close(rfd);
            unlink(p);
        }
    }

    mmk_cache_stats st;
    mmk_cache_stats_get(cache, &st);
    CHECK(st.evictions > 0, "the budget was meant to force evictions");
    CHECK(st.pins == 0, "pins left: %zu", st.pins);
    mmk_cache_free(cache);
    unlink(path);
    unlink(logpath);
    rmdir(fsroot);
    rmdir(dir);
    for (unsigned i = 0; i < THREADS; i++)
        free(w[i].shadow);
    free(init);
    free(all);
    free(logall);
    free(log_shadow);
    printf("threads_file: %d workers x %d rounds on one handle (%zu KiB budget for a %zu KiB "
           "file, %llu evictions), a PERIODIC handle, an fs: passed\n",
           THREADS, ROUNDS, BUDGET / KIB, (size_t)(THREADS * SLICE / KIB),
           (unsigned long long)st.evictions);
    return 0;
}
