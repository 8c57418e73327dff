/* src/common.c — errors, version and geometry of mmkit/common.h. */
#include <mmkit/common.h>

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "os/os.h"

#ifndef MMK_VERSION_STRING
#define MMK_VERSION_STRING "0.0.0"
#endif

const char *mmk_strerror(int err)
{
    if (err == 0)
        return "Success";
    if (err < 0) {
        if (err == INT_MIN)
            return "Unknown error";
        err = -err;
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    /* Static, untranslated, thread-safe. */
    const char *s = strerrordesc_np(err);
    return s ? s : "Unknown error";
#else
    /* strerror() may use a shared buffer only for unknown codes; the known
     * ones come from a static table on every libc we build on. */
    return strerror(err);
#endif
}

const char *mmk_version(void)
{
    return MMK_VERSION_STRING;
}

size_t mmk_page_size(void)
{
    return mmk__page_size();
}

size_t mmk_map_granularity(void)
{
    return mmk__granularity();
}
