/* src/file_internal.h — shared by file.c, fs.c and syncer.c. */
#ifndef MMK_FILE_INTERNAL_H
#define MMK_FILE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <mmkit/file.h>

/* Options valid for mmk_file_open (-EINVAL otherwise). */
int mmk__file_check_opts(const mmk_file_opts *o);
/* open(2) flags and creation mode for the options. */
int mmk__file_open_flags(const mmk_file_opts *o, mode_t *mode);
/* A handle on a descriptor opened with mmk__file_open_flags; takes it over
 * on success (the caller closes it on failure). */
int mmk__file_from_fd(mmk_file **out, int fd, const mmk_file_opts *o);

typedef struct mmk__syncer mmk__syncer;
struct mmk_fs;
/* The same for a file of an fs: PERIODIC files use `syncer`, and close
 * tells the fs (mmk__fs_forget). */
int mmk__file_from_fd_in(mmk_file **out, int fd, const mmk_file_opts *o, mmk__syncer *syncer,
                         struct mmk_fs *fs);
void mmk__fs_forget(struct mmk_fs *fs, mmk_file *f);
/* MMK_CREATE: the directory holding the file (taken over; -1 for none),
 * fsynced by the first successful mmk_file_sync. */
void mmk__file_set_dir(mmk_file *f, int dirfd);
/* The fs of f is being freed while f stays open (pins held): f forgets it,
 * and a PERIODIC f moves from the fs's syncer to the process-wide one. */
void mmk__file_leave_fs(mmk_file *f);

/* ---- confinement (src/fs.c) ---------------------------------------------- */

/* open(2) of rel beneath the directory rootfd (openat2 RESOLVE_BENEATH, or a
 * walk that refuses "..", absolute paths and symbolic links): a descriptor
 * or a negative errno (-EXDEV for a path that leaves the root). */
int mmk__open_beneath(int rootfd, const char *rel, int oflags, mode_t mode);
/* Make every missing directory on the way to rel's last component. */
int mmk__mkdirs_beneath(int rootfd, const char *rel, mode_t mode);

/* ---- the periodic syncer (src/syncer.c) ---------------------------------- */

/* The process-wide syncer for PERIODIC files opened outside an fs. */
mmk__syncer *mmk__syncer_global(void);
int  mmk__syncer_new(mmk__syncer **out);
/* Stops its thread; no file may still be registered. */
void mmk__syncer_free(mmk__syncer *s);
/* Register f: synced every mmk__file_sync_every(f) ms while dirty.  The
 * thread starts with the first file and stops with the last. */
int  mmk__syncer_add(mmk__syncer *s, mmk_file *f);
/* Unregister f; waits for a sync of f in progress. */
void mmk__syncer_remove(mmk__syncer *s, mmk_file *f);

/* What the syncer needs of a file. */
bool       mmk__file_dirty(mmk_file *f);
uint64_t   mmk__file_sync_every(const mmk_file *f);
uint64_t  *mmk__file_next_sync(mmk_file *f);
mmk_file **mmk__file_sync_next(mmk_file *f);
void       mmk__file_set_syncer(mmk_file *f, mmk__syncer *s);

#endif
