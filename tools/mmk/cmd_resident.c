/* tools/mmk/cmd_resident.c — `mmk resident FILE...`: how much of each file is
 * in the page cache right now (mincore through a read-only map; nothing is
 * read, so nothing is brought in). */
#include <stdio.h>
#include <string.h>

#include <mmkit.h>

#include "cmd.h"

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int resident_run(int argc, char **argv, const mmk_tool_opts *o)
{
    int status = MMK_EXIT_OK, first = 1;
    int i = 1;
    if (i < argc && !strcmp(argv[i], "--"))
        i++;
    if (i == argc) {
        mmk_tool_error("resident", "no file given (try mmk resident --help)");
        return MMK_EXIT_USAGE;
    }
    if (o->json)
        printf("[");
    for (; i < argc; i++) {
        mmk_map *m;
        size_t bytes = 0;
        int rc = mmk_map_open(&m, argv[i], NULL);
        if (rc == 0) {
            rc = mmk_map_resident(m, 0, 0, &bytes);
            size_t len = mmk_map_len(m);
            mmk_map_close(m);
            if (rc == 0) {
                double pct = len ? 100.0 * (double)bytes / (double)len : 100.0;
                if (o->json) {
                    printf("%s{\"file\":", first ? "" : ",");
                    print_json_string(argv[i]);
                    printf(",\"size\":%zu,\"resident\":%zu}", len, bytes);
                    first = 0;
                } else if (!o->quiet) {
                    printf("%12zu %12zu %6.1f%%  %s\n", bytes, len, pct, argv[i]);
                }
                continue;
            }
        }
        mmk_tool_error("resident", "%s: %s", argv[i], mmk_strerror(rc));
        status = MMK_EXIT_IO;
    }
    if (o->json)
        printf("]\n");
    return status;
}

const mmk_tool_cmd mmk_cmd_resident = {
    .name = "resident",
    .summary = "show how much of each file is in the page cache",
    .usage = "FILE...\n\nPrints resident bytes, file size, percentage and name.",
    .run = resident_run,
};
