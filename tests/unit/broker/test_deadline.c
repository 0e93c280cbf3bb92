/*
 * test_deadline.c: the broker's deadline heap: firing order, only what is due, disarm from
 * anywhere in the heap, re-arming (also from a callback), and a randomized run checked
 * against a plain array.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "broker/deadline.h"

#include <stdlib.h>
#include <string.h>

#define N 64

typedef struct rec {
    uint64_t fired_at[4 * N];
    int order[4 * N];
    int n;
} rec;

static rec *g_rec;
static uint64_t g_now;

static void on_fire(broker_deadline *d)
{
    int id = (int)(intptr_t)d->data;
    g_rec->order[g_rec->n] = id;
    g_rec->fired_at[g_rec->n] = d->due_ms;
    g_rec->n++;
}

static void test_fires_due_in_order(void **state)
{
    (void)state;
    broker_deadlines h = { 0 };
    broker_deadline d[5];
    memset(d, 0, sizeof d);
    rec r = { 0 };
    g_rec = &r;
    uint64_t due[5] = { 50, 10, 40, 20, 30 };
    for (int i = 0; i < 5; i++)
        assert_int_equal(broker_deadline_arm(&h, &d[i], due[i], on_fire, (void *)(intptr_t)i), 0);
    broker_deadline_fire_due(&h, 25);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.order[0], 1); /* due 10 */
    assert_int_equal(r.order[1], 3); /* due 20 */
    assert_false(broker_deadline_armed(&d[1]));
    assert_true(broker_deadline_armed(&d[0]));
    broker_deadline_fire_due(&h, 100);
    assert_int_equal(r.n, 5);
    assert_int_equal(r.order[2], 4);
    assert_int_equal(r.order[3], 2);
    assert_int_equal(r.order[4], 0);
    broker_deadlines_free(&h);
}

static void test_disarm_and_rearm(void **state)
{
    (void)state;
    broker_deadlines h = { 0 };
    broker_deadline d[4];
    memset(d, 0, sizeof d);
    rec r = { 0 };
    g_rec = &r;
    for (int i = 0; i < 4; i++)
        assert_int_equal(
            broker_deadline_arm(&h, &d[i], 10 * (uint64_t)(i + 1), on_fire, (void *)(intptr_t)i),
            0);
    broker_deadline_disarm(&h, &d[1]); /* from the middle */
    broker_deadline_disarm(&h, &d[1]); /* twice: a no-op */
    assert_int_equal(broker_deadline_arm(&h, &d[0], 100, on_fire, (void *)(intptr_t)0), 0);
    broker_deadline_fire_due(&h, 99);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.order[0], 2);
    assert_int_equal(r.order[1], 3);
    broker_deadline_fire_due(&h, 100);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.order[2], 0);
    assert_int_equal(h.n, 0u);
    broker_deadlines_free(&h);
}

static broker_deadlines *g_heap;

/* Re-arms itself once, later; the sweep must not fire it again before then. */
static void rearm_once(broker_deadline *d)
{
    on_fire(d);
    if (g_rec->n == 1)
        assert_int_equal(broker_deadline_arm(g_heap, d, d->due_ms + 1000, rearm_once, d->data), 0);
}

static void test_callback_rearms(void **state)
{
    (void)state;
    broker_deadlines h = { 0 };
    broker_deadline d = { 0 };
    rec r = { 0 };
    g_rec = &r;
    g_heap = &h;
    assert_int_equal(broker_deadline_arm(&h, &d, 5, rearm_once, (void *)(intptr_t)7), 0);
    broker_deadline_fire_due(&h, 10);
    assert_int_equal(r.n, 1);
    assert_true(broker_deadline_armed(&d));
    broker_deadline_fire_due(&h, 1005);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.fired_at[1], 1005u);
    broker_deadlines_free(&h);
}

/* Random arms, re-arms and disarms; every sweep fires exactly what a plain scan says is due,
 * in due order. */
static void test_random_against_a_scan(void **state)
{
    (void)state;
    srand(12345);
    broker_deadlines h = { 0 };
    broker_deadline d[N];
    memset(d, 0, sizeof d);
    bool armed[N] = { 0 };
    uint64_t due[N] = { 0 };
    g_now = 0;
    for (int round = 0; round < 2000; round++) {
        for (int k = 0; k < 8; k++) {
            int i = rand() % N;
            if (rand() % 3 == 0) {
                broker_deadline_disarm(&h, &d[i]);
                armed[i] = false;
            } else {
                due[i] = g_now + 1 + (uint64_t)(rand() % 500);
                assert_int_equal(
                    broker_deadline_arm(&h, &d[i], due[i], on_fire, (void *)(intptr_t)i), 0);
                armed[i] = true;
            }
        }
        g_now += (uint64_t)(rand() % 200);
        rec r = { 0 };
        g_rec = &r;
        int expect = 0;
        for (int i = 0; i < N; i++)
            expect += armed[i] && due[i] <= g_now;
        broker_deadline_fire_due(&h, g_now);
        assert_int_equal(r.n, expect);
        for (int k = 0; k < r.n; k++) {
            int i = r.order[k];
            assert_true(armed[i] && due[i] <= g_now);
            if (k > 0)
                assert_true(r.fired_at[k - 1] <= r.fired_at[k]);
            armed[i] = false;
        }
        uint32_t n_armed = 0;
        for (int i = 0; i < N; i++) {
            n_armed += armed[i];
            assert_int_equal(broker_deadline_armed(&d[i]), armed[i]);
        }
        assert_int_equal(h.n, n_armed);
    }
    broker_deadlines_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fires_due_in_order),
        cmocka_unit_test(test_disarm_and_rearm),
        cmocka_unit_test(test_callback_rearms),
        cmocka_unit_test(test_random_against_a_scan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
