/* The event loop that owns every XMPP session: one libevent event_base, the
 * transports (TCP, STARTTLS, direct TLS, WebSocket), SRV resolution and the
 * timers of each session, implemented as the xpb_session_ops the pure state
 * machine in xpb_session.h calls. Single-threaded: call it from the loop thread. */
#ifndef XPB_LOOP_H
#define XPB_LOOP_H

#include "xpb_log.h" /* the levels */
#include "xpb_session.h"

struct event_base;

typedef struct xpb_loop xpb_loop;
typedef struct xpb_loop_session xpb_loop_session;

/* Every session event, forwarded as it is (pointers valid during the call).
 * The callback may call xpb_session_send/close, not xpb_loop_remove_session
 * on this session. */
typedef void (*xpb_loop_event_cb)(void *ud, xpb_loop_session *ls, const xpb_session_event *ev);

/* Log lines never contain credentials. */
typedef void (*xpb_loop_log_cb)(void *ud, int level, const char *session, const char *msg);

typedef struct xpb_loop_config {
    struct event_base *base;  /* NULL: the loop makes and owns one */
    xpb_loop_event_cb on_event;
    xpb_loop_log_cb on_log;   /* NULL: no logs */
    void *ud;
    const char *ca_file;      /* default CA file for sessions that give none; NULL = system */
    /* Nameservers for SRV (RFC 6120 §3.2.1, XEP-0368) and address lookups,
     * instead of those in /etc/resolv.conf: "ip[:port],..." as c-ares'
     * ares_set_servers_ports_csv takes it, e.g. "127.0.0.1:5353" or
     * "[::1]:53,192.0.2.1". NULL = the system's. Copied; a malformed list
     * makes xpb_loop_new fail with XPB_EINVAL. The integration tests point
     * it at a dnsmasq holding the test's SRV records. */
    const char *dns_servers;
    /* libevent locking (evthread_use_pthreads, process-wide) before the base
     * is made: needed when a library adds or removes the loop's events from
     * its own threads (the NATS client's reconnect thread, xpb_loop_nats.h). */
    int thread_safe;
    /* New connections (each a TCP connect and TLS handshake) started per
     * second, over every session; the others wait in order. 0: no limit.
     * At most connect_rate x XPB_LOOP_CONNECT_INFLIGHT_S negotiations are
     * under way at once (connected, not yet online), so a server that falls
     * behind does not make the newest ones time out. */
    unsigned connect_rate;
} xpb_loop_config;


/* The program must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)) before running
 * the loop: a write to a connection the peer closed is then an error the
 * session handles as a broken link, instead of killing the process. */
int xpb_loop_new(xpb_loop **out, const xpb_loop_config *cfg);
/* Sessions coming online (bring-up, reconnects) free what their negotiation
 * took; once none has come online for this long, free heap pages are given
 * back to the system (glibc malloc_trim). */
#define XPB_LOOP_TRIM_QUIET_MS 250u
/* A session whose link read nothing for between one and two of these is
 * told it is idle (xpb_session_idle: it parks its XML parser). */
#define XPB_LOOP_PARK_MS 1000u
/* Sessions parked in one sweep that make it worth giving pages back. */
#define XPB_LOOP_PARK_TRIM_MIN 256u
#define XPB_LOOP_CONNECT_INFLIGHT_S 2u
/* Frees every session (no clean shutdown: close them first). */
void xpb_loop_free(xpb_loop *l);
struct event_base *xpb_loop_base(xpb_loop *l);
/* 1 when made with xpb_loop_config.thread_safe. */
int xpb_loop_thread_safe(const xpb_loop *l);
/* Replaces on_event, on_log and ud of the configuration (the daemon takes
 * over a loop main.c made); NULL callbacks: none. */
void xpb_loop_set_handlers(xpb_loop *l, xpb_loop_event_cb on_event, xpb_loop_log_cb on_log,
                           void *ud);
/* Runs until xpb_loop_stop or until nothing is left to do. 0 or XPB_EINVAL. */
int xpb_loop_run(xpb_loop *l);
void xpb_loop_stop(xpb_loop *l);

/* Creates the session (cfg is copied by xpb_session_new) and starts it.
 * name identifies it in logs and lookups and must be unique (XPB_EINVAL
 * otherwise). ca_file NULL = the loop's default. On a TLS setup failure
 * (unreadable CA file) err gets the reason. */
int xpb_loop_add_session(xpb_loop *l, const char *name, const xpb_session_config *cfg,
                         const char *ca_file, xpb_loop_session **out, char *err, size_t errlen);
/* Drops the transport and frees the session at once (close it first for a
 * clean shutdown). Not from inside this session's event callback. */
void xpb_loop_remove_session(xpb_loop *l, xpb_loop_session *ls);
xpb_loop_session *xpb_loop_find(xpb_loop *l, const char *name); /* O(1) */
/* A pointer of the owner's, kept with the session (NULL until set): the
 * event callback finds its own object from the session without a lookup. */
void xpb_loop_session_set_ud(xpb_loop_session *ls, void *ud);
void *xpb_loop_session_ud(const xpb_loop_session *ls);
/* Iteration: first, then next until NULL. */
xpb_loop_session *xpb_loop_first(xpb_loop *l);
xpb_loop_session *xpb_loop_next(xpb_loop_session *ls);
xpb_session *xpb_loop_session_get(xpb_loop_session *ls);
const char *xpb_loop_session_name(const xpb_loop_session *ls);

/* Test hooks (tests/integration/xpb_session_driver.c). cut: shutdown(2) the
 * socket and drop the transport; the session learns of it like of any broken
 * link. freeze: stop reading and writing, keep the socket open (a dead link
 * the ping timeout has to find). XPB_ENOTCONN when there is no transport. */
int xpb_loop_session_cut(xpb_loop_session *ls);
int xpb_loop_session_freeze(xpb_loop_session *ls);

/* Writes "libevent X, OpenSSL X, c-ares X" as the running libraries report
 * them; returns the length the whole text needs, like snprintf. */
size_t xpb_loop_versions(char *buf, size_t len);

/* ---- primitives for the modules above the loop ----------------------------------
 * Each object belongs to one loop and is used from that loop's thread, except
 * xpb_wake_signal, which any thread may call. Callbacks run on the loop thread. */

/* One-shot timer: start (re)arms it to fire once after ms; stop disarms. */
typedef struct xpb_timer xpb_timer;
typedef void (*xpb_timer_cb)(void *ud);
int xpb_timer_new(xpb_loop *l, xpb_timer_cb cb, void *ud, xpb_timer **out);
void xpb_timer_start(xpb_timer *t, unsigned ms);
void xpb_timer_stop(xpb_timer *t);
int xpb_timer_pending(const xpb_timer *t);
void xpb_timer_free(xpb_timer *t); /* NULL is fine */

/* Calls cb whenever fd is readable, until freed. The fd stays the caller's. */
typedef struct xpb_watch xpb_watch;
typedef void (*xpb_watch_cb)(void *ud, int fd);
int xpb_watch_new(xpb_loop *l, int fd, xpb_watch_cb cb, void *ud, xpb_watch **out);
void xpb_watch_free(xpb_watch *w);

/* A wake-up another thread can signal: cb runs once on the loop thread after
 * one or more xpb_wake_signal calls (signals coalesce). */
typedef struct xpb_wake xpb_wake;
typedef void (*xpb_wake_cb)(void *ud);
int xpb_wake_new(xpb_loop *l, xpb_wake_cb cb, void *ud, xpb_wake **out);
void xpb_wake_signal(xpb_wake *w);
void xpb_wake_free(xpb_wake *w);

/* A mailbox: work any thread hands to the loop. run(arg) is called on the
 * loop's thread, in the order of the posts (one thread's posts keep their
 * order; posts of several threads are ordered as they took the mailbox),
 * all that is pending in one round; what a run posts goes to the next round.
 * XPB_EQUEUEFULL past XPB_MAILBOX_MAX pending: the poster keeps arg. Freed
 * with items pending, each gets drop(arg) (NULL: nothing) instead, on the
 * freeing thread. Free it on the loop's thread, or once the loop is done. */
#define XPB_MAILBOX_MAX 65536u
typedef struct xpb_mailbox xpb_mailbox;
typedef void (*xpb_mail_fn)(void *arg);
int xpb_mailbox_new(xpb_loop *l, xpb_mailbox **out);
int xpb_mailbox_post(xpb_mailbox *m, xpb_mail_fn run, xpb_mail_fn drop, void *arg);
/* The same for work that must get there: a full mailbox is waited out (1 ms
 * at a time, on the poster's thread). */
int xpb_mailbox_post_wait(xpb_mailbox *m, xpb_mail_fn run, xpb_mail_fn drop, void *arg);
size_t xpb_mailbox_queued(xpb_mailbox *m); /* pending now (any thread) */
void xpb_mailbox_free(xpb_mailbox *m);

/* A loop on a thread of its own (several loops: the worker loops). Start
 * runs xpb_loop_run(l) on a new thread, with a mailbox on l that other
 * threads post to (xpb_loop_thread_mailbox; the mailbox also keeps the loop
 * alive while it has nothing else). Stop posts the loop's stop after what
 * was posted before, joins the thread, frees the mailbox (what was posted
 * after is dropped) and returns xpb_loop_run's result; the loop is then the
 * caller's again, to free. */
typedef struct xpb_loop_thread xpb_loop_thread;
int xpb_loop_thread_start(xpb_loop *l, xpb_loop_thread **out);
xpb_mailbox *xpb_loop_thread_mailbox(xpb_loop_thread *t);
int xpb_loop_thread_stop(xpb_loop_thread *t);

/* A POSIX signal delivered as a loop callback (SIGTERM, SIGHUP ...). */
typedef struct xpb_signal xpb_signal;
typedef void (*xpb_signal_cb)(void *ud, int signo);
int xpb_signal_new(xpb_loop *l, int signo, xpb_signal_cb cb, void *ud, xpb_signal **out);
void xpb_signal_free(xpb_signal *s);

/* libevent's own messages go through xpb_log (never its default stderr
 * output), at most XPB_LOOP_LIBEVENT_LOG_BURST per XPB_LOOP_LIBEVENT_LOG_WINDOW_S;
 * the rest are counted. Process-wide; call before creating a loop. */
#define XPB_LOOP_LIBEVENT_LOG_BURST 5u
#define XPB_LOOP_LIBEVENT_LOG_WINDOW_S 10u
void xpb_loop_route_libevent_log(void);
void xpb_loop_libevent_log_counts(uint64_t *seen, uint64_t *suppressed);

#endif
