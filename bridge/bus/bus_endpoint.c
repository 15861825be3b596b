/* Where the NNG back end may listen: the private directory, the loopback
 * rule, the directory and mode of ipc:// socket files, stale socket files.
 * The bus has no authentication, so these checks are its access control. */
#define _DEFAULT_SOURCE /* S_ISVTX */
#include "bus_endpoint.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "xpb_error.h"

void xpb_bus_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL) memcpy(p, s, n);
    return p;
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *p = malloc((size_t)n + 1);
    if (p == NULL) return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* The default directory's rule is shared with clients (bus_wire.c). */
static int private_dir_path(const xpb_bus_config *cfg, char **out)
{
    char dir[4096];
    if (cfg->private_dir != NULL)
        *out = dup_str(cfg->private_dir);
    else if (xpb_bus_default_dir(dir, sizeof dir) != 0)
        return XPB_ETOOBIG;
    else
        *out = dup_str(dir);
    return *out == NULL ? XPB_ENOMEM : 0;
}

/* The directory holds the ipc sockets, whose permissions are the only access
 * control on the bus: it must be ours and writable by nobody else (a
 * pre-created /tmp/xpbridge-<uid> owned by someone else is refused). */
static int ensure_private_dir(const char *path, char *err, size_t errlen)
{
    struct stat sb;
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        xpb_bus_set_err(err, errlen, "cannot create private_dir %s: %s", path, strerror(errno));
        return XPB_EINVAL;
    }
    if (lstat(path, &sb) != 0) {
        xpb_bus_set_err(err, errlen, "cannot stat private_dir %s: %s", path, strerror(errno));
        return XPB_EINVAL;
    }
    if (!S_ISDIR(sb.st_mode)) {
        xpb_bus_set_err(err, errlen, "private_dir %s is not a directory (symlinks are refused)",
                        path);
        return XPB_EINVAL;
    }
    if (sb.st_uid != geteuid()) {
        xpb_bus_set_err(err, errlen,
                        "private_dir %s is owned by uid %lu, not by this user (uid %lu)", path,
                        (unsigned long)sb.st_uid, (unsigned long)geteuid());
        return XPB_EINVAL;
    }
    if ((sb.st_mode & 022) != 0) {
        xpb_bus_set_err(err, errlen,
                        "private_dir %s is writable by group or others (mode %04o); make it 0700 "
                        "or choose another private_dir",
                        path, (unsigned)(sb.st_mode & 07777));
        return XPB_EINVAL;
    }
    return 0;
}

int xpb_bus_has_scheme(const char *url, const char *scheme)
{
    size_t n = strlen(scheme);
    return strncmp(url, scheme, n) == 0;
}

/* Host part of scheme://host:port/path, brackets of IPv6 kept. */
static void url_host(const char *url, char *host, size_t hostlen)
{
    const char *p = strstr(url, "://");
    p = (p == NULL) ? url : p + 3;
    size_t n;
    if (*p == '[') {
        const char *e = strchr(p, ']');
        n = (e == NULL) ? strlen(p) : (size_t)(e - p) + 1;
    } else {
        n = strcspn(p, ":/");
    }
    if (n >= hostlen) n = hostlen - 1;
    memcpy(host, p, n);
    host[n] = '\0';
}

static int is_loopback_host(const char *h)
{
    return strncmp(h, "127.", 4) == 0 || strcmp(h, "[::1]") == 0 || strcmp(h, "localhost") == 0;
}

static int check_endpoint(const char *name, const char *url, int allow_remote, char *err,
                          size_t errlen)
{
    static const char *const net[] = {"tcp://", "tcp4://", "tcp6://", "ws://",
                                      "ws4://", "ws6://",  "wss://",  "tls+tcp://"};
    int networked = 0;
    for (size_t i = 0; i < sizeof net / sizeof net[0]; i++)
        networked |= xpb_bus_has_scheme(url, net[i]);
    if (!networked || allow_remote) return 0;
    char host[256];
    url_host(url, host, sizeof host);
    if (is_loopback_host(host)) return 0;
    xpb_bus_set_err(err, errlen,
                    "%s %s is not a loopback address (127.0.0.1, [::1], localhost); the bus has no "
                    "authentication, set allow_remote to listen on other interfaces",
                    name, url);
    return XPB_EINVAL;
}

/* A socket file left by a bridge that died: unlink it if nobody listens on
 * it; refuse when someone does or when the path is not a socket. */
static int remove_stale_ipc(const char *name, const char *url, char *err, size_t errlen)
{
    const char *path = url + strlen("ipc://");
    struct stat sb;
    if (lstat(path, &sb) != 0) return 0;
    if (!S_ISSOCK(sb.st_mode)) {
        xpb_bus_set_err(err, errlen, "%s %s: the path exists and is not a socket", name, url);
        return XPB_EINVAL;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        xpb_bus_set_err(err, errlen, "%s %s: path too long for a unix socket", name, url);
        return XPB_EINVAL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    int live = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    if (live) {
        xpb_bus_set_err(err, errlen, "%s %s: another process is listening on it", name, url);
        return XPB_EINVAL;
    }
    unlink(path);
    return 0;
}

/* The directory part of an ipc:// path ("." for a bare name). */
static void ipc_dir_of(const char *path, char *dir, size_t dirlen)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (n == 0) {
        snprintf(dir, dirlen, ".");
        return;
    }
    if (n >= dirlen) n = dirlen - 1;
    memcpy(dir, path, n);
    dir[n] = '\0';
}

/* The bus has no authentication: the socket file's mode and its directory
 * are the access control, for explicit endpoints as much as for the default
 * private directory. Whoever may write the directory may unlink or replace
 * our socket, so the directory must be owned by this user or root and be
 * writable by nobody else, unless it has the sticky bit (like /tmp), which
 * keeps others from removing or renaming our file. */
static int ipc_dir_ok(const char *name, const char *url, mode_t *dir_mode, char *err, size_t errlen)
{
    char dir[sizeof((struct sockaddr_un *)0)->sun_path + 8];
    ipc_dir_of(url + strlen("ipc://"), dir, sizeof dir);
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        xpb_bus_set_err(err, errlen, "%s %s: directory %s: %s", name, url, dir, strerror(errno));
        return XPB_EINVAL;
    }
    if (!S_ISDIR(sb.st_mode)) {
        xpb_bus_set_err(err, errlen, "%s %s: %s is not a directory", name, url, dir);
        return XPB_EINVAL;
    }
    if (sb.st_uid != geteuid() && sb.st_uid != 0) {
        xpb_bus_set_err(
            err, errlen,
            "%s %s: directory %s is owned by uid %lu, neither this user (uid %lu) nor root; "
            "its owner could replace the socket",
            name, url, dir, (unsigned long)sb.st_uid, (unsigned long)geteuid());
        return XPB_EINVAL;
    }
    if ((sb.st_mode & 022) != 0 && (sb.st_mode & S_ISVTX) == 0) {
        xpb_bus_set_err(
            err, errlen,
            "%s %s: directory %s is writable by group or others without the sticky bit "
            "(mode %04o), so another user could replace the socket; use a directory only "
            "this user can write (such as the default private_dir)",
            name, url, dir, (unsigned)(sb.st_mode & 07777));
        return XPB_EINVAL;
    }
    *dir_mode = sb.st_mode;
    return 0;
}

/* The socket file's mode: owner only, plus the group when the directory
 * grants its group access and others none (a 0750 private_dir lets one group
 * connect); never others. NNG would otherwise leave it to the umask. */
int xpb_bus_ipc_socket_mode(mode_t dir_mode)
{
    int group = (dir_mode & S_IXGRP) != 0 && (dir_mode & S_IRWXO) == 0;
    return XPB_BUS_IPC_MODE | (group ? 0060 : 0);
}

static int default_urls(const xpb_bus_config *c, xpb_bus_endpoints *ep, char *err, size_t errlen)
{
    char *dir = NULL;
    int rc = private_dir_path(c, &dir);
    if (rc == 0) rc = ensure_private_dir(dir, err, errlen);
    if (rc == 0 && c->events_url == NULL) ep->events_url = dup_printf("ipc://%s/events", dir);
    if (rc == 0 && c->requests_url == NULL) ep->requests_url = dup_printf("ipc://%s/requests", dir);
    free(dir);
    return rc;
}

/* Every check on one endpoint, in the order the old single file made them. */
static int check_ipc(const char *name, const char *url, mode_t *dir_mode, char *err, size_t errlen)
{
    if (!xpb_bus_has_scheme(url, "ipc://")) return 0;
    return ipc_dir_ok(name, url, dir_mode, err, errlen);
}

int xpb_bus_endpoints_resolve(const xpb_bus_config *c, xpb_bus_endpoints *ep, char *err,
                              size_t errlen)
{
    memset(ep, 0, sizeof *ep);
    if (c->events_url == NULL || c->requests_url == NULL) {
        int rc = default_urls(c, ep, err, errlen);
        if (rc != 0) return rc;
    }
    if (ep->events_url == NULL)
        ep->events_url = dup_str(c->events_url != NULL ? c->events_url : "");
    if (ep->requests_url == NULL)
        ep->requests_url = dup_str(c->requests_url != NULL ? c->requests_url : "");
    if (ep->events_url == NULL || ep->requests_url == NULL) return XPB_ENOMEM;
    int rc = check_endpoint("events_url", ep->events_url, c->allow_remote, err, errlen);
    if (rc == 0)
        rc = check_endpoint("requests_url", ep->requests_url, c->allow_remote, err, errlen);
    if (rc == 0) rc = check_ipc("events_url", ep->events_url, &ep->events_dir_mode, err, errlen);
    if (rc == 0)
        rc = check_ipc("requests_url", ep->requests_url, &ep->requests_dir_mode, err, errlen);
    if (rc == 0 && xpb_bus_has_scheme(ep->events_url, "ipc://"))
        rc = remove_stale_ipc("events_url", ep->events_url, err, errlen);
    if (rc == 0 && xpb_bus_has_scheme(ep->requests_url, "ipc://"))
        rc = remove_stale_ipc("requests_url", ep->requests_url, err, errlen);
    return rc;
}

void xpb_bus_endpoints_free(xpb_bus_endpoints *ep)
{
    free(ep->events_url);
    free(ep->requests_url);
    ep->events_url = ep->requests_url = NULL;
}
