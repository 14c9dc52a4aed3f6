/* bench/burst — a burst of clients that send and never read.
 *
 *   burst --port PORT [--host ADDR] [--conns N] [--tls] [--chunk BYTES]
 *         [--max MB] [--settle MS] [--hold S] [--sockbuf BYTES]
 *
 * Opens N connections (TLS with --tls: a full handshake each, no
 * verification, before any data) with SO_SNDBUF and SO_RCVBUF of SOCKBUF
 * bytes (default 64 KiB: the kernel's buffers are not the server's RSS, and
 * small ones fill sooner), then writes CHUNK-byte pieces to every
 * connection whose socket takes them, never reading what comes back, until
 * no socket has taken anything for SETTLE ms (the server's queues are at
 * its high-water mark and the kernel's buffers are full both ways) or each
 * connection has sent MAX MB.  A connection the server ends meanwhile (its
 * send timeout: a queue stalled for 10 s while others still fill) is
 * counted as lost and left alone.  Then it prints
 *   saturated conns=N lost=L sent_mb=X
 * on standard output, waits HOLD seconds, closes every connection (unread
 * bytes make the kernel send RST: clients that leave abruptly) and prints
 *   closed
 * bench/run-burst.sh reads the server's RSS between these lines.  Exit 1 if
 * a connection or handshake fails.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static const char *host = "127.0.0.1";
static int port, nconns = 200, settle_ms = 1000, sockbuf = 64 * 1024;
static size_t chunk = 64 * 1024;
static double max_mb = 64, hold_s = 1;
static bool tls;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr, "usage: burst --port PORT [--host ADDR] [--conns N] "
                    "[--tls] [--chunk BYTES] [--max MB] [--settle MS] "
                    "[--hold S] [--sockbuf BYTES]\n");
    exit(2);
}

static void parse(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tls")) {
            tls = true;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--port"))
            port = atoi(v);
        else if (!strcmp(a, "--host"))
            host = v;
        else if (!strcmp(a, "--conns"))
            nconns = atoi(v);
        else if (!strcmp(a, "--chunk"))
            chunk = (size_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--max"))
            max_mb = atof(v);
        else if (!strcmp(a, "--settle"))
            settle_ms = atoi(v);
        else if (!strcmp(a, "--hold"))
            hold_s = atof(v);
        else if (!strcmp(a, "--sockbuf"))
            sockbuf = atoi(v);
        else
            usage();
    }
    if (port <= 0 || nconns <= 0 || chunk == 0)
        usage();
}

static int dial(SSL_CTX *ctx, SSL **sslp)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd >= 0 && sockbuf > 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sockbuf, sizeof(sockbuf));
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sockbuf, sizeof(sockbuf));
    }
    if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror("burst: connect");
        exit(1);
    }
    if (ctx) {
        SSL *ssl = SSL_new(ctx);
        if (!ssl || !SSL_set_fd(ssl, fd) || SSL_connect(ssl) != 1) {
            fprintf(stderr, "burst: TLS handshake with %s:%d failed\n", host,
                    port);
            ERR_print_errors_fp(stderr);
            exit(1);
        }
        *sslp = ssl;
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
        perror("burst: fcntl");
        exit(1);
    }
    return fd;
}

/* One write; returns bytes taken (0: would block, -1: the server ended the
 * connection). */
static long put(int fd, SSL *ssl, const uint8_t *buf, size_t len)
{
    if (ssl) {
        size_t n = 0;
        if (SSL_write_ex(ssl, buf, len, &n) == 1)
            return (long)n;
        int e = SSL_get_error(ssl, 0);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            return 0;
        ERR_clear_error();
        return -1;
    }
    ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
    if (w >= 0)
        return (long)w;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    return -1;
}

int main(int argc, char **argv)
{
    SSL_CTX *ctx = NULL;
    struct pollfd *pf;
    SSL **ssl;
    uint64_t *sent, total = 0, cap;
    int lost = 0;
    uint8_t *buf;
    double last;

    parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
            return 1;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        /* A blocked write must be retried with the same buffer only. */
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    pf = calloc((size_t)nconns, sizeof(*pf));
    ssl = calloc((size_t)nconns, sizeof(*ssl));
    sent = calloc((size_t)nconns, sizeof(*sent));
    buf = malloc(chunk);
    if (!pf || !ssl || !sent || !buf)
        return 1;
    for (size_t i = 0; i < chunk; i++)
        buf[i] = (uint8_t)(i * 131u + 7u);
    for (int i = 0; i < nconns; i++) {
        pf[i].fd = dial(ctx, &ssl[i]);
        pf[i].events = POLLOUT;
    }
    cap = (uint64_t)(max_mb * 1024 * 1024);
    last = now_s();
    while ((now_s() - last) * 1000 < settle_ms) {
        int n = poll(pf, (nfds_t)nconns, 100);
        if (n < 0 && errno != EINTR) {
            perror("burst: poll");
            return 1;
        }
        for (int i = 0; n > 0 && i < nconns; i++) {
            if (!(pf[i].revents & (POLLOUT | POLLERR | POLLHUP)) ||
                sent[i] >= cap)
                continue;
            long w = put(pf[i].fd, ssl[i], buf, chunk);
            if (w < 0) { /* ended by the server: gone */
                SSL_free(ssl[i]);
                ssl[i] = NULL;
                close(pf[i].fd);
                pf[i].fd = -1; /* poll() skips it */
                lost++;
            } else if (w > 0) {
                sent[i] += (uint64_t)w;
                total += (uint64_t)w;
                last = now_s();
            }
        }
        bool all = true;
        for (int i = 0; i < nconns && all; i++)
            all = sent[i] >= cap || pf[i].fd < 0;
        if (all)
            break;
    }
    printf("saturated conns=%d lost=%d sent_mb=%.1f\n", nconns, lost,
           (double)total / (1024.0 * 1024.0));
    fflush(stdout);
    usleep((useconds_t)(hold_s * 1e6));
    for (int i = 0; i < nconns; i++) {
        SSL_free(ssl[i]); /* no close_notify: clients that just leave */
        if (pf[i].fd >= 0)
            close(pf[i].fd);
    }
    printf("closed\n");
    fflush(stdout);
    SSL_CTX_free(ctx);
    free(pf);
    free(ssl);
    free(sent);
    free(buf);
    return 0;
}
