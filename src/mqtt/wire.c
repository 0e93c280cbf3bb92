/*
 * wire.c: MQTT's primitive data types: Variable Byte Integers, UTF-8 strings, the counting writer.
 *
 * A Variable Byte Integer holds 7 bits per byte, least significant group first, bit 7 meaning
 * "another byte follows"; at most 4 bytes (max 268,435,455). Decoding accepts non-minimal forms,
 * encoding always writes the minimal one. UTF-8 validation follows RFC 3629 plus MQTT's ban on
 * U+0000 (MQTT 1.5.4).
 */
#include "mqtt/mqtt_int.h"

#include "base/error.h"

int tern_mqtt_vbi_decode(const uint8_t *buf, size_t len, uint32_t *value, size_t *n_bytes)
{
    uint32_t v = 0;
    for (size_t i = 0; i < 4; i++) {
        if (i >= len)
            return TERN_EPARTIAL;
        v |= (uint32_t)(buf[i] & 0x7F) << (7 * i);
        if ((buf[i] & 0x80) == 0) {
            *value = v;
            *n_bytes = i + 1;
            return 0;
        }
    }
    return TERN_EPROTO;
}

int tern_mqtt_vbi_encode(uint32_t value, uint8_t out[4])
{
    if (value > TERN_MQTT_VBI_MAX)
        return TERN_EINVAL;
    int n = 0;
    do {
        uint8_t b = (uint8_t)(value & 0x7F);
        value >>= 7;
        if (value)
            b |= 0x80;
        out[n++] = b;
    } while (value);
    return n;
}

size_t tern_mqtt_vbi_size(uint32_t value)
{
    if (value < 128u)
        return 1;
    if (value < 16384u)
        return 2;
    if (value < 2097152u)
        return 3;
    if (value <= TERN_MQTT_VBI_MAX)
        return 4;
    return 0;
}

int tern_mqtt_utf8_validate(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c < 0x80) {
            if (c == 0)
                return TERN_EUTF8;
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            n = 2;
            cp = c & 0x1Fu;
            min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3;
            cp = c & 0x0Fu;
            min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4;
            cp = c & 0x07u;
            min = 0x10000;
        } else {
            return TERN_EUTF8; /* continuation byte first, or 0xF8..0xFF */
        }
        if (len - i < n)
            return TERN_EUTF8;
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return TERN_EUTF8;
            cp = (cp << 6) | (p[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return TERN_EUTF8;
        i += n;
    }
    return 0;
}

int tern_mqtt_client_id_check(const uint8_t *p, size_t len, size_t max_bytes)
{
    if (len == 0 || len > max_bytes)
        return TERN_EPROTO;
    if (tern_mqtt_utf8_validate(p, len) != 0)
        return TERN_EPROTO;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        if (c < 0x20 || c == 0x7F || c == '/' || c == '+' || c == '#')
            return TERN_EPROTO;
        /* C1 controls U+0080..U+009F are encoded 0xC2 0x80..0x9F. */
        if (c == 0xC2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9F)
            return TERN_EPROTO;
    }
    return 0;
}

void tern_mqtt__w_bytes(tern_mqtt__w *w, const void *p, size_t n)
{
    if (w->err)
        return;
    if (w->buf) {
        int rc = tern_buf_append(w->buf, p, n);
        if (rc) {
            w->err = rc;
            return;
        }
    }
    w->n += n;
}

void tern_mqtt__w_u8(tern_mqtt__w *w, uint8_t v)
{
    tern_mqtt__w_bytes(w, &v, 1);
}

void tern_mqtt__w_u16(tern_mqtt__w *w, uint16_t v)
{
    uint8_t x[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    tern_mqtt__w_bytes(w, x, sizeof x);
}

void tern_mqtt__w_u32(tern_mqtt__w *w, uint32_t v)
{
    uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    tern_mqtt__w_bytes(w, x, sizeof x);
}

void tern_mqtt__w_vbi(tern_mqtt__w *w, uint32_t v)
{
    uint8_t x[4];
    int n = tern_mqtt_vbi_encode(v, x);
    if (n < 0) {
        if (!w->err)
            w->err = TERN_ETOOBIG;
        return;
    }
    tern_mqtt__w_bytes(w, x, (size_t)n);
}

void tern_mqtt__w_str(tern_mqtt__w *w, tern_mqtt_str s)
{
    tern_mqtt__w_u16(w, s.len);
    if (s.len)
        tern_mqtt__w_bytes(w, s.p, s.len);
}

int tern_mqtt__fail(tern_mqtt__r *r, int rc, uint8_t reason, const char *what)
{
    if (r->st) {
        r->st->reason = reason;
        r->st->what = what;
    }
    return rc;
}

static int r_need(tern_mqtt__r *r, size_t n)
{
    if (r->len - r->pos < n)
        return tern_mqtt__fail(
            r, TERN_EPROTO, TERN_MQTT_RC_MALFORMED, "field runs past the packet");
    return 0;
}

int tern_mqtt__r_u8(tern_mqtt__r *r, uint8_t *v)
{
    int rc = r_need(r, 1);
    if (rc)
        return rc;
    *v = r->p[r->pos++];
    return 0;
}

int tern_mqtt__r_u16(tern_mqtt__r *r, uint16_t *v)
{
    int rc = r_need(r, 2);
    if (rc)
        return rc;
    *v = (uint16_t)((unsigned)r->p[r->pos] << 8 | r->p[r->pos + 1]);
    r->pos += 2;
    return 0;
}

int tern_mqtt__r_u32(tern_mqtt__r *r, uint32_t *v)
{
    int rc = r_need(r, 4);
    if (rc)
        return rc;
    const uint8_t *q = r->p + r->pos;
    *v = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
    r->pos += 4;
    return 0;
}

int tern_mqtt__r_vbi(tern_mqtt__r *r, uint32_t *v)
{
    size_t n;
    int rc = tern_mqtt_vbi_decode(r->p + r->pos, r->len - r->pos, v, &n);
    if (rc == TERN_EPARTIAL)
        return tern_mqtt__fail(
            r, TERN_EPROTO, TERN_MQTT_RC_MALFORMED, "variable byte integer runs past the packet");
    if (rc)
        return tern_mqtt__fail(
            r, TERN_EPROTO, TERN_MQTT_RC_MALFORMED, "variable byte integer longer than 4 bytes");
    r->pos += n;
    return 0;
}

int tern_mqtt__r_bin(tern_mqtt__r *r, tern_mqtt_str *s)
{
    uint16_t n;
    int rc = tern_mqtt__r_u16(r, &n);
    if (rc)
        return rc;
    rc = r_need(r, n);
    if (rc)
        return rc;
    s->p = r->p + r->pos;
    s->len = n;
    r->pos += n;
    return 0;
}

int tern_mqtt__r_utf8(tern_mqtt__r *r, tern_mqtt_str *s)
{
    tern_mqtt_str v;
    int rc = tern_mqtt__r_bin(r, &v);
    if (rc)
        return rc;
    if (tern_mqtt_utf8_validate(v.p, v.len) != 0)
        return tern_mqtt__fail(r, TERN_EUTF8, TERN_MQTT_RC_MALFORMED, "string is not valid UTF-8");
    *s = v;
    return 0;
}
