/* zltk tests — suite "embed": the embedding API as a program uses it.
 *
 * One zl_handler_t serves a plain client and server on 127.0.0.1 and the
 * same pair over the tls layer loaded by name (layer_name = "tls", from
 * ZLTK_PLUGIN_PATH = $top_builddir/plugins/.libs), configured with
 * zl_setting_t pairs.  The handler calls zl_session_* directly.  Each test
 * starts and stops the runtime with zl_start()/zl_stop(), so the layer is
 * loaded and unloaded once per test.  Also: the errors zl_instance_open()
 * hands back (unknown layer, unknown key, missing file, zero-filled
 * options, address in use), the host API table pointing at the public
 * session functions, and zl_start()/zl_stop() pairs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "test.h"
#include "tls-certs.h"

#define WAIT_MS (5000u * zl_test_slow())

static zl_test_tls_certs_t certs;

/* One side's record, the instance's user data. */
typedef struct side {
    bool server;
    atomic_int connected, errs, closed, timer, posted;
    atomic_long rbytes;
    char rx[256];         /* what a client received (its poller) */
    char err_msg[512];    /* on_err's message (its poller) */
    int err_code;
    char version[64];     /* transport_info("version") at connect */
    atomic_int done;      /* a client got "pong:ping" and "posted" */
    atomic_int bad;       /* checks failed on a poller thread */
    _Atomic(zl_session_t *) ref; /* a client's session, referenced */
} side_t;

/* CUnit's asserts are for the main thread: pollers count failures. */
#define CHK(sd, cond)                                                       \
    do {                                                                    \
        if (!(cond))                                                        \
            atomic_fetch_add(&(sd)->bad, 1);                                \
    } while (0)

static side_t *side_of(zl_session_t *s)
{
    return zl_instance_user_data(zl_session_instance(s));
}

static uint64_t on_timer(zl_session_t *s, void *state, void *arg)
{
    (void)state;
    (void)arg;
    atomic_store(&side_of(s)->timer, 1);
    return 0;
}

static void h_connect(zl_session_t *s, void *state, const zl_error_t *err)
{
    side_t *sd = side_of(s);
    const char *v;

    (void)state;
    if (err)
        return;
    if (sd->server) {
        atomic_fetch_add(&sd->connected, 1);
        return;
    }
    v = zl_session_transport_info(s, "version");
    g_strlcpy(sd->version, v ? v : "", sizeof(sd->version));
    CHK(sd, zl_session_peer(s) && zl_addr_port(zl_session_peer(s)));
    CHK(sd, zl_session_local(s) != NULL);
    CHK(sd, zl_session_poller(s) == zl_poller_current());
    CHK(sd, strstr(zl_session_name(s), "#") != NULL);
    CHK(sd, zl_session_add_timer(s, 10, on_timer, NULL, NULL) == 0);
    atomic_store(&sd->ref, zl_session_ref(s));
    CHK(sd, zl_session_send(s, "ping", 4) == 0);
    /* Last: the test thread takes the reference once it sees this. */
    atomic_fetch_add(&sd->connected, 1);
}

/* Server: answer every chunk with "pong:" and the chunk.  Client: keep
 * what arrives; done once both sends came back (one or two chunks). */
static void h_recv(zl_session_t *s, void *state, zl_buf_t *b)
{
    side_t *sd = side_of(s);
    size_t have;

    (void)state;
    atomic_fetch_add(&sd->rbytes, (long)b->len);
    if (sd->server) {
        zl_buf_t *out = zl_buf_new_copy("pong:", 5);

        CHK(sd, zl_session_send_buf(s, out) == 0);
        CHK(sd, zl_session_send(s, b->data, b->len) == 0);
        return;
    }
    have = strlen(sd->rx);
    if (have + b->len < sizeof(sd->rx))
        memcpy(sd->rx + have, b->data, b->len);
    /* TCP may join the two sends into one read: "pong:pingposted". */
    if (strstr(sd->rx, "pong:ping") && strstr(sd->rx, "posted"))
        atomic_store(&sd->done, 1);
}

static void h_err(zl_session_t *s, void *state, const zl_error_t *err)
{
    side_t *sd = side_of(s);

    (void)state;
    if (!atomic_load(&sd->errs)) {
        sd->err_code = err->code;
        g_strlcpy(sd->err_msg, err->message ? err->message : "",
                  sizeof(sd->err_msg));
    }
    atomic_fetch_add(&sd->errs, 1);
}

static void h_closed(zl_session_t *s, void *state)
{
    (void)state;
    atomic_fetch_add(&side_of(s)->closed, 1);
}

/* The one handler of every test: client and server alike. */
static const zl_handler_t peer_h = {
    .struct_size = sizeof(zl_handler_t),
    .state_size = 16,
    .on_connect = h_connect,
    .on_recv = h_recv,
    .on_err = h_err,
    .on_closed = h_closed,
};

static void post_send(zl_session_t *s, void *state, void *arg)
{
    (void)state;
    atomic_store(&side_of(s)->posted, 1);
    CHK(side_of(s), zl_session_send(s, arg, strlen(arg)) == 0);
}

/* ------------------------------------------------------------ helpers */

static void start(void)
{
    zl_runtime_options_t ro = {.pollers = 2, .workers = 2};

    CU_ASSERT_EQUAL_FATAL(zl_start(&ro), 0);
}

static zl_instance_t *open_server(side_t *sd, const char *layer,
                                  const zl_setting_t *settings, uint16_t port,
                                  GError **error)
{
    zl_instance_options_t o = ZL_INSTANCE_OPTIONS_INIT;

    sd->server = true;
    o.name = "embed-srv";
    o.server = true;
    o.handler = &peer_h;
    o.server_opts.host = "127.0.0.1";
    o.server_opts.port = port;
    o.layer_name = layer;
    o.settings = settings;
    o.user_data = sd;
    return zl_instance_open(&o, error);
}

static zl_instance_t *open_client(side_t *sd, const char *layer,
                                  const zl_setting_t *settings, uint16_t port,
                                  GError **error)
{
    zl_instance_options_t o = ZL_INSTANCE_OPTIONS_INIT;

    o.name = "embed-cli";
    o.handler = &peer_h;
    o.client.host = "127.0.0.1";
    o.client.port = port;
    o.client.connect_timeout_ms = 3000;
    o.layer_name = layer;
    o.settings = settings;
    o.user_data = sd;
    return zl_instance_open(&o, error);
}

static uint16_t port_of(const zl_instance_t *srv)
{
    return zl_addr_port(zl_instance_server_addr(srv));
}

static bool has(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle);
}

/* A client to a server, data both ways, a post from this thread. */
static void round_trip(const char *layer, const zl_setting_t *ss,
                       const zl_setting_t *cs)
{
    side_t *srv_s = calloc(1, sizeof(side_t));
    side_t *cli_s = calloc(1, sizeof(side_t));
    zl_instance_t *srv, *cli;
    zl_session_t *ref;
    GError *error = NULL;

    start();
    srv = open_server(srv_s, layer, ss, 0, &error);
    ZL_TEST_CHECK(srv != NULL, "server: %s", error ? error->message : "?");
    g_clear_error(&error);
    cli = srv ? open_client(cli_s, layer, cs, port_of(srv), &error) : NULL;
    ZL_TEST_CHECK(cli != NULL, "client: %s", error ? error->message : "?");
    g_clear_error(&error);
    if (cli)
        CU_ASSERT(zl_test_wait_flag(&cli_s->connected, WAIT_MS));
    ref = atomic_exchange(&cli_s->ref, NULL);
    if (ref) { /* a session call from this thread, through a reference */
        CU_ASSERT_EQUAL(zl_session_post(ref, post_send, "posted", NULL), 0);
        zl_session_unref(ref);
    }
    ZL_TEST_CHECK(zl_test_wait_flag(&cli_s->done, WAIT_MS),
                  "client received '%s' (error '%s')", cli_s->rx,
                  cli_s->err_msg);
    CU_ASSERT(zl_test_wait_flag(&cli_s->timer, WAIT_MS));
    CU_ASSERT(atomic_load(&cli_s->posted));
    CU_ASSERT_EQUAL(atomic_load(&srv_s->rbytes), 4 + 6);
    CU_ASSERT_EQUAL(atomic_load(&cli_s->bad) + atomic_load(&srv_s->bad), 0);
    if (layer)
        ZL_TEST_CHECK(has(cli_s->version, "TLS"), "version '%s'",
                      cli_s->version);
    else
        CU_ASSERT_STRING_EQUAL(cli_s->version, "");
    zl_instance_close(cli);
    zl_instance_close(srv);
    CU_ASSERT_EQUAL(atomic_load(&cli_s->closed), cli ? 1 : 0);
    zl_stop();
    free(srv_s);
    free(cli_s);
}

/* ------------------------------------------------------------ tests */

static void test_plain(void)
{
    round_trip(NULL, NULL, NULL);
}

static void test_tls(void)
{
    const zl_setting_t ss[] = {{"tls-cert", certs.srv},
                               {"tls-key", certs.srv_key},
                               {NULL, NULL}};
    const zl_setting_t cs[] = {{"tls-ca", certs.ca},
                               {"tls-server-name", "localhost"},
                               {NULL, NULL}};

    round_trip("tls", ss, cs);
}

static void test_wrong_ca(void)
{
    const zl_setting_t ss[] = {{"tls-cert", certs.srv},
                               {"tls-key", certs.srv_key},
                               {NULL, NULL}};
    const zl_setting_t cs[] = {{"tls-ca", certs.self},
                               {"tls-verify", "true"},
                               {NULL, NULL}};
    side_t *srv_s = calloc(1, sizeof(side_t));
    side_t *cli_s = calloc(1, sizeof(side_t));
    zl_instance_t *srv, *cli = NULL;
    char last[512];

    start();
    srv = open_server(srv_s, "tls", ss, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL(srv);
    if (srv)
        cli = open_client(cli_s, "tls", cs, port_of(srv), NULL);
    CU_ASSERT_PTR_NOT_NULL(cli);
    if (cli) {
        CU_ASSERT(zl_test_wait_flag(&cli_s->errs, WAIT_MS));
        CU_ASSERT(zl_test_wait_flag(&cli_s->closed, WAIT_MS));
        CU_ASSERT_EQUAL(cli_s->err_code, ZL_ETLS);
        ZL_TEST_CHECK(has(cli_s->err_msg, "issuer"), "on_err: '%s'",
                      cli_s->err_msg);
        zl_instance_last_error(cli, last, sizeof(last));
        ZL_TEST_CHECK(has(last, "issuer"), "last error: '%s'", last);
        CU_ASSERT_EQUAL(atomic_load(&cli_s->rbytes), 0);
    }
    zl_instance_close(cli);
    zl_instance_close(srv);
    zl_stop();
    free(srv_s);
    free(cli_s);
}

/* zl_instance_open(o) fails, and its message contains want. */
static void expect_open_error(zl_instance_t *inst, GError *error,
                              const char *want, const char *want2, int line)
{
    zl_test_check_at(__FILE__, line, inst == NULL, "opened");
    zl_instance_close(inst);
    if (!zl_test_check_at(__FILE__, line, error != NULL, "no GError"))
        return;
    if (getenv("ZLTK_TEST_VERBOSE"))
        fprintf(stderr, "\n  line %d: %s (%s)\n", line, error->message,
                zl_err_name(error->code));
    zl_test_check_at(__FILE__, line, error->domain == ZL_ERROR,
                     "domain %s", g_quark_to_string(error->domain));
    zl_test_check_at(__FILE__, line, error->code < 0, "code %d",
                     error->code);
    zl_test_check_at(__FILE__, line, has(error->message, want) &&
                                         (!want2 || has(error->message, want2)),
                     "message '%s' lacks '%s' / '%s'", error->message, want,
                     want2 ? want2 : "");
    g_error_free(error);
}

static void test_errors(void)
{
    const zl_setting_t bad_key[] = {{"tls-ca", certs.ca},
                                    {"tls-bogus", "1"},
                                    {NULL, NULL}};
    const zl_setting_t no_file[] = {{"tls-ca", "/nonexistent/zltk-ca.pem"},
                                    {NULL, NULL}};
    const zl_setting_t plain_key[] = {{"tls-ca", certs.ca}, {NULL, NULL}};
    const zl_setting_t two_bad[] = {{"tls-bogus", "1"},
                                    {"tls-other", "2"},
                                    {NULL, NULL}};
    const char *path = g_getenv("ZLTK_PLUGIN_PATH");
    side_t sd = {0};
    zl_instance_options_t zero;
    zl_instance_t *srv, *inst;
    GError *error = NULL;

    start();
    inst = open_client(&sd, "tlss", NULL, 9, &error);
    expect_open_error(inst, error, "'tlss' not found", path, __LINE__);
    error = NULL;
    inst = open_client(&sd, "echo", NULL, 9, &error); /* a handler's */
    expect_open_error(inst, error, "echo.so provides no layer", NULL,
                      __LINE__);
    error = NULL;
    inst = open_client(&sd, "echo", NULL, 9, &error); /* loaded by now */
    expect_open_error(inst, error, "offers no layer", NULL, __LINE__);
    error = NULL;
    inst = open_client(&sd, "tls", bad_key, 9, &error);
    expect_open_error(inst, error, "tls-bogus", "unknown key", __LINE__);
    error = NULL;
    inst = open_client(&sd, "tls", two_bad, 9, &error);
    expect_open_error(inst, error, "tls-bogus: unknown key",
                      "\ntls-other: unknown key", __LINE__);
    error = NULL;
    inst = open_client(&sd, NULL, plain_key, 9, &error);
    expect_open_error(inst, error, "tls-ca: unknown key", NULL, __LINE__);
    error = NULL;
    inst = open_client(&sd, "tls", no_file, 9, &error);
    expect_open_error(inst, error, "tls-ca", "/nonexistent/zltk-ca.pem",
                      __LINE__);
    error = NULL;
    memset(&zero, 0, sizeof(zero));
    zero.name = "zero";
    zero.handler = &peer_h;
    zero.client.host = "127.0.0.1";
    zero.client.port = 9;
    inst = zl_instance_open(&zero, &error);
    expect_open_error(inst, error, "ZL_INSTANCE_OPTIONS_INIT", NULL,
                      __LINE__);
    error = NULL;
    srv = open_server(&sd, NULL, NULL, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(srv);
    inst = open_server(&sd, NULL, NULL, port_of(srv), &error);
    expect_open_error(inst, error, "cannot listen", "in use", __LINE__);
    zl_instance_close(srv);
    zl_stop();
    error = NULL;
    inst = open_client(&sd, NULL, NULL, 9, &error);
    expect_open_error(inst, error, "not running", NULL, __LINE__);
}

/* The table plugins get points at the very functions programs call. */
static void test_host_api_is_public(void)
{
    const zl_host_api_t *h = zl_plugins_host_api();

    CU_ASSERT(h->send == zl_session_send);
    CU_ASSERT(h->send_buf == zl_session_send_buf);
    CU_ASSERT(h->close == zl_session_close);
    CU_ASSERT(h->abort == zl_session_abort);
    CU_ASSERT(h->shutdown == zl_session_shutdown);
    CU_ASSERT(h->pause == zl_session_pause);
    CU_ASSERT(h->resume == zl_session_resume);
    CU_ASSERT(h->fail == zl_session_fail);
    CU_ASSERT(h->peer == zl_session_peer);
    CU_ASSERT(h->local == zl_session_local);
    CU_ASSERT(h->session_name == zl_session_name);
    CU_ASSERT(h->session_instance == zl_session_instance);
    CU_ASSERT(h->session_poller == zl_session_poller);
    CU_ASSERT(h->queued == zl_session_queued);
    CU_ASSERT(h->session_ref == zl_session_ref);
    CU_ASSERT(h->session_unref == zl_session_unref);
    CU_ASSERT(h->add_timer == zl_session_add_timer);
    CU_ASSERT(h->post == zl_session_post);
    CU_ASSERT(h->submit == zl_session_submit);
    CU_ASSERT(h->transport_info == zl_session_transport_info);
}

/* Two start/stop pairs in a row; a second start while running says so.
 * (Under ASan, the leak check at exit covers them.) */
static void test_start_stop_twice(void)
{
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL(zl_start(NULL), 0);
        CU_ASSERT_PTR_NOT_NULL(zl_runtime_pollers());
        CU_ASSERT_EQUAL(zl_start(NULL), -EALREADY);
        zl_stop();
        CU_ASSERT_PTR_NULL(zl_runtime_pollers());
        zl_stop(); /* no-op */
    }
}

/* ------------------------------------------------------------ suite */

static char *saved_path;

static int suite_init(void)
{
    const char *top = getenv("top_builddir");
    char *dir = g_build_filename(top && *top ? top : ".", "plugins", ".libs",
                                 NULL);
    char *abs = g_canonicalize_filename(dir, NULL);

    saved_path = g_strdup(g_getenv("ZLTK_PLUGIN_PATH"));
    g_setenv("ZLTK_PLUGIN_PATH", abs, TRUE);
    g_free(dir);
    g_free(abs);
    if (!zl_test_tls_certs_make(&certs)) {
        fprintf(stderr, "embed suite: cannot make the certificates\n");
        return -1;
    }
    return 0;
}

static int suite_cleanup(void)
{
    if (saved_path)
        g_setenv("ZLTK_PLUGIN_PATH", saved_path, TRUE);
    else
        g_unsetenv("ZLTK_PLUGIN_PATH");
    g_free(saved_path);
    saved_path = NULL;
    zl_test_tls_certs_remove(&certs);
    return 0;
}

int zl_test_register_embed(void)
{
    static const zl_test_case_t cases[] = {
        {"host API table is the public session API", test_host_api_is_public},
        {"zl_start/zl_stop twice", test_start_stop_twice},
        {"plain client and server, one handler", test_plain},
        {"the same handler over tls by name", test_tls},
        {"wrong CA: on_err and last error name it", test_wrong_ca},
        {"open errors come back as GError", test_errors},
        {NULL, NULL},
    };

    return zl_test_add_suite("embed", suite_init, suite_cleanup, cases);
}
