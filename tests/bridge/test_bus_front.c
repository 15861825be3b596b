/* Tests for the bus front (bridge/bus/bus.c) through a fake back end made
 * with the ops table (xpb_bus_backend.h), no NNG: seqs, batching by topic,
 * flush and the flush timer, publish failures, a request delivered and
 * answered once, resends (answered and in flight), malformed requests, the
 * in-flight limit, and shutdown answering every request it holds. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <stdlib.h>
#include <string.h>

#include "xpb_bus.h"
#include "xpb_bus_backend.h"
#include "xpb_error.h"
#include "xpb_loop.h"

#define MAXB 32
#define MAXR 32

/* A token is just a number the fake back end gave a request. */
struct xpb_bus_token {
    int n;
};

typedef struct sent_batch {
    uint8_t *frame;
    size_t len, topic_len;
    uint64_t first_seq, last_seq;
    unsigned count;
} sent_batch;

typedef struct sent_reply {
    int tok;
    uint8_t *bytes;
    size_t len;
} sent_reply;

typedef struct fake {
    xpb_bus_host host;
    int opened, drained, closed, fail_publish;
    unsigned flush_dones;
    sent_batch b[MAXB];
    unsigned nb;
    sent_reply r[MAXR];
    unsigned nr;
    struct xpb_bus_token toks[MAXR];
    const uint8_t *on_drain; /* a request that arrives just before shutdown */
    size_t on_drain_len;
} fake;

static int fake_open(void **be, xpb_loop *loop, const xpb_bus_config *cfg, const xpb_bus_host *host,
                     char *err, size_t errlen)
{
    (void)loop, (void)err, (void)errlen;
    fake *f = (fake *)cfg->backend_cfg;
    f->host = *host;
    f->opened++;
    *be = f;
    return 0;
}

static int fake_publish(void *be, const xpb_bus_batch *bt)
{
    fake *f = be;
    if (f->fail_publish) return XPB_ENOMEM;
    assert_true(f->nb < MAXB);
    sent_batch *s = &f->b[f->nb++];
    s->frame = malloc(bt->frame_len);
    memcpy(s->frame, bt->frame, bt->frame_len);
    s->len = bt->frame_len;
    s->topic_len = bt->topic_len;
    s->first_seq = bt->first_seq;
    s->last_seq = bt->last_seq;
    s->count = bt->count;
    f->host.published(f->host.front, bt->last_seq);
    return 0;
}

static void fake_flush_done(void *be)
{
    ((fake *)be)->flush_dones++;
}

static int fake_reply(void *be, xpb_bus_token *tok, const uint8_t *data, size_t len)
{
    fake *f = be;
    assert_true(f->nr < MAXR);
    sent_reply *r = &f->r[f->nr++];
    r->tok = tok->n;
    r->bytes = malloc(len > 0 ? len : 1);
    memcpy(r->bytes, data, len);
    r->len = len;
    return 0;
}

static void fake_drain(void *be)
{
    fake *f = be;
    assert_int_equal(f->closed, 0);
    f->drained++;
    if (f->on_drain != NULL) {
        f->toks[MAXR - 1].n = 99;
        f->host.request(f->host.front, &f->toks[MAXR - 1], f->on_drain, f->on_drain_len);
    }
}

static void fake_close(void *be)
{
    fake *f = be;
    assert_int_equal(f->drained, 1); /* drain always comes first */
    f->closed++;
}

static void fake_stats(void *be, xpb_bus_backend_stats *out)
{
    (void)be;
    out->reply_errors = 7; /* the front reports the back end's figure */
}

static const xpb_bus_backend_ops fake_ops = {
    .name = "fake",
    .open = fake_open,
    .publish = fake_publish,
    .flush_done = fake_flush_done,
    .reply = fake_reply,
    .drain = fake_drain,
    .close = fake_close,
    .stats = fake_stats,
    .endpoint = NULL,
};

/* The daemon's side: remembers the requests it is given, answers none. */
typedef struct held {
    xpb_bus_request *req[MAXR];
    int n;
} held;

static void handler(void *ud, xpb_bus_request *req, const Xpb__V1__Request *r)
{
    held *h = ud;
    assert_non_null(r->request_id);
    assert_string_equal(xpb_bus_request_id(req), r->request_id);
    h->req[h->n++] = req;
}

typedef struct fx {
    xpb_loop *loop;
    fake fk;
    held h;
    xpb_bus *bus;
} fx;

static void make_bus(fx *f, xpb_bus_config *cfg)
{
    cfg->backend = &fake_ops;
    cfg->backend_cfg = &f->fk;
    char err[128];
    assert_int_equal(xpb_bus_new(&f->bus, f->loop, cfg, handler, &f->h, err, sizeof err), 0);
    assert_int_equal(f->fk.opened, 1);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    xpb_loop_config lc = {0};
    assert_int_equal(xpb_loop_new(&f->loop, &lc), 0);
    for (int i = 0; i < MAXR; i++)
        f->fk.toks[i].n = i;
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    make_bus(f, &cfg);
    *state = f;
    return 0;
}

static void fake_clear(fake *k)
{
    for (unsigned i = 0; i < k->nb; i++)
        free(k->b[i].frame);
    for (unsigned i = 0; i < k->nr; i++)
        free(k->r[i].bytes);
    k->nb = k->nr = 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    xpb_bus_free(f->bus);
    fake_clear(&f->fk);
    xpb_loop_free(f->loop);
    free(f);
    return 0;
}

/* ---- events ---- */

static int publish(fx *f, const char *kind, const char *account)
{
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    return xpb_bus_publish(f->bus, kind, account, &ev);
}

static Xpb__V1__EventBatch *batch_of(const sent_batch *s, const char *topic)
{
    assert_int_equal(s->topic_len, strlen(topic));
    assert_memory_equal(s->frame, topic, s->topic_len + 1); /* with its NUL */
    Xpb__V1__EventBatch *eb =
        xpb__v1__event_batch__unpack(NULL, s->len - s->topic_len - 1, s->frame + s->topic_len + 1);
    assert_non_null(eb);
    assert_int_equal(eb->n_event, s->count);
    return eb;
}

static void test_batches_by_topic_in_seq_order(void **state)
{
    fx *f = *state;
    assert_int_equal(publish(f, "message", "alice@example.org"), 0);
    assert_int_equal(publish(f, "presence", "bob@example.org"), 0);
    assert_int_equal(publish(f, "message", "alice@example.org"), 0);
    assert_int_equal(f->fk.nb, 0); /* batched until a flush */
    xpb_bus_flush(f->bus);
    assert_int_equal(f->fk.nb, 2);
    assert_int_equal(f->fk.flush_dones, 1);
    Xpb__V1__EventBatch *a = batch_of(&f->fk.b[0], "message/alice@example.org/");
    assert_int_equal(a->n_event, 2);
    assert_int_equal(a->event[0]->seq, 1);
    assert_int_equal(a->event[1]->seq, 3);
    assert_string_equal(a->event[0]->account, "alice@example.org");
    assert_int_equal(a->prev_seq, 0);
    xpb__v1__event_batch__free_unpacked(a, NULL);
    Xpb__V1__EventBatch *p = batch_of(&f->fk.b[1], "presence/bob@example.org/");
    assert_int_equal(p->event[0]->seq, 2);
    xpb__v1__event_batch__free_unpacked(p, NULL);
    assert_int_equal(f->fk.b[0].first_seq, 1);
    assert_int_equal(f->fk.b[0].last_seq, 3);

    /* The topic's next batch points at its last event. */
    assert_int_equal(publish(f, "message", "alice@example.org"), 0);
    xpb_bus_flush(f->bus);
    Xpb__V1__EventBatch *n = batch_of(&f->fk.b[2], "message/alice@example.org/");
    assert_int_equal(n->prev_seq, 3);
    assert_int_equal(n->event[0]->seq, 4);
    xpb__v1__event_batch__free_unpacked(n, NULL);

    xpb_bus_stats st;
    xpb_bus_get_stats(f->bus, &st);
    assert_int_equal(st.events, 4);
    assert_int_equal(st.batches, 3);
    assert_int_equal(st.last_seq, 4);
    assert_int_equal(st.acked_seq, 4);
    assert_int_equal(st.reply_errors, 7);
    /* A flush with nothing open is not a group for the back end. */
    xpb_bus_flush(f->bus);
    assert_int_equal(f->fk.flush_dones, 2);
}

/* The stanza inside a published event is sized once, with the event; its
 * size is what protobuf-c gives for the stanza alone (the daemon's counter). */
static void test_last_stanza_bytes(void **state)
{
    fx *f = *state;
    Xpb__V1__Text t = XPB__V1__TEXT__INIT;
    t.text = "hello there";
    Xpb__V1__Text *tp = &t;
    Xpb__V1__Stanza st = XPB__V1__STANZA__INIT;
    st.has_kind = 1;
    st.kind = XPB__V1__KIND__KIND_MESSAGE;
    st.to = "bob@example.org";
    st.n_body = 1;
    st.body = &tp;
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.body_case = XPB__V1__EVENT__BODY_STANZA;
    ev.stanza = &st;
    assert_int_equal(xpb_bus_publish(f->bus, "message", "alice@example.org", &ev), 0);
    assert_int_equal(xpb_bus_last_stanza_bytes(f->bus), xpb__v1__stanza__get_packed_size(&st));
    /* body is a oneof: a state event's pointer is not a stanza */
    Xpb__V1__SessionState ss = XPB__V1__SESSION_STATE__INIT;
    ss.reason = "a reason long enough to be seen";
    Xpb__V1__Event sev = XPB__V1__EVENT__INIT;
    sev.body_case = XPB__V1__EVENT__BODY_STATE;
    sev.state = &ss;
    assert_int_equal(xpb_bus_publish(f->bus, "state", "alice@example.org", &sev), 0);
    assert_int_equal(xpb_bus_last_stanza_bytes(f->bus), 0);
    assert_int_not_equal(publish(f, "nonsense", "alice@example.org"), 0);
    assert_int_equal(xpb_bus_last_stanza_bytes(f->bus), 0);
}

static void test_publish_refuses_bad_topic(void **state)
{
    fx *f = *state;
    assert_int_equal(publish(f, "mesage", "alice@example.org"), XPB_EINVAL);
    assert_int_equal(publish(f, "message", "alice@example.org/res"), XPB_EINVAL);
    assert_int_equal(publish(f, "message", ""), XPB_EINVAL);
    xpb_bus_flush(f->bus);
    assert_int_equal(f->fk.nb, 0);
}

static void test_full_batch_goes_at_once(void **state)
{
    fx *f = *state;
    xpb_bus_free(f->bus);
    f->fk.opened = f->fk.drained = f->fk.closed = 0;
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    cfg.batch_max = 2;
    make_bus(f, &cfg);
    assert_int_equal(publish(f, "iq", "alice@example.org"), 0);
    assert_int_equal(f->fk.nb, 0);
    assert_int_equal(publish(f, "iq", "alice@example.org"), 0);
    assert_int_equal(f->fk.nb, 1);
    assert_int_equal(f->fk.b[0].count, 2);
}

static void stop_loop(void *ud)
{
    xpb_loop_stop(ud);
}

static void test_flush_timer_sends_partial_batch(void **state)
{
    fx *f = *state;
    assert_int_equal(publish(f, "state", "alice@example.org"), 0);
    xpb_timer *stop = NULL;
    assert_int_equal(xpb_timer_new(f->loop, stop_loop, f->loop, &stop), 0);
    xpb_timer_start(stop, 200); /* the bus flushes after XPB_BUS_DEFAULT_BATCH_FLUSH_US */
    xpb_loop_run(f->loop);
    xpb_timer_free(stop);
    assert_int_equal(f->fk.nb, 1);
    assert_int_equal(f->fk.b[0].first_seq, 1);
}

/* Runs the loop until a timer at ms stops it; returns the batches sent. */
static unsigned batches_after_loop(fx *f, unsigned ms)
{
    xpb_timer *stop = NULL;
    assert_int_equal(xpb_timer_new(f->loop, stop_loop, f->loop, &stop), 0);
    xpb_timer_start(stop, ms);
    xpb_loop_run(f->loop);
    xpb_timer_free(stop);
    return f->fk.nb;
}

/* A bus on the same fake back end with batch_flush_us us. */
static void remake_bus(fx *f, unsigned us)
{
    xpb_bus_free(f->bus); /* sends a held batch while closing */
    f->bus = NULL;
    f->fk.opened = f->fk.drained = f->fk.closed = 0; /* the same fake serves the next bus */
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    cfg.batch_flush_us = us;
    make_bus(f, &cfg);
}

/* batch_flush_us 0 is "no wait": the partial batch goes out
 * on the loop's next turn, before a timer due 1 ms later; with 2000 us it is
 * still held at that point. Timers fire in deadline order, so this does not
 * depend on how fast the machine is. */
static void test_flush_us_zero_flushes_on_the_next_turn(void **state)
{
    fx *f = *state;
    remake_bus(f, 2000);
    unsigned before = f->fk.nb;
    assert_int_equal(publish(f, "state", "alice@example.org"), 0);
    assert_int_equal(batches_after_loop(f, 1), before);
    remake_bus(f, 0);
    before = f->fk.nb;
    assert_int_equal(publish(f, "state", "alice@example.org"), 0);
    assert_int_equal(batches_after_loop(f, 1), before + 1);
}

static void test_publish_failure_counts_dropped_events(void **state)
{
    fx *f = *state;
    f->fk.fail_publish = 1;
    assert_int_equal(publish(f, "message", "alice@example.org"), 0);
    assert_int_equal(publish(f, "message", "alice@example.org"), 0);
    xpb_bus_flush(f->bus);
    xpb_bus_stats st;
    xpb_bus_get_stats(f->bus, &st);
    assert_int_equal(st.publish_errors, 1);
    assert_int_equal(st.events_dropped, 2);
    assert_int_equal(st.acked_seq, 0);
    f->fk.fail_publish = 0;
    assert_int_equal(publish(f, "message", "alice@example.org"), 0);
    xpb_bus_flush(f->bus);
    Xpb__V1__EventBatch *eb = batch_of(&f->fk.b[0], "message/alice@example.org/");
    assert_int_equal(eb->prev_seq, 2); /* subscribers see the two lost events */
    xpb__v1__event_batch__free_unpacked(eb, NULL);
}

/* ---- requests ---- */

typedef struct wire {
    uint8_t *p;
    size_t len;
} wire;

/* A status (control) or roster (ordinary) request; api 0 leaves it out. */
static wire request(const char *id, int control, unsigned api)
{
    Xpb__V1__Request r = XPB__V1__REQUEST__INIT;
    Xpb__V1__GetStatus gs = XPB__V1__GET_STATUS__INIT;
    Xpb__V1__GetRoster gr = XPB__V1__GET_ROSTER__INIT;
    r.has_api_version = api != 0;
    r.api_version = api;
    r.request_id = (char *)id;
    if (control) {
        r.op_case = XPB__V1__REQUEST__OP_STATUS;
        r.status = &gs;
    } else {
        r.op_case = XPB__V1__REQUEST__OP_ROSTER;
        r.roster = &gr;
        r.account = "alice@example.org";
    }
    wire w;
    w.len = xpb__v1__request__get_packed_size(&r);
    w.p = malloc(w.len);
    xpb__v1__request__pack(&r, w.p);
    return w;
}

static void deliver(fx *f, int tok, wire w)
{
    f->fk.host.request(f->fk.host.front, &f->fk.toks[tok], w.p, w.len);
}

static Xpb__V1__Response *reply_of(const sent_reply *r)
{
    Xpb__V1__Response *resp = xpb__v1__response__unpack(NULL, r->len, r->bytes);
    assert_non_null(resp);
    return resp;
}

static void expect_reply(fx *f, unsigned i, int tok, const char *id, Xpb__V1__ErrorCode code)
{
    assert_true(i < f->fk.nr);
    assert_int_equal(f->fk.r[i].tok, tok);
    Xpb__V1__Response *resp = reply_of(&f->fk.r[i]);
    assert_int_equal(resp->api_version, XPB_BUS_API_VERSION);
    if (id != NULL)
        assert_string_equal(resp->request_id, id);
    else
        assert_null(resp->request_id);
    assert_int_equal(resp->code, code);
    xpb__v1__response__free_unpacked(resp, NULL);
}

static void test_request_answered_once(void **state)
{
    fx *f = *state;
    wire w = request("r1", 1, 1);
    deliver(f, 1, w);
    assert_int_equal(f->h.n, 1);
    assert_int_equal(f->fk.nr, 0); /* the handler holds it */
    Xpb__V1__Response resp = XPB__V1__RESPONSE__INIT;
    assert_int_equal(xpb_bus_reply(f->h.req[0], &resp), 0);
    assert_int_equal(f->fk.nr, 1);
    expect_reply(f, 0, 1, "r1", XPB__V1__ERROR_CODE__OK);
    assert_int_equal(xpb_bus_reply(f->h.req[0], &resp), XPB_EINVAL);
    assert_int_equal(f->fk.nr, 1);

    /* A resend of an answered id gets the same bytes, not the handler. */
    deliver(f, 2, w);
    assert_int_equal(f->h.n, 1);
    assert_int_equal(f->fk.nr, 2);
    assert_int_equal(f->fk.r[1].tok, 2);
    assert_int_equal(f->fk.r[1].len, f->fk.r[0].len);
    assert_memory_equal(f->fk.r[1].bytes, f->fk.r[0].bytes, f->fk.r[0].len);
    xpb_bus_stats st;
    xpb_bus_get_stats(f->bus, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.dedupe_hits, 1);
    assert_int_equal(st.replies, 2);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(st.dedupe_size, 1);
    free(w.p);
}

static void test_resend_in_flight_waits_for_the_answer(void **state)
{
    fx *f = *state;
    wire w = request("r2", 0, 1);
    deliver(f, 3, w);
    deliver(f, 4, w);
    assert_int_equal(f->h.n, 1);
    assert_int_equal(f->fk.nr, 0);
    xpb_bus_stats st;
    xpb_bus_get_stats(f->bus, &st);
    assert_int_equal(st.inflight, 2);
    assert_int_equal(
        xpb_bus_reply_error(f->h.req[0], XPB__V1__ERROR_CODE__ERR_TIMEOUT, "late %d", 1), 0);
    assert_int_equal(f->fk.nr, 2);
    expect_reply(f, 0, 3, "r2", XPB__V1__ERROR_CODE__ERR_TIMEOUT);
    expect_reply(f, 1, 4, "r2", XPB__V1__ERROR_CODE__ERR_TIMEOUT);
    xpb_bus_get_stats(f->bus, &st);
    assert_int_equal(st.inflight, 0);
    free(w.p);
}

static void test_malformed_refused(void **state)
{
    fx *f = *state;
    wire junk = {(uint8_t *)"\xff\xff\xff", 3};
    deliver(f, 5, junk);
    wire old = request("r3", 1, 0); /* no api_version */
    deliver(f, 6, old);
    assert_int_equal(f->h.n, 0);
    assert_int_equal(f->fk.nr, 2);
    expect_reply(f, 0, 5, NULL, XPB__V1__ERROR_CODE__ERR_BAD_REQUEST);
    expect_reply(f, 1, 6, "r3", XPB__V1__ERROR_CODE__ERR_API_VERSION);
    xpb_bus_stats st;
    xpb_bus_get_stats(f->bus, &st);
    assert_int_equal(st.malformed, 2);
    assert_int_equal(st.dedupe_size, 0); /* refusals are not remembered */
    free(old.p);
}

static void test_busy_beyond_max_inflight(void **state)
{
    fx *f = *state;
    xpb_bus_free(f->bus);
    f->fk.opened = f->fk.drained = f->fk.closed = 0;
    xpb_bus_config cfg;
    xpb_bus_config_init(&cfg);
    cfg.max_inflight = 2; /* one ordinary request at a time */
    make_bus(f, &cfg);
    wire a = request("a", 0, 1), b = request("b", 0, 1), c = request("c", 1, 1);
    deliver(f, 1, a);
    deliver(f, 2, b);
    deliver(f, 3, c); /* control requests have slots of their own */
    assert_int_equal(f->h.n, 2);
    assert_int_equal(f->fk.nr, 1);
    expect_reply(f, 0, 2, "b", XPB__V1__ERROR_CODE__ERR_BUSY);
    Xpb__V1__Response *resp = reply_of(&f->fk.r[0]);
    assert_non_null(strstr(resp->error_text, "max_inflight 2"));
    xpb__v1__response__free_unpacked(resp, NULL);
    free(a.p), free(b.p), free(c.p);
}

static void test_free_answers_every_request_it_holds(void **state)
{
    fx *f = *state;
    wire a = request("held", 0, 1), late = request("late", 1, 1);
    deliver(f, 1, a);
    deliver(f, 2, a); /* a resend waiting on it */
    f->fk.on_drain = late.p;
    f->fk.on_drain_len = late.len;
    xpb_bus_free(f->bus);
    f->bus = NULL;
    assert_int_equal(f->h.n, 1); /* "late" never reached the handler */
    assert_int_equal(f->fk.closed, 1);
    assert_int_equal(f->fk.nr, 3);
    expect_reply(f, 0, 99, NULL, XPB__V1__ERROR_CODE__ERR_INTERNAL);
    expect_reply(f, 1, 1, "held", XPB__V1__ERROR_CODE__ERR_INTERNAL);
    expect_reply(f, 2, 2, "held", XPB__V1__ERROR_CODE__ERR_INTERNAL);
    free(a.p), free(late.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batches_by_topic_in_seq_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_stanza_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_refuses_bad_topic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_batch_goes_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_timer_sends_partial_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_us_zero_flushes_on_the_next_turn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_publish_failure_counts_dropped_events, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_request_answered_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resend_in_flight_waits_for_the_answer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_malformed_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_beyond_max_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_answers_every_request_it_holds, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
