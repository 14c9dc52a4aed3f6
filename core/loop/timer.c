/* zltk — timers: a 4-ary min-heap per poller of intrusive nodes, and the
 * refcounted, any-thread handle API built on it.
 *
 * The heap.  Entries are {deadline, node*}, 16 bytes, so comparing and
 * moving them touches the heap array only; the node keeps its position
 * (for O(log n) stop) and its arming sequence number, read only when two
 * deadlines are equal (FIFO among equal deadlines).  Four children per
 * node, laid out so that each group of siblings is one 64-byte line: half
 * the depth of a binary heap at the same cache misses per level.  bench/
 * bench-timers measured it against the binary layout (doc/bench.md).
 *
 * Handles (zl_poller_add_timer).  A struct zl_timer embeds a node and
 * carries references: one "system" reference from creation until it is
 * finalised (destroy called, not armed), one for the caller's handle, and
 * one for each task posted about it.  Finalising happens only on the
 * poller thread and is idempotent, so every place on that thread that sees
 * a timer ENDED may simply finalise it.
 *
 * Handle state (atomic, any thread): LIVE → RUNNING → LIVE (re-armed) or
 * ENDED.  Whoever moves a timer to ENDED from another thread posts a
 * finalise task; on the poller thread it finalises at once (or, from inside
 * the timer's own callback, the callback's wrapper does when it returns).
 */
#define G_LOG_DOMAIN "zltk-timer"
#include "poller-internal.h"

#ifndef ZL__TIMER_ARITY
#define ZL__TIMER_ARITY 4 /* 2 builds the binary heap, for comparison */
#endif
#define D ZL__TIMER_ARITY
/* Entries start SKEW slots into the 64-byte aligned allocation so that the
 * children of i, D * i + 1 ... D * i + D, share one line (D * 16 <= 64). */
#define SKEW (D - 1)
#define LINE 64
#define HEAP_MIN 64
#define SHRINK_MIN 4096
/* Longer delays are "never" (about 140 years): no overflow. */
#define DELAY_MAX (UINT64_C(1) << 42)

typedef zl__tentry_t ent_t;

/* ------------------------------------------------------------ heap */

static inline ent_t *entries(const zl_poller_t *p)
{
    return p->heap + SKEW;
}

static inline bool before(const ent_t *a, const ent_t *b)
{
    return a->key < b->key ||
           (a->key == b->key && a->node->zl_seq < b->node->zl_seq);
}

static inline void place(ent_t *h, size_t i, ent_t e)
{
    h[i] = e;
    e.node->zl_pos = (uint32_t)(i + 1);
}

/* Put e at hole i, moving it up as far as it belongs. */
static void sift_up(ent_t *h, size_t i, ent_t e)
{
    while (i > 0) {
        size_t parent = (i - 1) / D;
        if (!before(&e, &h[parent]))
            break;
        place(h, i, h[parent]);
        i = parent;
    }
    place(h, i, e);
}

/* Put e at hole i of a heap of n entries, moving it down as it belongs. */
static void sift_down(ent_t *h, size_t n, size_t i, ent_t e)
{
    for (;;) {
        size_t c = D * i + 1, m = c, end;

        if (c >= n)
            break;
        end = c + D < n ? c + D : n;
        for (size_t k = c + 1; k < end; k++)
            if (before(&h[k], &h[m]))
                m = k;
        if (!before(&h[m], &e))
            break;
        place(h, i, h[m]);
        i = m;
    }
    place(h, i, e);
}

/* Put e at hole i, up or down. */
static void sift(ent_t *h, size_t n, size_t i, ent_t e)
{
    if (i > 0 && before(&e, &h[(i - 1) / D]))
        sift_up(h, i, e);
    else
        sift_down(h, n, i, e);
}

/* Reallocate to ncap entries (>= heap_len).  Doubling on growth, halving
 * on shrink: no step copies more than twice what is armed. */
static int heap_resize(zl_poller_t *p, size_t ncap)
{
    size_t bytes = (ncap + SKEW) * sizeof(ent_t);
    ent_t *nh;

    if (ncap > UINT32_MAX - 1)
        return -ENOMEM; /* positions are 32-bit */
    bytes = (bytes + LINE - 1) / LINE * LINE;
    nh = aligned_alloc(LINE, bytes);
    if (!nh)
        return -ENOMEM;
    if (p->heap_len)
        memcpy(nh + SKEW, entries(p), p->heap_len * sizeof(ent_t));
    free(p->heap);
    p->heap = nh;
    p->heap_cap = ncap;
    return 0;
}

static void count_changed(zl_poller_t *p)
{
    atomic_store_explicit(&p->ntimers, p->heap_len, memory_order_relaxed);
}

/* Arm a node that is not armed, at deadline key (ms). */
static int heap_push(zl_poller_t *p, zl_timer_node_t *node, uint64_t key)
{
    if (p->heap_len == p->heap_cap &&
        heap_resize(p, p->heap_cap ? p->heap_cap * 2 : HEAP_MIN) < 0)
        return -ENOMEM;
    node->zl_seq = p->timer_seq++;
    sift_up(entries(p), p->heap_len++, (ent_t){key, node});
    count_changed(p);
    return 0;
}

/* Disarm the entry at position i. */
static void heap_remove_at(zl_poller_t *p, size_t i)
{
    ent_t *h = entries(p);
    size_t n = --p->heap_len;

    h[i].node->zl_pos = 0;
    if (i != n)
        sift(h, n, i, h[n]);
    count_changed(p);
    if (p->heap_cap >= SHRINK_MIN && n < p->heap_cap / 4)
        (void)heap_resize(p, p->heap_cap / 2); /* kept if it fails */
}

/* The node's position, or SIZE_MAX if it is not armed here. */
static size_t node_pos(const zl_poller_t *p, const zl_timer_node_t *node)
{
    size_t i = (size_t)node->zl_pos - 1;

    if (!node->zl_pos)
        return SIZE_MAX;
    if (i >= p->heap_len || entries(p)[i].node != node) {
        g_critical("%s: timer node %p is armed on another poller",
                   p->name, (const void *)node);
        return SIZE_MAX;
    }
    return i;
}

/* ------------------------------------------------------------ nodes */

static uint64_t deadline_after(uint64_t delay_ms)
{
    if (delay_ms >= DELAY_MAX)
        return UINT64_MAX;
    /* Round up so that a timer never fires before delay_ms has elapsed. */
    return (zl_now_ns() + delay_ms * 1000000u + 999999u) / 1000000u;
}

/* Arm or re-arm node at deadline key. */
static int node_arm(zl_poller_t *p, zl_timer_node_t *node, uint64_t key)
{
    size_t i;

    if (!node->zl_pos)
        return heap_push(p, node, key);
    i = node_pos(p, node);
    if (i == SIZE_MAX)
        return -EINVAL;
    node->zl_seq = p->timer_seq++;
    sift(entries(p), p->heap_len, i, (ent_t){key, node});
    return 0;
}

void zl_timer_node_init(zl_timer_node_t *node, zl_timer_node_fn fn)
{
    *node = (zl_timer_node_t)ZL_TIMER_NODE_INIT(fn);
}

int zl_timer_node_start(zl_poller_t *p, zl_timer_node_t *node,
                        uint64_t delay_ms)
{
    if (!atomic_load_explicit(&p->running, memory_order_acquire)) {
        zl_timer_node_stop(p, node);
        return ZL_ESHUTDOWN;
    }
    return node_arm(p, node, deadline_after(delay_ms));
}

bool zl_timer_node_stop(zl_poller_t *p, zl_timer_node_t *node)
{
    size_t i = node_pos(p, node);

    if (i == SIZE_MAX)
        return false;
    heap_remove_at(p, i);
    return true;
}

bool zl_timer_node_is_armed(const zl_timer_node_t *node)
{
    return node->zl_pos != 0;
}

/* ------------------------------------------------------------ handles */

enum { TM_LIVE, TM_RUNNING, TM_ENDED };

struct zl_timer {
    zl_timer_node_t node;
    atomic_int refs;
    _Atomic unsigned char state;
    bool holds_poller; /* a handle may outlive the poller */
    bool finalized;    /* poller thread only */
    bool repeat;       /* cb.rfn every interval, else cb.fn */
    zl_poller_t *p;
    union {
        zl_timer_fn fn;
        zl_repeat_fn rfn;
    } cb;
    void *arg;
    zl_destroy_fn destroy;
    uint64_t interval;
};

static void timer_unref(zl_timer_t *t)
{
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (t->holds_poller)
        zl__poller_unref(t->p);
    free(t);
}

/* Poller thread only.  Idempotent. */
static void finalize(zl_poller_t *p, zl_timer_t *t)
{
    zl_timer_node_stop(p, &t->node);
    if (t->finalized)
        return;
    t->finalized = true;
    atomic_store_explicit(&t->state, TM_ENDED, memory_order_release);
    if (t->destroy)
        t->destroy(t->arg);
    timer_unref(t); /* the system reference */
}

/* The node callback of every handle timer. */
static void handle_fire(zl_poller_t *p, zl_timer_node_t *node)
{
    zl_timer_t *t = (zl_timer_t *)node; /* node is the first member */
    unsigned char s = TM_LIVE;
    uint64_t next;

    if (!atomic_compare_exchange_strong(&t->state, &s, TM_RUNNING)) {
        finalize(p, t); /* cancelled from another thread */
        return;
    }
    p->timer_runs++;
    if (t->repeat)
        next = t->cb.rfn(t->arg) ? t->interval : 0;
    else
        next = t->cb.fn(t->arg);
    s = TM_RUNNING;
    if (next && atomic_compare_exchange_strong(&t->state, &s, TM_LIVE)) {
        if (heap_push(p, node, deadline_after(next)) == 0)
            return;
        g_critical("%s: out of memory re-arming a timer; it stops", p->name);
    }
    finalize(p, t);
}

static void insert_task(void *arg)
{
    zl_timer_t *t = arg;

    /* A timer cancelled before this ran is inserted anyway unless already
     * finalised: its finalise task (or the shutdown sweep, if that task
     * could not be posted) will take it out.  The deadline, computed at
     * the add, waits in zl_seq until heap_push() numbers the node. */
    if (!t->finalized && heap_push(t->p, &t->node, t->node.zl_seq) < 0) {
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

static zl_timer_t *timer_new(zl_poller_t *p, bool repeat, void *cb,
                             uint64_t interval, void *arg,
                             zl_destroy_fn destroy, bool handle)
{
    zl_timer_t *t = malloc(sizeof(*t));

    if (!t)
        return NULL;
    zl_timer_node_init(&t->node, handle_fire);
    atomic_init(&t->refs, 1 + handle);
    atomic_init(&t->state, TM_LIVE);
    t->holds_poller = handle;
    t->finalized = false;
    t->repeat = repeat;
    t->p = p;
    if (repeat)
        t->cb.rfn = (zl_repeat_fn)cb;
    else
        t->cb.fn = (zl_timer_fn)cb;
    t->arg = arg;
    t->destroy = destroy;
    t->interval = interval;
    if (handle)
        zl__poller_ref(p);
    return t;
}

static int timer_add(zl_poller_t *p, uint64_t delay_ms, bool repeat,
                     void *cb, uint64_t interval, void *arg,
                     zl_destroy_fn destroy, zl_timer_t **handle)
{
    uint64_t key;
    zl_timer_t *t;
    int rc;

    if (handle)
        *handle = NULL;
    if (!p || !cb)
        return -EINVAL;
    t = timer_new(p, repeat, cb, interval, arg, destroy, handle != NULL);
    if (!t)
        return -ENOMEM;
    key = deadline_after(delay_ms);
    if (zl_poller_is_current(p)) {
        if (!atomic_load_explicit(&p->running, memory_order_acquire))
            rc = ZL_ESHUTDOWN; /* draining for shutdown */
        else
            rc = heap_push(p, &t->node, key);
    } else {
        t->node.zl_seq = key;
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
    return timer_add(p, delay_ms, false, (void *)fn, 0, arg, destroy,
                     handle);
}

int zl_poller_add_repeat(zl_poller_t *p, uint64_t interval_ms, zl_repeat_fn fn,
                         void *arg, zl_destroy_fn destroy, zl_timer_t **handle)
{
    if (!interval_ms) {
        if (handle)
            *handle = NULL;
        return -EINVAL;
    }
    return timer_add(p, interval_ms, true, (void *)fn, interval_ms, arg,
                     destroy, handle);
}

bool zl_timer_cancel(zl_timer_t *t)
{
    zl_poller_t *p;
    unsigned char s;

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
        /* From inside its own callback (RUNNING) handle_fire() finalises
         * it when the callback returns; otherwise it is gone now. */
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
    p->timer_runs = 0;
    /* Compare against a fixed now: a timer re-armed during this pass lands
     * in the future, so the pass always ends.  Callbacks may grow or
     * shrink the heap: re-read it every time. */
    while (p->heap_len && entries(p)[0].key <= now) {
        zl_timer_node_t *node = entries(p)[0].node;

        heap_remove_at(p, 0);
        if (node->zl_fn != handle_fire)
            p->timer_runs++;
        node->zl_fn(p, node);
    }
    if (p->timer_runs)
        atomic_fetch_add_explicit(&p->st_timers, p->timer_runs,
                                  memory_order_relaxed);
}

int zl__timers_timeout(zl_poller_t *p)
{
    uint64_t now, d;

    if (!p->heap_len)
        return -1;
    d = entries(p)[0].key;
    now = zl_now_ms();
    if (d <= now)
        return 0;
    return d - now > INT32_MAX ? INT32_MAX : (int)(d - now);
}

/* Drop every armed node: nodes are left not armed without a call, handle
 * timers are finalised (their destroy runs). */
void zl__timers_shutdown(zl_poller_t *p)
{
    while (p->heap_len) {
        zl_timer_node_t *node = entries(p)[p->heap_len - 1].node;

        heap_remove_at(p, p->heap_len - 1);
        if (node->zl_fn == handle_fire)
            finalize(p, (zl_timer_t *)node);
    }
    count_changed(p);
}
