/* How `xpbctl tail` prints an event for a person: one line per event,
 * bridge-supplied text cleaned of control characters (docs/bus.md). */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "output.h"
#include "tail.h"
#include "xpb_bus_wire.h"
#include "xpb_stanza.h"

#define TAIL_EXCERPT_BYTES 60 /* of a body or status */

static void print_time(uint64_t us)
{
    time_t t = (time_t)(us / 1000000u);
    struct tm tm;
    char buf[16] = "??:??:??";
    if (localtime_r(&t, &tm)) strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
    printf("%s.%03u", buf, (unsigned)(us / 1000u % 1000u));
}

/* What an iq carries, in a word. */
static const char *iq_payload_name(const xpb_stanza *st)
{
    if (st->ping) return "ping";
    if (st->disco_info) return "disco#info";
    if (st->disco_items) return "disco#items";
    if (st->roster) return "roster";
    if (st->n_extension && st->extension[0]->name) return st->extension[0]->name;
    return NULL;
}

static void print_stanza_line(const xpb_stanza *st)
{
    char word[64];
    printf(" %s ", xpb_bus_stanza_kind(st->kind));
    ctl_put_clean(st->from, 256);
    fputs(" → ", stdout);
    ctl_put_clean(st->to, 256);
    if (st->has_type && st->type)
        printf(" %s", ctl_enum_short(&xpb__v1__stanza_type__descriptor, (int)st->type, "TYPE_",
                                     word, sizeof(word)));
    else if (st->type_raw) {
        putchar(' ');
        ctl_put_clean(st->type_raw, 32);
    }
    if (st->has_show && st->show)
        printf(" show=%s", ctl_enum_short(&xpb__v1__show__descriptor, (int)st->show, "SHOW_", word,
                                          sizeof(word)));
    const Xpb__V1__Text *text = st->n_body ? st->body[0] : st->n_status ? st->status[0] : NULL;
    if (text && text->text) {
        fputs(" \"", stdout);
        ctl_put_clean(text->text, TAIL_EXCERPT_BYTES);
        putchar('"');
    }
    const char *payload = st->kind == XPB__V1__KIND__KIND_IQ ? iq_payload_name(st) : NULL;
    if (payload) {
        putchar(' ');
        ctl_put_clean(payload, 64);
    }
    if (st->error && st->error->has_condition)
        printf(" error=%s",
               ctl_enum_short(&xpb__v1__error_condition__descriptor, (int)st->error->condition,
                              "CONDITION_", word, sizeof(word)));
}

static void print_state_line(const Xpb__V1__SessionState *s)
{
    char word[32] = "unspecified";
    if (s->has_state)
        ctl_enum_short(&xpb__v1__session_state__state__descriptor, (int)s->state, "STATE_", word,
                       sizeof(word));
    printf(" state %s", word);
    if (s->jid) {
        fputs(" jid=", stdout);
        ctl_put_clean(s->jid, 256);
    }
    if (s->reason) {
        fputs(" reason=\"", stdout);
        ctl_put_clean(s->reason, 200);
        putchar('"');
    }
}

static void print_delivery_line(const Xpb__V1__Delivery *d)
{
    char word[32] = "unspecified";
    if (d->has_outcome)
        ctl_enum_short(&xpb__v1__delivery__outcome__descriptor, (int)d->outcome, "OUTCOME_", word,
                       sizeof(word));
    printf(" delivery %s id=", word);
    ctl_put_clean(d->stanza_id, 128);
    if (d->request_id) {
        fputs(" request=", stdout);
        ctl_put_clean(d->request_id, 128);
    }
    if (d->reason) {
        fputs(" reason=\"", stdout);
        ctl_put_clean(d->reason, 200);
        putchar('"');
    }
}

void tail_print_event(const Xpb__V1__Event *ev, bool sizes)
{
    printf("#%" PRIu64 " ", ev->seq);
    print_time(ev->timestamp_us);
    putchar(' ');
    ctl_put_clean(ev->account, 256);
    if (ev->body_case == XPB__V1__EVENT__BODY_STANZA) {
        print_stanza_line(ev->stanza);
        if (sizes) {
            size_t rec = xpb__v1__stanza__get_packed_size(ev->stanza);
            if (ev->has_xml_bytes && ev->xml_bytes)
                printf(" [record %zu B vs XML %" PRIu32 " B (%.2f)]", rec, ev->xml_bytes,
                       (double)rec / (double)ev->xml_bytes);
            else
                printf(" [record %zu B]", rec);
        }
    } else if (ev->body_case == XPB__V1__EVENT__BODY_STATE) {
        print_state_line(ev->state);
    } else if (ev->body_case == XPB__V1__EVENT__BODY_DELIVERY) {
        print_delivery_line(ev->delivery);
    } else {
        fputs(" (empty event)", stdout);
    }
    putchar('\n');
}
