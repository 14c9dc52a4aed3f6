/* zltk — event poller: one thread, one event loop.
 *
 * A poller owns a thread that waits for fd events (epoll, kqueue or the
 * portable poll(2) backend), runs tasks posted from any thread, and runs
 * timers.  Everything registered on a poller — fd callbacks, tasks, timers —
 * runs on that poller's thread and never concurrently with anything else on
 * it, so code that stays on one poller needs no locks.
 *
 * Threading: unless a function says otherwise it may be called from any
 * thread.  Functions that act on loop state act at once when called on the
 * poller's own thread and are posted to it as a task otherwise.
 *
 * Lifetime: zl_poller_new() starts the thread; zl_poller_free() stops it.
 * On stop, tasks already queued run once, in order; new posts are refused
 * with ZL_ESHUTDOWN; armed timers are dropped without running (their destroy
 * function runs); registered fds are forgotten (they are not closed).
 */
#ifndef ZLTK_POLLER_H
#define ZLTK_POLLER_H

#include <zltk/common.h>

ZL_BEGIN_DECLS

typedef struct zl_poller zl_poller_t;
typedef struct zl_task zl_task_t;
typedef struct zl_timer zl_timer_t;

/* ------------------------------------------------------------------ */
/* Creation                                                             */

typedef struct zl_poller_options {
    /* Thread name (at most 15 bytes are kept); NULL: "zl-poller". */
    const char *name;
    /* "epoll", "poll" or "kqueue"; NULL: $ZLTK_POLLER_BACKEND if set, else
     * the best one the platform has (epoll on Linux). */
    const char *backend;
    /* CPU to pin the thread to; -1 or any negative value: no affinity.
     * Zero-initialised options mean CPU 0 is NOT pinned: set pin_cpu. */
    int cpu;
    bool pin_cpu;
} zl_poller_options_t;

/* Create a poller and start its thread.  opts may be NULL (defaults).
 * On success stores the poller in *out and returns 0; on failure returns
 * -errno (e.g. -EINVAL for an unknown backend name, which is also logged).
 * The caller owns the poller and ends it with zl_poller_free(). */
ZL_API int zl_poller_new(zl_poller_t **out, const zl_poller_options_t *opts);

/* Stop the poller, run the tasks already queued, drop its timers (calling
 * their destroy functions on the poller thread), join the thread and release
 * the caller's reference.  Must not be called from the poller's own thread
 * (it logs a critical message and returns without stopping).  Handles of
 * tasks and timers may outlive it: cancelling them afterwards returns false. */
ZL_API void zl_poller_free(zl_poller_t *poller);

/* Names of the backends compiled into this libzltk, NULL-terminated. */
ZL_API const char *const *zl_poller_backends(void);

/* ------------------------------------------------------------------ */
/* Identity                                                             */

/* The poller whose thread is calling, or NULL on any other thread. */
ZL_API zl_poller_t *zl_poller_current(void);
/* True when called on this poller's thread. */
ZL_API bool zl_poller_is_current(const zl_poller_t *poller);
/* Thread name, valid while the poller lives. */
ZL_API const char *zl_poller_name(const zl_poller_t *poller);
/* Backend name ("epoll", "poll", "kqueue"), valid while the poller lives. */
ZL_API const char *zl_poller_backend(const zl_poller_t *poller);
/* True if the backend honours edge triggering (epoll, kqueue); the poll
 * backend is always level-triggered.  Code that reads and writes until
 * EAGAIN and asks for ZL_EV_WRITE only while it has output is correct on
 * both. */
ZL_API bool zl_poller_has_edge(const zl_poller_t *poller);

/* ------------------------------------------------------------------ */
/* File descriptors                                                     */

enum {
    ZL_EV_READ = 1u << 0,  /* readable (or end of stream) */
    ZL_EV_WRITE = 1u << 1, /* writable */
    ZL_EV_ERROR = 1u << 2, /* error condition; always reported */
    ZL_EV_HUP = 1u << 3,   /* hang-up (at least the peer's sending side);
                              always reported */
    ZL_EV_LT = 1u << 4     /* flag: level-triggered (default: edge) */
};

/* Called on the poller thread with the ZL_EV_* bits that are ready. */
typedef void (*zl_io_fn)(zl_poller_t *poller, int fd, unsigned events,
                         void *udata);

/* Watch fd for events (ZL_EV_READ | ZL_EV_WRITE, optionally | ZL_EV_LT).
 * The caller keeps owning fd and must keep it open until removal is done.
 * On the poller thread: acts at once; returns 0, -EEXIST if fd is already
 * watched, -EBADF/-EINVAL, or another -errno from the backend.
 * From another thread: posted; returns 0 or ZL_ESHUTDOWN, and a failure
 * when the task runs is logged. */
ZL_API int zl_poller_add_fd(zl_poller_t *poller, int fd, unsigned events,
                            zl_io_fn cb, void *udata);

/* Change the events watched on fd (same rules as add; -ENOENT if fd is
 * not watched). */
ZL_API int zl_poller_mod_fd(zl_poller_t *poller, int fd, unsigned events);

/* Stop watching fd.  After removal the callback never runs again for this
 * registration, not even for events already collected in the current batch.
 * On the poller thread: at once, then done(arg) runs inline if given.
 * From another thread: posted, and done(arg) runs on the poller thread once
 * the fd is out of the backend — the moment it is safe to close it.
 * Returns 0, -ENOENT (on the poller thread, fd not watched) or ZL_ESHUTDOWN. */
ZL_API int zl_poller_del_fd(zl_poller_t *poller, int fd,
                            void (*done)(void *arg), void *arg);

/* Number of fds watched.  Poller thread only (approximate elsewhere). */
ZL_API size_t zl_poller_fd_count(const zl_poller_t *poller);

/* ------------------------------------------------------------------ */
/* Tasks                                                                */

typedef void (*zl_task_fn)(void *arg);

enum {
    ZL_TASK_FIRST = 1u << 0,  /* put at the front of the queue (async_first) */
    ZL_TASK_INLINE = 1u << 1  /* run at once if already on the poller thread */
};

/* Post fn(arg) to run on the poller thread.  flags: ZL_TASK_*.
 * If handle is not NULL it receives a cancellable handle owned by the
 * caller (end it with zl_task_cancel() or zl_task_release()); it is set to
 * NULL when the task ran inline.  Returns 0, ZL_ESHUTDOWN when the poller
 * is stopping (fn will not run: the caller still owns arg), or -ENOMEM.
 * Posting allocates nothing unless a handle is asked for (nor, from other
 * threads, while fewer than 4096 posts wait); the loop is woken, with one
 * eventfd write, only when it is about to sleep or asleep: once per batch.
 * Order: FIFO per posting thread; ZL_TASK_FIRST tasks go before all. */
ZL_API int zl_poller_post(zl_poller_t *poller, unsigned flags,
                          zl_task_fn fn, void *arg, zl_task_t **handle);

/* zl_poller_post(poller, 0, fn, arg, NULL): FIFO. */
ZL_API int zl_poller_async(zl_poller_t *poller, zl_task_fn fn, void *arg);
/* zl_poller_post(poller, ZL_TASK_FIRST, fn, arg, NULL): before all queued. */
ZL_API int zl_poller_async_first(zl_poller_t *poller, zl_task_fn fn, void *arg);
/* Run inline if on the poller thread, else post FIFO. */
ZL_API int zl_poller_run(zl_poller_t *poller, zl_task_fn fn, void *arg);

/* Run fn(arg) on the poller thread and wait until it has run (inline if
 * already there).  Returns 0 or ZL_ESHUTDOWN.  Never call it from a poller
 * that the target poller may itself be waiting on: that deadlocks. */
ZL_API int zl_poller_sync(zl_poller_t *poller, zl_task_fn fn, void *arg);

/* Cancel a task that has not started.  Returns true if it will never run
 * (the caller owns arg again), false if it already ran, is running, or was
 * dropped.  Consumes the handle.  Any thread. */
ZL_API bool zl_task_cancel(zl_task_t *task);
/* Give up the handle without cancelling.  Any thread. */
ZL_API void zl_task_release(zl_task_t *task);

/* ------------------------------------------------------------------ */
/* Timers                                                               */

/* Timer callback: returns the next delay in milliseconds, 0 to stop. */
typedef uint64_t (*zl_timer_fn)(void *arg);
/* Repeating-timer callback: return true to keep repeating. */
typedef bool (*zl_repeat_fn)(void *arg);

/* Run fn(arg) on the poller thread after delay_ms, then again after each
 * non-zero delay it returns (ZLToolKit's doDelayTask).  destroy(arg), if
 * given, runs exactly once on the poller thread when the timer ends for any
 * reason: returned 0, cancelled, or the poller stopped.  Timers with equal
 * deadlines run in the order they were added.  Cost is O(log n) in the
 * number of armed timers.  handle as for tasks (may be NULL).
 * Returns 0, ZL_ESHUTDOWN (destroy is NOT called: the caller owns arg) or
 * -ENOMEM. */
ZL_API int zl_poller_add_timer(zl_poller_t *poller, uint64_t delay_ms,
                               zl_timer_fn fn, void *arg,
                               zl_destroy_fn destroy, zl_timer_t **handle);

/* Repeating timer: fn(arg) every interval_ms (> 0) until it returns false
 * or the timer is cancelled.  Otherwise as zl_poller_add_timer(). */
ZL_API int zl_poller_add_repeat(zl_poller_t *poller, uint64_t interval_ms,
                                zl_repeat_fn fn, void *arg,
                                zl_destroy_fn destroy, zl_timer_t **handle);

/* Stop a timer.  Safe from any thread and from inside the timer's own
 * callback (whose return value is then ignored).  On the poller thread the
 * timer is gone when this returns; from another thread a callback already
 * running finishes but never runs again.  Returns true if this call stopped
 * it, false if it had already ended.  Consumes the handle. */
ZL_API bool zl_timer_cancel(zl_timer_t *timer);
/* Give up the handle without stopping the timer.  Any thread. */
ZL_API void zl_timer_release(zl_timer_t *timer);

/* Number of armed timers.  Poller thread only (approximate elsewhere). */
ZL_API size_t zl_poller_timer_count(const zl_poller_t *poller);

/* Intrusive timers: a node the caller embeds in its own struct.  No
 * allocation, no atomics, O(log n) start and stop; the cheap way to keep
 * many timers (a million armed is a normal case).  Every zl_timer_node_*
 * function is for the poller's own thread only (inside its callbacks and
 * tasks), and a node belongs to one poller while it is armed.  The caller
 * owns the node's memory; it must stay valid while the node is armed, and
 * may be freed or reused once the node is not armed (after stop, inside or
 * after its callback, or once the poller stopped).
 *
 * Guarantees, as for zl_poller_add_timer(): a node never fires before its
 * delay has elapsed (counted from the start call); nodes with equal
 * deadlines (in milliseconds) fire in the order they were started; a node
 * may be stopped or started again from inside its own callback or any
 * other.  When the poller stops, armed nodes are dropped: each is left not
 * armed and its callback never runs (the owner frees it as it likes). */
typedef struct zl_timer_node zl_timer_node_t;

/* Runs on the poller thread when the node's deadline has passed.  The node
 * is no longer armed when this is called: start it again to repeat.  Use
 * the node's address to find the caller's struct (offsetof). */
typedef void (*zl_timer_node_fn)(zl_poller_t *poller, zl_timer_node_t *node);

struct zl_timer_node {
    /* Private: set by zl_timer_node_init(), then owned by the poller. */
    zl_timer_node_fn zl_fn;
    uint64_t zl_seq;  /* arming order, for equal deadlines */
    uint32_t zl_pos;  /* heap position + 1; 0: not armed */
    uint32_t zl_spare;
};

/* Static initialiser, same as zl_timer_node_init(). */
#define ZL_TIMER_NODE_INIT(fn) { (fn), 0, 0, 0 }

/* Prepare a node (not armed) to call fn.  Any thread, before the node is
 * handed to a poller; also allowed on a node that is not armed. */
ZL_API void zl_timer_node_init(zl_timer_node_t *node, zl_timer_node_fn fn);

/* Arm the node to fire delay_ms from now; an armed node is re-armed (its
 * old deadline forgotten, its place among equal deadlines taken anew).
 * Poller thread only (node not armed on another poller).  Returns 0,
 * ZL_ESHUTDOWN (the poller is stopping: the node is left not armed) or
 * -ENOMEM (the heap could not grow: the node is left not armed). */
ZL_API int zl_timer_node_start(zl_poller_t *poller, zl_timer_node_t *node,
                               uint64_t delay_ms);

/* Disarm the node.  Returns true if it was armed, false if it was not
 * (stopping twice is fine).  Poller thread only; also from inside any
 * timer callback, including the node's own. */
ZL_API bool zl_timer_node_stop(zl_poller_t *poller, zl_timer_node_t *node);

/* True while the node is armed.  Poller thread only. */
ZL_API bool zl_timer_node_is_armed(const zl_timer_node_t *node);

/* ------------------------------------------------------------------ */
/* Load and statistics                                                  */

/* Busy fraction of the loop, in percent, over the last 32 wake-ups or
 * 2 seconds, whichever is shorter (as ZLToolKit measures it), and over no
 * less than 100 ms, so a poller that has just started does not read busy
 * after one small task.  Any thread. */
ZL_API unsigned zl_poller_load(const zl_poller_t *poller);

/* Queueing-delay probe: posts a task stamped with the current time; when it
 * runs, cb(poller, delay_us, arg) is called on the poller thread with the
 * microseconds it waited in the queue.  Returns 0 or ZL_ESHUTDOWN. */
typedef void (*zl_delay_fn)(zl_poller_t *poller, uint64_t delay_us, void *arg);
ZL_API int zl_poller_probe_delay(zl_poller_t *poller, zl_delay_fn cb,
                                 void *arg);

typedef struct zl_poller_stats {
    uint64_t loops;     /* wake-ups of the loop */
    uint64_t tasks;     /* tasks run */
    uint64_t wakeups;   /* cross-thread wake-up writes (eventfd/pipe) */
    uint64_t timers;    /* timer callbacks run */
    uint64_t io_events; /* fd callbacks run */
} zl_poller_stats_t;

/* Counters since start.  Any thread (each field is read atomically). */
ZL_API void zl_poller_get_stats(const zl_poller_t *poller,
                                zl_poller_stats_t *out);

/* How many times this process has given freed memory back to the system
 * (malloc_trim(), glibc): about a second after pollers freed a few MB of
 * send queues (slow peers left or caught up) and the churn stopped.  Always
 * 0 where the C library has no malloc_trim.  Any thread. */
ZL_API uint64_t zl_memory_trims(void);

ZL_END_DECLS

#endif
