/* xpbctl's internal interface: one entry point per command (argv[0] is the
 * command name; each returns the process exit status), shared by the
 * dispatcher in xpbctl.c. Not installed; nothing outside tools/ includes it. */
#ifndef XPBCTL_H
#define XPBCTL_H

#include <stddef.h>

/* Exit statuses shared by every command (documented in each --help). */
#define XPBCTL_EXIT_OK 0
#define XPBCTL_EXIT_FAIL 1 /* refused input, an error reply, an error stanza */
#define XPBCTL_EXIT_USAGE 2
#define XPBCTL_EXIT_NOREPLY 3 /* the bridge did not answer in time / cannot be reached */

/* xpbctl_convert.c */
int xpbctl_convert_main(int argc, char **argv);

/* xpbctl_bus.c: commands that talk to a running xpbridge. */
int xpbctl_send_main(int argc, char **argv);
int xpbctl_tail_main(int argc, char **argv);
int xpbctl_iq_main(int argc, char **argv);
int xpbctl_presence_main(int argc, char **argv);
int xpbctl_roster_main(int argc, char **argv);
int xpbctl_join_main(int argc, char **argv);
int xpbctl_sessions_main(int argc, char **argv);
int xpbctl_status_main(int argc, char **argv);
int xpbctl_open_main(int argc, char **argv);
int xpbctl_close_main(int argc, char **argv);

/* The bridge's default endpoint for "requests" or "events": ipc:// in
 * $XDG_RUNTIME_DIR/xpbridge, else /tmp/xpbridge-<uid> (the rule of
 * xpb_bus_config.private_dir in bridge/xpb_bus.h). 0, or -1 when it does not
 * fit in out. */
int xpbctl_default_url(const char *name, char *out, size_t outlen);

#endif
