/* Counts heap allocations for xpb-bench. In a normal build the executable
 * defines malloc/calloc/realloc/free on top of glibc's __libc_* entry points,
 * so calls from every library (codec, expat, libstrophe, zlib) are counted; in
 * a sanitizer build (which owns malloc) it installs the sanitizer's hooks. */
#include "bench.h"

#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define BENCH_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BENCH_SANITIZER 1
#endif
#endif

/* One counter for the process: the bench is single-threaded by design. */
static volatile uint64_t alloc_calls;

#ifdef BENCH_SANITIZER
/* From sanitizer/allocator_interface.h, which GCC 12 does not install. */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));

static void on_malloc(const volatile void *ptr, size_t size)
{
    (void)ptr;
    (void)size;
    alloc_calls++;
}

static void on_free(const volatile void *ptr)
{
    (void)ptr;
}

static void install_hooks(void)
{
    static int installed;
    if (!installed) {
        __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
        installed = 1;
    }
}
#else
/* glibc exports its allocator under these names too; delegating keeps one
 * heap, so memory from functions we do not wrap (posix_memalign, strdup in
 * libc) can still be freed here. */
void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *ptr, size_t size);
void __libc_free(void *ptr);

void *malloc(size_t size)
{
    alloc_calls++;
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    alloc_calls++;
    return __libc_calloc(n, size);
}

void *realloc(void *ptr, size_t size)
{
    alloc_calls++;
    return __libc_realloc(ptr, size);
}

void free(void *ptr)
{
    __libc_free(ptr);
}

static void install_hooks(void)
{
}
#endif

uint64_t bench_alloc_count(void)
{
    install_hooks();
    return alloc_calls;
}

int bench_alloc_selftest(void)
{
    enum { N = 64 };
    void *volatile keep[N];
    uint64_t before = bench_alloc_count();
    for (int i = 0; i < N; i++) keep[i] = malloc(24 + (size_t)i);
    for (int i = 0; i < N; i++) free(keep[i]);
    uint64_t delta = bench_alloc_count() - before;
    return delta >= N && delta < 4 * N ? 0 : -1;
}
