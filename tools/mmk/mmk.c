/* tools/mmk/mmk.c — the mmk command line: global options and dispatch. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <mmkit.h>

#include "cmd.h"

static const mmk_tool_cmd *const commands[] = {
    &mmk_cmd_resident,
    &mmk_cmd_torrent,
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

void mmk_tool_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "mmk %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: mmk [--json] [--quiet] COMMAND [ARGS...]\n"
            "       mmk --help | --version\n"
            "       mmk COMMAND --help\n\n"
            "Memory-mapped file tools (mmkit %s).\n\ncommands:\n",
            mmk_version());
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(to, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(to, "\nexit status: 0 ok, 1 verification failed, 2 usage error, 3 I/O error\n");
}

int main(int argc, char **argv)
{
    mmk_tool_opts o = { 0 };
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return MMK_EXIT_OK;
        } else if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
            printf("mmk %s\n", mmk_version());
            return MMK_EXIT_OK;
        } else if (!strcmp(argv[i], "--json")) {
            o.json = true;
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            o.quiet = true;
        } else {
            fprintf(stderr, "mmk: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return MMK_EXIT_USAGE;
        }
    }
    if (i == argc) {
        usage(stderr);
        return MMK_EXIT_USAGE;
    }
    for (size_t c = 0; c < NCOMMANDS; c++) {
        if (strcmp(argv[i], commands[c]->name) != 0)
            continue;
        int sub_argc = argc - i;
        char **sub_argv = argv + i;
        for (int k = 1; k < sub_argc; k++) {
            if (!strcmp(sub_argv[k], "--help") || !strcmp(sub_argv[k], "-h")) {
                printf("mmk %s: %s\n\nusage: mmk %s %s\n", commands[c]->name,
                       commands[c]->summary, commands[c]->name, commands[c]->usage);
                return MMK_EXIT_OK;
            }
            if (!strcmp(sub_argv[k], "--"))
                break;
        }
        return commands[c]->run(sub_argc, sub_argv, &o);
    }
    fprintf(stderr, "mmk: unknown command '%s'\n", argv[i]);
    usage(stderr);
    return MMK_EXIT_USAGE;
}
