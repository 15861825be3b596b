/* A tree copied whole into an arena (xpb_xml.h, xpb_node_clone): a stanza
 * the reader built, which lives only until its callback returns, handed to
 * another thread (several loops: a worker loop's stanza for the daemon). */
#include <stdint.h>
#include <string.h>

#include "node_internal.h"
#include "xpb_arena.h"
#include "xpb_error.h"
#include "xpb_xml.h"

static const char *dup_text(xpb_arena *a, const char *s, size_t len)
{
    return s ? xpb_arena_strndup(a, s, len) : NULL;
}

static const char *dup_str(xpb_arena *a, const char *s)
{
    return s ? xpb_arena_strndup(a, s, strlen(s)) : NULL;
}

/* One node and, depth first, its children; siblings by the caller's loop.
 * NULL with *rc set. */
static xpb_node *clone_one(xpb_arena *a, const xpb_node *n, unsigned depth, int *rc)
{
    if (depth > XPB_NODE_CLONE_MAX_DEPTH) {
        *rc = XPB_EDEPTH;
        return NULL;
    }
    *rc = XPB_ENOMEM;
    xpb_node *c = xpb_arena_calloc(a, sizeof *c);
    if (!c) return NULL;
    c->kind = n->kind;
    c->text_len = n->text_len;
    c->ns_id = n->ns_id;
    c->n_attrs = n->n_attrs;
    if ((n->text && !(c->text = dup_text(a, n->text, n->text_len))) ||
        (n->ns && !(c->ns = dup_str(a, n->ns))) || (n->name && !(c->name = dup_str(a, n->name))))
        return NULL;
    if (n->n_attrs) {
        if (!(c->attrs = xpb_arena_calloc(a, n->n_attrs * sizeof *c->attrs))) return NULL;
        for (size_t i = 0; i < n->n_attrs; i++) {
            const xpb_attr *s = &n->attrs[i];
            xpb_attr *d = &c->attrs[i];
            d->value_len = s->value_len;
            if (!(d->ns = dup_str(a, s->ns ? s->ns : "")) || !(d->name = dup_str(a, s->name)) ||
                !(d->value = dup_text(a, s->value, s->value_len)))
                return NULL;
        }
    }
    xpb_node **tail = &c->children;
    for (const xpb_node *k = n->children; k; k = k->next) {
        if (!(*tail = clone_one(a, k, depth + 1, rc))) return NULL;
        tail = &(*tail)->next;
    }
    return c;
}

int xpb_node_clone(xpb_arena *a, const xpb_node *n, xpb_node **out)
{
    if (!a || !n || !out) return XPB_EINVAL;
    int rc = 0;
    *out = clone_one(a, n, 0, &rc);
    return *out ? 0 : rc;
}

/* ---- a tree copied byte for byte: its pointers moved ----------------------------- */

typedef struct span {
    uintptr_t lo, hi; /* the source range */
    unsigned char *to;
} span;

static int in_span(const span *sp, const void *p)
{
    return (uintptr_t)p >= sp->lo && (uintptr_t)p < sp->hi;
}

static void *moved(const span *sp, const void *p)
{
    return sp->to + ((uintptr_t)p - sp->lo);
}

static int node_in_span(const span *sp, const xpb_node *p)
{
    return in_span(sp, p) && in_span(sp, (const unsigned char *)(p + 1) - 1);
}

/* A string in the range moves; any other lives for good (the reader's). */
static const char *move_str(const span *sp, const char *p)
{
    return p && in_span(sp, p) ? moved(sp, p) : p;
}

/* c (already in the copy) and its children; siblings by the caller's loop. */
static int move_node(const span *sp, xpb_node *c, unsigned depth)
{
    if (depth > XPB_NODE_CLONE_MAX_DEPTH) return XPB_EDEPTH;
    c->text = move_str(sp, c->text);
    c->ns = move_str(sp, c->ns);
    c->name = move_str(sp, c->name);
    if (c->n_attrs) {
        if (!in_span(sp, c->attrs) || !in_span(sp, c->attrs + c->n_attrs - 1)) return XPB_EINVAL;
        c->attrs = moved(sp, c->attrs);
        for (size_t i = 0; i < c->n_attrs; i++) {
            xpb_attr *a = &c->attrs[i];
            a->ns = move_str(sp, a->ns);
            a->name = move_str(sp, a->name);
            a->value = move_str(sp, a->value);
        }
    }
    for (xpb_node **k = &c->children; *k; k = &(*k)->next) {
        if (!node_in_span(sp, *k)) return XPB_EINVAL;
        *k = moved(sp, *k);
        int rc = move_node(sp, *k, depth + 1);
        if (rc != 0) return rc;
    }
    return 0;
}

int xpb_node_relocate(void *copy, const unsigned char *base, size_t len, const xpb_node *n,
                      xpb_node **out)
{
    span sp = {(uintptr_t)base, (uintptr_t)base + len, copy};
    if (!node_in_span(&sp, n)) return XPB_EINVAL;
    xpb_node *root = moved(&sp, n);
    root->next = NULL;
    int rc = move_node(&sp, root, 0);
    if (rc == 0) *out = root;
    return rc;
}
