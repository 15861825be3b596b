/* Arena: alignment, growth past a block, reset keeps one block, strndup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "xpb_arena.h"

static void test_alloc_aligned_and_grows(void **state)
{
    (void)state;
    xpb_arena *a = xpb_arena_new(256);
    assert_non_null(a);
    for (int i = 0; i < 100; i++) {
        void *p = xpb_arena_alloc(a, (size_t)i * 3 + 1);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xAB, (size_t)i * 3 + 1);
    }
    assert_true(xpb_arena_mallocs(a) > 1);
    void *big = xpb_arena_alloc(a, 10000); /* larger than a block */
    assert_non_null(big);
    memset(big, 1, 10000);
    xpb_arena_free(a);
}

static void test_reset_reuses_first_block(void **state)
{
    (void)state;
    xpb_arena *a = xpb_arena_new(1024);
    void *p1 = xpb_arena_alloc(a, 64);
    for (int i = 0; i < 50; i++) assert_non_null(xpb_arena_alloc(a, 100));
    size_t m = xpb_arena_mallocs(a);
    xpb_arena_reset(a);
    void *p2 = xpb_arena_alloc(a, 64);
    assert_ptr_equal(p1, p2);
    assert_int_equal(xpb_arena_mallocs(a), m); /* no new malloc after reset */
    xpb_arena_free(a);
}

static void test_strndup_and_calloc(void **state)
{
    (void)state;
    xpb_arena *a = xpb_arena_new(0);
    char *s = xpb_arena_strndup(a, "hello world", 5);
    assert_string_equal(s, "hello");
    unsigned char *z = xpb_arena_calloc(a, 32);
    for (int i = 0; i < 32; i++) assert_int_equal(z[i], 0);
    ProtobufCAllocator *pa = xpb_arena_pb_allocator(a);
    void *q = pa->alloc(pa->allocator_data, 40);
    assert_non_null(q);
    pa->free(pa->allocator_data, q);
    xpb_arena_free(a);
}

static void test_strings_are_packed(void **state)
{
    (void)state;
    xpb_arena *a = xpb_arena_new(0);
    char *s1 = xpb_arena_strndup(a, "abc", 3);
    char *s2 = xpb_arena_strndup(a, "de", 2);
    assert_ptr_equal(s2, s1 + 4); /* no padding between strings */
    unsigned char *p = xpb_arena_alloc(a, 8);
    assert_int_equal((uintptr_t)p % 16, 0); /* the next object is aligned again */
    assert_string_equal(s1, "abc");
    assert_string_equal(s2, "de");
    xpb_arena_free(a);
}

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* A tree or record used after its arena was reset must be caught by ASan. */
static void test_reset_poisons_under_asan(void **state)
{
    (void)state;
    xpb_arena *a = xpb_arena_new(1024);
    char *s = xpb_arena_strndup(a, "stanza", 6);
    assert_false(__asan_address_is_poisoned(s));
    assert_false(__asan_address_is_poisoned(s + 6));
    assert_true(__asan_address_is_poisoned(s + 64)); /* not handed out yet */
    for (int i = 0; i < 20; i++) assert_non_null(xpb_arena_alloc(a, 100)); /* a second block */
    xpb_arena_reset(a);
    assert_true(__asan_address_is_poisoned(s));
    char *t = xpb_arena_strndup(a, "x", 1);
    assert_ptr_equal(t, s);
    assert_false(__asan_address_is_poisoned(t));
    assert_true(__asan_address_is_poisoned(t + 2));
    xpb_arena_free(a);
}
#endif

/* Trim frees every block; the arena works on after it, and reset after a
 * trim keeps the new first block. */
static void test_trim_gives_blocks_back(void **state)
{
    (void)state;
    xpb_arena *a = xpb_arena_new(256);
    assert_non_null(a);
    for (int i = 0; i < 20; i++) assert_non_null(xpb_arena_alloc(a, 100));
    size_t before = xpb_arena_mallocs(a);
    xpb_arena_trim(a);
    xpb_arena_reset(a); /* nothing to keep: fine */
    xpb_arena_trim(a);
    char *s = xpb_arena_strndup(a, "after trim", 10);
    assert_string_equal(s, "after trim");
    assert_int_equal(xpb_arena_mallocs(a), before + 1);
    xpb_arena_reset(a);
    assert_non_null(xpb_arena_alloc(a, 100)); /* the kept block: no malloc */
    assert_int_equal(xpb_arena_mallocs(a), before + 1);
    xpb_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_aligned_and_grows),
        cmocka_unit_test(test_reset_reuses_first_block),
        cmocka_unit_test(test_trim_gives_blocks_back),
        cmocka_unit_test(test_strndup_and_calloc),
        cmocka_unit_test(test_strings_are_packed),
#if defined(__SANITIZE_ADDRESS__)
        cmocka_unit_test(test_reset_poisons_under_asan),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
