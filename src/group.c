/* src/group.c — many files as one byte array, over the window cache.
 *
 * Each file of nonzero size is attached to the cache as a lazy file: it holds
 * no descriptor, and the cache borrows one from the group's descriptor LRU
 * when it maps a window, reads or writes through the descriptor, or syncs.
 * The LRU keeps at most MMK_GROUP_MAX_FDS descriptors open (one lent out is
 * never closed), so any number of files works under a small RLIMIT_NOFILE.
 */
#include <mmkit/group.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache_internal.h"
#include "file_internal.h"
#include "os/os.h"

/* Pieces of at least this size through unmapped windows use pread/pwrite
 * (MMK_GROUP_AUTO); see mmkit/group.h. */
#define GROUP_PLAIN_MIN ((size_t)64 << 10)
#define DEFAULT_FILE_MODE 0644
#define DEFAULT_DIR_MODE 0755

typedef struct gfile {
    struct mmk_group *g;
    const char     *path;     /* copy, in the group's string block */
    uint64_t        size;
    uint64_t        start;    /* offset of its first byte in the group */
    mmk_cache_file *cf;       /* NULL for zero-size files */
    int             fd;       /* in the LRU, or -1 */
    int             users;    /* descriptors lent out (under fd_lock) */
    size_t          lru_prev, lru_next; /* indices, NONE at the ends */
    atomic_bool     written;
} gfile;

#define NONE SIZE_MAX

struct mmk_group {
    int             rootfd;
    unsigned        flags;
    int             io;
    gfile          *files;
    size_t          n;
    uint64_t        size;
    char           *strings;
    pthread_mutex_t fd_lock;
    size_t          nopen, max_fds;
    size_t          lru_head, lru_tail; /* most and least recently used */
    atomic_size_t   pins;
};

/* A view's private part: the cache views behind its iovecs. */
typedef struct gview {
    struct iovec *iov;
    mmk_view     *views;
    int           count;
} gview;

/* ---- paths ------------------------------------------------------------- */

/* Relative, no "." or ".." or empty components, no trailing slash. */
static int check_path(const char *p)
{
    if (!p)
        return -EINVAL;
    if (!*p || p[0] == '/')
        return -EXDEV;
    for (const char *c = p;;) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
            return -EXDEV;
        if (!e)
            return 0;
        c = e + 1;
    }
}

/* ---- the descriptor LRU (fd_lock held) ---------------------------------- */

static void lru_unlink(mmk_group *g, gfile *f)
{
    size_t i = (size_t)(f - g->files);
    if (f->lru_prev != NONE)
        g->files[f->lru_prev].lru_next = f->lru_next;
    else if (g->lru_head == i)
        g->lru_head = f->lru_next;
    if (f->lru_next != NONE)
        g->files[f->lru_next].lru_prev = f->lru_prev;
    else if (g->lru_tail == i)
        g->lru_tail = f->lru_prev;
    f->lru_prev = f->lru_next = NONE;
}

static void lru_push_front(mmk_group *g, gfile *f)
{
    size_t i = (size_t)(f - g->files);
    f->lru_prev = NONE;
    f->lru_next = g->lru_head;
    if (g->lru_head != NONE)
        g->files[g->lru_head].lru_prev = i;
    g->lru_head = i;
    if (g->lru_tail == NONE)
        g->lru_tail = i;
}

/* Close least recently used descriptors nobody borrowed, down to `keep`. */
static void lru_trim(mmk_group *g, size_t keep)
{
    size_t i = g->lru_tail;
    while (g->nopen > keep && i != NONE) {
        gfile *f = &g->files[i];
        size_t prev = f->lru_prev;
        if (f->users == 0) {
            lru_unlink(g, f);
            mmk__close_quiet(f->fd);
            f->fd = -1;
            g->nopen--;
        }
        i = prev;
    }
}

static int open_flags(const mmk_group *g)
{
    return ((g->flags & MMK_RDWR) ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
}

/* Open f's path; out of descriptors (the process limit, whatever ours),
 * give back the idle ones and try again (fd_lock held). */
static int open_file(mmk_group *g, gfile *f, int of, mode_t mode)
{
    int fd = mmk__open_beneath(g->rootfd, f->path, of, mode);
    if ((fd == -EMFILE || fd == -ENFILE) && g->nopen > 0) {
        lru_trim(g, 0);
        fd = mmk__open_beneath(g->rootfd, f->path, of, mode);
    }
    return fd;
}

/* The cache's fd_source.get for a file. */
static int fd_borrow(void *arg)
{
    gfile *f = arg;
    mmk_group *g = f->g;
    int rc;
    pthread_mutex_lock(&g->fd_lock);
    if (f->fd >= 0) {
        lru_unlink(g, f);
    } else {
        if (g->nopen >= g->max_fds)
            lru_trim(g, g->max_fds - 1);
        int fd = open_file(g, f, open_flags(g), 0);
        if (fd < 0) {
            pthread_mutex_unlock(&g->fd_lock);
            return fd;
        }
        f->fd = fd;
        g->nopen++;
    }
    lru_push_front(g, f);
    f->users++;
    rc = f->fd;
    pthread_mutex_unlock(&g->fd_lock);
    return rc;
}

static void fd_return(void *arg, int fd)
{
    gfile *f = arg;
    (void)fd;
    pthread_mutex_lock(&f->g->fd_lock);
    f->users--;
    pthread_mutex_unlock(&f->g->fd_lock);
}

/* ---- opening --------------------------------------------------------------- */

/* Check (read-only) or create and size (MMK_CREATE) one file. */
static int prepare_file(mmk_group *g, const mmk_group_opts *o, gfile *f)
{
    int of = open_flags(g);
    mode_t mode = o->mode ? o->mode : DEFAULT_FILE_MODE;
    int rc = 0;
    if (o->flags & MMK_CREATE) {
        if (strchr(f->path, '/') &&
            (rc = mmk__mkdirs_beneath(g->rootfd, f->path, DEFAULT_DIR_MODE)) < 0)
            return rc;
        of |= O_CREAT;
    }
    int fd = open_file(g, f, of, mode);
    if (fd < 0)
        return fd;
    struct stat st;
    if (mmk__sys.fstat(fd, &st) < 0) {
        rc = mmk__neg_errno();
    } else if (S_ISDIR(st.st_mode)) {
        rc = -EISDIR;
    } else if (!S_ISREG(st.st_mode)) {
        rc = -ENODEV;
    } else if ((uint64_t)st.st_size < f->size) {
        if (!(o->flags & MMK_CREATE))
            rc = -EINVAL; /* short */
        else if (!(o->flags & MMK_RESERVE) &&
                 mmk__sys.ftruncate(fd, (off_t)f->size) < 0)
            rc = mmk__neg_errno();
    }
    if (rc == 0 && (o->flags & MMK_RESERVE) && f->size) {
        /* fallocate allocates and, past the end, extends. */
        if (mmk__sys.fallocate(fd, 0, 0, (off_t)f->size) < 0) {
            int err = errno;
            if (err == EOPNOTSUPP || err == ENOSYS)
                err = mmk__sys.posix_fallocate(fd, 0, (off_t)f->size);
            rc = err ? -err : 0;
        }
    }
    if (rc == 0 && g->nopen < g->max_fds) {
        f->fd = fd; /* keep it for the first use */
        g->nopen++;
        lru_push_front(g, f);
        return 0;
    }
    mmk__close_quiet(fd);
    return rc;
}

static void group_free(mmk_group *g)
{
    for (size_t i = 0; i < g->n; i++) {
        if (g->files[i].cf)
            mmk_cache_detach(g->files[i].cf);
        mmk__close_quiet(g->files[i].fd);
    }
    mmk__close_quiet(g->rootfd);
    pthread_mutex_destroy(&g->fd_lock);
    free(g->files);
    free(g->strings);
    free(g);
}

int mmk_group_open(mmk_group **out, const mmk_group_entry *e, size_t n,
                   const mmk_group_opts *opts)
{
    static const mmk_group_opts defaults;
    const mmk_group_opts *o = opts ? opts : &defaults;
    if (o->failed)
        *o->failed = SIZE_MAX;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if ((!e && n) || (o->flags & ~(unsigned)(MMK_RDWR | MMK_CREATE | MMK_RESERVE)) ||
        ((o->flags & (MMK_CREATE | MMK_RESERVE)) && !(o->flags & MMK_RDWR)) ||
        o->io < MMK_GROUP_AUTO || o->io > MMK_GROUP_PLAIN)
        return -EINVAL;

    mmk_group *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->flags = o->flags;
    g->io = o->io;
    g->lru_head = g->lru_tail = NONE;
    g->rootfd = -1;
    /* Keep at most a quarter of what the process may open, and at most
     * MMK_GROUP_MAX_FDS. */
    g->max_fds = MMK_GROUP_MAX_FDS;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur / 4 < g->max_fds)
        g->max_fds = rl.rlim_cur / 4 > 1 ? (size_t)(rl.rlim_cur / 4) : 1;
    pthread_mutex_init(&g->fd_lock, NULL);
    size_t strbytes = 0, failed = SIZE_MAX;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if ((rc = check_path(e[i].path)) < 0)
            failed = i;
        else
            strbytes += strlen(e[i].path) + 1;
    }
    if (rc == 0 && n) {
        g->files = calloc(n, sizeof *g->files);
        g->strings = malloc(strbytes);
        if (!g->files || !g->strings)
            rc = -ENOMEM;
    }
    g->n = rc == 0 ? n : 0;
    uint64_t total = 0;
    char *sp = g->strings;
    for (size_t i = 0; i < g->n; i++) {
        gfile *f = &g->files[i];
        f->g = g;
        f->fd = -1;
        f->lru_prev = f->lru_next = NONE;
        size_t len = strlen(e[i].path) + 1;
        memcpy(sp, e[i].path, len);
        f->path = sp;
        sp += len;
        f->size = e[i].size;
        f->start = total;
        if (e[i].size > (uint64_t)INT64_MAX - total) {
            rc = -EOVERFLOW;
            failed = i;
            break;
        }
        total += e[i].size;
    }
    g->size = total;
    if (rc == 0) {
        g->rootfd = mmk__sys.open(o->root ? o->root : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        if (g->rootfd < 0)
            rc = mmk__neg_errno();
    }
    mmk_cache *c = o->cache ? o->cache : mmk_cache_default();
    if (rc == 0 && !c)
        rc = -ENOMEM;
    unsigned acc = (o->flags & MMK_RDWR) ? MMK_RDWR : MMK_RDONLY;
    for (size_t i = 0; rc == 0 && i < g->n; i++) {
        gfile *f = &g->files[i];
        if ((rc = prepare_file(g, o, f)) < 0) {
            failed = i;
            break;
        }
        if (f->size == 0)
            continue;
        mmk__fd_source src = { fd_borrow, fd_return, f };
        if ((rc = mmk__cache_attach_lazy(c, acc, f->size, &src, &f->cf)) < 0)
            failed = i;
    }
    if (rc < 0) {
        if (o->failed)
            *o->failed = failed;
        group_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

int mmk_group_close(mmk_group *g)
{
    if (!g)
        return -EINVAL;
    if (atomic_load(&g->pins) != 0)
        return -EBUSY;
    group_free(g);
    return 0;
}

uint64_t mmk_group_size(const mmk_group *g)
{
    return g ? g->size : 0;
}

size_t mmk_group_count(const mmk_group *g)
{
    return g ? g->n : 0;
}

/* ---- addressing ------------------------------------------------------------ */

/* The first file of nonzero size holding byte off (off < size). */
static size_t find(const mmk_group *g, uint64_t off)
{
    size_t lo = 0, hi = g->n; /* the last file with start <= off */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->files[mid].start <= off)
            lo = mid;
        else
            hi = mid;
    }
    /* Zero-size files share their start with the next file: step over. */
    while (lo < g->n && g->files[lo].start + g->files[lo].size <= off)
        lo++;
    return lo;
}

int mmk_group_locate(const mmk_group *g, uint64_t off, size_t *index, uint64_t *file_off)
{
    if (!g || off >= g->size)
        return -EINVAL;
    size_t i = find(g, off);
    if (index)
        *index = i;
    if (file_off)
        *file_off = off - g->files[i].start;
    return 0;
}

static int xfer_how(const mmk_group *g)
{
    return g->io == MMK_GROUP_MAPPED ? MMK__XFER_MAPPED
         : g->io == MMK_GROUP_PLAIN  ? MMK__XFER_PLAIN : MMK__XFER_AUTO;
}

static ssize_t transfer(mmk_group *g, void *buf, size_t n, uint64_t off, bool write)
{
    if (!g || (!buf && n))
        return -EINVAL;
    if (write && !(g->flags & MMK_RDWR))
        return -EBADF;
    if (off >= g->size || n == 0) {
        if (write && n)
            return -EINVAL;
        return 0;
    }
    if (n > g->size - off) {
        if (write)
            return -EINVAL; /* the layout is fixed */
        n = (size_t)(g->size - off);
    }
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    unsigned char *b = buf;
    size_t done = 0;
    for (size_t i = find(g, off); done < n && i < g->n; i++) {
        gfile *f = &g->files[i];
        if (f->size == 0)
            continue;
        uint64_t foff = off + done - f->start;
        size_t piece = n - done;
        if (piece > f->size - foff)
            piece = (size_t)(f->size - foff);
        ssize_t r = mmk__cache_transfer(f->cf, b + done, piece, foff, xfer_how(g),
                                        GROUP_PLAIN_MIN, write);
        if (r < 0)
            return done ? (ssize_t)done : r;
        if (write)
            atomic_store(&f->written, true);
        done += (size_t)r;
        if ((size_t)r < piece)
            return done ? (ssize_t)done : -EIO; /* a file shorter than the layout */
    }
    return (ssize_t)done;
}

ssize_t mmk_group_pread(mmk_group *g, void *buf, size_t n, uint64_t off)
{
    return transfer(g, buf, n, off, false);
}

ssize_t mmk_group_pwrite(mmk_group *g, const void *buf, size_t n, uint64_t off)
{
    return transfer(g, (void *)buf, n, off, true);
}

/* ---- views ----------------------------------------------------------------- */

int mmk_group_pin(mmk_group *g, uint64_t off, size_t n, unsigned access, mmk_group_view *v)
{
    if (!v)
        return -EINVAL;
    v->iov = NULL;
    v->iovcnt = 0;
    v->priv_ = NULL;
    if (!g || n == 0 || (access & ~(unsigned)MMK_RDWR) || off >= g->size ||
        n > g->size - off)
        return -EINVAL;
    if ((access & MMK_RDWR) && !(g->flags & MMK_RDWR))
        return -EBADF;
    size_t first = find(g, off), last = find(g, off + n - 1);
    size_t max = last - first + 1;
    if (max > INT_MAX)
        return -EINVAL;
    gview *gv = calloc(1, sizeof *gv);
    struct iovec *iov = calloc(max, sizeof *iov);
    mmk_view *views = calloc(max, sizeof *views);
    if (!gv || !iov || !views) {
        free(gv);
        free(iov);
        free(views);
        return -ENOMEM;
    }
    int cnt = 0, rc = 0;
    uint64_t at = off, end = off + n;
    for (size_t i = first; i <= last && at < end; i++) {
        gfile *f = &g->files[i];
        if (f->size == 0)
            continue;
        uint64_t foff = at - f->start;
        uint64_t piece = f->size - foff < end - at ? f->size - foff : end - at;
        if ((rc = mmk_cache_pin(f->cf, foff, (size_t)piece, access, &views[cnt])) < 0)
            break;
        if (access & MMK_RDWR)
            atomic_store(&f->written, true);
        iov[cnt].iov_base = views[cnt].ptr;
        iov[cnt].iov_len = views[cnt].len;
        cnt++;
        at += piece;
    }
    if (rc < 0) {
        while (cnt > 0)
            mmk_cache_unpin(&views[--cnt]);
        free(gv);
        free(iov);
        free(views);
        return rc;
    }
    gv->iov = iov;
    gv->views = views;
    gv->count = cnt;
    atomic_fetch_add(&g->pins, 1);
    v->iov = iov;
    v->iovcnt = cnt;
    v->priv_ = gv;
    return 0;
}

int mmk_group_unpin(mmk_group *g, mmk_group_view *v)
{
    if (!g || !v || !v->priv_)
        return -EINVAL;
    gview *gv = v->priv_;
    for (int i = 0; i < gv->count; i++)
        mmk_cache_unpin(&gv->views[i]);
    free(gv->iov);
    free(gv->views);
    free(gv);
    atomic_fetch_sub(&g->pins, 1);
    v->iov = NULL;
    v->iovcnt = 0;
    v->priv_ = NULL;
    return 0;
}

int mmk_group_sync(mmk_group *g)
{
    if (!g)
        return -EINVAL;
    int rc = 0;
    for (size_t i = 0; i < g->n; i++) {
        gfile *f = &g->files[i];
        if (!f->cf || !atomic_exchange(&f->written, false))
            continue;
        int r = mmk_cache_sync(f->cf);
        if (r < 0) {
            atomic_store(&f->written, true);
            if (rc == 0)
                rc = r;
        }
    }
    return rc;
}
