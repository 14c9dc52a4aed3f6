/* bench/tls-idle — server memory per idle TLS session: opens N TLS 1.3
 * connections to an echo server, echoes one small message on each, then
 * holds them all idle and reports the growth of the server's resident set.
 *
 *   tls-idle --port PORT --server-pid PID [--host ADDR] [--conns N]
 *            [--settle S] [--name LABEL]
 *
 * One warm-up connection is made and closed first (the server's one-time
 * allocations), then the server's VmRSS is read, the N connections are
 * made (blocking, one after the other: handshake, 64 bytes out, 64 back),
 * the program waits --settle seconds (default 5: a zltk server releases
 * idle buffers at its manager tick, every 2 s) and reads VmRSS again:
 *   LABEL: N idle TLS sessions, server RSS +X KiB, Y bytes/session
 * (plain OpenSSL client; everything is checked; exit 1 on any failure).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static const char *host = "127.0.0.1", *label = "tls-idle";
static int port, server_pid, nconns = 4000;
static double settle = 5.0;

/* The server's VmRSS in KiB, or -1. */
static long server_rss_kib(void)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", server_pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static void fail(int i, const char *what)
{
    fprintf(stderr, "tls-idle: connection %d: %s failed\n", i, what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* One connection: handshake, one echo of 64 bytes; left open. */
static SSL *open_one(SSL_CTX *ctx, int i)
{
    struct sockaddr_in sin = {0};
    unsigned char msg[64], back[64];
    size_t got = 0, n;
    int fd, one = 1;
    SSL *ssl;

    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
        fail(i, "inet_pton");
    if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
        fail(i, "socket");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
        fail(i, "connect");
    if (!(ssl = SSL_new(ctx)) || !SSL_set_fd(ssl, fd) ||
        SSL_connect(ssl) != 1)
        fail(i, "handshake");
    for (size_t k = 0; k < sizeof(msg); k++)
        msg[k] = (unsigned char)(i + k);
    if (!SSL_write_ex(ssl, msg, sizeof(msg), &n) || n != sizeof(msg))
        fail(i, "SSL_write");
    while (got < sizeof(back)) {
        if (!SSL_read_ex(ssl, back + got, sizeof(back) - got, &n))
            fail(i, "SSL_read");
        got += n;
    }
    if (memcmp(msg, back, sizeof(msg)))
        fail(i, "echo check");
    return ssl;
}

static void close_one(SSL *ssl)
{
    int fd = SSL_get_fd(ssl);

    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
}

static void parse(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc)
            host = argv[++i];
        else if (!strcmp(argv[i], "--server-pid") && i + 1 < argc)
            server_pid = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--conns") && i + 1 < argc)
            nconns = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--settle") && i + 1 < argc)
            settle = atof(argv[++i]);
        else if (!strcmp(argv[i], "--name") && i + 1 < argc)
            label = argv[++i];
        else {
            fprintf(stderr, "usage: %s --port PORT --server-pid PID "
                            "[--host ADDR] [--conns N] [--settle S] "
                            "[--name LABEL]\n", argv[0]);
            exit(2);
        }
    }
    if (!port || !server_pid || nconns <= 0) {
        fprintf(stderr, "tls-idle: --port, --server-pid and --conns > 0 "
                        "are required\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    struct rlimit rl;
    SSL_CTX *ctx;
    SSL **conns;
    long before, after;

    parse(argc, argv);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION))
        fail(-1, "SSL_CTX_new");
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* the client's own */
    if (!(conns = calloc((size_t)nconns, sizeof(*conns))))
        fail(-1, "calloc");
    close_one(open_one(ctx, -1));
    usleep((useconds_t)(settle * 1e6));
    before = server_rss_kib();
    for (int i = 0; i < nconns; i++)
        conns[i] = open_one(ctx, i);
    usleep((useconds_t)(settle * 1e6));
    after = server_rss_kib();
    if (before < 0 || after < 0)
        fail(-1, "reading the server's VmRSS");
    printf("%s: %d idle TLS sessions, server RSS +%ld KiB, %.0f "
           "bytes/session\n", label, nconns, after - before,
           (double)(after - before) * 1024.0 / nconns);
    for (int i = 0; i < nconns; i++)
        close_one(conns[i]);
    free(conns);
    SSL_CTX_free(ctx);
    return 0;
}
