/*
 * test_log_groups.c: consumer groups of the embedded log: range assignment over members in
 * join order, rebalance on join and leave (a member that gains a partition resumes from the
 * committed offset), commits refused for partitions not owned, committed offsets that survive
 * a reopen, a damaged offsets file, lag, and seek to committed / latest.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_test_util.h"

enum { PER_PARTITION = 25 };

static tern_log *open_filled(void)
{
    tern_log *log = open_log(dir, true, 1u << 20);
    assert_non_null(log);
    assert_int_equal(tern_log_create_topic(log, "g4", 4), 0);
    for (uint32_t p = 0; p < 4; p++)
        for (int i = 0; i < PER_PARTITION; i++) {
            char v[32];
            int vl = snprintf(v, sizeof v, "p%u-%d", p, i);
            tern_log_record r = { .value = (const uint8_t *)v, .value_len = (size_t)vl };
            assert_int_equal(tern_log_append(log, "g4", (int32_t)p, &r, NULL, NULL), 0);
        }
    assert_int_equal(tern_log_flush(log), 0);
    return log;
}

static tern_log_consumer *join(tern_log *log, const char *group)
{
    static const char *topics[] = { "g4" };
    tern_log_consumer_config cc = { .group = group, .topics = topics, .n_topics = 1 };
    tern_log_consumer *c = NULL;
    assert_int_equal(tern_log_consumer_open(log, &cc, &c), 0);
    return c;
}

/* owned_mask returns a bit per owned partition. */
static unsigned owned_mask(tern_log_consumer *c)
{
    tern_log_assignment as[8];
    size_t n;
    assert_int_equal(tern_log_consumer_assignment(c, as, 8, &n), 0);
    unsigned m = 0;
    for (size_t i = 0; i < n && i < 8; i++) {
        assert_string_equal(as[i].topic, "g4");
        m |= 1u << as[i].partition;
    }
    return m;
}

/* drain polls until nothing comes; counts messages per partition into per[4]. */
static void drain(tern_log_consumer *c, int per[4], int64_t first[4])
{
    for (int i = 0; i < 4; i++) {
        per[i] = 0;
        first[i] = -1;
    }
    for (;;) {
        tern_log_message m[16];
        size_t got;
        assert_int_equal(tern_log_consumer_poll(c, m, 16, 0, &got), 0);
        if (got == 0)
            return;
        for (size_t i = 0; i < got; i++) {
            char v[32];
            int vl = snprintf(v, sizeof v, "p%u-%lld", m[i].partition, (long long)m[i].offset);
            assert_int_equal(m[i].value_len, (size_t)vl);
            assert_memory_equal(m[i].value, v, (size_t)vl);
            if (first[m[i].partition] < 0)
                first[m[i].partition] = m[i].offset;
            per[m[i].partition]++;
        }
    }
}

static void test_two_members_split_then_one_leaves(void **state)
{
    (void)state;
    tern_log *log = open_filled();
    tern_log_consumer *a = join(log, "workers");
    assert_int_equal(owned_mask(a), 0xf); /* alone: everything */
    tern_log_consumer *b = join(log, "workers");
    assert_int_equal(owned_mask(a), 0x3); /* joined first: partitions 0,1 */
    assert_int_equal(owned_mask(b), 0xc);

    int per[4];
    int64_t first[4];
    drain(a, per, first);
    assert_true(per[0] == PER_PARTITION && per[1] == PER_PARTITION && !per[2] && !per[3]);
    /* b reads part of partition 2 and all of 3, and commits that */
    tern_log_message m[10];
    size_t got;
    int64_t last_p2 = -1;
    while (last_p2 < 9) {
        assert_int_equal(tern_log_consumer_poll(b, m, 1, 0, &got), 0);
        assert_int_equal(got, 1);
        if (m[0].partition == 2)
            last_p2 = m[0].offset;
    }
    assert_int_equal(tern_log_consumer_commit(b, "g4", 2, 10), 0);
    assert_int_equal(tern_log_consumer_commit(b, "g4", 3, PER_PARTITION), 0);
    assert_int_equal(tern_log_consumer_commit_all(a), 0);
    /* a cannot commit what b owns, nor b what a owns */
    assert_int_equal(tern_log_consumer_commit(a, "g4", 2, 0), TERN_EDENIED);
    assert_int_equal(tern_log_consumer_commit(b, "g4", 0, 0), TERN_EDENIED);
    int64_t off;
    assert_int_equal(tern_log_committed(log, "workers", "g4", 2, &off), 0);
    assert_true(off == 10);
    assert_int_equal(tern_log_committed(log, "workers", "g4", 0, &off), 0);
    assert_true(off == PER_PARTITION);
    int64_t lag;
    assert_int_equal(tern_log_lag(log, "workers", "g4", 2, &lag), 0);
    assert_true(lag == PER_PARTITION - 10);
    assert_int_equal(tern_log_lag(log, "workers", "g4", 1, &lag), 0);
    assert_true(lag == 0);

    /* b leaves: a takes all four and resumes 2 at the committed offset, 3 has nothing left */
    tern_log_consumer_close(b);
    drain(a, per, first);
    assert_int_equal(owned_mask(a), 0xf);
    assert_true(per[0] == 0 && per[1] == 0);
    assert_int_equal(per[2], PER_PARTITION - 10);
    assert_true(first[2] == 10);
    assert_int_equal(per[3], 0);
    tern_log_consumer_close(a);
    tern_log_close(log);
}

static void test_join_moves_partitions_and_stale_commit_denied(void **state)
{
    (void)state;
    tern_log *log = open_filled();
    tern_log_consumer *a = join(log, "g");
    int per[4];
    int64_t first[4];
    drain(a, per, first);
    assert_true(per[0] + per[1] + per[2] + per[3] == 4 * PER_PARTITION);
    assert_int_equal(tern_log_consumer_commit(a, "g4", 3, 7), 0);
    tern_log_consumer *b = join(log, "g");
    tern_log_consumer *c = join(log, "g");
    /* 4 partitions over 3 members: 2, 1, 1 */
    assert_int_equal(owned_mask(a), 0x3);
    assert_int_equal(owned_mask(b), 0x4);
    assert_int_equal(owned_mask(c), 0x8);
    /* a no longer owns 3: its commit is refused and the committed value stays */
    assert_int_equal(tern_log_consumer_commit(a, "g4", 3, 25), TERN_EDENIED);
    drain(c, per, first);
    assert_int_equal(per[3], PER_PARTITION - 7);
    assert_true(first[3] == 7);
    drain(b, per, first); /* no commit for 2: from the earliest offset */
    assert_int_equal(per[2], PER_PARTITION);
    /* seek to committed / latest */
    assert_int_equal(tern_log_consumer_seek(c, "g4", 3, TERN_LOG_OFFSET_COMMITTED), 0);
    drain(c, per, first);
    assert_true(first[3] == 7);
    assert_int_equal(tern_log_consumer_seek(c, "g4", 3, TERN_LOG_OFFSET_LATEST), 0);
    drain(c, per, first);
    assert_int_equal(per[3], 0);
    assert_int_equal(tern_log_consumer_seek(c, "g4", 0, 0), TERN_EDENIED);
    tern_log_consumer_close(a);
    tern_log_consumer_close(b);
    tern_log_consumer_close(c);
    tern_log_close(log);
}

static void test_commits_survive_reopen(void **state)
{
    (void)state;
    tern_log *log = open_filled();
    tern_log_consumer *a = join(log, "keep");
    for (uint32_t p = 0; p < 4; p++)
        assert_int_equal(tern_log_consumer_commit(a, "g4", p, 3 + p), 0);
    tern_log_consumer_close(a);
    tern_log_close(log);

    log = open_log(dir, true, 1u << 20);
    assert_non_null(log);
    for (uint32_t p = 0; p < 4; p++) {
        int64_t off;
        assert_int_equal(tern_log_committed(log, "keep", "g4", p, &off), 0);
        assert_true(off == 3 + p);
    }
    int64_t off;
    assert_int_equal(tern_log_committed(log, "other", "g4", 0, &off), 0);
    assert_true(off == TERN_LOG_OFFSET_EARLIEST);
    /* a member of the reopened group resumes at the commits */
    a = join(log, "keep");
    int per[4];
    int64_t first[4];
    drain(a, per, first);
    for (int p = 0; p < 4; p++) {
        assert_true(first[p] == 3 + p);
        assert_int_equal(per[p], PER_PARTITION - 3 - p);
    }
    tern_log_consumer_close(a);
    tern_log_close(log);

    /* a damaged offsets file: the group starts over (counted), the open still works */
    char p[600];
    snprintf(p, sizeof p, "%s/groups/keep", dir);
    size_t len = 0;
    unsigned char *b = read_file(p, &len);
    assert_non_null(b);
    b[len / 2] ^= 0xff;
    write_file(p, b, len);
    free(b);
    log = open_log(dir, true, 1u << 20);
    assert_non_null(log);
    assert_int_equal(tern_log_committed(log, "keep", "g4", 1, &off), 0);
    assert_true(off == TERN_LOG_OFFSET_EARLIEST);
    tern_log_stats st;
    tern_log_get_stats(log, &st);
    assert_true(st.corrupt_batches >= 1);
    tern_log_close(log);
}

static void test_groupless_consumer(void **state)
{
    (void)state;
    tern_log *log = open_filled();
    static const char *topics[] = { "g4" };
    tern_log_consumer_config cc
        = { .topics = topics, .n_topics = 1, .start = TERN_LOG_OFFSET_LATEST };
    tern_log_consumer *c;
    assert_int_equal(tern_log_consumer_open(log, &cc, &c), 0);
    assert_int_equal(owned_mask(c), 0xf);
    int per[4];
    int64_t first[4];
    drain(c, per, first); /* from latest: nothing */
    assert_true(per[0] + per[1] + per[2] + per[3] == 0);
    assert_int_equal(tern_log_consumer_commit(c, "g4", 0, 1), TERN_EINVAL);
    tern_log_consumer_close(c);
    cc.group = "bad/group";
    assert_int_equal(tern_log_consumer_open(log, &cc, &c), TERN_EINVAL);
    const char *missing[] = { "missing" };
    cc.group = NULL;
    cc.topics = missing;
    assert_int_equal(tern_log_consumer_open(log, &cc, &c), TERN_ENOTFOUND);
    tern_log_close(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_members_split_then_one_leaves, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_join_moves_partitions_and_stale_commit_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commits_survive_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groupless_consumer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
