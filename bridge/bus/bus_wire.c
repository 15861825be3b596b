/* The bus's shared contract (xpb_bus_wire.h): default endpoints and topic
 * prefixes, computed the same way by the daemon and by its clients. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "xpb_bus_wire.h"
#include "xpb_error.h"

const char *const xpb_bus_event_kinds[XPB_BUS_N_EVENT_KINDS] = {
    "message", "presence", "iq", "other", "state", "delivery",
};

/* Only an absolute $XDG_RUNTIME_DIR counts (XDG Base Directory spec). */
static const char *runtime_dir(void)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    return xdg != NULL && xdg[0] == '/' ? xdg : NULL;
}

static int fits(int n, size_t outlen)
{
    return n < 0 || (size_t)n >= outlen ? XPB_ETOOBIG : 0;
}

int xpb_bus_default_dir(char *out, size_t outlen)
{
    const char *xdg = runtime_dir();
    int n = xdg != NULL ? snprintf(out, outlen, "%s/xpbridge", xdg)
                        : snprintf(out, outlen, "/tmp/xpbridge-%lu", (unsigned long)geteuid());
    return fits(n, outlen);
}

int xpb_bus_default_url(const char *name, char *out, size_t outlen)
{
    const char *xdg = runtime_dir();
    int n = xdg != NULL ? snprintf(out, outlen, "ipc://%s/xpbridge/%s", xdg, name)
                        : snprintf(out, outlen, "ipc:///tmp/xpbridge-%lu/%s",
                                   (unsigned long)geteuid(), name);
    return fits(n, outlen);
}

int xpb_bus_topic_prefix(const char *kind, const char *account, char *out, size_t outlen)
{
    int n = account != NULL ? snprintf(out, outlen, "%s/%s/", kind, account)
                            : snprintf(out, outlen, "%s/", kind);
    return fits(n, outlen) ? XPB_ETOOBIG : n;
}

const char *xpb_bus_stanza_kind(Xpb__V1__Kind k)
{
    switch (k) {
    case XPB__V1__KIND__KIND_MESSAGE: return "message";
    case XPB__V1__KIND__KIND_PRESENCE: return "presence";
    case XPB__V1__KIND__KIND_IQ: return "iq";
    default: return "other";
    }
}

const char *xpb_bus_event_kind(const Xpb__V1__Event *ev)
{
    switch (ev->body_case) {
    case XPB__V1__EVENT__BODY_STATE: return "state";
    case XPB__V1__EVENT__BODY_DELIVERY: return "delivery";
    case XPB__V1__EVENT__BODY_STANZA: return xpb_bus_stanza_kind(ev->stanza->kind);
    default: return "other";
    }
}
