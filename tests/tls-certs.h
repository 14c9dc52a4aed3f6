/* zltk tests — certificates and the shared harness for the TLS suites
 * ("tls", "tls-interop").
 *
 * Certificates.  zl_test_tls_certs_make() writes, with the OpenSSL C API,
 * into a new mkdtemp directory (/tmp/zltk-tls-XXXXXX): a CA; a server
 * certificate for DNS:localhost and IP:127.0.0.1 signed by it; one for
 * DNS:other.example (the "other-name" certificate); an expired one for
 * localhost; a self-signed one for localhost; a client certificate (CN
 * "zltk test client", clientAuth); their private keys (unencrypted PKCS#8
 * PEM); a server certificate for localhost with an RSA key (the "rsa"
 * certificate); and a file that is not PEM.  All other keys are EC P-256;
 * all certificates X.509 v3 with SHA-256 signatures.  zl_test_tls_make_cert()
 * and zl_test_tls_write_pem() are the building blocks, for tests that need
 * a certificate of their own.
 *
 * Harness.  What both suites need to run instances of the tls layer as
 * zltk-host runs them: suite init and cleanup (the plugins loaded with the
 * loader, the certificates, the runtime: zl_test_tls_suite_init()); an
 * instance's configuration table and the problems it reports
 * (zl_test_icfg_t, for zl_instance_options_t's config, report and ctx);
 * the options of a tls instance on 127.0.0.1 (zl_test_tls_opts_fill(),
 * zl_test_tls_client_to()); and a session's transport_info as a string
 * (zl_test_tls_info()).
 */
#ifndef ZLTK_TEST_TLS_CERTS_H
#define ZLTK_TEST_TLS_CERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <zltk/zltk.h>

#define ZL_TEST_TLS_PATH 128

/* Absolute paths of the files made by zl_test_tls_certs_make(). */
typedef struct zl_test_tls_certs {
    char dir[64];               /* the mkdtemp directory, "" when none */
    char ca[ZL_TEST_TLS_PATH];  /* CA certificate "zltk test CA" */
    char srv[ZL_TEST_TLS_PATH], srv_key[ZL_TEST_TLS_PATH];
    /* CN other.example, DNS:other.example, by the CA */
    char other[ZL_TEST_TLS_PATH], other_key[ZL_TEST_TLS_PATH];
    /* CN localhost, by the CA, expired a day ago */
    char exp[ZL_TEST_TLS_PATH], exp_key[ZL_TEST_TLS_PATH];
    /* CN localhost, DNS:localhost, IP:127.0.0.1, self-signed */
    char self[ZL_TEST_TLS_PATH], self_key[ZL_TEST_TLS_PATH];
    /* CN "zltk test client", by the CA */
    char cli[ZL_TEST_TLS_PATH], cli_key[ZL_TEST_TLS_PATH];
    /* CN localhost, DNS:localhost, IP:127.0.0.1, by the CA, an RSA 2048
     * key (key usage also keyEncipherment: static RSA key exchange) */
    char rsa[ZL_TEST_TLS_PATH], rsa_key[ZL_TEST_TLS_PATH];
    char junk[ZL_TEST_TLS_PATH]; /* "this is not a certificate" */
} zl_test_tls_certs_t;

/* Kinds of zl_test_tls_make_cert(): CA (keyCertSign), server
 * (serverAuth), client (clientAuth), an RSA server's (serverAuth, and
 * keyEncipherment besides digitalSignature). */
typedef enum {
    ZL_TEST_CERT_CA,
    ZL_TEST_CERT_SERVER,
    ZL_TEST_CERT_CLIENT,
    ZL_TEST_CERT_SERVER_RSA
} zl_test_cert_kind_t;

/* Seconds in a day, for validity offsets. */
#define ZL_TEST_DAY (24L * 3600L)

/* Make the directory and every file above.  Returns true, or false with
 * OpenSSL's errors on standard error (whatever was made stays in c->dir:
 * zl_test_tls_certs_remove() it). */
bool zl_test_tls_certs_make(zl_test_tls_certs_t *c);
/* Remove c->dir and its contents; then c->dir is "".  Idempotent. */
void zl_test_tls_certs_remove(zl_test_tls_certs_t *c);

/* A certificate for key with subject "O=zltk tests, CN=cn", valid from
 * now+not_before to now+not_after seconds, signed by issuer/ikey (NULL:
 * self-signed), with subject/authority key ids, the kind's key usages and,
 * if san is not NULL, subjectAltName = san ("DNS:a,IP:1.2.3.4").  NULL on
 * failure.  X509_free() it. */
X509 *zl_test_tls_make_cert(EVP_PKEY *key, const char *cn, X509 *issuer,
                            EVP_PKEY *ikey, const char *san, long not_before,
                            long not_after, zl_test_cert_kind_t kind);
/* Write x to cpath and k to kpath as PEM; either path may be NULL. */
bool zl_test_tls_write_pem(const char *cpath, X509 *x, const char *kpath,
                           EVP_PKEY *k);

/* ------------------------------------------------------------ harness */

#define ZL_TEST_ICFG_KV 24     /* room for 11 keys and the final NULL */
#define ZL_TEST_ICFG_REPORTS 8 /* reports kept */

/* One instance's configuration (key, value, ..., NULL) and the problems it
 * reported; must outlive the instance.  Its kv may be initialised directly
 * ({{"tls-ca", path, NULL}}). */
typedef struct zl_test_icfg {
    const char *kv[ZL_TEST_ICFG_KV];
    int nrep; /* reports made, kept or not */
    char rep_key[ZL_TEST_ICFG_REPORTS][64]; /* "": a report on no key */
    char rep_msg[ZL_TEST_ICFG_REPORTS][600];
    char text[ZL_TEST_ICFG_REPORTS * 700]; /* zl_test_icfg_reports() */
} zl_test_icfg_t;

/* A new configuration of key, value pairs up to a NULL key (at most 11
 * pairs); fails the test fatally if out of memory.  free() it. */
zl_test_icfg_t *zl_test_icfg_new(const char *first, ...);
/* zl_instance_config_fn / zl_instance_report_fn with ctx a
 * zl_test_icfg_t: the value of key (NULL: not set) / keep the report. */
const char *zl_test_icfg_get(void *ctx, const char *key);
void zl_test_icfg_report(void *ctx, const char *key, const char *message);
/* The kept reports for messages: each as lead, "KEY: MESSAGE" ("(group)"
 * for no key); "" if none.  In c->text, until the next call. */
const char *zl_test_icfg_reports(zl_test_icfg_t *c, const char *lead);

/* The tls plugin (and others), loaded with the loader as zltk-host loads
 * them. */
typedef struct zl_test_tls_plugins {
    zl_plugin_registry_t *reg;
    const zl_layer_t *layer; /* the tls layer */
    zl_plugin_t *plugin;     /* its plugin */
} zl_test_tls_plugins_t;

/* Suite init's common part: a new registry with tls.so and each of also
 * (NULL-terminated, may be NULL: "echo" for echo.so) loaded from
 * $top_builddir/plugins/.libs, the tls layer found, the certificates made
 * (zl_test_tls_certs_make()), the runtime started (2 pollers, 2 workers).
 * false, saying why on standard error ("SUITE suite: ..."), if anything
 * failed. */
bool zl_test_tls_suite_init(zl_test_tls_plugins_t *p,
                            zl_test_tls_certs_t *certs, const char *suite,
                            const char *const *also);
/* Suite cleanup's: the runtime stopped, the registry freed, the
 * certificates removed. */
void zl_test_tls_suite_cleanup(zl_test_tls_plugins_t *p,
                               zl_test_tls_certs_t *certs);

/* Options (zeroed first) for an instance named name with p's tls layer:
 * server or client, handler h of plugin hp (NULL: the test's own),
 * configured by c (zl_test_icfg_get / zl_test_icfg_report); a server
 * listens on 127.0.0.1 (port 0), a client's connect timeout is 3 s. */
void zl_test_tls_opts_fill(zl_instance_options_t *o,
                           const zl_test_tls_plugins_t *p, zl_test_icfg_t *c,
                           bool server, const char *name,
                           const zl_handler_t *h, zl_plugin_t *hp);
/* A client's peer, host:port; with reconnect, it reconnects after
 * 20-50 ms, up to 5 failed attempts in a row. */
void zl_test_tls_client_to(zl_instance_options_t *o, const char *host,
                           uint16_t port, bool reconnect);

/* transport_info(s, key) into dst (len bytes); "" when there is none. */
void zl_test_tls_info(zl_session_t *s, const char *key, char *dst,
                      size_t len);

#endif
