/* tests/stress/stress.h — tiny helpers for the stress programs.  These are
 * plain programs (exit 0 pass, 1 fail, 77 skip), not Criterion suites, so they
 * also run under ThreadSanitizer, whose address layout Criterion's shared
 * arena cannot live with. */
#ifndef MMK_STRESS_H
#define MMK_STRESS_H

#include <stdio.h>
#include <stdlib.h>

#define STRESS_SKIP 77

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__,    \
                    #cond);                                                     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

#endif
