/* The process's logger (xpb_log.h): one line per entry, so text from a server
 * cannot forge a line; the executable chooses the file, modules only log. */
#define _DEFAULT_SOURCE
#include "xpb_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct {
    int level;
    FILE *out; /* NULL: stderr */
} g_log = {XPB_LOG_INFO, NULL};

void xpb_log_set_level(int level)
{
    g_log.level = level;
}

int xpb_log_enabled(int level)
{
    return level >= g_log.level;
}

void xpb_log(int level, const char *fmt, ...)
{
    if (level < g_log.level) return;
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One line per entry: a newline in server-supplied text must not forge one. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    FILE *f = g_log.out ? g_log.out : stderr;
    fprintf(f, "%s %s %s\n", ts, names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
    fflush(f);
}

int xpb_log_open_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    FILE *f = fd >= 0 ? fdopen(fd, "a") : NULL;
    if (!f) {
        snprintf(err, errlen, "cannot open log file %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    xpb_log_close_file();
    g_log.out = f;
    return 0;
}

void xpb_log_close_file(void)
{
    if (g_log.out) fclose(g_log.out);
    g_log.out = NULL;
}
