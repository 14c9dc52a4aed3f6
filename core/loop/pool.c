/* zltk — a pool of pollers that hands out the least-loaded one. */
#define G_LOG_DOMAIN "zltk-pool"
#include "zl-internal.h"

#include <limits.h>

struct zl_poller_pool {
    size_t n;
    /* Where the next scan starts.  Atomic, unlike ZLToolKit's _thread_pos,
     * which every thread writes without synchronisation. */
    atomic_size_t cursor;
    zl_poller_t *pollers[];
};

/* Stops and releases pollers [0, n).  Every poller is referenced before any
 * is stopped, so a task that a stopping poller runs while draining can post
 * to a sibling already stopped and get ZL_ESHUTDOWN, not freed memory. */
static void pool_stop(zl_poller_pool_t *pool, size_t n)
{
    for (size_t i = 0; i < n; i++)
        zl__poller_ref(pool->pollers[i]);
    for (size_t i = 0; i < n; i++)
        zl_poller_free(pool->pollers[i]);
    for (size_t i = 0; i < n; i++)
        zl__poller_unref(pool->pollers[i]);
}

int zl_poller_pool_new(zl_poller_pool_t **out, const zl_pool_options_t *opts)
{
    zl_pool_options_t dflt = {0};
    zl_poller_pool_t *pool;
    const char *prefix;
    size_t n, made = 0;
    int ncpu = zl__ncpu();
    int rc;

    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!opts)
        opts = &dflt;
    if (opts->affinity && opts->cpus && opts->n_cpus == 0)
        return -EINVAL;
    n = opts->size ? opts->size : (size_t)ncpu;
    if (n > (SIZE_MAX - sizeof(*pool)) / sizeof(pool->pollers[0]))
        return -EINVAL;
    prefix = opts->name_prefix ? opts->name_prefix : "zl-poller";

    pool = calloc(1, sizeof(*pool) + n * sizeof(pool->pollers[0]));
    if (!pool)
        return -ENOMEM;
    pool->n = n;
    atomic_init(&pool->cursor, 0);

    for (; made < n; made++) {
        char name[16];
        zl_poller_options_t po = {.name = name, .backend = opts->backend};

        /* The kernel keeps 15 bytes of a thread name: truncation is fine. */
        g_snprintf(name, sizeof(name), "%s %zu", prefix, made);
        if (opts->affinity) {
            po.pin_cpu = true;
            po.cpu = opts->cpus ? opts->cpus[made % opts->n_cpus]
                                : (int)(made % (size_t)ncpu);
        }
        rc = zl_poller_new(&pool->pollers[made], &po);
        if (rc < 0) {
            g_warning("cannot start poller %zu of %zu: %s", made, n,
                      zl_strerror(rc));
            goto fail;
        }
    }
    *out = pool;
    return 0;

fail:
    pool_stop(pool, made);
    free(pool);
    return rc;
}

void zl_poller_pool_free(zl_poller_pool_t *pool)
{
    if (!pool)
        return;
    if (zl_poller_pool_contains(pool, zl_poller_current())) {
        g_critical("zl_poller_pool_free() called from %s, one of the pool's "
                   "own threads; free the pool from another thread",
                   zl_poller_name(zl_poller_current()));
        return;
    }
    pool_stop(pool, pool->n);
    free(pool);
}

size_t zl_poller_pool_size(const zl_poller_pool_t *pool)
{
    return pool ? pool->n : 0;
}

zl_poller_t *zl_poller_pool_at(const zl_poller_pool_t *pool, size_t i)
{
    return pool && i < pool->n ? pool->pollers[i] : NULL;
}

bool zl_poller_pool_contains(const zl_poller_pool_t *pool,
                             const zl_poller_t *poller)
{
    if (!pool || !poller)
        return false;
    for (size_t i = 0; i < pool->n; i++)
        if (pool->pollers[i] == poller)
            return true;
    return false;
}

/* Percentage points within which two loads count as equal. */
#define ZL__LOAD_TIE 5

zl_poller_t *zl_poller_pool_get(zl_poller_pool_t *pool, bool prefer_current)
{
    zl_poller_t *best;
    unsigned best_load;
    size_t start;

    if (!pool || !pool->n)
        return NULL;
    if (prefer_current) {
        zl_poller_t *cur = zl_poller_current();
        if (cur && zl_poller_pool_contains(pool, cur))
            return cur;
    }
    /* Loads within a few points are ties, and ties take turns (each call
     * starts one poller further on): otherwise a burst herds onto whichever
     * poller reads 1% less, since its load rises only as it works. */
    start = atomic_fetch_add_explicit(&pool->cursor, 1, memory_order_relaxed) %
            pool->n;
    best_load = UINT_MAX;
    for (size_t i = 0; i < pool->n; i++) {
        unsigned load = zl_poller_load(pool->pollers[i]);
        if (load < best_load)
            best_load = load;
    }
    best = pool->pollers[start];
    for (size_t i = 0; i < pool->n; i++) {
        zl_poller_t *p = pool->pollers[(start + i) % pool->n];
        if (zl_poller_load(p) <= best_load + ZL__LOAD_TIE) {
            best = p;
            break;
        }
    }
    return best;
}
