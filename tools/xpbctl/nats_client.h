/* xpbctl over NATS (docs/bus.md "NATS JetStream"): a request by
 * request/reply on xpb.req.<account-token> (xpb.ctl.any without an account),
 * events from a JetStream pull consumer on XPB_EVENTS, each message given
 * back as the NNG frame the rest of tail reads ("kind/account/", NUL,
 * EventBatch) and acknowledged once the next is asked for. The only xpbctl
 * file that includes nats.h. */
#ifndef XPBCTL_NATS_CLIENT_H
#define XPBCTL_NATS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

/* servers: "nats://h:p[,nats://h2:p2...]". account NULL: xpb.ctl.any. 0 with
 * *reply malloc'ed, or an exit status (the reason printed). */
int nats_ctl_request(const char *cmd, const char *servers, const char *account,
                     const uint8_t *req, size_t len, long timeout_ms, uint8_t **reply,
                     size_t *rlen);

typedef struct nats_ctl_sub nats_ctl_sub;
/* A pull consumer filtered on subject (xpb.ev.>, or narrower). durable NULL:
 * an ephemeral consumer from new messages on; named: it keeps its place
 * (acks) across runs and is shared by every process using that name. */
int nats_ctl_sub_open(const char *cmd, const char *servers, const char *durable,
                      const char *subject, nats_ctl_sub **out);
/* 0 with the frame, -1 (nothing within poll_ms), or an exit status. */
int nats_ctl_sub_next(nats_ctl_sub *s, long poll_ms, const uint8_t **data, size_t *len);
/* The message last handed out (and the rest of the fetched ones) is not
 * acknowledged: JetStream delivers it again (negative acknowledgement). */
void nats_ctl_sub_redeliver(nats_ctl_sub *s);
/* Acknowledges the message last handed out, then closes. */
void nats_ctl_sub_close(nats_ctl_sub *s);

#endif
