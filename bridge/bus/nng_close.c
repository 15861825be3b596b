/* nng_close with a bound (xpb_nng_close.h): the close runs on a detached
 * thread; the caller waits on a condition variable with a deadline. The
 * shared record is freed by whichever side lets go of it last. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "xpb_nng_close.h"

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    nng_socket s;
    int done;
    int refs; /* the closing thread and the waiter */
} closing;

static atomic_ulong stuck_closes;

static void let_go(closing *c)
{
    pthread_mutex_lock(&c->mu);
    int last = --c->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (!last) return;
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void *close_thread(void *arg)
{
    closing *c = arg;
    nng_close(c->s);
    pthread_mutex_lock(&c->mu);
    c->done = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    let_go(c);
    return NULL;
}

static int start(closing *c)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca)) return NNG_ENOMEM;
    int rv = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) || pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rv) return NNG_ENOMEM;
    if (pthread_mutex_init(&c->mu, NULL)) {
        pthread_cond_destroy(&c->cv);
        return NNG_ENOMEM;
    }
    pthread_attr_t ta;
    pthread_t t;
    rv = pthread_attr_init(&ta);
    if (!rv) {
        pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
        rv = pthread_create(&t, &ta, close_thread, c);
        pthread_attr_destroy(&ta);
    }
    if (rv) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        return NNG_ENOMEM;
    }
    return 0;
}

int xpb_nng_close_bounded(nng_socket s, unsigned ms)
{
    closing *c = calloc(1, sizeof(*c));
    if (c) {
        c->s = s;
        c->refs = 2;
    }
    int rv = c ? start(c) : NNG_ENOMEM;
    if (rv) {
        free(c);
        nng_close(s);
        return rv;
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ms / 1000u);
    until.tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    while (!c->done && pthread_cond_timedwait(&c->cv, &c->mu, &until) != ETIMEDOUT) {
    }
    int done = c->done;
    pthread_mutex_unlock(&c->mu);
    let_go(c);
    if (done) return 0;
    atomic_fetch_add(&stuck_closes, 1);
    return XPB_NNG_CLOSE_STUCK;
}

unsigned long xpb_nng_close_stuck_count(void)
{
    return atomic_load(&stuck_closes);
}
