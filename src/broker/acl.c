/*
 * acl.c: ACL rules, substitution, filter-covers-filter and filter-intersects-filter (acl.h).
 */
#include "broker/acl.h"

#include "base/alloc.h"
#include "base/error.h"
#include "broker/level_trie.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RULE_DENY 4

typedef struct acl_rule {
    char *filter;
    size_t len;
    uint8_t access; /* TERN_ACL_READ | TERN_ACL_WRITE, or RULE_DENY */
    bool pattern;   /* %c / %u are substituted */
} acl_rule;

typedef struct acl_section {
    char *user; /* NULL for the pattern and anonymous sections */
    size_t user_len;
    uint32_t hash;
    acl_rule *rules;
    size_t n_rules;
    size_t cap_rules;
} acl_section;

struct tern_broker_acl {
    acl_section patterns;  /* `pattern` lines */
    acl_section anonymous; /* `topic` lines before any `user` line */
    acl_section **users;   /* open-addressing table by user name */
    size_t n_users;
    size_t cap_users;     /* power of two, or 0 */
    acl_section *current; /* where `topic` lines go */
    size_t n_rules;
};

int tern_broker_acl_new(tern_broker_acl **out)
{
    tern_broker_acl *acl = tern_calloc(1, sizeof *acl);
    if (!acl)
        return TERN_ENOMEM;
    acl->current = &acl->anonymous;
    *out = acl;
    return 0;
}

static void section_free(acl_section *s)
{
    for (size_t i = 0; i < s->n_rules; i++)
        tern_free(s->rules[i].filter);
    tern_free(s->rules);
    tern_free(s->user);
}

void tern_broker_acl_free(tern_broker_acl *acl)
{
    if (!acl)
        return;
    section_free(&acl->patterns);
    section_free(&acl->anonymous);
    for (size_t i = 0; i < acl->cap_users; i++) {
        if (acl->users[i]) {
            section_free(acl->users[i]);
            tern_free(acl->users[i]);
        }
    }
    tern_free(acl->users);
    tern_free(acl);
}

size_t tern_broker_acl_count(const tern_broker_acl *acl)
{
    return acl->n_rules;
}

static acl_section *find_user(const tern_broker_acl *acl, const char *user, size_t len)
{
    if (!acl->cap_users)
        return NULL;
    uint32_t h = tern_broker_trie_hash(user, len);
    size_t mask = acl->cap_users - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        acl_section *s = acl->users[i];
        if (!s)
            return NULL;
        if (s->hash == h && s->user_len == len && memcmp(s->user, user, len) == 0)
            return s;
    }
}

static int add_user(tern_broker_acl *acl, const char *user, size_t len, acl_section **out)
{
    acl_section *s = find_user(acl, user, len);
    if (s) {
        *out = s;
        return 0;
    }
    if ((acl->n_users + 1) * 2 > acl->cap_users) {
        size_t ncap = acl->cap_users ? acl->cap_users * 2 : 16;
        acl_section **nt = tern_calloc(ncap, sizeof *nt);
        if (!nt)
            return TERN_ENOMEM;
        for (size_t i = 0; i < acl->cap_users; i++) {
            acl_section *o = acl->users[i];
            if (!o)
                continue;
            size_t j = o->hash & (ncap - 1);
            while (nt[j])
                j = (j + 1) & (ncap - 1);
            nt[j] = o;
        }
        tern_free(acl->users);
        acl->users = nt;
        acl->cap_users = ncap;
    }
    s = tern_calloc(1, sizeof *s);
    if (!s)
        return TERN_ENOMEM;
    s->user = tern_strndup(user, len);
    if (!s->user) {
        tern_free(s);
        return TERN_ENOMEM;
    }
    s->user_len = len;
    s->hash = tern_broker_trie_hash(user, len);
    size_t j = s->hash & (acl->cap_users - 1);
    while (acl->users[j])
        j = (j + 1) & (acl->cap_users - 1);
    acl->users[j] = s;
    acl->n_users++;
    *out = s;
    return 0;
}

/* A well-formed filter: non-empty, wildcards whole levels, '#' last, no NUL. */
static bool valid_filter(const char *f, size_t len, bool wildcards_ok)
{
    if (len == 0 || memchr(f, '\0', len))
        return false;
    for (size_t pos = 0; pos <= len;) {
        size_t ll;
        size_t next = tern_broker_topic_next_level(f, len, pos, &ll);
        const char *lv = f + pos;
        for (size_t i = 0; i < ll; i++) {
            if (lv[i] == '+' || lv[i] == '#') {
                if (!wildcards_ok || ll != 1)
                    return false;
                if (lv[i] == '#' && next <= len)
                    return false;
            }
        }
        pos = next;
    }
    return true;
}

static bool is_level(const char *lv, size_t ll, char c)
{
    return ll == 1 && lv[0] == c;
}

/* Does filter r match every topic that filter s matches? (MQTT rules, `$` included.) */
static bool covers(const char *r, size_t rl, const char *s, size_t sl)
{
    size_t rp = 0, sp = 0;
    for (bool first = true;; first = false) {
        bool r_end = rp > rl, s_end = sp > sl;
        if (r_end)
            return s_end;
        size_t rll, sll = 0;
        size_t rnext = tern_broker_topic_next_level(r, rl, rp, &rll);
        const char *rv = r + rp;
        const char *sv = s_end ? NULL : s + sp;
        size_t snext = s_end ? sp : tern_broker_topic_next_level(s, sl, sp, &sll);
        if (is_level(rv, rll, '#')) {
            /* "#" matches the rest, the parent level included, but at the first level not a
             * topic starting with '$'. */
            if (first && !s_end && sll > 0 && sv[0] == '$')
                return false;
            return true;
        }
        if (s_end)
            return false;
        if (is_level(sv, sll, '#')) {
            /* s reaches any depth from here; only "+/#" at the first level does too (no topic
             * has zero levels). */
            if (first && is_level(rv, rll, '+') && rnext <= rl) {
                size_t l2;
                size_t after = tern_broker_topic_next_level(r, rl, rnext, &l2);
                return is_level(r + rnext, l2, '#') && after > rl;
            }
            return false;
        }
        if (is_level(sv, sll, '+')) {
            if (!is_level(rv, rll, '+'))
                return false;
        } else if (is_level(rv, rll, '+')) {
            if (first && sll > 0 && sv[0] == '$')
                return false;
        } else if (rll != sll || memcmp(rv, sv, rll) != 0) {
            return false;
        }
        rp = rnext;
        sp = snext;
    }
}

/* Is there a topic both filters match? */
static bool intersects(const char *d, size_t dl, const char *s, size_t sl)
{
    size_t dp = 0, sp = 0;
    for (bool first = true;; first = false) {
        bool d_end = dp > dl, s_end = sp > sl;
        if (d_end && s_end)
            return true;
        size_t dll = 0, sll = 0;
        const char *dv = d + (d_end ? 0 : dp);
        const char *sv = s + (s_end ? 0 : sp);
        size_t dnext = d_end ? dp : tern_broker_topic_next_level(d, dl, dp, &dll);
        size_t snext = s_end ? sp : tern_broker_topic_next_level(s, sl, sp, &sll);
        if (d_end)
            return is_level(sv, sll, '#'); /* "a/#" matches "a" */
        if (s_end)
            return is_level(dv, dll, '#');
        bool d_hash = is_level(dv, dll, '#'), s_hash = is_level(sv, sll, '#');
        bool d_plus = is_level(dv, dll, '+'), s_plus = is_level(sv, sll, '+');
        bool d_dollar = first && dll > 0 && dv[0] == '$' && !d_plus && !d_hash;
        bool s_dollar = first && sll > 0 && sv[0] == '$' && !s_plus && !s_hash;
        if (d_hash || s_hash)
            return !(d_hash && s_dollar) && !(s_hash && d_dollar);
        if (d_plus || s_plus) {
            if ((d_plus && s_dollar) || (s_plus && d_dollar))
                return false;
        } else if (dll != sll || memcmp(dv, sv, dll) != 0) {
            return false;
        }
        dp = dnext;
        sp = snext;
    }
}

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Next whitespace-separated token of line[*pos..len). */
static size_t token(const char *line, size_t len, size_t *pos, const char **tok)
{
    while (*pos < len && is_space(line[*pos]))
        (*pos)++;
    *tok = line + *pos;
    size_t start = *pos;
    while (*pos < len && !is_space(line[*pos]))
        (*pos)++;
    return *pos - start;
}

static bool word(const char *tok, size_t n, const char *w)
{
    return n == strlen(w) && memcmp(tok, w, n) == 0;
}

static int add_rule(tern_broker_acl *acl, acl_section *s, const char *filter, size_t len,
    uint8_t access, bool pattern)
{
    if (s->n_rules == s->cap_rules) {
        size_t ncap = s->cap_rules ? s->cap_rules * 2 : 4;
        acl_rule *nr = tern_realloc(s->rules, ncap * sizeof *nr);
        if (!nr)
            return TERN_ENOMEM;
        s->rules = nr;
        s->cap_rules = ncap;
    }
    char *copy = tern_strndup(filter, len);
    if (!copy)
        return TERN_ENOMEM;
    s->rules[s->n_rules++] = (acl_rule) { copy, len, access, pattern };
    acl->n_rules++;
    return 0;
}

int tern_broker_acl_add_line(
    tern_broker_acl *acl, const char *line, size_t len, char *err, size_t err_len)
{
    while (len && (is_space(line[len - 1]) || line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    size_t pos = 0;
    const char *kw;
    size_t kwn = token(line, len, &pos, &kw);
    if (kwn == 0 || kw[0] == '#')
        return 0;
    if (memchr(line, '\0', len)) {
        set_err(err, err_len, "NUL byte in line");
        return TERN_ECONFIG;
    }
    if (word(kw, kwn, "user")) {
        while (pos < len && is_space(line[pos]))
            pos++;
        if (pos == len) {
            set_err(err, err_len, "user needs a name");
            return TERN_ECONFIG;
        }
        acl_section *s;
        int rc = add_user(acl, line + pos, len - pos, &s);
        if (rc)
            return rc;
        acl->current = s;
        return 0;
    }
    bool pattern = word(kw, kwn, "pattern");
    if (!pattern && !word(kw, kwn, "topic")) {
        set_err(err, err_len, "unknown directive '%.*s' (expected topic, pattern or user)",
            (int)(kwn > 32 ? 32 : kwn), kw);
        return TERN_ECONFIG;
    }
    size_t after_kw = pos;
    const char *acc;
    size_t accn = token(line, len, &pos, &acc);
    uint8_t access = TERN_ACL_READ | TERN_ACL_WRITE;
    bool has_access = true;
    if (word(acc, accn, "read"))
        access = TERN_ACL_READ;
    else if (word(acc, accn, "write"))
        access = TERN_ACL_WRITE;
    else if (word(acc, accn, "readwrite"))
        access = TERN_ACL_READ | TERN_ACL_WRITE;
    else if (word(acc, accn, "deny"))
        access = RULE_DENY;
    else
        has_access = false;
    while (pos < len && is_space(line[pos]))
        pos++;
    if (!has_access || pos == len) {
        /* No access word (or the word is the filter itself): readwrite on the rest. */
        pos = after_kw;
        while (pos < len && is_space(line[pos]))
            pos++;
        access = TERN_ACL_READ | TERN_ACL_WRITE;
    }
    const char *filter = line + pos;
    size_t flen = len - pos;
    if (flen == 0) {
        set_err(err, err_len, "%s needs a topic filter", pattern ? "pattern" : "topic");
        return TERN_ECONFIG;
    }
    if (!valid_filter(filter, flen, true)) {
        set_err(err, err_len, "invalid topic filter '%.*s'", (int)(flen > 64 ? 64 : flen), filter);
        return TERN_ECONFIG;
    }
    return add_rule(acl, pattern ? &acl->patterns : acl->current, filter, flen, access, pattern);
}

int tern_broker_acl_add_defaults(tern_broker_acl *acl)
{
    static const char *const defaults[] = {
        "pattern write fleet/%c/#",
        "pattern read fleet/%c/cmd/#",
        "pattern read fleet/%c/config",
    };
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        int rc = tern_broker_acl_add_line(acl, defaults[i], strlen(defaults[i]), NULL, 0);
        if (rc)
            return rc;
    }
    return 0;
}

int tern_broker_acl_load_file(tern_broker_acl *acl, const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int rc = -errno;
        set_err(err, err_len, "%s: %s", path, tern_strerror(rc));
        return rc;
    }
    acl->current = &acl->anonymous;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    unsigned long lineno = 0;
    int rc = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        char why[200] = "";
        rc = tern_broker_acl_add_line(acl, line, (size_t)got, why, sizeof why);
        if (rc) {
            if (rc == TERN_ECONFIG)
                set_err(err, err_len, "%s:%lu: %s", path, lineno, why);
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        rc = TERN_EIO;
        set_err(err, err_len, "%s: read error", path);
    }
    acl->current = &acl->anonymous;
    free(line);
    fclose(f);
    return rc;
}

/* A value that can be substituted without widening: non-empty, no wildcard, no separator. */
static bool safe_value(const char *v, size_t len)
{
    if (!v || len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '+' || v[i] == '#' || v[i] == '/' || v[i] == '\0')
            return false;
    }
    return true;
}

/* Expand %c/%u of a pattern into out (caller frees if *heap). 0, 1 = unsafe, or ENOMEM. */
static int expand(const acl_rule *r, const char *cid, size_t cid_len, const char *user,
    size_t user_len, char *stack, size_t stack_len, char **out, size_t *out_len)
{
    size_t need = 0;
    bool use_c = false, use_u = false;
    for (size_t i = 0; i < r->len; i++) {
        if (r->filter[i] == '%' && i + 1 < r->len
            && (r->filter[i + 1] == 'c' || r->filter[i + 1] == 'u')) {
            bool c = r->filter[i + 1] == 'c';
            use_c |= c;
            use_u |= !c;
            need += c ? cid_len : user_len;
            i++;
        } else {
            need++;
        }
    }
    if ((use_c && !safe_value(cid, cid_len)) || (use_u && !safe_value(user, user_len)))
        return 1;
    char *buf = need <= stack_len ? stack : tern_malloc(need);
    if (!buf)
        return TERN_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->filter[i] == '%' && i + 1 < r->len
            && (r->filter[i + 1] == 'c' || r->filter[i + 1] == 'u')) {
            bool c = r->filter[i + 1] == 'c';
            memcpy(buf + n, c ? cid : user, c ? cid_len : user_len);
            n += c ? cid_len : user_len;
            i++;
        } else {
            buf[n++] = r->filter[i];
        }
    }
    *out = buf;
    *out_len = n;
    return 0;
}

/* Apply one section's rules; sets *allowed, returns TERN_EDENIED on a deny, or ENOMEM. */
static int apply(const acl_section *s, const char *cid, size_t cid_len, const char *user,
    size_t user_len, const char *t, size_t tl, int access, bool *allowed)
{
    char stack[512];
    for (size_t i = 0; i < s->n_rules; i++) {
        const acl_rule *r = &s->rules[i];
        bool deny = r->access == RULE_DENY;
        if (!deny && (*allowed || (r->access & access) != access))
            continue;
        const char *f = r->filter;
        size_t fl = r->len;
        char *heap = NULL;
        if (r->pattern) {
            char *buf;
            int rc = expand(r, cid, cid_len, user, user_len, stack, sizeof stack, &buf, &fl);
            if (rc == 1) {
                if (deny)
                    return TERN_EDENIED; /* cannot tell what it would deny: deny */
                continue;
            }
            if (rc)
                return rc;
            f = buf;
            if (buf != stack)
                heap = buf;
        }
        bool hit = deny ? intersects(f, fl, t, tl) : covers(f, fl, t, tl);
        tern_free(heap);
        if (hit && deny)
            return TERN_EDENIED;
        if (hit)
            *allowed = true;
    }
    return 0;
}

int tern_broker_acl_check(const tern_broker_acl *acl, const char *client_id, size_t client_id_len,
    const char *username, size_t username_len, const char *topic, size_t topic_len, int access)
{
    if (access != TERN_ACL_READ && access != TERN_ACL_WRITE)
        return TERN_EDENIED;
    static const char share[] = "$share/";
    size_t sl = sizeof share - 1;
    if (access == TERN_ACL_READ && topic_len > sl && memcmp(topic, share, sl) == 0) {
        const char *slash = memchr(topic + sl, '/', topic_len - sl);
        if (!slash || slash == topic + sl)
            return TERN_EDENIED;
        topic_len -= (size_t)(slash + 1 - topic);
        topic = slash + 1;
    }
    if (!valid_filter(topic, topic_len, access == TERN_ACL_READ))
        return TERN_EDENIED;
    bool allowed = false;
    int rc = apply(&acl->patterns, client_id, client_id_len, username, username_len, topic,
        topic_len, access, &allowed);
    if (rc)
        return rc;
    const acl_section *s = username ? find_user(acl, username, username_len) : &acl->anonymous;
    if (s) {
        rc = apply(s, client_id, client_id_len, username, username_len, topic, topic_len, access,
            &allowed);
        if (rc)
            return rc;
    }
    return allowed ? 0 : TERN_EDENIED;
}
