/* mmkit/bufio.h — buffered reading and writing of file descriptors through
 * mirrored rings (mmkit/ring.h).
 *
 * mmk_reader reads a descriptor into a ring and hands out what it holds in
 * place: lines (each one contiguous, even where it wraps around the end of the
 * ring, so no line is ever copied), peeks of n bytes, or copies.  mmk_writer
 * collects writes and formatted output in a ring and writes it out in one
 * write(2) per flush, however the data wraps.
 *
 * Both work on any descriptor: files, pipes, sockets, terminals.  They never
 * close it (it stays the caller's) and never change its flags.  A read(2) or
 * write(2) interrupted by a signal (EINTR) is retried; short reads and short
 * writes are continued.  On a non-blocking descriptor, -EAGAIN comes back to
 * the caller, with nothing lost: call again when the descriptor is ready.
 *
 * Thread safety: a reader or a writer is used by one thread at a time (it is
 * a single cursor over a descriptor); different ones are independent.
 *
 * Errors are negative errno values (see mmkit/common.h).
 */
#ifndef MMKIT_BUFIO_H
#define MMKIT_BUFIO_H

#include <stdarg.h>

#include <mmkit/ring.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MMK_PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define MMK_PRINTF_LIKE(f, a)
#endif

/* The ring size used when 0 is asked for: 64 KiB, the reads and writes of
 * that size cost about the same per byte as much larger ones. */
#define MMK_BUFIO_DEFAULT_SIZE ((size_t)64 * 1024)

typedef struct mmk_reader mmk_reader;
typedef struct mmk_writer mmk_writer;

/* ---- reader ------------------------------------------------------------ */

/* A reader of `fd` with a ring of at least `size` bytes (0 =
 * MMK_BUFIO_DEFAULT_SIZE; rounded up to the mapping granularity).  The ring
 * size is the longest line mmk_reader_line can return and the most
 * mmk_reader_peek can show.  Errors: -EINVAL (NULL out), -EBADF (negative
 * fd), and those of mmk_ring_new.  On error *out is NULL. */
MMK_API int mmk_reader_new(mmk_reader **out, int fd, size_t size);

/* Free the reader and its ring (the descriptor stays open).  Bytes read from
 * the descriptor but not yet returned are dropped.  NULL is a no-op. */
MMK_API void mmk_reader_free(mmk_reader *r);

/* The next line, in place: stores a pointer to it in *line and returns its
 * length including the '\n'.  The last line of the input may lack the '\n'
 * (its length counts only its bytes).  Returns 0 at end of input.  The line
 * is contiguous in memory (also where it wraps in the ring), is not
 * NUL-terminated, and stays valid until the next call on the reader.
 * Errors: -EMSGSIZE (a line longer than the ring: the ring is full and holds
 * no '\n'; its bytes stay buffered, so mmk_reader_read or mmk_reader_consume
 * can take them and the next call goes on from there), -EAGAIN (non-blocking
 * descriptor, no complete line yet; what was read stays buffered), -EINVAL
 * (NULL argument), or the error of read(2). */
MMK_API ssize_t mmk_reader_line(mmk_reader *r, const char **line);

/* Copy up to n bytes into buf.  Buffered bytes are returned first; when there
 * are fewer than the low-water mark (see mmk_reader_set_lowat) and fewer than
 * n, the reader reads more first.  A read of at least the ring's size into an
 * empty reader goes straight into buf.  Returns the count, 0 at end of input
 * (or for n 0).  Errors: -EINVAL (NULL r, NULL buf with n > 0), -EAGAIN, or
 * the error of read(2) (reported once, after the bytes read before it). */
MMK_API ssize_t mmk_reader_read(mmk_reader *r, void *buf, size_t n);

/* Make at least n bytes available in place, reading as needed: stores a
 * pointer to all buffered bytes (contiguous) in *p and returns how many there
 * are, which is at least n unless the input ended first (then what is left,
 * 0 at end of input).  The bytes stay buffered until mmk_reader_consume (or
 * another read), and *p stays valid until the next call on the reader.
 * Errors: -EINVAL (NULL argument, n larger than the ring), -EAGAIN, or the
 * error of read(2). */
MMK_API ssize_t mmk_reader_peek(mmk_reader *r, const void **p, size_t n);

/* Drop the first n buffered bytes (at most what is buffered), as after a
 * mmk_reader_peek. */
MMK_API void mmk_reader_consume(mmk_reader *r, size_t n);

/* Read from the descriptor into the free space of the ring, without
 * returning anything: one read(2), or several until the low-water mark is
 * reached.  Returns the bytes added, 0 at end of input.  Errors: -ENOBUFS (the
 * ring is full), -EAGAIN, -EINVAL, or the error of read(2). */
MMK_API ssize_t mmk_reader_fill(mmk_reader *r);

/* Bytes buffered and not yet returned (0 for NULL). */
MMK_API size_t mmk_reader_buffered(const mmk_reader *r);

/* The low-water mark: when the reader has to read, it keeps reading until at
 * least `lowat` bytes are buffered (or the input ends, or the descriptor
 * would block), so mmk_reader_read returns at least min(n, lowat) bytes
 * except at end of input, and mmk_reader_fill adds up to that.  This suits
 * pipes and sockets that deliver data in small pieces.  0 (the default) and 1
 * mean a single read(2) whenever the reader needs data.  Errors: -EINVAL
 * (NULL r, lowat larger than the ring). */
MMK_API int mmk_reader_set_lowat(mmk_reader *r, size_t lowat);

/* ---- writer ------------------------------------------------------------ */

/* A writer to `fd` with a ring of at least `size` bytes (0 =
 * MMK_BUFIO_DEFAULT_SIZE; rounded up to the mapping granularity).  Errors:
 * -EINVAL (NULL out), -EBADF (negative fd), and those of mmk_ring_new. */
MMK_API int mmk_writer_new(mmk_writer **out, int fd, size_t size);

/* Buffer n bytes from buf, writing the ring out to the descriptor whenever it
 * fills up; a write of at least the ring's size goes to the descriptor
 * directly (after what is buffered).  Returns n once all n bytes are taken
 * (buffered or written).  If an error stops it after k > 0 bytes were taken,
 * returns k, and the error comes back from the next call.  Errors: -EINVAL
 * (NULL w, NULL buf with n > 0), -EAGAIN (non-blocking descriptor: nothing
 * taken, try again later), the error of write(2) (-EPIPE, -ENOSPC, -EIO ...),
 * or an earlier error of the writer. */
MMK_API ssize_t mmk_writer_write(mmk_writer *w, const void *buf, size_t n);

/* printf(3) into the writer: formats straight into the ring's free space
 * (flushing first if it does not fit; output longer than the ring goes
 * through a temporary buffer).  Returns the number of bytes written, or an
 * error as mmk_writer_write; -EOVERFLOW if the output is longer than INT_MAX,
 * -EILSEQ for an encoding error, -ENOMEM. */
MMK_API int mmk_writer_printf(mmk_writer *w, const char *fmt, ...) MMK_PRINTF_LIKE(2, 3);
MMK_API int mmk_writer_vprintf(mmk_writer *w, const char *fmt, va_list ap)
    MMK_PRINTF_LIKE(2, 0);

/* Write everything buffered to the descriptor.  Returns 0 when all of it
 * was written.  Errors: -EAGAIN (the rest stays buffered), the error of
 * write(2), or an earlier error of the writer. */
MMK_API int mmk_writer_flush(mmk_writer *w);

/* Bytes buffered and not yet written (0 for NULL). */
MMK_API size_t mmk_writer_buffered(const mmk_writer *w);

/* The writer's error: 0, or the error that stopped it.  Errors are sticky:
 * once write(2) failed (for any reason but EINTR and EAGAIN), every later
 * write, printf and flush returns that error and mmk_writer_free returns it
 * too, so an error is never lost; what was buffered then is dropped. */
MMK_API int mmk_writer_error(const mmk_writer *w);

/* Flush, then free the writer and its ring (the descriptor stays open; it is
 * not fsynced).  Returns 0 if every byte given to the writer was written, or
 * the first error (what could not be written is dropped); the writer is freed
 * in every case.  -EAGAIN on a non-blocking descriptor loses the rest: flush
 * until it returns 0 first.  NULL returns 0. */
MMK_API int mmk_writer_free(mmk_writer *w);

#ifdef __cplusplus
}
#endif
#endif /* MMKIT_BUFIO_H */
