/* src/fs.c — a rooted directory of mmk_files.
 *
 * Confinement: openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) on the root's
 * descriptor where the kernel has it; otherwise a walk one component at a
 * time with O_NOFOLLOW that refuses "..", absolute paths and every symbolic
 * link (stricter than needed, never looser).
 */
#include <mmkit/fs.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "file_internal.h"
#include "os/os.h"

#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

#define DEFAULT_DIR_MODE 0755

struct mmk_fs {
    int             rootfd;
    mmk_file_opts   defaults;
    pthread_mutex_t lock;
    mmk_file      **files;
    size_t          nfiles, cap;
    mmk__syncer    *syncer;    /* made with the first PERIODIC file */
};

static atomic_int openat2_works = 1;

/* Open `rel` beneath the walk's current directory without following links. */
static int walk_open(int rootfd, const char *rel, int oflags, mode_t mode)
{
    if (rel[0] == '/')
        return -EXDEV;
    char *copy = strdup(rel);
    if (!copy)
        return -ENOMEM;
    int dir = rootfd, rc = 0;
    char *save = NULL, *comp = strtok_r(copy, "/", &save);
    while (comp) {
        char *next = strtok_r(NULL, "/", &save);
        if (!strcmp(comp, "..")) {
            rc = -EXDEV;
            break;
        }
        if (!strcmp(comp, ".") && next) {
            comp = next;
            continue;
        }
        int fd;
        if (next)
            fd = mmk__sys.openat(dir, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
        else
            fd = mmk__sys.openat(dir, comp, oflags | O_NOFOLLOW, mode);
        if (fd < 0) {
            rc = mmk__neg_errno();
            break;
        }
        if (dir != rootfd)
            mmk__close_quiet(dir);
        dir = fd;
        if (!next) {
            rc = fd;
            dir = rootfd;
        }
        comp = next;
    }
    if (dir != rootfd)
        mmk__close_quiet(dir);
    if (rc == 0) /* "" or only "." components: the root itself */
        rc = mmk__sys.openat(rootfd, ".", oflags, mode) < 0 ? mmk__neg_errno() : -EISDIR;
    free(copy);
    return rc;
}

/* A descriptor for `rel` beneath the root, or a negative errno. */
static int resolve(const mmk_fs *fs, const char *rel, int oflags, mode_t mode)
{
    return mmk__open_beneath(fs->rootfd, rel, oflags, mode);
}

int mmk__open_beneath(int rootfd, const char *rel, int oflags, mode_t mode)
{
    if (!rel || !*rel)
        return -EINVAL;
#ifdef SYS_openat2
    if (atomic_load(&openat2_works)) {
        struct open_how how;
        memset(&how, 0, sizeof how);
        how.flags = (uint64_t)(unsigned)oflags;
        how.mode = (oflags & O_CREAT) ? mode : 0;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        long fd = syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        if (errno != ENOSYS && errno != EPERM)
            return -errno;
        /* ENOSYS: an old kernel.  EPERM: maybe a seccomp filter refusing the
         * call (the walk then reports a real EPERM itself). */
        if (errno == ENOSYS)
            atomic_store(&openat2_works, 0);
    }
#endif
    return walk_open(rootfd, rel, oflags, mode);
}

int mmk__mkdirs_beneath(int rootfd, const char *rel, mode_t mode)
{
    /* Each prefix a/, a/b/, ... of rel's directory part, made if missing. */
    char *copy = strdup(rel);
    if (!copy)
        return -ENOMEM;
    int rc = 0;
    for (char *p = strchr(copy, '/'); p && rc == 0; p = strchr(p + 1, '/')) {
        *p = '\0';
        char *slash = strrchr(copy, '/');
        const char *name = slash ? slash + 1 : copy;
        int dfd;
        if (slash) {
            *slash = '\0';
            dfd = mmk__open_beneath(rootfd, copy, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
            *slash = '/';
        } else {
            dfd = mmk__sys.openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
            dfd = dfd < 0 ? mmk__neg_errno() : dfd;
        }
        if (dfd < 0) {
            rc = dfd;
        } else {
            if (mkdirat(dfd, name, mode) < 0 && errno != EEXIST)
                rc = -errno;
            mmk__close_quiet(dfd);
        }
        *p = '/';
    }
    free(copy);
    return rc;
}

/* The directory holding rel's last component (beneath the root), and that
 * component.  *name points into a copy freed with *buf. */
static int resolve_parent(const mmk_fs *fs, const char *rel, char **buf, const char **name)
{
    if (!rel || !*rel)
        return -EINVAL;
    char *copy = strdup(rel);
    if (!copy)
        return -ENOMEM;
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0'; /* "a/b/" names b */
    char *slash = strrchr(copy, '/');
    const char *last = slash ? slash + 1 : copy;
    int dfd;
    if (!*last || !strcmp(last, ".") || !strcmp(last, "..")) {
        free(copy);
        return -EINVAL;
    }
    if (!slash) {
        dfd = mmk__sys.openat(fs->rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
        dfd = dfd < 0 ? mmk__neg_errno() : dfd;
    } else if (slash == copy) {
        dfd = -EXDEV; /* "/name": absolute */
    } else {
        *slash = '\0';
        dfd = resolve(fs, copy, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    }
    if (dfd < 0) {
        free(copy);
        return dfd;
    }
    *buf = copy;
    *name = last;
    return dfd;
}

int mmk_fs_new(mmk_fs **out, const char *root, const mmk_file_opts *defaults)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!root || !*root)
        return -EINVAL;
    mmk_fs *fs = calloc(1, sizeof *fs);
    if (!fs)
        return -ENOMEM;
    if (defaults)
        fs->defaults = *defaults;
    fs->defaults.flags = 0;
    mmk_file_opts probe = fs->defaults;
    int rc = mmk__file_check_opts(&probe);
    if (rc < 0) {
        free(fs);
        return rc;
    }
    fs->rootfd = mmk__sys.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fs->rootfd < 0) {
        rc = mmk__neg_errno();
        free(fs);
        return rc;
    }
    pthread_mutex_init(&fs->lock, NULL);
    *out = fs;
    return 0;
}

static int track(mmk_fs *fs, mmk_file *f)
{
    int rc = 0;
    pthread_mutex_lock(&fs->lock);
    if (fs->nfiles == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 16;
        mmk_file **n = realloc(fs->files, cap * sizeof *n);
        if (!n)
            rc = -ENOMEM;
        else {
            fs->files = n;
            fs->cap = cap;
        }
    }
    if (rc == 0)
        fs->files[fs->nfiles++] = f;
    pthread_mutex_unlock(&fs->lock);
    return rc;
}

void mmk__fs_forget(mmk_fs *fs, mmk_file *f)
{
    pthread_mutex_lock(&fs->lock);
    for (size_t i = 0; i < fs->nfiles; i++) {
        if (fs->files[i] == f) {
            fs->files[i] = fs->files[--fs->nfiles];
            break;
        }
    }
    pthread_mutex_unlock(&fs->lock);
}

int mmk_fs_open(mmk_fs *fs, mmk_file **out, const char *relpath, unsigned flags)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!fs || !relpath)
        return -EINVAL;
    mmk_file_opts o = fs->defaults;
    o.flags = flags;
    int rc = mmk__file_check_opts(&o);
    if (rc < 0)
        return rc;
    mmk__syncer *syncer = NULL;
    if (o.sync == MMK_SYNC_PERIODIC) {
        pthread_mutex_lock(&fs->lock);
        if (!fs->syncer)
            rc = mmk__syncer_new(&fs->syncer);
        syncer = fs->syncer;
        pthread_mutex_unlock(&fs->lock);
        if (rc < 0)
            return rc;
    }
    mode_t mode;
    int of = mmk__file_open_flags(&o, &mode);
    int fd = resolve(fs, relpath, of, mode);
    if (fd < 0)
        return fd;
    mmk_file *f;
    if ((rc = mmk__file_from_fd_in(&f, fd, &o, syncer, fs)) < 0) {
        mmk__close_quiet(fd);
        return rc;
    }
    if (flags & MMK_CREATE) {
        /* Its directory, beneath the root, for the first sync. */
        const char *slash = strrchr(relpath, '/');
        int dfd;
        if (!slash || slash == relpath) {
            dfd = mmk__sys.openat(fs->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        } else {
            char *dir = strndup(relpath, (size_t)(slash - relpath));
            dfd = dir ? resolve(fs, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0) : -1;
            free(dir);
        }
        mmk__file_set_dir(f, dfd < 0 ? -1 : dfd);
    }
    if ((rc = track(fs, f)) < 0) {
        mmk_file_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int mmk_fs_mkdir(mmk_fs *fs, const char *relpath, mode_t mode)
{
    if (!fs)
        return -EINVAL;
    char *buf;
    const char *name;
    int dfd = resolve_parent(fs, relpath, &buf, &name);
    if (dfd < 0)
        return dfd;
    int rc = mkdirat(dfd, name, mode ? mode : DEFAULT_DIR_MODE) < 0 ? -errno : 0;
    mmk__close_quiet(dfd);
    free(buf);
    return rc;
}

int mmk_fs_remove(mmk_fs *fs, const char *relpath)
{
    if (!fs)
        return -EINVAL;
    char *buf;
    const char *name;
    int dfd = resolve_parent(fs, relpath, &buf, &name);
    if (dfd < 0)
        return dfd;
    int rc = unlinkat(dfd, name, 0) < 0 ? -errno : 0;
    if (rc == -EISDIR || rc == -EPERM) /* EPERM: a directory, on some systems */
        rc = unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
    mmk__close_quiet(dfd);
    free(buf);
    return rc;
}

int mmk_fs_rename(mmk_fs *fs, const char *from, const char *to)
{
    if (!fs)
        return -EINVAL;
    char *b1, *b2;
    const char *n1, *n2;
    int d1 = resolve_parent(fs, from, &b1, &n1);
    if (d1 < 0)
        return d1;
    int d2 = resolve_parent(fs, to, &b2, &n2);
    if (d2 < 0) {
        mmk__close_quiet(d1);
        free(b1);
        return d2;
    }
    int rc = renameat(d1, n1, d2, n2) < 0 ? -errno : 0;
    mmk__close_quiet(d1);
    mmk__close_quiet(d2);
    free(b1);
    free(b2);
    return rc;
}

int mmk_fs_stat(mmk_fs *fs, const char *relpath, struct stat *st)
{
    if (!fs || !st)
        return -EINVAL;
    char *buf;
    const char *name;
    int dfd = resolve_parent(fs, relpath, &buf, &name);
    if (dfd < 0)
        return dfd;
    int rc = fstatat(dfd, name, st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
    mmk__close_quiet(dfd);
    free(buf);
    return rc;
}

int mmk_fs_sync(mmk_fs *fs)
{
    if (!fs)
        return -EINVAL;
    int rc = 0;
    /* Syncs under the lock: a close waits for them (it takes the lock to
     * forget the file). */
    pthread_mutex_lock(&fs->lock);
    for (size_t i = 0; i < fs->nfiles; i++) {
        int r = mmk_file_sync(fs->files[i]);
        if (r < 0 && rc == 0)
            rc = r;
    }
    pthread_mutex_unlock(&fs->lock);
    return rc;
}

int mmk_fs_free(mmk_fs *fs)
{
    if (!fs)
        return -EINVAL;
    int rc = 0;
    for (;;) {
        pthread_mutex_lock(&fs->lock);
        mmk_file *f = fs->nfiles ? fs->files[fs->nfiles - 1] : NULL;
        pthread_mutex_unlock(&fs->lock);
        if (!f)
            break;
        int r = mmk_file_close(f); /* forgets itself */
        if (r == -EBUSY) {
            /* Pins held: leave it to its owner, who closes it after the fs
             * and its syncer are gone. */
            mmk__fs_forget(fs, f);
            mmk__file_leave_fs(f);
            r = 0;
        }
        if (r < 0 && rc == 0)
            rc = r;
    }
    mmk__syncer_free(fs->syncer);
    mmk__close_quiet(fs->rootfd);
    pthread_mutex_destroy(&fs->lock);
    free(fs->files);
    free(fs);
    return rc;
}
