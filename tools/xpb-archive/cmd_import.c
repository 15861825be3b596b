/* `xpb-archive import`: loads a pb export (length-delimited xpb.v1.Event
 * records) through the same path as `run`, so what is there already is not
 * stored again. One transaction: a broken file stores nothing. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xa_cmd.h"
#include "xpb_error.h"

#define IMPORT_MAX_RECORD (16u * 1024u * 1024u) /* bytes of one Event: a stanza's limit and more */

typedef struct import_args {
    const char *db, *file;
} import_args;

static const xpbctl_opt import_opts[] = {
    XA_DB_OPT(import_args),
    {.kind = XPBCTL_WORD,
     .arg = "FILE",
     .required = true,
     .offset = XPBCTL_AT(import_args, file),
     .help = "the export to load (`xpb-archive export --format pb`);\n"
             "- for standard input"},
    {0},
};

static int read_all(const char *path, xpb_buf *b)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "xpb-archive: import: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = xpb_buf_append(b, chunk, n);
    if (ferror(f) || rc) {
        fprintf(stderr, "xpb-archive: import: %s: %s\n", path,
                rc ? xpb_strerror(rc) : strerror(errno));
        rc = -1;
    }
    if (f != stdin) fclose(f);
    return rc;
}

/* Every frame of the file into the open transaction; -1 with the reason
 * printed when a frame is broken. */
static int ingest_all(xa_db *db, const import_args *a, const xpb_buf *b, xa_counts *c)
{
    xpb_arena *arena = xpb_arena_new(64 * 1024);
    char err[XA_ERR_MAX] = "";
    size_t off = 0, n = 0;
    int rc = arena ? 0 : -1;
    while (!rc && off < b->len) {
        const uint8_t *frame;
        size_t flen, used;
        const uint8_t *p = (const uint8_t *)b->data + off;
        int d = xpb_delim_next(p, b->len - off, IMPORT_MAX_RECORD, &frame, &flen, &used);
        /* Checked on the wire (depth, NUL), unpacked into the arena. */
        Xpb__V1__Event *ev = d == 0 ? xa_event_unpack(arena, frame, flen, err, sizeof err) : NULL;
        n++;
        if (!ev) {
            fprintf(stderr,
                    "xpb-archive: import: %s: record %zu at byte %zu is %s%s%s: nothing "
                    "imported\n",
                    a->file, n, off,
                    d == 1 ? "cut short" : d ? "not a length-delimited record" : "not an xpb.v1.Event",
                    d == 0 ? ": " : "", d == 0 ? err : "");
            rc = -1;
            break;
        }
        uint64_t refused = c->refused;
        rc = xa_ingest_owned(db, arena, ev, c, err, sizeof err);
        xpb_arena_reset(arena);
        if (rc) fprintf(stderr, "xpb-archive: import: %s: nothing imported\n", err);
        if (!rc && c->refused > refused) {
            fprintf(stderr, "xpb-archive: import: %s: record %zu: %s: nothing imported\n",
                    a->file, n, err);
            rc = -1;
        }
        off += used;
    }
    xpb_arena_free(arena);
    return rc;
}

static int run_import(const xpbctl_command *cmd, const xpbctl_globals *g, void *argp)
{
    (void)cmd;
    (void)g;
    const import_args *a = argp;
    xpb_buf b;
    xpb_buf_init(&b, 0);
    if (read_all(a->file, &b)) {
        xpb_buf_free(&b);
        return XA_EXIT_FAIL;
    }
    xa_db *db = xa_cmd_open("import", a->db, XA_OPEN_CREATE);
    char err[XA_ERR_MAX];
    xa_counts c = {0};
    int rc = db ? xa_db_begin(db, err, sizeof err) : -1;
    if (db && rc) fprintf(stderr, "xpb-archive: import: %s\n", err);
    if (!rc) rc = ingest_all(db, a, &b, &c);
    if (!rc && (rc = xa_db_commit_plain(db, err, sizeof err)))
        fprintf(stderr, "xpb-archive: import: %s: nothing imported\n", err);
    if (rc && db) xa_db_rollback(db);
    if (!rc)
        printf("imported %" PRIu64 " messages and %" PRIu64 " changes; %" PRIu64
               " were there already\n",
               c.stored, c.changes, c.duplicates);
    xa_db_close(db);
    xpb_buf_free(&b);
    return rc ? XA_EXIT_FAIL : XA_EXIT_OK;
}

const xpbctl_command xa_cmd_import = {
    .page =
        {
            .name = "import",
            .summary = "load a pb export into the archive",
            .usage = "xpb-archive import --db FILE EXPORT",
            .synopsis = "    xpb-archive import --db FILE EXPORT\n",
            .description =
                "    Reads EXPORT (length-delimited xpb.v1.Event records, as `export\n"
                "    --format pb` writes them; - for standard input) and stores its\n"
                "    messages the way `run` does: what the archive holds already is not\n"
                "    stored again, corrections and retractions are linked. The resume\n"
                "    point is not touched. One transaction: a broken or refused record\n"
                "    stores nothing (the message names the record and its byte offset).\n",
            .exit_status = XA_EXIT_STATUS,
            .examples = "    xpb-archive export --db old.db --format pb | xpb-archive import --db "
                        "new.db -\n",
        },
    .opts = import_opts,
    .args_size = sizeof(import_args),
    .run = run_import,
};
