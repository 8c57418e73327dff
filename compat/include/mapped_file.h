/* mapped_file.h — the mf_* C API: read, write and map any range of a file.
 *
 * A small, handle-based API for memory-mapped file access, implemented on
 * mmkit's window cache (mmkit/cache.h): a file is never mapped whole up
 * front; ranges are mapped on demand in windows shared by every handle of the
 * process, under budgets of address space and of mapping count.  So files
 * larger than the address space, hundreds of thousands of small maps held at
 * once, and overlapping maps adding up to terabytes all work.
 *
 * Errors: a failing function returns NULL (MF_OPEN_FAILED, MF_MAP_FAILED) or
 * -1 and sets errno (mmkit's own negative error codes are converted).
 *
 * Thread safety: every function may be called from many threads at once on
 * the same handle, except mf_close, which must not race with any other call
 * on the handle it closes (and the handle is invalid afterwards).  Reads,
 * writes and maps of one handle do not serialise on one lock.
 *
 * Linking: libmappedfile is a separate library that links to mmkit; nothing
 * of mmkit is folded in.  Shared: `cc prog.c -lmappedfile` (libmappedfile.so.0
 * needs libmmkit.so.0 and finds it in its own directory; it exports only
 * mf_*).  Static: `cc prog.c -lmappedfile -lmmkit -lpthread` against
 * libmappedfile.a and libmmkit.a.  Or `pkg-config --libs mappedfile` (with
 * --static for the static pair).
 *
 * off_t must be 64 bits: on 32-bit systems compile with
 * -D_FILE_OFFSET_BITS=64 (the header refuses to compile otherwise).
 */
#ifndef MAPPED_FILE_H
#define MAPPED_FILE_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MF_BUILDING) && defined(__GNUC__)
#define MF_API __attribute__((visibility("default")))
#else
#define MF_API
#endif

/* The library is built with a 64-bit off_t; a program with a 32-bit one
 * would pass offsets the library misreads.  (An array of negative size is a
 * compile error in C and C++ alike.) */
typedef char mf_off_t_must_be_64_bits_use_D_FILE_OFFSET_BITS_64[sizeof(off_t) == 8 ? 1 : -1];

typedef void *mf_handle_t;        /* an open file */
typedef void *mf_mapmem_handle_t; /* one mapped range of it */

#define MF_OPEN_FAILED NULL
#define MF_MAP_FAILED  NULL

/* Open an existing file: read-write, or read-only when write access is
 * denied (EACCES, EPERM, EROFS, ETXTBSY).  Never creates a file, never blocks
 * (a FIFO is opened non-blocking and refused) and maps nothing up front.
 * Returns MF_OPEN_FAILED (NULL) with errno: EINVAL (NULL pathname), ENOENT,
 * EISDIR, ENODEV (not a regular file: FIFO, device, socket), ENOMEM, or any
 * error of open(2). */
MF_API mf_handle_t mf_open(const char *pathname);

/* Release every range still mapped (their pointers become invalid), write
 * everything back to stable storage (msync/fdatasync) and close.  Returns 0,
 * or -1 with errno EINVAL (NULL or not an open handle) or EIO (the write-back
 * failed); the handle is freed either way. */
MF_API int mf_close(mf_handle_t mf);

/* Like pread(2): copy up to count bytes at offset into buf; returns the count
 * copied, short at end of file and 0 at or past it.  Returns -1 with errno
 * EINVAL (NULL handle, NULL buf with count > 0, negative offset) or EIO (the
 * file shrank under the mapping or its storage failed).  Fault-safe: a
 * truncated file gives a short count or EIO, never SIGBUS. */
MF_API ssize_t mf_read(mf_handle_t mf, void *buf, size_t count, off_t offset);

/* Like pwrite(2): copy count bytes from buf to the file at offset; a write
 * past end of file grows the file (the gap reads as zeros).  Returns count,
 * or -1 with errno EINVAL (NULL handle or buf, negative offset), EBADF (the
 * handle is read-only), EFBIG (offset + count past the largest file size),
 * ENOSPC (the filesystem is full), EIO. */
MF_API ssize_t mf_write(mf_handle_t mf, const void *buf, size_t count, off_t offset);

/* Map [offset, offset + size) of the file: returns a pointer to exactly that
 * range (any offset: no alignment needed) and stores a handle for mf_unmap
 * in *h.  The memory is writable when the file handle is (writes reach the
 * file, and are on stable storage after mf_close) and read-only otherwise.
 * Overlapping ranges share mappings, so holding many maps costs little
 * address space.  The range must lie inside the file: grow the file with
 * mf_write first.  Returns MF_MAP_FAILED (NULL) with errno EINVAL (NULL
 * handle or h, size 0, negative offset, range past end of file) or ENOMEM
 * (no address space left for a new mapping); *h is set to NULL on failure.
 * Touching the memory after the file was truncated below it raises SIGBUS,
 * as with mmap(2). */
MF_API void *mf_map(mf_handle_t mf, off_t offset, size_t size, mf_mapmem_handle_t *h);

/* Release a range mapped by mf_map on the same mf.  Returns 0, or -1 with
 * errno EINVAL: NULL mf or h, or h not a live map of this mf — already
 * unmapped, from another mf, or made up (handles are checked against a
 * record of live maps, never dereferenced). */
MF_API int mf_unmap(mf_handle_t mf, mf_mapmem_handle_t h);

/* The file's size: as it was at mf_open, grown by this handle's mf_write
 * (growth through other descriptors or handles is not tracked; a shrink is
 * noticed by the first mf_read that meets it).  Returns -1 with errno EINVAL
 * for a NULL handle. */
MF_API off_t mf_file_size(mf_handle_t mf);

#ifdef __cplusplus
}
#endif
#endif /* MAPPED_FILE_H */
