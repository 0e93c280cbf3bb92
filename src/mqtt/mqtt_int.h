/*
 * mqtt_int.h: private declarations shared by the files of the MQTT codec.
 *
 * The property table (identifier -> wire type, packets allowed), the property codec used by both
 * decode.c and encode.c, and the counting writer that lets an encoder measure a packet with the
 * very code that writes it (so the remaining length can never disagree with the bytes).
 */
#ifndef TERN_MQTT_MQTT_INT_H
#define TERN_MQTT_MQTT_INT_H

#include "mqtt/mqtt.h"

/* Property wire types. */
enum {
    TERN_MQTT__T_NONE = 0,
    TERN_MQTT__T_BYTE,
    TERN_MQTT__T_U16,
    TERN_MQTT__T_U32,
    TERN_MQTT__T_VBI,
    TERN_MQTT__T_UTF8,
    TERN_MQTT__T_BIN,
    TERN_MQTT__T_PAIR,
};

/* Property contexts: the packet types, plus the will properties of a CONNECT. */
#define TERN_MQTT__CTX_WILL 16

#define TERN_MQTT__PROP_MAX_ID 0x2A

/* tern_mqtt__prop_type returns the wire type of a property identifier, TERN_MQTT__T_NONE if it
 * is not one. */
uint8_t tern_mqtt__prop_type(uint32_t id);
/* tern_mqtt__prop_allowed_mask returns the set of property bits allowed in context ctx. */
uint64_t tern_mqtt__prop_allowed_mask(unsigned ctx);

/*
 * A bounded cursor over one framed packet. Running out of bytes inside a framed packet is a
 * malformed packet (a length field points past the end), never TERN_EPARTIAL. Each getter
 * returns 0, or a negative code with *st set (reason and phrase).
 */
typedef struct tern_mqtt__r {
    const uint8_t *p;
    size_t len;
    size_t pos;
    tern_mqtt_status *st;
} tern_mqtt__r;

/* tern_mqtt__fail sets *st (if any) and returns rc. */
int tern_mqtt__fail(tern_mqtt__r *r, int rc, uint8_t reason, const char *what);
int tern_mqtt__r_u8(tern_mqtt__r *r, uint8_t *v);
int tern_mqtt__r_u16(tern_mqtt__r *r, uint16_t *v);
int tern_mqtt__r_u32(tern_mqtt__r *r, uint32_t *v);
int tern_mqtt__r_vbi(tern_mqtt__r *r, uint32_t *v);
/* tern_mqtt__r_bin reads two-byte-length binary data; tern_mqtt__r_utf8 also validates it. */
int tern_mqtt__r_bin(tern_mqtt__r *r, tern_mqtt_str *s);
int tern_mqtt__r_utf8(tern_mqtt__r *r, tern_mqtt_str *s);

/*
 * tern_mqtt__props_decode reads a property length and that many bytes of properties into *props
 * (zeroed first), in context ctx (a packet type or TERN_MQTT__CTX_WILL). Returns 0, or
 * TERN_EPROTO / TERN_EUTF8 with r->st set.
 */
int tern_mqtt__props_decode(tern_mqtt__r *r, unsigned ctx, tern_mqtt_props *props);

/* tern_mqtt__reason_allowed says whether a reason (3.1.1: return) code may appear in a packet
 * of this type (CONNACK, PUBACK..PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH). */
bool tern_mqtt__reason_allowed(uint8_t version, uint8_t type, uint8_t reason);

/* A writer that counts bytes when buf is NULL and appends them otherwise. err keeps the first
 * append failure; later writes are skipped. */
typedef struct tern_mqtt__w {
    tern_buf *buf;
    size_t n;
    int err;
} tern_mqtt__w;

void tern_mqtt__w_bytes(tern_mqtt__w *w, const void *p, size_t n);
void tern_mqtt__w_u8(tern_mqtt__w *w, uint8_t v);
void tern_mqtt__w_u16(tern_mqtt__w *w, uint16_t v);
void tern_mqtt__w_u32(tern_mqtt__w *w, uint32_t v);
void tern_mqtt__w_vbi(tern_mqtt__w *w, uint32_t v);
void tern_mqtt__w_str(tern_mqtt__w *w, tern_mqtt_str s);

/* tern_mqtt__props_size is the size of props' body (without the property length prefix). */
size_t tern_mqtt__props_size(const tern_mqtt_props *props);
/* tern_mqtt__props_write writes the property length and the properties. */
void tern_mqtt__props_write(tern_mqtt__w *w, const tern_mqtt_props *props);

#endif
