/* tools/mmk/sha1.c — SHA-1 through libcrypto's EVP interface (see sha1.h). */
#include "sha1.h"

#include <errno.h>
#include <pthread.h>

#include <openssl/evp.h>
#include <openssl/opensslv.h>

struct mmk_sha1 {
    EVP_MD_CTX *ctx;
};

/* OpenSSL 3 looks an algorithm up in its providers on every EVP_sha1() use
 * unless it is fetched once; 1.1 has no fetching. */
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
static EVP_MD *g_md;
static pthread_once_t g_md_once = PTHREAD_ONCE_INIT;

static void fetch_md(void)
{
    g_md = EVP_MD_fetch(NULL, "SHA1", NULL);
}

static const EVP_MD *sha1_md(void)
{
    pthread_once(&g_md_once, fetch_md);
    return g_md;
}
#else
static const EVP_MD *sha1_md(void)
{
    return EVP_sha1();
}
#endif

mmk_sha1 *mmk_sha1_new(void)
{
    if (!sha1_md())
        return NULL;
    mmk_sha1 *h = OPENSSL_zalloc(sizeof *h);
    if (!h)
        return NULL;
    if (!(h->ctx = EVP_MD_CTX_new())) {
        OPENSSL_free(h);
        return NULL;
    }
    /* Initialise once here, so later inits reuse the provider context. */
    if (mmk_sha1_init(h) < 0) {
        mmk_sha1_free(h);
        return NULL;
    }
    return h;
}

void mmk_sha1_free(mmk_sha1 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    OPENSSL_free(h);
}

int mmk_sha1_init(mmk_sha1 *h)
{
    return EVP_DigestInit_ex(h->ctx, sha1_md(), NULL) == 1 ? 0 : -EIO;
}

int mmk_sha1_update(mmk_sha1 *h, const void *p, size_t n)
{
    return EVP_DigestUpdate(h->ctx, p, n) == 1 ? 0 : -EIO;
}

int mmk_sha1_final(mmk_sha1 *h, unsigned char out[MMK_SHA1_LEN])
{
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(h->ctx, out, &len) != 1 || len != MMK_SHA1_LEN)
        return -EIO;
    return 0;
}

int mmk_sha1_buf(const void *p, size_t n, unsigned char out[MMK_SHA1_LEN])
{
    mmk_sha1 *h = mmk_sha1_new();
    if (!h)
        return -ENOMEM;
    int rc = mmk_sha1_init(h);
    if (rc == 0)
        rc = mmk_sha1_update(h, p, n);
    if (rc == 0)
        rc = mmk_sha1_final(h, out);
    mmk_sha1_free(h);
    return rc;
}
