/* zltk — a pool of pollers, one per core by default.
 *
 * The pool hands out the least-loaded poller, or the caller's own when the
 * caller runs on one of the pool's threads and asks for it.  Threads are
 * named "zl-poller N", run at normal priority, and are pinned to CPUs only
 * when asked.
 */
#ifndef ZLTK_POOL_H
#define ZLTK_POOL_H

#include <zltk/common.h>
#include <zltk/poller.h>

ZL_BEGIN_DECLS

typedef struct zl_poller_pool zl_poller_pool_t;

typedef struct zl_pool_options {
    /* Number of pollers; 0: one per online CPU. */
    unsigned size;
    /* Thread name prefix; NULL: "zl-poller".  Poller i is "PREFIX i". */
    const char *name_prefix;
    /* Backend name for every poller; NULL: as zl_poller_new() chooses. */
    const char *backend;
    /* Pin poller i to a CPU.  Off by default.  When on and cpus is NULL,
     * poller i goes to CPU i % ncpu; otherwise to cpus[i % n_cpus]. */
    bool affinity;
    const int *cpus;
    size_t n_cpus;
} zl_pool_options_t;

/* Create and start the pollers.  opts may be NULL.  Returns 0 and stores
 * the pool in *out, or -errno (nothing is left running): -EINVAL for an
 * unknown backend or affinity with cpus set and n_cpus 0.  A CPU that cannot
 * be pinned is logged and the pool still starts.  Caller owns it. */
ZL_API int zl_poller_pool_new(zl_poller_pool_t **out,
                              const zl_pool_options_t *opts);

/* Stop every poller (see zl_poller_free()), join and free.  Not from one of
 * the pool's own threads. */
ZL_API void zl_poller_pool_free(zl_poller_pool_t *pool);

/* Number of pollers.  Any thread. */
ZL_API size_t zl_poller_pool_size(const zl_poller_pool_t *pool);

/* Poller i (0 <= i < size), owned by the pool; NULL out of range.  Any
 * thread. */
ZL_API zl_poller_t *zl_poller_pool_at(const zl_poller_pool_t *pool, size_t i);

/* Pick a poller: the calling thread's own poller if prefer_current and it
 * belongs to this pool, else the one with the lowest zl_poller_load().
 * Loads within 5 percentage points count as equal and equal pollers take
 * turns, so a burst of work spreads instead of herding onto the poller that
 * read 1% less.  Owned by the pool.  Any thread. */
ZL_API zl_poller_t *zl_poller_pool_get(zl_poller_pool_t *pool,
                                       bool prefer_current);

/* True if poller belongs to this pool.  Any thread. */
ZL_API bool zl_poller_pool_contains(const zl_poller_pool_t *pool,
                                    const zl_poller_t *poller);

ZL_END_DECLS

#endif
