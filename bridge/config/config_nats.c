/* The nats group of the configuration file (docs/configuration.md "nats"):
 * servers, TLS and credentials files, the events stream's settings and the
 * account leases. With bus.backend = "nats" a servers list is required. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "config_internal.h"
#include "xpb_error.h"

typedef struct nctx {
    const char *name;
    char *err;
    size_t errlen;
} nctx;

static int fail(nctx *p, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(nctx *p, const config_setting_t *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "%s:%d: nats.%s", p->name,
             s ? (int)config_setting_source_line(s) : 0, msg);
    return XPB_EINVAL;
}

static int str(nctx *p, const config_setting_t *g, const char *key, char **out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    if (!s) return 0;
    if (config_setting_type(s) != CONFIG_TYPE_STRING || !config_setting_get_string(s)[0])
        return fail(p, s, "%s must be a non-empty string (in double quotes)", key);
    return config_set_str(out, config_setting_get_string(s));
}

static int num(nctx *p, const config_setting_t *g, const char *key, long long min, long long max,
               unsigned long long *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    if (!s) return 0;
    int t = config_setting_type(s);
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
        return fail(p, s, "%s must be an integer", key);
    long long v = config_setting_get_int64(s);
    if (v < min || v > max) return fail(p, s, "%s must be %lld..%lld, not %lld", key, min, max, v);
    *out = (unsigned long long)v;
    return 0;
}

static int servers(nctx *p, const config_setting_t *g, xpb_nats_config *n)
{
    const config_setting_t *s = config_setting_get_member(g, "servers");
    if (!s) return 0;
    int len = config_setting_length(s);
    if ((!config_setting_is_array(s) && !config_setting_is_list(s)) || len < 1 || len > 32)
        return fail(p, s, "servers must be a list of 1..32 URLs: [\"nats://127.0.0.1:4222\"]");
    n->servers = calloc((size_t)len, sizeof *n->servers);
    if (!n->servers) return XPB_ENOMEM;
    for (int i = 0; i < len; i++) {
        const char *u = config_setting_get_string_elem(s, i);
        if (!u || (strncmp(u, "nats://", 7) && strncmp(u, "tls://", 6)))
            return fail(p, s, "servers[%d] must be a nats:// or tls:// URL", i);
        if (!(n->servers[i] = strdup(u))) return XPB_ENOMEM;
        n->n_servers++;
    }
    return 0;
}

static int storage(nctx *p, const config_setting_t *g, xpb_nats_config *n)
{
    char *st = NULL;
    int rc = str(p, g, "storage", &st);
    if (!rc && st && strcmp(st, "file") && strcmp(st, "memory"))
        rc = fail(p, config_setting_get_member(g, "storage"),
                  "storage must be \"file\" or \"memory\", not \"%s\"", st);
    if (!rc && st) n->memory_storage = strcmp(st, "memory") == 0;
    free(st);
    return rc;
}

static int flag(nctx *p, const config_setting_t *g, const char *key, int *out)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    if (s && config_setting_type(s) != CONFIG_TYPE_BOOL)
        return fail(p, s, "%s must be true or false", key);
    if (s) *out = config_setting_get_bool(s);
    return 0;
}

static int leases(nctx *p, const config_setting_t *g, xpb_nats_config *n)
{
    int rc = flag(p, g, "leases", &n->leases);
    if (!rc) rc = flag(p, g, "only_listed_servers", &n->only_listed_servers);
    if (!rc) rc = flag(p, g, "local_state", &n->local_state);
    if (rc) return rc;
    unsigned long long ttl = n->lease_ttl_s, ms = n->max_sessions, sh = n->shards;
    rc = num(p, g, "lease_ttl_s", 3, 3600, &ttl);
    if (!rc) rc = num(p, g, "max_sessions", 0, 10000000, &ms);
    if (!rc) rc = num(p, g, "shards", 0, XPB_CONFIG_MAX_SHARDS, &sh);
    n->lease_ttl_s = (unsigned)ttl;
    n->max_sessions = (unsigned)ms;
    n->shards = (unsigned)sh;
    return rc;
}

int config_parse_nats(const config_setting_t *root, xpb_config *c, const char *name, char *err,
                      size_t errlen)
{
    static const char *const keys[] = {
        "servers",  "ca_file", "cert_file", "key_file",  "creds_file",  "nkey_seed_file",
        "nkey",     "bridge_id", "stream",  "replicas",  "storage",     "max_age_s",
        "max_bytes", "leases",  "lease_ttl_s", "max_sessions", "only_listed_servers", "local_state",
        "shards", NULL};
    nctx p = {name, err, errlen};
    const config_setting_t *g = config_setting_get_member(root, "nats");
    xpb_nats_config *n = &c->nats;
    if (g && !config_setting_is_group(g))
        return fail(&p, g, "nats must be a group: nats = { servers = [ ... ]; };");
    for (int i = 0; g && i < config_setting_length(g); i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *const *k = keys;
        while (*k && strcmp(*k, config_setting_name(s))) k++;
        if (!*k) return fail(&p, s, "%s: unknown setting", config_setting_name(s));
    }
    int rc = g ? servers(&p, g, n) : 0;
    char **strs[] = {&n->ca_file,        &n->cert_file,   &n->key_file, &n->creds_file,
                     &n->nkey_seed_file, &n->nkey_public, &n->bridge_id, &n->stream};
    static const char *const skeys[] = {"ca_file",        "cert_file", "key_file",  "creds_file",
                                        "nkey_seed_file", "nkey",      "bridge_id", "stream"};
    for (size_t i = 0; g && !rc && i < sizeof strs / sizeof strs[0]; i++)
        rc = str(&p, g, skeys[i], strs[i]);
    unsigned long long r = 0;
    if (g && !rc) rc = num(&p, g, "replicas", 1, 5, &r);
    n->replicas = (int)r;
    if (g && !rc) rc = storage(&p, g, n);
    if (g && !rc) rc = num(&p, g, "max_age_s", 0, 10ll * 365 * 86400, &n->max_age_s);
    if (g && !rc) rc = num(&p, g, "max_bytes", 0, 1ll << 50, &n->max_bytes);
    if (g && !rc) rc = leases(&p, g, n);
    if (!rc && c->bus_nats && n->n_servers == 0)
        rc = fail(&p, g, "servers: bus.backend = \"nats\" needs nats.servers");
    if (!rc && (n->cert_file != NULL) != (n->key_file != NULL))
        rc = fail(&p, g, "cert_file and key_file go together");
    if (!rc && (n->nkey_seed_file != NULL) != (n->nkey_public != NULL))
        rc = fail(&p, g, "nkey_seed_file needs nkey (the public key) and the other way round");
    if (rc == XPB_ENOMEM) snprintf(err, errlen, "%s: out of memory", name);
    return rc;
}

void config_nats_clear(xpb_nats_config *n)
{
    for (size_t i = 0; i < n->n_servers; i++) free(n->servers[i]);
    free(n->servers);
    char *strs[] = {n->ca_file,        n->cert_file,   n->key_file,  n->creds_file,
                    n->nkey_seed_file, n->nkey_public, n->bridge_id, n->stream};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) free(strs[i]);
    memset(n, 0, sizeof *n);
}
