/* Shared by config.c (the file) and cli.c (the flags). */
#ifndef XPB_CONFIG_INTERNAL_H
#define XPB_CONFIG_INTERNAL_H

#include <stddef.h>

#include "xpb_config.h"

/* *dst = a copy of v (NULL stays NULL); 0 or XPB_ENOMEM. */
int config_set_str(char **dst, const char *v);
/* s = "user@domain[/resource]" -> a->jid (normalised bare JID) and a->resource. */
int config_account_jid(xpb_account_cfg *a, const char *s, char *why, size_t whylen);
/* A metrics listen address: "ADDR:PORT" (or "[v6]:PORT"); "0" and "" (disabled) pass. */
int config_listen_ok(const char *s);
/* A room JID: bare, with a localpart (room@service). */
int config_room_jid_ok(const char *s, char *why, size_t whylen);

/* The nats group (config_nats.c): 0, or XPB_EINVAL with "NAME:LINE: text"
 * in err, or XPB_ENOMEM. config_nats_clear frees what it set. */
struct config_setting_t;
int config_parse_nats(const struct config_setting_t *root, xpb_config *c, const char *name,
                      char *err, size_t errlen);
void config_nats_clear(xpb_nats_config *n);

#endif
