/* xpb-archive's commands: each cmd_*.c defines one (an xpbctl_command: help
 * page, option table, run function; the option parser and the bus client
 * are the library xpbctl links too). main.c dispatches. */
#ifndef XPB_ARCHIVE_CMD_H
#define XPB_ARCHIVE_CMD_H

#include <stdint.h>

#include "archive.h"
#include "xpbctl.h"

#define XA_EXIT_OK 0
#define XA_EXIT_FAIL 1  /* a refused database or input, an error while working */
#define XA_EXIT_USAGE 2

extern const xpbctl_command xa_cmd_run, xa_cmd_search, xa_cmd_export, xa_cmd_import, xa_cmd_stats,
    xa_cmd_prune, xa_cmd_vacuum, xa_cmd_sql;

/* The --db option of every command (its table entry). */
#define XA_DB_OPT(type)                                                                            \
    {.name = "--db",                                                                               \
     .arg = "FILE",                                                                                \
     .kind = XPBCTL_STR,                                                                           \
     .min = 1,                                                                                     \
     .max = 4096,                                                                                  \
     .required = true,                                                                             \
     .offset = XPBCTL_AT(type, db),                                                                \
     .help = "the archive database (SQLite)"}

/* The EXIT STATUS text shared by the commands. */
#define XA_EXIT_STATUS                                                                             \
    "    0  success\n"                                                                             \
    "    1  the database was refused (missing, not an archive, damaged, from a\n"                  \
    "       newer xpb-archive, read-only, disk full) or an input was; the reason\n"                \
    "       is printed on standard error and nothing was written\n"                                \
    "    2  usage error\n"

/* Opens --db, printing "xpb-archive: CMD: reason" on failure; NULL then. */
xa_db *xa_cmd_open(const char *cmd, const char *path, xa_mode mode);
/* --with/--account: a bare JID (the option table's check). */
const char *xa_bare_check(const char *v);
/* --since/--until: a date (YYYY-MM-DD, midnight UTC) or an XEP-0082
 * date-time; the option table's check and the conversion. */
const char *xa_time_check(const char *v);
int64_t xa_time_value(const char *v);
/* --keep-days N as a cutoff in microseconds (0 when not set). */
int64_t xa_keep_cutoff(const xpbctl_num *days);

/* progress.c: the catching-up line and the SIGUSR1 figures of `run`. */
typedef struct xa_progress xa_progress;
xa_progress *xa_progress_new(bool show);
/* Called often; prints at most once a second. seq: the last stored,
 * newest: the newest the bridge has (0: unknown). */
void xa_progress_tick(xa_progress *p, const xa_counts *c, uint64_t seq, uint64_t newest);
/* The figures as one line (SIGUSR1, and at exit). */
void xa_progress_report(xa_progress *p, const xa_counts *c, uint64_t seq, uint64_t newest);
void xa_progress_free(xa_progress *p);

#endif
