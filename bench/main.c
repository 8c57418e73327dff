/* bench/main.c — mmk-bench: the list of scenario groups, one per module.
 * A new module adds its bench/bench_NAME.c to CMakeLists.txt, declares its
 * group in harness.h and lists it here. */
#include "harness.h"

static const bench_group *const groups[] = {
    &bench_group_map,
    &bench_group_guard,
    &bench_group_cache,
    &bench_group_file,
    &bench_group_ring,
#ifdef MMK_BENCH_TORRENT
    &bench_group_torrent,
#endif
};

int main(int argc, char **argv)
{
    return bench_main(argc, argv, groups, sizeof groups / sizeof groups[0]);
}
