/* mmkit/ring.h — mirrored ("magic") ring buffers.
 *
 * A ring of capacity C is C bytes of memory mapped twice, back to back, so
 * that the byte after the last one is the first one again.  Whatever the read
 * and write positions, the free space and the buffered data are each one
 * contiguous range: a producer writes a message of any size with one memcpy
 * (or formats it in place), a consumer parses a message in place without
 * gathering its two halves first.
 *
 * The capacity is the size asked for rounded up to the mapping granularity
 * (mmk_map_granularity(): the page size on POSIX).  It is not a power of two
 * in general.  Positions are 64-bit byte counts on every platform, 32-bit
 * ones included: they count the bytes ever written and read and never wrap
 * in practice (2^64 bytes is 584 years at 1 GB/s).
 *
 * The memory is a memfd (Linux), or a POSIX shared-memory object that is
 * unlinked at once where memfd_create is missing, with permissions 0600: no
 * name is left in any filesystem, and nothing but the ring's own mappings
 * holds it (the descriptor is closed before mmk_ring_new returns).  A memfd's
 * pages come on first touch, like anonymous memory; a shm object's are
 * allocated up front, so that a full /dev/shm is an error of mmk_ring_new
 * (-ENOSPC) rather than a SIGBUS later.
 *
 * Flags (mmk_ring_new):
 *   MMK_RING_OVERWRITE  an "infinite" ring: writes always succeed; when there
 *                       is not room, they drop the oldest unread bytes.  The
 *                       consumer learns how many bytes it lost from
 *                       mmk_ring_lost() (see "Overwrite mode" below).
 *   MMK_RING_SHARED     the positions live in the ring's shared memory too (a
 *                       header page before the data), so a process forked
 *                       after mmk_ring_new can be the producer or the consumer
 *                       of its parent.  Without it, a forked child must not use
 *                       the ring.
 *
 * Thread safety: a ring is safe for one producer and one consumer at once,
 * each in its own thread (or, with MMK_RING_SHARED, its own process), without
 * locks: positions are C11 atomics with acquire/release ordering, so the bytes
 * a producer wrote before mmk_ring_produce (or mmk_ring_write) returned are
 * visible to a consumer once mmk_ring_read_ptr (or mmk_ring_read) shows them,
 * and space the consumer released is not reused before the consumer is done
 * with it.
 *   producer side: mmk_ring_write_ptr, mmk_ring_reserve, mmk_ring_produce,
 *                  mmk_ring_write;
 *   consumer side: mmk_ring_read_ptr, mmk_ring_consume, mmk_ring_read,
 *                  mmk_ring_peek, mmk_ring_clear;
 *   any thread:    mmk_ring_size, mmk_ring_flags, mmk_ring_readable,
 *                  mmk_ring_writable, mmk_ring_lost (snapshots).
 * One side's functions must not run in two threads at once (two producers or
 * two consumers need a lock of their own); one thread may play both sides.
 * mmk_ring_free must not race with anything.  None of the functions makes a
 * system call or allocates, except mmk_ring_new and mmk_ring_free.
 *
 * Overwrite mode, precisely.  The producer never waits: before it stores
 * bytes over unread ones it moves the oldest-valid position (the "tail") past
 * them, then writes.  The consumer keeps its own position; whenever it finds
 * the tail ahead of it, the bytes in between were dropped, and it adds them to
 * mmk_ring_lost().  A concurrent producer may overwrite bytes while the
 * consumer is copying or looking at them; the consumer detects that after the
 * fact by re-checking the tail (the producer moves the tail before it
 * overwrites, with release ordering; the consumer re-reads it after its copy,
 * with acquire ordering), and counts the overwritten bytes as lost too:
 *   - mmk_ring_read and mmk_ring_peek return only bytes that were intact, in
 *     stream order; if the producer overwrote the first part of what they
 *     copied, that part is dropped (counted in mmk_ring_lost) and the rest is
 *     returned.  So every byte of the stream is either returned exactly once
 *     or counted exactly once in mmk_ring_lost, and a consumer that adds up
 *     what it read and what mmk_ring_lost says knows the stream position of
 *     every byte it gets.
 *   - mmk_ring_read_ptr gives a pointer the producer may overwrite at any
 *     time.  mmk_ring_consume(n) then counts the part of those n bytes that
 *     was overwritten while the consumer held them as lost: if mmk_ring_lost()
 *     grew by k between mmk_ring_read_ptr and the end of mmk_ring_consume,
 *     the first k bytes the consumer looked at (at most) may have been
 *     garbage, and the rest were intact.  Use the copying calls where that
 *     matters.
 * Without MMK_RING_OVERWRITE nothing is ever lost and mmk_ring_lost() is 0.
 *
 * Errors are negative errno values (see mmkit/common.h).
 */
#ifndef MMKIT_RING_H
#define MMKIT_RING_H

#include <mmkit/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmk_ring mmk_ring;

enum {
    MMK_RING_OVERWRITE = 1u << 0, /* writes drop the oldest unread bytes, never fail */
    MMK_RING_SHARED    = 1u << 1, /* positions in shared memory: usable across fork */
};

/* Make a ring of at least min_size bytes (rounded up to the mapping
 * granularity) and store it in *out.  The memory is reserved as one range of
 * address space, then the ring's memory object is mapped over it twice with
 * MAP_FIXED (and, with MMK_RING_SHARED, a header page before them), so no
 * other thread's mapping can land in between.  Errors: -EINVAL (NULL out,
 * min_size 0, unknown flags), -ENOMEM (out of memory or address space, or
 * min_size too large to map twice), -EOPNOTSUPP (MMK_RING_SHARED where 64-bit
 * atomics are not lock-free, so not usable across processes), -ENOSPC (the
 * shm fallback: /dev/shm is full), -EMFILE, or what memfd_create, shm_open,
 * ftruncate or mmap returned.  On error *out is
 * NULL and nothing is left mapped or open. */
MMK_API int mmk_ring_new(mmk_ring **out, size_t min_size, unsigned flags);

/* Unmap and free the ring.  Pointers into it become invalid.  With
 * MMK_RING_SHARED, each process frees its own copy; the memory goes away with
 * the last one.  NULL is a no-op. */
MMK_API void mmk_ring_free(mmk_ring *r);

/* The capacity in bytes (0 for NULL). */
MMK_API size_t mmk_ring_size(const mmk_ring *r);

/* The MMK_RING_* flags the ring was made with (0 for NULL). */
MMK_API unsigned mmk_ring_flags(const mmk_ring *r);

/* Bytes buffered and not yet consumed (0 for NULL).  Any thread; a snapshot
 * that the other side may change right away. */
MMK_API size_t mmk_ring_readable(const mmk_ring *r);

/* Bytes that can be written without dropping anything: capacity minus
 * readable (0 for NULL).  Any thread; a snapshot.  In overwrite mode writes
 * may go past it (they drop the oldest bytes). */
MMK_API size_t mmk_ring_writable(const mmk_ring *r);

/* Producer: the free space, all of it, as one contiguous range: returns its
 * start and stores its length in *n (0 when the ring is full; the pointer is
 * valid all the same).  Write into it, then publish with mmk_ring_produce.
 * Never drops data, even in overwrite mode (see mmk_ring_reserve).  NULL (and
 * *n = 0) for a NULL ring; n must not be NULL. */
MMK_API void *mmk_ring_write_ptr(mmk_ring *r, size_t *n);

/* Producer: n contiguous bytes of free space, or NULL.  Without
 * MMK_RING_OVERWRITE, NULL when fewer than n bytes are free.  In overwrite
 * mode this drops the oldest unread bytes to make room (they count as lost),
 * and fails only when n is more than the capacity.  NULL for a NULL ring.
 * Publish with mmk_ring_produce. */
MMK_API void *mmk_ring_reserve(mmk_ring *r, size_t n);

/* Producer: publish the next n bytes of free space (written through the
 * pointer from mmk_ring_write_ptr or mmk_ring_reserve) to the consumer, with
 * release ordering.  n must not exceed the space obtained; a larger n is
 * clamped to the free space (in overwrite mode, room is made as by
 * mmk_ring_reserve and n is clamped to the capacity). */
MMK_API void mmk_ring_produce(mmk_ring *r, size_t n);

/* Consumer: the buffered data, all of it, as one contiguous range: returns
 * its start and stores its length in *n (0 when empty; the pointer is valid
 * all the same).  The bytes stay in the ring until mmk_ring_consume.  In
 * overwrite mode a concurrent producer may overwrite them (see above).  NULL
 * (and *n = 0) for a NULL ring; n must not be NULL. */
MMK_API const void *mmk_ring_read_ptr(mmk_ring *r, size_t *n);

/* Consumer: release the first n buffered bytes (clamped to what is buffered),
 * with release ordering: the producer may reuse their space. */
MMK_API void mmk_ring_consume(mmk_ring *r, size_t n);

/* Producer: copy up to n bytes from buf into the ring, in one piece.  Returns
 * the number copied: all n if they fit, else as many as fit (0 when full);
 * never blocks.  In overwrite mode every byte is taken (returns n, or
 * SSIZE_MAX if n is larger): the oldest unread bytes are dropped as needed,
 * and of a write longer than the capacity only the last capacity bytes are
 * kept.  Errors: -EINVAL (NULL ring, NULL buf with n > 0). */
MMK_API ssize_t mmk_ring_write(mmk_ring *r, const void *buf, size_t n);

/* Consumer: copy up to n buffered bytes into buf and consume them.  Returns
 * the number copied, 0 when empty; never blocks.  In overwrite mode the bytes
 * returned are intact and in order, possibly after a gap (see above).
 * Errors: -EINVAL (NULL ring, NULL buf with n > 0). */
MMK_API ssize_t mmk_ring_read(mmk_ring *r, void *buf, size_t n);

/* Consumer: like mmk_ring_read, but leaves the bytes in the ring.  (In
 * overwrite mode bytes found overwritten are still dropped and counted.) */
MMK_API ssize_t mmk_ring_peek(mmk_ring *r, void *buf, size_t n);

/* Consumer: discard everything buffered (what was readable when it ran; the
 * producer may add more at once).  Bytes discarded this way are not counted
 * as lost.  With no concurrent producer, the ring is empty afterwards. */
MMK_API void mmk_ring_clear(mmk_ring *r);

/* Bytes of the stream the consumer never got, because the producer dropped
 * or overwrote them in overwrite mode: a running total since mmk_ring_new,
 * updated by the consumer's calls (so a drop shows once the consumer next
 * looks).  Always 0 without MMK_RING_OVERWRITE, and for NULL.  Any thread. */
MMK_API uint64_t mmk_ring_lost(const mmk_ring *r);

#ifdef __cplusplus
}
#endif
#endif /* MMKIT_RING_H */
