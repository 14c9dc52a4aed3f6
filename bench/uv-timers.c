/* bench/uv-timers — the libuv twin of bench/timers.c (issue 13).
 *
 *   bench-timers-uv N
 *
 * On the loop thread (before uv_run()): uv_timer_init() and
 * uv_timer_start() N timers with the same pseudo-random delays in
 * [0, 10 s] as bench/timers.c, then uv_timer_stop() every other one.
 * Prints the same line as bench-timers with impl=libuv.  bytes_per_timer
 * counts the uv_timer_t storage the caller must provide (one array of N,
 * allocated after the first mallinfo2() reading) plus whatever libuv
 * allocates (nothing: its heap is intrusive).
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

static void on_timer(uv_timer_t *t)
{
    (void)t;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

int main(int argc, char **argv)
{
    long n = argc == 2 ? atol(argv[1]) : 0;
    unsigned seed = 12345;
    uv_loop_t loop;
    uv_timer_t *t;
    size_t m0, m1;
    uint64_t t0, add_ns, cancel_ns;
    double a, c;

    if (n < 2) {
        fprintf(stderr, "usage: %s N  (N >= 2)\n", argv[0]);
        return 2;
    }
    uv_loop_init(&loop);
    m0 = heap_in_use();
    t = malloc((size_t)n * sizeof(*t));
    if (!t)
        return 1;
    t0 = uv_hrtime();
    for (long i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        uv_timer_init(&loop, &t[i]);
        uv_timer_start(&t[i], on_timer, (seed >> 8) % 10001u, 0);
    }
    add_ns = uv_hrtime() - t0;
    m1 = heap_in_use();
    t0 = uv_hrtime();
    for (long i = 0; i < n; i += 2)
        uv_timer_stop(&t[i]);
    cancel_ns = uv_hrtime() - t0;
    a = (double)add_ns / (double)n;
    c = (double)cancel_ns / (double)((n + 1) / 2);
    printf("bench=timers impl=libuv n=%ld add_ns=%.1f cancel_ns=%.1f "
           "ns_per_timer_add+cancel=%.1f bytes_per_timer=%.1f\n",
           n, a, c, a + c, ((double)m1 - (double)m0) / (double)n);
    for (long i = 0; i < n; i++)
        uv_close((uv_handle_t *)&t[i], NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    free(t);
    return 0;
}
