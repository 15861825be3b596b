/* What both ends of the NNG bus agree on, without the server: the API
 * version, the default endpoints and the event topics (docs/bus.md). The
 * daemon's bus (xpb_bus.h) and xpbctl both link this small library, so a
 * client never links the server side. Pure: no NNG, no libevent. */
#ifndef XPB_BUS_WIRE_H
#define XPB_BUS_WIRE_H

#include <stddef.h>

#include "xpb/v1/bus.pb-c.h"

#define XPB_BUS_API_VERSION 1u
#define XPB_BUS_MAX_REQUEST_ID 128u /* bytes of Request.request_id */

/* Event kinds, in the order of the topic scheme: "message", "presence",
 * "iq", "other", "state", "delivery". */
#define XPB_BUS_N_EVENT_KINDS 6u
extern const char *const xpb_bus_event_kinds[XPB_BUS_N_EVENT_KINDS];

/* The topic kind of a received stanza: "message", "presence", "iq", or
 * "other" for anything else. */
const char *xpb_bus_stanza_kind(Xpb__V1__Kind k);
/* The topic kind an event is published under: its stanza's kind, "state"
 * or "delivery". */
const char *xpb_bus_event_kind(const Xpb__V1__Event *ev);

/* The private directory a bus uses when none is configured:
 * $XDG_RUNTIME_DIR/xpbridge when $XDG_RUNTIME_DIR is absolute (XDG Base
 * Directory spec), else /tmp/xpbridge-<euid>. 0, or XPB_ETOOBIG when out is
 * too small. */
int xpb_bus_default_dir(char *out, size_t outlen);

/* The URL a bus binds for name ("events" or "requests") when none is
 * configured and private_dir is unset: ipc://<default dir>/NAME. xpbctl uses
 * it to find the daemon, so the rule lives here once. 0, or XPB_ETOOBIG. */
int xpb_bus_default_url(const char *name, char *out, size_t outlen);

/* The topic prefix an event subscriber filters on (NNG SUB prefixes):
 * "KIND/ACCOUNT/" with an account, "KIND/" without (account NULL). The
 * trailing '/' keeps a@x from matching a@xy. Returns the length written, or
 * XPB_ETOOBIG when out is too small. */
int xpb_bus_topic_prefix(const char *kind, const char *account, char *out, size_t outlen);

#endif
