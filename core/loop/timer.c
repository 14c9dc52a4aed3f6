/* zltk — timers: a binary min-heap per poller, indexed for O(log n) removal.
 *
 * Ownership.  A timer carries references: one "system" reference from
 * creation until it is finalised (destroy called, out of the heap), one for
 * the caller's handle, and one for each task posted about it.  Finalising
 * happens only on the poller thread and is idempotent, so every place on
 * that thread that sees a timer ENDED may simply finalise it.
 *
 * State (atomic, any thread): LIVE → RUNNING → LIVE (re-armed) or ENDED.
 * Whoever moves a timer to ENDED from another thread posts a finalise task;
 * on the poller thread it finalises at once (or, from inside the timer's own
 * callback, the loop does so when the callback returns).
 */
#define G_LOG_DOMAIN "zltk-timer"
#include "poller-internal.h"

enum { TM_LIVE, TM_RUNNING, TM_ENDED };

#define NOT_IN_HEAP SIZE_MAX

struct zl_timer {
    atomic_int refs;
    atomic_int state;
    zl_poller_t *p;
    bool holds_poller; /* a handle may outlive the poller */
    bool finalized;    /* poller thread only */
    size_t idx;        /* heap position, poller thread only */
    uint64_t deadline; /* ms, monotonic */
    uint64_t seq;      /* FIFO among equal deadlines */
    zl_timer_fn fn;
    zl_repeat_fn rfn;
    uint64_t interval;
    void *arg;
    zl_destroy_fn destroy;
};

static void timer_unref(zl_timer_t *t)
{
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (t->holds_poller)
        zl__poller_unref(t->p);
    free(t);
}

/* ------------------------------------------------------------ heap */

static bool before(const zl_timer_t *a, const zl_timer_t *b)
{
    return a->deadline < b->deadline ||
           (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_set(zl_poller_t *p, size_t i, zl_timer_t *t)
{
    p->heap[i] = t;
    t->idx = i;
}

static void sift_up(zl_poller_t *p, size_t i)
{
    zl_timer_t *t = p->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(t, p->heap[parent]))
            break;
        heap_set(p, i, p->heap[parent]);
        i = parent;
    }
    heap_set(p, i, t);
}

static void sift_down(zl_poller_t *p, size_t i)
{
    zl_timer_t *t = p->heap[i];
    size_t n = p->heap_len;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && before(p->heap[c + 1], p->heap[c]))
            c++;
        if (!before(p->heap[c], t))
            break;
        heap_set(p, i, p->heap[c]);
        i = c;
    }
    heap_set(p, i, t);
}

static int heap_push(zl_poller_t *p, zl_timer_t *t)
{
    if (p->heap_len == p->heap_cap) {
        size_t ncap = p->heap_cap ? p->heap_cap * 2 : 64;
        zl_timer_t **nh = realloc(p->heap, ncap * sizeof(*nh));
        if (!nh)
            return -ENOMEM;
        p->heap = nh;
        p->heap_cap = ncap;
    }
    t->seq = p->timer_seq++;
    heap_set(p, p->heap_len++, t);
    sift_up(p, t->idx);
    atomic_store_explicit(&p->ntimers, p->heap_len, memory_order_relaxed);
    return 0;
}

static void heap_remove(zl_poller_t *p, zl_timer_t *t)
{
    size_t i = t->idx;
    zl_timer_t *last;

    if (i == NOT_IN_HEAP)
        return;
    last = p->heap[--p->heap_len];
    t->idx = NOT_IN_HEAP;
    if (last != t) {
        heap_set(p, i, last);
        if (i > 0 && before(last, p->heap[(i - 1) / 2]))
            sift_up(p, i);
        else
            sift_down(p, i);
    }
    atomic_store_explicit(&p->ntimers, p->heap_len, memory_order_relaxed);
}

/* ------------------------------------------------------------ life */

/* Poller thread only.  Idempotent. */
static void finalize(zl_poller_t *p, zl_timer_t *t)
{
    heap_remove(p, t);
    if (t->finalized)
        return;
    t->finalized = true;
    atomic_store_explicit(&t->state, TM_ENDED, memory_order_release);
    if (t->destroy)
        t->destroy(t->arg);
    timer_unref(t); /* the system reference */
}

static void insert_task(void *arg)
{
    zl_timer_t *t = arg;

    /* A timer cancelled before this ran is inserted anyway unless already
     * finalised: its finalise task (or the shutdown sweep, if that task
     * could not be posted) will take it out. */
    if (!t->finalized && heap_push(t->p, t) < 0) {
        g_critical("%s: out of memory arming a timer; it is dropped",
                   t->p->name);
        finalize(t->p, t);
    }
    timer_unref(t);
}

static void finalize_task(void *arg)
{
    zl_timer_t *t = arg;

    finalize(t->p, t);
    timer_unref(t);
}

static uint64_t deadline_after(uint64_t delay_ms)
{
    /* Round up so that a timer never fires before delay_ms has elapsed. */
    return (zl_now_ns() + delay_ms * 1000000u + 999999u) / 1000000u;
}

static int timer_add(zl_poller_t *p, uint64_t delay_ms, zl_timer_fn fn,
                     zl_repeat_fn rfn, uint64_t interval, void *arg,
                     zl_destroy_fn destroy, zl_timer_t **handle)
{
    zl_timer_t *t;
    int rc;

    if (handle)
        *handle = NULL;
    if (!p || (!fn && !rfn))
        return -EINVAL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    atomic_init(&t->refs, 1 + (handle != NULL));
    atomic_init(&t->state, TM_LIVE);
    t->p = p;
    t->idx = NOT_IN_HEAP;
    t->fn = fn;
    t->rfn = rfn;
    t->interval = interval;
    t->arg = arg;
    t->destroy = destroy;
    t->deadline = deadline_after(delay_ms);
    if (handle) {
        zl__poller_ref(p);
        t->holds_poller = true;
    }

    if (zl_poller_is_current(p)) {
        if (!atomic_load_explicit(&p->running, memory_order_acquire))
            rc = ZL_ESHUTDOWN; /* draining for shutdown */
        else
            rc = heap_push(p, t);
    } else {
        atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
        rc = zl_poller_post(p, 0, insert_task, t, NULL);
    }
    if (rc < 0) {
        if (t->holds_poller)
            zl__poller_unref(p);
        free(t);
        return rc;
    }
    if (handle)
        *handle = t;
    return 0;
}

int zl_poller_add_timer(zl_poller_t *p, uint64_t delay_ms, zl_timer_fn fn,
                        void *arg, zl_destroy_fn destroy, zl_timer_t **handle)
{
    if (!fn)
        return -EINVAL;
    return timer_add(p, delay_ms, fn, NULL, 0, arg, destroy, handle);
}

int zl_poller_add_repeat(zl_poller_t *p, uint64_t interval_ms, zl_repeat_fn fn,
                         void *arg, zl_destroy_fn destroy, zl_timer_t **handle)
{
    if (!fn || !interval_ms)
        return -EINVAL;
    return timer_add(p, interval_ms, NULL, fn, interval_ms, arg, destroy,
                     handle);
}

bool zl_timer_cancel(zl_timer_t *t)
{
    zl_poller_t *p;
    int s;

    if (!t)
        return false;
    p = t->p;
    s = atomic_load_explicit(&t->state, memory_order_acquire);
    do {
        if (s == TM_ENDED) {
            timer_unref(t);
            return false;
        }
    } while (!atomic_compare_exchange_weak(&t->state, &s, TM_ENDED));

    if (zl_poller_is_current(p)) {
        /* From inside its own callback (RUNNING) the loop finalises it when
         * the callback returns; otherwise it is gone now. */
        if (s == TM_LIVE)
            finalize(p, t);
    } else {
        atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
        if (zl_poller_post(p, 0, finalize_task, t, NULL) < 0)
            timer_unref(t); /* stopping: the shutdown sweep finalises it */
    }
    timer_unref(t); /* the handle */
    return true;
}

void zl_timer_release(zl_timer_t *t)
{
    if (t)
        timer_unref(t);
}

size_t zl_poller_timer_count(const zl_poller_t *p)
{
    return atomic_load_explicit(&p->ntimers, memory_order_relaxed);
}

/* ------------------------------------------------------------ loop side */

void zl__timers_run(zl_poller_t *p)
{
    uint64_t now;

    if (!p->heap_len)
        return;
    now = zl_now_ms();
    /* Compare against a fixed now: a timer re-armed during this pass lands
     * in the future, so the pass always ends. */
    while (p->heap_len && p->heap[0]->deadline <= now) {
        zl_timer_t *t = p->heap[0];
        int s = TM_LIVE;
        uint64_t next;

        heap_remove(p, t);
        if (!atomic_compare_exchange_strong(&t->state, &s, TM_RUNNING)) {
            finalize(p, t); /* cancelled from another thread */
            continue;
        }
        if (t->rfn)
            next = t->rfn(t->arg) ? t->interval : 0;
        else
            next = t->fn(t->arg);
        atomic_fetch_add_explicit(&p->st_timers, 1, memory_order_relaxed);

        s = TM_RUNNING;
        if (next && atomic_compare_exchange_strong(&t->state, &s, TM_LIVE)) {
            t->deadline = deadline_after(next);
            if (heap_push(p, t) == 0)
                continue;
            g_critical("%s: out of memory re-arming a timer; it stops",
                       p->name);
        }
        finalize(p, t);
    }
}

int zl__timers_timeout(zl_poller_t *p)
{
    uint64_t now, d;

    if (!p->heap_len)
        return -1;
    d = p->heap[0]->deadline;
    now = zl_now_ms();
    if (d <= now)
        return 0;
    return d - now > INT32_MAX ? INT32_MAX : (int)(d - now);
}

void zl__timers_shutdown(zl_poller_t *p)
{
    while (p->heap_len)
        finalize(p, p->heap[p->heap_len - 1]);
    atomic_store_explicit(&p->ntimers, 0, memory_order_relaxed);
}
