/*
 * fuzz_broker_acl.c: the ACL parser and checker on hostile rules and requests.
 *
 * Input: ACL lines, a NUL byte, then request lines "A<TAB>CLIENT<TAB>USER<TAB>TOPIC" (A is
 * R or W; USER "-" means none). Beyond "no crash, no leak, no UB", it checks a property that
 * ties filter coverage to matching: when a SUBSCRIBE filter is allowed, a topic the filter
 * matches (wildcards replaced by plain levels) must be allowed for READ too, and the
 * subscription index must agree that the filter matches that topic.
 */
#include "broker/acl.h"
#include "broker/topic_tree.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t instantiate(const char *f, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 3 < cap; i++) {
        bool whole = (i == 0 || f[i - 1] == '/') && (i + 1 == len || f[i + 1] == '/');
        if (whole && f[i] == '+') {
            out[n++] = 'x';
        } else if (whole && f[i] == '#') {
            memcpy(out + n, "x/y", 3);
            n += 3;
        } else {
            out[n++] = f[i];
        }
    }
    return n;
}

static void count_hit(void *ctx, tern_topic_subscriber *who, const tern_topic_sub_opts *o)
{
    (void)who;
    (void)o;
    (*(int *)ctx)++;
}

static void check_tree_agrees(const char *filter, size_t len, const char *topic, size_t tlen)
{
    tern_topic_tree *t;
    if (tern_topic_tree_new(&t) != 0)
        return;
    tern_topic_subscriber who = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    tern_topic_sub_opts o = { 0, false, false, 0, 0 };
    if (tern_topic_tree_add(t, filter, len, &who, &o, NULL) == 0) {
        int hits = 0;
        tern_topic_match_ops ops = { count_hit, NULL };
        tern_topic_tree_match(t, topic, tlen, &ops, &hits);
        if (hits != 1)
            abort();
    }
    tern_topic_tree_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t rules_len = nul ? (size_t)(nul - text) : size;
    tern_broker_acl *acl;
    if (tern_broker_acl_new(&acl) != 0)
        return 0;
    for (size_t pos = 0; pos < rules_len;) {
        const char *nl = memchr(text + pos, '\n', rules_len - pos);
        size_t end = nl ? (size_t)(nl - text) : rules_len;
        char err[128];
        (void)tern_broker_acl_add_line(acl, text + pos, end - pos, err, sizeof err);
        pos = end + 1;
    }
    size_t pos = nul ? rules_len + 1 : size;
    while (pos < size) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        size_t end = nl ? (size_t)(nl - text) : size;
        const char *f[4];
        size_t fl[4];
        size_t n = 0, p = pos;
        while (n < 4 && p <= end) {
            const char *tab = n < 3 ? memchr(text + p, '\t', end - p) : NULL;
            size_t e = tab ? (size_t)(tab - text) : end;
            f[n] = text + p;
            fl[n++] = e - p;
            p = e + 1;
        }
        if (n == 4 && fl[0] == 1) {
            int access = f[0][0] == 'W' ? TERN_ACL_WRITE : TERN_ACL_READ;
            bool anon = fl[2] == 1 && f[2][0] == '-';
            int rc = tern_broker_acl_check(
                acl, f[1], fl[1], anon ? NULL : f[2], fl[2], f[3], fl[3], access);
            bool plain = fl[3] > 0 && f[3][0] != '$'; /* keep $share and $ rules out */
            if (rc == 0 && access == TERN_ACL_READ && plain && fl[3] < 1000) {
                char topic[4096];
                size_t tl = instantiate(f[3], fl[3], topic, sizeof topic);
                if (tern_broker_acl_check(
                        acl, f[1], fl[1], anon ? NULL : f[2], fl[2], topic, tl, TERN_ACL_READ)
                    != 0)
                    abort();
                check_tree_agrees(f[3], fl[3], topic, tl);
            }
        }
        pos = end + 1;
    }
    tern_broker_acl_free(acl);
    return 0;
}
