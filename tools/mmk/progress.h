/* tools/mmk/progress.h — a one-line progress bar on stderr, for long work.
 *
 * Drawn only when stderr is a terminal and the caller did not ask for quiet,
 * and only once the work has lasted PROGRESS_DELAY (short jobs print
 * nothing).  The update function has the signature of the hashing engine's
 * progress callback.
 */
#ifndef MMK_TOOL_PROGRESS_H
#define MMK_TOOL_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mmk_progress {
    bool        enabled;
    bool        drawn;
    const char *label;
    double      start;
} mmk_progress;

/* enabled: the caller's wish (false for --quiet); isatty(stderr) is checked here. */
void mmk_progress_init(mmk_progress *p, const char *label, bool enabled);
void mmk_progress_update(void *p, uint64_t done, uint64_t total);
/* Erase the bar (if one was drawn). */
void mmk_progress_done(mmk_progress *p);

/* "1.5 GiB", "512 KiB", "17 B" */
void mmk_format_size(char *buf, size_t cap, uint64_t bytes);

#endif
