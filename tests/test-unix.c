/* zltk tests — Unix-domain sockets: unix:PATH addresses, servers and
 * clients over real sockets in a mkdtemp directory. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ------------------------------------------------------------ env */

typedef struct env {
    zl_poller_pool_t *pool;
    char dir[64];
} env_t;

static void env_up(env_t *e)
{
    zl_pool_options_t po = {0};

    memset(e, 0, sizeof(*e));
    po.size = 2;
    po.name_prefix = "zl-unix";
    CU_ASSERT_EQUAL_FATAL(zl_poller_pool_new(&e->pool, &po), 0);
    snprintf(e->dir, sizeof(e->dir), "/tmp/zltk-unix.XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(e->dir));
}

static void env_down(env_t *e)
{
    zl_poller_pool_free(e->pool);
    zl_test_rm_tree(e->dir);
}

/* "unix:DIR/NAME" into buf. */
static const char *at(const env_t *e, const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "unix:%s/%s", e->dir, name);
    return buf;
}

/* ------------------------------------------------------------ handlers */

/* Server side: echo, and the first connection's addresses as text. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_peer[ZL_ADDR_STRLEN], g_local[ZL_ADDR_STRLEN];
static atomic_int g_accepted;

static void echo_connect(zl_conn_t *c, const zl_error_t *err)
{
    (void)err;
    pthread_mutex_lock(&g_lock);
    zl_addr_format(zl_conn_peer(c), g_peer, sizeof(g_peer));
    zl_addr_format(zl_conn_local(c), g_local, sizeof(g_local));
    pthread_mutex_unlock(&g_lock);
    atomic_fetch_add(&g_accepted, 1);
}

static void echo_recv(zl_conn_t *c, zl_buf_t *buf)
{
    zl_conn_send(c, buf->data, buf->len);
}

static const zl_conn_handler_t echo_handler = {
    .on_connect = echo_connect,
    .on_recv = echo_recv,
};

/* Client side: what came back, the connect's outcome. */
typedef struct cli {
    pthread_mutex_t lock;
    char got[256];
    size_t n;
    atomic_int connected, failed, closed;
    int sys, kind;
    char msg[300];
} cli_t;

static void cli_connect(zl_conn_t *c, const zl_error_t *err)
{
    cli_t *t = zl_conn_get_data(c);

    if (!err) {
        zl_conn_send(c, "ping over unix", 14);
        atomic_store(&t->connected, 1);
        return;
    }
    pthread_mutex_lock(&t->lock);
    t->sys = err->sys;
    t->kind = zl_err_kind(err->code);
    snprintf(t->msg, sizeof(t->msg), "%s", err->message);
    pthread_mutex_unlock(&t->lock);
    atomic_store(&t->failed, 1);
}

static void cli_recv(zl_conn_t *c, zl_buf_t *buf)
{
    cli_t *t = zl_conn_get_data(c);

    pthread_mutex_lock(&t->lock);
    if (t->n + buf->len < sizeof(t->got)) {
        memcpy(t->got + t->n, buf->data, buf->len);
        t->n += buf->len;
    }
    pthread_mutex_unlock(&t->lock);
}

static void cli_closed(zl_conn_t *c)
{
    cli_t *t = zl_conn_get_data(c);

    atomic_store(&t->closed, 1);
}

static const zl_conn_handler_t cli_handler = {
    .on_connect = cli_connect,
    .on_recv = cli_recv,
    .on_closed = cli_closed,
};

static int server_at(zl_server_t **out, env_t *e, const char *addr,
                     unsigned mode)
{
    zl_server_options_t o = ZL_SERVER_OPTIONS_INIT;

    o.host = addr;
    o.pool = e->pool;
    o.unix_mode = mode;
    o.name = "unix-test";
    return zl_server_new(out, &o, &echo_handler, NULL);
}

/* Connect a zltk client to addr; returns once it connected or failed. */
static zl_conn_t *client_to(env_t *e, const char *addr, cli_t *t)
{
    zl_client_options_t o = ZL_CLIENT_OPTIONS_INIT;
    zl_conn_t *c = NULL;

    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    o.host = addr;
    o.poller = zl_poller_pool_at(e->pool, 1);
    o.connect_timeout_ms = 2000;
    o.name = "unix-client";
    CU_ASSERT_EQUAL(zl_client_connect(&c, &o, &cli_handler, t), 0);
    for (int i = 0; i < 3000 && !atomic_load(&t->connected) &&
                    !atomic_load(&t->failed);
         i++)
        zl_test_sleep_ms(1);
    return c;
}

/* Until the client received n bytes (read under its lock: the poller
 * thread writes them), or 2 s. */
static void cli_wait_bytes(cli_t *t, size_t n)
{
    for (int i = 0; i < 2000; i++) {
        size_t got;

        pthread_mutex_lock(&t->lock);
        got = t->n;
        pthread_mutex_unlock(&t->lock);
        if (got >= n)
            return;
        zl_test_sleep_ms(1);
    }
}

static void client_done(zl_conn_t *c, cli_t *t)
{
    if (!c)
        return;
    zl_conn_close(c);
    zl_test_wait_flag(&t->closed, 2000 * zl_test_slow());
    zl_conn_unref(c);
    pthread_mutex_destroy(&t->lock);
}

/* A socket file nobody listens on: bound, then closed. */
static void make_stale(const char *path)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    CU_ASSERT_FATAL(fd >= 0);
    snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
    CU_ASSERT_EQUAL(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
    close(fd);
}

static bool is_socket(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* ------------------------------------------------------------ tests */

static void test_addr(void)
{
    zl_addr_t a, b;
    char buf[ZL_ADDR_STRLEN], small[12], longp[200];
    struct sockaddr_un un = {.sun_family = AF_UNIX};

    CU_ASSERT_TRUE(zl_addr_is_unix_text("unix:/x"));
    CU_ASSERT_FALSE(zl_addr_is_unix_text("127.0.0.1:1"));
    CU_ASSERT_FALSE(zl_addr_is_unix_text(NULL));
    CU_ASSERT_EQUAL_FATAL(zl_addr_from_unix(&a, "unix:/run/x.sock"), 0);
    CU_ASSERT_EQUAL(a.u.sa.sa_family, AF_UNIX);
    CU_ASSERT_STRING_EQUAL(zl_addr_unix_path(&a), "/run/x.sock");
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&a, buf, sizeof(buf)),
                           "unix:/run/x.sock");
    CU_ASSERT_EQUAL(zl_addr_port(&a), 0);
    /* Truncated to a small buffer, never overrun. */
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&a, small, sizeof(small)),
                           "unix:/run/x");
    /* Same path, same bytes. */
    CU_ASSERT_EQUAL(zl_addr_from_unix(&b, "unix:/run/x.sock"), 0);
    CU_ASSERT_EQUAL(memcmp(&a, &b, sizeof(a)), 0);
    /* Relative and abstract. */
    CU_ASSERT_EQUAL(zl_addr_from_unix(&b, "unix:rel/x.sock"), 0);
    CU_ASSERT_STRING_EQUAL(zl_addr_unix_path(&b), "rel/x.sock");
    CU_ASSERT_EQUAL(zl_addr_from_unix(&b, "unix:@zltk-name"), 0);
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&b, buf, sizeof(buf)),
                           "unix:@zltk-name");
    /* Refused: no prefix, empty, too long (107 bytes is the most). */
    CU_ASSERT_EQUAL(zl_addr_from_unix(&b, "/run/x.sock"), -EINVAL);
    CU_ASSERT_EQUAL(zl_addr_from_unix(&b, "unix:"), -EINVAL);
    memset(longp, 'a', sizeof(longp));
    memcpy(longp, "unix:/", 6);
    longp[5 + ZL_ADDR_UNIX_PATH_MAX] = '\0';
    CU_ASSERT_EQUAL(zl_addr_from_unix(&b, longp), 0);
    longp[5 + ZL_ADDR_UNIX_PATH_MAX] = 'a';
    longp[6 + ZL_ADDR_UNIX_PATH_MAX] = '\0';
    CU_ASSERT_EQUAL(zl_addr_from_unix(&b, longp), -ENAMETOOLONG);
    /* Not unix: no path. */
    CU_ASSERT_EQUAL(zl_addr_from_ip(&b, "127.0.0.1", 80), 0);
    CU_ASSERT_PTR_NULL(zl_addr_unix_path(&b));
    /* Kernel forms: unnamed, a path, abstract. */
    CU_ASSERT_EQUAL(zl_addr_from_sockaddr(&b, (struct sockaddr *)&un,
                                          sizeof(sa_family_t)), 0);
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&b, buf, sizeof(buf)), "unix:");
    snprintf(un.sun_path, sizeof(un.sun_path), "/run/x.sock");
    CU_ASSERT_EQUAL(zl_addr_from_sockaddr(&b, (struct sockaddr *)&un,
                                          sizeof(un)), 0);
    CU_ASSERT_EQUAL(memcmp(&a, &b, sizeof(a)), 0);
    memcpy(un.sun_path, "\0abs", 4);
    CU_ASSERT_EQUAL(zl_addr_from_sockaddr(&b, (struct sockaddr *)&un,
                    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 4)),
                    0);
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&b, buf, sizeof(buf)),
                           "unix:@abs");
}

static void test_echo(void)
{
    env_t e;
    zl_server_t *s = NULL;
    zl_conn_t *c;
    cli_t t;
    char addr[128], buf[ZL_ADDR_STRLEN];

    env_up(&e);
    atomic_store(&g_accepted, 0);
    at(&e, "echo.sock", addr, sizeof(addr));
    CU_ASSERT_EQUAL_FATAL(server_at(&s, &e, addr, 0), 0);
    CU_ASSERT_STRING_EQUAL(zl_addr_format(zl_server_addr(s), buf, sizeof(buf)),
                           addr);
    CU_ASSERT_TRUE(is_socket(addr + 5));
    c = client_to(&e, addr, &t);
    CU_ASSERT_EQUAL(atomic_load(&t.connected), 1);
    cli_wait_bytes(&t, 14);
    pthread_mutex_lock(&t.lock);
    CU_ASSERT_EQUAL(t.n, 14);
    CU_ASSERT_EQUAL(memcmp(t.got, "ping over unix", 14), 0);
    pthread_mutex_unlock(&t.lock);
    /* The accepted peer is unnamed; the local end is the server's path. */
    pthread_mutex_lock(&g_lock);
    CU_ASSERT_STRING_EQUAL(g_peer, "unix:");
    CU_ASSERT_STRING_EQUAL(g_local, addr);
    pthread_mutex_unlock(&g_lock);
    client_done(c, &t);
    zl_server_free(s);
    /* Unlinked at stop. */
    CU_ASSERT_FALSE(is_socket(addr + 5));
    CU_ASSERT_EQUAL(access(addr + 5, F_OK), -1);
    env_down(&e);
}

static void test_stale_replaced(void)
{
    env_t e;
    zl_server_t *s = NULL;
    zl_conn_t *c;
    cli_t t;
    char addr[128];

    env_up(&e);
    at(&e, "stale.sock", addr, sizeof(addr));
    make_stale(addr + 5);
    CU_ASSERT_TRUE_FATAL(is_socket(addr + 5));
    CU_ASSERT_EQUAL_FATAL(server_at(&s, &e, addr, 0), 0);
    c = client_to(&e, addr, &t);
    CU_ASSERT_EQUAL(atomic_load(&t.connected), 1);
    client_done(c, &t);
    zl_server_free(s);
    env_down(&e);
}

static void test_live_refused(void)
{
    env_t e;
    zl_server_t *s = NULL, *s2 = NULL;
    zl_conn_t *c;
    cli_t t;
    char addr[128];

    env_up(&e);
    at(&e, "live.sock", addr, sizeof(addr));
    CU_ASSERT_EQUAL_FATAL(server_at(&s, &e, addr, 0), 0);
    CU_ASSERT_EQUAL(server_at(&s2, &e, addr, 0), -EADDRINUSE);
    CU_ASSERT_PTR_NULL(s2);
    /* The first one still has its file and answers. */
    CU_ASSERT_TRUE(is_socket(addr + 5));
    c = client_to(&e, addr, &t);
    CU_ASSERT_EQUAL(atomic_load(&t.connected), 1);
    client_done(c, &t);
    zl_server_free(s);
    env_down(&e);
}

static void test_regular_file_kept(void)
{
    env_t e;
    zl_server_t *s = NULL;
    char addr[128], got[8] = {0};
    int fd;

    env_up(&e);
    at(&e, "file.sock", addr, sizeof(addr));
    fd = open(addr + 5, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, "keep", 4), 4);
    close(fd);
    CU_ASSERT_EQUAL(server_at(&s, &e, addr, 0), -EADDRINUSE);
    CU_ASSERT_PTR_NULL(s);
    fd = open(addr + 5, O_RDONLY);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(read(fd, got, sizeof(got)), 4);
    CU_ASSERT_STRING_EQUAL(got, "keep");
    close(fd);
    env_down(&e);
}

static void test_mode(void)
{
    env_t e;
    zl_server_t *s = NULL;
    char addr[128];
    struct stat st;
    zl_server_options_t o = ZL_SERVER_OPTIONS_INIT;

    env_up(&e);
    at(&e, "mode.sock", addr, sizeof(addr));
    CU_ASSERT_EQUAL_FATAL(server_at(&s, &e, addr, 0600), 0);
    CU_ASSERT_EQUAL(lstat(addr + 5, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);
    zl_server_free(s);
    s = NULL;
    CU_ASSERT_EQUAL_FATAL(server_at(&s, &e, addr, 0666), 0);
    CU_ASSERT_EQUAL(lstat(addr + 5, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 07777, 0666);
    zl_server_free(s);
    /* Refused: not a mode; a mode without a socket file. */
    s = NULL;
    CU_ASSERT_EQUAL(server_at(&s, &e, addr, 010000), -EINVAL);
    o.host = "127.0.0.1";
    o.pool = e.pool;
    o.unix_mode = 0600;
    CU_ASSERT_EQUAL(zl_server_new(&s, &o, &echo_handler, NULL), -EINVAL);
    CU_ASSERT_PTR_NULL(s);
    env_down(&e);
}

static void test_too_long(void)
{
    env_t e;
    zl_server_t *s = NULL;
    zl_client_options_t o = ZL_CLIENT_OPTIONS_INIT;
    zl_conn_t *c = NULL;
    char addr[300];

    env_up(&e);
    memset(addr, 'x', sizeof(addr));
    memcpy(addr, "unix:/tmp/", 10);
    addr[250] = '\0';
    CU_ASSERT_EQUAL(server_at(&s, &e, addr, 0), -ENAMETOOLONG);
    CU_ASSERT_PTR_NULL(s);
    o.host = addr;
    o.poller = zl_poller_pool_at(e.pool, 0);
    CU_ASSERT_EQUAL(zl_client_connect(&c, &o, &cli_handler, NULL),
                    -ENAMETOOLONG);
    CU_ASSERT_PTR_NULL(c);
    env_down(&e);
}

/* A failed connect: the errno, the kind and the path in the message. */
static void expect_fail(env_t *e, const char *addr, int sys, int kind)
{
    cli_t t;
    zl_conn_t *c = client_to(e, addr, &t);

    CU_ASSERT_EQUAL(atomic_load(&t.failed), 1);
    pthread_mutex_lock(&t.lock);
    ZL_TEST_CHECK(t.sys == sys, "errno %d, want %d (%s)", t.sys, sys, t.msg);
    CU_ASSERT_EQUAL(t.kind, kind);
    ZL_TEST_CHECK(strstr(t.msg, addr) != NULL, "'%s' names %s", t.msg, addr);
    pthread_mutex_unlock(&t.lock);
    client_done(c, &t);
}

static void test_client_errors(void)
{
    env_t e;
    char addr[128];

    env_up(&e);
    at(&e, "missing.sock", addr, sizeof(addr));
    expect_fail(&e, addr, ENOENT, ZL_EOTHER);
    at(&e, "refused.sock", addr, sizeof(addr));
    make_stale(addr + 5);
    expect_fail(&e, addr, ECONNREFUSED, ZL_EREFUSED);
    env_down(&e);
}

/* Linux's abstract namespace: no file; TCP-only options set in conn are
 * skipped, not errors. */
static void test_abstract(void)
{
    env_t e;
    zl_server_t *s = NULL;
    zl_server_options_t o = ZL_SERVER_OPTIONS_INIT;
    zl_conn_t *c;
    cli_t t;
    char addr[64], buf[ZL_ADDR_STRLEN];

    env_up(&e);
    snprintf(addr, sizeof(addr), "unix:@zltk-test-%ld", (long)getpid());
    o.host = addr;
    o.pool = e.pool;
    o.conn.keepalive_ms = 1000;
    o.conn.sndbuf = o.conn.rcvbuf = 65536;
    CU_ASSERT_EQUAL_FATAL(zl_server_new(&s, &o, &echo_handler, NULL), 0);
    CU_ASSERT_STRING_EQUAL(zl_addr_format(zl_server_addr(s), buf, sizeof(buf)),
                           addr);
    c = client_to(&e, addr, &t);
    CU_ASSERT_EQUAL(atomic_load(&t.connected), 1);
    cli_wait_bytes(&t, 14);
    pthread_mutex_lock(&t.lock);
    CU_ASSERT_EQUAL(t.n, 14);
    pthread_mutex_unlock(&t.lock);
    client_done(c, &t);
    zl_server_free(s);
    /* Gone with the listener: a connect is refused. */
    expect_fail(&e, addr, ECONNREFUSED, ZL_EREFUSED);
    env_down(&e);
}

int zl_test_register_unix(void)
{
    static const zl_test_case_t cases[] = {
        {"addr: unix:PATH parsed, formatted, too long refused", test_addr},
        {"echo over unix:PATH; peer unix:, local the path; unlinked at stop",
         test_echo},
        {"a stale socket file is replaced", test_stale_replaced},
        {"a live socket is address in use", test_live_refused},
        {"a regular file at the path is never removed",
         test_regular_file_kept},
        {"unix_mode applied; refused out of range or without a file",
         test_mode},
        {"a path longer than sun_path is refused", test_too_long},
        {"client: missing file and refused, with the path", test_client_errors},
        {"abstract unix:@name; TCP options skipped", test_abstract},
        {NULL, NULL},
    };
    return zl_test_add_suite("unix", NULL, NULL, cases);
}
