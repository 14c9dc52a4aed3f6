/* zltk plugin "tls": ephemeral server certificates (tls-cert = ephemeral)
 * and the process-wide registry that tls-pin = @NAME reads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "tls-internal.h"

/* ------------------------------------------------------------ registry */

/* Server instances with an ephemeral certificate, for tls-pin = @NAME:
 * added when such an instance is accepted, removed when it is freed.
 * instance_new/instance_free run on the main thread, but nothing stops a
 * program from making instances elsewhere, hence the mutex.  Names are
 * unique per kind in zltk-host; should two instances share one, the newest
 * wins. */
typedef struct eph_entry {
    struct eph_entry *next;
    const tls_inst_t *owner;
    char *name;
    unsigned char fp[TLS_FP_LEN];
} eph_entry_t;

static pthread_mutex_t eph_mu = PTHREAD_MUTEX_INITIALIZER;
static eph_entry_t *eph_list; /* newest first */

bool tls__eph_add(const tls_inst_t *owner, const char *name,
                    const unsigned char fp[TLS_FP_LEN])
{
    eph_entry_t *e = calloc(1, sizeof(*e));

    if (!e || !(e->name = strdup(name))) {
        free(e);
        return false;
    }
    e->owner = owner;
    memcpy(e->fp, fp, TLS_FP_LEN);
    pthread_mutex_lock(&eph_mu);
    e->next = eph_list;
    eph_list = e;
    pthread_mutex_unlock(&eph_mu);
    return true;
}

void tls__eph_remove(const tls_inst_t *owner)
{
    eph_entry_t **pp, *e = NULL;

    pthread_mutex_lock(&eph_mu);
    for (pp = &eph_list; *pp; pp = &(*pp)->next)
        if ((*pp)->owner == owner) {
            e = *pp;
            *pp = e->next;
            break;
        }
    pthread_mutex_unlock(&eph_mu);
    if (e) {
        free(e->name);
        free(e);
    }
}

/* The fingerprint of [server.NAME]'s ephemeral certificate. */
bool tls__eph_find(const char *name, unsigned char fp[TLS_FP_LEN])
{
    bool found = false;

    pthread_mutex_lock(&eph_mu);
    for (eph_entry_t *e = eph_list; e; e = e->next)
        if (!strcmp(e->name, name)) {
            memcpy(fp, e->fp, TLS_FP_LEN);
            found = true;
            break;
        }
    pthread_mutex_unlock(&eph_mu);
    return found;
}

/* ------------------------------------------------------------ ephemeral */

static bool add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX c;
    X509_EXTENSION *e;
    int ok;

    X509V3_set_ctx_nodb(&c);
    X509V3_set_ctx(&c, x, x, NULL, NULL, 0);
    e = X509V3_EXT_nconf_nid(NULL, &c, nid, value);
    if (!e)
        return false;
    ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok == 1;
}

/* tls-cert = ephemeral: a fresh EC P-256 key and a self-signed certificate
 * for the loopback names, made in memory, into ti->ctx; ti->fp receives its
 * fingerprint.  Nothing touches the disk. */
bool tls__make_ephemeral(zl_instance_t *inst, tls_inst_t *ti)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIGNUM *bn = NULL;
    unsigned char serial[16];
    char cn[256], why[256];
    size_t cut;
    bool ok;

    /* A common name has at most 64 bytes (RFC 5280 ub-common-name): a long
     * instance name is cut, at a character boundary. */
    snprintf(cn, sizeof(cn), "zltk ephemeral %s",
             tls__host->instance_name(inst));
    cut = strlen(cn);
    if (cut > 64) {
        cut = 64;
        while (cut > 0 && ((unsigned char)cn[cut] & 0xC0) == 0x80)
            cut--;
        cn[cut] = '\0';
    }
    ok = k && x && RAND_bytes(serial, sizeof(serial)) == 1;
    if (ok) {
        serial[0] = (unsigned char)((serial[0] & 0x7F) | 0x40); /* > 0 */
        ok = (bn = BN_bin2bn(serial, sizeof(serial), NULL)) &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) &&
             X509_set_version(x, X509_VERSION_3) &&
             X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
             X509_gmtime_adj(X509_getm_notAfter(x),
                             TLS_EPHEMERAL_DAYS * 24L * 3600L) &&
             X509_set_pubkey(x, k) &&
             X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
                                        MBSTRING_UTF8,
                                        (const unsigned char *)cn, -1, -1,
                                        0) &&
             X509_set_issuer_name(x, X509_get_subject_name(x)) &&
             add_ext(x, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(x, NID_key_usage, "critical,digitalSignature") &&
             add_ext(x, NID_ext_key_usage, "serverAuth") &&
             add_ext(x, NID_subject_key_identifier, "hash") &&
             add_ext(x, NID_subject_alt_name,
                     "DNS:localhost,IP:127.0.0.1,IP:::1") &&
             X509_sign(x, k, EVP_sha256()) > 0 &&
             SSL_CTX_use_certificate(ti->ctx, x) == 1 &&
             SSL_CTX_use_PrivateKey(ti->ctx, k) == 1 &&
             SSL_CTX_check_private_key(ti->ctx) == 1 && tls__cert_fp(x, ti->fp);
    }
    if (!ok)
        tls__host->config_error(inst, "tls-cert",
                                "cannot make an ephemeral certificate: %s",
                                tls__last_reason(why, sizeof(why)));
    ti->ephemeral = ok;
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return ok;
}
