/* Helpers shared by the unit tests (tests/test_util.h). */
#include "test_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

char *xpb_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0, got;
    char *p = malloc(cap + 1);
    while (p && (got = fread(p + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *q = realloc(p, (cap *= 2) + 1);
            if (!q) free(p);
            p = q;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!p || bad) {
        free(p);
        return NULL;
    }
    p[n] = '\0';
    *len = n;
    return p;
}

static int is_xml(const struct dirent *de)
{
    size_t l = strlen(de->d_name);
    return l > 4 && strcmp(de->d_name + l - 4, ".xml") == 0;
}

size_t xpb_test_each_xml(const char *dir, xpb_test_file_fn fn, void *ud)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, is_xml, alphasort);
    if (n < 0) return (size_t)-1;
    size_t done = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        char *data = done != (size_t)-1 ? xpb_test_read_file(path, &len) : NULL;
        if (data) {
            fn(names[i]->d_name, data, len, ud);
            free(data);
            done++;
        } else {
            done = (size_t)-1;
        }
        free(names[i]);
    }
    free(names);
    return done;
}

void xpb_test_msg_init(xpb_test_msg *m, const char *to, const char *body)
{
    xpb_stanza st = XPB__V1__STANZA__INIT;
    Xpb__V1__Text text = XPB__V1__TEXT__INIT;
    m->st = st;
    m->text = text;
    m->text.text = (char *)body;
    m->bodies[0] = &m->text;
    m->st.has_kind = 1;
    m->st.kind = XPB__V1__KIND__KIND_MESSAGE;
    m->st.to = (char *)to;
    m->st.n_body = 1;
    m->st.body = m->bodies;
}

void xpb_test_chat_init(xpb_test_msg *m, const char *to, const char *body)
{
    xpb_test_msg_init(m, to, body);
    m->st.has_type = 1;
    m->st.type = XPB__V1__STANZA_TYPE__TYPE_CHAT;
}

void xpb_test_batch_init(Xpb__V1__Request *r, Xpb__V1__SendBatch *op, const char *account,
                         Xpb__V1__SendStanza **items, size_t n)
{
    *op = (Xpb__V1__SendBatch)XPB__V1__SEND_BATCH__INIT;
    op->n_send = n;
    op->send = items;
    *r = (Xpb__V1__Request)XPB__V1__REQUEST__INIT;
    r->account = (char *)account;
    r->op_case = XPB__V1__REQUEST__OP_SEND_BATCH;
    r->send_batch = op;
}

unsigned short xpb_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        fprintf(stderr, "xpb_test_free_port: no loopback port\n");
        abort();
    }
    close(fd); /* nothing listens there now */
    return ntohs(a.sin_port);
}
