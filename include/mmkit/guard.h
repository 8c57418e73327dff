/* mmkit/guard.h — a SIGBUS or SIGSEGV inside a mapping becomes an error code.
 *
 * Touching a mapped page whose file was truncated, whose disk is full (a write
 * into a sparse file), or whose storage failed raises SIGBUS, and the default
 * action kills the process.  mmkit installs one process-wide handler for
 * SIGBUS and SIGSEGV (lazily, when the first map is created, or explicitly with
 * mmk_guard_install) and runs every copy it makes between user memory and a
 * mapping inside a guarded scope: a fault there unwinds the copy and the call
 * returns an error instead.
 *
 * What the caller sees:
 *   -EIO     reading a page that cannot be read: the file was truncated below
 *            it (by anyone, through any descriptor) or the storage returned an
 *            I/O error.  The bytes before the fault may have been copied.
 *   -ENOSPC  writing a page that needed a new block on a full filesystem (or
 *            over quota).  mmk_map_write reports -EIO instead when the page is
 *            past the current end of file (the file shrank).
 *   -EFAULT  the address is not mapped or not accessible (SIGSEGV inside the
 *            copied range: a bad user buffer, say).
 * The map stays usable: reads and writes of the part of the file that still
 * exists keep working, and if the file grows again its pages come back.
 *
 * Faults that are not mmkit's — no guarded scope on the faulting thread, or a
 * fault address outside the scope's ranges — go to the handler that was
 * installed before mmkit's (a debugger's, AddressSanitizer's, the program's
 * own); where that was the default action, the process still dies with the
 * usual signal and core dump.  Real bugs are never hidden.
 *
 * Hosts that own signal handling can opt out with MMK_NO_SIGNALS=1 in the
 * environment or mmk_guard_disable() before the first map: mmkit then installs
 * nothing and its copies are plain memcpy (a fault kills as with raw mmap).
 *
 * Thread safety: all functions may be called from any thread.  Scopes are
 * per-thread; two threads faulting at once each get their own error.
 * Cost: entering a scope is a sigsetjmp without saving the signal mask (no
 * system call); see `make bench` for the measured overhead.
 */
#ifndef MMKIT_GUARD_H
#define MMKIT_GUARD_H

#include <mmkit/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Install the handler now (it is installed lazily otherwise).  Idempotent.
 * Returns 0, -ECANCELED if signals were disabled (MMK_NO_SIGNALS=1 or
 * mmk_guard_disable), or the error of sigaction. */
MMK_API int mmk_guard_install(void);

/* Opt out of signal handling: must be called before the first map is created
 * (or mmk_guard_install); returns -EBUSY if the handler is already installed.
 * Copies are unguarded afterwards. */
MMK_API int mmk_guard_disable(void);

/* 1 if the handler is installed and copies are guarded, 0 otherwise. */
MMK_API int mmk_guard_active(void);

/* memcpy(dst, src, n) that survives a fault in either range: returns 0, or
 * -EIO (a page of src could not be read), -ENOSPC (a page of dst needed a
 * block on a full filesystem) or -EFAULT (an address in either range is not
 * mapped or not accessible).  After an error, dst holds an unknown prefix of
 * the bytes.  n 0 returns 0; the ranges must not overlap. */
MMK_API int mmk_guard_copy(void *dst, const void *src, size_t n);

/* Run fn(arg) with SIGBUS guarded, for code that reads or writes mappings
 * directly: returns fn's result, or -EIO if a SIGBUS (at any address) stopped
 * it part way.  SIGSEGV is not caught (it is a bug) and goes to the previous
 * handler.  When a fault stops fn, fn does not return: it is abandoned where
 * it stood, so fn must not take locks, allocate or free memory, or call any
 * function that is not async-signal-safe or that could be left half-done
 * (stdio, malloc, pthread_mutex_lock ...): plain loads, stores, memcpy and
 * arithmetic over the mapping are what it is for.  Nestable. */
MMK_API int mmk_guard_run(int (*fn)(void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif /* MMKIT_GUARD_H */
