/* zltk — the process-wide runtime: one poller pool, one worker pool. */
#define G_LOG_DOMAIN "zltk-runtime"
#include "zl-internal.h"

#include <pthread.h>

/* init and shutdown serialise on the mutex.  The pointers are atomics so
 * the accessors need no lock: runtime threads call them, and shutdown
 * holds the mutex while it joins those threads. */
static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(zl_poller_pool_t *) rt_pollers;
static _Atomic(zl_worker_pool_t *) rt_workers;

int zl_runtime_init(const zl_runtime_options_t *opts)
{
    zl_runtime_options_t dflt = {0};
    zl_pool_options_t po;
    zl_poller_pool_t *pollers = NULL;
    zl_worker_pool_t *workers = NULL;
    int rc;

    if (!opts)
        opts = &dflt;
    pthread_mutex_lock(&rt_lock);
    if (atomic_load(&rt_pollers)) {
        rc = -EALREADY;
        goto out;
    }
    po = (zl_pool_options_t){
        .size = opts->pollers,
        .backend = opts->backend,
        .affinity = opts->affinity,
        .cpus = opts->cpus,
        .n_cpus = opts->n_cpus,
    };
    rc = zl_poller_pool_new(&pollers, &po);
    if (rc < 0) {
        g_warning("cannot start the poller pool: %s", zl_strerror(rc));
        goto out;
    }
    rc = zl_worker_pool_new(&workers, opts->workers);
    if (rc < 0) {
        g_warning("cannot start the worker pool: %s", zl_strerror(rc));
        zl_poller_pool_free(pollers);
        goto out;
    }
    atomic_store(&rt_pollers, pollers);
    atomic_store(&rt_workers, workers);
    g_debug("runtime started: %zu pollers, %zu workers",
            zl_poller_pool_size(pollers), zl_worker_pool_size(workers));
out:
    pthread_mutex_unlock(&rt_lock);
    return rc;
}

void zl_runtime_shutdown(void)
{
    zl_poller_pool_t *pollers;
    zl_worker_pool_t *workers;

    pthread_mutex_lock(&rt_lock);
    pollers = atomic_load(&rt_pollers);
    workers = atomic_load(&rt_workers);
    if (!pollers) {
        pthread_mutex_unlock(&rt_lock);
        return;
    }
    if (zl_poller_pool_contains(pollers, zl_poller_current())) {
        pthread_mutex_unlock(&rt_lock);
        g_critical("zl_runtime_shutdown() called from %s, a runtime poller; "
                   "call it from another thread",
                   zl_poller_name(zl_poller_current()));
        return;
    }
    /* Workers first, so running jobs' completions reach live pollers.  Each
     * pointer stays published while its pool drains: a job or task that
     * looks the runtime up meanwhile gets a stopping pool, which refuses
     * work with ZL_ESHUTDOWN, rather than NULL. */
    zl_worker_pool_free(workers);
    atomic_store(&rt_workers, NULL);
    zl_poller_pool_free(pollers);
    atomic_store(&rt_pollers, NULL);
    pthread_mutex_unlock(&rt_lock);
    g_debug("runtime stopped");
}

zl_poller_pool_t *zl_runtime_pollers(void)
{
    return atomic_load(&rt_pollers);
}

zl_worker_pool_t *zl_runtime_workers(void)
{
    return atomic_load(&rt_workers);
}

zl_poller_t *zl_runtime_get_poller(bool prefer_current)
{
    zl_poller_pool_t *pool = atomic_load(&rt_pollers);

    return pool ? zl_poller_pool_get(pool, prefer_current) : NULL;
}
