/* bench/tls-idle — server memory per idle TLS session: opens N TLS 1.3
 * connections to an echo server, echoes one small message on each, then
 * holds them all idle and reports the growth of the server's resident set.
 *
 *   tls-idle --port PORT --server-pid PID [--host ADDR] [--conns N]
 *            [--settle S] [--name LABEL] [--tls12]
 *
 * One warm-up connection is made and closed first (the server's one-time
 * allocations), then the server's VmRSS is read, the N connections are
 * made (blocking, one after the other: handshake, 64 bytes out, 64 back),
 * the program waits --settle seconds (default 5: a zltk server releases
 * idle buffers at its manager tick, every 2 s) and reads VmRSS again:
 *   LABEL: N idle TLS sessions, server RSS +X KiB, Y bytes/session
 * (plain OpenSSL client; everything is checked; exit 1 on any failure).
 * --tls12: TLS 1.2 instead, here and with --floor.
 *
 *   tls-idle --floor N --cert PEM --key PEM
 *
 * OpenSSL's own floor, no server process: N pairs of TLS 1.3 SSL objects
 * shake hands in this process over memory BIOs (SSL_MODE_RELEASE_BUFFERS on
 * both ends, one 64-byte echo each, then each end's BIO replaced by an
 * empty one, as an idle zltk session holds one empty BIO of its own, and
 * SSL_free_buffers on both, as the layer calls at idle);
 * mallinfo2() before, with both ends held, after freeing the clients, and
 * after freeing the servers (what the server's session cache still holds):
 *   floor: N idle pairs, server X bytes/session, client Y bytes/session;
 *   after both ends are freed the server's session cache keeps Z ...
 * (heap in use, malloc's chunk headers included: what OpenSSL keeps per
 * idle connection however the application around it is written).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <malloc.h>
#include <stdbool.h>
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
static int floor_n, version = TLS1_3_VERSION;
static const char *cert_file, *key_file;

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
        else if (!strcmp(argv[i], "--tls12"))
            version = TLS1_2_VERSION;
        else if (!strcmp(argv[i], "--floor") && i + 1 < argc)
            floor_n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cert") && i + 1 < argc)
            cert_file = argv[++i];
        else if (!strcmp(argv[i], "--key") && i + 1 < argc)
            key_file = argv[++i];
        else {
            fprintf(stderr, "usage: %s --port PORT --server-pid PID "
                            "[--host ADDR] [--conns N] [--settle S] "
                            "[--name LABEL] [--tls12]\n"
                            "       %s --floor N --cert PEM --key PEM "
                            "[--tls12]\n",
                    argv[0], argv[0]);
            exit(2);
        }
    }
    if (floor_n) {
        if (floor_n < 0 || !cert_file || !key_file) {
            fprintf(stderr, "tls-idle: --floor N > 0 needs --cert and "
                            "--key\n");
            exit(2);
        }
        return;
    }
    if (!port || !server_pid || nconns <= 0) {
        fprintf(stderr, "tls-idle: --port, --server-pid and --conns > 0 "
                        "are required\n");
        exit(2);
    }
}

/* ------------------------------------------------------------ --floor */

static SSL_CTX *floor_ctx(bool server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method()
                                      : TLS_client_method());

    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, version) ||
        !SSL_CTX_set_max_proto_version(ctx, version))
        fail(-1, "SSL_CTX_new");
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (server && (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
                   SSL_CTX_use_PrivateKey_file(ctx, key_file,
                                               SSL_FILETYPE_PEM) != 1))
        fail(-1, "loading --cert and --key");
    return ctx;
}

static BIO *empty_bio(void)
{
    BIO *b = BIO_new(BIO_s_mem());

    if (!b)
        fail(-1, "BIO_new");
    BIO_set_mem_eof_return(b, -1); /* "retry", as a socket with no data */
    return b;
}

/* One step of ssl's handshake or echo: whether it has finished. */
static bool floor_step(SSL *ssl, int *state, int i)
{
    unsigned char msg[64];
    size_t n;

    if (*state == 0) { /* handshake */
        int r = SSL_do_handshake(ssl);

        if (r == 1)
            *state = SSL_is_server(ssl) ? 1 : 2;
        else if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ)
            fail(i, "floor handshake");
        return false;
    }
    if (*state == 2) { /* the client writes its 64 bytes */
        memset(msg, i, sizeof(msg));
        if (!SSL_write_ex(ssl, msg, sizeof(msg), &n))
            fail(i, "floor SSL_write");
        *state = 1;
        return false;
    }
    if (*state == 1) { /* both read 64 bytes; the server echoes them */
        if (!SSL_read_ex(ssl, msg, sizeof(msg), &n)) {
            if (SSL_get_error(ssl, 0) != SSL_ERROR_WANT_READ)
                fail(i, "floor SSL_read");
            return false;
        }
        if (SSL_is_server(ssl) && !SSL_write_ex(ssl, msg, n, &n))
            fail(i, "floor echo");
        *state = 3;
    }
    return *state == 3;
}

/* A pair shakes hands over two memory BIOs and echoes 64 bytes; each end
 * then gets an empty BIO of its own (the shared ones grew). */
static void floor_pair(SSL_CTX *sctx, SSL_CTX *cctx, SSL **sp, SSL **cp,
                       int i)
{
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    BIO *c2s = empty_bio(), *s2c = empty_bio();
    int ss = 0, cs = 0;

    if (!s || !c || !BIO_up_ref(c2s) || !BIO_up_ref(s2c))
        fail(i, "SSL_new");
    SSL_set_bio(c, s2c, c2s);
    SSL_set_bio(s, c2s, s2c);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    for (int k = 0; k < 100 && !(ss == 3 && cs == 3); k++) {
        floor_step(c, &cs, i);
        floor_step(s, &ss, i);
    }
    if (ss != 3 || cs != 3)
        fail(i, "floor exchange");
    SSL_set_bio(s, empty_bio(), NULL); /* NULL: "the same BIO", one ref */
    SSL_set_bio(c, empty_bio(), NULL);
    SSL_free_buffers(s); /* as the tls layer does at idle */
    SSL_free_buffers(c); /* a client's last read may keep its record buffer */
    *sp = s;
    *cp = c;
}

static void floor_mode(void)
{
    SSL_CTX *sctx = floor_ctx(true), *cctx = floor_ctx(false);
    SSL **srv = calloc((size_t)floor_n + 1, sizeof(*srv));
    SSL **cli = calloc((size_t)floor_n + 1, sizeof(*cli));
    size_t m0, m1, m2, m3;

    if (!srv || !cli)
        fail(-1, "calloc");
    floor_pair(sctx, cctx, &srv[floor_n], &cli[floor_n], -1); /* warm-up */
    SSL_free(srv[floor_n]);
    SSL_free(cli[floor_n]);
    m0 = mallinfo2().uordblks;
    for (int i = 0; i < floor_n; i++)
        floor_pair(sctx, cctx, &srv[i], &cli[i], i);
    m1 = mallinfo2().uordblks;
    for (int i = 0; i < floor_n; i++)
        SSL_free(cli[i]);
    m2 = mallinfo2().uordblks;
    for (int i = 0; i < floor_n; i++)
        SSL_free(srv[i]);
    m3 = mallinfo2().uordblks;
    printf("floor: %d idle pairs, server %.0f bytes/session, client %.0f "
           "bytes/session; after both ends are freed the server's session "
           "cache keeps %.0f bytes/session\n", floor_n,
           ((double)m2 - (double)m0) / floor_n,
           ((double)m1 - (double)m2) / floor_n,
           ((double)m3 - (double)m0) / floor_n);
    free(srv);
    free(cli);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

int main(int argc, char **argv)
{
    struct rlimit rl;
    SSL_CTX *ctx;
    SSL **conns;
    long before, after;

    parse(argc, argv);
    if (floor_n) {
        floor_mode();
        return 0;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, version) ||
        !SSL_CTX_set_max_proto_version(ctx, version))
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
