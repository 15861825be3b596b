/* Accounts: the password file, starting an account's session on the loop,
 * its clean close (bounded by XPB_DAEMON_CLOSE_WAIT_MS), reaping closed
 * accounts from the loop (never inside a session callback), and SIGHUP's
 * reload (added, removed, restarted when changed). */
#define _DEFAULT_SOURCE /* explicit_bzero */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon_internal.h"
#include "xpb_error.h"

/* ---- password files --------------------------------------------------------------- */

static int read_password(const char *path, unsigned char **out, size_t *len, char *err,
                         size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "password file %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return XPB_EINVAL;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size > (off_t)XPB_DAEMON_MAX_PASSWORD) {
        snprintf(err, errlen, "password file %s: not a regular file of at most %u bytes", path,
                 XPB_DAEMON_MAX_PASSWORD);
        close(fd);
        return XPB_EINVAL;
    }
    if (sb.st_mode & (S_IRWXG | S_IRWXO))
        xpb_log(XPB_LOG_WARN, "password file %s can be read by group or others (chmod 600 it)",
                path);
    /* Read on the stack, keep only what the password needs (10,000
     * accounts would otherwise keep 40 MB of empty password buffers). */
    unsigned char tmp[XPB_DAEMON_MAX_PASSWORD + 1];
    ssize_t n = read(fd, tmp, sizeof tmp);
    close(fd);
    while (n > 0 && (tmp[n - 1] == '\n' || tmp[n - 1] == '\r')) n--;
    unsigned char *buf = n > 0 && n <= (ssize_t)XPB_DAEMON_MAX_PASSWORD ? malloc((size_t)n + 1) : NULL;
    if (buf) {
        memcpy(buf, tmp, (size_t)n);
        buf[n] = '\0';
    }
    explicit_bzero(tmp, sizeof tmp);
    if (!buf) {
        snprintf(err, errlen, "password file %s: %s", path,
                 n == 0                                           ? "empty"
                 : n > 0 && n <= (ssize_t)XPB_DAEMON_MAX_PASSWORD ? "out of memory"
                                                                  : "cannot be read");
        return XPB_EINVAL;
    }
    *out = buf;
    *len = (size_t)n;
    return 0;
}

void answer_closers(struct account *a, const char *note)
{
    while (a->closers) {
        struct closer *c = a->closers;
        a->closers = c->next;
        Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
        if (note) resp.error_text = (char *)note;
        xpb_bus_reply(c->req, &resp);
        free(c);
    }
}

/* Reaping runs from the loop, never inside a session's own callback. */
void schedule_reap(xpb_daemon *d)
{
    xpb_timer_start(d->reap_timer, 0);
}

/* ---- accounts --------------------------------------------------------------------- */

void account_free(struct account *a)
{
    xpb_daemon *d = a->d;
    if (link_present(a)) cluster_account_gone(d, a->name);
    free(a->pres_status);
    if (a->name) xpb_strmap_del(&d->by_name, a->name, a);
    pending_drop_account(d, a, "the session was closed");
    catchup_account_free(a);
    answer_closers(a, NULL);
    if (link_present(a)) {
        a->dead = 1;
        account_recount(a); /* its last reconnects stay in the totals */
        link_remove(a);
    }
    sends_account_free(a);
    sm_keep_forget(a);
    a->h_find = NULL;
    while (a->h_head) {
        struct handle_ent *e = a->h_head;
        a->h_head = e->next;
        free_handle(e);
    }
    while (a->rooms) {
        struct room *r = a->rooms;
        a->rooms = r->next;
        free(r->room);
        free(r->nick);
        free(r->password);
        free(r->norm);
        free(r);
    }
    xpb_timer_free(a->close_timer);
    if (a->password) explicit_bzero(a->password, a->password_len);
    free(a->password);
    if (a->restart_cfg) {
        xpb_account_cfg_clear(a->restart_cfg);
        free(a->restart_cfg);
    }
    xpb_account_cfg_clear(&a->cfg);
    free(a->full_jid);
    free(a->name);
    free(a);
}

static void session_config(const xpb_daemon *d, const struct account *a, xpb_session_config *sc,
                           char *jid, size_t jidlen)
{
    xpb_session_config_init(sc);
    if (a->cfg.resource) snprintf(jid, jidlen, "%s/%s", a->cfg.jid, a->cfg.resource);
    else snprintf(jid, jidlen, "%s", a->cfg.jid);
    sc->jid = jid;
    sc->password = a->password;
    sc->password_len = a->password_len;
    sc->host = a->cfg.host;
    sc->port = (uint16_t)a->cfg.port;
    sc->transport = (xpb_transport_kind)a->cfg.transport;
    sc->ws_url = a->cfg.ws_url;
    sc->fetch_roster = a->cfg.fetch_roster;
    sc->send_presence = a->cfg.send_presence;
    sc->presence_show = a->cfg.presence_show;
    sc->presence_status = a->cfg.presence_status;
    sc->stream_management = a->cfg.stream_management;
    sc->queue_max = d->queue_max;
    sc->backoff_reset_ms = d->backoff_reset_s * 1000u;
    sc->backoff_max_ms = d->backoff_max_s * 1000u;
    /* ws:// only with allow_plaintext_ws, which config.c grants to loopback only */
    sc->allow_plaintext = a->cfg.transport == XPB_TRANSPORT_WEBSOCKET && a->cfg.allow_plaintext_ws;
    sc->max_stanza_bytes = d->limits.max_stanza_bytes;
}

/* Password: inline (an open request) or from cfg->password_file. */
int account_start(xpb_daemon *d, const xpb_account_cfg *cfg, const char *password,
                         int from_config, char *err, size_t errlen)
{
    if (walk_reserve(d) != 0) return XPB_ENOMEM; /* walk_add below cannot fail */
    struct account *a = calloc(1, sizeof *a);
    if (!a) return XPB_ENOMEM;
    a->d = d;
    a->bucket = -1;
    a->from_config = from_config;
    int rc = xpb_account_cfg_copy(&a->cfg, cfg);
    if (!rc && !(a->name = strdup(cfg->jid))) rc = XPB_ENOMEM;
    if (!rc && password) {
        a->password_len = strlen(password);
        if (!(a->password = malloc(a->password_len + 1))) rc = XPB_ENOMEM;
        else memcpy(a->password, password, a->password_len + 1);
    } else if (!rc) {
        rc = read_password(cfg->password_file, &a->password, &a->password_len, err, errlen);
    }
    struct room *r;
    for (size_t i = 0; !rc && i < cfg->n_rooms; i++)
        rc = room_add(a, cfg->rooms[i].room, cfg->rooms[i].nick, cfg->rooms[i].password,
                      cfg->rooms[i].history_maxstanzas, &r);
    if (rc) {
        if (rc == XPB_ENOMEM) snprintf(err, errlen, "out of memory");
        account_free(a);
        return rc;
    }
    /* Found by name before its session exists: the session's first events
     * (inside xpb_loop_add_session) come before it points at the account. */
    if (xpb_strmap_put(&d->by_name, a->name, a) != 0) {
        snprintf(err, errlen, "out of memory");
        account_free(a);
        return XPB_ENOMEM;
    }
    a->next = d->accounts;
    d->accounts = a;
    xpb_session_config sc;
    xpb_session_sm sm;
    char jid[3 * 1024 + 8];
    session_config(d, a, &sc, jid, sizeof jid);
    if (sends_load_sm(a, &sm) == 0) sc.resume = &sm;
    rc = link_add(a, &sc, err, errlen);
    if (rc) {
        if (!err[0]) snprintf(err, errlen, "%s", xpb_strerror(rc));
        d->accounts = a->next;
        account_free(a);
        return rc;
    }
    walk_add(d, a);
    account_recount(a);
    cluster_account_started(d, a->name);
    xpb_log(XPB_LOG_INFO, "session %s: started (%s)", a->name,
            from_config ? "configured" : "opened by request");
    sends_resend(a);
    return 0;
}

static void on_close_timeout(void *arg)
{
    struct account *a = arg;
    xpb_log(XPB_LOG_WARN, "session %s: not closed within %u ms; dropping it", a->name,
            XPB_DAEMON_CLOSE_WAIT_MS);
    answer_closers(a, "closed without waiting for the server");
    a->dead = 1;
    account_recount(a);
    schedule_reap(a->d);
}

/* Clean close (unavailable presence, </stream:stream>), then removal. */
void account_close(struct account *a)
{
    if (a->dead) return;
    if (!a->removing) {
        a->removing = 1;
        if (xpb_timer_new(a->d->loop, on_close_timeout, a, &a->close_timer) == 0)
            xpb_timer_start(a->close_timer, XPB_DAEMON_CLOSE_WAIT_MS);
    }
    link_close(a);
    if (link_state(a) == XPB_SS_STOPPED && !a->dead) {
        answer_closers(a, NULL);
        a->dead = 1;
        account_recount(a);
        schedule_reap(a->d);
    }
}

void account_recount(struct account *a)
{
    xpb_daemon *d = a->d;
    int bucket = -1;
    if (link_present(a)) {
        xpb_session_stats st;
        link_stats(a, &st);
        d->sum_reconnects += st.reconnects - a->seen_reconnects;
        d->sum_resumptions += st.resumptions - a->seen_resumptions;
        a->seen_reconnects = st.reconnects;
        a->seen_resumptions = st.resumptions;
        if (!a->dead) bucket = daemon_state_bucket(link_state(a));
    }
    if (bucket == a->bucket) return;
    if (a->bucket >= 0) d->n_bucket[a->bucket]--;
    if (bucket >= 0) d->n_bucket[bucket]++;
    a->bucket = bucket;
}

void on_reap(void *arg)
{
    xpb_daemon *d = arg;
    walk_drop_dead(d); /* every dead account is freed below */
    struct account **pp = &d->accounts;
    while (*pp) {
        struct account *a = *pp;
        if (!a->dead) {
            pp = &a->next;
            continue;
        }
        *pp = a->next;
        xpb_account_cfg *restart = a->restart_cfg;
        a->restart_cfg = NULL;
        xpb_log(XPB_LOG_INFO, "session %s: removed", a->name);
        account_free(a);
        if (restart && !d->shutting_down) {
            char err[512] = "";
            if (account_start(d, restart, NULL, 1, err, sizeof err) != 0)
                xpb_log(XPB_LOG_ERROR, "session %s: cannot restart: %s", restart->jid, err);
        }
        if (restart) {
            xpb_account_cfg_clear(restart);
            free(restart);
        }
    }
    if (d->shutting_down && !d->accounts) finish_shutdown(d);
}

static int schedule_restart(struct account *a, const xpb_account_cfg *nc)
{
    xpb_account_cfg *copy = calloc(1, sizeof *copy);
    if (!copy || xpb_account_cfg_copy(copy, nc) != 0) {
        free(copy);
        xpb_log(XPB_LOG_ERROR, "reload: out of memory");
        return -1;
    }
    if (a->restart_cfg) {
        xpb_account_cfg_clear(a->restart_cfg);
        free(a->restart_cfg);
    }
    a->restart_cfg = copy;
    return 0;
}

static void reload_account(xpb_daemon *d, const xpb_account_cfg *nc)
{
    struct account *a = find_account(d, nc->jid);
    char err[512] = "";
    if (!a) {
        xpb_log(XPB_LOG_INFO, "reload: adding account %s", nc->jid);
        if (account_start(d, nc, NULL, 1, err, sizeof err) != 0)
            xpb_log(XPB_LOG_ERROR, "reload: account %s: %s", nc->jid, err);
        return;
    }
    if (a->removing) {
        /* Back in the file while its close is still in progress: start it
         * again once the close is done, instead of losing it. */
        xpb_log(XPB_LOG_INFO, "reload: account %s is closing; starting it again afterwards",
                nc->jid);
        schedule_restart(a, nc);
        return;
    }
    if (!a->from_config) {
        a->from_config = 1; /* opened by request, now configured: keep it as it is */
        return;
    }
    if (xpb_account_cfg_equal(&a->cfg, nc)) return;
    xpb_log(XPB_LOG_INFO, "reload: account %s changed; restarting it", nc->jid);
    if (schedule_restart(a, nc) == 0) account_close(a);
}

void xpb_daemon_reload(xpb_daemon *d, const xpb_config *cfg)
{
    if (d->shutting_down) return;
    xpb_log_set_level(cfg->log_level);
    if (cluster_owns_accounts(d)) {
        xpb_log(XPB_LOG_WARN, "reload: accounts are shared by leases (nats.leases): account "
                              "changes take effect when the bridges restart");
        return;
    }
    unsigned removed = 0;
    for (struct account *a = d->accounts; a; a = a->next) {
        if (!a->from_config || xpb_config_find(cfg, a->name)) continue;
        if (a->removing && a->restart_cfg) { /* a pending restart no longer wanted */
            xpb_account_cfg_clear(a->restart_cfg);
            free(a->restart_cfg);
            a->restart_cfg = NULL;
        } else if (!a->removing) {
            xpb_log(XPB_LOG_INFO, "reload: removing account %s", a->name);
            account_close(a);
            removed++;
        }
    }
    for (size_t i = 0; i < cfg->n_accounts; i++) reload_account(d, &cfg->accounts[i]);
    if (remember_config(d, cfg)) xpb_log(XPB_LOG_ERROR, "reload: out of memory");
    xpb_log(XPB_LOG_INFO, "reload: done (%zu accounts configured, %u removed); bus, metrics and "
                          "limits changes take effect at the next start",
            cfg->n_accounts, removed);
}

