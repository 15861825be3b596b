/* `xpb-archive stats`: messages per account and per conversation, and what
 * the archive costs: the records' bytes and the whole file against the same
 * messages as XML and as XML deflated (zlib). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>
#include <zlib.h>

#include "xa_cmd.h"

#define STATS_CHUNK (256 * 1024) /* XML deflated in chunks of this many bytes */

typedef struct stats_args {
    const char *db;
    bool json;
} stats_args;

static const xpbctl_opt stats_opts[] = {
    XA_DB_OPT(stats_args),
    {.name = "--json",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(stats_args, json),
     .help = "the figures as one JSON object"},
    {0},
};

typedef struct sizes {
    uint64_t n, record, xml, deflated;
    xpb_buf xml_buf, out;
    xpb_arena *arena;
    z_stream z;
    int failed;
} sizes;

static void deflate_pending(sizes *s, int flush)
{
    unsigned char out[STATS_CHUNK];
    s->z.next_in = (unsigned char *)s->xml_buf.data;
    s->z.avail_in = (uInt)s->xml_buf.len;
    do {
        s->z.next_out = out;
        s->z.avail_out = sizeof out;
        deflate(&s->z, flush);
        s->deflated += sizeof out - s->z.avail_out;
    } while (s->z.avail_out == 0);
    xpb_buf_reset(&s->xml_buf);
}

static int add_row(void *ud, const xa_row *r)
{
    sizes *s = ud;
    xpb_arena_reset(s->arena);
    xpb_stanza *st = NULL;
    char err[256];
    s->n++;
    s->record += r->record_len;
    size_t before = s->xml_buf.len;
    if (xpb_stanza_unpack(s->arena, r->record, r->record_len, NULL, &st, err, sizeof err) ||
        xpb_stanza_to_xml_prechecked(&s->xml_buf, st, "jabber:client", NULL, err, sizeof err)) {
        s->failed++;
        return 0;
    }
    s->xml += s->xml_buf.len - before;
    if (s->xml_buf.len >= STATS_CHUNK) deflate_pending(s, Z_NO_FLUSH);
    return 0;
}

static int64_t scalar(xa_db *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(xa_db_sqlite(db), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void print_groups(xa_db *db, const char *sql, const char *title, bool json, bool *first)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(xa_db_sqlite(db), sql, -1, &st, NULL) != SQLITE_OK) return;
    if (json)
        printf("%s\"%s\":[", *first ? "" : ",", title);
    else
        printf("%s\n", title);
    *first = false;
    for (int i = 0; sqlite3_step(st) == SQLITE_ROW; i++) {
        const char *acc = (const char *)sqlite3_column_text(st, 0);
        const char *conv = (const char *)sqlite3_column_text(st, 1);
        int64_t n = sqlite3_column_int64(st, 2);
        /* JIDs hold no '"' or '\' (RFC 7622 §3.3.1; resources aside, which are not here). */
        if (json)
            printf("%s{\"account\":\"%s\"%s%s%s,\"messages\":%" PRId64 "}", i ? "," : "", acc,
                   conv ? ",\"conversation\":\"" : "", conv ? conv : "", conv ? "\"" : "", n);
        else
            printf("    %10" PRId64 "  %s%s%s\n", n, acc, conv ? "  " : "", conv ? conv : "");
    }
    if (json) putchar(']');
    sqlite3_finalize(st);
}

static void print_sizes(const sizes *s, int64_t file, int64_t changes, bool json)
{
    double x = s->xml ? (double)s->xml : 1;
    if (json) {
        printf(",\"stanzas\":%" PRIu64 ",\"changes\":%" PRId64 ",\"messages\":%" PRIu64
               ",\"record_bytes\":%" PRIu64 ",\"file_bytes\":%" PRId64 ",\"xml_bytes\":%" PRIu64
               ",\"xml_deflated_bytes\":%" PRIu64 "}\n",
               s->n, changes, s->n - (uint64_t)changes, s->record, file, s->xml, s->deflated);
        return;
    }
    printf("storage (%" PRIu64 " stanzas: %" PRIu64 " messages and %" PRId64 " changes)\n",
           s->n, s->n - (uint64_t)changes, changes);
    printf("    %12" PRIu64 " B  records (xpb.v1.Stanza)          %.3f of XML\n", s->record,
           (double)s->record / x);
    printf("    %12" PRId64 " B  database file (indexes, FTS5)    %.3f of XML\n", file,
           (double)file / x);
    printf("    %12" PRIu64 " B  the same stanzas as XML          1.000\n", s->xml);
    printf("    %12" PRIu64 " B  that XML deflated (zlib, 6)      %.3f of XML\n", s->deflated,
           (double)s->deflated / x);
}

static int run_stats(const xpbctl_command *cmd, const xpbctl_globals *g, void *argp)
{
    (void)cmd;
    (void)g;
    const stats_args *a = argp;
    xa_db *db = xa_cmd_open("stats", a->db, XA_OPEN_READ);
    if (!db) return XA_EXIT_FAIL;
    sizes s = {0};
    xpb_buf_init(&s.xml_buf, 0);
    s.arena = xpb_arena_new(64 * 1024);
    char err[XA_ERR_MAX] = "out of memory";
    int rc = s.arena && deflateInit(&s.z, 6) == Z_OK ? 0 : -1;
    xa_filter f = {.changes = true};
    if (!rc) rc = xa_each(db, &f, add_row, &s, err, sizeof err);
    if (!rc) deflate_pending(&s, Z_FINISH);
    deflateEnd(&s.z);
    if (!rc) {
        bool first = true;
        if (a->json) putchar('{');
        print_groups(db,
                     "SELECT account, NULL, count(*) FROM message WHERE kind = 0 GROUP BY 1 "
                     "ORDER BY 1",
                     a->json ? "accounts" : "messages per account", a->json, &first);
        print_groups(db,
                     "SELECT account, conversation, count(*) FROM message WHERE kind = 0 "
                     "GROUP BY 1, 2 ORDER BY 1, 3 DESC",
                     a->json ? "conversations" : "messages per conversation", a->json, &first);
        int64_t file = scalar(db, "SELECT page_count * page_size FROM pragma_page_count(), "
                                  "pragma_page_size()");
        print_sizes(&s, file, scalar(db, "SELECT count(*) FROM message WHERE kind <> 0"), a->json);
    } else {
        fprintf(stderr, "xpb-archive: stats: %s\n", err);
    }
    if (s.failed) fprintf(stderr, "xpb-archive: stats: %d records could not be written as XML\n", s.failed);
    xpb_arena_free(s.arena);
    xpb_buf_free(&s.xml_buf);
    xa_db_close(db);
    return rc || fflush(stdout) ? XA_EXIT_FAIL : XA_EXIT_OK;
}

const xpbctl_command xa_cmd_stats = {
    .page =
        {
            .name = "stats",
            .summary = "messages per account and conversation; storage against XML",
            .usage = "xpb-archive stats --db FILE [--json]",
            .synopsis = "    xpb-archive stats --db FILE [--json]\n",
            .description =
                "    Prints how many messages each account and each conversation holds\n"
                "    (corrections and retractions are not counted as messages), then the\n"
                "    bytes the archive takes against the same stanzas as XML: the records\n"
                "    alone, the whole database file (indexes and the FTS5 index included),\n"
                "    the XML the codec writes for each stanza, and that XML compressed as\n"
                "    one stream with zlib at level 6 (what an XML archive on a compressing\n"
                "    store would take).\n",
            .exit_status = XA_EXIT_STATUS,
            .examples = "    xpb-archive stats --db archive.db\n",
        },
    .opts = stats_opts,
    .args_size = sizeof(stats_args),
    .run = run_stats,
};
