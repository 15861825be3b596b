/* The accounts in an array, oldest first, beside their list: /metrics walks
 * them a slice at a time (xpb_daemon_each_account_slice). Loads through an
 * array do not wait on one another as a list's next pointers do, and the
 * accounts and names a few steps ahead are prefetched: issue 10 measured the
 * list walk at 0.3-0.4 us an account, all of it waiting for memory. */
#include <stdatomic.h>
#include <stdlib.h>

#include "daemon_internal.h"
#include "xpb_error.h"

/* How many accounts ahead the walk prefetches an account, and half as many
 * its name (read through the account, which has arrived by then). */
#define WALK_PREFETCH 16u

int walk_reserve(xpb_daemon *d)
{
    if (d->walk_n < d->walk_cap) return 0;
    size_t cap = d->walk_cap ? 2 * d->walk_cap : 64;
    struct account **arr = realloc(d->walk_arr, cap * sizeof *arr);
    if (!arr) return XPB_ENOMEM;
    d->walk_arr = arr;
    d->walk_cap = cap;
    return 0;
}

void walk_add(xpb_daemon *d, struct account *a)
{
    d->walk_arr[d->walk_n++] = a; /* walk_reserve made room */
}

/* Before on_reap frees the dead accounts: they leave the array, and a walk
 * under way goes on where it was. */
void walk_drop_dead(xpb_daemon *d)
{
    size_t kept = 0, pos = d->walk_pos;
    for (size_t i = 0; i < d->walk_n; i++) {
        if (!d->walk_arr[i]->dead) d->walk_arr[kept++] = d->walk_arr[i];
        else if (i < d->walk_pos) pos--;
    }
    d->walk_n = kept;
    d->walk_pos = pos;
}

void walk_free(xpb_daemon *d)
{
    free(d->walk_arr);
    d->walk_arr = NULL;
    d->walk_n = d->walk_cap = d->walk_pos = 0;
}

static void prefetch_ahead(struct account *const *arr, size_t pos)
{
    if (pos > WALK_PREFETCH) {
        const char *far = (const char *)arr[pos - 1 - WALK_PREFETCH];
        __builtin_prefetch(far);
        __builtin_prefetch(far + 32); /* the fields visit_account reads may straddle a line */
    }
    if (pos > WALK_PREFETCH / 2) __builtin_prefetch(arr[pos - 1 - WALK_PREFETCH / 2]->name);
}

/* Reads the account alone: its session keeps a->gauges current. */
static int visit_account(struct account *a, xpb_daemon_account_fn cb, void *ud)
{
    if (!link_present(a) || a->dead) return 0;
    return cb(ud, a->name, atomic_load_explicit(&a->gauges.queued, memory_order_relaxed),
              atomic_load_explicit(&a->gauges.unacked, memory_order_relaxed));
}

/* Newest first: from the end of the array down; walk_pos accounts are left. */
int xpb_daemon_each_account_slice(xpb_daemon *d, int start, size_t max, xpb_daemon_account_fn cb,
                                  void *ud, int *more)
{
    if (start) d->walk_pos = d->walk_n;
    int rc = 0;
    for (size_t n = 0; d->walk_pos > 0 && n < max && !rc; n++) {
        prefetch_ahead(d->walk_arr, d->walk_pos);
        rc = visit_account(d->walk_arr[d->walk_pos - 1], cb, ud);
        if (rc < 0) d->walk_pos = 0;
        else if (rc == 0) d->walk_pos--; /* > 0: visited again next time */
    }
    *more = d->walk_pos > 0;
    return rc;
}
