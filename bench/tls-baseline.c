/* bench/tls-baseline — the yardstick for the tls layer: a TLS echo server
 * on libevent's bufferevent_openssl, one thread (like zltk-host --pollers
 * 1), TLS 1.3 only, with the same backpressure as the echo plugin (stop
 * reading while more than --high-water bytes wait to go out, resume at a
 * quarter of it).
 *
 *   tls-baseline --port PORT --cert PEM --key PEM [--host ADDR]
 *                [--high-water BYTES]
 *
 * Prints "tls-baseline: listening on ADDR:PORT" once it accepts.  Built by
 * "make bench" only when libevent_openssl is installed (libevent-dev).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static SSL_CTX *ctx;
static size_t high_water = 1024 * 1024; /* zltk's default high mark */
static size_t read_max = 256 * 1024;    /* read watermark: see on_accept */

/* Echo: move everything read to the output buffer (no copy); pause reading
 * while the output is above the high mark. */
static void on_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    evbuffer_add_buffer(bufferevent_get_output(bev),
                        bufferevent_get_input(bev));
    if (evbuffer_get_length(bufferevent_get_output(bev)) > high_water)
        bufferevent_disable(bev, EV_READ);
}

/* Called when the output drained to the low mark (the write watermark). */
static void on_write(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (!(bufferevent_get_enabled(bev) & EV_READ))
        bufferevent_enable(bev, EV_READ);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        /* Not an orderly TLS shutdown: do not wait for close_notify. */
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        if (ssl)
            SSL_set_shutdown(ssl, SSL_RECEIVED_SHUTDOWN);
        while (bufferevent_get_openssl_error(bev))
            ;
        bufferevent_free(bev);
    }
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    struct event_base *base = evconnlistener_get_base(l);
    struct bufferevent *bev;
    SSL *ssl;
    int one = 1;

    (void)sa;
    (void)salen;
    (void)arg;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!(ssl = SSL_new(ctx))) {
        evutil_closesocket(fd);
        return;
    }
    bev = bufferevent_openssl_socket_new(base, fd, ssl,
                                         BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        evutil_closesocket(fd);
        return;
    }
    /* A clean close (close_notify received) is not needed to free. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    bufferevent_setcb(bev, on_read, on_write, on_event, NULL);
    bufferevent_setwatermark(bev, EV_WRITE, high_water / 4, 0);
    /* Without a read high mark bufferevent_openssl reads 4 KiB at a time
     * (READ_DEFAULT) and the echo goes out as 4 KiB records; with one, it
     * reads up to two full 16 KiB records per call.  --read-max 0 keeps
     * libevent's default. */
    if (read_max)
        bufferevent_setwatermark(bev, EV_READ, 0, read_max);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *cert = NULL, *key = NULL;
    int port = 0;
    struct sockaddr_in sin = {0};
    struct event_base *base;
    struct evconnlistener *l;
    struct event *sint, *sterm;
    struct rlimit rl;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc)
            host = argv[++i];
        else if (!strcmp(argv[i], "--cert") && i + 1 < argc)
            cert = argv[++i];
        else if (!strcmp(argv[i], "--key") && i + 1 < argc)
            key = argv[++i];
        else if (!strcmp(argv[i], "--high-water") && i + 1 < argc)
            high_water = (size_t)strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--read-max") && i + 1 < argc)
            read_max = (size_t)strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s --port PORT --cert PEM --key PEM "
                            "[--host ADDR] [--high-water BYTES] [--read-max BYTES]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!port || !cert || !key) {
        fprintf(stderr, "tls-baseline: --port, --cert and --key are "
                        "required\n");
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);

    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(stderr, "tls-baseline: cannot load %s / %s:\n", cert, key);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);

    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        fprintf(stderr, "tls-baseline: bad host %s\n", host);
        return 2;
    }
    base = event_base_new();
    if (!base) {
        fprintf(stderr, "tls-baseline: event_base_new failed\n");
        return 1;
    }
    l = evconnlistener_new_bind(base, on_accept, NULL,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                4096, (struct sockaddr *)&sin, sizeof(sin));
    if (!l) {
        perror("tls-baseline: listen");
        return 1;
    }
    sint = evsignal_new(base, SIGINT, on_signal, base);
    sterm = evsignal_new(base, SIGTERM, on_signal, base);
    event_add(sint, NULL);
    event_add(sterm, NULL);
    printf("tls-baseline: listening on %s:%d (libevent %s, %s)\n", host,
           port, event_get_version(), OpenSSL_version(OPENSSL_VERSION));
    fflush(stdout);
    event_base_dispatch(base);
    event_free(sint);
    event_free(sterm);
    evconnlistener_free(l);
    event_base_free(base);
    SSL_CTX_free(ctx);
    return 0;
}
