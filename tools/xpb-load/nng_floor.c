/* What a hop costs on this machine without a bridge: NNG's own PUB -> SUB
 * hop (the same transport, ipc://, queues and receive loop as the bridge's
 * PUB and xpb-load's SUB in bus.c; 8-byte send times, paced at the latency
 * figure's rate, those due together in one message as the bridge batches),
 * and one thread waking another through a pipe on the same core and on
 * another core. No bridge goes below these. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>

#include "load.h"
#include "xpb_bus.h" /* XPB_BUS_PUB_SENDBUF */
#include "xpb_nng_close.h"

#define FLOOR_SUB_QUEUE 4096    /* as bus.c's SUB_QUEUE */
#define FLOOR_BATCH_MAX 64      /* stamps per message at most: the bridge's batch_max */
#define FLOOR_SETTLE_US 200000u /* the SUB's connection to come up */
#define FLOOR_WAIT_MS 5000u     /* the last messages to arrive */

typedef struct floor_sub {
    nng_socket s;
    lrecv rx; /* on NNG's thread, as bus.c's SUB */
    uint64_t *lat;
    atomic_size_t n;
    size_t max;
} floor_sub;

static void floor_received(void *arg, nng_msg *m)
{
    floor_sub *f = arg;
    uint64_t now = load_now_ns(), sent;
    const uint8_t *p = nng_msg_body(m);
    for (size_t off = 0; off + sizeof(sent) <= nng_msg_len(m); off += sizeof(sent)) {
        size_t i = f->n;
        if (i >= f->max) break;
        memcpy(&sent, p + off, sizeof(sent));
        f->lat[i] = now > sent ? now - sent : 0;
        f->n = i + 1;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int open_pair(const char *url, nng_socket *pub, floor_sub *f)
{
    int rv = nng_pub0_open(pub);
    if (!rv) rv = nng_socket_set_int(*pub, NNG_OPT_SENDBUF, XPB_BUS_PUB_SENDBUF);
    if (!rv) rv = nng_listen(*pub, url, NULL, 0);
    if (!rv) rv = nng_sub0_open(&f->s);
    if (!rv) rv = nng_socket_set(f->s, NNG_OPT_SUB_SUBSCRIBE, "", 0);
    if (!rv) rv = nng_socket_set_int(f->s, NNG_OPT_RECVBUF, FLOOR_SUB_QUEUE);
    if (!rv) rv = nng_dial(f->s, url, NULL, 0);
    if (!rv) rv = lrecv_start(&f->rx, f->s, floor_received, f);
    if (rv) fprintf(stderr, "xpb-load: NNG floor probe on %s: %s\n", url, nng_strerror(rv));
    return rv ? -1 : 0;
}

/* Sends the stamps at the test server's cadence: it wakes every
 * LOAD_TRICKLE_TICK_NS (about 70 us with the kernel's default timer slack of
 * 50 us) and writes the messages due by then, stamped as they leave; the
 * bridge publishes the stanzas of one read in one batch. So this sleeps to
 * the next stamp's time, at least a tick after the last send, and sends
 * every stamp then due in one NNG message (at most the bridge's batch_max),
 * each stamped with the send time. It sleeps rather than spins: a spinning
 * sender would hide the cost of waking NNG's threads, and on 2 cores take
 * one from them. Two earlier forms measured something else: one NNG message
 * per stamp fell behind at high rates (milliseconds of NNG's queue), and a
 * 1 ns timer slack (one message per stamp again above about 100,000/s) also
 * stayed with the thread that made the next run's test server and bridge
 * (docs/benchmarks.md). */
static uint64_t due_of(uint64_t t0, uint64_t i, double rate)
{
    return t0 + (uint64_t)((double)i * 1e9 / rate);
}

static void pace_and_send(nng_socket pub, uint64_t n, double rate)
{
    uint64_t t0 = load_now_ns(), last = 0, stamps[FLOOR_BATCH_MAX];
    for (uint64_t i = 0; i < n && !load_interrupted;) {
        uint64_t due = due_of(t0, i, rate), now = load_now_ns();
        if (last && due < last + LOAD_TRICKLE_TICK_NS) due = last + LOAD_TRICKLE_TICK_NS;
        if (now < due) {
            struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            now = load_now_ns();
        }
        size_t k = 0;
        while (i < n && k < FLOOR_BATCH_MAX && due_of(t0, i, rate) <= now) {
            stamps[k++] = now;
            i++;
        }
        if (k) nng_send(pub, stamps, k * sizeof(stamps[0]), NNG_FLAG_NONBLOCK);
        last = now;
    }
}

int lnng_floor(const char *dir, uint64_t n, double rate, double *p50_us, double *p99_us)
{
    char url[LOAD_PATH_MAX + 16];
    snprintf(url, sizeof(url), "ipc://%s/nng-floor.ipc", dir);
    floor_sub f = {.max = n};
    nng_socket pub = NNG_SOCKET_INITIALIZER;
    int ok = rate > 0 && n > 0 && (f.lat = malloc(n * sizeof(*f.lat))) != NULL &&
             open_pair(url, &pub, &f) == 0;
    if (ok) {
        usleep(FLOOR_SETTLE_US);
        pace_and_send(pub, n, rate);
        for (unsigned w = 0; f.n < n && w < FLOOR_WAIT_MS && !load_interrupted; w++)
            usleep(1000);
        lrecv_stop(&f.rx); /* no callback runs after this */
        size_t k = f.n;
        ok = k > 0;
        if (ok) {
            qsort(f.lat, k, sizeof(*f.lat), cmp_u64);
            *p50_us = (double)f.lat[k / 2] / 1e3;
            *p99_us = (double)f.lat[k * 99 / 100] / 1e3;
        } else {
            fprintf(stderr, "xpb-load: NNG floor probe: none of %llu messages arrived\n",
                    (unsigned long long)n);
        }
    }
    lrecv_stop(&f.rx);
    xpb_nng_close_bounded(f.s, LOAD_CLOSE_MS);
    xpb_nng_close_bounded(pub, LOAD_CLOSE_MS);
    free(f.lat);
    return ok ? 0 : -1;
}

/* ---- a thread waking another ---------------------------------------------- */

#define WAKE_ROUNDS 2000
#define WAKE_GAP_US 300 /* the waker sleeps between rounds: the other thread sleeps too */

typedef struct wake_pair {
    int ping[2], pong[2];
    int cpu;
} wake_pair;

static int pin_to(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *wake_echo(void *arg)
{
    wake_pair *w = arg;
    char b;
    pin_to(w->cpu);
    while (read(w->ping[0], &b, 1) == 1)
        if (write(w->pong[1], &b, 1) != 1) break;
    return NULL;
}

/* Half the round trip of one byte to a thread pinned to cpu and back, the
 * caller pinned to CPU 0: p50 in us, or -1. */
static double wake_p50(int cpu)
{
    wake_pair w = {.cpu = cpu};
    uint64_t *lat = malloc(WAKE_ROUNDS * sizeof(*lat));
    pthread_t th;
    double p50 = -1;
    if (!lat || pipe(w.ping) || pipe(w.pong)) {
        free(lat);
        return -1;
    }
    cpu_set_t before;
    pthread_getaffinity_np(pthread_self(), sizeof(before), &before);
    if (pin_to(0) == 0 && pthread_create(&th, NULL, wake_echo, &w) == 0) {
        int n = 0;
        char b = 1;
        usleep(10000);
        for (; n < WAKE_ROUNDS && !load_interrupted; n++) {
            uint64_t t = load_now_ns();
            if (write(w.ping[1], &b, 1) != 1 || read(w.pong[0], &b, 1) != 1) break;
            lat[n] = (load_now_ns() - t) / 2;
            usleep(WAKE_GAP_US);
        }
        close(w.ping[1]); /* the echo thread reads EOF and ends */
        pthread_join(th, NULL);
        if (n > 0) {
            qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
            p50 = (double)lat[n / 2] / 1e3;
        }
    } else {
        close(w.ping[1]);
    }
    pthread_setaffinity_np(pthread_self(), sizeof(before), &before);
    close(w.ping[0]);
    close(w.pong[0]);
    close(w.pong[1]);
    free(lat);
    return p50;
}

void lwake_floor(double *same_core_us, double *other_core_us)
{
    *same_core_us = wake_p50(0);
    /* One core: no other to wake on. */
    *other_core_us = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? wake_p50(1) : -1;
}
