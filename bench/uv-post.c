/* bench/uv-post — the libuv twin of bench/post.c (issue 13).
 *
 *   bench-post-uv N [PRODUCERS]
 *
 * What libuv users do for cross-thread work: a mutex-protected queue of
 * (fn, arg) records and uv_async_send(); the async callback swaps the whole
 * queue out under the lock and runs it.  The queue is an array, not a list
 * of malloc'd nodes, so the baseline is not slowed by the allocator.
 * The loop runs on its own thread.  Prints the same line as bench-post with impl=libuv; wakeups = runs of the
 * async callback.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

typedef struct {
    void (*fn)(void *);
    void *arg;
} item_t;

/* A growable array; the async callback swaps the filled one for the spare
 * (empty) one under the lock, so posting allocates nothing once both have
 * grown. */
typedef struct {
    item_t *v;
    size_t len, cap;
} queue_t;

static uv_loop_t loop;
static uv_async_t async;
static uv_mutex_t mu;
static queue_t q_in, q_spare;
static atomic_long done_count;
static atomic_int stopping;
static atomic_ullong async_runs;

typedef struct {
    long n;
    uint64_t ns;
} prod_t;

static void task(void *arg)
{
    (void)arg;
    atomic_fetch_add_explicit(&done_count, 1, memory_order_relaxed);
}

static void post(void (*fn)(void *), void *arg)
{
    uv_mutex_lock(&mu);
    if (q_in.len == q_in.cap) {
        size_t cap = q_in.cap ? q_in.cap * 2 : 1024;
        item_t *v = realloc(q_in.v, cap * sizeof(*v));
        if (!v)
            abort();
        q_in.v = v;
        q_in.cap = cap;
    }
    q_in.v[q_in.len++] = (item_t){fn, arg};
    uv_mutex_unlock(&mu);
    uv_async_send(&async);
}

static void on_async(uv_async_t *h)
{
    queue_t run;

    atomic_fetch_add(&async_runs, 1);
    uv_mutex_lock(&mu);
    run = q_in;
    q_in = q_spare;
    uv_mutex_unlock(&mu);
    for (size_t i = 0; i < run.len; i++)
        run.v[i].fn(run.v[i].arg);
    run.len = 0;
    uv_mutex_lock(&mu);
    q_spare = run;
    uv_mutex_unlock(&mu);
    if (atomic_load(&stopping))
        uv_close((uv_handle_t *)h, NULL);
}

static void *loop_thread(void *arg)
{
    (void)arg;
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

static void *producer(void *arg)
{
    prod_t *pr = arg;
    uint64_t t0 = uv_hrtime();
    for (long i = 0; i < pr->n; i++)
        post(task, NULL);
    pr->ns = uv_hrtime() - t0;
    return NULL;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 0;
    long np = argc > 2 ? atol(argv[2]) : 1;
    pthread_t th[64], lt;
    prod_t pr[64];
    uint64_t t0, wall, prod_ns = 0;
    unsigned long long runs;

    if (argc < 2 || argc > 3 || n < 1 || np < 1 || np > 64 || n < np) {
        fprintf(stderr, "usage: %s N [PRODUCERS]  (N >= PRODUCERS, "
                        "1..64 producers)\n", argv[0]);
        return 2;
    }
    uv_loop_init(&loop);
    uv_mutex_init(&mu);
    uv_async_init(&loop, &async, on_async);
    pthread_create(&lt, NULL, loop_thread, NULL);
    t0 = uv_hrtime();
    for (long i = 0; i < np; i++) {
        pr[i].n = n / np + (i < n % np);
        pthread_create(&th[i], NULL, producer, &pr[i]);
    }
    for (long i = 0; i < np; i++) {
        pthread_join(th[i], NULL);
        prod_ns += pr[i].ns;
    }
    while (atomic_load(&done_count) < n)
        sched_yield();
    wall = uv_hrtime() - t0;
    runs = atomic_load(&async_runs); /* all tasks ran */
    atomic_store(&stopping, 1);
    uv_async_send(&async);
    pthread_join(lt, NULL);
    printf("bench=post impl=libuv producers=%ld tasks=%ld wall_s=%.4f "
           "tasks_per_s=%.0f producer_ns_per_post=%.1f wakeups=%llu\n",
           np, n, (double)wall / 1e9, (double)n / ((double)wall / 1e9),
           (double)prod_ns / (double)n, runs);
    uv_loop_close(&loop);
    uv_mutex_destroy(&mu);
    free(q_in.v);
    free(q_spare.v);
    return 0;
}
