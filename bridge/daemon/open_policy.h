/* What a bus `open` request may make the bridge do (docs/security.md, "The
 * bus"): start only accounts whose credentials the configuration provides, or
 * take a password inline when bus.allow_inline_credentials is set; never take
 * a file path, host, port or TLS setting unless bus.allow_open_overrides is
 * set. A pure function, so that tests/bridge/test_open_policy.c covers every
 * refusal without a daemon. */
#ifndef XPB_OPEN_POLICY_H
#define XPB_OPEN_POLICY_H

#include <stddef.h>

#include "xpb_config.h"
#include "xpb/v1/bus.pb-c.h"

typedef struct xpb_open_rules {
    int allow_inline_credentials; /* bus.allow_inline_credentials */
    int allow_open_overrides;     /* bus.allow_open_overrides */
} xpb_open_rules;

/* The account an open request may start. jid is the request's account
 * (open.jid, else Request.account), already normalised: bare is its bare JID,
 * resource its resource or NULL. configured is the configuration's account of
 * that bare JID, or NULL. On OK, *out holds the account to start (the
 * caller clears it with xpb_account_cfg_clear) and *password the request's
 * inline password, or NULL when out->password_file is to be read. Otherwise
 * the error code for the reply (ERR_FORBIDDEN for a refused field or an
 * account the configuration does not provide, ERR_BAD_REQUEST, ERR_INTERNAL)
 * and a sentence in err naming the rule and the setting that would allow it;
 * *out is then empty. */
Xpb__V1__ErrorCode xpb_open_resolve(const xpb_open_rules *rules, const xpb_account_cfg *configured,
                                    const Xpb__V1__OpenSession *op, const char *bare,
                                    const char *resource, xpb_account_cfg *out,
                                    const char **password, char *err, size_t errlen);

#endif
