/* tests/stress/threads_disjoint.c — the map calls the header declares safe to
 * use from many threads at once (read, write, sync, sync_async, advise, lock,
 * unlock, resident), each thread on its own range of one MMK_RDWR map of a new
 * file; the file must hold every thread's last round afterwards.  The same
 * scenario as test_map's threads_on_disjoint_ranges, as a plain program so it
 * runs under ThreadSanitizer too. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <mmkit.h>

#include "stress.h"

#define THREADS 4
#define SPAN    (64 * 1024) /* bytes per thread; ranges start 1 byte into a page */
#define ROUNDS  200
#define SYNC_EVERY 50       /* rounds between durable syncs (each one is slow) */

static mmk_map *map;

static uint8_t byte_at(size_t off, unsigned id, int round)
{
    return (uint8_t)(off * 7u + id * 31u + (unsigned)round * 13u);
}

static void *worker(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    size_t base = id * (size_t)SPAN + 1;
    static __thread unsigned char buf[SPAN], back[SPAN];
    for (int r = 0; r < ROUNDS; r++) {
        for (size_t i = 0; i < SPAN; i++)
            buf[i] = byte_at(base + i, id, r);
        CHECK(mmk_map_write(map, base, buf, SPAN) == 0, "write");
        CHECK(mmk_map_read(map, base, back, SPAN) == 0, "read");
        CHECK(memcmp(buf, back, SPAN) == 0, "thread %u round %d: data", id, r);
        size_t res = 0;
        CHECK(mmk_map_resident(map, base, SPAN, &res) == 0 && res == SPAN,
              "resident %zu", res);
        CHECK(mmk_map_advise(map, base, SPAN, MMK_ADV_WILLNEED) == 0, "advise");
        CHECK(mmk_map_sync_async(map, base, SPAN) == 0, "sync_async");
        int rc = mmk_map_lock(map, base, SPAN);
        CHECK(rc == 0 || rc == -ENOMEM || rc == -EPERM || rc == -EAGAIN, "lock %d", rc);
        CHECK(mmk_map_unlock(map, base, SPAN) == 0, "unlock");
        if (r % SYNC_EVERY == SYNC_EVERY - 1)
            CHECK(mmk_map_sync(map, base, SPAN) == 0, "sync");
    }
    return NULL;
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/mmkit-stress-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    unlink(path); /* mmk_map_open creates it again */

    size_t size = THREADS * (size_t)SPAN + 2;
    CHECK(mmk_map_open(&map, path, &(mmk_map_opts){ .flags = MMK_RDWR | MMK_CREATE,
                                                    .size = size }) == 0, "open");
    pthread_t t[THREADS];
    for (unsigned i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) == 0, "thread");
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK(mmk_map_sync(map, 0, 0) == 0, "final sync");
    CHECK(mmk_map_close(map) == 0, "close");

    fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "reopen");
    static unsigned char back[SPAN];
    for (unsigned id = 0; id < THREADS; id++) {
        size_t base = id * (size_t)SPAN + 1;
        CHECK(pread(fd, back, SPAN, (off_t)base) == SPAN, "pread");
        for (size_t i = 0; i < SPAN; i++)
            CHECK(back[i] == byte_at(base + i, id, ROUNDS - 1), "thread %u byte %zu", id, i);
    }
    close(fd);
    unlink(path);
    printf("threads_disjoint: %d threads x %d rounds passed\n", THREADS, ROUNDS);
    return 0;
}
