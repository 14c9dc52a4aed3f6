/* zltk tests — certificates for the TLS suites ("tls", "tls-interop").
 *
 * zl_test_tls_certs_make() writes, with the OpenSSL C API, into a new
 * mkdtemp directory (/tmp/zltk-tls-XXXXXX): a CA; a server certificate for
 * DNS:localhost and IP:127.0.0.1 signed by it; one for DNS:other.example
 * (the "other-name" certificate); an expired one for localhost; a
 * self-signed one for localhost; a client certificate (CN "zltk test
 * client", clientAuth); their private keys (unencrypted PKCS#8 PEM); and a
 * file that is not PEM.  All keys are EC P-256, all certificates X.509 v3
 * with SHA-256 signatures.  zl_test_tls_make_cert() and
 * zl_test_tls_write_pem() are the building blocks, for tests that need a
 * certificate of their own.
 */
#ifndef ZLTK_TEST_TLS_CERTS_H
#define ZLTK_TEST_TLS_CERTS_H

#include <stdbool.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

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
    char junk[ZL_TEST_TLS_PATH]; /* "this is not a certificate" */
} zl_test_tls_certs_t;

/* Kinds of zl_test_tls_make_cert(): CA (keyCertSign), server
 * (serverAuth), client (clientAuth). */
typedef enum {
    ZL_TEST_CERT_CA,
    ZL_TEST_CERT_SERVER,
    ZL_TEST_CERT_CLIENT
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

#endif
