/* The stanzas xpb-bench measures: from the seeded traffic generator, or from
 * files of bare stanzas or whole streams read with xpb_reader in AUTO mode.
 * Each stanza keeps its original wire bytes and a standalone form (bench.h). */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "traffic.h"
#include "xpb_error.h"

#define BENCH_MAX_INPUT (512u * 1024u * 1024u)
#define BENCH_MAX_FILES 100000u

void bench_corpus_init(bench_corpus *c)
{
    memset(c, 0, sizeof *c);
    xpb_buf_init(&c->wire, 0);
    xpb_buf_init(&c->solo, 0);
}

void bench_corpus_free(bench_corpus *c)
{
    free(c->st);
    xpb_buf_free(&c->wire);
    xpb_buf_free(&c->solo);
    memset(c, 0, sizeof *c);
}

static unsigned kind_index(bench_corpus *c, const char *label)
{
    for (unsigned i = 0; i < c->n_kinds; i++)
        if (strcmp(c->kinds[i], label) == 0) return i;
    if (c->n_kinds == BENCH_MAX_KINDS) {
        /* The last slot collects every label that no longer fits. */
        snprintf(c->kinds[BENCH_MAX_KINDS - 1], BENCH_LABEL_MAX, "%s", "(more)");
        return BENCH_MAX_KINDS - 1;
    }
    snprintf(c->kinds[c->n_kinds], BENCH_LABEL_MAX, "%s", label);
    return c->n_kinds++;
}

static int push_stanza(bench_corpus *c, size_t wire_off, size_t wire_len, size_t solo_off,
                       const char *label)
{
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 1024;
        bench_stanza *p = realloc(c->st, ncap * sizeof *p);
        if (!p) return XPB_ENOMEM;
        c->st = p;
        c->cap = ncap;
    }
    bench_stanza *s = &c->st[c->n++];
    s->wire_off = wire_off;
    s->wire_len = wire_len;
    s->solo_off = solo_off;
    s->solo_len = c->solo.len - solo_off;
    s->kind = kind_index(c, label);
    /* NUL after each standalone form: libstrophe takes C strings. */
    return xpb_buf_append(&c->solo, "", 1);
}

int bench_corpus_generate(bench_corpus *c, uint64_t seed, size_t count)
{
    xpb_traffic *t = xpb_traffic_new(seed);
    if (!t) return XPB_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        size_t off = c->wire.len;
        const char *label = xpb_traffic_next(t, &c->wire);
        if (!label || c->wire.len == off) {
            rc = XPB_EINVAL;
            break;
        }
        size_t solo_off = c->solo.len;
        rc = xpb_buf_append(&c->solo, c->wire.data + off, c->wire.len - off);
        if (rc == 0) rc = push_stanza(c, off, c->wire.len - off, solo_off, label);
    }
    xpb_traffic_free(t);
    snprintf(c->source, sizeof c->source, "generator, seed %llu", (unsigned long long)seed);
    return rc;
}

/* ---- input files ------------------------------------------------------- */
typedef struct load_state {
    bench_corpus *c;
    const char *file;    /* the whole file */
    size_t pos;          /* offset of the byte being fed */
    size_t start;        /* where the next stanza may begin */
    int rc;
} load_state;

/* "message/chat", "iq/get", "presence", or the element name for the rest. */
static void label_for(const xpb_node *el, char *out, size_t outlen)
{
    const xpb_attr *type = xpb_node_attr(el, "", "type");
    int ours = strcmp(el->ns, XPB_NS_CLIENT) == 0;
    if (ours && type)
        snprintf(out, outlen, "%s/%.20s", el->name, type->value);
    else
        snprintf(out, outlen, "%s%.30s", ours ? "" : "other:", el->name);
}

static int on_header(void *ud, const xpb_node *header)
{
    (void)header;
    load_state *ls = ud;
    ls->start = ls->pos + 1;
    return 0;
}

static int on_stanza(void *ud, const xpb_node *el)
{
    load_state *ls = ud;
    bench_corpus *c = ls->c;
    size_t b = ls->start, e = ls->pos + 1;
    while (b < e && strchr(" \t\r\n", ls->file[b])) b++;
    ls->start = e;
    char label[BENCH_LABEL_MAX];
    label_for(el, label, sizeof label);
    size_t wire_off = c->wire.len, solo_off = c->solo.len;
    int rc = xpb_buf_append(&c->wire, ls->file + b, e - b);
    if (rc == 0) rc = xpb_xml_write_node(&c->solo, el, "");
    if (rc == 0) rc = push_stanza(c, wire_off, e - b, solo_off, label);
    ls->rc = rc;
    return rc;
}

static int read_file(const char *path, xpb_buf *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0) rc = xpb_buf_append(out, chunk, n);
    if (rc == 0 && ferror(f)) rc = XPB_EINVAL;
    fclose(f);
    if (rc) snprintf(err, errlen, "%s: cannot read (%s)", path, xpb_strerror(rc));
    return rc ? -1 : 0;
}

/* Byte at a time, so that the callback knows exactly where each stanza ends
 * (the reader delivers a stanza during the feed of its last byte). */
static int load_file(bench_corpus *c, const char *path, char *err, size_t errlen)
{
    xpb_buf data;
    xpb_buf_init(&data, BENCH_MAX_INPUT);
    if (read_file(path, &data, err, errlen)) {
        xpb_buf_free(&data);
        return -1;
    }
    load_state ls = {.c = c, .file = data.data};
    xpb_reader_callbacks cb = {.stream_open = on_header, .stanza = on_stanza};
    xpb_reader *r = NULL;
    int rc = xpb_reader_new(&r, XPB_READER_AUTO, NULL, &cb, &ls);
    for (size_t i = 0; rc == 0 && i < data.len; i++) {
        ls.pos = i;
        rc = xpb_reader_feed(r, data.data + i, 1);
    }
    if (rc)
        snprintf(err, errlen, "%s: %s (%s)", path, xpb_strerror(ls.rc ? ls.rc : rc),
                 r ? xpb_reader_error(r) : "");
    xpb_reader_free(r);
    xpb_buf_free(&data);
    return rc ? -1 : 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_dir(bench_corpus *c, const char *path, char *err, size_t errlen)
{
    DIR *d = opendir(path);
    if (!d) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = cap <= BENCH_MAX_FILES ? realloc(names, cap * sizeof *p) : NULL;
            if (!p) { rc = -1; snprintf(err, errlen, "%s: too many files", path); break; }
            names = p;
        }
        size_t len = strlen(path) + strlen(de->d_name) + 2;
        names[n] = malloc(len);
        if (!names[n]) { rc = -1; snprintf(err, errlen, "out of memory"); break; }
        snprintf(names[n++], len, "%s/%s", path, de->d_name);
    }
    closedir(d);
    if (names) qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        struct stat sb;
        if (rc == 0 && stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode))
            rc = load_file(c, names[i], err, errlen);
        free(names[i]);
    }
    free(names);
    return rc;
}

int bench_corpus_load(bench_corpus *c, const char *path, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    snprintf(c->source, sizeof c->source, "%s", path);
    int rc = S_ISDIR(sb.st_mode) ? load_dir(c, path, err, errlen) : load_file(c, path, err, errlen);
    if (rc == 0 && c->n == 0) {
        snprintf(err, errlen, "%s: no stanzas found", path);
        rc = -1;
    }
    return rc;
}
