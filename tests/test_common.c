/* tests/test_common.c — errors, version and geometry (mmkit/common.h). */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <mmkit.h>

#include "os/os.h"

TestSuite(common, .timeout = 30);

Test(common, strerror_accepts_both_signs)
{
    cr_expect_str_eq(mmk_strerror(-ENOENT), mmk_strerror(ENOENT));
    cr_expect_str_eq(mmk_strerror(-EINVAL), strerror(EINVAL));
    cr_expect_str_eq(mmk_strerror(0), "Success");
}

Test(common, strerror_never_null)
{
    cr_expect_not_null(mmk_strerror(INT_MIN));
    cr_expect_not_null(mmk_strerror(INT_MAX));
    cr_expect_not_null(mmk_strerror(-123456));
}

Test(common, version_matches_header)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", MMK_VERSION_MAJOR, MMK_VERSION_MINOR,
             MMK_VERSION_PATCH);
    cr_expect_str_eq(mmk_version(), want);
}

Test(common, geometry)
{
    size_t ps = mmk_page_size();
    cr_expect_eq(ps, (size_t)sysconf(_SC_PAGESIZE));
    cr_expect_eq(mmk_map_granularity() % ps, 0);
    cr_expect_eq(ps & (ps - 1), 0, "page size is a power of two");
    size_t huge = mmk__huge_page_size();
    cr_expect_geq(huge, ps);
    cr_expect_eq(huge & (huge - 1), 0);
}

Test(common, flags_are_distinct_bits)
{
    unsigned all[] = { MMK_RDWR, MMK_COPY, MMK_EXEC, MMK_CREATE, MMK_EXCL, MMK_TRUNC,
                       MMK_NOFOLLOW, MMK_RESERVE, MMK_POPULATE, MMK_HUGE, MMK_LOCKED,
                       MMK_APPEND, MMK_SHARED };
    unsigned seen = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        cr_expect_eq(all[i] & (all[i] - 1), 0);
        cr_expect_eq(seen & all[i], 0);
        seen |= all[i];
    }
    cr_expect_eq(MMK_RDONLY, 0);
}
