/* bench/tls-loadgen — TLS echo load generator: plain OpenSSL on
 * non-blocking sockets and one epoll loop, in one thread.
 *
 *   tls-loadgen --port PORT [--host ADDR] [--conns N] [--size BYTES]
 *               [--depth MSGS] [--seconds S] [--warmup S]
 *               [--server-pid PID] [--name LABEL] [--deciles 1]
 *
 * Opens N TLS 1.3 connections (handshakes done before the clock starts),
 * then each keeps DEPTH messages of SIZE bytes in flight (pipelined: a new
 * message goes out as soon as one has come back in full) for a warm-up and
 * then a measuring window of S seconds; then it stops sending, waits for
 * every message to come back, and closes with close_notify.
 *
 * Every echoed byte is checked against what was sent (a per-connection
 * pseudo-random stream whose period, 65521 bytes, is prime to the message
 * size, so a lost, duplicated or reordered message is caught); any
 * mismatch, short echo or TLS error makes it exit 1.
 *
 * One line, for messages that came back completely inside the window:
 *   LABEL: X MB/s, p50 A us, p99 B us, p99.9 C us, max D us; per-conn
 *   MB/s min E max F (min/max G), worst per-conn p99 H us; client cpu I%,
 *   server cpu J% K us/msg; N conns x DEPTH x SIZE B, verified V MB
 * (server cpu: utime+stime of --server-pid over the window, from /proc).
 * Latency is per message: from the SSL_write of its first byte to the
 * SSL_read of its last.  With a closed loop of N*DEPTH messages in flight
 * the mean latency is (N*DEPTH*SIZE)/throughput (Little's law); the p99
 * shows how unevenly the server serves its connections on top of that.
 * The client reads one record per connection per turn of its loop, so
 * that it does not favour some connections itself when it is the
 * bottleneck (check "client cpu").
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define PERIOD 65521u         /* pattern period: prime */
#define RBUF (64 * 1024)      /* plaintext per SSL_read */
#define MAX_SIZE (1024 * 1024)

typedef struct conn {
    int id, fd;
    SSL *ssl;
    uint64_t base;            /* this connection's offset in the pattern */
    uint64_t sent, recvd;     /* plaintext bytes written / read back */
    uint64_t msent, mrecv;    /* messages written in full / read back */
    bool pending;             /* an SSL_write to retry (WANT_WRITE) */
    bool want_out;            /* EPOLLOUT is set */
    double *tsend;            /* send time of message i at i % depth */
    uint64_t wbytes;          /* bytes of messages completed in window */
    float *lat;               /* latencies (us) of those messages */
    size_t nlat, cap;
} conn_t;

static const char *host = "127.0.0.1", *label = "tls16k";
static int port, nconns = 10, server_pid;
static size_t msize = 16384, depth = 4;
static double seconds = 2.0, warmup = 0.3;
static uint8_t *pat;
static int ep;
static double win_start, win_end;
static bool sending = true, deciles;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double server_cpu(void)
{
    char path[64], buf[1024];
    FILE *f;
    unsigned long ut = 0, st = 0;

    if (!server_pid)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", server_pid);
    if (!(f = fopen(path, "r")))
        return 0;
    if (fgets(buf, sizeof(buf), f)) {
        char *p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                                "%lu %lu", &ut, &st) != 2)
            ut = st = 0;
    }
    fclose(f);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void die_ssl(conn_t *c, const char *what, int e)
{
    fprintf(stderr, "tls-loadgen: connection %d: %s failed (SSL_get_error "
                    "%d, errno %s)\n", c ? c->id : -1, what, e,
            strerror(errno));
    ERR_print_errors_fp(stderr);
    exit(1);
}

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float pct(float *v, size_t n, double p)
{
    size_t i = (size_t)((double)n * p);
    return n ? v[i < n ? i : n - 1] : 0;
}

static void set_out(conn_t *c, bool on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                             .data.ptr = c};

    if (c->want_out == on)
        return;
    c->want_out = on;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* one: a single record per call (the measuring loop's epoll is level
 * triggered, so the rest is reported again on the next turn).  Draining a
 * connection at each event would make this client serve its connections
 * unevenly once it is the bottleneck, and that would show up as the
 * server's unfairness. */
static void on_read(conn_t *c, double t, bool one)
{
    static uint8_t rbuf[RBUF];

    for (;;) {
        size_t n = 0;
        int r;

        ERR_clear_error();
        r = SSL_read_ex(c->ssl, rbuf, sizeof(rbuf), &n);
        if (!r) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                return;
            if (e == SSL_ERROR_WANT_WRITE) {
                set_out(c, true);
                return;
            }
            die_ssl(c, e == SSL_ERROR_ZERO_RETURN ? "read (the server "
                    "closed)" : "read", e);
        }
        if (c->recvd + n > c->sent) {
            fprintf(stderr, "tls-loadgen: connection %d: %zu bytes more "
                            "echoed than sent\n", c->id,
                    (size_t)(c->recvd + n - c->sent));
            exit(1);
        }
        if (memcmp(rbuf, pat + (c->base + c->recvd) % PERIOD, n)) {
            fprintf(stderr, "tls-loadgen: connection %d: echoed bytes differ "
                            "from those sent, near offset %llu\n", c->id,
                    (unsigned long long)c->recvd);
            exit(1);
        }
        c->recvd += n;
        while (c->recvd >= (c->mrecv + 1) * msize) {
            double t0 = c->tsend[c->mrecv % depth];
            c->mrecv++;
            if (t0 >= win_start && t < win_end) {
                if (c->nlat == c->cap) {
                    c->cap = c->cap ? 2 * c->cap : 4096;
                    c->lat = realloc(c->lat, c->cap * sizeof(float));
                    if (!c->lat) {
                        perror("tls-loadgen");
                        exit(1);
                    }
                }
                c->lat[c->nlat++] = (float)((t - t0) * 1e6);
            }
            if (t >= win_start && t < win_end)
                c->wbytes += msize;
        }
        if (one && !SSL_pending(c->ssl))
            return;
    }
}

static void on_write(conn_t *c)
{
    while (c->pending ||
           (sending && c->msent - c->mrecv < depth)) {
        size_t w = 0;
        int r;

        if (!c->pending) {
            c->tsend[c->msent % depth] = now_s();
            c->pending = true;
        }
        ERR_clear_error();
        r = SSL_write_ex(c->ssl, pat + (c->base + c->sent) % PERIOD, msize,
                         &w);
        if (!r) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE) {
                set_out(c, true);
                return;
            }
            if (e == SSL_ERROR_WANT_READ)
                return; /* a read event brings us back */
            die_ssl(c, "write", e);
        }
        c->pending = false;
        c->sent += msize;
        c->msent++;
    }
    set_out(c, false);
}

static void open_conn(conn_t *c, SSL_CTX *ctx, const struct sockaddr_in *sa)
{
    int one = 1, r;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (const struct sockaddr *)sa,
                             sizeof(*sa)) < 0) {
        fprintf(stderr, "tls-loadgen: connect to %s:%d: %s\n", host, port,
                strerror(errno));
        exit(1);
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!(c->ssl = SSL_new(ctx)) || !SSL_set_fd(c->ssl, c->fd))
        die_ssl(c, "SSL_new", 0);
    ERR_clear_error();
    if ((r = SSL_connect(c->ssl)) != 1)
        die_ssl(c, "handshake", SSL_get_error(c->ssl, r));
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    c->base = (uint64_t)c->id * 7919u;
    if (!(c->tsend = calloc(depth, sizeof(double)))) {
        perror("tls-loadgen");
        exit(1);
    }
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s --port PORT [--host ADDR] [--conns N] "
                    "[--size BYTES] [--depth MSGS] [--seconds S] "
                    "[--warmup S] [--server-pid PID] [--name LABEL] "
                    "[--deciles 1]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa = {0};
    struct epoll_event evs[64];
    SSL_CTX *ctx;
    conn_t *cs;
    double t, c0 = 0, s0 = 0, cpu_c, cpu_s, drain_until;
    uint64_t total = 0, verified = 0, msgs = 0;
    size_t nlat = 0;
    float *all, *cp99;
    double mn = 1e300, mx = 0;
    uint32_t x = 0x9e3779b9u;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage(argv[0]);
        i++;
        if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--conns")) nconns = atoi(v);
        else if (!strcmp(a, "--size")) msize = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--depth")) depth = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--warmup")) warmup = atof(v);
        else if (!strcmp(a, "--server-pid")) server_pid = atoi(v);
        else if (!strcmp(a, "--name")) label = v;
        else if (!strcmp(a, "--deciles")) deciles = atoi(v) != 0;
        else usage(argv[0]);
    }
    if (!port || nconns < 1 || !msize || msize > MAX_SIZE || !depth ||
        seconds <= 0)
        usage(argv[0]);
    signal(SIGPIPE, SIG_IGN);

    /* The pattern, extended so that any read or write is contiguous. */
    pat = malloc(PERIOD + (msize > RBUF ? msize : RBUF));
    for (size_t i = 0; i < PERIOD; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        pat[i] = (uint8_t)(x >> 24);
    }
    for (size_t i = PERIOD; i < PERIOD + (msize > RBUF ? msize : RBUF); i++)
        pat[i] = pat[i - PERIOD];

    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "tls-loadgen: bad host %s\n", host);
        return 2;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION))
        die_ssl(NULL, "SSL_CTX_new", 0);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* a throwaway cert */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, RBUF);

    ep = epoll_create1(EPOLL_CLOEXEC);
    cs = calloc((size_t)nconns, sizeof(*cs));
    for (int i = 0; i < nconns; i++) {
        cs[i].id = i;
        open_conn(&cs[i], ctx, &sa);
    }

    t = now_s();
    win_start = t + warmup;
    win_end = win_start + seconds;
    for (int i = 0; i < nconns; i++)
        on_write(&cs[i]);
    for (bool in_win = false;;) {
        int n = epoll_wait(ep, evs, 64, 50);

        t = now_s();
        if (!in_win && t >= win_start) {
            in_win = true;
            c0 = self_cpu();
            s0 = server_cpu();
        }
        if (t >= win_end)
            break;
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_read(c, t, true);
            on_write(c);
        }
    }
    cpu_c = self_cpu() - c0;
    cpu_s = server_cpu() - s0;

    /* Stop sending; every message must come back in full. */
    sending = false;
    drain_until = now_s() + 10;
    for (;;) {
        bool done = true;
        int n;

        for (int i = 0; i < nconns; i++)
            if (cs[i].recvd < cs[i].sent || cs[i].pending)
                done = false;
        if (done)
            break;
        if (now_s() > drain_until) {
            fprintf(stderr, "tls-loadgen: echoes missing after 10 s\n");
            return 1;
        }
        n = epoll_wait(ep, evs, 64, 100);
        t = now_s();
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            on_read(c, t, false);
            on_write(c);
        }
    }
    for (int i = 0; i < nconns; i++) {
        SSL_shutdown(cs[i].ssl);
        SSL_free(cs[i].ssl);
        close(cs[i].fd);
    }

    /* Figures. */
    cp99 = calloc((size_t)nconns, sizeof(float));
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &cs[i];
        double mbs = (double)c->wbytes / seconds / 1e6;
        total += c->wbytes;
        verified += c->recvd;
        msgs += c->wbytes / msize;
        nlat += c->nlat;
        mn = mbs < mn ? mbs : mn;
        mx = mbs > mx ? mbs : mx;
        qsort(c->lat, c->nlat, sizeof(float), cmp_f);
        cp99[i] = pct(c->lat, c->nlat, 0.99);
    }
    all = malloc((nlat ? nlat : 1) * sizeof(float));
    nlat = 0;
    for (int i = 0; i < nconns; i++) {
        memcpy(all + nlat, cs[i].lat, cs[i].nlat * sizeof(float));
        nlat += cs[i].nlat;
    }
    qsort(all, nlat, sizeof(float), cmp_f);
    qsort(cp99, (size_t)nconns, sizeof(float), cmp_f);
    printf("%s: %.1f MB/s, p50 %.0f us, p99 %.0f us, p99.9 %.0f us, "
           "max %.0f us; "
           "per-conn MB/s min %.1f max %.1f (min/max %.2f), worst per-conn "
           "p99 %.0f us; client cpu %.0f%%",
           label, (double)total / seconds / 1e6, pct(all, nlat, 0.5),
           pct(all, nlat, 0.99), pct(all, nlat, 0.999),
           nlat ? all[nlat - 1] : 0, mn, mx,
           mx > 0 ? mn / mx : 0, cp99[nconns - 1],
           cpu_c / seconds * 100);
    if (server_pid)
        printf(", server cpu %.0f%% %.2f us/msg", cpu_s / seconds * 100,
               msgs ? cpu_s * 1e6 / (double)msgs : 0);
    printf("; %d conns x %zu x %zu B, verified %.0f MB\n", nconns, depth,
           msize, (double)verified / 1e6);
    if (deciles) {
        printf("%s: latency deciles (us):", label);
        for (int d = 1; d < 10; d++)
            printf(" %.0f", pct(all, nlat, d / 10.0));
        printf("\n");
    }
    for (int i = 0; i < nconns; i++) {
        free(cs[i].lat);
        free(cs[i].tsend);
    }
    free(cs);
    free(all);
    free(cp99);
    free(pat);
    SSL_CTX_free(ctx);
    close(ep);
    return total ? 0 : 1;
}
