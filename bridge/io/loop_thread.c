/* A loop on a thread of its own (xpb_loop.h, "loop threads"): the worker
 * loops of several loops. The thread runs xpb_loop_run until told to stop
 * through the loop's mailbox, which also keeps the loop from running out of
 * work while it waits for its first session. */
#include <pthread.h>
#include <stdlib.h>

#include "xpb_error.h"
#include "xpb_loop.h"

struct xpb_loop_thread {
    xpb_loop *l;
    xpb_mailbox *mail;
    pthread_t th;
    int rc;
};

static void *thread_main(void *arg)
{
    xpb_loop_thread *t = arg;
    t->rc = xpb_loop_run(t->l);
    return NULL;
}

int xpb_loop_thread_start(xpb_loop *l, xpb_loop_thread **out)
{
    if (!l || !out) return XPB_EINVAL;
    xpb_loop_thread *t = calloc(1, sizeof *t);
    if (!t) return XPB_ENOMEM;
    t->l = l;
    int rc = xpb_mailbox_new(l, &t->mail);
    if (rc == 0 && pthread_create(&t->th, NULL, thread_main, t) != 0) {
        xpb_mailbox_free(t->mail);
        rc = XPB_ENOMEM;
    }
    if (rc != 0) {
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

xpb_mailbox *xpb_loop_thread_mailbox(xpb_loop_thread *t)
{
    return t->mail;
}

static void stop_loop(void *arg)
{
    xpb_loop_stop(arg);
}

int xpb_loop_thread_stop(xpb_loop_thread *t)
{
    if (!t) return 0;
    /* Posted after everything posted before it: those run first. A full
     * mailbox cannot refuse the stop: wait for room. */
    xpb_mailbox_post_wait(t->mail, stop_loop, NULL, t->l);
    pthread_join(t->th, NULL);
    xpb_mailbox_free(t->mail); /* the loop is done: dropped, not run */
    int rc = t->rc;
    free(t);
    return rc;
}
