/*
 * security.c: the broker's authentication and authorization decisions, on top of auth.h
 * (password file, PBKDF2) and acl.h (pattern rules).
 *
 * Authentication: a client with a TLS certificate identity (tls_use_identity_as_username) is
 * authenticated by the certificate. Otherwise a client that sends a username must match the
 * password file; a client that sends none is admitted only with allow_anonymous.
 * Authorization: the ACL file if one is configured, else tern's device defaults (a device
 * publishes only under fleet/{its client id}/ and reads only its commands and config).
 */
#include "broker/broker_int.h"

#include "base/log.h"
#include "broker/acl.h"
#include "broker/auth.h"

#include <string.h>

int broker_security_init(tern_broker *b)
{
    char err[512] = "";
    int rc = tern_broker_acl_new(&b->acl);
    if (rc != 0)
        return rc;
    if (b->cfg.acl_file)
        rc = tern_broker_acl_load_file(b->acl, b->cfg.acl_file, err, sizeof err);
    else
        rc = tern_broker_acl_add_defaults(b->acl);
    if (rc != 0) {
        tern_logf(TERN_LOG_ERROR, "broker", "ACL: %s", err[0] ? err : tern_strerror(rc));
        return rc == TERN_ENOMEM ? rc : TERN_ECONFIG;
    }
    if (b->cfg.password_file) {
        rc = tern_broker_auth_load(b->cfg.password_file, &b->auth, err, sizeof err);
        if (rc != 0) {
            tern_logf(
                TERN_LOG_ERROR, "broker", "password file: %s", err[0] ? err : tern_strerror(rc));
            return rc == TERN_ENOMEM ? rc : TERN_ECONFIG;
        }
    }
    return 0;
}

void broker_security_free(tern_broker *b)
{
    tern_broker_acl_free(b->acl);
    tern_broker_auth_free(b->auth);
    b->acl = NULL;
    b->auth = NULL;
}

int broker_security_authenticate(tern_broker *b, broker_conn *c, const tern_mqtt_connect *p)
{
    if (c->tls_identity)
        return 0; /* the certificate is the credential */
    if (b->cfg.tls_require_certificate && c->ssl)
        return TERN_MQTT_RC_NOT_AUTHORIZED;
    if (!p->has_username) {
        if (p->has_password)
            return TERN_MQTT_RC_BAD_USERNAME_PASSWORD;
        return b->cfg.allow_anonymous ? 0 : TERN_MQTT_RC_NOT_AUTHORIZED;
    }
    if (!b->auth)
        return b->cfg.allow_anonymous ? 0 : TERN_MQTT_RC_BAD_USERNAME_PASSWORD;
    int rc;
    if (c->auth_verdict_ready) {
        rc = c->auth_verdict;
    } else if (b->auth_worker) {
        if (broker_auth_worker_submit(b, c, p) != 0 || broker_conn_park_connect(c) != 0)
            return TERN_MQTT_RC_SERVER_UNAVAILABLE;
        return BROKER_AUTH_PARKED;
    } else {
        rc = tern_broker_auth_verify(b->auth, (const char *)p->username.p, p->username.len,
            p->has_password ? p->password.p : NULL, p->has_password ? p->password.len : 0);
    }
    if (rc == 0)
        return 0;
    TERN_LOG_RATELIMITED(TERN_LOG_INFO, "broker", "authentication failed for user '%.*s'",
        (int)p->username.len, (const char *)p->username.p);
    return rc == TERN_EDENIED ? TERN_MQTT_RC_BAD_USERNAME_PASSWORD
                              : TERN_MQTT_RC_SERVER_UNAVAILABLE;
}

static bool allowed(tern_broker *b, const char *client_id, const char *username,
    const uint8_t *topic, size_t len, int access)
{
    return tern_broker_acl_check(b->acl, client_id, strlen(client_id), username,
               username ? strlen(username) : 0, (const char *)topic, len, access)
        == 0;
}

bool broker_security_may_publish(tern_broker *b, const char *client_id, const char *username,
    const uint8_t *topic, size_t topic_len)
{
    return allowed(b, client_id, username, topic, topic_len, TERN_ACL_WRITE);
}

bool broker_security_may_subscribe(tern_broker *b, const char *client_id, const char *username,
    const uint8_t *filter, size_t filter_len)
{
    return allowed(b, client_id, username, filter, filter_len, TERN_ACL_READ);
}
