/* tests/test_fs.c — rooted sets of files (mmkit/fs.h): confinement beneath
 * the root (nothing is ever created outside it), names and directories, the
 * shared defaults, mmk_fs_sync, the fs's syncer thread, and mmk_fs_free. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mmkit.h>

#include "inject.h"
#include "testutil.h"

static void fs_fini(void)
{
    tu_teardown();
    if (tu_leaks()) {
        fprintf(stderr, "memory leaked: see the LeakSanitizer report above\n");
        abort();
    }
}

static void fs_init(void)
{
    tu_setup();
    umask(022); /* the mode tests below assume it */
}

TestSuite(fs, .init = fs_init, .fini = fs_fini, .timeout = 60);

#define KIB ((size_t)1 << 10)

/* The syncer's period in these tests, and how long a loaded machine may
 * take to show its effect. */
#define PERIODIC_MS 20
#define WAIT_MS     3000

/* ---- helpers ------------------------------------------------------------ */

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static unsigned long sync_events(void)
{
    return inject_count(INJ_FDATASYNC) + inject_count(INJ_FSYNC) + inject_count_msync_sync();
}

/* Wait up to WAIT_MS for the process to have `n` threads. */
static bool threads_become(int n)
{
    uint64_t end = now_ms() + WAIT_MS;
    while (tu_thread_count() != n) {
        if (now_ms() > end)
            return false;
        sleep_ms(2);
    }
    return true;
}

/* The tree every confinement test starts from:
 *   <tmp>/root/              the fs root
 *     sub/f                  "inside"
 *     a/                     an empty directory
 *     out_rel -> ../outside  links that leave the root
 *     out_abs -> <tmp>/outside
 *     up -> ..
 *     dangle -> ../outside/new       (its target does not exist)
 *     dangle_abs -> <tmp>/outside/new2
 *     in_dir -> sub          links that stay inside
 *     in_file -> sub/f
 *   <tmp>/outside/           must stay empty
 *   <tmp>/outside2/keep      must stay where it is
 */
static const char *root, *outside, *outside2;
static char deep_escape[PATH_MAX];

static void make_tree(void)
{
    root = tu_path("root");
    outside = tu_path("outside");
    outside2 = tu_path("outside2");
    cr_assert_eq(mkdir(root, 0755), 0);
    cr_assert_eq(mkdir(outside, 0755), 0);
    cr_assert_eq(mkdir(outside2, 0755), 0);
    cr_assert_eq(mkdir(tu_path("root/sub"), 0755), 0);
    cr_assert_eq(mkdir(tu_path("root/a"), 0755), 0);
    tu_write_file(tu_path("root/sub/f"), "inside", 6);
    tu_write_file(tu_path("outside2/keep"), "keep", 4);
    char buf[PATH_MAX];
    cr_assert_eq(symlink("../outside", tu_path("root/out_rel")), 0);
    cr_assert_eq(symlink(outside, tu_path("root/out_abs")), 0);
    cr_assert_eq(symlink("..", tu_path("root/up")), 0);
    cr_assert_eq(symlink("../outside/new", tu_path("root/dangle")), 0);
    snprintf(buf, sizeof buf, "%s/new2", outside);
    cr_assert_eq(symlink(buf, tu_path("root/dangle_abs")), 0);
    cr_assert_eq(symlink("sub", tu_path("root/in_dir")), 0);
    cr_assert_eq(symlink("sub/f", tu_path("root/in_file")), 0);
    const char *base = strrchr(tu_dir(), '/');
    snprintf(deep_escape, sizeof deep_escape, "../../%s/outside/x", base ? base + 1 : tu_dir());
}

/* Nothing new outside the root: outside is empty, outside2 holds only keep,
 * and the scratch directory holds only root, outside and outside2. */
static void assert_outside_untouched(const char *after)
{
    cr_assert_eq(tu_dir_entries(outside), 0, "something was created outside, after %s", after);
    cr_assert_eq(tu_dir_entries(outside2), 1, "outside2 changed, after %s", after);
    cr_assert_eq(tu_file_size(tu_path("outside2/keep")), 4);
    cr_assert_eq(tu_dir_entries(tu_dir()), 3, "a new name next to the root, after %s", after);
}

static mmk_fs *fs_ok(const char *dir, const mmk_file_opts *defaults)
{
    mmk_fs *fs = NULL;
    int rc = mmk_fs_new(&fs, dir, defaults);
    cr_assert_eq(rc, 0, "mmk_fs_new %s: %s", dir, mmk_strerror(rc));
    return fs;
}

static mmk_file *fs_open_ok(mmk_fs *fs, const char *rel, unsigned flags)
{
    mmk_file *f = NULL;
    int rc = mmk_fs_open(fs, &f, rel, flags);
    cr_assert_eq(rc, 0, "mmk_fs_open %s: %s", rel, mmk_strerror(rc));
    cr_assert_not_null(f);
    return f;
}

/* Paths that leave the root, by every road: each must be -EXDEV. */
static const char *const escaping[] = {
    "..",
    "../x",
    "../outside/x",
    "a/../../x",
    "a/../../outside/x",
    "sub/../../root/sub/f",   /* out and back in: still out on the way */
    "out_rel/x",
    "out_abs/x",
    "dangle",
    "dangle_abs",
    "up/outside/x",
    "in_dir/../../outside/x",
    deep_escape, /* ../../<scratch>/outside/x, filled in by make_tree */
};

/* Paths outside the scratch directory are only ever opened read-only: a
 * broken confinement must not be able to damage the machine. */
static const char *const escaping_system[] = {
    "/etc/passwd",
    "../../../../../../../../../../etc/passwd",
};

/* ==== confinement ========================================================= */

Test(fs, open_confined)
{
    make_tree();
    mmk_fs *fs = fs_ok(root, NULL);
    char abs_out[PATH_MAX];
    snprintf(abs_out, sizeof abs_out, "%s/x", outside);

    static const unsigned flag_sets[] = {
        MMK_RDONLY, MMK_RDWR, MMK_RDWR | MMK_CREATE, MMK_RDWR | MMK_CREATE | MMK_EXCL,
        MMK_RDWR | MMK_CREATE | MMK_TRUNC, MMK_COPY,
    };
    for (size_t k = 0; k < sizeof flag_sets / sizeof flag_sets[0]; k++) {
        for (size_t i = 0; i < sizeof escaping / sizeof escaping[0]; i++) {
            mmk_file *f = (mmk_file *)1;
            int rc = mmk_fs_open(fs, &f, escaping[i], flag_sets[k]);
            /* O_CREAT | O_EXCL never follows a link as the last name: the
             * link itself exists. */
            int want = (flag_sets[k] & MMK_EXCL) && !strncmp(escaping[i], "dangle", 6)
                     ? -EEXIST : -EXDEV;
            cr_assert_eq(rc, want, "open \"%s\" flags %#x: %d (%s)", escaping[i], flag_sets[k],
                         rc, mmk_strerror(rc));
            cr_assert_null(f);
            assert_outside_untouched(escaping[i]);
        }
        mmk_file *f;
        cr_assert_eq(mmk_fs_open(fs, &f, abs_out, flag_sets[k]), -EXDEV);
        assert_outside_untouched(abs_out);
    }
    for (size_t i = 0; i < sizeof escaping_system / sizeof escaping_system[0]; i++) {
        mmk_file *f = (mmk_file *)1;
        cr_assert_eq(mmk_fs_open(fs, &f, escaping_system[i], MMK_RDONLY), -EXDEV, "%s",
                     escaping_system[i]);
        cr_assert_null(f);
        struct stat st;
        cr_assert_eq(mmk_fs_stat(fs, escaping_system[i], &st), -EXDEV);
    }
    mmk_file *f = (mmk_file *)1;
    cr_assert_eq(mmk_fs_open(fs, &f, "", MMK_RDWR | MMK_CREATE), -EINVAL);
    cr_assert_null(f);
    cr_assert_eq(mmk_fs_open(fs, &f, NULL, MMK_RDONLY), -EINVAL);
    assert_outside_untouched("the empty path");
    cr_assert_eq(mmk_fs_free(fs), 0);
}

/* Links that stay inside are followed (openat2); "." and doubled slashes are
 * fine; NOFOLLOW refuses a link as the last component. */
Test(fs, open_inside)
{
    make_tree();
    mmk_fs *fs = fs_ok(root, NULL);
    static const char *const inside[] = {
        "sub/f", "./sub/f", "sub//f", "sub/./f", "in_dir/f", "in_file", "./in_dir/./f",
    };
    for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++) {
        mmk_file *f = fs_open_ok(fs, inside[i], MMK_RDONLY);
        char buf[8] = { 0 };
        cr_assert_eq(mmk_file_read(f, buf, sizeof buf), 6, "%s", inside[i]);
        cr_assert_str_eq(buf, "inside");
        cr_assert_eq(mmk_file_close(f), 0);
    }
    /* ".." that stays beneath the root: openat2 allows it, the fallback
     * walk refuses every "..": either, never anything else. */
    mmk_file *f = NULL;
    int rc = mmk_fs_open(fs, &f, "a/../sub/f", MMK_RDONLY);
    cr_assert(rc == 0 || rc == -EXDEV, "a/../sub/f: %d", rc);
    if (f)
        cr_assert_eq(mmk_file_close(f), 0);

    cr_assert_eq(mmk_fs_open(fs, &f, "in_file", MMK_RDONLY | MMK_NOFOLLOW), -ELOOP);
    cr_assert_eq(mmk_fs_open(fs, &f, "sub", MMK_RDONLY), -EISDIR);
    cr_assert_eq(mmk_fs_open(fs, &f, ".", MMK_RDONLY), -EISDIR);
    cr_assert_eq(mmk_fs_open(fs, &f, "missing", MMK_RDONLY), -ENOENT);
    cr_assert_eq(mmk_fs_open(fs, &f, "nodir/new", MMK_RDWR | MMK_CREATE), -ENOENT);
    cr_assert_eq(mmk_fs_open(fs, &f, "sub/f", MMK_RDWR | MMK_CREATE | MMK_EXCL), -EEXIST);
    cr_assert_eq(mmk_fs_open(fs, &f, "sub/f", MMK_RDWR | MMK_COPY), -EINVAL);

    /* Created where it was asked for, and nowhere else. */
    f = fs_open_ok(fs, "in_dir/new", MMK_RDWR | MMK_CREATE);
    cr_assert_eq(mmk_file_write(f, "new", 3), 3);
    cr_assert_eq(mmk_file_close(f), 0);
    cr_assert_eq(tu_file_size(tu_path("root/sub/new")), 3);
    assert_outside_untouched("creating in_dir/new");
    cr_assert_eq(mmk_fs_free(fs), 0);
}

Test(fs, names_confined)
{
    make_tree();
    mmk_fs *fs = fs_ok(root, NULL);
    struct stat st;
    for (size_t i = 0; i < sizeof escaping / sizeof escaping[0]; i++) {
        const char *p = escaping[i];
        if (!strcmp(p, "..") || !strcmp(p, "dangle") || !strcmp(p, "dangle_abs"))
            continue; /* names of their own, below */
        char to[PATH_MAX];
        snprintf(to, sizeof to, "%s", p);
        cr_assert_eq(mmk_fs_mkdir(fs, p, 0), -EXDEV, "mkdir %s", p);
        cr_assert_eq(mmk_fs_stat(fs, p, &st), -EXDEV, "stat %s", p);
        cr_assert_eq(mmk_fs_remove(fs, p), -EXDEV, "remove %s", p);
        cr_assert_eq(mmk_fs_rename(fs, "sub/f", to), -EXDEV, "rename to %s", p);
        assert_outside_untouched(p);
    }
    /* Out of the root and into it: nothing is taken from outside. */
    cr_assert_eq(mmk_fs_rename(fs, "../outside2/keep", "stolen"), -EXDEV);
    cr_assert_eq(mmk_fs_rename(fs, "up/outside2/keep", "stolen"), -EXDEV);
    cr_assert_eq(mmk_fs_remove(fs, "../outside2/keep"), -EXDEV);
    cr_assert_eq(mmk_fs_remove(fs, "up/outside2/keep"), -EXDEV);
    assert_outside_untouched("renames from outside");
    cr_assert_eq(tu_file_size(tu_path("root/sub/f")), 6, "the file stayed");

    /* ".." as the last name is never beneath the root. */
    cr_assert_lt(mmk_fs_mkdir(fs, "..", 0), 0);
    cr_assert_lt(mmk_fs_remove(fs, ".."), 0);
    cr_assert_lt(mmk_fs_remove(fs, "sub/.."), 0);
    cr_assert_lt(mmk_fs_rename(fs, "sub/f", ".."), 0);
    cr_assert_lt(mmk_fs_rename(fs, "..", "x"), 0);
    /* Links are names: a link leading out is removed or renamed as itself,
     * its target untouched; stat does not follow it. */
    cr_assert_eq(mmk_fs_stat(fs, "out_abs", &st), 0);
    cr_assert(S_ISLNK(st.st_mode));
    cr_assert_eq(mmk_fs_rename(fs, "out_abs", "out_abs2"), 0);
    cr_assert_eq(mmk_fs_remove(fs, "out_abs2"), 0);
    cr_assert_eq(mmk_fs_remove(fs, "dangle"), 0);
    struct stat ost;
    cr_assert_eq(stat(outside, &ost), 0, "the target of a removed link is still there");
    cr_assert(S_ISDIR(ost.st_mode));
    /* A name created through a link that leaves: never. */
    cr_assert_eq(mmk_fs_mkdir(fs, "out_rel/d", 0), -EXDEV);
    cr_assert_eq(mmk_fs_mkdir(fs, "up/d", 0), -EXDEV);
    assert_outside_untouched("links");

    /* Empty and NULL paths. */
    cr_assert_eq(mmk_fs_mkdir(fs, "", 0), -EINVAL);
    cr_assert_eq(mmk_fs_remove(fs, ""), -EINVAL);
    cr_assert_eq(mmk_fs_stat(fs, "", &st), -EINVAL);
    cr_assert_eq(mmk_fs_rename(fs, "", "x"), -EINVAL);
    cr_assert_eq(mmk_fs_rename(fs, "sub/f", ""), -EINVAL);
    cr_assert_eq(mmk_fs_mkdir(fs, NULL, 0), -EINVAL);
    cr_assert_eq(mmk_fs_remove(fs, NULL), -EINVAL);
    cr_assert_eq(mmk_fs_stat(fs, NULL, &st), -EINVAL);
    cr_assert_eq(mmk_fs_stat(fs, "sub", NULL), -EINVAL);
    cr_assert_eq(mmk_fs_rename(fs, NULL, "x"), -EINVAL);
    cr_assert_eq(mmk_fs_mkdir(NULL, "x", 0), -EINVAL);
    cr_assert_eq(mmk_fs_remove(NULL, "x"), -EINVAL);
    cr_assert_eq(mmk_fs_stat(NULL, "x", &st), -EINVAL);
    cr_assert_eq(mmk_fs_rename(NULL, "x", "y"), -EINVAL);
    assert_outside_untouched("bad paths");
    cr_assert_eq(mmk_fs_free(fs), 0);
}

/* ==== names and directories inside the root ============================== */

Test(fs, mkdir_remove_rename_stat)
{
    make_tree();
    mmk_fs *fs = fs_ok(root, NULL);
    struct stat st;

    cr_assert_eq(mmk_fs_mkdir(fs, "d", 0), 0);
    cr_assert_eq(stat(tu_path("root/d"), &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0755, "mode 0 means 0755");
    cr_assert_eq(mmk_fs_mkdir(fs, "d", 0), -EEXIST);
    cr_assert_eq(mmk_fs_mkdir(fs, "d/e/", 0700), 0, "a trailing slash names e");
    cr_assert_eq(stat(tu_path("root/d/e"), &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);
    cr_assert_eq(mmk_fs_mkdir(fs, "nope/x", 0), -ENOENT);
    cr_assert_eq(mmk_fs_mkdir(fs, "in_dir/viaLink", 0), 0, "through a link inside");
    cr_assert_eq(stat(tu_path("root/sub/viaLink"), &st), 0);

    mmk_file *f = fs_open_ok(fs, "d/e/file", MMK_RDWR | MMK_CREATE);
    cr_assert_eq(mmk_file_write(f, "abc", 3), 3);
    cr_assert_eq(mmk_file_close(f), 0);
    cr_assert_eq(mmk_fs_stat(fs, "d/e/file", &st), 0);
    cr_assert(S_ISREG(st.st_mode));
    cr_assert_eq(st.st_size, 3);
    cr_assert_eq(mmk_fs_stat(fs, "d/e", &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_eq(mmk_fs_stat(fs, "d/missing", &st), -ENOENT);

    cr_assert_eq(mmk_fs_rename(fs, "d/e/file", "d/file2"), 0);
    cr_assert_eq(mmk_fs_stat(fs, "d/e/file", &st), -ENOENT);
    cr_assert_eq(mmk_fs_stat(fs, "d/file2", &st), 0);
    cr_assert_eq(st.st_size, 3);
    cr_assert_eq(mmk_fs_rename(fs, "d/missing", "d/x"), -ENOENT);
    cr_assert_eq(mmk_fs_rename(fs, "d/file2", "sub/f"), 0, "replaces, as rename(2)");
    cr_assert_eq(tu_file_size(tu_path("root/sub/f")), 3);

    cr_assert_eq(mmk_fs_remove(fs, "d"), -ENOTEMPTY);
    cr_assert_eq(mmk_fs_remove(fs, "d/e"), 0, "an empty directory");
    cr_assert_eq(mmk_fs_remove(fs, "sub/f"), 0, "a file");
    cr_assert_eq(mmk_fs_remove(fs, "sub/f"), -ENOENT);
    cr_assert_eq(mmk_fs_remove(fs, "d"), 0);
    cr_assert_eq(stat(tu_path("root/d"), &st), -1);
    assert_outside_untouched("mkdir, rename, remove");
    cr_assert_eq(mmk_fs_free(fs), 0);
}

Test(fs, bad_new_and_open)
{
    make_tree();
    mmk_fs *fs = (mmk_fs *)1;
    cr_assert_eq(mmk_fs_new(NULL, root, NULL), -EINVAL);
    cr_assert_eq(mmk_fs_new(&fs, NULL, NULL), -EINVAL);
    cr_assert_null(fs);
    cr_assert_eq(mmk_fs_new(&fs, "", NULL), -EINVAL);
    cr_assert_eq(mmk_fs_new(&fs, tu_path("missing"), NULL), -ENOENT);
    cr_assert_eq(mmk_fs_new(&fs, tu_path("root/sub/f"), NULL), -ENOTDIR);
    cr_assert_eq(mmk_fs_new(&fs, root, &(mmk_file_opts){ .sync = MMK_SYNC_BYTES }), -EINVAL);
    cr_assert_eq(mmk_fs_new(&fs, root, &(mmk_file_opts){ .sync = 99, .sync_every = 1 }), -EINVAL);
    cr_assert_null(fs);
    cr_assert_eq(mmk_fs_free(NULL), -EINVAL);
    cr_assert_eq(mmk_fs_sync(NULL), -EINVAL);

    fs = fs_ok(root, NULL);
    mmk_file *f = (mmk_file *)1;
    cr_assert_eq(mmk_fs_open(NULL, &f, "sub/f", 0), -EINVAL);
    cr_assert_null(f);
    cr_assert_eq(mmk_fs_open(fs, NULL, "sub/f", 0), -EINVAL);
    cr_assert_eq(mmk_fs_open(fs, &f, "new", MMK_CREATE), -EINVAL, "CREATE needs RDWR");
    cr_assert_eq(mmk_fs_open(fs, &f, "sub/f", MMK_EXEC), -EINVAL);
    cr_assert_eq(tu_file_size(tu_path("root/new")), -1);
    cr_assert_eq(mmk_fs_free(fs), 0);
}

/* ==== defaults ============================================================ */

Test(fs, defaults_applied)
{
    make_tree();
    mmk_cache *c;
    cr_assert_eq(mmk_cache_new(&c, &(mmk_cache_opts){ .window = 64 * KIB }), 0);
    /* flags in the defaults are ignored: each open names its own. */
    mmk_fs *fs = fs_ok(root, &(mmk_file_opts){ .flags = MMK_RDWR, .mode = 0600, .cache = c,
                                                .sync = MMK_SYNC_ALWAYS });
    mmk_file *f = fs_open_ok(fs, "new", MMK_RDWR | MMK_CREATE);
    struct stat st;
    cr_assert_eq(stat(tu_path("root/new"), &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "the fs's mode");

    inject_install();
    cr_assert_eq(mmk_file_write(f, "x", 1), 1);
    cr_assert_geq(sync_events(), 1, "the fs's sync policy (ALWAYS)");
    cr_assert_eq(mmk_file_truncate(f, 200 * KIB), 0);
    mmk_cache_stats before, after;
    mmk_cache_stats_get(c, &before);
    char buf[10];
    cr_assert_eq(mmk_file_pread(f, buf, sizeof buf, 100 * KIB), (ssize_t)sizeof buf);
    mmk_cache_stats_get(c, &after);
    cr_assert_gt(after.maps, before.maps, "the fs's cache");
    cr_assert_eq(mmk_file_close(f), 0);

    f = fs_open_ok(fs, "new", MMK_RDONLY);
    cr_assert_eq(mmk_file_write(f, "x", 1), -EBADF, "the default RDWR flag is not used");
    cr_assert_eq(mmk_file_close(f), 0);
    cr_assert_eq(mmk_fs_free(fs), 0);
    mmk_cache_free(c);

    /* NULL defaults: mmk_file_open's (mode 0644, sync at close). */
    fs = fs_ok(root, NULL);
    f = fs_open_ok(fs, "plain", MMK_RDWR | MMK_CREATE);
    cr_assert_eq(stat(tu_path("root/plain"), &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644);
    unsigned long ev = sync_events();
    cr_assert_eq(mmk_file_write(f, "x", 1), 1);
    cr_assert_eq(sync_events(), ev, "no sync before close");
    cr_assert_eq(mmk_file_close(f), 0);
    cr_assert_gt(sync_events(), ev, "a sync at close");
    cr_assert_eq(mmk_fs_free(fs), 0);
}

/* ==== syncing ============================================================= */

/* mmk_fs_sync syncs every file open in the fs, and only what is dirty. */
Test(fs, sync_all_files)
{
    make_tree();
    mmk_fs *fs = fs_ok(root, &(mmk_file_opts){ .sync = MMK_SYNC_NONE });
    mmk_file *f[3];
    char name[16];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "f%d", i);
        f[i] = fs_open_ok(fs, name, MMK_RDWR | MMK_CREATE);
    }
    tu_pattern_file("root/pinned", 128 * KIB, 1);
    mmk_file *p = fs_open_ok(fs, "pinned", MMK_RDWR);
    mmk_file *ro = fs_open_ok(fs, "sub/f", MMK_RDONLY);

    inject_install();
    for (int i = 0; i < 3; i++)
        cr_assert_eq(mmk_file_write(f[i], "data", 4), 4);   /* appends: fdatasync */
    mmk_view v;
    cr_assert_eq(mmk_file_pin(p, 1000, 10, MMK_RDWR, &v), 0); /* a window: msync */
    memcpy(v.ptr, "0123456789", 10);
    cr_assert_eq(mmk_file_unpin(p, &v), 0);
    cr_assert_eq(sync_events(), 0);

    cr_assert_eq(mmk_fs_sync(fs), 0);
    cr_assert_eq(inject_count(INJ_FDATASYNC), 3, "one fdatasync per appended file");
    cr_assert_geq(inject_count_msync_sync(), 1, "the pinned write");
    unsigned long ev = sync_events();
    cr_assert_eq(mmk_fs_sync(fs), 0);
    cr_assert_eq(sync_events(), ev, "nothing dirty: nothing synced");

    /* A file closed is no longer the fs's. */
    cr_assert_eq(mmk_file_close(f[0]), 0);
    cr_assert_eq(mmk_file_write(f[1], "more", 4), 4);
    ev = inject_count(INJ_FDATASYNC);
    cr_assert_eq(mmk_fs_sync(fs), 0);
    cr_assert_eq(inject_count(INJ_FDATASYNC), ev + 1);

    /* An error is reported, and the other files are synced all the same. */
    cr_assert_eq(mmk_file_write(f[1], "x", 1), 1);
    cr_assert_eq(mmk_file_write(f[2], "x", 1), 1);
    ev = inject_count(INJ_FDATASYNC);
    inject_fail(INJ_FDATASYNC, 1, EIO);
    cr_assert_eq(mmk_fs_sync(fs), -EIO);
    cr_assert_eq(inject_count(INJ_FDATASYNC), ev + 2, "both files were tried");
    cr_assert_eq(mmk_fs_sync(fs), 0, "the failed one is synced again");
    cr_assert_eq(inject_count(INJ_FDATASYNC), ev + 3);

    cr_assert_eq(mmk_file_close(ro), 0);
    cr_assert_eq(mmk_fs_free(fs), 0);
    char buf[8];
    size_t n;
    char *all = tu_read_file(tu_path("root/f1"), &n);
    cr_assert_eq(n, 9);
    memcpy(buf, all, 8);
    cr_assert_eq(memcmp(buf, "datamore", 8), 0);
    free(all);
}

/* One syncer thread per fs (not per file), started with the first PERIODIC
 * file and stopped with the last; it syncs every dirty file of its fs. */
Test(fs, periodic_syncer_per_fs)
{
    make_tree();
    cr_assert_eq(mkdir(tu_path("root/two"), 0755), 0);
    const mmk_file_opts per = { .sync = MMK_SYNC_PERIODIC, .sync_every = PERIODIC_MS };
    mmk_fs *fs1 = fs_ok(root, &per);
    mmk_fs *fs2 = fs_ok(tu_path("root/two"), &per);
    int base = tu_thread_count();
    cr_assert_gt(base, 0);
    cr_assert_eq(tu_thread_count(), base, "no thread before a PERIODIC file");

    inject_install();
    mmk_file *a = fs_open_ok(fs1, "a1", MMK_RDWR | MMK_CREATE);
    cr_assert(threads_become(base + 1), "%d threads", tu_thread_count());
    mmk_file *b = fs_open_ok(fs1, "b1", MMK_RDWR | MMK_CREATE);
    cr_assert(threads_become(base + 1), "one thread for two files of one fs");
    mmk_file *c = fs_open_ok(fs2, "c2", MMK_RDWR | MMK_CREATE);
    cr_assert(threads_become(base + 2), "a thread of its own for the second fs");

    /* Both files of fs1 synced without a call from us: an fdatasync each (a
     * second sync of one file would find it clean and do nothing). */
    cr_assert_eq(mmk_file_write(a, "aaaa", 4), 4);
    cr_assert_eq(mmk_file_write(b, "bbbb", 4), 4);
    uint64_t end = now_ms() + WAIT_MS;
    while (inject_count(INJ_FDATASYNC) < 2 && now_ms() < end)
        sleep_ms(5);
    cr_assert_eq(inject_count(INJ_FDATASYNC), 2, "both files synced by the syncer");
    sleep_ms(5 * PERIODIC_MS);
    cr_assert_eq(inject_count(INJ_FDATASYNC), 2, "clean files are not synced again");
    cr_assert_eq(mmk_file_write(c, "cccc", 4), 4);
    end = now_ms() + WAIT_MS;
    while (inject_count(INJ_FDATASYNC) < 3 && now_ms() < end)
        sleep_ms(5);
    cr_assert_eq(inject_count(INJ_FDATASYNC), 3, "the second fs's syncer");

    cr_assert_eq(mmk_file_close(a), 0);
    cr_assert(threads_become(base + 2), "b still needs fs1's syncer");
    cr_assert_eq(mmk_file_close(b), 0);
    cr_assert(threads_become(base + 1), "fs1's syncer stops with its last file");
    /* And starts again. */
    a = fs_open_ok(fs1, "a1", MMK_RDWR);
    cr_assert(threads_become(base + 2));
    cr_assert_eq(mmk_file_pwrite(a, "again", 5, 0), 5);
    unsigned long ev = sync_events();
    end = now_ms() + WAIT_MS;
    while (sync_events() == ev && now_ms() < end)
        sleep_ms(5);
    cr_assert_gt(sync_events(), ev, "the restarted syncer syncs");
    cr_assert_eq(mmk_file_close(a), 0);
    cr_assert_eq(mmk_file_close(c), 0);
    cr_assert(threads_become(base), "every syncer stopped");
    cr_assert_eq(mmk_fs_free(fs1), 0);
    cr_assert_eq(mmk_fs_free(fs2), 0);
}

/* ==== mmk_fs_free ========================================================= */

/* Files left open are closed (synced as their policy says), descriptors and
 * memory freed, and the syncer stopped. */
Test(fs, free_closes_open_files)
{
    make_tree();
    int fds = tu_open_fds(), threads = tu_thread_count();
    mmk_fs *fs = fs_ok(root, NULL);
    mmk_fs *pfs = fs_ok(tu_path("root/a"), &(mmk_file_opts){ .sync = MMK_SYNC_PERIODIC,
                                                               .sync_every = 3600 * 1000 });
    char name[16];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "f%d", i);
        mmk_file *f = fs_open_ok(fs, name, MMK_RDWR | MMK_CREATE);
        cr_assert_eq(mmk_file_write(f, name, strlen(name)), (ssize_t)strlen(name));
        f = fs_open_ok(pfs, name, MMK_RDWR | MMK_CREATE);
        cr_assert_eq(mmk_file_write(f, name, strlen(name)), (ssize_t)strlen(name));
    }
    fs_open_ok(fs, "sub/f", MMK_RDONLY);
    cr_assert(threads_become(threads + 1));
    inject_install();
    cr_assert_eq(mmk_fs_free(fs), 0);
    cr_assert_eq(inject_count(INJ_FDATASYNC), 5, "each written file synced (SYNC_CLOSE)");
    cr_assert_eq(mmk_fs_free(pfs), 0);
    cr_assert_eq(inject_count(INJ_FDATASYNC), 10, "PERIODIC files: what was not yet synced");
    cr_assert_eq(tu_open_fds(), fds, "every descriptor closed");
    cr_assert(threads_become(threads), "the syncer stopped");
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "root/f%d", i);
        cr_assert_eq(tu_file_size(tu_path(name)), 2);
        snprintf(name, sizeof name, "root/a/f%d", i);
        cr_assert_eq(tu_file_size(tu_path(name)), 2);
    }
}

/* A file still pinned cannot be closed: mmk_fs_free leaves it to its owner,
 * who closes it later, after the fs (and its syncer) is gone. */
Test(fs, free_with_a_pinned_file)
{
    make_tree();
    int threads = tu_thread_count();
    mmk_fs *fs = fs_ok(root, &(mmk_file_opts){ .sync = MMK_SYNC_PERIODIC,
                                                .sync_every = PERIODIC_MS });
    tu_pattern_file("root/p", 64 * KIB, 3);
    mmk_file *f = fs_open_ok(fs, "p", MMK_RDWR);
    mmk_file *g = fs_open_ok(fs, "sub/f", MMK_RDWR);
    mmk_view v;
    cr_assert_eq(mmk_file_pin(f, 0, 100, MMK_RDWR, &v), 0);
    cr_assert_eq(mmk_fs_free(fs), 0);
    /* The pinned handle still works, and is still synced periodically
     * (without touching the freed fs or its syncer). */
    inject_install();
    memcpy(v.ptr, "pinned", 6);
    cr_assert_eq(mmk_file_pwrite(f, "written", 7, 1000), 7);
    uint64_t end = now_ms() + WAIT_MS;
    while (sync_events() == 0 && now_ms() < end)
        sleep_ms(5);
    cr_assert_geq(sync_events(), 1, "still PERIODIC after its fs is gone");
    cr_assert_eq(mmk_file_unpin(f, &v), 0);
    cr_assert_eq(mmk_file_close(f), 0);
    cr_assert(threads_become(threads), "no syncer left running");
    char buf[8];
    int fd = open(tu_path("root/p"), O_RDONLY);
    cr_assert_eq(pread(fd, buf, 6, 0), 6);
    cr_assert_eq(memcmp(buf, "pinned", 6), 0);
    cr_assert_eq(pread(fd, buf, 7, 1000), 7);
    cr_assert_eq(memcmp(buf, "written", 7), 0);
    close(fd);
    (void)g; /* closed by mmk_fs_free */
}
