/* The process's logger (xpb_log.h): one line per entry, so text from a server
 * cannot forge a line; the executable chooses the file, modules only log.
 * When stderr is the systemd journal, lines carry sd-daemon(3) "<N>" priority
 * prefixes instead of timestamps (the journal stamps them itself). */
#define _DEFAULT_SOURCE
#include "xpb_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct {
    int level;
    FILE *out;     /* NULL: stderr */
    char *path;    /* of out, for xpb_log_reopen */
    int journal;   /* stderr is the journal: "<N>" prefixes, no timestamp */
} g_log = {XPB_LOG_INFO, NULL, NULL, 0};

/* systemd sets JOURNAL_STREAM=DEV:INODE for the stream it connects to the
 * journal (systemd.exec(5)); stderr is that stream when both match. */
static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(2, &st) != 0) return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void xpb_log_init(void)
{
    g_log.journal = stderr_is_journal();
}

int xpb_log_to_journal(void)
{
    return g_log.journal && !g_log.out;
}

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
    int l = level < 0 ? 0 : level > 3 ? 3 : level;
    if (xpb_log_to_journal()) {
        static const int prio[] = {7, 6, 4, 3}; /* LOG_DEBUG, INFO, WARNING, ERR */
        fprintf(stderr, "<%d>%s\n", prio[l], msg);
        return;
    }
    FILE *f = g_log.out ? g_log.out : stderr;
    fprintf(f, "%s %s %s\n", ts, names[l], msg);
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
    char *keep = strdup(path);
    if (!keep) {
        fclose(f);
        snprintf(err, errlen, "cannot open log file %s: out of memory", path);
        return -1;
    }
    xpb_log_close_file();
    g_log.out = f;
    g_log.path = keep;
    return 0;
}

int xpb_log_reopen(char *err, size_t errlen)
{
    if (!g_log.path) return 0;
    char *path = strdup(g_log.path);
    int rc = path ? xpb_log_open_file(path, err, errlen) : -1;
    if (!path) snprintf(err, errlen, "cannot reopen the log file: out of memory");
    free(path);
    return rc;
}

void xpb_log_close_file(void)
{
    if (g_log.out) fclose(g_log.out);
    g_log.out = NULL;
    free(g_log.path);
    g_log.path = NULL;
}
