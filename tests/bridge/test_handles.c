/* Tests for the daemon's tracked handles (bridge/daemon/daemon.c): the
 * entries a send request's Delivery events are matched by. find_handle
 * starts where it last found one (SENT reports come in send order, far
 * from the head when thousands are unacknowledged) and must still find an
 * entry before that point, and take_handle must never leave it dangling. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <string.h>

#include "daemon_internal.h"

static void test_find_in_order_and_out_of_order(void **state)
{
    (void)state;
    struct account a;
    memset(&a, 0, sizeof a);
    for (uint64_t h = 1; h <= 6; h++) assert_non_null(track_handle(&a, h, "r", "id"));
    for (uint64_t h = 1; h <= 6; h++) { /* SENT in send order */
        const struct handle_ent *e = find_handle(&a, h);
        assert_non_null(e);
        assert_int_equal(e->handle, h);
    }
    /* A report for an earlier one after the search went past it. */
    assert_int_equal(find_handle(&a, 2)->handle, 2);
    assert_int_equal(find_handle(&a, 5)->handle, 5);
    assert_int_equal(find_handle(&a, 1)->handle, 1);
    assert_null(find_handle(&a, 7));
    assert_null(find_handle(&a, 0));

    /* Taking the entry the search last found moves it back, never dangling:
     * ASan reports a use after free otherwise. */
    assert_int_equal(find_handle(&a, 4)->handle, 4);
    struct handle_ent *e = take_handle(&a, 4);
    assert_non_null(e);
    free_handle(e);
    assert_null(find_handle(&a, 4));
    assert_int_equal(find_handle(&a, 5)->handle, 5);
    assert_int_equal(find_handle(&a, 3)->handle, 3);
    /* Acks from the head, the usual order; then the last one. */
    for (uint64_t h = 1; h <= 3; h++) {
        e = take_handle(&a, h);
        assert_non_null(e);
        free_handle(e);
    }
    assert_int_equal(find_handle(&a, 6)->handle, 6);
    free_handle(take_handle(&a, 6));
    assert_int_equal(find_handle(&a, 5)->handle, 5);
    free_handle(take_handle(&a, 5));
    assert_null(a.h_head);
    assert_null(a.h_tail);
    assert_null(find_handle(&a, 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_in_order_and_out_of_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
