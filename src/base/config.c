/*
 * config.c: schema-driven parser of tern's INI-like config files and command-line overrides.
 * See docs/config.md for the format.
 */
#include "base/config.h"

#include "base/alloc.h"
#include "base/error.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Priorities of the sources: a value replaces one of lower priority only. */
enum { PRIO_UNSET = 0, PRIO_DEFAULT = 1, PRIO_FILE = 2, PRIO_CMDLINE = 3 };

#define ERROR_MAX 512
#define SHOW_MAX 64 /* longest piece of user text quoted in a message */

typedef struct slot {
    const tern_config_schema *schema;
    int prio;
    unsigned line; /* line of the file that set it (PRIO_FILE) */
    size_t n_items;
    char **strs;   /* item texts as given (unquoted); ENUM: the choice */
    int64_t *ints; /* parsed INT/SIZE/DURATION/BOOL items */
} slot;

struct tern_config {
    slot *slots;
    size_t n_slots, cap_slots;
    char error[ERROR_MAX];
};

/* A parsed value: items ready to store in a slot. */
typedef struct parsed {
    size_t n_items, cap_items;
    char **strs;
    int64_t *ints;
} parsed;

/* Where a value comes from, for messages. */
typedef struct origin {
    const char *name; /* file name, "command line", "schema" */
    unsigned line;    /* 0: no line */
    int prio;
} origin;

static int fail(tern_config *cfg, const origin *o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(tern_config *cfg, const origin *o, const char *fmt, ...)
{
    int n;
    if (o->line)
        n = snprintf(cfg->error, sizeof cfg->error, "%s:%u: ", o->name, o->line);
    else
        n = snprintf(cfg->error, sizeof cfg->error, "%s: ", o->name);
    if (n < 0 || (size_t)n >= sizeof cfg->error)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cfg->error + n, sizeof cfg->error - (size_t)n, fmt, ap);
    va_end(ap);
    return TERN_ECONFIG;
}

static int fail_nomem(tern_config *cfg)
{
    snprintf(cfg->error, sizeof cfg->error, "out of memory");
    return TERN_ENOMEM;
}

/* show copies user text for a message: at most SHOW_MAX bytes, control bytes as '?'. */
static const char *show(char out[SHOW_MAX + 4], const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n < SHOW_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        out[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (len > SHOW_MAX) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

static void value_free(parsed *v)
{
    for (size_t i = 0; i < v->n_items; i++)
        tern_free(v->strs[i]);
    tern_free(v->strs);
    tern_free(v->ints);
    memset(v, 0, sizeof *v);
}

static int value_push(parsed *v, char *str)
{
    if (v->n_items == v->cap_items) {
        size_t cap = v->cap_items ? 2 * v->cap_items : 4;
        char **strs = tern_realloc(v->strs, cap * sizeof *strs);
        if (!strs)
            return TERN_ENOMEM;
        v->strs = strs;
        int64_t *ints = tern_realloc(v->ints, cap * sizeof *ints);
        if (!ints)
            return TERN_ENOMEM;
        v->ints = ints;
        v->cap_items = cap;
    }
    v->strs[v->n_items] = str;
    v->ints[v->n_items] = 0;
    v->n_items++;
    return 0;
}

int tern_config_create(tern_config **out)
{
    tern_config *cfg = tern_calloc(1, sizeof *cfg);
    if (!cfg)
        return TERN_ENOMEM;
    *out = cfg;
    return 0;
}

static void slot_clear(slot *s)
{
    for (size_t i = 0; i < s->n_items; i++)
        tern_free(s->strs[i]);
    tern_free(s->strs);
    tern_free(s->ints);
    s->strs = NULL;
    s->ints = NULL;
    s->n_items = 0;
}

void tern_config_destroy(tern_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_slots; i++)
        slot_clear(&cfg->slots[i]);
    tern_free(cfg->slots);
    tern_free(cfg);
}

const char *tern_config_error(const tern_config *cfg)
{
    return cfg->error;
}

static slot *find_slot_n(const tern_config *cfg, const char *key, size_t len)
{
    for (size_t i = 0; i < cfg->n_slots; i++) {
        const char *k = cfg->slots[i].schema->key;
        if (strncmp(k, key, len) == 0 && k[len] == '\0')
            return &cfg->slots[i];
    }
    return NULL;
}

static slot *find_slot(const tern_config *cfg, const char *key)
{
    return find_slot_n(cfg, key, strlen(key));
}

/* section_known: some declared key starts with "section." */
static bool section_known(const tern_config *cfg, const char *section, size_t len)
{
    for (size_t i = 0; i < cfg->n_slots; i++) {
        const char *k = cfg->slots[i].schema->key;
        if (strncmp(k, section, len) == 0 && k[len] == '.')
            return true;
    }
    return false;
}

/* ---- typed item parsing ---------------------------------------------------------------- */

/* parse_digits reads an unsigned decimal prefix; returns chars read (0: none), -1 overflow. */
static int parse_digits(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    int n = 0;
    while (isdigit((unsigned char)s[n])) {
        unsigned d = (unsigned)(s[n] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        n++;
        if (n > 40)
            return -1;
    }
    *out = v;
    return n;
}

static const char *type_expectation(const tern_config_schema *sc)
{
    switch (sc->type) {
    case TERN_CONFIG_INT:
        return "an integer";
    case TERN_CONFIG_SIZE:
        return "a size such as 4096, 64KiB or 1GB";
    case TERN_CONFIG_DURATION:
        return "a duration such as 250ms, 10s, 5m, 2h or 7d";
    case TERN_CONFIG_BOOL:
        return "a boolean (true or false)";
    default:
        return "a value";
    }
}

static int parse_int_item(const char *s, int64_t *out)
{
    bool neg = false;
    const char *p = s;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    uint64_t u;
    int n = parse_digits(p, &u);
    if (n <= 0 || p[n] != '\0')
        return -1;
    if (neg ? u > (uint64_t)INT64_MAX + 1 : u > (uint64_t)INT64_MAX)
        return -1;
    *out = neg ? (int64_t)(0 - u) : (int64_t)u;
    return 0;
}

struct unit {
    const char *name;
    uint64_t mult;
};

static const struct unit size_units[] = {
    { "", 1 },
    { "b", 1 },
    { "kb", 1000ull },
    { "mb", 1000ull * 1000 },
    { "gb", 1000ull * 1000 * 1000 },
    { "tb", 1000ull * 1000 * 1000 * 1000 },
    { "kib", 1ull << 10 },
    { "mib", 1ull << 20 },
    { "gib", 1ull << 30 },
    { "tib", 1ull << 40 },
    { NULL, 0 },
};

static const struct unit duration_units[] = {
    { "ms", 1 },
    { "s", 1000 },
    { "m", 60000 },
    { "h", 3600000 },
    { "d", 86400000 },
    { NULL, 0 },
};

/* parse_with_unit: digits then a unit from units (case-insensitive). */
static int parse_with_unit(
    const char *s, const struct unit *units, bool bare_zero_only, int64_t *out)
{
    uint64_t u;
    int n = parse_digits(s, &u);
    if (n <= 0)
        return -1;
    const char *suffix = s + n;
    if (*suffix == ' ')
        suffix++;
    if (bare_zero_only && *suffix == '\0' && suffix == s + n) {
        if (u != 0)
            return -1;
        *out = 0;
        return 0;
    }
    for (const struct unit *un = units; un->name; un++) {
        if (strcasecmp(suffix, un->name) == 0) {
            if (u > (uint64_t)INT64_MAX / un->mult)
                return -2;
            *out = (int64_t)(u * un->mult);
            return 0;
        }
    }
    return -1;
}

static int parse_bool_item(const char *s, int64_t *out)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* enum_match: is s one of the '|'-separated choices? */
static bool enum_match(const char *choices, const char *s)
{
    size_t len = strlen(s);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && memcmp(p, s, n) == 0)
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

/* check_item types one item in place (v->ints[i]); on failure writes the message. */
static int check_item(
    tern_config *cfg, const origin *o, const tern_config_schema *sc, parsed *v, size_t i)
{
    const char *s = v->strs[i];
    char shown[SHOW_MAX + 4];
    int64_t x = 0;
    int rc = 0;
    switch (sc->type) {
    case TERN_CONFIG_STRING:
        return 0;
    case TERN_CONFIG_ENUM:
        if (enum_match(sc->choices, s))
            return 0;
        {
            char list[256];
            size_t n = 0;
            for (const char *p = sc->choices; *p && n + 3 < sizeof list; p++) {
                if (*p == '|') {
                    list[n++] = ',';
                    list[n++] = ' ';
                } else {
                    list[n++] = *p;
                }
            }
            list[n] = '\0';
            return fail(cfg, o, "%s: expected one of %s; got '%s'", sc->key, list,
                show(shown, s, strlen(s)));
        }
    case TERN_CONFIG_INT:
        rc = parse_int_item(s, &x);
        break;
    case TERN_CONFIG_SIZE:
        rc = parse_with_unit(s, size_units, false, &x);
        break;
    case TERN_CONFIG_DURATION:
        rc = parse_with_unit(s, duration_units, true, &x);
        break;
    case TERN_CONFIG_BOOL:
        rc = parse_bool_item(s, &x);
        break;
    default:
        tern_bug(__FILE__, __LINE__, "unknown config type");
    }
    if (rc == -2)
        return fail(cfg, o, "%s: '%s' is too large", sc->key, show(shown, s, strlen(s)));
    if (rc)
        return fail(cfg, o, "%s: expected %s, got '%s'", sc->key, type_expectation(sc),
            show(shown, s, strlen(s)));
    if ((sc->min != 0 || sc->max != 0) && sc->type != TERN_CONFIG_BOOL
        && (x < sc->min || x > sc->max)) {
        const char *unit = sc->type == TERN_CONFIG_SIZE ? " bytes"
            : sc->type == TERN_CONFIG_DURATION          ? " ms"
                                                        : "";
        return fail(cfg, o, "%s: '%s' is out of range [%lld, %lld]%s", sc->key,
            show(shown, s, strlen(s)), (long long)sc->min, (long long)sc->max, unit);
    }
    v->ints[i] = x;
    return 0;
}

/* ---- value text ----------------------------------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* parse_quoted reads "..." at *pp (< end); returns the unescaped copy in *out. */
static int parse_quoted(
    tern_config *cfg, const origin *o, const char **pp, const char *end, char **out)
{
    const char *p = *pp + 1;
    char *s = tern_malloc((size_t)(end - p) + 1);
    if (!s)
        return fail_nomem(cfg);
    size_t n = 0;
    for (;;) {
        if (p >= end) {
            tern_free(s);
            return fail(cfg, o, "unterminated quoted string");
        }
        char c = *p++;
        if (c == '"')
            break;
        if (c == '\\') {
            char e = p < end ? *p++ : '\0';
            switch (e) {
            case '\\':
            case '"':
                c = e;
                break;
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            default: {
                char shown[SHOW_MAX + 4];
                tern_free(s);
                return fail(
                    cfg, o, "unknown escape '\\%s' in quoted string", show(shown, &e, e ? 1 : 0));
            }
            }
        }
        s[n++] = c;
    }
    s[n] = '\0';
    *pp = p;
    *out = s;
    return 0;
}

/*
 * parse_value splits value text [p, end) into items (one unless list). Comments (# at the start
 * or after a blank) end the value; unquoted items are trimmed.
 */
static int parse_value(tern_config *cfg, const origin *o, const tern_config_schema *sc,
    const char *p, const char *end, parsed *v)
{
    bool list = sc->flags & TERN_CONFIG_LIST;
    bool after_comma = false;
    int rc;
    for (;;) {
        while (p < end && is_space(*p))
            p++;
        if (p == end || *p == '#') {
            if (after_comma)
                return fail(cfg, o, "%s: empty list item", sc->key);
            if (!list && v->n_items == 0) {
                char *empty = tern_strdup("");
                if (!empty || value_push(v, empty)) {
                    tern_free(empty);
                    return fail_nomem(cfg);
                }
            }
            return 0;
        }
        char *item = NULL;
        if (*p == '"') {
            rc = parse_quoted(cfg, o, &p, end, &item);
            if (rc)
                return rc;
        } else {
            const char *start = p;
            while (p < end && !(list && *p == ',') && !(*p == '#' && is_space(p[-1])))
                p++;
            const char *stop = p;
            while (stop > start && is_space(stop[-1]))
                stop--;
            if (list && stop == start)
                return fail(cfg, o, "%s: empty list item", sc->key);
            item = tern_strndup(start, (size_t)(stop - start));
            if (!item)
                return fail_nomem(cfg);
        }
        if (value_push(v, item)) {
            tern_free(item);
            return fail_nomem(cfg);
        }
        while (p < end && is_space(*p))
            p++;
        if (p == end || *p == '#')
            return 0;
        if (list && *p == ',') {
            p++;
            after_comma = true;
            continue;
        }
        char shown[SHOW_MAX + 4];
        return fail(cfg, o, "%s: unexpected text after quoted value: '%s'", sc->key,
            show(shown, p, (size_t)(end - p)));
    }
}

/* apply stores v (taken over on success) into s per the precedence rules. */
static int apply(tern_config *cfg, const origin *o, slot *s, parsed *v)
{
    const tern_config_schema *sc = s->schema;
    bool list = sc->flags & TERN_CONFIG_LIST;
    for (size_t i = 0; i < v->n_items; i++) {
        int rc = check_item(cfg, o, sc, v, i);
        if (rc)
            return rc;
    }
    if (o->prio < s->prio)
        return 0; /* valid, but overridden */
    if (o->prio == s->prio && o->prio == PRIO_FILE && !list)
        return fail(cfg, o, "%s: set twice (first at line %u)", sc->key, s->line);
    if (o->prio == s->prio && list && v->n_items > 0) {
        size_t n = s->n_items + v->n_items;
        char **strs = tern_realloc(s->strs, n * sizeof *strs);
        if (!strs)
            return fail_nomem(cfg);
        s->strs = strs;
        int64_t *ints = tern_realloc(s->ints, n * sizeof *ints);
        if (!ints)
            return fail_nomem(cfg);
        s->ints = ints;
        memcpy(s->strs + s->n_items, v->strs, v->n_items * sizeof *strs);
        memcpy(s->ints + s->n_items, v->ints, v->n_items * sizeof *ints);
        s->n_items = n;
        tern_free(v->strs);
        tern_free(v->ints);
        memset(v, 0, sizeof *v);
    } else if (o->prio != s->prio || !list) {
        slot_clear(s);
        s->strs = v->strs;
        s->ints = v->ints;
        s->n_items = v->n_items;
        memset(v, 0, sizeof *v);
    }
    s->prio = o->prio;
    s->line = o->line;
    return 0;
}

static int set_text(tern_config *cfg, const origin *o, slot *s, const char *p, const char *end)
{
    parsed v = { 0 };
    int rc = parse_value(cfg, o, s->schema, p, end, &v);
    if (rc == 0)
        rc = apply(cfg, o, s, &v);
    value_free(&v);
    return rc;
}

/* ---- schema ---------------------------------------------------------------------------- */

static bool key_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-';
}

static bool schema_key_valid(const char *key)
{
    if (!key[0] || key[0] == '.')
        return false;
    for (const char *p = key; *p; p++) {
        if (*p == '.' ? p[1] == '.' || p[1] == '\0' : !key_char(*p))
            return false;
    }
    return true;
}

int tern_config_add_schema(tern_config *cfg, const tern_config_schema *table)
{
    size_t n = 0;
    while (table[n].key)
        n++;
    if (cfg->n_slots + n > cfg->cap_slots) {
        size_t cap = cfg->n_slots + n + 16;
        slot *slots = tern_realloc(cfg->slots, cap * sizeof *slots);
        if (!slots)
            return fail_nomem(cfg);
        cfg->slots = slots;
        cfg->cap_slots = cap;
    }
    origin o = { "schema", 0, PRIO_DEFAULT };
    size_t first = cfg->n_slots;
    for (size_t i = 0; i < n; i++) {
        const tern_config_schema *sc = &table[i];
        int rc = 0;
        if (!schema_key_valid(sc->key))
            rc = fail(cfg, &o, "invalid key name '%s'", sc->key);
        else if (find_slot(cfg, sc->key))
            rc = fail(cfg, &o, "%s: declared twice", sc->key);
        else if ((unsigned)sc->type > TERN_CONFIG_ENUM)
            rc = fail(cfg, &o, "%s: invalid type", sc->key);
        else if (sc->type == TERN_CONFIG_ENUM && (!sc->choices || !sc->choices[0]))
            rc = fail(cfg, &o, "%s: enum without choices", sc->key);
        if (rc == 0) {
            slot *s = &cfg->slots[cfg->n_slots++];
            memset(s, 0, sizeof *s);
            s->schema = sc;
            if (sc->default_value) {
                const char *d = sc->default_value;
                rc = set_text(cfg, &o, s, d, d + strlen(d));
            }
        }
        if (rc) {
            /* Undo this table so the config stays as it was. */
            while (cfg->n_slots > first)
                slot_clear(&cfg->slots[--cfg->n_slots]);
            return rc == TERN_ENOMEM ? rc : TERN_EINVAL;
        }
    }
    return 0;
}

/* ---- files ----------------------------------------------------------------------------- */

static bool only_comment(const char *p, const char *end)
{
    while (p < end && is_space(*p))
        p++;
    return p == end || *p == '#';
}

static int parse_line(
    tern_config *cfg, origin *o, const char *p, const char *end, char *section, size_t section_cap)
{
    char shown[SHOW_MAX + 4];
    if (end > p && memchr(p, '\0', (size_t)(end - p)))
        return fail(cfg, o, "NUL byte in line");
    while (p < end && is_space(*p))
        p++;
    if (p == end || *p == '#')
        return 0;
    if (*p == '[') {
        const char *name = ++p;
        while (p < end && (key_char(*p) || *p == '.'))
            p++;
        size_t len = (size_t)(p - name);
        if (p == end || *p != ']' || len == 0 || !only_comment(p + 1, end))
            return fail(cfg, o, "malformed section header '%s'",
                show(shown, name - 1, (size_t)(end - name + 1)));
        if (len >= section_cap || !section_known(cfg, name, len))
            return fail(cfg, o, "unknown section [%s]", show(shown, name, len));
        memcpy(section, name, len);
        section[len] = '\0';
        return 0;
    }
    const char *key = p;
    while (p < end && key_char(*p))
        p++;
    const char *key_end = p;
    while (p < end && is_space(*p))
        p++;
    if (key_end == key || p == end || *p != '=')
        return fail(cfg, o, "expected 'key = value' or '[section]', got '%s'",
            show(shown, key, (size_t)(end - key)));
    p++;
    char full[256];
    size_t key_len = (size_t)(key_end - key);
    int n = section[0] ? snprintf(full, sizeof full, "%s.%.*s", section, (int)key_len, key)
                       : snprintf(full, sizeof full, "%.*s", (int)key_len, key);
    slot *s = (n > 0 && (size_t)n < sizeof full) ? find_slot(cfg, full) : NULL;
    if (!s) {
        if (section[0])
            return fail(
                cfg, o, "unknown key '%s' in section [%s]", show(shown, key, key_len), section);
        return fail(cfg, o, "unknown key '%s'", show(shown, key, key_len));
    }
    return set_text(cfg, o, s, p, end);
}

int tern_config_parse_string(tern_config *cfg, const char *name, const char *data, size_t len)
{
    origin o = { name, 0, PRIO_FILE };
    char section[128] = "";
    const char *p = data, *end = data + len;
    cfg->error[0] = '\0';
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        const char *stop = line_end;
        if (stop > p && stop[-1] == '\r')
            stop--;
        o.line++;
        int rc = parse_line(cfg, &o, p, stop, section, sizeof section);
        if (rc)
            return rc;
        p = nl ? nl + 1 : end;
    }
    return 0;
}

int tern_config_load_file(tern_config *cfg, const char *path)
{
    int rc;
    tern_buf b = TERN_BUF_INIT;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    for (;;) {
        rc = tern_buf_reserve(&b, 65536);
        if (rc) {
            close(fd);
            tern_buf_free(&b);
            return fail_nomem(cfg);
        }
        ssize_t n = read(fd, b.data + b.len, b.cap - b.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            close(fd);
            goto fail;
        }
        if (n == 0)
            break;
        b.len += (size_t)n;
    }
    close(fd);
    rc = tern_config_parse_string(cfg, path, (const char *)b.data, b.len);
    tern_buf_free(&b);
    return rc;
fail:
    tern_buf_free(&b);
    snprintf(cfg->error, sizeof cfg->error, "%s: cannot read: %s", path, tern_strerror(rc));
    return rc;
}

/* ---- command line ---------------------------------------------------------------------- */

static const origin cmdline = { "command line", 0, PRIO_CMDLINE };

static int set_cmdline(tern_config *cfg, const char *key, size_t key_len, const char *value)
{
    char shown[SHOW_MAX + 4];
    slot *s = find_slot_n(cfg, key, key_len);
    if (!s)
        return fail(cfg, &cmdline, "unknown key '%s'", show(shown, key, key_len));
    return set_text(cfg, &cmdline, s, value, value + strlen(value));
}

int tern_config_set(tern_config *cfg, const char *key, const char *value)
{
    cfg->error[0] = '\0';
    return set_cmdline(cfg, key, strlen(key), value);
}

/* An override found in argv: key text (not NUL-terminated at key_len) and value. */
typedef struct override {
    const char *key;
    size_t key_len;
    const char *value;
} override;

int tern_config_parse_args(tern_config *cfg, int *argc, char **argv)
{
    char shown[SHOW_MAX + 4];
    int n = *argc;
    override *ov = tern_calloc((size_t)(n > 0 ? n : 1), sizeof *ov);
    if (!ov)
        return fail_nomem(cfg);
    size_t n_ov = 0;
    const char *config_path = NULL;
    int out = n > 0 ? 1 : 0;
    int rc = 0;
    cfg->error[0] = '\0';
    for (int i = 1; i < n; i++) {
        char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            while (i < n)
                argv[out++] = argv[i++];
            break;
        }
        if (strncmp(a, "--", 2) != 0) {
            argv[out++] = a;
            continue;
        }
        const char *opt = a + 2;
        const char *eq = strchr(opt, '=');
        size_t opt_len = eq ? (size_t)(eq - opt) : strlen(opt);
        const char *arg = eq ? eq + 1 : NULL;
        bool is_config = opt_len == 6 && memcmp(opt, "config", 6) == 0;
        bool is_set = opt_len == 3 && memcmp(opt, "set", 3) == 0;
        bool is_key = !is_config && !is_set
            && (memchr(opt, '.', opt_len) || find_slot_n(cfg, opt, opt_len));
        if (!is_config && !is_set && !is_key) {
            argv[out++] = a;
            continue;
        }
        if (!arg) {
            if (i + 1 >= n) {
                rc = fail(cfg, &cmdline, "--%s needs a value", show(shown, opt, opt_len));
                goto done;
            }
            arg = argv[++i];
        }
        if (is_config) {
            if (config_path) {
                rc = fail(cfg, &cmdline, "--config given twice");
                goto done;
            }
            config_path = arg;
        } else if (is_set) {
            const char *keq = strchr(arg, '=');
            if (!keq || keq == arg) {
                rc = fail(cfg, &cmdline, "--set expects KEY=VALUE, got '%s'",
                    show(shown, arg, strlen(arg)));
                goto done;
            }
            ov[n_ov++] = (override) { arg, (size_t)(keq - arg), keq + 1 };
        } else {
            ov[n_ov++] = (override) { opt, opt_len, arg };
        }
    }
    if (config_path) {
        rc = tern_config_load_file(cfg, config_path);
        if (rc)
            goto done;
    }
    for (size_t i = 0; i < n_ov; i++) {
        rc = set_cmdline(cfg, ov[i].key, ov[i].key_len, ov[i].value);
        if (rc)
            goto done;
    }
    rc = tern_config_check_required(cfg);
done:
    tern_free(ov);
    if (rc == 0) {
        *argc = out;
        argv[out] = NULL;
    }
    return rc;
}

int tern_config_check_required(tern_config *cfg)
{
    for (size_t i = 0; i < cfg->n_slots; i++) {
        const slot *s = &cfg->slots[i];
        if ((s->schema->flags & TERN_CONFIG_REQUIRED) && s->prio == PRIO_UNSET) {
            snprintf(cfg->error, sizeof cfg->error, "%s: required but not set", s->schema->key);
            return TERN_ECONFIG;
        }
    }
    return 0;
}

/* ---- getters --------------------------------------------------------------------------- */

static const slot *get_slot(const tern_config *cfg, const char *key, bool list)
{
    const slot *s = find_slot(cfg, key);
    TERN_ASSERT(s != NULL && "config key not declared in any schema");
    TERN_ASSERT(list == ((s->schema->flags & TERN_CONFIG_LIST) != 0));
    return s;
}

bool tern_config_has(const tern_config *cfg, const char *key)
{
    const slot *s = find_slot(cfg, key);
    TERN_ASSERT(s != NULL);
    return s->prio != PRIO_UNSET;
}

tern_config_source tern_config_get_source(const tern_config *cfg, const char *key)
{
    const slot *s = find_slot(cfg, key);
    TERN_ASSERT(s != NULL);
    return (tern_config_source)s->prio;
}

const char *tern_config_get_string(const tern_config *cfg, const char *key)
{
    const slot *s = get_slot(cfg, key, false);
    TERN_ASSERT(s->schema->type == TERN_CONFIG_STRING || s->schema->type == TERN_CONFIG_ENUM);
    return s->n_items ? s->strs[0] : NULL;
}

int64_t tern_config_get_int(const tern_config *cfg, const char *key)
{
    const slot *s = get_slot(cfg, key, false);
    TERN_ASSERT(s->schema->type == TERN_CONFIG_INT || s->schema->type == TERN_CONFIG_SIZE
        || s->schema->type == TERN_CONFIG_DURATION);
    return s->n_items ? s->ints[0] : 0;
}

bool tern_config_get_bool(const tern_config *cfg, const char *key)
{
    const slot *s = get_slot(cfg, key, false);
    TERN_ASSERT(s->schema->type == TERN_CONFIG_BOOL);
    return s->n_items ? s->ints[0] != 0 : false;
}

size_t tern_config_list_len(const tern_config *cfg, const char *key)
{
    return get_slot(cfg, key, true)->n_items;
}

const char *tern_config_list_string(const tern_config *cfg, const char *key, size_t i)
{
    const slot *s = get_slot(cfg, key, true);
    TERN_ASSERT(i < s->n_items);
    return s->strs[i];
}

int64_t tern_config_list_int(const tern_config *cfg, const char *key, size_t i)
{
    const slot *s = get_slot(cfg, key, true);
    TERN_ASSERT(s->schema->type != TERN_CONFIG_STRING && s->schema->type != TERN_CONFIG_ENUM);
    TERN_ASSERT(i < s->n_items);
    return s->ints[i];
}

/* ---- describe -------------------------------------------------------------------------- */

static const char *type_name(const tern_config_schema *sc)
{
    static const char *const names[]
        = { "string", "integer", "size", "duration", "boolean", "enum" };
    return names[sc->type];
}

int tern_config_describe(const tern_config *cfg, tern_buf *out)
{
    int rc = 0;
    const char *cur = NULL;
    size_t cur_len = 0;
    for (size_t i = 0; i < cfg->n_slots && rc == 0; i++) {
        const tern_config_schema *sc = cfg->slots[i].schema;
        const char *dot = strrchr(sc->key, '.');
        size_t sec_len = dot ? (size_t)(dot - sc->key) : 0;
        const char *name = dot ? dot + 1 : sc->key;
        if (i == 0 || sec_len != cur_len || strncmp(sc->key, cur, sec_len) != 0) {
            if (sec_len)
                rc = tern_buf_printf(out, "%s[%.*s]\n", i ? "\n" : "", (int)sec_len, sc->key);
            cur = sc->key;
            cur_len = sec_len;
        }
        if (rc == 0)
            rc = tern_buf_printf(out, "# %s\n# type: %s%s%s%s", sc->help ? sc->help : "",
                type_name(sc), sc->flags & TERN_CONFIG_LIST ? " list" : "",
                sc->type == TERN_CONFIG_ENUM ? ", one of " : "",
                sc->type == TERN_CONFIG_ENUM ? sc->choices : "");
        if (rc == 0 && (sc->min != 0 || sc->max != 0) && sc->type != TERN_CONFIG_BOOL
            && sc->type != TERN_CONFIG_STRING && sc->type != TERN_CONFIG_ENUM)
            rc = tern_buf_printf(
                out, ", range [%lld, %lld]", (long long)sc->min, (long long)sc->max);
        if (rc == 0 && (sc->flags & TERN_CONFIG_REQUIRED))
            rc = tern_buf_append_str(out, ", required");
        if (rc == 0)
            rc = tern_buf_printf(
                out, "\n# %s = %s\n", name, sc->default_value ? sc->default_value : "");
    }
    return rc;
}

/* ---- the core schema ------------------------------------------------------------------- */

const tern_config_schema tern_config_schema_core[] = {
    { .key = "logging.level",
        .type = TERN_CONFIG_ENUM,
        .default_value = "info",
        .choices = "error|warn|info|debug",
        .help = "lowest severity of the log lines written to stderr" },
    { .key = "data.dir",
        .type = TERN_CONFIG_STRING,
        .default_value = "./tern-data",
        .help = "directory holding every stage's data (log segments, TSDB blocks, ...)" },
    { .key = NULL },
};
