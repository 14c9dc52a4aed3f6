/* zltk tests — poller pool: sizes, names, selection, affinity, teardown. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <glib.h>

#include "test.h"

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

/* What a task sees of the thread it runs on. */
typedef struct thread_info {
    zl_poller_t *cur;
    char log_name[32];  /* zl_thread_name() */
    char kern_name[16]; /* pthread_getname_np() */
    int policy, prio, cpu;
    cpu_set_t mask;
    int mask_rc;
} thread_info_t;

static void grab_info(void *arg)
{
    thread_info_t *ti = arg;
    struct sched_param sp;

    ti->cur = zl_poller_current();
    g_strlcpy(ti->log_name, zl_thread_name(), sizeof(ti->log_name));
    if (pthread_getname_np(pthread_self(), ti->kern_name,
                           sizeof(ti->kern_name)) != 0)
        ti->kern_name[0] = '\0';
    ti->policy = sched_getscheduler(0);
    ti->prio = -1;
    if (pthread_getschedparam(pthread_self(), &ti->policy, &sp) == 0)
        ti->prio = sp.sched_priority;
    ti->cpu = sched_getcpu();
    CPU_ZERO(&ti->mask);
    ti->mask_rc =
        pthread_getaffinity_np(pthread_self(), sizeof(ti->mask), &ti->mask);
}

static int info_of(zl_poller_t *p, thread_info_t *ti)
{
    memset(ti, 0, sizeof(*ti));
    return zl_poller_sync(p, grab_info, ti);
}

/* ------------------------------------------------------------ sizes */

static void test_default_size(void)
{
    zl_poller_pool_t *pool = NULL;
    int threads = zl_test_count_entries("/proc/self/task");

    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&pool, NULL), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pool);
    CU_ASSERT_EQUAL(zl_poller_pool_size(pool), online_cpus());
    /* Relative to the count with the pool: TSan starts a helper thread
     * with the first pthread_create(). */
    threads = zl_test_count_entries("/proc/self/task") - (int)online_cpus();
    for (size_t i = 0; i < zl_poller_pool_size(pool); i++)
        CU_ASSERT_PTR_NOT_NULL(zl_poller_pool_at(pool, i));

    zl_pool_options_t zero = {0}; /* size 0 means the same */
    zl_poller_pool_t *pool2 = NULL;
    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&pool2, &zero), 0);
    CU_ASSERT_EQUAL(zl_poller_pool_size(pool2), online_cpus());
    zl_poller_pool_free(pool2);
    zl_poller_pool_free(pool);
    CU_ASSERT_EQUAL(zl_test_wait_threads(threads), threads);
}

static void test_explicit_sizes(void)
{
    static const unsigned sizes[] = {1, 3, 7};

    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        zl_pool_options_t o = {.size = sizes[k]};
        zl_poller_pool_t *pool = NULL;

        CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&pool, &o), 0);
        CU_ASSERT_EQUAL(zl_poller_pool_size(pool), sizes[k]);
        for (size_t i = 0; i < sizes[k]; i++) {
            zl_poller_t *p = zl_poller_pool_at(pool, i);
            CU_ASSERT_PTR_NOT_NULL(p);
            CU_ASSERT_TRUE(zl_poller_pool_contains(pool, p));
            for (size_t j = 0; j < i; j++)
                CU_ASSERT_PTR_NOT_EQUAL(zl_poller_pool_at(pool, j), p);
        }
        zl_poller_pool_free(pool);
    }
}

static void test_bad_args(void)
{
    zl_poller_pool_t *pool = (zl_poller_pool_t *)&pool;
    int cpus[1] = {0};
    zl_pool_options_t o = {.affinity = true, .cpus = cpus, .n_cpus = 0};
    zl_pool_options_t bad = {.size = 2, .backend = "no-such-backend"};
    int threads = zl_test_count_entries("/proc/self/task");

    CU_ASSERT_EQUAL(zl_poller_pool_new(NULL, NULL), -EINVAL);
    CU_ASSERT_EQUAL(zl_poller_pool_new(&pool, &o), -EINVAL);
    CU_ASSERT_PTR_NULL(pool);
    pool = (zl_poller_pool_t *)&pool;
    CU_ASSERT_EQUAL(zl_poller_pool_new(&pool, &bad), -EINVAL);
    CU_ASSERT_PTR_NULL(pool);
    CU_ASSERT_EQUAL(zl_test_count_entries("/proc/self/task"), threads);
    zl_poller_pool_free(NULL); /* no-op */
}

/* Make poller 2 (epoll: the second descriptor of poller 1) hit EMFILE, so
 * construction fails half-way: what was made must be gone. */
static void test_fail_midway(void)
{
    zl_pool_options_t o = {.size = 8};
    zl_poller_pool_t *pool = (zl_poller_pool_t *)&pool;
    struct rlimit old, lim;
    int threads = zl_test_count_entries("/proc/self/task");
    int fds = zl_test_count_entries("/proc/self/fd");
    int free_slots = 0, rc;
    rlim_t cap;

    CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_NOFILE, &old), 0);
    /* Lowest limit that leaves exactly three free descriptor numbers. */
    for (cap = 0; free_slots < 3 && cap < 65536; cap++)
        if (fcntl((int)cap, F_GETFD) < 0 && errno == EBADF)
            free_slots++;
    lim = old;
    lim.rlim_cur = cap;
    CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_NOFILE, &lim), 0);
    rc = zl_poller_pool_new(&pool, &o);
    CU_ASSERT_EQUAL(setrlimit(RLIMIT_NOFILE, &old), 0);

    CU_ASSERT_EQUAL(rc, -EMFILE);
    CU_ASSERT_PTR_NULL(pool);
    if (rc == 0)
        zl_poller_pool_free(pool);
    CU_ASSERT_EQUAL(zl_test_wait_threads(threads), threads);
    CU_ASSERT_EQUAL(zl_test_count_entries("/proc/self/fd"), fds);
}

/* ------------------------------------------------------------ names */

static void check_names(const zl_pool_options_t *o, const char *prefix)
{
    zl_poller_pool_t *pool = NULL;

    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&pool, o), 0);
    for (size_t i = 0; i < zl_poller_pool_size(pool); i++) {
        zl_poller_t *p = zl_poller_pool_at(pool, i);
        thread_info_t ti;
        char want[32];

        g_snprintf(want, sizeof(want), "%s %zu", prefix, i);
        CU_ASSERT_EQUAL_FATAL(info_of(p, &ti), 0);
        CU_ASSERT_PTR_EQUAL(ti.cur, p);
        CU_ASSERT_STRING_EQUAL(ti.log_name, want);
        CU_ASSERT_STRING_EQUAL(ti.kern_name, want);
        CU_ASSERT_STRING_EQUAL(zl_poller_name(p), want);
    }
    zl_poller_pool_free(pool);
}

static void test_thread_names(void)
{
    zl_pool_options_t dflt = {.size = 3};
    zl_pool_options_t custom = {.size = 2, .name_prefix = "io"};

    check_names(&dflt, "zl-poller");
    check_names(&custom, "io");
}

static void test_backend(void)
{
    const char *env = getenv("ZLTK_POLLER_BACKEND");
    zl_pool_options_t o = {.size = 2, .backend = "poll"};
    zl_poller_pool_t *pool = NULL;

    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&pool, &o), 0);
    for (size_t i = 0; i < 2; i++)
        CU_ASSERT_STRING_EQUAL(
            zl_poller_backend(zl_poller_pool_at(pool, i)), "poll");
    zl_poller_pool_free(pool);

    o.backend = NULL;
    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&pool, &o), 0);
    CU_ASSERT_STRING_EQUAL(zl_poller_backend(zl_poller_pool_at(pool, 0)),
                           env && *env ? env : zl_poller_backends()[0]);
    zl_poller_pool_free(pool);
}

/* ------------------------------------------------------------ selection */

typedef struct spin {
    atomic_int started, stop, stopped;
} spin_t;

/* Keeps its poller busy until told to stop (at most 10 s). */
static void spin_task(void *arg)
{
    spin_t *s = arg;
    uint64_t end = zl_now_ms() + 10000u * zl_test_slow();

    atomic_store(&s->started, 1);
    while (!atomic_load(&s->stop) && zl_now_ms() < end)
        ;
    atomic_store(&s->stopped, 1);
}

static unsigned wait_load_at_least(zl_poller_t *p, unsigned want)
{
    uint64_t end = zl_now_ms() + 2000u * zl_test_slow();
    unsigned l;

    while ((l = zl_poller_load(p)) < want && zl_now_ms() < end)
        zl_test_sleep_ms(1);
    return l;
}

static bool wait_all_idle(zl_poller_pool_t *pool)
{
    uint64_t end = zl_now_ms() + 3000u * zl_test_slow();

    for (;;) {
        bool idle = true;
        for (size_t i = 0; i < zl_poller_pool_size(pool); i++)
            idle = idle && zl_poller_load(zl_poller_pool_at(pool, i)) == 0;
        if (idle)
            return true;
        if (zl_now_ms() >= end)
            return false;
        zl_test_sleep_ms(5);
    }
}

typedef struct prefer_ctx {
    zl_poller_pool_t *pool;
    zl_poller_t *cur, *got_true, *got_false;
    unsigned load_self;
} prefer_ctx_t;

static void prefer_task(void *arg)
{
    prefer_ctx_t *c = arg;
    uint64_t end;

    c->cur = zl_poller_current();
    c->got_true = zl_poller_pool_get(c->pool, true);
    /* Become the busiest poller, then ask without the preference. */
    end = zl_now_ms() + 300;
    while (zl_now_ms() < end)
        ;
    c->load_self = zl_poller_load(c->cur);
    c->got_false = zl_poller_pool_get(c->pool, false);
}

static void foreign_task(void *arg)
{
    prefer_ctx_t *c = arg;

    c->cur = zl_poller_current();
    c->got_true = zl_poller_pool_get(c->pool, true);
}

static void test_prefer_current(void)
{
    zl_pool_options_t o = {.size = 3};
    zl_poller_pool_t *pool = NULL;
    zl_poller_t *foreign = NULL;

    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&pool, &o), 0);
    CU_ASSERT_TRUE(wait_all_idle(pool));

    /* From the test thread (no poller) the preference is moot. */
    CU_ASSERT_TRUE(zl_poller_pool_contains(pool, zl_poller_pool_get(pool, true)));

    for (size_t i = 0; i < 3; i += 2) {
        prefer_ctx_t c = {.pool = pool};
        zl_poller_t *p = zl_poller_pool_at(pool, i);

        CU_ASSERT_EQUAL_FATAL(zl_poller_sync(p, prefer_task, &c), 0);
        CU_ASSERT_PTR_EQUAL(c.cur, p);
        CU_ASSERT_PTR_EQUAL(c.got_true, p);
        CU_ASSERT_TRUE(c.load_self > 0);
        CU_ASSERT_PTR_NOT_EQUAL(c.got_false, p);
        CU_ASSERT_TRUE(zl_poller_pool_contains(pool, c.got_false));
    }

    /* A poller of another pool is not "current" for this one. */
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&foreign, NULL), 0);
    prefer_ctx_t c = {.pool = pool};
    CU_ASSERT_EQUAL(zl_poller_sync(foreign, foreign_task, &c), 0);
    CU_ASSERT_PTR_EQUAL(c.cur, foreign);
    CU_ASSERT_TRUE(zl_poller_pool_contains(pool, c.got_true));
    zl_poller_free(foreign);
    zl_poller_pool_free(pool);
}

static void test_least_loaded(void)
{
    zl_pool_options_t o = {.size = 3};
    zl_poller_pool_t *pool = NULL;
    spin_t s0 = {0}, s1 = {0};
    zl_poller_t *p0, *p1, *p2;
    int hits_busy = 0, hits_p2 = 0;

    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&pool, &o), 0);
    p0 = zl_poller_pool_at(pool, 0);
    p1 = zl_poller_pool_at(pool, 1);
    p2 = zl_poller_pool_at(pool, 2);
    CU_ASSERT_TRUE(wait_all_idle(pool));

    /* Poller 0 busy: never chosen. */
    CU_ASSERT_EQUAL_FATAL(zl_poller_async(p0, spin_task, &s0), 0);
    CU_ASSERT_TRUE(zl_test_wait_flag(&s0.started, 2000));
    CU_ASSERT_TRUE(wait_load_at_least(p0, 50) >= 50);
    for (int k = 0; k < 30; k++)
        hits_busy += zl_poller_pool_get(pool, false) == p0;
    CU_ASSERT_EQUAL(hits_busy, 0);

    /* Pollers 0 and 1 busy: always poller 2. */
    CU_ASSERT_EQUAL_FATAL(zl_poller_async(p1, spin_task, &s1), 0);
    CU_ASSERT_TRUE(zl_test_wait_flag(&s1.started, 2000));
    CU_ASSERT_TRUE(wait_load_at_least(p1, 50) >= 50);
    for (int k = 0; k < 30; k++)
        hits_p2 += zl_poller_pool_get(pool, false) == p2;
    CU_ASSERT_EQUAL(hits_p2, 30);
    /* The spinners were still running while we sampled. */
    CU_ASSERT_EQUAL(atomic_load(&s0.stopped), 0);
    CU_ASSERT_EQUAL(atomic_load(&s1.stopped), 0);

    atomic_store(&s0.stop, 1);
    atomic_store(&s1.stop, 1);
    CU_ASSERT_TRUE(zl_test_wait_flag(&s0.stopped, 2000));
    CU_ASSERT_TRUE(zl_test_wait_flag(&s1.stopped, 2000));
    zl_poller_pool_free(pool);
}

/* Idle pollers tie at load 0: successive picks take turns. */
static void test_round_robin(void)
{
    zl_pool_options_t o = {.size = 3};
    zl_poller_pool_t *pool = NULL;
    int hits[3] = {0};

    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&pool, &o), 0);
    CU_ASSERT_TRUE_FATAL(wait_all_idle(pool));
    for (int k = 0; k < 30; k++) {
        zl_poller_t *p = zl_poller_pool_get(pool, false);
        for (size_t i = 0; i < 3; i++)
            hits[i] += zl_poller_pool_at(pool, i) == p;
    }
    CU_ASSERT_EQUAL(hits[0], 10);
    CU_ASSERT_EQUAL(hits[1], 10);
    CU_ASSERT_EQUAL(hits[2], 10);
    zl_poller_pool_free(pool);
}

static void test_contains(void)
{
    zl_pool_options_t o = {.size = 2};
    zl_poller_pool_t *a = NULL, *b = NULL;
    zl_poller_t *lone = NULL;

    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&a, &o), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&b, &o), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&lone, NULL), 0);
    for (size_t i = 0; i < 2; i++) {
        CU_ASSERT_TRUE(zl_poller_pool_contains(a, zl_poller_pool_at(a, i)));
        CU_ASSERT_FALSE(zl_poller_pool_contains(a, zl_poller_pool_at(b, i)));
        CU_ASSERT_FALSE(zl_poller_pool_contains(b, zl_poller_pool_at(a, i)));
    }
    CU_ASSERT_FALSE(zl_poller_pool_contains(a, lone));
    CU_ASSERT_FALSE(zl_poller_pool_contains(a, NULL));
    zl_poller_free(lone);
    zl_poller_pool_free(b);
    zl_poller_pool_free(a);
}

/* ------------------------------------------------------------ scheduling */

static void test_affinity_list(void)
{
    cpu_set_t allowed;
    int cpus[CPU_SETSIZE], n = 0;
    zl_poller_pool_t *pool = NULL;

    CU_ASSERT_EQUAL_FATAL(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    /* The CPUs we may use, in reverse, so poller 0 is not on CPU 0. */
    for (int c = CPU_SETSIZE - 1; c >= 0 && n < 4; c--)
        if (CPU_ISSET(c, &allowed))
            cpus[n++] = c;
    CU_ASSERT_TRUE_FATAL(n > 0);

    zl_pool_options_t o = {
        .size = (unsigned)n + 1, .affinity = true, .cpus = cpus,
        .n_cpus = (size_t)n};
    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&pool, &o), 0);
    for (size_t i = 0; i < o.size; i++) {
        int want = cpus[i % (size_t)n];
        thread_info_t ti;

        CU_ASSERT_EQUAL_FATAL(info_of(zl_poller_pool_at(pool, i), &ti), 0);
        CU_ASSERT_EQUAL(ti.mask_rc, 0);
        CU_ASSERT_EQUAL(CPU_COUNT(&ti.mask), 1);
        CU_ASSERT_TRUE(CPU_ISSET(want, &ti.mask));
        CU_ASSERT_EQUAL(ti.cpu, want);
    }
    zl_poller_pool_free(pool);
}

static void test_affinity_default(void)
{
    cpu_set_t allowed;
    zl_poller_pool_t *pool = NULL;
    unsigned ncpu = online_cpus();
    zl_pool_options_t on = {.size = ncpu + 1, .affinity = true};
    zl_pool_options_t off = {.size = 2};

    CU_ASSERT_EQUAL_FATAL(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&pool, &on), 0);
    for (size_t i = 0; i < on.size; i++) {
        int want = (int)(i % ncpu);
        thread_info_t ti;

        if (!CPU_ISSET(want, &allowed))
            continue; /* pinning there fails under taskset: logged only */
        CU_ASSERT_EQUAL_FATAL(info_of(zl_poller_pool_at(pool, i), &ti), 0);
        CU_ASSERT_EQUAL(CPU_COUNT(&ti.mask), 1);
        CU_ASSERT_TRUE(CPU_ISSET(want, &ti.mask));
        CU_ASSERT_EQUAL(ti.cpu, want);
    }
    zl_poller_pool_free(pool);

    /* Off by default: the threads keep the process's mask. */
    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&pool, &off), 0);
    for (size_t i = 0; i < off.size; i++) {
        thread_info_t ti;

        CU_ASSERT_EQUAL_FATAL(info_of(zl_poller_pool_at(pool, i), &ti), 0);
        CU_ASSERT_EQUAL(ti.mask_rc, 0);
        CU_ASSERT_TRUE(CPU_EQUAL(&ti.mask, &allowed));
    }
    zl_poller_pool_free(pool);
}

static void test_no_realtime(void)
{
    zl_pool_options_t o = {.size = 2};
    zl_poller_pool_t *pool = NULL;

    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&pool, &o), 0);
    for (size_t i = 0; i < 2; i++) {
        thread_info_t ti;

        CU_ASSERT_EQUAL_FATAL(info_of(zl_poller_pool_at(pool, i), &ti), 0);
        CU_ASSERT_EQUAL(ti.policy, SCHED_OTHER);
        CU_ASSERT_EQUAL(ti.prio, 0);
    }
    zl_poller_pool_free(pool);
}

/* ------------------------------------------------------------ teardown */

typedef struct drain_ctx {
    zl_poller_pool_t *pool;
    atomic_long posted, ran, refused;
} drain_ctx_t;

static void drain_count(void *arg)
{
    drain_ctx_t *c = arg;

    atomic_fetch_add(&c->ran, 1);
}

/* Runs on poller i and posts to its sibling, which may be stopped by now:
 * that must fail cleanly, not touch freed memory. */
static void drain_cross(void *arg)
{
    drain_ctx_t *c = arg;
    zl_poller_t *self = zl_poller_current(), *other;

    atomic_fetch_add(&c->ran, 1);
    other = zl_poller_pool_at(c->pool, 0) == self ? zl_poller_pool_at(c->pool, 1)
                                                  : zl_poller_pool_at(c->pool, 0);
    if (zl_poller_async(other, drain_count, c) == 0)
        atomic_fetch_add(&c->posted, 1);
    else
        atomic_fetch_add(&c->refused, 1);
}

/* Keeps the queue behind it waiting; the last poller waits longest, so
 * its cross posts come after the first poller is stopped and joined. */
static void drain_slow(void *arg)
{
    drain_ctx_t *c = arg;
    bool last = zl_poller_current() ==
                zl_poller_pool_at(c->pool, zl_poller_pool_size(c->pool) - 1);

    drain_count(arg);
    zl_test_sleep_ms(last ? 150 : 30);
}

static void test_free_drains(void)
{
    zl_pool_options_t o = {.size = 2};
    drain_ctx_t c = {0};

    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&c.pool, &o), 0);
    for (size_t i = 0; i < 2; i++) {
        zl_poller_t *p = zl_poller_pool_at(c.pool, i);

        CU_ASSERT_EQUAL(zl_poller_async(p, drain_slow, &c), 0);
        atomic_fetch_add(&c.posted, 1);
        for (int k = 0; k < 100; k++) {
            CU_ASSERT_EQUAL(zl_poller_async(p, k % 2 ? drain_count : drain_cross,
                                            &c), 0);
            atomic_fetch_add(&c.posted, 1);
        }
    }
    zl_poller_pool_free(c.pool);
    /* Every accepted task ran exactly once, including cross posts; the
     * late ones were refused. */
    CU_ASSERT_EQUAL(atomic_load(&c.ran), atomic_load(&c.posted));
    CU_ASSERT_TRUE(atomic_load(&c.posted) >= 202);
    CU_ASSERT_TRUE(atomic_load(&c.refused) > 0);
}

int zl_test_register_pool(void)
{
    static const zl_test_case_t cases[] = {
        {"default size is one per CPU", test_default_size},
        {"explicit sizes", test_explicit_sizes},
        {"bad arguments", test_bad_args},
        {"failure half-way leaves nothing", test_fail_midway},
        {"thread names", test_thread_names},
        {"backend passed through", test_backend},
        {"prefer current poller", test_prefer_current},
        {"least loaded is chosen", test_least_loaded},
        {"ties go round-robin", test_round_robin},
        {"contains", test_contains},
        {"affinity with a CPU list", test_affinity_list},
        {"affinity default and off", test_affinity_default},
        {"no real-time priority", test_no_realtime},
        {"free drains tasks, cross posts safe", test_free_drains},
        {NULL, NULL},
    };
    return zl_test_add_suite("pool", NULL, NULL, cases);
}
