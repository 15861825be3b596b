/* The small HTTP/1.x server under /metrics and /healthz (bridge/app/metrics.c
 * serves them on it). It lives in the loop library because it is libevent
 * (a listener and bufferevents), which only bridge/io/ may use. One GET or HEAD per connection, answered and closed;
 * every resource bounded: concurrent connections (max_connections, further
 * ones closed at once), the time a connection may take (idle_timeout_s), the
 * request head (XPB_HTTPD_MAX_HEAD); accept() errors such as EMFILE pause the
 * listener instead of spinning on it. Each limit has a counter (stats). */
#ifndef XPB_HTTPD_H
#define XPB_HTTPD_H

#include "xpb_loop.h"
#include "xpb_xml.h"
#include <stddef.h>
#include <stdint.h>

#define XPB_HTTPD_MAX_HEAD 8192u       /* request line + headers, bytes */
#define XPB_HTTPD_ACCEPT_PAUSE_MS 250u /* accept() failed (EMFILE...): listener off this long */
#define XPB_HTTPD_LOG_INTERVAL_S 10u   /* at most one accept-error log line this often */
#define XPB_HTTPD_BACKLOG 64

typedef struct xpb_httpd xpb_httpd;

typedef struct xpb_httpd_opts {
    const char *addr; /* numeric address or "localhost" */
    uint16_t port;
    unsigned max_connections; /* > 0 */
    unsigned idle_timeout_s;  /* > 0: request and reply must each be done within it */
} xpb_httpd_opts;

/* What the handler fills for a GET/HEAD of path (query removed). body is
 * initialised empty; the server frees it. reason and ctype are static text. */
typedef struct xpb_httpd_reply {
    int status;
    const char *reason;
    const char *ctype;
    xpb_buf body;
} xpb_httpd_reply;
typedef void (*xpb_httpd_handler)(void *ud, const char *path, xpb_httpd_reply *r);

typedef struct xpb_httpd_stats {
    unsigned open;          /* connections now */
    uint64_t accepted;      /* connections served (within the cap) */
    uint64_t refused;       /* over max_connections: closed at once */
    uint64_t timed_out;     /* closed after idle_timeout_s */
    uint64_t bad_requests;  /* head over XPB_HTTPD_MAX_HEAD, or not HTTP */
    uint64_t accept_errors; /* accept() failures (EMFILE, ENFILE, ...): listener paused */
} xpb_httpd_stats;

/* Binds addr:port. 0, or XPB_E… with err. */
int xpb_httpd_new(xpb_httpd **out, xpb_loop *loop, const xpb_httpd_opts *o,
                  xpb_httpd_handler h, void *ud, char *err, size_t errlen);
void xpb_httpd_free(xpb_httpd *h);
void xpb_httpd_get_stats(const xpb_httpd *h, xpb_httpd_stats *out);

#endif
