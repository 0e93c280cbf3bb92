/*
 * tsdb_test_dir.h: scratch directories for the store's tests: made under $TERN_TEST_TMP (or
 * /tmp) from a mkdtemp template, removed with everything in them.
 */
#ifndef TERN_TESTS_TSDB_TEST_DIR_H
#define TERN_TESTS_TSDB_TEST_DIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* tsdb_test_tmpdir makes a fresh directory named prefix + 6 random characters; free() it.
 * NULL on failure. */
static inline char *tsdb_test_tmpdir(const char *prefix)
{
    const char *root = getenv("TERN_TEST_TMP");
    char buf[512];
    snprintf(buf, sizeof buf, "%s/%sXXXXXX", root && root[0] ? root : "/tmp", prefix);
    char *d = mkdtemp(buf);
    return d ? strdup(d) : NULL;
}

static inline int tsdb_test_rm_one(
    const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* tsdb_test_rm_rf removes path and everything below it. */
static inline void tsdb_test_rm_rf(const char *path)
{
    nftw(path, tsdb_test_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
