/*
 * tls.c: TLS for MQTT over TLS listeners (port 8883 by convention), with OpenSSL.
 *
 * One SSL_CTX per broker (TLS 1.2 and 1.3, server certificate and key from PEM files, optional
 * client certificates verified against a CA file). A connection accepted on a TLS listener gets
 * an SSL object in accept state; the handshake runs inside the first reads, so the event loop
 * needs nothing special: broker_io_recv / broker_io_send present plain-socket semantics
 * (n > 0 bytes, 0 = peer closed, -1 with errno, EAGAIN when the socket would block). When
 * OpenSSL needs to write while reading (handshake, renegotiation), want_write is set so the
 * connection arms WRITE interest and retries its read when the socket is writable.
 *
 * With require_certificate, a client must present a certificate signed by the CA; with
 * use_identity_as_username, the subject's CN becomes the connection's username (the device
 * identity for ACL %u substitution) and no password is asked.
 */
#include "broker/broker_int.h"

#include "base/alloc.h"
#include "base/log.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <string.h>
#include <sys/socket.h>

static void log_ssl_errors(const char *what)
{
    unsigned long e;
    char msg[256];
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, msg, sizeof msg);
        tern_logf(TERN_LOG_ERROR, "broker", "%s: %s", what, msg);
    }
}

int broker_tls_init(tern_broker *b)
{
    const tern_broker_config *cfg = &b->cfg;
    if (cfg->n_tls_listen == 0)
        return 0;
    if (!cfg->tls_cert_file || !cfg->tls_key_file) {
        tern_logf(TERN_LOG_ERROR, "broker",
            "TLS listeners need broker.tls_cert_file and broker.tls_key_file");
        return TERN_ECONFIG;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return TERN_ENOMEM;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx,
        SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
            | SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert_file) != 1) {
        log_ssl_errors(cfg->tls_cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key_file, SSL_FILETYPE_PEM) != 1
        || SSL_CTX_check_private_key(ctx) != 1) {
        log_ssl_errors(cfg->tls_key_file);
        goto fail;
    }
    if (cfg->tls_ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca_file, NULL) != 1) {
            log_ssl_errors(cfg->tls_ca_file);
            goto fail;
        }
        int mode = SSL_VERIFY_PEER;
        if (cfg->tls_require_certificate)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
    } else if (cfg->tls_require_certificate) {
        tern_logf(
            TERN_LOG_ERROR, "broker", "broker.tls_require_certificate needs broker.tls_ca_file");
        goto fail;
    }
    b->tls_ctx = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return TERN_ECONFIG;
}

void broker_tls_free(tern_broker *b)
{
    SSL_CTX_free(b->tls_ctx);
    b->tls_ctx = NULL;
}

int broker_tls_attach(broker_conn *c)
{
    SSL *ssl = SSL_new(c->broker->tls_ctx);
    if (!ssl)
        return TERN_ENOMEM;
    if (SSL_set_fd(ssl, c->fd) != 1) {
        SSL_free(ssl);
        return TERN_ENOMEM;
    }
    SSL_set_accept_state(ssl);
    c->ssl = ssl;
    return 0;
}

void broker_tls_detach(broker_conn *c)
{
    if (!c->ssl)
        return;
    SSL_free(c->ssl);
    c->ssl = NULL;
}

/* Map an SSL_read/SSL_write result to socket semantics. */
static ssize_t tls_result(broker_conn *c, int n, const char *op)
{
    int err = SSL_get_error(c->ssl, n);
    switch (err) {
    case SSL_ERROR_WANT_READ:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        c->tls_want_write = true;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (errno == 0)
            errno = ECONNRESET;
        return -1;
    default: {
        unsigned long e = ERR_get_error();
        char msg[256];
        ERR_error_string_n(e, msg, sizeof msg);
        TERN_LOG_RATELIMITED(TERN_LOG_INFO, "broker", "%s: TLS %s failed: %s", c->peer, op, msg);
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
    }
}

/* After the handshake: take the certificate's CN as the identity, if configured. */
static void tls_take_identity(broker_conn *c)
{
    c->tls_identity_checked = true;
    if (!c->broker->cfg.tls_use_identity_as_username)
        return;
    X509 *cert = SSL_get1_peer_certificate(c->ssl);
    if (!cert)
        return;
    char cn[256];
    X509_NAME *subject = X509_get_subject_name(cert);
    int len = X509_NAME_get_text_by_NID(subject, NID_commonName, cn, sizeof cn);
    if (len > 0 && (size_t)len < sizeof cn && SSL_get_verify_result(c->ssl) == X509_V_OK)
        c->tls_identity = tern_strndup(cn, (size_t)len);
    X509_free(cert);
}

ssize_t broker_io_recv(broker_conn *c, void *buf, size_t len)
{
    if (!c->ssl)
        return recv(c->fd, buf, len, 0);
    c->tls_want_write = false;
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0 && !c->tls_identity_checked)
        tls_take_identity(c);
    return n > 0 ? n : tls_result(c, n, "read");
}

ssize_t broker_io_send(broker_conn *c, const void *buf, size_t len)
{
    if (!c->ssl)
        return send(c->fd, buf, len, MSG_NOSIGNAL);
    ERR_clear_error();
    int n = SSL_write(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    return n > 0 ? n : tls_result(c, n, "write");
}

bool broker_io_pending(const broker_conn *c)
{
    return c->ssl && SSL_pending(c->ssl) > 0;
}
