/* zltk tests — intrusive timer nodes (zltk/poller.h, zl_timer_node_*):
 * order, FIFO, stop and re-arm from callbacks, a million armed, the heap's
 * invariants after random start/stop, poller stop with armed nodes.
 * Suite "timer-node", registered with "timer". */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define WAIT_MS 10000u

typedef struct item {
    uint32_t idx;
    uint32_t delay;
    uint64_t lo, hi; /* bounds of the deadline (ms) around the start call */
    zl_timer_node_t node;
} item_t;

#define ITEM(n) ((item_t *)((char *)(n) - offsetof(item_t, node)))

/* Fire log, written on the poller thread. */
static uint32_t *nlog;
static size_t nlog_len, nlog_cap;
static atomic_long nfired;
static bool wrong_thread;
static zl_poller_t *cur;

static void log_fn(zl_poller_t *p, zl_timer_node_t *n)
{
    if (p != cur || !zl_poller_is_current(p) || zl_timer_node_is_armed(n))
        wrong_thread = true;
    if (nlog_len < nlog_cap)
        nlog[nlog_len++] = ITEM(n)->idx;
    atomic_fetch_add(&nfired, 1);
}

static void log_reset(zl_poller_t *p, size_t cap)
{
    free(nlog);
    nlog = calloc(cap, sizeof(*nlog));
    CU_ASSERT_PTR_NOT_NULL_FATAL(nlog);
    nlog_len = 0;
    nlog_cap = cap;
    atomic_store(&nfired, 0);
    wrong_thread = false;
    cur = p;
}

static void start_item(zl_poller_t *p, item_t *it, uint32_t delay)
{
    it->delay = delay;
    it->lo = (zl_now_ns() + delay * 1000000ull + 999999u) / 1000000u;
    CU_ASSERT_EQUAL(zl_timer_node_start(p, &it->node, delay), 0);
    it->hi = (zl_now_ns() + delay * 1000000ull + 999999u) / 1000000u;
}

/* ------------------------------------------------ order and FIFO */
typedef struct {
    zl_poller_t *p;
    item_t *items;
    int n;
    const uint32_t *delays; /* NULL: all 15 ms */
    unsigned busy_ms;
} order_t;

static void order_task(void *arg)
{
    order_t *o = arg;

    for (int i = 0; i < o->n; i++) {
        o->items[i].idx = (uint32_t)i;
        zl_timer_node_init(&o->items[i].node, log_fn);
        start_item(o->p, &o->items[i], o->delays ? o->delays[i] : 15);
    }
    if (o->busy_ms) {
        uint64_t end = zl_now_ms() + o->busy_ms;
        while (zl_now_ms() < end)
            ;
    }
}

static void test_node_order(void)
{
    static const uint32_t delays[10] = {50, 10, 30, 0, 20, 40, 25, 25, 25, 5};
    static const uint32_t expect[10] = {3, 9, 1, 4, 6, 7, 8, 2, 5, 0};
    zl_poller_t *p = zl_test_new_poller();
    item_t items[200];

    for (unsigned busy = 0; busy <= 60; busy += 60) {
        order_t o = {p, items, 10, delays, busy};
        log_reset(p, 400);
        CU_ASSERT_EQUAL(zl_poller_sync(p, order_task, &o), 0);
        CU_ASSERT_EQUAL(zl_test_wait_count(&nfired, 10, WAIT_MS), 10);
        CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
        CU_ASSERT_EQUAL_FATAL(nlog_len, 10);
        for (int i = 0; i < 10; i++)
            CU_ASSERT_EQUAL(nlog[i], expect[i]);

        o = (order_t){p, items, 200, NULL, busy};
        log_reset(p, 400);
        CU_ASSERT_EQUAL(zl_poller_sync(p, order_task, &o), 0);
        CU_ASSERT_EQUAL(zl_test_wait_count(&nfired, 200, WAIT_MS), 200);
        CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
        CU_ASSERT_EQUAL_FATAL(nlog_len, 200);
        for (int i = 0; i < 200; i++)
            CU_ASSERT_EQUAL(nlog[i], (uint32_t)i);
        CU_ASSERT_FALSE(wrong_thread);
    }
    zl_poller_free(p);
}

/* ------------------------------------------------ callbacks */
typedef struct {
    zl_poller_t *p;
    item_t a, b, c, self;
    int runs_self;
    bool stop_b, stop_self_armed, stop_self_unarmed;
    uint64_t t_start; /* written in cb_task, before the first run */
    uint64_t t_run[6];
    atomic_int done;
} cb_t;

static cb_t cbx;

/* a stops b (due in the same pass); self re-arms 5 times, then re-arms and
 * stops itself. */
static void a_fn(zl_poller_t *p, zl_timer_node_t *n)
{
    (void)n;
    cbx.stop_b = zl_timer_node_stop(p, &cbx.b.node);
}

static void self_fn(zl_poller_t *p, zl_timer_node_t *n)
{
    cbx.t_run[cbx.runs_self++] = zl_now_ms();
    if (cbx.runs_self < 6) {
        CU_ASSERT_EQUAL(zl_timer_node_start(p, n, 10), 0);
        return;
    }
    cbx.stop_self_unarmed = !zl_timer_node_stop(p, n);
    CU_ASSERT_EQUAL(zl_timer_node_start(p, n, 0), 0);
    cbx.stop_self_armed = zl_timer_node_stop(p, n);
    atomic_store(&cbx.done, 1);
}

static void never_fn(zl_poller_t *p, zl_timer_node_t *n)
{
    (void)p;
    (void)n;
    CU_FAIL("a stopped node fired");
}

static void cb_task(void *arg)
{
    cb_t *c = arg;

    zl_timer_node_init(&c->a.node, a_fn);
    zl_timer_node_init(&c->b.node, never_fn);
    zl_timer_node_init(&c->self.node, self_fn);
    c->c.node = (zl_timer_node_t)ZL_TIMER_NODE_INIT(never_fn);
    /* Never started: stop is a no-op, twice. */
    CU_ASSERT_FALSE(zl_timer_node_stop(c->p, &c->c.node));
    CU_ASSERT_FALSE(zl_timer_node_stop(c->p, &c->c.node));
    CU_ASSERT_FALSE(zl_timer_node_is_armed(&c->c.node));
    /* Started then stopped: true, then false. */
    start_item(c->p, &c->c, 5);
    CU_ASSERT_TRUE(zl_timer_node_is_armed(&c->c.node));
    CU_ASSERT_TRUE(zl_timer_node_stop(c->p, &c->c.node));
    CU_ASSERT_FALSE(zl_timer_node_stop(c->p, &c->c.node));
    /* Re-armed while armed: the new deadline counts. */
    start_item(c->p, &c->self, 3600000);
    start_item(c->p, &c->self, 10);
    start_item(c->p, &c->a, 5);
    start_item(c->p, &c->b, 5);
    c->t_start = zl_now_ms();
    CU_ASSERT_EQUAL(zl_poller_timer_count(c->p), 3);
}

static void test_node_callbacks(void)
{
    zl_poller_t *p = zl_test_new_poller();

    memset(&cbx, 0, sizeof(cbx));
    cbx.p = p;
    CU_ASSERT_EQUAL(zl_poller_sync(p, cb_task, &cbx), 0);
    {
        uint64_t t0 = cbx.t_start; /* the sync ordered it; self_fn
                                    * writes t_run on the poller */
        CU_ASSERT_FATAL(zl_test_wait_flag(&cbx.done, WAIT_MS));
        CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
        CU_ASSERT(cbx.t_run[0] >= t0 + 10);
    }
    zl_test_sleep_ms(30);
    CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
    CU_ASSERT_TRUE(cbx.stop_b);
    CU_ASSERT_EQUAL(cbx.runs_self, 6);
    for (int k = 1; k < 6; k++)
        CU_ASSERT(cbx.t_run[k] >= cbx.t_run[k - 1] + 10);
    CU_ASSERT_TRUE(cbx.stop_self_unarmed);
    CU_ASSERT_TRUE(cbx.stop_self_armed);
    CU_ASSERT_FALSE(zl_timer_node_is_armed(&cbx.self.node));
    CU_ASSERT_EQUAL(zl_poller_timer_count(p), 0); /* quiet: approximate */
    zl_poller_free(p);
}

/* ------------------------------------------------ random start/stop */
#define RND_N 2000
#define RND_OPS 20000
#define RND_STEP 40u

typedef struct {
    zl_poller_t *p;
    item_t *items;
    uint64_t *order; /* model: last start number, 0: not armed */
    size_t armed;
    uint64_t batch_ms;
    int bad_pos, bad_heap;
} rnd_t;

/* The heap's invariants, from the nodes' private fields: positions are
 * 1..armed, each once, and no node sorts before its parent (4-ary) in the
 * model order (delay step, then start number), which is the real order
 * when the batch took less than one step. */
static void rnd_check(rnd_t *r)
{
    item_t **by_pos = calloc(r->armed + 1, sizeof(*by_pos));

    CU_ASSERT_PTR_NOT_NULL_FATAL(by_pos);
    for (int i = 0; i < RND_N; i++) {
        uint32_t pos = r->items[i].node.zl_pos;
        if ((pos != 0) != (r->order[i] != 0) || pos > r->armed ||
            (pos && by_pos[pos])) {
            r->bad_pos++;
            continue;
        }
        if (pos)
            by_pos[pos] = &r->items[i];
    }
    for (size_t pos = 2; pos <= r->armed && r->batch_ms < RND_STEP; pos++) {
        item_t *c = by_pos[pos], *q = by_pos[(pos - 2) / 4 + 1];
        if (c && q && (c->delay < q->delay ||
                       (c->delay == q->delay &&
                        r->order[c->idx] < r->order[q->idx])))
            r->bad_heap++;
    }
    free(by_pos);
}

static void rnd_task(void *arg)
{
    rnd_t *r = arg;
    unsigned seed = 777;
    uint64_t t0 = zl_now_ms(), nstart = 0;

    for (int i = 0; i < RND_N; i++) {
        r->items[i].idx = (uint32_t)i;
        zl_timer_node_init(&r->items[i].node, log_fn);
    }
    for (int k = 0; k < RND_OPS; k++) {
        int i;
        seed = seed * 1103515245u + 12345u;
        i = (int)((seed >> 8) % RND_N);
        if ((seed >> 4) % 3 == 0) {
            CU_ASSERT_EQUAL(zl_timer_node_stop(r->p, &r->items[i].node),
                            r->order[i] != 0);
            r->armed -= r->order[i] != 0;
            r->order[i] = 0;
        } else {
            r->armed += r->order[i] == 0;
            start_item(r->p, &r->items[i], RND_STEP * (1 + (seed >> 20) % 8));
            r->order[i] = ++nstart;
        }
    }
    r->batch_ms = zl_now_ms() - t0;
    CU_ASSERT_EQUAL(zl_poller_timer_count(r->p), r->armed);
    rnd_check(r);
}

static rnd_t *rnd_ctx;

static int rnd_cmp(const void *a, const void *b)
{
    rnd_t *r = rnd_ctx;
    const item_t *x = &r->items[*(const uint32_t *)a];
    const item_t *y = &r->items[*(const uint32_t *)b];

    if (x->delay != y->delay)
        return x->delay < y->delay ? -1 : 1;
    return r->order[x->idx] < r->order[y->idx] ? -1 : 1;
}

static void test_node_random(void)
{
    zl_poller_t *p = zl_test_new_poller();
    rnd_t r = {p, calloc(RND_N, sizeof(item_t)), calloc(RND_N, 8), 0, 0, 0, 0};
    uint32_t *expect = calloc(RND_N, sizeof(*expect));
    size_t ne = 0;

    CU_ASSERT_FATAL(r.items && r.order && expect);
    log_reset(p, RND_N * 2);
    CU_ASSERT_EQUAL(zl_poller_sync(p, rnd_task, &r), 0);
    CU_ASSERT_EQUAL(r.bad_pos, 0);
    CU_ASSERT_EQUAL(r.bad_heap, 0);
    for (int i = 0; i < RND_N; i++)
        if (r.order[i])
            expect[ne++] = (uint32_t)i;
    CU_ASSERT_EQUAL(ne, r.armed);
    rnd_ctx = &r;
    qsort(expect, ne, sizeof(*expect), rnd_cmp);
    CU_ASSERT_EQUAL(zl_test_wait_count(&nfired, (long)ne, WAIT_MS), (long)ne);
    CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(nlog_len, ne);
    if (r.batch_ms < RND_STEP)
        CU_ASSERT_EQUAL(memcmp(nlog, expect, ne * sizeof(*expect)), 0);
    printf("\n    %d random starts/stops in %llu ms, %zu fired in order ",
           RND_OPS, (unsigned long long)r.batch_ms, ne);
    free(expect);
    free(r.items);
    free(r.order);
    zl_poller_free(p);
}

/* ------------------------------------------------ a million */
#define MIL 1000000
#define MIL_SPREAD 200u

typedef struct {
    zl_poller_t *p;
    item_t *items;
    size_t count_before, count_after;
    long armed_after;
} mil_t;

static void mil_task(void *arg)
{
    mil_t *m = arg;

    for (uint32_t i = 0; i < MIL; i++) {
        m->items[i].idx = i;
        zl_timer_node_init(&m->items[i].node, log_fn);
        start_item(m->p, &m->items[i], (i * 7919u) % MIL_SPREAD);
    }
    m->count_before = zl_poller_timer_count(m->p);
    for (uint32_t i = 0; i < MIL; i += 2)
        CU_ASSERT_TRUE(zl_timer_node_stop(m->p, &m->items[i].node));
    m->count_after = zl_poller_timer_count(m->p);
    for (uint32_t i = 0; i < MIL; i++)
        m->armed_after += zl_timer_node_is_armed(&m->items[i].node);
}

static void test_node_million(void)
{
    zl_poller_t *p = zl_test_new_poller();
    mil_t m = {p, calloc(MIL, sizeof(item_t)), 0, 0, 0};
    long bad_order = 0, bad_set = 0;
    uint64_t t0 = zl_now_ms();
    uint8_t *seen = calloc(MIL, 1);

    CU_ASSERT_FATAL(m.items && seen);
    log_reset(p, MIL);
    CU_ASSERT_EQUAL(zl_poller_sync(p, mil_task, &m), 0);
    CU_ASSERT_EQUAL(m.count_before, MIL);
    CU_ASSERT_EQUAL(m.count_after, MIL / 2);
    CU_ASSERT_EQUAL(m.armed_after, MIL / 2);
    CU_ASSERT_EQUAL(zl_test_wait_count(&nfired, MIL / 2, WAIT_MS), MIL / 2);
    CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(nlog_len, MIL / 2);
    for (size_t k = 0; k < nlog_len; k++) {
        const item_t *b = &m.items[nlog[k]];
        bad_set += (b->idx & 1) == 0 || seen[b->idx]++;
        if (k > 0) {
            const item_t *a = &m.items[nlog[k - 1]];
            /* b may not have a deadline surely before a's, nor the same
             * sure deadline while started before a. */
            bad_order += b->hi < a->lo ||
                         (a->lo == a->hi && b->lo == b->hi &&
                          a->lo == b->lo && b->idx < a->idx);
        }
    }
    CU_ASSERT_EQUAL(bad_set, 0);
    CU_ASSERT_EQUAL(bad_order, 0);
    CU_ASSERT_EQUAL(zl_poller_timer_count(p), 0);
    printf("\n    %d nodes, half stopped, the rest fired in order in %llu ms ",
           MIL, (unsigned long long)(zl_now_ms() - t0));
    zl_poller_free(p);
    free(m.items);
    free(seen);
}

/* ------------------------------------------------ poller stop */
typedef struct {
    zl_poller_t *p;
    item_t items[100];
    atomic_int late_rc;
} stop_t;

static void stop_arm_task(void *arg)
{
    stop_t *s = arg;

    for (int i = 0; i < 99; i++) {
        s->items[i].idx = (uint32_t)i;
        zl_timer_node_init(&s->items[i].node, log_fn);
        start_item(s->p, &s->items[i], 3600000u + (uint32_t)i);
    }
}

static void stop_late_task(void *arg)
{
    stop_t *s = arg;

    zl_timer_node_init(&s->items[99].node, log_fn);
    atomic_store(&s->late_rc,
                 zl_timer_node_start(s->p, &s->items[99].node, 0));
}

static void test_node_poller_stop(void)
{
    zl_poller_t *p = zl_test_new_poller();
    stop_t *s = calloc(1, sizeof(*s));
    int rc;

    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    s->p = p;
    atomic_store(&s->late_rc, 1);
    log_reset(p, 200);
    CU_ASSERT_EQUAL(zl_poller_sync(p, stop_arm_task, s), 0);
    CU_ASSERT_EQUAL(zl_poller_async(p, stop_late_task, s), 0);
    zl_poller_free(p);
    rc = atomic_load(&s->late_rc);
    CU_ASSERT(rc == 0 || rc == ZL_ESHUTDOWN);
    CU_ASSERT_EQUAL(atomic_load(&nfired), 0);
    for (int i = 0; i < 100; i++)
        CU_ASSERT_FALSE(zl_timer_node_is_armed(&s->items[i].node));
    free(s);
}

int zl_test_register_timer_node(void);

int zl_test_register_timer_node(void)
{
    static const zl_test_case_t cases[] = {
        {"order_and_fifo", test_node_order},
        {"stop_and_rearm_in_callbacks", test_node_callbacks},
        {"random_start_stop_heap", test_node_random},
        {"million_then_stop_half", test_node_million},
        {"poller_stop_drops_armed", test_node_poller_stop},
        {NULL, NULL},
    };
    return zl_test_add_suite("timer-node", NULL, NULL, cases);
}
