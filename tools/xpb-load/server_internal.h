/* The test server's internals, shared by server.c (sockets, TLS, the loop)
 * and server_proto.c (the XMPP script, flood and trickle). */
#ifndef XPB_LOAD_SERVER_INTERNAL_H
#define XPB_LOAD_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "load.h"

#define LSRV_MAX_ELEMENT (1024u * 1024u) /* the bridge sends far less per stanza */
#define LSRV_MAX_WORK 64u                /* sessions flooded or trickled at once */
#define LSRV_USER_MAX 64u
#define FILL_HIGH_BYTES (256u * 1024u) /* flood bytes queued ahead of the socket */

typedef enum lstage { ST_HEADER, ST_AUTH, ST_HEADER2, ST_BOUND } lstage;

typedef struct lpool_item {
    const char *xml;
    size_t len, to_off, to_end; /* the 'to' value, replaced by the account's JID */
} lpool_item;

typedef struct lconn {
    int fd;
    SSL *ssl;
    int tls_up, ssl_wants_write, watching_out, bound, closing;
    lstage stage;
    char user[LSRV_USER_MAX];
    char *in, *out;
    size_t in_len, in_cap, pos, out_len, out_off, out_cap;
    lxml x;
    uint64_t h_in;     /* XEP-0198 §4: stanzas received since <enable/> */
    uint64_t received; /* messages */
    /* work: a flood (rate 0) or a trickle */
    uint64_t work_left, work_done, t_start, t_first, t_last;
    double rate;
    int working;
    size_t pool_i;
} lconn;

struct lsrv {
    int lfd, ep, wake, port, sm, started;
    atomic_int stop;
    pthread_t thread;
    pthread_mutex_t mu; /* held by the loop while it works, by commands */
    SSL_CTX *ctx;
    char ca_file[LOAD_PATH_MAX];
    lconn **conns;
    size_t n_conns, max_conns;
    unsigned bound;
    lconn *work[LSRV_MAX_WORK];
    size_t n_work;
    lpool_item *pool;
    size_t n_pool;
    char *pool_text;
};

int lconn_append(lconn *c, const char *p, size_t n);
int lsrv_on_element(lsrv *s, lconn *c, const char *el, size_t len);
int lsrv_pool_make(lsrv *s, uint64_t seed);
void lsrv_pool_free(lsrv *s);
void lsrv_work_fill(lsrv *s, lconn *c);
int lconn_flush(lsrv *s, lconn *c);
void lsrv_work_drop(lsrv *s, lconn *c);
int lsrv_trickling(const lsrv *s); /* some work has a rate (a trickle) */
void lsrv_wake(lsrv *s);

#endif
