/* zltk — poller internals shared by poller.c, timer.c and the backends. */
#ifndef ZLTK_POLLER_INTERNAL_H
#define ZLTK_POLLER_INTERNAL_H

#include "zl-internal.h"

#include <pthread.h>

/* One ready fd as a backend reports it.  gen is the registration's
 * generation as it was when the backend learnt of it: an fd removed and
 * re-added (possibly as a new descriptor with the same number) in the middle
 * of a batch gets a new generation, so stale events are recognised. */
typedef struct zl__bev {
    int fd;
    uint32_t gen;
    unsigned events; /* ZL_EV_* */
} zl__bev_t;

/* A backend: one file, one const ops table (cf. libevent's eventop). */
typedef struct zl__backend_ops {
    const char *name;
    bool edge; /* honours ZL_EV_LT vs edge triggering */
    int (*init)(zl_poller_t *p);
    void (*destroy)(zl_poller_t *p);
    /* events: ZL_EV_READ | ZL_EV_WRITE | ZL_EV_LT */
    int (*add)(zl_poller_t *p, int fd, uint32_t gen, unsigned events);
    int (*mod)(zl_poller_t *p, int fd, uint32_t gen, unsigned events);
    int (*del)(zl_poller_t *p, int fd);
    /* Wait up to timeout_ms (-1: forever); store up to n events; return
     * their count or -errno (EINTR is retried by the caller). */
    int (*wait)(zl_poller_t *p, zl__bev_t *evs, int n, int timeout_ms);
} zl__backend_ops_t;

extern const zl__backend_ops_t zl__backend_poll;
#ifdef HAVE_EPOLL_CREATE1
extern const zl__backend_ops_t zl__backend_epoll;
#endif
#ifdef HAVE_KQUEUE
extern const zl__backend_ops_t zl__backend_kqueue;
#endif

/* fd registration, indexed by fd number. */
typedef struct zl__reg {
    zl_io_fn cb;
    void *udata;
    unsigned events; /* as asked, incl. ZL_EV_LT */
    uint32_t gen;    /* 0: free slot */
} zl__reg_t;

typedef struct zl__task_ent {
    zl_task_fn fn;
    void *arg;
} zl__task_ent_t;

/* Ring buffer of tasks: push at either end, no allocation once grown;
 * capacity a power of two (taskq.c). */
typedef struct zl__ring {
    zl__task_ent_t *buf;
    size_t cap, head, len;
} zl__ring_t;

/* Load window: the last ZL__LOAD_SAMPLES wake-ups, at most 2 s old. */
#define ZL__LOAD_SAMPLES 32
#define ZL__LOAD_WINDOW_NS 2000000000ull
#define ZL__LOAD_MIN_WINDOW_NS 100000000ull

typedef struct zl__load_sample {
    uint64_t busy_ns, idle_ns, end_ns;
} zl__load_sample_t;

#define ZL__MAX_EVENTS 1024
#define ZL__REG_PAGE 256

struct zl_poller {
    atomic_int refs;
    char name[16];
    const zl__backend_ops_t *ops;
    void *bdata; /* backend state */

    pthread_t thread;
    atomic_bool running;   /* loop keeps going while true */
    int wake_rfd, wake_wfd; /* eventfd: both the same fd */

    /* Task queue (taskq.c): lock-free ring, overflow, own posts. */
    struct zl__taskq *tq;

    /* Loop-thread-only state. */
    zl__reg_t **regpages; /* see reg_slot() in poller.c */
    size_t nregpages;
    atomic_size_t nfds;
    uint32_t gen_next;
    size_t trim_freed; /* send-queue bytes freed since the last trim call */
    zl__bev_t events[ZL__MAX_EVENTS];

    /* Timers (timer.c): a 4-ary min-heap of {deadline, node} by
     * (deadline, node's seq), loop thread only.  heap is the allocation
     * (freed with free()); the entries start a few slots in, so that each
     * group of siblings fills one 64-byte line. */
    struct zl__tentry *heap;
    size_t heap_len, heap_cap;
    atomic_size_t ntimers;
    uint64_t timer_seq;
    uint64_t timer_runs; /* callbacks run in this pass, for st_timers */
    uint64_t now_ms; /* cached per loop iteration */

    /* Load accounting: written by the loop, read anywhere. */
    zl__load_sample_t samples[ZL__LOAD_SAMPLES];
    unsigned sample_pos, sample_len;
    uint64_t busy_sum, idle_sum;
    uint64_t busy_since; /* loop thread: start of the current busy stretch */
    atomic_uint_fast64_t a_busy, a_idle, a_since;
    atomic_bool a_sleeping;
    atomic_uint_fast64_t a_unrec; /* busy ns before this sleep, unrecorded */

    /* Stats. */
    atomic_uint_fast64_t st_loops, st_tasks, st_wakeups, st_timers, st_io;
};

/* Task queue (taskq.c).  Cross-thread ring capacity, a power of two: 4096
 * cells (96 KiB a poller) ran 1 producer at 32-45 M tasks/s, 1024 at 14-25
 * M/s (the ring filled while the loop polled, and posts fell back to the
 * locked overflow). */
#define ZL__TASKQ_CAP 4096
typedef struct zl__taskq zl__taskq_t;
int zl__taskq_new(zl__taskq_t **out);
void zl__taskq_free(zl__taskq_t *q);
void zl__taskq_close(zl__taskq_t *q);
bool zl__taskq_closing(zl__taskq_t *q);
int zl__taskq_post(zl_poller_t *p, zl_task_fn fn, void *arg, bool front,
                   bool own);
size_t zl__taskq_drain(zl_poller_t *p);
void zl__taskq_drain_final(zl_poller_t *p);
bool zl__taskq_own_pending(const zl_poller_t *p);
bool zl__taskq_sleep_begin(zl_poller_t *p);
void zl__taskq_sleep_end(zl_poller_t *p);
void zl__taskq_woken(zl_poller_t *p);
void zl__poller_wake(zl_poller_t *p); /* poller.c: write the eventfd */

/* Timers (timer.c) */
typedef struct zl__tentry {
    uint64_t key; /* deadline, ms (zl_now_ms() clock) */
    zl_timer_node_t *node;
} zl__tentry_t;
void zl__timers_run(zl_poller_t *p);
int zl__timers_timeout(zl_poller_t *p); /* ms until next deadline, -1 none */
void zl__timers_shutdown(zl_poller_t *p);
/* Loop refuses posts once closing: used by timer.c for own-thread adds. */
bool zl__poller_closing(zl_poller_t *p);

#endif
