/*
 * topic.c: topic name and filter validation, shared subscription parsing, filter matching.
 */
#include "mqtt/topic.h"

#include "base/error.h"
#include "mqtt/mqtt.h"

#include <string.h>

#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN 7

int tern_mqtt_topic_validate_name(const uint8_t *p, size_t len)
{
    if (len == 0 || len > UINT16_MAX)
        return TERN_EPROTO;
    if (tern_mqtt_utf8_validate(p, len) != 0)
        return TERN_EUTF8;
    if (memchr(p, '+', len) || memchr(p, '#', len))
        return TERN_EPROTO;
    return 0;
}

/* Checks wildcard placement in a plain (not shared) filter. */
static int check_filter_levels(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '+' && p[i] != '#')
            continue;
        bool starts_level = i == 0 || p[i - 1] == '/';
        bool ends_level = i + 1 == len || p[i + 1] == '/';
        if (!starts_level || !ends_level)
            return TERN_EPROTO;
        if (p[i] == '#' && i + 1 != len)
            return TERN_EPROTO;
    }
    return 0;
}

int tern_mqtt_topic_parse_shared(const uint8_t *p, size_t len, const uint8_t **group,
    size_t *group_len, const uint8_t **inner, size_t *inner_len)
{
    if (len < SHARE_PREFIX_LEN || memcmp(p, SHARE_PREFIX, SHARE_PREFIX_LEN) != 0)
        return 0;
    const uint8_t *g = p + SHARE_PREFIX_LEN;
    size_t rest = len - SHARE_PREFIX_LEN;
    const uint8_t *slash = memchr(g, '/', rest);
    if (!slash)
        return TERN_EPROTO;
    size_t glen = (size_t)(slash - g);
    if (glen == 0 || memchr(g, '+', glen) || memchr(g, '#', glen))
        return TERN_EPROTO;
    size_t ilen = rest - glen - 1;
    if (ilen == 0)
        return TERN_EPROTO;
    *group = g;
    *group_len = glen;
    *inner = slash + 1;
    *inner_len = ilen;
    return 1;
}

int tern_mqtt_topic_validate_filter(const uint8_t *p, size_t len)
{
    if (len == 0 || len > UINT16_MAX)
        return TERN_EPROTO;
    if (tern_mqtt_utf8_validate(p, len) != 0)
        return TERN_EUTF8;
    const uint8_t *group, *inner;
    size_t group_len, inner_len;
    int rc = tern_mqtt_topic_parse_shared(p, len, &group, &group_len, &inner, &inner_len);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return check_filter_levels(inner, inner_len);
    return check_filter_levels(p, len);
}

bool tern_mqtt_topic_matches(
    const uint8_t *filter, size_t filter_len, const uint8_t *name, size_t name_len)
{
    if (name_len > 0 && name[0] == '$' && filter_len > 0 && (filter[0] == '+' || filter[0] == '#'))
        return false;
    size_t f = 0, n = 0;
    for (;;) {
        /* At the start of a level in both. */
        if (f < filter_len && filter[f] == '#')
            return true; /* '#' matches this level and all below, including the parent */
        size_t f_end = f;
        while (f_end < filter_len && filter[f_end] != '/')
            f_end++;
        size_t n_end = n;
        while (n_end < name_len && name[n_end] != '/')
            n_end++;
        bool plus = f_end - f == 1 && filter[f] == '+';
        if (!plus && (f_end - f != n_end - n || memcmp(filter + f, name + n, f_end - f) != 0))
            return false;
        bool f_last = f_end == filter_len;
        bool n_last = n_end == name_len;
        if (f_last && n_last)
            return true;
        if (n_last) {
            /* "a/#" matches "a": the filter's remaining level is exactly "#". */
            return filter_len - f_end == 2 && filter[f_end + 1] == '#';
        }
        if (f_last)
            return false;
        f = f_end + 1;
        n = n_end + 1;
    }
}
