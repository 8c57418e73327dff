/* src/guard_internal.h — what other modules use of the guard. */
#ifndef MMK_GUARD_INTERNAL_H
#define MMK_GUARD_INTERNAL_H

#include <stddef.h>

/* Install the handler unless signals are disabled: 0 when copies are guarded,
 * -ECANCELED when disabled, or sigaction's error.  Cheap after the first call. */
int mmk__guard_ensure(void);

/* mmk_guard_copy that also reports the faulting address in *fault (if not
 * NULL) when it returns an error. */
int mmk__guard_copy_at(void *dst, const void *src, size_t n, void **fault);

#endif
