/* tests/test_bufio.c — buffered reader and writer over rings (mmkit/bufio.h):
 * lines across the wrap point of the ring, lines longer than the ring, peeks,
 * the low-water mark, pipes delivering bytes in small pieces, non-blocking
 * descriptors, EINTR, short writes, one write(2) per full ring, sticky write
 * errors, and a writer against a pipe with a slow reader while a timer keeps
 * interrupting it. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <mmkit.h>

#include "inject.h"
#include "os/os.h"
#include "testutil.h"

static void bufio_fini(void)
{
    inject_reset();
    tu_teardown();
    if (tu_leaks()) {
        fprintf(stderr, "memory leaked: see the LeakSanitizer report above\n");
        abort();
    }
}

TestSuite(bufio, .init = tu_setup, .fini = bufio_fini, .timeout = 120);

#define PS ((size_t)mmk_page_size())

/* An assertion for hot loops (see tests/test_ring.c): only a failing one
 * reaches Criterion.  `cond` must have no side effects. */
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond))                                                            \
            cr_assert(cond, __VA_ARGS__);                                       \
    } while (0)

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Text of about `size` bytes: lines of 0 to maxlen characters, each ended by
 * '\n' except the last one when `open_end`.  Returns its length. */
static char *make_text(size_t size, size_t maxlen, bool open_end, uint64_t seed, size_t *len)
{
    char *t = malloc(size + maxlen + 2);
    cr_assert_not_null(t);
    uint64_t s = seed;
    size_t n = 0;
    while (n < size) {
        size_t l = (size_t)(rnd(&s) % (maxlen + 1));
        for (size_t i = 0; i < l; i++)
            t[n++] = (char)('!' + rnd(&s) % 94);
        t[n++] = '\n';
    }
    if (open_end)
        t[n - 1] = 'x';
    *len = n;
    return t;
}

static int open_text(const char *name, const char *text, size_t n)
{
    const char *p = tu_path(name);
    tu_write_file(p, text, n);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    return fd;
}

/* Iterate all lines of `fd` and compare them with `text`; returns how many
 * of them straddled the end of the ring (the reader's ring position of a
 * stream byte is its offset modulo the capacity). */
static size_t check_lines(mmk_reader *r, size_t cap, const char *text, size_t n)
{
    size_t off = 0, straddles = 0, lines = 0;
    const char *line;
    ssize_t len;
    while ((len = mmk_reader_line(r, &line)) > 0) {
        const char *nl = memchr(text + off, '\n', n - off);
        size_t want = nl ? (size_t)(nl - (text + off)) + 1 : n - off;
        CHECK((size_t)len == want, "line %zu at %zu: length %zd, want %zu", lines, off, len,
              want);
        CHECK(memcmp(line, text + off, want) == 0, "line %zu at %zu differs", lines, off);
        if (off % cap + want > cap)
            straddles++;
        off += want;
        lines++;
    }
    cr_assert_eq(len, 0, "end: %zd (%s)", len, mmk_strerror((int)len));
    cr_assert_eq(off, n, "all of the text came back");
    cr_assert_eq(mmk_reader_line(r, &line), 0, "and 0 again at the end");
    return straddles;
}

/* A thread writing a buffer into a pipe in random small pieces. */
typedef struct feeder {
    int fd;
    const char *buf;
    size_t n, max_piece;
    unsigned pause_us;
    uint64_t seed;
} feeder;

static void *feed(void *arg)
{
    feeder *f = arg;
    uint64_t s = f->seed;
    size_t off = 0;
    while (off < f->n) {
        size_t k = 1 + (size_t)(rnd(&s) % f->max_piece);
        if (k > f->n - off)
            k = f->n - off;
        ssize_t w = write(f->fd, f->buf + off, k);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
        if (f->pause_us)
            usleep(f->pause_us);
    }
    close(f->fd);
    return NULL;
}

/* The sizes and buffers of the write(2) calls the library made. */
#define MAX_REC 4096
static struct { size_t n; const void *buf; } wrec[MAX_REC];
static int nwrec;

static ssize_t rec_write(int fd, const void *b, size_t n)
{
    if (nwrec < MAX_REC) {
        wrec[nwrec].n = n;
        wrec[nwrec].buf = b;
    }
    nwrec++;
    return mmk__sys_default.write(fd, b, n);
}

static size_t rrec_last_n;
static const void *rrec_last_buf;
static int nrrec;
static ssize_t rec_read(int fd, void *b, size_t n)
{
    rrec_last_n = n;
    rrec_last_buf = b;
    nrrec++;
    return mmk__sys_default.read(fd, b, n);
}

static int file_fd(const char *name)
{
    int fd = open(tu_path(name), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0);
    return fd;
}

static void expect_file(const char *name, const void *want, size_t n)
{
    size_t got;
    void *data = tu_read_file(tu_path(name), &got);
    cr_expect_eq(got, n, "%s: %zu bytes, want %zu", name, got, n);
    if (got == n)
        cr_expect_eq(memcmp(data, want, n), 0, "%s: contents differ", name);
    free(data);
}

/* ---- reader: lines ------------------------------------------------------- */

Test(bufio, lines_across_the_wrap_point)
{
    const size_t pages[] = { 1, 3, 17 };
    for (size_t i = 0; i < 3; i++) {
        size_t n;
        char *text = make_text(2u << 20, 300, i == 1, 10 + i, &n);
        int fd = open_text("lines.txt", text, n);
        mmk_reader *r;
        cr_assert_eq(mmk_reader_new(&r, fd, pages[i] * PS), 0);
        size_t straddles = check_lines(r, pages[i] * PS, text, n);
        cr_expect_gt(straddles, 20, "%zu pages: only %zu lines crossed the wrap", pages[i],
                     straddles);
        cr_log_info("%zu pages: %zu lines crossed the end of the ring", pages[i], straddles);
        mmk_reader_free(r);
        close(fd);
        free(text);
    }
}

Test(bufio, lines_from_a_pipe_in_small_pieces)
{
    size_t n;
    char *text = make_text(1u << 20, 200, false, 3, &n);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    feeder f = { p[1], text, n, 97, 0, 5 };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, feed, &f), 0);
    mmk_reader *r;
    cr_assert_eq(mmk_reader_new(&r, p[0], PS), 0);
    check_lines(r, PS, text, n);
    mmk_reader_free(r);
    pthread_join(t, NULL);
    close(p[0]);
    free(text);
}

Test(bufio, line_as_long_as_the_ring_and_longer)
{
    size_t cap = PS;
    size_t n = cap + (cap + 1) + 3;
    char *text = malloc(n);
    memset(text, 'a', cap - 1);
    text[cap - 1] = '\n';
    memset(text + cap, 'b', cap);
    text[2 * cap] = '\n';
    memcpy(text + 2 * cap + 1, "ok\n", 3);
    int fd = open_text("long.txt", text, n);
    mmk_reader *r;
    cr_assert_eq(mmk_reader_new(&r, fd, cap), 0);
    const char *line;
    ssize_t len = mmk_reader_line(r, &line);
    cr_assert_eq(len, (ssize_t)cap, "a line of exactly the ring's size fits");
    cr_expect_eq(memcmp(line, text, cap), 0);
    cr_expect_eq(mmk_reader_line(r, &line), -EMSGSIZE, "one byte more does not");
    cr_expect_eq(mmk_reader_line(r, &line), -EMSGSIZE, "and stays so");
    cr_expect_eq(mmk_reader_buffered(r), cap, "its first bytes stay buffered");
    char *buf = malloc(cap);
    cr_expect_eq(mmk_reader_read(r, buf, cap), (ssize_t)cap);
    cr_expect_eq(memcmp(buf, text + cap, cap), 0);
    cr_expect_eq(mmk_reader_line(r, &line), 1, "the rest of the long line");
    cr_expect_eq(line[0], '\n');
    cr_expect_eq(mmk_reader_line(r, &line), 3);
    cr_expect_eq(memcmp(line, "ok\n", 3), 0);
    cr_expect_eq(mmk_reader_line(r, &line), 0);
    mmk_reader_free(r);
    close(fd);
    free(buf);
    free(text);
}

Test(bufio, empty_lines_last_line_and_empty_input)
{
    const char *text = "a\n\n\nbc\nlast";
    int fd = open_text("t.txt", text, strlen(text));
    mmk_reader *r;
    cr_assert_eq(mmk_reader_new(&r, fd, 0), 0);
    const char *want[] = { "a\n", "\n", "\n", "bc\n", "last" };
    const char *line;
    for (size_t i = 0; i < 5; i++) {
        ssize_t len = mmk_reader_line(r, &line);
        cr_assert_eq(len, (ssize_t)strlen(want[i]), "line %zu", i);
        cr_expect_eq(memcmp(line, want[i], (size_t)len), 0, "line %zu", i);
    }
    cr_expect_eq(mmk_reader_line(r, &line), 0);
    mmk_reader_free(r);
    close(fd);

    fd = open_text("empty.txt", "", 0);
    cr_assert_eq(mmk_reader_new(&r, fd, 0), 0);
    cr_expect_eq(mmk_reader_line(r, &line), 0);
    char c;
    cr_expect_eq(mmk_reader_read(r, &c, 1), 0);
    const void *p;
    cr_expect_eq(mmk_reader_peek(r, &p, 1), 0);
    mmk_reader_free(r);
    close(fd);
}

/* ---- reader: bytes -------------------------------------------------------- */

Test(bufio, read_peek_and_consume)
{
    size_t cap = PS, n = 100000;
    const char *path = tu_pattern_file("data", n, 4);
    unsigned char *want = tu_read_file(path, &n);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    mmk_reader *r;
    cr_assert_eq(mmk_reader_new(&r, fd, cap), 0);
    unsigned char *buf = malloc(4 * cap);
    size_t off = 0;

    cr_expect_eq(mmk_reader_read(r, buf, 10), 10);
    cr_expect_eq(memcmp(buf, want, 10), 0);
    off = 10;
    const void *p;
    ssize_t k = mmk_reader_peek(r, &p, 100);
    cr_expect_geq(k, 100);
    cr_expect_eq(memcmp(p, want + off, 100), 0);
    mmk_reader_consume(r, 50);
    off += 50;
    cr_expect_eq(mmk_reader_buffered(r), cap - 60);
    /* A peek across the end of the ring: contiguous. */
    k = mmk_reader_peek(r, &p, cap);
    cr_expect_eq(k, (ssize_t)cap);
    cr_expect_eq(memcmp(p, want + off, cap), 0);
    cr_expect_eq(mmk_reader_peek(r, &p, cap + 1), -EINVAL);
    /* Buffered bytes come first, without a read(2). */
    inject_install();
    mmk__sys.read = rec_read;
    k = mmk_reader_read(r, buf, 4 * cap);
    cr_expect_eq(k, (ssize_t)cap);
    cr_expect_eq(memcmp(buf, want + off, cap), 0);
    off += cap;
    cr_expect_eq(nrrec, 0);
    /* An empty reader reads a large request straight into the caller's buffer. */
    k = mmk_reader_read(r, buf, 4 * cap);
    cr_expect_eq(k, (ssize_t)(4 * cap));
    cr_expect_eq(nrrec, 1);
    cr_expect_eq(rrec_last_buf, buf, "no copy through the ring");
    cr_expect_eq(memcmp(buf, want + off, 4 * cap), 0);
    off += 4 * cap;
    inject_reset();
    while ((k = mmk_reader_read(r, buf, 777)) > 0) {
        CHECK(memcmp(buf, want + off, (size_t)k) == 0, "at %zu", off);
        off += (size_t)k;
    }
    cr_expect_eq(k, 0);
    cr_expect_eq(off, n);
    cr_expect_eq(mmk_reader_read(r, buf, 0), 0);
    mmk_reader_free(r);
    close(fd);
    free(buf);
    free(want);
}

Test(bufio, fill_and_a_full_ring)
{
    size_t cap = PS;
    const char *path = tu_pattern_file("data", 3 * cap, 4);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    mmk_reader *r;
    cr_assert_eq(mmk_reader_new(&r, fd, cap), 0);
    cr_expect_eq(mmk_reader_fill(r), (ssize_t)cap);
    cr_expect_eq(mmk_reader_fill(r), -ENOBUFS);
    mmk_reader_consume(r, cap);
    cr_expect_eq(mmk_reader_buffered(r), 0);
    cr_expect_eq(mmk_reader_fill(r), (ssize_t)cap);
    mmk_reader_consume(r, cap + 5); /* clamped */
    cr_expect_eq(mmk_reader_fill(r), (ssize_t)cap);
    mmk_reader_consume(r, cap);
    cr_expect_eq(mmk_reader_fill(r), 0, "end of input");
    mmk_reader_free(r);
    close(fd);
}

Test(bufio, low_water_mark_on_a_trickling_pipe)
{
    size_t n = 4000;
    char *text = malloc(n);
    for (size_t i = 0; i < n; i++)
        text[i] = (char)('a' + i % 26);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    feeder f = { p[1], text, n, 10, 100, 7 };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, feed, &f), 0);
    mmk_reader *r;
    cr_assert_eq(mmk_reader_new(&r, p[0], PS), 0);
    cr_expect_eq(mmk_reader_set_lowat(r, PS + 1), -EINVAL);
    cr_expect_eq(mmk_reader_set_lowat(NULL, 1), -EINVAL);
    cr_assert_eq(mmk_reader_set_lowat(r, 200), 0);
    char buf[1000];
    size_t off = 0;
    ssize_t k;
    while ((k = mmk_reader_read(r, buf, sizeof buf)) > 0) {
        cr_expect(k >= 200 || off + (size_t)k == n, "a read of %zd bytes before the end", k);
        cr_expect_eq(memcmp(buf, text + off, (size_t)k), 0);
        off += (size_t)k;
    }
    cr_expect_eq(k, 0);
    cr_expect_eq(off, n);
    mmk_reader_free(r);
    pthread_join(t, NULL);
    close(p[0]);
    free(text);
}

/* read(2) that returns at most 50 bytes and fails its 2nd call with EIO. */
static int piece_calls;
static ssize_t piece_read(int fd, void *b, size_t n)
{
    if (++piece_calls == 2) {
        errno = EIO;
        return -1;
    }
    return mmk__sys_default.read(fd, b, n < 50 ? n : 50);
}

Test(bufio, read_errors_eintr_and_deferred_errors)
{
    const char *text = "one\ntwo\nthree\nfour\n";
    int fd = open_text("t.txt", text, strlen(text));
    mmk_reader *r;
    cr_assert_eq(mmk_reader_new(&r, fd, 0), 0);
    const char *line;
    inject_install();
    inject_fail(INJ_READ, 1, EIO);
    cr_expect_eq(mmk_reader_line(r, &line), -EIO, "an error of read(2) is reported");
    inject_fail(INJ_READ, 1, EINTR);
    cr_expect_eq(mmk_reader_line(r, &line), 4, "EINTR is retried, the reader goes on");
    cr_expect_eq(memcmp(line, "one\n", 4), 0);
    cr_expect_eq(inject_count(INJ_READ), 3);
    mmk_reader_free(r);
    inject_reset();

    /* With a low-water mark, an error after some bytes comes after them. */
    size_t n = 1000;
    const char *path = tu_pattern_file("data", n, 2);
    unsigned char *want = tu_read_file(path, &n);
    int fd2 = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_eq(mmk_reader_new(&r, fd2, 0), 0);
    cr_assert_eq(mmk_reader_set_lowat(r, 200), 0);
    piece_calls = 0;
    mmk__sys.read = piece_read;
    unsigned char buf[1000];
    cr_expect_eq(mmk_reader_read(r, buf, sizeof buf), 50, "the bytes before the error");
    cr_expect_eq(memcmp(buf, want, 50), 0);
    cr_expect_eq(mmk_reader_read(r, buf, sizeof buf), -EIO, "then the error, once");
    ssize_t k = mmk_reader_read(r, buf, sizeof buf);
    cr_expect_eq(k, 200, "then the reader goes on (%zd)", k);
    cr_expect_eq(memcmp(buf, want + 50, 200), 0);
    mmk__os_reset();
    mmk_reader_free(r);
    close(fd);
    close(fd2);
    free(want);
}

Test(bufio, non_blocking_pipe)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    mmk_reader *r;
    cr_assert_eq(mmk_reader_new(&r, p[0], 0), 0);
    const char *line;
    char c;
    cr_expect_eq(mmk_reader_line(r, &line), -EAGAIN);
    cr_expect_eq(mmk_reader_read(r, &c, 1), -EAGAIN);
    cr_assert_eq(write(p[1], "ab", 2), 2);
    cr_expect_eq(mmk_reader_line(r, &line), -EAGAIN, "no complete line yet");
    cr_expect_eq(mmk_reader_buffered(r), 2);
    cr_assert_eq(write(p[1], "c\nd", 3), 3);
    cr_expect_eq(mmk_reader_line(r, &line), 4);
    cr_expect_eq(memcmp(line, "abc\n", 4), 0);
    cr_expect_eq(mmk_reader_line(r, &line), -EAGAIN);
    close(p[1]);
    cr_expect_eq(mmk_reader_line(r, &line), 1);
    cr_expect_eq(line[0], 'd');
    cr_expect_eq(mmk_reader_line(r, &line), 0);
    mmk_reader_free(r);
    close(p[0]);
}

Test(bufio, bad_arguments_and_the_descriptor_stays_open)
{
    mmk_reader *r = (mmk_reader *)&r;
    mmk_writer *w = (mmk_writer *)&w;
    cr_expect_eq(mmk_reader_new(NULL, 0, 0), -EINVAL);
    cr_expect_eq(mmk_reader_new(&r, -1, 0), -EBADF);
    cr_expect_null(r);
    cr_expect_eq(mmk_writer_new(NULL, 1, 0), -EINVAL);
    cr_expect_eq(mmk_writer_new(&w, -1, 0), -EBADF);
    cr_expect_null(w);
    const char *line;
    const void *p;
    char c;
    cr_expect_eq(mmk_reader_line(NULL, &line), -EINVAL);
    cr_expect_eq(mmk_reader_read(NULL, &c, 1), -EINVAL);
    cr_expect_eq(mmk_reader_peek(NULL, &p, 1), -EINVAL);
    cr_expect_eq(mmk_reader_fill(NULL), -EINVAL);
    cr_expect_eq(mmk_reader_buffered(NULL), 0);
    mmk_reader_consume(NULL, 1);
    mmk_reader_free(NULL);
    cr_expect_eq(mmk_writer_write(NULL, "x", 1), -EINVAL);
    cr_expect_eq(mmk_writer_printf(NULL, "x"), -EINVAL);
    cr_expect_eq(mmk_writer_flush(NULL), -EINVAL);
    cr_expect_eq(mmk_writer_buffered(NULL), 0);
    cr_expect_eq(mmk_writer_free(NULL), 0);

    int fd = file_fd("f");
    int fds = tu_open_fds();
    cr_assert_eq(mmk_reader_new(&r, fd, 0), 0);
    cr_expect_eq(mmk_reader_line(r, NULL), -EINVAL);
    cr_expect_eq(mmk_reader_read(r, NULL, 1), -EINVAL);
    cr_expect_eq(mmk_reader_peek(r, NULL, 1), -EINVAL);
    mmk_reader_free(r);
    cr_assert_eq(mmk_writer_new(&w, fd, 0), 0);
    cr_expect_eq(mmk_writer_write(w, NULL, 1), -EINVAL);
    cr_expect_eq(mmk_writer_write(w, NULL, 0), 0);
    cr_expect_eq(mmk_writer_free(w), 0);
    cr_expect_geq(fcntl(fd, F_GETFD), 0, "the caller's descriptor is still open");
    cr_expect_eq(tu_open_fds(), fds, "and nothing else is");
    close(fd);
}

/* ---- writer --------------------------------------------------------------- */

Test(bufio, writes_and_printf_reach_the_descriptor)
{
    int fd = file_fd("out");
    mmk_writer *w;
    cr_assert_eq(mmk_writer_new(&w, fd, 0), 0);
    cr_expect_eq(mmk_writer_write(w, "hello ", 6), 6);
    cr_expect_eq(mmk_writer_printf(w, "%d %s|%5.2f\n", 42, "x", 3.14159), 11);
    cr_expect_eq(mmk_writer_printf(w, "%s", ""), 0);
    cr_expect_eq(mmk_writer_buffered(w), 17);
    cr_expect_eq(tu_file_size(tu_path("out")), 0, "buffered, not written yet");
    cr_expect_eq(mmk_writer_flush(w), 0);
    cr_expect_eq(mmk_writer_buffered(w), 0);
    cr_expect_eq(tu_file_size(tu_path("out")), 17);
    cr_expect_eq(mmk_writer_write(w, "bye\n", 4), 4);
    cr_expect_eq(mmk_writer_error(w), 0);
    cr_expect_eq(mmk_writer_free(w), 0, "free flushes");
    expect_file("out", "hello 42 x| 3.14\nbye\n", 21);
    close(fd);
}

Test(bufio, one_write_per_full_ring_even_across_the_wrap)
{
    size_t cap = PS, total = 100000;
    unsigned char *data = malloc(total);
    tu_pattern(data, total, 0, 8);
    int fd = file_fd("out");
    mmk_writer *w;
    cr_assert_eq(mmk_writer_new(&w, fd, cap), 0);
    nwrec = 0;
    mmk__sys.write = rec_write;
    for (size_t off = 0; off < total; off += 7) {
        size_t k = total - off < 7 ? total - off : 7;
        CHECK(mmk_writer_write(w, data + off, k) == (ssize_t)k, "at %zu", off);
    }
    cr_expect_eq((size_t)nwrec, total / cap, "one write(2) per ring-full");
    for (int i = 0; i < nwrec && i < MAX_REC; i++)
        CHECK(wrec[i].n == cap, "write %d: %zu bytes, want the whole ring %zu", i, wrec[i].n,
              cap);
    cr_expect_eq(mmk_writer_free(w), 0);
    cr_expect_eq((size_t)nwrec, total / cap + 1, "and the rest at free");
    mmk__os_reset();
    expect_file("out", data, total);
    close(fd);
    free(data);
}

Test(bufio, large_writes_go_straight_through)
{
    size_t cap = PS;
    unsigned char *data = malloc(6 * cap);
    tu_pattern(data, 6 * cap, 0, 9);
    int fd = file_fd("out");
    mmk_writer *w;
    cr_assert_eq(mmk_writer_new(&w, fd, cap), 0);
    nwrec = 0;
    mmk__sys.write = rec_write;
    cr_expect_eq(mmk_writer_write(w, data, 3 * cap), (ssize_t)(3 * cap));
    cr_expect_eq(nwrec, 1);
    cr_expect_eq(wrec[0].n, 3 * cap);
    cr_expect_eq(wrec[0].buf, data, "straight from the caller's buffer");
    cr_expect_eq(mmk_writer_write(w, data + 3 * cap, 10), 10);
    cr_expect_eq(mmk_writer_write(w, data + 3 * cap + 10, 3 * cap - 10), (ssize_t)(3 * cap - 10));
    cr_expect_eq(nwrec, 3, "the ring topped up and written, then the rest directly");
    cr_expect_eq(wrec[1].n, cap);
    cr_expect_eq(wrec[2].n, 2 * cap);
    cr_expect_eq(mmk_writer_free(w), 0);
    mmk__os_reset();
    expect_file("out", data, 6 * cap);
    close(fd);
    free(data);
}

Test(bufio, printf_longer_than_the_free_space_and_than_the_ring)
{
    size_t cap = PS;
    char *big = malloc(3 * cap), *want = malloc(10 * cap);
    memset(big, 'q', 3 * cap - 1);
    big[3 * cap - 1] = '\0';
    size_t third = cap / 3;
    int fd = file_fd("out");
    mmk_writer *w;
    cr_assert_eq(mmk_writer_new(&w, fd, cap), 0);
    size_t n = 0;
    for (int i = 0; i < 5; i++) {
        /* Lines of a third of the ring: every third one does not fit. */
        int len = mmk_writer_printf(w, "%0*d\n", (int)third - 1, i);
        cr_expect_eq(len, (int)third);
        n += (size_t)snprintf(want + n, third + 1, "%0*d\n", (int)third - 1, i);
    }
    int len = mmk_writer_printf(w, "<%s>", big);
    cr_expect_eq(len, (int)(3 * cap + 1), "longer than the ring: through a buffer");
    n += (size_t)sprintf(want + n, "<%s>", big);
    cr_expect_eq(mmk_writer_printf(w, "%c", 'z'), 1);
    want[n++] = 'z';
    cr_expect_eq(mmk_writer_free(w), 0);
    expect_file("out", want, n);
    close(fd);
    free(big);
    free(want);
}

/* write(2) that writes at most 5 bytes, and fails every third call with
 * EINTR. */
static int short_calls;
static ssize_t short_write(int fd, const void *b, size_t n)
{
    if (++short_calls % 3 == 0) {
        errno = EINTR;
        return -1;
    }
    return mmk__sys_default.write(fd, b, n < 5 ? n : 5);
}

Test(bufio, short_writes_and_eintr)
{
    size_t total = 50000;
    unsigned char *data = malloc(total + 100);
    tu_pattern(data, total, 0, 10);
    int fd = file_fd("out");
    mmk_writer *w;
    cr_assert_eq(mmk_writer_new(&w, fd, PS), 0);
    short_calls = 0;
    mmk__sys.write = short_write;
    for (size_t off = 0; off < total;) {
        size_t k = 1 + off % 5000;
        if (k > total - off)
            k = total - off;
        CHECK(mmk_writer_write(w, data + off, k) == (ssize_t)k, "at %zu", off);
        off += k;
    }
    cr_expect_eq(mmk_writer_printf(w, "%s", "tail"), 4);
    memcpy(data + total, "tail", 4);
    cr_expect_eq(mmk_writer_free(w), 0);
    cr_expect_gt(short_calls, (int)(total / 5));
    mmk__os_reset();
    expect_file("out", data, total + 4);
    close(fd);
    free(data);
}

Test(bufio, write_errors_stick_and_are_never_lost)
{
    const int errs[] = { EIO, ENOSPC };
    for (size_t e = 0; e < 2; e++) {
        int err = errs[e];
        int fd = file_fd("out");
        mmk_writer *w;
        unsigned char buf[8192] = { 0 };

        /* The error comes from flush, then from everything, then from free. */
        cr_assert_eq(mmk_writer_new(&w, fd, PS), 0);
        cr_expect_eq(mmk_writer_write(w, buf, 10), 10);
        inject_install();
        inject_fail(INJ_WRITE, 1, err);
        cr_expect_eq(mmk_writer_flush(w), -err);
        cr_expect_eq(mmk_writer_error(w), -err);
        cr_expect_eq(mmk_writer_write(w, buf, 1), -err);
        cr_expect_eq(mmk_writer_printf(w, "x"), -err);
        cr_expect_eq(mmk_writer_flush(w), -err);
        cr_expect_eq(inject_count(INJ_WRITE), 1, "a failed writer writes no more");
        cr_expect_eq(mmk_writer_free(w), -err);
        inject_reset();

        /* A write that fails half way: the count taken, then the error. */
        cr_assert_eq(mmk_writer_new(&w, fd, PS), 0);
        cr_expect_eq(mmk_writer_write(w, buf, 10), 10);
        inject_install();
        inject_fail(INJ_WRITE, 1, err);
        cr_expect_eq(mmk_writer_write(w, buf, PS), (ssize_t)(PS - 10));
        cr_expect_eq(mmk_writer_write(w, buf, 1), -err, "the error comes next");
        cr_expect_eq(mmk_writer_free(w), -err);
        inject_reset();

        /* Nothing taken: the error at once; a large direct write. */
        cr_assert_eq(mmk_writer_new(&w, fd, PS), 0);
        inject_install();
        inject_fail(INJ_WRITE, 1, err);
        cr_expect_eq(mmk_writer_write(w, buf, 2 * PS), -err);
        cr_expect_eq(mmk_writer_free(w), -err);
        inject_reset();

        /* An error met only at free is returned by free. */
        cr_assert_eq(mmk_writer_new(&w, fd, PS), 0);
        cr_expect_eq(mmk_writer_printf(w, "%d", 12345), 5);
        inject_install();
        inject_fail(INJ_WRITE, 1, err);
        cr_expect_eq(mmk_writer_free(w), -err);
        inject_reset();
        close(fd);
    }
}

Test(bufio, broken_pipe_is_reported)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    mmk_writer *w;
    cr_assert_eq(mmk_writer_new(&w, p[1], 0), 0);
    cr_expect_eq(mmk_writer_write(w, "abc", 3), 3);
    cr_expect_eq(mmk_writer_flush(w), -EPIPE);
    cr_expect_eq(mmk_writer_free(w), -EPIPE);
    close(p[1]);
}

/* Read everything the pipe holds now into out[*n...]. */
static void drain_pipe(int fd, unsigned char *out, size_t *n)
{
    ssize_t k;
    while ((k = read(fd, out + *n, 65536)) > 0)
        *n += (size_t)k;
}

Test(bufio, non_blocking_writer_loses_nothing)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    fcntl(p[1], F_SETPIPE_SZ, (int)PS);
    size_t total = 200000, got = 0;
    unsigned char *data = malloc(total), *out = malloc(total + 65536);
    tu_pattern(data, total, 0, 12);
    mmk_writer *w;
    cr_assert_eq(mmk_writer_new(&w, p[1], PS), 0);
    int again = 0;
    for (size_t off = 0; off < total;) {
        size_t k = total - off < 1000 ? total - off : 1000;
        ssize_t put = mmk_writer_write(w, data + off, k);
        cr_assert(put == -EAGAIN || (put > 0 && (size_t)put <= k), "write gave %zd", put);
        if (put != (ssize_t)k) {
            again++;
            drain_pipe(p[0], out, &got);
        }
        if (put > 0)
            off += (size_t)put;
    }
    int rc;
    while ((rc = mmk_writer_flush(w)) == -EAGAIN)
        drain_pipe(p[0], out, &got);
    cr_expect_eq(rc, 0);
    cr_expect_eq(mmk_writer_free(w), 0);
    drain_pipe(p[0], out, &got);
    cr_expect_gt(again, 0, "the pipe did fill up");
    cr_expect_eq(got, total);
    cr_expect_eq(memcmp(out, data, total), 0, "every byte, in order");
    close(p[0]);
    close(p[1]);
    free(data);
    free(out);
}

/* ---- the writer against a slow reader, interrupted by a timer ------------------ */

typedef struct slow_reader {
    int fd;
    unsigned char *out;
    size_t n;
} slow_reader;

static void *slow_read(void *arg)
{
    slow_reader *s = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the timer is for the writer */
    for (;;) {
        ssize_t k = read(s->fd, s->out + s->n, 256);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        s->n += (size_t)k;
        usleep(20);
    }
    return NULL;
}

static atomic_int alarms;
static void on_alarm(int sig)
{
    (void)sig;
    atomic_fetch_add(&alarms, 1);
}

/* write(2), counting the interrupted and the short ones. */
static int n_eintr, n_short;
static ssize_t counting_write(int fd, const void *b, size_t n)
{
    ssize_t w = mmk__sys_default.write(fd, b, n);
    if (w < 0 && errno == EINTR)
        n_eintr++;
    else if (w >= 0 && (size_t)w < n)
        n_short++;
    return w;
}

Test(bufio, pipe_with_a_slow_reader_and_a_timer)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    fcntl(p[1], F_SETPIPE_SZ, (int)PS);
    size_t total = 1u << 20, n = 0;
    size_t slack = 6 * PS; /* the last piece may run past total */
    unsigned char *want = malloc(total + slack);
    slow_reader sr = { p[0], malloc(total + slack + 256), 0 };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, slow_read, &sr), 0);

    /* A timer that interrupts blocked write(2) calls every millisecond (no
     * SA_RESTART: they return EINTR or a short count). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { { 0, 1000 }, { 0, 1000 } };
    setitimer(ITIMER_REAL, &it, NULL);

    n_eintr = n_short = 0;
    mmk__sys.write = counting_write;
    mmk_writer *w;
    cr_assert_eq(mmk_writer_new(&w, p[1], 2 * PS), 0);
    uint64_t s = 77;
    while (n < total) {
        if (rnd(&s) % 3 == 0) {
            unsigned long long v = rnd(&s);
            int len = mmk_writer_printf(w, "line %zu: %llx\n", n, v);
            CHECK(len > 0, "printf: %d", len);
            n += (size_t)snprintf((char *)want + n, 64, "line %zu: %llx\n", n, v);
            continue;
        }
        size_t k = 1 + (size_t)(rnd(&s) % (5 * PS));
        tu_pattern(want + n, k, n, 13);
        ssize_t put = mmk_writer_write(w, want + n, k);
        CHECK(put == (ssize_t)k, "write gave %zd of %zu: %s", put, k, mmk_strerror((int)put));
        n += k;
    }
    cr_expect_eq(mmk_writer_free(w), 0);
    memset(&it, 0, sizeof it);
    setitimer(ITIMER_REAL, &it, NULL);
    mmk__os_reset();
    close(p[1]);
    pthread_join(t, NULL);
    close(p[0]);
    cr_log_info("%d alarms, %d write(2) calls interrupted, %d short", atomic_load(&alarms),
                n_eintr, n_short);
    cr_expect_gt(n_eintr + n_short, 0, "the timer did interrupt writes");
    cr_expect_eq(sr.n, n);
    cr_expect_eq(memcmp(sr.out, want, n), 0, "every byte arrived, in order");
    free(want);
    free(sr.out);
}
