/* `xpb-archive prune` (retention: messages older than N days go, with
 * their corrections and retractions and their index entries) and
 * `xpb-archive vacuum` (gives the freed pages back to the file system). */
#include <inttypes.h>
#include <stdio.h>

#include <sqlite3.h>

#include "xa_cmd.h"

typedef struct prune_args {
    const char *db;
    xpbctl_num keep_days;
} prune_args;

static const xpbctl_opt prune_opts[] = {
    XA_DB_OPT(prune_args),
    {.name = "--keep-days",
     .arg = "N",
     .kind = XPBCTL_NUM,
     .min = 1,
     .max = 365000,
     .unit = "days",
     .required = true,
     .offset = XPBCTL_AT(prune_args, keep_days),
     .help = "keep the messages of the last N days"},
    {0},
};

static int run_prune(const xpbctl_command *cmd, const xpbctl_globals *g, void *argp)
{
    (void)cmd;
    (void)g;
    const prune_args *a = argp;
    xa_db *db = xa_cmd_open("prune", a->db, XA_OPEN_WRITE);
    if (!db) return XA_EXIT_FAIL;
    char err[XA_ERR_MAX];
    uint64_t n = 0;
    int rc = xa_db_begin(db, err, sizeof err);
    if (!rc) rc = xa_prune(db, xa_keep_cutoff(&a->keep_days), &n, err, sizeof err);
    if (!rc) rc = xa_db_commit_plain(db, err, sizeof err);
    if (rc) {
        xa_db_rollback(db);
        fprintf(stderr, "xpb-archive: prune: %s: nothing pruned\n", err);
    } else {
        printf("pruned %" PRIu64 " messages older than %lld days\n", n, a->keep_days.v);
    }
    xa_db_close(db);
    return rc ? XA_EXIT_FAIL : XA_EXIT_OK;
}

typedef struct vacuum_args {
    const char *db;
} vacuum_args;

static const xpbctl_opt vacuum_opts[] = {XA_DB_OPT(vacuum_args), {0}};

static int run_vacuum(const xpbctl_command *cmd, const xpbctl_globals *g, void *argp)
{
    (void)cmd;
    (void)g;
    const vacuum_args *a = argp;
    xa_db *db = xa_cmd_open("vacuum", a->db, XA_OPEN_WRITE);
    if (!db) return XA_EXIT_FAIL;
    char err[XA_ERR_MAX];
    int rc = sqlite3_exec(xa_db_sqlite(db), "INSERT INTO fts(fts) VALUES ('optimize'); VACUUM; "
                                            "PRAGMA wal_checkpoint(TRUNCATE)",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        xa_db_error(db, rc, "vacuum", err, sizeof err);
        fprintf(stderr, "xpb-archive: vacuum: %s\n", err);
    }
    xa_db_close(db);
    return rc == SQLITE_OK ? XA_EXIT_OK : XA_EXIT_FAIL;
}

const xpbctl_command xa_cmd_prune = {
    .page =
        {
            .name = "prune",
            .summary = "delete messages older than N days",
            .usage = "xpb-archive prune --db FILE --keep-days N",
            .synopsis = "    xpb-archive prune --db FILE --keep-days N\n",
            .description =
                "    Deletes the messages whose time (delay stamp, else arrival) is more\n"
                "    than N days ago, with their corrections, retractions and index\n"
                "    entries, in one transaction. The file keeps its size until `vacuum`.\n"
                "    `run --keep-days N` does the same every hour and refuses older\n"
                "    messages on arrival.\n",
            .exit_status = XA_EXIT_STATUS,
            .examples = "    xpb-archive prune --db archive.db --keep-days 365\n",
        },
    .opts = prune_opts,
    .args_size = sizeof(prune_args),
    .run = run_prune,
};

const xpbctl_command xa_cmd_vacuum = {
    .page =
        {
            .name = "vacuum",
            .summary = "compact the database file",
            .usage = "xpb-archive vacuum --db FILE",
            .synopsis = "    xpb-archive vacuum --db FILE\n",
            .description =
                "    Merges the FTS5 index (optimize), rewrites the file without its free\n"
                "    pages (VACUUM) and truncates the WAL. It needs free space about the\n"
                "    size of the database and blocks `run` while it works.\n",
            .exit_status = XA_EXIT_STATUS,
            .examples = "    xpb-archive vacuum --db archive.db\n",
        },
    .opts = vacuum_opts,
    .args_size = sizeof(vacuum_args),
    .run = run_vacuum,
};
