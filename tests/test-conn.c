/* zltk tests — TCP connections on loopback (zltk/conn.h, client.h,
 * server.h): data integrity, faults with their error kind and stage,
 * lifecycle (on_closed exactly once, nothing after it), reconnect, limits.
 *
 * Each test makes its own poller pool and worker pool and frees them.
 * Callbacks run on poller threads: everything the test thread reads is an
 * atomic, or a plain field written before an atomic the test thread has
 * already seen (strings are only read after on_closed was counted).
 *
 * Peers are either zltk objects or plain POSIX sockets ("raw"), so that no
 * side only tests itself.  Names never reach DNS: a fake resolver
 * (zl_client_set_resolver) answers good.test, bad.test and slow.test.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <glib.h>

#include "test.h"

#define KIB 1024u
#define MIB (1024u * 1024u)

/* Callbacks that found no valid handler data (should never happen). */
static atomic_int g_bad;

/* ------------------------------------------------------------ streams */

/* Every connection sends its own pseudo-random stream: byte i of stream id
 * is rnd[(base(id) + i) mod 2 MiB].  Streams differ between ids and do not
 * repeat within 2 MiB, so a lost, duplicated, reordered or misrouted byte
 * shows up as a mismatch. */
#define RND_SIZE (2u * MIB)
#define RND_MASK (RND_SIZE - 1)
static uint8_t rnd[RND_SIZE];
static pthread_once_t rnd_once = PTHREAD_ONCE_INIT;

static void rnd_init(void)
{
    uint64_t x = 0x243f6a8885a308d3ull;

    for (size_t i = 0; i < RND_SIZE; i += 8) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        memcpy(rnd + i, &z, 8);
    }
}

static size_t stream_pos(unsigned id, uint64_t off)
{
    return (size_t)(((uint64_t)id * 104729u + off) & RND_MASK);
}

static void stream_fill(unsigned id, uint64_t off, uint8_t *dst, size_t n)
{
    size_t pos = stream_pos(id, off);

    while (n) {
        size_t k = RND_SIZE - pos < n ? RND_SIZE - pos : n;
        memcpy(dst, rnd + pos, k);
        dst += k;
        n -= k;
        pos = 0;
    }
}

static bool stream_check(unsigned id, uint64_t off, const uint8_t *src,
                         size_t n)
{
    size_t pos = stream_pos(id, off);

    while (n) {
        size_t k = RND_SIZE - pos < n ? RND_SIZE - pos : n;
        if (memcmp(src, rnd + pos, k) != 0)
            return false;
        src += k;
        n -= k;
        pos = 0;
    }
    return true;
}

/* ------------------------------------------------------------ env */

typedef struct env {
    zl_poller_pool_t *pool;
    zl_worker_pool_t *workers;
} env_t;

static void env_up(env_t *e, unsigned pollers)
{
    zl_pool_options_t po = {0};

    pthread_once(&rnd_once, rnd_init);
    po.size = pollers;
    po.name_prefix = "zl-conn";
    memset(e, 0, sizeof(*e));
    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&e->pool, &po), 0);
    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&e->workers, 2), 0);
}

static void env_down(env_t *e)
{
    zl_worker_pool_free(e->workers);
    zl_poller_pool_free(e->pool);
    CU_ASSERT_EQUAL(atomic_exchange(&g_bad, 0), 0);
}

static unsigned slow_ms(unsigned ms)
{
    return ms * zl_test_slow();
}


static long long wait_ge_ll(atomic_llong *v, long long want, unsigned ms)
{
    uint64_t end = zl_now_ms() + slow_ms(ms);
    long long x;

    while ((x = atomic_load(v)) < want && zl_now_ms() < end)
        zl_test_sleep_ms(1);
    return x;
}

static uint64_t poller_loops(zl_poller_t *p)
{
    zl_poller_stats_t st;

    zl_poller_get_stats(p, &st);
    return st.loops;
}

/* ------------------------------------------------------------ raw sockets */

static bool have_ipv6(void)
{
    zl_addr_t a;
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    if (fd < 0)
        return false;
    zl_addr_from_ip(&a, "::1", 0);
    ok = bind(fd, &a.u.sa, a.len) == 0;
    close(fd);
    return ok;
}

/* Blocking listener on ip; *port receives the bound port. */
static int raw_listen(const char *ip, int backlog, int rcvbuf, uint16_t *port)
{
    zl_addr_t a;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int one = 1, fd;

    if (zl_addr_from_ip(&a, ip, 0) < 0)
        return -1;
    fd = socket(a.u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (bind(fd, &a.u.sa, a.len) < 0 || listen(fd, backlog) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        close(fd);
        return -1;
    }
    zl_addr_from_sockaddr(&a, (struct sockaddr *)&ss, len);
    *port = zl_addr_port(&a);
    return fd;
}

static int raw_accept(int lfd, unsigned ms)
{
    struct pollfd pfd = {lfd, POLLIN, 0};
    int fd;

    if (poll(&pfd, 1, (int)slow_ms(ms)) != 1)
        return -1;
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        zl_test_sock_timeouts(fd, slow_ms(5000));
    return fd;
}

/* Blocking client; rcvbuf > 0 sets SO_RCVBUF before connecting. */
static int raw_connect(const char *ip, uint16_t port, int rcvbuf)
{
    zl_addr_t a;
    int fd;

    if (zl_addr_from_ip(&a, ip, port) < 0)
        return -1;
    fd = socket(a.u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    zl_test_sock_timeouts(fd, slow_ms(5000));
    if (connect(fd, &a.u.sa, a.len) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Receive exactly n bytes of stream id from offset off, checking them.
 * Returns the bytes received; *bad counts mismatching reads. */
static size_t raw_recv_stream(int fd, unsigned id, uint64_t off, size_t n,
                              int *bad)
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
        if (!stream_check(id, off + got, buf, (size_t)r))
            (*bad)++;
        got += (size_t)r;
    }
    return got;
}

static void raw_reset(int fd)
{
    struct linger lg = {1, 0};

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* A listener whose accept queue is full, so that new SYNs are dropped and
 * a connect to it hangs.  Linux keeps backlog+1 connections queued. */
typedef struct jam {
    int lfd;
    uint16_t port;
    int fill[4];
} jam_t;

static bool jam_up(jam_t *j)
{
    zl_addr_t a;

    j->lfd = raw_listen("127.0.0.1", 0, 0, &j->port);
    if (j->lfd < 0)
        return false;
    zl_addr_from_ip(&a, "127.0.0.1", j->port);
    for (int i = 0; i < 4; i++) {
        j->fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (j->fill[i] >= 0)
            (void)connect(j->fill[i], &a.u.sa, a.len);
    }
    zl_test_sleep_ms(50); /* let the first ones complete into the queue */
    return true;
}

static void jam_down(jam_t *j)
{
    for (int i = 0; i < 4; i++)
        if (j->fill[i] >= 0)
            close(j->fill[i]);
    close(j->lfd);
}

/* ------------------------------------------------------------ server side */

#define SRV_MAGIC 0x53525631u
#define SESS_MAGIC 0x53455353u
#define DEAD_MAGIC 0xdeadbeefu

enum { SRV_ECHO, SRV_SINK, SRV_CLOSER, SRV_PUSH, SRV_PAUSE };

/* Shared by all sessions of one server (the server's data pointer). */
typedef struct srv {
    uint32_t magic;
    int mode;
    bool pause_on_busy; /* echo: pause reading while the echo is busy */
    long long close_after; /* close a session once this much arrived */
    bool hold_first;       /* keep a reference to the first session in held */
    bool start_paused;     /* sessions start paused (and the first is held):
                            * the peer's queue must grow until the test
                            * resumes it */
    atomic_int connects, closed, bad, errs, busy_on, busy_off, managers,
        flushes, recvs;
    atomic_int n_eof, n_reset, n_timeout, n_other;
    atomic_int err_code, err_stage, err_sys;
    atomic_llong rx, tx, rx_at_err, queued_at_err;
    atomic_llong rx_live; /* bytes seen in on_recv */
    /* SRV_PUSH: the send that crossed the high watermark returned BUSY;
     * queued then, and the most queued seen later. */
    atomic_int push_busy_rc, push_more_busy;
    atomic_llong push_queued_busy, push_queued_max, t_busy, t_err;
    /* SRV_PAUSE: a reference to the (first) session for the test thread. */
    _Atomic(zl_conn_t *) held;
    pthread_mutex_t lock;
    int npeers;
    char peers[16][ZL_ADDR_STRLEN];
    char closed_peer[ZL_ADDR_STRLEN];
    char closed_local[ZL_ADDR_STRLEN]; /* the last on_closed's, under lock */
    char local_at_connect[ZL_ADDR_STRLEN]; /* the last on_connect's */
    char err_msg[256]; /* the last on_err's message, under lock */
    atomic_llong t_connect;
    atomic_int tick_sends; /* on_manager sends one byte while this is > 0 */
} srv_t;

typedef struct sess {
    uint32_t magic;
    srv_t *sv;
    bool closing;
} sess_t;

static void srv_init(srv_t *sv, int mode)
{
    memset(sv, 0, sizeof(*sv));
    sv->magic = SRV_MAGIC;
    sv->mode = mode;
    pthread_mutex_init(&sv->lock, NULL);
}

static void srv_fini(srv_t *sv)
{
    pthread_mutex_destroy(&sv->lock);
}

static bool srv_has_peer(srv_t *sv, const char *prefix)
{
    bool found = false;

    pthread_mutex_lock(&sv->lock);
    for (int i = 0; i < sv->npeers; i++)
        if (!strncmp(sv->peers[i], prefix, strlen(prefix)))
            found = true;
    pthread_mutex_unlock(&sv->lock);
    return found;
}

static sess_t *sess_enter(zl_conn_t *c, bool final)
{
    sess_t *s = zl_conn_get_data(c);

    if (!s || s->magic != SESS_MAGIC) {
        atomic_fetch_add(&g_bad, 1);
        return NULL;
    }
    if (!zl_poller_is_current(zl_conn_poller(c)))
        atomic_fetch_add(&s->sv->bad, 1);
    if (s->closing && !final)
        atomic_fetch_add(&s->sv->bad, 1); /* a callback after close/on_err */
    return s;
}

static void srv_push(zl_conn_t *c, srv_t *sv)
{
    uint8_t chunk[16 * KIB];

    memset(chunk, 'p', sizeof(chunk));
    for (int i = 0; i < 1024; i++) {
        int rc = zl_conn_send(c, chunk, sizeof(chunk));
        if (rc == ZL_CONN_BUSY) {
            atomic_store(&sv->push_queued_busy, (long long)zl_conn_queued(c));
            atomic_store(&sv->push_queued_max, (long long)zl_conn_queued(c));
            atomic_store(&sv->push_busy_rc, 1);
            return;
        }
        if (rc != 0) {
            atomic_fetch_add(&sv->bad, 1);
            return;
        }
    }
}

static void srv_on_connect(zl_conn_t *c, const zl_error_t *err)
{
    srv_t *sv = zl_conn_get_data(c);
    sess_t *s;

    if (!sv || sv->magic != SRV_MAGIC) {
        atomic_fetch_add(&g_bad, 1);
        return;
    }
    if (err || !zl_poller_is_current(zl_conn_poller(c)))
        atomic_fetch_add(&sv->bad, 1);
    s = calloc(1, sizeof(*s));
    s->magic = SESS_MAGIC;
    s->sv = sv;
    zl_conn_set_data(c, s);
    pthread_mutex_lock(&sv->lock);
    if (sv->npeers < 16)
        zl_addr_format(zl_conn_peer(c), sv->peers[sv->npeers++], ZL_ADDR_STRLEN);
    zl_addr_format(zl_conn_local(c), sv->local_at_connect, ZL_ADDR_STRLEN);
    pthread_mutex_unlock(&sv->lock);
    atomic_store(&sv->t_connect, (long long)zl_now_ms());
    atomic_fetch_add(&sv->connects, 1);
    switch (sv->mode) {
    case SRV_CLOSER:
        s->closing = true;
        zl_conn_close(c);
        break;
    case SRV_PUSH:
        srv_push(c, sv);
        break;
    case SRV_PAUSE:
        zl_conn_pause(c);
        break;
    default:
        break;
    }
    if (sv->start_paused)
        zl_conn_pause(c);
    if ((sv->mode == SRV_PAUSE || sv->hold_first || sv->start_paused) &&
        !atomic_load(&sv->held))
        atomic_store(&sv->held, zl_conn_ref(c));
}

static void srv_on_recv(zl_conn_t *c, zl_buf_t *buf)
{
    sess_t *s = sess_enter(c, false);

    if (!s)
        return;
    atomic_fetch_add(&s->sv->recvs, 1);
    atomic_fetch_add(&s->sv->rx_live, (long long)buf->len);
    if (buf->len == 0)
        atomic_fetch_add(&s->sv->bad, 1);
    if (s->sv->mode == SRV_ECHO || s->sv->mode == SRV_PAUSE) {
        /* ZL_ESHUTDOWN: the write failed and on_err already ran. */
        int rc = zl_conn_send(c, buf->data, buf->len);
        if (rc < 0 && !(rc == ZL_ESHUTDOWN && s->closing))
            atomic_fetch_add(&s->sv->bad, 1);
    }
    if (s->sv->close_after &&
        atomic_load(&s->sv->rx_live) >= s->sv->close_after && !s->closing) {
        s->closing = true;
        zl_conn_close(c);
    }
}

static void srv_on_err(zl_conn_t *c, const zl_error_t *err)
{
    sess_t *s = sess_enter(c, false);
    srv_t *sv;

    if (!s)
        return;
    sv = s->sv;
    s->closing = true;
    atomic_store(&sv->err_code, err->code);
    atomic_store(&sv->err_stage, (int)err->stage);
    atomic_store(&sv->err_sys, err->sys);
    atomic_store(&sv->rx_at_err, (long long)zl_conn_bytes_received(c));
    atomic_store(&sv->queued_at_err, (long long)zl_conn_queued(c));
    atomic_store(&sv->t_err, (long long)zl_now_ms());
    if (!err->message || !*err->message)
        atomic_fetch_add(&sv->bad, 1);
    pthread_mutex_lock(&sv->lock);
    g_strlcpy(sv->err_msg, err->message ? err->message : "", sizeof(sv->err_msg));
    pthread_mutex_unlock(&sv->lock);
    switch (err->code) {
    case ZL_EOF: atomic_fetch_add(&sv->n_eof, 1); break;
    case ZL_ERESET: atomic_fetch_add(&sv->n_reset, 1); break;
    case ZL_ETIMEOUT: atomic_fetch_add(&sv->n_timeout, 1); break;
    default: atomic_fetch_add(&sv->n_other, 1); break;
    }
    atomic_fetch_add(&sv->errs, 1);
}

static void srv_on_flush(zl_conn_t *c)
{
    sess_t *s = sess_enter(c, false);

    if (s)
        atomic_fetch_add(&s->sv->flushes, 1);
}

static void srv_on_busy(zl_conn_t *c, bool busy)
{
    sess_t *s = sess_enter(c, false);

    if (!s)
        return;
    if (busy) {
        if (!atomic_load(&s->sv->busy_on))
            atomic_store(&s->sv->t_busy, (long long)zl_now_ms());
        atomic_fetch_add(&s->sv->busy_on, 1);
    } else {
        atomic_fetch_add(&s->sv->busy_off, 1);
    }
    if (s->sv->pause_on_busy) {
        if (busy)
            zl_conn_pause(c);
        else
            zl_conn_resume(c);
    }
}

static void srv_on_manager(zl_conn_t *c)
{
    sess_t *s = sess_enter(c, false);

    if (!s)
        return;
    atomic_fetch_add(&s->sv->managers, 1);
    if (atomic_load(&s->sv->tick_sends) > 0 &&
        atomic_fetch_sub(&s->sv->tick_sends, 1) > 0 &&
        zl_conn_send(c, "t", 1) < 0)
        atomic_fetch_add(&s->sv->bad, 1);
    if (s->sv->mode == SRV_PUSH && atomic_load(&s->sv->push_busy_rc)) {
        uint8_t chunk[16 * KIB];
        long long q;
        memset(chunk, 'm', sizeof(chunk));
        if (zl_conn_send(c, chunk, sizeof(chunk)) == ZL_CONN_BUSY)
            atomic_fetch_add(&s->sv->push_more_busy, 1);
        q = (long long)zl_conn_queued(c);
        if (q > atomic_load(&s->sv->push_queued_max))
            atomic_store(&s->sv->push_queued_max, q);
    }
}

static void srv_on_closed(zl_conn_t *c)
{
    sess_t *s = sess_enter(c, true);
    srv_t *sv;

    if (!s)
        return;
    sv = s->sv;
    atomic_fetch_add(&sv->rx, (long long)zl_conn_bytes_received(c));
    atomic_fetch_add(&sv->tx, (long long)zl_conn_bytes_sent(c));
    pthread_mutex_lock(&sv->lock);
    zl_addr_format(zl_conn_peer(c), sv->closed_peer, ZL_ADDR_STRLEN);
    zl_addr_format(zl_conn_local(c), sv->closed_local, ZL_ADDR_STRLEN);
    pthread_mutex_unlock(&sv->lock);
    s->magic = DEAD_MAGIC;
    free(s);
    atomic_fetch_add(&sv->closed, 1);
}

static const zl_conn_handler_t srv_handler = {
    .on_connect = srv_on_connect,
    .on_recv = srv_on_recv,
    .on_err = srv_on_err,
    .on_flush = srv_on_flush,
    .on_busy = srv_on_busy,
    .on_manager = srv_on_manager,
    .on_closed = srv_on_closed,
};

/* The defaults (ZL_SERVER_OPTIONS_INIT), listening on host. */
static zl_server_options_t srv_opts(const char *host)
{
    zl_server_options_t o = ZL_SERVER_OPTIONS_INIT;

    o.host = host;
    return o;
}

static zl_server_t *srv_start(env_t *e, srv_t *sv, zl_server_options_t *o)
{
    zl_server_t *s = NULL;
    int rc;

    o->pool = e->pool;
    rc = zl_server_new(&s, o, &srv_handler, sv);
    if (rc != 0)
        fprintf(stderr, "\n  zl_server_new: %s\n", zl_strerror(rc));
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    return s;
}

static uint16_t srv_port(const zl_server_t *s)
{
    return zl_addr_port(zl_server_addr(s));
}

/* Free the server after its sessions closed (bounded), checking that
 * nothing was wrong on its side. */
static void srv_stop(zl_server_t *s, srv_t *sv)
{
    zl_test_wait_ge(&sv->closed, atomic_load(&sv->connects), 5000);
    zl_server_free(s);
    CU_ASSERT_EQUAL(atomic_load(&sv->closed), atomic_load(&sv->connects));
    CU_ASSERT_EQUAL(atomic_load(&sv->bad), 0);
}

/* ------------------------------------------------------------ client side */

#define PROBE_MAGIC 0x50524f42u

/* Where a probe closes its connection from. */
enum { AT_NONE, AT_CONNECT, AT_CONNECT_ERR, AT_RECV, AT_FLUSH, AT_BUSY,
       AT_MANAGER, AT_ERR };

#define MAX_CERR_TIMES 32

typedef struct probe {
    uint32_t magic;
    unsigned id;
    /* Configuration, set before connecting. */
    uint64_t total;         /* bytes of stream `id` to send */
    size_t chunk;           /* largest zl_conn_send() */
    bool chunk_fixed;       /* every send is exactly chunk bytes */
    bool no_pump;           /* the test thread sends, not the callbacks */
    bool ignore_busy;       /* keep sending above the high watermark */
    bool verify;            /* check what arrives against the stream */
    bool close_when_echoed; /* close once total bytes came back */
    bool ping_pong;         /* send back whatever arrives */
    bool reconnect;         /* errors are not final: more attempts follow */
    bool shutdown_when_sent; /* zl_conn_shutdown() once total is queued */
    int close_at;           /* AT_*: close from inside that callback */
    atomic_int *all_closed; /* incremented in on_closed */
    zl_conn_t *ref;         /* test thread's reference (test thread only) */
    /* Owner-thread state. */
    uint64_t sent_off, recv_off;
    uint32_t rng;
    bool closing, pumping;
    int ncerr_times;
    uint64_t cerr_times[MAX_CERR_TIMES];
    /* Results. */
    atomic_int connected, cerrs, recvs, errs, flushes, busy_on, busy_off,
        managers, closed;
    atomic_int late, bad, mismatch, send_fail, cerr_nonrefused;
    atomic_int cerr_code, cerr_stage, cerr_sys, err_code, err_stage, err_sys;
    atomic_llong rx, sent_accepted, final_sent, final_recv, rx_at_err;
    /* on_flush: called with bytes still queued; bytes sent when the last
     * on_flush found the queue empty. */
    atomic_int flush_nonempty;
    atomic_llong flushed_at;
    atomic_int send_after_shutdown; /* zl_conn_send() result after it */
    /* Strings: read by the test thread only after `closed`. */
    char cerr_msg[256], err_msg[256];
    char peer_at_connect[ZL_ADDR_STRLEN], local_at_connect[ZL_ADDR_STRLEN];
    char peer_at_err[ZL_ADDR_STRLEN], local_at_err[ZL_ADDR_STRLEN];
    char peer_at_closed[ZL_ADDR_STRLEN], local_at_closed[ZL_ADDR_STRLEN];
} probe_t;

static void probe_init(probe_t *p, unsigned id)
{
    memset(p, 0, sizeof(*p));
    p->magic = PROBE_MAGIC;
    p->id = id;
    p->chunk = 16 * KIB;
    p->rng = id * 2654435761u + 1;
}

static uint32_t probe_rand(probe_t *p)
{
    p->rng = p->rng * 1103515245u + 12345u;
    return p->rng >> 8;
}

static probe_t *probe_enter(zl_conn_t *c, bool final)
{
    probe_t *p = zl_conn_get_data(c);

    if (!p || p->magic != PROBE_MAGIC) {
        atomic_fetch_add(&g_bad, 1);
        return NULL;
    }
    if (atomic_load(&p->closed))
        atomic_fetch_add(&p->late, 1); /* anything after on_closed */
    else if (p->closing && !final)
        atomic_fetch_add(&p->late, 1); /* anything but on_closed after close */
    if (!zl_poller_is_current(zl_conn_poller(c)))
        atomic_fetch_add(&p->bad, 1);
    return p;
}

static void probe_close(zl_conn_t *c, probe_t *p)
{
    p->closing = true;
    zl_conn_close(c);
}

static void probe_pump(zl_conn_t *c, probe_t *p)
{
    uint8_t stackbuf[64 * KIB], *tmp;

    if (p->pumping || p->no_pump)
        return;
    p->pumping = true;
    while (!p->closing && p->sent_off < p->total) {
        size_t n = p->chunk_fixed ? p->chunk : 1 + probe_rand(p) % p->chunk;
        int rc;

        if (n > p->total - p->sent_off)
            n = (size_t)(p->total - p->sent_off);
        tmp = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
        stream_fill(p->id, p->sent_off, tmp, n);
        rc = zl_conn_send(c, tmp, n);
        if (tmp != stackbuf)
            free(tmp);
        if (rc < 0) {
            atomic_store(&p->send_fail, rc);
            break;
        }
        p->sent_off += n;
        atomic_store(&p->sent_accepted, (long long)p->sent_off);
        if (rc == ZL_CONN_BUSY && !p->ignore_busy)
            break;
    }
    if (p->shutdown_when_sent && p->sent_off == p->total && !p->closing) {
        p->shutdown_when_sent = false;
        zl_conn_shutdown(c);
        atomic_store(&p->send_after_shutdown, zl_conn_send(c, "late", 4));
    }
    p->pumping = false;
}

static void probe_on_connect(zl_conn_t *c, const zl_error_t *err)
{
    probe_t *p = probe_enter(c, false);

    if (!p)
        return;
    if (err) {
        atomic_store(&p->cerr_code, err->code);
        atomic_store(&p->cerr_stage, (int)err->stage);
        atomic_store(&p->cerr_sys, err->sys);
        g_strlcpy(p->cerr_msg, err->message ? err->message : "(null)",
                  sizeof(p->cerr_msg));
        if (!err->message || !*err->message)
            atomic_fetch_add(&p->bad, 1);
        if (err->code != ZL_EREFUSED)
            atomic_fetch_add(&p->cerr_nonrefused, 1);
        if (p->ncerr_times < MAX_CERR_TIMES)
            p->cerr_times[p->ncerr_times++] = zl_now_ms();
        atomic_fetch_add(&p->cerrs, 1);
        if (p->close_at == AT_CONNECT_ERR) {
            probe_close(c, p);
            return;
        }
        if (!p->reconnect)
            p->closing = true; /* only on_closed may follow */
        return;
    }
    zl_addr_format(zl_conn_peer(c), p->peer_at_connect, ZL_ADDR_STRLEN);
    zl_addr_format(zl_conn_local(c), p->local_at_connect, ZL_ADDR_STRLEN);
    p->sent_off = p->recv_off = 0;
    atomic_fetch_add(&p->connected, 1);
    if (p->close_at == AT_CONNECT) {
        probe_close(c, p);
        return;
    }
    probe_pump(c, p);
}

static void probe_on_recv(zl_conn_t *c, zl_buf_t *buf)
{
    probe_t *p = probe_enter(c, false);

    if (!p)
        return;
    atomic_fetch_add(&p->recvs, 1);
    if (buf->len == 0)
        atomic_fetch_add(&p->bad, 1);
    if (p->verify && !stream_check(p->id, p->recv_off, buf->data, buf->len))
        atomic_fetch_add(&p->mismatch, 1);
    p->recv_off += buf->len;
    atomic_store(&p->rx, (long long)p->recv_off);
    if (p->close_at == AT_RECV) {
        probe_close(c, p);
        return;
    }
    if (p->ping_pong && zl_conn_send(c, buf->data, buf->len) < 0)
        atomic_fetch_add(&p->send_fail, 1);
    if (p->close_when_echoed && p->recv_off >= p->total)
        probe_close(c, p);
}

static void probe_on_err(zl_conn_t *c, const zl_error_t *err)
{
    probe_t *p = probe_enter(c, false);

    if (!p)
        return;
    atomic_store(&p->err_code, err->code);
    atomic_store(&p->err_stage, (int)err->stage);
    atomic_store(&p->err_sys, err->sys);
    atomic_store(&p->rx_at_err, (long long)zl_conn_bytes_received(c));
    g_strlcpy(p->err_msg, err->message ? err->message : "(null)",
              sizeof(p->err_msg));
    zl_addr_format(zl_conn_peer(c), p->peer_at_err, ZL_ADDR_STRLEN);
    zl_addr_format(zl_conn_local(c), p->local_at_err, ZL_ADDR_STRLEN);
    atomic_fetch_add(&p->errs, 1);
    if (p->close_at == AT_ERR) {
        probe_close(c, p);
        return;
    }
    if (!p->reconnect)
        p->closing = true;
}

static void probe_on_flush(zl_conn_t *c)
{
    probe_t *p = probe_enter(c, false);

    if (!p)
        return;
    if (zl_conn_queued(c) != 0)
        atomic_fetch_add(&p->flush_nonempty, 1);
    else
        atomic_store(&p->flushed_at, (long long)p->sent_off);
    atomic_fetch_add(&p->flushes, 1);
    if (p->close_at == AT_FLUSH) {
        probe_close(c, p);
        return;
    }
    probe_pump(c, p);
}

static void probe_on_busy(zl_conn_t *c, bool busy)
{
    probe_t *p = probe_enter(c, false);

    if (!p)
        return;
    atomic_fetch_add(busy ? &p->busy_on : &p->busy_off, 1);
    if (busy && p->close_at == AT_BUSY) {
        probe_close(c, p);
        return;
    }
    if (!busy)
        probe_pump(c, p);
}

static void probe_on_manager(zl_conn_t *c)
{
    probe_t *p = probe_enter(c, false);

    if (!p)
        return;
    atomic_fetch_add(&p->managers, 1);
    if (p->close_at == AT_MANAGER)
        probe_close(c, p);
}

static void probe_on_closed(zl_conn_t *c)
{
    probe_t *p = probe_enter(c, true);

    if (!p)
        return;
    atomic_store(&p->final_sent, (long long)zl_conn_bytes_sent(c));
    atomic_store(&p->final_recv, (long long)zl_conn_bytes_received(c));
    zl_addr_format(zl_conn_peer(c), p->peer_at_closed, ZL_ADDR_STRLEN);
    zl_addr_format(zl_conn_local(c), p->local_at_closed, ZL_ADDR_STRLEN);
    atomic_fetch_add(&p->closed, 1);
    if (p->all_closed)
        atomic_fetch_add(p->all_closed, 1);
}

static const zl_conn_handler_t probe_handler = {
    .on_connect = probe_on_connect,
    .on_recv = probe_on_recv,
    .on_err = probe_on_err,
    .on_flush = probe_on_flush,
    .on_busy = probe_on_busy,
    .on_manager = probe_on_manager,
    .on_closed = probe_on_closed,
};

static void copts_init(zl_client_options_t *o, env_t *e, const char *host,
                       uint16_t port)
{
    *o = (zl_client_options_t)ZL_CLIENT_OPTIONS_INIT;
    o->host = host;
    o->port = port;
    o->poller = zl_poller_pool_get(e->pool, false);
    o->workers = e->workers;
}

/* Connect; with_ref keeps a reference in p->ref for the test thread. */
static void probe_connect(probe_t *p, const zl_client_options_t *o,
                          bool with_ref)
{
    int rc = zl_client_connect(with_ref ? &p->ref : NULL, o, &probe_handler, p);

    CU_ASSERT_EQUAL_FATAL(rc, 0);
    if (with_ref)
        CU_ASSERT_PTR_NOT_NULL_FATAL(p->ref);
}

/* Runs on the owner poller after everything posted before it: from then
 * on the probe expects nothing but on_closed. */
static void mark_closing(void *arg)
{
    ((probe_t *)arg)->closing = true;
}

/* End a probe whatever happened: close it if still open (a failed test
 * must not leak), wait for on_closed, drop the reference. */
static void probe_end(probe_t *p)
{
    if (!atomic_load(&p->closed) && p->ref) {
        zl_conn_close(p->ref);
        zl_poller_sync(zl_conn_poller(p->ref), mark_closing, p);
    }
    zl_test_wait_ge(&p->closed, 1, 3000);
    if (p->ref)
        zl_conn_unref(p->ref);
    p->ref = NULL;
}

/* The lifecycle promises every test checks. */
static void probe_check_clean(probe_t *p)
{
    CU_ASSERT_EQUAL(atomic_load(&p->closed), 1);
    CU_ASSERT_EQUAL(atomic_load(&p->late), 0);
    CU_ASSERT_EQUAL(atomic_load(&p->bad), 0);
    CU_ASSERT_EQUAL(atomic_load(&p->mismatch), 0);
}

/* Owner-thread snapshot of the send queue. */
typedef struct qsnap {
    zl_conn_t *c;
    size_t queued;
    bool busy;
} qsnap_t;

static void qsnap_task(void *arg)
{
    qsnap_t *q = arg;

    q->queued = zl_conn_queued(q->c);
    q->busy = zl_conn_is_busy(q->c);
}

static size_t conn_queued(zl_conn_t *c, bool *busy)
{
    qsnap_t q = {c, 0, false};

    zl_poller_sync(zl_conn_poller(c), qsnap_task, &q);
    if (busy)
        *busy = q.busy;
    return q.queued;
}

/* ------------------------------------------------------------ resolver */

static atomic_int res_calls, res_port, res_family, res_slow_done;
static char res_first[64] = "::1"; /* set by the test before connecting */
static char res_hang_port[8];      /* eyeballs.test's first address */

static int numeric_ai(const char *ip, const char *port,
                      const struct addrinfo *hints, struct addrinfo **res)
{
    struct addrinfo h = *hints;

    h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
    return getaddrinfo(ip, port, &h, res);
}

/* good.test: res_first (refusing) then 127.0.0.1; eyeballs.test:
 * 127.0.0.1 on res_hang_port (a jammed listener), then 127.0.0.1 on the
 * port asked for; bad.test: EAI_NONAME; slow.test: 127.0.0.1 after 1 s.  Lists come from getaddrinfo() itself
 * (numeric only, no DNS) so freeaddrinfo() can free them. */
static int fake_resolve(const char *host, const char *port,
                        const struct addrinfo *hints, struct addrinfo **res)
{
    atomic_fetch_add(&res_calls, 1);
    atomic_store(&res_port, atoi(port));
    atomic_store(&res_family, hints ? hints->ai_family : -1);
    if (!strcmp(host, "good.test") || !strcmp(host, "eyeballs.test")) {
        bool eb = !strcmp(host, "eyeballs.test");
        struct addrinfo *a = NULL, *b = NULL, *t;
        int rc = numeric_ai(eb ? "127.0.0.1" : res_first,
                            eb ? res_hang_port : port, hints, &a);
        if (rc)
            return rc;
        rc = numeric_ai("127.0.0.1", port, hints, &b);
        if (rc) {
            freeaddrinfo(a);
            return rc;
        }
        for (t = a; t->ai_next; t = t->ai_next)
            ;
        t->ai_next = b;
        *res = a;
        return 0;
    }
    if (!strcmp(host, "slow.test")) {
        int rc;
        zl_test_sleep_ms(1000);
        rc = numeric_ai("127.0.0.1", port, hints, res);
        atomic_store(&res_slow_done, 1);
        return rc;
    }
    return EAI_NONAME;
}

static void resolver_on(void)
{
    atomic_store(&res_calls, 0);
    atomic_store(&res_port, 0);
    atomic_store(&res_family, -1);
    atomic_store(&res_slow_done, 0);
    zl_client_set_resolver(fake_resolve);
}

/* ================================================================ data */

/* n zltk clients against a zltk echo server (which pauses reading while its
 * echo is busy); each sends `bytes` of its own stream in sends of up to
 * `chunk` bytes (exactly `chunk` when fixed) and checks the echo byte for
 * byte, then closes.  Checks totals on both sides. */
static void echo_many(unsigned n, uint64_t bytes, size_t chunk, bool fixed,
                      unsigned timeout_ms)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t *p = calloc(n, sizeof(*p));
    atomic_int all = 0;
    unsigned bad_probes = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    sv.pause_on_busy = true;
    s = srv_start(&e, &sv, &so);
    for (unsigned i = 0; i < n; i++) {
        zl_client_options_t o;
        probe_init(&p[i], i + 1);
        p[i].total = bytes;
        p[i].chunk = chunk;
        p[i].chunk_fixed = fixed;
        p[i].verify = true;
        p[i].close_when_echoed = true;
        p[i].all_closed = &all;
        copts_init(&o, &e, "127.0.0.1", srv_port(s));
        o.conn.high_water = 256 * KIB;
        o.conn.low_water = 64 * KIB;
        probe_connect(&p[i], &o, true);
    }
    CU_ASSERT_EQUAL(zl_test_wait_ge(&all, (int)n, timeout_ms), (int)n);
    for (unsigned i = 0; i < n; i++) {
        probe_t *q = &p[i];
        probe_end(q);
        if (atomic_load(&q->closed) != 1 || atomic_load(&q->mismatch) ||
            atomic_load(&q->late) || atomic_load(&q->bad) ||
            atomic_load(&q->errs) || atomic_load(&q->cerrs) ||
            atomic_load(&q->send_fail) ||
            atomic_load(&q->final_sent) != (long long)bytes ||
            atomic_load(&q->final_recv) != (long long)bytes) {
            if (bad_probes++ < 3)
                fprintf(stderr,
                        "\n  client %u: closed %d mismatch %d late %d bad %d "
                        "errs %d cerrs %d send_fail %d sent %lld recv %lld\n",
                        q->id, atomic_load(&q->closed), atomic_load(&q->mismatch),
                        atomic_load(&q->late), atomic_load(&q->bad),
                        atomic_load(&q->errs), atomic_load(&q->cerrs),
                        atomic_load(&q->send_fail), atomic_load(&q->final_sent),
                        atomic_load(&q->final_recv));
        }
    }
    CU_ASSERT_EQUAL(bad_probes, 0);
    /* The server saw each client's end of stream and closed. */
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, (int)n, 5000), (int)n);
    CU_ASSERT_EQUAL(atomic_load(&sv.connects), (int)n);
    CU_ASSERT_EQUAL(atomic_load(&sv.n_eof), (int)n);
    CU_ASSERT_EQUAL(atomic_load(&sv.errs), (int)n);
    CU_ASSERT_EQUAL(atomic_load(&sv.rx), (long long)(n * bytes));
    CU_ASSERT_EQUAL(atomic_load(&sv.tx), (long long)(n * bytes));
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
    free(p);
}

/* 100 clients x 1 MiB, sends of 1..64 KiB. */
static void test_echo_100x1m(void)
{
    echo_many(100, MIB, 64 * KIB, false, 60000);
}

/* 100 clients x 64 KiB, one byte per zl_conn_send() call (6.5 M calls;
 * 1 MiB each would take minutes under the sanitizers). */
static void test_echo_100x64k_1byte(void)
{
    echo_many(100, 64 * KIB, 1, true, 60000);
}

/* A plain blocking POSIX client against the zltk echo server: 1 MiB out,
 * the same 1 MiB back, then a half-close and the server's end of stream. */
static void test_raw_client_zltk_server(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    const size_t total = MIB;
    size_t out = 0, in = 0;
    int fd, bad = 0, idle = 0;
    uint8_t buf[32 * KIB];

    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    sv.pause_on_busy = true;
    s = srv_start(&e, &sv, &so);
    fd = raw_connect("127.0.0.1", srv_port(s), 0);
    CU_ASSERT_FATAL(fd >= 0);
    /* Write and read interleaved so that neither side's buffers block. */
    while (in < total && idle < 1000) {
        struct pollfd pfd = {fd, POLLIN | (out < total ? POLLOUT : 0), 0};
        if (poll(&pfd, 1, (int)slow_ms(10)) <= 0) {
            idle++;
            continue;
        }
        idle = 0;
        if ((pfd.revents & POLLOUT) && out < total) {
            size_t n = total - out < 24 * KIB ? total - out : 24 * KIB - (out % 7);
            ssize_t w;
            stream_fill(77, out, buf, n);
            w = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                out += (size_t)w;
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (r > 0) {
                if (!stream_check(77, in, buf, (size_t)r))
                    bad++;
                in += (size_t)r;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                break;
            }
        }
    }
    CU_ASSERT_EQUAL(out, total);
    CU_ASSERT_EQUAL(in, total);
    CU_ASSERT_EQUAL(bad, 0);
    shutdown(fd, SHUT_WR);
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), 0); /* the server closes too */
    close(fd);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 5000), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.n_eof), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.rx), (long long)total);
    CU_ASSERT_EQUAL(atomic_load(&sv.tx), (long long)total);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* A plain POSIX echo thread serving one connection. */
typedef struct posix_echo {
    int lfd;
    atomic_llong bytes;
    atomic_int result; /* 1: saw end of stream, -errno on failure */
} posix_echo_t;

static void *posix_echo_main(void *arg)
{
    posix_echo_t *pe = arg;
    uint8_t buf[16 * KIB];
    int fd = raw_accept(pe->lfd, 5000);

    if (fd < 0) {
        atomic_store(&pe->result, -ETIMEDOUT);
        return NULL;
    }
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            atomic_store(&pe->result, r == 0 ? 1 : -errno);
            break;
        }
        if (!zl_test_send_all(fd, buf, (size_t)r)) {
            atomic_store(&pe->result, -errno);
            break;
        }
        atomic_fetch_add(&pe->bytes, r);
    }
    close(fd);
    return NULL;
}

/* A zltk client against the POSIX echo thread: 1 MiB checked byte for
 * byte, then the client closes and the thread sees end of stream. */
static void test_zltk_client_raw_server(void)
{
    env_t e;
    posix_echo_t pe = {0};
    pthread_t th;
    uint16_t port = 0;
    probe_t p;
    zl_client_options_t o;

    env_up(&e, 2);
    pe.lfd = raw_listen("127.0.0.1", 8, 0, &port);
    CU_ASSERT_FATAL(pe.lfd >= 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, posix_echo_main, &pe), 0);
    probe_init(&p, 5);
    p.total = MIB;
    p.chunk = 48 * KIB;
    p.verify = true;
    p.close_when_echoed = true;
    copts_init(&o, &e, "127.0.0.1", port);
    o.conn.high_water = 128 * KIB;
    o.conn.low_water = 32 * KIB;
    probe_connect(&p, &o, true);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 20000), 1);
    probe_end(&p);
    pthread_join(th, NULL);
    close(pe.lfd);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.connected), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 0);
    CU_ASSERT_EQUAL(atomic_load(&p.final_sent), (long long)MIB);
    CU_ASSERT_EQUAL(atomic_load(&p.final_recv), (long long)MIB);
    CU_ASSERT_EQUAL(atomic_load(&pe.bytes), (long long)MIB);
    CU_ASSERT_EQUAL(atomic_load(&pe.result), 1);
    env_down(&e);
}

/* ================================================================ faults */

/* Nothing listens: on_connect(err) with ZL_EREFUSED at stage connect, no
 * on_err, then on_closed exactly once. */
static void test_refused(void)
{
    env_t e;
    probe_t p;
    zl_client_options_t o;
    uint16_t port = zl_test_closed_port();
    char want[32];

    CU_ASSERT_FATAL(port != 0);
    env_up(&e, 1);
    probe_init(&p, 1);
    copts_init(&o, &e, "127.0.0.1", port);
    probe_connect(&p, &o, false);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    zl_test_sleep_ms(100);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.cerrs), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.connected), 0);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 0);
    CU_ASSERT_EQUAL(atomic_load(&p.cerr_code), ZL_EREFUSED);
    CU_ASSERT_EQUAL(atomic_load(&p.cerr_stage), ZL_STAGE_CONNECT);
    CU_ASSERT_EQUAL(atomic_load(&p.cerr_sys), ECONNREFUSED);
    snprintf(want, sizeof(want), "127.0.0.1:%u", port);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.cerr_msg, want));
    env_down(&e);
}

/* SYNs dropped by a full accept queue: ZL_ETIMEOUT at stage connect after
 * about connect_timeout_ms. */
static void test_connect_timeout(void)
{
    env_t e;
    jam_t j;
    probe_t p;
    zl_client_options_t o;
    uint64_t t0, dt;

    CU_ASSERT_FATAL(jam_up(&j));
    env_up(&e, 1);
    probe_init(&p, 1);
    copts_init(&o, &e, "127.0.0.1", j.port);
    o.connect_timeout_ms = 300;
    t0 = zl_now_ms();
    probe_connect(&p, &o, false);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    dt = zl_now_ms() - t0;
    zl_test_sleep_ms(50);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.cerrs), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.connected), 0);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 0);
    CU_ASSERT_EQUAL(atomic_load(&p.cerr_code), ZL_ETIMEOUT);
    CU_ASSERT_EQUAL(atomic_load(&p.cerr_stage), ZL_STAGE_CONNECT);
    CU_ASSERT(dt >= 290);
    CU_ASSERT(dt < 300 + slow_ms(1500));
    env_down(&e);
    jam_down(&j);
}

/* Name resolution fails: ZL_EDNS at stage resolve. */
static void test_dns_fail(void)
{
    env_t e;
    probe_t p;
    zl_client_options_t o;

    env_up(&e, 1);
    resolver_on();
    probe_init(&p, 1);
    copts_init(&o, &e, "bad.test", 80);
    probe_connect(&p, &o, false);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    zl_test_sleep_ms(50);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&res_calls), 1);
    CU_ASSERT_EQUAL(atomic_load(&res_port), 80);
    CU_ASSERT_EQUAL(atomic_load(&res_family), AF_UNSPEC);
    CU_ASSERT_EQUAL(atomic_load(&p.cerrs), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 0);
    CU_ASSERT_EQUAL(atomic_load(&p.cerr_code), ZL_EDNS);
    CU_ASSERT_EQUAL(atomic_load(&p.cerr_stage), ZL_STAGE_RESOLVE);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.cerr_msg, "bad.test"));
    zl_client_set_resolver(NULL);
    env_down(&e);
}

/* A name with two addresses, the first refusing: the second is tried and
 * the client connects (one on_connect, without error). */
static void test_dns_second_address(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t p;
    zl_client_options_t o;
    char want[32];

    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so); /* IPv4 only: the first address refuses */
    g_strlcpy(res_first, have_ipv6() ? "::1" : "127.0.0.2", sizeof(res_first));
    resolver_on();
    probe_init(&p, 3);
    p.total = 10000;
    p.verify = true;
    p.close_when_echoed = true;
    copts_init(&o, &e, "good.test", srv_port(s));
    probe_connect(&p, &o, true);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 5000), 1);
    probe_end(&p);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&res_calls), 1);
    CU_ASSERT_EQUAL(atomic_load(&res_port), srv_port(s));
    CU_ASSERT_EQUAL(atomic_load(&p.cerrs), 0);
    CU_ASSERT_EQUAL(atomic_load(&p.connected), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.final_recv), 10000);
    snprintf(want, sizeof(want), "127.0.0.1:%u", srv_port(s));
    CU_ASSERT_STRING_EQUAL(p.peer_at_connect, want);
    zl_client_set_resolver(NULL);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* A name whose first address silently drops the SYN (a full accept
 * queue: like a broken IPv6 route): the second address starts after
 * attempt_delay_ms, with the first still in flight, and connects long
 * before the connect timeout (tried one after the other, the first would
 * have taken all of it). */
static void test_dns_first_address_hangs(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t p;
    zl_client_options_t o;
    jam_t j;
    char want[32];
    uint64_t t0, dt;

    CU_ASSERT_FATAL(jam_up(&j));
    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so);
    snprintf(res_hang_port, sizeof(res_hang_port), "%u", j.port);
    resolver_on();
    probe_init(&p, 3);
    p.total = 10000;
    p.verify = true;
    p.close_when_echoed = true;
    copts_init(&o, &e, "eyeballs.test", srv_port(s));
    o.connect_timeout_ms = (uint32_t)slow_ms(5000);
    o.attempt_delay_ms = 100;
    t0 = zl_now_ms();
    probe_connect(&p, &o, true);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.connected, 1, 4000), 1);
    dt = zl_now_ms() - t0;
    CU_ASSERT(dt >= 90);           /* the first address had its delay */
    CU_ASSERT(dt < slow_ms(2000)); /* and not the whole timeout */
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 5000), 1);
    probe_end(&p);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&res_calls), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.cerrs), 0);
    CU_ASSERT_EQUAL(atomic_load(&p.connected), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.final_recv), 10000);
    snprintf(want, sizeof(want), "127.0.0.1:%u", srv_port(s));
    CU_ASSERT_STRING_EQUAL(p.peer_at_connect, want);
    zl_client_set_resolver(NULL);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
    jam_down(&j);
}

/* Resolution slower than the connect timeout: ZL_ETIMEOUT at stage
 * resolve; the late answer is dropped (no connect, no callback). */
static void test_dns_slow(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t p;
    zl_client_options_t o;
    uint64_t t0, dt;

    env_up(&e, 1);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so);
    resolver_on();
    probe_init(&p, 1);
    copts_init(&o, &e, "slow.test", srv_port(s));
    o.connect_timeout_ms = 200;
    t0 = zl_now_ms();
    probe_connect(&p, &o, false);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    dt = zl_now_ms() - t0;
    CU_ASSERT(dt >= 190 && dt < 900);
    CU_ASSERT_EQUAL(atomic_load(&p.cerr_code), ZL_ETIMEOUT);
    CU_ASSERT_EQUAL(atomic_load(&p.cerr_stage), ZL_STAGE_RESOLVE);
    /* The resolver answers later: nothing may come of it. */
    CU_ASSERT_EQUAL(zl_test_wait_ge(&res_slow_done, 1, 3000), 1);
    zl_test_sleep_ms(100);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.cerrs), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.connected), 0);
    CU_ASSERT_EQUAL(atomic_load(&sv.connects), 0);
    zl_client_set_resolver(NULL);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* The peer resets (SO_LINGER {1,0} + close).  Linux makes recv() fail
 * with ECONNRESET, so the session reports ZL_ERESET at stage read. */
static void test_reset_by_client(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    char buf[4];
    int fd;

    env_up(&e, 1);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so);
    fd = raw_connect("127.0.0.1", srv_port(s), 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(zl_test_send_all(fd, "ping", 4));
    CU_ASSERT(zl_test_recv_exact(fd, buf, 4));
    raw_reset(fd);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.errs), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.err_code), ZL_ERESET);
    CU_ASSERT_EQUAL(atomic_load(&sv.err_stage), ZL_STAGE_READ);
    CU_ASSERT_EQUAL(atomic_load(&sv.err_sys), ECONNRESET);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* Same on the client side: a raw server resets the zltk client. */
static void test_reset_by_server(void)
{
    env_t e;
    probe_t p;
    zl_client_options_t o;
    uint16_t port;
    int lfd, fd;
    char buf[4];

    env_up(&e, 1);
    lfd = raw_listen("127.0.0.1", 4, 0, &port);
    CU_ASSERT_FATAL(lfd >= 0);
    probe_init(&p, 1);
    p.total = 4;
    copts_init(&o, &e, "127.0.0.1", port);
    probe_connect(&p, &o, true);
    fd = raw_accept(lfd, 3000);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(zl_test_recv_exact(fd, buf, 4));
    raw_reset(fd);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    probe_end(&p);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.connected), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.err_code), ZL_ERESET);
    CU_ASSERT_EQUAL(atomic_load(&p.err_stage), ZL_STAGE_READ);
    CU_ASSERT_EQUAL(atomic_load(&p.err_sys), ECONNRESET);
    close(lfd);
    env_down(&e);
}

/* The peer sends 2 MiB, then shutdown(SHUT_WR) without reading: the echo
 * is still largely queued at the server when its on_err(ZL_EOF) comes, after
 * all 2 MiB were received; the server still sends it all, then closes.  With
 * check_spin, the loop must stay idle while the reader holds back. */
static void half_close_run(bool check_spin)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    const size_t total = 2 * MIB;
    uint8_t *data = malloc(total);
    int fd, bad = 0;
    uint64_t l0, l1;

    CU_ASSERT_PTR_NOT_NULL_FATAL(data);
    env_up(&e, 1);
    srv_init(&sv, SRV_ECHO); /* no pausing: the echo just queues */
    so.conn.sndbuf = 16 * KIB; /* no kernel autotuning to swallow it all */
    s = srv_start(&e, &sv, &so);
    fd = raw_connect("127.0.0.1", srv_port(s), 4096);
    CU_ASSERT_FATAL(fd >= 0);
    stream_fill(9, 0, data, total);
    CU_ASSERT(zl_test_send_all(fd, data, total));
    CU_ASSERT_EQUAL(shutdown(fd, SHUT_WR), 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.errs, 1, 5000), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.err_code), ZL_EOF);
    CU_ASSERT_EQUAL(atomic_load(&sv.err_stage), ZL_STAGE_READ);
    CU_ASSERT_EQUAL(atomic_load(&sv.err_sys), 0);
    CU_ASSERT_EQUAL(atomic_load(&sv.rx_at_err), (long long)total);
    CU_ASSERT(atomic_load(&sv.queued_at_err) > 0);
    /* Closing, waiting for us to read. */
    zl_test_sleep_ms(50);
    l0 = poller_loops(zl_poller_pool_at(e.pool, 0));
    zl_test_sleep_ms(300);
    l1 = poller_loops(zl_poller_pool_at(e.pool, 0));
    if (check_spin) {
        if (l1 - l0 >= 100)
            fprintf(stderr, "\n  %llu loop wake-ups in 300 ms\n",
                    (unsigned long long)(l1 - l0));
        CU_ASSERT(l1 - l0 < 100);
    }
    CU_ASSERT_EQUAL(atomic_load(&sv.closed), 0);
    CU_ASSERT_EQUAL(raw_recv_stream(fd, 9, 0, total, &bad), total);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), 0); /* then end of stream */
    close(fd);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.errs), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.tx), (long long)total);
    CU_ASSERT_EQUAL(atomic_load(&sv.rx), (long long)total);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
    free(data);
}

/* Data and the end of stream arrive together (the peer sends and shuts
 * down before the session's first read): the end of stream is not lost
 * behind the short read that returns the data (epoll is edge-triggered). */
static void test_eof_with_last_data(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    char buf[8];
    int fd;

    env_up(&e, 1);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so);
    for (int round = 0; round < 3; round++) {
        fd = raw_connect("127.0.0.1", srv_port(s), 0);
        CU_ASSERT_FATAL(fd >= 0);
        zl_test_sock_timeouts(fd, slow_ms(2000));
        CU_ASSERT(zl_test_send_all(fd, "hello", 5));
        CU_ASSERT_EQUAL(shutdown(fd, SHUT_WR), 0);
        CU_ASSERT(zl_test_recv_exact(fd, buf, 5));
        CU_ASSERT_EQUAL(memcmp(buf, "hello", 5), 0);
        /* The session saw the end of stream and closed. */
        CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), 0);
        close(fd);
        CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, round + 1, 2000), round + 1);
    }
    CU_ASSERT_EQUAL(atomic_load(&sv.n_eof), 3);
    CU_ASSERT_EQUAL(atomic_load(&sv.rx_live), 15);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

static void test_half_close(void)
{
    half_close_run(false);
}

static void test_half_close_no_spin(void)
{
    half_close_run(true);
}

/* A peer that never reads: high_water 64 KiB, SO_SNDBUF 8 KiB, peer
 * SO_RCVBUF 4 KiB, send timeout 500 ms.  on_busy(true) once, the crossing
 * send returns ZL_CONN_BUSY, later sends still queue (queued grows), then
 * on_err ZL_ETIMEOUT at stage write about 500 ms after the queue stalled,
 * and the connection is reset. */
static void test_stalled_peer_send_timeout(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    int fd;
    long long dt;

    env_up(&e, 1);
    srv_init(&sv, SRV_PUSH);
    so.conn.high_water = 64 * KIB;
    so.conn.low_water = 16 * KIB;
    so.conn.sndbuf = 8 * KIB;
    so.conn.send_timeout_ms = 500;
    so.conn.manager_ms = 50;
    s = srv_start(&e, &sv, &so);
    fd = raw_connect("127.0.0.1", srv_port(s), 4096);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.errs, 1, 5000), 1);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.busy_on), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.busy_off), 0);
    CU_ASSERT_EQUAL(atomic_load(&sv.push_busy_rc), 1);
    CU_ASSERT(atomic_load(&sv.push_queued_busy) > 64 * (long long)KIB);
    CU_ASSERT(atomic_load(&sv.push_more_busy) >= 3);
    CU_ASSERT(atomic_load(&sv.push_queued_max) >
              atomic_load(&sv.push_queued_busy));
    CU_ASSERT_EQUAL(atomic_load(&sv.err_code), ZL_ETIMEOUT);
    CU_ASSERT_EQUAL(atomic_load(&sv.err_stage), ZL_STAGE_WRITE);
    dt = atomic_load(&sv.t_err) - atomic_load(&sv.t_busy);
    if (dt < 450 || dt > 500 + (long long)slow_ms(1000))
        fprintf(stderr, "\n  send timeout after %lld ms\n", dt);
    CU_ASSERT(dt >= 450);
    CU_ASSERT(dt <= 500 + (long long)slow_ms(1000));
    /* Not a graceful end: what the peer has buffered, then a reset. */
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), ECONNRESET);
    close(fd);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* A peer that never reads, against send_timeout_ms (manager 20 ms).
 * Returns the server's errors once the queue has stalled for wait_ms. */
static int stalled_errors(env_t *e, srv_t *sv, uint32_t send_timeout_ms,
                          unsigned wait_ms)
{
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    int fd, errs;

    srv_init(sv, SRV_PUSH);
    so.conn.high_water = 64 * KIB;
    so.conn.low_water = 16 * KIB;
    so.conn.sndbuf = 8 * KIB;
    so.conn.send_timeout_ms = send_timeout_ms;
    so.conn.manager_ms = 20;
    s = srv_start(e, sv, &so);
    fd = raw_connect("127.0.0.1", srv_port(s), 4096);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv->push_busy_rc, 1, 5000), 1);
    errs = zl_test_wait_ge(&sv->errs, 1, wait_ms);
    raw_reset(fd);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv->closed, 1, 3000), 1);
    srv_stop(s, sv);
    return errs;
}

/* send_timeout_ms = 0 is off (as send-timeout = 0 in zltk.conf), not "the
 * default": a stalled queue outlives thirty manager ticks, ten times a
 * short send timeout that does fire. */
static void test_send_timeout_zero_is_off(void)
{
    env_t e;
    srv_t sv;

    env_up(&e, 1);
    CU_ASSERT_EQUAL(stalled_errors(&e, &sv, 0, 600), 0);
    srv_fini(&sv);
    CU_ASSERT_EQUAL(stalled_errors(&e, &sv, 60, 1000), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.err_code), ZL_ETIMEOUT);
    CU_ASSERT_EQUAL(atomic_load(&sv.err_stage), ZL_STAGE_WRITE);
    srv_fini(&sv);
    env_down(&e);
}

/* ------------------------------------------------------------ dead peers */

static void srv_err_msg(srv_t *sv, char *out, size_t n)
{
    pthread_mutex_lock(&sv->lock);
    g_strlcpy(out, sv->err_msg, n);
    pthread_mutex_unlock(&sv->lock);
}

/* idle_timeout_ms on a server: a peer that connects and says nothing gets
 * on_err ZL_ETIMEOUT at stage read, with "idle" in the message, after
 * about the timeout; the close is graceful (end of stream, not a reset). */
static void test_idle_server_session(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    char msg[256];
    long long dt;
    int fd;

    env_up(&e, 1);
    srv_init(&sv, SRV_SINK);
    so.conn.idle_timeout_ms = 300;
    so.conn.manager_ms = 50;
    s = srv_start(&e, &sv, &so);
    fd = raw_connect("127.0.0.1", srv_port(s), 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.errs, 1, 3000), 1);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.err_code), ZL_ETIMEOUT);
    CU_ASSERT_EQUAL(atomic_load(&sv.err_stage), ZL_STAGE_READ);
    srv_err_msg(&sv, msg, sizeof(msg));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "idle"));
    /* t_connect is taken in on_connect, a moment after the timeout's
     * start: allow those few ms. */
    dt = atomic_load(&sv.t_err) - atomic_load(&sv.t_connect);
    if (dt < 290 || dt > 300 + (long long)slow_ms(1000))
        fprintf(stderr, "\n  idle timeout after %lld ms: %s\n", dt, msg);
    CU_ASSERT(dt >= 290);
    CU_ASSERT(dt <= 300 + (long long)slow_ms(1000));
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), 0);
    close(fd);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* Bytes in either direction keep a connection alive: the peer sends a
 * byte every 100 ms, then only receives one per 50 ms tick, each for well
 * over the idle timeout; once both stop, the timeout runs from the last
 * byte. */
static void test_idle_traffic_keeps_alive(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    const unsigned idle = slow_ms(400);
    uint64_t end, quiet;
    char msg[256];
    long long dt;
    int fd;

    env_up(&e, 1);
    srv_init(&sv, SRV_SINK);
    so.conn.idle_timeout_ms = idle;
    so.conn.manager_ms = 50;
    s = srv_start(&e, &sv, &so);
    fd = raw_connect("127.0.0.1", srv_port(s), 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL_FATAL(zl_test_wait_ge(&sv.connects, 1, 3000), 1);
    end = zl_now_ms() + 3 * idle;
    while (zl_now_ms() < end) {
        CU_ASSERT_EQUAL(send(fd, "c", 1, MSG_NOSIGNAL), 1);
        zl_test_sleep_ms(100);
    }
    CU_ASSERT_EQUAL(atomic_load(&sv.errs), 0);
    /* Now only the server talks: a byte per tick. */
    atomic_store(&sv.tick_sends, (int)(3 * idle / 50));
    end = zl_now_ms() + slow_ms(5000) + 3 * idle;
    while (atomic_load(&sv.tick_sends) > 0 && zl_now_ms() < end)
        zl_test_sleep_ms(1);
    quiet = zl_now_ms();
    CU_ASSERT(atomic_load(&sv.tick_sends) <= 0);
    CU_ASSERT_EQUAL(atomic_load(&sv.errs), 0);
    CU_ASSERT(atomic_load(&sv.rx_live) >= 3);
    /* Then silence. */
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.errs, 1, 3000 + 2 * idle), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.err_code), ZL_ETIMEOUT);
    srv_err_msg(&sv, msg, sizeof(msg));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "idle"));
    dt = atomic_load(&sv.t_err) - (long long)quiet;
    if (dt < (long long)idle - 20)
        fprintf(stderr, "\n  idle timeout %lld ms after the last byte\n", dt);
    CU_ASSERT(dt >= (long long)idle - 20);
    close(fd);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* A client whose server accepts and never says a word: the same timeout
 * kind and message on the client side, and the server reads end of
 * stream. */
static void test_idle_client(void)
{
    env_t e;
    probe_t p;
    zl_client_options_t o;
    uint16_t port;
    int lfd, fd;

    env_up(&e, 1);
    lfd = raw_listen("127.0.0.1", 4, 0, &port);
    CU_ASSERT_FATAL(lfd >= 0);
    probe_init(&p, 47);
    copts_init(&o, &e, "127.0.0.1", port);
    o.conn.idle_timeout_ms = 300;
    o.conn.manager_ms = 50;
    probe_connect(&p, &o, true);
    fd = raw_accept(lfd, 3000);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.errs, 1, 3000), 1);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.err_code), ZL_ETIMEOUT);
    CU_ASSERT_EQUAL(atomic_load(&p.err_stage), ZL_STAGE_READ);
    if (atomic_load(&p.closed))
        CU_ASSERT_PTR_NOT_NULL(strstr(p.err_msg, "idle"));
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), 0);
    probe_end(&p);
    probe_check_clean(&p);
    close(fd);
    close(lfd);
    env_down(&e);
}

/* Two network namespaces joined by a veth pair: the server's end in a,
 * the client's in b.  Setting b's end down makes packets vanish with no
 * RST and no ICMP: a blackholed peer. */
typedef struct blackhole {
    char a[32], b[32];
    int root, na, nb;
} blackhole_t;

static int sh(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    rc = system(cmd);
    return rc == 0 ? 0 : -1;
}

static void blackhole_down(blackhole_t *bh)
{
    if (bh->root >= 0)
        close(bh->root);
    if (bh->na >= 0)
        close(bh->na);
    if (bh->nb >= 0)
        close(bh->nb);
    sh("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null", bh->a,
       bh->b);
}

static bool blackhole_up(blackhole_t *bh)
{
    char path[64];

    snprintf(bh->a, sizeof(bh->a), "zltk-test-%d-a", (int)getpid());
    snprintf(bh->b, sizeof(bh->b), "zltk-test-%d-b", (int)getpid());
    bh->root = bh->na = bh->nb = -1;
    if (geteuid() != 0 || sh("ip -V >/dev/null 2>&1") < 0) {
        fprintf(stderr, "\n  skipped: a blackholed peer needs root and ip(8) "
                        "(network namespaces)\n");
        return false;
    }
    if (sh("ip netns add %s && ip netns add %s && "
           "ip link add zlva netns %s type veth peer name zlvb netns %s && "
           "ip -n %s addr add 10.213.0.1/24 dev zlva && "
           "ip -n %s addr add 10.213.0.2/24 dev zlvb && "
           "ip -n %s link set zlva up && ip -n %s link set zlvb up",
           bh->a, bh->b, bh->a, bh->b, bh->a, bh->b, bh->a, bh->b) < 0)
        goto skip;
    bh->root = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof(path), "/run/netns/%s", bh->a);
    bh->na = open(path, O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof(path), "/run/netns/%s", bh->b);
    bh->nb = open(path, O_RDONLY | O_CLOEXEC);
    if (bh->root >= 0 && bh->na >= 0 && bh->nb >= 0)
        return true;
skip:
    fprintf(stderr, "\n  skipped: cannot make network namespaces with a "
                    "veth pair (ip netns add, ip link add type veth)\n");
    blackhole_down(bh);
    return false;
}

/* A server in namespace a (options so, sessions into sv, the first one
 * held) and a plain client socket in b connected to it, whose link then
 * goes down after one chunk went through.  Returns the held session, or
 * NULL (with *s and *fd set as far as they got). */
static zl_conn_t *blackhole_pair(blackhole_t *bh, env_t *e, srv_t *sv,
                                 zl_server_options_t *so, zl_server_t **s,
                                 int *fd)
{
    char chunk[2000];
    zl_conn_t *held;
    int rc, bad = 0;

    *s = NULL;
    *fd = -1;
    sv->hold_first = true;
    so->host = "10.213.0.1";
    so->pool = e->pool;
    /* A socket stays in the namespace it was made in, whichever thread
     * then uses it. */
    rc = setns(bh->na, CLONE_NEWNET);
    if (rc == 0)
        rc = zl_server_new(s, so, &srv_handler, sv);
    if (rc == 0 && setns(bh->nb, CLONE_NEWNET) == 0)
        *fd = raw_connect("10.213.0.1", srv_port(*s), 0);
    CU_ASSERT_EQUAL_FATAL(setns(bh->root, CLONE_NEWNET), 0);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(*fd >= 0);
    if (rc != 0 || *fd < 0)
        return NULL;
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv->connects, 1, 3000), 1);
    held = atomic_load(&sv->held);
    CU_ASSERT_PTR_NOT_NULL(held);
    if (!held)
        return NULL;
    /* The path works... */
    stream_fill(48, 0, (uint8_t *)chunk, sizeof(chunk));
    CU_ASSERT_EQUAL(zl_conn_send(held, chunk, sizeof(chunk)), 0);
    CU_ASSERT_EQUAL(raw_recv_stream(*fd, 48, 0, sizeof(chunk), &bad),
                    sizeof(chunk));
    CU_ASSERT_EQUAL(bad, 0);
    /* ...until the peer vanishes. */
    CU_ASSERT_EQUAL(sh("ip -n %s link set zlvb down", bh->b), 0);
    return held;
}

/* The session's error, ZL_ETIMEOUT from the kernel's ETIMEDOUT, between
 * lo and hi ms after t0, with nothing queued in user space. */
static void check_blackhole_err(srv_t *sv, long long t0, long long lo,
                                long long hi)
{
    char msg[256];
    long long dt;

    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv->errs, 1, (unsigned)hi + 2000), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv->err_code), ZL_ETIMEOUT);
    CU_ASSERT_EQUAL(atomic_load(&sv->err_sys), ETIMEDOUT);
    CU_ASSERT_EQUAL(atomic_load(&sv->queued_at_err), 0);
    srv_err_msg(sv, msg, sizeof(msg));
    dt = atomic_load(&sv->t_err) - t0;
    if (atomic_load(&sv->errs) != 1 || dt < lo || dt > hi)
        fprintf(stderr, "\n  %d errors, after %lld ms: %s\n",
                atomic_load(&sv->errs), dt, msg);
    CU_ASSERT(dt >= lo);
    CU_ASSERT(dt <= hi);
}

static void blackhole_end(blackhole_t *bh, env_t *e, srv_t *sv,
                          zl_server_t *s, zl_conn_t *held, int fd)
{
    if (held)
        zl_conn_unref(held);
    if (fd >= 0)
        close(fd);
    if (s)
        srv_stop(s, sv);
    env_down(e);
    srv_fini(sv);
    blackhole_down(bh);
}

/* A peer that vanished while the server's bytes were in flight.  The
 * kernel took them all, so nothing is queued in user space and the send
 * timeout's own check cannot see them: only TCP_USER_TIMEOUT, set from
 * the send timeout, ends the session, with ZL_ETIMEOUT and errno
 * ETIMEDOUT, about send_timeout_ms after the bytes went out. */
static void test_blackholed_peer(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts(NULL);
    zl_server_t *s;
    blackhole_t bh;
    zl_conn_t *held;
    char chunk[2000];
    long long t0;
    int fd;

    if (!blackhole_up(&bh))
        return;
    env_up(&e, 1);
    srv_init(&sv, SRV_SINK);
    so.conn.send_timeout_ms = 500;
    so.conn.manager_ms = 50;
    held = blackhole_pair(&bh, &e, &sv, &so, &s, &fd);
    if (held) {
        memset(chunk, 'b', sizeof(chunk));
        t0 = (long long)zl_now_ms();
        CU_ASSERT_EQUAL(zl_conn_send(held, chunk, sizeof(chunk)), 0);
        check_blackhole_err(&sv, t0, 400, 500 + (long long)slow_ms(1500));
    }
    blackhole_end(&bh, &e, &sv, s, held, fd);
}

/* A silent session whose peer vanished: no byte in flight, so only
 * keepalive can notice.  Probes after 1 s of silence, 1 s apart, and the
 * send timeout (TCP_USER_TIMEOUT, 1.5 s) makes the first unanswered probe
 * final: the session fails about 2 s after the last byte. */
static void test_blackholed_idle_peer(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts(NULL);
    zl_server_t *s;
    blackhole_t bh;
    zl_conn_t *held;
    int fd;

    if (!blackhole_up(&bh))
        return;
    env_up(&e, 1);
    srv_init(&sv, SRV_SINK);
    so.conn.keepalive_ms = 1000;
    so.conn.send_timeout_ms = 1500;
    so.conn.manager_ms = 50;
    held = blackhole_pair(&bh, &e, &sv, &so, &s, &fd);
    if (held)
        check_blackhole_err(&sv, (long long)zl_now_ms(), 1000,
                            2000 + (long long)slow_ms(2000));
    blackhole_end(&bh, &e, &sv, s, held, fd);
}

/* One server session fills its queue to just above high_water for a peer
 * that never reads (SO_SNDBUF 8 KiB, peer SO_RCVBUF 4 KiB), then the peer
 * resets and the queue is dropped.  Returns the bytes dropped (about
 * high_water). */
static long long trim_burst(env_t *e, size_t high_water)
{
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    long long q;
    int fd;

    srv_init(&sv, SRV_PUSH);
    so.conn.high_water = high_water;
    so.conn.low_water = high_water / 4;
    so.conn.sndbuf = 8 * KIB;
    so.conn.send_timeout_ms = 0;
    s = srv_start(e, &sv, &so);
    fd = raw_connect("127.0.0.1", srv_port(s), 4096);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.push_busy_rc, 1, 5000), 1);
    q = atomic_load(&sv.push_queued_busy);
    raw_reset(fd);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    srv_stop(s, &sv);
    srv_fini(&sv);
    return q;
}

/* Memory back after a burst (issue 10 §5): dropping 2 MiB of send queue
 * does not trim (below the 4 MiB trigger: no trim per free), dropping 8 MiB
 * more does, once, about a second later.  Where the C library has no
 * malloc_trim, zl_memory_trims() stays 0. */
static void test_trim_after_burst(void)
{
    env_t e;
    uint64_t t0 = zl_memory_trims(), end;

    env_up(&e, 1);
    CU_ASSERT(trim_burst(&e, 2 * MIB) < 3 * (long long)MIB);
    zl_test_sleep_ms(1500);
    CU_ASSERT_EQUAL(zl_memory_trims(), t0);
    CU_ASSERT(trim_burst(&e, 8 * MIB) > 8 * (long long)MIB);
#ifdef __GLIBC__
    end = zl_now_ms() + slow_ms(5000);
    while (zl_memory_trims() == t0 && zl_now_ms() < end)
        zl_test_sleep_ms(10);
    CU_ASSERT_EQUAL(zl_memory_trims(), t0 + 1);
    zl_test_sleep_ms(1500); /* the timer is one-shot: no second trim */
    CU_ASSERT_EQUAL(zl_memory_trims(), t0 + 1);
#else
    (void)end;
    zl_test_sleep_ms(1500);
    CU_ASSERT_EQUAL(zl_memory_trims(), 0);
#endif
    env_down(&e);
}

/* A zltk client above its high watermark: once the (raw) peer starts
 * reading, the drain notice on_busy(false) comes, then on_flush, and all
 * bytes arrive in order. */
static void test_drain_notice(void)
{
    env_t e;
    probe_t p;
    zl_client_options_t o;
    uint16_t port;
    int lfd, fd, bad = 0;
    const size_t total = 512 * KIB;

    env_up(&e, 1);
    lfd = raw_listen("127.0.0.1", 4, 4096, &port);
    CU_ASSERT_FATAL(lfd >= 0);
    probe_init(&p, 11);
    p.total = total;
    p.chunk = 16 * KIB;
    p.chunk_fixed = true;
    copts_init(&o, &e, "127.0.0.1", port);
    o.conn.high_water = 64 * KIB;
    o.conn.low_water = 16 * KIB;
    o.conn.sndbuf = 8 * KIB;
    o.conn.send_timeout_ms = 0;
    probe_connect(&p, &o, true);
    fd = raw_accept(lfd, 3000);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.busy_on, 1, 3000), 1);
    zl_test_sleep_ms(200);
    CU_ASSERT_EQUAL(atomic_load(&p.busy_off), 0); /* nobody read yet */
    CU_ASSERT_EQUAL(atomic_load(&p.flushes), 0);
    CU_ASSERT_EQUAL(raw_recv_stream(fd, 11, 0, total, &bad), total);
    CU_ASSERT_EQUAL(bad, 0);
    /* The last notice reports the queue empty with everything sent. */
    if (wait_ge_ll(&p.flushed_at, (long long)total, 2000) != (long long)total)
        fprintf(stderr, "\n  last on_flush with the queue empty after %lld of "
                        "%zu bytes; %d on_flush, %d with bytes still queued\n",
                atomic_load(&p.flushed_at), total, atomic_load(&p.flushes),
                atomic_load(&p.flush_nonempty));
    CU_ASSERT_EQUAL(atomic_load(&p.flushed_at), (long long)total);
    CU_ASSERT_EQUAL(atomic_load(&p.flush_nonempty), 0);
    CU_ASSERT(atomic_load(&p.flushes) >= 1);
    CU_ASSERT(atomic_load(&p.busy_off) >= 1);
    CU_ASSERT_EQUAL(atomic_load(&p.busy_off), atomic_load(&p.busy_on));
    CU_ASSERT_EQUAL(atomic_load(&p.sent_accepted), (long long)total);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 0);
    zl_conn_close(p.ref);
    zl_poller_sync(zl_conn_poller(p.ref), mark_closing, &p);
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), 0);
    probe_end(&p);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.final_sent), (long long)total);
    close(fd);
    close(lfd);
    env_down(&e);
}

/* The drain notice comes when the queue falls to the low watermark, not
 * only once it is empty: the peer reads until the queue is below low_water
 * but not empty, then stops. */
static void test_drain_at_low_water(void)
{
    env_t e;
    probe_t p;
    zl_client_options_t o;
    uint16_t port;
    int lfd, fd, bad = 0;
    const size_t total = MIB, high = 256 * KIB, low = 128 * KIB;
    size_t got = 0, q = 0;
    bool busy = false, landed = false;
    uint8_t buf[32 * KIB];

    env_up(&e, 1);
    lfd = raw_listen("127.0.0.1", 4, 4096, &port);
    CU_ASSERT_FATAL(lfd >= 0);
    probe_init(&p, 12);
    p.total = total;
    p.chunk = 16 * KIB;
    p.chunk_fixed = true;
    p.ignore_busy = true; /* queue all of it at once */
    copts_init(&o, &e, "127.0.0.1", port);
    o.conn.high_water = high;
    o.conn.low_water = low;
    o.conn.sndbuf = 16 * KIB;
    o.conn.send_timeout_ms = 0;
    probe_connect(&p, &o, true);
    fd = raw_accept(lfd, 3000);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(wait_ge_ll(&p.sent_accepted, (long long)total, 3000),
                    (long long)total);
    CU_ASSERT_EQUAL(atomic_load(&p.busy_on), 1);
    /* Read in steps until 0 < queued <= low / 2. */
    for (int i = 0; i < 2000 && got < total; i++) {
        size_t step;
        ssize_t r;
        q = conn_queued(p.ref, &busy);
        if (q > 0 && q <= low / 2) {
            landed = true;
            break;
        }
        if (q == 0)
            break;
        step = q > 2 * low ? sizeof(buf) : 2 * KIB;
        r = recv(fd, buf, step, 0);
        if (r <= 0)
            break;
        if (!stream_check(12, got, buf, (size_t)r))
            bad++;
        got += (size_t)r;
        zl_test_sleep_ms(2);
    }
    if (!landed)
        fprintf(stderr, "\n  could not stop the queue between 0 and low "
                        "water (queued %zu)\n", q);
    CU_ASSERT_FATAL(landed);
    /* The queue is below low water: the notice is due. */
    if (zl_test_wait_ge(&p.busy_off, 1, 500) != 1)
        fprintf(stderr, "\n  no on_busy(false) with %zu bytes queued "
                        "(low water %zu, still busy: %d)\n",
                q, low, (int)busy);
    CU_ASSERT_EQUAL(atomic_load(&p.busy_off), 1);
    CU_ASSERT_FALSE(busy);
    /* Read the rest. */
    CU_ASSERT_EQUAL(raw_recv_stream(fd, 12, got, total - got, &bad),
                    total - got);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.flushes, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.busy_off), 1);
    probe_end(&p);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 0);
    close(fd);
    close(lfd);
    env_down(&e);
}

/* A paused session with unread data must not wake its loop over and over
 * (the poll backend is level-triggered); zl_conn_resume() from another
 * thread then delivers what the kernel holds. */
static void test_pause_no_spin(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    uint8_t out[1000], in[1000];
    uint64_t l0, l1;
    zl_conn_t *held;
    int fd;

    env_up(&e, 1);
    srv_init(&sv, SRV_PAUSE);
    s = srv_start(&e, &sv, &so);
    fd = raw_connect("127.0.0.1", srv_port(s), 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.connects, 1, 3000), 1);
    stream_fill(21, 0, out, sizeof(out));
    CU_ASSERT(zl_test_send_all(fd, out, sizeof(out)));
    zl_test_sleep_ms(100);
    l0 = poller_loops(zl_poller_pool_at(e.pool, 0));
    zl_test_sleep_ms(300);
    l1 = poller_loops(zl_poller_pool_at(e.pool, 0));
    if (l1 - l0 >= 100)
        fprintf(stderr, "\n  %llu loop wake-ups in 300 ms while paused\n",
                (unsigned long long)(l1 - l0));
    CU_ASSERT(l1 - l0 < 100);
    CU_ASSERT_EQUAL(atomic_load(&sv.recvs), 0);
    held = atomic_load(&sv.held);
    CU_ASSERT_PTR_NOT_NULL_FATAL(held);
    zl_conn_resume(held);
    CU_ASSERT(zl_test_recv_exact(fd, in, sizeof(in)));
    CU_ASSERT_EQUAL(memcmp(in, out, sizeof(in)), 0);
    close(fd);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.n_eof), 1);
    zl_conn_unref(held);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* Highest open descriptor (Linux: /proc/self/fd). */
static int max_open_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int mx = 2;

    if (!d)
        return 1024;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && atoi(de->d_name) > mx)
            mx = atoi(de->d_name);
    closedir(d);
    return mx;
}

#define EMFILE_CLIENTS 5

/* Out of descriptors in the server (RLIMIT_NOFILE lowered, every fd taken):
 * pending connections are accepted and dropped without spinning the loop,
 * counted in refused_fds; the listener survives and serves again once
 * descriptors are free. */
static void test_emfile(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    zl_server_stats_t st;
    struct rlimit old, lim;
    int cl[EMFILE_CLIENTS], *fill = NULL, nfill = 0, fd, dropped = 0;
    zl_addr_t a;
    uint64_t l0, l1;
    char buf[4];

    env_up(&e, 1);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so);
    zl_addr_from_ip(&a, "127.0.0.1", srv_port(s));
    for (int i = 0; i < EMFILE_CLIENTS; i++) {
        cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CU_ASSERT_FATAL(cl[i] >= 0);
        zl_test_sock_timeouts(cl[i], slow_ms(3000));
    }
    CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_NOFILE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)max_open_fd() + 32;
    if (lim.rlim_cur > old.rlim_cur)
        lim.rlim_cur = old.rlim_cur;
    CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_NOFILE, &lim), 0);
    fill = malloc(sizeof(int) * (size_t)lim.rlim_cur);
    while (fill && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        fill[nfill++] = fd;
    CU_ASSERT_EQUAL(errno, EMFILE);

    l0 = poller_loops(zl_poller_pool_at(e.pool, 0));
    for (int i = 0; i < EMFILE_CLIENTS; i++)
        CU_ASSERT_EQUAL(connect(cl[i], &a.u.sa, a.len), 0);
    /* Each connection is taken off the queue and closed at once. */
    for (int i = 0; i < EMFILE_CLIENTS; i++) {
        ssize_t r = recv(cl[i], buf, sizeof(buf), 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            dropped++;
    }
    CU_ASSERT_EQUAL(dropped, EMFILE_CLIENTS);
    zl_test_sleep_ms(500);
    l1 = poller_loops(zl_poller_pool_at(e.pool, 0));
    zl_server_get_stats(s, &st);

    /* Give the descriptors back before asserting anything. */
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    free(fill);
    setrlimit(RLIMIT_NOFILE, &old);
    for (int i = 0; i < EMFILE_CLIENTS; i++)
        close(cl[i]);

    if (l1 - l0 >= 1000)
        fprintf(stderr, "\n  %llu loop wake-ups while out of fds\n",
                (unsigned long long)(l1 - l0));
    CU_ASSERT(l1 - l0 < 1000);
    if (st.refused_fds != EMFILE_CLIENTS)
        fprintf(stderr, "\n  refused_fds %llu for %d dropped connections\n",
                (unsigned long long)st.refused_fds, dropped);
    CU_ASSERT_EQUAL(st.refused_fds, EMFILE_CLIENTS);
    CU_ASSERT_EQUAL(st.accepted, 0);
    CU_ASSERT_EQUAL(atomic_load(&sv.connects), 0);

    /* Recovery: the same listener serves again. */
    fd = raw_connect("127.0.0.1", srv_port(s), 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(zl_test_send_all(fd, "ping", 4));
    CU_ASSERT(zl_test_recv_exact(fd, buf, 4));
    CU_ASSERT_EQUAL(memcmp(buf, "ping", 4), 0);
    close(fd);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    zl_server_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.accepted, 1);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* ================================================================ lifecycle */

/* zl_conn_close() from inside one callback: on_closed exactly once and
 * nothing after the close. */
static void close_in_run(int at)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s = NULL;
    probe_t p;
    zl_client_options_t o;
    uint16_t port;

    env_up(&e, 2);
    srv_init(&sv, at == AT_FLUSH || at == AT_BUSY ? SRV_SINK
                  : at == AT_ERR                 ? SRV_CLOSER
                                                 : SRV_ECHO);
    if (at != AT_CONNECT_ERR) {
        s = srv_start(&e, &sv, &so);
        port = srv_port(s);
    } else {
        port = zl_test_closed_port();
    }
    probe_init(&p, 30 + (unsigned)at);
    p.close_at = at;
    copts_init(&o, &e, "127.0.0.1", port);
    switch (at) {
    case AT_CONNECT_ERR: /* a reconnecting client: closing stops it */
        o.reconnect = true;
        o.reconnect_min_ms = 20;
        p.reconnect = true;
        break;
    case AT_RECV:
        p.total = 5;
        break;
    case AT_FLUSH: /* one big send: the kernel takes part, the rest queues */
        p.total = 4 * MIB;
        p.chunk = 4 * MIB;
        p.chunk_fixed = true;
        o.conn.sndbuf = 32 * KIB;
        break;
    case AT_BUSY:
        p.total = 4 * MIB;
        p.chunk = 16 * KIB;
        p.chunk_fixed = true;
        o.conn.high_water = 64 * KIB;
        o.conn.low_water = 16 * KIB;
        o.conn.sndbuf = 32 * KIB;
        break;
    case AT_MANAGER:
        o.conn.manager_ms = 20;
        break;
    default:
        break;
    }
    if (at == AT_BUSY) /* else a fast sink can keep the queue under the mark */
        sv.start_paused = true;
    probe_connect(&p, &o, false);
    if (at == AT_BUSY) {
        zl_conn_t *held;

        CU_ASSERT_EQUAL(zl_test_wait_ge(&p.busy_on, 1, 5000), 1);
        for (int i = 0; i < 5000 && !atomic_load(&sv.held); i++)
            zl_test_sleep_ms(1);
        held = atomic_load(&sv.held);
        CU_ASSERT_PTR_NOT_NULL(held);
        if (held) {
            zl_conn_resume(held); /* the closing client's queue drains */
            zl_conn_unref(held);
        }
    }
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 5000), 1);
    zl_test_sleep_ms(150); /* room for anything that should not come */
    probe_check_clean(&p);
    switch (at) {
    case AT_CONNECT:
        CU_ASSERT_EQUAL(atomic_load(&p.connected), 1);
        break;
    case AT_CONNECT_ERR:
        CU_ASSERT_EQUAL(atomic_load(&p.cerrs), 1);
        CU_ASSERT_EQUAL(atomic_load(&p.cerr_code), ZL_EREFUSED);
        CU_ASSERT_EQUAL(atomic_load(&p.connected), 0);
        break;
    case AT_RECV:
        CU_ASSERT_EQUAL(atomic_load(&p.recvs), 1);
        break;
    case AT_FLUSH:
        CU_ASSERT_EQUAL(atomic_load(&p.flushes), 1);
        break;
    case AT_BUSY:
        CU_ASSERT_EQUAL(atomic_load(&p.busy_on), 1);
        CU_ASSERT_EQUAL(atomic_load(&p.busy_off), 0);
        break;
    case AT_MANAGER:
        CU_ASSERT_EQUAL(atomic_load(&p.managers), 1);
        break;
    case AT_ERR:
        CU_ASSERT_EQUAL(atomic_load(&p.errs), 1);
        CU_ASSERT_EQUAL(atomic_load(&p.err_code), ZL_EOF);
        break;
    }
    if (at != AT_ERR)
        CU_ASSERT_EQUAL(atomic_load(&p.errs), 0);
    if (s) {
        CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 5000), 1);
        /* A graceful close sends everything that was accepted. */
        if (at == AT_FLUSH || at == AT_BUSY) {
            CU_ASSERT_EQUAL(atomic_load(&sv.rx), atomic_load(&p.sent_accepted));
            CU_ASSERT_EQUAL(atomic_load(&p.final_sent),
                            atomic_load(&p.sent_accepted));
        }
        srv_stop(s, &sv);
    }
    env_down(&e);
    srv_fini(&sv);
}

static void test_close_in_connect(void) { close_in_run(AT_CONNECT); }
static void test_close_in_connect_err(void) { close_in_run(AT_CONNECT_ERR); }
static void test_close_in_recv(void) { close_in_run(AT_RECV); }
static void test_close_in_flush(void) { close_in_run(AT_FLUSH); }
static void test_close_in_busy(void) { close_in_run(AT_BUSY); }
static void test_close_in_manager(void) { close_in_run(AT_MANAGER); }
static void test_close_in_err(void) { close_in_run(AT_ERR); }

/* A ping-pong connection: a 4 KiB message bounces between the probe and
 * the echo server for as long as it lives. */
static void ping_pong_start(env_t *e, zl_server_t *s, probe_t *p, unsigned id)
{
    zl_client_options_t o;

    probe_init(p, id);
    p->total = 4 * KIB;
    p->chunk = 4 * KIB;
    p->chunk_fixed = true;
    p->ping_pong = true;
    copts_init(&o, e, "127.0.0.1", srv_port(s));
    probe_connect(p, &o, true);
}

/* zl_conn_close() from the test thread while data flows (the test thread
 * holds a reference): on_closed once, nothing after, and the reference
 * still answers afterwards. */
static void test_close_other_thread(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t p;

    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so);
    ping_pong_start(&e, s, &p, 40);
    CU_ASSERT(wait_ge_ll(&p.rx, 256 * KIB, 5000) >= 256 * (long long)KIB);
    zl_conn_close(p.ref);
    zl_poller_sync(zl_conn_poller(p.ref), mark_closing, &p);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    zl_test_sleep_ms(100);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 0);
    /* The reference outlives the connection and sees it closed. */
    CU_ASSERT_TRUE(zl_conn_is_closing(p.ref));
    CU_ASSERT_EQUAL(zl_conn_send(p.ref, "x", 1), ZL_ESHUTDOWN);
    CU_ASSERT_EQUAL(zl_conn_fd(p.ref), -1);
    zl_conn_close(p.ref); /* idempotent */
    zl_conn_abort(p.ref);
    zl_test_sleep_ms(50);
    CU_ASSERT_EQUAL(atomic_load(&p.closed), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.late), 0);
    probe_end(&p);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

typedef struct racer {
    zl_conn_t *c;
    atomic_int *go;
    bool abort;
} racer_t;

static void *racer_main(void *arg)
{
    racer_t *r = arg;

    while (!atomic_load(r->go))
        ;
    if (r->abort)
        zl_conn_abort(r->c);
    else
        zl_conn_close(r->c);
    return NULL;
}

/* close and abort from four threads at once: still one on_closed. */
static void test_close_abort_race(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t p;
    pthread_t th[4];
    racer_t r[4];
    atomic_int go = 0;

    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so);
    ping_pong_start(&e, s, &p, 41);
    CU_ASSERT(wait_ge_ll(&p.rx, 64 * KIB, 5000) >= 64 * (long long)KIB);
    for (int i = 0; i < 4; i++) {
        r[i] = (racer_t){p.ref, &go, i & 1};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, racer_main, &r[i]), 0);
    }
    atomic_store(&go, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    zl_poller_sync(zl_conn_poller(p.ref), mark_closing, &p);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    zl_test_sleep_ms(100);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    probe_end(&p);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* zl_conn_send() and zl_conn_send_buf() from the test thread: 1 MiB in
 * 1..8 KiB pieces comes back from the echo server in order. */
static void test_send_other_thread(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t p;
    zl_client_options_t o;
    const size_t total = MIB;
    size_t off = 0;
    uint8_t buf[8 * KIB];
    uint32_t rng = 7;
    int fails = 0, i = 0;

    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    sv.pause_on_busy = true;
    s = srv_start(&e, &sv, &so);
    probe_init(&p, 42);
    p.total = total;
    p.no_pump = true;
    p.verify = true;
    p.close_when_echoed = true;
    copts_init(&o, &e, "127.0.0.1", srv_port(s));
    probe_connect(&p, &o, true);
    CU_ASSERT_EQUAL_FATAL(zl_test_wait_ge(&p.connected, 1, 3000), 1);
    while (off < total) {
        size_t n;
        int rc;
        rng = rng * 1103515245u + 12345u;
        n = 1 + (rng >> 8) % sizeof(buf);
        if (n > total - off)
            n = total - off;
        if (i++ & 1) {
            zl_buf_t *b = zl_buf_new(n);
            CU_ASSERT_PTR_NOT_NULL_FATAL(b);
            stream_fill(42, off, b->data, n);
            b->len = n;
            rc = zl_conn_send_buf(p.ref, b);
        } else {
            stream_fill(42, off, buf, n);
            rc = zl_conn_send(p.ref, buf, n);
        }
        if (rc < 0)
            fails++;
        off += n;
    }
    CU_ASSERT_EQUAL(fails, 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 10000), 1);
    probe_end(&p);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 0);
    CU_ASSERT_EQUAL(atomic_load(&p.final_recv), (long long)total);
    CU_ASSERT_EQUAL(atomic_load(&p.final_sent), (long long)total);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

typedef struct sender {
    zl_conn_t *c;
    atomic_int stop;
    atomic_int result; /* 1: ZL_ESHUTDOWN seen, <0: other failure */
    atomic_llong sent;
} sender_t;

static void *sender_main(void *arg)
{
    sender_t *sd = arg;
    uint8_t buf[KIB];
    uint64_t end = zl_now_ms() + slow_ms(5000);

    memset(buf, 's', sizeof(buf));
    while (!atomic_load(&sd->stop) && zl_now_ms() < end) {
        int rc = zl_conn_send(sd->c, buf, sizeof(buf));
        if (rc == ZL_ESHUTDOWN) {
            atomic_store(&sd->result, 1);
            break;
        }
        if (rc < 0) {
            atomic_store(&sd->result, rc);
            break;
        }
        atomic_fetch_add(&sd->sent, (long long)sizeof(buf));
        if (atomic_load(&sd->sent) % (64 * KIB) == 0)
            zl_test_sleep_ms(1); /* let the queue move */
    }
    return NULL;
}

/* zl_conn_send() from another thread while the connection ends under it
 * (the peer closes after 256 KiB): sends are accepted until the close, then
 * ZL_ESHUTDOWN; on_closed once.  Under TSan, any unsynchronised look at the
 * connection's state from the sending thread is reported. */
static void test_send_other_thread_while_closing(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t p;
    zl_client_options_t o;
    sender_t sd = {0};
    pthread_t th;

    env_up(&e, 2);
    srv_init(&sv, SRV_SINK);
    sv.close_after = 256 * KIB;
    s = srv_start(&e, &sv, &so);
    probe_init(&p, 43);
    p.no_pump = true;
    copts_init(&o, &e, "127.0.0.1", srv_port(s));
    probe_connect(&p, &o, true);
    CU_ASSERT_EQUAL_FATAL(zl_test_wait_ge(&p.connected, 1, 3000), 1);
    sd.c = p.ref;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, sender_main, &sd), 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 5000), 1);
    zl_test_sleep_ms(20);
    atomic_store(&sd.stop, 1);
    pthread_join(th, NULL);
    CU_ASSERT(atomic_load(&sd.sent) >= 256 * (long long)KIB);
    CU_ASSERT_EQUAL(atomic_load(&sd.result), 1);
    CU_ASSERT_EQUAL(zl_conn_send(p.ref, "x", 1), ZL_ESHUTDOWN);
    zl_test_sleep_ms(50);
    probe_end(&p);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 1);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* zl_conn_shutdown(): the queue goes out, then the peer reads end of
 * stream; sends are refused after it; receiving goes on until the peer
 * closes (on_err ZL_EOF). */
static void test_shutdown_half_close(void)
{
    env_t e;
    probe_t p;
    zl_client_options_t o;
    uint16_t port;
    int lfd, fd, bad = 0;
    const size_t total = 300 * KIB;

    env_up(&e, 1);
    lfd = raw_listen("127.0.0.1", 4, 0, &port);
    CU_ASSERT_FATAL(lfd >= 0);
    probe_init(&p, 44);
    p.total = total;
    p.shutdown_when_sent = true;
    copts_init(&o, &e, "127.0.0.1", port);
    o.conn.sndbuf = 16 * KIB; /* some of it is still queued at shutdown */
    probe_connect(&p, &o, true);
    fd = raw_accept(lfd, 3000);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(raw_recv_stream(fd, 44, 0, total, &bad), total);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), 0); /* our shutdown */
    /* With an empty queue the half-close is immediate: the peer can see it
     * before the poller thread has stored what the next send returned. */
    for (uint64_t end = zl_now_ms() + slow_ms(2000);
         !atomic_load(&p.send_after_shutdown) && zl_now_ms() < end;)
        zl_test_sleep_ms(1);
    CU_ASSERT_EQUAL(atomic_load(&p.send_after_shutdown), ZL_ESHUTDOWN);
    /* Still receiving. */
    CU_ASSERT(zl_test_send_all(fd, "bye", 3));
    CU_ASSERT_EQUAL(wait_ge_ll(&p.rx, 3, 3000), 3);
    CU_ASSERT_EQUAL(atomic_load(&p.closed), 0);
    close(fd);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    probe_end(&p);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.err_code), ZL_EOF);
    CU_ASSERT_EQUAL(atomic_load(&p.final_sent), (long long)total);
    CU_ASSERT_EQUAL(atomic_load(&p.final_recv), 3);
    close(lfd);
    env_down(&e);
}

/* zl_conn_abort() with a full queue: the queue is dropped, the peer sees a
 * reset, on_closed once and no on_err. */
static void test_abort_resets(void)
{
    env_t e;
    probe_t p;
    zl_client_options_t o;
    uint16_t port;
    int lfd, fd;

    env_up(&e, 1);
    lfd = raw_listen("127.0.0.1", 4, 4096, &port);
    CU_ASSERT_FATAL(lfd >= 0);
    probe_init(&p, 45);
    p.total = MIB;
    p.ignore_busy = true;
    copts_init(&o, &e, "127.0.0.1", port);
    o.conn.sndbuf = 16 * KIB;
    probe_connect(&p, &o, true);
    fd = raw_accept(lfd, 3000);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(wait_ge_ll(&p.sent_accepted, (long long)MIB, 3000),
                    (long long)MIB);
    CU_ASSERT(conn_queued(p.ref, NULL) > 0);
    zl_conn_abort(p.ref);
    zl_poller_sync(zl_conn_poller(p.ref), mark_closing, &p);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(zl_test_read_end(fd, NULL), ECONNRESET);
    CU_ASSERT(atomic_load(&p.final_sent) < (long long)MIB);
    zl_test_sleep_ms(50);
    probe_end(&p);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 0);
    close(fd);
    close(lfd);
    env_down(&e);
}

/* Socket options on both ends: non-blocking, close-on-exec, TCP_NODELAY,
 * SO_KEEPALIVE with keepalive_ms's idle time (and its interval) when asked,
 * TCP_USER_TIMEOUT from the send timeout, buffer sizes applied. */
typedef struct sockopts {
    zl_conn_t *c;
    int fd, nonblock, cloexec, nodelay, keepalive, keepidle, sndbuf, rcvbuf;
    int keepintvl, user_timeout;
} sockopts_t;

static void sockopts_task(void *arg)
{
    sockopts_t *so = arg;
    socklen_t len = sizeof(int);
    int fd = zl_conn_fd(so->c);

    so->fd = fd;
    if (fd < 0)
        return;
    so->nonblock = !!(fcntl(fd, F_GETFL) & O_NONBLOCK);
    so->cloexec = !!(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &so->nodelay, &len);
    len = sizeof(int);
    getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &so->keepalive, &len);
#ifdef TCP_KEEPIDLE
    len = sizeof(int);
    getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &so->keepidle, &len);
    len = sizeof(int);
    getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &so->keepintvl, &len);
#endif
#ifdef TCP_USER_TIMEOUT
    len = sizeof(int);
    getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &so->user_timeout, &len);
#endif
    len = sizeof(int);
    getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &so->sndbuf, &len);
    len = sizeof(int);
    getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &so->rcvbuf, &len);
}

/* keepidle: expected TCP_KEEPIDLE in seconds, 0: no SO_KEEPALIVE. */
static void check_sockopts(zl_conn_t *c, int keepidle, int keepintvl,
                           int user_timeout, int sndbuf, int rcvbuf)
{
    sockopts_t so = {c, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0};

    CU_ASSERT_EQUAL_FATAL(zl_poller_sync(zl_conn_poller(c), sockopts_task, &so), 0);
    CU_ASSERT_FATAL(so.fd >= 0);
    CU_ASSERT_TRUE(so.nonblock);
    CU_ASSERT_TRUE(so.cloexec);
    CU_ASSERT_TRUE(so.nodelay);
    CU_ASSERT_EQUAL(!!so.keepalive, keepidle > 0);
#ifdef TCP_KEEPIDLE
    if (keepidle) {
        CU_ASSERT_EQUAL(so.keepidle, keepidle);
        CU_ASSERT_EQUAL(so.keepintvl, keepintvl);
    }
#else
    (void)keepintvl;
#endif
#ifdef TCP_USER_TIMEOUT
    CU_ASSERT_EQUAL(so.user_timeout, user_timeout);
#else
    (void)user_timeout;
#endif
    /* Linux doubles the value it is given. */
    if (sndbuf)
        CU_ASSERT(so.sndbuf >= sndbuf && so.sndbuf <= 2 * sndbuf);
    if (rcvbuf)
        CU_ASSERT(so.rcvbuf >= rcvbuf && so.rcvbuf <= 2 * rcvbuf);
}

static void test_socket_options(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t p;
    zl_client_options_t o;
    zl_conn_t *held;

    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    sv.hold_first = true;
    so.conn.keepalive_ms = 5500; /* 6 s (whole seconds), probes 2 s apart */
    so.conn.send_timeout_ms = 7000;
    so.conn.sndbuf = 48 * KIB;
    so.conn.rcvbuf = 40 * KIB;
    s = srv_start(&e, &sv, &so);
    probe_init(&p, 46);
    copts_init(&o, &e, "127.0.0.1", srv_port(s));
    o.conn.sndbuf = 24 * KIB;
    o.conn.rcvbuf = 20 * KIB;
    o.conn.send_timeout_ms = 0; /* and no keepalive: neither option */
    probe_connect(&p, &o, true);
    CU_ASSERT_EQUAL_FATAL(zl_test_wait_ge(&p.connected, 1, 3000), 1);
    CU_ASSERT_EQUAL_FATAL(zl_test_wait_ge(&sv.connects, 1, 3000), 1);
    check_sockopts(p.ref, 0, 0, 0, 24 * KIB, 20 * KIB);
    held = atomic_load(&sv.held);
    CU_ASSERT_PTR_NOT_NULL_FATAL(held);
    check_sockopts(held, 6, 2, 7000, 48 * KIB, 40 * KIB);
    probe_end(&p);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    zl_conn_unref(held);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* A reconnecting client that filled its queue (on_busy(true)) and lost
 * the connection: the queue went with it, so on_busy(false) comes before
 * the next connection's on_connect, and the handler may produce again. */
typedef struct busyrc {
    atomic_int connects, busy_on, busy_off, off_at_connects, errs, bad;
    atomic_int sends_busy;
} busyrc_t;

static void busyrc_connect(zl_conn_t *c, const zl_error_t *err)
{
    busyrc_t *b = zl_conn_get_data(c);
    static uint8_t chunk[64 * 1024];

    if (err)
        return;
    if (atomic_fetch_add(&b->connects, 1) != 0)
        return;
    /* First connection: fill the queue (the server does not read). */
    for (int i = 0; i < 4096; i++) {
        int rc = zl_conn_send(c, chunk, sizeof(chunk));
        if (rc < 0) {
            atomic_fetch_add(&b->bad, 1);
            return;
        }
        if (rc == ZL_CONN_BUSY) {
            atomic_fetch_add(&b->sends_busy, 1);
            return;
        }
    }
}

static void busyrc_recv(zl_conn_t *c, zl_buf_t *buf)
{
    (void)c;
    (void)buf;
}

static void busyrc_err(zl_conn_t *c, const zl_error_t *err)
{
    busyrc_t *b = zl_conn_get_data(c);

    (void)err;
    atomic_fetch_add(&b->errs, 1);
}

static void busyrc_busy(zl_conn_t *c, bool busy)
{
    busyrc_t *b = zl_conn_get_data(c);

    if (busy) {
        atomic_fetch_add(&b->busy_on, 1);
    } else {
        atomic_store(&b->off_at_connects, atomic_load(&b->connects));
        atomic_fetch_add(&b->busy_off, 1);
    }
}

static const zl_conn_handler_t busyrc_handler = {
    .on_connect = busyrc_connect,
    .on_recv = busyrc_recv,
    .on_err = busyrc_err,
    .on_busy = busyrc_busy,
};

static void test_reconnect_lifts_busy(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    zl_client_options_t o;
    busyrc_t b;
    zl_conn_t *c = NULL, *held;

    memset(&b, 0, sizeof(b));
    env_up(&e, 1);
    srv_init(&sv, SRV_PAUSE); /* pauses every session: nothing is read */
    s = srv_start(&e, &sv, &so);
    copts_init(&o, &e, "127.0.0.1", srv_port(s));
    o.reconnect = true;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 50;
    o.conn.high_water = 64 * 1024;
    o.conn.low_water = 16 * 1024;
    CU_ASSERT_EQUAL_FATAL(zl_client_connect(&c, &o, &busyrc_handler, &b), 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&b.busy_on, 1, 5000), 1);
    CU_ASSERT_EQUAL(atomic_load(&b.sends_busy), 1);
    CU_ASSERT_EQUAL(atomic_load(&b.busy_off), 0);
    /* The server resets the first session: the client loses it. */
    CU_ASSERT_EQUAL_FATAL(zl_test_wait_ge(&sv.connects, 1, 3000), 1);
    held = atomic_load(&sv.held);
    CU_ASSERT_PTR_NOT_NULL_FATAL(held);
    zl_conn_abort(held);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&b.connects, 2, 5000), 2);
    CU_ASSERT_EQUAL(atomic_load(&b.busy_off), 1);
    /* ...and it came before the second connection's on_connect. */
    CU_ASSERT_EQUAL(atomic_load(&b.off_at_connects), 1);
    CU_ASSERT_EQUAL(atomic_load(&b.busy_on), 1);
    CU_ASSERT_EQUAL(atomic_load(&b.bad), 0);
    CU_ASSERT(atomic_load(&b.errs) >= 1);
    zl_conn_close(c);
    zl_conn_unref(c);
    zl_conn_unref(held);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* reconnect=true against a port where a server starts later: refusals
 * (spaced by the backoff) and then a connection. */
static void test_reconnect_until_server(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t p;
    zl_client_options_t o;
    uint16_t port = zl_test_closed_port();
    int n;

    CU_ASSERT_FATAL(port != 0);
    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    probe_init(&p, 50);
    p.reconnect = true;
    p.total = 1000;
    p.verify = true;
    copts_init(&o, &e, "127.0.0.1", port);
    o.reconnect = true;
    o.reconnect_min_ms = 40;
    o.reconnect_max_ms = 80;
    probe_connect(&p, &o, true);
    CU_ASSERT(zl_test_wait_ge(&p.cerrs, 3, 3000) >= 3);
    so.port = port;
    s = srv_start(&e, &sv, &so);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.connected, 1, 3000), 1);
    CU_ASSERT(wait_ge_ll(&p.rx, 1000, 3000) == 1000);
    n = atomic_load(&p.cerrs);
    zl_conn_close(p.ref);
    zl_poller_sync(zl_conn_poller(p.ref), mark_closing, &p);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    zl_test_sleep_ms(100);
    probe_check_clean(&p);
    CU_ASSERT(n >= 3);
    CU_ASSERT_EQUAL(atomic_load(&p.cerrs), n);
    CU_ASSERT_EQUAL(atomic_load(&p.cerr_nonrefused), 0);
    CU_ASSERT_EQUAL(atomic_load(&p.connected), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 0);
    /* Backoff: 40 ms doubling to 80 ms, +-25 %. */
    for (int i = 1; i < p.ncerr_times && i < n; i++) {
        uint64_t gap = p.cerr_times[i] - p.cerr_times[i - 1];
        if (gap < 29 || gap > 100 + slow_ms(100))
            fprintf(stderr, "\n  retry gap %d: %llu ms\n", i,
                    (unsigned long long)gap);
        CU_ASSERT(gap >= 29);
        CU_ASSERT(gap <= 100 + slow_ms(100));
    }
    probe_end(&p);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

#define STORM_CLIENTS 20

/* A server that closes every session at once, and reconnecting clients
 * with max_attempts 3: they reconnect while the server runs; after it is
 * freed every client gives up by itself with on_closed exactly once and no
 * callback after it. */
static void test_reconnect_storm(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t *p = calloc(STORM_CLIENTS, sizeof(*p));
    atomic_int all = 0;
    uint64_t end;
    int ready = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    env_up(&e, 2);
    srv_init(&sv, SRV_CLOSER);
    s = srv_start(&e, &sv, &so);
    for (int i = 0; i < STORM_CLIENTS; i++) {
        zl_client_options_t o;
        probe_init(&p[i], 60 + (unsigned)i);
        p[i].reconnect = true;
        p[i].all_closed = &all;
        copts_init(&o, &e, "127.0.0.1", srv_port(s));
        o.reconnect = true;
        o.reconnect_min_ms = 5;
        o.reconnect_max_ms = 20;
        o.max_attempts = 3;
        probe_connect(&p[i], &o, true);
    }
    end = zl_now_ms() + slow_ms(10000);
    while (ready < STORM_CLIENTS && zl_now_ms() < end) {
        ready = 0;
        for (int i = 0; i < STORM_CLIENTS; i++)
            ready += atomic_load(&p[i].connected) >= 3;
        zl_test_sleep_ms(5);
    }
    CU_ASSERT_EQUAL(ready, STORM_CLIENTS);
    CU_ASSERT_EQUAL(atomic_load(&all), 0); /* nobody gave up yet */
    zl_server_free(s); /* sessions closed before it returns */
    CU_ASSERT_EQUAL(atomic_load(&sv.closed), atomic_load(&sv.connects));
    CU_ASSERT_EQUAL(atomic_load(&sv.bad), 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&all, STORM_CLIENTS, 5000), STORM_CLIENTS);
    zl_test_sleep_ms(150);
    for (int i = 0; i < STORM_CLIENTS; i++) {
        probe_end(&p[i]);
        probe_check_clean(&p[i]);
        CU_ASSERT(atomic_load(&p[i].errs) >= 2);
        CU_ASSERT(atomic_load(&p[i].cerrs) >= 1);
        CU_ASSERT_EQUAL(atomic_load(&p[i].cerr_code), ZL_EREFUSED);
    }
    env_down(&e);
    srv_fini(&sv);
    free(p);
}

/* zl_server_free() with connected clients (some idle, some exchanging):
 * every session's on_closed has run when it returns; the clients then see
 * the end. */
static void test_server_free_with_clients(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t p[8];

    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so);
    for (int i = 0; i < 8; i++) {
        if (i < 4) {
            ping_pong_start(&e, s, &p[i], 70 + (unsigned)i);
        } else {
            zl_client_options_t o;
            probe_init(&p[i], 70 + (unsigned)i);
            copts_init(&o, &e, "127.0.0.1", srv_port(s));
            probe_connect(&p[i], &o, true);
        }
    }
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.connects, 8, 3000), 8);
    for (int i = 0; i < 4; i++)
        CU_ASSERT(wait_ge_ll(&p[i].rx, 16 * KIB, 3000) >= 16 * (long long)KIB);
    zl_server_free(s);
    CU_ASSERT_EQUAL(atomic_load(&sv.closed), 8);
    CU_ASSERT_EQUAL(atomic_load(&sv.bad), 0);
    for (int i = 0; i < 8; i++) {
        int code;
        CU_ASSERT_EQUAL(zl_test_wait_ge(&p[i].closed, 1, 3000), 1);
        probe_end(&p[i]);
        probe_check_clean(&p[i]);
        CU_ASSERT_EQUAL(atomic_load(&p[i].errs), 1);
        code = atomic_load(&p[i].err_code);
        CU_ASSERT(code == ZL_EOF || code == ZL_ERESET);
        if (i >= 4)
            CU_ASSERT_EQUAL(code, ZL_EOF); /* idle: a clean end */
    }
    env_down(&e);
    srv_fini(&sv);
}

/* Peer and local addresses stay readable after on_err, in on_closed; the
 * session's peer is the client's local address. */
static void test_addresses_after_err(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t p;
    zl_client_options_t o;
    char want[32];
    unsigned lport = 0;

    env_up(&e, 2);
    srv_init(&sv, SRV_CLOSER);
    s = srv_start(&e, &sv, &so);
    probe_init(&p, 80);
    copts_init(&o, &e, "127.0.0.1", srv_port(s));
    probe_connect(&p, &o, false);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.errs), 1);
    CU_ASSERT_EQUAL(atomic_load(&p.err_code), ZL_EOF);
    snprintf(want, sizeof(want), "127.0.0.1:%u", srv_port(s));
    CU_ASSERT_STRING_EQUAL(p.peer_at_connect, want);
    CU_ASSERT_STRING_EQUAL(p.peer_at_err, want);
    CU_ASSERT_STRING_EQUAL(p.peer_at_closed, want);
    CU_ASSERT_EQUAL(sscanf(p.local_at_closed, "127.0.0.1:%u", &lport), 1);
    CU_ASSERT(lport != 0 && lport != srv_port(s));
    CU_ASSERT_STRING_EQUAL(p.local_at_err, p.local_at_closed);
    CU_ASSERT_STRING_EQUAL(p.local_at_connect, p.local_at_closed);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    pthread_mutex_lock(&sv.lock);
    /* The accepted side: its peer is the client's local address, its
     * local address the server's, both still there in on_closed (kept
     * when the fd closed, asked of the kernel on demand before). */
    CU_ASSERT_STRING_EQUAL(sv.closed_peer, p.local_at_closed);
    CU_ASSERT_STRING_EQUAL(sv.closed_local, want);
    CU_ASSERT_STRING_EQUAL(sv.local_at_connect, want);
    CU_ASSERT_STRING_EQUAL(sv.peers[0], p.local_at_closed);
    pthread_mutex_unlock(&sv.lock);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* bytes_sent / bytes_received are exact on both sides. */
static void test_byte_counters(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t p;
    zl_client_options_t o;
    const long long total = 300001;

    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so);
    probe_init(&p, 81);
    p.total = (uint64_t)total;
    p.chunk = 7777;
    p.verify = true;
    p.close_when_echoed = true;
    copts_init(&o, &e, "127.0.0.1", srv_port(s));
    probe_connect(&p, &o, false);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 5000), 1);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.final_sent), total);
    CU_ASSERT_EQUAL(atomic_load(&p.final_recv), total);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&sv.rx), total);
    CU_ASSERT_EQUAL(atomic_load(&sv.tx), total);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* on_manager every 50 ms while connected, on both sides. */
static void test_manager_ticks(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    probe_t p;
    zl_client_options_t o;
    int m0, m1, s0, s1;

    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    so.conn.manager_ms = 50;
    s = srv_start(&e, &sv, &so);
    probe_init(&p, 82);
    copts_init(&o, &e, "127.0.0.1", srv_port(s));
    o.conn.manager_ms = 50;
    probe_connect(&p, &o, true);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.connected, 1, 3000), 1);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.connects, 1, 3000), 1);
    m0 = atomic_load(&p.managers);
    s0 = atomic_load(&sv.managers);
    zl_test_sleep_ms(500);
    m1 = atomic_load(&p.managers);
    s1 = atomic_load(&sv.managers);
    if (m1 - m0 < 5 || m1 - m0 > 13 || s1 - s0 < 5 || s1 - s0 > 13)
        fprintf(stderr, "\n  ticks in 500 ms: client %d, session %d\n",
                m1 - m0, s1 - s0);
    CU_ASSERT(m1 - m0 >= 5 && m1 - m0 <= 13);
    CU_ASSERT(s1 - s0 >= 5 && s1 - s0 <= 13);
    probe_end(&p);
    probe_check_clean(&p);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* on_manager also ticks while connecting, and stops with the failure. */
static void test_manager_while_connecting(void)
{
    env_t e;
    jam_t j;
    probe_t p;
    zl_client_options_t o;

    CU_ASSERT_FATAL(jam_up(&j));
    env_up(&e, 1);
    probe_init(&p, 83);
    copts_init(&o, &e, "127.0.0.1", j.port);
    o.connect_timeout_ms = 600;
    o.conn.manager_ms = 50;
    probe_connect(&p, &o, false);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    zl_test_sleep_ms(150);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.cerr_code), ZL_ETIMEOUT);
    CU_ASSERT(atomic_load(&p.managers) >= 6);
    CU_ASSERT(atomic_load(&p.managers) <= 13);
    env_down(&e);
    jam_down(&j);
}

/* Server and client on ::1. */
static void test_ipv6_loopback(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("::1");
    zl_server_t *s;
    probe_t p;
    zl_client_options_t o;
    char want[40];

    if (!have_ipv6()) {
        fprintf(stderr, "\n  no IPv6 loopback: skipped\n");
        return;
    }
    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so);
    CU_ASSERT_EQUAL(zl_server_addr(s)->u.sa.sa_family, AF_INET6);
    probe_init(&p, 84);
    p.total = 64 * KIB;
    p.verify = true;
    p.close_when_echoed = true;
    copts_init(&o, &e, "::1", srv_port(s));
    probe_connect(&p, &o, false);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 5000), 1);
    probe_check_clean(&p);
    CU_ASSERT_EQUAL(atomic_load(&p.final_recv), 64 * (long long)KIB);
    snprintf(want, sizeof(want), "[::1]:%u", srv_port(s));
    CU_ASSERT_STRING_EQUAL(p.peer_at_connect, want);
    CU_ASSERT_STRING_EQUAL(p.peer_at_closed, want);
    CU_ASSERT_EQUAL(strncmp(p.local_at_connect, "[::1]:", 6), 0);
    CU_ASSERT_STRING_EQUAL(p.local_at_closed, p.local_at_connect);
    CU_ASSERT_TRUE(srv_has_peer(&sv, "[::1]:"));
    /* The accepted side keeps both IPv6 addresses past on_closed. */
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    pthread_mutex_lock(&sv.lock);
    CU_ASSERT_STRING_EQUAL(sv.closed_peer, p.local_at_closed);
    CU_ASSERT_STRING_EQUAL(sv.closed_local, want);
    CU_ASSERT_STRING_EQUAL(sv.local_at_connect, want);
    CU_ASSERT_STRING_EQUAL(sv.peers[0], p.local_at_connect);
    pthread_mutex_unlock(&sv.lock);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* host NULL: dual-stack, accepts 127.0.0.1 (reported as plain IPv4, not
 * ::ffff:127.0.0.1) and ::1. */
static void test_dual_stack(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts(NULL);
    zl_server_t *s;
    probe_t p[2];
    bool v6 = have_ipv6();
    char want[40];

    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so);
    if (v6) {
        snprintf(want, sizeof(want), "[::]:%u", srv_port(s));
        CU_ASSERT_STRING_EQUAL(zl_addr_format(zl_server_addr(s), (char[64]){0}, 64),
                               want);
    }
    for (int i = 0; i < (v6 ? 2 : 1); i++) {
        zl_client_options_t o;
        probe_init(&p[i], 85 + (unsigned)i);
        p[i].total = 1000;
        p[i].verify = true;
        p[i].close_when_echoed = true;
        copts_init(&o, &e, i ? "::1" : "127.0.0.1", srv_port(s));
        probe_connect(&p[i], &o, false);
        CU_ASSERT_EQUAL(zl_test_wait_ge(&p[i].closed, 1, 5000), 1);
        probe_check_clean(&p[i]);
        CU_ASSERT_EQUAL(atomic_load(&p[i].final_recv), 1000);
    }
    CU_ASSERT_TRUE(srv_has_peer(&sv, "127.0.0.1:"));
    CU_ASSERT_FALSE(srv_has_peer(&sv, "[::ffff:"));
    if (v6)
        CU_ASSERT_TRUE(srv_has_peer(&sv, "[::1]:"));
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* Listening errors come back at once. */
static void test_server_new_errors(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s, *s2 = (zl_server_t *)&sv; /* non-NULL sentinel */
    zl_conn_handler_t no_recv = srv_handler;
    uint16_t port;
    int lfd;

    env_up(&e, 1);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so);
    so.port = srv_port(s);
    CU_ASSERT_EQUAL(zl_server_new(&s2, &so, &srv_handler, &sv), -EADDRINUSE);
    CU_ASSERT_PTR_NULL(s2);
    srv_stop(s, &sv);

    /* A port held by a plain listener. */
    lfd = raw_listen("127.0.0.1", 4, 0, &port);
    CU_ASSERT_FATAL(lfd >= 0);
    so.port = port;
    s2 = (zl_server_t *)&sv;
    CU_ASSERT_EQUAL(zl_server_new(&s2, &so, &srv_handler, &sv), -EADDRINUSE);
    CU_ASSERT_PTR_NULL(s2);
    close(lfd);

    so.port = 0;
    so.host = "not-an-ip";
    CU_ASSERT_EQUAL(zl_server_new(&s2, &so, &srv_handler, &sv), -EINVAL);
    so.host = "127.0.0.1";
    no_recv.on_recv = NULL;
    CU_ASSERT_EQUAL(zl_server_new(&s2, &so, &no_recv, &sv), -EINVAL);
    CU_ASSERT_EQUAL(zl_server_new(&s2, NULL, &srv_handler, &sv), -EINVAL);
    env_down(&e);
    srv_fini(&sv);
}

/* max_conns 2: the third and fourth connection are dropped and counted;
 * once a session closes, a new one is served. */
static void test_max_conns(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    zl_server_stats_t st;
    int fd[5];
    char buf[4];

    env_up(&e, 2);
    srv_init(&sv, SRV_ECHO);
    so.max_conns = 2;
    s = srv_start(&e, &sv, &so);
    for (int i = 0; i < 2; i++) {
        fd[i] = raw_connect("127.0.0.1", srv_port(s), 0);
        CU_ASSERT_FATAL(fd[i] >= 0);
        CU_ASSERT(zl_test_send_all(fd[i], "abcd", 4));
        CU_ASSERT(zl_test_recv_exact(fd[i], buf, 4));
    }
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.connects, 2, 3000), 2);
    for (int i = 2; i < 4; i++) {
        fd[i] = raw_connect("127.0.0.1", srv_port(s), 0);
        CU_ASSERT_FATAL(fd[i] >= 0);
        CU_ASSERT_EQUAL(zl_test_read_end(fd[i], NULL), 0); /* dropped */
    }
    zl_server_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.refused_limit, 2);
    CU_ASSERT_EQUAL(st.accepted, 2);
    CU_ASSERT_EQUAL(st.active, 2);
    CU_ASSERT_EQUAL(st.refused_fds, 0);
    CU_ASSERT_EQUAL(atomic_load(&sv.connects), 2);
    close(fd[0]);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    zl_server_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.active, 1);
    fd[4] = raw_connect("127.0.0.1", srv_port(s), 0);
    CU_ASSERT_FATAL(fd[4] >= 0);
    CU_ASSERT(zl_test_send_all(fd[4], "efgh", 4));
    CU_ASSERT(zl_test_recv_exact(fd[4], buf, 4));
    CU_ASSERT_EQUAL(memcmp(buf, "efgh", 4), 0);
    zl_server_get_stats(s, &st);
    CU_ASSERT_EQUAL(st.accepted, 3);
    CU_ASSERT_EQUAL(st.refused_limit, 2);
    for (int i = 1; i < 5; i++)
        close(fd[i]);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

static void check_conn_defaults(const zl_conn_options_t *c)
{
    CU_ASSERT_EQUAL(c->high_water, 1 * MIB);
    CU_ASSERT_EQUAL(c->low_water, 256 * KIB);
    CU_ASSERT_EQUAL(c->send_timeout_ms, 10000);
    CU_ASSERT_EQUAL(c->manager_ms, 2000);
    CU_ASSERT_EQUAL(c->sndbuf, 0);
    CU_ASSERT_EQUAL(c->rcvbuf, 0);
    CU_ASSERT_EQUAL(c->keepalive_ms, 0);
    CU_ASSERT_EQUAL(c->idle_timeout_ms, 0);
}

/* The INIT macros and functions hold the defaults the headers document. */
static void test_options_init(void)
{
    zl_conn_options_t co = ZL_CONN_OPTIONS_INIT, cf;
    zl_client_options_t cl = ZL_CLIENT_OPTIONS_INIT, clf;
    zl_server_options_t so = ZL_SERVER_OPTIONS_INIT, sof;

    check_conn_defaults(&co);
    memset(&cf, 0xa5, sizeof(cf));
    zl_conn_options_init(&cf);
    check_conn_defaults(&cf);
    for (int i = 0; i < 2; i++) {
        const zl_client_options_t *c = i ? &clf : &cl;
        if (i) {
            memset(&clf, 0xa5, sizeof(clf));
            zl_client_options_init(&clf);
        }
        CU_ASSERT_PTR_NULL(c->host);
        CU_ASSERT_EQUAL(c->port, 0);
        CU_ASSERT_EQUAL(c->connect_timeout_ms, 5000);
        CU_ASSERT_EQUAL(c->attempt_delay_ms, 250);
        CU_ASSERT_PTR_NULL(c->local_ip);
        CU_ASSERT_EQUAL(c->local_port, 0);
        check_conn_defaults(&c->conn);
        CU_ASSERT_FALSE(c->reconnect);
        CU_ASSERT_EQUAL(c->reconnect_min_ms, 500);
        CU_ASSERT_EQUAL(c->reconnect_max_ms, 30000);
        CU_ASSERT_EQUAL(c->max_attempts, 0);
        CU_ASSERT_PTR_NULL(c->poller);
        CU_ASSERT_PTR_NULL(c->workers);
        CU_ASSERT_PTR_NULL(c->name);
    }
    for (int i = 0; i < 2; i++) {
        const zl_server_options_t *c = i ? &sof : &so;
        if (i) {
            memset(&sof, 0xa5, sizeof(sof));
            zl_server_options_init(&sof);
        }
        CU_ASSERT_PTR_NULL(c->host);
        CU_ASSERT_EQUAL(c->port, 0);
        CU_ASSERT_FALSE(c->v6only);
        CU_ASSERT_EQUAL(c->backlog, 1024);
        CU_ASSERT_EQUAL(c->max_conns, 0);
        check_conn_defaults(&c->conn);
        CU_ASSERT_PTR_NULL(c->pool);
        CU_ASSERT_PTR_NULL(c->name);
    }
}

/* A zero-filled struct (host and port set) is refused, not run without
 * its timeouts; so is each field without an "off" that is 0, and each
 * pair of fields that contradict each other. */
static void test_options_refused(void)
{
    env_t e;
    srv_t sv;
    zl_client_options_t o;
    zl_server_options_t so;
    zl_server_t *s = NULL;
    probe_t p;

    env_up(&e, 1);
    probe_init(&p, 93);
    memset(&o, 0, sizeof(o));
    o.host = "127.0.0.1";
    o.port = 9;
    o.poller = zl_poller_pool_get(e.pool, false);
    CU_ASSERT_EQUAL(zl_client_connect(NULL, &o, &probe_handler, &p), -EINVAL);
    for (int i = 0; i < 6; i++) {
        copts_init(&o, &e, "127.0.0.1", 9);
        if (i == 0)
            o.conn.high_water = 0;
        else if (i == 1)
            o.conn.manager_ms = 0;
        else if (i == 2)
            o.conn.low_water = o.conn.high_water + 1;
        else if (i == 3)
            o.attempt_delay_ms = 0;
        else if (i == 4)
            o.reconnect_min_ms = 0;
        else
            o.reconnect_max_ms = o.reconnect_min_ms - 1;
        CU_ASSERT_EQUAL(zl_client_connect(NULL, &o, &probe_handler, &p),
                        -EINVAL);
    }
    CU_ASSERT_EQUAL(atomic_load(&p.closed), 0); /* nothing started */

    srv_init(&sv, SRV_ECHO);
    memset(&so, 0, sizeof(so));
    so.host = "127.0.0.1";
    so.pool = e.pool;
    CU_ASSERT_EQUAL(zl_server_new(&s, &so, &srv_handler, &sv), -EINVAL);
    CU_ASSERT_PTR_NULL(s);
    for (int i = 0; i < 3; i++) {
        so = srv_opts("127.0.0.1");
        so.pool = e.pool;
        if (i == 0)
            so.backlog = 0;
        else if (i == 1)
            so.backlog = -1;
        else
            so.conn.high_water = 0;
        CU_ASSERT_EQUAL(zl_server_new(&s, &so, &srv_handler, &sv), -EINVAL);
        CU_ASSERT_PTR_NULL(s);
    }
    CU_ASSERT_EQUAL(atomic_load(&sv.connects), 0);
    srv_fini(&sv);
    env_down(&e);
}

/* Bad client options are refused at once; a local address is honoured and
 * a bind failure is reported at stage bind. */
static void test_client_options(void)
{
    env_t e;
    srv_t sv;
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    zl_client_options_t o;
    zl_conn_handler_t no_recv = probe_handler;
    zl_conn_t *c = (zl_conn_t *)&o; /* non-NULL sentinel */
    probe_t p, q;
    uint16_t lport = zl_test_closed_port();
    char want[32];

    env_up(&e, 1);
    srv_init(&sv, SRV_ECHO);
    s = srv_start(&e, &sv, &so);
    probe_init(&p, 90);
    copts_init(&o, &e, NULL, srv_port(s));
    CU_ASSERT_EQUAL(zl_client_connect(&c, &o, &probe_handler, &p), -EINVAL);
    CU_ASSERT_PTR_NULL(c);
    o.host = "";
    CU_ASSERT_EQUAL(zl_client_connect(NULL, &o, &probe_handler, &p), -EINVAL);
    o.host = "127.0.0.1";
    o.port = 0;
    CU_ASSERT_EQUAL(zl_client_connect(NULL, &o, &probe_handler, &p), -EINVAL);
    o.port = srv_port(s);
    no_recv.on_recv = NULL;
    CU_ASSERT_EQUAL(zl_client_connect(NULL, &o, &no_recv, &p), -EINVAL);
    o.local_ip = "junk";
    CU_ASSERT_EQUAL(zl_client_connect(NULL, &o, &probe_handler, &p), -EINVAL);
    if (!zl_runtime_pollers()) {
        o.local_ip = NULL;
        o.poller = NULL; /* no runtime to fall back on */
        CU_ASSERT_EQUAL(zl_client_connect(NULL, &o, &probe_handler, &p), -EINVAL);
        copts_init(&o, &e, "good.test", srv_port(s));
        o.workers = NULL; /* a name needs a worker pool */
        CU_ASSERT_EQUAL(zl_client_connect(NULL, &o, &probe_handler, &p), -EINVAL);
    }
    CU_ASSERT_EQUAL(atomic_load(&p.closed), 0); /* nothing started */

    /* local_ip + local_port: the session sees that port. */
    CU_ASSERT_FATAL(lport != 0);
    copts_init(&o, &e, "127.0.0.1", srv_port(s));
    o.local_ip = "127.0.0.1";
    o.local_port = lport;
    p.total = 100;
    p.verify = true;
    p.close_when_echoed = true;
    probe_connect(&p, &o, false);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&p.closed, 1, 3000), 1);
    probe_check_clean(&p);
    snprintf(want, sizeof(want), "127.0.0.1:%u", lport);
    CU_ASSERT_STRING_EQUAL(p.local_at_connect, want);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sv.closed, 1, 3000), 1);
    CU_ASSERT_TRUE(srv_has_peer(&sv, want));

    /* An IPv6 local address for an IPv4 peer cannot bind. */
    probe_init(&q, 91);
    copts_init(&o, &e, "127.0.0.1", srv_port(s));
    o.local_ip = "::1";
    probe_connect(&q, &o, false);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&q.closed, 1, 3000), 1);
    probe_check_clean(&q);
    CU_ASSERT_EQUAL(atomic_load(&q.cerrs), 1);
    CU_ASSERT_EQUAL(atomic_load(&q.cerr_stage), ZL_STAGE_BIND);
    CU_ASSERT_EQUAL(atomic_load(&q.connected), 0);
    srv_stop(s, &sv);
    env_down(&e);
    srv_fini(&sv);
}

/* ------------------------------------------------------------ kept buffers */

/* A handler that keeps each receive buffer with zl_buf_ref() gets its bytes
 * without a copy, and the poller takes a fresh buffer for the next read: the
 * kept bytes stay intact while more data arrives.  The test thread drops
 * the references (any thread may). */
#define KEEP_CHUNKS 4
typedef struct keep {
    zl_buf_t *bufs[KEEP_CHUNKS];
    atomic_int n, closed;
} keep_t;

static void keep_recv(zl_conn_t *c, zl_buf_t *b)
{
    keep_t *k = zl_conn_get_data(c);
    int i = atomic_load(&k->n);

    if (i < KEEP_CHUNKS) {
        k->bufs[i] = zl_buf_ref(b);
        atomic_store(&k->n, i + 1);
    }
}

static void keep_closed(zl_conn_t *c)
{
    keep_t *k = zl_conn_get_data(c);
    atomic_store(&k->closed, 1);
}

static void test_keep_recv_buffer(void)
{
    env_t e;
    keep_t k;
    zl_conn_handler_t h = {.on_recv = keep_recv, .on_closed = keep_closed};
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    int fd;

    memset(&k, 0, sizeof(k));
    env_up(&e, 1);
    so.pool = e.pool;
    CU_ASSERT_EQUAL_FATAL(zl_server_new(&s, &so, &h, &k), 0);
    fd = raw_connect("127.0.0.1", srv_port(s), 0);
    CU_ASSERT_FATAL(fd >= 0);
    for (int i = 0; i < KEEP_CHUNKS; i++) {
        char chunk[100];
        memset(chunk, 'a' + i, sizeof(chunk));
        CU_ASSERT(zl_test_send_all(fd, chunk, sizeof(chunk)));
        /* One read per chunk: wait until the session kept this one. */
        CU_ASSERT_EQUAL(zl_test_wait_ge(&k.n, i + 1, 3000), i + 1);
    }
    for (int i = 0; i < KEEP_CHUNKS && i < atomic_load(&k.n); i++) {
        zl_buf_t *b = k.bufs[i];
        bool intact = b->len == 100;
        for (size_t j = 0; intact && j < b->len; j++)
            intact = b->data[j] == 'a' + i;
        CU_ASSERT(intact); /* not overwritten by later reads */
        for (int j = 0; j < i; j++)
            CU_ASSERT_PTR_NOT_EQUAL(b->data, k.bufs[j]->data);
    }
    close(fd);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&k.closed, 1, 3000), 1);
    zl_server_free(s);
    env_down(&e);
    for (int i = 0; i < atomic_load(&k.n); i++) {
        CU_ASSERT_EQUAL(zl_buf_refcount(k.bufs[i]), 1);
        zl_buf_unref(k.bufs[i]);
    }
}

/* ------------------------------------------------------------ spreading */

/* Sessions go to the pool's pollers by load.  The acceptor's own poller
 * reads busier while it accepts, so it may get none of a burst; the idle
 * ones tie, and ties go round-robin: the burst spreads over them. */
#define SPREAD_CONNS 16
typedef struct spread {
    _Atomic(zl_poller_t *) pollers[SPREAD_CONNS];
    atomic_int slot, n, closed;
} spread_t;

static void spread_connect(zl_conn_t *c, const zl_error_t *err)
{
    spread_t *sp = zl_conn_get_data(c);
    int i = atomic_fetch_add(&sp->slot, 1);

    (void)err;
    if (i < SPREAD_CONNS)
        atomic_store(&sp->pollers[i], zl_conn_poller(c));
    atomic_fetch_add(&sp->n, 1); /* after the slot is written */
    /* Every callback runs on the poller that owns the session. */
    CU_ASSERT(zl_poller_is_current(zl_conn_poller(c)));
}

static void spread_recv(zl_conn_t *c, zl_buf_t *b)
{
    (void)c;
    (void)b;
}

static void spread_closed(zl_conn_t *c)
{
    spread_t *sp = zl_conn_get_data(c);
    atomic_fetch_add(&sp->closed, 1);
}

static void test_sessions_spread(void)
{
    env_t e;
    spread_t sp;
    zl_conn_handler_t h = {.on_connect = spread_connect,
                           .on_recv = spread_recv,
                           .on_closed = spread_closed};
    zl_server_options_t so = srv_opts("127.0.0.1");
    zl_server_t *s;
    int fds[SPREAD_CONNS], per[3] = {0}, used = 0;

    memset(&sp, 0, sizeof(sp));
    env_up(&e, 3);
    so.pool = e.pool;
    CU_ASSERT_EQUAL_FATAL(zl_server_new(&s, &so, &h, &sp), 0);
    for (int i = 0; i < SPREAD_CONNS; i++) {
        fds[i] = raw_connect("127.0.0.1", srv_port(s), 0);
        CU_ASSERT_FATAL(fds[i] >= 0);
    }
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sp.n, SPREAD_CONNS, 5000), SPREAD_CONNS);
    for (int i = 0; i < SPREAD_CONNS && i < atomic_load(&sp.n); i++) {
        zl_poller_t *p = atomic_load(&sp.pollers[i]);
        CU_ASSERT(zl_poller_pool_contains(e.pool, p));
        for (int j = 0; j < 3; j++)
            per[j] += p == zl_poller_pool_at(e.pool, (size_t)j);
    }
    for (int j = 0; j < 3; j++)
        used += per[j] > 0;
    if (used < 2)
        fprintf(stderr, "\n  sessions per poller: %d %d %d\n", per[0], per[1],
                per[2]);
    CU_ASSERT(used >= 2);
    for (int i = 0; i < SPREAD_CONNS; i++)
        close(fds[i]);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&sp.closed, SPREAD_CONNS, 5000), SPREAD_CONNS);
    zl_server_free(s);
    env_down(&e);
}

/* ================================================================
 * Names after the net-layer seam (issue 11): a connection learns its
 * kind from its owner's ops table.  A client's connection is
 * "client#N", an accepted one "conn#N", and both keep their names after
 * on_closed, when the owner has let go.
 * ================================================================ */

typedef struct names {
    pthread_mutex_t lock;
    zl_conn_t *accepted; /* a reference, taken in on_connect */
    char srv_connect[32], srv_closed[32];
    char cli_connect[32], cli_closed[32];
    atomic_int srv_done, cli_done;
} names_t;

static void names_copy(names_t *n, char *dst, const zl_conn_t *c)
{
    pthread_mutex_lock(&n->lock);
    g_strlcpy(dst, zl_conn_name(c), 32);
    pthread_mutex_unlock(&n->lock);
}

static void names_srv_connect(zl_conn_t *c, const zl_error_t *err)
{
    names_t *n = zl_conn_get_data(c);

    (void)err;
    names_copy(n, n->srv_connect, c);
    pthread_mutex_lock(&n->lock);
    n->accepted = zl_conn_ref(c);
    pthread_mutex_unlock(&n->lock);
}

static void names_srv_recv(zl_conn_t *c, zl_buf_t *buf)
{
    (void)buf;
    zl_conn_close(c);
}

static void names_srv_closed(zl_conn_t *c)
{
    names_t *n = zl_conn_get_data(c);

    names_copy(n, n->srv_closed, c);
    atomic_store(&n->srv_done, 1);
}

static const zl_conn_handler_t names_srv_handler = {
    .on_connect = names_srv_connect,
    .on_recv = names_srv_recv,
    .on_closed = names_srv_closed,
};

static void names_cli_connect(zl_conn_t *c, const zl_error_t *err)
{
    names_t *n = zl_conn_get_data(c);

    if (err)
        return;
    names_copy(n, n->cli_connect, c);
    zl_conn_send(c, "x", 1);
}

static void names_cli_recv(zl_conn_t *c, zl_buf_t *buf)
{
    (void)c;
    (void)buf;
}

static void names_cli_closed(zl_conn_t *c)
{
    names_t *n = zl_conn_get_data(c);

    names_copy(n, n->cli_closed, c);
    atomic_store(&n->cli_done, 1);
}

static const zl_conn_handler_t names_cli_handler = {
    .on_connect = names_cli_connect,
    .on_recv = names_cli_recv,
    .on_closed = names_cli_closed,
};

/* "kind#N" with N > 0; returns N, or 0 if s is not of that form. */
static unsigned names_serial(const char *s, const char *kind)
{
    size_t k = strlen(kind);
    char *end = NULL;
    unsigned long v;

    if (strncmp(s, kind, k) != 0 || s[k] != '#')
        return 0;
    v = strtoul(s + k + 1, &end, 10);
    return end && !*end && v <= UINT32_MAX ? (unsigned)v : 0;
}

static void test_names_client_and_accepted(void)
{
    env_t e;
    names_t n = {.lock = PTHREAD_MUTEX_INITIALIZER};
    zl_server_options_t so = ZL_SERVER_OPTIONS_INIT;
    zl_server_t *s = NULL;
    zl_client_options_t o;
    zl_conn_t *cli = NULL;

    env_up(&e, 2);
    so.host = "127.0.0.1";
    so.pool = e.pool;
    CU_ASSERT_EQUAL_FATAL(zl_server_new(&s, &so, &names_srv_handler, &n), 0);
    copts_init(&o, &e, "127.0.0.1", srv_port(s));
    CU_ASSERT_EQUAL_FATAL(zl_client_connect(&cli, &o, &names_cli_handler, &n),
                          0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&n.cli_done, 1, slow_ms(5000)), 1);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&n.srv_done, 1, slow_ms(5000)), 1);
    zl_server_free(s);

    pthread_mutex_lock(&n.lock);
    CU_ASSERT(names_serial(n.cli_connect, "client") > 0);
    CU_ASSERT(names_serial(n.srv_connect, "conn") > 0);
    CU_ASSERT(names_serial(n.srv_connect, "conn") !=
              names_serial(n.cli_connect, "client"));
    CU_ASSERT_STRING_EQUAL(n.cli_closed, n.cli_connect);
    CU_ASSERT_STRING_EQUAL(n.srv_closed, n.srv_connect);
    /* After on_closed, owners gone (the server is freed): same names. */
    CU_ASSERT_STRING_EQUAL(zl_conn_name(cli), n.cli_connect);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n.accepted);
    CU_ASSERT_STRING_EQUAL(zl_conn_name(n.accepted), n.srv_connect);
    pthread_mutex_unlock(&n.lock);
    zl_conn_unref(n.accepted);
    zl_conn_unref(cli);
    env_down(&e);
}

/* ================================================ end of the names block */

int zl_test_register_conn(void)
{
    static const zl_test_case_t cases[] = {
        /* data */
        {"echo: 100 clients x 1 MiB, byte-exact", test_echo_100x1m},
        {"echo: 100 clients x 64 KiB, 1 byte per send",
         test_echo_100x64k_1byte},
        {"echo: raw POSIX client vs zltk server, 1 MiB",
         test_raw_client_zltk_server},
        {"echo: zltk client vs raw POSIX echo thread, 1 MiB",
         test_zltk_client_raw_server},
        /* faults */
        {"refused: ZL_EREFUSED at connect, on_closed once", test_refused},
        {"connect timeout (full accept queue): ZL_ETIMEOUT at connect",
         test_connect_timeout},
        {"resolve failure: ZL_EDNS at resolve", test_dns_fail},
        {"resolve: first address refuses, second connects",
         test_dns_second_address},
        {"resolve: first address hangs, second connects (Happy Eyeballs)",
         test_dns_first_address_hangs},
        {"resolve slower than the timeout: ZL_ETIMEOUT at resolve",
         test_dns_slow},
        {"peer reset (session): ZL_ERESET at read", test_reset_by_client},
        {"peer reset (client): ZL_ERESET at read", test_reset_by_server},
        {"end of stream arriving with the last data is seen",
         test_eof_with_last_data},
        {"half-close: EOF after all data, queued echo still sent",
         test_half_close},
        {"half-close: no loop spin while the echo waits for the reader",
         test_half_close_no_spin},
        {"stalled peer: busy once, ZL_CONN_BUSY, queue grows, ZL_ETIMEOUT at write",
         test_stalled_peer_send_timeout},
        {"memory back after a burst: one trim after 8 MiB of queues dropped",
         test_trim_after_burst},
        {"drain notice: on_busy(false) then on_flush when the peer reads",
         test_drain_notice},
        {"drain notice at the low watermark, queue not empty",
         test_drain_at_low_water},
        {"paused connection: no loop spin; resume from another thread",
         test_pause_no_spin},
        {"EMFILE: dropped without spinning, counted, recovers", test_emfile},
        /* lifecycle */
        {"close inside on_connect", test_close_in_connect},
        {"close inside on_connect(err) stops reconnecting",
         test_close_in_connect_err},
        {"close inside on_recv", test_close_in_recv},
        {"close inside on_flush (queue sent)", test_close_in_flush},
        {"close inside on_busy (queue sent)", test_close_in_busy},
        {"close inside on_manager", test_close_in_manager},
        {"close inside on_err", test_close_in_err},
        {"close from another thread while data flows", test_close_other_thread},
        {"close and abort from 4 threads at once", test_close_abort_race},
        {"send and send_buf from another thread, in order",
         test_send_other_thread},
        {"send from another thread while the connection closes",
         test_send_other_thread_while_closing},
        {"zl_conn_shutdown: queue sent, peer reads EOF, still receiving",
         test_shutdown_half_close},
        {"zl_conn_abort: queue dropped, peer reset, no on_err",
         test_abort_resets},
        {"socket options: non-blocking, cloexec, nodelay, keepalive, buffers",
         test_socket_options},
        {"idle timeout closes a silent session", test_idle_server_session},
        {"traffic either way keeps a connection from idling",
         test_idle_traffic_keeps_alive},
        {"idle timeout closes a silent client", test_idle_client},
        {"blackholed peer: TCP_USER_TIMEOUT from the send timeout",
         test_blackholed_peer},
        {"blackholed silent peer: found by keepalive",
         test_blackholed_idle_peer},
        {"reconnect until a server appears, with backoff",
         test_reconnect_until_server},
        {"reconnect after a lost busy connection: on_busy(false) first",
         test_reconnect_lifts_busy},
        {"reconnect storm, max_attempts: on_closed once each",
         test_reconnect_storm},
        {"server_free with connected clients", test_server_free_with_clients},
        {"peer/local addresses after on_err, in on_closed",
         test_addresses_after_err},
        {"byte counters exact", test_byte_counters},
        {"on_manager ticks while connected (50 ms)", test_manager_ticks},
        {"on_manager ticks while connecting", test_manager_while_connecting},
        {"IPv6 loopback", test_ipv6_loopback},
        {"dual-stack server: 127.0.0.1 and ::1", test_dual_stack},
        {"server_new: -EADDRINUSE, -EINVAL", test_server_new_errors},
        {"max_conns: refused_limit counted", test_max_conns},
        {"options: the INIT macros and functions hold the defaults",
         test_options_init},
        {"options: zero-filled, 0 without off, contradictions refused",
         test_options_refused},
        {"send_timeout_ms = 0 is off; a short one fires",
         test_send_timeout_zero_is_off},
        {"client options: invalid, local bind, bind failure",
         test_client_options},
        {"on_recv buffer kept with zl_buf_ref: no copy, fresh buffer next",
         test_keep_recv_buffer},
        {"sessions spread over the pool's pollers", test_sessions_spread},
        /* names after the net-layer seam */
        {"names: client#N, accepted conn#N, kept after on_closed",
         test_names_client_and_accepted},
        {NULL, NULL},
    };
    return zl_test_add_suite("conn", NULL, NULL, cases);
}
