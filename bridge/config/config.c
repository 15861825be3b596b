/* Reads xpbridge's libconfig file into an xpb_config and compares accounts
 * for SIGHUP (cli.c applies the command line on top). Every error names the file
 * and line of the setting at fault (docs/configuration.md lists them all). */
#include "xpb_config.h"
#include "config_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#include "xpb_error.h"
#include "xpb_jid.h"
#include "xpb_session.h"

typedef struct pctx {
    const char *name;
    char *err;
    size_t errlen;
} pctx;

static int fail_at(pctx *p, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(pctx *p, const config_setting_t *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "%s:%d: %s", p->name, s ? (int)config_setting_source_line(s) : 0,
             msg);
    return XPB_EINVAL;
}

void xpb_config_init(xpb_config *c)
{
    memset(c, 0, sizeof *c);
    c->log_level = XPB_CFG_LOG_INFO;
    c->max_request_bytes = 1024u * 1024u;
    c->batch_max = 64;
    c->dedupe_entries = XPB_CONFIG_DEDUPE_DEFAULT;
    c->batch_flush_us = XPB_CONFIG_DEFAULT_BATCH_FLUSH_US;
    c->metrics_listen = strdup(XPB_CONFIG_DEFAULT_METRICS);
    c->queue_max = XPB_SESSION_DEFAULT_QUEUE_MAX;
    c->max_stanza_bytes = XPB_READER_DEFAULT_MAX_STANZA;
    c->muc_ping_s = XPB_CONFIG_DEFAULT_MUC_PING_S;
    c->metrics_max_connections = XPB_CONFIG_DEFAULT_METRICS_MAX_CONNECTIONS;
    c->metrics_idle_timeout_s = XPB_CONFIG_DEFAULT_METRICS_IDLE_S;
    c->backoff_reset_s = XPB_CONFIG_DEFAULT_BACKOFF_RESET_S;
    c->backoff_max_s = XPB_CONFIG_DEFAULT_BACKOFF_MAX_S;
    c->connect_rate = XPB_CONFIG_DEFAULT_CONNECT_RATE;
    c->loops = XPB_CONFIG_LOOPS_AUTO;
    c->mam_catchup = 1;
    c->mam_page_size = XPB_CONFIG_DEFAULT_MAM_PAGE;
    c->mam_max_pages = XPB_CONFIG_DEFAULT_MAM_MAX_PAGES;
    c->mam_max_messages = XPB_CONFIG_DEFAULT_MAM_MAX_MESSAGES;
    c->mam_timeout_ms = XPB_CONFIG_DEFAULT_MAM_TIMEOUT_MS;
    c->nats.leases = 1;
    c->nats.lease_ttl_s = XPB_CONFIG_DEFAULT_LEASE_TTL_S;
}

static void room_clear(xpb_room_cfg *r)
{
    free(r->room);
    free(r->nick);
    free(r->password);
    memset(r, 0, sizeof *r);
}

void xpb_account_cfg_clear(xpb_account_cfg *a)
{
    free(a->jid);
    free(a->resource);
    free(a->password_file);
    free(a->host);
    free(a->ws_url);
    free(a->ca_file);
    free(a->presence_show);
    free(a->presence_status);
    for (size_t i = 0; i < a->n_rooms; i++) room_clear(&a->rooms[i]);
    free(a->rooms);
    memset(a, 0, sizeof *a);
}

void xpb_config_clear(xpb_config *c)
{
    free(c->log_file);
    free(c->state_dir);
    free(c->events_url);
    free(c->requests_url);
    free(c->private_dir);
    free(c->metrics_listen);
    for (size_t i = 0; i < c->n_iq_passthrough; i++) free(c->iq_passthrough[i]);
    free(c->iq_passthrough);
    for (size_t i = 0; i < c->n_accounts; i++) xpb_account_cfg_clear(&c->accounts[i]);
    free(c->accounts);
    config_nats_clear(&c->nats);
    memset(c, 0, sizeof *c);
}

int xpb_config_log_level(const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) return i;
    if (strcmp(name, "warning") == 0) return XPB_CFG_LOG_WARN;
    return -1;
}

const char *xpb_config_log_level_name(int level)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    return level >= 0 && level < 4 ? names[level] : "info";
}

int xpb_config_transport(const char *name)
{
    if (strcmp(name, "starttls") == 0) return XPB_TRANSPORT_STARTTLS;
    if (strcmp(name, "directtls") == 0 || strcmp(name, "direct_tls") == 0)
        return XPB_TRANSPORT_DIRECT_TLS;
    if (strcmp(name, "websocket") == 0) return XPB_TRANSPORT_WEBSOCKET;
    return -1;
}

/* ---- typed getters: absent is fine, a wrong type is an error -------------- */

int config_set_str(char **dst, const char *v)
{
    char *n = strdup(v);
    if (!n) return XPB_ENOMEM;
    free(*dst);
    *dst = n;
    return 0;
}

static int get_str(pctx *p, const config_setting_t *g, const char *key, char **out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    if (!s) return 0;
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return fail_at(p, s, "%s must be a string (in double quotes)", key);
    return config_set_str(out, config_setting_get_string(s));
}

static int get_uint(pctx *p, const config_setting_t *g, const char *key, long long min,
                    long long max, unsigned long long *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    if (!s) return 0;
    int t = config_setting_type(s);
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
        return fail_at(p, s, "%s must be an integer", key);
    long long v = config_setting_get_int64(s);
    if (v < min || v > max) return fail_at(p, s, "%s must be %lld..%lld, not %lld", key, min, max, v);
    *out = (unsigned long long)v;
    return 0;
}

static int get_int(pctx *p, const config_setting_t *g, const char *key, long long min,
                   long long max, int *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    if (!s) return 0;
    int t = config_setting_type(s);
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
        return fail_at(p, s, "%s must be an integer", key);
    long long v = config_setting_get_int64(s);
    if (v < min || v > max) return fail_at(p, s, "%s must be %lld..%lld, not %lld", key, min, max, v);
    *out = (int)v;
    return 0;
}

static int get_bool(pctx *p, const config_setting_t *g, const char *key, int *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    if (!s) return 0;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return fail_at(p, s, "%s must be true or false", key);
    *out = config_setting_get_bool(s);
    return 0;
}

/* A typo in a setting name must not pass silently. */
static int check_keys(pctx *p, const config_setting_t *g, const char *where,
                      const char *const *allowed)
{
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        int ok = 0;
        for (const char *const *a = allowed; *a && name; a++)
            if (strcmp(*a, name) == 0) ok = 1;
        if (!ok) return fail_at(p, s, "unknown setting '%s' in %s", name ? name : "?", where);
    }
    return 0;
}

/* The group setting key of root (NULL in *out when absent), which must be a
 * group holding only the settings named in keys. */
static int group_of(pctx *p, const config_setting_t *root, const char *key,
                    const char *const *keys, const config_setting_t **out)
{
    *out = config_setting_get_member(root, key);
    if (*out && !config_setting_is_group(*out))
        return fail_at(p, *out, "%s must be a group: %s = { ... };", key, key);
    return *out ? check_keys(p, *out, key, keys) : 0;
}

/* ---- global sections ---------------------------------------------------------- */

static int parse_log(pctx *p, const config_setting_t *root, xpb_config *c)
{
    static const char *const keys[] = {"level", "file", NULL};
    const config_setting_t *g;
    int rc = group_of(p, root, "log", keys, &g);
    if (rc || !g) return rc;
    char *level = NULL;
    rc = get_str(p, g, "level", &level);
    if (!rc && level) {
        int lv = xpb_config_log_level(level);
        if (lv < 0)
            rc = fail_at(p, config_setting_get_member(g, "level"),
                         "log level must be debug, info, warn or error, not \"%s\"", level);
        else
            c->log_level = lv;
    }
    free(level);
    if (!rc) rc = get_str(p, g, "file", &c->log_file);
    if (!rc && c->log_file && !c->log_file[0]) {
        free(c->log_file);
        c->log_file = NULL;
    }
    return rc;
}

static int parse_bus(pctx *p, const config_setting_t *root, xpb_config *c)
{
    static const char *const keys[] = {"events",
                                       "requests",
                                       "private_dir",
                                       "allow_remote",
                                       "max_request_bytes",
                                       "batch_max",
                                       "batch_flush_us",
                                       "dedupe_entries",
                                       "compact_records",
                                       "allow_inline_credentials",
                                       "allow_open_overrides",
                                       "backend",
                                       NULL};
    const config_setting_t *g;
    int rc = group_of(p, root, "bus", keys, &g);
    if (rc || !g) return rc;
    const config_setting_t *be = config_setting_get_member(g, "backend");
    const char *bes = be ? config_setting_get_string(be) : NULL;
    if (be && (!bes || (strcmp(bes, "nng") && strcmp(bes, "nats"))))
        return fail_at(p, be, "bus.backend must be \"nng\" or \"nats\"");
    c->bus_nats = bes && strcmp(bes, "nats") == 0;
    unsigned long long mrb = c->max_request_bytes, bm = c->batch_max, bf = c->batch_flush_us,
                       dd = c->dedupe_entries;
    if (!rc) rc = get_str(p, g, "events", &c->events_url);
    if (!rc) rc = get_str(p, g, "requests", &c->requests_url);
    if (!rc) rc = get_str(p, g, "private_dir", &c->private_dir);
    if (!rc) rc = get_bool(p, g, "allow_remote", &c->allow_remote);
    if (!rc) rc = get_bool(p, g, "compact_records", &c->compact_records);
    if (!rc) rc = get_bool(p, g, "allow_inline_credentials", &c->allow_inline_credentials);
    if (!rc) rc = get_bool(p, g, "allow_open_overrides", &c->allow_open_overrides);
    if (!rc) rc = get_uint(p, g, "max_request_bytes", 1024, 64ll * 1024 * 1024, &mrb);
    if (!rc) rc = get_uint(p, g, "batch_max", 1, 4096, &bm);
    if (!rc) rc = get_uint(p, g, "batch_flush_us", 0, 1000000, &bf);
    if (!rc) rc = get_uint(p, g, "dedupe_entries", 16, XPB_CONFIG_DEDUPE_MAX, &dd);
    c->max_request_bytes = (size_t)mrb;
    c->batch_max = (unsigned)bm;
    c->batch_flush_us = (unsigned)bf;
    c->dedupe_entries = (unsigned)dd;
    return rc;
}

/* "ADDR:PORT" with a numeric port; "[v6]:PORT" too. "0" disables. */
int config_listen_ok(const char *s)
{
    if (strcmp(s, "0") == 0 || s[0] == '\0') return 1;
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1]) return 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    return *end == '\0' && port > 0 && port <= 65535;
}

static int parse_metrics_limits(pctx *p, const config_setting_t *root, xpb_config *c)
{
    static const char *const mkeys[] = {"listen", "allow_remote", "max_connections",
                                        "idle_timeout_s", NULL};
    static const char *const lkeys[] = {"queue_max",
                                        "max_stanza_bytes",
                                        "muc_self_ping_s",
                                        "backoff_reset_s",
                                        "backoff_max_s",
                                        "connect_rate", "loops",
                                        NULL};
    const config_setting_t *g;
    int rc = group_of(p, root, "metrics", mkeys, &g);
    if (!rc && g) {
        unsigned long long mc = c->metrics_max_connections, mi = c->metrics_idle_timeout_s;
        rc = get_str(p, g, "listen", &c->metrics_listen);
        if (!rc && !config_listen_ok(c->metrics_listen))
            rc = fail_at(p, config_setting_get_member(g, "listen"),
                         "metrics listen must be \"ADDR:PORT\" (e.g. \"127.0.0.1:9477\") or \"0\"");
        if (!rc) rc = get_bool(p, g, "allow_remote", &c->metrics_allow_remote);
        if (!rc) rc = get_uint(p, g, "max_connections", 1, 10000, &mc);
        if (!rc) rc = get_uint(p, g, "idle_timeout_s", 1, 3600, &mi);
        c->metrics_max_connections = (unsigned)mc;
        c->metrics_idle_timeout_s = (unsigned)mi;
    }
    if (rc || (rc = group_of(p, root, "limits", lkeys, &g)) || !g) return rc;
    unsigned long long qm = c->queue_max, msb = c->max_stanza_bytes, mp = c->muc_ping_s;
    unsigned long long br = c->backoff_reset_s, bx = c->backoff_max_s, cr = c->connect_rate,
                       lp = c->loops;
    if (!rc) rc = get_uint(p, g, "queue_max", 1, 1000000, &qm);
    if (!rc) rc = get_uint(p, g, "max_stanza_bytes", 10000, 16ll * 1024 * 1024, &msb);
    if (!rc) rc = get_uint(p, g, "muc_self_ping_s", 0, 86400, &mp);
    if (!rc) rc = get_uint(p, g, "backoff_reset_s", 1, 86400, &br);
    if (!rc) rc = get_uint(p, g, "backoff_max_s", 1, 3600, &bx);
    if (!rc) rc = get_uint(p, g, "connect_rate", 0, 1000000, &cr);
    const config_setting_t *ls = config_setting_get_member(g, "loops");
    if (!rc && ls && config_setting_type(ls) == CONFIG_TYPE_STRING) {
        if (strcmp(config_setting_get_string(ls), "auto") != 0)
            rc = fail_at(p, ls, "loops must be \"auto\" or 0..%u", XPB_SHARDS_MAX_WORKERS_CONFIG);
        lp = XPB_CONFIG_LOOPS_AUTO;
    } else if (!rc) {
        rc = get_uint(p, g, "loops", 0, XPB_SHARDS_MAX_WORKERS_CONFIG, &lp);
    }
    c->queue_max = (unsigned)qm;
    c->max_stanza_bytes = (size_t)msb;
    c->muc_ping_s = (unsigned)mp;
    c->backoff_reset_s = (unsigned)br;
    c->backoff_max_s = (unsigned)bx;
    c->connect_rate = (unsigned)cr;
    c->loops = (unsigned)lp;
    return rc;
}

/* ---- accounts -------------------------------------------------------------------- */

/* s = "user@domain[/resource]" -> normalised bare JID + resource. */
int config_account_jid(xpb_account_cfg *a, const char *s, char *why, size_t whylen)
{
    xpb_jid j;
    int rc = xpb_jid_parse(&j, s, strlen(s), why, whylen);
    if (rc != 0) return rc;
    if (!j.local) {
        snprintf(why, whylen, "an account JID needs a localpart (user@domain)");
        xpb_jid_clear(&j);
        return XPB_EJID;
    }
    a->jid = xpb_jid_bare(&j);
    if (j.resource) a->resource = strdup(j.resource);
    rc = (!a->jid || (j.resource && !a->resource)) ? XPB_ENOMEM : 0;
    xpb_jid_clear(&j);
    return rc;
}

/* A room JID: bare, with a localpart (room@service). */
int config_room_jid_ok(const char *s, char *why, size_t whylen)
{
    xpb_jid j;
    int rc = xpb_jid_parse(&j, s, strlen(s), why, whylen);
    if (rc != 0) return rc;
    if (!j.local || j.resource) {
        snprintf(why, whylen, "a room is a bare JID room@service (the nick goes in 'nick')");
        rc = XPB_EJID;
    }
    xpb_jid_clear(&j);
    return rc;
}

static int parse_room(pctx *p, const config_setting_t *s, xpb_room_cfg *r)
{
    static const char *const keys[] = {"room", "nick", "password", "history", NULL};
    if (!config_setting_is_group(s))
        return fail_at(p, s, "each room is a group: { room = \"r@service\"; nick = \"bot\"; }");
    int rc = check_keys(p, s, "a room", keys);
    r->history_maxstanzas = -1;
    if (!rc) rc = get_str(p, s, "room", &r->room);
    if (!rc) rc = get_str(p, s, "nick", &r->nick);
    if (!rc) rc = get_str(p, s, "password", &r->password);
    if (!rc) rc = get_int(p, s, "history", 0, 1000000, &r->history_maxstanzas);
    if (rc) return rc;
    if (!r->room || !r->nick || !r->nick[0])
        return fail_at(p, s, "a room needs room and nick");
    char why[256];
    if (config_room_jid_ok(r->room, why, sizeof why) != 0)
        return fail_at(p, config_setting_get_member(s, "room"), "room \"%s\": %s", r->room, why);
    return 0;
}

/* The length of list setting l (NULL: 0), which must be a list of at most
 * max entries; example shows the syntax in the error. */
static int list_length(pctx *p, const config_setting_t *l, const char *what, unsigned max,
                       const char *example, int *n)
{
    *n = 0;
    if (!l) return 0;
    if (!config_setting_is_list(l) && !config_setting_is_array(l))
        return fail_at(p, l, "%s must be a list: %s", what, example);
    *n = config_setting_length(l);
    if ((unsigned)*n > max) return fail_at(p, l, "more than %u %s", max, what);
    return 0;
}

static int parse_rooms(pctx *p, const config_setting_t *acc, xpb_account_cfg *a)
{
    const config_setting_t *rs = config_setting_get_member(acc, "rooms");
    int n;
    int rc = list_length(p, rs, "rooms", XPB_CONFIG_MAX_ROOMS, "rooms = ( { ... } );", &n);
    if (rc || n == 0) return rc;
    a->rooms = calloc((size_t)n, sizeof *a->rooms);
    if (!a->rooms) return XPB_ENOMEM;
    for (int i = 0; i < n && !rc; i++) {
        a->n_rooms++;
        rc = parse_room(p, config_setting_get_elem(rs, (unsigned)i), &a->rooms[i]);
    }
    return rc;
}

static int parse_presence(pctx *p, const config_setting_t *acc, xpb_account_cfg *a)
{
    static const char *const keys[] = {"show", "status", NULL};
    const config_setting_t *g;
    int rc = group_of(p, acc, "presence", keys, &g);
    if (rc || !g) return rc;
    if (!rc) rc = get_str(p, g, "show", &a->presence_show);
    if (!rc) rc = get_str(p, g, "status", &a->presence_status);
    if (rc || !a->presence_show) return rc;
    static const char *const shows[] = {"", "away", "chat", "dnd", "xa", "online", NULL};
    for (const char *const *s = shows; *s; s++)
        if (strcmp(*s, a->presence_show) == 0) {
            if (!a->presence_show[0] || strcmp(*s, "online") == 0) {
                free(a->presence_show);
                a->presence_show = NULL;
            }
            return 0;
        }
    return fail_at(p, config_setting_get_member(g, "show"),
                   "presence show must be away, chat, dnd, xa or online, not \"%s\"",
                   a->presence_show);
}

/* ws_url without transport implies "websocket"; with another transport it
 * would be ignored, so it is refused. */
static int parse_transport(pctx *p, const config_setting_t *acc, xpb_account_cfg *a)
{
    char *t = NULL;
    int rc = get_str(p, acc, "transport", &t);
    if (!rc && t) {
        a->transport = xpb_config_transport(t);
        if (a->transport < 0)
            rc = fail_at(p, config_setting_get_member(acc, "transport"),
                         "transport must be starttls, directtls or websocket, not \"%s\"", t);
    }
    if (!rc) rc = get_str(p, acc, "ws_url", &a->ws_url);
    if (!rc) rc = get_bool(p, acc, "allow_plaintext_ws", &a->allow_plaintext_ws);
    if (!rc && a->ws_url && !a->ws_url[0]) {
        free(a->ws_url);
        a->ws_url = NULL;
    }
    if (!rc && a->ws_url && !t) a->transport = XPB_TRANSPORT_WEBSOCKET;
    free(t);
    char why[400];
    if (!rc && a->transport == XPB_TRANSPORT_WEBSOCKET && !a->ws_url)
        rc = fail_at(p, acc, "transport \"websocket\" needs ws_url (wss://...)");
    else if (!rc && a->ws_url && a->transport != XPB_TRANSPORT_WEBSOCKET)
        rc = fail_at(p, config_setting_get_member(acc, "ws_url"),
                     "ws_url goes with transport \"websocket\" (or no transport setting)");
    else if (!rc && a->ws_url && xpb_config_check_ws_url(a->ws_url, a->allow_plaintext_ws, why,
                                                         sizeof why) != 0)
        rc = fail_at(p, config_setting_get_member(acc, "ws_url"), "%s", why);
    return rc;
}

static void empty_to_null(char **s)
{
    if (*s && !(*s)[0]) {
        free(*s);
        *s = NULL;
    }
}

static int parse_account(pctx *p, const config_setting_t *s, xpb_account_cfg *a)
{
    static const char *const keys[] = {"jid", "password_file", "host", "port", "transport",
                                       "ws_url", "ca_file", "presence", "send_presence",
                                       "fetch_roster", "stream_management", "rooms",
                                       "allow_plaintext_ws", NULL};
    a->line = (int)config_setting_source_line(s);
    a->send_presence = 1;
    a->stream_management = 1;
    if (!config_setting_is_group(s))
        return fail_at(p, s, "each account is a group: { jid = \"...\"; password_file = \"...\"; }");
    int rc = check_keys(p, s, "an account", keys);
    char *jid = NULL;
    unsigned long long port = 0;
    if (!rc) rc = get_str(p, s, "jid", &jid);
    if (!rc && !jid) rc = fail_at(p, s, "an account needs jid");
    char why[256] = "";
    if (!rc && config_account_jid(a, jid, why, sizeof why) != 0)
        rc = fail_at(p, config_setting_get_member(s, "jid"), "jid \"%s\": %s", jid, why);
    free(jid);
    if (!rc) rc = get_str(p, s, "password_file", &a->password_file);
    if (!rc && (!a->password_file || !a->password_file[0]))
        rc = fail_at(p, s, "account %s needs password_file", a->jid);
    if (!rc) rc = get_str(p, s, "host", &a->host);
    if (!rc) rc = get_uint(p, s, "port", 1, 65535, &port);
    a->port = (unsigned)port;
    if (!rc) rc = parse_transport(p, s, a);
    if (!rc) rc = get_str(p, s, "ca_file", &a->ca_file);
    if (!rc) rc = parse_presence(p, s, a);
    if (!rc) rc = get_bool(p, s, "send_presence", &a->send_presence);
    if (!rc) rc = get_bool(p, s, "fetch_roster", &a->fetch_roster);
    if (!rc) rc = get_bool(p, s, "stream_management", &a->stream_management);
    if (!rc) rc = parse_rooms(p, s, a);
    empty_to_null(&a->host);
    empty_to_null(&a->ca_file);
    return rc;
}

static int parse_accounts(pctx *p, const config_setting_t *root, xpb_config *c)
{
    const config_setting_t *l = config_setting_get_member(root, "accounts");
    int n;
    int lrc = list_length(p, l, "accounts", XPB_CONFIG_MAX_ACCOUNTS,
                          "accounts = ( { ... }, { ... } );", &n);
    if (lrc || n == 0) return lrc;
    c->accounts = calloc((size_t)n, sizeof *c->accounts);
    if (!c->accounts) return XPB_ENOMEM;
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(l, (unsigned)i);
        xpb_account_cfg *a = &c->accounts[i];
        c->n_accounts++;
        int rc = parse_account(p, s, a);
        if (rc) return rc;
        for (int k = 0; k < i; k++)
            if (strcmp(c->accounts[k].jid, a->jid) == 0)
                return fail_at(p, s, "account %s is defined twice (first on line %d)", a->jid,
                               c->accounts[k].line);
    }
    return 0;
}

/* iq { answer_version = false; passthrough = [ "urn:example:ns", ... ]; } */
static int parse_passthrough(pctx *p, const config_setting_t *l, xpb_config *c)
{
    if (!config_setting_is_array(l) && !config_setting_is_list(l))
        return fail_at(p, l, "iq.passthrough must be a list of namespaces: [ \"urn:...\" ]");
    int n = config_setting_length(l);
    if ((unsigned)n > XPB_CONFIG_MAX_IQ_PASSTHROUGH)
        return fail_at(p, l, "iq.passthrough: more than %u namespaces",
                       XPB_CONFIG_MAX_IQ_PASSTHROUGH);
    if (n == 0) return 0;
    if (!(c->iq_passthrough = calloc((size_t)n, sizeof *c->iq_passthrough))) return XPB_ENOMEM;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(l, (unsigned)i);
        const char *v = config_setting_get_string(e);
        if (!v || !v[0])
            return fail_at(p, e, "iq.passthrough: each entry is a namespace string");
        if (!(c->iq_passthrough[i] = strdup(v))) return XPB_ENOMEM;
        c->n_iq_passthrough++;
    }
    return 0;
}

static int parse_iq(pctx *p, const config_setting_t *root, xpb_config *c)
{
    static const char *const keys[] = {"answer_version", "passthrough", NULL};
    const config_setting_t *g;
    int rc = group_of(p, root, "iq", keys, &g);
    if (rc || !g) return rc;
    rc = get_bool(p, g, "answer_version", &c->iq_answer_version);
    const config_setting_t *l = config_setting_get_member(g, "passthrough");
    if (!rc && l) rc = parse_passthrough(p, l, c);
    return rc;
}

/* state = { dir = "/var/lib/xpbridge"; journal_max_bytes = ...; journal_max_age_s = ...;
 *           sync = "sends"; } */
static int parse_state(pctx *p, const config_setting_t *root, xpb_config *c)
{
    static const char *const keys[] = {"dir", "journal_max_bytes", "journal_max_age_s", "sync",
                                       NULL};
    const config_setting_t *g;
    int rc = group_of(p, root, "state", keys, &g);
    if (rc || !g) return rc;
    char *sync = NULL;
    rc = get_str(p, g, "dir", &c->state_dir);
    if (!rc) rc = get_uint(p, g, "journal_max_bytes", 65536, 1ll << 50, &c->journal_max_bytes);
    if (!rc)
        rc = get_uint(p, g, "journal_max_age_s", 60, 10ll * 365 * 24 * 3600,
                      &c->journal_max_age_s);
    if (!rc) rc = get_str(p, g, "sync", &sync);
    if (!rc && sync) {
        /* The values are xpb_store_sync's (bridge/store), in its order. */
        static const char *const modes[] = {"sends", "full", "normal"};
        c->state_sync = -1;
        for (int i = 0; i < 3; i++)
            if (strcmp(sync, modes[i]) == 0) c->state_sync = i;
        if (c->state_sync < 0)
            rc = fail_at(p, config_setting_get_member(g, "sync"),
                         "state.sync must be \"sends\", \"full\" or \"normal\", not \"%s\"",
                         sync);
    }
    free(sync);
    return rc;
}

/* mam = { catchup = true; page_size = 100; max_pages = 50; max_messages = 5000;
 *         timeout_ms = 30000; } */
static int parse_mam(pctx *p, const config_setting_t *root, xpb_config *c)
{
    static const char *const keys[] = {"catchup", "page_size", "max_pages", "max_messages",
                                       "timeout_ms", NULL};
    const config_setting_t *g;
    int rc = group_of(p, root, "mam", keys, &g);
    if (rc || !g) return rc;
    unsigned long long ps = c->mam_page_size, mp = c->mam_max_pages, mm = c->mam_max_messages,
                       to = c->mam_timeout_ms;
    rc = get_bool(p, g, "catchup", &c->mam_catchup);
    if (!rc) rc = get_uint(p, g, "page_size", 1, 1000, &ps);
    if (!rc) rc = get_uint(p, g, "max_pages", 1, 100000, &mp);
    if (!rc) rc = get_uint(p, g, "max_messages", 1, 10000000, &mm);
    if (!rc) rc = get_uint(p, g, "timeout_ms", 1000, XPB_CONFIG_MAX_MAM_TIMEOUT_MS, &to);
    c->mam_page_size = (unsigned)ps;
    c->mam_max_pages = (unsigned)mp;
    c->mam_max_messages = (unsigned)mm;
    c->mam_timeout_ms = (unsigned)to;
    return rc;
}

static int parse_root(pctx *p, const config_setting_t *root, xpb_config *c)
{
    static const char *const keys[] = {"log",   "bus", "metrics",  "limits", "iq",
                                       "state", "mam", "accounts", "nats",   NULL};
    int rc = check_keys(p, root, "the top level", keys);
    if (!rc) rc = parse_log(p, root, c);
    if (!rc) rc = parse_bus(p, root, c);
    if (!rc) rc = parse_metrics_limits(p, root, c);
    if (!rc) rc = parse_iq(p, root, c);
    if (!rc) rc = parse_state(p, root, c);
    if (!rc) rc = parse_mam(p, root, c);
    if (!rc) rc = parse_accounts(p, root, c);
    if (!rc) rc = config_parse_nats(root, c, p->name, p->err, p->errlen);
    return rc;
}

static int parse_config_t(xpb_config *c, config_t *cf, int read_ok, const char *name, char *err,
                          size_t errlen)
{
    pctx p = {name, err, errlen};
    xpb_config_init(c);
    if (!read_ok) {
        const char *f = config_error_file(cf);
        if (config_error_type(cf) == CONFIG_ERR_FILE_IO)
            snprintf(err, errlen, "%s: cannot read the file", f ? f : name);
        else
            snprintf(err, errlen, "%s:%d: %s", f ? f : name, config_error_line(cf),
                     config_error_text(cf));
        xpb_config_clear(c);
        return XPB_EINVAL;
    }
    int rc = parse_root(&p, config_root_setting(cf), c);
    if (rc == XPB_ENOMEM) snprintf(err, errlen, "%s: out of memory", name);
    if (rc) xpb_config_clear(c);
    return rc;
}

int xpb_config_parse_string(xpb_config *c, const char *text, const char *name, char *err,
                            size_t errlen)
{
    config_t cf;
    config_init(&cf);
    int ok = config_read_string(&cf, text) == CONFIG_TRUE;
    int rc = parse_config_t(c, &cf, ok, name, err, errlen);
    config_destroy(&cf);
    return rc;
}

/* A FIFO or a device would block (or never end) the read on the loop thread:
 * only a regular file of a sane size is read. */
static FILE *open_regular(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "%s: cannot read the file: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return NULL;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file (a config file must be one; FIFOs and "
                              "devices are refused)", path);
        close(fd);
        return NULL;
    }
    if ((unsigned long long)sb.st_size > XPB_CONFIG_MAX_FILE_BYTES) {
        snprintf(err, errlen, "%s: %lld bytes exceeds the config file limit (%u)", path,
                 (long long)sb.st_size, XPB_CONFIG_MAX_FILE_BYTES);
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        snprintf(err, errlen, "%s: out of memory", path);
        close(fd);
    }
    return f;
}

int xpb_config_load(xpb_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = open_regular(path, err, errlen);
    if (!f) {
        xpb_config_init(c); /* the caller may clear it, as after a parse error */
        xpb_config_clear(c);
        return XPB_EINVAL;
    }
    config_t cf;
    config_init(&cf);
    int ok = config_read(&cf, f) == CONFIG_TRUE;
    fclose(f);
    int rc = parse_config_t(c, &cf, ok, path, err, errlen);
    config_destroy(&cf);
    return rc;
}

static int str_eq(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

int xpb_account_cfg_equal(const xpb_account_cfg *a, const xpb_account_cfg *b)
{
    if (!str_eq(a->jid, b->jid) || !str_eq(a->resource, b->resource) ||
        !str_eq(a->password_file, b->password_file) || !str_eq(a->host, b->host) ||
        a->port != b->port || a->transport != b->transport || !str_eq(a->ws_url, b->ws_url) ||
        a->allow_plaintext_ws != b->allow_plaintext_ws ||
        !str_eq(a->ca_file, b->ca_file) || !str_eq(a->presence_show, b->presence_show) ||
        !str_eq(a->presence_status, b->presence_status) || a->send_presence != b->send_presence ||
        a->fetch_roster != b->fetch_roster || a->stream_management != b->stream_management ||
        a->n_rooms != b->n_rooms)
        return 0;
    for (size_t i = 0; i < a->n_rooms; i++) {
        const xpb_room_cfg *x = &a->rooms[i], *y = &b->rooms[i];
        if (!str_eq(x->room, y->room) || !str_eq(x->nick, y->nick) ||
            !str_eq(x->password, y->password) || x->history_maxstanzas != y->history_maxstanzas)
            return 0;
    }
    return 1;
}

static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (!src) return 0;
    *dst = strdup(src);
    return *dst ? 0 : XPB_ENOMEM;
}

int xpb_account_cfg_copy(xpb_account_cfg *dst, const xpb_account_cfg *src)
{
    *dst = *src;
    dst->rooms = NULL;
    dst->n_rooms = 0;
    int rc = dup_opt(&dst->jid, src->jid);
    rc |= dup_opt(&dst->resource, src->resource);
    rc |= dup_opt(&dst->password_file, src->password_file);
    rc |= dup_opt(&dst->host, src->host);
    rc |= dup_opt(&dst->ws_url, src->ws_url);
    rc |= dup_opt(&dst->ca_file, src->ca_file);
    rc |= dup_opt(&dst->presence_show, src->presence_show);
    rc |= dup_opt(&dst->presence_status, src->presence_status);
    if (!rc && src->n_rooms) {
        dst->rooms = calloc(src->n_rooms, sizeof *dst->rooms);
        if (!dst->rooms) rc = XPB_ENOMEM;
        for (size_t i = 0; !rc && i < src->n_rooms; i++) {
            xpb_room_cfg *r = &dst->rooms[i];
            dst->n_rooms++;
            r->history_maxstanzas = src->rooms[i].history_maxstanzas;
            rc |= dup_opt(&r->room, src->rooms[i].room);
            rc |= dup_opt(&r->nick, src->rooms[i].nick);
            rc |= dup_opt(&r->password, src->rooms[i].password);
        }
    }
    if (rc) {
        xpb_account_cfg_clear(dst);
        return XPB_ENOMEM;
    }
    return 0;
}

const xpb_account_cfg *xpb_config_find(const xpb_config *c, const char *jid)
{
    for (size_t i = 0; i < c->n_accounts; i++)
        if (strcmp(c->accounts[i].jid, jid) == 0) return &c->accounts[i];
    return NULL;
}

unsigned xpb_config_loops(const xpb_config *c)
{
    if (c->loops != XPB_CONFIG_LOOPS_AUTO) return c->loops;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 2) return 0; /* one core: the hand-offs would only cost */
    return n > (long)XPB_SHARDS_MAX_WORKERS_CONFIG ? XPB_SHARDS_MAX_WORKERS_CONFIG : (unsigned)n;
}
