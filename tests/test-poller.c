/* zltk tests — the poller: creation, identity, backends and fd events
 * (zltk/poller.h, "Creation", "Identity", "File descriptors", "Load").
 * Runs on whichever backend $ZLTK_POLLER_BACKEND selects. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_getname_np, CPU_* */
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"

#define WAIT_MS 10000u

/* Let the loop run a while (so that callbacks that must NOT come would
 * come), then make sure it finished what it was doing. */
static void settle(zl_poller_t *p)
{
    zl_test_sleep_ms(30);
    CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
}

static void make_pair(int sv[2])
{
    int rc = socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        0, sv);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
}

static void make_pipe(int fds[2])
{
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
}

static void put(int fd, const char *s)
{
    ssize_t n = write(fd, s, strlen(s));
    CU_ASSERT_EQUAL(n, (ssize_t)strlen(s));
}

/* Count of watched fds, read on the poller thread where it is exact. */
typedef struct {
    zl_poller_t *p;
    size_t n;
} count_ctx_t;

static void fd_count_task(void *arg)
{
    count_ctx_t *c = arg;
    c->n = zl_poller_fd_count(c->p);
}

static size_t fd_count_on(zl_poller_t *p)
{
    count_ctx_t c = {p, (size_t)-1};
    CU_ASSERT_EQUAL(zl_poller_sync(p, fd_count_task, &c), 0);
    return c.n;
}

/* ------------------------------------------------------------ io probe
 * One registration under observation.  Configuration is set before it is
 * registered; observations are atomics. */
typedef struct io_rec {
    zl_poller_t *p;
    int fd;
    bool drain;            /* read until EAGAIN on every call */
    bool del_self;         /* remove itself from inside the callback */
    bool del_on_eof;       /* ... once read() returned 0 */
    unsigned mod_on_write; /* on ZL_EV_WRITE: mod_fd to this (if non-zero) */
    atomic_long calls;
    atomic_long write_calls;
    atomic_uint ev_or;
    atomic_int wrong_thread, wrong_args;
    atomic_long bytes;
    atomic_int eof;
    atomic_int del_rc, mod_rc;
    atomic_int done_calls, done_inline, done_wrong_thread;
    atomic_int in_del; /* (P) inside zl_poller_del_fd() */
} io_rec_t;

static void io_init(io_rec_t *r, zl_poller_t *p, int fd)
{
    memset(r, 0, sizeof(*r));
    r->p = p;
    r->fd = fd;
    atomic_store(&r->del_rc, 1);
    atomic_store(&r->mod_rc, 1);
}

static void io_done(void *arg)
{
    io_rec_t *r = arg;
    if (!zl_poller_is_current(r->p))
        atomic_fetch_add(&r->done_wrong_thread, 1);
    if (atomic_load(&r->in_del))
        atomic_fetch_add(&r->done_inline, 1);
    atomic_fetch_add(&r->done_calls, 1);
}

static void io_drain(io_rec_t *r, int fd)
{
    char buf[4096];
    ssize_t n;

    while ((n = read(fd, buf, sizeof(buf))) > 0)
        atomic_fetch_add(&r->bytes, n);
    if (n == 0)
        atomic_store(&r->eof, 1);
}

static void io_cb(zl_poller_t *p, int fd, unsigned events, void *udata)
{
    io_rec_t *r = udata;

    if (!zl_poller_is_current(r->p))
        atomic_fetch_add(&r->wrong_thread, 1);
    if (p != r->p || fd != r->fd)
        atomic_fetch_add(&r->wrong_args, 1);
    atomic_fetch_or(&r->ev_or, events);
    if (events & ZL_EV_WRITE)
        atomic_fetch_add(&r->write_calls, 1);
    if (r->drain)
        io_drain(r, fd);
    if ((events & ZL_EV_WRITE) && r->mod_on_write)
        atomic_store(&r->mod_rc, zl_poller_mod_fd(p, fd, r->mod_on_write));
    if (r->del_self || (r->del_on_eof && atomic_load(&r->eof))) {
        atomic_store(&r->in_del, 1);
        atomic_store(&r->del_rc, zl_poller_del_fd(p, fd, io_done, r));
        atomic_store(&r->in_del, 0);
    }
    atomic_fetch_add(&r->calls, 1);
}

/* Remove fd on the poller thread (result checked). */
typedef struct {
    zl_poller_t *p;
    int fd;
    int rc;
} del_ctx_t;

static void del_task(void *arg)
{
    del_ctx_t *d = arg;
    d->rc = zl_poller_del_fd(d->p, d->fd, NULL, NULL);
}

static int del_on(zl_poller_t *p, int fd)
{
    del_ctx_t d = {p, fd, 1};
    CU_ASSERT_EQUAL(zl_poller_sync(p, del_task, &d), 0);
    return d.rc;
}

/* ------------------------------------------------------------ backends */
static bool in_list(const char *const *l, const char *name)
{
    for (; *l; l++)
        if (!strcmp(*l, name))
            return true;
    return false;
}

static void test_backends_list(void)
{
    const char *const *b = zl_poller_backends();
    int n = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    for (; b[n] && n < 16; n++)
        for (int j = 0; j < n; j++)
            CU_ASSERT_STRING_NOT_EQUAL(b[n], b[j]);
    CU_ASSERT(n >= 1 && n < 16); /* NULL-terminated */
    CU_ASSERT_TRUE(in_list(b, "poll"));
#ifdef __linux__
    CU_ASSERT_TRUE(in_list(b, "epoll"));
#endif
}

static void test_backend_matches_env(void)
{
    const char *env = getenv("ZLTK_POLLER_BACKEND");
    zl_poller_t *p = zl_test_new_poller();
    const char *name = zl_poller_backend(p);

    CU_ASSERT_PTR_NOT_NULL_FATAL(name);
    if (env && *env) {
        CU_ASSERT_STRING_EQUAL(name, env);
    } else {
#ifdef __linux__
        CU_ASSERT_STRING_EQUAL(name, "epoll");
#endif
    }
    CU_ASSERT_TRUE(in_list(zl_poller_backends(), name));
    if (!strcmp(name, "poll"))
        CU_ASSERT_FALSE(zl_poller_has_edge(p));
    if (!strcmp(name, "epoll") || !strcmp(name, "kqueue"))
        CU_ASSERT_TRUE(zl_poller_has_edge(p));
    zl_poller_free(p);
}

static void test_backend_option(void)
{
    const char *const *b = zl_poller_backends();
    zl_poller_options_t o = {0};
    zl_poller_t *p = NULL;

    for (; *b; b++) {
        o.backend = *b;
        p = NULL;
        CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, &o), 0);
        CU_ASSERT_STRING_EQUAL(zl_poller_backend(p), *b);
        CU_ASSERT_EQUAL(zl_poller_has_edge(p), strcmp(*b, "poll") != 0);
        CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
        zl_poller_free(p);
    }
    o.backend = "no-such-backend";
    CU_ASSERT_EQUAL(zl_poller_new(&p, &o), -EINVAL);
    o.backend = "EPOLL-x";
    CU_ASSERT_EQUAL(zl_poller_new(&p, &o), -EINVAL);
}

/* ------------------------------------------------------------ identity */
typedef struct {
    zl_poller_t *p, *other;
    zl_poller_t *current;
    bool is_p, is_other;
    char os_name[32];
    char log_name[32];
    cpu_set_t cpus;
    int aff_rc;
} ident_ctx_t;

static void ident_task(void *arg)
{
    ident_ctx_t *c = arg;
    const char *n;

    c->current = zl_poller_current();
    c->is_p = zl_poller_is_current(c->p);
    c->is_other = c->other ? zl_poller_is_current(c->other) : false;
#ifdef __linux__
    pthread_getname_np(pthread_self(), c->os_name, sizeof(c->os_name));
    c->aff_rc = pthread_getaffinity_np(pthread_self(), sizeof(c->cpus),
                                       &c->cpus);
#endif
    n = zl_thread_name();
    snprintf(c->log_name, sizeof(c->log_name), "%s", n ? n : "(null)");
}

static void test_identity(void)
{
    zl_poller_t *p = zl_test_new_poller(), *p2 = zl_test_new_poller();
    ident_ctx_t c;

    CU_ASSERT_PTR_NULL(zl_poller_current());
    CU_ASSERT_FALSE(zl_poller_is_current(p));
    CU_ASSERT_FALSE(zl_poller_is_current(p2));

    memset(&c, 0, sizeof(c));
    c.p = p;
    c.other = p2;
    CU_ASSERT_EQUAL(zl_poller_sync(p, ident_task, &c), 0);
    CU_ASSERT_PTR_EQUAL(c.current, p);
    CU_ASSERT_TRUE(c.is_p);
    CU_ASSERT_FALSE(c.is_other);

    memset(&c, 0, sizeof(c));
    c.p = p2;
    c.other = p;
    CU_ASSERT_EQUAL(zl_poller_sync(p2, ident_task, &c), 0);
    CU_ASSERT_PTR_EQUAL(c.current, p2);
    CU_ASSERT_TRUE(c.is_p);
    CU_ASSERT_FALSE(c.is_other);

    CU_ASSERT_PTR_NULL(zl_poller_current());
    zl_poller_free(p2);
    zl_poller_free(p);
    CU_ASSERT_PTR_NULL(zl_poller_current());
}

static void test_name_option(void)
{
    zl_poller_options_t o = {0};
    zl_poller_t *p = NULL;
    ident_ctx_t c;

    p = zl_test_new_poller();
    CU_ASSERT_STRING_EQUAL(zl_poller_name(p), "zl-poller");
    zl_poller_free(p);

    o.name = "abcdefghijklmnopqrstuvwxyz";
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, &o), 0);
    CU_ASSERT_STRING_EQUAL(zl_poller_name(p), "abcdefghijklmno");
    memset(&c, 0, sizeof(c));
    c.p = p;
    CU_ASSERT_EQUAL(zl_poller_sync(p, ident_task, &c), 0);
    /* The thread carries the name: for the OS and in log lines. */
    CU_ASSERT_STRING_EQUAL(c.log_name, "abcdefghijklmno");
#ifdef __linux__
    CU_ASSERT_STRING_EQUAL(c.os_name, "abcdefghijklmno");
#endif
    zl_poller_free(p);
}

#ifdef __linux__
static void test_pin_cpu(void)
{
    zl_poller_options_t o = {0};
    zl_poller_t *p = NULL;
    ident_ctx_t c;
    cpu_set_t mine;

    CU_ASSERT_EQUAL_FATAL(
        pthread_getaffinity_np(pthread_self(), sizeof(mine), &mine), 0);

    /* Zero-initialised options: cpu 0 but pin_cpu false, so not pinned:
     * the thread inherits this thread's affinity. */
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, &o), 0);
    memset(&c, 0, sizeof(c));
    c.p = p;
    CU_ASSERT_EQUAL(zl_poller_sync(p, ident_task, &c), 0);
    CU_ASSERT_EQUAL(c.aff_rc, 0);
    CU_ASSERT_TRUE(CPU_EQUAL(&c.cpus, &mine));
    zl_poller_free(p);

    /* Pinned to the first CPU this process may use. */
    int first = -1;
    for (int i = 0; i < CPU_SETSIZE && first < 0; i++)
        if (CPU_ISSET(i, &mine))
            first = i;
    CU_ASSERT_FATAL(first >= 0);
    o.cpu = first;
    o.pin_cpu = true;
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, &o), 0);
    memset(&c, 0, sizeof(c));
    c.p = p;
    CU_ASSERT_EQUAL(zl_poller_sync(p, ident_task, &c), 0);
    CU_ASSERT_EQUAL(c.aff_rc, 0);
    CU_ASSERT_EQUAL(CPU_COUNT(&c.cpus), 1);
    CU_ASSERT_TRUE(CPU_ISSET(first, &c.cpus));
    zl_poller_free(p);

    /* Negative cpu with pin_cpu: no affinity. */
    o.cpu = -1;
    CU_ASSERT_EQUAL_FATAL(zl_poller_new(&p, &o), 0);
    memset(&c, 0, sizeof(c));
    c.p = p;
    CU_ASSERT_EQUAL(zl_poller_sync(p, ident_task, &c), 0);
    CU_ASSERT_TRUE(CPU_EQUAL(&c.cpus, &mine));
    zl_poller_free(p);
}
#endif

/* ------------------------------------------------------------ events */
static void test_read_event(void)
{
    zl_poller_t *p = zl_test_new_poller();
    io_rec_t r;
    int sv[2];
    zl_poller_stats_t st;

    make_pair(sv);
    io_init(&r, p, sv[0]);
    r.drain = true;
    CU_ASSERT_EQUAL(zl_poller_add_fd(p, sv[0], ZL_EV_READ, io_cb, &r), 0);
    CU_ASSERT_EQUAL(fd_count_on(p), 1);
    settle(p);
    CU_ASSERT_EQUAL(atomic_load(&r.calls), 0); /* nothing to read yet */
    put(sv[1], "hello");
    CU_ASSERT_EQUAL(zl_test_wait_count(&r.bytes, 5, WAIT_MS), 5);
    put(sv[1], "again");
    CU_ASSERT_EQUAL(zl_test_wait_count(&r.bytes, 10, WAIT_MS), 10);
    settle(p);
    CU_ASSERT(atomic_load(&r.calls) >= 2);
    CU_ASSERT(atomic_load(&r.ev_or) & ZL_EV_READ);
    CU_ASSERT_FALSE(atomic_load(&r.ev_or) & ZL_EV_WRITE);
    CU_ASSERT_EQUAL(atomic_load(&r.wrong_thread), 0);
    CU_ASSERT_EQUAL(atomic_load(&r.wrong_args), 0);
    CU_ASSERT_EQUAL(atomic_load(&r.eof), 0);
    zl_poller_get_stats(p, &st);
    CU_ASSERT(st.io_events >= 2);
    CU_ASSERT_EQUAL(del_on(p, sv[0]), 0);
    CU_ASSERT_EQUAL(fd_count_on(p), 0);
    zl_poller_free(p);
    close(sv[0]);
    close(sv[1]);
}

static void test_write_event(void)
{
    zl_poller_t *p = zl_test_new_poller();
    io_rec_t r;
    int sv[2];

    make_pair(sv);
    io_init(&r, p, sv[0]);
    r.del_self = true;
    CU_ASSERT_EQUAL(zl_poller_add_fd(p, sv[0], ZL_EV_WRITE, io_cb, &r), 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&r.calls, 1, WAIT_MS), 1);
    settle(p);
    CU_ASSERT_EQUAL(atomic_load(&r.calls), 1);
    CU_ASSERT(atomic_load(&r.ev_or) & ZL_EV_WRITE);
    CU_ASSERT_FALSE(atomic_load(&r.ev_or) & ZL_EV_READ);
    CU_ASSERT_EQUAL(atomic_load(&r.del_rc), 0);
    CU_ASSERT_EQUAL(atomic_load(&r.wrong_thread), 0);
    CU_ASSERT_EQUAL(atomic_load(&r.wrong_args), 0);
    zl_poller_free(p);
    close(sv[0]);
    close(sv[1]);
}

/* The write end of a pipe whose read end is closed is in error. */
static void check_error_event(unsigned events)
{
    zl_poller_t *p = zl_test_new_poller();
    io_rec_t r;
    int fds[2];

    make_pipe(fds);
    close(fds[0]);
    io_init(&r, p, fds[1]);
    r.del_self = true;
    CU_ASSERT_EQUAL(zl_poller_add_fd(p, fds[1], events, io_cb, &r), 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&r.calls, 1, WAIT_MS), 1);
    settle(p);
    CU_ASSERT_EQUAL(atomic_load(&r.calls), 1);
    CU_ASSERT(atomic_load(&r.ev_or) & ZL_EV_ERROR);
    CU_ASSERT_EQUAL(atomic_load(&r.del_rc), 0);
    CU_ASSERT_EQUAL(atomic_load(&r.wrong_args), 0);
    zl_poller_free(p);
    close(fds[1]);
}

static void test_error_event(void)
{
    check_error_event(ZL_EV_WRITE);
    /* "always reported": even when only reading was asked for. */
    check_error_event(ZL_EV_READ | ZL_EV_LT);
}

/* Peer closes: the reader sees end of stream (READ and/or HUP, and read()
 * returns 0). */
static void test_hup_socketpair(void)
{
    zl_poller_t *p = zl_test_new_poller();
    io_rec_t r;
    int sv[2];

    make_pair(sv);
    io_init(&r, p, sv[0]);
    r.drain = true;
    r.del_on_eof = true;
    CU_ASSERT_EQUAL(zl_poller_add_fd(p, sv[0], ZL_EV_READ, io_cb, &r), 0);
    CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
    put(sv[1], "bye");
    close(sv[1]);
    CU_ASSERT_EQUAL(zl_test_wait_flag(&r.done_calls, WAIT_MS), 1);
    settle(p);
    CU_ASSERT(atomic_load(&r.calls) >= 1);
#ifdef __linux__
    CU_ASSERT(atomic_load(&r.ev_or) & ZL_EV_HUP);
#endif
    CU_ASSERT(atomic_load(&r.ev_or) & (ZL_EV_READ | ZL_EV_HUP));
    CU_ASSERT_EQUAL(atomic_load(&r.bytes), 3);
    CU_ASSERT_EQUAL(atomic_load(&r.eof), 1);
    CU_ASSERT_EQUAL(atomic_load(&r.del_rc), 0);
    CU_ASSERT_EQUAL(atomic_load(&r.done_calls), 1);
    zl_poller_free(p);
    close(sv[0]);
}

static void check_hup_pipe(unsigned events)
{
    zl_poller_t *p = zl_test_new_poller();
    io_rec_t r;
    int fds[2];

    make_pipe(fds);
    io_init(&r, p, fds[0]);
    r.del_self = true;
    CU_ASSERT_EQUAL(zl_poller_add_fd(p, fds[0], events, io_cb, &r), 0);
    CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
    close(fds[1]);
    CU_ASSERT_EQUAL(zl_test_wait_count(&r.calls, 1, WAIT_MS), 1);
    settle(p);
    CU_ASSERT_EQUAL(atomic_load(&r.calls), 1);
#ifdef __linux__
    CU_ASSERT(atomic_load(&r.ev_or) & ZL_EV_HUP);
#else
    CU_ASSERT(atomic_load(&r.ev_or) & (ZL_EV_READ | ZL_EV_HUP));
#endif
    CU_ASSERT_FALSE(atomic_load(&r.ev_or) & ZL_EV_WRITE);
    zl_poller_free(p);
    close(fds[0]);
}

static void test_hup_pipe(void)
{
    check_hup_pipe(ZL_EV_READ);
    /* "always reported": asked only for writability of a read end. */
    check_hup_pipe(ZL_EV_WRITE);
}

/* ------------------------------------------------------------ edge/level */
static void test_level_refires(void)
{
    zl_poller_t *p = zl_test_new_poller();
    io_rec_t r;
    int sv[2];
    long c1;

    make_pair(sv);
    io_init(&r, p, sv[0]);
    CU_ASSERT_EQUAL(
        zl_poller_add_fd(p, sv[0], ZL_EV_READ | ZL_EV_LT, io_cb, &r), 0);
    put(sv[1], "x");
    /* Never read: level triggering keeps reporting it. */
    CU_ASSERT(zl_test_wait_count(&r.calls, 5, WAIT_MS) >= 5);
    CU_ASSERT_EQUAL(del_on(p, sv[0]), 0);
    c1 = atomic_load(&r.calls);
    settle(p);
    CU_ASSERT_EQUAL(atomic_load(&r.calls), c1);
    zl_poller_free(p);
    close(sv[0]);
    close(sv[1]);
}

static void test_edge_once_per_data(void)
{
    zl_poller_t *p = zl_test_new_poller();
    io_rec_t r;
    int sv[2];

    make_pair(sv);
    io_init(&r, p, sv[0]);
    CU_ASSERT_EQUAL(zl_poller_add_fd(p, sv[0], ZL_EV_READ, io_cb, &r), 0);
    put(sv[1], "x");
    if (zl_poller_has_edge(p)) {
        /* Unread data is reported once; new data once more. */
        CU_ASSERT_EQUAL(zl_test_wait_count(&r.calls, 1, WAIT_MS), 1);
        settle(p);
        CU_ASSERT_EQUAL(atomic_load(&r.calls), 1);
        put(sv[1], "y");
        CU_ASSERT_EQUAL(zl_test_wait_count(&r.calls, 2, WAIT_MS), 2);
        settle(p);
        CU_ASSERT_EQUAL(atomic_load(&r.calls), 2);
    } else {
        /* The portable backend is always level-triggered. */
        CU_ASSERT(zl_test_wait_count(&r.calls, 5, WAIT_MS) >= 5);
    }
    CU_ASSERT_EQUAL(del_on(p, sv[0]), 0);
    zl_poller_free(p);
    close(sv[0]);
    close(sv[1]);
}

/* ------------------------------------------------------------ mod */
typedef struct {
    zl_poller_t *p;
    int fd, bad_fd;
    unsigned events;
    int rc, rc_unknown;
} mod_ctx_t;

static void mod_task(void *arg)
{
    mod_ctx_t *m = arg;
    m->rc = zl_poller_mod_fd(m->p, m->fd, m->events);
    m->rc_unknown = zl_poller_mod_fd(m->p, m->bad_fd, m->events);
}

static void test_mod_fd(void)
{
    zl_poller_t *p = zl_test_new_poller();
    io_rec_t r;
    int sv[2], other[2];
    mod_ctx_t m;

    make_pair(sv);
    make_pair(other);
    io_init(&r, p, sv[0]);
    r.drain = true;
    r.mod_on_write = ZL_EV_READ | ZL_EV_LT; /* writability: once, then off */
    CU_ASSERT_EQUAL(
        zl_poller_add_fd(p, sv[0], ZL_EV_READ | ZL_EV_LT, io_cb, &r), 0);
    settle(p);
    /* Writable all along, but that was not asked for. */
    CU_ASSERT_EQUAL(atomic_load(&r.calls), 0);

    /* From another thread (posted): now writability. */
    CU_ASSERT_EQUAL(zl_poller_mod_fd(p, sv[0], ZL_EV_WRITE | ZL_EV_LT), 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&r.write_calls, 1, WAIT_MS), 1);
    settle(p);
    /* Level-triggered WRITE would fire forever had the callback's own
     * mod_fd back to READ not worked. */
    CU_ASSERT_EQUAL(atomic_load(&r.write_calls), 1);
    CU_ASSERT_EQUAL(atomic_load(&r.mod_rc), 0);

    /* Reading again. */
    put(sv[1], "abc");
    CU_ASSERT_EQUAL(zl_test_wait_count(&r.bytes, 3, WAIT_MS), 3);

    /* On the poller thread: immediate, with results. */
    m = (mod_ctx_t){p, sv[0], other[0], ZL_EV_WRITE | ZL_EV_LT, 1, 1};
    CU_ASSERT_EQUAL(zl_poller_sync(p, mod_task, &m), 0);
    CU_ASSERT_EQUAL(m.rc, 0);
    CU_ASSERT_EQUAL(m.rc_unknown, -ENOENT);
    CU_ASSERT_EQUAL(zl_test_wait_count(&r.write_calls, 2, WAIT_MS), 2);
    settle(p);
    CU_ASSERT_EQUAL(atomic_load(&r.write_calls), 2);

    CU_ASSERT_EQUAL(atomic_load(&r.wrong_args), 0);

    CU_ASSERT_EQUAL(del_on(p, sv[0]), 0);
    zl_poller_free(p);
    close(sv[0]);
    close(sv[1]);
    close(other[0]);
    close(other[1]);
}

/* ------------------------------------------------------------ add/del */
typedef struct {
    zl_poller_t *p;
    int fd, unknown_fd;
    io_rec_t *r1, *r2, *ru;
    int rc_add, rc_add_again, rc_mod_unknown, rc_del_unknown, rc_add_bad;
    size_t count;
} twice_ctx_t;

static void twice_task(void *arg)
{
    twice_ctx_t *t = arg;

    t->rc_add = zl_poller_add_fd(t->p, t->fd, ZL_EV_READ | ZL_EV_LT, io_cb,
                                 t->r1);
    t->rc_add_again = zl_poller_add_fd(t->p, t->fd, ZL_EV_READ | ZL_EV_LT,
                                       io_cb, t->r2);
    t->rc_mod_unknown = zl_poller_mod_fd(t->p, t->unknown_fd, ZL_EV_READ);
    t->rc_del_unknown = zl_poller_del_fd(t->p, t->unknown_fd, io_done, t->ru);
    t->rc_add_bad = zl_poller_add_fd(t->p, -1, ZL_EV_READ, io_cb, t->ru);
    t->count = zl_poller_fd_count(t->p);
}

typedef struct {
    zl_poller_t *p;
    int fd;
    io_rec_t *r;
    int rc1, rc2;
    int done_after_first;
} del_twice_ctx_t;

static void del_twice_task(void *arg)
{
    del_twice_ctx_t *d = arg;

    atomic_store(&d->r->in_del, 1);
    d->rc1 = zl_poller_del_fd(d->p, d->fd, io_done, d->r);
    atomic_store(&d->r->in_del, 0);
    d->done_after_first = atomic_load(&d->r->done_calls);
    d->rc2 = zl_poller_del_fd(d->p, d->fd, io_done, d->r);
}

static void test_add_twice_del_unknown(void)
{
    zl_poller_t *p = zl_test_new_poller();
    io_rec_t r1, r2, ru;
    int sv[2], un[2];
    twice_ctx_t t;
    del_twice_ctx_t d;

    make_pair(sv);
    make_pair(un);
    io_init(&r1, p, sv[0]);
    io_init(&r2, p, sv[0]);
    io_init(&ru, p, un[0]);
    r1.drain = r2.drain = true;
    t = (twice_ctx_t){.p = p, .fd = sv[0], .unknown_fd = un[0],
                      .r1 = &r1, .r2 = &r2, .ru = &ru};
    CU_ASSERT_EQUAL(zl_poller_sync(p, twice_task, &t), 0);
    CU_ASSERT_EQUAL(t.rc_add, 0);
    CU_ASSERT_EQUAL(t.rc_add_again, -EEXIST);
    CU_ASSERT_EQUAL(t.rc_mod_unknown, -ENOENT);
    CU_ASSERT_EQUAL(t.rc_del_unknown, -ENOENT);
    CU_ASSERT(t.rc_add_bad == -EBADF || t.rc_add_bad == -EINVAL);
    CU_ASSERT_EQUAL(t.count, 1);
    CU_ASSERT_EQUAL(atomic_load(&ru.done_calls), 0); /* del failed */

    /* The failed second add did not replace the first registration. */
    put(sv[1], "data");
    CU_ASSERT_EQUAL(zl_test_wait_count(&r1.bytes, 4, WAIT_MS), 4);
    settle(p);
    CU_ASSERT_EQUAL(atomic_load(&r2.calls), 0);
    CU_ASSERT_EQUAL(atomic_load(&ru.calls), 0);

    /* Removal on the poller thread: done runs inline, once; again: ENOENT
     * (and done does not run). */
    d = (del_twice_ctx_t){.p = p, .fd = sv[0], .r = &r1};
    CU_ASSERT_EQUAL(zl_poller_sync(p, del_twice_task, &d), 0);
    CU_ASSERT_EQUAL(d.rc1, 0);
    CU_ASSERT_EQUAL(d.rc2, -ENOENT);
    CU_ASSERT_EQUAL(d.done_after_first, 1);
    CU_ASSERT_EQUAL(atomic_load(&r1.done_inline), 1);
    CU_ASSERT_EQUAL(atomic_load(&r1.done_calls), 1);
    CU_ASSERT_EQUAL(fd_count_on(p), 0);

    /* Removed: new data is not reported to anyone. */
    long c = atomic_load(&r1.calls);
    put(sv[1], "more");
    settle(p);
    CU_ASSERT_EQUAL(atomic_load(&r1.calls), c);
    CU_ASSERT_EQUAL(atomic_load(&r2.calls), 0);
    zl_poller_free(p);
    close(sv[0]);
    close(sv[1]);
    close(un[0]);
    close(un[1]);
}

/* ------------------------------------------------------------ removal in
 * callbacks */
static void test_del_self_in_callback(void)
{
    zl_poller_t *p = zl_test_new_poller();
    io_rec_t r;
    int sv[2];

    make_pair(sv);
    io_init(&r, p, sv[0]);
    r.del_self = true; /* and never reads: LT would fire again */
    CU_ASSERT_EQUAL(
        zl_poller_add_fd(p, sv[0], ZL_EV_READ | ZL_EV_LT, io_cb, &r), 0);
    put(sv[1], "x");
    CU_ASSERT_EQUAL(zl_test_wait_count(&r.calls, 1, WAIT_MS), 1);
    settle(p);
    CU_ASSERT_EQUAL(atomic_load(&r.calls), 1);
    CU_ASSERT_EQUAL(atomic_load(&r.del_rc), 0);
    CU_ASSERT_EQUAL(atomic_load(&r.done_calls), 1);
    CU_ASSERT_EQUAL(atomic_load(&r.done_inline), 1);
    CU_ASSERT_EQUAL(atomic_load(&r.done_wrong_thread), 0);
    CU_ASSERT_EQUAL(fd_count_on(p), 0);
    /* Re-adding the same fd afterwards works. */
    io_init(&r, p, sv[0]);
    r.drain = true;
    CU_ASSERT_EQUAL(
        zl_poller_add_fd(p, sv[0], ZL_EV_READ | ZL_EV_LT, io_cb, &r), 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&r.bytes, 1, WAIT_MS), 1);
    CU_ASSERT_EQUAL(del_on(p, sv[0]), 0);
    zl_poller_free(p);
    close(sv[0]);
    close(sv[1]);
}

/* Two fds become readable in one task, so one wait reports both; whichever
 * callback runs first removes the other, whose callback must not run. */
typedef struct batch_ctx batch_ctx_t;
typedef struct {
    batch_ctx_t *c;
    int id;
    int fd, peer;
    atomic_long calls;
} batch_reg_t;

struct batch_ctx {
    zl_poller_t *p;
    batch_reg_t reg[2];
    int first; /* (P) -1 until a callback ran */
    atomic_int del_rc;
    /* fd reuse variant */
    bool reuse;
    int new_fd, new_peer; /* (P) until handed back by a sync */
    int dup_ok;
    atomic_int add_rc;
    atomic_long new_calls;
    atomic_long new_bytes;
    atomic_int wrong_thread;
    atomic_long total_calls;
    atomic_int kick_fail;
};

static void batch_new_cb(zl_poller_t *p, int fd, unsigned events, void *udata)
{
    batch_ctx_t *c = udata;
    char buf[64];
    ssize_t n;

    (void)p;
    (void)events;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        atomic_fetch_add(&c->new_bytes, n);
    atomic_fetch_add(&c->new_calls, 1);
}

static void batch_cb(zl_poller_t *p, int fd, unsigned events, void *udata)
{
    batch_reg_t *me = udata;
    batch_ctx_t *c = me->c;
    char buf[64];

    (void)events;
    if (!zl_poller_is_current(p))
        atomic_fetch_add(&c->wrong_thread, 1);
    atomic_fetch_add(&me->calls, 1);
    atomic_fetch_add(&c->total_calls, 1);
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    if (c->first >= 0)
        return;
    c->first = me->id;
    batch_reg_t *other = &c->reg[!me->id];
    atomic_store(&c->del_rc, zl_poller_del_fd(p, other->fd, NULL, NULL));
    if (!c->reuse)
        return;

    /* Close the removed fd and put a new, idle socket under the same
     * number, registered with another callback. */
    int sv[2];
    close(other->fd);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   sv) < 0)
        return;
    if (sv[0] != other->fd) {
        if (dup2(sv[0], other->fd) < 0)
            return;
        close(sv[0]);
    }
    c->new_fd = other->fd;
    c->new_peer = sv[1];
    c->dup_ok = 1;
    atomic_store(&c->add_rc, zl_poller_add_fd(p, c->new_fd,
                                              ZL_EV_READ | ZL_EV_LT,
                                              batch_new_cb, c));
}

static void batch_kick_task(void *arg)
{
    batch_ctx_t *c = arg;
    if (write(c->reg[0].peer, "a", 1) != 1 || write(c->reg[1].peer, "b", 1) != 1)
        atomic_store(&c->kick_fail, 1);
}

static void batch_add_task(void *arg)
{
    batch_ctx_t *c = arg;
    for (int i = 0; i < 2; i++)
        if (zl_poller_add_fd(c->p, c->reg[i].fd, ZL_EV_READ | ZL_EV_LT,
                             batch_cb, &c->reg[i]) != 0)
            atomic_store(&c->add_rc, -1000 - i);
}

static void run_batch(bool reuse)
{
    zl_poller_t *p = zl_test_new_poller();
    batch_ctx_t *c = calloc(1, sizeof(*c));
    int a[2], b[2];

    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    make_pair(a);
    make_pair(b);
    c->p = p;
    c->first = -1;
    c->reuse = reuse;
    c->new_fd = c->new_peer = -1;
    atomic_store(&c->del_rc, 1);
    c->reg[0] = (batch_reg_t){.c = c, .id = 0, .fd = a[0], .peer = a[1]};
    c->reg[1] = (batch_reg_t){.c = c, .id = 1, .fd = b[0], .peer = b[1]};
    CU_ASSERT_EQUAL(zl_poller_sync(p, batch_add_task, c), 0);
    CU_ASSERT_EQUAL_FATAL(atomic_load(&c->add_rc), 0);
    /* Both become readable inside one task: the next wait reports both. */
    CU_ASSERT_EQUAL(zl_poller_sync(p, batch_kick_task, c), 0);
    CU_ASSERT_EQUAL(atomic_load(&c->kick_fail), 0);
    CU_ASSERT(zl_test_wait_count(&c->total_calls, 1, WAIT_MS) >= 1);
    settle(p);

    int first = c->first; /* handed over by the sync in settle() */
    CU_ASSERT_FATAL(first == 0 || first == 1);
    batch_reg_t *me = &c->reg[first], *other = &c->reg[!first];
    CU_ASSERT_EQUAL(atomic_load(&me->calls), 1);
    CU_ASSERT_EQUAL(atomic_load(&other->calls), 0);
    CU_ASSERT_EQUAL(atomic_load(&c->del_rc), 0);
    CU_ASSERT_EQUAL(atomic_load(&c->wrong_thread), 0);
    if (reuse) {
        CU_ASSERT_EQUAL_FATAL(c->dup_ok, 1);
        CU_ASSERT_EQUAL(c->new_fd, other->fd);
        CU_ASSERT_EQUAL(atomic_load(&c->add_rc), 0);
        /* The stale event of the old socket must not reach the new
         * registration: the new socket never had anything to read. */
        CU_ASSERT_EQUAL(atomic_load(&c->new_calls), 0);
        /* The new registration works. */
        put(c->new_peer, "new");
        CU_ASSERT_EQUAL(zl_test_wait_count(&c->new_bytes, 3, WAIT_MS), 3);
        CU_ASSERT_EQUAL(atomic_load(&other->calls), 0);
        CU_ASSERT_EQUAL(del_on(p, c->new_fd), 0);
        close(c->new_fd);
        close(c->new_peer);
        close(other->peer);
    } else {
        CU_ASSERT_EQUAL(fd_count_on(p), 1);
        close(other->fd);
        close(other->peer);
    }
    CU_ASSERT_EQUAL(del_on(p, me->fd), 0);
    CU_ASSERT_EQUAL(fd_count_on(p), 0);
    zl_poller_free(p);
    close(me->fd);
    close(me->peer);
    free(c);
}

static void test_del_other_same_batch(void)
{
    run_batch(false);
}

static void test_fd_reuse_same_batch(void)
{
    /* A few rounds: either fd may come first. */
    for (int i = 0; i < 5; i++)
        run_batch(true);
}

/* ------------------------------------------------------------ posted ops */
static void test_cross_thread_add_mod_del(void)
{
    zl_poller_t *p = zl_test_new_poller();
    io_rec_t r;
    int sv[2];
    long c;

    make_pair(sv);
    io_init(&r, p, sv[0]);
    r.drain = true;
    r.mod_on_write = ZL_EV_READ;
    CU_ASSERT_EQUAL(zl_poller_add_fd(p, sv[0], ZL_EV_READ, io_cb, &r), 0);
    put(sv[1], "12345");
    CU_ASSERT_EQUAL(zl_test_wait_count(&r.bytes, 5, WAIT_MS), 5);
    CU_ASSERT_EQUAL(zl_poller_mod_fd(p, sv[0], ZL_EV_READ | ZL_EV_WRITE), 0);
    CU_ASSERT(zl_test_wait_count(&r.write_calls, 1, WAIT_MS) >= 1);
    CU_ASSERT_EQUAL(fd_count_on(p), 1);

    /* Removal from this thread: done runs on the poller thread, after
     * which the fd may be closed and is never reported again. */
    CU_ASSERT_EQUAL(zl_poller_del_fd(p, sv[0], io_done, &r), 0);
    CU_ASSERT_EQUAL(zl_test_wait_flag(&r.done_calls, WAIT_MS), 1);
    CU_ASSERT_EQUAL(atomic_load(&r.done_wrong_thread), 0);
    c = atomic_load(&r.calls);
    put(sv[1], "late");
    settle(p);
    CU_ASSERT_EQUAL(atomic_load(&r.calls), c);
    CU_ASSERT_EQUAL(atomic_load(&r.done_calls), 1);
    CU_ASSERT_EQUAL(fd_count_on(p), 0);
    CU_ASSERT_EQUAL(atomic_load(&r.wrong_thread), 0);
    CU_ASSERT_EQUAL(atomic_load(&r.wrong_args), 0);

    /* add → del → add again, all posted back to back. */
    io_init(&r, p, sv[0]);
    r.drain = true;
    CU_ASSERT_EQUAL(zl_poller_add_fd(p, sv[0], ZL_EV_READ, io_cb, &r), 0);
    CU_ASSERT_EQUAL(zl_poller_del_fd(p, sv[0], NULL, NULL), 0);
    CU_ASSERT_EQUAL(zl_poller_add_fd(p, sv[0], ZL_EV_READ, io_cb, &r), 0);
    CU_ASSERT_EQUAL(zl_test_wait_count(&r.bytes, 4, WAIT_MS), 4);
    CU_ASSERT_EQUAL(fd_count_on(p), 1);
    CU_ASSERT_EQUAL(del_on(p, sv[0]), 0);
    zl_poller_free(p);
    close(sv[0]);
    close(sv[1]);
}

/* Many fds registered from another thread at once, each reported. */
static void test_many_fds(void)
{
    enum { N = 200 };
    zl_poller_t *p = zl_test_new_poller();
    io_rec_t *r = calloc(N, sizeof(*r));
    int (*sv)[2] = calloc(N, sizeof(*sv));
    long got = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sv);
    for (int i = 0; i < N; i++) {
        make_pair(sv[i]);
        io_init(&r[i], p, sv[i][0]);
        r[i].drain = true;
        CU_ASSERT_EQUAL(
            zl_poller_add_fd(p, sv[i][0], ZL_EV_READ, io_cb, &r[i]), 0);
    }
    CU_ASSERT_EQUAL(fd_count_on(p), N);
    for (int i = 0; i < N; i++)
        put(sv[i][1], "z");
    for (int i = 0; i < N; i++)
        got += zl_test_wait_count(&r[i].bytes, 1, WAIT_MS);
    CU_ASSERT_EQUAL(got, N);
    for (int i = 0; i < N; i++)
        CU_ASSERT_EQUAL(zl_poller_del_fd(p, sv[i][0], NULL, NULL), 0);
    CU_ASSERT_EQUAL(fd_count_on(p), 0);
    zl_poller_free(p);
    for (int i = 0; i < N; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
    free(r);
    free(sv);
}

/* ------------------------------------------------------------ lifetime */
static void test_free_forgets_fds(void)
{
    zl_poller_t *p = zl_test_new_poller();
    io_rec_t r;
    int sv[2];
    char c = 0;

    make_pair(sv);
    io_init(&r, p, sv[0]);
    CU_ASSERT_EQUAL(
        zl_poller_add_fd(p, sv[0], ZL_EV_READ | ZL_EV_LT, io_cb, &r), 0);
    CU_ASSERT_EQUAL(fd_count_on(p), 1);
    zl_poller_free(p);
    /* Not closed by the poller: still usable. */
    CU_ASSERT_NOT_EQUAL(fcntl(sv[0], F_GETFD), -1);
    put(sv[1], "k");
    CU_ASSERT_EQUAL(read(sv[0], &c, 1), 1);
    CU_ASSERT_EQUAL(c, 'k');
    CU_ASSERT_EQUAL(atomic_load(&r.calls), 0);
    close(sv[0]);
    close(sv[1]);
}

/* zl_poller_free() from the poller's own thread must refuse (log, return)
 * rather than deadlock or free the running loop. */
typedef struct {
    zl_poller_t *p;
    atomic_int returned;
} self_free_t;

static void self_free_task(void *arg)
{
    self_free_t *s = arg;
    zl_poller_free(s->p);
    atomic_store(&s->returned, 1);
}

static void test_free_from_own_thread_refused(void)
{
    zl_poller_t *p = zl_test_new_poller();
    self_free_t s = {p, 0};

    CU_ASSERT_EQUAL(zl_poller_async(p, self_free_task, &s), 0);
    CU_ASSERT_EQUAL(zl_test_wait_flag(&s.returned, WAIT_MS), 1);
    /* Still running. */
    CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
    CU_ASSERT_EQUAL(zl_poller_run(p, zl_test_noop, NULL), 0);
    zl_poller_free(p);
}

/* ------------------------------------------------------------ load */
typedef struct {
    atomic_int started, release;
} hold_t;

static void hold_fn(void *arg)
{
    hold_t *h = arg;
    uint64_t end = zl_now_ms() + 30000ull * zl_test_slow();
    atomic_store(&h->started, 1);
    while (!atomic_load(&h->release) && zl_now_ms() < end)
        zl_test_sleep_ms(1);
}

static void test_load(void)
{
    zl_poller_t *p = zl_test_new_poller();
    hold_t h = {0, 0};
    unsigned idle, busy;

    zl_test_sleep_ms(150);
    idle = zl_poller_load(p);
    CU_ASSERT_EQUAL(zl_poller_async(p, hold_fn, &h), 0);
    CU_ASSERT_FATAL(zl_test_wait_flag(&h.started, WAIT_MS));
    zl_test_sleep_ms(600);
    atomic_store(&h.release, 1);
    CU_ASSERT_EQUAL(zl_poller_sync(p, zl_test_noop, NULL), 0);
    busy = zl_poller_load(p);
    printf("\n    load idle %u%%, after a 600 ms task %u%% ", idle, busy);
    CU_ASSERT(idle <= 100 && busy <= 100);
    CU_ASSERT(idle < 25);
    CU_ASSERT(busy >= 50);
    zl_poller_free(p);
}

int zl_test_register_poller(void)
{
    static const zl_test_case_t cases[] = {
        {"backends_list", test_backends_list},
        {"backend_matches_env", test_backend_matches_env},
        {"backend_option_and_unknown", test_backend_option},
        {"identity_current", test_identity},
        {"name_option", test_name_option},
#ifdef __linux__
        {"pin_cpu", test_pin_cpu},
#endif
        {"read_event", test_read_event},
        {"write_event", test_write_event},
        {"error_event", test_error_event},
        {"hup_socketpair_peer_close", test_hup_socketpair},
        {"hup_pipe_writer_close", test_hup_pipe},
        {"level_triggered_refires", test_level_refires},
        {"edge_triggered_once_per_data", test_edge_once_per_data},
        {"mod_fd_changes_interest", test_mod_fd},
        {"add_twice_eexist_del_unknown_enoent", test_add_twice_del_unknown},
        {"del_self_in_callback", test_del_self_in_callback},
        {"del_other_ready_fd_same_batch", test_del_other_same_batch},
        {"fd_reuse_same_batch", test_fd_reuse_same_batch},
        {"cross_thread_add_mod_del", test_cross_thread_add_mod_del},
        {"many_fds", test_many_fds},
        {"free_forgets_fds_not_closed", test_free_forgets_fds},
        {"free_from_own_thread_refused", test_free_from_own_thread_refused},
        {"load", test_load},
        {NULL, NULL},
    };
    return zl_test_add_suite("poller", NULL, NULL, cases);
}
