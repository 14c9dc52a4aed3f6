/* bench/post — cross-thread posting to one zltk poller (issue 13).
 *
 *   bench-post N [PRODUCERS]
 *
 * P producer threads (default 1) post N no-op tasks in total with
 * zl_poller_async() to ONE poller; the program waits until all have run and
 * prints one line:
 *   bench=post impl=zltk producers=P tasks=N wall_s=... tasks_per_s=...
 *   producer_ns_per_post=... wakeups=...
 * wall_s runs from the start of the producers to the last task run;
 * producer_ns_per_post is the mean time a producer spends in one post;
 * wakeups is how many times the poller thread woke up (the "loops" counter
 * of zl_poller_get_stats(), before and after; the poller has nothing else to
 * do, so every loop turn in between was a wake-up for tasks);
 * eventfd_writes is the "wakeups" counter of the stats: the wake-up writes
 * producers made (the poller is woken only when it sleeps).
 * The twin is bench/uv-post.c (impl=libuv).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/zltk.h>

static atomic_long done_count;

typedef struct {
    zl_poller_t *p;
    long n;
    uint64_t ns;
} prod_t;

static void task(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&done_count, 1, memory_order_relaxed);
}

static void *producer(void *arg)
{
    prod_t *pr = arg;
    uint64_t t0 = zl_now_ns();
    for (long i = 0; i < pr->n; i++)
        if (zl_poller_async(pr->p, task, NULL) != 0)
            abort();
    pr->ns = zl_now_ns() - t0;
    return NULL;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 0;
    long np = argc > 2 ? atol(argv[2]) : 1;
    pthread_t th[64];
    prod_t pr[64];
    zl_poller_t *p;
    zl_poller_stats_t s0, s1;
    uint64_t t0, wall, prod_ns = 0;

    if (argc < 2 || argc > 3 || n < 1 || np < 1 || np > 64 || n < np) {
        fprintf(stderr, "usage: %s N [PRODUCERS]  (N >= PRODUCERS, "
                        "1..64 producers)\n", argv[0]);
        return 2;
    }
    if (zl_poller_new(&p, NULL) < 0)
        return 1;
    zl_poller_get_stats(p, &s0);
    t0 = zl_now_ns();
    for (long i = 0; i < np; i++) {
        pr[i].p = p;
        pr[i].n = n / np + (i < n % np);
        pthread_create(&th[i], NULL, producer, &pr[i]);
    }
    for (long i = 0; i < np; i++) {
        pthread_join(th[i], NULL);
        prod_ns += pr[i].ns;
    }
    while (atomic_load(&done_count) < n)
        sched_yield();
    wall = zl_now_ns() - t0;
    zl_poller_get_stats(p, &s1);
    printf("bench=post impl=zltk producers=%ld tasks=%ld wall_s=%.4f "
           "tasks_per_s=%.0f producer_ns_per_post=%.1f wakeups=%llu "
           "eventfd_writes=%llu\n",
           np, n, (double)wall / 1e9, (double)n / ((double)wall / 1e9),
           (double)prod_ns / (double)n,
           (unsigned long long)(s1.loops - s0.loops),
           (unsigned long long)(s1.wakeups - s0.wakeups));
    zl_poller_free(p);
    return 0;
}
