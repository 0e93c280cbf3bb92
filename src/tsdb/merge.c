/*
 * merge.c: combining sorted runs of points. Every source of a series' points (blocks by
 * sequence, head fragments, late points, the buffer) is a sorted run without duplicate
 * timestamps; merging them in order of age, the newer run winning on equal timestamps, is how
 * "the last write wins" holds across the whole store.
 */
#include "base/alloc.h"
#include "base/error.h"
#include "tsdb/tsdb_int.h"

#include <string.h>

int tsdb_merge_into(tern_buf *a, const tsdb_point *b, size_t nb)
{
    if (nb == 0)
        return 0;
    size_t na = a->len / sizeof(tsdb_point);
    const tsdb_point *pa = (const tsdb_point *)(const void *)a->data;
    /* Fast path: b lies entirely after a (the common case: newer data). */
    if (na == 0 || pa[na - 1].ts < b[0].ts)
        return tern_buf_append(a, b, nb * sizeof(tsdb_point));
    tsdb_point *out = tern_malloc((na + nb) * sizeof(tsdb_point));
    if (!out)
        return TERN_ENOMEM;
    size_t i = 0, j = 0, k = 0;
    while (i < na && j < nb) {
        if (pa[i].ts < b[j].ts) {
            out[k++] = pa[i++];
        } else if (pa[i].ts > b[j].ts) {
            out[k++] = b[j++];
        } else {
            out[k++] = b[j++]; /* equal timestamps: the newer run wins */
            i++;
        }
    }
    while (i < na)
        out[k++] = pa[i++];
    while (j < nb)
        out[k++] = b[j++];
    tern_buf_reset(a);
    int rc = tern_buf_append(a, out, k * sizeof(tsdb_point));
    tern_free(out);
    return rc;
}
