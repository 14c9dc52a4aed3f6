/* zltk plugin "tls": a transport layer (transport = tls) that puts TLS
 * between a session's connection and its handler, for clients and servers
 * (ZLToolKit's SSL_Box / TcpClientWithSSL<T>, secure by default).
 *
 * OpenSSL 3 runs over an in-memory BIO of our own (zbio, never a socket):
 * SSL_read takes ciphertext straight from the buffer the connection passed
 * to on_recv (what it leaves unconsumed is kept for the next read), and
 * plaintext goes up with host->upper_recv; plaintext from the handler goes
 * into SSL_write, and whatever OpenSSL produced (records, handshake
 * messages, tickets, alerts, close_notify) collects in a zl_buf_t handed
 * to host->lower_send_buf after every SSL call, without copying.  The
 * connection owns the descriptor; this layer owns only its SSL object.
 *
 * Keys of a [client.NAME] / [server.NAME] group with transport = tls:
 *   both:    tls-min-version = 1.2 | 1.3                [1.2]
 *            tls-alpn = PROTO[,PROTO...]   client: offered; server: the
 *                       first of its own list that the client offers
 *            tls-handshake-timeout = MS                 [10000]
 *            tls-ciphers = OpenSSL cipher list, TLS 1.2 [TLS_DEFAULT_CIPHERS:
 *                       ECDHE with AES-GCM or ChaCha20-Poly1305 only]
 *            tls-ciphersuites = TLS 1.3 suites, colon-separated [OpenSSL's]
 *   clients: tls-verify = BOOL  verify the server       [true]
 *            tls-ca = PEM file or hashed directory, beside the system store
 *            tls-server-name = NAME  name to verify and send as SNI
 *                                    [the instance's host]
 *            tls-pin = FINGERPRINT | @NAME  accept exactly the server
 *                       certificate with this SHA-256 fingerprint (64 hex
 *                       digits, colons optional, any case), or the
 *                       ephemeral certificate of [server.NAME] in this
 *                       process; replaces the CA chain check (tls-ca and
 *                       the system store are not used, nor the dates), the
 *                       name is still checked unless tls-verify = false
 *            tls-cert, tls-key = PEM  client certificate (mutual TLS)
 *   servers: tls-cert, tls-key = PEM  (required), or
 *            tls-cert = ephemeral  (no tls-key): a fresh EC P-256 key and
 *                       a self-signed certificate made in memory, CN "zltk
 *                       ephemeral NAME", for DNS:localhost, IP:127.0.0.1
 *                       and IP:::1, valid from 1 h ago for 30 days; its
 *                       fingerprint is logged (message level) as
 *                       "[server.NAME] ephemeral certificate, SHA-256
 *                       fingerprint AA:BB:..." for clients to pin
 *            tls-client-ca = PEM file or directory
 *            tls-verify-client = none | optional | required   [none]
 *
 * Handlers read facts with host->transport_info(s, KEY): "version",
 * "cipher", "alpn", "peer-subject", "resumed" (yes/no), "server-name",
 * "peer-fingerprint" and "fingerprint" (SHA-256 of the peer's / our own
 * certificate, as AA:BB:...; NULL when there is none).
 *
 * Pins by @NAME.  A server instance with an ephemeral certificate enters
 * its name and fingerprint in a process-wide registry (under a mutex) in
 * instance_new and leaves it in instance_free; a client's tls-pin = @NAME
 * is resolved there, once, in the client's instance_new, so the server
 * instance must be created first (zltk-host creates servers before
 * clients).
 *
 * Lifecycle per connection: on_connect starts the handshake; the handler's
 * on_connect(NULL) comes only once it completed; what the handler sent
 * before is queued here and written right after it (a close or half-close
 * made meanwhile waits for that, bounded by the handshake timeout); the
 * queue is declared to the host (layer_queued), so it counts against the
 * high mark and send answers ZL_CONN_BUSY above it.  A handler's pause
 * stops read_plain at once; what OpenSSL holds is delivered after resume
 * from a posted task.  A
 * failed or timed out handshake, or a TLS error later, reaches the handler
 * as on_err with ZL_ETLS / ZL_STAGE_TLS and OpenSSL's reason in words;
 * other transport errors after the handshake pass through unchanged.
 * shutdown sends close_notify, then half-closes.  close sends close_notify
 * after the queued data, half-closes, and reads (delivering nothing) until
 * the peer closes too, at most TLS_LINGER_MS, before closing: closing with
 * unread bytes in the kernel (a TLS 1.3 server's tickets arrive after the
 * client's handshake is done) makes the kernel reset the connection and the
 * peer lose the end of our data.  A client that reconnects offers the last
 * session for resumption; a connection that ended cleanly keeps it
 * resumable.
 *
 * Threading.  instance_new/instance_free run on the main thread.  Every
 * session callback runs on the session's poller.  A server's instance data
 * is read-only after instance_new (SSL_CTX is thread-safe, including its
 * session cache and ticket keys), so its sessions on several pollers share
 * it without locks; a client's instance data also holds the session kept
 * for resumption, which only the client's single session touches.  The
 * OpenSSL error queue is per thread: it is cleared before each SSL call whose
 * outcome is examined and after each failure, so no error leaks into
 * another session of the same poller.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <zltk/clock.h>
#include <zltk/error.h>
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

static const zl_host_api_t *host;
static zl_plugin_t *self_plugin;

/* ------------------------------------------------------------ types */

typedef enum {
    VERIFY_CLIENT_NONE,
    VERIFY_CLIENT_OPTIONAL,
    VERIFY_CLIENT_REQUIRED
} verify_client_t;

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

/* Per-session layer state (zeroed by the host). */
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
    bool keep_used;     /* since the last manager tick */
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
    unsigned char peer_fp[TLS_FP_LEN];
    uint64_t hs_deadline; /* zl_now_ms() value, 0: none */
    uint8_t *pend;      /* plaintext sent before the handshake completed */
    size_t plen, pcap;
    zl_buf_t *pbuf;     /* plaintext receive buffer, reused */
    bool pbuf_used;     /* since the last manager tick */
    char *info;         /* last string info() returned */
} tls_sess_t;

/* A session timer's argument: timers get the handler's state, so the
 * layer's comes here, with the connection it was armed for. */
typedef struct sess_timer {
    tls_sess_t *ls;
    unsigned gen;
} sess_timer_t;

/* ------------------------------------------------------------ helpers */

/* Whether name is an IP literal; ip receives it without brackets or zone
 * (for X509_VERIFY_PARAM_set1_ip_asc). */
static bool ip_literal(const char *name, char *ip, size_t iplen)
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
    return inet_pton(AF_INET, ip, bin) == 1 || inet_pton(AF_INET6, ip, bin) == 1;
}

/* SHA-256 of a certificate (DER). */
static bool cert_fp(X509 *x, unsigned char fp[TLS_FP_LEN])
{
    unsigned int n = 0;

    if (!x || !X509_digest(x, EVP_sha256(), fp, &n) || n != TLS_FP_LEN) {
        ERR_clear_error();
        return false;
    }
    return true;
}

/* "AA:BB:...:FF" into buf (TLS_FP_TEXT bytes). */
static char *fp_text(const unsigned char fp[TLS_FP_LEN], char *buf)
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
    const char *name = ls->ti->server_name
                           ? ls->ti->server_name
                           : host->instance_host(host->session_instance(ls->s));

    return name && *name ? name : NULL;
}

/* "127.0.0.1:4433", or "localhost (127.0.0.1:4433)" for a client that
 * connects by name. */
static const char *peer_text(tls_sess_t *ls, char *buf, size_t len)
{
    char addr[ZL_ADDR_STRLEN], ip[64];
    const char *name = ls->ti->server ? NULL
                                      : host->instance_host(
                                            host->session_instance(ls->s));

    zl_addr_format(host->peer(ls->s), addr, sizeof(addr));
    if (name && !ip_literal(name, ip, sizeof(ip)))
        snprintf(buf, len, "%s (%s)", name, addr);
    else
        snprintf(buf, len, "%s", addr);
    return buf;
}

/* OpenSSL's reason for the failure of the last SSL call, in words, with the
 * certificate check's own reason when verification failed.  Clears the
 * thread's error queue. */
static void ssl_reason(tls_sess_t *ls, int sslerr, char *buf, size_t len)
{
    unsigned long e = ERR_peek_error();
    const char *reason = NULL;
    char tmp[256];

    if (e) {
        reason = ERR_reason_error_string(e);
        if (!reason) {
            ERR_error_string_n(e, tmp, sizeof(tmp));
            reason = tmp;
        }
    }
    if (ls->pin_mismatch) {
        /* pin_verify_cb refused the certificate: that is why. */
        char want[TLS_FP_TEXT], got[TLS_FP_TEXT];

        snprintf(buf, len, "certificate pin mismatch: expected %s, got %s",
                 fp_text(ls->ti->pin, want), fp_text(ls->peer_fp, got));
    } else if (e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
        ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && ls->ssl &&
        SSL_get_verify_result(ls->ssl) != X509_V_OK)
        snprintf(buf, len, "%s: %s", reason,
                 X509_verify_cert_error_string(
                     SSL_get_verify_result(ls->ssl)));
    else if (reason)
        snprintf(buf, len, "%s", reason);
    else if (sslerr == SSL_ERROR_SYSCALL)
        snprintf(buf, len, "unexpected end of the TLS stream");
    else
        snprintf(buf, len, "TLS protocol error (OpenSSL gave no reason, "
                           "SSL_get_error %d)", sslerr);
    ERR_clear_error();
}

/* ------------------------------------------------------------ BIO */

/* The SSL object's BIO ("zbio").  Reads take ciphertext straight from the
 * connection's receive buffer (ls->in, valid while on_recv runs) after what
 * an earlier read left (ls->keep); on_recv keeps the unconsumed rest.
 * Writes append to ls->out, a zl_buf_t that flush_out hands down without
 * copying.  Memory BIOs cost a copy each way and a cleared, growing buffer
 * per connection. */
static BIO_METHOD *zbio_method;

/* Returns the bytes read, or -1 with the retry flag when there are none
 * (as a memory BIO whose end-of-data value is -1: "wait for more"). */
static int zbio_read(BIO *b, char *dst, int ilen)
{
    tls_sess_t *ls = BIO_get_data(b);
    size_t n = 0, len = ilen > 0 ? (size_t)ilen : 0;

    BIO_clear_retry_flags(b);
    if (ls->keep_len) {
        n = ls->keep_len < len ? ls->keep_len : len;
        memcpy(dst, ls->keep + ls->keep_off, n);
        ls->keep_off += n;
        ls->keep_len -= n;
        if (!ls->keep_len)
            ls->keep_off = 0;
    }
    if (n < len && ls->in_len) {
        size_t m = ls->in_len < len - n ? ls->in_len : len - n;

        memcpy(dst + n, ls->in, m);
        ls->in += m;
        ls->in_len -= m;
        n += m;
    }
    if (!n) {
        BIO_set_retry_read(b); /* "wait for more", not end of stream */
        return -1;
    }
    return (int)n;
}

/* Room for len more bytes in ls->out: a new buffer sized for a few records
 * (usually one allocation per flush), grown by doubling (a copy) if one
 * flush makes more. */
static bool out_room(tls_sess_t *ls, size_t len)
{
    zl_buf_t *o = ls->out, *n;
    size_t have = o ? o->len : 0, cap;

    if (o && o->cap - o->len >= len)
        return true;
    if (len > SIZE_MAX / 8 - have)
        return false;
    /* First: room for a few records like this one; then double. */
    cap = o ? 2 * (have + len) : 4 * len;
    if (cap < TLS_OUT_MIN)
        cap = TLS_OUT_MIN;
    if (!(n = zl_buf_new(cap)))
        return false;
    if (o) {
        memcpy(n->data, o->data, o->len);
        n->len = o->len;
        zl_buf_unref(o);
    }
    ls->out = n;
    return true;
}

static int zbio_write(BIO *b, const char *src, int ilen)
{
    tls_sess_t *ls = BIO_get_data(b);
    size_t len = ilen > 0 ? (size_t)ilen : 0;

    BIO_clear_retry_flags(b);
    if (!out_room(ls, len))
        return -1; /* SSL reports an error: out of memory */
    memcpy(ls->out->data + ls->out->len, src, len);
    ls->out->len += len;
    return (int)len;
}

static long zbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    tls_sess_t *ls = BIO_get_data(b);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* flush_out passes ls->out down after each SSL call */
    case BIO_CTRL_PENDING:
        return ls ? (long)(ls->keep_len + ls->in_len) : 0;
    case BIO_CTRL_WPENDING:
        return ls && ls->out ? (long)ls->out->len : 0;
    default:
        return 0;
    }
}

static int zbio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static bool zbio_setup(void)
{
    int idx = BIO_get_new_index();

    if (idx < 0)
        return false;
    zbio_method = BIO_meth_new(idx | BIO_TYPE_SOURCE_SINK, "zltk tls");
    if (!zbio_method || !BIO_meth_set_read(zbio_method, zbio_read) ||
        !BIO_meth_set_write(zbio_method, zbio_write) ||
        !BIO_meth_set_ctrl(zbio_method, zbio_ctrl) ||
        !BIO_meth_set_create(zbio_method, zbio_create)) {
        BIO_meth_free(zbio_method);
        zbio_method = NULL;
        return false;
    }
    return true;
}

/* After on_recv's SSL calls: keep what they did not consume (it points
 * into the connection's buffer, reused for the next read).  False when out
 * of memory. */
static bool keep_rest(tls_sess_t *ls)
{
    const uint8_t *rest = ls->in;
    size_t n = ls->in_len;

    ls->in = NULL;
    ls->in_len = 0;
    if (!n)
        return true;
    ls->keep_used = true;
    if (ls->keep_off && ls->keep_cap - ls->keep_off - ls->keep_len < n) {
        memmove(ls->keep, ls->keep + ls->keep_off, ls->keep_len);
        ls->keep_off = 0;
    }
    if (ls->keep_cap - ls->keep_off - ls->keep_len < n) {
        size_t cap = ls->keep_len + n;
        uint8_t *p;

        cap = cap < 16 * 1024 ? 16 * 1024 : cap + cap / 2;
        if (!(p = realloc(ls->keep, cap)))
            return false;
        ls->keep = p;
        ls->keep_cap = cap;
    }
    memcpy(ls->keep + ls->keep_off + ls->keep_len, rest, n);
    ls->keep_len += n;
    return true;
}

/* Pass the ciphertext made so far to the connection.  ls->out is detached
 * first, so that a handler re-entering send (from on_busy, inside
 * lower_send_buf) starts a new buffer that goes out after this one: the
 * order on the wire is kept.  Returns 0, ZL_CONN_BUSY, or what
 * lower_send_buf failed with. */
static int flush_out(tls_sess_t *ls)
{
    zl_buf_t *o = ls->out;

    if (!o)
        return 0;
    ls->out = NULL;
    if (!o->len) {
        zl_buf_unref(o);
        return 0;
    }
    return host->lower_send_buf(ls->s, o);
}

/* Tell the host how much of the handler's data waits here (it counts
 * towards the high mark and queued()).  Returns what send returns. */
static int pend_note(tls_sess_t *ls)
{
    return host->layer_queued(ls->s, ls->plen);
}

static void pend_drop(tls_sess_t *ls)
{
    bool had = ls->plen != 0;

    free(ls->pend);
    ls->pend = NULL;
    ls->plen = ls->pcap = 0;
    if (had)
        pend_note(ls);
}

static int pend_add(tls_sess_t *ls, const void *data, size_t len)
{
    if (ls->pcap - ls->plen < len) {
        size_t cap = ls->pcap ? ls->pcap : 4096;
        uint8_t *p;

        while (cap - ls->plen < len) {
            if (cap > SIZE_MAX / 2)
                return -ENOMEM;
            cap *= 2;
        }
        p = realloc(ls->pend, cap);
        if (!p)
            return -ENOMEM;
        ls->pend = p;
        ls->pcap = cap;
    }
    memcpy(ls->pend + ls->plen, data, len);
    ls->plen += len;
    return 0;
}

static void free_ssl(tls_sess_t *ls)
{
    /* OpenSSL marks the session not resumable when an SSL that has not
     * sent close_notify is freed; a connection that ended cleanly (end of
     * stream, close_notify either way) keeps it for the next connect. */
    if (ls->ssl && ls->clean_end && SSL_is_init_finished(ls->ssl))
        SSL_set_shutdown(ls->ssl, SSL_get_shutdown(ls->ssl) | SSL_SENT_SHUTDOWN);
    if (ls->ssl)
        SSL_free(ls->ssl); /* frees the BIO */
    ls->clean_end = false;
    ls->ssl = NULL;
    ls->bio = NULL;
    ls->in = NULL;
    ls->in_len = ls->keep_off = ls->keep_len = 0;
    zl_buf_unref(ls->out); /* not passed down: the connection is gone */
    ls->out = NULL;
}

/* Report a failure of this connection to the handler (once), after
 * flushing what OpenSSL queued (an alert), then let the host close. */
static void fail(tls_sess_t *ls, int sys, const char *fmt, ...)
    ZL_PRINTF(3, 4);
static void fail(tls_sess_t *ls, int sys, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    zl_error_t err;

    ERR_clear_error();
    if (ls->dead)
        return;
    flush_out(ls); /* the alert goes out before the close */
    ls->dead = true;
    ls->phase = PH_DONE;
    ls->hs_deadline = 0;
    if (ls->plen)
        host->session_log(ls->s, ls->closing ? ZL_LOG_MESSAGE : ZL_LOG_DEBUG,
                          "%zu bytes sent before the TLS handshake dropped",
                          ls->plen);
    pend_drop(ls);
    if (ls->closing) {
        /* The handler has closed already: nobody to tell. */
        host->lower_close(ls->s);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    err = (zl_error_t){ZL_ETLS, sys, ZL_STAGE_TLS, msg};
    host->upper_err(ls->s, &err);
}

static void fail_ssl(tls_sess_t *ls, int sslerr, bool handshake)
{
    char why[384], peer[320];

    ssl_reason(ls, sslerr, why, sizeof(why));
    peer_text(ls, peer, sizeof(peer));
    fail(ls, 0, "TLS %s with %s failed: %s",
         handshake ? "handshake" : "connection", peer, why);
}

/* SSL_write everything (memory BIOs take it all), then drain. */
static int write_plain(tls_sess_t *ls, const void *data, size_t len)
{
    size_t done = 0;

    while (done < len) {
        size_t w = 0;
        int r;

        ERR_clear_error();
        r = SSL_write_ex(ls->ssl, (const uint8_t *)data + done, len - done,
                         &w);
        if (!r) {
            int e = SSL_get_error(ls->ssl, r);
            flush_out(ls);
            fail_ssl(ls, e, false);
            return ZL_ESHUTDOWN;
        }
        done += w;
    }
    return flush_out(ls);
}

/* close_notify, then flush.  Once per connection. */
static void send_close_notify(tls_sess_t *ls)
{
    if (ls->shut_done || ls->dead || !ls->ssl || ls->phase != PH_OPEN)
        return;
    ls->shut_done = true;
    ls->clean_end = true;
    ERR_clear_error();
    SSL_shutdown(ls->ssl); /* 0: sent ours, the peer's not seen yet */
    ERR_clear_error();
    flush_out(ls);
}

static uint64_t linger_fire(zl_session_t *s, void *state, void *arg)
{
    sess_timer_t *t = arg;

    (void)state;
    if (t->ls->gen == t->gen && t->ls->lingering)
        host->lower_close(s); /* the peer did not close: enough */
    return 0;
}

/* The graceful end of a connection the handler closed, once close_notify
 * is out: half-close (after the queued bytes), and keep reading until the
 * peer closes too, bounded by TLS_LINGER_MS.  Closing the descriptor at
 * once would leave what the peer sent meanwhile (TLS 1.3 tickets, its own
 * close_notify) unread, and the kernel then answers with RST, which
 * destroys whatever the peer had not read yet, e.g. the end of our data. */
static void linger_close(tls_sess_t *ls)
{
    sess_timer_t *t;

    if (ls->lingering)
        return;
    ls->lingering = true;
    host->lower_shutdown(ls->s);
    t = malloc(sizeof(*t));
    if (t) {
        *t = (sess_timer_t){ls, ls->gen};
        if (host->add_timer(ls->s, TLS_LINGER_MS, linger_fire, t, free) == 0)
            return;
        free(t);
    }
    host->lower_close(ls->s);
}

/* While lingering: let OpenSSL see what arrives (a client still stores
 * late tickets for resumption), but deliver nothing. */
static void read_discard(tls_sess_t *ls)
{
    uint8_t tmp[4096];
    size_t n;

    for (int i = 0; i < 4096; i++) {
        ERR_clear_error();
        if (!SSL_read_ex(ls->ssl, tmp, sizeof(tmp), &n))
            break;
    }
    ERR_clear_error();
    flush_out(ls);
}

/* Whether the connection is going away behind our back (the handler
 * called host->abort, which does not pass through the layer): an empty
 * lower_send answers ZL_ESHUTDOWN once it is closing.  Only meaningful
 * before our own half-close. */
static bool lower_gone(tls_sess_t *ls)
{
    if (ls->shut_done || ls->shut_req)
        return false;
    return host->lower_send(ls->s, "", 0) == ZL_ESHUTDOWN;
}

static zl_buf_t *plain_buf(tls_sess_t *ls)
{
    ls->pbuf_used = true;
    if (ls->pbuf && zl_buf_refcount(ls->pbuf) == 1) {
        ls->pbuf->len = 0;
        return ls->pbuf;
    }
    zl_buf_unref(ls->pbuf); /* the handler kept it: theirs now */
    ls->pbuf = zl_buf_new(TLS_PLAIN_CHUNK);
    return ls->pbuf;
}

/* Deliver every byte of plaintext OpenSSL can produce now. */
static void read_plain(tls_sess_t *ls)
{
    for (;;) {
        zl_buf_t *b;
        size_t got = 0;
        int r = 1, e = SSL_ERROR_NONE;

        if (ls->phase != PH_OPEN || ls->dead || ls->closing || ls->paused)
            return;
        b = plain_buf(ls);
        if (!b) {
            fail(ls, ENOMEM, "TLS connection: out of memory for plaintext");
            return;
        }
        while (got < b->cap) {
            size_t n = 0;

            ERR_clear_error();
            r = SSL_read_ex(ls->ssl, b->data + got, b->cap - got, &n);
            if (!r) {
                e = SSL_get_error(ls->ssl, r);
                break;
            }
            got += n;
        }
        /* Tickets, KeyUpdate replies, alerts: out now. */
        if (flush_out(ls) == ZL_ESHUTDOWN && ls->dead)
            return;
        if (got) {
            b->len = got;
            host->upper_recv(ls->s, b);
            if (ls->dead || ls->closing || ls->phase != PH_OPEN ||
                lower_gone(ls))
                return;
        }
        if (r)
            continue; /* the buffer filled: there may be more */
        switch (e) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            ERR_clear_error();
            return;
        case SSL_ERROR_ZERO_RETURN:
            /* close_notify.  Answer with ours and half-close: a peer doing
             * a two-way shutdown waits for it before closing TCP, and its
             * end of stream then reaches the handler as ZL_EOF through
             * tls_on_err. */
            ls->peer_closed = true;
            ls->clean_end = true;
            ERR_clear_error();
            send_close_notify(ls);
            ls->shut_req = true;
            host->lower_shutdown(ls->s);
            return;
        default:
            fail_ssl(ls, e, false);
            return;
        }
    }
}

static void handshake_done(tls_sess_t *ls)
{
    char peer[320];

    ls->phase = PH_OPEN;
    ls->hs_deadline = 0;
    host->session_log(ls->s, ZL_LOG_DEBUG,
                      "TLS handshake with %s done: %s, %s%s",
                      peer_text(ls, peer, sizeof(peer)),
                      SSL_get_version(ls->ssl), SSL_get_cipher_name(ls->ssl),
                      SSL_session_reused(ls->ssl) ? ", resumed" : "");
    /* What the handler sent early goes first, then its on_connect.  Once
     * it is in the connection's queue, that queue's marks alone decide
     * whether the handler is busy. */
    if (ls->plen) {
        uint8_t *p = ls->pend;
        size_t n = ls->plen;

        ls->pend = NULL;
        ls->plen = ls->pcap = 0;
        write_plain(ls, p, n);
        free(p);
        if (ls->dead)
            return;
        pend_note(ls);
        if (ls->dead || ls->phase != PH_OPEN)
            return;
    }
    if (ls->closing) {
        send_close_notify(ls);
        linger_close(ls);
        return;
    }
    if (ls->shut_req) {
        send_close_notify(ls);
        host->lower_shutdown(ls->s);
    }
    host->upper_connect(ls->s);
    if (ls->dead || ls->closing || lower_gone(ls))
        return;
    read_plain(ls); /* application data that came with the handshake */
}

static void handshake_step(tls_sess_t *ls)
{
    int r, e;

    ERR_clear_error();
    r = SSL_do_handshake(ls->ssl);
    e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ls->ssl, r);
    if (r != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        fail_ssl(ls, e, true); /* flushes the alert first */
        return;
    }
    ERR_clear_error();
    flush_out(ls);
    if (ls->dead)
        return;
    if (r == 1)
        handshake_done(ls);
}

/* ------------------------------------------------------------ timeout */

static void handshake_timed_out(tls_sess_t *ls)
{
    char peer[320];

    if (ls->closing) {
        ls->dead = true;
        ls->phase = PH_DONE;
        pend_drop(ls);
        host->lower_close(ls->s);
        return;
    }
    fail(ls, ETIMEDOUT, "TLS handshake with %s timed out after %llu ms",
         peer_text(ls, peer, sizeof(peer)),
         (unsigned long long)ls->ti->timeout_ms);
}

/* A session timer gets the handler's state; the layer's comes in arg. */
static uint64_t hs_timer_fire(zl_session_t *s, void *state, void *arg)
{
    sess_timer_t *t = arg;
    tls_sess_t *ls = t->ls;

    (void)s;
    (void)state;
    if (ls->gen != t->gen || ls->phase != PH_HANDSHAKE || ls->dead)
        return 0;
    if (zl_now_ms() < ls->hs_deadline)
        return ls->hs_deadline - zl_now_ms();
    handshake_timed_out(ls);
    return 0;
}

/* ------------------------------------------------------------ layer */

static int tls_on_open(zl_session_t *s, void *state, zl_instance_t *inst)
{
    tls_sess_t *ls = state;

    ls->s = s;
    ls->ti = host->layer_data(inst);
    return ls->ti ? 0 : -EINVAL;
}

static bool setup_peer_check(tls_sess_t *ls)
{
    tls_inst_t *ti = ls->ti;
    const char *name = peer_check_name(ls);
    char ip[64];

    if (!name)
        return true;
    if (ip_literal(name, ip, sizeof(ip))) {
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

static void tls_on_connect(zl_session_t *s, void *state)
{
    tls_sess_t *ls = state;
    tls_inst_t *ti = ls->ti;
    sess_timer_t *t;

    ERR_clear_error();
    /* A client that reconnected starts afresh (a half-close belonged to
     * the old connection, as the host's own SHUT_WR does). */
    if (ls->phase == PH_DONE)
        ls->shut_req = false;
    free_ssl(ls);
    ls->gen++;
    ls->dead = ls->shut_done = ls->peer_closed = ls->lingering = false;
    ls->pin_mismatch = false;
    ls->paused = ls->resume_posted = false; /* a new connection */
    ls->phase = PH_HANDSHAKE;
    if (ls->closing && !ls->plen) {
        /* Closed while connecting, nothing to deliver. */
        ls->phase = PH_DONE;
        host->lower_close(s);
        return;
    }
    {
        SSL *ssl = SSL_new(ti->ctx);
        BIO *b = BIO_new(zbio_method);

        if (!ssl || !b) {
            SSL_free(ssl);
            BIO_free(b);
            fail(ls, ENOMEM, "TLS: out of memory for a connection");
            return;
        }
        ls->ssl = ssl;
        ls->bio = b;
    }
    BIO_set_data(ls->bio, ls);
    SSL_set_bio(ls->ssl, ls->bio, ls->bio); /* one reference for both */
    SSL_set_app_data(ls->ssl, ls);
    if (ti->server) {
        SSL_set_accept_state(ls->ssl);
    } else {
        SSL_set_connect_state(ls->ssl);
        if (!setup_peer_check(ls)) {
            char why[256], peer[320];

            ssl_reason(ls, SSL_ERROR_SSL, why, sizeof(why));
            fail(ls, 0, "TLS handshake with %s: cannot set the name to "
                        "verify: %s",
                 peer_text(ls, peer, sizeof(peer)), why);
            return;
        }
        if (ti->session && !SSL_set_session(ls->ssl, ti->session))
            ERR_clear_error(); /* resumption is only an offer */
    }
    ls->hs_deadline = zl_now_ms() + ti->timeout_ms;
    t = malloc(sizeof(*t));
    if (t) {
        *t = (sess_timer_t){ls, ls->gen};
        if (host->add_timer(s, ti->timeout_ms, hs_timer_fire, t, free) < 0)
            free(t); /* on_manager still checks the deadline */
    }
    handshake_step(ls);
}

static void tls_on_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    tls_sess_t *ls = state;

    (void)s;
    if (ls->dead || !ls->ssl || !buf->len)
        return;
    if (ls->phase != PH_HANDSHAKE && ls->phase != PH_OPEN)
        return;
    ls->in = buf->data;
    ls->in_len = buf->len;
    if (ls->phase == PH_HANDSHAKE)
        handshake_step(ls);
    else if (ls->lingering)
        read_discard(ls);
    else
        read_plain(ls);
    if (!ls->ssl || ls->dead) {
        ls->in = NULL; /* nothing more will be read */
        ls->in_len = 0;
    } else if (!keep_rest(ls)) {
        fail(ls, ENOMEM, "TLS: out of memory for received data");
    }
}

static void tls_on_err(zl_session_t *s, void *state, const zl_error_t *err)
{
    tls_sess_t *ls = state;
    char peer[320];

    if (ls->closing || ls->dead) {
        /* The handler closed (or was told already).  Closing here also
         * keeps a client from reconnecting for a handler that is gone. */
        ls->dead = true;
        ls->phase = PH_DONE;
        ls->lingering = false;
        if (ls->closing)
            host->lower_close(s);
        return;
    }
    if (ls->phase == PH_HANDSHAKE) {
        peer_text(ls, peer, sizeof(peer));
        if (err->code == ZL_EOF)
            fail(ls, 0, "TLS handshake with %s failed: the peer closed the "
                        "connection during the TLS handshake",
                 peer);
        else
            fail(ls, err->sys, "TLS handshake with %s failed: %s", peer,
                 err->message ? err->message : zl_strerror(err->code));
        return;
    }
    /* After the handshake: the transport's report, unchanged.  After end
     * of stream the handler may still send (the host closes gracefully). */
    if (err->code != ZL_EOF)
        ls->dead = true;
    else if (ls->phase == PH_OPEN)
        ls->clean_end = true;
    if (err->code == ZL_EOF && !ls->peer_closed && ls->phase == PH_OPEN)
        host->session_log(s, ZL_LOG_DEBUG, "the peer ended the stream "
                                           "without a TLS close_notify");
    ls->hs_deadline = 0;
    host->upper_err(s, err);
    /* The peer ended its side: after the handler's last words (it may
     * still send from on_err), answer with our close_notify, so that the
     * peer sees a clean end rather than a truncation when the connection
     * now closes. */
    if (err->code == ZL_EOF)
        send_close_notify(ls);
    ls->phase = PH_DONE;
    ls->dead = true;
}

static void tls_on_manager(zl_session_t *s, void *state)
{
    tls_sess_t *ls = state;

    (void)s;
    /* An idle connection keeps no plaintext buffer (OpenSSL releases its
     * own: SSL_MODE_RELEASE_BUFFERS). */
    if (!ls->pbuf_used && ls->pbuf) {
        zl_buf_unref(ls->pbuf);
        ls->pbuf = NULL;
    }
    ls->pbuf_used = false;
    if (!ls->keep_used && !ls->keep_len && ls->keep) {
        free(ls->keep);
        ls->keep = NULL;
        ls->keep_cap = ls->keep_off = 0;
    }
    ls->keep_used = false;
    /* Backstop for the handshake timer (if it could not be armed). */
    if (ls->phase == PH_HANDSHAKE && !ls->dead && ls->hs_deadline &&
        zl_now_ms() >= ls->hs_deadline)
        handshake_timed_out(ls);
}

static void tls_on_closed(zl_session_t *s, void *state)
{
    tls_sess_t *ls = state;

    (void)s;
    free_ssl(ls);
    pend_drop(ls);
    zl_buf_unref(ls->pbuf);
    ls->pbuf = NULL;
    free(ls->keep);
    ls->keep = NULL;
    ls->keep_cap = 0;
    free(ls->info);
    ls->info = NULL;
}

static int tls_send(zl_session_t *s, void *state, const void *data,
                    size_t len)
{
    tls_sess_t *ls = state;

    (void)s;
    if (ls->dead || ls->closing || ls->shut_req || ls->phase == PH_DONE)
        return ZL_ESHUTDOWN;
    if (!len)
        return 0;
    if (ls->phase != PH_OPEN) {
        /* Written after the handshake; over the high mark, the handler
         * hears ZL_CONN_BUSY as from a full connection queue. */
        int rc = pend_add(ls, data, len);

        return rc < 0 ? rc : pend_note(ls);
    }
    return write_plain(ls, data, len);
}

static void resume_task(zl_session_t *s, void *state, void *arg)
{
    sess_timer_t *t = arg;
    tls_sess_t *ls = t->ls;

    (void)s;
    (void)state;
    if (ls->gen != t->gen)
        return; /* for an earlier connection */
    ls->resume_posted = false;
    if (ls->lingering)
        read_discard(ls);
    else
        read_plain(ls);
}

/* Paused: read_plain stops delivering, and the undecrypted rest stays in
 * the read BIO (the connection is paused too, so no more arrives).
 * Resumed: deliver what is held from a task — the handler may be resuming
 * inside its own on_recv, from read_plain's loop. */
static void tls_pause(zl_session_t *s, void *state, bool paused)
{
    tls_sess_t *ls = state;
    sess_timer_t *t;

    ls->paused = paused;
    if (paused || ls->resume_posted || ls->phase != PH_OPEN || ls->dead ||
        !ls->ssl)
        return;
    if (!SSL_has_pending(ls->ssl) && !ls->keep_len)
        return; /* nothing held */
    t = malloc(sizeof(*t));
    if (!t) {
        fail(ls, ENOMEM, "TLS connection: out of memory to resume");
        return;
    }
    *t = (sess_timer_t){ls, ls->gen};
    if (host->post(s, resume_task, t, free) < 0) {
        free(t);
        return; /* closing */
    }
    ls->resume_posted = true;
}

static void tls_close(zl_session_t *s, void *state)
{
    tls_sess_t *ls = state;

    if (ls->closing)
        return;
    ls->closing = true;
    switch (ls->phase) {
    case PH_IDLE:
        if (ls->plen)
            return; /* connect, shake hands, write it, then close */
        break;
    case PH_HANDSHAKE:
        if (!ls->dead && ls->plen)
            return; /* finish it, write what is queued, then close */
        break;
    case PH_OPEN:
        if (!ls->dead) {
            send_close_notify(ls);
            linger_close(ls);
            return;
        }
        break;
    default:
        break;
    }
    pend_drop(ls);
    host->lower_close(s);
}

static void tls_shutdown(zl_session_t *s, void *state)
{
    tls_sess_t *ls = state;

    if (ls->shut_req || ls->closing)
        return;
    ls->shut_req = true;
    switch (ls->phase) {
    case PH_IDLE:
    case PH_HANDSHAKE:
        if (!ls->dead)
            return; /* after the handshake and the queued data */
        break;
    case PH_OPEN:
        send_close_notify(ls);
        break;
    default:
        break;
    }
    host->lower_shutdown(s);
}

static const char *keep_info(tls_sess_t *ls, char *text)
{
    free(ls->info);
    ls->info = text;
    return text;
}

static const char *tls_info(zl_session_t *s, void *state, const char *key)
{
    tls_sess_t *ls = state;

    (void)s;
    if (!ls->ssl || !SSL_is_init_finished(ls->ssl))
        return NULL;
    if (!strcmp(key, "version"))
        return SSL_get_version(ls->ssl);
    if (!strcmp(key, "cipher"))
        return SSL_get_cipher_name(ls->ssl);
    if (!strcmp(key, "resumed"))
        return SSL_session_reused(ls->ssl) ? "yes" : "no";
    if (!strcmp(key, "alpn")) {
        const unsigned char *p = NULL;
        unsigned int n = 0;
        char *t;

        SSL_get0_alpn_selected(ls->ssl, &p, &n);
        if (!p || !n || !(t = malloc(n + 1)))
            return NULL;
        memcpy(t, p, n);
        t[n] = '\0';
        return keep_info(ls, t);
    }
    if (!strcmp(key, "server-name")) {
        const char *n = SSL_get_servername(ls->ssl, TLSEXT_NAMETYPE_host_name);
        return n ? keep_info(ls, strdup(n)) : NULL;
    }
    if (!strcmp(key, "peer-subject")) {
        X509 *x = SSL_get0_peer_certificate(ls->ssl);
        BIO *b;
        char *t = NULL, *p;
        long n;

        if (!x || !(b = BIO_new(BIO_s_mem())))
            return NULL;
        if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0,
                               XN_FLAG_RFC2253) >= 0 &&
            (n = BIO_get_mem_data(b, &p)) >= 0 && (t = malloc((size_t)n + 1))) {
            memcpy(t, p, (size_t)n);
            t[n] = '\0';
        }
        BIO_free(b);
        ERR_clear_error();
        return t ? keep_info(ls, t) : NULL;
    }
    if (!strcmp(key, "peer-fingerprint") || !strcmp(key, "fingerprint")) {
        X509 *x = key[0] == 'p' ? SSL_get0_peer_certificate(ls->ssl)
                                : SSL_get_certificate(ls->ssl);
        unsigned char fp[TLS_FP_LEN];
        char *t;

        if (!cert_fp(x, fp) || !(t = malloc(TLS_FP_TEXT)))
            return NULL;
        return keep_info(ls, fp_text(fp, t));
    }
    return NULL;
}

/* ------------------------------------------------------------ instances */

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

static bool eph_add(const tls_inst_t *owner, const char *name,
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

static void eph_remove(const tls_inst_t *owner)
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
static bool eph_find(const char *name, unsigned char fp[TLS_FP_LEN])
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

/* ------------------------------------------------------------ pinning */

/* Clients with tls-pin, in place of OpenSSL's chain verification
 * (SSL_CTX_set_cert_verify_callback): the leaf certificate must have the
 * pinned fingerprint, whoever issued it and whatever its dates; then,
 * unless tls-verify = false, it must also carry the name or address the
 * client checks (tls-server-name or the host), as X509_verify_cert would
 * check it.  A mismatch is recorded for ssl_reason. */
static int pin_verify_cb(X509_STORE_CTX *xs, void *arg)
{
    tls_inst_t *ti = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(
        xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    tls_sess_t *ls = ssl ? SSL_get_app_data(ssl) : NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    unsigned char fp[TLS_FP_LEN];
    const char *name;
    char ip[64];

    if (!ls || !cert_fp(leaf, fp)) {
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
        if (ip_literal(name, ip, sizeof(ip))) {
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

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* tls-pin: @NAME, or a SHA-256 fingerprint as 64 hex digits, any case,
 * colons (or blanks) between them optional.  What precedes an '=' is
 * skipped, so that the output of openssl x509 -fingerprint -sha256 may be
 * pasted as is. */
static bool parse_pin(zl_instance_t *inst, const char *v, tls_inst_t *ti)
{
    unsigned char fp[TLS_FP_LEN];
    const char *p = strrchr(v, '=');
    size_t n = 0;
    bool bad = false;

    if (v[0] == '@') {
        if (!v[1]) {
            host->config_error(inst, "tls-pin", "'@' names no server: give "
                               "@NAME for the ephemeral certificate of "
                               "[server.NAME]");
            return false;
        }
        if (!eph_find(v + 1, ti->pin)) {
            host->config_error(inst, "tls-pin", "@%s: no server instance "
                               "of that name has an ephemeral certificate "
                               "(tls-cert = ephemeral)",
                               v + 1);
            return false;
        }
        return true;
    }
    for (p = p ? p + 1 : v; *p; p++) {
        int d;

        if (*p == ':' || *p == ' ' || *p == '\t')
            continue;
        if ((d = hex_digit((unsigned char)*p)) < 0) {
            bad = true;
            break;
        }
        if (n < 2 * TLS_FP_LEN)
            fp[n / 2] = (unsigned char)(n % 2 ? fp[n / 2] | d : d << 4);
        n++;
    }
    if (bad || n != 2 * TLS_FP_LEN) {
        host->config_error(inst, "tls-pin", "'%s' is not a SHA-256 "
                           "fingerprint%s: give 64 hex digits, colons "
                           "optional (as a server with tls-cert = ephemeral "
                           "logs it; for a PEM file: openssl x509 -noout "
                           "-fingerprint -sha256 -in FILE), or @NAME for the "
                           "ephemeral certificate of [server.NAME]",
                           v, !bad && n == 40 ? " (40 hex digits: SHA-1?)"
                              : bad ? " (not a hex digit in it)"
                                    : "");
        return false;
    }
    memcpy(ti->pin, fp, TLS_FP_LEN);
    return true;
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

static const char *last_reason(char *buf, size_t len);

/* tls-cert = ephemeral: a fresh EC P-256 key and a self-signed certificate
 * for the loopback names, made in memory, into ti->ctx; ti->fp receives its
 * fingerprint.  Nothing touches the disk. */
static bool make_ephemeral(zl_instance_t *inst, tls_inst_t *ti)
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
    snprintf(cn, sizeof(cn), "zltk ephemeral %s", host->instance_name(inst));
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
             SSL_CTX_check_private_key(ti->ctx) == 1 && cert_fp(x, ti->fp);
    }
    if (!ok)
        host->config_error(inst, "tls-cert", "cannot make an ephemeral "
                           "certificate: %s",
                           last_reason(why, sizeof(why)));
    ti->ephemeral = ok;
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return ok;
}

/* ------------------------------------------------------------ configuration */

static void tls_inst_free(tls_inst_t *ti)
{
    if (!ti)
        return;
    if (ti->ephemeral)
        eph_remove(ti);
    SSL_SESSION_free(ti->session);
    SSL_CTX_free(ti->ctx);
    free(ti->server_name);
    free(ti->alpn);
    free(ti->name);
    free(ti);
}

/* The OpenSSL reason of the last error in the queue, then clear it. */
static const char *last_reason(char *buf, size_t len)
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

/* Open path for reading, or say why not (naming key and file). */
static FILE *open_file(zl_instance_t *inst, const char *key, const char *path,
                       const char *what)
{
    struct stat st;
    FILE *f;

    if (stat(path, &st) < 0) {
        host->config_error(inst, key, "cannot read %s: %s: set %s to the "
                           "path of %s",
                           path, strerror(errno), key, what);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        host->config_error(inst, key, "%s is a directory: set %s to the "
                           "path of %s", path, key, what);
        return NULL;
    }
    f = fopen(path, "r");
    if (!f)
        host->config_error(inst, key, "cannot read %s: %s: check the file's "
                           "permissions", path, strerror(errno));
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
        host->config_error(inst, key, "%s holds no PEM certificate (%s): "
                           "give a file with a -----BEGIN CERTIFICATE----- "
                           "block",
                           path, last_reason(why, sizeof(why)));
        return NULL;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
        host->config_error(inst, key, "the certificate in %s expired on %s: "
                           "renew it",
                           path, asn1_time_text(X509_get0_notAfter(x), when,
                                                sizeof(when)));
        X509_free(x);
        return NULL;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
        host->config_error(inst, key, "the certificate in %s is not valid "
                           "before %s: check the clock or the certificate",
                           path, asn1_time_text(X509_get0_notBefore(x), when,
                                                sizeof(when)));
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
        host->config_error(inst, key, "%s holds no usable PEM private key "
                           "(%s): give an unencrypted PEM key (-----BEGIN "
                           "PRIVATE KEY-----)",
                           path, last_reason(why, sizeof(why)));
    ERR_clear_error();
    return k;
}

/* tls-cert + tls-key into ctx: both readable, matching, valid. */
static bool load_identity(zl_instance_t *inst, SSL_CTX *ctx,
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
        host->config_error(inst, "tls-key", "the key in %s does not match "
                           "the certificate in %s (tls-cert): give the key "
                           "the certificate was issued for",
                           keyf, cert);
        goto out;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        host->config_error(inst, "tls-cert", "cannot use the certificate "
                           "chain in %s: %s",
                           cert, last_reason(why, sizeof(why)));
        goto out;
    }
    if (SSL_CTX_use_PrivateKey(ctx, k) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        host->config_error(inst, "tls-key", "cannot use the key in %s with "
                           "the certificate in %s: %s",
                           keyf, cert, last_reason(why, sizeof(why)));
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
static bool load_ca(zl_instance_t *inst, SSL_CTX *ctx, const char *key,
                    const char *path, bool announce)
{
    struct stat st;
    char why[256];

    if (stat(path, &st) < 0) {
        host->config_error(inst, key, "cannot read %s: %s: set %s to a PEM "
                           "file of CA certificates or a directory of "
                           "hashed ones",
                           path, strerror(errno), key);
        return false;
    }
    if (S_ISDIR(st.st_mode)) {
        if (SSL_CTX_load_verify_dir(ctx, path) != 1) {
            host->config_error(inst, key, "cannot use the directory %s: %s",
                               path, last_reason(why, sizeof(why)));
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
        host->config_error(inst, key, "%s holds no PEM CA certificate (%s): "
                           "give a file with -----BEGIN CERTIFICATE----- "
                           "blocks",
                           path, last_reason(why, sizeof(why)));
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
            host->config_error(inst, "tls-alpn", "'%s': %s: give protocol "
                               "names separated by commas, e.g. h2,http/1.1",
                               v, a == b ? "an empty protocol name"
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
            host->config_error(inst, "tls-alpn", "'%s': a trailing comma: "
                               "give protocol names separated by commas", v);
            free(w);
            return false;
        }
    }
    if (o == w) {
        host->config_error(inst, "tls-alpn", "empty: give protocol names "
                           "separated by commas, e.g. h2,http/1.1");
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
    return host->config_is_default(inst, key);
}

static void ignored_key(zl_instance_t *inst, const char *key, bool server)
{
    if (host->config_string(inst, key) && !is_default(inst, key))
        host->log(self_plugin, ZL_LOG_WARNING,
                  "%s.%s: %s applies to %s only; ignored",
                  server ? "server" : "client", host->instance_name(inst),
                  key, server ? "clients" : "servers");
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
    const char *cl = host->config_string(inst, "tls-ciphers");
    const char *cs = host->config_string(inst, "tls-ciphersuites");
    SSL_CTX *scratch = NULL;
    char bad[128], why[256];
    bool ok = true;

    if ((cl || cs) && !(scratch = SSL_CTX_new(TLS_method()))) {
        host->config_error(inst, cl ? "tls-ciphers" : "tls-ciphersuites",
                           "cannot check the list: %s",
                           last_reason(why, sizeof(why)));
        return false;
    }
    if (cl && !*cl) {
        host->config_error(inst, "tls-ciphers", "empty: give an OpenSSL "
                           "cipher list for TLS 1.2, e.g. ECDHE+AESGCM, or "
                           "remove the key for zltk's default");
        ok = false;
    } else if (cl && find_bad_part(scratch, cl, ": ,;", "!-@", rule_selects,
                                   bad, sizeof(bad))) {
        host->config_error(inst, "tls-ciphers", "'%s'%s%s%s selects no "
                           "TLS 1.2 cipher suite of OpenSSL %s%s: give an "
                           "OpenSSL cipher list (openssl ciphers -v 'LIST' "
                           "shows what a list selects), e.g. ECDHE+AESGCM",
                           cl, strcmp(cl, bad) ? ": '" : "",
                           strcmp(cl, bad) ? bad : "",
                           strcmp(cl, bad) ? "'" : "",
                           OpenSSL_version(OPENSSL_VERSION_STRING),
                           !strncmp(bad, "TLS_", 4)
                               ? " (TLS 1.3 suites go in tls-ciphersuites)"
                               : "");
        ok = false;
    } else if (SSL_CTX_set_cipher_list(ti->ctx, cl ? cl
                                                   : TLS_DEFAULT_CIPHERS) != 1) {
        host->config_error(inst, cl ? "tls-ciphers" : NULL, "'%s': %s: give "
                           "an OpenSSL cipher list for TLS 1.2, e.g. "
                           "ECDHE+AESGCM",
                           cl ? cl : TLS_DEFAULT_CIPHERS,
                           last_reason(why, sizeof(why)));
        ok = false;
    } else if (cl && minver >= TLS1_3_VERSION &&
               !is_default(inst, "tls-ciphers")) {
        host->log(self_plugin, ZL_LOG_WARNING,
                  "%s: tls-ciphers applies to TLS 1.2, which "
                  "tls-min-version = 1.3 refuses; ignored",
                  ti->name);
    }
    if (cs && !*cs) {
        host->config_error(inst, "tls-ciphersuites", "empty: give TLS 1.3 "
                           "suites separated by colons, e.g. "
                           "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256, "
                           "or remove the key for OpenSSL's default");
        ok = false;
    } else if (cs && find_bad_part(scratch, cs, ":", "", suite_known, bad,
                                   sizeof(bad))) {
        host->config_error(inst, "tls-ciphersuites", "'%s'%s%s%s is not a "
                           "TLS 1.3 cipher suite of OpenSSL %s: give names "
                           "such as TLS_AES_256_GCM_SHA384, TLS_CHACHA20_"
                           "POLY1305_SHA256, TLS_AES_128_GCM_SHA256, "
                           "separated by colons%s",
                           cs, strcmp(cs, bad) ? ": '" : "",
                           strcmp(cs, bad) ? bad : "",
                           strcmp(cs, bad) ? "'" : "",
                           OpenSSL_version(OPENSSL_VERSION_STRING),
                           strncmp(bad, "TLS_", 4) || strstr(bad, "_WITH_")
                               ? " (TLS 1.2 suites go in tls-ciphers)"
                               : "");
        ok = false;
    } else if (cs && SSL_CTX_set_ciphersuites(ti->ctx, cs) != 1) {
        host->config_error(inst, "tls-ciphersuites", "'%s': %s", cs,
                           last_reason(why, sizeof(why)));
        ok = false;
    }
    SSL_CTX_free(scratch);
    ERR_clear_error();
    return ok;
}

static bool config_client(zl_instance_t *inst, tls_inst_t *ti)
{
    const char *ca = host->config_string(inst, "tls-ca");
    const char *sn = host->config_string(inst, "tls-server-name");
    const char *cert = host->config_string(inst, "tls-cert");
    const char *keyf = host->config_string(inst, "tls-key");
    const char *pin = host->config_string(inst, "tls-pin");
    bool ok = true, verify = true;
    int rc;

    rc = host->config_bool(inst, "tls-verify", &verify);
    if (rc == -EINVAL)
        ok = false;
    ti->verify = verify;
    if (pin && !parse_pin(inst, pin, ti))
        ok = false;
    if (sn) {
        if (!*sn) {
            host->config_error(inst, "tls-server-name", "empty: give the "
                               "name the server's certificate carries, or "
                               "remove the key to use the instance's host");
            ok = false;
        } else if (!(ti->server_name = strdup(sn))) {
            return false;
        }
    }
    if (pin) {
        /* The pin replaces the chain check: no CA store at all. */
        SSL_CTX_set_verify(ti->ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_cert_verify_callback(ti->ctx, pin_verify_cb, ti);
        if (ca && !is_default(inst, "tls-ca"))
            host->log(self_plugin, ZL_LOG_WARNING,
                      "client.%s: tls-ca is ignored: with tls-pin the "
                      "server's certificate is accepted by its fingerprint, "
                      "not by a CA",
                      host->instance_name(inst));
        if (!verify)
            host->log(self_plugin, ZL_LOG_INFO,
                      "client.%s: tls-pin with tls-verify = false: the "
                      "certificate is pinned, its names are not checked",
                      host->instance_name(inst));
    } else if (verify) {
        if (SSL_CTX_set_default_verify_paths(ti->ctx) != 1)
            ERR_clear_error(); /* no system store: tls-ca may still do */
        SSL_CTX_set_verify(ti->ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ti->ctx, SSL_VERIFY_NONE, NULL);
        host->log(self_plugin, ZL_LOG_WARNING,
                  "client.%s: tls-verify = false: the server's certificate "
                  "and name are NOT checked, so anyone on the path can "
                  "impersonate %s; use it for tests only",
                  host->instance_name(inst),
                  sn ? sn
                     : host->instance_host(inst) ? host->instance_host(inst)
                                                 : "the server");
    }
    if (ca && !pin && !load_ca(inst, ti->ctx, "tls-ca", ca, false))
        ok = false;
    if (cert && !strcmp(cert, TLS_EPHEMERAL)) {
        host->config_error(inst, "tls-cert", "tls-cert = %s is for servers: "
                           "a client certificate needs PEM files (tls-cert "
                           "and tls-key)",
                           TLS_EPHEMERAL);
        ok = false;
    } else if (cert || keyf) {
        if (!cert) {
            host->config_error(inst, "tls-cert", "tls-key is set but not "
                               "tls-cert: a client certificate needs both "
                               "(PEM files)");
            ok = false;
        } else if (!keyf) {
            host->config_error(inst, "tls-key", "tls-cert is set but not "
                               "tls-key: a client certificate needs both "
                               "(PEM files)");
            ok = false;
        } else if (!load_identity(inst, ti->ctx, cert, keyf)) {
            ok = false;
        }
    }
    if (ti->alpn && SSL_CTX_set_alpn_protos(ti->ctx, ti->alpn,
                                            (unsigned)ti->alpn_len) != 0) {
        char why[256];
        host->config_error(inst, "tls-alpn", "cannot offer these protocols: "
                           "%s", last_reason(why, sizeof(why)));
        ok = false;
    }
    /* Resumption: OpenSSL hands us each new session (in TLS 1.3 when a
     * ticket arrives) and we keep the newest for the next connect. */
    SSL_CTX_set_session_cache_mode(ti->ctx, SSL_SESS_CACHE_CLIENT |
                                                SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ti->ctx, new_session_cb);
    ignored_key(inst, "tls-client-ca", false);
    ignored_key(inst, "tls-verify-client", false);
    return ok;
}

static bool config_server(zl_instance_t *inst, tls_inst_t *ti)
{
    const char *cert = host->config_string(inst, "tls-cert");
    const char *keyf = host->config_string(inst, "tls-key");
    const char *cca = host->config_string(inst, "tls-client-ca");
    const char *vc = host->config_string(inst, "tls-verify-client");
    const char *name = host->instance_name(inst);
    verify_client_t mode = VERIFY_CLIENT_NONE;
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
    size_t sidlen;
    bool ok = true;

    if (cert && !strcmp(cert, TLS_EPHEMERAL)) {
        if (keyf) {
            host->config_error(inst, "tls-key", "tls-cert = %s makes its own "
                               "key: remove tls-key (%s), or set tls-cert to "
                               "the PEM file of that key's certificate",
                               TLS_EPHEMERAL, keyf);
            ok = false;
        } else if (!make_ephemeral(inst, ti)) {
            ok = false;
        }
    } else {
        if (!cert)
            host->config_error(inst, "tls-cert", "a TLS server needs a "
                               "certificate: set tls-cert (and tls-key) to "
                               "PEM files, or tls-cert = %s for a "
                               "self-signed one made at start (clients pin "
                               "it with tls-pin)",
                               TLS_EPHEMERAL);
        if (!keyf)
            host->config_error(inst, "tls-key", "a TLS server needs the "
                               "private key of its certificate: set tls-key "
                               "to a PEM file%s%s",
                               cert ? " matching " : "", cert ? cert : "");
        if (!cert || !keyf || !load_identity(inst, ti->ctx, cert, keyf))
            ok = false;
    }
    if (vc) {
        if (!strcmp(vc, "required"))
            mode = VERIFY_CLIENT_REQUIRED;
        else if (!strcmp(vc, "optional"))
            mode = VERIFY_CLIENT_OPTIONAL;
        else if (strcmp(vc, "none")) {
            host->config_error(inst, "tls-verify-client", "'%s' is not none, "
                               "optional or required", vc);
            ok = false;
        }
    }
    if (mode != VERIFY_CLIENT_NONE && !cca) {
        host->config_error(inst, "tls-client-ca", "tls-verify-client = %s "
                           "needs the CA that issues client certificates: "
                           "set tls-client-ca to a PEM file or directory", vc);
        ok = false;
    }
    if (cca) {
        if (mode == VERIFY_CLIENT_NONE)
            host->log(self_plugin, ZL_LOG_WARNING,
                      "server.%s: tls-client-ca is set but no client "
                      "certificate is requested: set tls-verify-client = "
                      "required or optional",
                      name);
        else if (!load_ca(inst, ti->ctx, "tls-client-ca", cca, true))
            ok = false;
    }
    if (mode != VERIFY_CLIENT_NONE)
        SSL_CTX_set_verify(ti->ctx,
                           SSL_VERIFY_PEER |
                               (mode == VERIFY_CLIENT_REQUIRED
                                    ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                    : 0),
                           NULL);
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

static int tls_instance_new(zl_instance_t *inst, void **data)
{
    tls_inst_t *ti = calloc(1, sizeof(*ti));
    const char *minv = host->config_string(inst, "tls-min-version");
    const char *alpn = host->config_string(inst, "tls-alpn");
    int64_t tmo = TLS_DEFAULT_TIMEOUT_MS;
    int version = TLS1_2_VERSION, rc;
    bool ok = true;

    if (!ti)
        return -ENOMEM;
    ti->server = host->instance_is_server(inst);
    ti->timeout_ms = TLS_DEFAULT_TIMEOUT_MS;
    {
        const char *n = host->instance_name(inst);
        size_t len = strlen(n) + sizeof("client.");

        if (!(ti->name = malloc(len))) {
            free(ti);
            return -ENOMEM;
        }
        snprintf(ti->name, len, "%s.%s", ti->server ? "server" : "client",
                 n);
    }
    ERR_clear_error();
    ti->ctx = SSL_CTX_new(ti->server ? TLS_server_method()
                                     : TLS_client_method());
    if (!ti->ctx) {
        char why[256];
        host->config_error(inst, NULL, "TLS: cannot create an OpenSSL "
                           "context: %s", last_reason(why, sizeof(why)));
        tls_inst_free(ti);
        return -ENOMEM;
    }
    if (minv) {
        if (!strcmp(minv, "1.2") || !strcasecmp(minv, "TLSv1.2"))
            version = TLS1_2_VERSION;
        else if (!strcmp(minv, "1.3") || !strcasecmp(minv, "TLSv1.3"))
            version = TLS1_3_VERSION;
        else {
            host->config_error(inst, "tls-min-version", "'%s' is not a TLS "
                               "version zltk accepts: use 1.2 or 1.3", minv);
            ok = false;
        }
    }
    SSL_CTX_set_min_proto_version(ti->ctx, version);
    SSL_CTX_set_options(ti->ctx, SSL_OP_NO_RENEGOTIATION);
    /* The server's order wins: the client's order would decide otherwise
     * (and audits flag that). */
    if (ti->server)
        SSL_CTX_set_options(ti->ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (!config_ciphers(inst, ti, version))
        ok = false;
    SSL_CTX_set_mode(ti->ctx, SSL_MODE_RELEASE_BUFFERS);
    rc = host->config_int(inst, "tls-handshake-timeout", &tmo);
    if (rc == -EINVAL) {
        ok = false;
    } else if (rc == 0 && (tmo <= 0 || tmo > 24 * 3600 * 1000LL)) {
        host->config_error(inst, "tls-handshake-timeout", "%lld is out of "
                           "range: give milliseconds, 1 to 86400000",
                           (long long)tmo);
        ok = false;
    } else {
        ti->timeout_ms = (uint64_t)tmo;
    }
    if (alpn && !parse_alpn(inst, alpn, ti))
        ok = false;
    if (ti->server ? !config_server(inst, ti) : !config_client(inst, ti))
        ok = false;
    ERR_clear_error();
    if (!ok) {
        tls_inst_free(ti);
        return -EINVAL;
    }
    if (ti->ephemeral) {
        char fp[TLS_FP_TEXT];

        if (!eph_add(ti, host->instance_name(inst), ti->fp)) {
            ti->ephemeral = false;
            tls_inst_free(ti);
            return -ENOMEM;
        }
        host->log(self_plugin, ZL_LOG_MESSAGE,
                  "[%s] ephemeral certificate, SHA-256 fingerprint %s",
                  ti->name, fp_text(ti->fp, fp));
    }
    *data = ti;
    return 0;
}

static void tls_instance_free(zl_instance_t *inst, void *data)
{
    (void)inst;
    tls_inst_free(data);
}

/* ------------------------------------------------------------ plugin */

static const char *const tls_keys[] = {
    "tls-ca",          "tls-verify",        "tls-server-name",
    "tls-cert",        "tls-key",           "tls-client-ca",
    "tls-verify-client", "tls-min-version", "tls-alpn",
    "tls-handshake-timeout", "tls-pin", "tls-ciphers", "tls-ciphersuites",
    NULL};

static const zl_layer_t tls_layer = {
    .struct_size = sizeof(zl_layer_t),
    .state_size = sizeof(tls_sess_t),
    .keys = tls_keys,
    .instance_new = tls_instance_new,
    .instance_free = tls_instance_free,
    .on_open = tls_on_open,
    .on_connect = tls_on_connect,
    .on_recv = tls_on_recv,
    .on_err = tls_on_err,
    .on_manager = tls_on_manager,
    .on_closed = tls_on_closed,
    .send = tls_send,
    .close = tls_close,
    .shutdown = tls_shutdown,
    .info = tls_info,
    .pause = tls_pause,
};

static int tls_init(zl_plugin_t *self, const zl_host_api_t *api)
{
    static const zl_registration_t reg = {
        .struct_size = sizeof(zl_registration_t),
        .kind = ZL_PROVIDES_LAYER,
        .name = "tls",
        .description = "TLS over OpenSSL 3: verified by default (system CA "
                       "store, host name, SNI), certificate pinning, "
                       "ephemeral server certificates, mutual TLS, ALPN, "
                       "session resumption, handshake timeout",
        .vtable = &tls_layer,
    };

    if (api->struct_size < offsetof(zl_host_api_t, reserved))
        return -EPROTO; /* a host older than this plugin */
    host = api;
    self_plugin = self;
    if (!zbio_method && !zbio_setup()) {
        api->log(self, ZL_LOG_CRITICAL, "cannot create the TLS BIO method: "
                                        "out of memory");
        return -ENOMEM;
    }
    return host->register_provider(self, &reg);
}

ZLTK_PLUGIN_DEFINE(
    .name = "tls",
    .version = "1.0",
    .description = "TLS transport layer (transport = tls) over OpenSSL 3",
    .init = tls_init,
)
