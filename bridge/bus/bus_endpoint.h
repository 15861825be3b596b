/* Internal to bridge/bus/: the endpoint rules of the NNG back end
 * (bus_endpoint.c) and the error-text helper the bus files share. */
#ifndef XPB_BUS_ENDPOINT_H
#define XPB_BUS_ENDPOINT_H

#include <stddef.h>
#include <sys/stat.h>

#include "xpb_bus.h"

typedef struct xpb_bus_endpoints {
    char *events_url, *requests_url;           /* resolved, owned */
    mode_t events_dir_mode, requests_dir_mode; /* of ipc:// endpoints' directories */
} xpb_bus_endpoints;

/* Fills in the default URLs (creating the private directory), refuses a
 * networked endpoint not on loopback unless allow_remote, checks the
 * directory of every ipc:// endpoint and removes its stale socket file.
 * 0, XPB_EINVAL (err names the endpoint and the rule) or XPB_ENOMEM; free
 * ep with xpb_bus_endpoints_free either way. */
int xpb_bus_endpoints_resolve(const xpb_bus_config *c, xpb_bus_endpoints *ep, char *err,
                              size_t errlen);
void xpb_bus_endpoints_free(xpb_bus_endpoints *ep);

int xpb_bus_has_scheme(const char *url, const char *scheme);
/* Mode of an ipc socket file in a directory of dir_mode: owner only, plus
 * the group when the directory grants its group access and others none. */
int xpb_bus_ipc_socket_mode(mode_t dir_mode);

void xpb_bus_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
