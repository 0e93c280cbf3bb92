/*
 * lineproto.h: a parser for InfluxDB line protocol (1.x and 2.x), pure, zero-copy and
 * allocation-free, plus the writers that produce it.
 *
 *     measurement[,tag=value...] field=value[,field=value...] [timestamp]
 *
 * The input is untrusted bytes (an HTTP body, a file). The parser walks it one line at a time;
 * every string it reports points into the input (the caller keeps the input alive while it uses
 * them) and every array it fills is the caller's, sized by the caller (max tags, max fields).
 * A bad line is reported with its number, column, reason and raw text, and the parser is already
 * positioned on the next line, so the caller can keep going and report a partial write the way
 * InfluxDB does. Nothing here allocates, logs or touches the event loop; a parser is used by one
 * thread at a time (distinct parsers are independent).
 *
 * Syntax accepted (see docs/http.md for the full mapping notes):
 *   - lines end at '\n'; one '\r' before it is dropped (CRLF); a last line without '\n' is fine;
 *     blank lines (spaces/tabs only) and lines whose first non-blank byte is '#' are skipped;
 *     a newline inside a quoted string ends the line (the line is then "unterminated string");
 *   - measurement: up to the first unescaped ',' or ' '; tag keys, tag values and field keys:
 *     up to an unescaped ',', '=' or ' '. In these names "\," "\=" "\ " and "\\" stand for the
 *     byte after the backslash; any other backslash is literal (TERN_LP_ESC_NAME);
 *   - field values: float (1, -1.5, .5, 1., 1e3, 1.5E-3: NaN and Inf are rejected, as
 *     InfluxDB does), integer 12i (int64), unsigned 12u (uint64), boolean t T true True TRUE
 *     f F false False FALSE, string "..." in which "\"" and "\\" are escapes (TERN_LP_ESC_STRING);
 *   - a field key repeated in one line: the last value wins (InfluxDB's rule); the field keeps the
 *     position of its first occurrence. Keys are compared as written (escapes not folded).
 *     Tags are reported in input order; duplicates are reported as they are;
 *   - timestamp: optional, an optional '-' and decimal digits, in the caller's precision. It
 *     must fit InfluxDB's range once scaled to nanoseconds ([INT64_MIN + 2, INT64_MAX - 1]), else
 *     the line is rejected (TERN_ERANGE). tern stores milliseconds: the value is converted to ms
 *     rounding toward negative infinity (floor), so 1999999 ns -> 1 ms and -1 ns -> -1 ms, and a
 *     point never moves into a later millisecond than the one it was taken in;
 *   - one or more spaces or tabs separate the sections; trailing blanks are allowed.
 * Names are bytes: UTF-8 validation and naming rules belong to the caller (the engine).
 */
#ifndef TERN_TSDB_LINEPROTO_H
#define TERN_TSDB_LINEPROTO_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How a string was written: plain (use p/len as is) or with backslash escapes to remove. */
#define TERN_LP_PLAIN 0
#define TERN_LP_ESC_NAME 1   /* measurement, tag key/value, field key: "\," "\=" "\ " "\\" */
#define TERN_LP_ESC_STRING 2 /* string field value: "\"" "\\" */

/* A string inside the input. escaped != 0 => call tern_lp_unescape for the real bytes. */
typedef struct tern_lp_str {
    const char *p;
    size_t len;
    uint8_t escaped; /* TERN_LP_PLAIN, TERN_LP_ESC_NAME or TERN_LP_ESC_STRING */
} tern_lp_str;

typedef enum tern_lp_type {
    TERN_LP_FLOAT,
    TERN_LP_INT,
    TERN_LP_UINT,
    TERN_LP_BOOL,
    TERN_LP_STRING,
} tern_lp_type;

typedef struct tern_lp_tag {
    tern_lp_str key, value;
} tern_lp_tag;

typedef struct tern_lp_field {
    tern_lp_str key;
    tern_lp_type type;
    union {
        double f;
        int64_t i;
        uint64_t u;
        bool b;
        tern_lp_str s; /* without the quotes */
    } v;
} tern_lp_field;

typedef struct tern_lp_line {
    tern_lp_str measurement;
    tern_lp_tag *tags; /* the parser's tag array; valid until the next tern_lp_next */
    size_t n_tags;
    tern_lp_field *fields; /* the parser's field array; at least one field */
    size_t n_fields;
    int64_t ts_ms; /* the line's timestamp in ms, or the parser's now_ms when it has none */
    bool has_ts;
    size_t line_no;  /* 1-based */
    tern_lp_str raw; /* the whole line, without its "\n" or "\r\n" */
} tern_lp_line;

/* Timestamp precision. ns/us/ms/s are InfluxDB 2.x's; 1.x adds n, u, m (minute) and h. */
typedef enum tern_lp_precision {
    TERN_LP_NS,
    TERN_LP_US,
    TERN_LP_MS,
    TERN_LP_S,
    TERN_LP_MINUTE,
    TERN_LP_HOUR,
} tern_lp_precision;

/* Why a line was rejected. line and reason stay valid as long as the input (reason is static). */
typedef struct tern_lp_error {
    int code;           /* TERN_EPROTO (syntax), TERN_ERANGE (number or timestamp out of range),
                           TERN_EQUOTA (more tags or fields than the parser's arrays hold) */
    size_t line_no;     /* 1-based */
    size_t column;      /* 1-based byte offset in the line where the problem was found */
    const char *reason; /* e.g. "missing field value", InfluxDB's wording where it has one */
    tern_lp_str raw;    /* the bad line, without its line end */
} tern_lp_error;

/* The parser's state. Fill it with tern_lp_init; the fields are private. */
typedef struct tern_lp_parser {
    const char *data;
    size_t len;
    size_t pos;
    size_t line_no;
    int64_t now_ms;
    int64_t ns_per_unit;
    tern_lp_tag *tags;
    size_t max_tags;
    tern_lp_field *fields;
    size_t max_fields;
} tern_lp_parser;

/*
 * tern_lp_init prepares p to parse data[0..len) (borrowed: it must outlive p and every string
 * p reports). Timestamps are read in precision; lines without one get now_ms. tags[max_tags]
 * and fields[max_fields] are the caller's arrays (borrowed) that each line is parsed into; a
 * line with more tags or fields is rejected with TERN_EQUOTA. max_fields must be >= 1 and
 * max_tags may be 0 (then tags may be NULL). Cannot fail.
 */
void tern_lp_init(tern_lp_parser *p, const char *data, size_t len, tern_lp_precision precision,
    int64_t now_ms, tern_lp_tag *tags, size_t max_tags, tern_lp_field *fields, size_t max_fields);

/*
 * tern_lp_next parses the next line that holds a point (blank and comment lines are skipped).
 * Returns 1 with *line filled (its tags/fields point into p's arrays, valid until the next call),
 * 0 at the end of the input, or a negative code with *err filled: TERN_EPROTO, TERN_ERANGE or
 * TERN_EQUOTA (see tern_lp_error). After an error p is positioned at the next line, so calling
 * again continues the parse: a caller that wants InfluxDB's partial-write behaviour keeps the
 * good lines, counts and reports the bad ones. *line is written only when 1 is returned, *err
 * only when a negative code is returned.
 */
int tern_lp_next(tern_lp_parser *p, tern_lp_line *line, tern_lp_error *err);

/*
 * tern_lp_unescape writes the real bytes of s into out[cap] and returns their count, which is
 * never more than s.len (so cap >= s.len always suffices); when it returns more than cap only
 * the first cap bytes were written. A plain s is copied as is. out is not NUL-terminated.
 */
size_t tern_lp_unescape(tern_lp_str s, char *out, size_t cap);

/*
 * tern_lp_str_eq compares the real (unescaped) bytes of s with lit[0..lit_len), without copying.
 */
bool tern_lp_str_eq(tern_lp_str s, const char *lit, size_t lit_len);

/*
 * tern_lp_parse_precision reads a precision name: "ns" "n" "us" "u" "ms" "s" "m" (minute) "h"
 * (InfluxDB 1.x's set; 2.x accepts only ns, us, ms, s: see tern_lp_parse_precision_v2).
 * Returns 0 and sets *out, or TERN_EINVAL (NULL or unknown) leaving *out alone.
 */
int tern_lp_parse_precision(const char *s, tern_lp_precision *out);
/* tern_lp_parse_precision_v2: as tern_lp_parse_precision, accepting only "ns" "us" "ms" "s". */
int tern_lp_parse_precision_v2(const char *s, tern_lp_precision *out);

/*
 * tern_lp_error_format writes InfluxDB's wording of err into buf[cap], NUL-terminated:
 *     unable to parse 'RAW LINE': REASON (line N, column C)
 * with the raw line cut at 256 bytes ("..." appended). Returns the length that was needed, like
 * snprintf (so a result >= cap means it was cut).
 */
size_t tern_lp_error_format(const tern_lp_error *err, char *buf, size_t cap);

/* ---- writers: build line protocol (for exporters, tests and the fuzz round trip) ------------- */

/*
 * tern_lp_append_name appends the bytes s[0..len) to out escaped for a name position: ',', '=',
 * ' ' and '\\' get a backslash. Returns 0, TERN_EINVAL (len == 0; a '\n' or '\r' byte; a
 * leading '\t', which the parser would skip as a separator; a measurement starting with '#',
 * which would read as a comment), or TERN_ENOMEM; out may then hold a partial name.
 */
int tern_lp_append_name(tern_buf *out, const char *s, size_t len, bool measurement);

/*
 * tern_lp_append_field_value appends f's value in line-protocol form: floats with 17
 * significant digits (round-trip exact; NaN/Inf are TERN_EINVAL), 12i, 12u, true/false,
 * strings quoted with '"' and '\' escaped (a '\n' in a string is TERN_EINVAL).
 * Strings must already be unescaped bytes: f->v.s.escaped is ignored. Returns 0, TERN_EINVAL or
 * TERN_ENOMEM.
 */
int tern_lp_append_field_value(tern_buf *out, const tern_lp_field *f);

#endif
