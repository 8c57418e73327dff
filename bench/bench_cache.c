#include "harness.h"
static const bench_scenario cache_scenarios[1];
const bench_group bench_group_cache = { "cache", cache_scenarios, 0 };
