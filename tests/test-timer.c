/* zltk tests — timers: deadline order, repeats, cancellation from every
 * place, destroy exactly once on the poller thread, shutdown, scale
 * (zltk/poller.h, "Timers"). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define WAIT_MS 10000u
/* A delay no test waits for: such a timer must never fire. */
#define NEVER_MS 3600000u

/* Let the loop run a while (to catch timers that should NOT fire), then
 * make sure it has finished whatever it was doing. */
static void settle(zl_poller_t *p, unsigned ms)
{
    zl_test_sleep_ms(ms);
    CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
}

static void busy_wait_ms(unsigned ms)
{
    uint64_t end = zl_now_ms() + ms;
    while (zl_now_ms() < end)
        ;
}

/* ------------------------------------------------------ common probe
 * One timer under observation.  Fields marked (P) are touched only on the
 * poller thread; the rest are atomics read by the test. */
typedef struct tm_probe {
    zl_poller_t *p;
    atomic_int runs;
    atomic_int destroys;
    atomic_int destroy_runs;  /* value of runs when destroy ran */
    atomic_int wrong_thread;  /* callback or destroy off the poller thread */
    atomic_int in_cb;         /* callback executing */
    atomic_int destroy_in_cb; /* destroy ran while the callback ran */
    atomic_int cancel_rc;     /* -1: not called, else 0/1 */
    uint64_t ret[8];          /* return values for each run, then 0 */
    bool rep_ret[8];          /* for repeat timers */
    bool rep_forever;         /* repeat timer: always return true */
    unsigned busy_us;         /* spin this long in each callback */
    uint64_t t_run[8];        /* (P) zl_now_ms() of each run */
    uint64_t t_run_us[8];     /* (P) zl_now_us() of each run */
    zl_timer_t *self;         /* (P) own handle, for cancel-in-callback */
    int cancel_self_at;       /* run number that cancels itself; 0: never */
    struct tm_probe *victims[4]; /* (P) timers to cancel from the callback */
    zl_timer_t *victim_h[4];     /* (P) */
    atomic_int victim_rc[4];
} tm_probe_t;

static void probe_init(tm_probe_t *t, zl_poller_t *p)
{
    memset(t, 0, sizeof(*t));
    t->p = p;
    atomic_store(&t->cancel_rc, -1);
}

static int probe_enter(tm_probe_t *t)
{
    int n;

    if (!zl_poller_is_current(t->p))
        atomic_fetch_add(&t->wrong_thread, 1);
    atomic_store(&t->in_cb, 1);
    n = atomic_fetch_add(&t->runs, 1);
    if (n < 8) {
        t->t_run_us[n] = zl_now_us();
        t->t_run[n] = zl_now_ms();
    }
    if (t->busy_us) {
        uint64_t end = zl_now_us() + t->busy_us;
        while (zl_now_us() < end)
            ;
    }
    if (t->cancel_self_at && n + 1 == t->cancel_self_at) {
        atomic_store(&t->cancel_rc, zl_timer_cancel(t->self));
        t->self = NULL;
    }
    for (int i = 0; i < 4; i++)
        if (t->victim_h[i]) {
            atomic_store(&t->victim_rc[i], zl_timer_cancel(t->victim_h[i]));
            t->victim_h[i] = NULL;
        }
    return n;
}

static uint64_t probe_fn(void *arg)
{
    tm_probe_t *t = arg;
    int n = probe_enter(t);
    uint64_t r = n < 8 ? t->ret[n] : 0;

    atomic_store(&t->in_cb, 0);
    return r;
}

static bool probe_rep(void *arg)
{
    tm_probe_t *t = arg;
    int n = probe_enter(t);
    bool r = t->rep_forever || (n < 8 && t->rep_ret[n]);

    atomic_store(&t->in_cb, 0);
    return r;
}

static void probe_destroy(void *arg)
{
    tm_probe_t *t = arg;

    if (!zl_poller_is_current(t->p))
        atomic_fetch_add(&t->wrong_thread, 1);
    if (atomic_load(&t->in_cb))
        atomic_fetch_add(&t->destroy_in_cb, 1);
    atomic_store(&t->destroy_runs, atomic_load(&t->runs));
    atomic_fetch_add(&t->destroys, 1);
}

static int wait_destroyed(tm_probe_t *t)
{
    atomic_int *d = &t->destroys;
    return zl_test_wait_flag(d, WAIT_MS);
}


/* Run on the poller thread: zl_poller_timer_count() is exact there. */
typedef struct {
    zl_poller_t *p;
    size_t n;
} count_ctx_t;

static void count_task(void *arg)
{
    count_ctx_t *c = arg;
    c->n = zl_poller_timer_count(c->p);
}

static size_t timer_count_on(zl_poller_t *p)
{
    count_ctx_t c = {p, (size_t)-1};
    CU_ASSERT_EQUAL(zl_poller_sync(p, count_task, &c), 0);
    return c.n;
}

/* ------------------------------------------------------ deadline order */
#define ORDER_N 10
static const uint64_t order_delay[ORDER_N] = {50, 10, 30, 0,  20,
                                              40, 25, 25, 25, 5};
/* Stable sort of the above by delay. */
static const int order_expect[ORDER_N] = {3, 9, 1, 4, 6, 7, 8, 2, 5, 0};

#define EQ_N 200

typedef struct order_ctx order_ctx_t;
typedef struct {
    order_ctx_t *c;
    int id;
} order_item_t;

struct order_ctx {
    zl_poller_t *p;
    int n_timers;
    const uint64_t *delays; /* NULL: all eq_delay */
    uint64_t eq_delay;
    unsigned busy_ms; /* hold the loop after adding, so all are overdue */
    order_item_t items[EQ_N];
    int rc_fail;
    int log[EQ_N * 2]; /* (P) */
    int n;             /* (P) */
    atomic_long fired;
};

static uint64_t order_fn(void *arg)
{
    order_item_t *it = arg;
    if (it->c->n < EQ_N * 2)
        it->c->log[it->c->n++] = it->id;
    atomic_fetch_add(&it->c->fired, 1);
    return 0;
}

static void order_add_task(void *arg)
{
    order_ctx_t *c = arg;

    for (int i = 0; i < c->n_timers; i++) {
        uint64_t d = c->delays ? c->delays[i] : c->eq_delay;
        c->items[i] = (order_item_t){c, i};
        if (zl_poller_add_timer(c->p, d, order_fn, &c->items[i], NULL,
                                NULL) != 0)
            c->rc_fail++;
    }
    if (c->busy_ms)
        busy_wait_ms(c->busy_ms);
}

static order_ctx_t *run_order(zl_poller_t *p, int n, const uint64_t *delays,
                              uint64_t eq_delay, unsigned busy_ms)
{
    order_ctx_t *c = calloc(1, sizeof(*c));

    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    c->p = p;
    c->n_timers = n;
    c->delays = delays;
    c->eq_delay = eq_delay;
    c->busy_ms = busy_ms;
    CU_ASSERT_EQUAL(zl_poller_sync(p, order_add_task, c), 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&c->fired, n, WAIT_MS), n);
    settle(p, 20);
    CU_ASSERT_EQUAL(c->rc_fail, 0);
    CU_ASSERT_EQUAL(c->n, n);
    return c;
}

static void check_deadline_order(unsigned busy_ms)
{
    zl_poller_t *p = zl_test_new_poller();
    order_ctx_t *c = run_order(p, ORDER_N, order_delay, 0, busy_ms);

    if (c->n == ORDER_N)
        for (int i = 0; i < ORDER_N; i++)
            CU_ASSERT_EQUAL(c->log[i], order_expect[i]);
    free(c);
    zl_poller_free(p);
}

static void test_order_deadline(void)
{
    check_deadline_order(0);
}

/* All overdue when the loop gets to them: one pass, still in order. */
static void test_order_deadline_overdue(void)
{
    check_deadline_order(80);
}

static void check_equal_fifo(unsigned busy_ms)
{
    zl_poller_t *p = zl_test_new_poller();
    order_ctx_t *c = run_order(p, EQ_N, NULL, 15, busy_ms);
    int bad = 0;

    if (c->n == EQ_N)
        for (int i = 0; i < EQ_N; i++)
            bad += c->log[i] != i;
    CU_ASSERT_EQUAL(bad, 0);
    free(c);
    zl_poller_free(p);
}

static void test_equal_deadlines_fifo(void)
{
    check_equal_fifo(0);
    check_equal_fifo(40);
}

/* ------------------------------------------------------ repeats */
static void test_repeat_by_return(void)
{
    zl_poller_t *p = zl_test_new_poller();
    tm_probe_t t;
    zl_poller_stats_t st;
    uint64_t t0;

    probe_init(&t, p);
    t.ret[0] = t.ret[1] = t.ret[2] = 20;
    t.ret[3] = 0;
    t0 = zl_now_ms();
    CU_ASSERT_EQUAL_FATAL(
        zl_poller_add_timer(p, 10, probe_fn, &t, probe_destroy, NULL), 0);
    CU_ASSERT_FATAL(wait_destroyed(&t));
    settle(p, 50);
    CU_ASSERT_EQUAL(atomic_load(&t.runs), 4);
    CU_ASSERT_EQUAL(atomic_load(&t.destroys), 1);
    CU_ASSERT_EQUAL(atomic_load(&t.destroy_runs), 4);
    CU_ASSERT_EQUAL(atomic_load(&t.destroy_in_cb), 0);
    CU_ASSERT_EQUAL(atomic_load(&t.wrong_thread), 0);
    for (int k = 0; k < 4; k++)
        CU_ASSERT(t.t_run[k] >= t0 + 10 + 20 * (uint64_t)k);
    zl_poller_get_stats(p, &st);
    CU_ASSERT_EQUAL(st.timers, 4);
    zl_poller_free(p);
}

static void test_add_repeat_bool(void)
{
    zl_poller_t *p = zl_test_new_poller();
    tm_probe_t t;
    uint64_t t0;

    probe_init(&t, p);
    for (int i = 0; i < 4; i++)
        t.rep_ret[i] = true;
    t0 = zl_now_ms();
    CU_ASSERT_EQUAL_FATAL(
        zl_poller_add_repeat(p, 15, probe_rep, &t, probe_destroy, NULL), 0);
    CU_ASSERT_FATAL(wait_destroyed(&t));
    settle(p, 50);
    CU_ASSERT_EQUAL(atomic_load(&t.runs), 5);
    CU_ASSERT_EQUAL(atomic_load(&t.destroys), 1);
    CU_ASSERT_EQUAL(atomic_load(&t.destroy_runs), 5);
    CU_ASSERT_EQUAL(atomic_load(&t.wrong_thread), 0);
    for (int k = 0; k < 5; k++)
        CU_ASSERT(t.t_run[k] >= t0 + 15 * (uint64_t)(k + 1));
    zl_poller_free(p);
}

/* The next delay counts from when the callback returned. */
typedef struct {
    zl_poller_t *p;
    uint64_t start[3], end[3]; /* (P) */
    atomic_int runs;
} slow_cb_t;

static uint64_t slow_fn(void *arg)
{
    slow_cb_t *s = arg;
    int n = atomic_load(&s->runs);

    s->start[n] = zl_now_ms();
    busy_wait_ms(15);
    s->end[n] = zl_now_ms();
    atomic_store(&s->runs, n + 1);
    return n < 2 ? 20 : 0;
}

static void test_repeat_delay_after_return(void)
{
    zl_poller_t *p = zl_test_new_poller();
    slow_cb_t s;

    memset(&s, 0, sizeof(s));
    s.p = p;
    CU_ASSERT_EQUAL_FATAL(zl_poller_add_timer(p, 1, slow_fn, &s, NULL, NULL),
                          0);
    {
        uint64_t end = zl_now_ms() + (uint64_t)WAIT_MS * zl_test_slow();
        while (atomic_load(&s.runs) < 3 && zl_now_ms() < end)
            zl_test_sleep_ms(1);
    }
    settle(p, 10);
    CU_ASSERT_EQUAL_FATAL(atomic_load(&s.runs), 3);
    for (int k = 1; k < 3; k++)
        CU_ASSERT(s.start[k] >= s.end[k - 1] + 20);
    zl_poller_free(p);
}

/* ------------------------------------------------------ delays */
static void test_delay_respected(void)
{
    static const uint64_t delays[] = {0, 1, 2, 3, 5, 10, 25, 50, 120, 1, 2,
                                      3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1,
                                      2, 3, 1, 2, 3, 4, 4, 4};
    enum { N = sizeof(delays) / sizeof(delays[0]) };
    zl_poller_t *p = zl_test_new_poller();
    tm_probe_t t[N];
    uint64_t t_add[N], t_add_us[N];

    for (int i = 0; i < N; i++) {
        uint64_t spin = zl_now_us() + 170; /* vary the sub-ms phase */
        while (zl_now_us() < spin)
            ;
        probe_init(&t[i], p);
        t_add_us[i] = zl_now_us();
        t_add[i] = zl_now_ms();
        CU_ASSERT_EQUAL_FATAL(zl_poller_add_timer(p, delays[i], probe_fn,
                                                  &t[i], probe_destroy, NULL),
                              0);
    }
    for (int i = 0; i < N; i++)
        CU_ASSERT(wait_destroyed(&t[i]));
    settle(p, 5);
    for (int i = 0; i < N; i++) {
        CU_ASSERT_EQUAL(atomic_load(&t[i].runs), 1);
        CU_ASSERT(t[i].t_run[0] >= t_add[i] + delays[i]);
        /* Not even a fraction of a millisecond early. */
        CU_ASSERT(t[i].t_run_us[0] >= t_add_us[i] + delays[i] * 1000u);
        CU_ASSERT_EQUAL(atomic_load(&t[i].wrong_thread), 0);
    }
    zl_poller_free(p);
}

/* Added on the poller thread at the end of a long task: the delay counts
 * from the add, not from when the loop last woke up. */
typedef struct {
    zl_poller_t *p;
    tm_probe_t *t;
    uint64_t t_add;
    int rc;
} late_add_t;

static void late_add_task(void *arg)
{
    late_add_t *l = arg;

    busy_wait_ms(100);
    l->t_add = zl_now_ms();
    l->rc = zl_poller_add_timer(l->p, 30, probe_fn, l->t, probe_destroy, NULL);
}

static void test_delay_after_long_task(void)
{
    zl_poller_t *p = zl_test_new_poller();
    tm_probe_t t;
    late_add_t l;

    probe_init(&t, p);
    l = (late_add_t){p, &t, 0, -1};
    CU_ASSERT_EQUAL(zl_poller_sync(p, late_add_task, &l), 0);
    CU_ASSERT_EQUAL(l.rc, 0);
    CU_ASSERT_FATAL(wait_destroyed(&t));
    settle(p, 5);
    CU_ASSERT_EQUAL(atomic_load(&t.runs), 1);
    CU_ASSERT(t.t_run[0] >= l.t_add + 30);
    zl_poller_free(p);
}

/* ------------------------------------------------------ cancellation */
static void test_cancel_other_thread(void)
{
    zl_poller_t *p = zl_test_new_poller();
    tm_probe_t a, b;
    zl_timer_t *ha = NULL, *hb = NULL;

    /* a: cancelled right after the add (its insertion may still be
     * queued); b: cancelled once certainly armed. */
    probe_init(&a, p);
    probe_init(&b, p);
    CU_ASSERT_EQUAL_FATAL(zl_poller_add_timer(p, NEVER_MS, probe_fn, &a,
                                              probe_destroy, &ha),
                          0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ha);
    CU_ASSERT_TRUE(zl_timer_cancel(ha));
    CU_ASSERT_EQUAL_FATAL(
        zl_poller_add_timer(p, 30, probe_fn, &b, probe_destroy, &hb), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hb);
    CU_ASSERT_EQUAL(timer_count_on(p), 1);
    CU_ASSERT_TRUE(zl_timer_cancel(hb));

    CU_ASSERT(wait_destroyed(&a));
    CU_ASSERT(wait_destroyed(&b));
    settle(p, 60); /* past b's deadline */
    CU_ASSERT_EQUAL(timer_count_on(p), 0);
    for (tm_probe_t *t = &a; t; t = t == &a ? &b : NULL) {
        CU_ASSERT_EQUAL(atomic_load(&t->runs), 0);
        CU_ASSERT_EQUAL(atomic_load(&t->destroys), 1);
        CU_ASSERT_EQUAL(atomic_load(&t->wrong_thread), 0);
    }
    zl_poller_free(p);
}

/* Timers added on the poller thread, handle kept where the callback can
 * reach it (no race: the callback runs later on the same thread). */
typedef struct {
    zl_poller_t *p;
    tm_probe_t *t;
    uint64_t delay;
    bool repeat;
    int rc;
} self_add_t;

static void self_add_task(void *arg)
{
    self_add_t *a = arg;

    if (a->repeat)
        a->rc = zl_poller_add_repeat(a->p, a->delay, probe_rep, a->t,
                                     probe_destroy, &a->t->self);
    else
        a->rc = zl_poller_add_timer(a->p, a->delay, probe_fn, a->t,
                                    probe_destroy, &a->t->self);
}

static void test_cancel_inside_own_callback(void)
{
    zl_poller_t *p = zl_test_new_poller();
    tm_probe_t t, r;
    self_add_t a;

    /* One-shot whose callback cancels itself and asks for a repeat:
     * the return value is ignored. */
    probe_init(&t, p);
    t.ret[0] = t.ret[1] = t.ret[2] = 10;
    t.cancel_self_at = 1;
    a = (self_add_t){p, &t, 5, false, -1};
    CU_ASSERT_EQUAL(zl_poller_sync(p, self_add_task, &a), 0);
    CU_ASSERT_EQUAL_FATAL(a.rc, 0);

    /* Repeating timer that cancels itself on its third run. */
    probe_init(&r, p);
    r.rep_forever = true;
    r.cancel_self_at = 3;
    a = (self_add_t){p, &r, 5, true, -1};
    CU_ASSERT_EQUAL(zl_poller_sync(p, self_add_task, &a), 0);
    CU_ASSERT_EQUAL_FATAL(a.rc, 0);

    CU_ASSERT(wait_destroyed(&t));
    CU_ASSERT(wait_destroyed(&r));
    settle(p, 60);
    CU_ASSERT_EQUAL(atomic_load(&t.runs), 1);
    CU_ASSERT_EQUAL(atomic_load(&t.cancel_rc), 1);
    CU_ASSERT_EQUAL(atomic_load(&t.destroys), 1);
    CU_ASSERT_EQUAL(atomic_load(&t.destroy_in_cb), 0);
    CU_ASSERT_EQUAL(atomic_load(&t.wrong_thread), 0);
    CU_ASSERT_EQUAL(atomic_load(&r.runs), 3);
    CU_ASSERT_EQUAL(atomic_load(&r.cancel_rc), 1);
    CU_ASSERT_EQUAL(atomic_load(&r.destroys), 1);
    CU_ASSERT_EQUAL(atomic_load(&r.destroy_in_cb), 0);
    CU_ASSERT_EQUAL(atomic_load(&r.wrong_thread), 0);
    CU_ASSERT_EQUAL(timer_count_on(p), 0);
    zl_poller_free(p);
}

/* A's callback cancels B (due in the same pass, after A) and C (later). */
typedef struct {
    zl_poller_t *p;
    tm_probe_t *a, *b, *c;
    int rc[3];
    unsigned busy_ms;
} victim_add_t;

static void victim_add_task(void *arg)
{
    victim_add_t *v = arg;

    v->rc[0] = zl_poller_add_timer(v->p, 10, probe_fn, v->a, probe_destroy,
                                   NULL);
    v->rc[1] = zl_poller_add_timer(v->p, 10, probe_fn, v->b, probe_destroy,
                                   &v->a->victim_h[0]);
    v->rc[2] = zl_poller_add_timer(v->p, 40, probe_fn, v->c, probe_destroy,
                                   &v->a->victim_h[1]);
    /* Both 10 ms timers are overdue when the loop next looks. */
    busy_wait_ms(v->busy_ms);
}

static void test_cancel_other_inside_callback(void)
{
    zl_poller_t *p = zl_test_new_poller();
    tm_probe_t a, b, c;
    victim_add_t v = {.p = p, .a = &a, .b = &b, .c = &c, .busy_ms = 25};

    probe_init(&a, p);
    probe_init(&b, p);
    probe_init(&c, p);
    atomic_store(&a.victim_rc[0], -1);
    atomic_store(&a.victim_rc[1], -1);
    CU_ASSERT_EQUAL(zl_poller_sync(p, victim_add_task, &v), 0);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(v.rc[i], 0);
    CU_ASSERT(wait_destroyed(&a));
    CU_ASSERT(wait_destroyed(&b));
    CU_ASSERT(wait_destroyed(&c));
    settle(p, 60);
    CU_ASSERT_EQUAL(atomic_load(&a.runs), 1);
    CU_ASSERT_EQUAL(atomic_load(&a.victim_rc[0]), 1);
    CU_ASSERT_EQUAL(atomic_load(&a.victim_rc[1]), 1);
    CU_ASSERT_EQUAL(atomic_load(&b.runs), 0);
    CU_ASSERT_EQUAL(atomic_load(&c.runs), 0);
    CU_ASSERT_EQUAL(atomic_load(&a.destroys), 1);
    CU_ASSERT_EQUAL(atomic_load(&b.destroys), 1);
    CU_ASSERT_EQUAL(atomic_load(&c.destroys), 1);
    CU_ASSERT_EQUAL(atomic_load(&b.wrong_thread), 0);
    CU_ASSERT_EQUAL(atomic_load(&c.wrong_thread), 0);
    CU_ASSERT_EQUAL(timer_count_on(p), 0);
    zl_poller_free(p);
}

static void test_cancel_after_end(void)
{
    zl_poller_t *p = zl_test_new_poller();
    tm_probe_t t, r;
    zl_timer_t *ht = NULL, *hr = NULL;

    probe_init(&t, p);
    probe_init(&r, p);
    r.rep_ret[0] = true; /* two runs, then false */
    CU_ASSERT_EQUAL_FATAL(
        zl_poller_add_timer(p, 1, probe_fn, &t, probe_destroy, &ht), 0);
    CU_ASSERT_EQUAL_FATAL(
        zl_poller_add_repeat(p, 2, probe_rep, &r, probe_destroy, &hr), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ht);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hr);
    CU_ASSERT(wait_destroyed(&t));
    CU_ASSERT(wait_destroyed(&r));
    settle(p, 5);
    CU_ASSERT_FALSE(zl_timer_cancel(ht));
    CU_ASSERT_FALSE(zl_timer_cancel(hr));
    settle(p, 5);
    CU_ASSERT_EQUAL(atomic_load(&t.runs), 1);
    CU_ASSERT_EQUAL(atomic_load(&r.runs), 2);
    CU_ASSERT_EQUAL(atomic_load(&t.destroys), 1);
    CU_ASSERT_EQUAL(atomic_load(&r.destroys), 1);
    zl_poller_free(p);
}

static void test_release_keeps_timer(void)
{
    zl_poller_t *p = zl_test_new_poller();
    tm_probe_t t;
    zl_timer_t *h = NULL;

    probe_init(&t, p);
    t.ret[0] = 5;
    CU_ASSERT_EQUAL_FATAL(
        zl_poller_add_timer(p, 5, probe_fn, &t, probe_destroy, &h), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    zl_timer_release(h);
    CU_ASSERT(wait_destroyed(&t));
    settle(p, 20);
    CU_ASSERT_EQUAL(atomic_load(&t.runs), 2);
    CU_ASSERT_EQUAL(atomic_load(&t.destroys), 1);
    zl_poller_free(p);
}

/* Cancel a fast repeating timer from another thread at arbitrary moments:
 * true every time (it never ends by itself), at most the run in progress
 * finishes, destroy exactly once, after the last callback returned. */
static void test_cancel_race(void)
{
    enum { ITER = 80 };
    zl_poller_t *p = zl_test_new_poller();
    int bad_rc = 0, extra_runs = 0, bad_destroy = 0, bad_thread = 0,
        destroy_during_cb = 0;
    long total_runs = 0;

    for (int it = 0; it < ITER; it++) {
        tm_probe_t t;
        zl_timer_t *h = NULL;
        int at;

        probe_init(&t, p);
        t.rep_forever = true;
        t.busy_us = 300; /* widen the window of a cancel during a run */
        CU_ASSERT_EQUAL_FATAL(
            zl_poller_add_repeat(p, 1, probe_rep, &t, probe_destroy, &h), 0);
        if (it % 5)
            zl_test_sleep_ms((unsigned)(it % 7));
        if (!zl_timer_cancel(h))
            bad_rc++;
        at = atomic_load(&t.runs);
        if (!wait_destroyed(&t))
            bad_destroy++;
        settle(p, 3);
        if (atomic_load(&t.runs) > at + 1)
            extra_runs++;
        if (atomic_load(&t.destroys) != 1)
            bad_destroy++;
        if (atomic_load(&t.wrong_thread))
            bad_thread++;
        if (atomic_load(&t.destroy_in_cb))
            destroy_during_cb++;
        total_runs += atomic_load(&t.runs);
    }
    printf("\n    %d cancels, %ld callback runs in all ", ITER, total_runs);
    CU_ASSERT_EQUAL(bad_rc, 0);
    CU_ASSERT_EQUAL(extra_runs, 0);
    CU_ASSERT_EQUAL(bad_destroy, 0);
    CU_ASSERT_EQUAL(bad_thread, 0);
    CU_ASSERT_EQUAL(destroy_during_cb, 0);
    CU_ASSERT_EQUAL(timer_count_on(p), 0);
    zl_poller_free(p);
}

/* ------------------------------------------------------ timer_count */
typedef struct {
    zl_poller_t *p;
    tm_probe_t t[3];
    zl_timer_t *h[3];
    size_t n0, n1, n2;
    int rc[3];
    bool cancel0;
    int destroys0_after_cancel;
} tc_ctx_t;

static void tc_task(void *arg)
{
    tc_ctx_t *c = arg;

    c->n0 = zl_poller_timer_count(c->p);
    for (int i = 0; i < 3; i++)
        c->rc[i] = zl_poller_add_timer(c->p, NEVER_MS, probe_fn, &c->t[i],
                                       probe_destroy, &c->h[i]);
    c->n1 = zl_poller_timer_count(c->p);
    /* On the poller thread a cancelled timer is gone when cancel returns. */
    c->cancel0 = zl_timer_cancel(c->h[0]);
    c->destroys0_after_cancel = atomic_load(&c->t[0].destroys);
    c->n2 = zl_poller_timer_count(c->p);
}

static void test_timer_count(void)
{
    zl_poller_t *p = zl_test_new_poller();
    tc_ctx_t *c = calloc(1, sizeof(*c));
    tm_probe_t f1, f2;

    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    c->p = p;
    for (int i = 0; i < 3; i++)
        probe_init(&c->t[i], p);
    CU_ASSERT_EQUAL(timer_count_on(p), 0);
    CU_ASSERT_EQUAL(zl_poller_sync(p, tc_task, c), 0);
    CU_ASSERT_EQUAL(c->n0, 0);
    CU_ASSERT_EQUAL(c->n1, 3);
    CU_ASSERT_TRUE(c->cancel0);
    CU_ASSERT_EQUAL(c->destroys0_after_cancel, 1);
    CU_ASSERT_EQUAL(c->n2, 2);

    /* Two short timers come and go. */
    probe_init(&f1, p);
    probe_init(&f2, p);
    CU_ASSERT_EQUAL(
        zl_poller_add_timer(p, 1, probe_fn, &f1, probe_destroy, NULL), 0);
    CU_ASSERT_EQUAL(
        zl_poller_add_repeat(p, 1, probe_rep, &f2, probe_destroy, NULL), 0);
    CU_ASSERT(wait_destroyed(&f1));
    CU_ASSERT(wait_destroyed(&f2));
    CU_ASSERT_EQUAL(timer_count_on(p), 2);

    CU_ASSERT_TRUE(zl_timer_cancel(c->h[1]));
    CU_ASSERT_TRUE(zl_timer_cancel(c->h[2]));
    CU_ASSERT_EQUAL(timer_count_on(p), 0);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(atomic_load(&c->t[i].destroys), 1);
        CU_ASSERT_EQUAL(atomic_load(&c->t[i].runs), 0);
    }
    zl_poller_free(p);
    free(c);
}

/* ------------------------------------------------------ shutdown */
static zl_poller_t *pend_p;
static atomic_long pend_runs, pend_destroys, pend_wrong_thread;

static uint64_t pend_fn(void *arg)
{
    (void)arg;
    atomic_fetch_add(&pend_runs, 1);
    return 0;
}

static bool pend_rep(void *arg)
{
    (void)arg;
    atomic_fetch_add(&pend_runs, 1);
    return true;
}

static void pend_destroy(void *arg)
{
    free(arg); /* a real heap object: ASan sees double or missing frees */
    if (!zl_poller_is_current(pend_p))
        atomic_fetch_add(&pend_wrong_thread, 1);
    atomic_fetch_add(&pend_destroys, 1);
}

enum { PEND_ONE = 1000, PEND_REP = 20, PEND_LATE = 100, PEND_HANDLES = 5 };

typedef struct {
    zl_poller_t *p;
    int fails;
} pend_ctx_t;

static void pend_add_task(void *arg)
{
    pend_ctx_t *c = arg;

    for (int i = 0; i < PEND_ONE; i++)
        c->fails += zl_poller_add_timer(c->p, NEVER_MS + (unsigned)i, pend_fn,
                                        malloc(16), pend_destroy, NULL) != 0;
    for (int i = 0; i < PEND_REP; i++)
        c->fails += zl_poller_add_repeat(c->p, NEVER_MS, pend_rep, malloc(16),
                                         pend_destroy, NULL) != 0;
    /* Without a destroy function: simply dropped. */
    for (int i = 0; i < 10; i++)
        c->fails += zl_poller_add_timer(c->p, NEVER_MS, pend_fn, NULL, NULL,
                                        NULL) != 0;
}

static void test_pending_at_free(void)
{
    zl_poller_t *p = zl_test_new_poller();
    pend_ctx_t c = {p, 0};
    zl_timer_t *h[PEND_HANDLES];
    long expect = PEND_ONE + PEND_REP + PEND_LATE + PEND_HANDLES;

    pend_p = p;
    atomic_store(&pend_runs, 0);
    atomic_store(&pend_destroys, 0);
    atomic_store(&pend_wrong_thread, 0);
    CU_ASSERT_EQUAL(zl_poller_sync(p, pend_add_task, &c), 0);
    CU_ASSERT_EQUAL(c.fails, 0);
    for (int i = 0; i < PEND_HANDLES; i++) {
        h[i] = NULL;
        CU_ASSERT_EQUAL_FATAL(zl_poller_add_timer(p, NEVER_MS, pend_fn,
                                                  malloc(16), pend_destroy,
                                                  &h[i]),
                              0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(h[i]);
    }
    CU_ASSERT_EQUAL(timer_count_on(p), PEND_ONE + PEND_REP + 10 + PEND_HANDLES);
    /* Added from this thread right before the free: their insertion is
     * likely still queued when the poller stops. */
    for (int i = 0; i < PEND_LATE; i++)
        CU_ASSERT_EQUAL(zl_poller_add_timer(p, NEVER_MS, pend_fn, malloc(16),
                                            pend_destroy, NULL),
                        0);
    zl_poller_free(p);
    CU_ASSERT_EQUAL(atomic_load(&pend_runs), 0);
    CU_ASSERT_EQUAL(atomic_load(&pend_destroys), expect);
    CU_ASSERT_EQUAL(atomic_load(&pend_wrong_thread), 0);
    /* Handles outlive the poller; the timers ended with it. */
    for (int i = 0; i < PEND_HANDLES; i++)
        CU_ASSERT_FALSE(zl_timer_cancel(h[i]));
}

/* The stopping window: a gate task holds the loop inside the shutdown
 * drain (it probes by posting from its own thread until that is refused)
 * until released, so other code can act while the poller stops. */
typedef struct {
    zl_poller_t *p;
    atomic_int started, closing_seen, release;
} sd_gate_t;

static void sd_gate_fn(void *arg)
{
    sd_gate_t *g = arg;
    uint64_t end = zl_now_ms() + 30000ull * zl_test_slow();

    atomic_store(&g->started, 1);
    while (zl_now_ms() < end && zl_poller_async(g->p, zl_test_noop, NULL) == 0)
        zl_test_sleep_ms(1);
    atomic_store(&g->closing_seen, 1);
    while (!atomic_load(&g->release) && zl_now_ms() < end)
        zl_test_sleep_ms(1);
}

typedef struct {
    zl_poller_t *p;
    sd_gate_t *g;
    tm_probe_t own_one, own_rep;  /* added by a task in the drain */
    tm_probe_t out_one, out_rep;  /* added from another thread, stopping */
    tm_probe_t armed;             /* armed before; cancelled while stopping */
    zl_timer_t *armed_h;
    zl_timer_t *h_own, *h_out;
    atomic_int rc_own_one, rc_own_rep, rc_out_one, rc_out_rep;
    atomic_int armed_cancel; /* -1 not called, else bool */
    atomic_int own_ran, out_done;
} sd_ctx_t;

static void sd_drain_task(void *arg)
{
    sd_ctx_t *c = arg;

    c->h_own = (zl_timer_t *)&c->h_own;
    atomic_store(&c->rc_own_one,
                 zl_poller_add_timer(c->p, 0, probe_fn, &c->own_one,
                                     probe_destroy, &c->h_own));
    atomic_store(&c->rc_own_rep,
                 zl_poller_add_repeat(c->p, 1, probe_rep, &c->own_rep,
                                      probe_destroy, NULL));
    atomic_store(&c->own_ran, 1);
}

static void *sd_outside_main(void *arg)
{
    sd_ctx_t *c = arg;

    if (!zl_test_wait_flag(&c->g->closing_seen, WAIT_MS))
        return NULL;
    c->h_out = (zl_timer_t *)&c->h_out;
    atomic_store(&c->rc_out_one,
                 zl_poller_add_timer(c->p, 0, probe_fn, &c->out_one,
                                     probe_destroy, &c->h_out));
    atomic_store(&c->rc_out_rep,
                 zl_poller_add_repeat(c->p, 1, probe_rep, &c->out_rep,
                                      probe_destroy, NULL));
    atomic_store(&c->armed_cancel, zl_timer_cancel(c->armed_h));
    atomic_store(&c->out_done, 1);
    atomic_store(&c->g->release, 1);
    return NULL;
}

/* If an add is refused the caller keeps arg (destroy never runs); if it is
 * accepted the timer is dropped at stop (destroy runs once).  Either way
 * the callback never runs. */
static void check_refused_or_dropped(int rc, tm_probe_t *t, bool from_outside)
{
    CU_ASSERT_EQUAL(atomic_load(&t->runs), 0);
    if (from_outside || rc != 0)
        CU_ASSERT_EQUAL(rc, ZL_ESHUTDOWN);
    if (rc == ZL_ESHUTDOWN)
        CU_ASSERT_EQUAL(atomic_load(&t->destroys), 0);
    if (rc == 0)
        CU_ASSERT_EQUAL(atomic_load(&t->destroys), 1);
}

static void test_add_while_stopping(void)
{
    zl_poller_t *p = zl_test_new_poller();
    sd_gate_t g;
    sd_ctx_t *c = calloc(1, sizeof(*c));
    pthread_t th;

    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    memset(&g, 0, sizeof(g));
    g.p = p;
    c->p = p;
    c->g = &g;
    probe_init(&c->own_one, p);
    probe_init(&c->own_rep, p);
    probe_init(&c->out_one, p);
    probe_init(&c->out_rep, p);
    probe_init(&c->armed, p);
    atomic_store(&c->armed_cancel, -1);
    CU_ASSERT_EQUAL_FATAL(zl_poller_add_timer(p, NEVER_MS, probe_fn,
                                              &c->armed, probe_destroy,
                                              &c->armed_h),
                          0);
    CU_ASSERT_EQUAL(timer_count_on(p), 1);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, sd_outside_main, c), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_async(p, sd_gate_fn, &g), 0);
    CU_ASSERT_FATAL(zl_test_wait_flag(&g.started, WAIT_MS));
    CU_ASSERT_EQUAL_FATAL(zl_poller_async(p, sd_drain_task, c), 0);
    zl_poller_free(p);
    pthread_join(th, NULL);

    CU_ASSERT_EQUAL(atomic_load(&g.closing_seen), 1);
    CU_ASSERT_EQUAL(atomic_load(&c->own_ran), 1);
    CU_ASSERT_EQUAL(atomic_load(&c->out_done), 1);
    printf("\n    add on the poller thread while draining: %s ",
           zl_err_name(atomic_load(&c->rc_own_one)));
    check_refused_or_dropped(atomic_load(&c->rc_own_one), &c->own_one, false);
    check_refused_or_dropped(atomic_load(&c->rc_own_rep), &c->own_rep, false);
    check_refused_or_dropped(atomic_load(&c->rc_out_one), &c->out_one, true);
    check_refused_or_dropped(atomic_load(&c->rc_out_rep), &c->out_rep, true);
    CU_ASSERT_PTR_NULL(c->h_out);
    if (atomic_load(&c->rc_own_one) != 0) {
        CU_ASSERT_PTR_NULL(c->h_own);
    } else if (c->h_own && c->h_own != (zl_timer_t *)&c->h_own) {
        CU_ASSERT_FALSE(zl_timer_cancel(c->h_own));
    }
    /* Cancelled while stopping: this call stopped it; it never ran; the
     * destroy function ran once, on the poller thread. */
    CU_ASSERT_EQUAL(atomic_load(&c->armed_cancel), 1);
    CU_ASSERT_EQUAL(atomic_load(&c->armed.runs), 0);
    CU_ASSERT_EQUAL(atomic_load(&c->armed.destroys), 1);
    CU_ASSERT_EQUAL(atomic_load(&c->armed.wrong_thread), 0);
    CU_ASSERT_EQUAL(atomic_load(&c->own_one.wrong_thread), 0);
    free(c);
}

/* ------------------------------------------------------ a million */
#define MILLION 1000000
#define MILLION_SPREAD 501u

typedef struct {
    zl_poller_t *p;
    uint8_t *fired;    /* (P) per timer */
    uint32_t *allowed; /* (P) earliest ms after t0 it may fire */
    uint64_t t0;       /* (P) */
    long total, early, destroys, add_fail; /* (P) */
    size_t count_after_add;                /* (P) */
    uint64_t add_ms;                       /* (P) */
    atomic_int done;
} mil_t;

static mil_t mil;

static uint64_t mil_fn(void *arg)
{
    size_t i = (size_t)(uintptr_t)arg;

    mil.fired[i]++;
    if (zl_now_ms() - mil.t0 < mil.allowed[i])
        mil.early++;
    mil.total++;
    return 0;
}

static void mil_destroy(void *arg)
{
    (void)arg;
    if (++mil.destroys == MILLION)
        atomic_store(&mil.done, 1);
}

static void mil_add_task(void *arg)
{
    (void)arg;
    mil.t0 = zl_now_ms();
    for (size_t i = 0; i < MILLION; i++) {
        uint64_t d = (i * 7919u) % MILLION_SPREAD;
        mil.allowed[i] = (uint32_t)(zl_now_ms() - mil.t0 + d);
        if (zl_poller_add_timer(mil.p, d, mil_fn, (void *)(uintptr_t)i,
                                mil_destroy, NULL) != 0)
            mil.add_fail++;
    }
    mil.count_after_add = zl_poller_timer_count(mil.p);
    mil.add_ms = zl_now_ms() - mil.t0;
}

static void test_million_timers(void)
{
    zl_poller_t *p = zl_test_new_poller();
    uint64_t t0, elapsed;
    long not_once = 0;
    zl_poller_stats_t st;

    memset(&mil, 0, sizeof(mil));
    mil.p = p;
    mil.fired = calloc(MILLION, 1);
    mil.allowed = calloc(MILLION, sizeof(*mil.allowed));
    CU_ASSERT_PTR_NOT_NULL_FATAL(mil.fired);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mil.allowed);

    t0 = zl_now_ms();
    CU_ASSERT_EQUAL(zl_poller_async(p, mil_add_task, NULL), 0);
    CU_ASSERT(zl_test_wait_flag(&mil.done, 60000));
    elapsed = zl_now_ms() - t0;
    CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
    printf("\n    %d timers over %u ms: added in %llu ms, all done in %llu ms ",
           MILLION, MILLION_SPREAD - 1, (unsigned long long)mil.add_ms,
           (unsigned long long)elapsed);

    CU_ASSERT_EQUAL(mil.add_fail, 0);
    CU_ASSERT_EQUAL(mil.count_after_add, MILLION);
    CU_ASSERT_EQUAL(mil.total, MILLION);
    CU_ASSERT_EQUAL(mil.destroys, MILLION);
    CU_ASSERT_EQUAL(mil.early, 0);
    for (size_t i = 0; i < MILLION; i++)
        not_once += mil.fired[i] != 1;
    CU_ASSERT_EQUAL(not_once, 0);
    CU_ASSERT_EQUAL(timer_count_on(p), 0);
    zl_poller_get_stats(p, &st);
    CU_ASSERT(st.timers >= MILLION);
    CU_ASSERT(elapsed < 20000u * zl_test_slow());
    zl_poller_free(p);
    free(mil.fired);
    free(mil.allowed);
}

int zl_test_register_timer_node(void); /* test-timer-node.c */

int zl_test_register_timer(void)
{
    static const zl_test_case_t cases[] = {
        {"order_by_deadline", test_order_deadline},
        {"order_by_deadline_overdue", test_order_deadline_overdue},
        {"equal_deadlines_fifo", test_equal_deadlines_fifo},
        {"repeat_by_return_value", test_repeat_by_return},
        {"add_repeat_bool", test_add_repeat_bool},
        {"repeat_delay_counts_from_return", test_repeat_delay_after_return},
        {"delay_respected", test_delay_respected},
        {"delay_after_long_task", test_delay_after_long_task},
        {"cancel_from_other_thread", test_cancel_other_thread},
        {"cancel_inside_own_callback", test_cancel_inside_own_callback},
        {"cancel_other_inside_callback", test_cancel_other_inside_callback},
        {"cancel_after_end", test_cancel_after_end},
        {"release_keeps_timer", test_release_keeps_timer},
        {"cancel_race_other_thread", test_cancel_race},
        {"timer_count", test_timer_count},
        {"pending_at_free_destroyed", test_pending_at_free},
        {"add_and_cancel_while_stopping", test_add_while_stopping},
        {"million_timers", test_million_timers},
        {NULL, NULL},
    };
    int rc = zl_test_add_suite("timer", NULL, NULL, cases);
    return rc ? rc : zl_test_register_timer_node();
}
