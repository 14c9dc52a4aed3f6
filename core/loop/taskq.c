/* zltk — the poller's task queue: a lock-free bounded MPSC ring for posts
 * from other threads, a locked unbounded overflow behind it, a locked queue
 * for ZL_TASK_FIRST and a private ring for the loop's own posts.
 *
 * Cross-thread ring (after Vyukov's bounded MPMC queue, one consumer): each
 * cell has a sequence number.  Cell i is free for position pos when
 * seq == pos; a producer claims pos with a CAS on tail, writes fn and arg,
 * and publishes with seq = pos + 1.  The loop reads cells in order from head
 * and stops at the first unpublished one; it frees a cell with
 * seq = pos + CAP.  The top bit of tail is the closing bit: once set (with
 * fetch_or) every later CAS fails and the post is refused.
 *
 * Wake-ups: the loop stores sleeping = true before a blocking wait and then
 * looks at tail, the overflow flag and the FIRST count (all seq_cst); a
 * producer, after its seq_cst CAS or locked store, loads sleeping (seq_cst)
 * and writes the eventfd only if it is set and wake_pending was clear.  In
 * the single total order either the loop sees the post (and waits with
 * timeout 0) or the producer sees sleeping (and wakes it): never neither.
 * The loop clears wake_pending when it reads the eventfd. */
#define G_LOG_DOMAIN "zltk-poller"
#include "poller-internal.h"

#include <limits.h>
#include <sched.h>

#define TQ_CAP ZL__TASKQ_CAP
#define TQ_MASK (TQ_CAP - 1)
#define TQ_CLOSED ((size_t)1 << (sizeof(size_t) * CHAR_BIT - 1))

typedef struct tq_cell {
    atomic_size_t seq;
    zl_task_fn fn;
    void *arg;
} tq_cell_t;

struct zl__taskq {
    /* Producers claim positions here (own cache line: CAS target). */
    _Alignas(64) atomic_size_t tail;
    /* Written by the loop around blocking waits, read by producers. */
    _Alignas(64) atomic_bool sleeping;
    atomic_bool wake_pending;
    /* Read-mostly: closing, overflow in use, FIRST tasks queued. */
    _Alignas(64) atomic_bool closing;
    atomic_bool ovf_used; /* set under lock while ovf is non-empty */
    atomic_size_t nfirst; /* first.len, stored under lock */
    /* Taken by producers only while the overflow is in use. */
    _Alignas(64) pthread_mutex_t lock; /* ovf, first */
    zl__ring_t ovf, first;
    /* Loop thread only. */
    _Alignas(64) size_t head;
    size_t ovf_mark;           /* tail seen after ovf_run was swapped out */
    zl__ring_t own;            /* the loop's own posts */
    zl__ring_t ovf_run, first_run;
    _Alignas(64) tq_cell_t cells[TQ_CAP];
};

/* ------------------------------------------------------------ ring */

static int ring_grow(zl__ring_t *r)
{
    size_t ncap = r->cap ? r->cap * 2 : 64;
    zl__task_ent_t *nb = malloc(ncap * sizeof(*nb));

    if (!nb)
        return -ENOMEM;
    for (size_t i = 0; i < r->len; i++)
        nb[i] = r->buf[(r->head + i) & (r->cap - 1)];
    free(r->buf);
    r->buf = nb;
    r->cap = ncap;
    r->head = 0;
    return 0;
}

/* Capacity is always a power of two: index with a mask. */
static int ring_push(zl__ring_t *r, zl_task_fn fn, void *arg, bool front)
{
    if (r->len == r->cap && ring_grow(r) < 0)
        return -ENOMEM;
    if (front) {
        r->head = (r->head - 1) & (r->cap - 1);
        r->buf[r->head] = (zl__task_ent_t){fn, arg};
    } else {
        r->buf[(r->head + r->len) & (r->cap - 1)] = (zl__task_ent_t){fn, arg};
    }
    r->len++;
    return 0;
}

/* Run the n oldest entries, popping each first: tasks may push to r while
 * it runs (the own ring), and a push may grow it. */
static size_t ring_run(zl__ring_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        zl__task_ent_t e = r->buf[r->head];
        r->head = (r->head + 1) & (r->cap - 1);
        r->len--;
        e.fn(e.arg);
    }
    if (!r->len)
        r->head = 0;
    return n;
}

/* ------------------------------------------------------------ life */

int zl__taskq_new(zl__taskq_t **out)
{
    zl__taskq_t *q;
    int rc;

    if (posix_memalign((void **)&q, 64, sizeof(*q)))
        return -ENOMEM;
    memset(q, 0, sizeof(*q));
    rc = pthread_mutex_init(&q->lock, NULL);
    if (rc) {
        free(q);
        return -rc;
    }
    for (size_t i = 0; i < TQ_CAP; i++)
        atomic_init(&q->cells[i].seq, i);
    *out = q;
    return 0;
}

void zl__taskq_free(zl__taskq_t *q)
{
    if (!q)
        return;
    pthread_mutex_destroy(&q->lock);
    free(q->ovf.buf);
    free(q->first.buf);
    free(q->own.buf);
    free(q->ovf_run.buf);
    free(q->first_run.buf);
    free(q);
}

/* Refuse posts from now on.  A post that claimed a ring position before the
 * fetch_or, or pushed under the lock before this lock/unlock, returned 0:
 * the final drain (zl__taskq_drain_final) runs it. */
void zl__taskq_close(zl__taskq_t *q)
{
    atomic_store(&q->closing, true);
    atomic_fetch_or(&q->tail, TQ_CLOSED);
    pthread_mutex_lock(&q->lock);
    pthread_mutex_unlock(&q->lock);
}

bool zl__taskq_closing(zl__taskq_t *q)
{
    return atomic_load_explicit(&q->closing, memory_order_acquire);
}

/* ------------------------------------------------------------ post */

static void wake_if_sleeping(zl_poller_t *p, zl__taskq_t *q)
{
    if (atomic_load(&q->sleeping) &&
        !atomic_load_explicit(&q->wake_pending, memory_order_relaxed) &&
        !atomic_exchange(&q->wake_pending, true))
        zl__poller_wake(p);
}

/* 0 posted, 1 ring full, ZL_ESHUTDOWN closing. */
static int ring_try(zl__taskq_t *q, zl_task_fn fn, void *arg)
{
    size_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);

    for (;;) {
        tq_cell_t *c;
        intptr_t dif;

        if (ZL__UNLIKELY(pos & TQ_CLOSED))
            return ZL_ESHUTDOWN;
        c = &q->cells[pos & TQ_MASK];
        dif = (intptr_t)(atomic_load_explicit(&c->seq, memory_order_acquire) -
                         pos);
        if (dif == 0) {
            /* seq_cst: the sleeping load after it pairs with the loop's
             * store of sleeping and load of tail (see the top). */
            if (atomic_compare_exchange_weak(&q->tail, &pos, pos + 1)) {
                c->fn = fn;
                c->arg = arg;
                atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
                return 0;
            }
        } else if (dif < 0) {
            return 1;
        } else {
            pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
        }
    }
}

/* The overflow and the FIRST queue, under the lock.  ovf_used is set with
 * every push, so "ovf non-empty implies ovf_used" holds under the lock. */
static int post_locked(zl__taskq_t *q, zl_task_fn fn, void *arg, bool front)
{
    int rc;

    pthread_mutex_lock(&q->lock);
    if (atomic_load_explicit(&q->closing, memory_order_relaxed)) {
        pthread_mutex_unlock(&q->lock);
        return ZL_ESHUTDOWN;
    }
    rc = ring_push(front ? &q->first : &q->ovf, fn, arg, front);
    if (rc == 0 && front)
        atomic_store(&q->nfirst, q->first.len);
    else if (rc == 0 &&
             !atomic_load_explicit(&q->ovf_used, memory_order_relaxed))
        atomic_store(&q->ovf_used, true);
    /* Set already: the loop cannot clear it while this push is in the
     * overflow, so its look before sleeping sees it (no store needed). */
    pthread_mutex_unlock(&q->lock);
    return rc;
}

/* Per-producer FIFO across ring and overflow: while ovf_used is set every
 * producer posts to the overflow, and a producer that pushed there sees it
 * set until the loop has run that push (the loop clears it under the lock,
 * only with the overflow empty, after running what it took).  The loop
 * runs what it took from the overflow only once it has run every ring cell
 * claimed before it took it (ovf_mark, read after the swap): a producer's
 * earlier ring posts were claimed before its overflow push. */
int zl__taskq_post(zl_poller_t *p, zl_task_fn fn, void *arg, bool front,
                   bool own)
{
    zl__taskq_t *q = p->tq;
    int rc;

    if (own && !front) {
        if (atomic_load_explicit(&q->closing, memory_order_relaxed))
            return ZL_ESHUTDOWN;
        return ring_push(&q->own, fn, arg, false);
    }
    if (!front && !atomic_load_explicit(&q->ovf_used, memory_order_relaxed)) {
        rc = ring_try(q, fn, arg);
        if (rc <= 0) {
            if (rc == 0)
                wake_if_sleeping(p, q);
            return rc;
        }
    }
    rc = post_locked(q, fn, arg, front);
    if (rc == 0 && !own)
        wake_if_sleeping(p, q);
    return rc;
}

/* ------------------------------------------------------------ drain */

/* Run published cells from head up to end; stop at an unpublished one. */
static size_t cells_run(zl__taskq_t *q, size_t end)
{
    size_t n = 0;

    while ((intptr_t)(q->head - end) < 0) {
        tq_cell_t *c = &q->cells[q->head & TQ_MASK];
        zl_task_fn fn;
        void *arg;

        if (atomic_load_explicit(&c->seq, memory_order_acquire) != q->head + 1)
            break; /* claimed, not published yet */
        fn = c->fn;
        arg = c->arg;
        atomic_store_explicit(&c->seq, q->head + TQ_CAP, memory_order_release);
        q->head++;
        fn(arg);
        n++;
    }
    return n;
}

static void ring_swap(zl__ring_t *a, zl__ring_t *b)
{
    zl__ring_t t = *a;
    *a = *b;
    *b = t;
}

static size_t overflow_run(zl__taskq_t *q)
{
    size_t n;

    if (!q->ovf_run.len) {
        pthread_mutex_lock(&q->lock);
        ring_swap(&q->ovf, &q->ovf_run); /* ovf_run was empty */
        pthread_mutex_unlock(&q->lock);
        q->ovf_mark = atomic_load(&q->tail) & ~TQ_CLOSED;
    }
    n = cells_run(q, q->ovf_mark);
    if ((intptr_t)(q->head - q->ovf_mark) < 0)
        return n; /* a ring post claimed before the swap is unpublished */
    n += ring_run(&q->ovf_run, q->ovf_run.len);
    pthread_mutex_lock(&q->lock);
    if (!q->ovf.len)
        atomic_store(&q->ovf_used, false);
    pthread_mutex_unlock(&q->lock);
    return n;
}

/* Run what was queued when the drain began (bounded: a task re-posting
 * itself waits for the next round).  Order: FIRST tasks (newest first), the
 * loop's own posts, the cross-thread ring, then the overflow.  Loop thread
 * only; returns the number of tasks run. */
size_t zl__taskq_drain(zl_poller_t *p)
{
    zl__taskq_t *q = p->tq;
    size_t n = 0, end;
    /* What is there now, before any task runs: tasks posted meanwhile
     * (FIRST ones too) wait for the next round. */
    bool ovf = q->ovf_run.len ||
               atomic_load_explicit(&q->ovf_used, memory_order_acquire);

    end = atomic_load_explicit(&q->tail, memory_order_acquire) & ~TQ_CLOSED;
    if (atomic_load_explicit(&q->nfirst, memory_order_relaxed)) {
        pthread_mutex_lock(&q->lock);
        ring_swap(&q->first, &q->first_run);
        atomic_store_explicit(&q->nfirst, 0, memory_order_relaxed);
        pthread_mutex_unlock(&q->lock);
        n += ring_run(&q->first_run, q->first_run.len);
    }
    if (q->own.len)
        n += ring_run(&q->own, q->own.len);
    n += cells_run(q, end);
    if (ovf)
        n += overflow_run(q);
    if (n)
        atomic_fetch_add_explicit(&p->st_tasks, n, memory_order_relaxed);
    return n;
}

/* Own posts waiting: the loop must not block. */
bool zl__taskq_own_pending(const zl_poller_t *p)
{
    return p->tq->own.len != 0;
}

static bool pending(zl__taskq_t *q)
{
    return q->own.len || q->ovf_run.len ||
           (atomic_load(&q->tail) & ~TQ_CLOSED) != q->head ||
           atomic_load(&q->ovf_used) || atomic_load(&q->nfirst);
}

/* Before a blocking wait: announce the sleep, then look again.  True if
 * something is queued (wait with timeout 0 instead). */
bool zl__taskq_sleep_begin(zl_poller_t *p)
{
    zl__taskq_t *q = p->tq;

    atomic_store(&q->sleeping, true);
    if (!pending(q))
        return false;
    atomic_store_explicit(&q->sleeping, false, memory_order_relaxed);
    return true;
}

void zl__taskq_sleep_end(zl_poller_t *p)
{
    atomic_store_explicit(&p->tq->sleeping, false, memory_order_relaxed);
}

/* The loop read the eventfd: the next sleep may be woken again. */
void zl__taskq_woken(zl_poller_t *p)
{
    atomic_store(&p->tq->wake_pending, false);
}

/* Stopping (posts refused already): run everything, waiting for ring posts
 * claimed but not yet published. */
void zl__taskq_drain_final(zl_poller_t *p)
{
    zl__taskq_t *q = p->tq;

    while (pending(q))
        if (!zl__taskq_drain(p))
            sched_yield();
}
