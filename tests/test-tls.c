/* zltk tests — the TLS layer plugin (suite "tls"; plugins/tls).
 *
 * Instances run exactly as zltk-host runs them: the tls and echo plugins
 * are loaded from $top_builddir/plugins/.libs with the loader, and client
 * and server instances are made with zl_instance_new() with the tls layer
 * and a configuration table (the harness shared with suite "tls-interop",
 * tls-certs.h).  The client side (and the server side where a
 * test must see it) is the recording handler below, which acts through the
 * host API of zl_plugins_host_api().
 *
 * Suite init makes, with tls-certs.c (the OpenSSL C API), in a mkdtemp
 * directory: a CA; a server certificate for DNS:localhost and IP:127.0.0.1
 * signed by it; one for DNS:other.example; an expired one; a self-signed
 * one; a client certificate; and a file that is not PEM.  All keys are EC
 * P-256.
 *
 * Everything runs over 127.0.0.1.  Peers that zltk cannot play (a server
 * with an expired certificate, a server that never answers or hangs up
 * mid-handshake, a relay that forwards one byte per write) are threads
 * with blocking sockets and timeouts, so every test ends.
 *
 * Callbacks run on poller threads: counters are atomics incremented last
 * in each callback; the rest of the record is under T->mu.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "test.h"
#include "tls-certs.h"

#define CHECK ZL_TEST_CHECK
#define KIB 1024u
#define MIB (1024u * 1024u)
#define WAIT_MS 5000u
#define PAT_MAX MIB

static const zl_host_api_t *host;
static zl_test_tls_plugins_t plugins; /* tls and echo (tls-certs.h) */
static const zl_handler_t *echo_handler;
static zl_plugin_t *echo_plugin;
static uint8_t *pattern; /* PAT_MAX bytes of a known sequence */

/* Files made by suite init (tls-certs.h). */
static zl_test_tls_certs_t certs;
static const char *const tmpdir = certs.dir, *const f_ca = certs.ca,
                  *const f_srv = certs.srv, *const f_srv_key = certs.srv_key,
                  *const f_other = certs.other,
                  *const f_other_key = certs.other_key,
                  *const f_exp = certs.exp, *const f_exp_key = certs.exp_key,
                  *const f_self = certs.self,
                  *const f_self_key = certs.self_key,
                  *const f_cli = certs.cli, *const f_cli_key = certs.cli_key,
                  *const f_junk = certs.junk;

static unsigned slow_ms(unsigned ms)
{
    return ms * zl_test_slow();
}

/* ------------------------------------------------------------ record */

enum { CLI = 0, SRV = 1 };
#define MAXCONN 4

/* What a side's callbacks recorded, under T->mu. */
typedef struct sinfo {
    int err_code;
    zl_stage_t err_stage;
    char err_msg[400];
    long rbytes_at_err;
    int nconn;
    char version[MAXCONN][32], alpn[MAXCONN][32], resumed[MAXCONN][8];
    char cipher[64], subject[256], sni[64];
    char data[512];
    size_t ndata;
} sinfo_t;

typedef struct side {
    atomic_long opened, connects, conn_fails, errs, closed, rbytes,
        mismatches, flushes;
    /* Backpressure: on_busy(true) / (false) calls, (true) before
     * on_connect, sends answered ZL_CONN_BUSY, queued() after on_open's
     * sends. */
    atomic_long busy_on, busy_off, busy_early, busy_rc, open_queued;
    atomic_long recv_calls;
    sinfo_t i; /* under T->mu */
} side_t;

typedef struct trec {
    pthread_mutex_t mu;
    side_t side[2];
    atomic_long bad, bulk_done;
    char bad_msg[256];
    /* Behaviour, set before instances start. */
    const char *open_send;    /* client: host->send in on_open */
    bool open_close;          /* client: host->close in on_open after it */
    size_t open_bytes;        /* client: pattern bytes sent in on_open */
    const char *connect_send; /* client: host->send in on_connect */
    bool connect_shutdown;    /* client: half-close after connect_send */
    size_t bulk;              /* client: pump pattern, expect it back */
    bool bulk_close_at_once;  /* client: send bulk, close at once */
    bool srv_echo;            /* server: send back what arrives */
    bool srv_sink;            /* server: check arrivals against pattern */
    bool srv_close_on_connect;
    bool srv_abort_on_recv;   /* server: host->abort in the first on_recv */
    bool srv_pause_on_recv;   /* server: host->pause in the first on_recv */
    zl_session_t *srv_sess;   /* server: a reference, taken in on_open */
    atomic_bool srv_resumed;  /* the test resumed srv_sess */
    size_t cli_high, cli_low; /* client: the marks, if not 0 */
} trec_t;

static trec_t *T;

static void trec_new(void)
{
    T = calloc(1, sizeof(*T));
    CU_ASSERT_PTR_NOT_NULL_FATAL(T);
    pthread_mutex_init(&T->mu, NULL);
}

static void trec_done(void)
{
    if (atomic_load(&T->bad))
        fprintf(stderr, "\n    violation: %s (%ld in all)\n", T->bad_msg,
                atomic_load(&T->bad));
    CU_ASSERT_EQUAL(atomic_load(&T->bad), 0);
    pthread_mutex_destroy(&T->mu);
    free(T);
    T = NULL;
}

static void bad(const char *fmt, ...) ZL_PRINTF(1, 2);
static void bad(const char *fmt, ...)
{
    va_list ap;

    if (atomic_fetch_add(&T->bad, 1) != 0)
        return;
    pthread_mutex_lock(&T->mu);
    va_start(ap, fmt);
    vsnprintf(T->bad_msg, sizeof(T->bad_msg), fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&T->mu);
}

static sinfo_t snap(int who)
{
    sinfo_t v;

    pthread_mutex_lock(&T->mu);
    v = T->side[who].i;
    pthread_mutex_unlock(&T->mu);
    return v;
}

/* ------------------------------------------------------------ handler */

#define TST_MAGIC 0x7e57715u

typedef struct tst {
    uint32_t magic;
    int who;
    bool closed, connected, erred, aborted, busy, paused, recvd_once;
    uint64_t sent, recvd;
} tst_t;

static tst_t *check(zl_session_t *s, void *state, const char *what)
{
    tst_t *st = state;

    if (!zl_poller_is_current(host->session_poller(s)))
        bad("%s: not on the session's poller", what);
    if (st->magic != TST_MAGIC)
        bad("%s: state not initialised by on_open", what);
    if (st->closed)
        bad("%s: after on_closed", what);
    return st;
}

static void pump(zl_session_t *s, tst_t *st)
{
    while (st->sent < T->bulk) {
        size_t n = T->bulk - st->sent < 64 * KIB ? T->bulk - st->sent
                                                  : 64 * KIB;
        int rc = host->send(s, pattern + st->sent, n);

        if (rc < 0) {
            bad("bulk send: %s", zl_strerror(rc));
            return;
        }
        st->sent += n;
        if (rc == ZL_CONN_BUSY)
            return; /* on_busy(false) resumes */
    }
}

static int t_open(zl_session_t *s, void *state, zl_instance_t *inst)
{
    tst_t *st = state;

    st->magic = TST_MAGIC;
    st->who = host->instance_is_server(inst) ? SRV : CLI;
    if (st->who == CLI && T->open_send) {
        int rc = host->send(s, T->open_send, strlen(T->open_send));
        if (rc != 0)
            bad("send in on_open: %s", zl_strerror(rc));
        if (T->open_close)
            host->close(s);
    }
    if (st->who == CLI && T->open_bytes) {
        /* In three pieces, to see the queue keep them in order.  Above the
         * high mark, ZL_CONN_BUSY: accepted, but stop producing. */
        size_t cut[4] = {0, T->open_bytes / 3, T->open_bytes / 2,
                         T->open_bytes};
        for (int i = 0; i < 3; i++) {
            int rc = host->send(s, pattern + cut[i], cut[i + 1] - cut[i]);
            if (rc < 0)
                bad("send of %zu bytes in on_open: %s",
                    cut[i + 1] - cut[i], zl_strerror(rc));
            else if (rc == ZL_CONN_BUSY)
                atomic_fetch_add(&T->side[CLI].busy_rc, 1);
        }
        atomic_store(&T->side[CLI].open_queued, (long)host->queued(s));
    }
    if (st->who == SRV && T->srv_pause_on_recv && !T->srv_sess)
        T->srv_sess = host->session_ref(s); /* one server session */
    atomic_fetch_add(&T->side[st->who].opened, 1);
    return 0;
}

static void t_connect(zl_session_t *s, void *state, const zl_error_t *err)
{
    tst_t *st = check(s, state, "on_connect");
    side_t *sd = &T->side[st->who];

    if (err) {
        atomic_fetch_add(&sd->conn_fails, 1);
        return;
    }
    if (st->connected && !st->erred)
        bad("on_connect twice on one connection");
    st->connected = true;
    st->erred = false;
    pthread_mutex_lock(&T->mu);
    if (sd->i.nconn < MAXCONN) {
        zl_test_tls_info(s, "version", sd->i.version[sd->i.nconn], 32);
        zl_test_tls_info(s, "alpn", sd->i.alpn[sd->i.nconn], 32);
        zl_test_tls_info(s, "resumed", sd->i.resumed[sd->i.nconn], 8);
    }
    sd->i.nconn++;
    zl_test_tls_info(s, "cipher", sd->i.cipher, sizeof(sd->i.cipher));
    zl_test_tls_info(s, "peer-subject", sd->i.subject, sizeof(sd->i.subject));
    zl_test_tls_info(s, "server-name", sd->i.sni, sizeof(sd->i.sni));
    pthread_mutex_unlock(&T->mu);
    if (st->who == SRV && T->srv_close_on_connect)
        host->close(s);
    if (st->who == CLI && T->connect_send) {
        int rc = host->send(s, T->connect_send, strlen(T->connect_send));
        if (rc != 0)
            bad("send in on_connect: %s", zl_strerror(rc));
        if (T->connect_shutdown)
            host->shutdown(s);
    }
    if (st->who == CLI && T->bulk) {
        st->sent = st->recvd = 0;
        if (T->bulk_close_at_once) {
            int rc = host->send(s, pattern, T->bulk);
            if (rc < 0)
                bad("bulk send: %s", zl_strerror(rc));
            host->close(s);
        } else {
            pump(s, st);
        }
    }
    atomic_fetch_add(&sd->connects, 1);
}

static void t_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    tst_t *st = check(s, state, "on_recv");
    side_t *sd = &T->side[st->who];
    bool pat_check = (st->who == CLI && (T->bulk || T->open_bytes)) ||
                     (st->who == SRV && T->srv_sink);

    if (!st->connected)
        bad("on_recv before on_connect");
    if (st->aborted)
        bad("on_recv after the handler aborted");
    if (pat_check) {
        if (st->recvd + buf->len > PAT_MAX ||
            memcmp(buf->data, pattern + st->recvd, buf->len))
            atomic_fetch_add(&sd->mismatches, 1);
    } else {
        pthread_mutex_lock(&T->mu);
        size_t room = sizeof(sd->i.data) - 1 - sd->i.ndata;
        size_t n = buf->len < room ? buf->len : room;
        memcpy(sd->i.data + sd->i.ndata, buf->data, n);
        sd->i.ndata += n;
        sd->i.data[sd->i.ndata] = '\0';
        pthread_mutex_unlock(&T->mu);
    }
    if (st->paused && !atomic_load(&T->srv_resumed))
        bad("on_recv while paused (%zu bytes)", buf->len);
    st->recvd += buf->len;
    if (st->who == SRV && T->srv_pause_on_recv && !st->recvd_once) {
        st->recvd_once = st->paused = true;
        host->pause(s);
    }
    if (st->who == SRV && T->srv_abort_on_recv) {
        st->aborted = true;
        host->abort(s);
    }
    if (st->who == SRV && T->srv_echo) {
        int rc = host->send(s, buf->data, buf->len);
        if (rc < 0)
            bad("echo: %s", zl_strerror(rc));
    }
    if (st->who == CLI && T->bulk && !T->bulk_close_at_once &&
        st->recvd == T->bulk) {
        host->close(s);
        atomic_fetch_add(&T->bulk_done, 1);
    }
    atomic_fetch_add(&sd->recv_calls, 1);
    atomic_fetch_add(&sd->rbytes, (long)buf->len);
}

static void t_err(zl_session_t *s, void *state, const zl_error_t *err)
{
    tst_t *st = check(s, state, "on_err");
    side_t *sd = &T->side[st->who];

    if (st->erred)
        bad("two on_err for one connection");
    st->erred = true;
    pthread_mutex_lock(&T->mu);
    if (!atomic_load(&sd->errs)) {
        sd->i.err_code = err->code;
        sd->i.err_stage = err->stage;
        snprintf(sd->i.err_msg, sizeof(sd->i.err_msg), "%s",
                 err->message ? err->message : "");
        sd->i.rbytes_at_err = (long)st->recvd;
    }
    pthread_mutex_unlock(&T->mu);
    atomic_fetch_add(&sd->errs, 1);
}

static void t_busy(zl_session_t *s, void *state, bool busy)
{
    tst_t *st = check(s, state, "on_busy");

    if (busy == st->busy)
        bad("on_busy(%s) twice in a row", busy ? "true" : "false");
    st->busy = busy;
    if (busy && !st->connected)
        atomic_fetch_add(&T->side[st->who].busy_early, 1);
    atomic_fetch_add(busy ? &T->side[st->who].busy_on
                          : &T->side[st->who].busy_off, 1);
    if (!busy && st->who == CLI && T->bulk && !T->bulk_close_at_once &&
        st->connected)
        pump(s, st);
}

static void t_flush(zl_session_t *s, void *state)
{
    tst_t *st = check(s, state, "on_flush");

    atomic_fetch_add(&T->side[st->who].flushes, 1);
}

static void t_closed(zl_session_t *s, void *state)
{
    tst_t *st = check(s, state, "on_closed");

    st->closed = true;
    atomic_fetch_add(&T->side[st->who].closed, 1);
}

static const zl_handler_t rec_h = {
    .struct_size = sizeof(zl_handler_t),
    .state_size = sizeof(tst_t),
    .on_open = t_open,
    .on_connect = t_connect,
    .on_recv = t_recv,
    .on_err = t_err,
    .on_flush = t_flush,
    .on_busy = t_busy,
    .on_closed = t_closed,
};

/* ------------------------------------------------------------ instances */

/* One instance's configuration and the problems it reported (tls-certs.h);
 * icfg(key, value, ..., NULL) makes one, free() it. */
typedef zl_test_icfg_t icfg_t;
#define icfg zl_test_icfg_new

/* The usual pair: a server with the certificate for localhost and
 * 127.0.0.1, and a client that trusts the test CA. */
static icfg_t *srv_icfg(void)
{
    return icfg("tls-cert", f_srv, "tls-key", f_srv_key, NULL);
}

static icfg_t *cli_icfg(void)
{
    return icfg("tls-ca", f_ca, NULL);
}

static void opts_fill(zl_instance_options_t *o, icfg_t *c, bool server,
                      const zl_handler_t *h, zl_plugin_t *hp)
{
    zl_test_tls_opts_fill(o, &plugins, c, server,
                          server ? "tls-server" : "tls-client", h, hp);
}

static void show_reports(icfg_t *c)
{
    fputs(zl_test_icfg_reports(c, "\n    report "), stderr);
}

/* A server instance named name ([server.NAME]: what tls-pin = @NAME
 * refers to), started; *port is where it listens. */
static zl_instance_t *start_server_as(icfg_t *c, const char *name,
                                      const zl_handler_t *h, zl_plugin_t *hp,
                                      uint16_t *port)
{
    zl_instance_options_t o;
    zl_instance_t *inst = NULL;
    int rc;

    zl_test_tls_opts_fill(&o, &plugins, c, true, name, h, hp);
    rc = zl_instance_new(&inst, &o);
    if (rc)
        show_reports(c);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(zl_instance_start(inst), 0);
    *port = zl_addr_port(zl_instance_server_addr(inst));
    CU_ASSERT_NOT_EQUAL_FATAL(*port, 0);
    return inst;
}

static zl_instance_t *start_server(icfg_t *c, const zl_handler_t *h,
                                   zl_plugin_t *hp, uint16_t *port)
{
    return start_server_as(c, "tls-server", h, hp, port);
}

/* A client instance with handler h to hostname (NULL: 127.0.0.1):port,
 * started; with reconnect, zl_test_tls_client_to()'s policy. */
static zl_instance_t *start_client_with(icfg_t *c, const zl_handler_t *h,
                                        const char *hostname, uint16_t port,
                                        bool reconnect)
{
    zl_instance_options_t o;
    zl_instance_t *inst = NULL;
    int rc;

    opts_fill(&o, c, false, h, NULL);
    if (T && T->cli_high) {
        o.client.conn.high_water = T->cli_high;
        o.client.conn.low_water = T->cli_low;
    }
    zl_test_tls_client_to(&o, hostname ? hostname : "127.0.0.1", port,
                          reconnect);
    rc = zl_instance_new(&inst, &o);
    if (rc)
        show_reports(c);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL_FATAL(zl_instance_start(inst), 0);
    return inst;
}

static zl_instance_t *start_client_opts(icfg_t *c, const char *hostname,
                                        uint16_t port, bool reconnect)
{
    return start_client_with(c, &rec_h, hostname, port, reconnect);
}

static zl_instance_t *start_client(icfg_t *c, const char *hostname,
                                   uint16_t port)
{
    return start_client_with(c, &rec_h, hostname, port, false);
}

/* Whether the client received n bytes within ms. */
static bool cli_got(size_t n, unsigned ms)
{
    return zl_test_wait_count(&T->side[CLI].rbytes, (long)n, ms) == (long)n;
}

/* ------------------------------------------------------------ raw peers */

static int listen_any(uint16_t *port)
{
    zl_addr_t a;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    zl_addr_from_ip(&a, "127.0.0.1", 0);
    if (fd < 0)
        return -1;
    if (bind(fd, &a.u.sa, a.len) < 0 || listen(fd, 8) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        zl_addr_from_sockaddr(&a, (struct sockaddr *)&ss, len) < 0) {
        close(fd);
        return -1;
    }
    *port = zl_addr_port(&a);
    return fd;
}

static int accept_wait(int lfd, unsigned ms)
{
    struct pollfd p = {lfd, POLLIN, 0};

    if (poll(&p, 1, (int)ms) != 1)
        return -1;
    return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

static int connect_to(uint16_t port)
{
    zl_addr_t a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    zl_addr_from_ip(&a, "127.0.0.1", port);
    if (fd < 0)
        return -1;
    zl_test_sock_timeouts(fd, slow_ms(WAIT_MS));
    if (connect(fd, &a.u.sa, a.len) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A peer thread: a listener that, per mode, serves one connection. */
enum {
    RAW_TLS_EXPIRED, /* OpenSSL server presenting the expired certificate */
    RAW_SILENT,      /* accept, read, never answer */
    RAW_HANGUP       /* accept, read the ClientHello's first bytes, close */
};

typedef struct raw {
    int mode;
    int lfd;
    uint16_t port;
    pthread_t th;
    atomic_int stop, accepted, done;
    atomic_long got;
} raw_t;

static void *raw_main(void *arg)
{
    raw_t *r = arg;
    int fd = accept_wait(r->lfd, slow_ms(WAIT_MS));
    uint8_t buf[4096];

    if (fd < 0) {
        atomic_store(&r->done, 1);
        return NULL;
    }
    atomic_store(&r->accepted, 1);
    zl_test_sock_timeouts(fd, 100);
    if (r->mode == RAW_TLS_EXPIRED) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        SSL *ssl = NULL;

        zl_test_sock_timeouts(fd, slow_ms(WAIT_MS));
        if (ctx && SSL_CTX_use_certificate_chain_file(ctx, f_exp) == 1 &&
            SSL_CTX_use_PrivateKey_file(ctx, f_exp_key, SSL_FILETYPE_PEM) ==
                1 &&
            (ssl = SSL_new(ctx)) && SSL_set_fd(ssl, fd) == 1)
            SSL_accept(ssl); /* the client rejects it */
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        ERR_clear_error();
    } else if (r->mode == RAW_HANGUP) {
        /* Read the whole ClientHello (unread bytes would turn the close
         * into a reset), then hang up. */
        ssize_t n;
        while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
            atomic_fetch_add(&r->got, n);
    } else {
        /* Read (so the client's writes succeed) until told to stop. */
        while (!atomic_load(&r->stop)) {
            ssize_t n = recv(fd, buf, sizeof(buf), 0);
            if (n > 0)
                atomic_fetch_add(&r->got, n);
            else if (n == 0)
                break;
        }
    }
    close(fd);
    atomic_store(&r->done, 1);
    return NULL;
}

static raw_t *raw_start(int mode)
{
    raw_t *r = calloc(1, sizeof(*r));

    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    r->mode = mode;
    r->lfd = listen_any(&r->port);
    CU_ASSERT_FATAL(r->lfd >= 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&r->th, NULL, raw_main, r), 0);
    return r;
}

static void raw_stop(raw_t *r)
{
    atomic_store(&r->stop, 1);
    pthread_join(r->th, NULL);
    close(r->lfd);
    free(r);
}

/* A relay between a client and target that writes one byte at a time
 * (TCP_NODELAY), so the handshake arrives in many tiny reads — or, with
 * chunk_max, in pieces of 1..chunk_max bytes (pseudo-random from seed), so
 * that records are split at arbitrary points in both directions. */
typedef struct relay {
    int lfd;
    uint16_t port, target;
    unsigned chunk_max;
    unsigned seed;
    pthread_t th;
    atomic_int stop, done;
    atomic_long writes;
} relay_t;

static bool send_all_nb(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool relay_forward(relay_t *r, int from, int to)
{
    static _Thread_local uint8_t buf[64 * 1024];
    ssize_t n = recv(from, buf, r->chunk_max ? sizeof(buf) : 4096, 0);

    if (n <= 0) {
        shutdown(to, SHUT_WR);
        return false;
    }
    for (ssize_t i = 0; i < n;) {
        size_t k = 1;

        if (r->chunk_max) {
            r->seed = r->seed * 1103515245u + 12345u;
            k = 1 + (r->seed >> 8) % r->chunk_max;
            if (k > (size_t)(n - i))
                k = (size_t)(n - i);
        }
        if (!send_all_nb(to, buf + i, k))
            return false;
        i += (ssize_t)k;
        if ((atomic_fetch_add(&r->writes, 1) & 7) == 7)
            usleep(20); /* let the far end read what came so far */
    }
    return true;
}

static void *relay_main(void *arg)
{
    relay_t *r = arg;
    int one = 1;
    int a = accept_wait(r->lfd, slow_ms(WAIT_MS)), b = -1;
    bool a_open = true, b_open = true;

    if (a < 0)
        goto out;
    b = connect_to(r->target);
    if (b < 0)
        goto out;
    setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    while (!atomic_load(&r->stop) && (a_open || b_open)) {
        struct pollfd p[2] = {{a, a_open ? POLLIN : 0, 0},
                              {b, b_open ? POLLIN : 0, 0}};

        if (poll(p, 2, 50) <= 0)
            continue;
        if (a_open && (p[0].revents & (POLLIN | POLLHUP | POLLERR)))
            a_open = relay_forward(r, a, b);
        if (b_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
            b_open = relay_forward(r, b, a);
    }
out:
    if (a >= 0)
        close(a);
    if (b >= 0)
        close(b);
    atomic_store(&r->done, 1);
    return NULL;
}

/* A relay to target on a port of its own (r->port), running; chunk_max 0:
 * one byte per write. */
static relay_t *relay_start(uint16_t target, unsigned chunk_max,
                            unsigned seed)
{
    relay_t *r = calloc(1, sizeof(*r));

    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    r->target = target;
    r->chunk_max = chunk_max;
    r->seed = seed;
    r->lfd = listen_any(&r->port);
    CU_ASSERT_FATAL(r->lfd >= 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&r->th, NULL, relay_main, r), 0);
    return r;
}

static void relay_stop(relay_t *r)
{
    atomic_store(&r->stop, 1);
    pthread_join(r->th, NULL);
    close(r->lfd);
    free(r);
}

/* ------------------------------------------------------------ checks */

static bool has(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle);
}

/* Wait for the client's error; check it is a TLS failure that says want
 * (or want2) and that the handler never saw the connection succeed. */
static void expect_client_tls_fail(const char *want, const char *want2,
                                   int line)
{
    sinfo_t c;

    zl_test_wait_count(&T->side[CLI].errs, 1, WAIT_MS);
    c = snap(CLI);
    zl_test_check_at(__FILE__, line, atomic_load(&T->side[CLI].errs) == 1,
                     "client on_err count %ld, want 1",
                     atomic_load(&T->side[CLI].errs));
    zl_test_check_at(__FILE__, line, c.err_code == ZL_ETLS,
                     "client error %s (%s), want ZL_ETLS",
                     zl_err_name(c.err_code), c.err_msg);
    zl_test_check_at(__FILE__, line, c.err_stage == ZL_STAGE_TLS,
                     "client error stage %s, want tls",
                     zl_stage_name(c.err_stage));
    zl_test_check_at(__FILE__, line,
                     has(c.err_msg, want) || (want2 && has(c.err_msg, want2)),
                     "client error '%s' does not say '%s'%s%s", c.err_msg,
                     want, want2 ? " or " : "", want2 ? want2 : "");
    zl_test_check_at(__FILE__, line, atomic_load(&T->side[CLI].connects) == 0,
                     "the handler's on_connect(NULL) fired %ld times",
                     atomic_load(&T->side[CLI].connects));
}

/* A client that ends by itself: wait for its on_closed. */
static void wait_client_closed(void)
{
    CHECK(zl_test_wait_count(&T->side[CLI].closed, 1, WAIT_MS) == 1,
          "the client session did not close");
}

/* ------------------------------------------------------------ 1. basic */

static void echo_roundtrip(const char *hostname, icfg_t *cc,
                           bool server_records, const char *sni)
{
    icfg_t *sc = srv_icfg();
    zl_instance_t *srv, *cli;
    const char *msg = "hello over tls\n";
    uint16_t port;
    sinfo_t c, s;

    trec_new();
    T->connect_send = msg;
    T->srv_echo = true;
    srv = server_records ? start_server(sc, &rec_h, NULL, &port)
                         : start_server(sc, echo_handler, echo_plugin, &port);
    cli = start_client(cc, hostname, port);
    CHECK(cli_got(strlen(msg), WAIT_MS),
          "echo not received (client errors: %ld, %s)",
          atomic_load(&T->side[CLI].errs), snap(CLI).err_msg);
    c = snap(CLI);
    CHECK(!strcmp(c.data, msg), "echoed '%s', want '%s'", c.data, msg);
    CHECK(!strcmp(c.version[0], "TLSv1.3") || !strcmp(c.version[0], "TLSv1.2"),
          "version '%s'", c.version[0]);
    CHECK(c.cipher[0] != '\0', "no cipher reported");
    CHECK(has(c.subject, "CN=localhost"), "peer-subject '%s'", c.subject);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].connects), 1);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].errs), 0);
    if (server_records) {
        s = snap(SRV);
        CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].connects), 1);
        CHECK(!strcmp(s.version[0], c.version[0]), "server version '%s'",
              s.version[0]);
        CHECK(!strcmp(s.sni, sni ? sni : ""), "server saw SNI '%s', want '%s'",
              s.sni, sni ? sni : "");
    }
    zl_instance_free(cli);
    zl_instance_free(srv);
    free(sc);
    trec_done();
}

/* 1. The echo plugin over TLS, verified with the test CA by IP address. */
static void test_echo_by_ip(void)
{
    icfg_t *cc = cli_icfg();

    echo_roundtrip("127.0.0.1", cc, false, NULL);
    free(cc);
}

/* 1b. By name: DNS SAN checked, SNI sent (seen by the server). */
static void test_echo_by_name(void)
{
    icfg_t *cc = cli_icfg();

    echo_roundtrip("localhost", cc, true, "localhost");
    free(cc);
}

/* 1c. tls-server-name overrides the host to verify and send. */
static void test_server_name_key(void)
{
    icfg_t *cc = icfg("tls-ca", f_ca, "tls-server-name", "localhost", NULL);

    echo_roundtrip("127.0.0.1", cc, true, "localhost");
    free(cc);
}

/* ------------------------------------------------------------ 2. verify */

static void verify_fail_case(const char *cert, const char *key,
                             icfg_t *cc, const char *hostname,
                             const char *want, const char *want2, int line)
{
    icfg_t *sc = icfg("tls-cert", cert, "tls-key", key, NULL);
    zl_instance_t *srv, *cli;
    uint16_t port;

    trec_new();
    T->connect_send = "must not be sent";
    srv = start_server(sc, &rec_h, NULL, &port);
    cli = start_client(cc, hostname, port);
    expect_client_tls_fail(want, want2, line);
    zl_test_check_at(__FILE__, line,
                     has(snap(CLI).err_msg, "TLS handshake with"),
                     "message '%s' does not name the handshake",
                     snap(CLI).err_msg);
    wait_client_closed();
    /* The server saw the client's alert as a failed handshake. */
    zl_test_wait_count(&T->side[SRV].errs, 1, WAIT_MS);
    zl_test_check_at(__FILE__, line,
                     atomic_load(&T->side[SRV].connects) == 0 &&
                         snap(SRV).err_code == ZL_ETLS,
                     "server: %ld connects, error %s '%s'",
                     atomic_load(&T->side[SRV].connects),
                     zl_err_name(snap(SRV).err_code), snap(SRV).err_msg);
    CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].rbytes), 0);
    zl_instance_free(cli);
    zl_instance_free(srv);
    free(sc);
    trec_done();
}

static void test_verify_self_signed(void)
{
    icfg_t *cc = cli_icfg();

    verify_fail_case(f_self, f_self_key, cc, "127.0.0.1", "self signed",
                     "self-signed", __LINE__);
    free(cc);
}

static void test_verify_hostname_mismatch(void)
{
    icfg_t *cc = icfg("tls-ca", f_ca, "tls-server-name", "localhost", NULL);

    verify_fail_case(f_other, f_other_key, cc, "127.0.0.1",
                     "hostname mismatch", NULL, __LINE__);
    free(cc);
}

static void test_verify_ip_mismatch(void)
{
    icfg_t *cc = cli_icfg();

    verify_fail_case(f_other, f_other_key, cc, "127.0.0.1",
                     "IP address mismatch", NULL, __LINE__);
    free(cc);
}

static void test_verify_unknown_ca(void)
{
    icfg_t *cc = icfg(NULL);

    verify_fail_case(f_srv, f_srv_key, cc, "127.0.0.1",
                     "unable to get local issuer certificate",
                     "unable to get issuer", __LINE__);
    free(cc);
}

/* The server's instance would refuse an expired certificate (test 4), so
 * an OpenSSL server thread presents it. */
static void test_verify_expired(void)
{
    icfg_t *cc = cli_icfg();
    raw_t *r = raw_start(RAW_TLS_EXPIRED);
    zl_instance_t *cli;

    trec_new();
    cli = start_client(cc, "127.0.0.1", r->port);
    expect_client_tls_fail("expired", NULL, __LINE__);
    wait_client_closed();
    zl_instance_free(cli);
    raw_stop(r);
    free(cc);
    trec_done();
}

/* ------------------------------------------------------------ 3. opt-out */

static void test_verify_false(void)
{
    char dir[] = "/tmp/zltk-tls-log-XXXXXX";
    zl_log_options_t lo = {.level = ZL_LOG_WARNING};
    zl_log_level_t level = zl_log_get_level();
    icfg_t *sc = icfg("tls-cert", f_self, "tls-key", f_self_key, NULL);
    icfg_t *cc = icfg("tls-verify", "false", NULL);
    zl_instance_t *srv, *cli;
    char *path, *text = NULL;
    uint16_t port;
    int lrc;

    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    path = g_strdup_printf("%s/log", dir);
    lo.file = path;
    lrc = zl_log_init(&lo);
    CU_ASSERT_EQUAL(lrc, 0);
    trec_new();
    T->connect_send = "insecure but working";
    srv = start_server(sc, echo_handler, echo_plugin, &port);
    cli = start_client(cc, "127.0.0.1", port);
    CHECK(cli_got(20, WAIT_MS),
          "no echo with tls-verify = false: %s", snap(CLI).err_msg);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].errs), 0);
    CU_ASSERT_STRING_EQUAL(snap(CLI).data, "insecure but working");
    zl_instance_free(cli);
    zl_instance_free(srv);
    if (lrc == 0)
        zl_log_shutdown();
    zl_log_set_level(level);
    CU_ASSERT(g_file_get_contents(path, &text, NULL, NULL));
    CHECK(has(text, "tls-verify = false") && has(text, "client.tls-client") &&
              has(text, "tls: "),
          "no warning naming the instance in the log: '%s'",
          text ? text : "(none)");
    g_free(text);
    zl_test_rm_tree(dir);
    g_free(path);
    free(sc);
    free(cc);
    trec_done();
}

/* ------------------------------------------------------------ 4. config */

/* zl_instance_new must refuse c with a report on key whose message holds
 * each of the NULL-terminated words. */
static void expect_refused(icfg_t *c, bool server, const char *key, int line,
                           ...)
{
    zl_instance_options_t o;
    zl_instance_t *inst = NULL;
    int rc, found = -1;
    va_list ap;
    const char *w;

    opts_fill(&o, c, server, server ? echo_handler : &rec_h,
              server ? echo_plugin : NULL);
    zl_test_tls_client_to(&o, "127.0.0.1", 9, false);
    rc = zl_instance_new(&inst, &o);
    zl_test_check_at(__FILE__, line, rc == -EINVAL && !inst,
                     "zl_instance_new returned %d, want -EINVAL", rc);
    if (inst)
        zl_instance_free(inst);
    for (int i = 0; i < c->nrep && i < ZL_TEST_ICFG_REPORTS; i++)
        if (!strcmp(c->rep_key[i], key)) {
            found = i;
            break;
        }
    if (!zl_test_check_at(__FILE__, line, found >= 0,
                          "no report for key %s (%d reports)", key, c->nrep)) {
        show_reports(c);
        return;
    }
    va_start(ap, line);
    while ((w = va_arg(ap, const char *)))
        zl_test_check_at(__FILE__, line, has(c->rep_msg[found], w),
                         "report for %s '%s' does not say '%s'", key,
                         c->rep_msg[found], w);
    va_end(ap);
}

static void test_config_errors(void)
{
    static const char missing[] = "/nonexistent/zltk/cert.pem";
    icfg_t *c;

    c = icfg("tls-cert", f_srv, NULL);
    expect_refused(c, true, "tls-key", __LINE__, "tls-key", f_srv, NULL);
    free(c);

    c = icfg("tls-key", f_srv_key, NULL);
    expect_refused(c, true, "tls-cert", __LINE__, "tls-cert", NULL);
    free(c);

    c = icfg("tls-cert", missing, "tls-key", f_srv_key, NULL);
    expect_refused(c, true, "tls-cert", __LINE__, missing,
                   "No such file", NULL);
    free(c);

    c = icfg("tls-cert", f_srv, "tls-key", f_other_key, NULL);
    expect_refused(c, true, "tls-key", __LINE__, f_other_key, f_srv,
                   "does not match", NULL);
    free(c);

    c = icfg("tls-cert", f_exp, "tls-key", f_exp_key, NULL);
    expect_refused(c, true, "tls-cert", __LINE__, f_exp, "expired", NULL);
    free(c);

    c = icfg("tls-cert", f_junk, "tls-key", f_srv_key, NULL);
    expect_refused(c, true, "tls-cert", __LINE__, f_junk, "PEM", NULL);
    free(c);

    c = icfg("tls-cert", f_srv, "tls-key", f_junk, NULL);
    expect_refused(c, true, "tls-key", __LINE__, f_junk, "PEM", NULL);
    free(c);

    c = icfg("tls-cert", tmpdir, "tls-key", f_srv_key, NULL);
    expect_refused(c, true, "tls-cert", __LINE__, tmpdir, "directory", NULL);
    free(c);

    c = icfg("tls-cert", f_srv, "tls-key", f_srv_key, "tls-verify-client",
             "required", NULL);
    expect_refused(c, true, "tls-client-ca", __LINE__, "tls-client-ca", NULL);
    free(c);

    c = icfg("tls-cert", f_srv, "tls-key", f_srv_key, "tls-verify-client",
             "maybe", NULL);
    expect_refused(c, true, "tls-verify-client", __LINE__, "maybe", NULL);
    free(c);

    c = icfg("tls-cert", f_srv, "tls-key", f_srv_key, "tls-client-ca",
             missing, "tls-verify-client", "optional", NULL);
    expect_refused(c, true, "tls-client-ca", __LINE__, missing, NULL);
    free(c);

    c = icfg("tls-ca", missing, NULL);
    expect_refused(c, false, "tls-ca", __LINE__, missing, NULL);
    free(c);

    c = icfg("tls-ca", f_junk, NULL);
    expect_refused(c, false, "tls-ca", __LINE__, f_junk, NULL);
    free(c);

    c = icfg("tls-cert", f_cli, NULL);
    expect_refused(c, false, "tls-key", __LINE__, "tls-key", NULL);
    free(c);

    c = icfg("tls-min-version", "1.1", NULL);
    expect_refused(c, false, "tls-min-version", __LINE__, "1.1", "1.3", NULL);
    free(c);

    c = icfg("tls-alpn", "h2,,http/1.1", NULL);
    expect_refused(c, false, "tls-alpn", __LINE__, "empty", NULL);
    free(c);

    c = icfg("tls-handshake-timeout", "0", NULL);
    expect_refused(c, false, "tls-handshake-timeout", __LINE__, "0", NULL);
    free(c);

    c = icfg("tls-handshake-timeout", "soon", NULL);
    expect_refused(c, false, "tls-handshake-timeout", __LINE__, "soon", NULL);
    free(c);

    c = icfg("tls-verify", "perhaps", NULL);
    expect_refused(c, false, "tls-verify", __LINE__, "perhaps", NULL);
    free(c);

    /* Both missing: both reported. */
    c = icfg(NULL);
    expect_refused(c, true, "tls-cert", __LINE__, NULL);
    expect_refused(c, true, "tls-key", __LINE__, NULL);
    free(c);
}

/* tls-ciphers / tls-ciphersuites: a list OpenSSL would take in part, or
 * read as "no TLS 1.3", is refused with the key, the value and the part at
 * fault; lists in OpenSSL's full syntax are taken. */
static void test_cipher_config_errors(void)
{
    static const char *const good[][2] = {
        {"tls-ciphers", "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:@STRENGTH"},
        {"tls-ciphers", "HIGH:!aNULL:!MD5:!RC4:-SHA1 +AES256"},
        {"tls-ciphers", "DEFAULT:@SECLEVEL=2"},
        {"tls-ciphersuites", "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384"},
    };
    icfg_t *c;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        zl_instance_options_t o;
        zl_instance_t *inst = NULL;
        int rc;

        for (int server = 0; server < 2; server++) {
            c = server ? icfg("tls-cert", f_srv, "tls-key", f_srv_key,
                              good[i][0], good[i][1], NULL)
                       : icfg(good[i][0], good[i][1], NULL);
            opts_fill(&o, c, server, server ? echo_handler : &rec_h,
                      server ? echo_plugin : NULL);
            zl_test_tls_client_to(&o, "127.0.0.1", 9, false);
            rc = zl_instance_new(&inst, &o);
            CHECK(rc == 0 && c->nrep == 0, "%s %s = %s refused (%d)%s",
                  server ? "server" : "client", good[i][0], good[i][1], rc,
                  zl_test_icfg_reports(c, "\n    report "));
            if (inst)
                zl_instance_free(inst);
            inst = NULL;
            free(c);
        }
    }

    c = icfg("tls-ciphers", "NO-SUCH-CIPHER", NULL);
    expect_refused(c, false, "tls-ciphers", __LINE__, "'NO-SUCH-CIPHER'",
                   "selects no", "openssl ciphers", NULL);
    free(c);

    /* OpenSSL alone would drop the misspelt part quietly. */
    c = icfg("tls-cert", f_srv, "tls-key", f_srv_key, "tls-ciphers",
             "ECDHE-ECDSA-AES128-GCM-SHA265:ECDHE+AESGCM", NULL);
    expect_refused(c, true, "tls-ciphers", __LINE__,
                   "'ECDHE-ECDSA-AES128-GCM-SHA265:ECDHE+AESGCM'",
                   "'ECDHE-ECDSA-AES128-GCM-SHA265' selects no", NULL);
    free(c);

    c = icfg("tls-ciphers", "", NULL);
    expect_refused(c, false, "tls-ciphers", __LINE__, "empty", NULL);
    free(c);

    c = icfg("tls-ciphers", "!ALL", NULL);
    expect_refused(c, false, "tls-ciphers", __LINE__, "'!ALL'",
                   "no cipher match", NULL);
    free(c);

    c = icfg("tls-ciphers", "TLS_AES_128_GCM_SHA256", NULL);
    expect_refused(c, false, "tls-ciphers", __LINE__,
                   "TLS 1.3 suites go in tls-ciphersuites", NULL);
    free(c);

    c = icfg("tls-cert", f_srv, "tls-key", f_srv_key, "tls-ciphersuites",
             "TLS_AES_128_GCM_SHA256:TLS_AES_512_GCM", NULL);
    expect_refused(c, true, "tls-ciphersuites", __LINE__,
                   "'TLS_AES_128_GCM_SHA256:TLS_AES_512_GCM'",
                   "'TLS_AES_512_GCM' is not a TLS 1.3 cipher suite", NULL);
    free(c);

    /* OpenSSL would take these as "no TLS 1.3 at all". */
    c = icfg("tls-ciphersuites", "ECDHE-RSA-AES128-GCM-SHA256", NULL);
    expect_refused(c, false, "tls-ciphersuites", __LINE__,
                   "TLS 1.2 suites go in tls-ciphers", NULL);
    free(c);

    c = icfg("tls-ciphersuites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
             NULL);
    expect_refused(c, false, "tls-ciphersuites", __LINE__,
                   "TLS 1.2 suites go in tls-ciphers", NULL);
    free(c);

    c = icfg("tls-ciphersuites", "", NULL);
    expect_refused(c, false, "tls-ciphersuites", __LINE__, "empty", NULL);
    free(c);
}

/* ------------------------------------------------------------ 5. mTLS */

static void test_mutual_tls(void)
{
    icfg_t *sc = icfg("tls-cert", f_srv, "tls-key", f_srv_key,
                      "tls-client-ca", f_ca, "tls-verify-client", "required",
                      NULL);
    icfg_t *nocert = cli_icfg();
    icfg_t *withcert = icfg("tls-ca", f_ca, "tls-cert", f_cli, "tls-key",
                            f_cli_key, NULL);
    zl_instance_t *srv, *cli;
    uint16_t port;
    sinfo_t c, s;

    /* Without a client certificate: both ends fail. */
    trec_new();
    T->srv_echo = true;
    T->connect_send = "no cert";
    srv = start_server(sc, &rec_h, NULL, &port);
    cli = start_client(nocert, "127.0.0.1", port);
    CHECK(zl_test_wait_count(&T->side[CLI].errs, 1, WAIT_MS) == 1,
          "client saw no error");
    CHECK(zl_test_wait_count(&T->side[SRV].errs, 1, WAIT_MS) == 1,
          "server saw no error");
    c = snap(CLI);
    s = snap(SRV);
    CHECK(c.err_code == ZL_ETLS && c.err_stage == ZL_STAGE_TLS,
          "client error %s '%s'", zl_err_name(c.err_code), c.err_msg);
    CHECK(s.err_code == ZL_ETLS && has(s.err_msg, "certificate"),
          "server error %s '%s'", zl_err_name(s.err_code), s.err_msg);
    CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].connects), 0);
    CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].rbytes), 0);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].rbytes), 0);
    wait_client_closed();
    zl_instance_free(cli);
    trec_done();

    /* With one: echo works, the server sees who. */
    trec_new();
    T->srv_echo = true;
    T->connect_send = "with cert";
    cli = start_client(withcert, "127.0.0.1", port);
    CHECK(cli_got(9, WAIT_MS),
          "no echo with a client certificate: %s", snap(CLI).err_msg);
    s = snap(SRV);
    CHECK(has(s.subject, "CN=zltk test client"), "server peer-subject '%s'",
          s.subject);
    CU_ASSERT_STRING_EQUAL(snap(CLI).data, "with cert");
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].errs), 0);
    zl_instance_free(cli);
    zl_instance_free(srv);
    trec_done();
    free(sc);
    free(nocert);
    free(withcert);
}

/* ------------------------------------------------------------ 6. ALPN */

static void test_alpn(void)
{
    icfg_t *sc = icfg("tls-cert", f_srv, "tls-key", f_srv_key, "tls-alpn",
                      "h2, http/1.1", NULL);
    icfg_t *cc = icfg("tls-ca", f_ca, "tls-alpn", "http/1.1,h2", NULL);
    icfg_t *bad_cc = icfg("tls-ca", f_ca, "tls-alpn", "spdy/1", NULL);
    zl_instance_t *srv, *cli;
    uint16_t port;

    trec_new();
    T->srv_echo = true;
    T->connect_send = "alpn";
    srv = start_server(sc, &rec_h, NULL, &port);
    cli = start_client(cc, "127.0.0.1", port);
    CHECK(cli_got(4, WAIT_MS),
          "no echo: %s", snap(CLI).err_msg);
    /* The server's preference wins. */
    CHECK(!strcmp(snap(CLI).alpn[0], "h2"), "client alpn '%s', want h2",
          snap(CLI).alpn[0]);
    CHECK(!strcmp(snap(SRV).alpn[0], "h2"), "server alpn '%s', want h2",
          snap(SRV).alpn[0]);
    zl_instance_free(cli);
    trec_done();

    /* Nothing in common: the server refuses the handshake. */
    trec_new();
    cli = start_client(bad_cc, "127.0.0.1", port);
    expect_client_tls_fail("application protocol", NULL, __LINE__);
    wait_client_closed();
    zl_instance_free(cli);
    zl_instance_free(srv);
    trec_done();
    free(sc);
    free(cc);
    free(bad_cc);
}

/* ------------------------------------------------------------ 7. data */

/* Sent from on_open, long before the handshake: delivered after it. */
static void test_send_before_handshake(void)
{
    icfg_t *sc = srv_icfg();
    icfg_t *cc = cli_icfg();
    zl_instance_t *srv, *cli;
    uint16_t port;
    const size_t n = 200 * KIB;

    trec_new();
    T->open_bytes = n;
    srv = start_server(sc, echo_handler, echo_plugin, &port);
    cli = start_client(cc, "127.0.0.1", port);
    CHECK(cli_got(n, WAIT_MS),
          "echoed %ld of %zu bytes sent in on_open (%s)",
          atomic_load(&T->side[CLI].rbytes), n, snap(CLI).err_msg);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].mismatches), 0);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].errs), 0);
    /* Under the default high mark (1 MiB): never busy. */
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].busy_rc), 0);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].busy_on), 0);
    zl_instance_free(cli);
    trec_done();

    /* A short message. */
    trec_new();
    T->open_send = "early bird";
    cli = start_client(cc, "127.0.0.1", port);
    CHECK(cli_got(10, WAIT_MS),
          "short early send not echoed: %s", snap(CLI).err_msg);
    CU_ASSERT_STRING_EQUAL(snap(CLI).data, "early bird");
    zl_instance_free(cli);
    zl_instance_free(srv);
    trec_done();

    /* Send, then close, both in on_open: the layer finishes the handshake,
     * writes the data and close_notify, then closes. */
    trec_new();
    T->open_send = "said and gone";
    T->open_close = true;
    srv = start_server(sc, &rec_h, NULL, &port);
    cli = start_client(cc, "127.0.0.1", port);
    CHECK(zl_test_wait_count(&T->side[SRV].errs, 1, WAIT_MS) == 1,
          "server saw no end of stream");
    CU_ASSERT_STRING_EQUAL(snap(SRV).data, "said and gone");
    CHECK(snap(SRV).err_code == ZL_EOF, "server error %s '%s'",
          zl_err_name(snap(SRV).err_code), snap(SRV).err_msg);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].connects), 0);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].errs), 0);
    wait_client_closed();
    zl_instance_free(cli);
    zl_instance_free(srv);
    trec_done();
    free(sc);
    free(cc);
}

/* Over the high mark before the handshake: the layer's queue counts like
 * the connection's — ZL_CONN_BUSY and on_busy(true) at once, queued()
 * includes it, on_busy(false) once it drained; nothing lost. */
static void test_busy_before_handshake(void)
{
    icfg_t *sc = srv_icfg();
    icfg_t *cc = cli_icfg();
    zl_instance_t *srv, *cli;
    uint16_t port;
    const size_t n = 600 * KIB;

    trec_new();
    T->open_bytes = n; /* in pieces of 200, 100 and 300 KiB */
    T->cli_high = 128 * KIB;
    T->cli_low = 32 * KIB;
    srv = start_server(sc, echo_handler, echo_plugin, &port);
    cli = start_client(cc, "127.0.0.1", port);
    CHECK(cli_got(n, WAIT_MS),
          "echoed %ld of %zu bytes sent before the handshake (%s)",
          atomic_load(&T->side[CLI].rbytes), n, snap(CLI).err_msg);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].mismatches), 0);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].errs), 0);
    CHECK(atomic_load(&T->side[CLI].busy_rc) == 3,
          "%ld of 3 sends over the high mark answered ZL_CONN_BUSY",
          atomic_load(&T->side[CLI].busy_rc));
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].busy_early), 1);
    CHECK(atomic_load(&T->side[CLI].open_queued) >= (long)n,
          "queued() = %ld after sending %zu bytes before the handshake",
          atomic_load(&T->side[CLI].open_queued), n);
    CHECK(zl_test_wait_count(&T->side[CLI].busy_off, 1, WAIT_MS) == 1,
          "no on_busy(false) after the early data drained");
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].busy_on),
                    atomic_load(&T->side[CLI].busy_off));
    zl_instance_free(cli);
    zl_instance_free(srv);
    trec_done();
    free(sc);
    free(cc);
}

/* A handler that pauses in on_recv gets nothing more — though OpenSSL
 * holds more plaintext from the same read — until it resumes (here from
 * another thread); then the rest arrives in order. */
static void test_pause_holds_plaintext(void)
{
    icfg_t *sc = srv_icfg();
    icfg_t *cc = cli_icfg();
    const size_t sizes[] = {48 * KIB, MIB};

    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        zl_instance_t *srv, *cli;
        uint16_t port;
        const size_t n = sizes[k];
        long got;

        trec_new();
        T->open_bytes = n;
        T->srv_sink = true;
        T->srv_pause_on_recv = true;
        srv = start_server(sc, &rec_h, NULL, &port);
        cli = start_client(cc, "127.0.0.1", port);
        CHECK(zl_test_wait_count(&T->side[SRV].recv_calls, 1, WAIT_MS) >= 1,
              "server got nothing (%s)", snap(SRV).err_msg);
        usleep(slow_ms(300) * 1000);
        got = atomic_load(&T->side[SRV].rbytes);
        CHECK(atomic_load(&T->side[SRV].recv_calls) == 1 && got < (long)n,
              "%zu bytes: %ld on_recv calls (%ld bytes) while paused", n,
              atomic_load(&T->side[SRV].recv_calls), got);
        CU_ASSERT_PTR_NOT_NULL_FATAL(T->srv_sess);
        atomic_store(&T->srv_resumed, true);
        host->resume(T->srv_sess);
        CHECK(zl_test_wait_count(&T->side[SRV].rbytes, (long)n, WAIT_MS) ==
                  (long)n,
              "%zu bytes: %ld arrived after resume", n,
              atomic_load(&T->side[SRV].rbytes));
        CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].mismatches), 0);
        CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].errs), 0);
        zl_instance_free(cli);
        zl_instance_free(srv);
        host->session_unref(T->srv_sess);
        trec_done();
    }
    free(sc);
    free(cc);
}

/* 100 connections, 1 MiB each way, every byte checked. */
static void test_many_connections(void)
{
    enum { N = 100 };
    icfg_t *sc = srv_icfg();
    icfg_t *cc = cli_icfg();
    zl_instance_t *srv, *cli[N];
    uint16_t port;
    size_t bulk = zl_test_slow() > 1 ? 128 * KIB : MIB;
    uint64_t t0 = zl_now_ms();
    long done;

    trec_new();
    T->bulk = bulk;
    srv = start_server(sc, echo_handler, echo_plugin, &port);
    for (int i = 0; i < N; i++)
        cli[i] = start_client(cc, "127.0.0.1", port);
    done = zl_test_wait_count(&T->bulk_done, N, 20000);
    CHECK(done == N, "%ld of %d connections echoed %zu bytes (errors %ld: %s)",
          done, N, bulk, atomic_load(&T->side[CLI].errs), snap(CLI).err_msg);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].mismatches), 0);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].errs), 0);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].rbytes), (long)(N * bulk));
    CHECK(zl_test_wait_count(&T->side[CLI].closed, N, WAIT_MS) == N,
          "clients not closed");
    if (getenv("ZLTK_TEST_VERBOSE"))
        fprintf(stderr, "\n    %d x %zu bytes echoed in %llu ms\n", N, bulk,
                (unsigned long long)(zl_now_ms() - t0));
    for (int i = 0; i < N; i++)
        zl_instance_free(cli[i]);
    zl_instance_free(srv);
    trec_done();
    free(sc);
    free(cc);
}

/* Send 1 MiB and close at once: the peer gets all of it, then EOF. */
static void test_close_with_pending(void)
{
    icfg_t *sc = srv_icfg();
    icfg_t *cc = cli_icfg();
    zl_instance_t *srv, *cli;
    uint16_t port;
    sinfo_t s;

    trec_new();
    T->bulk = MIB;
    T->bulk_close_at_once = true;
    T->srv_sink = true;
    srv = start_server(sc, &rec_h, NULL, &port);
    cli = start_client(cc, "127.0.0.1", port);
    CHECK(zl_test_wait_count(&T->side[SRV].errs, 1, WAIT_MS) == 1,
          "server saw no end of stream (got %ld bytes)",
          atomic_load(&T->side[SRV].rbytes));
    s = snap(SRV);
    CHECK(s.err_code == ZL_EOF, "server error %s '%s', want ZL_EOF",
          zl_err_name(s.err_code), s.err_msg);
    CHECK(s.rbytes_at_err == (long)MIB, "%ld bytes before end of stream, "
          "want %u", s.rbytes_at_err, MIB);
    CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].mismatches), 0);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].errs), 0);
    wait_client_closed();
    zl_instance_free(cli);
    zl_instance_free(srv);
    trec_done();
    free(sc);
    free(cc);
}

/* The handler aborts in its first on_recv while the layer still holds
 * more plaintext from the same read: nothing more reaches it. */
static void test_abort_in_recv(void)
{
    icfg_t *sc = srv_icfg();
    icfg_t *cc = cli_icfg();
    zl_instance_t *srv, *cli;
    uint16_t port;

    trec_new();
    T->open_bytes = 256 * KIB; /* arrives in one burst after the handshake */
    T->srv_sink = true;
    T->srv_abort_on_recv = true;
    srv = start_server(sc, &rec_h, NULL, &port);
    cli = start_client(cc, "127.0.0.1", port);
    CHECK(zl_test_wait_count(&T->side[SRV].closed, 1, WAIT_MS) == 1,
          "the server session did not close");
    CHECK(atomic_load(&T->side[SRV].rbytes) <= 16 * KIB,
          "%ld bytes reached a handler that aborted after the first read",
          atomic_load(&T->side[SRV].rbytes));
    CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].mismatches), 0);
    zl_instance_free(cli);
    zl_instance_free(srv);
    trec_done();
    free(sc);
    free(cc);
}

/* Half-close: close_notify + FIN after the data; the echo still comes back,
 * then end of stream. */
static void test_shutdown(void)
{
    icfg_t *sc = srv_icfg();
    icfg_t *cc = cli_icfg();
    zl_instance_t *srv, *cli;
    uint16_t port;
    sinfo_t c;

    trec_new();
    T->connect_send = "half";
    T->connect_shutdown = true;
    srv = start_server(sc, echo_handler, echo_plugin, &port);
    cli = start_client(cc, "127.0.0.1", port);
    CHECK(zl_test_wait_count(&T->side[CLI].errs, 1, WAIT_MS) == 1,
          "no end of stream after the half-close");
    c = snap(CLI);
    CU_ASSERT_STRING_EQUAL(c.data, "half");
    CHECK(c.err_code == ZL_EOF, "client error %s '%s', want ZL_EOF",
          zl_err_name(c.err_code), c.err_msg);
    CHECK(c.rbytes_at_err == 4, "%ld bytes before end of stream",
          c.rbytes_at_err);
    wait_client_closed();
    zl_instance_free(cli);
    zl_instance_free(srv);
    trec_done();
    free(sc);
    free(cc);
}

/* ------------------------------------------------------------ 8. edges */

static void test_byte_by_byte(void)
{
    icfg_t *sc = srv_icfg();
    icfg_t *cc = cli_icfg();
    zl_instance_t *srv, *cli;
    relay_t *r;
    const char *msg = "one byte at a time";
    uint16_t port;

    trec_new();
    T->connect_send = msg;
    T->srv_echo = true;
    srv = start_server(sc, &rec_h, NULL, &port);
    r = relay_start(port, 0, 0);
    cli = start_client(cc, "127.0.0.1", r->port);
    CHECK(cli_got(strlen(msg), 2 * WAIT_MS),
          "no echo through the relay: %s", snap(CLI).err_msg);
    CU_ASSERT_STRING_EQUAL(snap(CLI).data, msg);
    CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].connects), 1);
    CHECK(atomic_load(&r->writes) > 500, "only %ld single-byte writes",
          atomic_load(&r->writes));
    zl_instance_free(cli);
    relay_stop(r);
    zl_instance_free(srv);
    trec_done();
    free(sc);
    free(cc);
}

/* 1 MiB each way through a relay that cuts the stream into pieces of
 * 1..3000 bytes: records reach both layers split at arbitrary points (a
 * header cut in two, a record spread over many reads, several in one). */
static void test_random_splits(void)
{
    icfg_t *sc = srv_icfg();
    icfg_t *cc = cli_icfg();
    const unsigned seeds[] = {1, 77, 4242};

    for (size_t k = 0; k < sizeof(seeds) / sizeof(seeds[0]); k++) {
        zl_instance_t *srv, *cli;
        relay_t *r;
        uint16_t port;

        trec_new();
        T->bulk = MIB;
        T->srv_echo = true;
        srv = start_server(sc, &rec_h, NULL, &port);
        r = relay_start(port, 3000, seeds[k]);
        cli = start_client(cc, "127.0.0.1", r->port);
        CHECK(zl_test_wait_count(&T->bulk_done, 1, 4 * WAIT_MS) == 1,
              "seed %u: %ld of %u bytes echoed through the splitting relay "
              "(%s)", seeds[k], atomic_load(&T->side[CLI].rbytes), MIB,
              snap(CLI).err_msg);
        CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].mismatches), 0);
        CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].errs), 0);
        CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].rbytes), (long)MIB);
        CHECK(atomic_load(&r->writes) > 600, "seed %u: only %ld pieces",
              seeds[k], atomic_load(&r->writes));
        zl_instance_free(cli);
        relay_stop(r);
        zl_instance_free(srv);
        trec_done();
    }
    free(sc);
    free(cc);
}

static void test_peer_closes_mid_handshake(void)
{
    icfg_t *sc = srv_icfg();
    icfg_t *cc = cli_icfg();
    raw_t *r = raw_start(RAW_HANGUP);
    zl_instance_t *srv, *cli;
    uint16_t port;
    int fd;

    /* A server that hangs up after the first bytes of the ClientHello. */
    trec_new();
    cli = start_client(cc, "127.0.0.1", r->port);
    expect_client_tls_fail("during the TLS handshake", NULL, __LINE__);
    wait_client_closed();
    zl_instance_free(cli);
    raw_stop(r);
    trec_done();

    /* A client that sends half a record and hangs up. */
    trec_new();
    srv = start_server(sc, &rec_h, NULL, &port);
    fd = connect_to(port);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(send(fd, "\x16\x03\x01\x02", 4, MSG_NOSIGNAL), 4);
    zl_test_sleep_ms(20);
    close(fd);
    CHECK(zl_test_wait_count(&T->side[SRV].errs, 1, WAIT_MS) == 1,
          "server saw no error");
    CHECK(snap(SRV).err_code == ZL_ETLS &&
              has(snap(SRV).err_msg, "during the TLS handshake"),
          "server error %s '%s'", zl_err_name(snap(SRV).err_code),
          snap(SRV).err_msg);
    CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].connects), 0);
    zl_instance_free(srv);
    trec_done();
    free(sc);
    free(cc);
}

static void test_handshake_timeout(void)
{
    icfg_t *sc = icfg("tls-cert", f_srv, "tls-key", f_srv_key,
                      "tls-handshake-timeout", "300", NULL);
    icfg_t *cc = icfg("tls-ca", f_ca, "tls-handshake-timeout", "300", NULL);
    raw_t *r = raw_start(RAW_SILENT);
    zl_instance_t *srv, *cli;
    uint64_t t0, dt;
    uint16_t port;
    int fd;

    /* Client side: the server accepts and never answers. */
    trec_new();
    t0 = zl_now_ms();
    cli = start_client(cc, "127.0.0.1", r->port);
    zl_test_wait_count(&T->side[CLI].errs, 1, 2000);
    dt = zl_now_ms() - t0;
    expect_client_tls_fail("timed out", NULL, __LINE__);
    CHECK(has(snap(CLI).err_msg, "300 ms"), "message '%s' lacks the limit",
          snap(CLI).err_msg);
    CHECK(dt >= 250 && dt < slow_ms(2000), "timed out after %llu ms",
          (unsigned long long)dt);
    wait_client_closed();
    zl_instance_free(cli);
    raw_stop(r);
    trec_done();

    /* Server side: a client connects and says nothing. */
    trec_new();
    srv = start_server(sc, &rec_h, NULL, &port);
    t0 = zl_now_ms();
    fd = connect_to(port);
    CU_ASSERT_FATAL(fd >= 0);
    CHECK(zl_test_wait_count(&T->side[SRV].errs, 1, 2000) == 1,
          "server handshake did not time out");
    dt = zl_now_ms() - t0;
    CHECK(snap(SRV).err_code == ZL_ETLS &&
              has(snap(SRV).err_msg, "timed out"),
          "server error %s '%s'", zl_err_name(snap(SRV).err_code),
          snap(SRV).err_msg);
    CHECK(dt >= 250 && dt < slow_ms(2000), "server timed out after %llu ms",
          (unsigned long long)dt);
    CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].connects), 0);
    close(fd);
    zl_instance_free(srv);
    trec_done();
    free(sc);
    free(cc);
}

/* Stopping a client whose handshake is stuck returns at once (nothing
 * queued to deliver), without waiting for the handshake timeout; the
 * handler hears nothing but on_closed. */
static void test_stop_during_handshake(void)
{
    icfg_t *cc = cli_icfg(); /* default 10 s timeout */
    raw_t *r = raw_start(RAW_SILENT);
    zl_instance_t *cli;
    uint64_t t0;

    trec_new();
    cli = start_client(cc, "127.0.0.1", r->port);
    CHECK(zl_test_wait_flag(&r->accepted, WAIT_MS), "never connected");
    zl_test_sleep_ms(50);
    t0 = zl_now_ms();
    zl_instance_free(cli);
    CHECK(zl_now_ms() - t0 < slow_ms(1000), "stop took %llu ms",
          (unsigned long long)(zl_now_ms() - t0));
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].connects), 0);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].errs), 0);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].closed), 1);
    raw_stop(r);
    trec_done();
    free(cc);
}

/* Plain text to a TLS server: a TLS error that says so. */
static void test_plain_client(void)
{
    static const char req[] = "GET / HTTP/1.0\r\n\r\n";
    icfg_t *sc = srv_icfg();
    zl_instance_t *srv;
    uint16_t port;
    size_t n = 0;
    int fd;

    trec_new();
    srv = start_server(sc, &rec_h, NULL, &port);
    fd = connect_to(port);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) ==
              (ssize_t)sizeof(req) - 1);
    CHECK(zl_test_wait_count(&T->side[SRV].errs, 1, WAIT_MS) == 1,
          "server saw no error");
    CHECK(snap(SRV).err_code == ZL_ETLS &&
              has(snap(SRV).err_msg, "TLS handshake with 127.0.0.1:") &&
              (has(snap(SRV).err_msg, "http request") ||
               has(snap(SRV).err_msg, "wrong version number")),
          "server error %s '%s'", zl_err_name(snap(SRV).err_code),
          snap(SRV).err_msg);
    CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].connects), 0);
    /* The server closed (OpenSSL sends no alert to an HTTP request). */
    for (;;) {
        char buf[256];
        ssize_t k = recv(fd, buf, sizeof(buf), 0);
        if (k > 0) {
            n += (size_t)k;
            continue;
        }
        CHECK(k == 0 || errno == ECONNRESET, "the server did not close: %s",
              strerror(errno));
        break;
    }
    CHECK(n < 64, "%zu bytes back: more than an alert", n);
    close(fd);
    zl_instance_free(srv);
    trec_done();
    free(sc);
}

/* ------------------------------------------------------------ 9. resume */

/* The server hangs up after each handshake; the client reconnects and
 * offers the session it got: the second handshake is a resumption.
 * (Also a regression test: a client behind a layer once never reconnected,
 * because upper_err from the layer's on_err closed the connection as if
 * the user had.) */
static void test_resumption(void)
{
    icfg_t *sc = srv_icfg();
    icfg_t *cc = cli_icfg();
    zl_instance_t *srv, *cli;
    uint16_t port;
    long n;
    sinfo_t c;

    trec_new();
    T->srv_close_on_connect = true;
    srv = start_server(sc, &rec_h, NULL, &port);
    cli = start_client_opts(cc, "127.0.0.1", port, true);
    n = zl_test_wait_count(&T->side[CLI].connects, 2, WAIT_MS);
    c = snap(CLI);
    CHECK(n >= 2, "the client connected %ld time(s) (errors %ld, last: %s); "
          "a client behind a layer must reconnect after the server closed",
          n, atomic_load(&T->side[CLI].errs), c.err_msg);
    CHECK(!strcmp(c.resumed[0], "no"), "first handshake resumed='%s'",
          c.resumed[0]);
    if (n >= 2)
        CHECK(!strcmp(c.resumed[1], "yes"), "second handshake resumed='%s' "
              "(%s)", c.resumed[1], c.version[1]);
    zl_instance_free(cli);
    zl_instance_free(srv);
    trec_done();
    free(sc);
    free(cc);
}

/* ------------------------------------------------------------ suite */

static int suite_init(void)
{
    const zl_registration_t *r;

    host = zl_plugins_host_api();
    pattern = malloc(PAT_MAX);
    if (!pattern)
        return -1;
    for (size_t i = 0; i < PAT_MAX; i++)
        pattern[i] = (uint8_t)(i * 31u + (i >> 11));
    if (!zl_test_tls_suite_init(&plugins, &certs, "tls",
                                (const char *const[]){"echo", NULL}))
        return -1;
    r = zl_plugins_find_provider(plugins.reg, ZL_PROVIDES_SERVER, "echo",
                                 &echo_plugin);
    echo_handler = r ? r->vtable : NULL;
    return echo_handler ? 0 : -1;
}

static int suite_cleanup(void)
{
    zl_test_tls_suite_cleanup(&plugins, &certs);
    free(pattern);
    pattern = NULL;
    return 0;
}

/* Section 10 (pinning), defined after the table. */
static void test_pin_ephemeral_by_name(void);
static void test_pin_by_fingerprint(void);
static void test_pin_mismatch(void);
static void test_pin_config_errors(void);
static void test_ephemeral_certificate(void);
static void test_idle_releases_buffers(void);

int zl_test_register_tls(void)
{
    static const zl_test_case_t cases[] = {
        {"echo over TLS, verified by IP", test_echo_by_ip},
        {"echo over TLS, verified by name with SNI", test_echo_by_name},
        {"tls-server-name", test_server_name_key},
        {"verify: self-signed", test_verify_self_signed},
        {"verify: hostname mismatch", test_verify_hostname_mismatch},
        {"verify: IP address mismatch", test_verify_ip_mismatch},
        {"verify: expired", test_verify_expired},
        {"verify: unknown CA", test_verify_unknown_ca},
        {"tls-verify = false", test_verify_false},
        {"config errors name key and file", test_config_errors},
        {"tls-ciphers / tls-ciphersuites config errors",
         test_cipher_config_errors},
        {"mutual TLS", test_mutual_tls},
        {"ALPN", test_alpn},
        {"send before the handshake", test_send_before_handshake},
        {"records split at random points", test_random_splits},
        {"busy before the handshake", test_busy_before_handshake},
        {"pause holds decoded plaintext", test_pause_holds_plaintext},
        {"100 connections x 1 MiB", test_many_connections},
        {"close with ciphertext pending", test_close_with_pending},
        {"half-close", test_shutdown},
        {"abort inside on_recv", test_abort_in_recv},
        {"handshake one byte at a time", test_byte_by_byte},
        {"peer closes mid-handshake", test_peer_closes_mid_handshake},
        {"handshake timeout", test_handshake_timeout},
        {"stop during the handshake", test_stop_during_handshake},
        {"plain text to a TLS server", test_plain_client},
        {"session resumption across reconnects", test_resumption},
        {"tls-cert = ephemeral, tls-pin = @NAME", test_pin_ephemeral_by_name},
        {"tls-pin = fingerprint", test_pin_by_fingerprint},
        {"tls-pin mismatch", test_pin_mismatch},
        {"tls-pin / ephemeral config errors", test_pin_config_errors},
        {"the ephemeral certificate", test_ephemeral_certificate},
        {"idle sessions hold no record buffers", test_idle_releases_buffers},
        {NULL, NULL},
    };

    return zl_test_add_suite("tls", suite_init, suite_cleanup, cases);
}

/* ------------------------------------------------------------ 10. pinning */

/* tls-cert = ephemeral and tls-pin.  No certificate files: every server
 * here makes its certificate in memory, so these tests use none of suite
 * init's files.  The handler is the recording one, plus the two
 * fingerprints transport_info reports, recorded before t_connect counts
 * the connection. */

#define PIN_FP_TEXT 96 /* "AA:...:FF" and its NUL */

typedef struct pin_fps {
    char peer[2][PIN_FP_TEXT]; /* "peer-fingerprint" of each side */
    char own[2][PIN_FP_TEXT];  /* "fingerprint" */
} pin_fps_t;

static pin_fps_t pin_fps; /* under T->mu */

static void pin_connect(zl_session_t *s, void *state, const zl_error_t *err)
{
    tst_t *st = state;

    if (!err) {
        pthread_mutex_lock(&T->mu);
        zl_test_tls_info(s, "peer-fingerprint", pin_fps.peer[st->who],
                         PIN_FP_TEXT);
        zl_test_tls_info(s, "fingerprint", pin_fps.own[st->who],
                         PIN_FP_TEXT);
        pthread_mutex_unlock(&T->mu);
    }
    t_connect(s, state, err);
}

static const zl_handler_t pin_h = {
    .struct_size = sizeof(zl_handler_t),
    .state_size = sizeof(tst_t),
    .on_open = t_open,
    .on_connect = pin_connect,
    .on_recv = t_recv,
    .on_err = t_err,
    .on_flush = t_flush,
    .on_busy = t_busy,
    .on_closed = t_closed,
};

static pin_fps_t pin_snap(void)
{
    pin_fps_t v;

    pthread_mutex_lock(&T->mu);
    v = pin_fps;
    pthread_mutex_unlock(&T->mu);
    return v;
}

/* Servers with tls-cert = ephemeral log their fingerprint at message
 * level: quiet while a test makes them, except where the line is the
 * point.  Returns the level to restore. */
static zl_log_level_t pin_quiet(void)
{
    zl_log_level_t level = zl_log_get_level();

    if (level > ZL_LOG_WARNING)
        zl_log_set_level(ZL_LOG_WARNING);
    return level;
}

static void pin_trec_new(void)
{
    trec_new();
    memset(&pin_fps, 0, sizeof(pin_fps));
}

/* Before trec_done while a recording server lives on: its sessions of
 * this record have closed (their callbacks use T). */
static void pin_settle(void)
{
    long opened = atomic_load(&T->side[SRV].opened);

    CHECK(zl_test_wait_count(&T->side[SRV].closed, opened, WAIT_MS) >= opened,
          "server sessions did not close");
}

/* The server certificate at 127.0.0.1:port, as a plain OpenSSL client
 * gets it (no verification); NULL on failure. */
static X509 *pin_fetch_cert(uint16_t port)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    X509 *x = NULL;
    int fd = connect_to(port);

    if (fd >= 0 && ssl && SSL_set_fd(ssl, fd) == 1 && SSL_connect(ssl) == 1) {
        x = SSL_get1_peer_certificate(ssl);
        SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    ERR_clear_error();
    return x;
}

/* Its SHA-256 fingerprint as "AA:BB:...", computed here. */
static void pin_fetch_fp(uint16_t port, char *fp)
{
    X509 *x = pin_fetch_cert(port);
    unsigned char md[32];
    unsigned int n = 0;

    fp[0] = '\0';
    if (x && X509_digest(x, EVP_sha256(), md, &n) && n == 32)
        for (unsigned i = 0; i < n; i++)
            snprintf(fp + 3 * i, 4, i + 1 < n ? "%02X:" : "%02X", md[i]);
    X509_free(x);
}

/* Whether fp looks like "AA:BB:...:FF" (32 bytes, upper case). */
static bool pin_fp_form(const char *fp)
{
    if (strlen(fp) != 95)
        return false;
    for (int i = 0; i < 95; i++)
        if (i % 3 == 2 ? fp[i] != ':'
                       : !((fp[i] >= '0' && fp[i] <= '9') ||
                           (fp[i] >= 'A' && fp[i] <= 'F')))
            return false;
    return true;
}

static zl_instance_t *pin_client(icfg_t *c, const char *hostname,
                                 uint16_t port)
{
    return start_client_with(c, &pin_h, hostname, port, false);
}

/* One client of config cc to hostname:port: its message must come back
 * (the server echoes).  Starts a record (pin_trec_new) that the caller
 * reads, then ends with trec_done. */
static void pin_echo_ok(icfg_t *cc, const char *hostname, uint16_t port,
                        int line)
{
    static const char msg[] = "pinned hello";
    zl_instance_t *cli;
    long n;

    pin_trec_new();
    T->connect_send = msg;
    T->srv_echo = true;
    cli = pin_client(cc, hostname, port);
    n = zl_test_wait_count(&T->side[CLI].rbytes, (long)strlen(msg), WAIT_MS);
    zl_test_check_at(__FILE__, line, n == (long)strlen(msg),
                     "no echo for a pinned client to %s (errors %ld: %s)",
                     hostname, atomic_load(&T->side[CLI].errs),
                     snap(CLI).err_msg);
    zl_test_check_at(__FILE__, line, !strcmp(snap(CLI).data, msg),
                     "echoed '%s'", snap(CLI).data);
    zl_test_check_at(__FILE__, line, atomic_load(&T->side[CLI].errs) == 0,
                     "client error: %s", snap(CLI).err_msg);
    zl_instance_free(cli);
    pin_settle();
}

/* The text after "ephemeral certificate, SHA-256 fingerprint " on the
 * log line of [server.name], or "". */
static void pin_logged_fp(const char *text, const char *name, char *fp)
{
    char *tag = g_strdup_printf("[server.%s] ephemeral certificate, SHA-256 "
                                "fingerprint ",
                                name);
    const char *p = text ? strstr(text, tag) : NULL;

    fp[0] = '\0';
    if (p)
        snprintf(fp, PIN_FP_TEXT, "%.95s", p + strlen(tag));
    g_free(tag);
}

/* Ephemeral server, client pinned with @NAME, verification on: echo works
 * by address and by name; the fingerprint is logged at message level and
 * is the one both ends report. */
static void test_pin_ephemeral_by_name(void)
{
    char dir[] = "/tmp/zltk-tls-pin-XXXXXX";
    zl_log_options_t lo = {.level = ZL_LOG_MESSAGE};
    zl_log_level_t level = zl_log_get_level();
    icfg_t *sc = icfg("tls-cert", "ephemeral", NULL);
    icfg_t *cc = icfg("tls-pin", "@eph-by-name", NULL);
    zl_instance_t *srv, *cli;
    char *path, *text = NULL, logged[PIN_FP_TEXT];
    const char *msg = "hello pinned";
    uint16_t port;
    pin_fps_t f;
    sinfo_t c;
    int lrc;

    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    path = g_strdup_printf("%s/log", dir);
    lo.file = path;
    lrc = zl_log_init(&lo);
    CU_ASSERT_EQUAL(lrc, 0);
    pin_trec_new();
    T->connect_send = msg;
    T->srv_echo = true;
    /* The server first: @NAME is resolved when the client is made. */
    srv = start_server_as(sc, "eph-by-name", &pin_h, NULL, &port);
    cli = pin_client(cc, "127.0.0.1", port);
    CHECK(cli_got(strlen(msg), WAIT_MS),
          "no echo with tls-pin = @NAME (errors %ld: %s)",
          atomic_load(&T->side[CLI].errs), snap(CLI).err_msg);
    c = snap(CLI);
    f = pin_snap();
    CU_ASSERT_STRING_EQUAL(c.data, msg);
    CU_ASSERT_EQUAL(atomic_load(&T->side[CLI].errs), 0);
    CHECK(has(c.subject, "CN=zltk ephemeral eph-by-name"),
          "peer-subject '%s'", c.subject);
    CHECK(pin_fp_form(f.peer[CLI]), "client peer-fingerprint '%s'",
          f.peer[CLI]);
    CHECK(!strcmp(f.peer[CLI], f.own[SRV]),
          "client sees %s, server says it is %s", f.peer[CLI], f.own[SRV]);
    CHECK(f.peer[SRV][0] == '\0', "server peer-fingerprint '%s' without a "
          "client certificate", f.peer[SRV]);
    CHECK(f.own[CLI][0] == '\0', "client fingerprint '%s' without a client "
          "certificate", f.own[CLI]);
    zl_instance_free(cli);
    pin_settle();
    trec_done();

    /* By name: the certificate's DNS:localhost is checked too. */
    pin_echo_ok(cc, "localhost", port, __LINE__);
    trec_done();

    zl_instance_free(srv);
    if (lrc == 0)
        zl_log_shutdown();
    zl_log_set_level(level);
    CU_ASSERT(g_file_get_contents(path, &text, NULL, NULL));
    pin_logged_fp(text, "eph-by-name", logged);
    CHECK(pin_fp_form(logged) && has(text, "tls: [server.eph-by-name] "
                                           "ephemeral certificate"),
          "no fingerprint logged for [server.eph-by-name]: '%s'",
          text ? text : "(none)");
    CHECK(!strcmp(logged, f.peer[CLI]), "logged %s, the client saw %s",
          logged, f.peer[CLI]);
    g_free(text);
    zl_test_rm_tree(dir);
    g_free(path);
    free(sc);
    free(cc);
}

/* Pinned by the hex fingerprint, read from a first connection: with
 * colons and without, upper and lower case; the name is still checked
 * unless tls-verify = false. */
static void test_pin_by_fingerprint(void)
{
    icfg_t *sc = icfg("tls-cert", "ephemeral", NULL);
    zl_instance_t *srv, *cli;
    char fp[PIN_FP_TEXT], plain[65];
    icfg_t *cc;
    uint16_t port;
    size_t n = 0;
    zl_log_level_t level = pin_quiet();

    srv = start_server_as(sc, "eph-by-fp", echo_handler, echo_plugin, &port);
    pin_fetch_fp(port, fp);
    CU_ASSERT_FATAL(pin_fp_form(fp));
    for (const char *p = fp; *p; p++)
        if (*p != ':')
            plain[n++] = (char)g_ascii_tolower(*p);
    plain[n] = '\0';

    cc = icfg("tls-pin", fp, NULL);
    pin_echo_ok(cc, "127.0.0.1", port, __LINE__);
    CHECK(!strcmp(pin_snap().peer[CLI], fp), "peer-fingerprint %s, want %s",
          pin_snap().peer[CLI], fp);
    trec_done();
    free(cc);

    cc = icfg("tls-pin", plain, NULL);
    pin_echo_ok(cc, "localhost", port, __LINE__);
    trec_done();
    free(cc);

    /* As openssl x509 -noout -fingerprint -sha256 prints it. */
    {
        char *pasted = g_strdup_printf("sha256 Fingerprint=%s", fp);
        cc = icfg("tls-pin", pasted, NULL);
        pin_echo_ok(cc, "127.0.0.1", port, __LINE__);
        trec_done();
        free(cc);
        g_free(pasted);
    }

    /* A name the certificate does not carry: refused, as without a pin... */
    cc = icfg("tls-pin", fp, "tls-server-name", "other.example", NULL);
    pin_trec_new();
    cli = pin_client(cc, "127.0.0.1", port);
    expect_client_tls_fail("hostname mismatch", NULL, __LINE__);
    wait_client_closed();
    zl_instance_free(cli);
    trec_done();
    free(cc);

    /* ... unless names are not checked: the pin alone decides. */
    cc = icfg("tls-pin", fp, "tls-server-name", "other.example",
              "tls-verify", "false", NULL);
    pin_echo_ok(cc, "127.0.0.1", port, __LINE__);
    trec_done();
    free(cc);

    zl_instance_free(srv);
    free(sc);
    zl_log_set_level(level);
}

/* A pin that does not match: ZL_ETLS, "certificate pin mismatch", both
 * fingerprints named, the handler never connected. */
static void test_pin_mismatch(void)
{
    icfg_t *sa = icfg("tls-cert", "ephemeral", NULL);
    icfg_t *sb = icfg("tls-cert", "ephemeral", NULL);
    icfg_t *ca = icfg("tls-pin", "@eph-a", NULL);
    icfg_t *cz = icfg("tls-pin", "00:00:00:00:00:00:00:00:00:00:00:00:00:00:"
                                 "00:00:00:00:00:00:00:00:00:00:00:00:00:00:"
                                 "00:00:00:00",
                      NULL);
    zl_instance_t *a, *b, *cli;
    uint16_t pa, pb;
    char fa[PIN_FP_TEXT], fb[PIN_FP_TEXT], *want;
    zl_log_level_t level = pin_quiet();

    /* Two ephemeral servers: their fingerprints, by a pinned echo each. */
    a = start_server_as(sa, "eph-a", &pin_h, NULL, &pa);
    b = start_server_as(sb, "eph-b", &pin_h, NULL, &pb);
    pin_echo_ok(ca, "127.0.0.1", pa, __LINE__);
    snprintf(fa, sizeof(fa), "%s", pin_snap().own[SRV]);
    pin_fetch_fp(pa, fb);
    pin_settle(); /* its server session uses T too */
    CHECK(!strcmp(fa, fb), "server fingerprint %s, computed %s", fa, fb);
    trec_done();
    {
        icfg_t *cb = icfg("tls-pin", "@eph-b", NULL);
        pin_echo_ok(cb, "127.0.0.1", pb, __LINE__);
        snprintf(fb, sizeof(fb), "%s", pin_snap().own[SRV]);
        trec_done();
        free(cb);
    }
    CU_ASSERT_FATAL(pin_fp_form(fa) && pin_fp_form(fb));
    CHECK(strcmp(fa, fb), "two ephemeral certificates, one fingerprint %s",
          fa);

    /* Pinned to a, connecting to b. */
    pin_trec_new();
    T->connect_send = "must not be sent";
    cli = pin_client(ca, "127.0.0.1", pb);
    expect_client_tls_fail("certificate pin mismatch", NULL, __LINE__);
    want = g_strdup_printf("expected %s, got %s", fa, fb);
    CHECK(has(snap(CLI).err_msg, want), "message '%s' does not say '%s'",
          snap(CLI).err_msg, want);
    g_free(want);
    wait_client_closed();
    CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].rbytes), 0);
    CU_ASSERT_EQUAL(atomic_load(&T->side[SRV].connects), 0);
    zl_instance_free(cli);
    pin_settle();
    trec_done();

    /* A hex pin of nobody. */
    pin_trec_new();
    cli = pin_client(cz, "127.0.0.1", pa);
    expect_client_tls_fail("certificate pin mismatch", NULL, __LINE__);
    CHECK(has(snap(CLI).err_msg, fa), "message '%s' does not name %s",
          snap(CLI).err_msg, fa);
    wait_client_closed();
    zl_instance_free(cli);
    pin_settle();
    trec_done();

    zl_instance_free(a);
    zl_instance_free(b);
    free(sa);
    free(sb);
    free(ca);
    free(cz);
    zl_log_set_level(level);
}

/* Refused configurations, each naming its key. */
static void test_pin_config_errors(void)
{
    icfg_t *c, *sc;
    zl_instance_t *srv;
    uint16_t port;
    zl_log_level_t level = pin_quiet();

    c = icfg("tls-pin", "@unknown", NULL);
    expect_refused(c, false, "tls-pin", __LINE__, "@unknown",
                   "no server instance", "tls-cert = ephemeral", NULL);
    free(c);

    c = icfg("tls-pin", "@", NULL);
    expect_refused(c, false, "tls-pin", __LINE__, "@NAME", NULL);
    free(c);

    c = icfg("tls-pin", "AB:CD:EF", NULL);
    expect_refused(c, false, "tls-pin", __LINE__, "AB:CD:EF", "SHA-256",
                   "64 hex digits", NULL);
    free(c);

    c = icfg("tls-pin", "zz", NULL);
    expect_refused(c, false, "tls-pin", __LINE__, "not a hex digit", NULL);
    free(c);

    c = icfg("tls-pin", "0123456789abcdef0123456789abcdef01234567", NULL);
    expect_refused(c, false, "tls-pin", __LINE__, "SHA-1", NULL);
    free(c);

    c = icfg("tls-cert", "ephemeral", "tls-key", "/nonexistent/x.key", NULL);
    expect_refused(c, true, "tls-key", __LINE__, "ephemeral",
                   "remove tls-key", NULL);
    free(c);

    c = icfg("tls-cert", "ephemeral", NULL);
    expect_refused(c, false, "tls-cert", __LINE__, "servers", NULL);
    free(c);

    /* A server that is gone no longer resolves. */
    pin_trec_new();
    sc = icfg("tls-cert", "ephemeral", NULL);
    srv = start_server_as(sc, "eph-gone", echo_handler, echo_plugin, &port);
    zl_instance_free(srv);
    c = icfg("tls-pin", "@eph-gone", NULL);
    expect_refused(c, false, "tls-pin", __LINE__, "@eph-gone", NULL);
    free(c);
    free(sc);
    trec_done();
    zl_log_set_level(level);
}

/* The ephemeral certificate itself, as a plain OpenSSL client sees it:
 * self-signed, EC P-256, names, dates, CN; a fresh one per instance. */
static void test_ephemeral_certificate(void)
{
    icfg_t *sc = icfg("tls-cert", "ephemeral", NULL);
    zl_instance_t *srv;
    uint16_t port;
    X509 *x = NULL, *prev = NULL;
    zl_log_level_t level = pin_quiet();

    pin_trec_new();
    for (int round = 0; round < 2; round++) {
        int day, sec;

        srv = start_server_as(sc, "eph-cert", &pin_h, NULL, &port);
        x = pin_fetch_cert(port);
        zl_instance_free(srv);
        CU_ASSERT_PTR_NOT_NULL_FATAL(x);

        CHECK(X509_self_signed(x, 1) == 1, "not self-signed");
        CHECK(X509_check_host(x, "localhost", 0, 0, NULL) == 1,
              "no DNS:localhost");
        CHECK(X509_check_ip_asc(x, "127.0.0.1", 0) == 1, "no IP:127.0.0.1");
        CHECK(X509_check_ip_asc(x, "::1", 0) == 1, "no IP:::1");
        CHECK(X509_check_host(x, "example.com", 0, 0, NULL) != 1,
              "names example.com");
        {
            char cn[128] = "";
            X509_NAME_get_text_by_NID(X509_get_subject_name(x),
                                      NID_commonName, cn, sizeof(cn));
            CHECK(!strcmp(cn, "zltk ephemeral eph-cert"), "CN '%s'", cn);
        }
        {
            EVP_PKEY *k = X509_get0_pubkey(x);
            char group[64] = "";
            size_t gl = 0;
            CHECK(k && EVP_PKEY_is_a(k, "EC") &&
                      EVP_PKEY_get_group_name(k, group, sizeof(group), &gl) &&
                      !strcmp(group, "prime256v1"),
                  "key is not EC P-256 (group '%s')", group);
        }
        /* notBefore about an hour ago, notAfter about 30 days ahead. */
        CU_ASSERT(ASN1_TIME_diff(&day, &sec, X509_get0_notBefore(x),
                                 NULL) == 1);
        CHECK(day == 0 && sec >= 3600 - 60 && sec <= 3600 + 60,
              "notBefore %d days %d s ago, want 1 h", day, sec);
        CU_ASSERT(ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notAfter(x)) ==
                  1);
        CHECK(day * 86400L + sec >= 30 * 86400L - 60 &&
                  day * 86400L + sec <= 30 * 86400L + 60,
              "notAfter in %d days %d s, want 30 days", day, sec);
        if (prev) {
            CHECK(X509_cmp(prev, x) != 0, "the same certificate twice");
            CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(prev),
                                   X509_get0_serialNumber(x)) != 0,
                  "the same serial number twice");
            X509_free(prev);
        }
        prev = x;
    }
    X509_free(prev);
    trec_done();
    free(sc);
    zl_log_set_level(level);
}

/* ------------------------------------------------------------ idle memory */

#define IDLE_CONNS 32

/* Heap in use, all arenas. */
static G_GNUC_UNUSED size_t heap_used(void)
{
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
}

/* One OpenSSL client connection to 127.0.0.1:port that echoed 64 bytes
 * through the server, left open; false on any failure.  (Unused under the
 * sanitizers, where the test that calls it is skipped.) */
static G_GNUC_UNUSED bool idle_client(SSL_CTX *ctx, uint16_t port,
                                      SSL **ssl, int *fd)
{
    char out[64], in[64];
    size_t got = 0, n;

    memset(out, 'i', sizeof(out));
    *fd = connect_to(port);
    *ssl = *fd >= 0 ? SSL_new(ctx) : NULL;
    if (!*ssl || SSL_set_fd(*ssl, *fd) != 1 || SSL_connect(*ssl) != 1 ||
        SSL_write(*ssl, out, sizeof(out)) != (int)sizeof(out))
        return false;
    while (got < sizeof(in) && SSL_read_ex(*ssl, in + got, sizeof(in) - got, &n))
        got += n;
    /* This client's last read keeps its record buffer (16 KiB): not the
     * server's to answer for. */
    SSL_free_buffers(*ssl);
    return got == sizeof(in) && !memcmp(in, out, sizeof(in));
}

/* An idle session holds neither the layer's 16 KiB plaintext buffer nor
 * OpenSSL's 16 KiB record buffer (issue 13): 32 connections to the echo
 * plugin over tls, one echo each, then idle for less than a manager tick.
 * Both ends of a connection are counted; this test's client frees its own
 * record buffer (SSL_free_buffers), so what is left is OpenSSL's floor on
 * both ends plus the layer's and the host's records.  Measured on Debian 12
 * (OpenSSL 3.0.22): 34 KB each (server about 14.5, client about 19.2: the
 * server's certificate), 50 KB with tls-io.c's release of the buffers
 * reverted; the bound sits between.  Not under a sanitizer, whose
 * allocator mallinfo2() does not see. */
static void test_idle_releases_buffers(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    fprintf(stderr, "(skipped under a sanitizer: mallinfo2 does not see "
                    "its allocator) ");
#else
    icfg_t *sc = srv_icfg();
    SSL *ssl[IDLE_CONNS + 1] = {0};
    int fd[IDLE_CONNS + 1];
    zl_instance_t *srv;
    SSL_CTX *ctx;
    uint16_t port;
    size_t m0, m1, per;
    bool ok = true;

    trec_new();
    srv = start_server(sc, echo_handler, echo_plugin, &port);
    ctx = SSL_CTX_new(TLS_client_method());
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* The first connection pays for what is allocated once. */
    ok = idle_client(ctx, port, &ssl[IDLE_CONNS], &fd[IDLE_CONNS]);
    usleep(100 * 1000);
    m0 = heap_used();
    for (int i = 0; ok && i < IDLE_CONNS; i++)
        ok = idle_client(ctx, port, &ssl[i], &fd[i]);
    usleep(300 * 1000); /* the server's last reads end; < one 2 s tick */
    m1 = heap_used();
    CHECK(ok, "a TLS echo through the server failed");
    per = m1 > m0 ? (m1 - m0) / IDLE_CONNS : 0;
    fprintf(stderr, "(%zu B per idle connection) ", per);
    CHECK(per < 40 * 1024,
          "%zu bytes of heap per idle TLS connection (both ends): the "
          "sessions keep their 16 KiB buffers", per);
    for (int i = 0; i <= IDLE_CONNS; i++) {
        SSL_free(ssl[i]);
        if (ssl[i] || fd[i] >= 0)
            close(fd[i]);
    }
    SSL_CTX_free(ctx);
    ERR_clear_error();
    zl_instance_free(srv);
    free(sc);
    trec_done();
#endif
}
