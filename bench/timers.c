/* bench/timers — timer add and cancel cost on one zltk poller (issue 13).
 *
 *   bench-timers N
 *
 * On the poller thread (inside zl_poller_sync()): arm N one-shot timers
 * with pseudo-random delays in [0, 10 s] (fixed seed, the same sequence as
 * bench/uv-timers.c), then cancel every other one.  Twice, each on a fresh
 * poller, printing one line each:
 *   bench=timers impl=zltk n=N add_ns=... cancel_ns=...
 *   ns_per_timer_add+cancel=... bytes_per_timer=...
 *   bench=timers impl=zltk-handle n=N ...
 * impl=zltk: intrusive nodes (zl_timer_node_start()/_stop()) in one array
 * of N zl_timer_node_t the caller allocates, as bench-timers-uv does with
 * uv_timer_t.  impl=zltk-handle: zl_poller_add_timer() with a handle each,
 * zl_timer_cancel() (the caller keeps the N handles in an array).
 * add_ns is the mean per add, cancel_ns the mean per cancel (N/2 of them);
 * bytes_per_timer is the heap in use (mallinfo2(): uordblks + hblkhd, all
 * arenas) after the N adds minus before, divided by N.  The caller's array
 * (of nodes, or of handle pointers) is allocated after the first reading,
 * so it is counted, as libuv's uv_timer_t array is.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/zltk.h>

typedef struct {
    zl_poller_t *p;
    long n;
    uint64_t add_ns, cancel_ns;
    double bytes;
} run_t;

static uint64_t on_timer(void *arg)
{
    (void)arg;
    return 0;
}

static void on_node(zl_poller_t *p, zl_timer_node_t *node)
{
    (void)p;
    (void)node;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static unsigned next_delay(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 8) % 10001u;
}

static void run_nodes(void *arg)
{
    run_t *r = arg;
    unsigned seed = 12345;
    zl_timer_node_t *t;
    size_t m0;
    uint64_t t0;

    m0 = heap_in_use();
    t = malloc((size_t)r->n * sizeof(*t));
    if (!t)
        abort();
    t0 = zl_now_ns();
    for (long i = 0; i < r->n; i++) {
        zl_timer_node_init(&t[i], on_node);
        if (zl_timer_node_start(r->p, &t[i], next_delay(&seed)) != 0)
            abort();
    }
    r->add_ns = zl_now_ns() - t0;
    r->bytes = ((double)heap_in_use() - (double)m0) / (double)r->n;
    t0 = zl_now_ns();
    for (long i = 0; i < r->n; i += 2)
        zl_timer_node_stop(r->p, &t[i]);
    r->cancel_ns = zl_now_ns() - t0;
    for (long i = 1; i < r->n; i += 2)
        zl_timer_node_stop(r->p, &t[i]);
    free(t);
}

static void run_handles(void *arg)
{
    run_t *r = arg;
    unsigned seed = 12345;
    zl_timer_t **h;
    size_t m0;
    uint64_t t0;

    m0 = heap_in_use();
    h = malloc((size_t)r->n * sizeof(*h));
    if (!h)
        abort();
    t0 = zl_now_ns();
    for (long i = 0; i < r->n; i++)
        if (zl_poller_add_timer(r->p, next_delay(&seed), on_timer, NULL,
                                NULL, &h[i]) != 0)
            abort();
    r->add_ns = zl_now_ns() - t0;
    r->bytes = ((double)heap_in_use() - (double)m0) / (double)r->n;
    t0 = zl_now_ns();
    for (long i = 0; i < r->n; i += 2)
        zl_timer_cancel(h[i]);
    r->cancel_ns = zl_now_ns() - t0;
    for (long i = 1; i < r->n; i += 2)
        zl_timer_cancel(h[i]);
    free(h);
}

static int bench(const char *impl, zl_task_fn fn, long n)
{
    run_t r = {NULL, n, 0, 0, 0};
    double a, c;

    if (zl_poller_new(&r.p, NULL) < 0 || zl_poller_sync(r.p, fn, &r) != 0)
        return 1;
    zl_poller_free(r.p);
    a = (double)r.add_ns / (double)n;
    c = (double)r.cancel_ns / (double)((n + 1) / 2);
    printf("bench=timers impl=%s n=%ld add_ns=%.1f cancel_ns=%.1f "
           "ns_per_timer_add+cancel=%.1f bytes_per_timer=%.1f\n",
           impl, n, a, c, a + c, r.bytes);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc == 2 ? atol(argv[1]) : 0;

    if (n < 2) {
        fprintf(stderr, "usage: %s N  (N >= 2)\n", argv[0]);
        return 2;
    }
    if (bench("zltk", run_nodes, n) != 0 ||
        bench("zltk-handle", run_handles, n) != 0)
        return 1;
    return 0;
}
