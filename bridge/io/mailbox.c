/* Work handed to a loop from any thread (xpb_loop.h, "mailboxes"): a list
 * under a mutex, one xpb_wake to run it. The first piece of several loops
 * (docs/architecture.md, "Several loops"): worker loops and the daemon's
 * loop pass each other commands and events this way, never touching what
 * the other thread owns. Posting takes the mutex for a list append; the
 * loop swaps the whole list out under it and runs the items outside it, in
 * the order they were posted. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "xpb_error.h"
#include "xpb_loop.h"

typedef struct mail {
    struct mail *next;
    xpb_mail_fn run, drop;
    void *arg;
} mail;

struct xpb_mailbox {
    pthread_mutex_t mu;
    mail *head, **tail;
    size_t queued;
    xpb_wake *wake;
};

static mail *take_all(xpb_mailbox *m)
{
    pthread_mutex_lock(&m->mu);
    mail *list = m->head;
    m->head = NULL;
    m->tail = &m->head;
    m->queued = 0;
    pthread_mutex_unlock(&m->mu);
    return list;
}

/* On the loop's thread. What a run posts goes to the next round (a new wake),
 * so one round ends whatever the items do. */
static void on_mail(void *ud)
{
    for (mail *it = take_all(ud), *next; it; it = next) {
        next = it->next;
        it->run(it->arg);
        free(it);
    }
}

int xpb_mailbox_new(xpb_loop *l, xpb_mailbox **out)
{
    if (!l || !out) return XPB_EINVAL;
    xpb_mailbox *m = calloc(1, sizeof *m);
    if (!m) return XPB_ENOMEM;
    pthread_mutex_init(&m->mu, NULL);
    m->tail = &m->head;
    int rc = xpb_wake_new(l, on_mail, m, &m->wake);
    if (rc != 0) {
        pthread_mutex_destroy(&m->mu);
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int xpb_mailbox_post(xpb_mailbox *m, xpb_mail_fn run, xpb_mail_fn drop, void *arg)
{
    if (!m || !run) return XPB_EINVAL;
    mail *it = malloc(sizeof *it);
    if (!it) return XPB_ENOMEM;
    *it = (mail){.run = run, .drop = drop, .arg = arg};
    pthread_mutex_lock(&m->mu);
    int full = m->queued >= XPB_MAILBOX_MAX;
    if (!full) {
        *m->tail = it;
        m->tail = &it->next;
        m->queued++;
    }
    pthread_mutex_unlock(&m->mu);
    if (full) {
        free(it);
        return XPB_EQUEUEFULL;
    }
    xpb_wake_signal(m->wake);
    // cppcheck-suppress memleak ; `it` is on the mailbox's list (m->tail)
    return 0;
}

int xpb_mailbox_post_wait(xpb_mailbox *m, xpb_mail_fn run, xpb_mail_fn drop, void *arg)
{
    int rc;
    while ((rc = xpb_mailbox_post(m, run, drop, arg)) == XPB_EQUEUEFULL) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return rc;
}

size_t xpb_mailbox_queued(xpb_mailbox *m)
{
    pthread_mutex_lock(&m->mu);
    size_t n = m->queued;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void xpb_mailbox_free(xpb_mailbox *m)
{
    if (!m) return;
    xpb_wake_free(m->wake); /* no round runs after this */
    for (mail *it = take_all(m), *next; it; it = next) {
        next = it->next;
        if (it->drop) it->drop(it->arg);
        free(it);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}
