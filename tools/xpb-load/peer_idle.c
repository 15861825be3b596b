/* xpb-load's libstrophe peer with M idle sessions: a child process (this
 * program run again with --peer-idle-child) opens M libstrophe connections on
 * one context, so its RSS before and after is the peer's memory per idle TLS
 * session, measured like the bridge's; it also says how long they took to
 * come online. libstrophe waits with select(): at most PEER_IDLE_MAX. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <strophe.h>

#include "load.h"

#define PEER_IDLE_ONLINE_NS 120000000000ull

typedef struct idle {
    unsigned online, failed;
} idle;

static void on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int err, xmpp_stream_error_t *se,
                    void *ud)
{
    (void)conn, (void)err, (void)se;
    idle *d = ud;
    if (ev == XMPP_CONN_CONNECT)
        d->online++;
    else
        d->failed++;
}

static long self_rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

static int connect_one(xmpp_ctx_t *ctx, int port, const char *ca, unsigned i, idle *d)
{
    char jid[128];
    snprintf(jid, sizeof(jid), "peeridle%u@" LOAD_DOMAIN "/peer", i);
    xmpp_conn_t *c = xmpp_conn_new(ctx);
    if (!c) return -1;
    xmpp_conn_set_jid(c, jid);
    xmpp_conn_set_pass(c, LOAD_PASSWORD);
    xmpp_conn_set_flags(c, XMPP_CONN_FLAG_LEGACY_SSL | XMPP_CONN_FLAG_MANDATORY_TLS);
    xmpp_conn_set_cafile(c, ca);
    return xmpp_connect_client(c, "127.0.0.1", (unsigned short)port, on_conn, d) ? -1 : 0;
}

/* The child: prints "RSS0 RSS1 ONLINE_NS N" and exits (its sessions with it). */
int peer_idle_child(int port, const char *ca, unsigned m)
{
    idle d = {0};
    xmpp_initialize();
    xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, NULL);
    if (!ctx) return 1;
    long rss0 = self_rss_kib();
    uint64_t t0 = load_now_ns();
    for (unsigned i = 0; i < m; i++)
        if (connect_one(ctx, port, ca, i, &d)) d.failed++;
    while (d.online + d.failed < m && load_now_ns() - t0 < PEER_IDLE_ONLINE_NS)
        xmpp_run_once(ctx, 10);
    uint64_t t1 = load_now_ns();
    printf("%ld %ld %llu %u\n", rss0, self_rss_kib(), (unsigned long long)(t1 - t0), d.online);
    fflush(stdout);
    _exit(d.online == m ? 0 : 1); /* the sockets close with the process */
}

static pid_t run_child(const lsrv *srv, unsigned m, int out_fd)
{
    char port[16], count[16];
    snprintf(port, sizeof(port), "%d", lsrv_port(srv));
    snprintf(count, sizeof(count), "%u", m);
    pid_t pid = fork();
    if (pid != 0) return pid;
    dup2(out_fd, 1);
    execl("/proc/self/exe", "xpb-load", "--peer-idle-child", port, lsrv_ca_file(srv), count,
          (char *)NULL);
    _exit(127);
}

int peer_idle(lsrv *srv, unsigned m, double *kib_per_session, double *online_s)
{
    int fds[2];
    if (m == 0 || pipe(fds)) return -1;
    pid_t pid = run_child(srv, m, fds[1]);
    close(fds[1]);
    FILE *f = pid > 0 ? fdopen(fds[0], "r") : NULL;
    long rss0 = -1, rss1 = -1;
    unsigned long long ns = 0;
    unsigned n = 0;
    int ok = f && fscanf(f, "%ld %ld %llu %u", &rss0, &rss1, &ns, &n) == 4 && n == m;
    if (f)
        fclose(f);
    else
        close(fds[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    if (!ok || rss0 < 0 || rss1 < rss0) {
        fprintf(stderr, "xpb-load: libstrophe peer: %u of %u idle sessions online\n", n, m);
        return -1;
    }
    *kib_per_session = (double)(rss1 - rss0) / m;
    *online_s = (double)ns / 1e9;
    return 0;
}
