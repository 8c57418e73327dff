/* mmkit/fs.h — a rooted directory of mmk_files with shared defaults.
 *
 * Every path is relative to the root and resolved beneath it only (openat2
 * with RESOLVE_BENEATH where the kernel has it, Linux 5.6+; otherwise a walk
 * one component at a time that refuses symbolic links): "..", absolute paths
 * and symbolic links that would leave the root give -EXDEV and create nothing
 * outside it.  Paths from untrusted input can be used as they are.
 *
 * Files opened through an fs take its default options (cache, sync policy,
 * mode) with their own flags, are synced together by mmk_fs_sync, and with
 * MMK_SYNC_PERIODIC are driven by one syncer thread of the fs.
 *
 * Thread safety: all functions may be called from many threads at once,
 * except mmk_fs_free.
 */
#ifndef MMKIT_FS_H
#define MMKIT_FS_H

#include <sys/stat.h>

#include <mmkit/file.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmk_fs mmk_fs;

/* An fs rooted at the directory `root` (which must exist).  defaults: the
 * options for files opened in it (NULL: mmk_file_open's defaults); their
 * flags are ignored (each open names its own).  Errors: -EINVAL, -ENOENT,
 * -ENOTDIR, -ENOMEM. */
MMK_API int mmk_fs_new(mmk_fs **out, const char *root, const mmk_file_opts *defaults);

/* Open relpath beneath the root with `flags` (MMK_RDONLY/RDWR/COPY, CREATE,
 * EXCL, TRUNC, NOFOLLOW, APPEND) and the fs's other defaults.  Close it with
 * mmk_file_close as any handle.  Errors: those of mmk_file_open, and -EXDEV
 * (the path leaves the root), -EINVAL (empty path). */
MMK_API int mmk_fs_open(mmk_fs *fs, mmk_file **out, const char *relpath, unsigned flags);

/* Directories and names beneath the root (same confinement). */
MMK_API int mmk_fs_mkdir(mmk_fs *fs, const char *relpath, mode_t mode); /* 0 = 0755 */
MMK_API int mmk_fs_remove(mmk_fs *fs, const char *relpath); /* a file or an empty dir */
MMK_API int mmk_fs_rename(mmk_fs *fs, const char *from, const char *to);
MMK_API int mmk_fs_stat(mmk_fs *fs, const char *relpath, struct stat *st); /* no follow */

/* Sync every file open in the fs (mmk_file_sync each); the first error. */
MMK_API int mmk_fs_sync(mmk_fs *fs);

/* Close every file still open in it (syncing as their policies say), stop
 * its syncer, free it.  Returns the first error; NULL is -EINVAL. */
MMK_API int mmk_fs_free(mmk_fs *fs);

#ifdef __cplusplus
}
#endif
#endif /* MMKIT_FS_H */
