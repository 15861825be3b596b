/* The process's logger, at the bottom of bridge/: every module may call it and
 * it calls nothing above it. One line per entry, "TIMESTAMP LEVEL TEXT" (UTC),
 * to stderr or to the file the executable chooses. Never pass credentials. */
#ifndef XPB_LOG_H
#define XPB_LOG_H

#include <stddef.h>

enum { XPB_LOG_DEBUG = 0, XPB_LOG_INFO = 1, XPB_LOG_WARN = 2, XPB_LOG_ERROR = 3 };

void xpb_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void xpb_log_set_level(int level);
int xpb_log_enabled(int level);
/* Append to path (created 0640) instead of stderr; replaces an earlier file.
 * 0, or -1 with err filled. */
int xpb_log_open_file(const char *path, char *err, size_t errlen);
/* Back to stderr; closes the file. */
void xpb_log_close_file(void);
/* Closes and opens the file again (SIGUSR1, after logrotate moved it); the
 * old file stays in use when the new one cannot be opened. 0 or -1 with err. */
int xpb_log_reopen(char *err, size_t errlen);
/* Looks at JOURNAL_STREAM once at start-up: when stderr is the journal, lines
 * to stderr get "<N>" priority prefixes and no timestamp. */
void xpb_log_init(void);
int xpb_log_to_journal(void);

#endif
