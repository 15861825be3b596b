/* `xpbctl convert`: stanzas between XML, length-delimited xpb.v1.Stanza records
 * and JSON. Records from a file are untrusted: each one goes through
 * xpb_stanza_unpack (depth, strings, JIDs); a refused one is reported by index
 * and skipped, and the exit status says something was refused. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_error.h"
#include "xpb_stanza.h"
#include "xpb_xml.h"
#include "xpbctl.h"

enum fmt { FMT_NONE = 0, FMT_XML, FMT_PB, FMT_JSON };

typedef struct conv {
    enum fmt to;
    xpb_record_limits limits;
    xpb_arena *arena;
    xpb_buf out;
    size_t index; /* 1-based index of the stanza being handled */
    bool refused; /* something was refused: exit status 1 */
    bool write_failed;
    bool saw_eof_mark;
} conv;

#define READ_CHUNK 65536
/* Fed after the last input byte: delivered as a stanza only when the input
 * ended between stanzas (the reader has no "end of input" call). */
static const char eof_mark[] = "<xpbctl-eof xmlns='urn:xpbridge:xpbctl:eof'/>";

static void refuse(conv *c, const char *reason)
{
    fprintf(stderr, "xpbctl: stanza %zu: %s\n", c->index, reason);
    c->refused = true;
}

static void flush_out(conv *c)
{
    if (c->out.len && fwrite(c->out.data, 1, c->out.len, stdout) != c->out.len)
        c->write_failed = true;
    xpb_buf_reset(&c->out);
}

/* Writes one record in the output format; reports and returns on refusal. */
static void emit_stanza(conv *c, const xpb_stanza *st)
{
    char err[512] = "";
    int rc = 0;
    if (c->to == FMT_XML) {
        rc = xpb_stanza_to_xml(&c->out, st, "", &c->limits, err, sizeof(err));
    } else if (c->to == FMT_JSON) {
        rc = xpb_json_write(&c->out, (const ProtobufCMessage *)st);
    } else {
        xpb_buf rec;
        xpb_buf_init(&rec, 0);
        rc = xpb_stanza_pack(&rec, st);
        if (!rc) rc = xpb_delim_write(&c->out, (const uint8_t *)rec.data, rec.len);
        xpb_buf_free(&rec);
    }
    if (!rc && c->to != FMT_PB) rc = xpb_buf_append(&c->out, "\n", 1);
    if (rc) {
        xpb_buf_reset(&c->out);
        refuse(c, err[0] ? err : xpb_strerror(rc));
        return;
    }
    flush_out(c);
}

/* ---- XML input ----------------------------------------------------------- */
static int on_xml_stanza(void *ud, const xpb_node *el)
{
    conv *c = ud;
    if (strcmp(el->ns, "urn:xpbridge:xpbctl:eof") == 0 && strcmp(el->name, "xpbctl-eof") == 0) {
        c->saw_eof_mark = true;
        return 0;
    }
    xpb_stanza *st = NULL;
    xpb_arena_reset(c->arena);
    int rc = xpb_stanza_from_xml(c->arena, el, &st);
    if (rc)
        refuse(c, xpb_strerror(rc));
    else
        emit_stanza(c, st);
    c->index++;
    return 0;
}

static void on_xml_close(void *ud)
{
    ((conv *)ud)->saw_eof_mark = true;
}

static void reader_failed(conv *c, const xpb_reader *r, int rc)
{
    const char *msg = xpb_reader_error(r);
    refuse(c, msg && msg[0] ? msg : xpb_strerror(rc));
}

static int convert_xml(conv *c, FILE *in, size_t max_stanza)
{
    xpb_reader_limits lim = {.max_stanza_bytes = max_stanza};
    xpb_reader_callbacks cb = {.stanza = on_xml_stanza, .stream_close = on_xml_close};
    xpb_reader *r = NULL;
    int rc = xpb_reader_new(&r, XPB_READER_AUTO, &lim, &cb, c);
    if (rc) return rc;
    char *chunk = malloc(READ_CHUNK);
    if (!chunk) {
        xpb_reader_free(r);
        return XPB_ENOMEM;
    }
    size_t n;
    while (!rc && (n = fread(chunk, 1, READ_CHUNK, in)) > 0)
        rc = xpb_reader_feed(r, chunk, n);
    if (!rc && ferror(in)) {
        fprintf(stderr, "xpbctl: read error: %s\n", strerror(errno));
        c->refused = true;
    } else if (rc) {
        reader_failed(c, r, rc);
    } else if (!c->saw_eof_mark) {
        rc = xpb_reader_feed(r, eof_mark, sizeof(eof_mark) - 1);
        if (rc == XPB_ECLOSED) rc = 0; /* </stream:stream> ended it properly */
        if (rc)
            reader_failed(c, r, rc);
        else if (!c->saw_eof_mark)
            refuse(c, "input ends inside a stanza (truncated XML)");
    }
    free(chunk);
    xpb_reader_free(r);
    return 0;
}

/* ---- pb input ------------------------------------------------------------ */
typedef struct inbuf {
    uint8_t *data;
    size_t len, cap;
} inbuf;

/* Reads more input, growing the buffer up to need bytes. 0 at EOF. */
static size_t read_more(inbuf *b, FILE *in, size_t need)
{
    if (b->cap < need) {
        uint8_t *p = realloc(b->data, need);
        if (!p) return 0;
        b->data = p;
        b->cap = need;
    }
    if (b->len == b->cap) return 0;
    return fread(b->data + b->len, 1, b->cap - b->len, in);
}

static void handle_record(conv *c, const uint8_t *frame, size_t len)
{
    char err[512] = "";
    xpb_stanza *st = NULL;
    xpb_arena_reset(c->arena);
    int rc = xpb_stanza_unpack(c->arena, frame, len, &c->limits, &st, err, sizeof(err));
    if (rc)
        refuse(c, err[0] ? err : xpb_strerror(rc));
    else
        emit_stanza(c, st);
}

/* Consumes every complete frame in b; returns 1 when more bytes are needed,
 * 0 to stop (a broken length prefix), with *skip set for an oversized frame. */
static int drain_frames(conv *c, inbuf *b, size_t max_len, size_t *skip)
{
    size_t pos = 0;
    int more = 1;
    while (pos < b->len) {
        const uint8_t *frame = NULL;
        size_t flen = 0, used = 0;
        int rc = xpb_delim_next(b->data + pos, b->len - pos, max_len, &frame, &flen, &used);
        if (rc == 1) break;
        if (rc == XPB_ETOOBIG || rc < 0) {
            char msg[160];
            if (rc == XPB_ETOOBIG) {
                /* The prefix is intact: skip the oversized record, go on. */
                uint64_t v = 0;
                size_t i = 0;
                for (; b->data[pos + i] & 0x80; i++)
                    v |= (uint64_t)(b->data[pos + i] & 0x7f) << (7 * i);
                v |= (uint64_t)b->data[pos + i] << (7 * i);
                snprintf(msg, sizeof(msg), "record of %llu bytes exceeds --max-stanza-bytes (%zu)",
                         (unsigned long long)v, max_len);
                refuse(c, msg);
                c->index++;
                pos += i + 1;
                *skip = (size_t)v;
                break;
            }
            refuse(c, "bad record length prefix (varint longer than 10 bytes)");
            more = 0;
            pos = b->len;
            break;
        }
        handle_record(c, frame, flen);
        c->index++;
        pos += used;
    }
    memmove(b->data, b->data + pos, b->len - pos);
    b->len -= pos;
    return more;
}

static int convert_pb(conv *c, FILE *in, size_t max_len)
{
    inbuf b = {0};
    size_t skip = 0, n;
    int more = 1;
    while (more &&
           (n = read_more(&b, in, max_len + 16 > READ_CHUNK ? max_len + 16 : READ_CHUNK)) > 0) {
        b.len += n;
        if (skip) {
            size_t drop = skip < b.len ? skip : b.len;
            memmove(b.data, b.data + drop, b.len - drop);
            b.len -= drop;
            skip -= drop;
        }
        if (!skip) more = drain_frames(c, &b, max_len, &skip);
    }
    if (ferror(in)) {
        fprintf(stderr, "xpbctl: read error: %s\n", strerror(errno));
        c->refused = true;
    } else if (more && (b.len || skip)) {
        refuse(c, "truncated record at end of input");
    }
    free(b.data);
    return 0;
}

/* ---- Command line ------------------------------------------------------- */
#define CONVERT_MAX_STANZA_LIMIT (1ll << 30) /* --max-stanza-bytes: 1 GiB */

typedef struct convert_args {
    xpbctl_num from, to, max_stanza;
    const char *file;
} convert_args;

static const xpbctl_choice input_formats[] = {{"xml", FMT_XML}, {"pb", FMT_PB}, {NULL, 0}};
static const xpbctl_choice output_formats[] = {
    {"pb", FMT_PB}, {"xml", FMT_XML}, {"json", FMT_JSON}, {NULL, 0}};

static const xpbctl_opt convert_opts[] = {
    {.name = "--from",
     .arg = "FMT",
     .kind = XPBCTL_CHOICE,
     .choices = input_formats,
     .required = true,
     .offset = XPBCTL_AT(convert_args, from),
     .help = "input format"},
    {.name = "--to",
     .arg = "FMT",
     .kind = XPBCTL_CHOICE,
     .choices = output_formats,
     .required = true,
     .offset = XPBCTL_AT(convert_args, to),
     .help = "output format"},
    {.name = "--max-stanza-bytes",
     .arg = "N",
     .kind = XPBCTL_NUM,
     .min = XPB_READER_MIN_MAX_STANZA,
     .max = CONVERT_MAX_STANZA_LIMIT,
     .offset = XPBCTL_AT(convert_args, max_stanza),
     .help = "largest XML stanza read or written, and largest\n"
             "record read (default 262144; at least 10000, as\n"
             "RFC 6120 §13.12 requires)"},
    {.arg = "FILE",
     .kind = XPBCTL_WORD,
     .offset = XPBCTL_AT(convert_args, file),
     .help = "the input; standard input when absent or '-'"},
    {0},
};

static int convert_stream(const convert_args *o, FILE *in, size_t max_stanza)
{
    conv c = {.to = (enum fmt)o->to.v, .index = 1};
    c.limits.max_stanza_bytes = max_stanza;
    xpb_buf_init(&c.out, 0);
    c.arena = xpb_arena_new(0);
    int rc = !c.arena               ? XPB_ENOMEM
             : o->from.v == FMT_XML ? convert_xml(&c, in, max_stanza)
                                    : convert_pb(&c, in, max_stanza);
    if (rc) fprintf(stderr, "xpbctl: %s\n", xpb_strerror(rc));
    if (fflush(stdout) != 0 || c.write_failed) {
        fprintf(stderr, "xpbctl: write error: %s\n", strerror(errno));
        rc = XPB_EINVAL;
    }
    xpb_buf_free(&c.out);
    xpb_arena_free(c.arena);
    return rc || c.refused ? XPBCTL_EXIT_FAIL : XPBCTL_EXIT_OK;
}

static int run_convert(const xpbctl_command *cmd, const xpbctl_globals *g, void *args)
{
    (void)cmd;
    (void)g;
    const convert_args *o = args;
    size_t max_stanza = o->max_stanza.set ? (size_t)o->max_stanza.v : XPB_READER_DEFAULT_MAX_STANZA;
    FILE *in = stdin;
    if (o->file && strcmp(o->file, "-") != 0 && !(in = fopen(o->file, "rb"))) {
        fprintf(stderr, "xpbctl: %s: %s\n", o->file, strerror(errno));
        return XPBCTL_EXIT_FAIL;
    }
    int rc = convert_stream(o, in, max_stanza);
    if (in != stdin) fclose(in);
    return rc;
}

const xpbctl_command xpbctl_cmd_convert = {
    .page =
        {
            .name = "convert",
            .summary = "convert stanzas between XML, protobuf records and JSON (offline)",
            .usage = "xpbctl convert --from xml|pb --to pb|xml|json [--max-stanza-bytes N] [FILE]",
            .synopsis = "    xpbctl convert --from xml|pb --to pb|xml|json [--max-stanza-bytes N] "
                        "[FILE]\n",
            .description =
                "    Reads FILE (standard input when absent or '-') and writes the converted\n"
                "    stanzas to standard output, checking every record like the bridge does.\n"
                "\n"
                "    XML input is a sequence of stanzas: bare elements one after another (an\n"
                "    element without xmlns is in jabber:client) or a full\n"
                "    <stream:stream> document. Comments, processing instructions, DTDs and\n"
                "    entities other than the five predefined ones are refused (RFC 6120 §11).\n"
                "    A reader error ends the input: it is reported and the stanzas before it\n"
                "    have already been written.\n"
                "\n"
                "    pb input and output are length-delimited records: a varint length, then\n"
                "    an xpb.v1.Stanza (protobuf writeDelimitedTo). Every input record is\n"
                "    checked like the bridge checks records from the bus (nesting depth,\n"
                "    string lengths, UTF-8 and XML characters, XML names, JIDs); a refused\n"
                "    record is reported and skipped, and the following records are still\n"
                "    converted.\n"
                "\n"
                "    XML output is one standalone stanza per line, with xmlns='jabber:client';\n"
                "    JSON output is one object per line.\n"
                "\n"
                "    Refusals are reported on standard error as\n"
                "        xpbctl: stanza N: REASON\n"
                "    where N counts stanzas (or records) from 1 and REASON names the field and\n"
                "    the rule or limit. convert takes none of the global options.\n",
            .exit_status = "    0  every stanza was converted\n"
                           "    1  at least one stanza or record was refused, or input/output "
                           "failed\n"
                           "    2  usage error\n",
            .examples = "    xpbctl convert --from xml --to pb session.xml > session.pb\n"
                        "    xpbctl convert --from pb --to xml session.pb\n"
                        "    xpb-gen --count 100 | xpbctl convert --from xml --to json\n",
        },
    .opts = convert_opts,
    .args_size = sizeof(convert_args),
    .bus = false,
    .run = run_convert,
};
