/*
 * fuzz_mqtt.h: what the MQTT codec's fuzz targets share: failing loudly (an abort is a finding
 * for libFuzzer and a failure for the corpus replay), the round-trip check, and pointing every
 * input at the packet types a target is about.
 *
 * A target defines FUZZ_TARGET (its name, for messages) before including this.
 */
#ifndef TERN_TESTS_FUZZ_MQTT_H
#define TERN_TESTS_FUZZ_MQTT_H

#include "../unit/mqtt/mqtt_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "%s: %s\n", FUZZ_TARGET, what);
        abort();
    }
}

/* Aborts unless data, if it decodes in version, re-encodes and decodes to the same packet. */
static inline void check_roundtrip(const uint8_t *data, size_t size, uint8_t version)
{
    const char *diff = mqtt_check_roundtrip(data, size, version);
    if (diff) {
        fprintf(stderr, "%s: round trip (v%d): %s\n", FUZZ_TARGET, version, diff);
        abort();
    }
}

/*
 * fuzz_mqtt_typed runs one on a copy of data whose first byte's type nibble is replaced by
 * types[data[0] >> 5] (the flags nibble stays the fuzzer's), so that every mutation lands in
 * the decoders the target is about. one runs twice: as 3.1.1 (for a CONNECT: as a connection
 * sees it before CONNECT, version 0) and as 5.0.
 */
static inline int fuzz_mqtt_typed(const uint8_t *data, size_t size, const uint8_t types[8],
    void (*one)(const uint8_t *data, size_t size, uint8_t version))
{
    if (size == 0 || size > 65536)
        return 0;
    uint8_t *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    uint8_t type = types[data[0] >> 5];
    buf[0] = (uint8_t)(type << 4 | (data[0] & 0x0F));
    one(buf, size, type == TERN_MQTT_CONNECT ? 0 : TERN_MQTT_V311);
    one(buf, size, TERN_MQTT_V5);
    free(buf);
    return 0;
}

#endif
