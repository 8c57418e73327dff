/* tools/mmk/cmd_torrent.c — `mmk torrent info | create | verify`: BitTorrent
 * v1 metainfo files, and checking data against them (issue 6).  The work is
 * done by the mmk_torrent_core library (bencode.c, torrent*.c, verify.c);
 * this file parses options and prints. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mmkit.h>

#include "cmd.h"
#include "progress.h"
#include "torrent.h"
#include "verify.h"

#define CMD "torrent"

/* Bounds of the tuning options. */
#define MAX_READAHEAD 64
#define MAX_CHUNK     ((uint64_t)64 << 20)
/* How many file names a piece line lists before "and N more". */
#define FILES_PER_LINE 4

/* ---- output helpers ------------------------------------------------------ */

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* A name from a torrent printed on a terminal: control bytes escaped, so a
 * crafted name cannot move the cursor or retitle the window. */
static void text_str(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

static void hex(char out[2 * MMK_SHA1_LEN + 1], const unsigned char *md)
{
    for (int i = 0; i < MMK_SHA1_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ---- option values --------------------------------------------------------- */

/* "262144", "256K", "256KiB", "1M", "1MiB", "1G". */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return -EINVAL;
    unsigned shift = 0;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return -EINVAL;
        }
        end++;
        if (!strcmp(end, "iB") || !strcmp(end, "B"))
            end += strlen(end);
        if (*end)
            return -EINVAL;
    }
    if (v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

/* -l: below 64 a log2 (mktorrent's form), else bytes: a power of two. */
static int parse_piece_len(const char *s, unsigned *log2)
{
    uint64_t v;
    if (parse_size(s, &v) < 0)
        return -EINVAL;
    unsigned e = 0;
    if (v < 64) {
        e = (unsigned)v;
    } else {
        if (v & (v - 1))
            return -EINVAL;
        while (((uint64_t)1 << e) < v)
            e++;
    }
    if (e < MMK_TORRENT_MIN_CREATE_LOG || e > MMK_TORRENT_MAX_CREATE_LOG)
        return -EINVAL;
    *log2 = e;
    return 0;
}

/* Options every action takes. */
enum {
    OPT_JSON = 1000, OPT_PIN, OPT_PREAD, OPT_AUTO, OPT_READAHEAD, OPT_CHUNK,
};

typedef struct common {
    mmk_tool_opts o;
    unsigned      threads;
    int           read_mode;
    int           depth;
    size_t        chunk;
} common;

/* Handle an option shared by the actions; 1 if it was one, -1 on a bad value. */
static int common_opt(common *c, int opt, const char *arg)
{
    uint64_t v;
    unsigned u;
    switch (opt) {
    case OPT_JSON: c->o.json = true; return 1;
    case 'q': c->o.quiet = true; return 1;
    case OPT_PIN: c->read_mode = MMK_READ_PIN; return 1;
    case OPT_PREAD: c->read_mode = MMK_READ_PREAD; return 1;
    case OPT_AUTO: c->read_mode = MMK_READ_AUTO; return 1;
    case 'j':
        if (parse_uint(arg, 1, MMK_HASH_MAX_THREADS, &c->threads) < 0) {
            mmk_tool_error(CMD, "-j %s: want a thread count from 1 to %d", arg,
                           MMK_HASH_MAX_THREADS);
            return -1;
        }
        return 1;
    case OPT_READAHEAD:
        if (parse_uint(arg, 0, MAX_READAHEAD, &u) < 0) {
            mmk_tool_error(CMD, "--readahead %s: want 0 to %d chunks", arg, MAX_READAHEAD);
            return -1;
        }
        c->depth = (int)u;
        return 1;
    case OPT_CHUNK:
        if (parse_size(arg, &v) < 0 || v < 4096 || v > MAX_CHUNK) {
            mmk_tool_error(CMD, "--chunk %s: want 4K to 64M", arg);
            return -1;
        }
        c->chunk = (size_t)v;
        return 1;
    default:
        return 0;
    }
}

#define COMMON_LONGOPTS                                                              \
    { "json", no_argument, NULL, OPT_JSON }, { "quiet", no_argument, NULL, 'q' },    \
    { "pin", no_argument, NULL, OPT_PIN }, { "pread", no_argument, NULL, OPT_PREAD }, \
    { "auto", no_argument, NULL, OPT_AUTO },                                         \
    { "jobs", required_argument, NULL, 'j' },                                        \
    { "readahead", required_argument, NULL, OPT_READAHEAD },                         \
    { "chunk", required_argument, NULL, OPT_CHUNK }

static const char *read_mode_name(int m)
{
    return m == MMK_READ_PIN ? "pin" : m == MMK_READ_PREAD ? "pread" : "auto";
}

/* Exit status for an error from the torrent layer: a malformed or unsafe
 * torrent fails the check (1), anything else is I/O (3). */
static int load_torrent(const char *path, mmk_torrent **t)
{
    char err[MMK_TORRENT_ERRLEN];
    int rc = mmk_torrent_load(t, path, err);
    if (rc == -EBADMSG) {
        mmk_tool_error(CMD, "%s: %s", path, err);
        return MMK_EXIT_FAIL;
    }
    if (rc < 0) {
        mmk_tool_error(CMD, "%s: %s", path, mmk_strerror(rc));
        return MMK_EXIT_IO;
    }
    return MMK_EXIT_OK;
}

/* ---- info ---------------------------------------------------------------- */

static void print_info_text(const mmk_torrent *t)
{
    char h[2 * MMK_SHA1_LEN + 1], sz[32];
    hex(h, t->info_hash);
    printf("name          ");
    text_str(stdout, t->name);
    printf("\ninfo-hash     %s\n", h);
    mmk_format_size(sz, sizeof sz, t->piece_len);
    printf("piece length  %" PRIu64 " (%s)\n", t->piece_len, sz);
    printf("pieces        %zu\n", t->npieces);
    mmk_format_size(sz, sizeof sz, t->total);
    printf("total size    %" PRIu64 " (%s)\n", t->total, sz);
    printf("files         %zu%s\n", t->nfiles, t->multi ? "" : " (single-file torrent)");
    printf("private       %s\n", t->priv ? "yes" : "no");
    if (t->announce) {
        printf("announce      ");
        text_str(stdout, t->announce);
        putchar('\n');
    }
    if (t->ntrackers)
        printf("trackers      %zu in announce-list\n", t->ntrackers);
    if (t->source) {
        printf("source        ");
        text_str(stdout, t->source);
        putchar('\n');
    }
    if (t->created_by) {
        printf("created by    ");
        text_str(stdout, t->created_by);
        putchar('\n');
    }
    if (t->creation_date) {
        time_t when = (time_t)t->creation_date;
        struct tm tm;
        char buf[64];
        if (gmtime_r(&when, &tm) && strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm))
            printf("creation date %s\n", buf);
    }
    if (t->comment) {
        printf("comment       ");
        text_str(stdout, t->comment);
        putchar('\n');
    }
    printf("\n%15s  %s\n", "bytes", "path");
    for (size_t i = 0; i < t->nfiles; i++) {
        printf("%15" PRIu64 "  ", t->files[i].length);
        text_str(stdout, t->files[i].path);
        putchar('\n');
    }
}

static void print_info_json(const mmk_torrent *t)
{
    char h[2 * MMK_SHA1_LEN + 1];
    hex(h, t->info_hash);
    printf("{\"name\":");
    json_str(t->name);
    printf(",\"info_hash\":\"%s\",\"piece_length\":%" PRIu64 ",\"pieces\":%zu,"
           "\"total_size\":%" PRIu64 ",\"multi_file\":%s,\"private\":%s",
           h, t->piece_len, t->npieces, t->total, t->multi ? "true" : "false",
           t->priv ? "true" : "false");
    const char *keys[] = { "announce", "source", "created_by", "comment" };
    const char *vals[] = { t->announce, t->source, t->created_by, t->comment };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (vals[i]) {
            printf(",\"%s\":", keys[i]);
            json_str(vals[i]);
        }
    if (t->creation_date)
        printf(",\"creation_date\":%" PRId64, t->creation_date);
    printf(",\"files\":[");
    for (size_t i = 0; i < t->nfiles; i++) {
        printf("%s{\"path\":", i ? "," : "");
        json_str(t->files[i].path);
        printf(",\"length\":%" PRIu64 ",\"offset\":%" PRIu64 "}", t->files[i].length,
               t->files[i].offset);
    }
    printf("]}\n");
}

static int info_run(int argc, char **argv, common *c)
{
    static const struct option longopts[] = { COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
    int opt;
    while ((opt = getopt_long(argc, argv, "qj:", longopts, NULL)) != -1) {
        int k = common_opt(c, opt, optarg);
        if (k < 0 || k == 0)
            return MMK_EXIT_USAGE;
    }
    if (argc - optind != 1) {
        mmk_tool_error(CMD, "info: want one FILE.torrent (try mmk torrent --help)");
        return MMK_EXIT_USAGE;
    }
    mmk_torrent *t;
    int st = load_torrent(argv[optind], &t);
    if (st != MMK_EXIT_OK)
        return st;
    if (c->o.json)
        print_info_json(t);
    else if (!c->o.quiet)
        print_info_text(t);
    mmk_torrent_free(t);
    return MMK_EXIT_OK;
}

/* ---- create -------------------------------------------------------------- */

static int write_out(const char *path, const unsigned char *p, size_t n, bool force)
{
    bool to_stdout = !strcmp(path, "-");
    int fd = to_stdout ? STDOUT_FILENO
                       : open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL),
                              0644);
    if (fd < 0)
        return -errno;
    int rc = 0;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = -errno;
            break;
        }
        p += w;
        n -= (size_t)w;
    }
    if (!to_stdout) {
        if (close(fd) < 0 && rc == 0)
            rc = -errno;
        if (rc < 0)
            unlink(path);
    }
    return rc;
}

static int create_run(int argc, char **argv, common *c)
{
    static const struct option longopts[] = {
        COMMON_LONGOPTS,
        { "piece-length", required_argument, NULL, 'l' },
        { "output", required_argument, NULL, 'o' },
        { "announce", required_argument, NULL, 'a' },
        { "name", required_argument, NULL, 'n' },
        { "comment", required_argument, NULL, 'c' },
        { "source", required_argument, NULL, 's' },
        { "private", no_argument, NULL, 'p' },
        { "no-date", no_argument, NULL, 'd' },
        { "force", no_argument, NULL, 'f' },
        { NULL, 0, NULL, 0 },
    };
    mmk_torrent_create_opts co = { .piece_log = MMK_TORRENT_DEFAULT_LOG };
    const char *out = NULL;
    bool force = false;
    const char **ann = calloc((size_t)argc, sizeof *ann);
    if (!ann) {
        mmk_tool_error(CMD, "%s", mmk_strerror(-ENOMEM));
        return MMK_EXIT_IO;
    }
    int status = MMK_EXIT_USAGE, opt;
    while ((opt = getopt_long(argc, argv, "qj:l:o:a:n:c:s:pdf", longopts, NULL)) != -1) {
        int k = common_opt(c, opt, optarg);
        if (k < 0)
            goto done;
        if (k > 0)
            continue;
        switch (opt) {
        case 'l':
            if (parse_piece_len(optarg, &co.piece_log) < 0) {
                mmk_tool_error(CMD, "-l %s: want log2 %d..%d (mktorrent's form) or a power "
                               "of two from 16K to 256M bytes", optarg,
                               MMK_TORRENT_MIN_CREATE_LOG, MMK_TORRENT_MAX_CREATE_LOG);
                goto done;
            }
            break;
        case 'o': out = optarg; break;
        case 'a': ann[co.nannounce++] = optarg; break;
        case 'n': co.name = optarg; break;
        case 'c': co.comment = optarg; break;
        case 's': co.source = optarg; break;
        case 'p': co.priv = true; break;
        case 'd': co.no_date = true; break;
        case 'f': force = true; break;
        default: goto done;
        }
    }
    if (argc - optind != 1) {
        mmk_tool_error(CMD, "create: want one PATH (try mmk torrent --help)");
        goto done;
    }
    co.path = argv[optind];
    co.announce = ann;
    co.threads = c->threads;
    co.read_mode = c->read_mode;
    bool to_stdout = out && !strcmp(out, "-");
    if (to_stdout && c->o.json) {
        mmk_tool_error(CMD, "create: --json and -o - both want standard output");
        goto done;
    }
    /* Fail before hashing, not after, if the output is there already. */
    char *def_out = NULL;
    struct stat st;
    if (out && !to_stdout && !force && lstat(out, &st) == 0) {
        mmk_tool_error(CMD, "%s exists (use -f to overwrite)", out);
        status = MMK_EXIT_IO;
        goto done;
    }

    mmk_progress pr;
    mmk_progress_init(&pr, "hashing", !c->o.quiet);
    co.progress = mmk_progress_update;
    co.progress_arg = &pr;
    mmk_torrent_created made;
    char err[MMK_TORRENT_ERRLEN];
    int rc = mmk_torrent_create(&co, &made, err);
    mmk_progress_done(&pr);
    if (rc < 0) {
        mmk_tool_error(CMD, "%s", err[0] ? err : mmk_strerror(rc));
        status = rc == -EINVAL ? MMK_EXIT_USAGE : MMK_EXIT_IO;
        goto done;
    }
    if (!out) {
        size_t n = strlen(made.name);
        if (!(def_out = malloc(n + sizeof ".torrent"))) {
            rc = -ENOMEM;
        } else {
            memcpy(def_out, made.name, n);
            memcpy(def_out + n, ".torrent", sizeof ".torrent");
            out = def_out;
        }
    }
    if (rc == 0)
        rc = write_out(out, made.data, made.len, force);
    if (rc < 0) {
        mmk_tool_error(CMD, "%s: %s%s", out ? out : "output", mmk_strerror(rc),
                       rc == -EEXIST ? " (use -f to overwrite)" : "");
        status = MMK_EXIT_IO;
    } else {
        char h[2 * MMK_SHA1_LEN + 1], sz[32], pl[32];
        hex(h, made.info_hash);
        mmk_format_size(sz, sizeof sz, made.total);
        mmk_format_size(pl, sizeof pl, made.piece_len);
        double rate = made.seconds > 0 ? (double)made.total / made.seconds / 1e6 : 0;
        if (c->o.json) {
            printf("{\"torrent\":");
            json_str(out);
            printf(",\"name\":");
            json_str(made.name);
            printf(",\"info_hash\":\"%s\",\"files\":%zu,\"total_size\":%" PRIu64
                   ",\"pieces\":%zu,\"piece_length\":%" PRIu64 ",\"seconds\":%.6f}\n",
                   h, made.nfiles, made.total, made.npieces, made.piece_len, made.seconds);
        } else if (!c->o.quiet) {
            FILE *f = to_stdout ? stderr : stdout;
            fprintf(f, "created ");
            text_str(f, to_stdout ? "(standard output)" : out);
            fprintf(f, ": %zu file%s, %s in %zu piece%s of %s\ninfo-hash %s\n"
                       "hashed in %.2f s (%.0f MB/s)\n",
                    made.nfiles, made.nfiles == 1 ? "" : "s", sz, made.npieces,
                    made.npieces == 1 ? "" : "s", pl, h,
                    made.seconds, rate);
        }
        status = MMK_EXIT_OK;
    }
    mmk_torrent_created_free(&made);
    free(def_out);
done:
    free(ann);
    return status;
}

/* ---- verify -------------------------------------------------------------- */

static const char *piece_word(int st)
{
    switch (st) {
    case MMK_PIECE_BAD: return "bad";
    case MMK_PIECE_MISSING: return "missing";
    case MMK_PIECE_UNREADABLE: return "unreadable";
    default: return "unchecked";
    }
}

static const char *file_problem(const mmk_verify_result *r, size_t i, char *buf, size_t cap,
                                const mmk_torrent *t)
{
    switch (r->file_state[i]) {
    case MMK_TFILE_MISSING:
        if (r->file_err[i] && r->file_err[i] != -ENOENT)
            snprintf(buf, cap, "missing (%s)", mmk_strerror(r->file_err[i]));
        else
            snprintf(buf, cap, "missing");
        return buf;
    case MMK_TFILE_SHORT:
        snprintf(buf, cap, "short: %" PRIu64 " of %" PRIu64 " bytes", r->file_size[i],
                 t->files[i].length);
        return buf;
    case MMK_TFILE_NOTFILE:
        return "not a regular file";
    case MMK_TFILE_REFUSED:
        if (r->file_err[i] == -EXDEV)
            return "refused: a symbolic link leaves the data directory";
        snprintf(buf, cap, "refused: %s", mmk_strerror(r->file_err[i]));
        return buf;
    case MMK_TFILE_LONG:
        snprintf(buf, cap, "larger than in the torrent (%" PRIu64 " bytes, %" PRIu64
                 " expected): the extra bytes are not checked", r->file_size[i],
                 t->files[i].length);
        return buf;
    default:
        return NULL;
    }
}

/* Files touched by pieces [a, b]: call fn for each (zero-length ones hold no
 * byte and touch nothing). */
static void touched_files(const mmk_torrent *t, size_t a, size_t b,
                          void (*fn)(void *arg, size_t file), void *arg)
{
    uint64_t lo = (uint64_t)a * t->piece_len;
    uint64_t hi = (uint64_t)b * t->piece_len + mmk_torrent_piece_size(t, b);
    for (size_t i = mmk_torrent_file_at(t, lo); i < t->nfiles && t->files[i].offset < hi; i++)
        if (t->files[i].length)
            fn(arg, i);
}

typedef struct line_files {
    const mmk_torrent *t;
    size_t             shown, more;
} line_files;

static void print_touched(void *arg, size_t i)
{
    line_files *lf = arg;
    if (lf->shown == FILES_PER_LINE) {
        lf->more++;
        return;
    }
    fputs(lf->shown++ ? ", " : " ", stdout);
    text_str(stdout, lf->t->files[i].path);
}

typedef struct file_counts {
    size_t *bad, *missing, *unreadable;
    int     st;
} file_counts;

static void count_touched(void *arg, size_t i)
{
    file_counts *fc = arg;
    if (fc->st == MMK_PIECE_BAD)
        fc->bad[i]++;
    else if (fc->st == MMK_PIECE_MISSING)
        fc->missing[i]++;
    else
        fc->unreadable[i]++;
}

static bool is_problem(unsigned char st)
{
    return st == MMK_PIECE_BAD || st == MMK_PIECE_MISSING || st == MMK_PIECE_UNREADABLE;
}

static void print_verify_text(const mmk_torrent *t, const mmk_verify_result *r,
                              const common *c)
{
    char buf[256], sz[32], pl[32];
    /* Files that are not there as the torrent says. */
    for (size_t i = 0; i < t->nfiles; i++) {
        const char *why = file_problem(r, i, buf, sizeof buf, t);
        if (!why)
            continue;
        printf("%s ", r->file_state[i] == MMK_TFILE_LONG ? "warning:" : "file");
        text_str(stdout, t->files[i].path);
        printf(": %s\n", why);
    }
    /* Runs of pieces with the same problem, and the files they touch. */
    for (size_t p = 0; p < t->npieces;) {
        unsigned char st = r->status[p];
        if (!is_problem(st)) {
            p++;
            continue;
        }
        size_t q = p;
        while (q + 1 < t->npieces && r->status[q + 1] == st)
            q++;
        if (q == p)
            printf("%s piece %zu:", piece_word(st), p);
        else
            printf("%s pieces %zu-%zu:", piece_word(st), p, q);
        line_files lf = { t, 0, 0 };
        touched_files(t, p, q, print_touched, &lf);
        if (lf.more)
            printf(" and %zu more file%s", lf.more, lf.more == 1 ? "" : "s");
        putchar('\n');
        p = q + 1;
    }
    printf("%zu piece%s: %zu good, %zu bad, %zu missing", t->npieces,
           t->npieces == 1 ? "" : "s", r->good, r->bad, r->missing);
    if (r->unreadable)
        printf(", %zu unreadable (%s)", r->unreadable, mmk_strerror(r->err));
    printf("%s\n", r->good == t->npieces && !r->files_bad ? ": OK" : ": FAILED");
    mmk_format_size(sz, sizeof sz, r->bytes);
    mmk_format_size(pl, sizeof pl, t->piece_len);
    double rate = r->seconds > 0 ? (double)r->bytes / r->seconds / 1e6 : 0;
    double pinned = r->bytes ? 100.0 * (double)r->pinned / (double)r->bytes : 0;
    printf("hashed %s in %.3f s: %.0f MB/s (%u thread%s, %s: %.0f%% in place)\n", sz,
           r->seconds, rate, r->threads, r->threads == 1 ? "" : "s",
           read_mode_name(c->read_mode), pinned);
}

static void print_verify_json(const char *torrent_path, const char *dir, const mmk_torrent *t,
                              const mmk_verify_result *r, const common *c)
{
    char h[2 * MMK_SHA1_LEN + 1], buf[256];
    hex(h, t->info_hash);
    bool ok = r->good == t->npieces && !r->files_bad;
    printf("{\"torrent\":");
    json_str(torrent_path);
    printf(",\"data_dir\":");
    json_str(dir);
    printf(",\"name\":");
    json_str(t->name);
    printf(",\"info_hash\":\"%s\",\"ok\":%s,\"pieces\":%zu,\"good\":%zu,\"bad\":%zu,"
           "\"missing\":%zu,\"unreadable\":%zu",
           h, ok ? "true" : "false", t->npieces, r->good, r->bad, r->missing, r->unreadable);
    static const int lists[] = { MMK_PIECE_BAD, MMK_PIECE_UNREADABLE };
    for (size_t k = 0; k < 2; k++) {
        printf(",\"%s_pieces\":[", piece_word(lists[k]));
        bool first = true;
        for (size_t p = 0; p < t->npieces; p++)
            if (r->status[p] == lists[k]) {
                printf("%s%zu", first ? "" : ",", p);
                first = false;
            }
        putchar(']');
    }
    /* Missing pieces come in long stretches: [first, last] ranges. */
    printf(",\"missing_ranges\":[");
    bool first = true;
    for (size_t p = 0; p < t->npieces;) {
        if (r->status[p] != MMK_PIECE_MISSING) {
            p++;
            continue;
        }
        size_t q = p;
        while (q + 1 < t->npieces && r->status[q + 1] == MMK_PIECE_MISSING)
            q++;
        printf("%s[%zu,%zu]", first ? "" : ",", p, q);
        first = false;
        p = q + 1;
    }
    putchar(']');

    /* Files with a problem of their own or in a problem piece. */
    size_t nf = t->nfiles ? t->nfiles : 1;
    file_counts fc = { calloc(nf, sizeof(size_t)), calloc(nf, sizeof(size_t)),
                       calloc(nf, sizeof(size_t)), 0 };
    printf(",\"files\":[");
    first = true;
    if (fc.bad && fc.missing && fc.unreadable) {
        for (size_t p = 0; p < t->npieces; p++)
            if (is_problem(r->status[p])) {
                fc.st = r->status[p];
                touched_files(t, p, p, count_touched, &fc);
            }
        for (size_t i = 0; i < t->nfiles; i++) {
            const char *why = file_problem(r, i, buf, sizeof buf, t);
            if (!why && !fc.bad[i] && !fc.missing[i] && !fc.unreadable[i])
                continue;
            static const char *const state[] = { "ok", "long", "missing", "short",
                                                 "not_a_file", "refused" };
            printf("%s{\"path\":", first ? "" : ",");
            json_str(t->files[i].path);
            printf(",\"state\":\"%s\",\"length\":%" PRIu64 ",\"size\":%" PRIu64
                   ",\"bad_pieces\":%zu,\"missing_pieces\":%zu,\"unreadable_pieces\":%zu",
                   state[r->file_state[i]], t->files[i].length, r->file_size[i], fc.bad[i],
                   fc.missing[i], fc.unreadable[i]);
            if (why) {
                printf(",\"problem\":");
                json_str(why);
            }
            putchar('}');
            first = false;
        }
    }
    free(fc.bad);
    free(fc.missing);
    free(fc.unreadable);
    double rate = r->seconds > 0 ? (double)r->bytes / r->seconds : 0;
    printf("],\"bytes_hashed\":%" PRIu64 ",\"bytes_pinned\":%" PRIu64 ",\"seconds\":%.6f,"
           "\"bytes_per_second\":%.0f,\"threads\":%u,\"read\":\"%s\"}\n",
           r->bytes, r->pinned, r->seconds, rate, r->threads, read_mode_name(c->read_mode));
}

/* Nothing found, but the files are right in DATA_DIR: the user gave the
 * torrent's own directory instead of the one holding it. */
static void hint_data_dir(const mmk_torrent *t, const mmk_verify_result *r, const char *dir,
                          const common *c)
{
    if (c->o.quiet || !t->multi || !t->nfiles || r->files_bad != t->nfiles)
        return;
    const char *inner = t->files[0].path + strlen(t->name) + 1;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    struct stat st;
    if (fstatat(dfd, inner, &st, 0) == 0) {
        fflush(stdout);
        fprintf(stderr, "mmk " CMD ": hint: DATA_DIR is the directory that holds \"");
        text_str(stderr, t->name);
        fprintf(stderr, "\" (the files were found directly in ");
        text_str(stderr, dir);
        fprintf(stderr, "; give its parent)\n");
    }
    close(dfd);
}

static int verify_run(int argc, char **argv, common *c)
{
    static const struct option longopts[] = { COMMON_LONGOPTS, { NULL, 0, NULL, 0 } };
    int opt;
    while ((opt = getopt_long(argc, argv, "qj:", longopts, NULL)) != -1) {
        int k = common_opt(c, opt, optarg);
        if (k <= 0)
            return MMK_EXIT_USAGE;
    }
    if (argc - optind != 2) {
        mmk_tool_error(CMD, "verify: want FILE.torrent DATA_DIR (try mmk torrent --help)");
        return MMK_EXIT_USAGE;
    }
    const char *tpath = argv[optind], *dir = argv[optind + 1];
    mmk_torrent *t;
    int status = load_torrent(tpath, &t);
    if (status != MMK_EXIT_OK)
        return status;
    mmk_progress pr;
    mmk_progress_init(&pr, "verifying", !c->o.quiet);
    mmk_verify_opts vo = {
        .threads = c->threads, .read_mode = c->read_mode, .depth = c->depth,
        .chunk = c->chunk, .progress = mmk_progress_update, .progress_arg = &pr,
    };
    mmk_verify_result r;
    char err[MMK_TORRENT_ERRLEN];
    int rc = mmk_torrent_verify(t, dir, &vo, &r, err);
    mmk_progress_done(&pr);
    if (rc < 0) {
        mmk_tool_error(CMD, "%s", err[0] ? err : mmk_strerror(rc));
        mmk_torrent_free(t);
        return MMK_EXIT_IO;
    }
    if (c->o.json)
        print_verify_json(tpath, dir, t, &r, c);
    else if (!c->o.quiet)
        print_verify_text(t, &r, c);
    hint_data_dir(t, &r, dir, c);
    if (r.unreadable)
        status = MMK_EXIT_IO;
    else if (r.good != t->npieces || r.files_bad)
        status = MMK_EXIT_FAIL;
    mmk_verify_result_free(&r);
    mmk_torrent_free(t);
    return status;
}

/* ---- dispatch ------------------------------------------------------------- */

static int torrent_run(int argc, char **argv, const mmk_tool_opts *o)
{
    if (argc < 2) {
        mmk_tool_error(CMD, "want an action: info, create or verify (try mmk torrent --help)");
        return MMK_EXIT_USAGE;
    }
    common c = { .o = *o, .read_mode = MMK_READ_AUTO, .depth = -1 };
    /* getopt sees the action as its argv[0]. */
    int sub_argc = argc - 1;
    char **sub_argv = argv + 1;
    optind = 1;
    if (!strcmp(argv[1], "info"))
        return info_run(sub_argc, sub_argv, &c);
    if (!strcmp(argv[1], "create"))
        return create_run(sub_argc, sub_argv, &c);
    if (!strcmp(argv[1], "verify"))
        return verify_run(sub_argc, sub_argv, &c);
    mmk_tool_error(CMD, "unknown action '%s': want info, create or verify", argv[1]);
    return MMK_EXIT_USAGE;
}

const mmk_tool_cmd mmk_cmd_torrent = {
    .name = "torrent",
    .summary = "inspect, create and verify BitTorrent v1 .torrent files",
    .usage =
        "info FILE.torrent\n"
        "       mmk torrent create [-l PIECE_LEN] [-o OUT] [-a URL[,URL]...]... [-n NAME]\n"
        "                          [-c COMMENT] [-s SOURCE] [-p] [-d] [-f] [-j N] PATH\n"
        "       mmk torrent verify [-j N] [--auto | --pread | --pin] FILE.torrent DATA_DIR\n"
        "\n"
        "info     name, piece length and count, files, total size and info-hash.\n"
        "create   a v1 torrent of a file or a directory; its info-hash is mktorrent's\n"
        "         for the same content and piece length.\n"
        "           -l N         piece length: below 64 a power of two (18 = 256 KiB, as\n"
        "                        mktorrent -l), else bytes (262144, 256K); 16K..256M;\n"
        "                        default 256K\n"
        "           -o OUT       output file (default NAME.torrent; - for stdout)\n"
        "           -a URLS      announce URLs, comma-separated; repeat for more tiers\n"
        "           -n NAME      torrent name (default: the base name of PATH)\n"
        "           -c TEXT      comment     -s TEXT  source (in the info dictionary)\n"
        "           -p           private     -d       no creation date\n"
        "           -f           overwrite OUT if it exists\n"
        "verify   hash every piece of the data under DATA_DIR (the directory holding\n"
        "         NAME, as a client saves it) and report bad and missing pieces and\n"
        "         the files they touch.\n"
        "           --auto       hash files of 1 MiB or more in place (mmk_group_pin),\n"
        "                        copy smaller ones (mmk_group_pread): the default,\n"
        "                        the fastest read-once scan of both kinds\n"
        "           --pread      always copy into reused buffers\n"
        "           --pin        always hash in place (zero-copy)\n"
        "           --readahead N  chunks read ahead per thread (default 3; 0: none)\n"
        "           --chunk SIZE   bytes per read (default 1M)\n"
        "common   -j N           threads (default: one per CPU)\n"
        "         --json         machine-readable output     -q, --quiet  errors only\n"
        "\n"
        "exit status: 0 ok; 1 a bad or missing piece or file, or a malformed or unsafe\n"
        "torrent; 2 usage; 3 I/O error (unreadable data, cannot write OUT)",
    .run = torrent_run,
};
