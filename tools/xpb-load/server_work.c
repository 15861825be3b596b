/* The test server's work on one session (server_internal.h): a flood writes
 * pool stanzas as fast as the socket takes them; a trickle writes stamped
 * messages at a set rate. Commands come from the benchmark's thread under the
 * server's mutex and wake the loop. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "server_internal.h"

static void put_pool_item(lsrv *s, lconn *c)
{
    const lpool_item *p = &s->pool[c->pool_i++ % s->n_pool];
    /* No printf per stanza: the flood's server shares the 2 cores with the
     * bridge it measures. */
    static const char at_domain[] = "@" LOAD_DOMAIN;
    lconn_append(c, p->xml, p->to_off);
    lconn_append(c, c->user, strlen(c->user));
    lconn_append(c, at_domain, sizeof at_domain - 1);
    lconn_append(c, p->xml + p->to_end, p->len - p->to_end);
}

/* The id carries the send time: the subscriber subtracts it on arrival. */
static void put_stamped(lconn *c, uint64_t now)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf),
                     "<message xmlns='jabber:client' type='chat' from='peer@" LOAD_DOMAIN
                     "/lt' to='%s@" LOAD_DOMAIN "' id='lt-%" PRIu64
                     "'><body>latency probe</body></message>",
                     c->user, now);
    lconn_append(c, buf, (size_t)n);
}

static uint64_t due_now(const lconn *c, uint64_t now)
{
    if (c->rate <= 0) return c->work_left;
    uint64_t due = (uint64_t)((double)(now - c->t_start) * c->rate / 1e9) + 1;
    return due > c->work_done ? due - c->work_done : 0;
}

void lsrv_work_fill(lsrv *s, lconn *c)
{
    if (!c->working || c->work_left == 0) return;
    uint64_t now = load_now_ns(), due = due_now(c, now);
    if (due > c->work_left) due = c->work_left;
    if (due && !c->t_first) c->t_first = now;
    while (due && c->out_len - c->out_off < FILL_HIGH_BYTES) {
        if (c->rate > 0)
            put_stamped(c, load_now_ns());
        else
            put_pool_item(s, c);
        due--;
        c->work_left--;
        c->work_done++;
    }
    if (c->work_left == 0) {
        c->t_last = load_now_ns();
        lsrv_work_drop(s, c);
    }
}

int lsrv_trickling(const lsrv *s)
{
    for (size_t i = 0; i < s->n_work; i++)
        if (s->work[i]->rate > 0) return 1;
    return 0;
}

void lsrv_work_drop(lsrv *s, lconn *c)
{
    c->working = 0;
    for (size_t i = 0; i < s->n_work; i++)
        if (s->work[i] == c) s->work[i] = s->work[--s->n_work];
}

static lconn *find_bound(lsrv *s, const char *user)
{
    for (size_t i = 0; i < s->n_conns; i++)
        if (s->conns[i]->bound && !strcmp(s->conns[i]->user, user)) return s->conns[i];
    return NULL;
}

static int start_work(lsrv *s, const char *user, uint64_t n, double rate)
{
    pthread_mutex_lock(&s->mu);
    lconn *c = find_bound(s, user);
    int rc = c && (c->working || s->n_work < LSRV_MAX_WORK) ? 0 : -1;
    if (!rc) {
        if (!c->working) s->work[s->n_work++] = c;
        c->working = 1;
        c->work_left = n;
        c->work_done = 0;
        c->rate = rate;
        c->t_start = load_now_ns();
        c->t_first = c->t_last = 0;
    }
    pthread_mutex_unlock(&s->mu);
    if (!rc) lsrv_wake(s);
    return rc;
}

int lsrv_flood(lsrv *s, const char *user, uint64_t n)
{
    return start_work(s, user, n, 0);
}

int lsrv_trickle(lsrv *s, const char *user, uint64_t n, double rate)
{
    return start_work(s, user, n, rate > 0 ? rate : 1);
}

int lsrv_sent(lsrv *s, const char *user, uint64_t *t_first, uint64_t *t_last)
{
    pthread_mutex_lock(&s->mu);
    lconn *c = find_bound(s, user);
    int done = c && !c->working && c->out_off == c->out_len;
    if (c) {
        *t_first = c->t_first;
        *t_last = c->t_last;
    }
    pthread_mutex_unlock(&s->mu);
    return done;
}

uint64_t lsrv_received(lsrv *s, const char *user)
{
    uint64_t n = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n_conns; i++)
        if (!strcmp(s->conns[i]->user, user)) n += s->conns[i]->received;
    pthread_mutex_unlock(&s->mu);
    return n;
}
