/*
 * query_json.h: query rows as JSON, the one rendering shared by the HTTP API and `tern query`.
 *
 * A raw row:        {"device":"d1","metric":"ev_soc","ts":1767225600000,"value":52.7}
 * An aggregate row: {"device":"d1","metric":"ev_soc","ts":...,"avg":51.2,"count":360}
 * A grouped row:    {"group":"eu-west","metric":"ev_soc","ts":...,"avg":...}
 * Numbers are printed in the fewest digits that read back as the same double (so a query
 * returns exactly the float a device sent); NaN and infinities, which JSON lacks, are the
 * strings "NaN", "+Inf" and "-Inf" (as Prometheus does); -0.0 is -0. Integer series print
 * as integers.
 */
#ifndef TERN_TSDB_QUERY_JSON_H
#define TERN_TSDB_QUERY_JSON_H

#include "base/buf.h"
#include "tsdb/tsdb.h"

/* tern_tsdb_parse_time reads a time: milliseconds since the epoch ("1767225600000"), RFC 3339
 * in UTC ("2026-01-01T00:00:00Z", optional ".mmm"), or "now" with an optional "-DURATION"
 * ("now-1h"; now_ms is the caller's clock). Returns 0 or TERN_EINVAL. */
int tern_tsdb_parse_time(const char *s, int64_t now_ms, int64_t *out);
/* tern_tsdb_parse_duration reads "250ms", "10s", "5m", "2h", "7d" or plain milliseconds. */
int tern_tsdb_parse_duration(const char *s, int64_t *out);

/* tern_tsdb_json_double appends v as described above. */
int tern_tsdb_json_double(tern_buf *out, double v);
/* tern_tsdb_json_string appends s as a JSON string (quotes, escapes). */
int tern_tsdb_json_string(tern_buf *out, const char *s);
/* tern_tsdb_json_int appends v in decimal. */
int tern_tsdb_json_int(tern_buf *out, int64_t v);
/* tern_tsdb_row_json appends one row as a JSON object; aggs is the query's aggregate mask. */
int tern_tsdb_row_json(tern_buf *out, unsigned aggs, const tern_tsdb_row *row);

/* A JSON array being filled with rows (comma separated): the device/metric part of a row is
 * rendered once per series and copied. Zero-initialise with out set; the row's device, metric
 * and group pointers identify a series (they stay the same within one). */
typedef struct tern_tsdb_json_rows {
    tern_buf *out;
    uint64_t rows;
    const char *device, *metric, *group;
    tern_buf prefix;
    uint64_t series;
} tern_tsdb_json_rows;
int tern_tsdb_rows_json_add(tern_tsdb_json_rows *w, unsigned aggs, const tern_tsdb_row *row);
void tern_tsdb_rows_json_free(tern_tsdb_json_rows *w);

/*
 * The compact form, one object per series as InfluxDB and Prometheus users know it:
 *   {"device":"d1","metric":"ev_soc","columns":["ts","value"],"values":[[T,V],[T,V]]}
 *   {"group":"eu","metric":"ev_soc","columns":["ts","avg","count"],"values":[[T,A,C]]}
 * tern_tsdb_series_json_add appends a row (opening a new series object when the row's series
 * changes); tern_tsdb_series_json_finish closes the last one. Same writer state as rows.
 */
int tern_tsdb_series_json_add(tern_tsdb_json_rows *w, unsigned aggs, const tern_tsdb_row *row);
int tern_tsdb_series_json_finish(tern_tsdb_json_rows *w);

#endif
