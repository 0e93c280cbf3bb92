/*
 * test_list.c: the intrusive list: order of push_back / push_front, unlinking from the middle,
 * the ends and the only node without the head, membership of zeroed and unlinked nodes, an
 * unlink of an unlinked node, iteration, a node moving between two lists, and taking a whole
 * list.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/list.h"

#include <stdio.h>
#include <string.h>

typedef struct item {
    int id;
    tern_list link;
} item;

/* The ids on head, in order, as a string like "1,2,3" (empty list: ""). */
static const char *ids(const tern_list *head)
{
    static char out[128];
    size_t n = 0;
    out[0] = '\0';
    for (tern_list *l = tern_list_first(head); l; l = tern_list_next(head, l)) {
        const item *it = TERN_LIST_ENTRY(l, item, link);
        n += (size_t)snprintf(out + n, sizeof out - n, "%s%d", n ? "," : "", it->id);
    }
    return out;
}

static void test_order_and_unlink(void **state)
{
    (void)state;
    tern_list head;
    tern_list_init(&head);
    assert_true(tern_list_empty(&head));
    assert_null(tern_list_first(&head));
    item it[5];
    memset(it, 0, sizeof it);
    for (int i = 0; i < 5; i++) {
        it[i].id = i;
        assert_false(tern_list_linked(&it[i].link)); /* zeroed: on no list */
    }
    tern_list_push_back(&head, &it[1].link);
    tern_list_push_back(&head, &it[2].link);
    tern_list_push_front(&head, &it[0].link);
    tern_list_push_back(&head, &it[3].link);
    assert_string_equal(ids(&head), "0,1,2,3");
    assert_true(tern_list_linked(&it[2].link));

    tern_list_unlink(&it[2].link); /* the middle */
    assert_string_equal(ids(&head), "0,1,3");
    assert_false(tern_list_linked(&it[2].link));
    tern_list_unlink(&it[2].link); /* again: a no-op */
    tern_list_unlink(&it[4].link); /* never linked: a no-op */
    assert_string_equal(ids(&head), "0,1,3");
    tern_list_unlink(&it[0].link); /* the first */
    tern_list_unlink(&it[3].link); /* the last */
    assert_string_equal(ids(&head), "1");
    tern_list_unlink(&it[1].link); /* the only one */
    assert_true(tern_list_empty(&head));
    assert_string_equal(ids(&head), "");
}

static void test_move_between_lists(void **state)
{
    (void)state;
    tern_list a, b;
    tern_list_init(&a);
    tern_list_init(&b);
    item x = { .id = 7 }, y = { .id = 8 };
    tern_list_push_back(&a, &x.link);
    tern_list_push_back(&a, &y.link);
    tern_list_unlink(&x.link); /* needs neither head */
    tern_list_push_back(&b, &x.link);
    assert_string_equal(ids(&a), "8");
    assert_string_equal(ids(&b), "7");
    /* draining a list from the front, as the broker's flush does */
    int n = 0;
    for (tern_list *l; (l = tern_list_first(&b)) != NULL; n++)
        tern_list_unlink(l);
    assert_int_equal(n, 1);
    assert_true(tern_list_empty(&b));
}

static void test_take(void **state)
{
    (void)state;
    tern_list from, to;
    tern_list_init(&from);
    tern_list_take(&from, &to); /* empty onto empty */
    assert_true(tern_list_empty(&to));
    item it[3] = { { .id = 1 }, { .id = 2 }, { .id = 3 } };
    for (int i = 0; i < 3; i++)
        tern_list_push_back(&from, &it[i].link);
    tern_list_take(&from, &to);
    assert_true(tern_list_empty(&from));
    assert_string_equal(ids(&to), "1,2,3");
    item fresh = { .id = 9 };
    tern_list_push_back(&from, &fresh.link); /* from is an empty list again, ready for use */
    assert_string_equal(ids(&from), "9");
    assert_string_equal(ids(&to), "1,2,3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_unlink),
        cmocka_unit_test(test_move_between_lists),
        cmocka_unit_test(test_take),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
