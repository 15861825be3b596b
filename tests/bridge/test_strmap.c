/* The string hash table (bridge/util/strmap.c): get/put/replace/delete,
 * growth, and deletion inside probe runs checked against a plain array. */
// clang-format off: cmocka.h needs these first
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xpb_strmap.h"

enum { N = 5000 };

static void test_put_get_replace(void **state)
{
    (void)state;
    xpb_strmap m = XPB_STRMAP_INIT;
    int a = 1, b = 2;
    assert_null(xpb_strmap_get(&m, "alice@example.com"));
    assert_int_equal(xpb_strmap_put(&m, "alice@example.com", &a), 0);
    assert_ptr_equal(xpb_strmap_get(&m, "alice@example.com"), &a);
    assert_null(xpb_strmap_get(&m, "alice@example.co"));
    assert_int_equal(xpb_strmap_put(&m, "alice@example.com", &b), 0);
    assert_ptr_equal(xpb_strmap_get(&m, "alice@example.com"), &b);
    assert_int_equal(m.n, 1);
    /* deleting with another value leaves the entry */
    assert_int_equal(xpb_strmap_del(&m, "alice@example.com", &a), 0);
    assert_ptr_equal(xpb_strmap_get(&m, "alice@example.com"), &b);
    assert_int_equal(xpb_strmap_del(&m, "alice@example.com", &b), 1);
    assert_null(xpb_strmap_get(&m, "alice@example.com"));
    assert_int_equal(m.n, 0);
    assert_int_equal(xpb_strmap_del(&m, "nobody", NULL), 0);
    xpb_strmap_clear(&m);
    assert_null(xpb_strmap_get(&m, "x"));
}

/* Many keys, every other one deleted (holes inside probe runs), then every
 * key looked up: the map must agree with what was put and deleted. */
static void test_many_with_deletes(void **state)
{
    (void)state;
    static char keys[N][32];
    static int vals[N];
    xpb_strmap m = XPB_STRMAP_INIT;
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "load%d@load.test", i);
        vals[i] = i;
        assert_int_equal(xpb_strmap_put(&m, keys[i], &vals[i]), 0);
    }
    assert_int_equal(m.n, N);
    assert_true(m.cap * 3 >= m.n * 4);
    for (int i = 0; i < N; i += 2)
        assert_int_equal(xpb_strmap_del(&m, keys[i], NULL), 1);
    for (int i = 0; i < N; i++) {
        int *v = xpb_strmap_get(&m, keys[i]);
        if (i % 2) {
            assert_non_null(v);
            assert_int_equal(*v, i);
        } else {
            assert_null(v);
        }
    }
    for (int i = 1; i < N; i += 2)
        assert_int_equal(xpb_strmap_del(&m, keys[i], &vals[i]), 1);
    assert_int_equal(m.n, 0);
    for (size_t i = 0; i < m.cap; i++)
        assert_null(m.slots[i].key);
    xpb_strmap_clear(&m);
}

/* Keys that share a home slot (same hash low bits in a 16-slot table):
 * deleting the first of a run must keep the others reachable. */
static void test_delete_in_run(void **state)
{
    (void)state;
    xpb_strmap m = XPB_STRMAP_INIT;
    static char keys[64][16];
    const char *same[4];
    size_t ns = 0;
    uint32_t home = 0;
    for (int i = 0; i < 64 && ns < 4; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        uint32_t h = xpb_strmap_hash(keys[i]) & 15u;
        if (ns == 0) home = h;
        if (h == home) same[ns++] = keys[i];
    }
    assert_int_equal(ns, 4);
    for (size_t i = 0; i < ns; i++)
        assert_int_equal(xpb_strmap_put(&m, same[i], (void *)same[i]), 0);
    assert_int_equal(m.cap, 16);
    assert_int_equal(xpb_strmap_del(&m, same[0], NULL), 1);
    for (size_t i = 1; i < ns; i++)
        assert_ptr_equal(xpb_strmap_get(&m, same[i]), same[i]);
    assert_int_equal(xpb_strmap_del(&m, same[2], NULL), 1);
    assert_ptr_equal(xpb_strmap_get(&m, same[1]), same[1]);
    assert_ptr_equal(xpb_strmap_get(&m, same[3]), same[3]);
    assert_null(xpb_strmap_get(&m, same[0]));
    xpb_strmap_clear(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_replace),
        cmocka_unit_test(test_many_with_deletes),
        cmocka_unit_test(test_delete_in_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
