/* zltk plugin "tls": verification and pinning: the name a client checks
 * (and sends as SNI), certificate fingerprints, and tls-pin. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "tls-internal.h"

/* Whether name is an IP literal; ip receives it without brackets or zone
 * (for X509_VERIFY_PARAM_set1_ip_asc). */
bool tls__ip_literal(const char *name, char *ip, size_t iplen)
{
    unsigned char bin[16];
    size_t n = strlen(name);
    char *pct;

    if (n >= 2 && name[0] == '[' && name[n - 1] == ']') {
        name++;
        n -= 2;
    }
    if (n >= iplen)
        return false;
    memcpy(ip, name, n);
    ip[n] = '\0';
    if ((pct = strchr(ip, '%')))
        *pct = '\0';
    return inet_pton(AF_INET, ip, bin) == 1 ||
           inet_pton(AF_INET6, ip, bin) == 1;
}

/* SHA-256 of a certificate (DER). */
bool tls__cert_fp(X509 *x, unsigned char fp[TLS_FP_LEN])
{
    unsigned int n = 0;

    if (!x || !X509_digest(x, EVP_sha256(), fp, &n) || n != TLS_FP_LEN) {
        ERR_clear_error();
        return false;
    }
    return true;
}

/* "AA:BB:...:FF" into buf (TLS_FP_TEXT bytes). */
char *tls__fp_text(const unsigned char fp[TLS_FP_LEN], char *buf)
{
    static const char hex[] = "0123456789ABCDEF";

    for (int i = 0; i < TLS_FP_LEN; i++) {
        buf[3 * i] = hex[fp[i] >> 4];
        buf[3 * i + 1] = hex[fp[i] & 15];
        buf[3 * i + 2] = i + 1 < TLS_FP_LEN ? ':' : '\0';
    }
    return buf;
}

/* The name a client checks the server's certificate against: tls-server-
 * name, or the host it connects to; NULL when there is none. */
static const char *peer_check_name(tls_sess_t *ls)
{
    const char *name =
        ls->ti->server_name
            ? ls->ti->server_name
            : tls__host->instance_host(tls__host->session_instance(ls->s));

    return name && *name ? name : NULL;
}

bool tls__setup_peer_check(tls_sess_t *ls)
{
    tls_inst_t *ti = ls->ti;
    const char *name = peer_check_name(ls);
    char ip[64];

    if (!name)
        return true;
    if (tls__ip_literal(name, ip, sizeof(ip))) {
        /* No SNI for addresses (RFC 6066); the certificate must name the
         * address in an IP SAN. */
        if (ti->verify &&
            !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ls->ssl), ip))
            return false;
        return true;
    }
    if (!SSL_set_tlsext_host_name(ls->ssl, name))
        return false;
    if (ti->verify) {
        SSL_set_hostflags(ls->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (!SSL_set1_host(ls->ssl, name))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------ pinning */

/* Clients with tls-pin, in place of OpenSSL's chain verification
 * (SSL_CTX_set_cert_verify_callback): the leaf certificate must have the
 * pinned fingerprint, whoever issued it and whatever its dates; then,
 * unless tls-verify = false, it must also carry the name or address the
 * client checks (tls-server-name or the host), as X509_verify_cert would
 * check it.  A mismatch is recorded for tls__ssl_reason. */
int tls__pin_verify_cb(X509_STORE_CTX *xs, void *arg)
{
    tls_inst_t *ti = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(
        xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    tls_sess_t *ls = ssl ? SSL_get_app_data(ssl) : NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    unsigned char fp[TLS_FP_LEN];
    const char *name;
    char ip[64];

    if (!ls || !tls__cert_fp(leaf, fp)) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_UNSPECIFIED);
        return 0;
    }
    if (CRYPTO_memcmp(fp, ti->pin, TLS_FP_LEN) != 0) {
        ls->pin_mismatch = true;
        memcpy(ls->peer_fp, fp, TLS_FP_LEN);
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    if (ti->verify && (name = peer_check_name(ls))) {
        if (tls__ip_literal(name, ip, sizeof(ip))) {
            if (X509_check_ip_asc(leaf, ip, 0) != 1) {
                X509_STORE_CTX_set_error(xs, X509_V_ERR_IP_ADDRESS_MISMATCH);
                ERR_clear_error();
                return 0;
            }
        } else if (X509_check_host(leaf, name, 0,
                                   X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                                   NULL) != 1) {
            X509_STORE_CTX_set_error(xs, X509_V_ERR_HOSTNAME_MISMATCH);
            ERR_clear_error();
            return 0;
        }
    }
    X509_STORE_CTX_set_error(xs, X509_V_OK);
    return 1;
}

/* tls-pin: @NAME, or a SHA-256 fingerprint as 64 hex digits, any case,
 * colons (or blanks) between them optional.  What precedes an '=' is
 * skipped, so that the output of openssl x509 -fingerprint -sha256 may be
 * pasted as is. */
bool tls__parse_pin(zl_instance_t *inst, const char *v, tls_inst_t *ti)
{
    unsigned char fp[TLS_FP_LEN];
    const char *p = strrchr(v, '=');
    size_t n = 0;
    bool bad = false;

    if (v[0] == '@') {
        if (!v[1]) {
            tls__host->config_error(inst, "tls-pin",
                                    "'@' names no server: give @NAME for the "
                                    "ephemeral certificate of [server.NAME]");
            return false;
        }
        if (!tls__eph_find(v + 1, ti->pin)) {
            tls__host->config_error(
                inst, "tls-pin",
                "@%s: no server instance of that name has an ephemeral "
                "certificate (tls-cert = ephemeral)",
                v + 1);
            return false;
        }
        return true;
    }
    for (p = p ? p + 1 : v; *p; p++) {
        int d;

        if (*p == ':' || *p == ' ' || *p == '\t')
            continue;
        if ((d = g_ascii_xdigit_value(*p)) < 0) {
            bad = true;
            break;
        }
        if (n < 2 * TLS_FP_LEN)
            fp[n / 2] = (unsigned char)(n % 2 ? fp[n / 2] | d : d << 4);
        n++;
    }
    if (bad || n != 2 * TLS_FP_LEN) {
        tls__host->config_error(
            inst, "tls-pin",
            "'%s' is not a SHA-256 fingerprint%s: give 64 hex digits, colons "
            "optional (as a server with tls-cert = ephemeral logs it; for a "
            "PEM file: openssl x509 -noout -fingerprint -sha256 -in FILE), or "
            "@NAME for the ephemeral certificate of [server.NAME]",
            v,
            !bad && n == 40 ? " (40 hex digits: SHA-1?)"
            : bad           ? " (not a hex digit in it)"
                            : "");
        return false;
    }
    memcpy(ti->pin, fp, TLS_FP_LEN);
    return true;
}
