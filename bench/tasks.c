/* bench/tasks — cross-thread task posting and timer cost.
 *
 *   bench-tasks [--tasks N] [--producers N] [--timers N] [--rounds N]
 *
 * Prints, per round and as medians:
 *   - zltk: N tasks posted from P producer threads to one poller
 *     (tasks/s end to end, and loop wake-ups per 1000 tasks);
 *   - GLib baseline: the same through g_main_context_invoke() to a
 *     GMainLoop thread;
 *   - timers: arming N one-shot timers on one poller and running them all.
 * Compare ratios within one run: the machines are shared and noisy.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <zltk/zltk.h>

static long n_tasks = 2000000, n_producers = 1, n_timers = 1000000;
static int rounds = 5;

static atomic_long done_count;
static long target;

static void zl_task(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&done_count, 1, memory_order_relaxed);
}

static gboolean glib_task(gpointer arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&done_count, 1, memory_order_relaxed);
    return G_SOURCE_REMOVE;
}

typedef struct {
    zl_poller_t *p;
    GMainContext *ctx;
    long n;
} prod_t;

static void *zl_producer(void *arg)
{
    prod_t *pr = arg;
    for (long i = 0; i < pr->n; i++)
        zl_poller_async(pr->p, zl_task, NULL);
    return NULL;
}

static void *glib_producer(void *arg)
{
    prod_t *pr = arg;
    for (long i = 0; i < pr->n; i++)
        g_main_context_invoke(pr->ctx, glib_task, NULL);
    return NULL;
}

static void wait_done(void)
{
    while (atomic_load(&done_count) < target)
        sched_yield();
}

static double run_producers(void *(*fn)(void *), zl_poller_t *p,
                            GMainContext *ctx)
{
    pthread_t th[64];
    prod_t pr = {p, ctx, n_tasks / n_producers};
    uint64_t t0;

    atomic_store(&done_count, 0);
    target = pr.n * n_producers;
    t0 = zl_now_ns();
    for (long i = 0; i < n_producers; i++)
        pthread_create(&th[i], NULL, fn, &pr);
    for (long i = 0; i < n_producers; i++)
        pthread_join(th[i], NULL);
    wait_done();
    return (double)target / ((double)(zl_now_ns() - t0) / 1e9);
}

static gpointer glib_loop_thread(gpointer arg)
{
    GMainLoop *loop = arg;
    g_main_context_push_thread_default(g_main_loop_get_context(loop));
    g_main_loop_run(loop);
    g_main_context_pop_thread_default(g_main_loop_get_context(loop));
    return NULL;
}

static gboolean quit_loop(gpointer arg)
{
    g_main_loop_quit(arg);
    return G_SOURCE_REMOVE;
}

static atomic_long timers_fired;
static uint64_t timer_cb(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&timers_fired, 1, memory_order_relaxed);
    return 0;
}

static uint64_t arm_ns;
static void arm_timers(void *arg)
{
    zl_poller_t *p = arg;
    uint64_t t0 = zl_now_ns();
    for (long i = 0; i < n_timers; i++)
        zl_poller_add_timer(p, (uint64_t)(i % 1000), timer_cb, NULL, NULL,
                            NULL);
    arm_ns = zl_now_ns() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    double zl_rate[32], gl_rate[32], wake[32], arm[32], fire[32];
    zl_poller_t *p;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tasks") && i + 1 < argc)
            n_tasks = atol(argv[++i]);
        else if (!strcmp(argv[i], "--producers") && i + 1 < argc)
            n_producers = atol(argv[++i]);
        else if (!strcmp(argv[i], "--timers") && i + 1 < argc)
            n_timers = atol(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--tasks N] [--producers N] "
                            "[--timers N] [--rounds N]\n", argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || rounds > 32 || n_producers < 1 || n_producers > 64 ||
        n_tasks < n_producers) {
        fprintf(stderr, "bench-tasks: rounds 1..32, producers 1..64\n");
        return 2;
    }
    if (zl_poller_new(&p, NULL) < 0)
        return 1;

    GMainContext *ctx = g_main_context_new();
    GMainLoop *loop = g_main_loop_new(ctx, FALSE);
    GThread *gth = g_thread_new("glib-loop", glib_loop_thread, loop);

    printf("bench-tasks: %ld tasks from %ld producer(s), %ld timers, "
           "backend %s\n",
           n_tasks, n_producers, n_timers, zl_poller_backend(p));
    for (int r = 0; r < rounds; r++) {
        zl_poller_stats_t s0, s1;

        zl_poller_get_stats(p, &s0);
        zl_rate[r] = run_producers(zl_producer, p, NULL);
        zl_poller_get_stats(p, &s1);
        wake[r] = (double)(s1.wakeups - s0.wakeups) * 1000.0 / (double)target;
        gl_rate[r] = run_producers(glib_producer, NULL, ctx);

        atomic_store(&timers_fired, 0);
        uint64_t t0 = zl_now_ns();
        zl_poller_sync(p, arm_timers, p);
        while (atomic_load(&timers_fired) < n_timers)
            g_usleep(1000);
        arm[r] = (double)arm_ns / (double)n_timers;
        fire[r] = (double)(zl_now_ns() - t0) / 1e9;
        printf("round %d: zltk %.2f M tasks/s (%.2f wake-ups/1000 tasks), "
               "glib %.2f M tasks/s, ratio %.1fx; %ld timers: arm %.0f ns "
               "each, all fired in %.2f s\n",
               r + 1, zl_rate[r] / 1e6, wake[r], gl_rate[r] / 1e6,
               zl_rate[r] / gl_rate[r], n_timers, arm[r], fire[r]);
    }
    double ratios[32];
    for (int r = 0; r < rounds; r++)
        ratios[r] = zl_rate[r] / gl_rate[r];
    printf("median: zltk %.2f M tasks/s, glib %.2f M tasks/s, ratio %.1fx, "
           "%.2f wake-ups/1000 tasks, timer arm %.0f ns, fire-all %.2f s\n",
           median(zl_rate, rounds) / 1e6, median(gl_rate, rounds) / 1e6,
           median(ratios, rounds), median(wake, rounds), median(arm, rounds),
           median(fire, rounds));

    g_main_context_invoke(ctx, quit_loop, loop);
    g_thread_join(gth);
    g_main_loop_unref(loop);
    g_main_context_unref(ctx);
    zl_poller_free(p);
    return 0;
}
