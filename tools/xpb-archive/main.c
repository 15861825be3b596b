/* xpb-archive: the message-archiving pipeline (docs/archive.md). `run`
 * follows the bridge's events into an SQLite archive; the other commands
 * read it (search, export, stats), load an export (import) or trim it
 * (prune, vacuum). Options are tables, as in xpbctl (tools/xpbctl/opts.c). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus_client.h"
#include "xa_cmd.h"

static const xpbctl_command *const commands[] = {
    &xa_cmd_run,   &xa_cmd_search, &xa_cmd_export, &xa_cmd_import,
    &xa_cmd_stats, &xa_cmd_prune,  &xa_cmd_vacuum, &xa_cmd_sql,
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const xpbctl_page main_page = {
    .summary = "archive the messages an xpbridge carries, and search and export them",
    .usage = "xpb-archive COMMAND --db FILE [OPTIONS] [ARGS]",
    .synopsis = "    xpb-archive COMMAND --db FILE [OPTIONS] [ARGS]\n"
                "    xpb-archive --help\n"
                "    xpb-archive COMMAND --help\n",
    .description =
        "    xpb-archive keeps every message an xpbridge sees, once, in an SQLite\n"
        "    database: received messages, carbons, messages the bridge recovered from\n"
        "    the server's archive (XEP-0313) and the account's own sends. `run` reads\n"
        "    the bridge's events (replaying its journal from where the archive stopped,\n"
        "    then following live); corrections (XEP-0308) and retractions (XEP-0424)\n"
        "    change the message they name. The schema, de-duplication and the resume\n"
        "    point are described in docs/archive.md.\n",
    .exit_status = XA_EXIT_STATUS,
    .examples = "    xpb-archive run --db ~/archive.db\n"
                "    xpb-archive search --db ~/archive.db --with alice@example.com invoice\n"
                "    xpb-archive export --db ~/archive.db --format xml --since 2026-01-01\n"
                "    xpb-archive stats --db ~/archive.db\n",
};

static const char *command_list(char *out, size_t outlen)
{
    size_t n = (size_t)snprintf(out, outlen, "COMMANDS\n");
    for (size_t i = 0; i < N_COMMANDS && n < outlen; i++)
        n += (size_t)snprintf(out + n, outlen - n, "    %-8s %s\n", commands[i]->page.name,
                              commands[i]->page.summary);
    return out;
}

static const xpbctl_command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i]->page.name, name) == 0) return commands[i];
    return NULL;
}

/* The bus options of `run` (a subset of xpbctl's global options). */
static const xpbctl_opt bus_opts[] = {
    {.name = "--requests",
     .arg = "URL",
     .kind = XPBCTL_STR,
     .min = 1,
     .max = CTL_URL_MAX - 1,
     .offset = XPBCTL_AT(xpbctl_globals, requests),
     .help = "the bridge's request socket, for journal replays\n"
             "(default ipc://$XDG_RUNTIME_DIR/xpbridge/requests, or\n"
             "ipc:///tmp/xpbridge-UID/requests without XDG_RUNTIME_DIR)"},
    {.name = "--events",
     .arg = "URL",
     .kind = XPBCTL_STR,
     .min = 1,
     .max = CTL_URL_MAX - 1,
     .offset = XPBCTL_AT(xpbctl_globals, events),
     .help = "the bridge's event socket (default: the same directory\n"
             "as --requests, \"events\")"},
    {.name = "--timeout",
     .arg = "MS",
     .kind = XPBCTL_NUM,
     .min = 1,
     .max = CTL_MAX_TIMEOUT_MS,
     .unit = "ms",
     .offset = XPBCTL_AT(xpbctl_globals, timeout),
     .help = "how long to wait for a replay page (default 15000)"},
    {0},
};

static int run_command(const xpbctl_command *cmd, int argc, char **argv, int first)
{
    xpbctl_globals g = {0};
    void *args = calloc(1, cmd->args_size);
    if (!args) return XA_EXIT_FAIL;
    const xpbctl_table tables[] = {
        {.opts = cmd->opts, .base = args, .title = "OPTIONS"},
        {.opts = bus_opts, .base = &g, .title = "BUS OPTIONS"},
    };
    int i = first;
    int rc = xpbctl_parse(&cmd->page, tables, cmd->bus ? 2 : 1, argc, argv, &i, false);
    if (rc == XPBCTL_PARSE_HELP)
        rc = XA_EXIT_OK;
    else if (!rc)
        rc = cmd->run(cmd, &g, args);
    free(args);
    return rc;
}

int main(int argc, char **argv)
{
    xpbctl_prog = "xpb-archive";
    char list[1024];
    xpbctl_page page = main_page;
    page.before_opts = command_list(list, sizeof list);
    static const xpbctl_opt no_opts[] = {{0}};
    const xpbctl_table none = {.opts = no_opts,
                               .base = NULL,
                               .title = "OPTIONS",
                               .intro = "    each command has its own: xpb-archive COMMAND --help\n"};
    int i = 1;
    int rc = xpbctl_parse(&page, &none, 1, argc, argv, &i, true);
    if (rc) return rc == XPBCTL_PARSE_HELP ? XA_EXIT_OK : rc;
    if (i >= argc) return xpbctl_usage_error(&page, "no command given", NULL);
    const xpbctl_command *cmd = find_command(argv[i]);
    if (!cmd) return xpbctl_usage_error(&page, "unknown command", argv[i]);
    return run_command(cmd, argc, argv, i + 1);
}

/* ---- helpers the commands share ---------------------------------------- */
xa_db *xa_cmd_open(const char *cmd, const char *path, xa_mode mode)
{
    char err[XA_ERR_MAX];
    xa_db *db = NULL;
    if (xa_db_open(path, mode, &db, err, sizeof err)) {
        fprintf(stderr, "xpb-archive: %s: %s\n", cmd, err);
        return NULL;
    }
    return db;
}

const char *xa_bare_check(const char *v)
{
    return !v[0] || strchr(v, '/') ? "takes a bare JID" : NULL;
}

const char *xa_time_check(const char *v)
{
    return xa_time_value(v) < 0 ? "takes a date (YYYY-MM-DD) or a date-time "
                                  "(YYYY-MM-DDThh:mm:ssZ)"
                                : NULL;
}

int64_t xa_time_value(const char *v)
{
    char buf[64];
    if (strlen(v) == 10) {
        snprintf(buf, sizeof buf, "%sT00:00:00Z", v);
        return xa_parse_stamp(buf);
    }
    return xa_parse_stamp(v);
}

int64_t xa_keep_cutoff(const xpbctl_num *days)
{
    if (!days->set) return 0;
    return (int64_t)time(NULL) * 1000000 - (int64_t)days->v * 86400 * 1000000;
}
