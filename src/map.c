/* src/map.c — one mapping of a file, a descriptor or anonymous memory.
 *
 * The caller sees [offset, offset + len) of the file; underneath, the mapping
 * starts at the page below `offset` (base) and runs to the page above the end
 * (map_len bytes).  `delta` is the distance from base to the caller's first
 * byte.  Every range the caller passes is relative to the view and is widened
 * to pages here, in one place (page_span).
 */
#include <mmkit/map.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guard_internal.h"
#include "os/os.h"

/* Linux UAPI values, for headers older than the kernels we run on. */
#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef SYNC_FILE_RANGE_WRITE
#define SYNC_FILE_RANGE_WRITE 2
#endif

/* Flags each constructor accepts. */
#define MAP_OPEN_FLAGS                                                          \
    (MMK_RDWR | MMK_COPY | MMK_EXEC | MMK_CREATE | MMK_EXCL | MMK_TRUNC |       \
     MMK_NOFOLLOW | MMK_RESERVE | MMK_POPULATE | MMK_HUGE | MMK_LOCKED)
#define MAP_FD_FLAGS (MAP_OPEN_FLAGS & ~(unsigned)(MMK_CREATE | MMK_EXCL | MMK_NOFOLLOW))
#define MAP_ANON_FLAGS                                                          \
    (MMK_RDWR | MMK_SHARED | MMK_EXEC | MMK_POPULATE | MMK_LOCKED | MMK_HUGE)

/* Default permissions of files we create: rw-r--r--, before the umask. */
#define MMK_DEFAULT_MODE 0644

/* Rounds of "open, else create exclusively" before giving up on knowing
 * whether we created the file (see open_path). */
#define CREATE_RACE_ROUNDS 4

/* mincore() results are gathered this many pages at a time, on the stack. */
#define RESIDENT_CHUNK_PAGES 4096

struct mmk_map {
    unsigned char *base;     /* start of the mapping (page aligned); NULL if empty */
    size_t         map_len;  /* bytes mapped at base, a multiple of granule */
    size_t         delta;    /* view start - base */
    size_t         len;      /* view length */
    uint64_t       offset;   /* file offset of the view start */
    size_t         granule;  /* page size, or the huge page size for MAP_HUGETLB */
    unsigned       flags;    /* flags at creation */
    int            prot;     /* current PROT_* */
    int            mflags;   /* MAP_SHARED or MAP_PRIVATE, | MAP_ANONYMOUS ... */
    int            fd;       /* descriptor held by the map, or -1 */
    int            dirfd;    /* directory of a file we created, or -1 */
    atomic_bool    dir_pending;    /* that directory entry is not yet synced */
    bool           anon;
    bool           writable_file;  /* the file is open for writing */
    atomic_bool    size_changed;   /* we changed the file's size since a sync */
    char          *path;     /* read-only or copy map by path: to re-open on resize */
    dev_t          dev;      /* identity of the file, to detect replacement */
    ino_t          ino;
};

/* What mmk_map_ptr returns for an empty view: valid, never dereferenced. */
static unsigned char empty_view[1];

/* Whether madvise(MADV_POPULATE_*) works here: 1 yes, 0 no, -1 unknown. */
static atomic_int populate_supported = -1;

static size_t round_up(size_t v, size_t a, bool *ovf)
{
    size_t r = v % a;
    if (r == 0)
        return v;
    if (v > SIZE_MAX - (a - r)) {
        *ovf = true;
        return 0;
    }
    return v + (a - r);
}

/* ---- placement --------------------------------------------------------- */

/* mmap at an address congruent to `phase` modulo `align`, so a huge-page-sized
 * piece of the file (or of anonymous memory) can be backed by one huge page.
 * Reserves len + align bytes of address space, maps over the right spot and
 * gives back the rest.  Falls back to an ordinary mmap if it cannot reserve. */
static void *mmap_aligned(size_t len, size_t align, uint64_t phase, int prot, int flags,
                          int fd, off_t off)
{
    if (len > SIZE_MAX - align)
        return mmk__sys.mmap(NULL, len, prot, flags, fd, off);
    size_t span = len + align;
    unsigned char *res = mmk__sys.mmap(NULL, span, PROT_NONE,
                                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED)
        return mmk__sys.mmap(NULL, len, prot, flags, fd, off);
    uintptr_t start = (uintptr_t)res;
    uintptr_t want = (uintptr_t)(phase % align);
    uintptr_t skip = (want - start % align + align) % align;
    unsigned char *at = res + skip;
    void *p = mmk__sys.mmap(at, len, prot, flags | MAP_FIXED, fd, off);
    if (p == MAP_FAILED) {
        int saved = errno;
        mmk__sys.munmap(res, span);
        errno = saved;
        return MAP_FAILED;
    }
    if (skip > 0)
        mmk__sys.munmap(res, skip);
    if (span - skip - len > 0)
        mmk__sys.munmap(at + len, span - skip - len);
    return p;
}

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* A fresh mapping may reuse addresses AddressSanitizer remembers as freed
 * heap; tell it the new pages are valid memory. */
#define FRESH_PAGES(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define FRESH_PAGES(p, n) ((void)0)
#endif

/* Map `len` bytes (a multiple of the granule) for m, at file offset `aoff`. */
static void *map_pages(const mmk_map *m, int fd, uint64_t aoff, size_t len, int extra)
{
    int flags = m->mflags | extra;
    if (m->flags & MMK_HUGE) {
        void *p = mmap_aligned(len, mmk__huge_page_size(), aoff, m->prot, flags, fd,
                               (off_t)aoff);
        if (p != MAP_FAILED)
            (void)mmk__sys.madvise(p, len, MADV_HUGEPAGE); /* best effort */
        return p;
    }
    return mmk__sys.mmap(NULL, len, m->prot, flags, fd, (off_t)aoff);
}

/* Prefault [p, p + len): MADV_POPULATE_* where the kernel has them, otherwise
 * map the same pages again with MAP_POPULATE (which cannot report failure).
 * File maps populate for reading so that nothing is dirtied; anonymous maps for
 * writing, which is what allocates their memory. */
static int populate(const mmk_map *m, int fd, void *p, size_t len, uint64_t aoff)
{
    int adv = m->anon ? MADV_POPULATE_WRITE : MADV_POPULATE_READ;
    if (atomic_load(&populate_supported) != 0) {
        if (mmk__sys.madvise(p, len, adv) == 0) {
            atomic_store(&populate_supported, 1);
            return 0;
        }
        if (errno == EFAULT)
            return -EIO; /* a page cannot be read: it would have been a SIGBUS */
        if (errno != EINVAL || atomic_load(&populate_supported) == 1)
            return mmk__neg_errno();
        atomic_store(&populate_supported, 0);
    }
    void *q = mmk__sys.mmap(p, len, m->prot, m->mflags | MAP_FIXED | MAP_POPULATE, fd,
                            m->anon ? 0 : (off_t)aoff);
    return q == MAP_FAILED ? mmk__neg_errno() : 0;
}

/* Map [aoff, aoff + len) at a fresh address, with populate and lock as the
 * flags ask.  On success stores the address in *out. */
static int map_fresh(const mmk_map *m, int fd, uint64_t aoff, size_t len,
                     unsigned char **out)
{
    void *p = map_pages(m, fd, aoff, len, 0);
    if (p == MAP_FAILED)
        return mmk__neg_errno();
    FRESH_PAGES(p, len);
    int rc = 0;
    if (m->flags & MMK_POPULATE)
        rc = populate(m, fd, p, len, aoff);
    if (rc == 0 && (m->flags & MMK_LOCKED) && mmk__sys.mlock(p, len) < 0)
        rc = mmk__neg_errno();
    if (rc < 0) {
        mmk__sys.munmap(p, len);
        return rc;
    }
    *out = p;
    return 0;
}

/* ---- construction ------------------------------------------------------ */

static mmk_map *map_alloc(unsigned flags)
{
    /* The fault handler goes in with the first map (unless opted out); a
     * failure to install leaves copies unguarded, which mmk_guard_active
     * reports. */
    (void)mmk__guard_ensure();
    mmk_map *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->fd = -1;
    m->dirfd = -1;
    m->flags = flags;
    m->granule = mmk__page_size();
    atomic_init(&m->size_changed, false);
    atomic_init(&m->dir_pending, false);
    return m;
}

static void map_free(mmk_map *m)
{
    if (m->base)
        mmk__sys.munmap(m->base, m->map_len);
    mmk__close_quiet(m->fd);
    mmk__close_quiet(m->dirfd);
    free(m->path);
    free(m);
}

static int check_access_flags(unsigned flags)
{
    if ((flags & MMK_RDWR) && (flags & MMK_COPY))
        return -EINVAL;
    if ((flags & (MMK_CREATE | MMK_TRUNC | MMK_RESERVE)) && !(flags & MMK_RDWR))
        return -EINVAL;
    if ((flags & MMK_EXCL) && !(flags & MMK_CREATE))
        return -EINVAL;
    return 0;
}

/* Set the file's size to `size` if it is smaller (RDWR maps only). */
static int grow_file(mmk_map *m, int fd, uint64_t *file_size, uint64_t size)
{
    if (size <= *file_size)
        return 0;
    if (size > (uint64_t)INT64_MAX)
        return -EFBIG;
    if (mmk__sys.ftruncate(fd, (off_t)size) < 0)
        return mmk__neg_errno();
    atomic_store(&m->size_changed, true);
    *file_size = size;
    return 0;
}

/* Allocate the blocks of [off, off + len) so writes cannot meet a full disk. */
static int reserve_blocks(int fd, uint64_t off, size_t len)
{
    if (len == 0)
        return 0;
    if (mmk__sys.fallocate(fd, 0, (off_t)off, (off_t)len) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS)
        return mmk__neg_errno();
    int err = mmk__sys.posix_fallocate(fd, (off_t)off, (off_t)len);
    return err ? -err : 0;
}

/* Common to mmk_map_open and mmk_map_fd: size the file, pick the range, map.
 * On failure a file this call grew is shrunk back to its size before. */
static int map_setup(mmk_map *m, int fd, uint64_t file_size, const mmk_map_opts *o)
{
    const uint64_t orig_size = file_size;
    unsigned flags = m->flags;
    uint64_t offset = o->offset;
    size_t len = o->len;
    bool ovf = false;
    int rc;

    if (offset > (uint64_t)INT64_MAX || (len && offset > UINT64_MAX - len))
        return -EOVERFLOW;
    if (flags & MMK_RDWR) {
        if ((rc = grow_file(m, fd, &file_size, o->size)) < 0)
            goto fail;
        if (len && (rc = grow_file(m, fd, &file_size, offset + len)) < 0)
            goto fail;
    }
    rc = -EINVAL;
    if (offset > file_size)
        goto fail;
    if (len == 0) {
        rc = -EOVERFLOW;
        if (file_size - offset > SIZE_MAX)
            goto fail;
        len = (size_t)(file_size - offset);
    } else if (offset + len > file_size) {
        goto fail; /* read-only or copy map past end of file */
    }

    if ((flags & MMK_RESERVE) && (rc = reserve_blocks(fd, offset, len)) < 0)
        goto fail;

    m->offset = offset;
    m->len = len;
    m->prot = PROT_READ | ((flags & (MMK_RDWR | MMK_COPY)) ? PROT_WRITE : 0) |
              ((flags & MMK_EXEC) ? PROT_EXEC : 0);
    m->mflags = (flags & MMK_COPY) ? MAP_PRIVATE : MAP_SHARED;
    m->delta = (size_t)(offset % m->granule);
    if (len == 0)
        return 0;

    rc = -EOVERFLOW;
    if (len > SIZE_MAX - m->delta)
        goto fail;
    size_t map_len = round_up(m->delta + len, m->granule, &ovf);
    if (ovf)
        goto fail;
    if ((rc = map_fresh(m, fd, offset - m->delta, map_len, &m->base)) < 0)
        goto fail;
    m->map_len = map_len;
    return 0;

fail:
    if (file_size != orig_size)
        (void)mmk__sys.ftruncate(fd, (off_t)orig_size);
    return rc;
}

/* Open `path` as the flags ask.  Sets *created when this call made the file
 * (so that a failure later can remove it again). */
static int open_path(const char *path, unsigned flags, mode_t mode, bool *created)
{
    int oflags = O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    oflags |= (flags & MMK_RDWR) ? O_RDWR : O_RDONLY;
    if (flags & MMK_NOFOLLOW)
        oflags |= O_NOFOLLOW;
    if (flags & MMK_TRUNC)
        oflags |= O_TRUNC;
    mode = mode ? mode : MMK_DEFAULT_MODE;
    *created = false;

    if (!(flags & MMK_CREATE))
        return mmk__sys.open(path, oflags, 0);
    if (flags & MMK_EXCL) {
        int fd = mmk__sys.open(path, oflags | O_CREAT | O_EXCL, mode);
        *created = fd >= 0;
        return fd;
    }
    /* Create without EXCL, but know whether we created it: try the existing
     * file first, then an exclusive create; retry if we lose a race.  A
     * dangling symlink fails both ways for ever (ENOENT, then EEXIST), so
     * after a few rounds create through it as open(2) would, not knowing. */
    for (int round = 0; round < CREATE_RACE_ROUNDS; round++) {
        int fd = mmk__sys.open(path, oflags, 0);
        if (fd >= 0 || errno != ENOENT)
            return fd;
        fd = mmk__sys.open(path, oflags | O_CREAT | O_EXCL, mode);
        if (fd >= 0) {
            *created = true;
            return fd;
        }
        if (errno != EEXIST)
            return -1;
    }
    return mmk__sys.open(path, oflags | O_CREAT, mode);
}

/* Open the directory holding `path` (to sync the new entry later). */
static int open_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return mmk__sys.open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (slash == path)
        return mmk__sys.open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    size_t n = (size_t)(slash - path);
    char *dir = malloc(n + 1);
    if (!dir) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(dir, path, n);
    dir[n] = '\0';
    int fd = mmk__sys.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    int saved = errno;
    free(dir);
    errno = saved;
    return fd;
}

static int check_regular(const struct stat *st)
{
    if (S_ISDIR(st->st_mode))
        return -EISDIR;
    if (!S_ISREG(st->st_mode))
        return -ENODEV;
    return 0;
}

int mmk_map_open(mmk_map **out, const char *path, const mmk_map_opts *opts)
{
    static const mmk_map_opts defaults;
    const mmk_map_opts *o = opts ? opts : &defaults;
    mmk_map *m = NULL;
    bool created = false;
    int fd = -1, rc;
    struct stat st;

    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!path || (o->flags & ~(unsigned)MAP_OPEN_FLAGS))
        return -EINVAL;
    if ((rc = check_access_flags(o->flags)) < 0)
        return rc;
    if (!(m = map_alloc(o->flags)))
        return -ENOMEM;

    if ((fd = open_path(path, o->flags, o->mode, &created)) < 0) {
        rc = mmk__neg_errno();
        goto fail;
    }
    if (mmk__sys.fstat(fd, &st) < 0) {
        rc = mmk__neg_errno();
        goto fail;
    }
    if ((rc = check_regular(&st)) < 0)
        goto fail;
    m->dev = st.st_dev;
    m->ino = st.st_ino;
    m->writable_file = (o->flags & MMK_RDWR) != 0;
    if (created) {
        if ((m->dirfd = open_parent(path)) < 0) {
            rc = mmk__neg_errno();
            goto fail;
        }
        atomic_store(&m->dir_pending, true);
    }
    if ((rc = map_setup(m, fd, (uint64_t)st.st_size, o)) < 0)
        goto fail;

    if (o->flags & MMK_RDWR) {
        m->fd = fd; /* for resize and sync */
    } else {
        /* A read-only or copy map keeps no descriptor; it keeps the path so a
         * growing resize can check the file's size. */
        if (!(m->path = strdup(path))) {
            rc = -ENOMEM;
            goto fail;
        }
        mmk__close_quiet(fd);
    }
    if (created || (o->flags & MMK_TRUNC))
        atomic_store(&m->size_changed, true); /* a new or truncated size is new metadata */
    *out = m;
    return 0;

fail:
    if (m->fd != fd)
        mmk__close_quiet(fd);
    if (created)
        (void)mmk__sys.unlink(path);
    map_free(m);
    return rc;
}

int mmk_map_fd(mmk_map **out, int fd, const mmk_map_opts *opts)
{
    static const mmk_map_opts defaults;
    const mmk_map_opts *o = opts ? opts : &defaults;
    mmk_map *m = NULL;
    struct stat st;
    int rc;

    if (!out)
        return -EINVAL;
    *out = NULL;
    if (fd < 0)
        return -EBADF;
    if ((o->flags & ~(unsigned)MAP_FD_FLAGS) || o->mode != 0)
        return -EINVAL;
    if ((rc = check_access_flags(o->flags)) < 0)
        return rc;

    int fl = mmk__sys.getfl(fd);
    if (fl < 0)
        return mmk__neg_errno();
    int acc = fl & O_ACCMODE;
    if (acc == O_WRONLY)
        return -EACCES; /* a mapping always reads */
    if ((o->flags & MMK_RDWR) && acc != O_RDWR)
        return -EACCES;

    if (!(m = map_alloc(o->flags)))
        return -ENOMEM;
    if ((m->fd = mmk__sys.dup(fd)) < 0) {
        rc = mmk__neg_errno();
        goto fail;
    }
    if (mmk__sys.fstat(m->fd, &st) < 0) {
        rc = mmk__neg_errno();
        goto fail;
    }
    if ((rc = check_regular(&st)) < 0)
        goto fail;
    m->dev = st.st_dev;
    m->ino = st.st_ino;
    m->writable_file = acc == O_RDWR;
    if ((o->flags & MMK_TRUNC) && st.st_size != 0) {
        if (mmk__sys.ftruncate(m->fd, 0) < 0) {
            rc = mmk__neg_errno();
            goto fail;
        }
        st.st_size = 0;
        atomic_store(&m->size_changed, true);
    }
    if ((rc = map_setup(m, m->fd, (uint64_t)st.st_size, o)) < 0)
        goto fail;
    *out = m;
    return 0;

fail:
    map_free(m);
    return rc;
}

int mmk_map_anon(mmk_map **out, size_t len, unsigned flags)
{
    mmk_map *m;
    bool ovf = false;
    int rc;

    if (!out)
        return -EINVAL;
    *out = NULL;
    if (len == 0 || (flags & ~(unsigned)MAP_ANON_FLAGS))
        return -EINVAL;
    if (!(m = map_alloc(flags | MMK_RDWR)))
        return -ENOMEM;
    m->anon = true;
    m->len = len;
    m->prot = PROT_READ | PROT_WRITE | ((flags & MMK_EXEC) ? PROT_EXEC : 0);
    m->mflags = MAP_ANONYMOUS | ((flags & MMK_SHARED) ? MAP_SHARED : MAP_PRIVATE);

    if (flags & MMK_HUGE) {
        /* Explicit huge pages first; they exist only if the administrator
         * reserved some, so failure is normal and silent. */
        size_t huge = mmk__huge_page_size();
        size_t hlen = round_up(len, huge, &ovf);
        if (!ovf) {
            void *p = mmk__sys.mmap(NULL, hlen, m->prot, m->mflags | MAP_HUGETLB, -1, 0);
            if (p != MAP_FAILED) {
                FRESH_PAGES(p, hlen);
                m->base = p;
                m->map_len = hlen;
                m->granule = huge;
                m->mflags |= MAP_HUGETLB;
                rc = 0;
                if (flags & MMK_POPULATE)
                    rc = populate(m, -1, p, hlen, 0);
                if (rc == 0 && (flags & MMK_LOCKED) && mmk__sys.mlock(p, hlen) < 0)
                    rc = mmk__neg_errno();
                if (rc < 0)
                    goto fail;
                *out = m;
                return 0;
            }
        }
        ovf = false;
    }
    size_t map_len = round_up(len, m->granule, &ovf);
    if (ovf) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = map_fresh(m, -1, 0, map_len, &m->base)) < 0)
        goto fail;
    m->map_len = map_len;
    *out = m;
    return 0;

fail:
    map_free(m);
    return rc;
}

int mmk_map_close(mmk_map *m)
{
    if (!m)
        return -EINVAL;
    int rc = 0;
    if (m->base && mmk__sys.munmap(m->base, m->map_len) < 0)
        rc = mmk__neg_errno();
    m->base = NULL;
    int crc = mmk__close_quiet(m->fd);
    m->fd = -1;
    if (rc == 0)
        rc = crc;
    map_free(m);
    return rc;
}

/* ---- accessors --------------------------------------------------------- */

void *mmk_map_ptr(const mmk_map *m)
{
    if (!m)
        return NULL;
    if (m->len == 0 || !m->base)
        return empty_view;
    return m->base + m->delta;
}

size_t mmk_map_len(const mmk_map *m)
{
    return m ? m->len : 0;
}

uint64_t mmk_map_offset(const mmk_map *m)
{
    return m ? m->offset : 0;
}

unsigned mmk_map_flags(const mmk_map *m)
{
    if (!m)
        return 0;
    unsigned f = m->flags & ~(unsigned)(MMK_RDWR | MMK_EXEC);
    if ((m->prot & PROT_WRITE) && !(m->flags & MMK_COPY))
        f |= MMK_RDWR;
    if (m->prot & PROT_EXEC)
        f |= MMK_EXEC;
    return f;
}

/* ---- ranges ------------------------------------------------------------ */

/* Check the view range [off, off + n) (n 0 = to the end when `zero_all`) and
 * widen it to whole mapped pages: *addr, *plen.  *plen 0 means nothing to do. */
static int page_span(const mmk_map *m, size_t off, size_t n, bool zero_all,
                     unsigned char **addr, size_t *plen)
{
    if (off > m->len)
        return -EINVAL;
    if (n == 0 && zero_all)
        n = m->len - off;
    if (n > m->len - off)
        return -EINVAL;
    *addr = NULL;
    *plen = 0;
    if (n == 0 || !m->base)
        return 0;
    size_t start = m->delta + off;
    size_t end = start + n; /* <= map_len, so no overflow */
    size_t pstart = start - start % m->granule;
    size_t pend = end % m->granule ? end + (m->granule - end % m->granule) : end;
    if (pend > m->map_len)
        pend = m->map_len;
    *addr = m->base + pstart;
    *plen = pend - pstart;
    return 0;
}

/* page_span for the entry points taking (m, off, n) with n 0 = to the end. */
static int user_span(const mmk_map *m, size_t off, size_t n, unsigned char **addr,
                     size_t *plen)
{
    if (!m)
        return -EINVAL;
    return page_span(m, off, n, true, addr, plen);
}

int mmk_map_read(const mmk_map *m, size_t off, void *buf, size_t n)
{
    if (!m || (!buf && n))
        return -EINVAL;
    if (off > m->len || n > m->len - off)
        return -EINVAL;
    if (n == 0)
        return 0;
    return mmk__guard_copy_at(buf, m->base + m->delta + off, n, NULL);
}

/* A write faulted with SIGBUS in the map: a full disk (-ENOSPC) if the page is
 * inside the file, -EIO if the file shrank below it or the map is private (a
 * copy-on-write fault only reads the file). */
static int write_fault_errno(const mmk_map *m, const void *fault)
{
    struct stat st;
    if (m->flags & MMK_COPY)
        return -EIO;
    if (m->anon || m->fd < 0 || !fault || mmk__sys.fstat(m->fd, &st) < 0)
        return -ENOSPC;
    uint64_t foff = m->offset - m->delta + (uint64_t)((const unsigned char *)fault - m->base);
    return foff >= (uint64_t)st.st_size ? -EIO : -ENOSPC;
}

int mmk_map_write(mmk_map *m, size_t off, const void *buf, size_t n)
{
    if (!m || (!buf && n))
        return -EINVAL;
    if (off > m->len || n > m->len - off)
        return -EINVAL;
    if (!(m->prot & PROT_WRITE))
        return -EACCES;
    if (n == 0)
        return 0;
    void *fault = NULL;
    int rc = mmk__guard_copy_at(m->base + m->delta + off, buf, n, &fault);
    if (rc == -ENOSPC)
        rc = write_fault_errno(m, fault);
    return rc;
}

/* ---- durability -------------------------------------------------------- */

/* Whether writes through the map go to a file. */
static bool writes_reach_file(const mmk_map *m)
{
    return !m->anon && !(m->flags & MMK_COPY) && m->writable_file;
}

int mmk_map_sync(mmk_map *m, size_t off, size_t n)
{
    unsigned char *addr;
    size_t plen;
    int rc;

    if ((rc = user_span(m, off, n, &addr, &plen)) < 0)
        return rc;
    if (!writes_reach_file(m))
        return 0;
    if (plen && mmk__sys.msync(addr, plen, MS_SYNC) < 0)
        return mmk__neg_errno();
    /* msync covers the data; a size we changed is metadata fdatasync covers. */
    if (atomic_exchange(&m->size_changed, false) && mmk__sys.fdatasync(m->fd) < 0) {
        rc = mmk__neg_errno();
        atomic_store(&m->size_changed, true);
        return rc;
    }
    /* A file this map created exists for sure only once its directory is
     * synced; done once, by the first sync. */
    if (atomic_load(&m->dir_pending)) {
        if (mmk__sys.fsync(m->dirfd) < 0)
            return mmk__neg_errno();
        atomic_store(&m->dir_pending, false);
    }
    return 0;
}

int mmk_map_sync_async(mmk_map *m, size_t off, size_t n)
{
    unsigned char *addr;
    size_t plen;
    int rc;

    if ((rc = user_span(m, off, n, &addr, &plen)) < 0)
        return rc;
    if (!writes_reach_file(m) || plen == 0)
        return 0;
    if (m->fd >= 0) {
        uint64_t foff = m->offset - m->delta + (uint64_t)(addr - m->base);
        if (mmk__sys.sync_file_range(m->fd, (off_t)foff, (off_t)plen,
                                     SYNC_FILE_RANGE_WRITE) == 0)
            return 0;
        if (errno != ENOSYS && errno != EOPNOTSUPP)
            return mmk__neg_errno();
    }
    return mmk__sys.msync(addr, plen, MS_ASYNC) < 0 ? mmk__neg_errno() : 0;
}

/* ---- advice, locking, protection ---------------------------------------- */

static int advice_to_madv(int advice, bool *newer)
{
    *newer = false;
    switch (advice) {
    case MMK_ADV_NORMAL:         return MADV_NORMAL;
    case MMK_ADV_RANDOM:         return MADV_RANDOM;
    case MMK_ADV_SEQUENTIAL:     return MADV_SEQUENTIAL;
    case MMK_ADV_WILLNEED:       return MADV_WILLNEED;
    case MMK_ADV_DONTNEED:       return MADV_DONTNEED;
    }
    *newer = true; /* advice a kernel may lack: EINVAL then means "unknown" */
    switch (advice) {
#ifdef MADV_HUGEPAGE
    case MMK_ADV_HUGEPAGE:       return MADV_HUGEPAGE;
    case MMK_ADV_NOHUGEPAGE:     return MADV_NOHUGEPAGE;
#else
    case MMK_ADV_HUGEPAGE:
    case MMK_ADV_NOHUGEPAGE:     return -EOPNOTSUPP;
#endif
    case MMK_ADV_POPULATE_READ:  return MADV_POPULATE_READ;
    case MMK_ADV_POPULATE_WRITE: return MADV_POPULATE_WRITE;
    case MMK_ADV_COLD:           return MADV_COLD;
    case MMK_ADV_PAGEOUT:        return MADV_PAGEOUT;
    }
    return -EINVAL;
}

int mmk_map_advise(mmk_map *m, size_t off, size_t n, int advice)
{
    unsigned char *addr;
    size_t plen;
    bool newer;
    int rc;

    if (!m)
        return -EINVAL;
    int madv = advice_to_madv(advice, &newer);
    if (madv < 0)
        return madv;
    if ((rc = page_span(m, off, n, true, &addr, &plen)) < 0)
        return rc;
    if (advice == MMK_ADV_POPULATE_WRITE && !(m->prot & PROT_WRITE))
        return -EACCES;
    if (plen == 0)
        return 0;
    if (mmk__sys.madvise(addr, plen, madv) == 0)
        return 0;
    if (errno == EINVAL && newer)
        return -EOPNOTSUPP;
    if (errno == EFAULT &&
        (advice == MMK_ADV_POPULATE_READ || advice == MMK_ADV_POPULATE_WRITE))
        return -EIO;
    return mmk__neg_errno();
}

static int lock_span(mmk_map *m, size_t off, size_t n, int (*call)(const void *, size_t))
{
    unsigned char *addr;
    size_t plen;
    int rc;

    if ((rc = user_span(m, off, n, &addr, &plen)) < 0)
        return rc;
    if (plen && call(addr, plen) < 0)
        return mmk__neg_errno();
    return 0;
}

int mmk_map_lock(mmk_map *m, size_t off, size_t n)
{
    return lock_span(m, off, n, mmk__sys.mlock);
}

int mmk_map_unlock(mmk_map *m, size_t off, size_t n)
{
    return lock_span(m, off, n, mmk__sys.munlock);
}

int mmk_map_protect(mmk_map *m, unsigned access)
{
    if (!m || (access & ~(unsigned)(MMK_RDWR | MMK_EXEC)))
        return -EINVAL;
    if ((access & MMK_RDWR) && !m->anon && !(m->flags & MMK_COPY) && !m->writable_file)
        return -EACCES;
    int prot = PROT_READ | ((access & MMK_RDWR) ? PROT_WRITE : 0) |
               ((access & MMK_EXEC) ? PROT_EXEC : 0);
    if (m->base && mmk__sys.mprotect(m->base, m->map_len, prot) < 0)
        return mmk__neg_errno();
    m->prot = prot;
    return 0;
}

/* ---- resize ------------------------------------------------------------ */

/* The current size of the map's file, through its descriptor or, for a map
 * that holds none, by re-opening its path (checking it is the same file).
 * *tmpfd receives a descriptor the caller must close (or -1). */
static int current_file_size(const mmk_map *m, uint64_t *size, int *tmpfd)
{
    struct stat st;
    int fd = m->fd;
    *tmpfd = -1;
    if (fd < 0) {
        int of = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
        if (m->flags & MMK_NOFOLLOW)
            of |= O_NOFOLLOW;
        if (!m->path || (fd = mmk__sys.open(m->path, of, 0)) < 0)
            return errno == ENOENT ? -ESTALE : mmk__neg_errno();
        *tmpfd = fd;
    }
    if (mmk__sys.fstat(fd, &st) < 0)
        return mmk__neg_errno();
    if (st.st_dev != m->dev || st.st_ino != m->ino)
        return -ESTALE;
    *size = (uint64_t)st.st_size;
    return 0;
}

/* Move the mapping to a new length: mremap where it exists, else map anew and
 * (for private memory) copy what was there. */
static int remap(mmk_map *m, int fd, size_t new_map_len, unsigned char **out)
{
    /* Shared anonymous memory is a shmem object as large as first mapped:
     * mremap grows the mapping but not the object, and touching the new
     * pages raises SIGBUS.  Such a map grows by mapping anew and copying. */
    bool grow_shared_anon = m->anon && (m->mflags & MAP_SHARED) && new_map_len > m->map_len;
    if (!grow_shared_anon) {
        void *p = mmk__sys.mremap(m->base, m->map_len, new_map_len, MREMAP_MAYMOVE, NULL);
        if (p != MAP_FAILED) {
            FRESH_PAGES(p, new_map_len);
            *out = p;
            return 0;
        }
        if (errno != ENOSYS)
            return mmk__neg_errno();
    }
    unsigned char *q;
    int rc = map_fresh(m, fd, m->offset - m->delta, new_map_len, &q);
    if (rc < 0)
        return rc;
    if (m->anon || (m->flags & MMK_COPY))
        memcpy(q, m->base, m->map_len < new_map_len ? m->map_len : new_map_len);
    mmk__sys.munmap(m->base, m->map_len);
    *out = q;
    return 0;
}

int mmk_map_resize(mmk_map *m, size_t new_len)
{
    uint64_t old_size = 0, file_size = 0;
    bool grew_file = false, ovf = false;
    int tmpfd = -1, rc = 0;

    if (!m)
        return -EINVAL;
    if (new_len > SIZE_MAX - m->delta)
        return -ENOMEM;
    size_t new_map_len = round_up(m->delta + new_len, m->granule, &ovf);
    if (ovf)
        return -ENOMEM;
    if (new_len == 0)
        new_map_len = 0;

    if (!m->anon) {
        if (m->offset > UINT64_MAX - new_len)
            return -EOVERFLOW;
        uint64_t want = m->offset + new_len;
        if (new_len > m->len) {
            if ((rc = current_file_size(m, &file_size, &tmpfd)) < 0)
                goto out;
            old_size = file_size;
            if (want > file_size) {
                if (!writes_reach_file(m) || !(m->prot & PROT_WRITE) || m->fd < 0) {
                    rc = -EINVAL; /* read-only and copy maps stay within the file */
                    goto out;
                }
                if ((rc = grow_file(m, m->fd, &file_size, want)) < 0)
                    goto out;
                grew_file = true;
            }
        }
    }

    unsigned char *nb = m->base;
    int fd = m->fd >= 0 ? m->fd : tmpfd;
    if (new_map_len == m->map_len) {
        /* same pages: nothing to map */
    } else if (new_map_len == 0) {
        if (mmk__sys.munmap(m->base, m->map_len) < 0) {
            rc = mmk__neg_errno();
            goto out;
        }
        nb = NULL;
    } else if (!m->base) {
        if ((rc = map_fresh(m, fd, m->offset - m->delta, new_map_len, &nb)) < 0)
            goto out;
    } else {
        if ((rc = remap(m, fd, new_map_len, &nb)) < 0)
            goto out;
        if (new_map_len > m->map_len && (m->flags & MMK_POPULATE)) {
            rc = populate(m, fd, nb + m->map_len, new_map_len - m->map_len,
                          m->offset - m->delta + m->map_len);
            if (rc < 0) {
                /* Undo: shrinking in place cannot fail for lack of room. */
                void *back = mmk__sys.mremap(nb, new_map_len, m->map_len, 0, NULL);
                if (back != MAP_FAILED) {
                    m->base = back;
                } else {
                    m->base = nb;
                    m->map_len = new_map_len;
                }
                goto out;
            }
        }
    }
    m->base = nb;
    m->map_len = new_map_len;
    m->len = new_len;

out:
    if (rc < 0 && grew_file && mmk__sys.ftruncate(m->fd, (off_t)old_size) == 0)
        atomic_store(&m->size_changed, true);
    mmk__close_quiet(tmpfd);
    return rc;
}

/* ---- residency --------------------------------------------------------- */

int mmk_map_resident(const mmk_map *m, size_t off, size_t n, size_t *bytes)
{
    unsigned char vec[RESIDENT_CHUNK_PAGES];
    unsigned char *addr;
    size_t plen;
    int rc;

    if (!m || !bytes)
        return -EINVAL;
    *bytes = 0;
    if ((rc = page_span(m, off, n, true, &addr, &plen)) < 0)
        return rc;
    if (plen == 0)
        return 0;
    size_t page = mmk__page_size();
    /* The view's byte range, as addresses. */
    const unsigned char *lo = m->base + m->delta + off;
    const unsigned char *hi = n ? lo + n : m->base + m->delta + m->len;
    size_t total = 0;
    for (size_t done = 0; done < plen;) {
        size_t chunk = plen - done;
        if (chunk > RESIDENT_CHUNK_PAGES * page)
            chunk = RESIDENT_CHUNK_PAGES * page;
        if (mmk__sys.mincore(addr + done, chunk, vec) < 0)
            return mmk__neg_errno();
        for (size_t i = 0; i * page < chunk; i++) {
            if (!(vec[i] & 1))
                continue;
            const unsigned char *ps = addr + done + i * page, *pe = ps + page;
            const unsigned char *s = ps > lo ? ps : lo, *e = pe < hi ? pe : hi;
            if (e > s)
                total += (size_t)(e - s);
        }
        done += chunk;
    }
    *bytes = total;
    return 0;
}
