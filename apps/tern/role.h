/*
 * role.h: what the long-running roles of `tern` (serve, stream, tsdb) start with: their
 * command line turned into a config, and an event loop that owns SIGINT/SIGTERM.
 */
#ifndef TERN_APPS_ROLE_H
#define TERN_APPS_ROLE_H

#include "api/api_tsdb.h"
#include "api/http.h"
#include "base/config.h"
#include "loop/loop.h"
#include "tsdb/tsdb.h"

#include <stdint.h>

#include <stddef.h>
#include <stdio.h>

/* A role's own flag: `flag VALUE` (or, with value set, `flag` alone) means --set key=VALUE. */
typedef struct tern_role_flag {
    const char *flag, *key, *value;
} tern_role_flag;

/*
 * tern_role_config reads argv: the role's flags become --set KEY=VALUE, every schema of the
 * NULL-terminated list (and the core one) is registered, --config/--set are applied, and the
 * log level is set. Returns 0 with *out, or the exit status to return (2: a usage or config
 * error, already printed as "tern NAME: ..." with the usage; 1: out of memory).
 */
int tern_role_config(const char *name, int argc, char **argv, const tern_role_flag *flags,
    size_t n_flags, const tern_config_schema *const *schemas, void (*usage)(FILE *),
    tern_config **out);

/*
 * tern_role_loop creates the event loop and starts the two signal watchers (SIGINT, SIGTERM)
 * calling on_signal (sig->data is data, or the loop when data is NULL), and ignores SIGPIPE. Call
 * it before starting any thread: the signals are blocked for signalfd, and threads inherit the mask
 * (otherwise SIGTERM could land on a thread and kill the process before it flushes). sigs must
 * outlive the loop. Returns 0 or the error.
 */
int tern_role_loop(tern_loop **out, tern_loop_signal sigs[2],
    void (*on_signal)(tern_loop_signal *sig, int signum), void *data);

/*
 * tern_role_store opens the time-series store the [tsdb] keys describe (under DATA/tsdb by
 * default), with background maintenance. Call after tern_role_loop (it starts threads).
 * Returns 0 with *out, or the exit status (2: a config error; 1: the store did not open), the
 * reason printed as "tern NAME: ...".
 */
int tern_role_store(const char *name, const tern_config *cfg, tern_tsdb **out);

/*
 * tern_role_http serves db's HTTP API (api_tsdb.h) on loop at http.listen and sets *port to the
 * port it got. Returns 0, or 1 with the reason printed; what was created is in *srv and *api
 * either way (free them after the loop stopped and the store closed).
 */
int tern_role_http(const char *name, const tern_config *cfg, tern_loop *loop, tern_tsdb *db,
    tern_http_server **srv, tern_api_tsdb **api, uint16_t *port);

#endif
