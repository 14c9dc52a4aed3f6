/* bench/loadgen — echo load generator (plain epoll, independent of zltk).
 *
 *   loadgen --port PORT [--host ADDR] [--server-pid PID] [--seconds S]
 *           [--idle N] [--only TEST]
 *
 * Runs against any echo server and prints one line per figure:
 *   pingpong   1 connection, 64-byte ping-pong: round trips/s, p50/p99 us
 *   msgs100    100 connections, 64-byte ping-pong each: messages/s
 *   stream16k  10 connections, 16 KiB writes pipelined: MB/s echoed
 *   cps        connections/s (connect, 1-byte echo, close)
 *   idle       server memory per idle connection, N connections held
 * With --server-pid it also reports the server's CPU time per message
 * (utime+stime from /proc) and its RSS growth for the idle test.
 * TEST is one of the names above.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in peer;
static int server_pid;
static double seconds = 2.0;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Server CPU seconds (user+system) from /proc/PID/stat. */
static double server_cpu(void)
{
    char path[64], buf[1024];
    FILE *f;
    unsigned long ut = 0, st = 0;

    if (!server_pid)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", server_pid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    if (fgets(buf, sizeof(buf), f)) {
        char *p = strrchr(buf, ')');
        /* fields after ")": state(3) ... utime(14) stime(15) */
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                        &ut, &st) == 2) {
        }
    }
    fclose(f);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long server_rss_kb(void)
{
    char path[64], line[256];
    FILE *f;
    long kb = -1;

    if (!server_pid)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/status", server_pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&peer, sizeof(peer)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int read_full(int fd, char *b, size_t n)
{
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void set_nb(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* ------------------------------------------------------------ tests */

static int t_pingpong(void)
{
    int fd = dial();
    char msg[64], back[64];
    size_t cap = 1 << 22, n = 0;
    double *lat = malloc(cap * sizeof(*lat)), t0, end, c0;

    if (fd < 0 || !lat) {
        perror("pingpong: connect");
        return 1;
    }
    memset(msg, 'p', sizeof(msg));
    c0 = server_cpu();
    t0 = now_s();
    end = t0 + seconds;
    while (n < cap) {
        double a = now_s();
        if (a >= end)
            break;
        if (write(fd, msg, sizeof(msg)) != sizeof(msg) ||
            read_full(fd, back, sizeof(back)) < 0) {
            perror("pingpong");
            return 1;
        }
        lat[n++] = (now_s() - a) * 1e6;
    }
    double el = now_s() - t0, cpu = server_cpu() - c0;
    qsort(lat, n, sizeof(*lat), cmp_d);
    printf("pingpong: %.0f round trips/s, p50 %.1f us, p99 %.1f us",
           (double)n / el, lat[n / 2], lat[(size_t)((double)n * 0.99)]);
    if (server_pid)
        printf(", server cpu %.2f us/msg", cpu * 1e6 / (double)n);
    printf("\n");
    free(lat);
    close(fd);
    return 0;
}

/* nconn connections on one epoll; each keeps `depth` bytes in flight in
 * chunks of `chunk`, and counts echoed bytes. */
static int flow(const char *name, int nconn, size_t chunk, size_t depth)
{
    int ep = epoll_create1(0);
    int *fds = calloc((size_t)nconn, sizeof(int));
    size_t *inflight = calloc((size_t)nconn, sizeof(size_t));
    char *wbuf = malloc(chunk), *rbuf = malloc(1 << 20);
    unsigned long long bytes = 0;
    double t0, end, c0, el, cpu;
    struct epoll_event ev, evs[256];

    memset(wbuf, 'f', chunk);
    for (int i = 0; i < nconn; i++) {
        fds[i] = dial();
        if (fds[i] < 0) {
            perror(name);
            return 1;
        }
        set_nb(fds[i]);
        ev.events = EPOLLIN | EPOLLOUT;
        ev.data.u32 = (uint32_t)i;
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    c0 = server_cpu();
    t0 = now_s();
    end = t0 + seconds;
    while (now_s() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            if (evs[k].events & EPOLLIN) {
                ssize_t r;
                while ((r = read(fds[i], rbuf, 1 << 20)) > 0) {
                    bytes += (unsigned long long)r;
                    inflight[i] -= (size_t)r;
                }
            }
            while (inflight[i] + chunk <= depth) {
                ssize_t w = write(fds[i], wbuf, chunk);
                if (w <= 0)
                    break;
                inflight[i] += (size_t)w;
                if ((size_t)w < chunk)
                    break;
            }
        }
    }
    el = now_s() - t0;
    cpu = server_cpu() - c0;
    if (chunk <= 64) {
        double msgs = (double)bytes / (double)chunk;
        printf("%s: %.0f messages/s", name, msgs / el);
        if (server_pid)
            printf(", server cpu %.2f us/msg", cpu * 1e6 / msgs);
    } else {
        printf("%s: %.1f MB/s", name, (double)bytes / el / 1e6);
        if (server_pid)
            printf(", server cpu %.2f us/16KiB", cpu * 1e6 / ((double)bytes / 16384));
    }
    printf("\n");
    for (int i = 0; i < nconn; i++)
        close(fds[i]);
    close(ep);
    free(fds);
    free(inflight);
    free(wbuf);
    free(rbuf);
    return 0;
}

static int t_cps(void)
{
    double t0 = now_s(), end = t0 + seconds;
    unsigned long n = 0;
    char b = 'c';

    while (now_s() < end) {
        int fd = dial();
        if (fd < 0) {
            perror("cps: connect");
            return 1;
        }
        if (write(fd, &b, 1) != 1 || read_full(fd, &b, 1) < 0) {
            perror("cps");
            close(fd);
            return 1;
        }
        /* Reset rather than FIN: no TIME_WAIT pile-up on the client side. */
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
        n++;
    }
    printf("cps: %.0f connections/s\n", (double)n / (now_s() - t0));
    return 0;
}

static int t_idle(int count)
{
    int *fds = malloc((size_t)count * sizeof(int)), made = 0;
    long before, after;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    before = server_rss_kb();
    for (; made < count; made++) {
        char b = 'i';
        fds[made] = dial();
        if (fds[made] < 0)
            break;
        /* One echo proves the server accepted and served it. */
        if (write(fds[made], &b, 1) != 1 || read_full(fds[made], &b, 1) < 0) {
            close(fds[made]);
            break;
        }
    }
    usleep(300000);
    after = server_rss_kb();
    if (made < count)
        fprintf(stderr, "idle: only %d of %d connections made (ulimit -n?)\n",
                made, count);
    if (before >= 0 && after >= 0 && made)
        printf("idle: %d connections, server RSS +%ld kB, %.0f bytes per "
               "idle connection\n",
               made, after - before, (double)(after - before) * 1024.0 / made);
    else
        printf("idle: %d connections held (give --server-pid for memory)\n",
               made);
    for (int i = 0; i < made; i++)
        close(fds[i]);
    free(fds);
    return made == count ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *only = NULL;
    int port = 0, idle = 10000, rc = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc)
            host = argv[++i];
        else if (!strcmp(argv[i], "--server-pid") && i + 1 < argc)
            server_pid = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--idle") && i + 1 < argc)
            idle = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s --port PORT [--host ADDR] [--server-pid PID] "
                    "[--seconds S] [--idle N] [--only pingpong|msgs100|"
                    "stream16k|cps|idle]\n",
                    argv[0]);
            return 2;
        }
    }
    peer.sin_family = AF_INET;
    peer.sin_port = htons((uint16_t)port);
    if (!port || inet_pton(AF_INET, host, &peer.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --port and an IPv4 --host are required\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
#define RUN(name, call) \
    if (!only || !strcmp(only, name)) rc |= (call)
    RUN("pingpong", t_pingpong());
    RUN("msgs100", flow("msgs100", 100, 64, 64));
    RUN("stream16k", flow("stream16k", 10, 16384, 16384 * 8));
    RUN("cps", t_cps());
    RUN("idle", t_idle(idle));
    return rc;
}
