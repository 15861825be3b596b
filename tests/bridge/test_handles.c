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

/* The report of the stanza xpb_session_send is writing comes before it is
 * tracked: its handle is past the tail and is refused at once. A new
 * session numbers from 1 again while the old one's entries are still
 * tracked: the list is then no longer ordered and every handle is still
 * found (the searches no longer stop at a larger handle). */
static void test_past_the_tail_and_a_new_session(void **state)
{
    (void)state;
    struct account a;
    memset(&a, 0, sizeof a);
    assert_null(find_handle(&a, 1));
    assert_null(take_handle(&a, 1));
    for (uint64_t h = 10; h <= 12; h++) assert_non_null(track_handle(&a, h, "r", "id"));
    assert_int_equal(find_handle(&a, 12)->handle, 12);
    assert_null(find_handle(&a, 13));
    assert_null(take_handle(&a, 13));
    assert_null(find_handle(&a, 9));
    assert_null(take_handle(&a, 9));
    assert_int_equal(find_handle(&a, 11)->handle, 11);
    assert_non_null(track_handle(&a, 1, "r", "new")); /* a new session's first */
    assert_non_null(track_handle(&a, 2, "r", "new"));
    assert_int_equal(find_handle(&a, 1)->handle, 1);
    assert_int_equal(find_handle(&a, 12)->handle, 12);
    assert_int_equal(find_handle(&a, 2)->handle, 2);
    struct handle_ent *e = take_handle(&a, 2);
    assert_non_null(e);
    assert_string_equal(e->stanza_id, "new");
    free_handle(e);
    uint64_t order[] = {10, 11, 12, 1};
    for (size_t i = 0; i < 4; i++) {
        e = take_handle(&a, order[i]);
        assert_non_null(e);
        assert_int_equal(e->handle, order[i]);
        free_handle(e);
    }
    assert_null(a.h_head);
    /* Empty again: the next list is ordered, a handle past its tail refused. */
    assert_non_null(track_handle(&a, 3, "r", "id"));
    assert_null(find_handle(&a, 4));
    assert_int_equal(find_handle(&a, 3)->handle, 3);
    free_handle(take_handle(&a, 3));
    assert_null(a.h_head);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_in_order_and_out_of_order),
        cmocka_unit_test(test_past_the_tail_and_a_new_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
