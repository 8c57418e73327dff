/* src/bufio.c — buffered reader and writer over mirrored rings.
 *
 * The reader fills its ring with one read(2) of all the free space (one
 * contiguous range, thanks to the mirror) and hands out lines in place.  It
 * keeps its own cursor (p, avail) into the ring's mapping and tells the ring
 * what it consumed only when it reads again, so returning a line costs a
 * memchr and a few additions.  The cursor may run into the second copy of the
 * data; each refill puts it back into the first, so p + avail never passes
 * the end of the mapping.
 *
 * The writer copies into its ring (or formats into it in place) and writes the
 * ring out, all of it in one write(2) per flush, when it is full, on demand
 * and at free.  Its first hard error sticks.
 */
#include <mmkit/bufio.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "os/os.h"

struct mmk_reader {
    mmk_ring   *ring;
    const char *p;       /* first byte not yet returned */
    size_t      avail;   /* bytes buffered from p */
    size_t      scanned; /* bytes from p known to hold no '\n' */
    size_t      taken;   /* bytes returned that the ring has not been told of */
    size_t      cap;
    size_t      lowat;
    int         fd;
    int         err;     /* an error to report at the next call, or 0 */
};

struct mmk_writer {
    mmk_ring *ring;
    size_t    cap;
    int       fd;
    int       err;       /* sticky error, or 0 */
};

static bool is_again(int rc)
{
    return rc == -EAGAIN || rc == -EWOULDBLOCK;
}

/* ---- reader ------------------------------------------------------------ */

int mmk_reader_new(mmk_reader **out, int fd, size_t size)
{
    if (out)
        *out = NULL;
    if (!out)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    mmk_reader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    int rc = mmk_ring_new(&r->ring, size ? size : MMK_BUFIO_DEFAULT_SIZE, 0);
    if (rc < 0) {
        free(r);
        return rc;
    }
    r->cap = mmk_ring_size(r->ring);
    r->fd = fd;
    r->p = mmk_ring_read_ptr(r->ring, &r->avail);
    *out = r;
    return 0;
}

void mmk_reader_free(mmk_reader *r)
{
    if (!r)
        return;
    mmk_ring_free(r->ring);
    free(r);
}

static inline void reader_advance(mmk_reader *r, size_t n)
{
    r->p += n;
    r->avail -= n;
    r->taken += n;
    r->scanned = r->scanned > n ? r->scanned - n : 0;
}

/* Tell the ring what was returned and put the cursor back in the first copy
 * of the data (the same bytes). */
static void reader_sync(mmk_reader *r)
{
    mmk_ring_consume(r->ring, r->taken);
    r->taken = 0;
    r->p = mmk_ring_read_ptr(r->ring, &r->avail);
}

/* read(2), retried on EINTR: bytes read, 0 at end of input, or -errno. */
static ssize_t read_retry(int fd, void *buf, size_t n)
{
    ssize_t got;
    do
        got = mmk__sys.read(fd, buf, n);
    while (got < 0 && errno == EINTR);
    return got < 0 ? mmk__neg_errno() : got;
}

/* Read until at least `target` bytes are buffered, the input ends or an
 * error comes.  Returns the bytes added, 0 at end of input, or an error when
 * nothing was added (an error after some bytes is kept for the next call). */
static ssize_t reader_fill_to(mmk_reader *r, size_t target)
{
    if (r->err) {
        int rc = r->err;
        r->err = 0;
        return rc;
    }
    reader_sync(r);
    size_t total = 0;
    do {
        size_t room;
        void *wp = mmk_ring_write_ptr(r->ring, &room);
        if (room == 0) {
            if (total)
                break;
            return -ENOBUFS;
        }
        ssize_t got = read_retry(r->fd, wp, room);
        if (got < 0) {
            if (total == 0)
                return got;
            if (!is_again((int)got))
                r->err = (int)got;
            break;
        }
        if (got == 0)
            break;
        mmk_ring_produce(r->ring, (size_t)got);
        r->avail += (size_t)got;
        total += (size_t)got;
    } while (r->avail < target);
    return (ssize_t)total;
}

static size_t reader_target(const mmk_reader *r)
{
    return r->lowat > 1 ? r->lowat : 1;
}

/* What to read up to when more bytes are needed than are buffered. */
static size_t reader_more(const mmk_reader *r)
{
    return r->avail + 1 > r->lowat ? r->avail + 1 : r->lowat;
}

ssize_t mmk_reader_fill(mmk_reader *r)
{
    if (!r)
        return -EINVAL;
    return reader_fill_to(r, reader_more(r));
}

ssize_t mmk_reader_line(mmk_reader *r, const char **line)
{
    if (!r || !line)
        return -EINVAL;
    for (;;) {
        if (r->avail > r->scanned) {
            const char *nl = memchr(r->p + r->scanned, '\n', r->avail - r->scanned);
            if (nl) {
                size_t len = (size_t)(nl - r->p) + 1;
                *line = r->p;
                reader_advance(r, len);
                return (ssize_t)len;
            }
            r->scanned = r->avail;
        }
        if (r->avail >= r->cap)
            return -EMSGSIZE;
        ssize_t got = reader_fill_to(r, reader_more(r));
        if (got < 0)
            return got;
        if (got == 0) {
            /* End of input: the rest is the last line, without its '\n'. */
            size_t len = r->avail;
            *line = r->p;
            reader_advance(r, len);
            return (ssize_t)len;
        }
    }
}

/* Read at least min(n, target) bytes straight into buf (the reader is
 * empty); an error after some bytes is kept for the next call. */
static ssize_t reader_direct(mmk_reader *r, unsigned char *buf, size_t n, size_t target)
{
    size_t total = 0;
    do {
        ssize_t got = read_retry(r->fd, buf + total, n - total);
        if (got < 0) {
            if (total == 0)
                return got;
            if (!is_again((int)got))
                r->err = (int)got;
            break;
        }
        if (got == 0)
            break;
        total += (size_t)got;
    } while (total < target && total < n);
    return (ssize_t)total;
}

ssize_t mmk_reader_read(mmk_reader *r, void *buf, size_t n)
{
    if (!r || (!buf && n))
        return -EINVAL;
    if (n == 0)
        return 0;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    size_t target = reader_target(r);
    if (r->avail < n && r->avail < target) {
        if (r->avail == 0 && n >= r->cap) {
            if (r->err) {
                int rc = r->err;
                r->err = 0;
                return rc;
            }
            return reader_direct(r, buf, n, target);
        }
        ssize_t got = reader_fill_to(r, target);
        if (got < 0 && r->avail == 0)
            return got;
        if (got < 0 && !is_again((int)got))
            r->err = (int)got; /* report it after the bytes already here */
    }
    size_t k = n < r->avail ? n : r->avail;
    memcpy(buf, r->p, k);
    reader_advance(r, k);
    return (ssize_t)k;
}

ssize_t mmk_reader_peek(mmk_reader *r, const void **p, size_t n)
{
    if (!r || !p || n > r->cap)
        return -EINVAL;
    while (r->avail < n) {
        ssize_t got = reader_fill_to(r, n);
        if (got < 0)
            return got;
        if (got == 0)
            break;
    }
    *p = r->p;
    return (ssize_t)r->avail;
}

void mmk_reader_consume(mmk_reader *r, size_t n)
{
    if (!r)
        return;
    reader_advance(r, n < r->avail ? n : r->avail);
}

size_t mmk_reader_buffered(const mmk_reader *r)
{
    return r ? r->avail : 0;
}

int mmk_reader_set_lowat(mmk_reader *r, size_t lowat)
{
    if (!r || lowat > r->cap)
        return -EINVAL;
    r->lowat = lowat;
    return 0;
}

/* ---- writer ------------------------------------------------------------ */

int mmk_writer_new(mmk_writer **out, int fd, size_t size)
{
    if (out)
        *out = NULL;
    if (!out)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    mmk_writer *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    int rc = mmk_ring_new(&w->ring, size ? size : MMK_BUFIO_DEFAULT_SIZE, 0);
    if (rc < 0) {
        free(w);
        return rc;
    }
    w->cap = mmk_ring_size(w->ring);
    w->fd = fd;
    *out = w;
    return 0;
}

/* write(2) all of [buf, buf + n): short writes continued, EINTR retried.
 * Stores the bytes written in *done; 0 or -errno. */
static int write_all(int fd, const unsigned char *buf, size_t n, size_t *done)
{
    size_t off = 0;
    int rc = 0;
    while (off < n) {
        ssize_t put = mmk__sys.write(fd, buf + off, n - off);
        if (put < 0) {
            if (errno == EINTR)
                continue;
            rc = mmk__neg_errno();
            break;
        }
        if (put == 0) { /* not for a regular write of n > 0 bytes; never spin */
            rc = -EIO;
            break;
        }
        off += (size_t)put;
    }
    *done = off;
    return rc;
}

/* Write out everything buffered; 0 or -errno (what was not written stays). */
static int writer_drain(mmk_writer *w)
{
    for (;;) {
        size_t k, done;
        const void *p = mmk_ring_read_ptr(w->ring, &k);
        if (k == 0)
            return 0;
        int rc = write_all(w->fd, p, k, &done);
        mmk_ring_consume(w->ring, done);
        if (rc < 0)
            return rc;
    }
}

/* Record a hard error (the writer is done for) and return it. */
static int writer_fail(mmk_writer *w, int rc)
{
    if (!is_again(rc)) {
        w->err = rc;
        mmk_ring_clear(w->ring);
    }
    return rc;
}

ssize_t mmk_writer_write(mmk_writer *w, const void *buf, size_t n)
{
    if (!w || (!buf && n))
        return -EINVAL;
    if (w->err)
        return w->err;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    const unsigned char *src = buf;
    size_t done = 0;
    while (done < n) {
        size_t room, left = n - done;
        unsigned char *wp = mmk_ring_write_ptr(w->ring, &room);
        if (left <= room) {
            memcpy(wp, src + done, left);
            mmk_ring_produce(w->ring, left);
            return (ssize_t)n;
        }
        int rc;
        if (room == w->cap && left >= w->cap) {
            /* Empty ring, large write: no point copying it through. */
            size_t put;
            rc = write_all(w->fd, src + done, left, &put);
            done += put;
        } else {
            memcpy(wp, src + done, room);
            mmk_ring_produce(w->ring, room);
            done += room;
            rc = writer_drain(w);
        }
        if (rc < 0) {
            rc = writer_fail(w, rc);
            return done ? (ssize_t)done : rc;
        }
    }
    return (ssize_t)done;
}

int mmk_writer_vprintf(mmk_writer *w, const char *fmt, va_list ap)
{
    if (!w || !fmt)
        return -EINVAL;
    if (w->err)
        return w->err;
    va_list again;
    va_copy(again, ap);
    size_t room;
    char *wp = mmk_ring_write_ptr(w->ring, &room);
    int len = vsnprintf(wp, room, fmt, ap);
    int rc = len;
    if (len < 0) {
        rc = errno == EOVERFLOW ? -EOVERFLOW : -EILSEQ;
    } else if ((size_t)len < room) {
        /* It fit, with its NUL in the free space after it. */
        mmk_ring_produce(w->ring, (size_t)len);
    } else if ((size_t)len < w->cap) {
        int drc = writer_drain(w);
        if (drc < 0) {
            rc = writer_fail(w, drc);
        } else {
            wp = mmk_ring_write_ptr(w->ring, &room);
            vsnprintf(wp, room, fmt, again);
            mmk_ring_produce(w->ring, (size_t)len);
        }
    } else {
        char *tmp = malloc((size_t)len + 1);
        if (!tmp) {
            rc = -ENOMEM;
        } else {
            vsnprintf(tmp, (size_t)len + 1, fmt, again);
            ssize_t put = mmk_writer_write(w, tmp, (size_t)len);
            rc = (int)put; /* a short count: the error comes next call */
            free(tmp);
        }
    }
    va_end(again);
    return rc;
}

int mmk_writer_printf(mmk_writer *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = mmk_writer_vprintf(w, fmt, ap);
    va_end(ap);
    return rc;
}

int mmk_writer_flush(mmk_writer *w)
{
    if (!w)
        return -EINVAL;
    if (w->err)
        return w->err;
    int rc = writer_drain(w);
    return rc < 0 ? writer_fail(w, rc) : 0;
}

size_t mmk_writer_buffered(const mmk_writer *w)
{
    return w ? mmk_ring_readable(w->ring) : 0;
}

int mmk_writer_error(const mmk_writer *w)
{
    return w ? w->err : -EINVAL;
}

int mmk_writer_free(mmk_writer *w)
{
    if (!w)
        return 0;
    int rc = mmk_writer_flush(w);
    mmk_ring_free(w->ring);
    free(w);
    return rc;
}
