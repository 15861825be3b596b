/* xpbctl: the backend-side command line tool. Reads the global options,
 * then the command name, then hands the rest to the command's table (the
 * global options may come again there). `convert` works offline on records;
 * the other commands talk to a running xpbridge over its NNG bus. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_client.h"
#include "xpbctl.h"

static const xpbctl_command *const commands[] = {
    &xpbctl_cmd_convert,  &xpbctl_cmd_send,   &xpbctl_cmd_tail,  &xpbctl_cmd_iq,
    &xpbctl_cmd_presence, &xpbctl_cmd_roster, &xpbctl_cmd_join,  &xpbctl_cmd_sessions,
    &xpbctl_cmd_status,   &xpbctl_cmd_open,   &xpbctl_cmd_close,
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const xpbctl_page main_page = {
    .summary = "control and inspect an xpbridge deployment from the backend side",
    .usage = "xpbctl [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]",
    .synopsis = "    xpbctl [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]\n"
                "    xpbctl --help\n"
                "    xpbctl COMMAND --help\n"
                "    xpbctl help [COMMAND]\n",
    .description = "    xpbctl talks the bridge's record format (xpb.v1.Stanza, see\n"
                   "    proto/xpb/v1/stanza.proto) and its bus (proto/xpb/v1/bus.proto):\n"
                   "    requests go to the bridge's REQ/REP socket, events come from its PUB\n"
                   "    socket. Every command but convert takes the global options, before or\n"
                   "    after its name; each command's own options go after its name.\n",
    .exit_status = "    0  success\n"
                   "    1  some input was refused, the bridge answered with an error, or an iq\n"
                   "       got an error response\n"
                   "    2  usage error (unknown command or option, a value outside its limits)\n"
                   "    3  no reply from the bridge within the timeout, or it cannot be reached\n",
    .examples = "    xpbctl convert --from xml --to pb stanzas.xml > stanzas.pb\n"
                "    xpbctl send --account bot@example.com --to alice@example.com 'Hello'\n"
                "    xpbctl --events ipc:///run/xpbridge/events tail --kind message --sizes\n"
                "    xpbctl iq --account bot@example.com --to example.com --disco-info\n",
};

/* The COMMANDS section: each command's name and summary. */
static const char *command_list(char *out, size_t outlen)
{
    size_t n = (size_t)snprintf(out, outlen, "COMMANDS\n");
    for (size_t i = 0; i < N_COMMANDS && n < outlen; i++)
        n += (size_t)snprintf(out + n, outlen - n, "    %-9s %s\n", commands[i]->page.name,
                              commands[i]->page.summary);
    return out;
}

static const xpbctl_command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i]->page.name, name) == 0) return commands[i];
    return NULL;
}

static int run_command(const xpbctl_command *cmd, xpbctl_globals *g, int argc, char **argv,
                       int first)
{
    void *args = calloc(1, cmd->args_size);
    if (!args) return XPBCTL_EXIT_FAIL;
    const xpbctl_table tables[] = {
        {.opts = cmd->opts, .base = args, .title = "OPTIONS"},
        {.opts = xpbctl_global_opts,
         .base = g,
         .title = "GLOBAL OPTIONS",
         .intro = xpbctl_global_intro},
    };
    int i = first;
    int rc = xpbctl_parse(&cmd->page, tables, cmd->bus ? 2 : 1, argc, argv, &i, false);
    if (rc == XPBCTL_PARSE_HELP)
        rc = XPBCTL_EXIT_OK;
    else if (!rc)
        rc = cmd->run(cmd, g, args);
    free(args);
    return rc;
}

/* `xpbctl help [COMMAND]`: the same page as --help. */
static int help_command(const xpbctl_page *page, const xpbctl_table *globals, int argc, char **argv,
                        int i)
{
    if (i + 1 >= argc) {
        xpbctl_help_print(page, globals, 1);
        return XPBCTL_EXIT_OK;
    }
    const xpbctl_command *cmd = find_command(argv[i + 1]);
    if (!cmd) return xpbctl_usage_error(page, "unknown command", argv[i + 1]);
    char *help_argv[] = {argv[i + 1], "--help", NULL};
    xpbctl_globals g = {0};
    return run_command(cmd, &g, 2, help_argv, 1);
}

int main(int argc, char **argv)
{
    char list[2048];
    xpbctl_globals g = {0};
    xpbctl_page page = main_page;
    page.before_opts = command_list(list, sizeof(list));
    const xpbctl_table globals = {.opts = xpbctl_global_opts,
                                  .base = &g,
                                  .title = "GLOBAL OPTIONS",
                                  .intro = xpbctl_global_intro};
    int i = 1;
    int rc = xpbctl_parse(&page, &globals, 1, argc, argv, &i, true);
    if (rc) return rc == XPBCTL_PARSE_HELP ? XPBCTL_EXIT_OK : rc;
    if (i >= argc) return xpbctl_usage_error(&page, "no command given", NULL);
    if (strcmp(argv[i], "help") == 0) return help_command(&page, &globals, argc, argv, i);
    const xpbctl_command *cmd = find_command(argv[i]);
    if (!cmd) return xpbctl_usage_error(&page, "unknown command", argv[i]);
    if (!cmd->bus && i > 1)
        return xpbctl_usage_error(&cmd->page, "the global options do not apply to this command",
                                  argv[1]);
    return run_command(cmd, &g, argc, argv, i + 1);
}
