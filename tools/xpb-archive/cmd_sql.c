/* `xpb-archive sql`: one read-only SQL query over the archive, with what
 * plain sqlite3 cannot give: the view `message` with its `body` (read from
 * the deflated record by xpb_body(), docs/archive.md "Reading it with SQL"). */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "output.h"
#include "xa_cmd.h"
#include "xa_json.h"

#define SQL_MAX 65536 /* bytes of a query */

typedef struct sql_args {
    const char *db, *query;
    bool json;
} sql_args;

static const xpbctl_opt sql_opts[] = {
    XA_DB_OPT(sql_args),
    {.name = "--json",
     .kind = XPBCTL_FLAG,
     .offset = XPBCTL_AT(sql_args, json),
     .help = "one JSON object per row (column names as keys)"},
    {.kind = XPBCTL_WORD,
     .arg = "QUERY",
     .required = true,
     .offset = XPBCTL_AT(sql_args, query),
     .help = "one SELECT (quote it)"},
    {0},
};

/* A row as one JSON object: numbers as numbers, blobs as hex strings. */
static void row_json(sqlite3_stmt *st, xpb_buf *b)
{
    int n = sqlite3_column_count(st);
    b->len = 0;
    xpb_buf_append(b, "{", 1);
    for (int i = 0; i < n; i++) {
        const char *name = sqlite3_column_name(st, i);
        int type = sqlite3_column_type(st, i);
        const char *v = (const char *)sqlite3_column_text(st, i);
        if (type == SQLITE_INTEGER || type == SQLITE_FLOAT) {
            xa_json_key(b, name, i > 0);
            xpb_buf_append_str(b, v);
        } else if (type == SQLITE_BLOB) {
            const unsigned char *p = sqlite3_column_blob(st, i);
            int len = sqlite3_column_bytes(st, i);
            char hex[2 * 64 + 1];
            int k = 0;
            for (int j = 0; j < len && j < 64; j++)
                k += snprintf(hex + k, sizeof hex - (size_t)k, "%02x", p[j]);
            hex[k] = '\0';
            xa_json_str(b, name, hex, i > 0);
        } else {
            xa_json_str(b, name, v, i > 0);
        }
    }
    xpb_buf_append(b, "}\n", 2);
    fwrite(b->data, 1, b->len, stdout);
}

/* A row as tab-separated values, control characters made spaces. */
static void row_text(sqlite3_stmt *st)
{
    for (int i = 0; i < sqlite3_column_count(st); i++) {
        if (i) putchar('\t');
        if (sqlite3_column_type(st, i) == SQLITE_NULL)
            fputs("NULL", stdout);
        else
            ctl_put_clean((const char *)sqlite3_column_text(st, i), SQL_MAX);
    }
    putchar('\n');
}

/* Only one statement, and one that writes nothing (the file is opened
 * read-only anyway; this also keeps the TEMP schema as it is). */
static int prepare(xa_db *db, const char *q, sqlite3_stmt **st, char *err, size_t errlen)
{
    const char *tail = NULL;
    int rc = sqlite3_prepare_v2(xa_db_sqlite(db), q, -1, st, &tail);
    if (rc != SQLITE_OK) return xa_db_error(db, rc, "the query", err, errlen);
    if (!*st) {
        snprintf(err, errlen, "the query holds no statement");
        return XA_EINVAL;
    }
    if (tail && tail[strspn(tail, " \t\r\n;")]) {
        snprintf(err, errlen, "one statement only (text after the first `;`)");
        return XA_EINVAL;
    }
    if (!sqlite3_stmt_readonly(*st)) {
        snprintf(err, errlen, "only queries that write nothing (SELECT, WITH ... SELECT)");
        return XA_EINVAL;
    }
    return 0;
}

static int run_sql(const xpbctl_command *cmd, const xpbctl_globals *g, void *argp)
{
    (void)cmd;
    (void)g;
    const sql_args *a = argp;
    xa_db *db = xa_cmd_open("sql", a->db, XA_OPEN_READ);
    if (!db) return XA_EXIT_FAIL;
    char err[XA_ERR_MAX];
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, a->query, &st, err, sizeof err);
    xpb_buf b;
    xpb_buf_init(&b, 0);
    int s = SQLITE_DONE;
    while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if (a->json)
            row_json(st, &b);
        else
            row_text(st);
    }
    if (!rc && s != SQLITE_DONE) rc = xa_db_error(db, s, "the query", err, sizeof err);
    xpb_buf_free(&b);
    sqlite3_finalize(st);
    xa_db_close(db);
    if (rc) fprintf(stderr, "xpb-archive: sql: %s\n", err);
    if (fflush(stdout) || ferror(stdout)) rc = -1;
    return rc ? XA_EXIT_FAIL : XA_EXIT_OK;
}

const xpbctl_command xa_cmd_sql = {
    .page =
        {
            .name = "sql",
            .summary = "run one read-only SQL query (with the messages' bodies)",
            .usage = "xpb-archive sql --db FILE [--json] QUERY",
            .synopsis = "    xpb-archive sql --db FILE [--json] QUERY\n",
            .description =
                "    Runs QUERY, one SELECT, on the archive opened read-only and prints\n"
                "    its rows, tab-separated (NULL for a null) or with --json one object\n"
                "    per row. Bodies are kept only inside the deflated records, so plain\n"
                "    sqlite3 sees the view `message` without its `body` column; here\n"
                "    `message` has it, and the function xpb_body(rec) reads the body of\n"
                "    any record (the tables and the view are in docs/archive.md).\n",
            .exit_status = XA_EXIT_STATUS,
            .examples =
                "    xpb-archive sql --db archive.db \\\n"
                "        \"SELECT time_us, sender, body FROM message WHERE conversation =\n"
                "         'alice@example.com' ORDER BY time_us DESC LIMIT 10\"\n"
                "    xpb-archive sql --db archive.db --json \"SELECT * FROM message WHERE\n"
                "         body LIKE '%invoice%'\"\n",
        },
    .opts = sql_opts,
    .args_size = sizeof(sql_args),
    .run = run_sql,
};
