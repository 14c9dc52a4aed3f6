/* zltk tests — certificates and the shared harness for the TLS suites
 * (see tls-certs.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <glib.h>

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
             add_ext(x, x, NID_key_usage,
                     kind == ZL_TEST_CERT_SERVER_RSA
                         ? "critical,digitalSignature,keyEncipherment"
                         : "critical,digitalSignature") &&
             add_ext(x, x, NID_ext_key_usage,
                     kind == ZL_TEST_CERT_CLIENT ? "clientAuth"
                                                 : "serverAuth");
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
             *kself = NULL, *kcli = NULL, *krsa = NULL;
    X509 *ca = NULL, *srv = NULL, *oth = NULL, *exp = NULL, *self = NULL,
         *cli = NULL, *rsa = NULL;
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
    krsa = EVP_RSA_gen(2048);
    ok = kca && ksrv && koth && kexp && kself && kcli && krsa;
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
        rsa = zl_test_tls_make_cert(krsa, "localhost", ca, kca,
                                    "DNS:localhost,IP:127.0.0.1", -day,
                                    30 * day, ZL_TEST_CERT_SERVER_RSA);
        ok = ca && srv && oth && exp && self && cli && rsa;
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
    set_path(c, c->rsa, "rsa.pem");
    set_path(c, c->rsa_key, "rsa.key");
    set_path(c, c->junk, "junk.pem");
    ok = ok && zl_test_tls_write_pem(c->ca, ca, NULL, NULL) &&
         zl_test_tls_write_pem(c->srv, srv, c->srv_key, ksrv) &&
         zl_test_tls_write_pem(c->other, oth, c->other_key, koth) &&
         zl_test_tls_write_pem(c->exp, exp, c->exp_key, kexp) &&
         zl_test_tls_write_pem(c->self, self, c->self_key, kself) &&
         zl_test_tls_write_pem(c->cli, cli, c->cli_key, kcli) &&
         zl_test_tls_write_pem(c->rsa, rsa, c->rsa_key, krsa);
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
    X509_free(rsa);
    EVP_PKEY_free(kca);
    EVP_PKEY_free(ksrv);
    EVP_PKEY_free(koth);
    EVP_PKEY_free(kexp);
    EVP_PKEY_free(kself);
    EVP_PKEY_free(kcli);
    EVP_PKEY_free(krsa);
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

/* ------------------------------------------------------------ harness */

zl_test_icfg_t *zl_test_icfg_new(const char *first, ...)
{
    zl_test_icfg_t *c = calloc(1, sizeof(*c));
    va_list ap;
    const char *k;
    int i = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    va_start(ap, first);
    for (k = first; k && i < ZL_TEST_ICFG_KV - 2;
         k = va_arg(ap, const char *)) {
        c->kv[i++] = k;
        c->kv[i++] = va_arg(ap, const char *);
    }
    va_end(ap);
    return c;
}

const char *zl_test_icfg_get(void *ctx, const char *key)
{
    zl_test_icfg_t *c = ctx;

    for (int i = 0; c->kv[i]; i += 2)
        if (!strcmp(c->kv[i], key))
            return c->kv[i + 1];
    return NULL;
}

void zl_test_icfg_report(void *ctx, const char *key, const char *message)
{
    zl_test_icfg_t *c = ctx;

    if (c->nrep < ZL_TEST_ICFG_REPORTS) {
        snprintf(c->rep_key[c->nrep], sizeof(c->rep_key[0]), "%s",
                 key ? key : "");
        snprintf(c->rep_msg[c->nrep], sizeof(c->rep_msg[0]), "%s",
                 message ? message : "");
    }
    c->nrep++;
}

const char *zl_test_icfg_reports(zl_test_icfg_t *c, const char *lead)
{
    size_t n = 0;

    c->text[0] = '\0';
    for (int i = 0; i < c->nrep && i < ZL_TEST_ICFG_REPORTS &&
                    n < sizeof(c->text);
         i++)
        n += (size_t)snprintf(c->text + n, sizeof(c->text) - n, "%s%s: %s",
                              lead, c->rep_key[i][0] ? c->rep_key[i]
                                                     : "(group)",
                              c->rep_msg[i]);
    return c->text;
}

static bool load_one(zl_plugin_registry_t *reg, const char *suite,
                     const char *dir, const char *name)
{
    char *path = g_strdup_printf("%s/%s.so", dir, name);
    char *err = NULL;
    int rc = zl_plugins_load_file(reg, path, &err);

    if (rc < 0)
        fprintf(stderr, "%s suite: %s: %s (build it with make)\n", suite,
                path, err ? err : zl_strerror(rc));
    free(err);
    g_free(path);
    return rc >= 0;
}

static bool plugins_load(zl_test_tls_plugins_t *p, const char *suite,
                         const char *const *also)
{
    const char *top = getenv("top_builddir");
    char *dir = g_build_filename(top && *top ? top : ".", "plugins", ".libs",
                                 NULL);
    const zl_registration_t *r;
    bool ok;

    memset(p, 0, sizeof(*p));
    ok = zl_plugins_new(&p->reg) >= 0 && load_one(p->reg, suite, dir, "tls");
    for (int i = 0; ok && also && also[i]; i++)
        ok = load_one(p->reg, suite, dir, also[i]);
    g_free(dir);
    if (!ok)
        return false;
    r = zl_plugins_find_provider(p->reg, ZL_PROVIDES_LAYER, "tls",
                                 &p->plugin);
    p->layer = r ? r->vtable : NULL;
    if (!p->layer)
        fprintf(stderr, "%s suite: tls.so provides no layer \"tls\"\n",
                suite);
    return p->layer != NULL;
}

bool zl_test_tls_suite_init(zl_test_tls_plugins_t *p,
                            zl_test_tls_certs_t *certs, const char *suite,
                            const char *const *also)
{
    zl_runtime_options_t o = {.pollers = 2, .workers = 2};

    if (!plugins_load(p, suite, also) || !zl_test_tls_certs_make(certs))
        return false;
    if (zl_runtime_init(&o) != 0) {
        fprintf(stderr, "%s suite: cannot start the runtime\n", suite);
        return false;
    }
    return true;
}

void zl_test_tls_suite_cleanup(zl_test_tls_plugins_t *p,
                               zl_test_tls_certs_t *certs)
{
    zl_runtime_shutdown();
    if (p->reg)
        zl_plugins_free(p->reg);
    memset(p, 0, sizeof(*p));
    zl_test_tls_certs_remove(certs);
}

void zl_test_tls_opts_fill(zl_instance_options_t *o,
                           const zl_test_tls_plugins_t *p, zl_test_icfg_t *c,
                           bool server, const char *name,
                           const zl_handler_t *h, zl_plugin_t *hp)
{
    memset(o, 0, sizeof(*o));
    zl_client_options_init(&o->client);
    zl_server_options_init(&o->server_opts);
    o->name = name;
    o->server = server;
    o->handler = h;
    o->plugin = hp;
    o->layer = p->layer;
    o->layer_plugin = p->plugin;
    o->config = zl_test_icfg_get;
    o->report = zl_test_icfg_report;
    o->ctx = c;
    o->server_opts.host = "127.0.0.1";
    o->client.connect_timeout_ms = 3000;
}

void zl_test_tls_client_to(zl_instance_options_t *o, const char *host,
                           uint16_t port, bool reconnect)
{
    o->client.host = host;
    o->client.port = port;
    if (reconnect) {
        o->client.reconnect = true;
        o->client.reconnect_min_ms = 20;
        o->client.reconnect_max_ms = 50;
        o->client.max_attempts = 5;
    }
}

void zl_test_tls_info(zl_session_t *s, const char *key, char *dst,
                      size_t len)
{
    const char *v = zl_plugins_host_api()->transport_info(s, key);

    snprintf(dst, len, "%s", v ? v : "");
}
