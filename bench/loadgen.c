/* bench/loadgen — echo load generator built on the zltk client API.
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
 * The generator runs on one zltk poller, like the single-threaded baseline
 * server it is usually compared against.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <zltk/zltk.h>

static const char *host = "127.0.0.1";
static uint16_t port;
static int server_pid;
static double seconds = 2.0;
static zl_poller_t *P;

/* ------------------------------------------------------------ server stats */

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

static long server_rss_kb(void)
{
    char path[64], line[256];
    FILE *f;
    long kb = -1;

    if (!server_pid)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/status", server_pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static double now_s(void)
{
    return (double)zl_now_ns() / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------ shared */

/* Per-run state; touched only on the generator's poller thread except the
 * atomics the main thread waits on. */
typedef struct run {
    const char *name;
    bool started;
    int nflows;
    struct flow *flows;
    size_t chunk, depth; /* bytes per write; bytes kept in flight */
    double end;          /* stop sending after this time */
    atomic_int open, closed, failed;
    uint64_t messages, bytes;
    double *lat;
    size_t nlat, cap;
    bool record;
} run_t;

typedef struct flow {
    run_t *r;
    zl_conn_t *c;
    size_t inflight, got; /* bytes sent not yet echoed; of current message */
    double t0;
} flow_t;

static char wbuf[64 * 1024];

static void fill(zl_conn_t *c, flow_t *f)
{
    run_t *r = f->r;

    if (!r->started)
        return;
    while (f->inflight + r->chunk <= r->depth && now_s() < r->end) {
        if (r->record)
            f->t0 = now_s();
        if (zl_conn_send(c, wbuf, r->chunk) < 0)
            return;
        f->inflight += r->chunk;
    }
    if (!f->inflight && now_s() >= r->end)
        zl_conn_close(c);
}

/* Open the measuring window, on the poller thread where the flows live. */
static void start_flows(void *arg)
{
    run_t *r = arg;

    r->started = true;
    r->end = now_s() + seconds;
    for (int i = 0; i < r->nflows; i++)
        fill(r->flows[i].c, &r->flows[i]);
}

static void on_connect(zl_conn_t *c, const zl_error_t *err)
{
    flow_t *f = zl_conn_get_data(c);

    if (err) {
        fprintf(stderr, "%s: %s\n", f->r->name, err->message);
        atomic_fetch_add(&f->r->failed, 1);
        return;
    }
    f->c = c;
    atomic_fetch_add(&f->r->open, 1);
}

static void on_recv(zl_conn_t *c, zl_buf_t *b)
{
    flow_t *f = zl_conn_get_data(c);
    run_t *r = f->r;

    r->bytes += b->len;
    f->inflight -= b->len < f->inflight ? b->len : f->inflight;
    f->got += b->len;
    while (f->got >= r->chunk) {
        f->got -= r->chunk;
        r->messages++;
        if (r->record && r->nlat < r->cap)
            r->lat[r->nlat++] = (now_s() - f->t0) * 1e6;
    }
    fill(c, f);
}

static void on_err(zl_conn_t *c, const zl_error_t *err)
{
    flow_t *f = zl_conn_get_data(c);
    if (err->code != ZL_EOF)
        fprintf(stderr, "%s: %s\n", f->r->name, err->message);
}

static void on_closed(zl_conn_t *c)
{
    flow_t *f = zl_conn_get_data(c);
    atomic_fetch_add(&f->r->closed, 1);
}

static const zl_conn_handler_t flow_h = {
    .on_connect = on_connect,
    .on_recv = on_recv,
    .on_err = on_err,
    .on_closed = on_closed,
};

static zl_client_options_t copts(void)
{
    zl_client_options_t o = ZL_CLIENT_OPTIONS_INIT;

    o.host = host;
    o.port = port;
    o.poller = P;
    o.conn.high_water = 64 * 1024 * 1024;
    o.conn.low_water = o.conn.high_water / 4;
    return o;
}

static void wait_all(atomic_int *n, int target, double limit)
{
    double until = now_s() + limit;
    while (atomic_load(n) < target && now_s() < until)
        usleep(1000);
}

/* nconn connections, each keeping depth bytes in flight in chunk writes. */
static int flows(const char *name, int nconn, size_t chunk, size_t depth,
                 bool record)
{
    run_t r = {.name = name, .chunk = chunk, .depth = depth, .record = record};
    int rc = 0;
    flow_t *f = calloc((size_t)nconn, sizeof(*f));
    zl_client_options_t o = copts();
    double t0, el, cpu, c0;

    if (record) {
        r.cap = 1 << 22;
        r.lat = malloc(r.cap * sizeof(double));
    }
    /* Connect everyone first, then measure a fixed window. */
    r.nflows = nconn;
    r.flows = f;
    for (int i = 0; i < nconn; i++) {
        f[i].r = &r;
        if (zl_client_connect(NULL, &o, &flow_h, &f[i]) < 0)
            return 1;
    }
    wait_all(&r.open, nconn, 10);
    if (atomic_load(&r.open) < nconn) {
        fprintf(stderr, "%s: only %d of %d connected\n", name,
                atomic_load(&r.open), nconn);
        return 1;
    }
    c0 = server_cpu();
    t0 = now_s();
    zl_poller_async(P, start_flows, &r);
    wait_all(&r.closed, nconn, seconds + 10);
    el = now_s() - t0;
    cpu = server_cpu() - c0;
    if (record && r.nlat) {
        qsort(r.lat, r.nlat, sizeof(double), cmp_d);
        printf("%s: %.0f round trips/s, p50 %.1f us, p99 %.1f us", name,
               (double)r.messages / el, r.lat[r.nlat / 2],
               r.lat[(size_t)((double)r.nlat * 0.99)]);
    } else if (chunk <= 64) {
        printf("%s: %.0f messages/s", name, (double)r.messages / el);
    } else {
        printf("%s: %.1f MB/s", name, (double)r.bytes / el / 1e6);
    }
    if (server_pid && r.messages)
        printf(", server cpu %.2f us/msg", cpu * 1e6 / (double)r.messages);
    printf("\n");
    free(r.lat);
    free(f);
    return rc;
}

/* ------------------------------------------------------------ cps */

typedef struct cps {
    double end;
    atomic_long done;
    atomic_int finished;
} cps_t;

static void cps_next(cps_t *s);

static void cps_connect(zl_conn_t *c, const zl_error_t *err)
{
    if (err) {
        fprintf(stderr, "cps: %s\n", err->message);
        return;
    }
    zl_conn_send(c, "c", 1);
}

static void cps_recv(zl_conn_t *c, zl_buf_t *b)
{
    (void)b;
    /* Reset rather than FIN: no TIME_WAIT pile-up on loopback. */
    zl_conn_abort(c);
}

static void cps_closed(zl_conn_t *c)
{
    cps_t *s = zl_conn_get_data(c);

    atomic_fetch_add(&s->done, 1);
    if (now_s() < s->end)
        cps_next(s);
    else
        atomic_store(&s->finished, 1);
}

static const zl_conn_handler_t cps_h = {
    .on_connect = cps_connect,
    .on_recv = cps_recv,
    .on_closed = cps_closed,
};

static void cps_next(cps_t *s)
{
    zl_client_options_t o = copts();
    if (zl_client_connect(NULL, &o, &cps_h, s) < 0)
        atomic_store(&s->finished, 1);
}

static void cps_start(void *arg)
{
    cps_next(arg);
}

static int t_cps(void)
{
    cps_t s = {.end = now_s() + seconds};
    double t0 = now_s();

    zl_poller_async(P, cps_start, &s);
    while (!atomic_load(&s.finished))
        usleep(1000);
    printf("cps: %.0f connections/s\n",
           (double)atomic_load(&s.done) / (now_s() - t0));
    return 0;
}

/* ------------------------------------------------------------ idle */

typedef struct idle {
    atomic_int echoed, failed, closed;
} idle_t;

static void idle_connect(zl_conn_t *c, const zl_error_t *err)
{
    idle_t *s = zl_conn_get_data(c);
    if (err) {
        atomic_fetch_add(&s->failed, 1);
        return;
    }
    zl_conn_send(c, "i", 1);
}

static void idle_recv(zl_conn_t *c, zl_buf_t *b)
{
    idle_t *s = zl_conn_get_data(c);
    (void)b;
    atomic_fetch_add(&s->echoed, 1);
}

static void idle_closed(zl_conn_t *c)
{
    idle_t *s = zl_conn_get_data(c);
    atomic_fetch_add(&s->closed, 1);
}

static const zl_conn_handler_t idle_h = {
    .on_connect = idle_connect,
    .on_recv = idle_recv,
    .on_closed = idle_closed,
};

static int t_idle(int count)
{
    idle_t s = {0};
    zl_client_options_t o = copts();
    zl_conn_t **conns = calloc((size_t)count, sizeof(*conns));
    long before = server_rss_kb(), after;
    int made = 0;

    o.connect_timeout_ms = 20000;
    for (; made < count; made++)
        if (zl_client_connect(&conns[made], &o, &idle_h, &s) < 0)
            break;
    wait_all(&s.echoed, made, 60);
    usleep(300000);
    after = server_rss_kb();
    int ok = atomic_load(&s.echoed);
    if (ok < count)
        fprintf(stderr, "idle: only %d of %d connections served (%d failed; "
                        "ulimit -n?)\n", ok, count, atomic_load(&s.failed));
    if (before >= 0 && after >= 0 && ok)
        printf("idle: %d connections, server RSS +%ld kB, %.0f bytes per "
               "idle connection\n",
               ok, after - before, (double)(after - before) * 1024.0 / ok);
    else
        printf("idle: %d connections held (give --server-pid for memory)\n",
               ok);
    for (int i = 0; i < made; i++) {
        zl_conn_close(conns[i]);
        zl_conn_unref(conns[i]);
    }
    wait_all(&s.closed, made, 30);
    free(conns);
    return ok == count ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    int idle = 10000, rc = 0;
    zl_runtime_options_t ro = {.pollers = 1, .workers = 1};
    zl_log_options_t lo = {.level = ZL_LOG_WARNING, .console = true};
    struct rlimit rl;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = (uint16_t)atoi(argv[++i]);
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
    if (!port) {
        fprintf(stderr, "loadgen: --port is required\n");
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    memset(wbuf, 'f', sizeof(wbuf));
    zl_log_init(&lo);
    if (zl_runtime_init(&ro) < 0)
        return 1;
    P = zl_poller_pool_at(zl_runtime_pollers(), 0);
#define RUN(name, call) \
    if (!only || !strcmp(only, name)) rc |= (call)
    RUN("pingpong", flows("pingpong", 1, 64, 64, true));
    RUN("msgs100", flows("msgs100", 100, 64, 64, false));
    RUN("stream16k", flows("stream16k", 10, 16384, 16384 * 8, false));
    RUN("cps", t_cps());
    RUN("idle", t_idle(idle));
    zl_runtime_shutdown();
    zl_log_shutdown();
    return rc;
}
