/*
 * api_tsdb.h: the time-series store's HTTP face, routed on a tern_http_server (docs/tsdb.md).
 *
 *   POST /write?db=D[&precision=n|ns|u|us|ms|s|m|h]   InfluxDB 1.x line protocol
 *   POST /api/v2/write?bucket=B[&org=O][&precision=ns|us|ms|s]   InfluxDB 2.x
 *   GET  /ping (204), /health (200 {"status":"pass"})
 *   GET  /api/v1/query?metric=M&start=T&end=T[&device=D][&tags=k=v,...][&agg=avg,...]
 *                     [&step=60s][&group_by=TAG|*][&limit=N][&tier=auto|hot|warm]
 *                     [&format=rows|series]
 *                       -> {"rows":[...],"count":N,"tier":"hot|warm|warm+hot"}, or with
 *                          format=series {"series":[{...,"columns":[..],"values":[..]}],...}
 *   GET  /api/v1/last?device=D                                            -> {"rows":[...]}
 *   GET  /metrics   Prometheus text of the process's registry
 *
 * A write is answered only once its WAL record is durable (204), so an acknowledged write
 * survives kill -9. Bad lines answer as InfluxDB does: 400 with "partial write: unable to
 * parse '<line>': <reason> dropped=N" (1.x) or {"code":"invalid","message":...} (2.x); the
 * good lines of the body are still stored. Refused points (series limit, type conflict) are
 * reported the same way. Everything runs on the server's loop thread; the durable-write
 * callback comes back to it through tern_loop_post.
 */
#ifndef TERN_API_API_TSDB_H
#define TERN_API_API_TSDB_H

#include "api/http.h"
#include "loop/loop.h"
#include "tsdb/tsdb.h"

typedef struct tern_api_tsdb tern_api_tsdb;

/* tern_api_tsdb_new registers the routes above on srv (which must outlive the face, as must db).
 * device_tag names the line-protocol tag that names the device (copied). */
int tern_api_tsdb_new(tern_loop *loop, tern_http_server *srv, tern_tsdb *db, const char *device_tag,
    tern_api_tsdb **out);
/* tern_api_tsdb_free: call after the loop stopped and the store closed (no callback pending). */
void tern_api_tsdb_free(tern_api_tsdb *api);

#endif
