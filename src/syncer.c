/* src/syncer.c — one background thread that syncs PERIODIC files.
 *
 * The thread sleeps until the earliest file is due, syncs the due files that
 * are dirty, and goes back to sleep.  It starts with the first registered
 * file and ends when the last one leaves; remove() waits for it, so no sync
 * runs on a file after its remove() returned.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "file_internal.h"

struct mmk__syncer {
    pthread_mutex_t lock;
    pthread_cond_t  wake;
    mmk_file       *files;
    pthread_t       thread;
    bool            running;
    unsigned        generation; /* a thread runs while this is its own */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct thread_arg {
    mmk__syncer *s;
    unsigned     generation;
};

static void *syncer_main(void *p)
{
    struct thread_arg a = *(struct thread_arg *)p;
    free(p);
    mmk__syncer *s = a.s;
    pthread_mutex_lock(&s->lock);
    while (s->generation == a.generation && s->files) {
        uint64_t now = now_ms(), next = UINT64_MAX;
        for (mmk_file *f = s->files; f; f = *mmk__file_sync_next(f)) {
            uint64_t *due = mmk__file_next_sync(f);
            if (*due <= now) {
                /* Under the lock: remove() waits for this sync to end. */
                if (mmk__file_dirty(f))
                    (void)mmk_file_sync(f); /* an error stays for the next sync */
                *due = now + mmk__file_sync_every(f);
            }
            if (*due < next)
                next = *due;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t wait = next > now ? next - now : 0;
        until.tv_sec += (time_t)(wait / 1000u);
        until.tv_nsec += (long)(wait % 1000u) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->wake, &s->lock, &until);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int mmk__syncer_new(mmk__syncer **out)
{
    mmk__syncer *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    *out = s;
    return 0;
}

void mmk__syncer_free(mmk__syncer *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    free(s);
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static mmk__syncer *global;

static void global_init(void)
{
    if (mmk__syncer_new(&global) < 0)
        global = NULL;
}

mmk__syncer *mmk__syncer_global(void)
{
    pthread_once(&global_once, global_init);
    return global;
}

int mmk__syncer_add(mmk__syncer *s, mmk_file *f)
{
    if (!s)
        return -ENOMEM;
    pthread_mutex_lock(&s->lock);
    *mmk__file_next_sync(f) = now_ms() + mmk__file_sync_every(f);
    *mmk__file_sync_next(f) = s->files;
    s->files = f;
    mmk__file_set_syncer(f, s);
    int rc = 0;
    if (!s->running) {
        struct thread_arg *a = malloc(sizeof *a);
        s->generation++;
        if (a) {
            a->s = s;
            a->generation = s->generation;
        }
        if (!a || pthread_create(&s->thread, NULL, syncer_main, a) != 0) {
            free(a);
            s->files = *mmk__file_sync_next(f);
            mmk__file_set_syncer(f, NULL);
            rc = -EAGAIN;
        } else {
            s->running = true;
        }
    } else {
        pthread_cond_signal(&s->wake); /* a new, maybe earlier, deadline */
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void mmk__syncer_remove(mmk__syncer *s, mmk_file *f)
{
    pthread_t join;
    bool must_join = false;
    pthread_mutex_lock(&s->lock);
    for (mmk_file **pp = &s->files; *pp; pp = mmk__file_sync_next(*pp)) {
        if (*pp == f) {
            *pp = *mmk__file_sync_next(f);
            break;
        }
    }
    mmk__file_set_syncer(f, NULL);
    if (!s->files && s->running) {
        s->generation++; /* tells the thread to end */
        s->running = false;
        join = s->thread;
        must_join = true;
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->lock);
    if (must_join)
        pthread_join(join, NULL);
}
