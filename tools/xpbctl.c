/* xpbctl: the backend-side command line tool. Dispatches to one function per
 * command; today only `convert` (xpbctl_convert.c) exists; send, tail, iq,
 * presence, roster, join, sessions and status come with the bridge. */
#include <stdio.h>
#include <string.h>

/* xpbctl_convert.c: argv[0] is "convert". Returns the exit status. */
int xpbctl_convert_main(int argc, char **argv);

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
    "    proto/xpb/v1/stanza.proto). Commands:\n"
    "\n"
    "    convert   convert stanzas between XML, length-delimited protobuf records\n"
    "              and JSON, checking every record like the bridge does\n"
    "\n"
    "    Planned: send, tail, iq, presence, roster, join, sessions, status.\n"
    "\n"
    "OPTIONS\n"
    "    --help    print this text (or a command's text after the command name)\n"
    "\n"
    "EXIT STATUS\n"
    "    0  success\n"
    "    1  some input was refused or could not be read or written\n"
    "    2  usage error (unknown command or option)\n"
    "\n"
    "EXAMPLES\n"
    "    xpbctl convert --from xml --to pb stanzas.xml > stanzas.pb\n"
    "    xpbctl convert --from pb --to json < stanzas.pb\n";

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "convert") == 0)
        return xpbctl_convert_main(argc - 1, argv + 1);
    if (argc >= 2)
        fprintf(stderr, "xpbctl: unknown command '%s'\n", argv[1]);
    fputs("usage: xpbctl COMMAND [OPTIONS] [ARGS] (see xpbctl --help)\n", stderr);
    return 2;
}
