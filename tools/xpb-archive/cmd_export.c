/* `xpb-archive export`: the archive out again. xml: an XMPP stream of the
 * original stanzas (rebuilt from their records by the codec), each wrapped
 * as XEP-0297 <forwarded/> with its XEP-0203 <delay/>; json: one object per
 * message; pb: length-delimited xpb.v1.Event records that `import` reads
 * (docs/archive.md, "Export formats"). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "xa_cmd.h"
#include "xa_json.h"
#include "xpb_error.h"

#define EXPORT_STREAM_OPEN                                                                         \
    "<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' "                                 \
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\n"
#define EXPORT_STREAM_CLOSE "</stream:stream>\n"

typedef struct export_args {
    const char *db, *with, *account, *since, *until;
    xpbctl_num format;
} export_args;

enum { FORMAT_XML, FORMAT_JSON, FORMAT_PB };
static const xpbctl_choice formats[] = {
    {"xml", FORMAT_XML}, {"json", FORMAT_JSON}, {"pb", FORMAT_PB}, {NULL, 0}};

static const xpbctl_opt export_opts[] = {
    XA_DB_OPT(export_args),
    {.name = "--format",
     .arg = "FORMAT",
     .kind = XPBCTL_CHOICE,
     .choices = formats,
     .offset = XPBCTL_AT(export_args, format),
     .help = "xml (the default), json or pb"},
    {.name = "--with",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .check = xa_bare_check,
     .offset = XPBCTL_AT(export_args, with),
     .help = "only the conversation with JID (a peer or a room)"},
    {.name = "--account",
     .arg = "JID",
     .kind = XPBCTL_STR,
     .check = xa_bare_check,
     .offset = XPBCTL_AT(export_args, account),
     .help = "only this account's messages"},
    {.name = "--since",
     .arg = "TIME",
     .kind = XPBCTL_STR,
     .check = xa_time_check,
     .offset = XPBCTL_AT(export_args, since),
     .help = "only messages at or after TIME (YYYY-MM-DD or\n"
             "YYYY-MM-DDThh:mm:ssZ)"},
    {.name = "--until",
     .arg = "TIME",
     .kind = XPBCTL_STR,
     .check = xa_time_check,
     .offset = XPBCTL_AT(export_args, until),
     .help = "only messages before TIME"},
    {0},
};

/* ---- JSON ------------------------------------------------------------- */
static void json_text(xpb_buf *b, const char *v)
{
    xpb_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            xpb_buf_append(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            xpb_buf_append(b, esc, 6);
        } else {
            xpb_buf_append(b, p, 1);
        }
    }
    xpb_buf_append(b, "\"", 1);
}

void xa_json_key(xpb_buf *b, const char *name, bool comma)
{
    if (comma) xpb_buf_append(b, ",", 1);
    json_text(b, name);
    xpb_buf_append(b, ":", 1);
}

void xa_json_str(xpb_buf *b, const char *name, const char *v, bool comma)
{
    xa_json_key(b, name, comma);
    if (v)
        json_text(b, v);
    else
        xpb_buf_append_str(b, "null");
}

static const char *const kind_names[] = {"message", "correction", "retraction"};

int xa_json_row_full(const xa_row *r, bool with_record)
{
    xpb_buf b;
    xpb_buf_init(&b, 0);
    char t[40], num[32];
    xa_format_stamp(r->time_us, t, sizeof t);
    snprintf(num, sizeof num, "%" PRId64, r->id);
    xpb_buf_append(&b, "{", 1);
    xa_json_str(&b, "id", num, false);
    xa_json_str(&b, "kind", kind_names[r->kind <= XA_KIND_RETRACTION ? r->kind : 0], true);
    xa_json_str(&b, "account", r->account, true);
    xa_json_str(&b, "conversation", r->conversation, true);
    xa_json_str(&b, "direction", r->direction == XA_DIR_OUT ? "out" : "in", true);
    xa_json_str(&b, "sender", r->sender, true);
    xa_json_str(&b, "time", t, true);
    xa_json_str(&b, "body", r->body, true);
    xa_json_str(&b, "edited_body", r->edited_body, true);
    xa_json_str(&b, "stanza_id", r->stanza_id, true);
    xa_json_str(&b, "stanza_id_by", r->stanza_id_by, true);
    xa_json_str(&b, "origin_id", r->origin_id, true);
    if (r->retracted_us) {
        xa_format_stamp(r->retracted_us, t, sizeof t);
        xa_json_str(&b, "retracted", t, true);
    }
    int rc = 0;
    if (with_record) {
        Xpb__V1__Stanza *st = xpb__v1__stanza__unpack(NULL, r->record_len, r->record);
        xpb_buf_append_str(&b, ",\"stanza\":");
        rc = st ? xpb_json_write(&b, &st->base) : XPB_EPBDECODE;
        if (st) xpb__v1__stanza__free_unpacked(st, NULL);
    }
    xpb_buf_append(&b, "}\n", 2);
    if (!rc) fwrite(b.data, 1, b.len, stdout);
    xpb_buf_free(&b);
    return rc || ferror(stdout) ? -1 : 0;
}

/* ---- XML and pb --------------------------------------------------------- */
typedef struct export_run {
    int format;
    xpb_buf buf;
    xpb_arena *arena;
    char err[XA_ERR_MAX];
} export_run;

static int row_xml(export_run *x, const xa_row *r, const xpb_stanza *st)
{
    char t[40];
    xa_format_stamp(r->time_us, t, sizeof t);
    xpb_buf_reset(&x->buf);
    xpb_buf_append_str(&x->buf, "<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' "
                                "stamp='");
    xpb_buf_append_str(&x->buf, t);
    xpb_buf_append_str(&x->buf, "'/>");
    /* "": the message says xmlns='jabber:client' inside <forwarded/>. */
    int rc = xpb_stanza_to_xml_prechecked(&x->buf, st, "", NULL, x->err, sizeof x->err);
    if (rc) return rc;
    xpb_buf_append_str(&x->buf, "</forwarded>\n");
    fwrite(x->buf.data, 1, x->buf.len, stdout);
    return 0;
}

static int write_event(export_run *x, Xpb__V1__Event *ev)
{
    size_t len = xpb__v1__event__get_packed_size(ev);
    xpb_buf_reset(&x->buf);
    int rc;
    uint8_t *data = xpb_arena_alloc(x->arena, len ? len : 1);
    if (!data) return XPB_ENOMEM;
    xpb__v1__event__pack(ev, data);
    if ((rc = xpb_delim_write(&x->buf, data, len))) return rc;
    fwrite(x->buf.data, 1, x->buf.len, stdout);
    return 0;
}

/* pb: the events that, imported, give this row again (docs/archive.md):
 * our own messages as ACKED deliveries; a room message of ours stored as
 * the room's reflection also as the reflection (so import learns our nick). */
static int row_pb(export_run *x, const xa_row *r, xpb_stanza *st)
{
    Xpb__V1__Event ev = XPB__V1__EVENT__INIT;
    ev.has_seq = ev.has_timestamp_us = 1;
    ev.seq = (uint64_t)r->id;
    ev.timestamp_us = (uint64_t)r->time_us;
    ev.account = (char *)r->account;
    bool reflected = r->groupchat && st->from && strncmp(st->from, r->conversation,
                                                         strlen(r->conversation)) == 0;
    if (r->direction == XA_DIR_IN || reflected) {
        ev.body_case = XPB__V1__EVENT__BODY_STANZA;
        ev.stanza = st;
        int rc = write_event(x, &ev);
        if (rc || r->direction == XA_DIR_IN) return rc;
        st->to = (char *)r->conversation; /* the send as we made it */
        st->from = NULL;
    }
    Xpb__V1__Delivery d = XPB__V1__DELIVERY__INIT;
    d.has_outcome = 1;
    d.outcome = XPB__V1__DELIVERY__OUTCOME__OUTCOME_ACKED;
    d.stanza = st;
    ev.body_case = XPB__V1__EVENT__BODY_DELIVERY;
    ev.delivery = &d;
    return write_event(x, &ev);
}

static int export_row(void *ud, const xa_row *r)
{
    export_run *x = ud;
    if (x->format == FORMAT_JSON) return xa_json_row_full(r, true);
    xpb_arena_reset(x->arena);
    xpb_stanza *st = NULL;
    int rc = xpb_stanza_unpack(x->arena, r->record, r->record_len, NULL, &st, x->err,
                               sizeof x->err);
    if (!rc) rc = x->format == FORMAT_XML ? row_xml(x, r, st) : row_pb(x, r, st);
    if (rc) {
        fprintf(stderr, "xpb-archive: export: message %" PRId64 ": %s\n", r->id,
                x->err[0] ? x->err : xpb_strerror(rc));
        return -1;
    }
    return ferror(stdout) ? -1 : 0;
}

static int run_export(const xpbctl_command *cmd, const xpbctl_globals *g, void *argp)
{
    (void)cmd;
    (void)g;
    const export_args *a = argp;
    xa_db *db = xa_cmd_open("export", a->db, XA_OPEN_READ);
    if (!db) return XA_EXIT_FAIL;
    export_run x = {.format = a->format.set ? (int)a->format.v : FORMAT_XML};
    xpb_buf_init(&x.buf, 0);
    x.arena = xpb_arena_new(64 * 1024);
    xa_filter f = {.with = a->with,
                   .account = a->account,
                   .since_us = a->since ? xa_time_value(a->since) : 0,
                   .until_us = a->until ? xa_time_value(a->until) : 0,
                   .changes = true};
    char err[XA_ERR_MAX] = "";
    if (x.format == FORMAT_XML) fputs(EXPORT_STREAM_OPEN, stdout);
    int rc = x.arena ? xa_each(db, &f, export_row, &x, err, sizeof err) : XA_ENOMEM;
    if (x.format == FORMAT_XML) fputs(EXPORT_STREAM_CLOSE, stdout);
    if (rc && err[0]) fprintf(stderr, "xpb-archive: export: %s\n", err);
    if (fflush(stdout) && !rc) {
        fprintf(stderr, "xpb-archive: export: writing standard output failed\n");
        rc = -1;
    }
    xpb_arena_free(x.arena);
    xpb_buf_free(&x.buf);
    xa_db_close(db);
    return rc ? XA_EXIT_FAIL : XA_EXIT_OK;
}

const xpbctl_command xa_cmd_export = {
    .page =
        {
            .name = "export",
            .summary = "write the archive as XML, JSON or protobuf records",
            .usage = "xpb-archive export --db FILE [--format xml|json|pb] [--with JID] "
                     "[--account JID] [--since TIME] [--until TIME]",
            .synopsis = "    xpb-archive export --db FILE [--format xml|json|pb] [--with JID]\n"
                        "                       [--account JID] [--since TIME] [--until TIME]\n",
            .description =
                "    Writes the archived stanzas to standard output in the order stored,\n"
                "    corrections and retractions included.\n"
                "    xml: an XMPP stream (<stream:stream xmlns='jabber:client'>) with each\n"
                "        original message rebuilt from its record, wrapped as\n"
                "        <forwarded xmlns='urn:xmpp:forward:0'> (XEP-0297) with\n"
                "        <delay xmlns='urn:xmpp:delay' stamp='...'/> (XEP-0203): the infoset\n"
                "        of the message as the bridge delivered it.\n"
                "    json: one object per row: id, kind, account, conversation, direction,\n"
                "        sender, time, body, edited_body, stanza_id, stanza_id_by,\n"
                "        origin_id, retracted and the stanza record (xpb.v1.Stanza as JSON).\n"
                "    pb: length-delimited (varint length, then bytes) xpb.v1.Event\n"
                "        records, received messages as stanza events and our own as\n"
                "        Delivery ACKED; `xpb-archive import` reads them.\n",
            .exit_status = XA_EXIT_STATUS,
            .examples = "    xpb-archive export --db archive.db > archive.xml\n"
                        "    xpb-archive export --db archive.db --format pb --since 2026-01-01 "
                        "> 2026.pb\n"
                        "    xpb-archive export --db archive.db --format json --with "
                        "alice@example.com | jq .body\n",
        },
    .opts = export_opts,
    .args_size = sizeof(export_args),
    .run = run_export,
};
