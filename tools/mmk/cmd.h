/* tools/mmk/cmd.h — what every mmk subcommand shares. */
#ifndef MMK_TOOL_CMD_H
#define MMK_TOOL_CMD_H

#include <stdbool.h>

/* Exit codes of mmk(1). */
enum {
    MMK_EXIT_OK = 0,
    MMK_EXIT_FAIL = 1,  /* verification failed */
    MMK_EXIT_USAGE = 2, /* bad command line */
    MMK_EXIT_IO = 3,    /* an I/O error */
};

/* Options common to all subcommands, parsed before the subcommand's own. */
typedef struct mmk_tool_opts {
    bool json;  /* machine-readable output */
    bool quiet; /* errors only */
} mmk_tool_opts;

typedef struct mmk_tool_cmd {
    const char *name;
    const char *summary;
    const char *usage;
    int (*run)(int argc, char **argv, const mmk_tool_opts *o);
} mmk_tool_cmd;

extern const mmk_tool_cmd mmk_cmd_resident;
extern const mmk_tool_cmd mmk_cmd_torrent;

/* Print "mmk NAME: message" to stderr. */
void mmk_tool_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
