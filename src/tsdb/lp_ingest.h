/*
 * lp_ingest.h: InfluxDB line protocol into the store, shared by the HTTP /write faces and
 * `tern import`.
 *
 * Mapping (VictoriaMetrics' convention, which InfluxDB users meet elsewhere): each field of a
 * line is one point of the metric "{measurement}_{field}"; the tag named by device_tag (default
 * "device_id") names the device; the other tags are the device's tags, stored once per device.
 * Floats are float64 series; integers, unsigned integers (up to 2^63-1) and booleans (0/1) are
 * int64 series. String fields are not stored (counted in skipped_fields). A line without the
 * device tag, with a tag value holding ',' or '=', or whose only fields are strings is a bad
 * line: it is counted and reported, and the other lines are still written (InfluxDB's partial
 * write).
 */
#ifndef TERN_TSDB_LP_INGEST_H
#define TERN_TSDB_LP_INGEST_H

#include "tsdb/lineproto.h"
#include "tsdb/tsdb.h"

#include <stddef.h>
#include <stdint.h>

typedef struct tern_lp_ingest_opts {
    const char *device_tag;
    tern_lp_precision precision;
    int64_t now_ms; /* timestamp of lines without one */
} tern_lp_ingest_opts;

typedef struct tern_lp_ingest_result {
    size_t lines, points, bad_lines, skipped_fields;
    tern_tsdb_write_result write; /* points the store refused (series limit, type conflict) */
    int first_error;              /* 0, or the code of the first bad line */
    char first_error_text[600];   /* "unable to parse '<line>': <reason>" (InfluxDB's words) */
} tern_lp_ingest_result;

/*
 * tern_lp_ingest parses data[0..len) into batch (reset first) and writes it; *seq (may be NULL)
 * is the WAL sequence that makes it durable (tern_tsdb_wait). Returns 0 when the batch was
 * written (res says what was bad or refused), or the store's error (nothing acknowledged).
 */
int tern_lp_ingest(tern_tsdb *db, tern_tsdb_batch *batch, const char *data, size_t len,
    const tern_lp_ingest_opts *o, tern_lp_ingest_result *res, uint64_t *seq);

#endif
