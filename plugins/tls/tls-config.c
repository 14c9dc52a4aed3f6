/* zltk plugin "tls": an instance's configuration into its SSL_CTX:
 * versions, ciphers, ALPN, the client's verification and resumption, the
 * server's identity and client certificates. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "tls-internal.h"

typedef enum {
    VERIFY_CLIENT_NONE,
    VERIFY_CLIENT_OPTIONAL,
    VERIFY_CLIENT_REQUIRED
} verify_client_t;

/* The OpenSSL reason of the last error in the queue, then clear it. */
const char *tls__last_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    if (r)
        snprintf(buf, len, "%s", r);
    else if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "no reason given");
    ERR_clear_error();
    return buf;
}

/* ------------------------------------------------------------ callbacks */

/* Clients: keep the newest resumable session for the next connection. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    tls_sess_t *ls = SSL_get_app_data(ssl);

    if (!ls || !ls->ti || ls->ti->server || !SSL_SESSION_is_resumable(sess))
        return 0;
    SSL_SESSION_free(ls->ti->session);
    ls->ti->session = sess; /* our reference */
    return 1;
}

/* Servers: the first protocol of our list that the client offers. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out,
                          unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg)
{
    tls_inst_t *ti = arg;
    unsigned char *sel = NULL;

    (void)ssl;
    if (SSL_select_next_proto(&sel, outlen, ti->alpn, (unsigned)ti->alpn_len,
                              in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* ------------------------------------------------------------ configuration */

/* "h2,http/1.1" into ALPN wire format. */
static bool parse_alpn(zl_instance_t *inst, const char *v, tls_inst_t *ti)
{
    size_t n = strlen(v);
    unsigned char *w = malloc(n + 1), *o = w;
    const char *p = v;

    if (!w)
        return false;
    while (*p) {
        const char *e = strchr(p, ',');
        const char *a = p, *b = e ? e : p + strlen(p);

        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (a == b || b - a > 255) {
            tls__host->config_error(inst, "tls-alpn",
                                    "'%s': %s: give protocol names separated "
                                    "by commas, e.g. h2,http/1.1",
                                    v,
                                    a == b ? "an empty protocol name"
                                           : "a name longer than 255 bytes");
            free(w);
            return false;
        }
        *o++ = (unsigned char)(b - a);
        memcpy(o, a, (size_t)(b - a));
        o += b - a;
        if (!e)
            break;
        p = e + 1;
        if (!*p) {
            tls__host->config_error(inst, "tls-alpn",
                                    "'%s': a trailing comma: give protocol "
                                    "names separated by commas",
                                    v);
            free(w);
            return false;
        }
    }
    if (o == w) {
        tls__host->config_error(
            inst, "tls-alpn",
            "empty: give protocol names separated by commas, e.g. h2,http/1.1");
        free(w);
        return false;
    }
    ti->alpn = w;
    ti->alpn_len = (size_t)(o - w);
    return true;
}

/* Whether key's value is a [plugin.tls] default (shared by clients and
 * servers alike: no warning when it does not apply). */
static bool is_default(zl_instance_t *inst, const char *key)
{
    return tls__host->config_is_default(inst, key);
}

static void ignored_key(zl_instance_t *inst, const char *key, bool server)
{
    if (tls__host->config_string(inst, key) && !is_default(inst, key))
        tls__host->log(tls__plugin, ZL_LOG_WARNING,
                       "%s.%s: %s applies to %s only; ignored",
                       server ? "server" : "client",
                       tls__host->instance_name(inst), key,
                       server ? "clients" : "servers");
}

/* Whether the cipher list rule alone selects a TLS 1.2 suite (scratch: a
 * context to try it on). */
static bool rule_selects(SSL_CTX *scratch, const char *rule)
{
    bool ok = SSL_CTX_set_cipher_list(scratch, rule) == 1;

    ERR_clear_error();
    return ok;
}

/* Whether name is one TLS 1.3 suite this OpenSSL has. */
static bool suite_known(SSL_CTX *scratch, const char *name)
{
    STACK_OF(SSL_CIPHER) *sk;
    int n = 0;

    if (SSL_CTX_set_ciphersuites(scratch, name) != 1) {
        ERR_clear_error();
        return false;
    }
    sk = SSL_CTX_get_ciphers(scratch);
    for (int i = 0; i < sk_SSL_CIPHER_num(sk); i++)
        if (!strcmp(SSL_CIPHER_get_version(sk_SSL_CIPHER_value(sk, i)),
                    "TLSv1.3"))
            n++;
    return n == 1;
}

/* The first part of list (split at any of seps) that check refuses, into
 * bad; parts starting with one of skip are not checked.  false when every
 * part passes. */
static bool find_bad_part(SSL_CTX *scratch, const char *list,
                          const char *seps, const char *skip,
                          bool (*check)(SSL_CTX *, const char *), char *bad,
                          size_t badlen)
{
    const char *p = list;

    while (*p) {
        size_t n = strcspn(p, seps);

        if (n && !strchr(skip, *p)) {
            const char *part = *p == '+' ? p + 1 : p; /* "+X": move X */
            size_t m = n - (size_t)(part - p);

            snprintf(bad, badlen, "%.*s", (int)m, part);
            if (m >= badlen || !check(scratch, bad))
                return true;
        }
        p += n;
        if (*p)
            p++;
    }
    return false;
}

/* tls-ciphers and tls-ciphersuites, or the defaults, into ti->ctx.  Each
 * part of a list must select something: OpenSSL itself skips a misspelt
 * name quietly as long as another part matches, and takes a TLS 1.3 list
 * that names no TLS 1.3 suite as "no TLS 1.3 at all". */
static bool config_ciphers(zl_instance_t *inst, tls_inst_t *ti, int minver)
{
    const char *cl = tls__host->config_string(inst, "tls-ciphers");
    const char *cs = tls__host->config_string(inst, "tls-ciphersuites");
    SSL_CTX *scratch = NULL;
    char bad[128], why[256];
    bool ok = true;

    if ((cl || cs) && !(scratch = SSL_CTX_new(TLS_method()))) {
        tls__host->config_error(inst, cl ? "tls-ciphers" : "tls-ciphersuites",
                                "cannot check the list: %s",
                                tls__last_reason(why, sizeof(why)));
        return false;
    }
    if (cl && !*cl) {
        tls__host->config_error(
            inst, "tls-ciphers",
            "empty: give an OpenSSL cipher list for TLS 1.2, e.g. "
            "ECDHE+AESGCM, or remove the key for zltk's default");
        ok = false;
    } else if (cl && find_bad_part(scratch, cl, ": ,;", "!-@", rule_selects,
                                   bad, sizeof(bad))) {
        tls__host->config_error(
            inst, "tls-ciphers",
            "'%s'%s%s%s selects no TLS 1.2 cipher suite of OpenSSL %s%s: give "
            "an OpenSSL cipher list (openssl ciphers -v 'LIST' shows what a "
            "list selects), e.g. ECDHE+AESGCM",
            cl, strcmp(cl, bad) ? ": '" : "", strcmp(cl, bad) ? bad : "",
            strcmp(cl, bad) ? "'" : "", OpenSSL_version(OPENSSL_VERSION_STRING),
            !strncmp(bad, "TLS_", 4)
                ? " (TLS 1.3 suites go in tls-ciphersuites)"
                : "");
        ok = false;
    } else if (SSL_CTX_set_cipher_list(ti->ctx,
                                       cl ? cl : TLS_DEFAULT_CIPHERS) != 1) {
        tls__host->config_error(inst, cl ? "tls-ciphers" : NULL,
                                "'%s': %s: give an OpenSSL cipher list for TLS "
                                "1.2, e.g. ECDHE+AESGCM",
                                cl ? cl : TLS_DEFAULT_CIPHERS,
                                tls__last_reason(why, sizeof(why)));
        ok = false;
    } else if (cl && minver >= TLS1_3_VERSION &&
               !is_default(inst, "tls-ciphers")) {
        tls__host->log(tls__plugin, ZL_LOG_WARNING,
                       "%s: tls-ciphers applies to TLS 1.2, which "
                       "tls-min-version = 1.3 refuses; ignored",
                       ti->name);
    }
    if (cs && !*cs) {
        tls__host->config_error(
            inst, "tls-ciphersuites",
            "empty: give TLS 1.3 suites separated by colons, e.g. "
            "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256, or remove the key "
            "for OpenSSL's default");
        ok = false;
    } else if (cs && find_bad_part(scratch, cs, ":", "", suite_known, bad,
                                   sizeof(bad))) {
        tls__host->config_error(
            inst, "tls-ciphersuites",
            "'%s'%s%s%s is not a TLS 1.3 cipher suite of OpenSSL %s: give "
            "names such as TLS_AES_256_GCM_SHA384, "
            "TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256, separated "
            "by colons%s",
            cs, strcmp(cs, bad) ? ": '" : "", strcmp(cs, bad) ? bad : "",
            strcmp(cs, bad) ? "'" : "", OpenSSL_version(OPENSSL_VERSION_STRING),
            strncmp(bad, "TLS_", 4) || strstr(bad, "_WITH_")
                ? " (TLS 1.2 suites go in tls-ciphers)"
                : "");
        ok = false;
    } else if (cs && SSL_CTX_set_ciphersuites(ti->ctx, cs) != 1) {
        tls__host->config_error(inst, "tls-ciphersuites", "'%s': %s", cs,
                                tls__last_reason(why, sizeof(why)));
        ok = false;
    }
    SSL_CTX_free(scratch);
    ERR_clear_error();
    return ok;
}

/* Clients: how the server's certificate is accepted (tls-pin, or the CA
 * chain from the system store and tls-ca, or nothing with tls-verify =
 * false). */
static bool client_verify(zl_instance_t *inst, tls_inst_t *ti,
                          const char *pin, const char *sn)
{
    const char *ca = tls__host->config_string(inst, "tls-ca");
    bool verify = ti->verify;

    if (pin) {
        /* The pin replaces the chain check: no CA store at all. */
        SSL_CTX_set_verify(ti->ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_cert_verify_callback(ti->ctx, tls__pin_verify_cb, ti);
        if (ca && !is_default(inst, "tls-ca"))
            tls__host->log(
                tls__plugin, ZL_LOG_WARNING,
                "client.%s: tls-ca is ignored: with tls-pin the server's "
                "certificate is accepted by its fingerprint, not by a CA",
                tls__host->instance_name(inst));
        if (!verify)
            tls__host->log(tls__plugin, ZL_LOG_INFO,
                           "client.%s: tls-pin with tls-verify = false: the "
                           "certificate is pinned, its names are not checked",
                           tls__host->instance_name(inst));
    } else if (verify) {
        if (SSL_CTX_set_default_verify_paths(ti->ctx) != 1)
            ERR_clear_error(); /* no system store: tls-ca may still do */
        SSL_CTX_set_verify(ti->ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ti->ctx, SSL_VERIFY_NONE, NULL);
        tls__host->log(tls__plugin, ZL_LOG_WARNING,
                       "client.%s: tls-verify = false: the server's "
                       "certificate and name are NOT checked, so anyone on the "
                       "path can impersonate %s; use it for tests only",
                       tls__host->instance_name(inst),
                       sn ? sn
                       : tls__host->instance_host(inst)
                           ? tls__host->instance_host(inst)
                           : "the server");
    }
    return !(ca && !pin && !tls__load_ca(inst, ti->ctx, "tls-ca", ca, false));
}

/* Clients: the optional client certificate (mutual TLS), PEM files only. */
static bool client_identity(zl_instance_t *inst, tls_inst_t *ti)
{
    const char *cert = tls__host->config_string(inst, "tls-cert");
    const char *keyf = tls__host->config_string(inst, "tls-key");

    if (cert && !strcmp(cert, TLS_EPHEMERAL)) {
        tls__host->config_error(
            inst, "tls-cert",
            "tls-cert = %s is for servers: a client certificate needs PEM "
            "files (tls-cert and tls-key)",
            TLS_EPHEMERAL);
        return false;
    }
    if (!cert && !keyf)
        return true;
    if (!cert) {
        tls__host->config_error(inst, "tls-cert",
                                "tls-key is set but not tls-cert: a client "
                                "certificate needs both (PEM files)");
        return false;
    }
    if (!keyf) {
        tls__host->config_error(inst, "tls-key",
                                "tls-cert is set but not tls-key: a client "
                                "certificate needs both (PEM files)");
        return false;
    }
    return tls__load_identity(inst, ti->ctx, cert, keyf);
}

static bool config_client(zl_instance_t *inst, tls_inst_t *ti)
{
    const char *sn = tls__host->config_string(inst, "tls-server-name");
    const char *pin = tls__host->config_string(inst, "tls-pin");
    bool ok = true, verify = true;

    if (tls__host->config_bool(inst, "tls-verify", &verify) == -EINVAL)
        ok = false;
    ti->verify = verify;
    if (pin && !tls__parse_pin(inst, pin, ti))
        ok = false;
    if (sn) {
        if (!*sn) {
            tls__host->config_error(
                inst, "tls-server-name",
                "empty: give the name the server's certificate carries, or "
                "remove the key to use the instance's host");
            ok = false;
        } else if (!(ti->server_name = strdup(sn))) {
            return false;
        }
    }
    if (!client_verify(inst, ti, pin, sn))
        ok = false;
    if (!client_identity(inst, ti))
        ok = false;
    if (ti->alpn && SSL_CTX_set_alpn_protos(ti->ctx, ti->alpn,
                                            (unsigned)ti->alpn_len) != 0) {
        char why[256];
        tls__host->config_error(inst, "tls-alpn",
                                "cannot offer these protocols: %s",
                                tls__last_reason(why, sizeof(why)));
        ok = false;
    }
    /* Resumption: OpenSSL hands us each new session (in TLS 1.3 when a
     * ticket arrives) and we keep the newest for the next connect. */
    SSL_CTX_set_session_cache_mode(
        ti->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ti->ctx, new_session_cb);
    ignored_key(inst, "tls-client-ca", false);
    ignored_key(inst, "tls-verify-client", false);
    return ok;
}

/* Servers: the certificate and key, from PEM files or made at start
 * (tls-cert = ephemeral). */
static bool server_identity(zl_instance_t *inst, tls_inst_t *ti)
{
    const char *cert = tls__host->config_string(inst, "tls-cert");
    const char *keyf = tls__host->config_string(inst, "tls-key");

    if (cert && !strcmp(cert, TLS_EPHEMERAL)) {
        if (keyf) {
            tls__host->config_error(
                inst, "tls-key",
                "tls-cert = %s makes its own key: remove tls-key (%s), or set "
                "tls-cert to the PEM file of that key's certificate",
                TLS_EPHEMERAL, keyf);
            return false;
        }
        return tls__make_ephemeral(inst, ti);
    }
    if (!cert)
        tls__host->config_error(
            inst, "tls-cert",
            "a TLS server needs a certificate: set tls-cert (and tls-key) "
            "to PEM files, or tls-cert = %s for a self-signed one made at "
            "start (clients pin it with tls-pin)",
            TLS_EPHEMERAL);
    if (!keyf)
        tls__host->config_error(
            inst, "tls-key",
            "a TLS server needs the private key of its certificate: set "
            "tls-key to a PEM file%s%s",
            cert ? " matching " : "", cert ? cert : "");
    return cert && keyf && tls__load_identity(inst, ti->ctx, cert, keyf);
}

/* Servers: client certificates (tls-verify-client, tls-client-ca). */
static bool server_verify_client(zl_instance_t *inst, tls_inst_t *ti)
{
    const char *cca = tls__host->config_string(inst, "tls-client-ca");
    const char *vc = tls__host->config_string(inst, "tls-verify-client");
    verify_client_t mode = VERIFY_CLIENT_NONE;
    bool ok = true;

    if (vc) {
        if (!strcmp(vc, "required"))
            mode = VERIFY_CLIENT_REQUIRED;
        else if (!strcmp(vc, "optional"))
            mode = VERIFY_CLIENT_OPTIONAL;
        else if (strcmp(vc, "none")) {
            tls__host->config_error(inst, "tls-verify-client",
                                    "'%s' is not none, optional or required",
                                    vc);
            ok = false;
        }
    }
    if (mode != VERIFY_CLIENT_NONE && !cca) {
        tls__host->config_error(
            inst, "tls-client-ca",
            "tls-verify-client = %s needs the CA that issues client "
            "certificates: set tls-client-ca to a PEM file or directory",
            vc);
        ok = false;
    }
    if (cca) {
        if (mode == VERIFY_CLIENT_NONE)
            tls__host->log(
                tls__plugin, ZL_LOG_WARNING,
                "server.%s: tls-client-ca is set but no client certificate is "
                "requested: set tls-verify-client = required or optional",
                tls__host->instance_name(inst));
        else if (!tls__load_ca(inst, ti->ctx, "tls-client-ca", cca, true))
            ok = false;
    }
    if (mode != VERIFY_CLIENT_NONE)
        SSL_CTX_set_verify(ti->ctx,
                           SSL_VERIFY_PEER |
                               (mode == VERIFY_CLIENT_REQUIRED
                                    ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                    : 0),
                           NULL);
    return ok;
}

static bool config_server(zl_instance_t *inst, tls_inst_t *ti)
{
    const char *name = tls__host->instance_name(inst);
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
    size_t sidlen;
    bool ok = true;

    if (!server_identity(inst, ti))
        ok = false;
    if (!server_verify_client(inst, ti))
        ok = false;
    /* Sessions (cache and tickets) belong to this instance. */
    sidlen = strlen(name) < sizeof(sid) ? strlen(name) : sizeof(sid);
    memcpy(sid, name, sidlen);
    if (!sidlen) {
        sid[0] = 'z';
        sidlen = 1;
    }
    SSL_CTX_set_session_id_context(ti->ctx, sid, (unsigned)sidlen);
    if (ti->alpn)
        SSL_CTX_set_alpn_select_cb(ti->ctx, alpn_select_cb, ti);
    ignored_key(inst, "tls-ca", true);
    ignored_key(inst, "tls-server-name", true);
    ignored_key(inst, "tls-verify", true);
    ignored_key(inst, "tls-pin", true);
    return ok;
}

/* tls-min-version into *version (TLS1_2_VERSION unless set). */
static bool config_version(zl_instance_t *inst, int *version)
{
    const char *minv = tls__host->config_string(inst, "tls-min-version");

    *version = TLS1_2_VERSION;
    if (!minv || !strcmp(minv, "1.2") || !strcasecmp(minv, "TLSv1.2"))
        return true;
    if (!strcmp(minv, "1.3") || !strcasecmp(minv, "TLSv1.3")) {
        *version = TLS1_3_VERSION;
        return true;
    }
    tls__host->config_error(
        inst, "tls-min-version",
        "'%s' is not a TLS version zltk accepts: use 1.2 or 1.3", minv);
    return false;
}

/* tls-handshake-timeout into ti->timeout_ms (TLS_DEFAULT_TIMEOUT_MS unless
 * set). */
static bool config_timeout(zl_instance_t *inst, tls_inst_t *ti)
{
    int64_t tmo = TLS_DEFAULT_TIMEOUT_MS;
    int rc = tls__host->config_int(inst, "tls-handshake-timeout", &tmo);

    if (rc == -EINVAL)
        return false;
    if (rc == 0 && (tmo <= 0 || tmo > 24 * 3600 * 1000LL)) {
        tls__host->config_error(
            inst, "tls-handshake-timeout",
            "%lld is out of range: give milliseconds, 1 to 86400000",
            (long long)tmo);
        return false;
    }
    ti->timeout_ms = (uint64_t)tmo;
    return true;
}

/* Everything an instance's keys say, into ti->ctx and ti (made by
 * tls_instance_new with its context).  Every problem is reported, not only
 * the first.  False when one was. */
bool tls__config(zl_instance_t *inst, tls_inst_t *ti)
{
    const char *alpn = tls__host->config_string(inst, "tls-alpn");
    int version;
    bool ok = config_version(inst, &version);

    SSL_CTX_set_min_proto_version(ti->ctx, version);
    SSL_CTX_set_options(ti->ctx, SSL_OP_NO_RENEGOTIATION);
    /* The server's order wins: the client's order would decide otherwise
     * (and audits flag that). */
    if (ti->server)
        SSL_CTX_set_options(ti->ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (!config_ciphers(inst, ti, version))
        ok = false;
    SSL_CTX_set_mode(ti->ctx, SSL_MODE_RELEASE_BUFFERS);
    if (!config_timeout(inst, ti))
        ok = false;
    if (alpn && !parse_alpn(inst, alpn, ti))
        ok = false;
    if (ti->server ? !config_server(inst, ti) : !config_client(inst, ti))
        ok = false;
    ERR_clear_error();
    return ok;
}
