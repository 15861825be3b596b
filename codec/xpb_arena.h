/* A bump allocator: many small allocations, one free. Trees the reader builds
 * and records the mapper unpacks live in an arena, so a stanza costs a couple of
 * malloc calls, not hundreds (see docs/benchmarks.md). */
#ifndef XPB_ARENA_H
#define XPB_ARENA_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

typedef struct xpb_arena xpb_arena;

/* block_size: bytes per block (0 = 16 KiB). Returns NULL on ENOMEM. */
xpb_arena *xpb_arena_new(size_t block_size);
void xpb_arena_free(xpb_arena *a);
/* Frees every allocation but keeps the first block for reuse. */
void xpb_arena_reset(xpb_arena *a);
/* Frees every allocation and every block: an idle owner holds no block. The
 * next allocation makes a new first block. */
void xpb_arena_trim(xpb_arena *a);
/* 16-byte aligned; NULL on ENOMEM. Memory is not zeroed. */
void *xpb_arena_alloc(xpb_arena *a, size_t size);
void *xpb_arena_calloc(xpb_arena *a, size_t size);
/* Copy of s[0..len) with a terminating NUL. */
char *xpb_arena_strndup(xpb_arena *a, const char *s, size_t len);
/* An allocator for protobuf_c_message_unpack whose free is a no-op. The
 * returned struct lives inside the arena object. */
ProtobufCAllocator *xpb_arena_pb_allocator(xpb_arena *a);
/* The bytes src handed out since its last reset, copied into dst in one
 * allocation, when they all lie in src's first block (one stanza's tree of
 * the reader: xpb_reader_clone). 16-byte aligned, so every offset keeps its
 * alignment. 0 with *copy, *base (src's first byte) and *len set; 1 when src
 * holds more than one block or nothing; -1 on ENOMEM. */
int xpb_arena_copy_used(xpb_arena *dst, const xpb_arena *src, void **copy,
                        const unsigned char **base, size_t *len);
/* Number of malloc calls this arena made since it was created (for benchmarks). */
size_t xpb_arena_mallocs(const xpb_arena *a);

#endif
