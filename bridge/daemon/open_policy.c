/* The rules of a bus `open` request (open_policy.h): which account it may
 * start, with which credentials, and which of its fields it may set. */
#include "open_policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"

/* The first field of op that would change where the bridge connects, what
 * it trusts or what file it reads; NULL when there is none. */
static const char *first_override(const Xpb__V1__OpenSession *op)
{
    if (op->password_file != NULL) return "password_file";
    if (op->host != NULL) return "host";
    if (op->has_port) return "port";
    if (op->has_transport) return "transport";
    if (op->ws_url != NULL) return "ws_url";
    if (op->ca_file != NULL) return "ca_file";
    return NULL;
}

static int set_opt(char **dst, const char *v)
{
    free(*dst);
    *dst = NULL;
    if (v == NULL || v[0] == '\0') return 0;
    *dst = strdup(v);
    return *dst == NULL ? XPB_ENOMEM : 0;
}

/* The overrides, once allowed, replace what the configuration says. */
static int apply_overrides(const Xpb__V1__OpenSession *op, xpb_account_cfg *c)
{
    int rc = 0;
    if (op->password_file != NULL) rc |= set_opt(&c->password_file, op->password_file);
    if (op->host != NULL) rc |= set_opt(&c->host, op->host);
    if (op->has_port) c->port = op->port <= 65535 ? op->port : 0;
    if (op->has_transport) c->transport = (int)op->transport;
    if (op->ws_url != NULL) rc |= set_opt(&c->ws_url, op->ws_url);
    if (op->ca_file != NULL) rc |= set_opt(&c->ca_file, op->ca_file);
    return rc;
}

/* Settings that do not change where the bridge connects or what it reads:
 * the request may always set them; a configured account keeps its own
 * unless the request says otherwise. */
static void apply_session_flags(const Xpb__V1__OpenSession *op, xpb_account_cfg *c, int fresh)
{
    if (fresh || op->has_fetch_roster) c->fetch_roster = op->fetch_roster;
    if (fresh || op->has_send_presence) c->send_presence = op->send_presence;
    if (fresh || op->has_stream_management) c->stream_management = op->stream_management;
}

static Xpb__V1__ErrorCode refuse(xpb_account_cfg *out, Xpb__V1__ErrorCode code, char *err,
                                 size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static Xpb__V1__ErrorCode refuse(xpb_account_cfg *out, Xpb__V1__ErrorCode code, char *err,
                                 size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    xpb_account_cfg_clear(out);
    return code;
}

Xpb__V1__ErrorCode xpb_open_resolve(const xpb_open_rules *rules, const xpb_account_cfg *configured,
                                    const Xpb__V1__OpenSession *op, const char *bare,
                                    const char *resource, xpb_account_cfg *out,
                                    const char **password, char *err, size_t errlen)
{
    const Xpb__V1__ErrorCode forbidden = XPB__V1__ERROR_CODE__ERR_FORBIDDEN;
    memset(out, 0, sizeof *out);
    *password = NULL;
    const char *ov = first_override(op);
    if (ov != NULL && !rules->allow_open_overrides)
        return refuse(out, forbidden, err, errlen,
                      "open: %s is not allowed from the bus (set bus.allow_open_overrides in "
                      "the config)",
                      ov);
    if (op->password != NULL && !rules->allow_inline_credentials)
        return refuse(out, forbidden, err, errlen,
                      "open: password is not allowed from the bus (set "
                      "bus.allow_inline_credentials in the config)");
    if (op->password != NULL && op->password[0] == '\0')
        return refuse(out, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST, err, errlen,
                      "open: password is empty");
    if (configured == NULL && op->password == NULL && op->password_file == NULL)
        return refuse(out, forbidden, err, errlen,
                      "open: account %s is not in the configuration, and the bus may open only "
                      "accounts whose credentials the configuration provides (add it to "
                      "accounts, or set bus.allow_inline_credentials and send open.password)",
                      bare);
    int rc = configured != NULL ? xpb_account_cfg_copy(out, configured) : 0;
    if (rc == 0 && configured == NULL) {
        out->send_presence = out->stream_management = 1;
        rc = set_opt(&out->jid, bare);
    }
    if (rc == 0 && resource != NULL) rc = set_opt(&out->resource, resource);
    if (rc == 0 && ov != NULL) rc = apply_overrides(op, out);
    if (rc != 0)
        return refuse(out, XPB__V1__ERROR_CODE__ERR_INTERNAL, err, errlen, "out of memory");
    apply_session_flags(op, out, configured == NULL);
    out->line = 0;
    *password = op->password;
    return XPB__V1__ERROR_CODE__OK;
}
