/* zltk — the event poller: thread, loop, fd registry, task queue, load. */
#define G_LOG_DOMAIN "zltk-poller"
#include "poller-internal.h"

#include <fcntl.h>
#ifdef HAVE_MALLOC_TRIM
#include <malloc.h>
#endif
#include <poll.h>
#include <unistd.h>
#ifdef HAVE_SYS_EVENTFD_H
#include <sys/eventfd.h>
#endif

static _Thread_local zl_poller_t *tls_current;

/* ------------------------------------------------------------ backends */

static const zl__backend_ops_t *const backends[] = {
#ifdef HAVE_EPOLL_CREATE1
    &zl__backend_epoll,
#endif
#ifdef HAVE_KQUEUE
    &zl__backend_kqueue,
#endif
    &zl__backend_poll,
};

static const char *const backend_names[] = {
#ifdef HAVE_EPOLL_CREATE1
    "epoll",
#endif
#ifdef HAVE_KQUEUE
    "kqueue",
#endif
    "poll",
    NULL,
};

const char *const *zl_poller_backends(void)
{
    return backend_names;
}

static const zl__backend_ops_t *backend_find(const char *name)
{
    if (!name || !*name)
        return backends[0];
    for (size_t i = 0; i < ZL__ARRAY_SIZE(backends); i++)
        if (!strcmp(backends[i]->name, name))
            return backends[i];
    return NULL;
}

/* ------------------------------------------------------------ refs */

void zl__poller_ref(zl_poller_t *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void zl__poller_unref(zl_poller_t *p)
{
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
        return;
    zl__taskq_free(p->tq);
    free(p);
}

/* ------------------------------------------------------------ wake-up */

void zl__poller_wake(zl_poller_t *p)
{
    atomic_fetch_add_explicit(&p->st_wakeups, 1, memory_order_relaxed);
#ifdef HAVE_EVENTFD
    uint64_t one = 1;
    while (write(p->wake_wfd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
#else
    char c = 0;
    while (write(p->wake_wfd, &c, 1) < 0 && errno == EINTR)
        ;
#endif
    /* EAGAIN means the counter/pipe is already signalled: fine. */
}

static void wake_drain(zl_poller_t *p)
{
#ifdef HAVE_EVENTFD
    uint64_t v;
    while (read(p->wake_rfd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
#else
    char buf[256];
    while (read(p->wake_rfd, buf, sizeof(buf)) > 0)
        ;
#endif
}

static int wake_open(zl_poller_t *p)
{
#ifdef HAVE_EVENTFD
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    p->wake_rfd = p->wake_wfd = fd;
#else
    int fds[2];
#ifdef HAVE_PIPE2
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
#else
    if (pipe(fds) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
#endif
    p->wake_rfd = fds[0];
    p->wake_wfd = fds[1];
#endif
    return 0;
}

static void wake_close(zl_poller_t *p)
{
    if (p->wake_rfd >= 0)
        close(p->wake_rfd);
    if (p->wake_wfd >= 0 && p->wake_wfd != p->wake_rfd)
        close(p->wake_wfd);
    p->wake_rfd = p->wake_wfd = -1;
}

/* ------------------------------------------------------------ tasks */

bool zl__poller_closing(zl_poller_t *p)
{
    return zl__taskq_closing(p->tq);
}

/* Queue fn(arg) (taskq.c): the loop is woken only if it sleeps, once per
 * batch; a post from the loop's own thread needs no wake-up at all. */
static int enqueue(zl_poller_t *p, zl_task_fn fn, void *arg, bool front)
{
    return zl__taskq_post(p, fn, arg, front, tls_current == p);
}

enum { TASK_PENDING, TASK_DONE, TASK_CANCELLED };

struct zl_task {
    atomic_int refs;
    atomic_int state;
    zl_task_fn fn;
    void *arg;
};

static void task_unref(zl_task_t *t)
{
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        free(t);
}

static void task_trampoline(void *arg)
{
    zl_task_t *t = arg;
    int expect = TASK_PENDING;

    if (atomic_compare_exchange_strong(&t->state, &expect, TASK_DONE))
        t->fn(t->arg);
    task_unref(t);
}

int zl_poller_post(zl_poller_t *p, unsigned flags, zl_task_fn fn, void *arg,
                   zl_task_t **handle)
{
    zl_task_t *t;
    int rc;

    if (handle)
        *handle = NULL;
    if (!p || !fn)
        return -EINVAL;
    if ((flags & ZL_TASK_INLINE) && tls_current == p) {
        fn(arg);
        return 0;
    }
    if (!handle)
        return enqueue(p, fn, arg, flags & ZL_TASK_FIRST);

    t = malloc(sizeof(*t));
    if (!t)
        return -ENOMEM;
    atomic_init(&t->refs, 2); /* queue + handle */
    atomic_init(&t->state, TASK_PENDING);
    t->fn = fn;
    t->arg = arg;
    rc = enqueue(p, task_trampoline, t, flags & ZL_TASK_FIRST);
    if (rc < 0) {
        free(t);
        return rc;
    }
    *handle = t;
    return 0;
}

int zl_poller_async(zl_poller_t *p, zl_task_fn fn, void *arg)
{
    return zl_poller_post(p, 0, fn, arg, NULL);
}

int zl_poller_async_first(zl_poller_t *p, zl_task_fn fn, void *arg)
{
    return zl_poller_post(p, ZL_TASK_FIRST, fn, arg, NULL);
}

int zl_poller_run(zl_poller_t *p, zl_task_fn fn, void *arg)
{
    return zl_poller_post(p, ZL_TASK_INLINE, fn, arg, NULL);
}

bool zl_task_cancel(zl_task_t *t)
{
    int expect = TASK_PENDING;
    bool ok;

    if (!t)
        return false;
    ok = atomic_compare_exchange_strong(&t->state, &expect, TASK_CANCELLED);
    task_unref(t);
    return ok;
}

void zl_task_release(zl_task_t *t)
{
    if (t)
        task_unref(t);
}

typedef struct sync_call {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    zl_task_fn fn;
    void *arg;
} sync_call_t;

static void sync_trampoline(void *arg)
{
    sync_call_t *s = arg;

    s->fn(s->arg);
    pthread_mutex_lock(&s->lock);
    s->done = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

int zl_poller_sync(zl_poller_t *p, zl_task_fn fn, void *arg)
{
    sync_call_t s = {.fn = fn, .arg = arg};
    int rc;

    if (!p || !fn)
        return -EINVAL;
    if (tls_current == p) {
        fn(arg);
        return 0;
    }
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    rc = enqueue(p, sync_trampoline, &s, false);
    if (rc == 0) {
        pthread_mutex_lock(&s.lock);
        while (!s.done)
            pthread_cond_wait(&s.cond, &s.lock);
        pthread_mutex_unlock(&s.lock);
    }
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
    return rc;
}

/* ------------------------------------------------------------ fds */

/* The registry is two-level: a directory of pages of ZL__REG_PAGE slots,
 * each page allocated when an fd in its range is first added.  Growing never
 * copies or touches the slots of other fds, so memory follows the fds in use
 * (fd numbers are dense) rather than the largest one doubled. */
static zl__reg_t *reg_get(zl_poller_t *p, int fd)
{
    size_t pg;
    zl__reg_t *r;

    if (fd < 0)
        return NULL;
    pg = (size_t)fd / ZL__REG_PAGE;
    if (pg >= p->nregpages || !p->regpages[pg])
        return NULL;
    r = &p->regpages[pg][(size_t)fd % ZL__REG_PAGE];
    return r->gen ? r : NULL;
}

static zl__reg_t *reg_slot(zl_poller_t *p, int fd)
{
    size_t pg = (size_t)fd / ZL__REG_PAGE;

    if (pg >= p->nregpages) {
        size_t n = p->nregpages ? p->nregpages : 16;
        zl__reg_t **nd;
        while (n <= pg)
            n *= 2;
        nd = realloc(p->regpages, n * sizeof(*nd));
        if (!nd)
            return NULL;
        memset(nd + p->nregpages, 0, (n - p->nregpages) * sizeof(*nd));
        p->regpages = nd;
        p->nregpages = n;
    }
    if (!p->regpages[pg]) {
        p->regpages[pg] = calloc(ZL__REG_PAGE, sizeof(zl__reg_t));
        if (!p->regpages[pg])
            return NULL;
    }
    return &p->regpages[pg][(size_t)fd % ZL__REG_PAGE];
}

static void reg_free_all(zl_poller_t *p)
{
    for (size_t i = 0; i < p->nregpages; i++)
        free(p->regpages[i]);
    free(p->regpages);
    p->regpages = NULL;
    p->nregpages = 0;
}

static int fd_add_local(zl_poller_t *p, int fd, unsigned events, zl_io_fn cb,
                        void *udata)
{
    zl__reg_t *slot;
    uint32_t gen;
    int rc;

    if (fd < 0 || !cb)
        return fd < 0 ? -EBADF : -EINVAL;
    if (reg_get(p, fd))
        return -EEXIST;
    slot = reg_slot(p, fd);
    if (!slot)
        return -ENOMEM;
    gen = p->gen_next++;
    if (!gen) /* 0 marks a free slot */
        gen = p->gen_next++;
    rc = p->ops->add(p, fd, gen, events);
    if (rc < 0)
        return rc;
    *slot = (zl__reg_t){cb, udata, events, gen};
    atomic_fetch_add_explicit(&p->nfds, 1, memory_order_relaxed);
    return 0;
}

static int fd_mod_local(zl_poller_t *p, int fd, unsigned events)
{
    zl__reg_t *r = reg_get(p, fd);
    int rc;

    if (!r)
        return -ENOENT;
    rc = p->ops->mod(p, fd, r->gen, events);
    if (rc == 0)
        r->events = events;
    return rc;
}

static int fd_del_local(zl_poller_t *p, int fd)
{
    zl__reg_t *r = reg_get(p, fd);

    if (!r)
        return -ENOENT;
    p->ops->del(p, fd);
    /* Clearing gen makes any event of this registration still in the
     * current batch stale (TK#201: fd reused inside one batch). */
    memset(r, 0, sizeof(*r));
    atomic_fetch_sub_explicit(&p->nfds, 1, memory_order_relaxed);
    return 0;
}

enum { FDOP_ADD, FDOP_MOD, FDOP_DEL };

typedef struct fd_op {
    zl_poller_t *p;
    int kind, fd;
    unsigned events;
    zl_io_fn cb;
    void *udata;
    void (*done)(void *);
    void *arg;
} fd_op_t;

static void fd_op_run(void *arg)
{
    fd_op_t *op = arg;
    int rc = 0;

    switch (op->kind) {
    case FDOP_ADD:
        rc = fd_add_local(op->p, op->fd, op->events, op->cb, op->udata);
        break;
    case FDOP_MOD:
        rc = fd_mod_local(op->p, op->fd, op->events);
        break;
    case FDOP_DEL:
        rc = fd_del_local(op->p, op->fd);
        if (op->done)
            op->done(op->arg);
        break;
    }
    if (rc < 0)
        g_warning("%s: %s of fd %d failed: %s", op->p->name,
                  op->kind == FDOP_ADD   ? "adding"
                  : op->kind == FDOP_MOD ? "modifying"
                                         : "removing",
                  op->fd, zl_strerror(rc));
    free(op);
}

static int fd_op_post(zl_poller_t *p, const fd_op_t *tmpl)
{
    fd_op_t *op = malloc(sizeof(*op));
    int rc;

    if (!op)
        return -ENOMEM;
    *op = *tmpl;
    rc = enqueue(p, fd_op_run, op, false);
    if (rc < 0)
        free(op);
    return rc;
}

int zl_poller_add_fd(zl_poller_t *p, int fd, unsigned events, zl_io_fn cb,
                     void *udata)
{
    if (!p)
        return -EINVAL;
    if (tls_current == p)
        return fd_add_local(p, fd, events, cb, udata);
    if (fd < 0 || !cb)
        return fd < 0 ? -EBADF : -EINVAL;
    return fd_op_post(p, &(fd_op_t){.p = p, .kind = FDOP_ADD, .fd = fd,
                                    .events = events, .cb = cb,
                                    .udata = udata});
}

int zl_poller_mod_fd(zl_poller_t *p, int fd, unsigned events)
{
    if (!p)
        return -EINVAL;
    if (tls_current == p)
        return fd_mod_local(p, fd, events);
    return fd_op_post(p, &(fd_op_t){.p = p, .kind = FDOP_MOD, .fd = fd,
                                    .events = events});
}

int zl_poller_del_fd(zl_poller_t *p, int fd, void (*done)(void *), void *arg)
{
    int rc;

    if (!p)
        return -EINVAL;
    if (tls_current == p) {
        rc = fd_del_local(p, fd);
        if (rc == 0 && done)
            done(arg);
        return rc;
    }
    return fd_op_post(p, &(fd_op_t){.p = p, .kind = FDOP_DEL, .fd = fd,
                                    .done = done, .arg = arg});
}

size_t zl_poller_fd_count(const zl_poller_t *p)
{
    return atomic_load_explicit(&p->nfds, memory_order_relaxed);
}

static void dispatch(zl_poller_t *p, int n)
{
    for (int i = 0; i < n; i++) {
        const zl__bev_t *ev = &p->events[i];
        zl__reg_t *r;
        unsigned mask;

        if (ev->fd == p->wake_rfd) {
            wake_drain(p);
            zl__taskq_woken(p);
            zl__taskq_drain(p);
            continue;
        }
        r = reg_get(p, ev->fd);
        if (!r || r->gen != ev->gen)
            continue; /* removed, or a new registration of a reused fd */
        mask = ev->events & (r->events | ZL_EV_ERROR | ZL_EV_HUP);
        if (!mask)
            continue;
        atomic_fetch_add_explicit(&p->st_io, 1, memory_order_relaxed);
        r->cb(p, ev->fd, mask, r->udata);
    }
}

/* ------------------------------------------------------------ load */

static void load_publish(zl_poller_t *p, bool sleeping, uint64_t now)
{
    atomic_store_explicit(&p->a_since, now, memory_order_relaxed);
    atomic_store_explicit(&p->a_sleeping, sleeping, memory_order_relaxed);
}

/* Record one wake-up: busy_ns spent working, then idle_ns asleep. */
static void load_record(zl_poller_t *p, uint64_t busy_ns, uint64_t idle_ns,
                        uint64_t now)
{
    zl__load_sample_t *s;

    /* Evict samples outside the window, then the oldest if full. */
    while (p->sample_len) {
        unsigned oldest = (p->sample_pos + ZL__LOAD_SAMPLES - p->sample_len) %
                          ZL__LOAD_SAMPLES;
        s = &p->samples[oldest];
        if (p->sample_len < ZL__LOAD_SAMPLES &&
            now - s->end_ns <= ZL__LOAD_WINDOW_NS)
            break;
        p->busy_sum -= s->busy_ns;
        p->idle_sum -= s->idle_ns;
        p->sample_len--;
    }
    s = &p->samples[p->sample_pos];
    *s = (zl__load_sample_t){busy_ns, idle_ns, now};
    p->sample_pos = (p->sample_pos + 1) % ZL__LOAD_SAMPLES;
    p->sample_len++;
    p->busy_sum += busy_ns;
    p->idle_sum += idle_ns;
    atomic_store_explicit(&p->a_busy, p->busy_sum, memory_order_relaxed);
    atomic_store_explicit(&p->a_idle, p->idle_sum, memory_order_relaxed);
}

unsigned zl_poller_load(const zl_poller_t *p)
{
    uint64_t now = zl_now_ns();
    uint64_t busy = atomic_load_explicit(&p->a_busy, memory_order_relaxed);
    uint64_t idle = atomic_load_explicit(&p->a_idle, memory_order_relaxed);
    uint64_t since = atomic_load_explicit(&p->a_since, memory_order_relaxed);
    bool sleeping = atomic_load_explicit(&p->a_sleeping, memory_order_relaxed);
    uint64_t unrec = atomic_load_explicit(&p->a_unrec, memory_order_relaxed);
    uint64_t cur = now > since ? now - since : 0;

    /* The current stretch counts too: a loop stuck in a long task is busy
     * now, and one asleep for seconds is idle now. */
    if (cur >= ZL__LOAD_WINDOW_NS)
        return sleeping ? 0 : 100;
    if (sleeping) /* the busy stretch before this sleep counts already */
        idle += cur, busy += unrec;
    else
        busy += cur;
    /* Over at least ZL__LOAD_MIN_WINDOW_NS: right after start the window is
     * microseconds long, and one small task would read as real load. */
    if (busy + idle < ZL__LOAD_MIN_WINDOW_NS)
        idle = ZL__LOAD_MIN_WINDOW_NS - busy;
    return (unsigned)(busy * 100 / (busy + idle));
}

typedef struct probe {
    zl_poller_t *p;
    uint64_t t0;
    zl_delay_fn cb;
    void *arg;
} probe_t;

static void probe_run(void *arg)
{
    probe_t *pr = arg;
    uint64_t now = zl_now_us();

    pr->cb(pr->p, now > pr->t0 ? now - pr->t0 : 0, pr->arg);
    free(pr);
}

int zl_poller_probe_delay(zl_poller_t *p, zl_delay_fn cb, void *arg)
{
    probe_t *pr;
    int rc;

    if (!p || !cb)
        return -EINVAL;
    pr = malloc(sizeof(*pr));
    if (!pr)
        return -ENOMEM;
    *pr = (probe_t){p, zl_now_us(), cb, arg};
    rc = enqueue(p, probe_run, pr, false);
    if (rc < 0)
        free(pr);
    return rc;
}

void zl_poller_get_stats(const zl_poller_t *p, zl_poller_stats_t *out)
{
    out->loops = atomic_load_explicit(&p->st_loops, memory_order_relaxed);
    out->tasks = atomic_load_explicit(&p->st_tasks, memory_order_relaxed);
    out->wakeups = atomic_load_explicit(&p->st_wakeups, memory_order_relaxed);
    out->timers = atomic_load_explicit(&p->st_timers, memory_order_relaxed);
    out->io_events = atomic_load_explicit(&p->st_io, memory_order_relaxed);
}

/* ------------------------------------------------------------ memory */

/* malloc keeps what is freed for reuse: after a burst of peers that never
 * read filled hundreds of send queues and left, RSS stayed near its peak
 * (glibc's per-thread arenas only shrink from the top).  malloc_trim(0)
 * gives the free pages of every arena back.  It is driven by volume, not
 * by a clock: each poller counts the send-queue bytes it frees (an add and
 * a compare, in zl__poller_note_freed), and every ZL__TRIM_BYTES of them
 * try to arm one process-wide timer.  When it fires, ZL__TRIM_DELAY_MS
 * later (the rest of a close storm goes first), a worker trims: 1 to 50 ms
 * after a few hundred MB, locking each arena meanwhile.  While
 * queues still churn through more than ZL__TRIM_BUSY chunks per delay the
 * memory is being reused, so the trim waits for the churn to stop instead
 * of releasing pages that would fault straight back in. */
#define ZL__TRIM_BYTES ((size_t)4 << 20)
#define ZL__TRIM_DELAY_MS 1000
#define ZL__TRIM_BUSY 2

static atomic_uint_fast64_t trim_count;

uint64_t zl_memory_trims(void)
{
    return atomic_load_explicit(&trim_count, memory_order_relaxed);
}

#ifdef HAVE_MALLOC_TRIM
enum { TRIM_IDLE, TRIM_ARMED, TRIM_QUEUED };
static atomic_int trim_state;            /* one timer or job at a time */
static atomic_uint_fast64_t trim_chunks; /* ZL__TRIM_BYTES freed, counted */
static atomic_uint_fast64_t trim_mark;   /* trim_chunks when (re)armed */

static void trim_work(void *arg)
{
    uint64_t t0 = zl_now_us();
    int released;

    (void)arg;
    released = malloc_trim(0);
    atomic_fetch_add_explicit(&trim_count, 1, memory_order_relaxed);
    g_debug("send queues freed memory: malloc_trim %s in %.1f ms",
            released ? "gave some back" : "found nothing to give back",
            (double)(zl_now_us() - t0) / 1000.0);
}

static void trim_job_end(void *arg)
{
    (void)arg;
    atomic_store(&trim_state, TRIM_IDLE);
}

static uint64_t trim_timer(void *arg)
{
    uint_fast64_t now = atomic_load_explicit(&trim_chunks,
                                             memory_order_relaxed);
    zl_worker_pool_t *w = zl_runtime_workers();

    (void)arg;
    if (now - atomic_load_explicit(&trim_mark, memory_order_relaxed) >
        ZL__TRIM_BUSY) {
        atomic_store_explicit(&trim_mark, now, memory_order_relaxed);
        return ZL__TRIM_DELAY_MS; /* still churning: look again later */
    }
    /* QUEUED before submitting: the job may end before submit returns. */
    atomic_store(&trim_state, TRIM_QUEUED);
    if (!w || zl_worker_submit(w, NULL, trim_work, NULL, trim_job_end, NULL,
                               NULL) < 0) {
        atomic_store(&trim_state, TRIM_ARMED); /* the timer's end frees it */
        trim_work(NULL); /* no worker pool (or it is stopping): here */
    }
    return 0;
}

/* The timer ended: ARMED means no job took over (ran inline, cancelled,
 * or the poller stopped), so the next pile of frees may arm again. */
static void trim_timer_end(void *arg)
{
    int armed = TRIM_ARMED;

    (void)arg;
    atomic_compare_exchange_strong(&trim_state, &armed, TRIM_IDLE);
}

/* False while a trim job is queued or running: it may have passed these
 * bytes already, so the caller keeps counting them. */
static bool trim_arm(zl_poller_t *p)
{
    int st = TRIM_IDLE;

    if (!atomic_compare_exchange_strong(&trim_state, &st, TRIM_ARMED)) {
        if (st != TRIM_ARMED)
            return false;
        /* The armed timer has not fired (or, with no worker pool, trims
         * inline now): it covers these bytes. */
        atomic_fetch_add_explicit(&trim_chunks, 1, memory_order_relaxed);
        return true;
    }
    atomic_store_explicit(&trim_mark,
                          atomic_fetch_add_explicit(&trim_chunks, 1,
                                                    memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (zl_poller_add_timer(p, ZL__TRIM_DELAY_MS, trim_timer, NULL,
                            trim_timer_end, NULL) < 0)
        atomic_store(&trim_state, TRIM_IDLE); /* stopping: no trim */
    return true;
}
#endif

void zl__poller_note_freed(size_t bytes)
{
#ifdef HAVE_MALLOC_TRIM
    zl_poller_t *p = tls_current;

    if (!p || (p->trim_freed += bytes) < ZL__TRIM_BYTES)
        return;
    if (trim_arm(p))
        p->trim_freed = 0;
#else
    (void)bytes;
#endif
}

/* ------------------------------------------------------------ loop */

#define ZL__DRAIN_ROUNDS 8

static void *loop_main(void *arg)
{
    zl_poller_t *p = arg;
    uint64_t t_wake = zl_now_ns(), t_sleep;

    tls_current = p;
    zl_thread_set_name(p->name);
    /* Thread start-up is not load: a poller that has just started must not
     * read busy against its still-tiny idle window (it would be passed over
     * by the pool).  The first busy stretch counts from the first wake. */
    p->busy_since = 0;
    load_publish(p, true, t_wake);

    while (atomic_load_explicit(&p->running, memory_order_acquire)) {
        int timeout, n;
        bool slept;

        p->now_ms = t_wake / 1000000u;
        zl__timers_run(p);
        /* A few bounded rounds before polling fds again: a producer keeps
         * the ring full while the loop sits in a poll call (each round runs
         * only what was queued when it began, so fds wait at most
         * ZL__DRAIN_ROUNDS rounds of a self-re-posting task). */
        for (int r = 0; r < ZL__DRAIN_ROUNDS && zl__taskq_drain(p); r++)
            ;

        timeout = zl__taskq_own_pending(p) ? 0 : zl__timers_timeout(p);
        /* Producers wake the loop only when it announced a sleep. */
        slept = timeout != 0 && !zl__taskq_sleep_begin(p);
        if (!slept)
            timeout = 0;
        t_sleep = zl_now_ns();
        /* Tasks drained just above may have told a waiter they ran: their
         * busy stretch is visible to zl_poller_load() before the wake-up
         * that records it. */
        atomic_store_explicit(&p->a_unrec,
                              t_sleep - (p->busy_since ? p->busy_since
                                                       : t_sleep),
                              memory_order_relaxed);
        load_publish(p, true, t_sleep);
        n = p->ops->wait(p, p->events, ZL__MAX_EVENTS, timeout);
        if (slept)
            zl__taskq_sleep_end(p);
        /* Record the busy stretch and the sleep that followed it as soon as
         * both are complete, so readers never see a stale window. */
        t_wake = zl_now_ns();
        load_record(p, t_sleep - (p->busy_since ? p->busy_since : t_sleep),
                    t_wake - t_sleep, t_wake);
        p->busy_since = t_wake;
        load_publish(p, false, t_wake);
        atomic_fetch_add_explicit(&p->st_loops, 1, memory_order_relaxed);
        if (n < 0) {
            if (n != -EINTR) {
                g_critical("%s: %s wait failed: %s", p->name, p->ops->name,
                           zl_strerror(n));
                usleep(10000); /* never spin on a broken backend */
            }
            continue;
        }
        dispatch(p, n);
    }

    /* Stopping: posts are refused already (closing); run what was queued,
     * including what those tasks' own fds and timers no longer need. */
    zl__taskq_drain_final(p);
    zl__timers_shutdown(p);
    tls_current = NULL;
    return NULL;
}

/* ------------------------------------------------------------ life */

int zl_poller_new(zl_poller_t **out, const zl_poller_options_t *opts)
{
    zl_poller_options_t dflt = {0};
    const char *bname;
    zl_poller_t *p;
    int rc;

    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!opts)
        opts = &dflt;
    bname = opts->backend ? opts->backend : getenv("ZLTK_POLLER_BACKEND");
    if (!backend_find(bname)) {
        g_warning("unknown poller backend '%s' (this build has: %s%s%s)",
                  bname, backend_names[0],
                  backend_names[1] ? ", " : "",
                  backend_names[1] ? backend_names[1] : "");
        return -EINVAL;
    }

    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    atomic_init(&p->refs, 1);
    p->ops = backend_find(bname);
    p->wake_rfd = p->wake_wfd = -1;
    p->gen_next = 1;
    g_strlcpy(p->name, opts->name ? opts->name : "zl-poller", sizeof(p->name));
    rc = zl__taskq_new(&p->tq);
    if (rc < 0) {
        free(p);
        return rc;
    }
    rc = p->ops->init(p);
    if (rc < 0)
        goto fail_mutex;
    rc = wake_open(p);
    if (rc < 0)
        goto fail_backend;
    /* The wake-up fd is level-triggered and handled by dispatch() itself. */
    rc = p->ops->add(p, p->wake_rfd, 0, ZL_EV_READ | ZL_EV_LT);
    if (rc < 0)
        goto fail_wake;
    atomic_store(&p->running, true);
    rc = -pthread_create(&p->thread, NULL, loop_main, p);
    if (rc < 0)
        goto fail_wake;
    if (opts->pin_cpu && opts->cpu >= 0) {
#ifdef HAVE_PTHREAD_SETAFFINITY_NP
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(opts->cpu, &set);
        int e = pthread_setaffinity_np(p->thread, sizeof(set), &set);
        if (e)
            g_warning("%s: cannot pin to CPU %d: %s", p->name, opts->cpu,
                      zl_strerror(-(e)));
#endif
    }
    *out = p;
    return 0;

fail_wake:
    wake_close(p);
fail_backend:
    p->ops->destroy(p);
fail_mutex:
    zl__taskq_free(p->tq);
    free(p);
    return rc;
}

void zl_poller_free(zl_poller_t *p)
{
    if (!p)
        return;
    if (tls_current == p) {
        g_critical("zl_poller_free(%s) called from the poller's own thread; "
                   "free it from another thread",
                   p->name);
        return;
    }
    zl__taskq_close(p->tq);
    atomic_store_explicit(&p->running, false, memory_order_release);
    zl__poller_wake(p);
    pthread_join(p->thread, NULL);

    wake_close(p);
    p->ops->destroy(p);
    reg_free_all(p);
    free(p->heap);
    p->heap = NULL;
    zl__poller_unref(p);
}

/* ------------------------------------------------------------ identity */

zl_poller_t *zl_poller_current(void)
{
    return tls_current;
}

bool zl_poller_is_current(const zl_poller_t *p)
{
    return p && tls_current == p;
}

const char *zl_poller_name(const zl_poller_t *p)
{
    return p->name;
}

const char *zl_poller_backend(const zl_poller_t *p)
{
    return p->ops->name;
}

bool zl_poller_has_edge(const zl_poller_t *p)
{
    return p->ops->edge;
}
