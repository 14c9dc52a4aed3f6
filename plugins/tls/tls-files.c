/* zltk plugin "tls": the PEM files of a configuration: certificate and
 * key (tls-cert, tls-key), CA files and directories (tls-ca,
 * tls-client-ca), each checked with a message that says what to fix. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "tls-internal.h"

/* Open path for reading, or say why not (naming key and file). */
static FILE *open_file(zl_instance_t *inst, const char *key, const char *path,
                       const char *what)
{
    struct stat st;
    FILE *f;

    if (stat(path, &st) < 0) {
        tls__host->config_error(inst, key,
                                "cannot read %s: %s: set %s to the path of %s",
                                path, strerror(errno), key, what);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        tls__host->config_error(inst, key,
                                "%s is a directory: set %s to the path of %s",
                                path, key, what);
        return NULL;
    }
    f = fopen(path, "r");
    if (!f)
        tls__host->config_error(
            inst, key, "cannot read %s: %s: check the file's permissions", path,
            strerror(errno));
    return f;
}

static char *asn1_time_text(const ASN1_TIME *t, char *buf, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p;
    long n;

    snprintf(buf, len, "?");
    if (b && ASN1_TIME_print(b, t) && (n = BIO_get_mem_data(b, &p)) > 0)
        snprintf(buf, len, "%.*s", (int)n, p);
    BIO_free(b);
    return buf;
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1; /* never prompt on a terminal */
}

/* A certificate file: readable, PEM, currently valid. */
static X509 *read_cert(zl_instance_t *inst, const char *key, const char *path)
{
    FILE *f = open_file(inst, key, path, "a PEM certificate");
    X509 *x;
    char why[256], when[64];

    if (!f)
        return NULL;
    x = PEM_read_X509_AUX(f, NULL, no_password, NULL);
    fclose(f);
    if (!x) {
        tls__host->config_error(inst, key,
                                "%s holds no PEM certificate (%s): give a file "
                                "with a -----BEGIN CERTIFICATE----- block",
                                path, tls__last_reason(why, sizeof(why)));
        return NULL;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
        tls__host->config_error(
            inst, key, "the certificate in %s expired on %s: renew it", path,
            asn1_time_text(X509_get0_notAfter(x), when, sizeof(when)));
        X509_free(x);
        return NULL;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
        tls__host->config_error(
            inst, key,
            "the certificate in %s is not valid before %s: check the clock or "
            "the certificate",
            path, asn1_time_text(X509_get0_notBefore(x), when, sizeof(when)));
        X509_free(x);
        return NULL;
    }
    ERR_clear_error();
    return x;
}

static EVP_PKEY *read_key(zl_instance_t *inst, const char *key,
                          const char *path)
{
    FILE *f = open_file(inst, key, path, "a PEM private key");
    EVP_PKEY *k;
    char why[256];

    if (!f)
        return NULL;
    k = PEM_read_PrivateKey(f, NULL, no_password, NULL);
    fclose(f);
    if (!k)
        tls__host->config_error(
            inst, key,
            "%s holds no usable PEM private key (%s): give an unencrypted PEM "
            "key (-----BEGIN PRIVATE KEY-----)",
            path, tls__last_reason(why, sizeof(why)));
    ERR_clear_error();
    return k;
}

/* tls-cert + tls-key into ctx: both readable, matching, valid. */
bool tls__load_identity(zl_instance_t *inst, SSL_CTX *ctx,
                          const char *cert, const char *keyf)
{
    X509 *x = read_cert(inst, "tls-cert", cert);
    EVP_PKEY *k = read_key(inst, "tls-key", keyf);
    char why[256];
    bool ok = false;

    if (!x || !k)
        goto out;
    if (X509_check_private_key(x, k) != 1) {
        ERR_clear_error();
        tls__host->config_error(
            inst, "tls-key",
            "the key in %s does not match the certificate in %s (tls-cert): "
            "give the key the certificate was issued for",
            keyf, cert);
        goto out;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        tls__host->config_error(inst, "tls-cert",
                                "cannot use the certificate chain in %s: %s",
                                cert, tls__last_reason(why, sizeof(why)));
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(ctx, k) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        tls__host->config_error(
            inst, "tls-key",
            "cannot use the key in %s with the certificate in %s: %s", keyf,
            cert, tls__last_reason(why, sizeof(why)));
        goto out;
    }
    ok = true;
out:
    X509_free(x);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return ok;
}

/* A CA file or hashed directory for verification; a file's subjects also
 * become the client CA list a server announces. */
bool tls__load_ca(zl_instance_t *inst, SSL_CTX *ctx, const char *key,
                    const char *path, bool announce)
{
    struct stat st;
    char why[256];

    if (stat(path, &st) < 0) {
        tls__host->config_error(inst, key,
                                "cannot read %s: %s: set %s to a PEM file of "
                                "CA certificates or a directory of hashed ones",
                                path, strerror(errno), key);
        return false;
    }
    if (S_ISDIR(st.st_mode)) {
        if (SSL_CTX_load_verify_dir(ctx, path) != 1) {
            tls__host->config_error(inst, key,
                                    "cannot use the directory %s: %s", path,
                                    tls__last_reason(why, sizeof(why)));
            return false;
        }
        return true;
    }
    {
        FILE *f = open_file(inst, key, path, "a PEM file of CA certificates");
        if (!f)
            return false;
        fclose(f);
    }
    if (SSL_CTX_load_verify_file(ctx, path) != 1) {
        tls__host->config_error(inst, key,
                                "%s holds no PEM CA certificate (%s): give a "
                                "file with -----BEGIN CERTIFICATE----- blocks",
                                path, tls__last_reason(why, sizeof(why)));
        return false;
    }
    if (announce) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(path);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    ERR_clear_error();
    return true;
}
