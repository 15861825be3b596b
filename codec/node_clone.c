/* A tree copied whole into an arena (xpb_xml.h, xpb_node_clone): a stanza
 * the reader built, which lives only until its callback returns, handed to
 * another thread (several loops: a worker loop's stanza for the daemon). */
#include <string.h>

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
