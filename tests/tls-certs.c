/* zltk tests — certificates for the TLS suites (see tls-certs.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "test.h"
#include "tls-certs.h"

static bool add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX c;
    X509_EXTENSION *e;
    int ok;

    X509V3_set_ctx_nodb(&c);
    X509V3_set_ctx(&c, issuer, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &c, nid, value);
    if (!e)
        return false;
    ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok == 1;
}

X509 *zl_test_tls_make_cert(EVP_PKEY *key, const char *cn, X509 *issuer,
                            EVP_PKEY *ikey, const char *san, long not_before,
                            long not_after, zl_test_cert_kind_t kind)
{
    static long serial = 1000;
    X509 *x = X509_new();
    X509_NAME *n;
    bool ok;

    if (!x)
        return NULL;
    n = X509_get_subject_name(x);
    ok = X509_set_version(x, 2) &&
         ASN1_INTEGER_set(X509_get_serialNumber(x), serial++) &&
         X509_gmtime_adj(X509_getm_notBefore(x), not_before) &&
         X509_gmtime_adj(X509_getm_notAfter(x), not_after) &&
         X509_set_pubkey(x, key) &&
         X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC,
                                    (const unsigned char *)"zltk tests", -1,
                                    -1, 0) &&
         X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                                    (const unsigned char *)cn, -1, -1, 0) &&
         X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    if (ok) {
        X509 *iss = issuer ? issuer : x;
        ok = add_ext(x, iss, NID_subject_key_identifier, "hash") &&
             add_ext(x, iss, NID_authority_key_identifier, "keyid:always");
    }
    if (ok && kind == ZL_TEST_CERT_CA)
        ok = add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") &&
             add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    else if (ok)
        ok = add_ext(x, x, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(x, x, NID_key_usage, "critical,digitalSignature") &&
             add_ext(x, x, NID_ext_key_usage,
                     kind == ZL_TEST_CERT_SERVER ? "serverAuth"
                                                 : "clientAuth");
    if (ok && san)
        ok = add_ext(x, x, NID_subject_alt_name, san);
    if (ok)
        ok = X509_sign(x, ikey ? ikey : key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

bool zl_test_tls_write_pem(const char *cpath, X509 *x, const char *kpath,
                           EVP_PKEY *k)
{
    FILE *f;
    bool ok = true;

    if (cpath) {
        f = fopen(cpath, "w");
        ok = f && PEM_write_X509(f, x) == 1;
        if (f && fclose(f) != 0)
            ok = false;
    }
    if (ok && kpath) {
        f = fopen(kpath, "w");
        ok = f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1;
        if (f && fclose(f) != 0)
            ok = false;
    }
    return ok;
}

static void set_path(const zl_test_tls_certs_t *c, char *dst,
                     const char *name)
{
    snprintf(dst, ZL_TEST_TLS_PATH, "%s/%s", c->dir, name);
}

bool zl_test_tls_certs_make(zl_test_tls_certs_t *c)
{
    EVP_PKEY *kca = NULL, *ksrv = NULL, *koth = NULL, *kexp = NULL,
             *kself = NULL, *kcli = NULL;
    X509 *ca = NULL, *srv = NULL, *oth = NULL, *exp = NULL, *self = NULL,
         *cli = NULL;
    bool ok;
    FILE *f;

    memset(c, 0, sizeof(*c));
    snprintf(c->dir, sizeof(c->dir), "/tmp/zltk-tls-XXXXXX");
    if (!mkdtemp(c->dir)) {
        perror("tls certificates: mkdtemp");
        c->dir[0] = '\0';
        return false;
    }
    kca = EVP_EC_gen("P-256");
    ksrv = EVP_EC_gen("P-256");
    koth = EVP_EC_gen("P-256");
    kexp = EVP_EC_gen("P-256");
    kself = EVP_EC_gen("P-256");
    kcli = EVP_EC_gen("P-256");
    ok = kca && ksrv && koth && kexp && kself && kcli;
    if (ok) {
        const long day = ZL_TEST_DAY;

        ca = zl_test_tls_make_cert(kca, "zltk test CA", NULL, NULL, NULL,
                                   -day, 30 * day, ZL_TEST_CERT_CA);
        srv = zl_test_tls_make_cert(ksrv, "localhost", ca, kca,
                                    "DNS:localhost,IP:127.0.0.1", -day,
                                    30 * day, ZL_TEST_CERT_SERVER);
        oth = zl_test_tls_make_cert(koth, "other.example", ca, kca,
                                    "DNS:other.example", -day, 30 * day,
                                    ZL_TEST_CERT_SERVER);
        exp = zl_test_tls_make_cert(kexp, "localhost", ca, kca,
                                    "DNS:localhost,IP:127.0.0.1", -3 * day,
                                    -day, ZL_TEST_CERT_SERVER);
        self = zl_test_tls_make_cert(kself, "localhost", NULL, NULL,
                                     "DNS:localhost,IP:127.0.0.1", -day,
                                     30 * day, ZL_TEST_CERT_SERVER);
        cli = zl_test_tls_make_cert(kcli, "zltk test client", ca, kca, NULL,
                                    -day, 30 * day, ZL_TEST_CERT_CLIENT);
        ok = ca && srv && oth && exp && self && cli;
    }
    set_path(c, c->ca, "ca.pem");
    set_path(c, c->srv, "server.pem");
    set_path(c, c->srv_key, "server.key");
    set_path(c, c->other, "other.pem");
    set_path(c, c->other_key, "other.key");
    set_path(c, c->exp, "expired.pem");
    set_path(c, c->exp_key, "expired.key");
    set_path(c, c->self, "self.pem");
    set_path(c, c->self_key, "self.key");
    set_path(c, c->cli, "client.pem");
    set_path(c, c->cli_key, "client.key");
    set_path(c, c->junk, "junk.pem");
    ok = ok && zl_test_tls_write_pem(c->ca, ca, NULL, NULL) &&
         zl_test_tls_write_pem(c->srv, srv, c->srv_key, ksrv) &&
         zl_test_tls_write_pem(c->other, oth, c->other_key, koth) &&
         zl_test_tls_write_pem(c->exp, exp, c->exp_key, kexp) &&
         zl_test_tls_write_pem(c->self, self, c->self_key, kself) &&
         zl_test_tls_write_pem(c->cli, cli, c->cli_key, kcli);
    if (ok) {
        f = fopen(c->junk, "w");
        ok = f && fputs("this is not a certificate\n", f) >= 0;
        if (f && fclose(f) != 0)
            ok = false;
    }
    X509_free(ca);
    X509_free(srv);
    X509_free(oth);
    X509_free(exp);
    X509_free(self);
    X509_free(cli);
    EVP_PKEY_free(kca);
    EVP_PKEY_free(ksrv);
    EVP_PKEY_free(koth);
    EVP_PKEY_free(kexp);
    EVP_PKEY_free(kself);
    EVP_PKEY_free(kcli);
    if (!ok) {
        fprintf(stderr, "tls certificates: cannot make them in %s\n",
                c->dir);
        ERR_print_errors_fp(stderr);
    }
    ERR_clear_error();
    return ok;
}

void zl_test_tls_certs_remove(zl_test_tls_certs_t *c)
{
    if (c->dir[0])
        zl_test_rm_tree(c->dir);
    c->dir[0] = '\0';
}
