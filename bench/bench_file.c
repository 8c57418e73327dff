#include "harness.h"
static const bench_scenario file_scenarios[1];
const bench_group bench_group_file = { "file", file_scenarios, 0 };
