/* `xpb-archive run`'s figures: a progress line while catching up (on a
 * terminal, or with --progress), rewritten at most once a second, and the
 * same figures as one line on SIGUSR1 and at exit. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "xa_cmd.h"

struct xa_progress {
    bool show, drawn, tty;
    double start, last_tick, last_rate_t;
    uint64_t last_rate_n;
    double rate; /* messages stored per second over the last interval */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

xa_progress *xa_progress_new(bool show)
{
    xa_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->show = show;
    p->tty = isatty(2);
    p->start = p->last_tick = p->last_rate_t = now_s();
    return p;
}

static uint64_t written(const xa_counts *c)
{
    return c->stored + c->changes;
}

static void update_rate(xa_progress *p, const xa_counts *c, double t)
{
    if (t - p->last_rate_t < 0.5) return;
    p->rate = (double)(written(c) - p->last_rate_n) / (t - p->last_rate_t);
    p->last_rate_n = written(c);
    p->last_rate_t = t;
}

static void line(const xa_progress *p, const xa_counts *c, uint64_t seq, uint64_t newest,
                 const char *end)
{
    uint64_t behind = newest > seq ? newest - seq : 0;
    fprintf(stderr,
            "xpb-archive: %" PRIu64 " messages stored, %" PRIu64 " duplicates, %" PRIu64
            " changes (%" PRIu64 " linked), %" PRIu64 " events; %.0f msgs/s; seq %" PRIu64
            ", %" PRIu64 " behind%s",
            c->stored, c->duplicates, c->changes, c->linked, c->events, p->rate, seq, behind,
            end);
}

void xa_progress_tick(xa_progress *p, const xa_counts *c, uint64_t seq, uint64_t newest)
{
    if (!p) return;
    double t = now_s();
    if (t - p->last_tick < 1.0) return;
    p->last_tick = t;
    update_rate(p, c, t);
    if (!p->show) return;
    if (newest <= seq && !p->drawn) return; /* caught up: no line to draw */
    if (!p->tty) {
        line(p, c, seq, newest, "\n");
        return;
    }
    line(p, c, seq, newest, newest > seq ? "\033[K\r" : "\033[K\n");
    p->drawn = newest > seq;
}

void xa_progress_report(xa_progress *p, const xa_counts *c, uint64_t seq, uint64_t newest)
{
    if (!p) return;
    update_rate(p, c, now_s());
    if (p->drawn) fputc('\n', stderr);
    p->drawn = false;
    line(p, c, seq, newest, "\n");
}

void xa_progress_free(xa_progress *p)
{
    free(p);
}
