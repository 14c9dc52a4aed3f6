/* zltk tests — worker pool: where jobs run, cancellation, teardown. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "test.h"

#define WAIT_MS 5000u

/* One job's record.  Plain fields are written by work/done and read by the
 * test thread only after it saw `destroyed` (an atomic), which orders them. */
typedef struct job {
    atomic_int *step;        /* shared sequence for ordering checks */
    atomic_int *work_gate;   /* work waits for it when set */
    atomic_int *done_gate;   /* done waits for it when set */
    atomic_int work_started, work_ran, done_started, done_ran, destroyed;
    int work_at, done_at, destroy_at;
    char work_thread[32], done_thread[32];
    zl_poller_t *work_poller, *done_poller;
    /* zl_work_cancel() from inside done. */
    zl_work_t *self;
    atomic_int self_ready;
    int cancel_in_done; /* -1: not tried */
} job_t;

static void job_init(job_t *j, atomic_int *step)
{
    memset(j, 0, sizeof(*j));
    j->step = step;
    j->cancel_in_done = -1;
}

static int next_step(job_t *j)
{
    return j->step ? atomic_fetch_add(j->step, 1) + 1 : 0;
}

static void job_work(void *arg)
{
    job_t *j = arg;

    atomic_store(&j->work_started, 1);
    if (j->work_gate)
        zl_test_wait_flag(j->work_gate, WAIT_MS);
    j->work_at = next_step(j);
    g_strlcpy(j->work_thread, zl_thread_name(), sizeof(j->work_thread));
    j->work_poller = zl_poller_current();
    atomic_fetch_add(&j->work_ran, 1);
}

static void job_done(void *arg)
{
    job_t *j = arg;

    atomic_store(&j->done_started, 1);
    if (j->done_gate)
        zl_test_wait_flag(j->done_gate, WAIT_MS);
    j->done_at = next_step(j);
    g_strlcpy(j->done_thread, zl_thread_name(), sizeof(j->done_thread));
    j->done_poller = zl_poller_current();
    if (atomic_load(&j->self_ready))
        j->cancel_in_done = zl_work_cancel(j->self);
    atomic_fetch_add(&j->done_ran, 1);
}

static void job_destroy(void *arg)
{
    job_t *j = arg;

    j->destroy_at = next_step(j);
    atomic_fetch_add(&j->destroyed, 1);
}

/* Wait (bounded) until *v >= want; returns the value. */
static int wait_int(atomic_int *v, int want)
{
    uint64_t end = zl_now_ms() + WAIT_MS * zl_test_slow();
    int x;

    while ((x = atomic_load(v)) < want && zl_now_ms() < end)
        zl_test_sleep_ms(1);
    return x;
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

/* ------------------------------------------------------------ basics */

static void test_basic(void)
{
    zl_worker_pool_t *pool = NULL;
    zl_poller_t *reply = NULL;
    zl_work_t *h = NULL;
    atomic_int step = 0;
    job_t j;

    job_init(&j, &step);
    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 2), 0);
    CU_ASSERT_EQUAL(zl_worker_pool_size(pool), 2);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&reply, NULL), 0);

    CU_ASSERT_EQUAL_FATAL(zl_worker_submit(pool, reply, job_work, job_done,
                                           job_destroy, &j, &h), 0);
    CU_ASSERT_PTR_NOT_NULL(h);
    CU_ASSERT_TRUE(zl_test_wait_flag(&j.destroyed, WAIT_MS));
    CU_ASSERT_EQUAL(strncmp(j.work_thread, "zl-worker ", 10), 0);
    CU_ASSERT_PTR_NULL(j.work_poller);
    CU_ASSERT_PTR_EQUAL(j.done_poller, reply);
    CU_ASSERT_STRING_EQUAL(j.done_thread, zl_poller_name(reply));
    CU_ASSERT_EQUAL(j.work_at, 1);
    CU_ASSERT_EQUAL(j.done_at, 2);
    CU_ASSERT_EQUAL(j.destroy_at, 3);
    /* Done already ran: cancelling now says so. */
    CU_ASSERT_FALSE(zl_work_cancel(h));

    zl_worker_pool_free(pool);
    zl_poller_free(reply);
    CU_ASSERT_EQUAL(atomic_load(&j.work_ran), 1);
    CU_ASSERT_EQUAL(atomic_load(&j.done_ran), 1);
    CU_ASSERT_EQUAL(atomic_load(&j.destroyed), 1);
}

static void test_bad_args(void)
{
    zl_worker_pool_t *pool = NULL;
    zl_work_t *h = (zl_work_t *)&h;

    CU_ASSERT_EQUAL(zl_worker_pool_new(NULL, 1), -EINVAL);
    CU_ASSERT_EQUAL(zl_worker_submit(NULL, NULL, job_work, NULL, NULL, NULL,
                                     &h), -EINVAL);
    CU_ASSERT_PTR_NULL(h);
    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 1), 0);
    h = (zl_work_t *)&h;
    CU_ASSERT_EQUAL(zl_worker_submit(pool, NULL, NULL, NULL, NULL, NULL, &h),
                    -EINVAL);
    CU_ASSERT_PTR_NULL(h);
    CU_ASSERT_FALSE(zl_work_cancel(NULL));
    zl_work_release(NULL);
    zl_worker_pool_free(pool);
    zl_worker_pool_free(NULL);
}

/* Every worker names its thread "zl-worker N": hold N jobs at once. */
typedef struct names_ctx {
    atomic_int running;
    int n;
    char names[8][32];
    atomic_int next;
} names_ctx_t;

static void names_work(void *arg)
{
    names_ctx_t *c = arg;
    uint64_t end = zl_now_ms() + WAIT_MS * zl_test_slow();
    int slot = atomic_fetch_add(&c->next, 1);

    g_strlcpy(c->names[slot], zl_thread_name(), sizeof(c->names[slot]));
    atomic_fetch_add(&c->running, 1);
    while (atomic_load(&c->running) < c->n && zl_now_ms() < end)
        zl_test_sleep_ms(1);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_names_and_size(void)
{
    zl_worker_pool_t *pool = NULL;
    names_ctx_t c = {.n = 3};

    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 0), 0);
    CU_ASSERT_EQUAL(zl_worker_pool_size(pool),
                    online_cpus() > 2 ? online_cpus() : 2);
    zl_worker_pool_free(pool);

    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 3), 0);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(zl_worker_submit(pool, NULL, names_work, NULL, NULL,
                                         &c, NULL), 0);
    /* Queued jobs would be cancelled by free: let all three start. */
    CU_ASSERT_EQUAL(wait_int(&c.running, 3), 3);
    zl_worker_pool_free(pool);
    CU_ASSERT_EQUAL_FATAL(atomic_load(&c.running), 3);
    qsort(c.names, 3, sizeof(c.names[0]), cmp_str);
    CU_ASSERT_STRING_EQUAL(c.names[0], "zl-worker 0");
    CU_ASSERT_STRING_EQUAL(c.names[1], "zl-worker 1");
    CU_ASSERT_STRING_EQUAL(c.names[2], "zl-worker 2");
}

/* reply_to NULL off any poller: done runs on the worker, after work. */
static void test_done_on_worker(void)
{
    zl_worker_pool_t *pool = NULL;
    atomic_int step = 0;
    job_t j;

    job_init(&j, &step);
    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 2), 0);
    CU_ASSERT_EQUAL(zl_worker_submit(pool, NULL, job_work, job_done,
                                     job_destroy, &j, NULL), 0);
    CU_ASSERT_TRUE(zl_test_wait_flag(&j.destroyed, WAIT_MS));
    CU_ASSERT_EQUAL(atomic_load(&j.done_ran), 1);
    CU_ASSERT_PTR_NULL(j.done_poller);
    CU_ASSERT_EQUAL(strncmp(j.done_thread, "zl-worker ", 10), 0);
    CU_ASSERT_STRING_EQUAL(j.done_thread, j.work_thread);
    CU_ASSERT_TRUE(j.work_at < j.done_at && j.done_at < j.destroy_at);
    zl_worker_pool_free(pool);
    CU_ASSERT_EQUAL(atomic_load(&j.destroyed), 1);
}

/* reply_to NULL on a poller: done comes back to that poller. */
typedef struct submit_ctx {
    zl_worker_pool_t *pool;
    job_t *job;
    int rc;
} submit_ctx_t;

static void submit_here(void *arg)
{
    submit_ctx_t *s = arg;

    s->rc = zl_worker_submit(s->pool, NULL, job_work, job_done, job_destroy,
                             s->job, NULL);
}

static void test_reply_current(void)
{
    zl_worker_pool_t *pool = NULL;
    zl_poller_t *p = NULL;
    job_t j;
    submit_ctx_t s;

    job_init(&j, NULL);
    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 1), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, NULL), 0);
    s = (submit_ctx_t){pool, &j, -1};
    CU_ASSERT_EQUAL_FATAL(zl_poller_sync(p, submit_here, &s), 0);
    CU_ASSERT_EQUAL(s.rc, 0);
    CU_ASSERT_TRUE(zl_test_wait_flag(&j.destroyed, WAIT_MS));
    CU_ASSERT_EQUAL(atomic_load(&j.done_ran), 1);
    CU_ASSERT_PTR_EQUAL(j.done_poller, p);
    zl_worker_pool_free(pool);
    zl_poller_free(p);
}

/* No done function: destroy still runs once. */
static void test_no_done(void)
{
    zl_worker_pool_t *pool = NULL;
    zl_poller_t *p = NULL;
    zl_work_t *h = NULL;
    job_t j;

    job_init(&j, NULL);
    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 1), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, NULL), 0);
    CU_ASSERT_EQUAL(zl_worker_submit(pool, p, job_work, NULL, job_destroy, &j,
                                     &h), 0);
    CU_ASSERT_TRUE(zl_test_wait_flag(&j.destroyed, WAIT_MS));
    CU_ASSERT_EQUAL(atomic_load(&j.work_ran), 1);
    CU_ASSERT_FALSE(zl_work_cancel(h)); /* the job completed */
    /* No destroy either: nothing runs but work. */
    CU_ASSERT_EQUAL(zl_worker_submit(pool, NULL, job_work, NULL, NULL, &j,
                                     NULL), 0);
    CU_ASSERT_EQUAL(wait_int(&j.work_ran, 2), 2);
    zl_worker_pool_free(pool);
    zl_poller_free(p);
    CU_ASSERT_EQUAL(atomic_load(&j.work_ran), 2);
    CU_ASSERT_EQUAL(atomic_load(&j.destroyed), 1);
}

/* ------------------------------------------------------------ volume */

#define MANY_THREADS 4
#define MANY_PER_THREAD 2500

typedef struct many_shared {
    zl_worker_pool_t *pool;
    zl_poller_t *pollers[2];
    atomic_long work, done, destroyed, misplaced, failed;
} many_shared_t;

typedef struct many_job {
    many_shared_t *sh;
    zl_poller_t *want; /* NULL: done on the worker */
} many_job_t;

static void many_work(void *arg)
{
    many_job_t *m = arg;

    if (zl_poller_current())
        atomic_fetch_add(&m->sh->misplaced, 1);
    atomic_fetch_add(&m->sh->work, 1);
}

static void many_done(void *arg)
{
    many_job_t *m = arg;

    if (zl_poller_current() != m->want)
        atomic_fetch_add(&m->sh->misplaced, 1);
    atomic_fetch_add(&m->sh->done, 1);
}

static void many_destroy(void *arg)
{
    many_job_t *m = arg;

    atomic_fetch_add(&m->sh->destroyed, 1);
    free(m);
}

static void *many_submitter(void *arg)
{
    many_shared_t *sh = arg;

    for (int i = 0; i < MANY_PER_THREAD; i++) {
        many_job_t *m = malloc(sizeof(*m));

        if (!m) {
            atomic_fetch_add(&sh->failed, 1);
            continue;
        }
        m->sh = sh;
        m->want = i % 3 == 2 ? NULL : sh->pollers[i % 2];
        if (zl_worker_submit(sh->pool, m->want, many_work, many_done,
                             many_destroy, m, NULL) != 0) {
            atomic_fetch_add(&sh->failed, 1);
            free(m);
        }
    }
    return NULL;
}

static void test_many(void)
{
    const long total = MANY_THREADS * MANY_PER_THREAD;
    many_shared_t sh = {0};
    pthread_t th[MANY_THREADS];

    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&sh.pool, 3), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&sh.pollers[0], NULL), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&sh.pollers[1], NULL), 0);
    for (int t = 0; t < MANY_THREADS; t++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, many_submitter, &sh),
                              0);
    for (int t = 0; t < MANY_THREADS; t++)
        pthread_join(th[t], NULL);
    CU_ASSERT_EQUAL(atomic_load(&sh.failed), 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&sh.destroyed, total, 20000), total);
    zl_worker_pool_free(sh.pool);
    zl_poller_free(sh.pollers[0]);
    zl_poller_free(sh.pollers[1]);
    CU_ASSERT_EQUAL(atomic_load(&sh.work), total);
    CU_ASSERT_EQUAL(atomic_load(&sh.done), total);
    CU_ASSERT_EQUAL(atomic_load(&sh.destroyed), total);
    CU_ASSERT_EQUAL(atomic_load(&sh.misplaced), 0);
}

/* ------------------------------------------------------------ cancel */

/* Queued behind blocked workers: cancel wins, nothing but destroy runs. */
static void test_cancel_queued(void)
{
    zl_worker_pool_t *pool = NULL;
    zl_poller_t *p = NULL;
    atomic_int gate = 0;
    job_t g[2], x, y;
    zl_work_t *hx = NULL;

    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 2), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, NULL), 0);
    for (int i = 0; i < 2; i++) {
        job_init(&g[i], NULL);
        g[i].work_gate = &gate;
        CU_ASSERT_EQUAL(zl_worker_submit(pool, p, job_work, job_done,
                                         job_destroy, &g[i], NULL), 0);
    }
    CU_ASSERT_TRUE(zl_test_wait_flag(&g[0].work_started, WAIT_MS));
    CU_ASSERT_TRUE(zl_test_wait_flag(&g[1].work_started, WAIT_MS));

    job_init(&x, NULL);
    job_init(&y, NULL);
    CU_ASSERT_EQUAL(zl_worker_submit(pool, p, job_work, job_done, job_destroy,
                                     &x, &hx), 0);
    CU_ASSERT_EQUAL(zl_worker_submit(pool, p, job_work, job_done, job_destroy,
                                     &y, NULL), 0);
    CU_ASSERT_TRUE(zl_work_cancel(hx));
    atomic_store(&gate, 1);

    CU_ASSERT_TRUE(zl_test_wait_flag(&y.destroyed, WAIT_MS));
    CU_ASSERT_TRUE(zl_test_wait_flag(&x.destroyed, WAIT_MS));
    CU_ASSERT_TRUE(zl_test_wait_flag(&g[0].destroyed, WAIT_MS));
    CU_ASSERT_TRUE(zl_test_wait_flag(&g[1].destroyed, WAIT_MS));
    zl_worker_pool_free(pool);
    zl_poller_free(p);
    CU_ASSERT_EQUAL(atomic_load(&x.work_ran), 0);
    CU_ASSERT_EQUAL(atomic_load(&x.done_ran), 0);
    CU_ASSERT_EQUAL(atomic_load(&x.destroyed), 1);
    CU_ASSERT_EQUAL(atomic_load(&y.work_ran), 1);
    CU_ASSERT_EQUAL(atomic_load(&y.done_ran), 1);
    CU_ASSERT_EQUAL(atomic_load(&y.destroyed), 1);
}

typedef struct cancel_ctx {
    zl_work_t *h;
    int result;
    zl_poller_t *on;
} cancel_ctx_t;

static void cancel_task(void *arg)
{
    cancel_ctx_t *c = arg;

    c->on = zl_poller_current();
    c->result = zl_work_cancel(c->h);
}

/* Cancelled from the reply poller while work runs: work finishes, done
 * never runs, cancel says so. */
static void test_cancel_running_from_reply(void)
{
    zl_worker_pool_t *pool = NULL;
    zl_poller_t *p = NULL;
    atomic_int gate = 0;
    cancel_ctx_t c = {.result = -1};
    job_t j;

    job_init(&j, NULL);
    j.work_gate = &gate;
    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 1), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, NULL), 0);
    CU_ASSERT_EQUAL(zl_worker_submit(pool, p, job_work, job_done, job_destroy,
                                     &j, &c.h), 0);
    CU_ASSERT_TRUE(zl_test_wait_flag(&j.work_started, WAIT_MS));
    CU_ASSERT_EQUAL(zl_poller_sync(p, cancel_task, &c), 0);
    CU_ASSERT_PTR_EQUAL(c.on, p);
    CU_ASSERT_EQUAL(c.result, 1);
    atomic_store(&gate, 1);
    CU_ASSERT_TRUE(zl_test_wait_flag(&j.destroyed, WAIT_MS));
    zl_worker_pool_free(pool);
    zl_poller_free(p);
    CU_ASSERT_EQUAL(atomic_load(&j.work_ran), 1);
    CU_ASSERT_EQUAL(atomic_load(&j.done_ran), 0);
    CU_ASSERT_EQUAL(atomic_load(&j.destroyed), 1);
}

typedef struct blocker {
    atomic_int started, gate;
} blocker_t;

static void blocker_task(void *arg)
{
    blocker_t *b = arg;

    atomic_store(&b->started, 1);
    zl_test_wait_flag(&b->gate, WAIT_MS);
}

/* Work returned, completion queued behind a busy reply poller: cancel
 * still stops done. */
static void test_cancel_posted(void)
{
    zl_worker_pool_t *pool = NULL;
    zl_poller_t *p = NULL;
    blocker_t b = {0};
    zl_work_t *h = NULL;
    job_t j;

    job_init(&j, NULL);
    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 1), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_async(p, blocker_task, &b), 0);
    CU_ASSERT_TRUE(zl_test_wait_flag(&b.started, WAIT_MS));
    CU_ASSERT_EQUAL(zl_worker_submit(pool, p, job_work, job_done, job_destroy,
                                     &j, &h), 0);
    CU_ASSERT_TRUE(zl_test_wait_flag(&j.work_ran, WAIT_MS));
    CU_ASSERT_TRUE(zl_work_cancel(h));
    atomic_store(&b.gate, 1);
    CU_ASSERT_TRUE(zl_test_wait_flag(&j.destroyed, WAIT_MS));
    zl_worker_pool_free(pool);
    zl_poller_free(p);
    CU_ASSERT_EQUAL(atomic_load(&j.done_ran), 0);
    CU_ASSERT_EQUAL(atomic_load(&j.destroyed), 1);
}

/* Done is running on the reply poller: cancel from elsewhere returns false
 * and does not wait; done finishes; destroy runs once after it. */
static void test_cancel_while_done_runs(void)
{
    zl_worker_pool_t *pool = NULL;
    zl_poller_t *p = NULL;
    atomic_int gate = 0, step = 0;
    zl_work_t *h = NULL;
    job_t j;

    job_init(&j, &step);
    j.done_gate = &gate;
    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 1), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, NULL), 0);
    CU_ASSERT_EQUAL(zl_worker_submit(pool, p, job_work, job_done, job_destroy,
                                     &j, &h), 0);
    CU_ASSERT_TRUE(zl_test_wait_flag(&j.done_started, WAIT_MS));
    CU_ASSERT_FALSE(zl_work_cancel(h));
    CU_ASSERT_EQUAL(atomic_load(&j.destroyed), 0);
    atomic_store(&gate, 1);
    CU_ASSERT_TRUE(zl_test_wait_flag(&j.destroyed, WAIT_MS));
    zl_worker_pool_free(pool);
    zl_poller_free(p);
    CU_ASSERT_EQUAL(atomic_load(&j.done_ran), 1);
    CU_ASSERT_EQUAL(atomic_load(&j.destroyed), 1);
    CU_ASSERT_TRUE(j.done_at < j.destroy_at);
}

/* Cancelling from inside done: it is running, so false. */
static void test_cancel_inside_done(void)
{
    zl_worker_pool_t *pool = NULL;
    zl_poller_t *p = NULL;
    atomic_int gate = 0;
    job_t j;

    job_init(&j, NULL);
    j.work_gate = &gate;
    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 1), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, NULL), 0);
    CU_ASSERT_EQUAL(zl_worker_submit(pool, p, job_work, job_done, job_destroy,
                                     &j, &j.self), 0);
    atomic_store(&j.self_ready, 1);
    atomic_store(&gate, 1);
    CU_ASSERT_TRUE(zl_test_wait_flag(&j.destroyed, WAIT_MS));
    CU_ASSERT_EQUAL(j.cancel_in_done, 0);
    CU_ASSERT_EQUAL(atomic_load(&j.done_ran), 1);
    zl_worker_pool_free(pool);
    zl_poller_free(p);
}

/* The reply poller is freed while work runs: done is skipped, destroy
 * runs, and nothing touches the freed poller (ASan). */
static void test_reply_poller_freed(void)
{
    zl_worker_pool_t *pool = NULL;
    zl_poller_t *p = NULL;
    atomic_int gate = 0;
    zl_work_t *h = NULL;
    job_t j;

    job_init(&j, NULL);
    j.work_gate = &gate;
    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 1), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, NULL), 0);
    CU_ASSERT_EQUAL(zl_worker_submit(pool, p, job_work, job_done, job_destroy,
                                     &j, &h), 0);
    CU_ASSERT_TRUE(zl_test_wait_flag(&j.work_started, WAIT_MS));
    zl_poller_free(p);
    atomic_store(&gate, 1);
    CU_ASSERT_TRUE(zl_test_wait_flag(&j.destroyed, WAIT_MS));
    CU_ASSERT_EQUAL(atomic_load(&j.work_ran), 1);
    CU_ASSERT_EQUAL(atomic_load(&j.done_ran), 0);
    CU_ASSERT_TRUE(zl_work_cancel(h)); /* done never ran */
    zl_worker_pool_free(pool);
    CU_ASSERT_EQUAL(atomic_load(&j.destroyed), 1);
}

/* ------------------------------------------------------------ teardown */

#define NQUEUED 5

typedef struct free_ctx {
    zl_worker_pool_t *pool;
    job_t running, late;
    int late_rc;
    atomic_int freed;
} free_ctx_t;

static void free_running_work(void *arg)
{
    free_ctx_t *c = arg;

    job_work(&c->running);
    /* By now zl_worker_pool_free() has started: refused. */
    c->late_rc = zl_worker_submit(c->pool, NULL, job_work, job_done,
                                  job_destroy, &c->late, NULL);
}

static void free_running_done(void *arg)
{
    free_ctx_t *c = arg;

    job_done(&c->running);
}

static void free_running_destroy(void *arg)
{
    free_ctx_t *c = arg;

    job_destroy(&c->running);
}

static void *free_thread(void *arg)
{
    free_ctx_t *c = arg;

    zl_worker_pool_free(c->pool);
    atomic_store(&c->freed, 1);
    return NULL;
}

static void test_free_with_queued(void)
{
    free_ctx_t c;
    zl_poller_t *p = NULL;
    atomic_int gate = 0;
    job_t q[NQUEUED];
    zl_work_t *hq[2] = {NULL, NULL};
    pthread_t th;

    memset(&c, 0, sizeof(c));
    job_init(&c.running, NULL);
    job_init(&c.late, NULL);
    c.running.work_gate = &gate;
    c.late_rc = 1;
    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&c.pool, 1), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, NULL), 0);
    CU_ASSERT_EQUAL(zl_worker_submit(c.pool, p, free_running_work,
                                     free_running_done, free_running_destroy,
                                     &c, NULL), 0);
    CU_ASSERT_TRUE(zl_test_wait_flag(&c.running.work_started, WAIT_MS));
    for (int i = 0; i < NQUEUED; i++) {
        job_init(&q[i], NULL);
        CU_ASSERT_EQUAL(zl_worker_submit(c.pool, i % 2 ? p : NULL, job_work,
                                         job_done, job_destroy, &q[i],
                                         i < 2 ? &hq[i] : NULL), 0);
    }

    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, free_thread, &c), 0);
    /* Queued jobs are cancelled at once, while the running one holds
     * zl_worker_pool_free() back. */
    for (int i = 0; i < NQUEUED; i++)
        CU_ASSERT_TRUE(zl_test_wait_flag(&q[i].destroyed, WAIT_MS));
    CU_ASSERT_EQUAL(atomic_load(&c.freed), 0);
    atomic_store(&gate, 1);
    pthread_join(th, NULL);
    CU_ASSERT_EQUAL(atomic_load(&c.freed), 1);

    /* The running job's completion was posted and runs on the live poller. */
    CU_ASSERT_TRUE(zl_test_wait_flag(&c.running.destroyed, WAIT_MS));
    CU_ASSERT_EQUAL(atomic_load(&c.running.done_ran), 1);
    CU_ASSERT_PTR_EQUAL(c.running.done_poller, p);
    CU_ASSERT_EQUAL(c.late_rc, ZL_ESHUTDOWN);
    CU_ASSERT_EQUAL(atomic_load(&c.late.work_ran), 0);
    CU_ASSERT_EQUAL(atomic_load(&c.late.destroyed), 0); /* not called */
    for (int i = 0; i < NQUEUED; i++) {
        CU_ASSERT_EQUAL(atomic_load(&q[i].work_ran), 0);
        CU_ASSERT_EQUAL(atomic_load(&q[i].done_ran), 0);
        CU_ASSERT_EQUAL(atomic_load(&q[i].destroyed), 1);
    }
    /* Handles outlive the pool. */
    CU_ASSERT_TRUE(zl_work_cancel(hq[0]));
    zl_work_release(hq[1]);
    zl_poller_free(p);
}

/* ------------------------------------------------------------ races */

#define NRACE 2000

typedef struct race_job {
    atomic_int done_ran, destroyed;
    atomic_long *total;
    unsigned spin_us;
} race_job_t;

static void race_work(void *arg)
{
    race_job_t *r = arg;
    uint64_t end = zl_now_us() + r->spin_us;

    while (zl_now_us() < end)
        ;
}

static void race_done(void *arg)
{
    race_job_t *r = arg;

    atomic_fetch_add(&r->done_ran, 1);
}

static void race_destroy(void *arg)
{
    race_job_t *r = arg;

    atomic_fetch_add(&r->destroyed, 1);
    atomic_fetch_add(r->total, 1);
}

static void race_gate_work(void *arg)
{
    zl_test_wait_flag(arg, WAIT_MS);
}

typedef struct race_canceller {
    zl_work_t **h;
    int *result;
    int first;
    atomic_int *gate;
} race_canceller_t;

static void *race_cancel_thread(void *arg)
{
    race_canceller_t *c = arg;

    for (int i = c->first; i < NRACE; i += 2) {
        c->result[i] = zl_work_cancel(c->h[i]);
        /* The first jobs are surely still queued; then let workers go. */
        if (i == NRACE / 10)
            atomic_store(c->gate, 1);
        if (i % 16 == 0)
            zl_test_sleep_ms(i % 64 == 0);
    }
    return NULL;
}

/* Cancels racing with every stage of the jobs, from two threads: whatever
 * cancel answers must be the truth about done, and destroy runs once. */
static void test_cancel_race(void)
{
    race_job_t *jobs = calloc(NRACE, sizeof(*jobs));
    zl_work_t **h = calloc(NRACE, sizeof(*h));
    int *result = calloc(NRACE, sizeof(*result));
    atomic_long total = 0;
    zl_worker_pool_t *pool = NULL;
    zl_poller_t *p[2] = {NULL, NULL};
    race_canceller_t rc[2];
    pthread_t th[2];
    int said_true = 0, bad = 0;
    atomic_int gate = 0;

    CU_ASSERT_FATAL(jobs && h && result);
    CU_ASSERT_EQUAL_FATAL(zl_worker_pool_new(&pool, 2), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p[0], NULL), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p[1], NULL), 0);
    for (int i = 0; i < 2; i++)
        CU_ASSERT_EQUAL(zl_worker_submit(pool, NULL, race_gate_work, NULL, NULL,
                                         &gate, NULL), 0);
    for (int i = 0; i < NRACE; i++) {
        jobs[i].total = &total;
        jobs[i].spin_us = (unsigned)(i % 5) * 20;
        CU_ASSERT_EQUAL(zl_worker_submit(pool, i % 3 == 2 ? NULL : p[i % 2],
                                         race_work, race_done, race_destroy,
                                         &jobs[i], &h[i]), 0);
    }
    for (int t = 0; t < 2; t++) {
        rc[t] = (race_canceller_t){h, result, t, &gate};
        CU_ASSERT_EQUAL_FATAL(
            pthread_create(&th[t], NULL, race_cancel_thread, &rc[t]), 0);
    }
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    CU_ASSERT_EQUAL(zl_test_wait_count(&total, NRACE, 20000), NRACE);
    zl_worker_pool_free(pool);
    zl_poller_free(p[0]);
    zl_poller_free(p[1]);

    for (int i = 0; i < NRACE; i++) {
        said_true += result[i];
        if (atomic_load(&jobs[i].destroyed) != 1 ||
            atomic_load(&jobs[i].done_ran) != (result[i] ? 0 : 1))
            bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(atomic_load(&total), NRACE);
    /* At least the jobs held behind the gate were cancelled. */
    CU_ASSERT_TRUE(said_true >= NRACE / 10 / 2);
    free(jobs);
    free(h);
    free(result);
}

int zl_test_register_worker(void)
{
    static const zl_test_case_t cases[] = {
        {"work on a worker, done on the reply poller", test_basic},
        {"bad arguments", test_bad_args},
        {"thread names and default size", test_names_and_size},
        {"no reply poller off a poller: done on the worker",
         test_done_on_worker},
        {"no reply poller on a poller: done comes back", test_reply_current},
        {"no done function", test_no_done},
        {"10k jobs from 4 threads", test_many},
        {"cancel a queued job", test_cancel_queued},
        {"cancel running work from the reply poller",
         test_cancel_running_from_reply},
        {"cancel a posted completion", test_cancel_posted},
        {"cancel while done runs", test_cancel_while_done_runs},
        {"cancel inside done", test_cancel_inside_done},
        {"reply poller freed before completion", test_reply_poller_freed},
        {"free cancels queued jobs, refuses new ones", test_free_with_queued},
        {"cancel races", test_cancel_race},
        {NULL, NULL},
    };
    return zl_test_add_suite("worker", NULL, NULL, cases);
}
