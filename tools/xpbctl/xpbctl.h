/* xpbctl's internal interface: what a command is (its help page, its option
 * table, its run function), the options shared by every bus command, and the
 * exit statuses. main.c dispatches; each cmd_*.c defines one command. Not
 * installed; nothing outside tools/xpbctl/ includes it. */
#ifndef XPBCTL_H
#define XPBCTL_H

#include <stdbool.h>
#include <stddef.h>

#include "opts.h"

/* Exit statuses shared by every command (documented in each --help). */
#define XPBCTL_EXIT_OK 0
#define XPBCTL_EXIT_FAIL 1 /* refused input, an error reply, an error stanza */
#define XPBCTL_EXIT_USAGE 2
#define XPBCTL_EXIT_NOREPLY 3 /* the bridge did not answer in time / cannot be reached */

/* The global options (xpbctl_global_opts): given before the command name or
 * after it, in the same struct. Every bus command takes them. */
typedef struct xpbctl_globals {
    const char *requests, *events, *request_id; /* NULL: the defaults */
    const char *nats;    /* NATS servers instead of the NNG sockets; NULL: NNG */
    const char *durable; /* tail over NATS: the JetStream consumer's durable name */
    xpbctl_num timeout;                         /* not set: the default */
    bool json;
} xpbctl_globals;

extern const xpbctl_opt xpbctl_global_opts[];
extern const char xpbctl_global_intro[];

typedef struct xpbctl_command xpbctl_command;
struct xpbctl_command {
    xpbctl_page page;
    const xpbctl_opt *opts; /* offsets into a struct of args_size bytes */
    size_t args_size;
    bool bus; /* takes the global options (talks to a running bridge) */
    /* args: the parsed struct (zeroed before parsing); returns the exit status */
    int (*run)(const xpbctl_command *cmd, const xpbctl_globals *g, void *args);
};

extern const xpbctl_command xpbctl_cmd_convert, xpbctl_cmd_send, xpbctl_cmd_tail, xpbctl_cmd_iq,
    xpbctl_cmd_presence, xpbctl_cmd_roster, xpbctl_cmd_join, xpbctl_cmd_sessions, xpbctl_cmd_status,
    xpbctl_cmd_open, xpbctl_cmd_close;

/* The EXIT STATUS text of commands that send one request; a command adds
 * its own lines after it. */
#define XPBCTL_REQUEST_EXIT_STATUS                                                                 \
    "    0  the bridge answered OK\n"                                                              \
    "    1  the bridge answered with an error, printed on standard error as\n"                     \
    "           xpbctl: COMMAND: ERR_NAME: text\n"                                                 \
    "       (ERR_UNKNOWN_ACCOUNT, ERR_NOT_CONNECTED, ERR_INVALID_JID, ERR_TIMEOUT...),\n"          \
    "       or the reply could not be decoded\n"                                                   \
    "    2  usage error\n"                                                                         \
    "    3  no reply within --timeout, or the request socket cannot be reached\n"

/* Shorthands for option tables: where a field of the command's struct is. */
#define XPBCTL_AT(type, field) offsetof(type, field)

#endif
