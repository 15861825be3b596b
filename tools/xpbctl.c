/* xpbctl: the backend-side command line tool. Dispatches to one function per
 * command: `convert` (xpbctl_convert.c) works offline on records; the others
 * (xpbctl_bus.c) talk to a running xpbridge over its NNG bus. */
#include <stdio.h>
#include <string.h>

#include "xpbctl.h"

static const char usage[] =
    "NAME\n"
    "    xpbctl - control and inspect an xpbridge deployment from the backend side\n"
    "\n"
    "SYNOPSIS\n"
    "    xpbctl COMMAND [OPTIONS] [ARGS]\n"
    "    xpbctl --help\n"
    "    xpbctl COMMAND --help\n"
    "\n"
    "DESCRIPTION\n"
    "    xpbctl talks the bridge's record format (xpb.v1.Stanza, see\n"
    "    proto/xpb/v1/stanza.proto) and its bus (proto/xpb/v1/bus.proto):\n"
    "    requests go to the bridge's REP socket, events come from its PUB socket.\n"
    "    Commands:\n"
    "\n"
    "    convert   convert stanzas between XML, length-delimited protobuf records\n"
    "              and JSON, checking every record like the bridge does (offline)\n"
    "    send      send a message (body, type, thread) or any stanza given as XML\n"
    "    tail      print events as they come: received stanzas, session states,\n"
    "              delivery outcomes; filter by account and kind\n"
    "    iq        send an iq (ping, disco, version, or any XML) and print the response\n"
    "    presence  set presence, send directed presence or subscription handling\n"
    "    roster    print an account's roster\n"
    "    join      join a MUC room (rejoined by the bridge after reconnects)\n"
    "    sessions  list the bridge's sessions with their counters\n"
    "    status    print the bridge's status\n"
    "    open      open a session for an account\n"
    "    close     close an account's session\n"
    "\n"
    "OPTIONS\n"
    "    --help    print this text (or a command's text after the command name)\n"
    "\n"
    "    Every command but convert also takes:\n"
    "    --requests URL     the bridge's request socket (default\n"
    "                       ipc://$XDG_RUNTIME_DIR/xpbridge/requests, or\n"
    "                       ipc:///tmp/xpbridge-UID/requests without XDG_RUNTIME_DIR)\n"
    "    --events URL       the bridge's event socket (same directory, \"events\")\n"
    "    --timeout MS       how long to wait for a reply (default 15000)\n"
    "    --request-id ID    the request's id (default: 128 random bits in hex);\n"
    "                       resending with the same id never sends twice\n"
    "    --json             machine-readable output, one JSON object per line\n"
    "\n"
    "EXIT STATUS\n"
    "    0  success\n"
    "    1  some input was refused, the bridge answered with an error, or an iq\n"
    "       got an error response\n"
    "    2  usage error (unknown command or option)\n"
    "    3  no reply from the bridge within the timeout, or it cannot be reached\n"
    "\n"
    "EXAMPLES\n"
    "    xpbctl convert --from xml --to pb stanzas.xml > stanzas.pb\n"
    "    xpbctl send --account bot@example.com --to alice@example.com 'Hello'\n"
    "    xpbctl tail --kind message --sizes\n"
    "    xpbctl iq --account bot@example.com --to example.com --disco-info\n";

typedef struct command {
    const char *name;
    int (*main)(int argc, char **argv);
} command;

static const command commands[] = {
    {"convert", xpbctl_convert_main},   {"send", xpbctl_send_main},
    {"tail", xpbctl_tail_main},         {"iq", xpbctl_iq_main},
    {"presence", xpbctl_presence_main}, {"roster", xpbctl_roster_main},
    {"join", xpbctl_join_main},         {"sessions", xpbctl_sessions_main},
    {"status", xpbctl_status_main},     {"open", xpbctl_open_main},
    {"close", xpbctl_close_main},
};

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    for (size_t i = 0; argc >= 2 && i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].main(argc - 1, argv + 1);
    if (argc >= 2) fprintf(stderr, "xpbctl: unknown command '%s'\n", argv[1]);
    fputs("usage: xpbctl COMMAND [OPTIONS] [ARGS] (see xpbctl --help)\n", stderr);
    return XPBCTL_EXIT_USAGE;
}
