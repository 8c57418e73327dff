/* tools/mmk/torrent.h — BitTorrent v1 metainfo: parse and validate a
 * .torrent, and create one for a file or a directory.
 *
 * Parsing is strict where a mistake could hurt: the info dictionary must be
 * canonical bencode (sorted, unique keys), its sizes must agree (pieces ==
 * ceil(total / piece length), lengths adding up without overflow), and every
 * path must stay inside the torrent's directory: "..", ".", empty components,
 * components holding '/' or NUL bytes, and absolute paths are refused with a
 * message naming the file.  A torrent that parses can be handed to mmk_group
 * as it is.
 *
 * Creation matches mktorrent(1) byte for byte in the info dictionary (so the
 * info-hash is the same for the same content and piece length): files are
 * found by walking the directory following symbolic links, regular files only
 * (hidden and empty ones included, FIFOs, sockets and devices left out), and
 * listed in strcmp order of their whole relative path; a single file makes a
 * single-file torrent; the info dictionary holds files or length, name,
 * piece length, pieces, then private and source when asked for.
 *
 * Errors are negative errno values: -EBADMSG for a malformed or unsafe
 * torrent (the message says what), others for I/O.  Messages go to a
 * caller's buffer of MMK_TORRENT_ERRLEN bytes.
 */
#ifndef MMK_TOOL_TORRENT_H
#define MMK_TOOL_TORRENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mmkit/group.h>

#include "sha1.h"

#define MMK_TORRENT_ERRLEN 512

/* Limits of what we accept. */
#define MMK_TORRENT_MAX_FILE   ((size_t)256 << 20) /* .torrent size: 256 MiB (12 M pieces) */
#define MMK_TORRENT_MAX_PIECE  ((uint64_t)1 << 30) /* piece length in a torrent we read */
#define MMK_TORRENT_MAX_PATH   4096                /* bytes of NAME/PATH (Linux PATH_MAX) */
/* Piece lengths `mmk torrent create` makes: 16 KiB (the BitTorrent block) up
 * to 256 MiB (mktorrent's largest); 256 KiB by default, as mktorrent. */
#define MMK_TORRENT_MIN_CREATE_LOG 14
#define MMK_TORRENT_MAX_CREATE_LOG 28
#define MMK_TORRENT_DEFAULT_LOG    18

typedef struct mmk_torrent_file {
    char    *path;   /* on disk, relative to the data directory: NAME/a/b or NAME */
    uint64_t length;
    uint64_t offset; /* of its first byte in the torrent */
} mmk_torrent_file;

typedef struct mmk_torrent {
    char             *name;
    bool              multi;     /* a "files" list (NAME is a directory) */
    bool              priv;      /* "private": 1 */
    uint64_t          piece_len;
    size_t            npieces;
    unsigned char    *pieces;    /* npieces * MMK_SHA1_LEN bytes */
    uint64_t          total;
    mmk_torrent_file *files;
    size_t            nfiles;
    unsigned char     info_hash[MMK_SHA1_LEN];
    size_t            info_len;  /* bytes of the bencoded info dictionary */
    /* Outside the info dictionary (NULL / 0 when absent). */
    char             *announce;
    size_t            ntrackers; /* URLs in announce-list (all tiers) */
    char             *comment;
    char             *created_by;
    char             *source;    /* info "source" */
    int64_t           creation_date;
} mmk_torrent;

/* Parse a .torrent held in memory. */
int  mmk_torrent_parse(mmk_torrent **out, const void *buf, size_t len, char *err);
/* Read and parse a .torrent file ("-" reads stdin). */
int  mmk_torrent_load(mmk_torrent **out, const char *path, char *err);
void mmk_torrent_free(mmk_torrent *t);

/* Bytes of piece i. */
static inline uint64_t mmk_torrent_piece_size(const mmk_torrent *t, size_t i)
{
    if (i + 1 < t->npieces)
        return t->piece_len;
    return t->total - (uint64_t)i * t->piece_len;
}

/* The first file with a byte in [off, ...): the file holding byte off
 * (zero-length files hold none).  off < total. */
size_t mmk_torrent_file_at(const mmk_torrent *t, uint64_t off);

/* Is one path component safe to use on disk?  NULL if so, else why not. */
const char *mmk_torrent_unsafe_component(const unsigned char *s, size_t n);

/* ---- creation ---------------------------------------------------------------- */

typedef struct mmk_torrent_create_opts {
    const char  *path;         /* the file or directory */
    const char  *name;         /* NULL: the base name of path */
    unsigned     piece_log;    /* log2 of the piece length */
    const char **announce;     /* tiers: each a comma-separated list of URLs */
    size_t       nannounce;
    const char  *comment;
    const char  *source;
    bool         priv;
    bool         no_date;
    unsigned     threads;      /* 0: one per CPU */
    int          read_mode;    /* MMK_READ_* of verify.h (0: AUTO) */
    void       (*progress)(void *arg, uint64_t done, uint64_t total);
    void        *progress_arg;
} mmk_torrent_create_opts;

/* What create found and made. */
typedef struct mmk_torrent_created {
    unsigned char *data;      /* the .torrent, malloc'd */
    size_t         len;
    unsigned char  info_hash[MMK_SHA1_LEN];
    char          *name;      /* malloc'd */
    size_t         nfiles;
    size_t         npieces;
    uint64_t       total;
    uint64_t       piece_len;
    double         seconds;   /* spent hashing */
} mmk_torrent_created;

/* Walk, hash and encode.  Errors: -ENOENT and other walk errors (err names
 * the path), -ELOOP (a symbolic link loop), -EINVAL (bad options), the
 * group's and the hashing's errors. */
int  mmk_torrent_create(const mmk_torrent_create_opts *o, mmk_torrent_created *out,
                        char *err);
void mmk_torrent_created_free(mmk_torrent_created *c);

/* ---- verification ------------------------------------------------------------ */

/* What verify found for each file. */
enum {
    MMK_TFILE_OK = 0,
    MMK_TFILE_LONG,     /* larger than in the torrent: the torrent's part is verified */
    MMK_TFILE_MISSING,  /* absent */
    MMK_TFILE_SHORT,    /* smaller than in the torrent: its pieces count as missing */
    MMK_TFILE_NOTFILE,  /* a directory or a special file */
    MMK_TFILE_REFUSED,  /* the group refused it: file_err says why (-EXDEV: a
                           symbolic link leaving the data directory) */
};

typedef struct mmk_verify_opts {
    unsigned threads;   /* 0: one per CPU */
    int      read_mode; /* MMK_READ_AUTO (0), _PREAD or _PIN (verify.h) */
    int      depth;     /* chunks per worker, 0: no read-ahead thread, -1: default */
    size_t   chunk;     /* 0: default */
    void   (*progress)(void *arg, uint64_t done, uint64_t total);
    void    *progress_arg;
} mmk_verify_opts;

typedef struct mmk_verify_result {
    unsigned char *status;      /* per piece: MMK_PIECE_* */
    unsigned char *file_state;  /* per file: MMK_TFILE_* */
    int           *file_err;    /* per file: the error behind REFUSED, else 0 */
    uint64_t      *file_size;   /* per file: the size on disk (0 if absent) */
    size_t         good, bad, missing, unreadable;
    size_t         files_bad;   /* files neither OK nor LONG */
    uint64_t       bytes;       /* hashed */
    uint64_t       pinned;      /* of which in place (pins) */
    double         seconds;     /* of the hashing */
    unsigned       threads;
    int            err;         /* the first read error, if pieces were unreadable */
} mmk_verify_result;

/* Verify the torrent's files under data_dir (DATA_DIR/NAME for a single
 * file, DATA_DIR/NAME/PATH... for a directory, as a client saves them):
 * every file is looked at first; those missing, short, not regular files or
 * refused are left out of the group, and the pieces that touch them are
 * MISSING; every other piece is hashed.  Nothing outside data_dir is read (the
 * group refuses symbolic links that leave it).  Returns 0 when the check ran
 * (whatever it found: see *r), or a negative errno with err set (data_dir
 * cannot be opened, out of memory, the engine could not start). */
int  mmk_torrent_verify(const mmk_torrent *t, const char *data_dir,
                        const mmk_verify_opts *o, mmk_verify_result *r, char *err);
void mmk_verify_result_free(mmk_verify_result *r);

#endif
