/* Bump allocator with a chain of blocks; the first block survives reset so a
 * steady stream of stanzas costs no malloc at all once warmed up. */
#include "xpb_arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 16u
#define ARENA_DEFAULT_BLOCK (16u * 1024u)

typedef struct arena_block {
    struct arena_block *next;
    size_t size;  /* usable bytes after the header */
    size_t used;
    /* data follows, aligned */
} arena_block;

struct xpb_arena {
    arena_block *head;   /* current block (most recent) */
    arena_block *first;  /* kept across reset */
    size_t block_size;
    size_t mallocs;
    ProtobufCAllocator pb;
};

#define BLOCK_HDR ((sizeof(arena_block) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1))

static unsigned char *block_data(arena_block *b)
{
    return (unsigned char *)b + BLOCK_HDR;
}

static arena_block *block_new(xpb_arena *a, size_t size)
{
    arena_block *b = malloc(BLOCK_HDR + size);
    if (!b) return NULL;
    a->mallocs++;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

static void *pb_alloc(void *ud, size_t size)
{
    return xpb_arena_alloc(ud, size);
}

static void pb_free(void *ud, void *ptr)
{
    (void)ud;
    (void)ptr; /* freed with the arena */
}

xpb_arena *xpb_arena_new(size_t block_size)
{
    xpb_arena *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->block_size = block_size ? block_size : ARENA_DEFAULT_BLOCK;
    a->first = a->head = block_new(a, a->block_size);
    if (!a->first) {
        free(a);
        return NULL;
    }
    a->mallocs = 1;
    a->pb.alloc = pb_alloc;
    a->pb.free = pb_free;
    a->pb.allocator_data = a;
    return a;
}

static void free_chain(arena_block *b, arena_block *stop)
{
    while (b && b != stop) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
}

void xpb_arena_free(xpb_arena *a)
{
    if (!a) return;
    free_chain(a->head, NULL);
    free(a);
}

void xpb_arena_reset(xpb_arena *a)
{
    /* Blocks are pushed at the head, so everything before `first` is newer. */
    free_chain(a->head, a->first);
    a->head = a->first;
    a->first->used = 0;
    a->first->next = NULL;
}

void *xpb_arena_alloc(xpb_arena *a, size_t size)
{
    size_t need = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need < size) return NULL; /* overflow */
    arena_block *b = a->head;
    if (b->size - b->used < need) {
        size_t bs = need > a->block_size ? need : a->block_size;
        arena_block *nb = block_new(a, bs);
        if (!nb) return NULL;
        nb->next = a->head;
        a->head = nb;
        b = nb;
    }
    void *p = block_data(b) + b->used;
    b->used += need;
    return p;
}

void *xpb_arena_calloc(xpb_arena *a, size_t size)
{
    void *p = xpb_arena_alloc(a, size);
    if (p) memset(p, 0, size);
    return p;
}

char *xpb_arena_strndup(xpb_arena *a, const char *s, size_t len)
{
    char *p = xpb_arena_alloc(a, len + 1);
    if (!p) return NULL;
    if (len) memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

ProtobufCAllocator *xpb_arena_pb_allocator(xpb_arena *a)
{
    return &a->pb;
}

size_t xpb_arena_mallocs(const xpb_arena *a)
{
    return a->mallocs;
}
