/* Tests for xpb_nng_close_bounded (bridge/bus/nng_close.c): a subscriber
 * closed while a PUB floods it over ipc://. NNG 1.5.2 (Debian 12) hangs in
 * nng_close on most such closes (xpb_nng_close.h); the bounded close must
 * return every time, by the bound, and count the closes that passed it. With
 * a plain nng_close this test hangs, and ctest's timeout fails it. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

#include "xpb_nng_close.h"

#define CLOSES 20
#define BOUND_MS 250u
#define SLACK_MS 5000     /* a loaded CI machine: the bound plus this is "returned" */
#define FLOOD_MAX 200000u /* message sizes vary up to this: reads span several calls */

typedef struct {
    char dir[64];
    char url[128];
    nng_socket pub;
    pthread_t flooder;
    atomic_int stop;
} fixture;

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (long)(t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void *flood(void *arg)
{
    fixture *f = arg;
    static char buf[FLOOD_MAX];
    size_t n = 0;
    while (!atomic_load(&f->stop)) {
        size_t len = 64 + (n++ * 7919u) % (FLOOD_MAX - 64);
        nng_send(f->pub, buf, len, 0); /* PUB drops for a full pipe; never blocks */
    }
    return NULL;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/xpb-nngclose-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->url, sizeof f->url, "ipc://%s/ev", f->dir);
    if (nng_pub0_open(&f->pub) || nng_listen(f->pub, f->url, NULL, 0)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (f->flooder) {
        atomic_store(&f->stop, 1);
        pthread_join(f->flooder, NULL);
    }
    /* NNG's reaper may be stuck by now: the PUB's close is bounded too. */
    xpb_nng_close_bounded(f->pub, BOUND_MS);
    char path[160];
    snprintf(path, sizeof path, "%s/ev", f->dir);
    unlink(path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static nng_socket dial_sub(const fixture *f)
{
    nng_socket s;
    assert_int_equal(nng_sub0_open(&s), 0);
    assert_int_equal(nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, "", 0), 0);
    assert_int_equal(nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, FLOOD_MAX), 0);
    assert_int_equal(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000), 0);
    assert_int_equal(nng_dial(s, f->url, NULL, 0), 0);
    return s;
}

/* A socket with nothing connected closes at once: 0, nothing counted. */
static void idle_socket_closes_within_the_bound(void **state)
{
    (void)state;
    nng_socket s;
    assert_int_equal(nng_sub0_open(&s), 0);
    unsigned long before = xpb_nng_close_stuck_count();
    assert_int_equal(xpb_nng_close_bounded(s, 5000), 0);
    assert_int_equal(xpb_nng_close_stuck_count(), before);
    /* The socket is gone: NNG refuses it. */
    assert_int_equal(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 1), NNG_ECLOSED);
}

/* A subscriber that has events flowing in: the close returns by the bound
 * every time, and each one that passed it is counted. */
static void flooded_subscriber_close_returns_by_the_bound(void **state)
{
    fixture *f = *state;
    assert_int_equal(pthread_create(&f->flooder, NULL, flood, f), 0);
    unsigned long before = xpb_nng_close_stuck_count();
    unsigned stuck = 0;
    for (int i = 0; i < CLOSES; i++) {
        nng_socket s = dial_sub(f);
        for (int k = 0; k < 3; k++) {
            nng_msg *m = NULL;
            assert_int_equal(nng_recvmsg(s, &m, 0), 0); /* the flood reaches it */
            nng_msg_free(m);
        }
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = xpb_nng_close_bounded(s, BOUND_MS);
        long ms = elapsed_ms(&t0);
        assert_true(rc == 0 || rc == XPB_NNG_CLOSE_STUCK);
        assert_true(ms < (long)BOUND_MS + SLACK_MS);
        if (rc == XPB_NNG_CLOSE_STUCK) {
            stuck++;
            assert_true(ms >= (long)BOUND_MS - 1); /* it waited the bound before giving up */
        }
    }
    assert_int_equal(xpb_nng_close_stuck_count() - before, stuck);
    printf("xpb_nng_close_bounded: %u of %d flooded closes passed %u ms (NNG %d.%d.%d)\n", stuck,
           CLOSES, BOUND_MS, NNG_MAJOR_VERSION, NNG_MINOR_VERSION, NNG_PATCH_VERSION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idle_socket_closes_within_the_bound),
        cmocka_unit_test_setup_teardown(flooded_subscriber_close_returns_by_the_bound, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
