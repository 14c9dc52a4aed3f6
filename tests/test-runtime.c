/* zltk tests — the process-wide runtime: init, shutdown, teardown order. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "test.h"

#define WAIT_MS 5000u

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

static void assert_down(void)
{
    CU_ASSERT_PTR_NULL(zl_runtime_pollers());
    CU_ASSERT_PTR_NULL(zl_runtime_workers());
    CU_ASSERT_PTR_NULL(zl_runtime_get_poller(false));
    CU_ASSERT_PTR_NULL(zl_runtime_get_poller(true));
}

/* Leave the runtime down whatever a failed test did. */
static int suite_cleanup(void)
{
    zl_runtime_shutdown();
    return 0;
}

static void test_down(void)
{
    assert_down();
    zl_runtime_shutdown(); /* no-op */
    assert_down();
}

static void test_init_shutdown(void)
{
    zl_runtime_options_t o = {.pollers = 2, .workers = 3};
    unsigned ncpu = online_cpus();
    int threads = -1;
    zl_poller_pool_t *pp;
    zl_worker_pool_t *wp;

    for (int round = 0; round < 2; round++) {
        CU_ASSERT_EQUAL_FATAL(zl_runtime_init(&o), 0);
        pp = zl_runtime_pollers();
        wp = zl_runtime_workers();
        CU_ASSERT_PTR_NOT_NULL_FATAL(pp);
        CU_ASSERT_PTR_NOT_NULL_FATAL(wp);
        CU_ASSERT_EQUAL(zl_poller_pool_size(pp), 2);
        CU_ASSERT_EQUAL(zl_worker_pool_size(wp), 3);
        /* 2 pollers + 3 workers; counted from here because TSan starts a
         * helper thread with the first pthread_create(). */
        if (threads < 0)
            threads = zl_test_count_entries("/proc/self/task") - 5;
        CU_ASSERT_EQUAL(zl_test_count_entries("/proc/self/task"), threads + 5);

        /* Already running: refused, and nothing changes. */
        CU_ASSERT_EQUAL(zl_runtime_init(NULL), -EALREADY);
        CU_ASSERT_PTR_EQUAL(zl_runtime_pollers(), pp);
        CU_ASSERT_PTR_EQUAL(zl_runtime_workers(), wp);

        zl_runtime_shutdown();
        assert_down();
        CU_ASSERT_EQUAL(zl_test_wait_threads(threads), threads);
    }

    /* Defaults: one poller per CPU, max(2, ncpu) workers. */
    CU_ASSERT_EQUAL_FATAL(zl_runtime_init(NULL), 0);
    CU_ASSERT_EQUAL(zl_poller_pool_size(zl_runtime_pollers()), ncpu);
    CU_ASSERT_EQUAL(zl_worker_pool_size(zl_runtime_workers()),
                    ncpu > 2 ? ncpu : 2);
    zl_runtime_shutdown();
    zl_runtime_shutdown();
    assert_down();
    CU_ASSERT_EQUAL(zl_test_wait_threads(threads), threads);
}

static void test_init_failure(void)
{
    zl_runtime_options_t bad = {.pollers = 2, .backend = "no-such-backend"};
    zl_runtime_options_t poll = {.pollers = 2, .backend = "poll"};
    int threads = zl_test_count_entries("/proc/self/task");

    CU_ASSERT_EQUAL(zl_runtime_init(&bad), -EINVAL);
    assert_down();
    CU_ASSERT_EQUAL(zl_test_count_entries("/proc/self/task"), threads);

    /* Options reach the pools. */
    CU_ASSERT_EQUAL_FATAL(zl_runtime_init(&poll), 0);
    CU_ASSERT_STRING_EQUAL(
        zl_poller_backend(zl_poller_pool_at(zl_runtime_pollers(), 1)), "poll");
    zl_runtime_shutdown();
    assert_down();
}

typedef struct where {
    zl_poller_t *cur, *got;
} where_t;

static void where_task(void *arg)
{
    where_t *w = arg;

    w->cur = zl_poller_current();
    w->got = zl_runtime_get_poller(true);
}

static void test_get_poller(void)
{
    zl_runtime_options_t o = {.pollers = 3, .workers = 2};
    zl_poller_pool_t *pp;

    CU_ASSERT_EQUAL_FATAL(zl_runtime_init(&o), 0);
    pp = zl_runtime_pollers();
    for (int k = 0; k < 6; k++) {
        CU_ASSERT_TRUE(zl_poller_pool_contains(pp, zl_runtime_get_poller(false)));
        CU_ASSERT_TRUE(zl_poller_pool_contains(pp, zl_runtime_get_poller(true)));
    }
    for (size_t i = 0; i < 3; i++) {
        zl_poller_t *p = zl_poller_pool_at(pp, i);
        where_t w = {0};

        CU_ASSERT_EQUAL(zl_poller_sync(p, where_task, &w), 0);
        CU_ASSERT_PTR_EQUAL(w.cur, p);
        CU_ASSERT_PTR_EQUAL(w.got, p);
    }
    zl_runtime_shutdown();
}

/* ------------------------------------------------------------ teardown */

typedef struct pending {
    atomic_long tasks_ran, timer_fired, timer_destroyed;
    long tasks_posted, timers_added;
} pending_t;

typedef struct tm_arg {
    pending_t *pd;
} tm_arg_t;

static void count_task(void *arg)
{
    pending_t *pd = arg;

    atomic_fetch_add(&pd->tasks_ran, 1);
}

static void slow_task(void *arg)
{
    count_task(arg);
    zl_test_sleep_ms(50); /* let the queue behind it build up */
}

static uint64_t never_fn(void *arg)
{
    tm_arg_t *t = arg;

    atomic_fetch_add(&t->pd->timer_fired, 1);
    return 0;
}

static bool repeat_fn(void *arg)
{
    (void)arg;
    return true;
}

static void tm_destroy(void *arg)
{
    tm_arg_t *t = arg;

    atomic_fetch_add(&t->pd->timer_destroyed, 1);
    free(t);
}

/* Queued tasks run, armed timers are dropped (destroy runs, fn does not),
 * and every allocation is released: ASan/valgrind see no leak. */
static void test_shutdown_pending(void)
{
    zl_runtime_options_t o = {.pollers = 2, .workers = 2};
    pending_t pd = {0};
    zl_timer_t *kept = NULL;

    CU_ASSERT_EQUAL_FATAL(zl_runtime_init(&o), 0);
    for (size_t i = 0; i < 2; i++) {
        zl_poller_t *p = zl_poller_pool_at(zl_runtime_pollers(), i);

        CU_ASSERT_EQUAL(zl_poller_async(p, slow_task, &pd), 0);
        pd.tasks_posted++;
        for (int k = 0; k < 100; k++) {
            CU_ASSERT_EQUAL(zl_poller_async(p, count_task, &pd), 0);
            pd.tasks_posted++;
        }
        for (int k = 0; k < 10; k++) {
            tm_arg_t *t = malloc(sizeof(*t));
            CU_ASSERT_PTR_NOT_NULL_FATAL(t);
            t->pd = &pd;
            CU_ASSERT_EQUAL(zl_poller_add_timer(p, 60000, never_fn, t,
                                                tm_destroy, NULL), 0);
            pd.timers_added++;
        }
        tm_arg_t *r = malloc(sizeof(*r));
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        r->pd = &pd;
        CU_ASSERT_EQUAL(zl_poller_add_repeat(p, 1, repeat_fn, r, tm_destroy,
                                             i == 0 ? &kept : NULL), 0);
        pd.timers_added++;
    }
    zl_runtime_shutdown();
    assert_down();
    CU_ASSERT_EQUAL(atomic_load(&pd.tasks_ran), pd.tasks_posted);
    CU_ASSERT_EQUAL(atomic_load(&pd.timer_fired), 0);
    CU_ASSERT_EQUAL(atomic_load(&pd.timer_destroyed), pd.timers_added);
    /* A timer handle outlives the runtime. */
    CU_ASSERT_FALSE(zl_timer_cancel(kept));
}

/* Workers stop before pollers: a job running at shutdown still gets its
 * completion delivered; queued ones are cancelled (destroy runs). */
typedef struct order {
    atomic_int started, saw_shutdown, done_ran, destroyed, queued_work,
        queued_destroyed;
    zl_poller_t *done_on;
} order_t;

static void noop_work(void *arg)
{
    (void)arg;
}

static void order_work(void *arg)
{
    order_t *o = arg;
    uint64_t end = zl_now_ms() + WAIT_MS * zl_test_slow();

    atomic_store(&o->started, 1);
    /* Hold the worker until the runtime starts shutting down, which we see
     * as the pool refusing new jobs. */
    while (zl_now_ms() < end) {
        zl_worker_pool_t *wp = zl_runtime_workers();
        if (!wp || zl_worker_submit(wp, NULL, noop_work, NULL, NULL,
                                    NULL, NULL) == ZL_ESHUTDOWN) {
            atomic_store(&o->saw_shutdown, 1);
            break;
        }
        zl_test_sleep_ms(1);
    }
}

static void order_done(void *arg)
{
    order_t *o = arg;

    o->done_on = zl_poller_current();
    atomic_fetch_add(&o->done_ran, 1);
}

static void order_destroy(void *arg)
{
    order_t *o = arg;

    atomic_fetch_add(&o->destroyed, 1);
}

static void queued_work(void *arg)
{
    order_t *o = arg;

    atomic_fetch_add(&o->queued_work, 1);
}

static void queued_destroy(void *arg)
{
    order_t *o = arg;

    atomic_fetch_add(&o->queued_destroyed, 1);
}

static void test_shutdown_order(void)
{
    zl_runtime_options_t opts = {.pollers = 2, .workers = 1};
    order_t o = {0};
    zl_poller_t *reply;
    zl_poller_pool_t *pp;

    CU_ASSERT_EQUAL_FATAL(zl_runtime_init(&opts), 0);
    pp = zl_runtime_pollers();
    reply = zl_poller_pool_at(pp, 1);
    CU_ASSERT_EQUAL(zl_worker_submit(zl_runtime_workers(), reply, order_work,
                                     order_done, order_destroy, &o, NULL), 0);
    CU_ASSERT_TRUE(zl_test_wait_flag(&o.started, WAIT_MS));
    for (int k = 0; k < 3; k++)
        CU_ASSERT_EQUAL(zl_worker_submit(zl_runtime_workers(), reply,
                                         queued_work, order_done,
                                         queued_destroy, &o, NULL), 0);
    zl_runtime_shutdown();
    assert_down();

    CU_ASSERT_EQUAL(atomic_load(&o.saw_shutdown), 1);
    CU_ASSERT_EQUAL(atomic_load(&o.done_ran), 1);
    CU_ASSERT_PTR_EQUAL(o.done_on, reply);
    CU_ASSERT_EQUAL(atomic_load(&o.destroyed), 1);
    CU_ASSERT_EQUAL(atomic_load(&o.queued_work), 0);
    CU_ASSERT_EQUAL(atomic_load(&o.queued_destroyed), 3);
}

int zl_test_register_runtime(void)
{
    static const zl_test_case_t cases[] = {
        {"accessors are NULL when down", test_down},
        {"init, -EALREADY, shutdown, twice", test_init_shutdown},
        {"failed init leaves nothing", test_init_failure},
        {"get_poller", test_get_poller},
        {"shutdown drains tasks, drops timers", test_shutdown_pending},
        {"shutdown stops workers before pollers", test_shutdown_order},
        {NULL, NULL},
    };
    return zl_test_add_suite("runtime", NULL, suite_cleanup, cases);
}
