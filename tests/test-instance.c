/* zltk tests — instances and sessions (zltk/instance.h, zltk/handler.h and
 * the instance/session half of the host API), driven by handlers built
 * here: no plugin is loaded.
 *
 * The suite runs on one runtime (2 pollers, 2 workers).  Each test makes a
 * record (R), builds a zl_handler_t from the recording callbacks below plus
 * the hooks it needs, and talks to its sessions over 127.0.0.1 from plain
 * blocking sockets or from a client instance.
 *
 * Callbacks run on poller threads.  Counters are atomics, incremented last
 * in each callback, so a test that has waited for a count also sees what
 * the callback recorded before it; everything else in the record is under
 * R->mu (a pthread mutex: GLib's mutexes confuse ThreadSanitizer).  Every
 * callback checks that it runs on its session's poller, that its state is
 * the block its on_open initialised (magic and an id-specific fill of the
 * whole block), and that on_closed has not run; a violation counts in
 * R->bad and fails the test.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <glib.h>

#include "test.h"

#define KIB 1024u
#define WAIT_MS 2000u
#define MAXS 8   /* sessions recorded per test */
#define MAXEV 48 /* events recorded per session */
#define MAXC 4   /* connection attempts recorded per session */

static const zl_host_api_t *host;

static unsigned slow_ms(unsigned ms)
{
    return ms * zl_test_slow();
}

/* ------------------------------------------------------------ state */

#define ST_MAGIC 0x5e551011u
#define ST_TAIL 1001 /* odd on purpose: the whole block is written */

typedef struct st {
    uint32_t magic;
    int id;        /* index of the session in R->ss */
    bool closed;   /* set by on_closed: nothing may follow */
    int attempts;  /* on_connect calls this state has seen */
    uint64_t bytes;
    uint8_t tail[ST_TAIL]; /* filled with 0x40 + id by on_open */
} st_t;

/* state_size ends exactly at the end of tail. */
#define ST_SIZE (offsetof(st_t, tail) + ST_TAIL)

/* ------------------------------------------------------------ record */

typedef struct srec {
    zl_session_t *s;
    st_t *state;
    zl_instance_t *inst;
    void *idata; /* host->instance_data() seen by on_open */
    bool server;
    char name[32];
    char ev[MAXEV]; /* O open, C connect, F failed attempt, R recv (runs
                       collapsed), E err, B/b busy on/off, X closed */
    int nev;
    int err_code;
    int nconn;
    int conn_code[MAXC]; /* 0: connected */
    zl_stage_t conn_stage[MAXC];
    char conn_msg[MAXC][160];
    int attempts_seen[MAXC];
    zl_addr_t peer, local;
    char data[256];
    size_t ndata;
} srec_t;

typedef struct rec rec_t;
struct rec {
    pthread_mutex_t mu;
    srec_t ss[MAXS];
    atomic_int nsess;
    atomic_int bad;
    char bad_msg[256];
    atomic_long opened, connects, conn_fails, recvs, rbytes, errs, closed,
        flushes, busy_on, busy_off, managers, finished;
    atomic_long closed_at_finish; /* R->closed when on_finished ran */

    /* Hooks, set before the instance starts. */
    int (*open_hook)(zl_session_t *s, st_t *st);
    void (*connect_hook)(zl_session_t *s, st_t *st, const zl_error_t *err);
    void (*recv_hook)(zl_session_t *s, st_t *st, zl_buf_t *buf);
    void (*busy_hook)(zl_session_t *s, st_t *st, bool busy);
    void (*flush_hook)(zl_session_t *s, st_t *st);
    void (*closed_hook)(zl_session_t *s, st_t *st);

    /* Instance configuration: key, value, ..., NULL. */
    const char *const *cfg;
    /* Reports (main thread, but under mu anyway). */
    int nreports;
    bool report_has_key[4];
    char report_key[4][32];
    char report_msg[4][256];

    /* instance_new / instance_free (main thread). */
    int inew_mode;
    int inew_rc;
    atomic_long inew_calls, ifree_calls;
    void *inew_data, *ifree_data;

    /* A session reference handed to the test thread. */
    _Atomic(zl_session_t *) held;
    atomic_int pump; /* backpressure / accessor tests */
    atomic_long queued_after_send, max_queued, busy_returns;
};

static rec_t *R;

static rec_t *rec_new(void)
{
    rec_t *r = calloc(1, sizeof(*r));

    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    pthread_mutex_init(&r->mu, NULL);
    R = r;
    return r;
}

/* Call when every instance of the test is freed. */
static void rec_done(void)
{
    if (atomic_load(&R->bad)) {
        pthread_mutex_lock(&R->mu);
        fprintf(stderr, "\n    violation: %s (%d in all)\n", R->bad_msg,
                atomic_load(&R->bad));
        pthread_mutex_unlock(&R->mu);
    }
    CU_ASSERT_EQUAL(atomic_load(&R->bad), 0);
    pthread_mutex_destroy(&R->mu);
    free(R);
    R = NULL;
}

static void bad(const char *fmt, ...) ZL_PRINTF(1, 2);
static void bad(const char *fmt, ...)
{
    va_list ap;

    if (atomic_fetch_add(&R->bad, 1) != 0)
        return;
    pthread_mutex_lock(&R->mu);
    va_start(ap, fmt);
    vsnprintf(R->bad_msg, sizeof(R->bad_msg), fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&R->mu);
}

static srec_t *srec(const st_t *st)
{
    return st->id >= 0 && st->id < MAXS ? &R->ss[st->id] : NULL;
}

static void ev_add(const st_t *st, char e)
{
    srec_t *r = srec(st);

    if (!r)
        return;
    pthread_mutex_lock(&R->mu);
    if (!(e == 'R' && r->nev && r->ev[r->nev - 1] == 'R') &&
        r->nev < MAXEV - 1)
        r->ev[r->nev++] = e;
    pthread_mutex_unlock(&R->mu);
}

static bool tail_ok(const st_t *st)
{
    for (size_t i = 0; i < ST_TAIL; i++)
        if (st->tail[i] != (uint8_t)(0x40 + st->id))
            return false;
    return true;
}

/* Checks shared by every callback after on_open. */
static st_t *cb_check(zl_session_t *s, void *state, const char *what)
{
    st_t *st = state;
    srec_t *r;

    if (!zl_poller_is_current(host->session_poller(s)))
        bad("%s: not on the session's poller", what);
    if (st->magic != ST_MAGIC) {
        bad("%s: state %p was not initialised by on_open", what, state);
        return st;
    }
    r = srec(st);
    /* r->s and r->state were written by on_open on this same thread. */
    if (r && (r->state != st || r->s != s))
        bad("%s: session %d got another session's state", what, st->id);
    if (st->closed)
        bad("%s: called after on_closed", what);
    return st;
}

/* ------------------------------------------------------------ callbacks */

static int b_open(zl_session_t *s, void *state, zl_instance_t *inst)
{
    st_t *st = state;
    const uint8_t *p = state;
    srec_t *r;
    int id, rc;

    for (size_t i = 0; i < ST_SIZE; i++)
        if (p[i]) {
            bad("on_open: state byte %zu is not zero", i);
            break;
        }
    if (!zl_poller_is_current(host->session_poller(s)))
        bad("on_open: not on the session's poller");
    if (host->session_instance(s) != inst)
        bad("on_open: session_instance() is not the instance");
    id = atomic_fetch_add(&R->nsess, 1);
    if (id >= MAXS)
        bad("more than %d sessions", MAXS);
    st->magic = ST_MAGIC;
    st->id = id < MAXS ? id : -1;
    memset(st->tail, 0x40 + id, ST_TAIL);
    r = srec(st);
    if (r) {
        pthread_mutex_lock(&R->mu);
        r->s = s;
        r->state = st;
        r->inst = inst;
        r->idata = host->instance_data(inst);
        r->server = host->instance_is_server(inst);
        snprintf(r->name, sizeof(r->name), "%s", host->session_name(s));
        pthread_mutex_unlock(&R->mu);
    }
    ev_add(st, 'O');
    rc = R->open_hook ? R->open_hook(s, st) : 0;
    atomic_fetch_add(&R->opened, 1);
    return rc;
}

static void b_connect(zl_session_t *s, void *state, const zl_error_t *err)
{
    st_t *st = cb_check(s, state, "on_connect");
    srec_t *r = srec(st);

    st->attempts++;
    if (r) {
        pthread_mutex_lock(&R->mu);
        if (r->nconn < MAXC) {
            r->conn_code[r->nconn] = err ? err->code : 0;
            r->conn_stage[r->nconn] = err ? err->stage : ZL_STAGE_NONE;
            snprintf(r->conn_msg[r->nconn], sizeof(r->conn_msg[0]), "%s",
                     err && err->message ? err->message : "");
            r->attempts_seen[r->nconn] = st->attempts;
        }
        r->nconn++;
        if (!err) {
            r->peer = *host->peer(s);
            r->local = *host->local(s);
        }
        pthread_mutex_unlock(&R->mu);
    }
    ev_add(st, err ? 'F' : 'C');
    if (R->connect_hook)
        R->connect_hook(s, st, err);
    atomic_fetch_add(err ? &R->conn_fails : &R->connects, 1);
}

static void b_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    st_t *st = cb_check(s, state, "on_recv");
    srec_t *r = srec(st);

    st->bytes += buf->len;
    if (r) {
        pthread_mutex_lock(&R->mu);
        size_t room = sizeof(r->data) - r->ndata;
        size_t n = buf->len < room ? buf->len : room;
        memcpy(r->data + r->ndata, buf->data, n);
        r->ndata += n;
        pthread_mutex_unlock(&R->mu);
    }
    ev_add(st, 'R');
    if (R->recv_hook)
        R->recv_hook(s, st, buf);
    atomic_fetch_add(&R->rbytes, (long)buf->len);
    atomic_fetch_add(&R->recvs, 1);
}

static void b_err(zl_session_t *s, void *state, const zl_error_t *err)
{
    st_t *st = cb_check(s, state, "on_err");
    srec_t *r = srec(st);

    if (r) {
        pthread_mutex_lock(&R->mu);
        r->err_code = err->code;
        pthread_mutex_unlock(&R->mu);
    }
    ev_add(st, 'E');
    atomic_fetch_add(&R->errs, 1);
}

static void b_flush(zl_session_t *s, void *state)
{
    st_t *st = cb_check(s, state, "on_flush");

    if (R->flush_hook)
        R->flush_hook(s, st);
    atomic_fetch_add(&R->flushes, 1);
}

static void b_busy(zl_session_t *s, void *state, bool busy)
{
    st_t *st = cb_check(s, state, "on_busy");

    ev_add(st, busy ? 'B' : 'b');
    if (R->busy_hook)
        R->busy_hook(s, st, busy);
    atomic_fetch_add(busy ? &R->busy_on : &R->busy_off, 1);
}

static void b_manager(zl_session_t *s, void *state)
{
    cb_check(s, state, "on_manager");
    atomic_fetch_add(&R->managers, 1);
}

static void b_closed(zl_session_t *s, void *state)
{
    st_t *st = cb_check(s, state, "on_closed");

    if (st->magic == ST_MAGIC && !tail_ok(st))
        bad("on_closed: session %d's state was overwritten", st->id);
    ev_add(st, 'X');
    if (R->closed_hook)
        R->closed_hook(s, st);
    st->closed = true;
    atomic_fetch_add(&R->closed, 1);
}

static const zl_handler_t h_base = {
    .struct_size = sizeof(zl_handler_t),
    .state_size = ST_SIZE,
    .on_open = b_open,
    .on_connect = b_connect,
    .on_recv = b_recv,
    .on_err = b_err,
    .on_flush = b_flush,
    .on_busy = b_busy,
    .on_manager = b_manager,
    .on_closed = b_closed,
};

/* ------------------------------------------------------------ instances */

static const char *cfg_get(void *ctx, const char *key)
{
    rec_t *r = ctx;

    for (const char *const *p = r->cfg; p && p[0]; p += 2)
        if (!strcmp(p[0], key))
            return p[1];
    return NULL;
}

static void cfg_report(void *ctx, const char *key, const char *message)
{
    rec_t *r = ctx;

    pthread_mutex_lock(&r->mu);
    if (r->nreports < 4) {
        r->report_has_key[r->nreports] = key != NULL;
        snprintf(r->report_key[r->nreports], sizeof(r->report_key[0]), "%s",
                 key ? key : "");
        snprintf(r->report_msg[r->nreports], sizeof(r->report_msg[0]), "%s",
                 message ? message : "");
    }
    r->nreports++;
    pthread_mutex_unlock(&r->mu);
}

static void on_finished(zl_instance_t *inst, void *ctx)
{
    rec_t *r = ctx;

    if (!zl_poller_current())
        bad("on_finished: not on a poller thread");
    if (!inst)
        bad("on_finished: no instance");
    atomic_store(&r->closed_at_finish, atomic_load(&r->closed));
    atomic_fetch_add(&r->finished, 1);
}

static void opts_server(zl_instance_options_t *o, const char *name,
                        const zl_handler_t *h)
{
    memset(o, 0, sizeof(*o));
    zl_client_options_init(&o->client);
    zl_server_options_init(&o->server_opts);
    o->name = name;
    o->server = true;
    o->handler = h;
    o->config = cfg_get;
    o->report = cfg_report;
    o->ctx = R;
    o->on_finished = on_finished;
    o->server_opts.host = "127.0.0.1";
}

static void opts_client(zl_instance_options_t *o, const char *name,
                        const zl_handler_t *h, uint16_t port)
{
    memset(o, 0, sizeof(*o));
    zl_client_options_init(&o->client);
    zl_server_options_init(&o->server_opts);
    o->name = name;
    o->handler = h;
    o->config = cfg_get;
    o->report = cfg_report;
    o->ctx = R;
    o->on_finished = on_finished;
    o->client.host = "127.0.0.1";
    o->client.port = port;
    o->client.connect_timeout_ms = 2000;
}

static zl_instance_t *start(const zl_instance_options_t *o)
{
    zl_instance_t *inst = NULL;

    CU_ASSERT_EQUAL_FATAL(zl_instance_new(&inst, o), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(inst);
    CU_ASSERT_EQUAL_FATAL(zl_instance_start(inst), 0);
    return inst;
}

static uint16_t server_port(const zl_instance_t *inst)
{
    const zl_addr_t *a = zl_instance_server_addr(inst);

    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_NOT_EQUAL(zl_addr_port(a), 0);
    return zl_addr_port(a);
}

/* Copy of session i's record, taken under the lock. */
static srec_t snap(int i)
{
    srec_t r;

    pthread_mutex_lock(&R->mu);
    r = R->ss[i];
    pthread_mutex_unlock(&R->mu);
    return r;
}

/* The index of the first recorded session with server == server, or -1. */
static int find_sess(bool server)
{
    int n = atomic_load(&R->nsess), found = -1;

    pthread_mutex_lock(&R->mu);
    for (int i = 0; i < n && i < MAXS && found < 0; i++)
        if (R->ss[i].s && R->ss[i].server == server)
            found = i;
    pthread_mutex_unlock(&R->mu);
    return found;
}

/* ------------------------------------------------------------ sockets */

static uint16_t fd_port(int fd, bool peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    zl_addr_t a;

    if ((peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
              : getsockname(fd, (struct sockaddr *)&ss, &len)) < 0 ||
        zl_addr_from_sockaddr(&a, (struct sockaddr *)&ss, len) < 0)
        return 0;
    return zl_addr_port(&a);
}

static int raw_listen(uint16_t *port)
{
    zl_addr_t a;
    int fd;

    zl_addr_from_ip(&a, "127.0.0.1", 0);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, &a.u.sa, a.len) < 0 || listen(fd, 16) < 0) {
        close(fd);
        return -1;
    }
    *port = fd_port(fd, false);
    return fd;
}

static int raw_accept(int lfd)
{
    struct pollfd pfd = {lfd, POLLIN, 0};
    int fd;

    if (poll(&pfd, 1, (int)slow_ms(WAIT_MS)) != 1)
        return -1;
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        zl_test_sock_timeouts(fd, slow_ms(WAIT_MS));
    return fd;
}

/* Blocking client; rcvbuf > 0 sets SO_RCVBUF before connecting. */
static int raw_connect(uint16_t port, int rcvbuf)
{
    zl_addr_t a;
    int fd;

    zl_addr_from_ip(&a, "127.0.0.1", port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    zl_test_sock_timeouts(fd, slow_ms(WAIT_MS));
    if (connect(fd, &a.u.sa, a.len) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Byte off of the test pattern. */
static uint8_t pat(uint64_t off)
{
    return (uint8_t)(off * 31u + (off >> 11));
}

static void pat_fill(uint8_t *p, uint64_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pat(off + i);
}

/* Receive exactly n bytes of the pattern from offset off; returns the bytes
 * received, *bad counts mismatching reads. */
static size_t raw_recv_pat(int fd, uint64_t off, size_t n, int *mismatch)
{
    uint8_t buf[16 * KIB];
    size_t got = 0;

    while (got < n) {
        size_t want = n - got < sizeof(buf) ? n - got : sizeof(buf);
        ssize_t r = recv(fd, buf, want, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pat(off + got + (size_t)i)) {
                (*mismatch)++;
                break;
            }
        got += (size_t)r;
    }
    return got;
}

/* ------------------------------------------------------------ order */

/* Two server sessions from plain sockets: each sees on_open,
 * on_connect(NULL), on_recv…, on_err(ZL_EOF) when its peer closes, and
 * on_closed last; each state starts zeroed, is its own (the whole
 * state_size block is filled with a per-session byte and checked at
 * on_closed), and addresses and names are the session's. */
static void test_server_order(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    zl_instance_stats_t stats;
    uint16_t port, pa, pb;
    int a, b;

    rec_new();
    opts_server(&o, "order", &h_base);
    inst = start(&o);
    port = server_port(inst);
    CU_ASSERT_STRING_EQUAL(zl_instance_get_name(inst), "order");

    a = raw_connect(port, 0);
    b = raw_connect(port, 0);
    CU_ASSERT_FATAL(a >= 0 && b >= 0);
    pa = fd_port(a, false);
    pb = fd_port(b, false);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->connects, 2, WAIT_MS), 2);
    CU_ASSERT(zl_test_send_all(a, "alpha", 5));
    CU_ASSERT(zl_test_send_all(b, "bravo!", 6));
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->rbytes, 11, WAIT_MS), 11);
    close(a);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 1, WAIT_MS), 1);
    close(b);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 2, WAIT_MS), 2);

    CU_ASSERT_EQUAL(atomic_load(&R->nsess), 2);
    for (int i = 0; i < 2; i++) {
        srec_t r = snap(i);
        bool is_a = r.ndata == 5;

        CU_ASSERT_STRING_EQUAL(r.ev, "OCREX");
        CU_ASSERT_EQUAL(r.err_code, ZL_EOF);
        CU_ASSERT(r.server);
        CU_ASSERT_PTR_EQUAL(r.inst, inst);
        CU_ASSERT_EQUAL(r.nconn, 1);
        CU_ASSERT_EQUAL(r.conn_code[0], 0);
        CU_ASSERT_EQUAL(r.ndata, is_a ? 5u : 6u);
        CU_ASSERT(memcmp(r.data, is_a ? "alpha" : "bravo!", r.ndata) == 0);
        CU_ASSERT_EQUAL(zl_addr_port(&r.peer), is_a ? pa : pb);
        CU_ASSERT_EQUAL(zl_addr_port(&r.local), port);
        CU_ASSERT(strncmp(r.name, "session#", 8) == 0);
    }
    CU_ASSERT_PTR_NOT_EQUAL(snap(0).state, snap(1).state);
    CU_ASSERT_PTR_NOT_EQUAL(snap(0).s, snap(1).s);
    CU_ASSERT_STRING_NOT_EQUAL(snap(0).name, snap(1).name);
    CU_ASSERT_EQUAL(atomic_load(&R->errs), 2);

    zl_instance_stop(inst);
    zl_instance_get_stats(inst, &stats);
    CU_ASSERT_EQUAL(stats.sessions, 2);
    CU_ASSERT_EQUAL(stats.connected, 2);
    CU_ASSERT_EQUAL(stats.active, 0);
    CU_ASSERT_EQUAL(stats.failed, 0);
    CU_ASSERT_EQUAL(stats.last_error, ZL_EOF);
    zl_instance_free(inst);
    CU_ASSERT_EQUAL(atomic_load(&R->finished), 0); /* servers never finish */
    rec_done();
}

/* ------------------------------------------------------------ clients */

static void ping_then_shutdown(zl_session_t *s, st_t *st, const zl_error_t *err)
{
    (void)st;
    if (err)
        return;
    if (host->send(s, "ping", 4) != 0)
        bad("client send failed");
    host->shutdown(s);
}

/* A client instance against a plain listener: on_open once, on_connect
 * (NULL), the reply, on_err(ZL_EOF), on_closed, then on_finished (the
 * client ended on its own).  shutdown() half-closes: the peer reads end of
 * stream and can still answer. */
static void test_client_session(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    zl_instance_stats_t stats;
    uint16_t port;
    char buf[8];
    int lfd, fd;
    srec_t r;

    rec_new();
    R->connect_hook = ping_then_shutdown;
    lfd = raw_listen(&port);
    CU_ASSERT_FATAL(lfd >= 0);
    opts_client(&o, "cli", &h_base, port);
    inst = start(&o);
    fd = raw_accept(lfd);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(zl_test_recv_exact(fd, buf, 4) && memcmp(buf, "ping", 4) == 0);
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), 0); /* the client's shutdown */
    CU_ASSERT(zl_test_send_all(fd, "pong", 4));
    close(fd);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->finished, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(atomic_load(&R->closed_at_finish), 1);

    r = snap(0);
    CU_ASSERT_EQUAL(atomic_load(&R->nsess), 1);
    CU_ASSERT_STRING_EQUAL(r.ev, "OCREX");
    CU_ASSERT_FALSE(r.server);
    CU_ASSERT_EQUAL(r.nconn, 1);
    CU_ASSERT_EQUAL(r.conn_code[0], 0);
    CU_ASSERT_EQUAL(r.err_code, ZL_EOF);
    CU_ASSERT(r.ndata == 4 && memcmp(r.data, "pong", 4) == 0);
    CU_ASSERT_EQUAL(zl_addr_port(&r.peer), port);
    CU_ASSERT(strncmp(r.name, "client#", 7) == 0);

    zl_instance_stop(inst);
    zl_instance_get_stats(inst, &stats);
    CU_ASSERT_EQUAL(stats.sessions, 1);
    CU_ASSERT_EQUAL(stats.connected, 1);
    CU_ASSERT_EQUAL(stats.failed, 0);
    CU_ASSERT_EQUAL(stats.active, 0);
    zl_instance_free(inst);
    close(lfd);
    CU_ASSERT_EQUAL(atomic_load(&R->finished), 1);
    rec_done();
}

/* The connection's idle timeout reaches handlers through the instance: a
 * silent peer of a server instance, and a client instance whose server
 * never speaks, end with on_err(ZL_ETIMEOUT) then on_closed; the client's
 * outcome says "idle", and both peers read a graceful end of stream. */
static void test_idle_sessions(void)
{
    zl_instance_options_t o;
    zl_instance_t *srv, *cli;
    zl_instance_stats_t stats;
    uint16_t port;
    char msg[256];
    int lfd, fd;
    srec_t r;

    rec_new();
    opts_server(&o, "idle-srv", &h_base);
    o.server_opts.conn.idle_timeout_ms = 300;
    o.server_opts.conn.manager_ms = 50;
    srv = start(&o);
    fd = raw_connect(server_port(srv), 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 1, WAIT_MS), 1);
    r = snap(0);
    CU_ASSERT_STRING_EQUAL(r.ev, "OCEX");
    CU_ASSERT_EQUAL(r.err_code, ZL_ETIMEOUT);
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), 0);
    close(fd);
    zl_instance_stop(srv);
    zl_instance_get_stats(srv, &stats);
    CU_ASSERT_EQUAL(stats.last_error, ZL_ETIMEOUT);
    zl_instance_free(srv);
    rec_done();

    rec_new();
    lfd = raw_listen(&port);
    CU_ASSERT_FATAL(lfd >= 0);
    opts_client(&o, "idle-cli", &h_base, port);
    o.client.conn.idle_timeout_ms = 300;
    o.client.conn.manager_ms = 50;
    cli = start(&o);
    fd = raw_accept(lfd);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->finished, 1, WAIT_MS), 1);
    r = snap(0);
    CU_ASSERT_STRING_EQUAL(r.ev, "OCEX");
    CU_ASSERT_EQUAL(r.err_code, ZL_ETIMEOUT);
    zl_instance_get_stats(cli, &stats);
    CU_ASSERT_EQUAL(stats.last_error, ZL_ETIMEOUT);
    zl_instance_last_error(cli, msg, sizeof(msg));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "idle"));
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), 0);
    close(fd);
    zl_instance_stop(cli);
    zl_instance_free(cli);
    close(lfd);
    rec_done();
}

/* A refused connection: on_open, on_connect(ZL_EREFUSED at the connect
 * stage), on_closed, on_finished; the instance counts one failure and keeps
 * the message. */
static void test_client_refused(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    zl_instance_stats_t stats;
    uint16_t port = zl_test_closed_port();
    char msg[256], portstr[8];
    srec_t r;

    CU_ASSERT_NOT_EQUAL_FATAL(port, 0);
    rec_new();
    opts_client(&o, "refused", &h_base, port);
    inst = start(&o);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->finished, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(atomic_load(&R->closed_at_finish), 1);

    r = snap(0);
    CU_ASSERT_STRING_EQUAL(r.ev, "OFX");
    CU_ASSERT_EQUAL(r.nconn, 1);
    CU_ASSERT_EQUAL(r.conn_code[0], ZL_EREFUSED);
    CU_ASSERT_EQUAL(r.conn_stage[0], ZL_STAGE_CONNECT);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.conn_msg[0], "refused"));
    CU_ASSERT_EQUAL(atomic_load(&R->opened), 1);
    CU_ASSERT_EQUAL(atomic_load(&R->connects), 0);
    CU_ASSERT_EQUAL(atomic_load(&R->errs), 0);

    zl_instance_get_stats(inst, &stats);
    CU_ASSERT_EQUAL(stats.failed, 1);
    CU_ASSERT_EQUAL(stats.connected, 0);
    CU_ASSERT_EQUAL(stats.sessions, 1);
    CU_ASSERT_EQUAL(stats.last_error, ZL_EREFUSED);
    zl_instance_last_error(inst, msg, sizeof(msg));
    snprintf(portstr, sizeof(portstr), "%u", port);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "refused"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, portstr));

    zl_instance_stop(inst);
    zl_instance_get_stats(inst, &stats);
    CU_ASSERT_EQUAL(stats.active, 0);
    zl_instance_free(inst);
    CU_ASSERT_EQUAL(atomic_load(&R->finished), 1);
    CU_ASSERT_EQUAL(atomic_load(&R->closed), 1);
    rec_done();
}

/* reconnect with max_attempts = 2: two attempts, one session: on_open once,
 * and the state the first attempt wrote is there for the second. */
static void test_client_reconnect_state(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    zl_instance_stats_t stats;
    uint16_t port = zl_test_closed_port();
    srec_t r;

    CU_ASSERT_NOT_EQUAL_FATAL(port, 0);
    rec_new();
    opts_client(&o, "retry", &h_base, port);
    o.client.reconnect = true;
    o.client.max_attempts = 2;
    o.client.reconnect_min_ms = 10;
    o.client.reconnect_max_ms = 20;
    inst = start(&o);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->finished, 1, WAIT_MS), 1);

    r = snap(0);
    CU_ASSERT_EQUAL(atomic_load(&R->nsess), 1);
    CU_ASSERT_EQUAL(atomic_load(&R->opened), 1);
    CU_ASSERT_STRING_EQUAL(r.ev, "OFFX");
    CU_ASSERT_EQUAL(r.nconn, 2);
    CU_ASSERT_EQUAL(r.conn_code[0], ZL_EREFUSED);
    CU_ASSERT_EQUAL(r.conn_code[1], ZL_EREFUSED);
    CU_ASSERT_EQUAL(r.attempts_seen[0], 1);
    CU_ASSERT_EQUAL(r.attempts_seen[1], 2); /* the state survived */

    zl_instance_stop(inst);
    zl_instance_get_stats(inst, &stats);
    CU_ASSERT_EQUAL(stats.failed, 2);
    CU_ASSERT_EQUAL(stats.connected, 0);
    CU_ASSERT_EQUAL(stats.sessions, 1);
    CU_ASSERT_EQUAL(stats.active, 0);
    zl_instance_free(inst);
    CU_ASSERT_EQUAL(atomic_load(&R->closed), 1);
    CU_ASSERT_EQUAL(atomic_load(&R->finished), 1);
    rec_done();
}

static void pair_connect(zl_session_t *s, st_t *st, const zl_error_t *err)
{
    (void)st;
    if (!err && !host->instance_is_server(host->session_instance(s)) &&
        host->send(s, "hello", 5) != 0)
        bad("client send failed");
}

/* Server sessions echo; the client closes itself once it has its echo. */
static void pair_recv(zl_session_t *s, st_t *st, zl_buf_t *buf)
{
    if (host->instance_is_server(host->session_instance(s))) {
        if (host->send(s, buf->data, buf->len) < 0)
            bad("echo failed");
    } else if (st->bytes >= 5) {
        host->close(s);
    }
}

/* A client instance and a server instance: each side's addresses match
 * the other's, the client closes by itself (no on_err on its side, EOF on
 * the server's), and zl_instance_set_address points a client at a server
 * bound later. */
static void test_client_server_pair(void)
{
    zl_instance_options_t so, co;
    zl_instance_t *srv, *cli = NULL;
    uint16_t port;
    int si, ci;

    rec_new();
    R->connect_hook = pair_connect;
    R->recv_hook = pair_recv;
    opts_server(&so, "echo", &h_base);
    srv = start(&so);
    port = server_port(srv);
    CU_ASSERT_EQUAL(zl_instance_set_address(srv, "127.0.0.1", port), -EINVAL);

    opts_client(&co, "pair", &h_base, 9); /* replaced before start */
    CU_ASSERT_EQUAL_FATAL(zl_instance_new(&cli, &co), 0);
    CU_ASSERT_EQUAL(zl_instance_set_address(cli, "127.0.0.1", 0), -EINVAL);
    CU_ASSERT_EQUAL(zl_instance_set_address(cli, "127.0.0.1", port), 0);
    CU_ASSERT_EQUAL_FATAL(zl_instance_start(cli), 0);
    CU_ASSERT_EQUAL(zl_instance_start(cli), -EALREADY);
    CU_ASSERT_EQUAL(zl_instance_set_address(cli, "127.0.0.1", port),
                    -EINVAL);

    CU_ASSERT_EQUAL(zl_test_wait_count(&R->finished, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 2, WAIT_MS), 2);
    si = find_sess(true);
    ci = find_sess(false);
    CU_ASSERT_FATAL(si >= 0 && ci >= 0);
    {
        srec_t s = snap(si), c = snap(ci);

        CU_ASSERT_STRING_EQUAL(c.ev, "OCRX");
        CU_ASSERT_STRING_EQUAL(s.ev, "OCREX");
        CU_ASSERT_EQUAL(s.err_code, ZL_EOF);
        CU_ASSERT(c.ndata == 5 && memcmp(c.data, "hello", 5) == 0);
        CU_ASSERT(s.ndata == 5 && memcmp(s.data, "hello", 5) == 0);
        CU_ASSERT_EQUAL(zl_addr_port(&c.peer), port);
        CU_ASSERT_EQUAL(zl_addr_port(&s.local), port);
        CU_ASSERT_EQUAL(zl_addr_port(&c.local), zl_addr_port(&s.peer));
        CU_ASSERT_PTR_EQUAL(c.inst, cli);
        CU_ASSERT_PTR_EQUAL(s.inst, srv);
    }
    zl_instance_free(cli);
    zl_instance_free(srv);
    rec_done();
}


/* The client fails on its own once it has its echo; the second call is
 * ignored. */
static void fail_recv(zl_session_t *s, st_t *st, zl_buf_t *buf)
{
    if (host->instance_is_server(host->session_instance(s))) {
        if (host->send(s, buf->data, buf->len) < 0)
            bad("echo failed");
    } else if (st->bytes >= 5) {
        host->fail(s, -EIO, "cannot write to %s", "the sink");
        host->fail(s, -ENOSPC, "a second failure");
    }
}

/* host->fail: the handler's own failure becomes the instance's outcome
 * (its kind and message), the session closes gracefully without on_err
 * and without reconnecting (reconnect is on), and the server sees a plain
 * end of stream. */
static void test_client_fail(void)
{
    zl_instance_options_t so, co;
    zl_instance_t *srv, *cli;
    zl_instance_stats_t stats;
    char msg[256];
    int si, ci;

    rec_new();
    R->connect_hook = pair_connect;
    R->recv_hook = fail_recv;
    opts_server(&so, "echo", &h_base);
    srv = start(&so);
    opts_client(&co, "failing", &h_base, server_port(srv));
    co.client.reconnect = true;
    cli = start(&co);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->finished, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 2, WAIT_MS), 2);
    si = find_sess(true);
    ci = find_sess(false);
    CU_ASSERT_FATAL(si >= 0 && ci >= 0);
    CU_ASSERT_STRING_EQUAL(snap(ci).ev, "OCRX"); /* no on_err */
    CU_ASSERT_EQUAL(snap(si).err_code, ZL_EOF);
    zl_instance_get_stats(cli, &stats);
    CU_ASSERT_EQUAL(stats.last_error, ZL_EOTHER);
    CU_ASSERT_EQUAL(stats.connected, 1);
    CU_ASSERT_STRING_EQUAL(zl_instance_last_error(cli, msg, sizeof(msg)),
                           "cannot write to the sink");
    zl_instance_free(cli);
    zl_instance_free(srv);
    rec_done();
}

/* zl_instance_stop of a connected client closes it gracefully (the peer
 * reads what was sent, then end of stream) and waits for on_closed; it
 * does not count as finishing on its own: no on_finished. */
static void test_client_stop(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    zl_instance_stats_t stats;
    uint16_t port;
    char buf[4];
    int lfd, fd;

    rec_new();
    R->connect_hook = pair_connect; /* the client sends "hello" */
    lfd = raw_listen(&port);
    CU_ASSERT_FATAL(lfd >= 0);
    opts_client(&o, "stopped", &h_base, port);
    inst = start(&o);
    fd = raw_accept(lfd);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->connects, 1, WAIT_MS), 1);

    zl_instance_stop(inst);
    CU_ASSERT_EQUAL(atomic_load(&R->closed), 1);
    CU_ASSERT_EQUAL(atomic_load(&R->finished), 0);
    CU_ASSERT(zl_test_recv_exact(fd, buf, 4) && memcmp(buf, "hell", 4) == 0);
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), 0);
    zl_instance_get_stats(inst, &stats);
    CU_ASSERT_EQUAL(stats.active, 0);
    CU_ASSERT_EQUAL(stats.connected, 1);
    CU_ASSERT_STRING_EQUAL(snap(0).ev, "OCX");
    zl_instance_stop(inst);
    zl_instance_free(inst);
    CU_ASSERT_EQUAL(atomic_load(&R->finished), 0);
    CU_ASSERT_EQUAL(atomic_load(&R->closed), 1);
    close(fd);
    close(lfd);
    rec_done();
}

/* ------------------------------------------------------------ config */

#define IDATA_MAGIC 0x1da7a000u

typedef struct idata {
    uint32_t magic;
    const char *greeting, *missing;
    int rc_count, rc_missing_int, rc_verbose, rc_off, rc_missing_bool;
    int64_t count;
    bool verbose, off;
    bool data_null_on_entry, on_poller;
    const char *name;
    bool is_server;
} idata_t;

enum {
    INEW_READ_ALL,     /* read every key, store data, return 0 */
    INEW_TYPED_IGNORE, /* read "count" and "verbose", store, return 0 */
    INEW_TYPED_RETURN, /* read them, store nothing, return the error */
    INEW_FAIL_SILENT,  /* return R->inew_rc without reporting */
    INEW_REPORT_GROUP  /* config_error(NULL key), store, return 0 */
};

static int cfg_instance_new(zl_instance_t *inst, void **data)
{
    idata_t *d = calloc(1, sizeof(*d));
    int rc = 0;

    atomic_fetch_add(&R->inew_calls, 1);
    if (!d)
        return -ENOMEM;
    d->magic = IDATA_MAGIC;
    d->data_null_on_entry = *data == NULL;
    d->on_poller = zl_poller_current() != NULL;
    d->name = host->instance_name(inst);
    d->is_server = host->instance_is_server(inst);
    switch (R->inew_mode) {
    case INEW_READ_ALL:
        d->greeting = host->config_string(inst, "greeting");
        d->missing = host->config_string(inst, "missing");
        d->rc_count = host->config_int(inst, "count", &d->count);
        d->rc_missing_int = host->config_int(inst, "missing", &(int64_t){0});
        d->rc_verbose = host->config_bool(inst, "verbose", &d->verbose);
        d->off = true;
        d->rc_off = host->config_bool(inst, "off", &d->off);
        d->rc_missing_bool =
            host->config_bool(inst, "missing", &(bool){false});
        break;
    case INEW_TYPED_IGNORE:
    case INEW_TYPED_RETURN:
        d->rc_count = host->config_int(inst, "count", &d->count);
        d->rc_verbose = host->config_bool(inst, "verbose", &d->verbose);
        if (R->inew_mode == INEW_TYPED_RETURN) {
            rc = d->rc_count < 0 ? d->rc_count : d->rc_verbose;
            free(d);
            return rc;
        }
        break;
    case INEW_FAIL_SILENT:
        free(d);
        return R->inew_rc;
    case INEW_REPORT_GROUP:
        host->config_error(inst, NULL, "needs %s", "a peer");
        break;
    }
    R->inew_data = d;
    *data = d;
    return 0;
}

static void cfg_instance_free(zl_instance_t *inst, void *data)
{
    idata_t *d = data;

    (void)inst;
    if (zl_poller_current())
        bad("instance_free on a poller thread");
    if (!d || d->magic != IDATA_MAGIC)
        bad("instance_free: not the data instance_new stored");
    R->ifree_data = data;
    atomic_fetch_add(&R->ifree_calls, 1);
    if (d)
        d->magic = 0;
    free(d);
}

static zl_handler_t cfg_handler(void)
{
    zl_handler_t h = h_base;

    h.instance_new = cfg_instance_new;
    h.instance_free = cfg_instance_free;
    return h;
}

/* instance_new reads its keys through config_string/int/bool (main
 * thread, *data NULL on entry); what it stores is instance_data() for the
 * test and for its sessions; instance_free runs once, in
 * zl_instance_free, not in zl_instance_stop. */
static void test_instance_config(void)
{
    static const char *const cfg[] = {"greeting", "hello", "count", "-42",
                                      "verbose", "yes", "off", "0", NULL};
    zl_handler_t h = cfg_handler();
    zl_instance_options_t o;
    zl_instance_t *inst;
    idata_t *d;
    int fd;

    rec_new();
    R->cfg = cfg;
    R->inew_mode = INEW_READ_ALL;
    opts_server(&o, "cfg", &h);
    inst = start(&o);
    CU_ASSERT_EQUAL(atomic_load(&R->inew_calls), 1);
    CU_ASSERT_EQUAL(R->nreports, 0);
    d = host->instance_data(inst);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_PTR_EQUAL(d, R->inew_data);
    CU_ASSERT(d->data_null_on_entry);
    CU_ASSERT_FALSE(d->on_poller);
    CU_ASSERT_STRING_EQUAL(d->name, "cfg");
    CU_ASSERT(d->is_server);
    CU_ASSERT(d->greeting && !strcmp(d->greeting, "hello"));
    CU_ASSERT_PTR_NULL(d->missing);
    CU_ASSERT_EQUAL(d->rc_count, 0);
    CU_ASSERT_EQUAL(d->count, -42);
    CU_ASSERT_EQUAL(d->rc_missing_int, -ENOENT);
    CU_ASSERT_EQUAL(d->rc_verbose, 0);
    CU_ASSERT(d->verbose);
    CU_ASSERT_EQUAL(d->rc_off, 0);
    CU_ASSERT_FALSE(d->off);
    CU_ASSERT_EQUAL(d->rc_missing_bool, -ENOENT);
    /* Also readable later, from any thread. */
    CU_ASSERT_STRING_EQUAL(host->config_string(inst, "greeting"), "hello");

    fd = raw_connect(server_port(inst), 0);
    CU_ASSERT(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->connects, 1, WAIT_MS), 1);
    CU_ASSERT_PTR_EQUAL(snap(0).idata, d);
    if (fd >= 0)
        close(fd);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 1, WAIT_MS), 1);

    zl_instance_stop(inst);
    CU_ASSERT_EQUAL(atomic_load(&R->ifree_calls), 0);
    zl_instance_free(inst);
    CU_ASSERT_EQUAL(atomic_load(&R->ifree_calls), 1);
    CU_ASSERT_PTR_EQUAL(R->ifree_data, R->inew_data);
    CU_ASSERT_EQUAL(R->nreports, 0);
    rec_done();
}

/* One refused configuration: zl_instance_new returns -EINVAL and no
 * instance; returns the number of reports. */
static int refused_new(const zl_handler_t *h, bool server)
{
    zl_instance_options_t o;
    zl_instance_t *inst = (zl_instance_t *)&inst; /* must be reset */

    if (server)
        opts_server(&o, "typed", h);
    else
        opts_client(&o, "typed", h, 9);
    CU_ASSERT_EQUAL(zl_instance_new(&inst, &o), -EINVAL);
    CU_ASSERT_PTR_NULL(inst);
    if (inst && inst != (zl_instance_t *)&inst)
        zl_instance_free(inst);
    return R->nreports;
}

/* A value of the wrong type is reported through the report callback,
 * naming the key and the value, and refuses the instance even when the
 * handler carries on and returns 0 (its data is then freed through
 * instance_free, once); a handler that returns the error gets no second,
 * generic report. */
static void test_instance_config_wrong_type(void)
{
    static const char *const bad_int[] = {"count", "many", "verbose", "true",
                                          NULL};
    static const char *const bad_bool[] = {"count", "7", "verbose", "maybe",
                                           NULL};
    zl_handler_t h = cfg_handler();

    rec_new();
    R->cfg = bad_int;
    R->inew_mode = INEW_TYPED_IGNORE;
    CU_ASSERT_EQUAL(refused_new(&h, true), 1);
    CU_ASSERT(R->report_has_key[0]);
    CU_ASSERT_STRING_EQUAL(R->report_key[0], "count");
    CU_ASSERT_PTR_NOT_NULL(strstr(R->report_msg[0], "many"));
    CU_ASSERT_EQUAL(atomic_load(&R->ifree_calls), 1);
    CU_ASSERT_PTR_EQUAL(R->ifree_data, R->inew_data);
    rec_done();

    rec_new();
    R->cfg = bad_bool;
    R->inew_mode = INEW_TYPED_IGNORE;
    CU_ASSERT_EQUAL(refused_new(&h, false), 1);
    CU_ASSERT(R->report_has_key[0]);
    CU_ASSERT_STRING_EQUAL(R->report_key[0], "verbose");
    CU_ASSERT_PTR_NOT_NULL(strstr(R->report_msg[0], "maybe"));
    CU_ASSERT_EQUAL(atomic_load(&R->ifree_calls), 1);
    rec_done();

    rec_new();
    R->cfg = bad_int;
    R->inew_mode = INEW_TYPED_RETURN;
    CU_ASSERT_EQUAL(refused_new(&h, true), 1);
    CU_ASSERT_STRING_EQUAL(R->report_key[0], "count");
    CU_ASSERT_EQUAL(atomic_load(&R->ifree_calls), 0); /* nothing stored */
    rec_done();
}

/* instance_new failing without a word still produces one report (for the
 * whole group), and config_error(NULL) refuses an instance whose
 * instance_new returns 0. */
static void test_instance_new_error_unreported(void)
{
    zl_handler_t h = cfg_handler();

    rec_new();
    R->inew_mode = INEW_FAIL_SILENT;
    R->inew_rc = -EIO;
    CU_ASSERT_EQUAL(refused_new(&h, true), 1);
    CU_ASSERT_FALSE(R->report_has_key[0]);
    CU_ASSERT_NOT_EQUAL(R->report_msg[0][0], '\0');
    CU_ASSERT_EQUAL(atomic_load(&R->inew_calls), 1);
    rec_done();

    rec_new();
    R->inew_mode = INEW_REPORT_GROUP;
    CU_ASSERT_EQUAL(refused_new(&h, false), 1);
    CU_ASSERT_FALSE(R->report_has_key[0]);
    CU_ASSERT_STRING_EQUAL(R->report_msg[0], "needs a peer");
    CU_ASSERT_EQUAL(atomic_load(&R->ifree_calls), 1);
    rec_done();
}

/* Malformed options are refused before any handler code runs. */
static void test_instance_new_bad_options(void)
{
    zl_handler_t h = cfg_handler(), small = h_base, norecv = h_base;
    zl_instance_options_t o;
    zl_instance_t *inst = NULL;

    rec_new();
    small.struct_size = 8;
    norecv.on_recv = NULL;
    opts_server(&o, NULL, &h);
    CU_ASSERT_EQUAL(zl_instance_new(&inst, &o), -EINVAL);
    opts_server(&o, "", &h);
    CU_ASSERT_EQUAL(zl_instance_new(&inst, &o), -EINVAL);
    opts_server(&o, "x", NULL);
    CU_ASSERT_EQUAL(zl_instance_new(&inst, &o), -EINVAL);
    opts_server(&o, "x", &small);
    CU_ASSERT_EQUAL(zl_instance_new(&inst, &o), -EINVAL);
    opts_client(&o, "x", &norecv, 9);
    CU_ASSERT_EQUAL(zl_instance_new(&inst, &o), -EINVAL);
    CU_ASSERT_PTR_NULL(inst);
    CU_ASSERT_EQUAL(atomic_load(&R->inew_calls), 0);
    zl_instance_free(NULL);
    rec_done();
}

/* Instances that never start: stop is a no-op, free runs instance_free
 * once; there is no address and no error. */
static void test_free_without_start(void)
{
    zl_handler_t h = cfg_handler();
    zl_instance_options_t o;
    zl_instance_t *srv = NULL, *cli = NULL;
    zl_instance_stats_t stats;
    char msg[64] = "x";

    rec_new();
    R->inew_mode = INEW_READ_ALL;
    opts_server(&o, "idle-server", &h);
    CU_ASSERT_EQUAL_FATAL(zl_instance_new(&srv, &o), 0);
    opts_client(&o, "idle-client", &h, 9);
    CU_ASSERT_EQUAL_FATAL(zl_instance_new(&cli, &o), 0);
    CU_ASSERT_PTR_NULL(zl_instance_server_addr(srv));
    CU_ASSERT_STRING_EQUAL(zl_instance_get_name(cli), "idle-client");
    zl_instance_get_stats(srv, &stats);
    CU_ASSERT(stats.sessions == 0 && stats.active == 0 &&
              stats.last_error == 0);
    CU_ASSERT_STRING_EQUAL(zl_instance_last_error(cli, msg, sizeof(msg)), "");

    zl_instance_stop(srv);
    zl_instance_stop(srv);
    CU_ASSERT_EQUAL(atomic_load(&R->ifree_calls), 0);
    zl_instance_free(srv);
    CU_ASSERT_EQUAL(atomic_load(&R->ifree_calls), 1);
    zl_instance_free(cli);
    CU_ASSERT_EQUAL(atomic_load(&R->ifree_calls), 2);
    CU_ASSERT_EQUAL(atomic_load(&R->opened), 0);
    rec_done();
}

/* Starting can fail: a client without a port, a server on a taken port;
 * the instance then holds nothing and frees cleanly. */
static void test_start_errors(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst = NULL;
    zl_instance_stats_t stats;
    uint16_t port;
    int lfd;

    rec_new();
    opts_client(&o, "noport", &h_base, 0);
    CU_ASSERT_EQUAL_FATAL(zl_instance_new(&inst, &o), 0);
    CU_ASSERT(zl_instance_start(inst) < 0);
    zl_instance_get_stats(inst, &stats);
    CU_ASSERT_EQUAL(stats.active, 0);
    zl_instance_free(inst);

    lfd = raw_listen(&port);
    CU_ASSERT_FATAL(lfd >= 0);
    opts_server(&o, "taken", &h_base);
    o.server_opts.port = port;
    CU_ASSERT_EQUAL_FATAL(zl_instance_new(&inst, &o), 0);
    CU_ASSERT_EQUAL(zl_instance_start(inst), -EADDRINUSE);
    CU_ASSERT_PTR_NULL(zl_instance_server_addr(inst));
    zl_instance_free(inst);
    close(lfd);

    CU_ASSERT_EQUAL(atomic_load(&R->opened), 0);
    CU_ASSERT_EQUAL(atomic_load(&R->finished), 0);
    rec_done();
}

/* ------------------------------------------------------------ refusal */

static atomic_long g_refused_post_runs, g_refused_post_destroys;

static void refused_post_run(zl_session_t *s, void *state, void *arg)
{
    (void)s;
    (void)state;
    (void)arg;
    atomic_fetch_add(&g_refused_post_runs, 1);
}

static void refused_post_destroy(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_refused_post_destroys, 1);
}

/* Refuses the session, after posting a task to it (which must not run). */
static int refuse_open(zl_session_t *s, st_t *st)
{
    (void)st;
    if (host->post(s, refused_post_run, NULL, refused_post_destroy) != 0)
        bad("post from on_open failed");
    return -EPERM;
}

/* on_open returning an error aborts the session: no on_connect, no
 * on_recv, no on_err, no task it posted, but on_closed, once; the peer sees
 * the connection end.  The same for a client, which then finishes. */
static void test_open_refused(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    zl_instance_stats_t stats;
    uint16_t port;
    int fd, lfd, e;

    rec_new();
    atomic_store(&g_refused_post_runs, 0);
    atomic_store(&g_refused_post_destroys, 0);
    R->open_hook = refuse_open;
    opts_server(&o, "refuse", &h_base);
    inst = start(&o);
    fd = raw_connect(server_port(inst), 0);
    CU_ASSERT_FATAL(fd >= 0);
    zl_test_send_all(fd, "data", 4); /* may fail: the session is going away */
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 1, WAIT_MS), 1);
    e = zl_test_read_end(fd, NULL);
    CU_ASSERT(e == 0 || e == ECONNRESET);
    close(fd);
    zl_instance_stop(inst);
    CU_ASSERT_STRING_EQUAL(snap(0).ev, "OX");
    CU_ASSERT_EQUAL(atomic_load(&R->opened), 1);
    CU_ASSERT_EQUAL(atomic_load(&R->connects), 0);
    CU_ASSERT_EQUAL(atomic_load(&R->recvs), 0);
    CU_ASSERT_EQUAL(atomic_load(&R->errs), 0);
    CU_ASSERT_EQUAL(atomic_load(&R->closed), 1);
    zl_instance_get_stats(inst, &stats);
    CU_ASSERT_EQUAL(stats.sessions, 1);
    CU_ASSERT_EQUAL(stats.active, 0);
    zl_instance_free(inst);
    CU_ASSERT_EQUAL(zl_test_wait_count(&g_refused_post_destroys, 1, WAIT_MS),
                    1);
    CU_ASSERT_EQUAL(atomic_load(&g_refused_post_runs), 0);
    rec_done();

    rec_new();
    R->open_hook = refuse_open;
    lfd = raw_listen(&port);
    CU_ASSERT_FATAL(lfd >= 0);
    opts_client(&o, "refuse", &h_base, port);
    inst = start(&o);
    fd = raw_accept(lfd);
    CU_ASSERT(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->finished, 1, WAIT_MS), 1);
    if (fd >= 0) {
        e = zl_test_read_end(fd, NULL);
        CU_ASSERT(e == 0 || e == ECONNRESET);
        close(fd);
    }
    zl_instance_free(inst);
    close(lfd);
    CU_ASSERT_STRING_EQUAL(snap(0).ev, "OX");
    CU_ASSERT_EQUAL(atomic_load(&R->connects), 0);
    CU_ASSERT_EQUAL(atomic_load(&R->closed), 1);
    CU_ASSERT_EQUAL(atomic_load(&R->closed_at_finish), 1);
    CU_ASSERT_EQUAL(zl_test_wait_count(&g_refused_post_destroys, 2, WAIT_MS),
                    2);
    CU_ASSERT_EQUAL(atomic_load(&g_refused_post_runs), 0);
    rec_done();
}

/* ------------------------------------------------------------ timers */

typedef struct tjob {
    zl_session_t *s;
    st_t *state;
    int limit;     /* fires before returning 0 (0: never stop) */
    uint64_t next; /* delay returned otherwise */
    atomic_long fires, destroys;
} tjob_t;

static uint64_t t_fire(zl_session_t *s, void *state, void *arg)
{
    tjob_t *t = arg;
    long n;

    cb_check(s, state, "session timer");
    if (t->s && (t->s != s || t->state != state))
        bad("session timer: fired with another session or state");
    n = atomic_fetch_add(&t->fires, 1) + 1;
    return t->limit && n >= t->limit ? 0 : t->next;
}

static void t_destroy(void *arg)
{
    tjob_t *t = arg;

    atomic_fetch_add(&t->destroys, 1);
}

/* Timers of test_session_timers: [0] three fires 5 ms apart, [1] every
 * 5 ms until the session closes, [2] once at once, [3] in 10 s (never),
 * [4] the one on_closed tries to add, [5] the one the test thread tries. */
static tjob_t g_tj[6];
static atomic_int g_rc_closed_timer;

static void timers_connect(zl_session_t *s, st_t *st, const zl_error_t *err)
{
    static const struct {
        uint64_t delay, next;
        int limit;
    } spec[4] = {{5, 5, 3}, {5, 5, 0}, {0, 0, 1}, {10000, 10000, 0}};

    (void)err;
    for (int i = 0; i < 4; i++) {
        g_tj[i].s = s;
        g_tj[i].state = st;
        g_tj[i].limit = spec[i].limit;
        g_tj[i].next = spec[i].next;
        if (host->add_timer(s, spec[i].delay, t_fire, &g_tj[i], t_destroy) !=
            0)
            bad("add_timer %d failed", i);
    }
    atomic_store(&R->held, host->session_ref(s));
}

static void timers_closed(zl_session_t *s, st_t *st)
{
    (void)st;
    atomic_store(&g_rc_closed_timer,
                 host->add_timer(s, 0, t_fire, &g_tj[4], t_destroy));
}

/* Session timers fire on the session's poller with its state, repeat while
 * they return a delay, and run destroy once when they stop; closing the
 * session cancels the others (destroy once, fn never after on_closed).
 * add_timer from the test thread is refused with -EPERM, from on_closed
 * with ZL_ESHUTDOWN; neither calls destroy.  on_manager ticks meanwhile. */
static void test_session_timers(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    zl_session_t *s;
    long fires1;
    int fd;

    rec_new();
    memset(g_tj, 0, sizeof(g_tj));
    atomic_store(&g_rc_closed_timer, 12345);
    R->connect_hook = timers_connect;
    R->closed_hook = timers_closed;
    opts_server(&o, "timers", &h_base);
    o.server_opts.conn.manager_ms = 20;
    inst = start(&o);
    fd = raw_connect(server_port(inst), 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->connects, 1, WAIT_MS), 1);
    s = atomic_load(&R->held);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);

    CU_ASSERT_EQUAL(zl_test_wait_count(&g_tj[0].destroys, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(atomic_load(&g_tj[0].fires), 3);
    CU_ASSERT_EQUAL(zl_test_wait_count(&g_tj[2].destroys, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(atomic_load(&g_tj[2].fires), 1);
    CU_ASSERT(zl_test_wait_count(&g_tj[1].fires, 4, WAIT_MS) >= 4);
    CU_ASSERT(zl_test_wait_count(&R->managers, 1, WAIT_MS) >= 1);
    CU_ASSERT_EQUAL(atomic_load(&g_tj[1].destroys), 0);

    /* Not from this thread. */
    CU_ASSERT_EQUAL(host->add_timer(s, 0, t_fire, &g_tj[5], t_destroy),
                    -EPERM);

    close(fd);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(zl_test_wait_count(&g_tj[1].destroys, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(zl_test_wait_count(&g_tj[3].destroys, 1, WAIT_MS), 1);
    fires1 = atomic_load(&g_tj[1].fires);
    CU_ASSERT_EQUAL(atomic_load(&g_tj[3].fires), 0);
    CU_ASSERT_EQUAL(atomic_load(&g_rc_closed_timer), ZL_ESHUTDOWN);

    zl_instance_free(inst);
    /* Everything is over: counts are final. */
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(atomic_load(&g_tj[i].destroys), 1);
    CU_ASSERT_EQUAL(atomic_load(&g_tj[1].fires), fires1);
    CU_ASSERT_EQUAL(atomic_load(&g_tj[4].fires) + atomic_load(&g_tj[4].destroys),
                    0);
    CU_ASSERT_EQUAL(atomic_load(&g_tj[5].fires) + atomic_load(&g_tj[5].destroys),
                    0);
    host->session_unref(s);
    rec_done();
}

/* Timers armed in on_open never run when on_open then refuses the
 * session, even when they fall due before on_closed (here on_open works
 * for 3 ms after arming them).  Regression test: session.c once checked
 * only s->closed in stimer_fire(), which is set just before on_closed,
 * while the refused session's on_closed waits in the task queue behind the
 * timers the poller runs first; the fix cancels them at the refusal and
 * checks s->refused as sjob_done() does. */
static tjob_t g_rj[2]; /* timers at 0 ms and 1 ms */

static int refuse_with_timers(zl_session_t *s, st_t *st)
{
    (void)st;
    g_rj[0].next = g_rj[1].next = 0;
    if (host->add_timer(s, 0, t_fire, &g_rj[0], t_destroy) != 0 ||
        host->add_timer(s, 1, t_fire, &g_rj[1], t_destroy) != 0)
        bad("add_timer in on_open failed");
    /* Some work before deciding: the timers fall due meanwhile. */
    zl_test_sleep_ms(3);
    return -EPERM;
}

static void test_refused_session_timers(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    int fd;

    rec_new();
    memset(g_rj, 0, sizeof(g_rj));
    R->open_hook = refuse_with_timers;
    opts_server(&o, "refuse-timer", &h_base);
    inst = start(&o);
    fd = raw_connect(server_port(inst), 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(zl_test_wait_count(&g_rj[0].destroys, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(zl_test_wait_count(&g_rj[1].destroys, 1, WAIT_MS), 1);
    zl_instance_free(inst);
    close(fd);
    /* The handler refused the session: none of its callbacks may run. */
    CU_ASSERT_EQUAL(atomic_load(&g_rj[0].fires), 0);
    CU_ASSERT_EQUAL(atomic_load(&g_rj[1].fires), 0);
    CU_ASSERT_STRING_EQUAL(snap(0).ev, "OX");
    rec_done();
}

/* ------------------------------------------------------------ post */

typedef struct pjob {
    zl_session_t *s;
    struct pjob *chain; /* posted again from the poller when it runs */
    atomic_long runs, destroys;
} pjob_t;

static void p_destroy(void *arg);

static void p_run(zl_session_t *s, void *state, void *arg)
{
    pjob_t *j = arg;

    cb_check(s, state, "posted task");
    if (s != j->s)
        bad("posted task: another session");
    if (j->chain && host->post(s, p_run, j->chain, p_destroy) != 0)
        bad("post from the poller failed");
    atomic_fetch_add(&j->runs, 1);
}

static void p_destroy(void *arg)
{
    pjob_t *j = arg;

    atomic_fetch_add(&j->destroys, 1);
}

static void hold_connect(zl_session_t *s, st_t *st, const zl_error_t *err)
{
    (void)st;
    (void)err;
    atomic_store(&R->held, host->session_ref(s));
}

/* host->post from the test thread, through a reference, runs on the
 * session's poller with its state (and may post again from there); send
 * and close work through the reference too.  A post made after on_closed
 * never runs its function, and still runs destroy once.  The addresses
 * stay readable after close. */
static void test_post(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    zl_session_t *s;
    pjob_t a = {0}, b = {0}, late = {0};
    char buf[16];
    uint16_t lport;
    int fd;

    rec_new();
    R->connect_hook = hold_connect;
    opts_server(&o, "post", &h_base);
    inst = start(&o);
    fd = raw_connect(server_port(inst), 0);
    CU_ASSERT_FATAL(fd >= 0);
    lport = fd_port(fd, false);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->connects, 1, WAIT_MS), 1);
    s = atomic_load(&R->held);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);

    a.s = b.s = late.s = s;
    a.chain = &b;
    CU_ASSERT_EQUAL(host->post(s, p_run, &a, p_destroy), 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&a.destroys, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(atomic_load(&a.runs), 1);
    CU_ASSERT_EQUAL(zl_test_wait_count(&b.destroys, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(atomic_load(&b.runs), 1);

    CU_ASSERT_EQUAL(host->send(s, "from-test", 9), 0);
    CU_ASSERT(zl_test_recv_exact(fd, buf, 9) && memcmp(buf, "from-test", 9) == 0);
    host->close(s);
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(atomic_load(&R->errs), 0); /* our close: no on_err */

    CU_ASSERT_EQUAL(host->post(s, p_run, &late, p_destroy), 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&late.destroys, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(atomic_load(&late.runs), 0);
    CU_ASSERT_EQUAL(host->post(s, NULL, &late, p_destroy), -EINVAL);
    CU_ASSERT_EQUAL(zl_addr_port(host->peer(s)), lport);
    CU_ASSERT_EQUAL(zl_addr_port(host->local(s)), server_port(inst));

    zl_instance_free(inst);
    close(fd);
    CU_ASSERT_EQUAL(atomic_load(&a.destroys), 1);
    CU_ASSERT_EQUAL(atomic_load(&late.destroys), 1);
    CU_ASSERT_EQUAL(atomic_load(&late.runs), 0);
    host->session_unref(s);
    rec_done();
}


/* ------------------------------------------------------------ submit */

typedef struct wjob {
    zl_session_t *s;
    atomic_int *gate; /* work waits for it when set */
    atomic_long works, work_on_poller, dones, destroys;
} wjob_t;

/* [0] from on_recv, [1] gated, [2] from the test thread after close,
 * [3] from the test thread while open. */
static wjob_t g_wj[4];
static atomic_int g_gate;

static void w_work(void *arg)
{
    wjob_t *j = arg;

    if (zl_poller_current())
        atomic_fetch_add(&j->work_on_poller, 1);
    if (j->gate)
        zl_test_wait_flag(j->gate, 3000);
    atomic_fetch_add(&j->works, 1);
}

static void w_done(zl_session_t *s, void *state, void *arg)
{
    wjob_t *j = arg;

    cb_check(s, state, "worker completion");
    if (s != j->s)
        bad("worker completion: another session");
    atomic_fetch_add(&j->dones, 1);
}

static void w_destroy(void *arg)
{
    wjob_t *j = arg;

    atomic_fetch_add(&j->destroys, 1);
}

static void submit_recv(zl_session_t *s, st_t *st, zl_buf_t *buf)
{
    (void)st;
    (void)buf;
    if (atomic_load(&g_wj[0].works) || g_wj[0].s)
        return; /* once */
    g_wj[0].s = g_wj[1].s = s;
    g_wj[1].gate = &g_gate;
    if (host->submit(s, w_work, w_done, &g_wj[0], w_destroy) != 0 ||
        host->submit(s, w_work, w_done, &g_wj[1], w_destroy) != 0)
        bad("submit failed");
}

/* host->submit: work on a worker thread, done on the session's poller with
 * its state (also when submitted from another thread), destroy once.  A
 * job whose work is still running when the session closes, and a job
 * submitted after on_closed, skip done but still run destroy once. */
static void test_submit(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    zl_session_t *s;
    int fd;

    rec_new();
    memset(g_wj, 0, sizeof(g_wj));
    atomic_store(&g_gate, 0);
    R->connect_hook = hold_connect;
    R->recv_hook = submit_recv;
    opts_server(&o, "submit", &h_base);
    inst = start(&o);
    fd = raw_connect(server_port(inst), 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->connects, 1, WAIT_MS), 1);
    s = atomic_load(&R->held);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT(zl_test_send_all(fd, "go", 2));

    CU_ASSERT_EQUAL(zl_test_wait_count(&g_wj[0].destroys, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(atomic_load(&g_wj[0].works), 1);
    CU_ASSERT_EQUAL(atomic_load(&g_wj[0].dones), 1);
    CU_ASSERT_EQUAL(atomic_load(&g_wj[0].work_on_poller), 0);

    /* From this thread, through the reference: done still comes on the
     * session's poller (w_done checks). */
    g_wj[3].s = s;
    CU_ASSERT_EQUAL(host->submit(s, w_work, w_done, &g_wj[3], w_destroy), 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&g_wj[3].destroys, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(atomic_load(&g_wj[3].dones), 1);

    /* The gated job is still working: close the session under it. */
    CU_ASSERT_EQUAL(atomic_load(&g_wj[1].works), 0);
    close(fd);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 1, WAIT_MS), 1);
    atomic_store(&g_gate, 1);
    CU_ASSERT_EQUAL(zl_test_wait_count(&g_wj[1].destroys, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(atomic_load(&g_wj[1].works), 1);
    CU_ASSERT_EQUAL(atomic_load(&g_wj[1].dones), 0);

    g_wj[2].s = s;
    CU_ASSERT_EQUAL(host->submit(s, w_work, w_done, &g_wj[2], w_destroy), 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&g_wj[2].destroys, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(atomic_load(&g_wj[2].works), 1);
    CU_ASSERT_EQUAL(atomic_load(&g_wj[2].dones), 0);
    CU_ASSERT_EQUAL(host->submit(s, NULL, w_done, &g_wj[2], w_destroy),
                    -EINVAL);

    zl_instance_free(inst);
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(atomic_load(&g_wj[i].destroys), 1);
        CU_ASSERT_EQUAL(atomic_load(&g_wj[i].work_on_poller), 0);
    }
    host->session_unref(s);
    rec_done();
}

/* ------------------------------------------------------------ stop */

static void slow_closed(zl_session_t *s, st_t *st)
{
    (void)s;
    (void)st;
    zl_test_sleep_ms(30); /* stop must wait for this */
}

/* zl_instance_stop closes every session and returns only after each
 * on_closed has run (they are slow here); the peers read a clean end of
 * stream, no on_err is reported for our own close.  Stop is idempotent
 * and instance_free still runs once, in zl_instance_free. */
static void test_stop_waits_for_sessions(void)
{
    zl_handler_t h = cfg_handler();
    zl_instance_options_t o;
    zl_instance_t *inst;
    zl_instance_stats_t stats;
    int fds[3];

    rec_new();
    R->inew_mode = INEW_READ_ALL;
    R->closed_hook = slow_closed;
    opts_server(&o, "stop", &h);
    inst = start(&o);
    for (int i = 0; i < 3; i++) {
        fds[i] = raw_connect(server_port(inst), 0);
        CU_ASSERT_FATAL(fds[i] >= 0);
    }
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->connects, 3, WAIT_MS), 3);
    CU_ASSERT_EQUAL(atomic_load(&R->closed), 0);

    zl_instance_stop(inst);
    CU_ASSERT_EQUAL(atomic_load(&R->closed), 3);
    zl_instance_get_stats(inst, &stats);
    CU_ASSERT_EQUAL(stats.active, 0);
    CU_ASSERT_EQUAL(stats.sessions, 3);
    CU_ASSERT_EQUAL(atomic_load(&R->errs), 0);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(zl_test_read_end(fds[i], NULL), 0);
        close(fds[i]);
    }
    for (int i = 0; i < 3; i++)
        CU_ASSERT_STRING_EQUAL(snap(i).ev, "OCX");

    zl_instance_stop(inst);
    CU_ASSERT_EQUAL(atomic_load(&R->closed), 3);
    CU_ASSERT_EQUAL(atomic_load(&R->ifree_calls), 0);
    zl_instance_free(inst);
    CU_ASSERT_EQUAL(atomic_load(&R->ifree_calls), 1);
    CU_ASSERT_EQUAL(atomic_load(&R->finished), 0);
    rec_done();
}

#define BIG (1024u * KIB)

static void big_connect(zl_session_t *s, st_t *st, const zl_error_t *err)
{
    uint8_t *p = malloc(BIG);

    (void)st;
    (void)err;
    if (!p) {
        bad("out of memory");
        return;
    }
    pat_fill(p, 0, BIG);
    if (host->send(s, p, BIG) < 0)
        bad("send of the big block failed");
    atomic_store(&R->queued_after_send, (long)host->queued(s));
    free(p);
}

typedef struct stopper {
    zl_instance_t *inst;
    atomic_int done;
    atomic_long closed_at_return;
} stopper_t;

static void *stopper_main(void *arg)
{
    stopper_t *st = arg;

    zl_instance_stop(st->inst);
    atomic_store(&st->closed_at_return, atomic_load(&R->closed));
    atomic_store(&st->done, 1);
    return NULL;
}

/* Data queued before zl_instance_stop still reaches the peer: the close is
 * graceful, and stop waits for it (here until the peer reads). */
static void test_stop_graceful(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    stopper_t sp = {0};
    pthread_t th;
    size_t got;
    int fd, mismatch = 0;

    rec_new();
    R->connect_hook = big_connect;
    opts_server(&o, "graceful", &h_base);
    o.server_opts.conn.sndbuf = 16 * KIB;
    inst = start(&o);
    fd = raw_connect(server_port(inst), 16 * KIB);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->connects, 1, WAIT_MS), 1);
    CU_ASSERT(atomic_load(&R->queued_after_send) > 0);

    sp.inst = inst;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, stopper_main, &sp), 0);
    /* The queue cannot drain while nobody reads: stop has to wait. */
    CU_ASSERT_EQUAL(zl_test_wait_flag(&sp.done, 100), 0);
    got = raw_recv_pat(fd, 0, BIG, &mismatch);
    CU_ASSERT_EQUAL(got, BIG);
    CU_ASSERT_EQUAL(mismatch, 0);
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), 0);
    CU_ASSERT_EQUAL(zl_test_wait_flag(&sp.done, WAIT_MS), 1);
    pthread_join(th, NULL);
    CU_ASSERT_EQUAL(atomic_load(&sp.closed_at_return), 1);
    CU_ASSERT_EQUAL(atomic_load(&R->errs), 0);
    close(fd);
    zl_instance_free(inst);
    rec_done();
}


/* ------------------------------------------------------------ log */

static void log_connect(zl_session_t *s, st_t *st, const zl_error_t *err)
{
    (void)err;
    host->session_log(s, ZL_LOG_INFO, "hello %d from session %d", 42,
                      st->id);
}

/* session_log prefixes the line with the plugin (here "handler": no
 * plugin), the instance and the session. */
static void test_session_log(void)
{
    char dir[] = "/tmp/zltk-instance-XXXXXX";
    zl_log_options_t lo = {.level = ZL_LOG_INFO};
    zl_log_level_t level = zl_log_get_level();
    zl_instance_options_t o;
    zl_instance_t *inst;
    char *path, *text = NULL, want[64], *line;
    int fd;

    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    path = g_strdup_printf("%s/log", dir);
    lo.file = path;
    rec_new();
    R->connect_hook = log_connect;
    CU_ASSERT_EQUAL_FATAL(zl_log_init(&lo), 0);
    opts_server(&o, "logged", &h_base);
    inst = start(&o);
    fd = raw_connect(server_port(inst), 0);
    CU_ASSERT(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->connects, 1, WAIT_MS), 1);
    if (fd >= 0)
        close(fd);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 1, WAIT_MS), 1);
    zl_instance_free(inst);
    zl_log_shutdown();
    zl_log_set_level(level);

    CU_ASSERT(g_file_get_contents(path, &text, NULL, NULL));
    snprintf(want, sizeof(want), "%s: hello 42 from session 0", snap(0).name);
    line = text ? strstr(text, want) : NULL;
    CU_ASSERT_PTR_NOT_NULL(line);
    if (line) {
        while (line > text && line[-1] != '\n')
            line--;
        CU_ASSERT_PTR_NOT_NULL(strstr(line, "zltk-plugin: handler: server.logged session#"));
    }
    g_free(text);
    zl_test_rm_tree(dir);
    g_free(path);
    rec_done();
}

/* ------------------------------------------------------------ busy */

#define HIGH (64 * KIB)

static void echo_recv(zl_session_t *s, st_t *st, zl_buf_t *buf)
{
    int rc = host->send(s, buf->data, buf->len);
    long q = (long)host->queued(s);

    (void)st;
    if (q > atomic_load(&R->max_queued))
        atomic_store(&R->max_queued, q);
    if (rc == ZL_CONN_BUSY) {
        atomic_fetch_add(&R->busy_returns, 1);
        host->pause(s); /* stop reading until the queue drains */
    } else if (rc != 0) {
        bad("echo send: %s", zl_strerror(rc));
    }
}

static void echo_busy(zl_session_t *s, st_t *st, bool busy)
{
    (void)st;
    if (!busy)
        host->resume(s);
}

/* An echo handler that respects backpressure: with a 64 KiB high-water
 * mark and a peer that does not read, send returns ZL_CONN_BUSY and
 * on_busy(true) comes; the handler pauses reading.  Once the peer reads,
 * on_busy(false) comes, the handler resumes, and every byte comes back in
 * order; the queue never grew much beyond the mark. */
static void test_backpressure(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    uint8_t chunk[16 * KIB];
    uint64_t sent = 0, end;
    size_t got;
    int fd, fl, mismatch = 0;
    srec_t r;

    rec_new();
    R->recv_hook = echo_recv;
    R->busy_hook = echo_busy;
    opts_server(&o, "busy", &h_base);
    o.server_opts.conn.high_water = HIGH;
    o.server_opts.conn.low_water = HIGH / 4;
    o.server_opts.conn.sndbuf = 16 * KIB;
    inst = start(&o);
    fd = raw_connect(server_port(inst), 16 * KIB);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->connects, 1, WAIT_MS), 1);

    /* Write without reading until the server says it is busy. */
    fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    end = zl_now_ms() + slow_ms(WAIT_MS);
    while (!atomic_load(&R->busy_on) && sent < 64u * BIG &&
           zl_now_ms() < end) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        ssize_t w;

        if (poll(&pfd, 1, 5) != 1)
            continue;
        pat_fill(chunk, sent, sizeof(chunk));
        w = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
        if (w > 0)
            sent += (uint64_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR)
            break;
    }
    fcntl(fd, F_SETFL, fl);
    CU_ASSERT_EQUAL(atomic_load(&R->busy_on), 1);
    CU_ASSERT(atomic_load(&R->busy_returns) >= 1);
    CU_ASSERT_EQUAL(atomic_load(&R->busy_off), 0); /* nobody read yet */

    /* Now read everything back. */
    got = raw_recv_pat(fd, 0, (size_t)sent, &mismatch);
    CU_ASSERT_EQUAL(got, sent);
    CU_ASSERT_EQUAL(mismatch, 0);
    CU_ASSERT(zl_test_wait_count(&R->busy_off, 1, WAIT_MS) >= 1);
    CU_ASSERT(atomic_load(&R->max_queued) <= (long)(HIGH + 128 * KIB));
    close(fd);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 1, WAIT_MS), 1);

    /* on_busy alternates, true first, and ends not busy. */
    r = snap(0);
    {
        char want = 'B';
        int n = 0;
        for (int i = 0; i < r.nev; i++) {
            if (r.ev[i] != 'B' && r.ev[i] != 'b')
                continue;
            CU_ASSERT_EQUAL(r.ev[i], want);
            want = want == 'B' ? 'b' : 'B';
            n++;
        }
        CU_ASSERT(n >= 2 && n % 2 == 0);
    }
    zl_instance_free(inst);
    rec_done();
}


/* ------------------------------------------------------ regressions */

/* Regression: session_log from another thread (through a reference)
 * once formatted the session's name from the connection's mutable flags,
 * a data race ThreadSanitizer reported; the name is now fixed at open. */
#define PUMP_CHUNK (256 * KIB)

static void pump_send(zl_session_t *s)
{
    static uint8_t chunk[PUMP_CHUNK];

    if (atomic_load(&R->pump) && host->send(s, chunk, sizeof(chunk)) < 0)
        bad("pump send failed");
}

static void pump_connect(zl_session_t *s, st_t *st, const zl_error_t *err)
{
    (void)st;
    (void)err;
    atomic_store(&R->held, host->session_ref(s));
    pump_send(s);
}

static void pump_flush(zl_session_t *s, st_t *st)
{
    (void)st;
    pump_send(s);
}

typedef struct drain {
    int fd;
    size_t bytes;
    int end;
} drain_t;

static void *drain_main(void *arg)
{
    drain_t *d = arg;

    d->end = zl_test_read_end(d->fd, &d->bytes);
    return NULL;
}

static void test_bug_session_log_other_thread(void)
{
    char dir[] = "/tmp/zltk-instance-XXXXXX";
    zl_log_options_t lo = {.level = ZL_LOG_DEBUG};
    zl_log_level_t level = zl_log_get_level();
    zl_instance_options_t o;
    zl_instance_t *inst;
    zl_session_t *s;
    drain_t d = {0};
    pthread_t th;
    uint64_t end;
    char *path, *text = NULL;
    long calls = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    path = g_strdup_printf("%s/log", dir);
    lo.file = path;
    rec_new();
    atomic_store(&R->pump, 1);
    R->connect_hook = pump_connect;
    R->flush_hook = pump_flush;
    CU_ASSERT_EQUAL_FATAL(zl_log_init(&lo), 0);
    opts_server(&o, "offthread", &h_base);
    o.server_opts.conn.sndbuf = 16 * KIB;
    inst = start(&o);
    d.fd = raw_connect(server_port(inst), 16 * KIB);
    CU_ASSERT_FATAL(d.fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->connects, 1, WAIT_MS), 1);
    s = atomic_load(&R->held);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, drain_main, &d), 0);

    end = zl_now_ms() + 200;
    while (zl_now_ms() < end || atomic_load(&R->flushes) < 10) {
        host->session_log(s, ZL_LOG_DEBUG, "probe %ld", calls++);
        usleep(50);
        if (zl_now_ms() > end + slow_ms(WAIT_MS))
            break;
    }
    atomic_store(&R->pump, 0);
    host->close(s);
    pthread_join(th, NULL);
    CU_ASSERT_EQUAL(d.end, 0);
    CU_ASSERT(atomic_load(&R->flushes) >= 10); /* the queue kept churning */
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->closed, 1, WAIT_MS), 1);
    zl_instance_free(inst);
    close(d.fd);
    zl_log_shutdown();
    zl_log_set_level(level);

    /* The lines themselves are right. */
    CU_ASSERT(g_file_get_contents(path, &text, NULL, NULL));
    CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, "server.offthread session#")
                                : NULL);
    CU_ASSERT_PTR_NOT_NULL(text ? strstr(text, ": probe 0") : NULL);
    g_free(text);
    zl_test_rm_tree(dir);
    g_free(path);
    host->session_unref(s);
    rec_done();
}


/* Regression: on_finished runs under the instance's lock, and
 * zl_instance_last_error() ("any thread") once took that same lock, so an
 * on_finished asking why the client ended deadlocked.  Here on_finished
 * starts a thread that calls zl_instance_last_error() and gives it 300 ms:
 * it must answer while on_finished still runs. */
static pthread_t g_le_thread;
static atomic_int g_le_started, g_le_done, g_le_blocked;
static char g_le_msg[256];

static void *last_error_main(void *arg)
{
    zl_instance_last_error(arg, g_le_msg, sizeof(g_le_msg));
    atomic_store(&g_le_done, 1);
    return NULL;
}

static void finished_asks_why(zl_instance_t *inst, void *ctx)
{
    if (pthread_create(&g_le_thread, NULL, last_error_main, inst) == 0) {
        atomic_store(&g_le_started, 1);
        if (!zl_test_wait_flag(&g_le_done, 300))
            atomic_store(&g_le_blocked, 1);
    }
    on_finished(inst, ctx);
}

static void test_bug_on_finished_holds_lock(void)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    uint16_t port = zl_test_closed_port();

    CU_ASSERT_NOT_EQUAL_FATAL(port, 0);
    rec_new();
    atomic_store(&g_le_started, 0);
    atomic_store(&g_le_done, 0);
    atomic_store(&g_le_blocked, 0);
    g_le_msg[0] = '\0';
    opts_client(&o, "why", &h_base, port);
    o.on_finished = finished_asks_why;
    inst = start(&o);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->finished, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL_FATAL(atomic_load(&g_le_started), 1);
    CU_ASSERT_EQUAL(zl_test_wait_flag(&g_le_done, WAIT_MS), 1);
    pthread_join(g_le_thread, NULL);
    /* The accessor could answer while on_finished ran. */
    CU_ASSERT_EQUAL(atomic_load(&g_le_blocked), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_le_msg, "refused"));
    zl_instance_free(inst);
    rec_done();
}

/* ------------------------------------------------- layer stop time */

/* A pass-through layer whose close never ends: a stopping server waits
 * for such a session as long as the layer's stop_ms says (plus the host's
 * margin), or, for a layer built against ABI 1.0, the connection's send
 * timeout, then closes what is left at the connection level. */
static atomic_int g_ls_closes, g_ls_stop_calls;

static void ls_connect(zl_session_t *s, void *state)
{
    (void)state;
    host->upper_connect(s);
}

static void ls_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    (void)state;
    host->upper_recv(s, buf);
}

static int ls_send(zl_session_t *s, void *state, const void *data,
                   size_t len)
{
    (void)state;
    return host->lower_send(s, data, len);
}

static void ls_close(zl_session_t *s, void *state)
{
    (void)s;
    (void)state;
    atomic_fetch_add(&g_ls_closes, 1); /* and never lower_close */
}

static uint32_t ls_stop_ms(const zl_instance_t *inst, void *data)
{
    (void)inst;
    (void)data;
    atomic_fetch_add(&g_ls_stop_calls, 1);
    return 300;
}

/* Stop a server with one connected session behind layer l; the ms that
 * zl_instance_stop took. */
static int64_t ls_stop_one(const zl_layer_t *l, uint32_t send_timeout_ms)
{
    zl_instance_options_t o;
    zl_instance_t *inst;
    int64_t t0, ms;
    int fd;

    rec_new();
    atomic_store(&g_ls_closes, 0);
    atomic_store(&g_ls_stop_calls, 0);
    opts_server(&o, "lstop", &h_base);
    o.layer = l;
    o.server_opts.conn.send_timeout_ms = send_timeout_ms;
    inst = start(&o);
    fd = raw_connect(server_port(inst), 0);
    CU_ASSERT(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&R->connects, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(strncmp(snap(0).name, "session#", 8), 0);
    t0 = g_get_monotonic_time();
    zl_instance_stop(inst);
    ms = (g_get_monotonic_time() - t0) / 1000;
    CU_ASSERT_EQUAL(atomic_load(&g_ls_closes), 1);
    CU_ASSERT_EQUAL(atomic_load(&R->closed), 1);
    if (fd >= 0)
        close(fd);
    zl_instance_free(inst);
    rec_done();
    return ms;
}

static void test_layer_stop_ms(void)
{
    static const zl_layer_t l = {
        .struct_size = sizeof(zl_layer_t),
        .on_connect = ls_connect,
        .on_recv = ls_recv,
        .send = ls_send,
        .close = ls_close,
        .stop_ms = ls_stop_ms,
    };
    /* The send timeout left at its 10 s default: not what is waited. */
    int64_t ms = ls_stop_one(&l, 0);

    CU_ASSERT_EQUAL(atomic_load(&g_ls_stop_calls), 1);
    ZL_TEST_CHECK(ms >= 250 && ms < (int64_t)slow_ms(3000),
                  "stop took %" G_GINT64_FORMAT " ms; 300 ms + margin "
                  "expected",
                  ms);
}

/* A layer of ABI 1.0 has no stop_ms: the host does not read past
 * ZL_LAYER_SIZE_1_0 (stop_ms here would say 300) and waits the send
 * timeout (500 ms) plus the margin. */
static void test_layer_stop_send_timeout(void)
{
    static const zl_layer_t l = {
        .struct_size = ZL_LAYER_SIZE_1_0,
        .on_connect = ls_connect,
        .on_recv = ls_recv,
        .send = ls_send,
        .close = ls_close,
        .stop_ms = ls_stop_ms,
    };
    int64_t ms = ls_stop_one(&l, 500);

    CU_ASSERT_EQUAL(atomic_load(&g_ls_stop_calls), 0);
    ZL_TEST_CHECK(ms >= 450 && ms < (int64_t)slow_ms(3000),
                  "stop took %" G_GINT64_FORMAT " ms; 500 ms + margin "
                  "expected",
                  ms);
}

/* config_int and config_bool share one typed getter: an integer outside
 * int64_t is -EINVAL (not -ERANGE), reported once with key and value. */
static void test_config_typed_range(void)
{
    static const char *const cfg[] = {"huge", "99999999999999999999", "flag",
                                      "perhaps", NULL};
    zl_instance_options_t o;
    zl_instance_t *inst = NULL;
    int64_t v = 7;
    bool b = true;

    rec_new();
    R->cfg = cfg;
    opts_server(&o, "typed", &h_base);
    CU_ASSERT_EQUAL_FATAL(zl_instance_new(&inst, &o), 0);
    CU_ASSERT_EQUAL(host->config_int(inst, "huge", &v), -EINVAL);
    CU_ASSERT_EQUAL(v, 7);
    CU_ASSERT_EQUAL(host->config_bool(inst, "flag", &b), -EINVAL);
    CU_ASSERT_EQUAL(host->config_int(inst, "absent", &v), -ENOENT);
    CU_ASSERT_EQUAL(R->nreports, 2);
    CU_ASSERT_STRING_EQUAL(R->report_key[0], "huge");
    CU_ASSERT_STRING_EQUAL(R->report_msg[0],
                           "'99999999999999999999' is not an integer");
    CU_ASSERT_STRING_EQUAL(R->report_key[1], "flag");
    CU_ASSERT_PTR_NOT_NULL(strstr(R->report_msg[1], "'perhaps' is not a "
                                                    "boolean ("));
    zl_instance_free(inst);
    rec_done();
}

/* ------------------------------------------------------------ suite */

static int suite_init(void)
{
    zl_runtime_options_t o = {.pollers = 2, .workers = 2};

    host = zl_plugins_host_api();
    return host && zl_runtime_init(&o) == 0 ? 0 : -1;
}

static int suite_cleanup(void)
{
    zl_runtime_shutdown();
    return 0;
}

int zl_test_register_instance(void)
{
    static const zl_test_case_t cases[] = {
        {"server callback order and state", test_server_order},
        {"client session", test_client_session},
        {"client refused", test_client_refused},
        {"idle sessions end with ZL_ETIMEOUT", test_idle_sessions},
        {"client reconnect keeps state", test_client_reconnect_state},
        {"client and server instances", test_client_server_pair},
        {"a handler's fail() is the client's outcome", test_client_fail},
        {"client stopped", test_client_stop},
        {"instance_new reads config", test_instance_config},
        {"instance_new wrong type", test_instance_config_wrong_type},
        {"instance_new error unreported", test_instance_new_error_unreported},
        {"instance_new bad options", test_instance_new_bad_options},
        {"free without start", test_free_without_start},
        {"start errors", test_start_errors},
        {"on_open refuses", test_open_refused},
        {"session timers", test_session_timers},
        {"timers of a refused session never run",
         test_refused_session_timers},
        {"post", test_post},
        {"submit", test_submit},
        {"stop waits for sessions", test_stop_waits_for_sessions},
        {"stop is graceful", test_stop_graceful},
        {"backpressure", test_backpressure},
        {"session_log", test_session_log},
        {"last_error answers while on_finished runs",
         test_bug_on_finished_holds_lock},
        {"session_log from another thread",
         test_bug_session_log_other_thread},
        {"a layer's stop_ms bounds the stop", test_layer_stop_ms},
        {"an ABI 1.0 layer stops within the send timeout",
         test_layer_stop_send_timeout},
        {"config_int out of range: -EINVAL, one report",
         test_config_typed_range},
        {NULL, NULL},
    };

    return zl_test_add_suite("instance", suite_init, suite_cleanup, cases);
}
