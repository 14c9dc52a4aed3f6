/* zltk tests — half-close over loopback (zltk/conn.h zl_conn_set_half_close
 * and zl_conn_shutdown; zltk/handler.h on_eof).
 *
 * The case of issue 14: a client sends its request, then shuts down its
 * sending side; the other end answers later (200 ms here); the answer must
 * arrive.  It does so in both directions (a zltk server and a zltk client,
 * each against a plain socket peer, and against socat when installed),
 * for a plugin handler through a session, and not by default (the
 * default is unchanged: the connection closes at the peer's end of
 * stream).  Also: our side shutting down first while the peer keeps
 * sending; a large queued answer flushed completely before the FIN; a
 * reset after the peer's half-close reported once.
 *
 * Callbacks run on poller threads: the test thread reads only atomics.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
#define REPLY_DELAY_MS 200u

/* Byte i of every stream here: a lost, duplicated or reordered byte shows
 * as a mismatch. */
static uint8_t pat(uint64_t i)
{
    uint64_t x = i * 0x9e3779b97f4a7c15ull;

    return (uint8_t)(x >> 56 ^ x >> 23);
}

static void pat_fill(uint8_t *p, uint64_t from, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pat(from + i);
}

/* Mismatching bytes of p against the stream from offset from. */
static size_t pat_bad(const uint8_t *p, uint64_t from, size_t n)
{
    size_t bad = 0;

    for (size_t i = 0; i < n; i++)
        bad += p[i] != pat(from + i);
    return bad;
}

static unsigned slow_ms(unsigned ms)
{
    return ms * zl_test_slow();
}


/* ------------------------------------------------------ the zltk end */

/* What one zltk connection (server side or client side) does and saw. */
typedef struct hc {
    /* Settings, before the connection starts. */
    bool half;            /* zl_conn_set_half_close() in on_connect */
    bool reply_on_eof;    /* after the peer's EOF: reply, then shutdown */
    unsigned delay_ms;    /* ... this much later (0: inside on_err) */
    size_t reply_len;     /* bytes of the reply (the pattern stream) */
    bool shutdown_first;  /* shut our side down at the first on_recv */
    /* Seen. */
    atomic_int connects, eofs, errs, closed, err_kind, bad;
    atomic_llong rx;      /* bytes received */
    atomic_llong rx_at_eof;
    atomic_int send_rc;   /* the reply's send (INT32_MIN: not yet) */
    atomic_int send_after_shut; /* a send after our shutdown */
    atomic_llong queued_at_shut; /* zl_conn_queued() just after shutdown */
    atomic_int shut;
} hc_t;

static uint8_t *g_reply; /* the pattern, g_reply_cap bytes */
static size_t g_reply_cap;

static void hc_init(hc_t *h, bool half, size_t reply_len)
{
    memset(h, 0, sizeof(*h));
    h->half = half;
    h->reply_on_eof = true;
    h->delay_ms = REPLY_DELAY_MS;
    h->reply_len = reply_len;
    atomic_store(&h->send_rc, INT32_MIN);
    atomic_store(&h->send_after_shut, INT32_MIN);
    atomic_store(&h->queued_at_shut, -1);
}

static void hc_reply(zl_conn_t *c, hc_t *h)
{
    atomic_store(&h->send_rc, zl_conn_send(c, g_reply, h->reply_len));
    zl_conn_shutdown(c);
    atomic_store(&h->queued_at_shut, (long long)zl_conn_queued(c));
    atomic_store(&h->send_after_shut, zl_conn_send(c, "x", 1));
}

typedef struct reply_job {
    zl_conn_t *c;
    hc_t *h;
} reply_job_t;

static uint64_t reply_fire(void *arg)
{
    reply_job_t *j = arg;

    hc_reply(j->c, j->h);
    return 0;
}

static void reply_free(void *arg)
{
    reply_job_t *j = arg;

    zl_conn_unref(j->c);
    free(j);
}

static void hc_on_connect(zl_conn_t *c, const zl_error_t *err)
{
    hc_t *h = zl_conn_get_data(c);

    if (err)
        return;
    atomic_fetch_add(&h->connects, 1);
    if (h->half)
        zl_conn_set_half_close(c, true);
    if (zl_conn_half_close(c) != h->half)
        atomic_fetch_add(&h->bad, 1);
}

static void hc_on_recv(zl_conn_t *c, zl_buf_t *b)
{
    hc_t *h = zl_conn_get_data(c);
    long long at = atomic_fetch_add(&h->rx, (long long)b->len);

    if (pat_bad(b->data, (uint64_t)at, b->len))
        atomic_fetch_add(&h->bad, 1);
    if (h->shutdown_first && !atomic_exchange(&h->shut, 1)) {
        zl_conn_shutdown(c);
        atomic_store(&h->send_after_shut, zl_conn_send(c, "x", 1));
    }
}

static void hc_on_err(zl_conn_t *c, const zl_error_t *err)
{
    hc_t *h = zl_conn_get_data(c);
    reply_job_t *j;

    if (err->code != ZL_EOF) {
        atomic_store(&h->err_kind, err->code);
        atomic_fetch_add(&h->errs, 1);
        return;
    }
    atomic_store(&h->rx_at_eof, atomic_load(&h->rx));
    atomic_fetch_add(&h->eofs, 1);
    if (!h->reply_on_eof)
        return;
    if (!h->delay_ms) {
        hc_reply(c, h);
        return;
    }
    j = malloc(sizeof(*j));
    if (!j) {
        atomic_fetch_add(&h->bad, 1);
        return;
    }
    *j = (reply_job_t){zl_conn_ref(c), h};
    if (zl_poller_add_timer(zl_conn_poller(c), h->delay_ms, reply_fire, j,
                            reply_free, NULL) < 0) {
        reply_free(j);
        atomic_fetch_add(&h->bad, 1);
    }
}

static void hc_on_closed(zl_conn_t *c)
{
    hc_t *h = zl_conn_get_data(c);

    atomic_fetch_add(&h->closed, 1);
}

static const zl_conn_handler_t hc_handler = {
    .on_connect = hc_on_connect,
    .on_recv = hc_on_recv,
    .on_err = hc_on_err,
    .on_closed = hc_on_closed,
};

static zl_server_t *hc_server(hc_t *h, int sndbuf)
{
    zl_server_options_t o = ZL_SERVER_OPTIONS_INIT;
    zl_server_t *s = NULL;

    o.host = "127.0.0.1";
    o.conn.sndbuf = sndbuf;
    CU_ASSERT_EQUAL_FATAL(zl_server_new(&s, &o, &hc_handler, h), 0);
    return s;
}

static uint16_t hc_port(const zl_server_t *s)
{
    return zl_addr_port(zl_server_addr(s));
}

/* ------------------------------------------------------ the raw peer */

static int raw_connect(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    zl_test_sock_timeouts(fd, slow_ms(5000));
    return fd;
}

static int raw_listen(uint16_t *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(fd, 4) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static int raw_accept(int lfd)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

    if (fd >= 0)
        zl_test_sock_timeouts(fd, slow_ms(5000));
    return fd;
}

static bool raw_send_pat(int fd, uint64_t from, size_t n)
{
    uint8_t buf[16 * KIB];

    while (n) {
        size_t k = n < sizeof(buf) ? n : sizeof(buf);
        pat_fill(buf, from, k);
        if (!zl_test_send_all(fd, buf, k))
            return false;
        from += k;
        n -= k;
    }
    return true;
}

/* Read until end of stream (or error): the byte count; *bad counts the
 * bytes that differ from the pattern. */
static size_t raw_read_all(int fd, size_t *bad)
{
    uint8_t buf[64 * KIB];
    size_t got = 0;

    *bad = 0;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof(buf)); /* sockets and pipes */
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return got;
        *bad += pat_bad(buf, got, (size_t)r);
        got += (size_t)r;
    }
}

/* ------------------------------------------------------ the tests */

/* The peer sends, shuts down its side; we answer 200 ms later. */
static void peer_first_run(bool half)
{
    hc_t h;
    zl_server_t *s;
    size_t bad = 1, got;
    uint64_t t0, t1;
    int fd;

    hc_init(&h, half, 64 * KIB);
    s = hc_server(&h, 0);
    fd = raw_connect(hc_port(s));
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(raw_send_pat(fd, 0, 1000));
    CU_ASSERT_EQUAL(shutdown(fd, SHUT_WR), 0);
    t0 = zl_now_ms();
    got = raw_read_all(fd, &bad);
    t1 = zl_now_ms();
    CU_ASSERT_EQUAL(zl_test_wait_ge(&h.closed, 1, 3000), 1);
    if (half) {
        ZL_TEST_CHECK(got == 64 * KIB, "the reply: %zu bytes of %u", got,
                      64 * KIB);
        CU_ASSERT_EQUAL(bad, 0);
        CU_ASSERT(t1 - t0 >= REPLY_DELAY_MS - 20); /* it came later */
        CU_ASSERT_EQUAL(atomic_load(&h.send_rc), 0);
        CU_ASSERT_EQUAL(atomic_load(&h.errs), 0);
    } else {
        /* Default: closed at the peer's end; the late reply is refused. */
        CU_ASSERT_EQUAL(got, 0);
        zl_test_sleep_ms(REPLY_DELAY_MS + 100);
        CU_ASSERT_EQUAL(atomic_load(&h.send_rc), ZL_ESHUTDOWN);
    }
    CU_ASSERT_EQUAL(atomic_load(&h.send_after_shut), ZL_ESHUTDOWN);
    CU_ASSERT_EQUAL(atomic_load(&h.eofs), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.rx), 1000);
    CU_ASSERT_EQUAL(atomic_load(&h.rx_at_eof), 1000);
    CU_ASSERT_EQUAL(atomic_load(&h.bad), 0);
    close(fd);
    zl_server_free(s);
    CU_ASSERT_EQUAL(atomic_load(&h.closed), 1);
}

static void test_server_reply_after_peer_eof(void)
{
    peer_first_run(true);
}

static void test_default_closes_at_eof(void)
{
    peer_first_run(false);
}

/* The other direction: our client's peer (a server) sends and shuts
 * down; the client answers 200 ms later. */
static void test_client_reply_after_peer_eof(void)
{
    hc_t h;
    zl_client_options_t o = ZL_CLIENT_OPTIONS_INIT;
    zl_conn_t *c = NULL;
    size_t bad = 1, got;
    uint16_t port = 0;
    int lfd, fd;

    hc_init(&h, true, 100 * KIB);
    lfd = raw_listen(&port);
    CU_ASSERT_FATAL(lfd >= 0);
    o.host = "127.0.0.1";
    o.port = port;
    CU_ASSERT_EQUAL_FATAL(zl_client_connect(&c, &o, &hc_handler, &h), 0);
    fd = raw_accept(lfd);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(raw_send_pat(fd, 0, 5000));
    CU_ASSERT_EQUAL(shutdown(fd, SHUT_WR), 0);
    got = raw_read_all(fd, &bad);
    ZL_TEST_CHECK(got == 100 * KIB, "the reply: %zu bytes of %u", got,
                  100 * KIB);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&h.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.connects), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.eofs), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.errs), 0);
    CU_ASSERT_EQUAL(atomic_load(&h.rx), 5000);
    CU_ASSERT_EQUAL(atomic_load(&h.send_rc), 0);
    CU_ASSERT_EQUAL(atomic_load(&h.bad), 0);
    close(fd);
    close(lfd);
    zl_conn_unref(c);
}

/* Our side shuts down first; the peer keeps sending (1 MiB) and only then
 * ends: everything arrives, then the connection closes. */
static void our_first_run(bool half)
{
    hc_t h;
    zl_server_t *s;
    size_t bad = 1;
    const size_t total = MIB;
    int fd;

    hc_init(&h, half, 0);
    h.reply_on_eof = false;
    h.shutdown_first = true;
    s = hc_server(&h, 0);
    fd = raw_connect(hc_port(s));
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(raw_send_pat(fd, 0, 10));
    CU_ASSERT_EQUAL(raw_read_all(fd, &bad), 0); /* the server's FIN */
    CU_ASSERT(raw_send_pat(fd, 10, total - 10));
    zl_test_sleep_ms(50);
    CU_ASSERT_EQUAL(atomic_load(&h.closed), 0); /* still receiving */
    CU_ASSERT_EQUAL(shutdown(fd, SHUT_WR), 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&h.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.rx), (long long)total);
    CU_ASSERT_EQUAL(atomic_load(&h.rx_at_eof), (long long)total);
    CU_ASSERT_EQUAL(atomic_load(&h.eofs), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.errs), 0);
    CU_ASSERT_EQUAL(atomic_load(&h.send_after_shut), ZL_ESHUTDOWN);
    CU_ASSERT_EQUAL(atomic_load(&h.bad), 0);
    close(fd);
    zl_server_free(s);
}

static void test_our_shutdown_first(void)
{
    our_first_run(true);
}

static void test_our_shutdown_first_default(void)
{
    our_first_run(false);
}

/* A reply much larger than the socket buffers, queued at once, then
 * shutdown: every byte goes out (checked) before the FIN. */
static void test_shutdown_flushes_queue(void)
{
    hc_t h;
    zl_server_t *s;
    size_t bad = 1, got;
    const size_t total = 8 * MIB;
    int fd;

    hc_init(&h, true, total);
    h.delay_ms = 0; /* inside on_err */
    s = hc_server(&h, 16 * KIB);
    fd = raw_connect(hc_port(s));
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(raw_send_pat(fd, 0, 100));
    CU_ASSERT_EQUAL(shutdown(fd, SHUT_WR), 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&h.eofs, 1, 3000), 1);
    zl_test_sleep_ms(100); /* let the queue stand */
    got = raw_read_all(fd, &bad);
    ZL_TEST_CHECK(got == total, "%zu bytes of %zu", got, total);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&h.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.send_rc), ZL_CONN_BUSY); /* queued */
    CU_ASSERT(atomic_load(&h.queued_at_shut) > 0);
    CU_ASSERT_EQUAL(atomic_load(&h.send_after_shut), ZL_ESHUTDOWN);
    CU_ASSERT_EQUAL(atomic_load(&h.errs), 0);
    CU_ASSERT_EQUAL(atomic_load(&h.bad), 0);
    close(fd);
    zl_server_free(s);
}

/* After the peer's half-close the peer resets: the late reply's send
 * fails, reported once (on_err with a kind other than ZL_EOF), then
 * on_closed once and nothing more. */
static void test_reset_after_half_close(void)
{
    hc_t h;
    zl_server_t *s;
    struct linger lg = {1, 0};
    int fd;

    hc_init(&h, true, 1000);
    s = hc_server(&h, 0);
    fd = raw_connect(hc_port(s));
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(raw_send_pat(fd, 0, 100));
    CU_ASSERT_EQUAL(shutdown(fd, SHUT_WR), 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&h.eofs, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.closed), 0); /* half-open */
    CU_ASSERT_EQUAL(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd); /* RST */
    CU_ASSERT_EQUAL(zl_test_wait_ge(&h.closed, 1, 3000), 1);
    zl_test_sleep_ms(100);
    CU_ASSERT_EQUAL(atomic_load(&h.errs), 1);
    CU_ASSERT_NOT_EQUAL(atomic_load(&h.err_kind), ZL_EOF);
    CU_ASSERT_EQUAL(atomic_load(&h.eofs), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.closed), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.send_rc), ZL_ESHUTDOWN);
    CU_ASSERT_EQUAL(atomic_load(&h.bad), 0);
    zl_server_free(s);
    CU_ASSERT_EQUAL(atomic_load(&h.closed), 1);
}

static uint64_t runtime_loops(void)
{
    zl_poller_pool_t *pool = zl_runtime_pollers();
    uint64_t n = 0;

    for (size_t i = 0; pool && i < zl_poller_pool_size(pool); i++) {
        zl_poller_stats_t st;
        zl_poller_get_stats(zl_poller_pool_at(pool, i), &st);
        n += st.loops;
    }
    return n;
}

/* Half-open and idle (the peer's end seen, nothing queued, the reply not
 * due yet): the connection watches nothing, so the poller sleeps, with
 * either backend (a level-triggered one would report the end of stream on
 * every round if the fd stayed registered for reading). */
static void test_half_open_no_spin(void)
{
    hc_t h;
    zl_server_t *s;
    size_t bad = 1, got;
    uint64_t l0, l1;
    int fd;

    hc_init(&h, true, 1000);
    h.delay_ms = 600;
    s = hc_server(&h, 0);
    fd = raw_connect(hc_port(s));
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(raw_send_pat(fd, 0, 10));
    CU_ASSERT_EQUAL(shutdown(fd, SHUT_WR), 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&h.eofs, 1, 3000), 1);
    zl_test_sleep_ms(50);
    l0 = runtime_loops();
    zl_test_sleep_ms(300);
    l1 = runtime_loops();
    ZL_TEST_CHECK(l1 - l0 < 100, "%llu loop rounds in 300 ms",
                  (unsigned long long)(l1 - l0));
    CU_ASSERT_EQUAL(atomic_load(&h.closed), 0);
    got = raw_read_all(fd, &bad);
    CU_ASSERT_EQUAL(got, 1000);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&h.closed, 1, 3000), 1);
    close(fd);
    zl_server_free(s);
}

/* ------------------------------------------------------ socat */

static bool have_socat(void)
{
    return system("command -v socat >/dev/null 2>&1") == 0;
}

/* socat with argv, its stdin and stdout as pipes: *in to write, *out to
 * read.  Returns its pid, or -1. */
static pid_t socat_spawn(char *const argv[], int *in, int *out)
{
    int pi[2], po[2];
    pid_t pid;

    if (pipe2(pi, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(po, O_CLOEXEC) < 0) {
        close(pi[0]), close(pi[1]);
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        dup2(pi[0], 0);
        dup2(po[1], 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(pi[0]);
    close(po[1]);
    if (pid < 0) {
        close(pi[1]), close(po[0]);
        return -1;
    }
    *in = pi[1];
    *out = po[0];
    return pid;
}

static bool write_pat(int fd, size_t n)
{
    uint8_t buf[4096];

    pat_fill(buf, 0, n);
    return write(fd, buf, n) == (ssize_t)n;
}

/* socat as the client: it sends what its stdin gives, and at stdin's end
 * shuts its side down and waits up to 2 s (-t 2) for our late reply. */
static void test_socat_client(void)
{
    hc_t h;
    zl_server_t *s;
    char addr[64];
    char *argv[] = {"socat", "-t", "2", "-", addr, NULL};
    size_t bad = 1, got;
    int in, out, st = -1;
    pid_t pid;

    if (!have_socat()) {
        fprintf(stderr, "\n  socat not installed: skipped\n");
        return;
    }
    hc_init(&h, true, 64 * KIB);
    s = hc_server(&h, 0);
    snprintf(addr, sizeof(addr), "TCP:127.0.0.1:%u", hc_port(s));
    pid = socat_spawn(argv, &in, &out);
    CU_ASSERT_FATAL(pid > 0);
    CU_ASSERT(write_pat(in, 1000));
    close(in);
    got = raw_read_all(out, &bad);
    close(out);
    CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
    ZL_TEST_CHECK(got == 64 * KIB, "socat printed %zu bytes of %u", got,
                  64 * KIB);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&h.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.rx), 1000);
    CU_ASSERT_EQUAL(atomic_load(&h.eofs), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.errs), 0);
    zl_server_free(s);
}

/* socat as the server: it sends its stdin to our client and shuts its
 * side down; our client answers 200 ms later, which socat prints. */
static void test_socat_server(void)
{
    hc_t h;
    zl_client_options_t o = ZL_CLIENT_OPTIONS_INIT;
    zl_conn_t *c = NULL;
    char addr[80];
    char *argv[] = {"socat", "-t", "2", addr, "-", NULL};
    size_t bad = 1, got;
    uint16_t port = zl_test_closed_port();
    int in, out, st = -1;
    pid_t pid;

    if (!have_socat()) {
        fprintf(stderr, "\n  socat not installed: skipped\n");
        return;
    }
    CU_ASSERT_FATAL(port != 0);
    hc_init(&h, true, 64 * KIB);
    snprintf(addr, sizeof(addr), "TCP-LISTEN:%u,bind=127.0.0.1,reuseaddr",
             port);
    pid = socat_spawn(argv, &in, &out);
    CU_ASSERT_FATAL(pid > 0);
    CU_ASSERT(write_pat(in, 2000));
    close(in);
    /* Until socat listens: a refused attempt is retried. */
    o.host = "127.0.0.1";
    o.port = port;
    o.reconnect = true;
    o.reconnect_min_ms = 20;
    o.reconnect_max_ms = 50;
    CU_ASSERT_EQUAL_FATAL(zl_client_connect(&c, &o, &hc_handler, &h), 0);
    got = raw_read_all(out, &bad);
    close(out);
    CU_ASSERT_EQUAL(waitpid(pid, &st, 0), pid);
    ZL_TEST_CHECK(got == 64 * KIB, "socat printed %zu bytes of %u", got,
                  64 * KIB);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&h.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.connects), 1);
    CU_ASSERT_EQUAL(atomic_load(&h.rx), 2000);
    CU_ASSERT_EQUAL(atomic_load(&h.eofs), 1);
    zl_conn_unref(c);
}

/* ------------------------------------------------------ sessions */

/* A plugin handler: with on_eof it answers 200 ms after the peer's end of
 * stream and shuts its side down; the same handler without on_eof (or
 * with a struct_size of ABI 1.0, which hides it) gets on_err(ZL_EOF) and
 * its late answer is refused. */
static struct {
    atomic_int eofs, errs, closed, send_rc, bad;
} S;

static uint64_t sess_reply(zl_session_t *s, void *state, void *arg)
{
    (void)state, (void)arg;
    atomic_store(&S.send_rc, zl_session_send(s, g_reply, 32 * KIB));
    zl_session_shutdown(s);
    return 0;
}

static bool sess_shut_first; /* shut down at the first on_recv */

static void sess_recv(zl_session_t *s, void *state, zl_buf_t *b)
{
    (void)state, (void)b;
    if (sess_shut_first)
        zl_session_shutdown(s);
}

static void sess_late(zl_session_t *s)
{
    if (zl_session_add_timer(s, REPLY_DELAY_MS, sess_reply, NULL, NULL) < 0)
        atomic_fetch_add(&S.bad, 1);
}

static void sess_eof(zl_session_t *s, void *state)
{
    (void)state;
    atomic_fetch_add(&S.eofs, 1);
    if (!sess_shut_first)
        sess_late(s);
}

static void sess_err(zl_session_t *s, void *state, const zl_error_t *err)
{
    (void)state;
    atomic_fetch_add(&S.errs, 1);
    if (err->code == ZL_EOF)
        sess_late(s);
}

static void sess_closed(zl_session_t *s, void *state)
{
    (void)s, (void)state;
    atomic_fetch_add(&S.closed, 1);
}

static const char *no_config(void *ctx, const char *key)
{
    (void)ctx, (void)key;
    return NULL;
}

static zl_instance_t *sess_start(zl_instance_options_t *o,
                                 const zl_handler_t *h)
{
    zl_instance_t *inst = NULL;

    memset(&S, 0, sizeof(S));
    atomic_store(&S.send_rc, INT32_MIN);
    o->name = "halfclose";
    o->server = true;
    o->handler = h;
    o->config = no_config;
    o->server_opts.host = "127.0.0.1";
    CU_ASSERT_EQUAL_FATAL(zl_instance_new(&inst, o), 0);
    CU_ASSERT_EQUAL_FATAL(zl_instance_start(inst), 0);
    return inst;
}

/* The handler shuts its side down first; the peer goes on sending, then
 * ends: on_eof once, then the session closes (no on_err). */
static void test_session_shutdown_first(void)
{
    zl_handler_t h = {
        .struct_size = sizeof(zl_handler_t),
        .on_recv = sess_recv,
        .on_err = sess_err,
        .on_closed = sess_closed,
        .on_eof = sess_eof,
    };
    zl_instance_options_t o = ZL_INSTANCE_OPTIONS_INIT;
    zl_instance_t *inst;
    size_t bad = 1;
    int fd;

    sess_shut_first = true;
    inst = sess_start(&o, &h);
    fd = raw_connect(zl_addr_port(zl_instance_server_addr(inst)));
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(raw_send_pat(fd, 0, 10));
    CU_ASSERT_EQUAL(raw_read_all(fd, &bad), 0); /* the handler's FIN */
    CU_ASSERT(raw_send_pat(fd, 10, 100 * KIB));
    zl_test_sleep_ms(50);
    CU_ASSERT_EQUAL(atomic_load(&S.closed), 0);
    CU_ASSERT_EQUAL(shutdown(fd, SHUT_WR), 0);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&S.closed, 1, 3000), 1);
    CU_ASSERT_EQUAL(atomic_load(&S.eofs), 1);
    CU_ASSERT_EQUAL(atomic_load(&S.errs), 0);
    close(fd);
    zl_instance_free(inst);
    sess_shut_first = false;
}

static void session_run(bool with_eof, uint32_t struct_size)
{
    zl_handler_t h = {
        .struct_size = struct_size,
        .on_recv = sess_recv,
        .on_err = sess_err,
        .on_closed = sess_closed,
        .on_eof = with_eof ? sess_eof : NULL,
    };
    zl_instance_options_t o = ZL_INSTANCE_OPTIONS_INIT;
    zl_instance_t *inst;
    bool expect = with_eof && struct_size > ZL_HANDLER_SIZE_1_0;
    size_t bad = 1, got;
    int fd;

    inst = sess_start(&o, &h);
    fd = raw_connect(zl_addr_port(zl_instance_server_addr(inst)));
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT(raw_send_pat(fd, 0, 300));
    CU_ASSERT_EQUAL(shutdown(fd, SHUT_WR), 0);
    got = raw_read_all(fd, &bad);
    CU_ASSERT_EQUAL(zl_test_wait_ge(&S.closed, 1, 3000), 1);
    if (expect) {
        ZL_TEST_CHECK(got == 32 * KIB, "the reply: %zu bytes", got);
        CU_ASSERT_EQUAL(bad, 0);
        CU_ASSERT_EQUAL(atomic_load(&S.eofs), 1);
        CU_ASSERT_EQUAL(atomic_load(&S.errs), 0);
        CU_ASSERT_EQUAL(atomic_load(&S.send_rc), 0);
    } else {
        CU_ASSERT_EQUAL(got, 0);
        CU_ASSERT_EQUAL(atomic_load(&S.eofs), 0);
        CU_ASSERT_EQUAL(atomic_load(&S.errs), 1);
        /* The timer is cancelled with the session: no late send. */
        zl_test_sleep_ms(REPLY_DELAY_MS + 50);
        CU_ASSERT_EQUAL(atomic_load(&S.send_rc), INT32_MIN);
    }
    CU_ASSERT_EQUAL(atomic_load(&S.bad), 0);
    close(fd);
    zl_instance_free(inst);
    CU_ASSERT_EQUAL(atomic_load(&S.closed), 1);
}

static void test_session_on_eof(void)
{
    session_run(true, sizeof(zl_handler_t));
}

static void test_session_default(void)
{
    session_run(false, sizeof(zl_handler_t));
}

static void test_session_abi10_handler(void)
{
    session_run(true, (uint32_t)ZL_HANDLER_SIZE_1_0);
}

/* ------------------------------------------------------ suite */

static int suite_init(void)
{
    zl_runtime_options_t o = {.pollers = 2, .workers = 2};

    signal(SIGPIPE, SIG_IGN);
    g_reply_cap = 8 * MIB;
    g_reply = malloc(g_reply_cap);
    if (!g_reply)
        return -1;
    pat_fill(g_reply, 0, g_reply_cap);
    return zl_runtime_init(&o) == 0 ? 0 : -1;
}

static int suite_cleanup(void)
{
    zl_runtime_shutdown();
    free(g_reply);
    g_reply = NULL;
    return 0;
}

int zl_test_register_halfclose(void)
{
    static const zl_test_case_t cases[] = {
        {"server_reply_after_peer_eof", test_server_reply_after_peer_eof},
        {"client_reply_after_peer_eof", test_client_reply_after_peer_eof},
        {"default_closes_at_eof", test_default_closes_at_eof},
        {"our_shutdown_first", test_our_shutdown_first},
        {"our_shutdown_first_default", test_our_shutdown_first_default},
        {"shutdown_flushes_queue", test_shutdown_flushes_queue},
        {"reset_after_half_close", test_reset_after_half_close},
        {"half_open_no_spin", test_half_open_no_spin},
        {"socat_client", test_socat_client},
        {"socat_server", test_socat_server},
        {"session_on_eof", test_session_on_eof},
        {"session_default", test_session_default},
        {"session_abi10_handler", test_session_abi10_handler},
        {"session_shutdown_first", test_session_shutdown_first},
        {NULL, NULL},
    };

    return zl_test_add_suite("halfclose", suite_init, suite_cleanup, cases);
}
