/* zltk — worker pool: blocking jobs whose completions go back to a poller.
 *
 * One mutex + condition variable guard a FIFO of jobs (pthreads, not GLib:
 * ThreadSanitizer must see every lock).  A job's life is an atomic state
 * machine; whoever moves it to its end runs destroy, so destroy runs once:
 *
 *   QUEUED ──worker──▶ RUNNING ──work returned──▶ POSTED ──reply poller──▶
 *   CALLING ──done returned──▶ DONE
 *
 * (RUNNING goes straight to CALLING when done runs on the worker, and to
 * DONE when there is no done.)  zl_work_cancel() moves QUEUED, RUNNING or
 * POSTED to CANCELLED; the thread holding the job next sees the failed
 * transition and ends it without running what follows.  Because done starts
 * only by winning POSTED → CALLING, it never starts once cancel returned.
 */
#define G_LOG_DOMAIN "zltk-worker"
#include "zl-internal.h"

#include <pthread.h>
#include <stdio.h>

enum {
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_POSTED,
    JOB_CALLING,
    JOB_DONE,
    JOB_CANCELLED
};

struct zl_work {
    atomic_int refs; /* the job's own life + the caller's handle */
    atomic_int state;
    zl_work_t *next; /* queue link, under the pool lock */
    zl_work_fn work;
    zl_work_done_fn done;
    zl_destroy_fn destroy;
    void *arg;
    /* Referenced until the job ends, so a completion for a poller that
     * was freed meanwhile fails with ZL_ESHUTDOWN instead of touching freed
     * memory.  NULL: done (if any) runs on the worker. */
    zl_poller_t *reply;
};

typedef struct worker {
    zl_worker_pool_t *pool;
    pthread_t thread;
    unsigned index;
} worker_t;

struct zl_worker_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    zl_work_t *head, *tail; /* under lock */
    bool stopping;          /* under lock: submissions are refused */
    size_t n;
    worker_t workers[];
};

/* The pool whose worker is calling: zl_worker_pool_free() refuses it. */
static _Thread_local zl_worker_pool_t *tls_pool;

/* ------------------------------------------------------------ jobs */

static void job_unref(zl_work_t *j)
{
    if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) == 1)
        free(j);
}

/* The job is over: release what it holds.  The caller won its last state
 * transition, so no other thread touches arg any more. */
static void job_end(zl_work_t *j)
{
    if (j->destroy)
        j->destroy(j->arg);
    if (j->reply)
        zl__poller_unref(j->reply);
    job_unref(j);
}

static bool job_move(zl_work_t *j, int from, int to)
{
    return atomic_compare_exchange_strong(&j->state, &from, to);
}

/* Runs on the reply poller. */
static void job_done_task(void *arg)
{
    zl_work_t *j = arg;

    if (job_move(j, JOB_POSTED, JOB_CALLING)) {
        j->done(j->arg);
        atomic_store(&j->state, JOB_DONE);
    }
    job_end(j);
}

/* Runs on the worker once the job was dequeued. */
static void job_run(zl_work_t *j)
{
    int rc;

    if (!job_move(j, JOB_QUEUED, JOB_RUNNING))
        goto end; /* cancelled while queued */
    j->work(j->arg);

    if (!j->done) {
        job_move(j, JOB_RUNNING, JOB_DONE);
        goto end;
    }
    if (!j->reply) {
        if (job_move(j, JOB_RUNNING, JOB_CALLING)) {
            j->done(j->arg);
            atomic_store(&j->state, JOB_DONE);
        }
        goto end;
    }
    /* Publish POSTED before posting: the task may run at once. */
    if (!job_move(j, JOB_RUNNING, JOB_POSTED))
        goto end;
    rc = zl_poller_async(j->reply, job_done_task, j);
    if (rc == 0)
        return; /* job_done_task ends it */
    if (rc != ZL_ESHUTDOWN)
        g_warning("cannot post a job completion to %s: %s; dropping it",
                  zl_poller_name(j->reply), zl_strerror(rc));
    /* Done will not run: say so to a later zl_work_cancel(). */
    job_move(j, JOB_POSTED, JOB_CANCELLED);
end:
    job_end(j);
}

/* ------------------------------------------------------------ threads */

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    zl_worker_pool_t *pool = w->pool;
    char name[16];

    snprintf(name, sizeof(name), "zl-worker %u", w->index);
    zl_thread_set_name(name);
    tls_pool = pool;

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        zl_work_t *j;

        while (!pool->head && !pool->stopping)
            pthread_cond_wait(&pool->cond, &pool->lock);
        j = pool->head;
        if (!j)
            break; /* stopping, and free took what was queued */
        pool->head = j->next;
        if (!pool->head)
            pool->tail = NULL;
        pthread_mutex_unlock(&pool->lock);
        job_run(j);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    tls_pool = NULL;
    return NULL;
}

/* Wakes and joins workers [0, n), then frees the pool.  The queue must be
 * empty. */
static void pool_destroy(zl_worker_pool_t *pool, size_t n)
{
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    for (size_t i = 0; i < n; i++)
        pthread_join(pool->workers[i].thread, NULL);
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

int zl_worker_pool_new(zl_worker_pool_t **out, unsigned nthreads)
{
    zl_worker_pool_t *pool;
    size_t n, made;
    int rc;

    if (!out)
        return -EINVAL;
    *out = NULL;
    n = nthreads ? nthreads : (size_t)MAX(2, zl__ncpu());
    if (n > (SIZE_MAX - sizeof(*pool)) / sizeof(pool->workers[0]))
        return -EINVAL;

    pool = calloc(1, sizeof(*pool) + n * sizeof(pool->workers[0]));
    if (!pool)
        return -ENOMEM;
    pool->n = n;
    rc = -pthread_mutex_init(&pool->lock, NULL);
    if (rc < 0)
        goto fail_free;
    rc = -pthread_cond_init(&pool->cond, NULL);
    if (rc < 0)
        goto fail_mutex;
    for (made = 0; made < n; made++) {
        worker_t *w = &pool->workers[made];

        w->pool = pool;
        w->index = (unsigned)made;
        rc = -pthread_create(&w->thread, NULL, worker_main, w);
        if (rc < 0) {
            g_warning("cannot start worker %zu of %zu: %s", made, n,
                      zl_strerror(rc));
            goto fail_threads;
        }
    }
    *out = pool;
    return 0;

fail_threads:
    pool_destroy(pool, made); /* also destroys lock and cond */
    return rc;
fail_mutex:
    pthread_mutex_destroy(&pool->lock);
fail_free:
    free(pool);
    return rc;
}

void zl_worker_pool_free(zl_worker_pool_t *pool)
{
    zl_work_t *q;

    if (!pool)
        return;
    if (tls_pool == pool) {
        g_critical("zl_worker_pool_free() called from one of the pool's own "
                   "workers; free it from another thread");
        return;
    }
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    q = pool->head;
    pool->head = pool->tail = NULL;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);

    /* Jobs still queued never start; their destroy runs here. */
    while (q) {
        zl_work_t *next = q->next;
        job_move(q, JOB_QUEUED, JOB_CANCELLED);
        job_end(q);
        q = next;
    }
    /* Running jobs finish and post their completions. */
    pool_destroy(pool, pool->n);
}

size_t zl_worker_pool_size(const zl_worker_pool_t *pool)
{
    return pool ? pool->n : 0;
}

int zl_worker_submit(zl_worker_pool_t *pool, zl_poller_t *reply_to,
                     zl_work_fn work, zl_work_done_fn done,
                     zl_destroy_fn destroy, void *arg, zl_work_t **handle)
{
    zl_work_t *j;

    if (handle)
        *handle = NULL;
    if (!pool || !work)
        return -EINVAL;
    j = malloc(sizeof(*j));
    if (!j)
        return -ENOMEM;
    atomic_init(&j->refs, handle ? 2 : 1);
    atomic_init(&j->state, JOB_QUEUED);
    j->next = NULL;
    j->work = work;
    j->done = done;
    j->destroy = destroy;
    j->arg = arg;
    /* Decided now: the submitter's poller, not the worker's (none). */
    j->reply = done ? (reply_to ? reply_to : zl_poller_current()) : NULL;
    if (j->reply)
        zl__poller_ref(j->reply);

    pthread_mutex_lock(&pool->lock);
    if (pool->stopping) {
        pthread_mutex_unlock(&pool->lock);
        if (j->reply)
            zl__poller_unref(j->reply);
        free(j);
        return ZL_ESHUTDOWN;
    }
    if (pool->tail)
        pool->tail->next = j;
    else
        pool->head = j;
    pool->tail = j;
    pthread_cond_signal(&pool->cond);
    pthread_mutex_unlock(&pool->lock);

    if (handle)
        *handle = j;
    return 0;
}

bool zl_work_cancel(zl_work_t *j)
{
    bool never;
    int s;

    if (!j)
        return false;
    s = atomic_load(&j->state);
    for (;;) {
        if (s == JOB_CALLING || s == JOB_DONE) {
            never = false;
            break;
        }
        if (s == JOB_CANCELLED ||
            atomic_compare_exchange_weak(&j->state, &s, JOB_CANCELLED)) {
            never = true;
            break;
        }
    }
    /* A job cancelled while queued stays in the queue: the worker that
     * dequeues it (or zl_worker_pool_free()) ends it. */
    job_unref(j);
    return never;
}

void zl_work_release(zl_work_t *j)
{
    if (j)
        job_unref(j);
}
