/*
 * role.c: the common start of the long-running roles (see role.h).
 */
#include "tern/role.h"

#include "base/alloc.h"
#include "base/error.h"
#include "api/api_config.h"
#include "base/log.h"
#include "tsdb/tsdb_config.h"

#include <signal.h>
#include <string.h>
#include <sys/stat.h>

int tern_role_config(const char *name, int argc, char **argv, const tern_role_flag *flags,
    size_t n_flags, const tern_config_schema *const *schemas, void (*usage)(FILE *),
    tern_config **out)
{
    int status = 1, n = 0, n_owned = 0;
    char **args = tern_calloc((size_t)argc * 2 + 1, sizeof(*args));
    char **owned = tern_calloc((size_t)argc + 1, sizeof(*owned));
    tern_config *cfg = NULL;
    if (!args || !owned)
        goto out;
    args[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        size_t f;
        for (f = 0; f < n_flags; f++)
            if (strcmp(argv[i], flags[f].flag) == 0 && (flags[f].value || i + 1 < argc))
                break;
        if (f == n_flags) {
            args[n++] = argv[i];
            continue;
        }
        const char *v = flags[f].value ? flags[f].value : argv[++i];
        size_t l = strlen(flags[f].key) + strlen(v) + 2;
        owned[n_owned] = tern_malloc(l);
        if (!owned[n_owned])
            goto out;
        snprintf(owned[n_owned], l, "%s=%s", flags[f].key, v);
        args[n++] = "--set";
        args[n++] = owned[n_owned++];
    }
    if (tern_config_create(&cfg) != 0 || tern_config_add_schema(cfg, tern_config_schema_core) != 0)
        goto out;
    for (size_t i = 0; schemas && schemas[i]; i++)
        if (tern_config_add_schema(cfg, schemas[i]) != 0)
            goto out;
    status = 2;
    if (tern_config_parse_args(cfg, &n, args) != 0) {
        fprintf(stderr, "tern %s: %s\n", name, tern_config_error(cfg));
        goto out;
    }
    if (n > 1) {
        fprintf(stderr, "tern %s: unexpected argument '%s'\n", name, args[1]);
        usage(stderr);
        goto out;
    }
    tern_log_level level;
    if (tern_log_level_parse(tern_config_get_string(cfg, "logging.level"), &level) == 0)
        tern_log_set_level(level);
    *out = cfg;
    cfg = NULL;
    status = 0;
out:
    tern_config_destroy(cfg); /* the config copied every value it kept */
    for (int i = 0; i < n_owned; i++)
        tern_free(owned[i]);
    tern_free(owned);
    tern_free(args);
    return status;
}

int tern_role_loop(tern_loop **out, tern_loop_signal sigs[2],
    void (*on_signal)(tern_loop_signal *sig, int signum), void *data)
{
    tern_loop *loop;
    int rc = tern_loop_new(&loop);
    if (rc)
        return rc;
    tern_loop_signal_init(loop, &sigs[0], on_signal, data ? data : loop);
    tern_loop_signal_init(loop, &sigs[1], on_signal, data ? data : loop);
    rc = tern_loop_signal_start(&sigs[0], SIGINT);
    if (rc == 0)
        rc = tern_loop_signal_start(&sigs[1], SIGTERM);
    if (rc) {
        tern_loop_free(loop);
        return rc;
    }
    signal(SIGPIPE, SIG_IGN);
    *out = loop;
    return 0;
}

int tern_role_store(const char *name, const tern_config *cfg, tern_tsdb **out)
{
    tern_tsdb_options o;
    char dir[4096], err[512];
    if (tern_tsdb_config_load(cfg, &o, dir, sizeof dir, err, sizeof err) != 0) {
        fprintf(stderr, "tern %s: %s\n", name, err);
        return 2;
    }
    o.background = true;
    (void)mkdir(tern_config_get_string(cfg, "data.dir"), 0755);
    if (tern_tsdb_open(&o, out, err, sizeof err) != 0) {
        fprintf(stderr, "tern %s: %s\n", name, err);
        return 1;
    }
    return 0;
}

int tern_role_http(const char *name, const tern_config *cfg, tern_loop *loop, tern_tsdb *db,
    tern_http_server **srv, tern_api_tsdb **api, uint16_t *port)
{
    tern_http_config hc;
    const char *listen = tern_api_config_load(cfg, &hc);
    int rc = tern_http_server_new(loop, &hc, srv);
    if (rc == 0)
        rc = tern_api_tsdb_new(loop, *srv, db, tern_config_get_string(cfg, "tsdb.device_tag"), api);
    if (rc == 0)
        rc = tern_http_listen(*srv, listen);
    if (rc) {
        fprintf(stderr, "tern %s: cannot serve HTTP on %s: %s\n", name, listen, tern_strerror(rc));
        return 1;
    }
    *port = 0;
    tern_http_port(*srv, port);
    return 0;
}
