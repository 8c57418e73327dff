/* tests/support/testutil.h — scratch directories and file helpers for tests.
 *
 * Every test that touches the filesystem calls tu_setup() first (a Criterion
 * .init hook does it) and gets a fresh private directory; tu_teardown() (the
 * .fini hook) removes it with everything in it, so tests leave nothing behind.
 */
#ifndef MMK_TEST_UTIL_H
#define MMK_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

void        tu_setup(void);     /* create the scratch directory */
void        tu_teardown(void);  /* remove it recursively */
const char *tu_dir(void);       /* its path */
/* A path inside the scratch directory; the string lives until teardown. */
const char *tu_path(const char *name);
/* Create (or replace) a file holding n bytes of `data`; mode 0644. */
void        tu_write_file(const char *path, const void *data, size_t n);
/* Create a file of n bytes filled with tu_pattern(seed); returns its path. */
const char *tu_pattern_file(const char *name, size_t n, uint32_t seed);
/* Deterministic bytes: the byte at file offset `off` for `seed`. */
uint8_t     tu_pattern_byte(uint64_t off, uint32_t seed);
void        tu_pattern(void *buf, size_t n, uint64_t off, uint32_t seed);
/* Read a whole file into a malloc'd buffer (caller frees); *n gets its size. */
void       *tu_read_file(const char *path, size_t *n);
int64_t     tu_file_size(const char *path);   /* -1 if missing */
/* Open descriptors of this process right now (to check nothing leaks). */
int         tu_open_fds(void);
/* Threads of this process right now (entries of /proc/self/task), -1 if
 * unknown. */
int         tu_thread_count(void);
/* Entries of the directory `path` other than "." and "..", -1 if it cannot
 * be read. */
int         tu_dir_entries(const char *path);
/* Mappings of this process right now (lines of /proc/self/maps). */
int         tu_mapping_count(void);
/* The permission field ("r-xp", "rw-s", ...) of the mapping holding `addr`,
 * from /proc/self/maps, copied into perms[5]; 0, or -1 if no mapping holds it. */
int         tu_mapping_perms(const void *addr, char perms[5]);
/* Under LeakSanitizer, check for leaks now: 1 if there are some (reported on
 * stderr), else 0; always 0 without it.  Call it where a test ends (a .fini
 * hook): Criterion ignores the exit status of a test process once the test
 * has reported, so LSan's own check at exit cannot fail a test. */
int         tu_leaks(void);
/* Locked memory of this process in KiB (VmLck in /proc/self/status), -1 if
 * unknown. */
long        tu_locked_kib(void);

#endif
