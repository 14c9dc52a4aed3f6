/* zltk tests — the bundled handler plugins through a mock host (suite
 * "handlers"; plugins/echo, plugins/tcp, zltk/handler.h).
 *
 * The plugins are loaded from $top_builddir/plugins/.libs with dlopen and
 * initialised with a zl_host_api_t of recording fakes; the tests then drive
 * their vtables by hand, as the host would on a session's poller, and check
 * what reached the fake host byte for byte.  Sessions and instances are
 * dummy objects: the plugins only ever pass them back to the host.
 *
 * Worker jobs (host->submit) are queued, not run, so that a test decides
 * when the "worker" runs (run_jobs) and can check that nothing blocking
 * happened inside a callback.  Standard input and output are redirected to
 * pipes for the stdio mode and restored afterwards.  The stdio mode watches
 * them on the session's poller: the mock hands out a real poller, and those
 * tests drive the vtable on its thread (step(), zl_poller_sync), so that
 * the plugin's fd callbacks, posts and timers never race the test.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "test.h"

#define WAIT_MS 5000u

static const zl_plugin_desc_t *tcp_desc, *echo_desc;

/* ------------------------------------------------------------ helpers */

#define CHECK ZL_TEST_CHECK

/* Bytes as C text, for messages (g_free it). */
static char *show(const void *p, size_t len)
{
    GString *s = g_string_new("\"");

    for (size_t i = 0; i < len; i++) {
        uint8_t c = ((const uint8_t *)p)[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            g_string_append_c(s, (char)c);
        else
            g_string_append_printf(s, "\\x%02x", c);
    }
    g_string_append_c(s, '"');
    return g_string_free(s, FALSE);
}

/* Whether got[0..got_len) is exactly want[0..want_len); explains if not. */
static bool bytes_at(int line, const void *got, size_t got_len,
                     const void *want, size_t want_len, const char *what)
{
    bool ok = got_len == want_len &&
              (!want_len || !memcmp(got, want, want_len));
    char *g = show(got, got_len), *w = show(want, want_len);

    zl_test_check_at(__FILE__, line, ok, "%s: got %s (%zu bytes), expected %s (%zu bytes)", what,
             g, got_len, w, want_len);
    g_free(g);
    g_free(w);
    return ok;
}
#define CHECK_BYTES(got, got_len, want, want_len, what)                     \
    bytes_at(__LINE__, (got), (got_len), (want), (want_len), (what))

/* ------------------------------------------------------------ mock host */

/* Dummy objects: only their addresses matter. */
static struct {
    int tag;
} fake_plugin, fake_session, fake_instance;
#define SELF ((zl_plugin_t *)(void *)&fake_plugin)
#define SESS ((zl_session_t *)(void *)&fake_session)
#define INST ((zl_instance_t *)(void *)&fake_instance)

typedef struct mock_job {
    zl_work_fn work;
    zl_session_fn done;
    void *arg;
    zl_destroy_fn destroy;
} mock_job_t;

static struct {
    int registers;
    zl_registration_t reg;
    int wrong_object;         /* calls with another session/instance/self */
    const char *const *config; /* key, value, ..., NULL */
    GPtrArray *config_errors; /* "KEY: message" */
    GPtrArray *logs;          /* "LEVEL message" */
    GString *events;          /* "send:abc pause submit shutdown ..." */
    GPtrArray *sends;         /* GBytes per send / send_buf */
    int send_rc;              /* what send and send_buf return */
    zl_buf_t *last_buf;       /* last send_buf argument */
    int last_buf_refs;        /* its reference count inside send_buf */
    int pauses, resumes, shutdowns, closes, aborts, submits;
    int submit_rc;
    GQueue jobs;   /* mock_job_t *, in submit order */
    void *state;   /* the session's state, for done callbacks */
    bool closed;   /* on_closed ran: done callbacks no longer run */
    void *inst_data;
    zl_addr_t peer;
} mock;

static void event(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void event(const char *fmt, ...)
{
    va_list ap;

    if (mock.events->len)
        g_string_append_c(mock.events, ' ');
    va_start(ap, fmt);
    g_string_append_vprintf(mock.events, fmt, ap);
    va_end(ap);
}

static void check_session(const zl_session_t *s)
{
    if (s != SESS)
        mock.wrong_object++;
}

static void check_instance(const zl_instance_t *i)
{
    if (i != INST)
        mock.wrong_object++;
}

static int mock_register(zl_plugin_t *self, const zl_registration_t *r)
{
    if (self != SELF)
        mock.wrong_object++;
    mock.registers++;
    mock.reg = *r;
    return 0;
}

static void mock_log(zl_plugin_t *self, zl_log_level_t level, const char *fmt,
                     ...) G_GNUC_PRINTF(3, 4);
static void mock_log(zl_plugin_t *self, zl_log_level_t level, const char *fmt,
                     ...)
{
    va_list ap;
    char *msg;

    if (self != SELF)
        mock.wrong_object++;
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_ptr_array_add(mock.logs, g_strdup_printf("%s %s",
                                               zl_log_level_name(level), msg));
    g_free(msg);
}

static const char *mock_name(const zl_plugin_t *self)
{
    return "mock";
}

static const char *mock_instance_name(const zl_instance_t *inst)
{
    check_instance(inst);
    return "test";
}

static bool mock_instance_is_server(const zl_instance_t *inst)
{
    check_instance(inst);
    return false;
}

static void *mock_instance_data(const zl_instance_t *inst)
{
    check_instance(inst);
    return mock.inst_data;
}

static const char *mock_config_string(const zl_instance_t *inst,
                                      const char *key)
{
    check_instance(inst);
    for (const char *const *kv = mock.config; kv && kv[0]; kv += 2)
        if (!strcmp(kv[0], key))
            return kv[1];
    return NULL;
}

static void mock_config_error(zl_instance_t *inst, const char *key,
                              const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static void mock_config_error(zl_instance_t *inst, const char *key,
                              const char *fmt, ...)
{
    va_list ap;
    char *msg;

    check_instance(inst);
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_ptr_array_add(mock.config_errors,
                    g_strdup_printf("%s: %s", key ? key : "-", msg));
    g_free(msg);
}

static int record_send(const void *data, size_t len)
{
    char *raw = g_strndup(data, len); /* stops at a NUL: for events only */
    char *txt = g_strescape(raw, NULL);

    g_ptr_array_add(mock.sends, g_bytes_new(data, len));
    event("send:%s", txt);
    g_free(txt);
    g_free(raw);
    return mock.send_rc;
}

static int mock_send(zl_session_t *s, const void *data, size_t len)
{
    check_session(s);
    return record_send(data, len);
}

/* Like the host: the reference passed in is the host's from now on. */
static int mock_send_buf(zl_session_t *s, zl_buf_t *buf)
{
    int rc;

    check_session(s);
    mock.last_buf = buf;
    mock.last_buf_refs = zl_buf_refcount(buf);
    rc = record_send(buf->data, buf->len);
    zl_buf_unref(buf);
    return rc;
}

static void mock_close(zl_session_t *s)
{
    check_session(s);
    mock.closes++;
    event("close");
}

static void mock_abort(zl_session_t *s)
{
    check_session(s);
    mock.aborts++;
    event("abort");
}

static void mock_shutdown(zl_session_t *s)
{
    check_session(s);
    mock.shutdowns++;
    event("shutdown");
}

static void mock_pause(zl_session_t *s)
{
    check_session(s);
    mock.pauses++;
    event("pause");
}

static void mock_resume(zl_session_t *s)
{
    check_session(s);
    mock.resumes++;
    event("resume");
}

static const zl_addr_t *mock_peer(const zl_session_t *s)
{
    check_session(s);
    return &mock.peer;
}

static const char *mock_session_name(const zl_session_t *s)
{
    check_session(s);
    return "client#1";
}

static zl_instance_t *mock_session_instance(const zl_session_t *s)
{
    check_session(s);
    return INST;
}

static size_t mock_queued(const zl_session_t *s)
{
    check_session(s);
    return 0;
}

static zl_session_t *mock_session_ref(zl_session_t *s)
{
    check_session(s);
    return s;
}

static void mock_session_unref(zl_session_t *s)
{
    check_session(s);
}

static int mock_submit(zl_session_t *s, zl_work_fn work, zl_session_fn done,
                       void *arg, zl_destroy_fn destroy)
{
    mock_job_t *j;

    check_session(s);
    mock.submits++;
    event("submit");
    if (mock.submit_rc)
        return mock.submit_rc;
    j = g_new0(mock_job_t, 1);
    j->work = work;
    j->done = done;
    j->arg = arg;
    j->destroy = destroy;
    g_queue_push_tail(&mock.jobs, j);
    return 0;
}

static void mock_session_log(zl_session_t *s, zl_log_level_t level,
                             const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static void mock_session_log(zl_session_t *s, zl_log_level_t level,
                             const char *fmt, ...)
{
    va_list ap;
    char *msg;

    check_session(s);
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_ptr_array_add(mock.logs, g_strdup_printf("%s %s",
                                               zl_log_level_name(level), msg));
    g_free(msg);
}

/* The stdio tests' poller (suite_init); kept out of mock, which
 * mock_reset clears. */
static zl_poller_t *mock_poller;

static zl_poller_t *mock_session_poller(const zl_session_t *s)
{
    check_session(s);
    return mock_poller;
}

typedef struct mock_call {
    zl_session_fn fn;
    zl_session_timer_fn tfn;
    void *arg;
    zl_destroy_fn destroy;
} mock_call_t;

static void mock_call_end(void *arg)
{
    mock_call_t *c = arg;

    if (c->destroy)
        c->destroy(c->arg);
    g_free(c);
}

/* As the host: nothing reaches the handler after on_closed. */
static void mock_post_run(void *arg)
{
    mock_call_t *c = arg;

    if (!mock.closed)
        c->fn(SESS, mock.state, c->arg);
    mock_call_end(c);
}

static int mock_post(zl_session_t *s, zl_session_fn fn, void *arg,
                     zl_destroy_fn destroy)
{
    mock_call_t *c = g_new0(mock_call_t, 1);
    int rc;

    check_session(s);
    *c = (mock_call_t){.fn = fn, .arg = arg, .destroy = destroy};
    rc = zl_poller_async(mock_poller, mock_post_run, c);
    if (rc < 0)
        g_free(c);
    return rc;
}

static uint64_t mock_timer_fire(void *arg)
{
    mock_call_t *c = arg;

    return mock.closed ? 0 : c->tfn(SESS, mock.state, c->arg);
}

static int mock_add_timer(zl_session_t *s, uint64_t delay_ms,
                          zl_session_timer_fn fn, void *arg,
                          zl_destroy_fn destroy)
{
    mock_call_t *c = g_new0(mock_call_t, 1);
    int rc;

    check_session(s);
    *c = (mock_call_t){.tfn = fn, .arg = arg, .destroy = destroy};
    rc = zl_poller_add_timer(mock_poller, delay_ms, mock_timer_fire, c,
                             mock_call_end, NULL);
    if (rc < 0)
        g_free(c);
    return rc;
}

/* Recorded as an event, and its message as a log line "fail NAME: ...". */
static void mock_fail(zl_session_t *s, int code, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
static void mock_fail(zl_session_t *s, int code, const char *fmt, ...)
{
    va_list ap;
    char *msg;

    check_session(s);
    event("fail");
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_ptr_array_add(mock.logs, g_strdup_printf("fail %s: %s",
                                               zl_err_name(code), msg));
    g_free(msg);
}

static const zl_host_api_t mock_host = {
    .struct_size = sizeof(zl_host_api_t),
    .abi_major = ZLTK_PLUGIN_ABI_MAJOR,
    .abi_minor = ZLTK_PLUGIN_ABI_MINOR,
    .register_provider = mock_register,
    .log = mock_log,
    .name = mock_name,
    .instance_name = mock_instance_name,
    .instance_is_server = mock_instance_is_server,
    .instance_data = mock_instance_data,
    .config_string = mock_config_string,
    .config_error = mock_config_error,
    .send = mock_send,
    .send_buf = mock_send_buf,
    .close = mock_close,
    .abort = mock_abort,
    .shutdown = mock_shutdown,
    .pause = mock_pause,
    .resume = mock_resume,
    .peer = mock_peer,
    .local = mock_peer,
    .session_name = mock_session_name,
    .session_instance = mock_session_instance,
    .queued = mock_queued,
    .session_ref = mock_session_ref,
    .session_unref = mock_session_unref,
    .submit = mock_submit,
    .session_log = mock_session_log,
    .session_poller = mock_session_poller,
    .post = mock_post,
    .add_timer = mock_add_timer,
    .fail = mock_fail,
};

/* What every job owes: work, then done unless the session closed, then
 * destroy — in the caller's thread, one job after the other, including
 * jobs the done callbacks submit. */
static bool run_one_job(void)
{
    mock_job_t *j = g_queue_pop_head(&mock.jobs);

    if (!j)
        return false;
    j->work(j->arg);
    if (j->done && !mock.closed)
        j->done(SESS, mock.state, j->arg);
    if (j->destroy)
        j->destroy(j->arg);
    g_free(j);
    return true;
}

/* Until none is left.  A job that reads a standard input with nothing to
 * deliver would block: use run_one_job where that could happen. */
static int run_jobs(void)
{
    int n = 0;

    while (run_one_job())
        n++;
    return n;
}

static void mock_reset(void)
{
    mock_job_t *j;

    if (mock.logs) {
        g_ptr_array_unref(mock.logs);
        g_ptr_array_unref(mock.config_errors);
        g_ptr_array_unref(mock.sends);
        g_string_free(mock.events, TRUE);
    }
    /* Jobs a failed test left behind: dropped as by a stopping pool. */
    while ((j = g_queue_pop_head(&mock.jobs))) {
        if (j->destroy)
            j->destroy(j->arg);
        g_free(j);
    }
    memset(&mock, 0, sizeof mock);
    g_queue_init(&mock.jobs);
    mock.logs = g_ptr_array_new_with_free_func(g_free);
    mock.config_errors = g_ptr_array_new_with_free_func(g_free);
    mock.sends = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    mock.events = g_string_new("");
    zl_addr_from_ip(&mock.peer, "127.0.0.1", 9000);
}

/* Index of the first log line containing text, or -1. */
static int log_find(const char *text)
{
    for (guint i = 0; i < mock.logs->len; i++)
        if (strstr(g_ptr_array_index(mock.logs, i), text))
            return (int)i;
    return -1;
}

static int log_count(const char *text)
{
    int n = 0;

    for (guint i = 0; i < mock.logs->len; i++)
        if (strstr(g_ptr_array_index(mock.logs, i), text))
            n++;
    return n;
}

/* All log lines, for failure messages (g_free it). */
static char *logs_text(void)
{
    GString *s = g_string_new("");

    for (guint i = 0; i < mock.logs->len; i++)
        g_string_append_printf(s, "[%s] ",
                               (char *)g_ptr_array_index(mock.logs, i));
    return g_string_free(s, FALSE);
}

#define CHECK_LOG(text)                                                      \
    do {                                                                     \
        char *all_ = logs_text();                                            \
        CHECK(log_find(text) >= 0, "a log line says '%s': %s", (text), all_); \
        g_free(all_);                                                        \
    } while (0)

static const uint8_t *send_data(guint i, size_t *len)
{
    return g_bytes_get_data(g_ptr_array_index(mock.sends, i), len);
}

#define CHECK_SEND(i, want, want_len)                                        \
    do {                                                                     \
        size_t len_;                                                         \
        const uint8_t *d_;                                                   \
        if (!CHECK(mock.sends->len > (i), "send #%d happened (events: %s)", \
                   (int)(i), mock.events->str))                              \
            break;                                                           \
        d_ = send_data((i), &len_);                                          \
        CHECK_BYTES(d_, len_, (want), (want_len), "send #" #i);              \
    } while (0)

#define CHECK_EVENTS(want)                                                   \
    CHECK(!strcmp(mock.events->str, (want)),                                 \
          "events: \"%s\", expected \"%s\"", mock.events->str, (want))

/* --------------------------------------------- plugins through the mock */

/* Initialise desc with the mock host; its handler, or NULL (test failed). */
static const zl_handler_t *plugin_handler(const zl_plugin_desc_t *desc)
{
    if (!CHECK(desc != NULL, "plugin loaded"))
        return NULL;
    mock.registers = 0;
    if (!CHECK(desc->init(SELF, &mock_host) == 0, "%s: init succeeds",
               desc->name))
        return NULL;
    if (!CHECK(mock.registers == 1, "%s: registers one handler (%d)",
               desc->name, mock.registers))
        return NULL;
    return mock.reg.vtable;
}

/* A session of handler h on the mock: state allocated as the host does. */
static void *session_open(const zl_handler_t *h)
{
    mock.state = g_malloc0(h->state_size ? h->state_size : 1);
    mock.closed = false;
    if (h->on_open)
        CU_ASSERT_EQUAL(h->on_open(SESS, mock.state, INST), 0);
    return mock.state;
}

/* on_closed, then the host's part: state freed, pending jobs wound up. */
static void session_close(const zl_handler_t *h)
{
    mock.closed = true;
    if (h->on_closed)
        h->on_closed(SESS, mock.state);
    g_free(mock.state);
    mock.state = NULL;
    run_jobs();
}

/* tcp with the given key/value pairs: the handler, or NULL after a failed
 * check.  The instance data is in mock.inst_data. */
static const zl_handler_t *tcp_instance(const char *const *config)
{
    const zl_handler_t *h = plugin_handler(tcp_desc);
    void *data = NULL;
    int rc;

    if (!h)
        return NULL;
    mock.config = config;
    rc = h->instance_new(INST, &data);
    if (!CHECK(rc == 0 && data != NULL && mock.config_errors->len == 0,
               "instance_new accepts the keys: %d (%s), %u errors", rc,
               zl_strerror(rc), mock.config_errors->len))
        return NULL;
    mock.inst_data = data;
    return h;
}

static void tcp_instance_end(const zl_handler_t *h)
{
    h->instance_free(INST, mock.inst_data);
    mock.inst_data = NULL;
}

static const zl_error_t refused = {
    .code = ZL_EREFUSED,
    .sys = ECONNREFUSED,
    .stage = ZL_STAGE_CONNECT,
    .message = "connect to 127.0.0.1:9000: connection refused",
};

static const zl_error_t eof = {
    .code = ZL_EOF,
    .stage = ZL_STAGE_READ,
    .message = "end of stream from 127.0.0.1:9000",
};

static void recv_bytes(const zl_handler_t *h, const void *data, size_t len)
{
    zl_buf_t *b = zl_buf_new_copy(data, len);

    h->on_recv(SESS, mock.state, b);
    zl_buf_unref(b);
}

/* ------------------------------------------- standard streams as pipes */

typedef struct redirect {
    int target; /* 0 or 1 */
    int saved;  /* a copy of the original */
    int other;  /* the test's end of the pipe */
} redirect_t;

/* Make fd target one end of a new pipe; the test keeps the other end. */
static bool redirect(redirect_t *r, int target)
{
    int p[2];

    r->target = target;
    r->saved = r->other = -1;
    if (!CHECK(fcntl(target, F_GETFD) >= 0,
               "fd %d is open (run the tests with standard input and output "
               "open)", target))
        return false;
    if (!CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", g_strerror(errno)))
        return false;
    fflush(stdout);
    r->saved = dup(target);
    if (!CHECK(r->saved >= 0 && dup2(p[target == 0 ? 0 : 1], target) == target,
               "dup2 onto fd %d: %s", target, g_strerror(errno))) {
        close(p[0]);
        close(p[1]);
        if (r->saved >= 0)
            close(r->saved);
        r->saved = -1;
        return false;
    }
    close(p[target == 0 ? 0 : 1]);
    r->other = p[target == 0 ? 1 : 0];
    return true;
}

static void redirect_end(redirect_t *r)
{
    if (r->saved >= 0) {
        dup2(r->saved, r->target);
        close(r->saved);
    }
    if (r->other >= 0)
        close(r->other);
    r->saved = r->other = -1;
}

/* Everything readable from fd now (non-blocking). */
static GByteArray *drain(int fd)
{
    GByteArray *a = g_byte_array_new();
    uint8_t buf[4096];
    int fl = fcntl(fd, F_GETFL);
    ssize_t n;

    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    while ((n = read(fd, buf, sizeof buf)) > 0)
        g_byte_array_append(a, buf, (guint)n);
    fcntl(fd, F_SETFL, fl);
    return a;
}

/* ------------------------------------------------------------------ echo */

static void test_echo_register(void)
{
    const zl_handler_t *h = plugin_handler(echo_desc);

    if (!h)
        return;
    CU_ASSERT_EQUAL(mock.reg.kind, ZL_PROVIDES_SERVER);
    CU_ASSERT_STRING_EQUAL(mock.reg.name, "echo");
    CU_ASSERT(h->struct_size >= ZL_HANDLER_SIZE_1_0);
    CU_ASSERT_PTR_NOT_NULL(h->on_recv);
    CU_ASSERT_EQUAL(mock.wrong_object, 0);
}

static void test_echo_recv(void)
{
    const zl_handler_t *h = plugin_handler(echo_desc);
    zl_buf_t *b;

    if (!h)
        return;
    session_open(h);
    b = zl_buf_new_copy("abc", 3);
    h->on_recv(SESS, mock.state, b);
    CHECK_SEND(0, "abc", 3);
    CU_ASSERT_EQUAL(mock.sends->len, 1);
    /* Either a copy (send) or zero-copy (send_buf of the same buffer, with
     * a reference of echo's own on top of the caller's, which the host then
     * owns).  Either way the caller's reference is left as it was. */
    if (mock.last_buf) {
        CHECK(mock.last_buf == b, "send_buf got the received buffer itself");
        CHECK(mock.last_buf_refs == 2,
              "send_buf got its own reference (refs %d)", mock.last_buf_refs);
    }
    CHECK(zl_buf_refcount(b) == 1, "the caller's reference is left (refs %d)",
          zl_buf_refcount(b));
    zl_buf_unref(b);
    recv_bytes(h, "defg", 4);
    CHECK_SEND(1, "defg", 4);
    CHECK_EVENTS("send:abc send:defg");
    session_close(h);
    CHECK_LOG("7 bytes");
    CU_ASSERT_EQUAL(mock.wrong_object, 0);
}

static void test_echo_busy_send_pauses(void)
{
    const zl_handler_t *h = plugin_handler(echo_desc);

    if (!h)
        return;
    session_open(h);
    mock.send_rc = ZL_CONN_BUSY;
    recv_bytes(h, "abc", 3);
    recv_bytes(h, "def", 3); /* still arriving: already read by the host */
    CU_ASSERT_EQUAL(mock.pauses, 1);
    CU_ASSERT_EQUAL(mock.resumes, 0);
    mock.send_rc = 0;
    h->on_busy(SESS, mock.state, false);
    CU_ASSERT_EQUAL(mock.resumes, 1);
    h->on_busy(SESS, mock.state, false); /* not paused: nothing to resume */
    CU_ASSERT_EQUAL(mock.resumes, 1);
    CHECK_EVENTS("send:abc pause send:def resume");
    session_close(h);
}

static void test_echo_busy_pauses(void)
{
    const zl_handler_t *h = plugin_handler(echo_desc);

    if (!h)
        return;
    session_open(h);
    h->on_busy(SESS, mock.state, true);
    CU_ASSERT_EQUAL(mock.pauses, 1);
    h->on_busy(SESS, mock.state, true);
    CU_ASSERT_EQUAL(mock.pauses, 1);
    recv_bytes(h, "x", 1);
    mock.send_rc = ZL_CONN_BUSY;
    recv_bytes(h, "y", 1);
    CU_ASSERT_EQUAL(mock.pauses, 1);
    h->on_busy(SESS, mock.state, false);
    CU_ASSERT_EQUAL(mock.resumes, 1);
    CHECK_EVENTS("pause send:x send:y resume");
    session_close(h);
}

/* ------------------------------------------------------------- tcp: keys */

static void test_tcp_register(void)
{
    const zl_handler_t *h = plugin_handler(tcp_desc);
    zl_host_api_t old = mock_host;
    bool send = false, tick = false, mode = false;

    if (!h)
        return;
    CU_ASSERT_EQUAL(mock.reg.kind, ZL_PROVIDES_CLIENT);
    CU_ASSERT_STRING_EQUAL(mock.reg.name, "tcp");
    CU_ASSERT(h->struct_size >= ZL_HANDLER_SIZE_1_0);
    CU_ASSERT_PTR_NOT_NULL(h->on_recv);
    CU_ASSERT_PTR_NOT_NULL(h->instance_new);
    CU_ASSERT_PTR_NOT_NULL(h->instance_free);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h->keys);
    for (const char *const *k = h->keys; *k; k++) {
        send |= !strcmp(*k, "send");
        tick |= !strcmp(*k, "tick");
        mode |= !strcmp(*k, "mode");
    }
    CHECK(send && tick && mode, "keys list send, tick and mode");

    /* A host API without the session functions: refused, nothing touched. */
    old.struct_size = offsetof(zl_host_api_t, send);
    mock.registers = 0;
    CU_ASSERT(tcp_desc->init(SELF, &old) < 0);
    CU_ASSERT_EQUAL(mock.registers, 0);
    CU_ASSERT_EQUAL(mock.wrong_object, 0);
}

static void test_tcp_defaults(void)
{
    static const char *const none[] = {NULL};
    const zl_handler_t *h = tcp_instance(none);

    if (!h)
        return;
    session_open(h);
    h->on_connect(SESS, mock.state, NULL);
    h->on_manager(SESS, mock.state);
    CHECK_EVENTS(""); /* nothing configured: nothing sent, no stdin read */
    CHECK_LOG("message connected to 127.0.0.1:9000");
    session_close(h);
    tcp_instance_end(h);
}

static void test_tcp_bad_mode(void)
{
    static const char *const bogus[] = {"mode", "bogus", NULL};
    const zl_handler_t *h = plugin_handler(tcp_desc);
    void *data = NULL;
    const char *msg;

    if (!h)
        return;
    mock.config = bogus;
    CU_ASSERT(h->instance_new(INST, &data) < 0);
    CU_ASSERT_PTR_NULL(data);
    CU_ASSERT_EQUAL_FATAL(mock.config_errors->len, 1);
    msg = g_ptr_array_index(mock.config_errors, 0);
    CHECK(g_str_has_prefix(msg, "mode: ") && strstr(msg, "'bogus'") &&
              strstr(msg, "log or stdio"),
          "the error names the key, the value and the choices: %s", msg);
}

static void test_tcp_bad_escapes(void)
{
    static const struct {
        const char *key, *value;
    } bad[] = {
        {"send", "a\\qb"},  /* no such escape */
        {"send", "abc\\"},  /* lone backslash at the end */
        {"send", "\\xg0"},  /* \x without hex digits */
        {"tick", "\\400"},  /* octal above a byte */
        {"tick", "t{n}\\"},
    };
    const zl_handler_t *h = plugin_handler(tcp_desc);

    if (!h)
        return;
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        const char *const config[] = {bad[i].key, bad[i].value, NULL};
        char *prefix = g_strdup_printf("%s: ", bad[i].key);
        void *data = NULL;
        int rc;

        g_ptr_array_set_size(mock.config_errors, 0);
        mock.config = config;
        rc = h->instance_new(INST, &data);
        CHECK(rc < 0 && data == NULL, "%s = %s refused (%d)", bad[i].key,
              bad[i].value, rc);
        if (CHECK(mock.config_errors->len == 1, "%s = %s: one error (%u)",
                  bad[i].key, bad[i].value, mock.config_errors->len))
            CHECK(g_str_has_prefix(g_ptr_array_index(mock.config_errors, 0),
                                   prefix),
                  "the error names the key: %s",
                  (char *)g_ptr_array_index(mock.config_errors, 0));
        g_free(prefix);
    }

    /* Every problem is reported, not just the first. */
    {
        static const char *const two[] = {"mode", "x", "send", "\\q", NULL};
        void *data = NULL;

        g_ptr_array_set_size(mock.config_errors, 0);
        mock.config = two;
        CU_ASSERT(h->instance_new(INST, &data) < 0);
        CU_ASSERT_EQUAL(mock.config_errors->len, 2);
    }
}

/* ------------------------------------------------------- tcp: log mode */

static void test_tcp_send_escapes(void)
{
    static const char *const config[] = {
        "send", "hi\\n\\t\\x41\\101\\0\\\\\\\"\\x7", NULL};
    static const uint8_t want[] = {'h', 'i', '\n', '\t', 'A', 'A', '\0',
                                   '\\', '"', 0x07};
    const zl_handler_t *h = tcp_instance(config);

    if (!h)
        return;
    session_open(h);
    CHECK_EVENTS(""); /* nothing before the connection */
    h->on_connect(SESS, mock.state, NULL);
    CU_ASSERT_EQUAL(mock.sends->len, 1);
    CHECK_SEND(0, want, sizeof want);
    /* Every successful connect sends it again (a reconnecting client). */
    h->on_err(SESS, mock.state, &eof);
    h->on_connect(SESS, mock.state, NULL);
    CU_ASSERT_EQUAL(mock.sends->len, 2);
    CHECK_SEND(1, want, sizeof want);
    session_close(h);
    tcp_instance_end(h);
    CU_ASSERT_EQUAL(mock.wrong_object, 0);
}

static void test_tcp_simple_send(void)
{
    static const char *const config[] = {"send", "hi\\n", NULL};
    const zl_handler_t *h = tcp_instance(config);

    if (!h)
        return;
    session_open(h);
    h->on_connect(SESS, mock.state, NULL);
    CHECK_EVENTS("send:hi\\n");
    CHECK_SEND(0, "hi\n", 3);
    session_close(h);
    tcp_instance_end(h);
}

static void test_tcp_connect_failed(void)
{
    static const char *const config[] = {"send", "hi", "tick", "t", NULL};
    const zl_handler_t *h = tcp_instance(config);

    if (!h)
        return;
    session_open(h);
    h->on_connect(SESS, mock.state, &refused);
    h->on_manager(SESS, mock.state); /* still not connected */
    CHECK_EVENTS("");
    CHECK_LOG(refused.message);
    session_close(h);
    tcp_instance_end(h);
}

static void test_tcp_tick(void)
{
    static const char *const config[] = {"tick", "t{n}\\n", NULL};
    const zl_handler_t *h = tcp_instance(config);

    if (!h)
        return;
    session_open(h);
    h->on_manager(SESS, mock.state); /* connecting: no tick */
    h->on_connect(SESS, mock.state, NULL);
    h->on_manager(SESS, mock.state);
    h->on_manager(SESS, mock.state);
    CU_ASSERT_EQUAL(mock.sends->len, 2);
    CHECK_SEND(0, "t1\n", 3);
    CHECK_SEND(1, "t2\n", 3);
    /* Lost: no ticks; the count goes on for the session. */
    h->on_err(SESS, mock.state, &eof);
    h->on_manager(SESS, mock.state);
    CU_ASSERT_EQUAL(mock.sends->len, 2);
    h->on_connect(SESS, mock.state, NULL);
    h->on_manager(SESS, mock.state);
    CHECK_SEND(2, "t3\n", 3);
    session_close(h);
    tcp_instance_end(h);
}

static void test_tcp_tick_placeholders(void)
{
    static const char *const config[] = {"tick", "{n}:{n}{x}{n", NULL};
    const zl_handler_t *h = tcp_instance(config);

    if (!h)
        return;
    session_open(h);
    h->on_connect(SESS, mock.state, NULL);
    for (int i = 0; i < 10; i++)
        h->on_manager(SESS, mock.state);
    CU_ASSERT_EQUAL(mock.sends->len, 10);
    CHECK_SEND(9, "10:10{x}{n", 10);
    session_close(h);
    tcp_instance_end(h);
}

static void test_tcp_log_exchange(void)
{
    static const char *const config[] = {"send", "hello from zltk\\n",
                                         "mode", "log", NULL};
    const zl_handler_t *h = tcp_instance(config);
    char big[100];
    int i;

    if (!h)
        return;
    session_open(h);
    h->on_connect(SESS, mock.state, NULL);
    recv_bytes(h, "hello from zltk\n", 16);
    memset(big, 'x', sizeof big);
    big[0] = '\x01';
    recv_bytes(h, big, sizeof big);
    h->on_err(SESS, mock.state, &eof);
    session_close(h);

    CHECK_LOG("message connected to 127.0.0.1:9000");
    CHECK_LOG("message sent 16 bytes: \"hello from zltk\\n\"");
    CHECK_LOG("message received 16 bytes: \"hello from zltk\\n\"");
    i = log_find("received 100 bytes: \"\\x01xxx");
    if (CHECK(i >= 0, "the long receive is logged")) {
        const char *l = g_ptr_array_index(mock.logs, (guint)i);
        CHECK(strlen(l) < 120 && strstr(l, "\xe2\x80\xa6"),
              "the long receive is cut short with an ellipsis: %s", l);
    }
    CHECK_LOG(eof.message);
    CHECK_LOG("16 bytes sent, 116 bytes received");
    CHECK_EVENTS("send:hello from zltk\\n");
    tcp_instance_end(h);
    CU_ASSERT_EQUAL(mock.wrong_object, 0);
}

/* ----------------------------------------------------- tcp: stdio mode */

static const char *const stdio_config[] = {"mode", "stdio", NULL};

/* Steps of a stdio test, run on the mock's poller thread as the host runs
 * session callbacks; between steps the poller serves the plugin's fds. */
typedef enum {
    ST_OPEN, ST_CONNECT, ST_REFUSED, ST_RECV, ST_BUSY, ST_IDLE, ST_EOF,
    ST_CLOSE, ST_SNAP
} step_op_t;

typedef struct step {
    const zl_handler_t *h;
    step_op_t op;
    const void *data;
    size_t len;
    char *events; /* ST_SNAP: a copy of mock.events */
} step_t;

static void step_run(void *arg)
{
    step_t *st = arg;
    const zl_handler_t *h = st->h;

    switch (st->op) {
    case ST_OPEN: session_open(h); break;
    case ST_CONNECT: h->on_connect(SESS, mock.state, NULL); break;
    case ST_REFUSED: h->on_connect(SESS, mock.state, &refused); break;
    case ST_RECV: recv_bytes(h, st->data, st->len); break;
    case ST_BUSY: h->on_busy(SESS, mock.state, true); break;
    case ST_IDLE: h->on_busy(SESS, mock.state, false); break;
    case ST_EOF: h->on_err(SESS, mock.state, &eof); break;
    case ST_CLOSE: session_close(h); break;
    case ST_SNAP: st->events = g_strdup(mock.events->str); break;
    }
}

static void step(const zl_handler_t *h, step_op_t op, const void *data,
                 size_t len)
{
    step_t st = {.h = h, .op = op, .data = data, .len = len};

    zl_poller_sync(mock_poller, step_run, &st);
}

/* The events so far, read on the poller (g_free it). */
static char *events_now(void)
{
    step_t st = {.op = ST_SNAP};

    zl_poller_sync(mock_poller, step_run, &st);
    return st.events;
}

/* Until the events are want (the plugin's fd callbacks run meanwhile);
 * false after WAIT_MS, with what they were in *last (g_free it). */
static bool events_become(const char *want, char **last)
{
    for (unsigned i = 0;; i++) {
        char *now = events_now();

        if (!strcmp(now, want) || i >= WAIT_MS / 10) {
            bool same = !strcmp(now, want);
            *last = now;
            return same;
        }
        g_free(now);
        zl_test_sleep_ms(10);
    }
}

#define WAIT_EVENTS(want)                                                    \
    do {                                                                     \
        char *last_;                                                         \
        bool ok_ = events_become((want), &last_);                            \
        CHECK(ok_, "events: \"%s\", expected \"%s\"", last_, (want));        \
        g_free(last_);                                                       \
    } while (0)

/* The events now, read on the poller: while the plugin watches a stream,
 * its fd callbacks may be running there. */
#define CHECK_EVENTS_NOW(want)                                               \
    do {                                                                     \
        char *now_ = events_now();                                           \
        CHECK(!strcmp(now_, (want)), "events: \"%s\", expected \"%s\"", now_, \
              (want));                                                       \
        g_free(now_);                                                        \
    } while (0)

/* Point fd target at path instead (the test's redirect, with no pipe). */
static bool redirect_path(redirect_t *r, int target, const char *path,
                          int flags)
{
    int fd = open(path, flags | O_CLOEXEC);

    r->target = target;
    r->other = -1;
    r->saved = -1;
    if (!CHECK(fd >= 0, "open %s: %s", path, g_strerror(errno)))
        return false;
    fflush(stdout);
    r->saved = dup(target);
    dup2(fd, target);
    close(fd);
    return true;
}

/* Whether fd's open file description is non-blocking (-1: unknown). */
static int nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    return fl < 0 ? -1 : (fl & O_NONBLOCK) != 0;
}

/* Exactly len bytes from fd (blocking), or fewer at its end. */
static GByteArray *read_exactly(int fd, size_t len)
{
    GByteArray *a = g_byte_array_new();
    uint8_t buf[4096];

    while (a->len < len) {
        size_t want = len - a->len < sizeof buf ? len - a->len : sizeof buf;
        ssize_t n = read(fd, buf, want);

        if (n <= 0)
            break;
        g_byte_array_append(a, buf, (guint)n);
    }
    return a;
}

static void test_tcp_stdio_recv_to_stdout(void)
{
    static const uint8_t bin[] = {'l', 'i', 'n', 'e', '\n', 0, 0xff, '\r'};
    const zl_handler_t *h = tcp_instance(stdio_config);
    redirect_t out;
    GByteArray *got;

    if (!h || !redirect(&out, 1))
        goto end;
    step(h, ST_OPEN, NULL, 0);
    step(h, ST_RECV, bin, sizeof bin);
    step(h, ST_RECV, "more", 4);
    got = drain(out.other);
    step(h, ST_CLOSE, NULL, 0);
    redirect_end(&out);
    CHECK_BYTES(got->data, got->len, "line\n\0\xff\rmore", 12, "stdout");
    g_byte_array_unref(got);
    CHECK_EVENTS(""); /* nothing sent back, no stdin read before connect */
    CU_ASSERT_EQUAL(log_count("bytes: \""), 0); /* no exchange logs */
end:
    if (h)
        tcp_instance_end(h);
}

/* No reader: EPIPE, as after `| head -c 100`.  A normal end, not a
 * failure, and the process survives SIGPIPE. */
static void test_tcp_stdio_stdout_closed(void)
{
    const zl_handler_t *h = tcp_instance(stdio_config);
    void (*old_pipe)(int);
    redirect_t out;

    if (!h || !redirect(&out, 1))
        goto end;
    close(out.other);
    out.other = -1;
    step(h, ST_OPEN, NULL, 0);
    /* zltk-host ignores SIGPIPE, the runner too: the plugin must hold it
     * back itself, or an embedding program dies here. */
    old_pipe = signal(SIGPIPE, SIG_DFL);
    step(h, ST_RECV, "abc", 3);
    signal(SIGPIPE, old_pipe);
    step(h, ST_CLOSE, NULL, 0);
    redirect_end(&out);
    CHECK_EVENTS("close");
    CHECK_LOG("standard output was closed by its reader");
end:
    if (h)
        tcp_instance_end(h);
}

typedef struct reader_run {
    int fd;
    GByteArray *got;
} reader_run_t;

/* Read a little of a full pipe, then go away. */
static void *leaving_reader(void *arg)
{
    reader_run_t *r = arg;
    uint8_t buf[16];
    ssize_t n;

    n = read(r->fd, buf, sizeof buf);
    if (n > 0)
        g_byte_array_append(r->got, buf, (guint)n);
    close(r->fd);
    return NULL;
}

/* 1 MiB arrives at once: what the pipe does not take is held and the peer
 * paused; the reader then leaves, which ends the session normally. */
static void test_tcp_stdio_stdout_reader_leaves(void)
{
    const zl_handler_t *h = tcp_instance(stdio_config);
    reader_run_t r = {.got = g_byte_array_new()};
    size_t len = 1024 * 1024;
    uint8_t *big = g_malloc(len);
    void (*old_pipe)(int);
    redirect_t out;
    GThread *t;

    if (!h || !redirect(&out, 1))
        goto end;
    memset(big, 'z', len);
    r.fd = out.other;
    out.other = -1; /* the reader closes it */
    old_pipe = signal(SIGPIPE, SIG_DFL); /* as an embedding program may */
    step(h, ST_OPEN, NULL, 0);
    step(h, ST_RECV, big, len); /* never blocks the poller */
    CHECK_EVENTS_NOW("pause");
    t = g_thread_new("leaving-reader", leaving_reader, &r);
    g_thread_join(t);
    WAIT_EVENTS("pause close");
    step(h, ST_CLOSE, NULL, 0);
    signal(SIGPIPE, old_pipe);
    redirect_end(&out);
    CHECK(r.got->len > 0, "the reader got the first bytes");
    CHECK_LOG("standard output was closed by its reader");
end:
    g_byte_array_unref(r.got);
    g_free(big);
    if (h)
        tcp_instance_end(h);
}

static void test_tcp_stdio_stdout_full(void)
{
    const zl_handler_t *h = tcp_instance(stdio_config);
    uint8_t fill[4096];
    redirect_t out;
    GByteArray *got;
    size_t filled = 0;
    ssize_t n;

    if (!h || !redirect(&out, 1))
        goto end;
    memset(fill, '.', sizeof fill);
    fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK); /* to fill it */
    while ((n = write(1, fill, sizeof fill)) > 0)
        filled += (size_t)n;
    fcntl(1, F_SETFL, fcntl(1, F_GETFL) & ~O_NONBLOCK);
    step(h, ST_OPEN, NULL, 0);
    step(h, ST_RECV, "abc", 3);
    step(h, ST_RECV, "def", 3);
    /* Full: reading from the peer stops, once; nothing blocked. */
    CHECK_EVENTS_NOW("pause");
    got = read_exactly(out.other, filled);
    CU_ASSERT_EQUAL(got->len, filled);
    g_byte_array_unref(got);
    /* Drained: the held bytes go out, then reading resumes. */
    WAIT_EVENTS("pause resume");
    got = drain(out.other);
    step(h, ST_CLOSE, NULL, 0);
    redirect_end(&out);
    CHECK_BYTES(got->data, got->len, "abcdef", 6, "stdout after the drain");
    g_byte_array_unref(got);
    CU_ASSERT_EQUAL(mock.closes, 0);
end:
    if (h)
        tcp_instance_end(h);
}

/* /dev/full: ENOSPC, a failure that names standard output. */
static void test_tcp_stdio_stdout_error(void)
{
    const zl_handler_t *h = tcp_instance(stdio_config);
    redirect_t out;

    if (!h || !redirect_path(&out, 1, "/dev/full", O_WRONLY))
        goto end;
    step(h, ST_OPEN, NULL, 0);
    step(h, ST_RECV, "abc", 3);
    step(h, ST_RECV, "def", 3); /* dropped: the session is ending */
    step(h, ST_CLOSE, NULL, 0);
    redirect_end(&out);
    CHECK_EVENTS("fail");
    CHECK_LOG("cannot write to standard output: No space left on device");
end:
    if (h)
        tcp_instance_end(h);
}

static void test_tcp_stdio_stdin_eof(void)
{
    const zl_handler_t *h = tcp_instance(stdio_config);
    redirect_t in;

    if (!h || !redirect(&in, 0))
        goto end;
    CU_ASSERT_EQUAL(write(in.other, "xyz", 3), 3);
    close(in.other);
    in.other = -1;
    step(h, ST_OPEN, NULL, 0);
    step(h, ST_REFUSED, NULL, 0);
    zl_test_sleep_ms(20);
    CHECK_EVENTS(""); /* not connected: standard input waits */
    step(h, ST_CONNECT, NULL, 0);
    WAIT_EVENTS("send:xyz shutdown");
    CHECK_SEND(0, "xyz", 3);
    /* Output goes on after the half-close, until the peer ends. */
    step(h, ST_EOF, NULL, 0);
    step(h, ST_CLOSE, NULL, 0);
    redirect_end(&in);
    CHECK_EVENTS("send:xyz shutdown");
end:
    if (h)
        tcp_instance_end(h);
}

static void test_tcp_stdio_backpressure(void)
{
    const zl_handler_t *h = tcp_instance(stdio_config);
    char *now;
    redirect_t in;

    if (!h || !redirect(&in, 0))
        goto end;
    CU_ASSERT_EQUAL(write(in.other, "abc", 3), 3);
    mock.send_rc = ZL_CONN_BUSY;
    step(h, ST_OPEN, NULL, 0);
    step(h, ST_CONNECT, NULL, 0);
    WAIT_EVENTS("send:abc");
    /* Busy: standard input is not read, whatever arrives. */
    step(h, ST_BUSY, NULL, 0);
    CU_ASSERT_EQUAL(write(in.other, "def", 3), 3);
    zl_test_sleep_ms(50);
    now = events_now();
    CHECK(!strcmp(now, "send:abc"), "nothing read while busy: \"%s\"", now);
    g_free(now);
    mock.send_rc = 0; /* the poller reads it only after the next step */
    step(h, ST_IDLE, NULL, 0);
    WAIT_EVENTS("send:abc send:def");
    close(in.other);
    in.other = -1;
    WAIT_EVENTS("send:abc send:def shutdown");
    step(h, ST_CLOSE, NULL, 0);
    redirect_end(&in);
end:
    if (h)
        tcp_instance_end(h);
}

/* A directory: read(2) fails with EISDIR, a failure naming stdin. */
static void test_tcp_stdio_stdin_error(void)
{
    const zl_handler_t *h = tcp_instance(stdio_config);
    redirect_t in;

    if (!h || !redirect_path(&in, 0, "/", O_RDONLY))
        goto end;
    step(h, ST_OPEN, NULL, 0);
    step(h, ST_CONNECT, NULL, 0);
    WAIT_EVENTS("fail");
    step(h, ST_CLOSE, NULL, 0);
    redirect_end(&in);
    CHECK_LOG("cannot read standard input: Is a directory");
end:
    if (h)
        tcp_instance_end(h);
}

/* The pipes shared with the test (as with a shell) never become
 * non-blocking, and on_closed leaves no descriptor behind. */
static void test_tcp_stdio_close_releases(void)
{
    const zl_handler_t *h = tcp_instance(stdio_config);
    redirect_t in = {.saved = -1, .other = -1}, out = {.saved = -1, .other = -1};
    int fds_before;

    if (!h || !redirect(&in, 0) || !redirect(&out, 1))
        goto end;
    fds_before = zl_test_count_entries("/proc/self/fd");
    step(h, ST_OPEN, NULL, 0);
    step(h, ST_CONNECT, NULL, 0); /* stdin watched, nothing to read */
    CU_ASSERT_EQUAL(nonblocking(0), 0);
    CU_ASSERT_EQUAL(nonblocking(1), 0);
    step(h, ST_CLOSE, NULL, 0);
    CHECK(zl_test_count_entries("/proc/self/fd") == fds_before,
          "no descriptor left behind (%d fds, expected %d)",
          zl_test_count_entries("/proc/self/fd"), fds_before);
    CU_ASSERT_EQUAL(nonblocking(0), 0);
    CU_ASSERT_EQUAL(nonblocking(1), 0);
    CHECK_EVENTS("");
end:
    redirect_end(&out);
    redirect_end(&in);
    if (h)
        tcp_instance_end(h);
}

/* ---------------------------------------------------------------- suite */

static const zl_plugin_desc_t *load(const char *dir, const char *name)
{
    char *path = g_strdup_printf("%s/%s.so", dir, name);
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    zl_plugin_entry_fn entry;
    const zl_plugin_desc_t *d = NULL;

    if (!dl) {
        fprintf(stderr, "handlers suite: %s (build it with make)\n", dlerror());
        g_free(path);
        return NULL;
    }
    /* Never dlclose: like the host, keep plugin code mapped. */
    *(void **)&entry = dlsym(dl, ZLTK_PLUGIN_ENTRY_SYMBOL);
    if (entry)
        d = entry();
    if (!d || d->magic != ZLTK_PLUGIN_MAGIC || !d->init)
        fprintf(stderr, "handlers suite: %s is not a zltk plugin\n", path);
    g_free(path);
    return d && d->magic == ZLTK_PLUGIN_MAGIC && d->init ? d : NULL;
}

static int suite_init(void)
{
    const char *top = getenv("top_builddir");
    char *dir = g_build_filename(top && *top ? top : ".", "plugins", ".libs",
                                 NULL);

    tcp_desc = load(dir, "tcp");
    echo_desc = load(dir, "echo");
    g_free(dir);
    mock_reset();
    if (zl_poller_new(&mock_poller, &(zl_poller_options_t){
                                        .name = "handlers-poller"}) < 0)
        return -1;
    return tcp_desc && echo_desc ? 0 : -1;
}

static int suite_cleanup(void)
{
    if (mock_poller)
        zl_poller_free(mock_poller);
    mock_poller = NULL;
    mock_reset();
    g_ptr_array_unref(mock.logs);
    g_ptr_array_unref(mock.config_errors);
    g_ptr_array_unref(mock.sends);
    g_string_free(mock.events, TRUE);
    memset(&mock, 0, sizeof mock);
    return 0;
}

/* Each test starts from a clean mock. */
static void setup(void)
{
    mock_reset();
}

#define T(name, fn) {name, fn}

int zl_test_register_handlers(void)
{
    static const zl_test_case_t cases[] = {
        T("echo: registers a server handler", test_echo_register),
        T("echo: on_recv sends the same buffer back", test_echo_recv),
        T("echo: a busy send pauses once, on_busy(false) resumes",
          test_echo_busy_send_pauses),
        T("echo: on_busy(true) pauses", test_echo_busy_pauses),
        T("tcp: registers a client handler with its keys", test_tcp_register),
        T("tcp: no keys: nothing sent", test_tcp_defaults),
        T("tcp: mode=bogus is a config error", test_tcp_bad_mode),
        T("tcp: bad escapes are config errors", test_tcp_bad_escapes),
        T("tcp: send with escapes on every connect", test_tcp_send_escapes),
        T("tcp: send = hi\\n", test_tcp_simple_send),
        T("tcp: failed connect sends nothing, logs why",
          test_tcp_connect_failed),
        T("tcp: tick {n} counts per session", test_tcp_tick),
        T("tcp: tick placeholders", test_tcp_tick_placeholders),
        T("tcp: log mode logs the exchange and totals", test_tcp_log_exchange),
        T("tcp: stdio: received bytes go to stdout",
          test_tcp_stdio_recv_to_stdout),
        T("tcp: stdio: stdout's reader gone (EPIPE) closes quietly",
          test_tcp_stdio_stdout_closed),
        T("tcp: stdio: stdout reader leaving mid-transfer closes the session",
          test_tcp_stdio_stdout_reader_leaves),
        T("tcp: stdio: full stdout pauses the peer, drained resumes",
          test_tcp_stdio_stdout_full),
        T("tcp: stdio: a stdout write error fails the session",
          test_tcp_stdio_stdout_error),
        T("tcp: stdio: stdin is sent, EOF half-closes",
          test_tcp_stdio_stdin_eof),
        T("tcp: stdio: busy stops reading stdin until idle",
          test_tcp_stdio_backpressure),
        T("tcp: stdio: a stdin read error fails the session",
          test_tcp_stdio_stdin_error),
        T("tcp: stdio: close releases the streams, shared pipes stay blocking",
          test_tcp_stdio_close_releases),
        {NULL, NULL},
    };
    /* zl_test_add_suite, plus a setup that resets the mock before each
     * test. */
    CU_pSuite s = CU_add_suite_with_setup_and_teardown(
        "handlers", suite_init, suite_cleanup, setup, NULL);

    if (!s)
        return CU_get_error();
    for (const zl_test_case_t *c = cases; c->name; c++)
        if (!CU_add_test(s, c->name, c->fn))
            return CU_get_error();
    return 0;
}
