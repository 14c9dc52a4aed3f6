/* zltk — worker pool for blocking jobs (name resolution, file I/O).
 *
 * A job's work function runs on a worker thread; its completion runs on the
 * poller that asked for it, so the caller's state stays single-threaded.
 * Threads are named "zl-worker N".
 */
#ifndef ZLTK_WORKER_H
#define ZLTK_WORKER_H

#include <zltk/common.h>
#include <zltk/poller.h>

ZL_BEGIN_DECLS

typedef struct zl_worker_pool zl_worker_pool_t;
typedef struct zl_work zl_work_t;

/* Runs on a worker thread; may block. */
typedef void (*zl_work_fn)(void *arg);
/* Runs on the reply poller after the work function returned. */
typedef void (*zl_work_done_fn)(void *arg);

/* Start nthreads workers (0: one per online CPU, at least 2).  Returns 0
 * and stores the pool in *out, or -errno.  The caller owns the pool. */
ZL_API int zl_worker_pool_new(zl_worker_pool_t **out, unsigned nthreads);

/* Stop accepting jobs, cancel the jobs still queued (their work and done
 * never run; destroy does), wait for running work functions to return,
 * post their completions (which run if the reply poller still runs), join
 * and free.  Not from a worker thread. */
ZL_API void zl_worker_pool_free(zl_worker_pool_t *pool);

/* Number of worker threads.  Any thread. */
ZL_API size_t zl_worker_pool_size(const zl_worker_pool_t *pool);

/* Queue a job.  work(arg) runs on a worker thread; then done(arg) (if not
 * NULL) runs on reply_to.  reply_to NULL means the calling thread's poller,
 * or — when the caller is not on a poller — done runs on the worker thread.
 * destroy(arg), if given, runs exactly once when the job is over for any
 * reason (after done, or instead of it when cancelled or when the reply
 * poller has stopped); it may run on the worker, the reply poller, or the
 * thread that freed the pool, so it must only release memory.
 * If handle is not NULL it receives a handle owned by the caller (end it with
 * zl_work_cancel() or zl_work_release()).
 * Returns 0, ZL_ESHUTDOWN (pool stopping; nothing runs, destroy is not
 * called) or -ENOMEM.  Any thread. */
ZL_API int zl_worker_submit(zl_worker_pool_t *pool, zl_poller_t *reply_to,
                            zl_work_fn work, zl_work_done_fn done,
                            zl_destroy_fn destroy, void *arg,
                            zl_work_t **handle);

/* Cancel a job: if its work has not started it never will; in any case its
 * done function will not start after this returns (one already running on
 * another thread finishes).  destroy still runs once — for a job cancelled
 * while queued, when a worker reaches it or the pool is freed.  Returns true
 * if done will never have run, false if it already ran or is running (and
 * false for a job without done that has finished).  Consumes the handle.
 * Any thread; the answer is exact from any thread. */
ZL_API bool zl_work_cancel(zl_work_t *work);
/* Give up the handle without cancelling.  Any thread. */
ZL_API void zl_work_release(zl_work_t *work);

ZL_END_DECLS

#endif
