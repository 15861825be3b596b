/* `xpbctl tail`: the bridge's events as they come. Filters become NNG prefix
 * subscriptions "KIND/ACCOUNT/" (bus.proto's topic scheme), so filtering
 * costs nothing on the wire; printing is tail_format.c, lost events
 * tail_gaps.c. */
#define _XOPEN_SOURCE 700 /* sigaction */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "bus_client.h"
#include "output.h"
#include "tail.h"
#include "tail_resume.h"
#include "xpb_stanza.h"

#define TAIL_MAX_FILTERS 16   /* values of --account, and of --kind */
#define TAIL_TOPIC_BYTES 2048 /* "KIND/" + a bare JID + "/" */

typedef struct tail_args {
    xpbctl_list accounts, kinds;
    xpbctl_num count, from_seq;
    bool sizes;
    const char *resume_file;
} tail_args;

static const char *bare_jid_check(const char *v)
{
    return !v[0] || strchr(v, '/') ? "takes a bare JID" : NULL;
}

/* The index of kind name[0..n) in xpb_bus_event_kinds, or -1. */
static int kind_index(const char *name, size_t n)
{
    for (size_t k = 0; k < XPB_BUS_N_EVENT_KINDS; k++)
        if (strlen(xpb_bus_event_kinds[k]) == n && memcmp(xpb_bus_event_kinds[k], name, n) == 0)
            return (int)k;
    return -1;
}

static const char *kind_list_check(const char *v)
{
    for (const char *p = v; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        if (kind_index(p, strcspn(p, ",")) < 0)
            return "takes a comma-separated list of message, presence, iq, other, state, "
                   "delivery";
    }
    return NULL;
}

static const xpbctl_opt tail_opts[] = {
    {.name = "--account",
     .arg = "JID",
     .kind = XPBCTL_LIST,
     .max = TAIL_MAX_FILTERS,
     .check = bare_jid_check,
     .offset = XPBCTL_AT(tail_args, accounts),
     .help = "only this account's events (a bare JID)"},
    {.name = "--kind",
     .arg = "LIST",
     .kind = XPBCTL_LIST,
     .max = TAIL_MAX_FILTERS,
     .check = kind_list_check,
     .offset = XPBCTL_AT(tail_args, kinds),
     .help = "only these kinds: message, presence, iq, other, state,\n"
             "delivery (comma-separated)"},
    {.name = "--count",
     .arg = "N",
     .kind = XPBCTL_NUM,
     .min = 1,
     .max = LLONG_MAX,
     .offset = XPBCTL_AT(tail_args, count),
     .help = "exit after N events"},
    {.name = "--sizes",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(tail_args, sizes),
     .help = "append each stanza's record size against its size as\n"
             "XML on the wire: [record 112 B vs XML 287 B (0.39)]"},
    {.name = "--resume-file",
     .arg = "FILE",
     .kind = XPBCTL_STR,
     .offset = XPBCTL_AT(tail_args, resume_file),
     .help = "keep the last seq delivered in FILE (written atomically);\n"
             "at start replay from the bridge's journal what came after\n"
             "it, and replay any gap of the live stream"},
    {.name = "--from-seq",
     .arg = "N",
     .kind = XPBCTL_NUM,
     .min = 1,
     .max = LLONG_MAX,
     .offset = XPBCTL_AT(tail_args, from_seq),
     .help = "replay from seq N first (wins over --resume-file's seq)"},
    {0},
};

/* Which kinds the --kind lists name; false when none does (all kinds). */
static bool selected_kinds(const tail_args *a, bool kind[XPB_BUS_N_EVENT_KINDS])
{
    memset(kind, 0, XPB_BUS_N_EVENT_KINDS * sizeof(bool));
    for (size_t i = 0; i < a->kinds.n; i++)
        for (const char *p = a->kinds.v[i]; *p;) {
            size_t n = strcspn(p, ",");
            int k = kind_index(p, n);
            if (k >= 0) kind[k] = true;
            p += n + (p[n] == ',');
        }
    return a->kinds.n > 0;
}

/* One prefix per kind × account; *n 0 means every event. */
static int topic_prefixes(const tail_args *a, char (*buf)[TAIL_TOPIC_BYTES], const char **out,
                          size_t *n)
{
    bool kind[XPB_BUS_N_EVENT_KINDS];
    bool any_kind = selected_kinds(a, kind);
    size_t n_acc = a->accounts.n ? a->accounts.n : 1;
    *n = 0;
    if (!any_kind && !a->accounts.n) return 0;
    for (size_t k = 0; k < XPB_BUS_N_EVENT_KINDS; k++) {
        if (any_kind && !kind[k]) continue;
        for (size_t i = 0; i < n_acc; i++) {
            const char *acc = a->accounts.n ? a->accounts.v[i] : NULL;
            if (xpb_bus_topic_prefix(xpb_bus_event_kinds[k], acc, buf[*n], TAIL_TOPIC_BYTES) < 0)
                return -1;
            out[*n] = buf[*n];
            (*n)++;
        }
    }
    return 0;
}

static volatile sig_atomic_t tail_stop;
static void on_stop_signal(int sig)
{
    (void)sig;
    tail_stop = 1;
}

static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

typedef struct tail_run {
    const ctl *c;
    const tail_args *a;
    tail_gaps *gaps;
    unsigned long long printed;
    tail_resume *res; /* NULL unless --resume-file or --from-seq */
    ctl *rc_ctl;      /* for replays */
    const char *const *prefixes;
    size_t n;
} tail_run;

/* Prints one event; non-zero once --count is reached. */
static int deliver(void *ud, const Xpb__V1__Event *ev)
{
    tail_run *t = ud;
    if (t->c->json)
        ctl_print_json(&ev->base);
    else
        tail_print_event(ev, t->a->sizes);
    return t->a->count.set && ++t->printed >= (unsigned long long)t->a->count.v;
}

/* One NNG message: topic, NUL, EventBatch. Returns true when --count is
 * reached. */
static bool handle_event_msg(tail_run *t, const uint8_t *data, size_t len)
{
    size_t topic_len = 0;
    Xpb__V1__EventBatch *b = tail_batch_decode(t->c, data, len, &topic_len);
    if (!b) return false;
    bool done = false;
    if (t->res) tail_resume_journal(t->res, b->journal_id);
    tail_gaps_batch(t->gaps, data, topic_len, b);
    for (size_t i = 0; i < b->n_event && !done; i++) {
        tail_gaps_event(t->gaps, b->event[i]->seq);
        done = t->res ? tail_resume_live(t->rc_ctl, t->res, t->prefixes, t->n, b, i, deliver, t)
                      : deliver(t, b->event[i]);
    }
    fflush(stdout);
    if (t->res) tail_resume_save(t->res);
    xpb__v1__event_batch__free_unpacked(b, NULL);
    return done;
}

/* A hole is seen when a later event arrives; PUB may also drop the last
 * events of a burst, after which nothing comes. So once the stream has been
 * quiet for TAIL_IDLE_CHECK_MS after an event, replay what the journal has
 * past the resume point (usually nothing: one request per quiet spell). */
static int idle_check(tail_run *t, bool *done)
{
    int stopped = 0;
    int rc = tail_replay(t->rc_ctl, t->res, t->prefixes, t->n, 0, deliver, t, &stopped);
    fflush(stdout);
    if (!rc) tail_resume_save(t->res);
    *done = stopped;
    return rc;
}

static int follow(tail_run *t, ctl_sub *sub)
{
    bool done = false;
    unsigned quiet_ms = 0;
    /* Not "replay_first has just looked": the bridge's PUB attaches this
     * subscriber a moment after it dials, and what it published meanwhile
     * came neither live nor (if published after the replay was read) from
     * replay_first. The first quiet spell looks once more. */
    bool checked = false;
    while (!done && !tail_stop) {
        const uint8_t *data = NULL;
        size_t len = 0;
        int rc = ctl_sub_next(sub, &data, &len);
        if (rc == CTL_SUB_TIMEOUT) {
            quiet_ms += CTL_POLL_MS;
            if (t->res && !checked && quiet_ms >= TAIL_IDLE_CHECK_MS) {
                checked = true;
                if ((rc = idle_check(t, &done))) return rc;
            }
            continue;
        }
        if (rc) return rc;
        quiet_ms = 0;
        checked = false;
        done = handle_event_msg(t, data, len);
        if (ferror(stdout)) return XPBCTL_EXIT_FAIL;
    }
    return 0;
}

/* Replays what the journal kept after the resume point, then saves it. */
static int replay_first(tail_run *t, bool *done)
{
    int stopped = 0;
    int rc = tail_replay(t->rc_ctl, t->res, t->prefixes, t->n, 0, deliver, t, &stopped);
    fflush(stdout);
    if (!rc) tail_resume_save(t->res);
    *done = stopped;
    return rc;
}

static int run_tail(const xpbctl_command *cmd, const xpbctl_globals *g, void *args)
{
    const tail_args *a = args;
    static char buf[XPB_BUS_N_EVENT_KINDS * TAIL_MAX_FILTERS][TAIL_TOPIC_BYTES];
    const char *prefixes[XPB_BUS_N_EVENT_KINDS * TAIL_MAX_FILTERS];
    size_t n = 0;
    ctl c;
    int rc = ctl_init(&c, cmd->page.name, g);
    if (rc) return rc;
    if (topic_prefixes(a, buf, prefixes, &n))
        return xpbctl_usage_error(&cmd->page, "--account is too long for a topic", NULL);
    tail_resume res;
    bool resuming = a->resume_file || a->from_seq.set;
    if (resuming && tail_resume_load(&res, a->resume_file, a->from_seq.set ? a->from_seq.v : 0))
        return XPBCTL_EXIT_FAIL;
    ctl_sub *sub = NULL;
    /* Subscribe before replaying: nothing published meanwhile falls between. */
    if ((rc = ctl_sub_open(&c, prefixes, n, &sub))) return rc;
    catch_stop_signals();
    tail_run t = {&c, a, tail_gaps_new(a->kinds.n || a->accounts.n, c.json), 0,
                  resuming ? &res : NULL, &c, prefixes, n};
    bool done = false;
    rc = t.gaps ? 0 : XPBCTL_EXIT_FAIL;
    if (!rc && resuming) rc = replay_first(&t, &done);
    if (!rc && !done) rc = follow(&t, sub);
    tail_gaps_free(t.gaps);
    ctl_sub_close(sub);
    return rc;
}

const xpbctl_command xpbctl_cmd_tail = {
    .page =
        {
            .name = "tail",
            .summary = "print the bridge's events as they come (stanzas, states, deliveries)",
            .usage = "xpbctl tail [--account JID]... [--kind KIND,...] [--count N] [--sizes] "
                     "[--resume-file FILE] [--from-seq N] [--json]",
            .synopsis = "    xpbctl tail [--account JID]... [--kind KIND[,KIND...]] [--count N]\n"
                        "                [--sizes] [--resume-file FILE] [--from-seq N] [--json]\n"
                        "                [--events URL]\n",
            .description =
                "    Subscribes to the bridge's event socket (proto/xpb/v1/bus.proto) and\n"
                "    prints every event: received stanzas (kinds message, presence, iq,\n"
                "    other), session state changes (kind state) and outcomes of sent\n"
                "    stanzas (kind delivery). Filters become NNG prefix subscriptions on the\n"
                "    topic \"KIND/ACCOUNT/\", one per kind and account, so the filtering\n"
                "    costs nothing on the wire.\n"
                "\n"
                "    A line per event:\n"
                "        #SEQ TIME ACCOUNT KIND FROM → TO TYPE \"BODY...\"\n"
                "        #SEQ TIME ACCOUNT state STATE [jid=JID] [reason=\"...\"]\n"
                "        #SEQ TIME ACCOUNT delivery acked|failed id=ID [request=ID] "
                "[reason=\"...\"]\n"
                "    TIME is local, HH:MM:SS.mmm; a body or status is cut after 60 bytes.\n"
                "    With --json, each event is one JSON object (xpb.v1.Event) per line.\n"
                "\n"
                "    Sequence numbers count every event of the bridge, across all topics.\n"
                "    Without filters, a jump means events were lost (the subscriber was too\n"
                "    slow and NNG dropped messages); it is reported as\n"
                "        xpbctl: tail: lost N events (seq A..B)\n"
                "    on standard error, or as a line "
                "{\"gap\":{\"lost\":N,\"first\":A,\"last\":B}}\n"
                "    with --json. Up to 256 holes are awaited at once (events of different\n"
                "    topics may arrive out of order); beyond that the oldest is reported.\n"
                "    With filters, other topics' numbers are skipped normally;\n"
                "    instead each batch says which seq came before it on its topic\n"
                "    (EventBatch.prev_seq), and tail keeps the last seq it saw per topic\n"
                "    (at most 4096 topics, the least recently seen forgotten first). When\n"
                "    they differ, events of that topic were lost:\n"
                "        xpbctl: tail: lost events on TOPIC between seq A and B (the last was P)\n"
                "    or {\"gap\":{\"topic\":\"TOPIC\",\"after\":A,\"before\":B,\"last\":P}} with\n"
                "    --json (how many is unknown: other topics' events are numbered between).\n"
                "    A topic's first batch, and prev_seq 0 (the bridge forgot the topic), are\n"
                "    not checked.\n"
                "\n"
                "    With --resume-file FILE (or --from-seq N), tail first replays from the\n"
                "    bridge's journal (request Replay; the bridge needs a state directory)\n"
                "    every event after the seq in FILE, then follows live; a hole in the\n"
                "    live stream is replayed before the event after it, and events already\n"
                "    delivered are skipped; after a second with no event, tail asks the\n"
                "    journal once for events PUB dropped at the end of a burst. FILE holds\n"
                "    \"JOURNAL_ID SEQ\" and is rewritten atomically after each batch, so a\n"
                "    reader that restarts goes on where it stopped: every event once, in\n"
                "    order (one may repeat if tail is killed between printing a batch and\n"
                "    saving FILE). A new journal id means the\n"
                "    state directory was replaced: tail says so and starts from its start.\n"
                "    Events the journal no longer keeps give ERR_REPLAY_GONE naming the\n"
                "    oldest seq kept.\n"
                "\n"
                "    tail starts even when the bridge is not running yet and reconnects when\n"
                "    it restarts. It stops after --count events, or on SIGINT or SIGTERM.\n"
                "    It reads messages of up to 64 MiB and queues up to 1024 of them.\n",
            .exit_status = "    0  --count events were printed, or SIGINT/SIGTERM\n"
                           "    1  the event socket could not be opened, or output failed\n"
                           "    2  usage error\n",
            .examples =
                "    xpbctl tail\n"
                "    xpbctl tail --account bot@example.com --kind message,delivery --sizes\n"
                "    xpbctl --events ipc:///run/xpbridge/events tail --kind state\n"
                "    xpbctl tail --json --kind state | jq -c '{account, state: .state.state}'\n"
                "    xpbctl tail --resume-file ~/.cache/xpbctl-tail.seq --kind message\n",
        },
    .opts = tail_opts,
    .args_size = sizeof(tail_args),
    .bus = true,
    .run = run_tail,
};
