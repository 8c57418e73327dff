#include "harness.h"
static const bench_scenario ring_scenarios[1];
const bench_group bench_group_ring = { "ring", ring_scenarios, 0 };
