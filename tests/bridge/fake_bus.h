/* A fake bus for tests/bridge/test_daemon.c, linked in place of
 * bridge/bus/bus.c (a link seam): it implements only the xpb_bus.h functions
 * the daemon calls (xpb_bus_config_init, _new, _free, _flush, _publish,
 * _reply, _reply_error, _request_id, _remember_answer, _remembered_sent,
 * _get_stats, _events_url, _requests_url), keeps every published event and every reply as packed
 * records, and lets the test hand the daemon a request. No NNG. */
#ifndef FAKE_BUS_H
#define FAKE_BUS_H

#include <stddef.h>
#include "xpb_bus.h"

#define FAKE_BUS_MAX_EVENTS 512

/* A request the test sent; the reply is kept unpacked once answered. */
typedef struct fake_req {
    int answered;
    Xpb__V1__Response *resp; /* NULL until answered */
} fake_req;

/* The bus the daemon made (NULL before xpb_bus_new and after xpb_bus_free). */
xpb_bus *fake_bus_get(void);
/* Hands r to the daemon's request handler as request id; the returned
 * request stays valid until fake_bus_reset. */
fake_req *fake_bus_request(const char *id, const Xpb__V1__Request *r);
/* Published events, oldest first: kind ("state", "message" ...) and the
 * record (unpacked). */
size_t fake_bus_n_events(void);
const char *fake_bus_event_kind(size_t i);
const Xpb__V1__Event *fake_bus_event(size_t i);
/* The last "state" event of account, or NULL. */
const Xpb__V1__SessionState *fake_bus_last_state(const char *account);
void fake_bus_clear_events(void);
/* The back end acknowledges every event published so far (acked_seq = last_seq;
 * it stays 0 until this is called, like JetStream before its first ack). */
void fake_bus_ack_all(void);
/* The stanza id of the answer remembered for request id (xpb_bus_remember_answer;
 * "" when it is not a SendResult), or NULL. A request with that id is answered
 * from it, without the handler, as bus.c's cache does. */
const char *fake_bus_remembered(const char *id);
/* Frees every request and event, and forgets remembered answers (after the
 * daemon is freed). */
void fake_bus_reset(void);

/* The fake JetStream KV (xpb_bus_kv.h): operations take effect at once,
 * their results wait for fake_kv_deliver (in order; returns how many). */
size_t fake_kv_deliver(void);
size_t fake_kv_deliver_n(size_t max); /* the oldest max results only */
size_t fake_kv_pending(void);
/* How many live keys of bucket start with key_prefix (*len: one's value size). */
int fake_kv_get(const char *bucket, const char *key_prefix, size_t *len);
/* The live value of key (*len bytes), or NULL. */
const uint8_t *fake_kv_value(const char *bucket, const char *key, size_t *len);
void fake_kv_set_clock(int64_t ms); /* what xpb_kv_now_ms returns */
void fake_kv_wipe(void);            /* empties the store and the results */
void fake_kv_freeze(int on);        /* on: every operation is refused (a dead process) */
/* The next n puts to bucket are queued but answered UNREACHABLE, nothing stored. */
void fake_kv_fail_puts(const char *bucket, int n);
void fake_kv_drop_bucket(const char *bucket); /* its keys lapse (a ttl ran out) */

#endif
