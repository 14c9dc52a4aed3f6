/* bench/timers — timer add and cancel cost on one zltk poller (issue 13).
 *
 *   bench-timers N
 *
 * On the poller thread (inside zl_poller_sync()): add N one-shot timers
 * with pseudo-random delays in [0, 10 s] (fixed seed, the same sequence as
 * bench/uv-timers.c), each with a handle, then cancel every other one.
 * Prints one line:
 *   bench=timers impl=zltk n=N add_ns=... cancel_ns=...
 *   ns_per_timer_add+cancel=... bytes_per_timer=...
 * add_ns is the mean per add, cancel_ns the mean per cancel (N/2 of them);
 * bytes_per_timer is the heap in use (mallinfo2(): uordblks + hblkhd, all
 * arenas) after the N adds minus before, divided by N.  The caller's array
 * of N handle pointers is allocated before the first reading.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/zltk.h>

static long n;
static zl_timer_t **handles;
static uint64_t add_ns, cancel_ns;
static double bytes;

static uint64_t on_timer(void *arg)
{
    (void)arg;
    return 0;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void run(void *arg)
{
    zl_poller_t *p = arg;
    unsigned seed = 12345;
    size_t m0, m1;
    uint64_t t0;

    m0 = heap_in_use();
    t0 = zl_now_ns();
    for (long i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        if (zl_poller_add_timer(p, (seed >> 8) % 10001u, on_timer, NULL,
                                NULL, &handles[i]) != 0)
            abort();
    }
    add_ns = zl_now_ns() - t0;
    m1 = heap_in_use();
    bytes = ((double)m1 - (double)m0) / (double)n;
    t0 = zl_now_ns();
    for (long i = 0; i < n; i += 2)
        zl_timer_cancel(handles[i]);
    cancel_ns = zl_now_ns() - t0;
    for (long i = 1; i < n; i += 2)
        zl_timer_release(handles[i]);
}

int main(int argc, char **argv)
{
    zl_poller_t *p;
    long ncancel;
    double a, c;

    n = argc == 2 ? atol(argv[1]) : 0;
    if (n < 2) {
        fprintf(stderr, "usage: %s N  (N >= 2)\n", argv[0]);
        return 2;
    }
    handles = calloc((size_t)n, sizeof(*handles));
    if (!handles || zl_poller_new(&p, NULL) < 0)
        return 1;
    if (zl_poller_sync(p, run, p) != 0)
        return 1;
    ncancel = (n + 1) / 2;
    a = (double)add_ns / (double)n;
    c = (double)cancel_ns / (double)ncancel;
    printf("bench=timers impl=zltk n=%ld add_ns=%.1f cancel_ns=%.1f "
           "ns_per_timer_add+cancel=%.1f bytes_per_timer=%.1f\n",
           n, a, c, a + c, bytes);
    zl_poller_free(p);
    free(handles);
    return 0;
}
