/* xpb-load's bridge: writes a config for N accounts on the test server, runs
 * xpbridge as a child with it, reads its RSS and CPU from /proc, scrapes
 * /metrics, and stops it by PID (SIGTERM, then SIGKILL after a grace time). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

#define BRIDGE_STOP_GRACE_MS 10000
#define SCRAPE_MAX_MS 30000

void load_account(unsigned i, char *out, size_t len)
{
    snprintf(out, len, "load%u", i);
}

uint64_t load_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
        !getsockname(fd, (struct sockaddr *)&a, &al))
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static void write_account(FILE *f, const lbridge_opts *o, const char *pw, unsigned i)
{
    char user[32];
    load_account(i, user, sizeof(user));
    fprintf(f,
            "  %s{ jid = \"%s@" LOAD_DOMAIN "\"; password_file = \"%s\"; host = \"127.0.0.1\";"
            " port = %d; transport = \"directtls\"; ca_file = \"%s\"; stream_management = %s; }\n",
            i ? "," : "", user, pw, o->server_port, o->ca_file, o->sm ? "true" : "false");
}

static void write_bus(FILE *f, const lbridge_opts *o, const lbridge *b)
{
    fprintf(f, "bus = {\n  events = \"%s\";\n  requests = \"%s\";\n", b->events, b->requests);
    if (o->batch_max) fprintf(f, "  batch_max = %u;\n", o->batch_max);
    if (o->batch_flush_set) fprintf(f, "  batch_flush_us = %u;\n", o->batch_flush_us);
    fprintf(f, "};\n");
}

static int write_config(const lbridge_opts *o, lbridge *b, char *conf, size_t len)
{
    char pw[LOAD_PATH_MAX];
    if (snprintf(pw, sizeof(pw), "%s/password", b->dir) >= (int)sizeof(pw)) return -1;
    int fd = open(pw, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, LOAD_PASSWORD "\n", sizeof(LOAD_PASSWORD)) < 0 || close(fd)) return -1;
    if (snprintf(conf, len, "%s/xpbridge.conf", b->dir) >= (int)len) return -1;
    FILE *f = fopen(conf, "w");
    if (!f) return -1;
    fprintf(f, "log = { level = \"warn\"; file = \"%s/xpbridge.log\"; };\n", b->dir);
    write_bus(f, o, b);
    fprintf(f, "metrics = { listen = \"127.0.0.1:%d\"; };\n", b->metrics_port);
    if (o->state) fprintf(f, "state = { dir = \"%s/state\"; };\n", b->dir);
    else fprintf(f, "state = { dir = \"none\"; };\n");
    if (o->loops < 0)
        fprintf(f, "limits = { queue_max = 1000; loops = \"auto\"; };\n");
    else
        fprintf(f, "limits = { queue_max = 1000; loops = %d; };\n", o->loops);
    fprintf(f, "accounts = (\n");
    for (unsigned i = 0; i < o->accounts; i++)
        write_account(f, o, pw, i);
    fprintf(f, ");\n");
    return fclose(f) ? -1 : 0;
}

static pid_t spawn(const char *exe, const char *conf, const char *dir)
{
    char err[LOAD_PATH_MAX];
    if (snprintf(err, sizeof(err), "%s/xpbridge.stderr", dir) >= (int)sizeof(err)) return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    /* Never outlive the benchmark, even when it dies without cleaning up. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) || getppid() != parent) _exit(127);
    int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        dup2(fd, 2);
        dup2(fd, 1);
    }
    execl(exe, exe, "--config", conf, (char *)NULL);
    _exit(127);
}

int lbridge_config(const lbridge_opts *o, lbridge *b)
{
    memset(b, 0, sizeof(*b));
    int too_long = snprintf(b->dir, sizeof(b->dir), "%s", o->dir) >= (int)sizeof(b->dir) ||
                   snprintf(b->events, sizeof(b->events), "ipc://%s/events", o->dir) >=
                       (int)sizeof(b->events) ||
                   snprintf(b->requests, sizeof(b->requests), "ipc://%s/requests", o->dir) >=
                       (int)sizeof(b->requests);
    b->metrics_port = free_port();
    if (too_long || b->metrics_port < 0 || write_config(o, b, b->conf, sizeof(b->conf))) {
        fprintf(stderr, "xpb-load: cannot write the bridge's config in %s: %s\n", o->dir,
                strerror(errno));
        return -1;
    }
    return 0;
}

int lbridge_spawn(const lbridge_opts *o, lbridge *b)
{
    b->pid = spawn(o->xpbridge, b->conf, o->dir);
    if (b->pid < 0) {
        fprintf(stderr, "xpb-load: cannot start %s: %s\n", o->xpbridge, strerror(errno));
        b->pid = 0;
        return -1;
    }
    return 0;
}

int lbridge_alive(lbridge *b)
{
    int st;
    if (b->pid <= 0) return 0;
    if (waitpid(b->pid, &st, WNOHANG) != b->pid) return 1;
    fprintf(stderr, "xpb-load: xpbridge (pid %d) exited (%s %d); see %s/xpbridge.stderr\n",
            (int)b->pid, WIFEXITED(st) ? "status" : "signal",
            WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), b->dir);
    b->pid = 0;
    return 0;
}

static int reap(pid_t pid, int ms)
{
    for (int i = 0; i < ms; i += 10) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return 0;
        usleep(10000);
    }
    return -1;
}

void lbridge_stop(lbridge *b)
{
    if (b->pid <= 0) return;
    kill(b->pid, SIGTERM);
    if (reap(b->pid, BRIDGE_STOP_GRACE_MS)) {
        fprintf(stderr, "xpb-load: xpbridge (pid %d) ignored SIGTERM for %d ms: SIGKILL\n",
                (int)b->pid, BRIDGE_STOP_GRACE_MS);
        kill(b->pid, SIGKILL);
        waitpid(b->pid, NULL, 0);
    }
    b->pid = 0;
}

long lbridge_rss_kib(const lbridge *b)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)b->pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

/* Nanoseconds on a CPU, summed over the bridge's threads (schedstat's
 * first field): a clock tick (10 ms) is too coarse for a phase of a
 * fraction of a second. */
static double cpu_from_schedstat(pid_t pid)
{
    char path[96];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    if (!dir) return -1;
    double ns = 0;
    int any = 0;
    for (struct dirent *de; (de = readdir(dir));) {
        if (de->d_name[0] == '.') continue;
        char p2[160];
        snprintf(p2, sizeof(p2), "/proc/%d/task/%.20s/schedstat", (int)pid, de->d_name);
        FILE *f = fopen(p2, "r");
        unsigned long long run = 0;
        if (f && fscanf(f, "%llu", &run) == 1) {
            ns += (double)run;
            any = 1;
        }
        if (f) fclose(f);
    }
    closedir(dir);
    return any ? ns / 1e9 : -1;
}

double lbridge_cpu_s(const lbridge *b)
{
    double s = cpu_from_schedstat(b->pid);
    if (s >= 0) return s;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)b->pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int connect_local(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = SCRAPE_MAX_MS / 1000};
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return -1;
    }
    return fd;
}

double lbridge_scrape_ms(const lbridge *b, size_t *bytes)
{
    static const char req[] =
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    uint64_t t0 = load_now_ns();
    int fd = connect_local(b->metrics_port);
    if (fd < 0 || write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    char buf[65536];
    ssize_t n;
    *bytes = 0;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        *bytes += (size_t)n;
    close(fd);
    return n < 0 || *bytes == 0 ? -1 : (double)(load_now_ns() - t0) / 1e6;
}
