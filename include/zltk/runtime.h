/* zltk — process-wide runtime: the poller pool and the worker pool.
 *
 * zl_runtime_init() starts them; zl_runtime_shutdown() stops them in order
 * (workers first, so their completions can still reach the pollers, then
 * the pollers, which run the tasks already queued and drop their timers).
 * Nothing is torn down by atexit handlers or static destructors: a program
 * that calls init and then shutdown has freed everything zltk allocated.
 * Logging is separate (zltk/log.h) so that it can outlive the runtime.
 */
#ifndef ZLTK_RUNTIME_H
#define ZLTK_RUNTIME_H

#include <zltk/common.h>
#include <zltk/pool.h>
#include <zltk/worker.h>

ZL_BEGIN_DECLS

typedef struct zl_runtime_options {
    unsigned pollers;     /* 0: one per online CPU */
    unsigned workers;     /* 0: one per online CPU, at least 2 */
    const char *backend;  /* NULL: default (see zl_poller_new()) */
    bool affinity;        /* pin pollers to CPUs (off by default) */
    const int *cpus;      /* CPU list for affinity, NULL: 0..ncpu-1 */
    size_t n_cpus;
} zl_runtime_options_t;

/* Start the runtime.  opts may be NULL.  Returns 0, -EALREADY if it is
 * already running, or another -errno (nothing is left running).  Call from
 * one thread, not concurrently with zl_runtime_shutdown(). */
ZL_API int zl_runtime_init(const zl_runtime_options_t *opts);

/* Stop and free everything zl_runtime_init() started.  No-op if not
 * running.  Not from a runtime thread (from a poller thread it is refused
 * with a critical message).  While it runs, the accessors below still
 * return the pools, which refuse new work with ZL_ESHUTDOWN; they return
 * NULL once each pool is freed. */
ZL_API void zl_runtime_shutdown(void);

/* One-call start-up.  Start logging (unless zl_log_init() ran already:
 * to stderr at $ZLTK_LOG_LEVEL, else "message") and the runtime with opts
 * (NULL: defaults, one poller per CPU and the workers).  Returns 0, or
 * -errno with the reason logged (nothing is left running); -EALREADY when
 * zl_start() already started it.  Main thread; pair each successful
 * zl_start() with one zl_stop(). */
ZL_API int zl_start(const zl_runtime_options_t *opts);

/* Undo zl_start(): close instances first (zl_instance_close()), then this
 * shuts the runtime down, unloads the layer plugins zl_instance_open()
 * loaded (also after the explicit zl_runtime_init() path; kept, with a
 * critical message, while an instance that runs one is still open), and
 * ends the logging zl_start() began.  What zl_start() did not start is
 * left alone; a second call does nothing.  Main thread. */
ZL_API void zl_stop(void);

/* The runtime's pools; NULL when not running.  Any thread while running. */
ZL_API zl_poller_pool_t *zl_runtime_pollers(void);
ZL_API zl_worker_pool_t *zl_runtime_workers(void);

/* Shorthand for zl_poller_pool_get(zl_runtime_pollers(), prefer_current). */
ZL_API zl_poller_t *zl_runtime_get_poller(bool prefer_current);

ZL_END_DECLS

#endif
