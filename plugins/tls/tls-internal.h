/* Private header of the zltk plugin "tls" (never installed): what its
 * files share.  Every function here has the tls__ prefix and hidden
 * visibility; the plugin exports only zltk_plugin_entry.  tls.c holds the
 * overview of the layer.  Threads as there: what takes a tls_sess_t runs
 * on that session's poller; what takes a zl_instance_t, on the main
 * thread. */
#ifndef ZLTK_PLUGIN_TLS_INTERNAL_H
#define ZLTK_PLUGIN_TLS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <zltk/plugin.h>

#define TLS_PLAIN_CHUNK (16 * 1024)   /* one record of plaintext */
#define TLS_OUT_MIN 4096              /* smallest ciphertext buffer */
#define TLS_DEFAULT_TIMEOUT_MS 10000
#define TLS_LINGER_MS 5000            /* wait for the peer after closing */
#define TLS_FP_LEN 32                 /* SHA-256 */
#define TLS_FP_TEXT (TLS_FP_LEN * 3)  /* "AA:BB:...:FF" and its NUL */
#define TLS_EPHEMERAL "ephemeral"     /* tls-cert value */
#define TLS_EPHEMERAL_DAYS 30

/* The TLS 1.2 suites of both ends unless tls-ciphers says otherwise:
 * forward secret (ECDHE) and AEAD only, in OpenSSL's own order among them.
 * Audits (testssl.sh, sslscan) flag what OpenSSL's default list adds: CBC
 * suites (LUCKY13) and, with an RSA key, static RSA key exchange (no
 * forward secrecy).  No DHE either: every TLS 1.2 client of the last decade
 * has ECDHE, and a 2048-bit DH exchange costs about nine times the CPU of
 * X25519 (openssl speed ffdh2048 ecdhx25519).  TLS 1.3
 * suites are all AEAD and forward secret: OpenSSL's default list stays. */
#define TLS_DEFAULT_CIPHERS                                                 \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"            \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"

/* ------------------------------------------------------------ types */

/* One instance's TLS configuration.  Read-only after instance_new except
 * session (clients only: touched by the client's one session, on its
 * poller). */
typedef struct tls_inst {
    SSL_CTX *ctx;
    bool server;
    bool verify;          /* clients: verify the server */
    char *server_name;    /* clients: tls-server-name, or NULL */
    uint64_t timeout_ms;  /* handshake */
    unsigned char *alpn;  /* wire format (length-prefixed), or NULL */
    size_t alpn_len;
    SSL_SESSION *session; /* clients: offered on reconnect (one reference) */
    char *name;           /* "client.NAME" for logs */
    unsigned char pin[TLS_FP_LEN]; /* clients: tls-pin, as SHA-256 */
    bool ephemeral;       /* servers: tls-cert = ephemeral (in the registry
                             once the instance is accepted) */
    unsigned char fp[TLS_FP_LEN]; /* its certificate's SHA-256 */
} tls_inst_t;

typedef enum {
    PH_IDLE,      /* not connected yet (a client connecting) */
    PH_HANDSHAKE, /* SSL object made, handshake running */
    PH_OPEN,      /* handshake done */
    PH_DONE       /* this connection failed or ended */
} phase_t;

/* Per-session layer state (zeroed by the host): 192 bytes on 64-bit, the
 * flags kept together (they were 208 with two apart). */
typedef struct tls_sess {
    zl_session_t *s;
    tls_inst_t *ti;
    SSL *ssl;
    BIO *bio;           /* ssl's read and write BIO (zbio), owned by ssl */
    /* Ciphertext in: the connection's buffer while on_recv runs (in), and
     * what a read left unconsumed (keep: a partial record, or all of it
     * while paused). */
    const uint8_t *in;
    size_t in_len;
    uint8_t *keep;
    size_t keep_off, keep_len, keep_cap;
    zl_buf_t *out;      /* ciphertext out, not yet passed down */
    phase_t phase;
    unsigned gen;       /* connection number: stale timers check it */
    bool dead;          /* an error was reported: no more SSL I/O */
    bool closing;       /* the handler closed: no more upcalls */
    bool shut_req;      /* the handler half-closed */
    bool shut_done;     /* close_notify sent */
    bool peer_closed;   /* close_notify received */
    bool lingering;     /* closed: half-closed, waiting for the peer */
    bool clean_end;     /* ended without error: the session stays good */
    bool pin_mismatch;  /* this handshake failed on tls-pin; peer_fp: why */
    bool paused;        /* the handler paused reading: hold the plaintext */
    bool resume_posted; /* a task will deliver what is held */
    bool keep_used;     /* keep, since the last manager tick */
    bool pbuf_used;     /* pbuf, since the last manager tick */
    unsigned char peer_fp[TLS_FP_LEN];
    uint64_t hs_deadline; /* zl_now_ms() value, 0: none */
    uint8_t *pend;      /* plaintext sent before the handshake completed */
    size_t plen, pcap;
    zl_buf_t *pbuf;     /* plaintext receive buffer, reused */
    char *info;         /* last string info() returned */
} tls_sess_t;

/* A session timer's argument: timers get the handler's state, so the
 * layer's comes here, with the connection it was armed for. */
typedef struct sess_timer {
    tls_sess_t *ls;
    unsigned gen;
} sess_timer_t;

/* ------------------------------------------------------------ shared */

/* The host API and this plugin, set by tls_init (tls.c). */
extern const zl_host_api_t *tls__host;
extern zl_plugin_t *tls__plugin;

/* tls-bio.c: the in-memory BIO and its buffers. */
bool tls__bio_setup(void);
BIO *tls__bio_new(tls_sess_t *ls);
bool tls__keep_rest(tls_sess_t *ls);
int tls__flush_out(tls_sess_t *ls);

/* tls-io.c: record I/O, failures, close_notify, linger. */
const char *tls__peer_text(tls_sess_t *ls, char *buf, size_t len);
void tls__ssl_reason(tls_sess_t *ls, int sslerr, char *buf, size_t len);
int tls__pend_note(tls_sess_t *ls);
void tls__pend_drop(tls_sess_t *ls);
int tls__pend_add(tls_sess_t *ls, const void *data, size_t len);
void tls__free_ssl(tls_sess_t *ls);
void tls__fail(tls_sess_t *ls, int sys, const char *fmt, ...)
    ZL_PRINTF(3, 4);
void tls__fail_ssl(tls_sess_t *ls, int sslerr, bool handshake);
int tls__write_plain(tls_sess_t *ls, const void *data, size_t len);
void tls__send_close_notify(tls_sess_t *ls);
void tls__linger_close(tls_sess_t *ls);
void tls__read_discard(tls_sess_t *ls);
bool tls__lower_gone(tls_sess_t *ls);
void tls__read_plain(tls_sess_t *ls);

/* tls-handshake.c */
void tls__handshake_step(tls_sess_t *ls);
void tls__handshake_timed_out(tls_sess_t *ls);
void tls__on_connect(zl_session_t *s, void *state);

/* tls-session.c: the layer's other session callbacks. */
int tls__on_open(zl_session_t *s, void *state, zl_instance_t *inst);
void tls__on_recv(zl_session_t *s, void *state, zl_buf_t *buf);
void tls__on_err(zl_session_t *s, void *state, const zl_error_t *err);
void tls__on_manager(zl_session_t *s, void *state);
void tls__on_closed(zl_session_t *s, void *state);
int tls__send(zl_session_t *s, void *state, const void *data, size_t len);
void tls__pause(zl_session_t *s, void *state, bool paused);
void tls__close(zl_session_t *s, void *state);
void tls__shutdown(zl_session_t *s, void *state);
const char *tls__info(zl_session_t *s, void *state, const char *key);

/* tls-verify.c: names, fingerprints, pinning. */
bool tls__ip_literal(const char *name, char *ip, size_t iplen);
bool tls__cert_fp(X509 *x, unsigned char fp[TLS_FP_LEN]);
char *tls__fp_text(const unsigned char fp[TLS_FP_LEN], char *buf);
bool tls__setup_peer_check(tls_sess_t *ls);
int tls__pin_verify_cb(X509_STORE_CTX *xs, void *arg);
bool tls__parse_pin(zl_instance_t *inst, const char *v, tls_inst_t *ti);

/* tls-ephemeral.c */
bool tls__eph_add(const tls_inst_t *owner, const char *name,
                  const unsigned char fp[TLS_FP_LEN]);
void tls__eph_remove(const tls_inst_t *owner);
bool tls__eph_find(const char *name, unsigned char fp[TLS_FP_LEN]);
bool tls__make_ephemeral(zl_instance_t *inst, tls_inst_t *ti);

/* tls-files.c: PEM files. */
bool tls__load_identity(zl_instance_t *inst, SSL_CTX *ctx, const char *cert,
                        const char *keyf);
bool tls__load_ca(zl_instance_t *inst, SSL_CTX *ctx, const char *key,
                  const char *path, bool announce);

/* tls-config.c: an instance's keys into its context. */
const char *tls__last_reason(char *buf, size_t len);
bool tls__config(zl_instance_t *inst, tls_inst_t *ti);

#endif
