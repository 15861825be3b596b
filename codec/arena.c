/* Bump allocator with a chain of blocks; the first block survives reset so a
 * steady stream of stanzas costs no malloc at all once warmed up. */
#include "xpb_arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Under AddressSanitizer, memory the arena has not handed out (or took back
 * with reset) is poisoned, so a tree or record used after its arena was reset
 * is reported like a use-after-free instead of silently reading new data. */
#if defined(__SANITIZE_ADDRESS__)
#define XPB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XPB_ASAN 1
#endif
#endif
#ifdef XPB_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

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
    POISON(block_data(b), size);
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
        UNPOISON(block_data(b), b->size);
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
    if (!a->first) return; /* trimmed: nothing to keep */
    /* Blocks are pushed at the head, so everything before `first` is newer. */
    free_chain(a->head, a->first);
    a->head = a->first;
    a->first->used = 0;
    a->first->next = NULL;
    POISON(block_data(a->first), a->first->size);
}

void xpb_arena_trim(xpb_arena *a)
{
    free_chain(a->head, NULL);
    a->head = a->first = NULL;
}

/* A new block for an allocation that does not fit the current one. Kept out
 * of line so the fast path below stays small enough to inline. */
__attribute__((noinline)) static void *alloc_slow(xpb_arena *a, size_t size)
{
    if (size > SIZE_MAX - ARENA_ALIGN) return NULL; /* overflow */
    size_t bs = size > a->block_size ? size : a->block_size;
    arena_block *nb = block_new(a, bs);
    if (!nb) return NULL;
    nb->next = a->head;
    a->head = nb;
    if (!a->first) a->first = nb; /* the first block after a trim is the one reset keeps */
    nb->used = size;
    UNPOISON(block_data(nb), size);
    return block_data(nb);
}

/* align: a power of two <= ARENA_ALIGN (block data starts ARENA_ALIGN-aligned). */
static inline void *alloc_aligned(xpb_arena *a, size_t size, size_t align)
{
    arena_block *b = a->head;
    if (!b) return alloc_slow(a, size); /* trimmed */
    size_t at = (b->used + align - 1) & ~(align - 1);
    if (at > b->size || b->size - at < size) return alloc_slow(a, size);
    b->used = at + size;
    UNPOISON(block_data(b) + at, size);
    return block_data(b) + at;
}

void *xpb_arena_alloc(xpb_arena *a, size_t size)
{
    return alloc_aligned(a, size, ARENA_ALIGN);
}

void *xpb_arena_calloc(xpb_arena *a, size_t size)
{
    void *p = xpb_arena_alloc(a, size);
    if (p) memset(p, 0, size);
    return p;
}

char *xpb_arena_strndup(xpb_arena *a, const char *s, size_t len)
{
    if (len == SIZE_MAX) return NULL;
    char *p = alloc_aligned(a, len + 1, 1); /* strings need no alignment: pack them */
    if (!p) return NULL;
    if (len) memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* Under AddressSanitizer the padding between allocations stays poisoned:
 * copy only what was handed out, and leave the rest of the copy as it is. */
static void copy_handed_out(unsigned char *to, const unsigned char *from, size_t len)
{
#ifdef XPB_ASAN
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && !__asan_address_is_poisoned(from + j))
            j++;
        if (j > i) memcpy(to + i, from + i, j - i);
        while (j < len && __asan_address_is_poisoned(from + j))
            j++;
        i = j;
    }
#else
    memcpy(to, from, len);
#endif
}

int xpb_arena_copy_used(xpb_arena *dst, const xpb_arena *src, void **copy,
                        const unsigned char **base, size_t *len)
{
    arena_block *b = src->first;
    if (!b || src->head != b || b->used == 0) return 1;
    unsigned char *to = xpb_arena_alloc(dst, b->used);
    if (!to) return -1;
    copy_handed_out(to, block_data(b), b->used);
    *copy = to;
    *base = block_data(b);
    *len = b->used;
    return 0;
}

ProtobufCAllocator *xpb_arena_pb_allocator(xpb_arena *a)
{
    return &a->pb;
}

size_t xpb_arena_mallocs(const xpb_arena *a)
{
    return a->mallocs;
}
