/* tests/stress/threads_map.c — many threads on one map at once: guarded reads
 * that fault (the file shrank), reads and writes of the live part, syncs,
 * residency queries.  Every thread must see its own errors and intact data.
 * Run under ThreadSanitizer by `make check SANITIZE=thread`. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <mmkit.h>

#include "stress.h"

#define THREADS 4
#define ROUNDS 3000
#define LIVE_PAGES 16   /* each thread owns LIVE_PAGES / THREADS of them */
#define FILE_PAGES 64

static mmk_map *map;
static size_t page;

static void *worker(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    size_t per = LIVE_PAGES / THREADS * page;
    size_t base = id * per;
    unsigned char buf[512], back[512];
    for (int r = 0; r < ROUNDS; r++) {
        memset(buf, (int)(id * 31 + (unsigned)r), sizeof buf);
        size_t off = base + (size_t)r * 97 % (per - sizeof buf);
        CHECK(mmk_map_write(map, off, buf, sizeof buf) == 0, "write");
        CHECK(mmk_map_read(map, off, back, sizeof back) == 0, "read");
        CHECK(memcmp(buf, back, sizeof buf) == 0, "thread %u round %d data", id, r);
        /* Past the new end of the file: an error for this thread only. */
        int rc = mmk_map_read(map, (FILE_PAGES - 1 - (size_t)r % 8) * page, back, 64);
        CHECK(rc == -EIO, "fault read gave %d", rc);
        if (r % 500 == 0) {
            size_t res;
            CHECK(mmk_map_sync(map, base, per) == 0, "sync");
            CHECK(mmk_map_resident(map, base, per, &res) == 0 && res <= per, "resident");
        }
    }
    return NULL;
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/mmkit-stress-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(buf);
    CHECK(fd >= 0, "mkstemp");
    page = mmk_page_size();
    CHECK(ftruncate(fd, (off_t)(FILE_PAGES * page)) == 0, "ftruncate");
    CHECK(mmk_map_fd(&map, fd, &(mmk_map_opts){ .flags = MMK_RDWR }) == 0, "map");
    CHECK(ftruncate(fd, (off_t)(LIVE_PAGES * page)) == 0, "shrink");

    pthread_t t[THREADS];
    for (unsigned i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) == 0, "thread");
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);

    CHECK(mmk_map_close(map) == 0, "close");
    close(fd);
    unlink(buf);
    printf("threads_map: %d threads x %d rounds passed\n", THREADS, ROUNDS);
    return 0;
}
