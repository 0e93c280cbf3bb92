/*
 * topic.h: MQTT topic names and topic filters: validation, shared subscriptions, matching.
 *
 * Pure functions over borrowed bytes (not NUL-terminated); no allocation, no state. The rules are
 * those of MQTT 3.1.1 section 4.7 and 5.0 section 4.7/4.8.2: names and filters are at least one
 * byte of valid MQTT UTF-8; a name holds no '+' or '#'; in a filter '+' fills a whole level and
 * '#' a whole level that is the last one; "$share/{group}/{filter}" names a shared subscription.
 */
#ifndef TERN_MQTT_TOPIC_H
#define TERN_MQTT_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* tern_mqtt_topic_validate_name checks a topic name (PUBLISH, will topic, response topic).
 * Returns 0, TERN_EUTF8, or TERN_EPROTO (empty, or a wildcard character). */
int tern_mqtt_topic_validate_name(const uint8_t *p, size_t len);

/* tern_mqtt_topic_validate_filter checks a topic filter, including the shared form
 * "$share/{group}/{filter}" when it starts with "$share/". Returns 0, TERN_EUTF8 or
 * TERN_EPROTO (empty, misplaced wildcard, bad shared form). */
int tern_mqtt_topic_validate_filter(const uint8_t *p, size_t len);

/*
 * tern_mqtt_topic_parse_shared splits a filter "$share/{group}/{filter}". It returns 1 with
 * *group and *inner (borrowed from p) set for a shared subscription, 0 if the filter is not
 * shared (out-parameters untouched), TERN_EPROTO if it starts with "$share/" but the group is
 * empty or holds a wildcard, or the inner filter is empty. The inner filter is not validated.
 */
int tern_mqtt_topic_parse_shared(const uint8_t *p, size_t len, const uint8_t **group,
    size_t *group_len, const uint8_t **inner, size_t *inner_len);

/*
 * tern_mqtt_topic_matches says whether topic name matches topic filter (both already valid; a
 * shared filter must be passed as its inner filter). A filter whose first level is a wildcard
 * does not match a name starting with '$' (MQTT 4.7.2).
 */
bool tern_mqtt_topic_matches(
    const uint8_t *filter, size_t filter_len, const uint8_t *name, size_t name_len);

#endif
