/* tools/mmk/sha1.h — SHA-1 for torrents, on OpenSSL's libcrypto (EVP).
 *
 * A context is made once per thread and reused for every piece: the digest
 * is fetched once for the process, so starting a piece costs no lookup and
 * no allocation (which matters for 16 KiB pieces, and lets mmk_sha1_update
 * run under mmk_guard_run on a mapping: it neither locks nor allocates).
 *
 * Thread safety: a context belongs to one thread; mmk_sha1_buf may be called
 * from any thread.
 */
#ifndef MMK_TOOL_SHA1_H
#define MMK_TOOL_SHA1_H

#include <stddef.h>

#define MMK_SHA1_LEN 20

typedef struct mmk_sha1 mmk_sha1;

/* A new context, or NULL (out of memory, or no SHA-1 in libcrypto). */
mmk_sha1 *mmk_sha1_new(void);
void      mmk_sha1_free(mmk_sha1 *h);
/* Start a digest; 0 or -EIO (libcrypto refused). */
int       mmk_sha1_init(mmk_sha1 *h);
int       mmk_sha1_update(mmk_sha1 *h, const void *p, size_t n);
int       mmk_sha1_final(mmk_sha1 *h, unsigned char out[MMK_SHA1_LEN]);
/* The digest of one buffer: 0 or -ENOMEM / -EIO. */
int       mmk_sha1_buf(const void *p, size_t n, unsigned char out[MMK_SHA1_LEN]);

#endif
