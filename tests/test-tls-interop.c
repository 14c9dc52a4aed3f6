/* zltk tests — the TLS layer against OpenSSL's own tools (suite
 * "tls-interop"; plugins/tls).
 *
 * The other side of every connection is an `openssl s_server` or
 * `openssl s_client` process, found on PATH (the openssl package): our
 * client against s_server, s_client against our server.  Our side runs as
 * zltk-host runs it: the tls plugin is loaded from
 * $top_builddir/plugins/.libs, and instances are made with
 * zl_instance_new() with the tls layer, a configuration table and the
 * recording handler below (which also echoes, on servers).  Suite init,
 * the configuration tables and the instance options are the harness
 * shared with suite "tls" (tls-certs.h).
 *
 * Certificates come from tls-certs.c (a CA, a server certificate for
 * localhost and 127.0.0.1, one for other.example, an expired one, a
 * self-signed one, a client certificate), made by suite init in a mkdtemp
 * directory; the tools' standard output and error go to files there, one
 * pair per process, and a failed check quotes their ends.
 *
 * Processes.  They are started with posix_spawn(), standard input from a
 * pipe (or /dev/null), and always stopped by their pid: SIGKILL, then
 * waitpid, both bounded.  Every wait is bounded (WAIT_MS, stretched by
 * $ZLTK_TEST_SLOW).  s_server runs with -naccept 1 on 127.0.0.1 and a port
 * found free by binding port 0 first (zl_test_closed_port()); if another
 * program takes the port meanwhile, s_server fails to bind and the start is
 * retried on a new port.  Nothing connects before s_server printed its
 * "ACCEPT" line.  Each test stops what it started at its end, and, in case
 * a fatal assertion cut a test short, the next test (and suite cleanup)
 * stops any process left over.
 *
 * Covered.  Our client against s_server: a verified echo (-rev) in TLS 1.3
 * and 1.2, both directions with SNI (default mode), refusals that name
 * the reason (self-signed, hostname / IP mismatch, expired, unknown CA,
 * protocol version) while s_server receives the matching alert,
 * tls-verify = false and its warning, mutual TLS with and without a client
 * certificate (-Verify 1), ALPN (s_server's choice, none in common),
 * resumption across a reconnect, a KeyUpdate from s_server.  s_client
 * against our server: a verified echo (-verify_return_error, -verify_ip),
 * TLS 1.2 with SNI, 256 KiB round trip, an s_client that does not trust
 * us, tls-verify-client = required with and without -cert, ALPN, a
 * KeyUpdate from s_client, a refused renegotiation, close_notify when our
 * server stops.  Cipher suites (what testssl.sh and sslscan audit): CBC and
 * static RSA suites refused (with an RSA key too: the "rsa" certificate),
 * the server's order winning in TLS 1.2 and 1.3, tls-ciphers and
 * tls-ciphersuites on both ends, what our client offers (s_server -rev's
 * "Client cipher list").
 *
 * Without openssl on PATH every test fails, saying so.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>

#include "test.h"
#include "tls-certs.h"

extern char **environ;

#define CHECK ZL_TEST_CHECK
#define WAIT_MS 5000u /* the most any one wait lasts (normal runs: far less) */
#define KIB 1024u

static const zl_host_api_t *host;
static zl_test_tls_plugins_t plugins; /* tls (tls-certs.h) */
static zl_test_tls_certs_t certs;
static char openssl_bin[PATH_MAX]; /* "" when not on PATH */

static unsigned slow_ms(unsigned ms)
{
    return ms * zl_test_slow();
}

static bool has(const char *hay, const char *needle)
{
    return hay && needle && strstr(hay, needle);
}

/* ------------------------------------------------------------ processes */

enum { P_OUT = 1, P_ERR = 2, P_BOTH = 3 };

#define MAXPROC 4

typedef struct proc {
    bool used;
    pid_t pid;     /* the child, > 0 until reaped */
    bool exited;   /* reaped: status is valid */
    int status;    /* waitpid status */
    int in;        /* write end of its standard input, -1: none */
    char name[16]; /* "s_server", "s_client" */
    char cmd[1200];
    char out[200], err[200];
    char dump[3600]; /* proc_dump()'s text */
} proc_t;

/* Static, so that a test cut short by a fatal assertion leaves nothing
 * that the next test cannot find and stop. */
static proc_t procs[MAXPROC];
static unsigned proc_seq;

/* Reap p if it has ended (never blocks). */
static void proc_poll(proc_t *p)
{
    int st;
    pid_t r;

    if (!p->used || p->exited || p->pid <= 0)
        return;
    do
        r = waitpid(p->pid, &st, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == p->pid) {
        p->exited = true;
        p->status = st;
    } else if (r < 0) { /* ECHILD: not ours any more */
        p->exited = true;
        p->status = -1;
    }
}

/* Whether p ended within ms. */
static bool proc_wait_exit(proc_t *p, unsigned ms)
{
    uint64_t end = zl_now_ms() + slow_ms(ms);

    for (;;) {
        proc_poll(p);
        if (p->exited || zl_now_ms() >= end)
            return p->exited;
        zl_test_sleep_ms(2);
    }
}

static const char *proc_status_text(proc_t *p, char *buf, size_t len)
{
    proc_poll(p);
    if (!p->exited)
        snprintf(buf, len, "still running");
    else if (p->status == -1)
        snprintf(buf, len, "reaped elsewhere");
    else if (WIFEXITED(p->status))
        snprintf(buf, len, "exit %d", WEXITSTATUS(p->status));
    else if (WIFSIGNALED(p->status))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(p->status));
    else
        snprintf(buf, len, "status %#x", (unsigned)p->status);
    return buf;
}

static bool proc_exited_ok(proc_t *p)
{
    proc_poll(p);
    return p->exited && p->status != -1 && WIFEXITED(p->status) &&
           WEXITSTATUS(p->status) == 0;
}

/* Close p's standard input (end of file for it). */
static void proc_close_stdin(proc_t *p)
{
    if (p->in >= 0)
        close(p->in);
    p->in = -1;
}

/* Stop p by its pid (SIGKILL), reap it (bounded), free its slot. */
static void proc_stop(proc_t *p)
{
    uint64_t end;

    if (!p || !p->used)
        return;
    proc_close_stdin(p);
    proc_poll(p);
    if (!p->exited && p->pid > 0) {
        kill(p->pid, SIGKILL);
        end = zl_now_ms() + slow_ms(2000);
        while (!p->exited && zl_now_ms() < end) {
            proc_poll(p);
            if (!p->exited)
                zl_test_sleep_ms(1);
        }
        if (!p->exited)
            fprintf(stderr, "\n    tls-interop: %s (pid %d) survived "
                    "SIGKILL for 2 s; left behind\n", p->name, (int)p->pid);
    }
    p->used = false;
}

/* Stop every process still there (a test cut short, or suite cleanup). */
static void procs_stop_all(void)
{
    for (int i = 0; i < MAXPROC; i++)
        proc_stop(&procs[i]);
}

/* The contents of p's standard output / error (g_free()); "" if none. */
static char *proc_text(proc_t *p, int which)
{
    char *a = NULL, *b = NULL, *r;

    if ((which & P_OUT) && !g_file_get_contents(p->out, &a, NULL, NULL))
        a = NULL;
    if ((which & P_ERR) && !g_file_get_contents(p->err, &b, NULL, NULL))
        b = NULL;
    r = g_strconcat(a ? a : "", b ? b : "", NULL);
    g_free(a);
    g_free(b);
    return r;
}

/* For messages: the command, how it ended, and the ends of its output. */
static const char *proc_dump(proc_t *p)
{
    char *o, *e, st[64];
    size_t lo, le;

    if (!p)
        return "(no process)";
    o = proc_text(p, P_OUT);
    e = proc_text(p, P_ERR);
    lo = strlen(o);
    le = strlen(e);
    snprintf(p->dump, sizeof(p->dump),
             "\n      $ %s\n      (%s)\n      --- stdout%s:\n%s\n"
             "      --- stderr%s:\n%s",
             p->cmd, proc_status_text(p, st, sizeof(st)),
             lo > 1200 ? " (end)" : "", lo > 1200 ? o + lo - 1200 : o,
             le > 1200 ? " (end)" : "", le > 1200 ? e + le - 1200 : e);
    g_free(o);
    g_free(e);
    return p->dump;
}

/* Wait until p's output (which) holds needle: true; false if ms passed or
 * p ended without it. */
static bool proc_wait_text(proc_t *p, int which, const char *needle,
                           unsigned ms)
{
    uint64_t end = zl_now_ms() + slow_ms(ms);

    for (;;) {
        bool ended, found;
        char *t;

        proc_poll(p);
        ended = p->exited;
        t = proc_text(p, which);
        found = has(t, needle);
        g_free(t);
        if (found)
            return true;
        if (ended || zl_now_ms() >= end)
            return false;
        zl_test_sleep_ms(5);
    }
}

/* Bytes in p's standard output file. */
static long proc_out_size(proc_t *p)
{
    struct stat st;

    return stat(p->out, &st) == 0 ? (long)st.st_size : -1;
}

/* Write all of data to p's standard input within ms. */
static bool proc_write(proc_t *p, const void *data, size_t len, unsigned ms)
{
    const char *d = data;
    uint64_t end = zl_now_ms() + slow_ms(ms);

    while (len && p->in >= 0) {
        struct pollfd pf = {p->in, POLLOUT, 0};
        ssize_t w;

        if (zl_now_ms() >= end)
            return false;
        if (poll(&pf, 1, 20) <= 0)
            continue;
        w = write(p->in, d, len);
        if (w < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (w <= 0)
            return false; /* EPIPE: it is gone */
        d += w;
        len -= (size_t)w;
    }
    return len == 0;
}

/* Wait until p has read everything written to its standard input (an
 * OpenSSL tool takes one read of its input as one command line). */
static bool proc_wait_stdin_read(proc_t *p, unsigned ms)
{
    uint64_t end = zl_now_ms() + slow_ms(ms);
    int n = 0;

    while (p->in >= 0 && ioctl(p->in, FIONREAD, &n) == 0 && n > 0) {
        if (zl_now_ms() >= end)
            return false;
        zl_test_sleep_ms(1);
    }
    return n == 0;
}

/* Start `openssl ARGS...` (argv[0] is "openssl"), standard input from a
 * pipe (with_stdin) or /dev/null, standard output and error to files.
 * NULL (and a failed check) if it cannot start. */
static proc_t *proc_spawn(const char *name, bool with_stdin,
                          const char *const *argv)
{
    proc_t *p = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none;
    int pfd[2] = {-1, -1}, rc;
    size_t n = 0;

    for (int i = 0; i < MAXPROC; i++)
        if (!procs[i].used) {
            p = &procs[i];
            break;
        }
    if (!CHECK(p != NULL, "more than %d processes at once", MAXPROC))
        return NULL;
    memset(p, 0, sizeof(*p));
    p->used = true;
    p->in = -1;
    snprintf(p->name, sizeof(p->name), "%s", name);
    proc_seq++;
    snprintf(p->out, sizeof(p->out), "%s/%03u-%s.out", certs.dir, proc_seq,
             name);
    snprintf(p->err, sizeof(p->err), "%s/%03u-%s.err", certs.dir, proc_seq,
             name);
    for (int i = 0; argv[i] && n + 1 < sizeof(p->cmd); i++)
        n += (size_t)snprintf(p->cmd + n, sizeof(p->cmd) - n, "%s%s",
                              i ? " " : "", argv[i]);
    if (with_stdin && pipe2(pfd, O_CLOEXEC) < 0) {
        CHECK(false, "pipe2: %s", strerror(errno));
        p->used = false;
        return NULL;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
    if (with_stdin)
        posix_spawn_file_actions_adddup2(&fa, pfd[0], 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, p->out,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, p->err,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    rc = posix_spawn(&p->pid, openssl_bin, &fa, &at, (char *const *)argv,
                     environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (pfd[0] >= 0)
        close(pfd[0]);
    if (rc != 0) {
        CHECK(false, "cannot start %s: %s", p->cmd, strerror(rc));
        if (pfd[1] >= 0)
            close(pfd[1]);
        p->used = false;
        return NULL;
    }
    if (pfd[1] >= 0) {
        fcntl(pfd[1], F_SETFL, fcntl(pfd[1], F_GETFL) | O_NONBLOCK);
        p->in = pfd[1];
    }
    return p;
}

/* An argument vector under construction. */
typedef struct args {
    const char *v[48];
    int n;
    char port[32];
} args_t;

static void args_add(args_t *a, ...)
{
    va_list ap;
    const char *s;

    va_start(ap, a);
    while ((s = va_arg(ap, const char *)))
        if (a->n < (int)(sizeof(a->v) / sizeof(a->v[0])) - 1)
            a->v[a->n++] = s;
    va_end(ap);
    a->v[a->n] = NULL;
}

/* `openssl s_server -accept 127.0.0.1:PORT -naccept 1 -cert cert -key key
 * EXTRA...` on a free port, once it printed ACCEPT.  NULL (and a failed
 * check) if it did not start. */
static proc_t *s_server_v(const char *cert, const char *key, bool with_stdin,
                          uint16_t *port, const char *const *extra)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        args_t a = {.n = 0};
        uint16_t pt = zl_test_closed_port();
        char *text;
        bool collision;
        proc_t *p;

        if (!CHECK(pt != 0, "no free port on 127.0.0.1"))
            return NULL;
        snprintf(a.port, sizeof(a.port), "127.0.0.1:%u", pt);
        args_add(&a, "openssl", "s_server", "-accept", a.port, "-naccept",
                 "1", "-cert", cert, "-key", key, NULL);
        for (int i = 0; extra && extra[i]; i++)
            args_add(&a, extra[i], NULL);
        p = proc_spawn("s_server", with_stdin, a.v);
        if (!p)
            return NULL;
        if (proc_wait_text(p, P_OUT, "ACCEPT", WAIT_MS)) {
            *port = pt;
            return p;
        }
        /* Another program took the port meanwhile: s_server could not
         * bind, and ended.  Anything else is a failure. */
        proc_wait_exit(p, 500);
        text = proc_text(p, P_BOTH);
        collision = p->exited && (has(text, "in use") || has(text, "bind"));
        g_free(text);
        if (!collision) {
            CHECK(false, "s_server printed no ACCEPT line within %u ms:%s",
                  slow_ms(WAIT_MS), proc_dump(p));
            proc_stop(p);
            return NULL;
        }
        proc_stop(p);
    }
    CHECK(false, "s_server: 5 ports in a row were taken");
    return NULL;
}

/* s_server(cert, key, with_stdin, &port, EXTRA..., NULL) */
#define s_server(cert, key, in, port, ...)                                  \
    s_server_v((cert), (key), (in), (port),                                 \
               (const char *const[]){__VA_ARGS__})

/* `openssl s_client -connect 127.0.0.1:PORT [-nocommands] EXTRA...`, with
 * a pipe on its standard input.  With commands, a line "K" of its input
 * sends a KeyUpdate, "R" renegotiates (TLS 1.2). */
static proc_t *s_client_v(uint16_t port, bool commands,
                          const char *const *extra)
{
    args_t a = {.n = 0};

    snprintf(a.port, sizeof(a.port), "127.0.0.1:%u", port);
    args_add(&a, "openssl", "s_client", "-connect", a.port, NULL);
    if (!commands)
        args_add(&a, "-nocommands", NULL);
    for (int i = 0; extra && extra[i]; i++)
        args_add(&a, extra[i], NULL);
    return proc_spawn("s_client", true, a.v);
}

#define s_client(port, ...)                                                 \
    s_client_v((port), false, (const char *const[]){__VA_ARGS__})
#define s_client_commands(port, ...)                                        \
    s_client_v((port), true, (const char *const[]){__VA_ARGS__})

/* ------------------------------------------------------------ record */

enum { CLI = 0, SRV = 1 };

/* What one side's callbacks recorded: counters are atomics incremented
 * last in each callback, the rest is under R.mu. */
typedef struct side {
    atomic_long opened, connects, errs, closed, rbytes;
    int err_code;
    zl_stage_t err_stage;
    char err_msg[512];
    long rbytes_at_err;
    char version[32], alpn[64], cipher[64], subject[256], sni[64];
    char resumed[64]; /* "no,yes": transport_info "resumed" per connect */
    char data[8192];
    size_t ndata;
} side_t;

static struct {
    pthread_mutex_t mu;
    side_t side[2];
    /* Behaviour, set before instances start. */
    const char *connect_send; /* client: sent in on_connect(NULL) */
    bool srv_echo;            /* server: send back what arrives */
    bool cli_echo;            /* client: send back what arrives */
} R;

static void rec_reset(void)
{
    pthread_mutex_lock(&R.mu);
    for (int i = 0; i < 2; i++) {
        side_t *sd = &R.side[i];

        atomic_store(&sd->opened, 0);
        atomic_store(&sd->connects, 0);
        atomic_store(&sd->errs, 0);
        atomic_store(&sd->closed, 0);
        atomic_store(&sd->rbytes, 0);
        sd->err_code = 0;
        sd->err_stage = 0;
        sd->err_msg[0] = '\0';
        sd->rbytes_at_err = 0;
        sd->version[0] = sd->alpn[0] = sd->cipher[0] = '\0';
        sd->subject[0] = sd->sni[0] = sd->resumed[0] = '\0';
        sd->data[0] = '\0';
        sd->ndata = 0;
    }
    R.connect_send = NULL;
    R.srv_echo = false;
    R.cli_echo = false;
    pthread_mutex_unlock(&R.mu);
}

/* Behaviour, under R.mu: the handler reads it on poller threads. */
static void rec_set(const char *connect_send, bool srv_echo, bool cli_echo)
{
    pthread_mutex_lock(&R.mu);
    R.connect_send = connect_send;
    R.srv_echo = srv_echo;
    R.cli_echo = cli_echo;
    pthread_mutex_unlock(&R.mu);
}

/* A copy of one side's record. */
typedef struct snap {
    long connects, errs, closed, rbytes, rbytes_at_err;
    int err_code;
    zl_stage_t err_stage;
    char err_msg[512];
    char version[32], alpn[64], cipher[64], subject[256], sni[64];
    char resumed[64];
    char data[8192];
} snap_t;

static snap_t snap(int who)
{
    side_t *sd = &R.side[who];
    snap_t v;

    memset(&v, 0, sizeof(v));
    pthread_mutex_lock(&R.mu);
    v.connects = atomic_load(&sd->connects);
    v.errs = atomic_load(&sd->errs);
    v.closed = atomic_load(&sd->closed);
    v.rbytes = atomic_load(&sd->rbytes);
    v.rbytes_at_err = sd->rbytes_at_err;
    v.err_code = sd->err_code;
    v.err_stage = sd->err_stage;
    memcpy(v.err_msg, sd->err_msg, sizeof(v.err_msg));
    memcpy(v.version, sd->version, sizeof(v.version));
    memcpy(v.alpn, sd->alpn, sizeof(v.alpn));
    memcpy(v.cipher, sd->cipher, sizeof(v.cipher));
    memcpy(v.subject, sd->subject, sizeof(v.subject));
    memcpy(v.sni, sd->sni, sizeof(v.sni));
    memcpy(v.resumed, sd->resumed, sizeof(v.resumed));
    memcpy(v.data, sd->data, sizeof(v.data));
    pthread_mutex_unlock(&R.mu);
    return v;
}

/* ------------------------------------------------------------ handler */

typedef struct hst {
    int who;
    uint64_t recvd;
} hst_t;

static int h_open(zl_session_t *s, void *state, zl_instance_t *inst)
{
    hst_t *st = state;

    (void)s;
    st->who = host->instance_is_server(inst) ? SRV : CLI;
    atomic_fetch_add(&R.side[st->who].opened, 1);
    return 0;
}

static void h_connect(zl_session_t *s, void *state, const zl_error_t *err)
{
    hst_t *st = state;
    side_t *sd = &R.side[st->who];

    const char *send = NULL;

    if (err)
        return; /* a failed attempt: on_err does not follow, closed does */
    pthread_mutex_lock(&R.mu);
    if (st->who == CLI)
        send = R.connect_send;
    zl_test_tls_info(s, "version", sd->version, sizeof(sd->version));
    zl_test_tls_info(s, "alpn", sd->alpn, sizeof(sd->alpn));
    zl_test_tls_info(s, "cipher", sd->cipher, sizeof(sd->cipher));
    zl_test_tls_info(s, "peer-subject", sd->subject, sizeof(sd->subject));
    zl_test_tls_info(s, "server-name", sd->sni, sizeof(sd->sni));
    {
        const char *r = host->transport_info(s, "resumed");
        size_t n = strlen(sd->resumed);

        snprintf(sd->resumed + n, sizeof(sd->resumed) - n, "%s%s",
                 n ? "," : "", r ? r : "?");
    }
    pthread_mutex_unlock(&R.mu);
    if (send)
        host->send(s, send, strlen(send));
    atomic_fetch_add(&sd->connects, 1);
}

static void h_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    hst_t *st = state;
    side_t *sd = &R.side[st->who];
    size_t room, n;
    bool echo;

    pthread_mutex_lock(&R.mu);
    echo = st->who == SRV ? R.srv_echo : R.cli_echo;
    room = sizeof(sd->data) - 1 - sd->ndata;
    n = buf->len < room ? buf->len : room;
    memcpy(sd->data + sd->ndata, buf->data, n);
    sd->ndata += n;
    sd->data[sd->ndata] = '\0';
    pthread_mutex_unlock(&R.mu);
    st->recvd += buf->len;
    if (echo)
        host->send(s, buf->data, buf->len); /* ZL_CONN_BUSY: queued */
    atomic_fetch_add(&sd->rbytes, (long)buf->len);
}

static void h_err(zl_session_t *s, void *state, const zl_error_t *err)
{
    hst_t *st = state;
    side_t *sd = &R.side[st->who];

    (void)s;
    pthread_mutex_lock(&R.mu);
    if (!atomic_load(&sd->errs)) {
        sd->err_code = err->code;
        sd->err_stage = err->stage;
        snprintf(sd->err_msg, sizeof(sd->err_msg), "%s",
                 err->message ? err->message : "");
        sd->rbytes_at_err = (long)st->recvd;
    }
    pthread_mutex_unlock(&R.mu);
    atomic_fetch_add(&sd->errs, 1);
}

static void h_closed(zl_session_t *s, void *state)
{
    hst_t *st = state;

    (void)s;
    atomic_fetch_add(&R.side[st->who].closed, 1);
}

static const zl_handler_t rec_h = {
    .struct_size = sizeof(zl_handler_t),
    .state_size = sizeof(hst_t),
    .on_open = h_open,
    .on_connect = h_connect,
    .on_recv = h_recv,
    .on_err = h_err,
    .on_closed = h_closed,
};

/* ------------------------------------------------------------ instances */

/* One instance's configuration (its kv: key, value, ..., NULL) and the
 * problems it reported (tls-certs.h); must outlive the instance. */
typedef zl_test_icfg_t icfg_t;

/* The reports, for messages: one "key: message" a line. */
static const char *reports(icfg_t *c)
{
    return zl_test_icfg_reports(c, "\n      ");
}

static void opts_fill(zl_instance_options_t *o, icfg_t *c, bool server)
{
    zl_test_tls_opts_fill(o, &plugins, c, server,
                          server ? "interop-server" : "interop-client",
                          &rec_h, NULL);
}

/* Our client to 127.0.0.1:port, started; NULL (and a failed check) if it
 * could not be made.  With reconnect, it reconnects after 20-50 ms, up to 5
 * failed attempts in a row. */
static zl_instance_t *client_start_opts(icfg_t *c, uint16_t port,
                                        bool reconnect)
{
    zl_instance_options_t o;
    zl_instance_t *inst = NULL;
    int rc;

    opts_fill(&o, c, false);
    zl_test_tls_client_to(&o, "127.0.0.1", port, reconnect);
    rc = zl_instance_new(&inst, &o);
    if (!CHECK(rc == 0, "client instance refused (%d):%s", rc, reports(c)))
        return NULL;
    rc = zl_instance_start(inst);
    if (!CHECK(rc == 0, "client start: %s", zl_strerror(rc))) {
        zl_instance_free(inst);
        return NULL;
    }
    return inst;
}

static zl_instance_t *client_start(icfg_t *c, uint16_t port)
{
    return client_start_opts(c, port, false);
}

/* Our server on 127.0.0.1, port 0; *port receives the real one. */
static zl_instance_t *server_start(icfg_t *c, uint16_t *port)
{
    zl_instance_options_t o;
    zl_instance_t *inst = NULL;
    const zl_addr_t *a;
    int rc;

    opts_fill(&o, c, true);
    rc = zl_instance_new(&inst, &o);
    if (!CHECK(rc == 0, "server instance refused (%d):%s", rc, reports(c)))
        return NULL;
    rc = zl_instance_start(inst);
    a = rc == 0 ? zl_instance_server_addr(inst) : NULL;
    *port = a ? zl_addr_port(a) : 0;
    if (!CHECK(rc == 0 && *port != 0, "server start: %s, port %u",
               zl_strerror(rc), *port)) {
        zl_instance_free(inst);
        return NULL;
    }
    return inst;
}

/* Free our server once its sessions are over: the s_client processes are
 * stopped first, then the wait is bounded.  (Stopping a TLS server with
 * live sessions is test_server_stop_close_notify's business.) */
static void server_free(zl_instance_t *srv)
{
    uint64_t end;

    if (!srv)
        return;
    procs_stop_all();
    end = zl_now_ms() + slow_ms(WAIT_MS);
    while (atomic_load(&R.side[SRV].closed) < atomic_load(&R.side[SRV].opened)
           && zl_now_ms() < end)
        zl_test_sleep_ms(1);
    zl_instance_free(srv);
}

/* ------------------------------------------------------------ per test */

static bool have_openssl(void)
{
    return CHECK(openssl_bin[0] != '\0',
                 "openssl(1) is not on PATH (%s): install the openssl "
                 "package; this suite runs OpenSSL's s_server and s_client",
                 getenv("PATH") ? getenv("PATH") : "unset");
}

/* Start of every test: stop what a test cut short left, reset the
 * record; false (failed) without openssl. */
static bool begin(void)
{
    procs_stop_all();
    rec_reset();
    return have_openssl();
}

static void end(void)
{
    procs_stop_all();
}

static char *reversed(const char *line)
{
    size_t n = strlen(line);
    char *r = g_strdup(line);

    /* s_server -rev turns each line around, keeping its "\n" last. */
    if (n && line[n - 1] == '\n')
        n--;
    for (size_t i = 0; i < n; i++)
        r[i] = line[n - 1 - i];
    return r;
}

/* Wait until our client's session ended by itself. */
static bool wait_client_closed(void)
{
    return CHECK(zl_test_wait_count(&R.side[CLI].closed, 1, WAIT_MS) == 1,
                 "the client session did not close by itself");
}

/* After a graceful close by our side: s_server (-naccept 1) ends by itself,
 * with status 0, without having seen an unexpected end of stream. */
static void expect_server_done(proc_t *sv, int line)
{
    char *text;

    zl_test_check_at(__FILE__, line, proc_wait_exit(sv, WAIT_MS),
                     "s_server did not end after our close:%s",
                     proc_dump(sv));
    zl_test_check_at(__FILE__, line, proc_exited_ok(sv),
                     "s_server did not exit with 0:%s", proc_dump(sv));
    text = proc_text(sv, P_BOTH);
    zl_test_check_at(__FILE__, line,
                     !has(text, "unexpected eof") && !has(text, ":error:"),
                     "s_server reported an error:%s", proc_dump(sv));
    g_free(text);
}

/* Our side who failed the handshake: one on_err, ZL_ETLS at stage tls,
 * whose message names the handshake with 127.0.0.1 (given the port,
 * "127.0.0.1:PORT failed") and says want (or want2); its handler never
 * connected and got nothing.  peer: the process at the other end, quoted
 * on failure.  Returns the side's record. */
static snap_t expect_handshake_fail(int who, proc_t *peer, uint16_t port,
                                    const char *want, const char *want2,
                                    int line)
{
    const char *name = who == CLI ? "client" : "server";
    char prefix[96];
    snap_t c;

    if (port)
        snprintf(prefix, sizeof(prefix),
                 "TLS handshake with 127.0.0.1:%u failed", port);
    else
        snprintf(prefix, sizeof(prefix), "TLS handshake with 127.0.0.1:");
    zl_test_wait_count(&R.side[who].errs, 1, WAIT_MS);
    c = snap(who);
    zl_test_check_at(__FILE__, line, c.errs == 1,
                     "%s on_err count %ld, want 1:%s", name, c.errs,
                     proc_dump(peer));
    zl_test_check_at(__FILE__, line,
                     c.err_code == ZL_ETLS && c.err_stage == ZL_STAGE_TLS,
                     "%s error %s stage %s ('%s'), want ZL_ETLS / tls", name,
                     zl_err_name(c.err_code), zl_stage_name(c.err_stage),
                     c.err_msg);
    zl_test_check_at(__FILE__, line,
                     has(c.err_msg, prefix) &&
                         (has(c.err_msg, want) ||
                          (want2 && has(c.err_msg, want2))),
                     "%s error '%s' does not say '%s' and '%s'%s%s%s", name,
                     c.err_msg, prefix, want, want2 ? " or '" : "",
                     want2 ? want2 : "", want2 ? "'" : "");
    zl_test_check_at(__FILE__, line, c.connects == 0 && c.rbytes == 0,
                     "the %s handler connected %ld times, got %ld bytes",
                     name, c.connects, c.rbytes);
    return c;
}

/* s_server (cert, key, EXTRA: its further arguments) and our client with
 * config cc, which must fail the handshake as expect_handshake_fail()
 * checks, saying want (or want2), and end its session by itself; then
 * s_server's output (which) must say peer_says.  Returns the client's
 * record (all zero when something did not start). */
static snap_t client_fails(const char *cert, const char *key,
                           const char *const *extra, icfg_t *cc,
                           const char *want, const char *want2, int which,
                           const char *peer_says, int line)
{
    zl_instance_t *cli = NULL;
    proc_t *sv;
    uint16_t port;
    snap_t c;

    memset(&c, 0, sizeof(c));
    sv = s_server_v(cert, key, false, &port, extra);
    if (sv) {
        rec_set("must not be sent\n", false, false);
        cli = client_start(cc, port);
    }
    if (!cli)
        return c;
    c = expect_handshake_fail(CLI, sv, port, want, want2, line);
    wait_client_closed();
    zl_test_check_at(__FILE__, line,
                     proc_wait_text(sv, which, peer_says, WAIT_MS),
                     "s_server did not say '%s':%s", peer_says,
                     proc_dump(sv));
    zl_instance_free(cli);
    return c;
}

/* s_server -rev (cert, key, EXTRA: further arguments) and our client with
 * config cc, which sends msg once connected and must get it back turned
 * around; then our client closes, and s_server must end cleanly
 * (expect_server_done).  *c: our client's record before it closed.
 * Returns s_server, its output readable until end(); NULL when something
 * did not start. */
static proc_t *client_rev(const char *cert, const char *key,
                          const char *const *extra, icfg_t *cc,
                          const char *msg, snap_t *c, int line)
{
    char *want = reversed(msg);
    zl_instance_t *cli = NULL;
    args_t a = {.n = 0};
    proc_t *sv;
    uint16_t port;
    bool ran = false;

    memset(c, 0, sizeof(*c));
    args_add(&a, "-rev", NULL);
    for (int i = 0; extra && extra[i]; i++)
        args_add(&a, extra[i], NULL);
    sv = s_server_v(cert, key, false, &port, a.v);
    if (sv) {
        rec_set(msg, false, false);
        cli = client_start(cc, port);
    }
    if (cli) {
        zl_test_wait_count(&R.side[CLI].rbytes, (long)strlen(want), WAIT_MS);
        *c = snap(CLI);
        zl_test_check_at(__FILE__, line, !strcmp(c->data, want),
                         "got '%s' back, want '%s' (client error '%s'):%s",
                         c->data, want, c->err_msg, proc_dump(sv));
        zl_instance_free(cli); /* close_notify, then s_server closes too */
        expect_server_done(sv, line);
        ran = true;
    }
    g_free(want);
    return ran ? sv : NULL;
}

/* Our server (config sc), echoing, and s_client (EXTRA: its arguments
 * after -connect; with commands, its input lines "K" and "R" are
 * commands) connected to it.  Returns the s_client; NULL (and a failed
 * check) if either did not start.  *srv: our server, NULL if it did not
 * start, for server_free(); *port: where it listens. */
static proc_t *server_and_s_client_v(icfg_t *sc, zl_instance_t **srv,
                                     uint16_t *port, bool commands,
                                     const char *const *extra)
{
    rec_set(NULL, true, false);
    *srv = server_start(sc, port);
    return *srv ? s_client_v(*port, commands, extra) : NULL;
}

#define server_and_s_client(sc, srv, port, ...)                             \
    server_and_s_client_v((sc), (srv), (port), false,                       \
                          (const char *const[]){__VA_ARGS__})
#define server_and_s_client_commands(sc, srv, port, ...)                    \
    server_and_s_client_v((sc), (srv), (port), true,                        \
                          (const char *const[]){__VA_ARGS__})

/* Write send to s_client's standard input: true once its standard output
 * holds want (what our server echoed). */
static bool s_client_echo(proc_t *cl, const char *send, const char *want)
{
    return proc_write(cl, send, strlen(send), WAIT_MS) &&
           proc_wait_text(cl, P_OUT, want, WAIT_MS);
}

/* End s_client's input: it must end with status 0. */
static void s_client_ends(proc_t *cl, int line)
{
    proc_close_stdin(cl); /* s_client: close_notify, exit */
    zl_test_check_at(__FILE__, line,
                     proc_wait_exit(cl, WAIT_MS) && proc_exited_ok(cl),
                     "s_client did not end with 0 after its input "
                     "ended:%s",
                     proc_dump(cl));
}

/* s_client must fail, saying says on its standard error. */
static void s_client_fails(proc_t *cl, const char *says, int line)
{
    zl_test_check_at(__FILE__, line,
                     proc_wait_exit(cl, WAIT_MS) && !proc_exited_ok(cl),
                     "s_client should fail (saying '%s'):%s", says,
                     proc_dump(cl));
    zl_test_check_at(__FILE__, line, proc_wait_text(cl, P_ERR, says, 100),
                     "s_client did not say '%s':%s", says, proc_dump(cl));
}

/* ------------------------------------------------------------ 0. tool */

static void test_openssl_present(void)
{
    proc_t *p;
    char *out;

    if (!begin())
        return;
    p = proc_spawn("version", false, (const char *const[]){"openssl",
                                                           "version", NULL});
    if (p) {
        CHECK(proc_wait_exit(p, WAIT_MS) && proc_exited_ok(p),
              "openssl version failed:%s", proc_dump(p));
        out = proc_text(p, P_OUT);
        CHECK(has(out, "OpenSSL 3."),
              "'%s': this suite needs the OpenSSL 3 tools (-nocommands; "
              "the wording of its checks)",
              g_strchomp(out));
        g_free(out);
    }
    end();
}

/* ------------------------------------------------------ 1. our client */

/* Our client, tls-ca = the CA, against s_server -rev (version_flag: one
 * more argument, or NULL): the line comes back turned around; then our
 * close ends s_server cleanly. */
static void client_rev_case(const char *version_flag, const char *want_ver,
                            int line)
{
    icfg_t cc = {{"tls-ca", certs.ca, NULL}};
    proc_t *sv;
    snap_t c;
    char *text;

    sv = client_rev(certs.srv, certs.srv_key,
                    (const char *const[]){version_flag, NULL}, &cc,
                    "zltk interop hello\n", &c, line);
    if (!sv)
        return;
    zl_test_check_at(__FILE__, line, !strcmp(c.version, want_ver),
                     "version '%s', want %s", c.version, want_ver);
    zl_test_check_at(__FILE__, line, has(c.subject, "CN=localhost"),
                     "peer-subject '%s'", c.subject);
    zl_test_check_at(__FILE__, line, c.cipher[0] != '\0', "no cipher");
    zl_test_check_at(__FILE__, line, c.errs == 0 && c.connects == 1,
                     "%ld errors ('%s'), %ld connects", c.errs, c.err_msg,
                     c.connects);
    text = proc_text(sv, P_BOTH);
    zl_test_check_at(__FILE__, line,
                     has(text, "CONNECTION ESTABLISHED") &&
                         has(text, want_ver),
                     "s_server did not report a %s connection:%s", want_ver,
                     proc_dump(sv));
    g_free(text);
}

static void test_client_rev(void)
{
    if (!begin())
        return;
    client_rev_case(NULL, "TLSv1.3", __LINE__);
    end();
}

static void test_client_tls12(void)
{
    if (!begin())
        return;
    client_rev_case("-tls1_2", "TLSv1.2", __LINE__);
    end();
}

/* s_server in its default mode (what arrives is printed, what its standard
 * input gives is sent), by name: SNI reaches it. */
static void test_client_both_ways(void)
{
    icfg_t cc = {{"tls-ca", certs.ca, "tls-server-name", "localhost", NULL}};
    zl_instance_t *cli = NULL;
    proc_t *sv;
    uint16_t port;
    snap_t c;

    if (!begin())
        return;
    sv = s_server(certs.srv, certs.srv_key, true, &port, "-servername",
                  "localhost", "-cert2", certs.srv, "-key2", certs.srv_key,
                  NULL);
    if (!sv)
        goto out;
    rec_set("from zltk to s_server\n", false, false);
    cli = client_start(&cc, port);
    if (!cli)
        goto out;
    CHECK(proc_wait_text(sv, P_OUT, "from zltk to s_server\n", WAIT_MS),
          "s_server did not print what our client sent (client error "
          "'%s'):%s", snap(CLI).err_msg, proc_dump(sv));
    CHECK(proc_write(sv, "from s_server to zltk\n", 22, WAIT_MS),
          "cannot write to s_server's standard input");
    zl_test_wait_count(&R.side[CLI].rbytes, 22, WAIT_MS);
    c = snap(CLI);
    CHECK(!strcmp(c.data, "from s_server to zltk\n"),
          "our client got '%s' (error '%s'):%s", c.data, c.err_msg,
          proc_dump(sv));
    CU_ASSERT_EQUAL(c.errs, 0);
    zl_instance_free(cli);
    cli = NULL;
    expect_server_done(sv, __LINE__);
    /* Its standard output is a buffered file: complete once it ended. */
    CHECK(proc_wait_text(sv, P_OUT, "CONNECTION CLOSED", 100),
          "s_server did not see the connection close:%s", proc_dump(sv));
    CHECK(proc_wait_text(sv, P_BOTH, "Hostname in TLS extension: "
                                     "\"localhost\"", 100),
          "s_server saw no SNI 'localhost':%s", proc_dump(sv));
out:
    zl_instance_free(cli);
    end();
}

/* Our client must refuse s_server's certificate: a TLS error during the
 * handshake that says "certificate verify failed" and want (or want2), the
 * handler never connected, and s_server received our alert (alert
 * words). */
static void client_refuses(const char *cert, const char *key, icfg_t *cc,
                           const char *want, const char *want2,
                           const char *alert, int line)
{
    snap_t c = client_fails(cert, key, (const char *const[]){"-rev", NULL},
                            cc, want, want2, P_BOTH, alert, line);

    if (c.errs)
        zl_test_check_at(__FILE__, line,
                         has(c.err_msg, "certificate verify failed"),
                         "client error '%s' does not say 'certificate "
                         "verify failed'",
                         c.err_msg);
}

static void test_client_refuses_self_signed(void)
{
    icfg_t cc = {{"tls-ca", certs.ca, NULL}};

    if (!begin())
        return;
    client_refuses(certs.self, certs.self_key, &cc, "self-signed",
                   "self signed", "alert unknown ca", __LINE__);
    end();
}

static void test_client_refuses_hostname(void)
{
    icfg_t cc = {{"tls-ca", certs.ca, "tls-server-name", "localhost", NULL}};

    if (!begin())
        return;
    client_refuses(certs.other, certs.other_key, &cc, "hostname mismatch",
                   NULL, "alert bad certificate", __LINE__);
    end();
}

static void test_client_refuses_ip(void)
{
    icfg_t cc = {{"tls-ca", certs.ca, NULL}};

    if (!begin())
        return;
    client_refuses(certs.other, certs.other_key, &cc, "IP address mismatch",
                   NULL, "alert bad certificate", __LINE__);
    end();
}

static void test_client_refuses_expired(void)
{
    icfg_t cc = {{"tls-ca", certs.ca, NULL}};

    if (!begin())
        return;
    client_refuses(certs.exp, certs.exp_key, &cc, "certificate has expired",
                   NULL, "alert certificate expired", __LINE__);
    end();
}

static void test_client_refuses_unknown_ca(void)
{
    icfg_t cc = {{NULL}}; /* the system store only */

    if (!begin())
        return;
    client_refuses(certs.srv, certs.srv_key, &cc,
                   "unable to get local issuer certificate", NULL,
                   "alert unknown ca", __LINE__);
    end();
}

/* tls-min-version = 1.3 against a TLS 1.2 server. */
static void test_client_min_version(void)
{
    icfg_t cc = {{"tls-ca", certs.ca, "tls-min-version", "1.3", NULL}};

    if (!begin())
        return;
    client_fails(certs.srv, certs.srv_key,
                 (const char *const[]){"-rev", "-tls1_2", NULL}, &cc,
                 "protocol version", NULL, P_BOTH, "unsupported protocol",
                 __LINE__);
    end();
}

/* tls-verify = false: the self-signed s_server is accepted, with a warning
 * in the log that names the instance. */
static void test_client_verify_false(void)
{
    icfg_t cc = {{"tls-verify", "false", NULL}};
    zl_log_options_t lo = {.level = ZL_LOG_WARNING};
    zl_log_level_t level = zl_log_get_level();
    char *path = NULL, *text = NULL;
    proc_t *sv;
    int lrc;
    snap_t c;

    if (!begin())
        return;
    path = g_strdup_printf("%s/verify-false.log", certs.dir);
    lo.file = path;
    lrc = zl_log_init(&lo);
    CU_ASSERT_EQUAL(lrc, 0);
    sv = client_rev(certs.self, certs.self_key, NULL, &cc,
                    "unverified but working\n", &c, __LINE__);
    if (sv) {
        CHECK(has(c.subject, "CN=localhost"), "peer-subject '%s'",
              c.subject);
        CU_ASSERT_EQUAL(c.errs, 0);
    }
    if (lrc == 0) {
        zl_log_shutdown();
        zl_log_set_level(level);
        if (sv)
            CHECK(g_file_get_contents(path, &text, NULL, NULL) &&
                      has(text, "tls-verify = false") &&
                      has(text, "client.interop-client") &&
                      has(text, "NOT checked"),
                  "no tls-verify = false warning naming "
                  "client.interop-client in the log: '%s'",
                  text ? text : "(none)");
    }
    g_free(text);
    g_free(path);
    end();
}

/* ---------------------------------------------- 2. mutual TLS, client */

/* s_server -Verify 1 -CAfile CA: our client presents tls-cert/tls-key. */
static void test_client_mtls(void)
{
    icfg_t cc = {{"tls-ca", certs.ca, "tls-cert", certs.cli, "tls-key",
                  certs.cli_key, NULL}};
    proc_t *sv;
    snap_t c;

    if (!begin())
        return;
    sv = client_rev(certs.srv, certs.srv_key,
                    (const char *const[]){"-Verify", "1", "-CAfile", certs.ca,
                                          NULL},
                    &cc, "with a client certificate\n", &c, __LINE__);
    if (sv) {
        CU_ASSERT_EQUAL(c.errs, 0);
        /* s_server's verify callback printed the chain it checked. */
        CHECK(proc_wait_text(sv, P_BOTH, "CN = zltk test client", 100),
              "s_server did not verify our client certificate:%s",
              proc_dump(sv));
    }
    end();
}

/* s_server -Verify 1, our client has no certificate: the failure reaches
 * our handler as a TLS error that says why (TLS 1.3: after our side of the
 * handshake completed; TLS 1.2: during it). */
static void client_mtls_missing_case(const char *version_flag,
                                     const char *want, bool in_handshake,
                                     int line)
{
    icfg_t cc = {{"tls-ca", certs.ca, NULL}};
    zl_instance_t *cli = NULL;
    proc_t *sv;
    uint16_t port;
    snap_t c;

    /* version_flag NULL ends the arguments early. */
    sv = s_server(certs.srv, certs.srv_key, false, &port, "-rev", "-Verify",
                  "1", "-CAfile", certs.ca, version_flag, NULL);
    if (!sv)
        return;
    rec_set("no certificate\n", false, false);
    cli = client_start(&cc, port);
    if (!cli)
        return;
    zl_test_wait_count(&R.side[CLI].errs, 1, WAIT_MS);
    c = snap(CLI);
    zl_test_check_at(__FILE__, line,
                     c.errs == 1 && c.err_code == ZL_ETLS &&
                         c.err_stage == ZL_STAGE_TLS &&
                         has(c.err_msg, "127.0.0.1:") && has(c.err_msg, want),
                     "client: %ld errors, %s '%s', want ZL_ETLS saying "
                     "'%s':%s",
                     c.errs, zl_err_name(c.err_code), c.err_msg, want,
                     proc_dump(sv));
    zl_test_check_at(__FILE__, line, c.rbytes == 0,
                     "%ld bytes came back without a certificate", c.rbytes);
    if (in_handshake)
        zl_test_check_at(__FILE__, line,
                         c.connects == 0 && has(c.err_msg, "TLS handshake"),
                         "the handler connected %ld times ('%s'); the "
                         "handshake failed",
                         c.connects, c.err_msg);
    zl_test_check_at(__FILE__, line,
                     proc_wait_text(sv, P_BOTH,
                                    "peer did not return a certificate",
                                    WAIT_MS),
                     "s_server did not complain about the missing client "
                     "certificate:%s",
                     proc_dump(sv));
    wait_client_closed();
    zl_instance_free(cli);
}

static void test_client_mtls_missing(void)
{
    if (!begin())
        return;
    client_mtls_missing_case(NULL, "alert certificate required", false,
                             __LINE__);
    end();
}

static void test_client_mtls_missing_tls12(void)
{
    if (!begin())
        return;
    client_mtls_missing_case("-tls1_2", "alert handshake failure", true,
                             __LINE__);
    end();
}

/* ------------------------------------------------------ 3. ALPN, client */

/* s_server -alpn zl-a,zl-b; our client offers offer; want: the protocol
 * transport_info("alpn") gives. */
static void client_alpn_case(const char *offer, const char *want, int line)
{
    icfg_t cc = {{"tls-ca", certs.ca, "tls-alpn", offer, NULL}};
    char sel[64];
    proc_t *sv;
    snap_t c;

    sv = client_rev(certs.srv, certs.srv_key,
                    (const char *const[]){"-alpn", "zl-a,zl-b", NULL}, &cc,
                    "alpn\n", &c, line);
    if (!sv)
        return;
    zl_test_check_at(__FILE__, line, !strcmp(c.alpn, want),
                     "offering %s to zl-a,zl-b: transport_info alpn '%s', "
                     "want '%s'",
                     offer, c.alpn, want);
    /* s_server's standard output is a buffered file: read it at exit. */
    snprintf(sel, sizeof(sel), "ALPN protocols selected: %s", want);
    zl_test_check_at(__FILE__, line, proc_wait_text(sv, P_BOTH, sel, 100),
                     "s_server did not say '%s':%s", sel, proc_dump(sv));
}

/* Nothing in common: s_server (OpenSSL 3) refuses the handshake with a
 * no_application_protocol alert, which our client reports. */
static void client_alpn_none_case(int line)
{
    icfg_t cc = {{"tls-ca", certs.ca, "tls-alpn", "zl-c", NULL}};

    client_fails(certs.srv, certs.srv_key,
                 (const char *const[]){"-rev", "-alpn", "zl-a,zl-b", NULL},
                 &cc, "no application protocol", NULL, P_ERR,
                 "no application protocol", line);
}

static void test_client_alpn(void)
{
    if (!begin())
        return;
    client_alpn_case("zl-b", "zl-b", __LINE__);
    procs_stop_all();
    rec_reset();
    client_alpn_case("zl-b, zl-a", "zl-a", __LINE__); /* server's choice */
    procs_stop_all();
    rec_reset();
    client_alpn_none_case(__LINE__);
    end();
}

/* ------------------------------------------- 3b. client: more of TLS */

/* s_server -naccept 2 in its default mode: its command "q" drops the
 * first connection; our client reconnects and offers the session it got
 * (a TLS 1.3 ticket), and s_server resumes it. */
static void test_client_resume(void)
{
    icfg_t cc = {{"tls-ca", certs.ca, NULL}};
    zl_instance_t *cli = NULL;
    proc_t *sv;
    uint16_t port;
    long n;
    snap_t c;

    if (!begin())
        return;
    /* The later -naccept (2) overrides s_server_v's -naccept 1. */
    sv = s_server(certs.srv, certs.srv_key, true, &port, "-naccept", "2",
                  NULL);
    if (!sv)
        goto out;
    rec_set("hello\n", false, false);
    cli = client_start_opts(&cc, port, true);
    if (!cli)
        goto out;
    CHECK(proc_wait_text(sv, P_OUT, "hello\n", WAIT_MS),
          "s_server did not print what our client sent:%s", proc_dump(sv));
    CHECK(proc_write(sv, "q\n", 2, WAIT_MS) &&
              proc_wait_stdin_read(sv, WAIT_MS),
          "s_server did not read its q command");
    n = zl_test_wait_count(&R.side[CLI].connects, 2, WAIT_MS);
    c = snap(CLI);
    CHECK(n >= 2, "the client connected %ld time(s) (errors %ld, '%s'):%s",
          n, c.errs, c.err_msg, proc_dump(sv));
    CHECK(!strncmp(c.resumed, "no,yes", 6), "resumed per connection '%s', "
          "want no,yes (%s)", c.resumed, c.version);
    zl_instance_free(cli);
    cli = NULL;
    expect_server_done(sv, __LINE__);
    {
        char *out = proc_text(sv, P_OUT), *p = out;
        int hellos = 0;

        while ((p = strstr(p, "hello\n"))) {
            hellos++;
            p++;
        }
        CHECK(hellos == 2, "s_server printed hello %d times, want one per "
              "connection:%s", hellos, proc_dump(sv));
        g_free(out);
    }
    CHECK(proc_wait_text(sv, P_OUT, "Reused session-id", 100),
          "s_server did not report the resumption:%s", proc_dump(sv));
out:
    zl_instance_free(cli);
    end();
}

/* The peer's close_notify is the end of the TLS stream: our client must
 * hear of it (on_err ZL_EOF) even while the peer keeps the TCP connection
 * open.  s_server -rev ends a connection on the line "CLOSE" with
 * close_notify, then waits for ours before it closes the socket, as every
 * peer doing a bidirectional SSL_shutdown does: the layer answers with its
 * close_notify and half-closes, and the peer's TCP end then reaches the
 * handler.  (Regression: the layer once only noted the close_notify and
 * both ends waited for each other.) */
static void test_peer_close_notify(void)
{
    icfg_t cc = {{"tls-ca", certs.ca, NULL}};
    zl_instance_t *cli = NULL;
    proc_t *sv;
    uint16_t port;
    snap_t c;

    if (!begin())
        return;
    sv = s_server(certs.srv, certs.srv_key, false, &port, "-rev", NULL);
    if (!sv)
        goto out;
    rec_set("abc\nCLOSE\n", false, false);
    cli = client_start(&cc, port);
    if (!cli)
        goto out;
    CHECK(proc_wait_text(sv, P_ERR, "CONNECTION CLOSED", WAIT_MS),
          "s_server did not end the connection on CLOSE:%s", proc_dump(sv));
    zl_test_wait_count(&R.side[CLI].errs, 1, 2000);
    c = snap(CLI);
    CHECK(!strcmp(c.data, "cba\n"), "got '%s', want 'cba'", c.data);
    CHECK(c.errs == 1 && c.err_code == ZL_EOF,
          "s_server sent close_notify and waits for ours, but our client's "
          "handler heard nothing within %u ms (%ld errors, %s '%s'): the "
          "layer waits for a TCP end of stream that the peer sends only "
          "after our close_notify",
          slow_ms(2000), c.errs, zl_err_name(c.err_code), c.err_msg);
    if (c.errs == 1) {
        /* The host then closes gracefully: our close_notify lets s_server
         * close too, and the session ends. */
        wait_client_closed();
        expect_server_done(sv, __LINE__);
    }
out:
    zl_instance_free(cli);
    end();
}

/* s_server's "K" command: a KeyUpdate that requests ours; data still flows
 * both ways with the new keys. */
static void test_client_key_update(void)
{
    icfg_t cc = {{"tls-ca", certs.ca, NULL}};
    zl_instance_t *cli = NULL;
    proc_t *sv;
    uint16_t port;
    char *out;

    if (!begin())
        return;
    sv = s_server(certs.srv, certs.srv_key, true, &port, NULL);
    if (!sv)
        goto out;
    rec_set("one\n", false, true);
    cli = client_start(&cc, port);
    if (!cli)
        goto out;
    CHECK(proc_wait_text(sv, P_OUT, "one\n", WAIT_MS),
          "s_server did not print 'one' (client error '%s'):%s",
          snap(CLI).err_msg, proc_dump(sv));
    /* "K": a command (SSL_key_update, requested), not data, as long as it
     * comes alone in one read. */
    CHECK(proc_write(sv, "K\n", 2, WAIT_MS) &&
              proc_wait_stdin_read(sv, WAIT_MS),
          "s_server did not read its K command");
    CHECK(proc_write(sv, "two\n", 4, WAIT_MS), "cannot write to s_server");
    /* Our client echoes it: it arrives under s_server's new keys, and goes
     * back under ours, updated as requested.  Had "K" been sent as data,
     * our client would have got "K\ntwo\n". */
    CHECK(proc_wait_text(sv, P_OUT, "two\n", WAIT_MS),
          "the echo of 'two' did not reach s_server after the KeyUpdate "
          "(client: %ld errors, '%s', got '%s'):%s",
          atomic_load(&R.side[CLI].errs), snap(CLI).err_msg, snap(CLI).data,
          proc_dump(sv));
    CU_ASSERT_STRING_EQUAL(snap(CLI).data, "two\n");
    CU_ASSERT_EQUAL(atomic_load(&R.side[CLI].errs), 0);
    zl_instance_free(cli);
    cli = NULL;
    expect_server_done(sv, __LINE__);
    out = proc_text(sv, P_BOTH);
    CHECK(!has(out, "error"), "s_server reported an error:%s",
          proc_dump(sv));
    g_free(out);
out:
    zl_instance_free(cli);
    end();
}

/* ------------------------------------------------------ 4. our server */

/* s_client (verifying: -CAfile, -verify_return_error, -verify_ip) against
 * our echo server: a line written to its standard input comes back on its
 * standard output; end of input ends it cleanly. */
static void server_echo_case(const char *const *extra, const char *want_ver,
                             const char *want_sni, int line)
{
    icfg_t sc = {{"tls-cert", certs.srv, "tls-key", certs.srv_key, NULL}};
    const char *msg = "ping from s_client\n";
    zl_instance_t *srv = NULL;
    args_t a = {.n = 0};
    proc_t *cl;
    uint16_t port;
    snap_t s;
    char *out;

    args_add(&a, "-CAfile", certs.ca, "-verify_return_error", "-verify_ip",
             "127.0.0.1", "-brief", NULL);
    for (int i = 0; extra && extra[i]; i++)
        args_add(&a, extra[i], NULL);
    cl = server_and_s_client_v(&sc, &srv, &port, false, a.v);
    if (!cl)
        goto out;
    zl_test_check_at(__FILE__, line, s_client_echo(cl, msg, msg),
                     "the line did not come back (server error '%s'):%s",
                     snap(SRV).err_msg, proc_dump(cl));
    s_client_ends(cl, line);
    out = proc_text(cl, P_BOTH);
    zl_test_check_at(__FILE__, line,
                     has(out, "Verification: OK") &&
                         has(out, "CN = localhost") && has(out, want_ver),
                     "s_client did not verify a %s connection to CN = "
                     "localhost:%s",
                     want_ver, proc_dump(cl));
    g_free(out);
    zl_test_wait_count(&R.side[SRV].errs, 1, WAIT_MS);
    s = snap(SRV);
    zl_test_check_at(__FILE__, line, s.connects == 1 && s.errs == 1 &&
                                         s.err_code == ZL_EOF,
                     "server: %ld connects, %ld errors, last %s '%s'; want "
                     "one connection ended by ZL_EOF",
                     s.connects, s.errs, zl_err_name(s.err_code), s.err_msg);
    zl_test_check_at(__FILE__, line, !strcmp(s.version, want_ver),
                     "server version '%s', want %s", s.version, want_ver);
    zl_test_check_at(__FILE__, line, !strcmp(s.sni, want_sni),
                     "server-name '%s', want '%s'", s.sni, want_sni);
    zl_test_check_at(__FILE__, line, !strcmp(s.data, msg),
                     "server received '%s'", s.data);
out:
    server_free(srv);
}

static void test_server_echo(void)
{
    if (!begin())
        return;
    server_echo_case(NULL, "TLSv1.3", "", __LINE__);
    end();
}

static void test_server_tls12_sni(void)
{
    if (!begin())
        return;
    server_echo_case((const char *const[]){"-tls1_2", "-servername",
                                           "localhost", "-verify_hostname",
                                           "localhost", NULL},
                     "TLSv1.2", "localhost", __LINE__);
    end();
}

/* 256 KiB through s_client and back, compared byte for byte. */
static void test_server_bulk(void)
{
    icfg_t sc = {{"tls-cert", certs.srv, "tls-key", certs.srv_key, NULL}};
    const size_t n = 256 * KIB;
    zl_instance_t *srv = NULL;
    GString *data = g_string_sized_new(n + 64);
    uint64_t end_at;
    proc_t *cl;
    uint16_t port;
    char *out = NULL;
    size_t outlen = 0;

    if (!begin())
        goto out;
    for (unsigned i = 0; data->len < n; i++)
        g_string_append_printf(data, "line %06u of the bulk test, "
                               "abcdefghijklmnopqrstuvwxyz\n", i);
    g_string_truncate(data, n - 1);
    g_string_append_c(data, '\n');
    cl = server_and_s_client(&sc, &srv, &port, "-CAfile", certs.ca,
                             "-verify_return_error", "-brief", NULL);
    if (!cl)
        goto out;
    CHECK(proc_write(cl, data->str, data->len, WAIT_MS),
          "s_client took only part of %zu bytes:%s", n, proc_dump(cl));
    end_at = zl_now_ms() + slow_ms(WAIT_MS);
    while (proc_out_size(cl) < (long)n && zl_now_ms() < end_at) {
        proc_poll(cl);
        if (cl->exited)
            break;
        zl_test_sleep_ms(5);
    }
    s_client_ends(cl, __LINE__);
    if (g_file_get_contents(cl->out, &out, &outlen, NULL))
        CHECK(outlen == n && !memcmp(out, data->str, n),
              "%zu bytes came back of %zu%s (server error '%s')", outlen, n,
              outlen == n ? ", different" : "", snap(SRV).err_msg);
    else
        CHECK(false, "cannot read %s", cl->out);
    CHECK(atomic_load(&R.side[SRV].rbytes) == (long)n,
          "the server received %ld bytes of %zu",
          atomic_load(&R.side[SRV].rbytes), n);
out:
    server_free(srv);
    g_free(out);
    g_string_free(data, TRUE);
    end();
}

/* s_client that does not know our CA refuses the server; the server
 * reports the client's alert. */
static void test_server_client_refuses(void)
{
    icfg_t sc = {{"tls-cert", certs.srv, "tls-key", certs.srv_key, NULL}};
    zl_instance_t *srv = NULL;
    proc_t *cl;
    uint16_t port;

    if (!begin())
        return;
    cl = server_and_s_client(&sc, &srv, &port, "-verify_return_error",
                             "-brief", NULL);
    if (!cl)
        goto out;
    s_client_fails(cl, "unable to get local issuer certificate", __LINE__);
    expect_handshake_fail(SRV, cl, 0, "alert unknown ca", NULL, __LINE__);
out:
    server_free(srv);
    end();
}

/* ---------------------------------------------- 5. mutual TLS, server */

static void test_server_mtls_missing(void)
{
    icfg_t sc = {{"tls-cert", certs.srv, "tls-key", certs.srv_key,
                  "tls-verify-client", "required", "tls-client-ca", certs.ca,
                  NULL}};
    zl_instance_t *srv = NULL;
    proc_t *cl;
    uint16_t port;

    if (!begin())
        return;
    cl = server_and_s_client(&sc, &srv, &port, "-CAfile", certs.ca,
                             "-verify_return_error", "-brief", NULL);
    if (!cl)
        goto out;
    proc_write(cl, "no certificate\n", 15, WAIT_MS);
    s_client_fails(cl, "alert certificate required", __LINE__);
    expect_handshake_fail(SRV, cl, 0, "peer did not return a certificate",
                          NULL, __LINE__);
out:
    server_free(srv);
    end();
}

static void test_server_mtls(void)
{
    icfg_t sc = {{"tls-cert", certs.srv, "tls-key", certs.srv_key,
                  "tls-verify-client", "required", "tls-client-ca", certs.ca,
                  NULL}};
    const char *msg = "with a client certificate\n";
    zl_instance_t *srv = NULL;
    proc_t *cl;
    uint16_t port;
    snap_t s;

    if (!begin())
        return;
    cl = server_and_s_client(&sc, &srv, &port, "-CAfile", certs.ca,
                             "-verify_return_error", "-brief", "-cert",
                             certs.cli, "-key", certs.cli_key, NULL);
    if (!cl)
        goto out;
    CHECK(s_client_echo(cl, msg, msg),
          "no echo with a client certificate (server error '%s'):%s",
          snap(SRV).err_msg, proc_dump(cl));
    s_client_ends(cl, __LINE__);
    s = snap(SRV);
    CHECK(has(s.subject, "CN=zltk test client"),
          "server peer-subject '%s', want CN=zltk test client", s.subject);
    CHECK(s.connects == 1 && (s.errs == 0 || s.err_code == ZL_EOF),
          "server: %ld connects, error %s '%s'", s.connects,
          zl_err_name(s.err_code), s.err_msg);
out:
    server_free(srv);
    end();
}

/* ------------------------------------------------------ 6. ALPN, server */

static void test_server_alpn(void)
{
    icfg_t sc = {{"tls-cert", certs.srv, "tls-key", certs.srv_key,
                  "tls-alpn", "zl-a,zl-b", NULL}};
    zl_instance_t *srv = NULL;
    proc_t *cl;
    uint16_t port;
    snap_t s;

    if (!begin())
        return;
    /* Not -brief: the full report names the protocol. */
    cl = server_and_s_client(&sc, &srv, &port, "-CAfile", certs.ca,
                             "-verify_return_error", "-alpn", "zl-b,zl-a",
                             NULL);
    if (!cl)
        goto out;
    CHECK(s_client_echo(cl, "alpn\n", "\nalpn\n"),
          "no echo (server error '%s'):%s", snap(SRV).err_msg, proc_dump(cl));
    CHECK(proc_wait_text(cl, P_OUT, "ALPN protocol: zl-a", 100),
          "s_client did not negotiate zl-a (our server's first choice):%s",
          proc_dump(cl));
    s_client_ends(cl, __LINE__);
    s = snap(SRV);
    CHECK(!strcmp(s.alpn, "zl-a"), "server transport_info alpn '%s', want "
          "zl-a", s.alpn);
    server_free(srv);
    srv = NULL;
    procs_stop_all();

    /* Nothing in common: our server refuses the handshake. */
    rec_reset();
    cl = server_and_s_client(&sc, &srv, &port, "-CAfile", certs.ca,
                             "-verify_return_error", "-alpn", "zl-c",
                             "-brief", NULL);
    if (!cl)
        goto out;
    s_client_fails(cl, "no application protocol", __LINE__);
    expect_handshake_fail(SRV, cl, 0, "no application protocol", NULL,
                          __LINE__);
out:
    server_free(srv);
    end();
}

/* ------------------------------------------- 7. server: more of TLS */

/* s_client's "K" command: a KeyUpdate that requests ours. */
static void test_server_key_update(void)
{
    icfg_t sc = {{"tls-cert", certs.srv, "tls-key", certs.srv_key, NULL}};
    zl_instance_t *srv = NULL;
    proc_t *cl;
    uint16_t port;

    if (!begin())
        return;
    cl = server_and_s_client_commands(&sc, &srv, &port, "-CAfile", certs.ca,
                                      "-verify_return_error", "-brief",
                                      NULL);
    if (!cl)
        goto out;
    CHECK(s_client_echo(cl, "before\n", "before\n"),
          "no echo before the KeyUpdate:%s", proc_dump(cl));
    CHECK(proc_write(cl, "K\n", 2, WAIT_MS) &&
              proc_wait_text(cl, P_ERR, "KEYUPDATE", WAIT_MS),
          "s_client sent no KeyUpdate:%s", proc_dump(cl));
    CHECK(s_client_echo(cl, "after\n", "before\nafter\n"),
          "no echo after the KeyUpdate (server: %ld errors, '%s'):%s",
          atomic_load(&R.side[SRV].errs), snap(SRV).err_msg, proc_dump(cl));
    s_client_ends(cl, __LINE__);
    CU_ASSERT_STRING_EQUAL(snap(SRV).data, "before\nafter\n");
out:
    server_free(srv);
    end();
}

/* TLS 1.2 renegotiation ("R"): our layer refuses it (SSL_OP_NO_RENEGOTIATION,
 * a no_renegotiation alert); s_client gives up; our server survives. */
static void test_server_renegotiation(void)
{
    icfg_t sc = {{"tls-cert", certs.srv, "tls-key", certs.srv_key, NULL}};
    zl_instance_t *srv = NULL;
    proc_t *cl;
    uint16_t port;
    snap_t s;

    if (!begin())
        return;
    cl = server_and_s_client_commands(&sc, &srv, &port, "-CAfile", certs.ca,
                                      "-verify_return_error", "-brief",
                                      "-tls1_2", NULL);
    if (!cl)
        goto out;
    CHECK(s_client_echo(cl, "before\n", "before\n"),
          "no echo before renegotiating:%s", proc_dump(cl));
    CHECK(proc_write(cl, "R\n", 2, WAIT_MS), "cannot write to s_client");
    s_client_fails(cl, "no renegotiation", __LINE__);
    zl_test_wait_count(&R.side[SRV].closed, 1, WAIT_MS);
    s = snap(SRV);
    CHECK(s.connects == 1 && s.closed == 1 && !strcmp(s.data, "before\n"),
          "server: %ld connects, %ld closed, got '%s' (error %s '%s')",
          s.connects, s.closed, s.data, zl_err_name(s.err_code), s.err_msg);
    /* The server still serves. */
    rec_reset();
    rec_set(NULL, true, false);
    procs_stop_all();
    cl = s_client(port, "-CAfile", certs.ca, "-verify_return_error",
                  "-brief", NULL);
    if (!cl)
        goto out;
    CHECK(s_client_echo(cl, "again\n", "again\n"),
          "the server does not serve after refusing a renegotiation:%s",
          proc_dump(cl));
out:
    server_free(srv);
    end();
}

/* Stopping our server while s_client is connected: it says goodbye with
 * close_notify, so s_client ends cleanly (no "unexpected eof").
 *
 * (Regression: the main thread once read a session's connection and poller
 * before the poller thread's writes were ordered before it, a race TSan
 * reported on every such stop; they are now set before the session is
 * linked where zl_instance_stop() finds it.) */
static void test_server_stop_close_notify(void)
{
    icfg_t sc = {{"tls-cert", certs.srv, "tls-key", certs.srv_key, NULL}};
    zl_instance_t *srv = NULL;
    uint64_t t0;
    proc_t *cl;
    uint16_t port;
    char *text;

    if (!begin())
        return;
    cl = server_and_s_client(&sc, &srv, &port, "-CAfile", certs.ca,
                             "-verify_return_error", "-brief", NULL);
    if (!cl)
        goto out;
    CHECK(s_client_echo(cl, "hello\n", "hello\n"), "no echo:%s",
          proc_dump(cl));
    t0 = zl_now_ms();
    zl_instance_free(srv); /* s_client's input is still open */
    srv = NULL;
    CHECK(zl_now_ms() - t0 < slow_ms(3000), "the stop took %llu ms",
          (unsigned long long)(zl_now_ms() - t0));
    CHECK(proc_wait_exit(cl, WAIT_MS), "s_client did not end when our "
          "server stopped:%s", proc_dump(cl));
    text = proc_text(cl, P_BOTH);
    CHECK(proc_exited_ok(cl) && !has(text, "unexpected eof") &&
              !has(text, ":error:"),
          "s_client did not see a clean close_notify:%s", proc_dump(cl));
    g_free(text);
out:
    zl_instance_free(srv);
    end();
}

/* ------------------------------------------------- 6. cipher suites */

/* What an audit (testssl.sh, sslscan) checks, with OpenSSL's tools:
 * without tls-ciphers, both ends offer TLS 1.2 suites with forward secrecy
 * (ECDHE) and AEAD only, and a server's order wins over the client's;
 * tls-ciphers and tls-ciphersuites replace the lists. */

/* s_client (EXTRA: its cipher options, after -CAfile and -brief) against
 * our echo server with config sc.  With want: the handshake succeeds with
 * that suite, as s_client and our server both say, and a line comes back.
 * With want NULL: the handshake fails, s_client gets a handshake failure
 * alert and our server reports "no shared cipher". */
static void server_cipher_case(icfg_t *sc, const char *const *extra,
                               const char *want, int line)
{
    const char *msg = "cipher check\n";
    zl_instance_t *srv = NULL;
    args_t a = {.n = 0};
    char seen[96];
    proc_t *cl;
    uint16_t port;
    snap_t s;
    char *out;

    procs_stop_all();
    rec_reset();
    args_add(&a, "-CAfile", certs.ca, "-verify_return_error", "-brief", NULL);
    for (int i = 0; extra && extra[i]; i++)
        args_add(&a, extra[i], NULL);
    cl = server_and_s_client_v(sc, &srv, &port, false, a.v);
    if (!cl)
        goto out;
    if (!want) {
        s_client_fails(cl, "handshake failure", line);
        expect_handshake_fail(SRV, cl, 0, "no shared cipher", NULL, line);
        goto out;
    }
    zl_test_check_at(__FILE__, line, s_client_echo(cl, msg, msg),
                     "no echo with %s (server error '%s'):%s", want,
                     snap(SRV).err_msg, proc_dump(cl));
    s_client_ends(cl, line);
    out = proc_text(cl, P_BOTH);
    snprintf(seen, sizeof(seen), "Ciphersuite: %s\n", want);
    zl_test_check_at(__FILE__, line, has(out, seen),
                     "s_client did not negotiate %s:%s", want, proc_dump(cl));
    g_free(out);
    s = snap(SRV);
    zl_test_check_at(__FILE__, line, !strcmp(s.cipher, want),
                     "our server's cipher is '%s', want %s", s.cipher, want);
out:
    server_free(srv);
}

#define server_cipher(sc, want, ...)                                        \
    server_cipher_case((sc), (const char *const[]){__VA_ARGS__, NULL},       \
                       (want), __LINE__)

/* CBC suites are not offered (LUCKY13), with an EC key or an RSA key, with
 * forward secrecy or without; AEAD ones with ECDHE are. */
static void test_server_no_cbc(void)
{
    icfg_t ec = {{"tls-cert", certs.srv, "tls-key", certs.srv_key, NULL}};
    icfg_t rsa = {{"tls-cert", certs.rsa, "tls-key", certs.rsa_key, NULL}};

    if (!begin())
        return;
    server_cipher(&ec, NULL, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256");
    server_cipher(&ec, NULL, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA");
    server_cipher(&rsa, NULL, "-tls1_2", "-cipher", "AES128-SHA256");
    server_cipher(&rsa, NULL, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA");
    server_cipher(&ec, "ECDHE-ECDSA-AES128-GCM-SHA256", "-tls1_2", "-cipher",
                  "ECDHE-ECDSA-AES128-GCM-SHA256");
    server_cipher(&rsa, "ECDHE-RSA-CHACHA20-POLY1305", "-tls1_2", "-cipher",
                  "ECDHE-RSA-CHACHA20-POLY1305");
    end();
}

/* With an RSA key, no static RSA key exchange (no forward secrecy). */
static void test_server_no_static_rsa(void)
{
    icfg_t rsa = {{"tls-cert", certs.rsa, "tls-key", certs.rsa_key, NULL}};

    if (!begin())
        return;
    server_cipher(&rsa, NULL, "-tls1_2", "-cipher", "AES128-GCM-SHA256");
    server_cipher(&rsa, NULL, "-tls1_2", "-cipher", "AES256-GCM-SHA384");
    server_cipher(&rsa, "ECDHE-RSA-AES128-GCM-SHA256", "-tls1_2", "-cipher",
                  "ECDHE-RSA-AES128-GCM-SHA256");
    end();
}

/* A client that prefers AES-128 gets the server's first choice, AES-256
 * (then ChaCha20): in TLS 1.2 with either key, and in TLS 1.3. */
static void test_server_order_wins(void)
{
    icfg_t ec = {{"tls-cert", certs.srv, "tls-key", certs.srv_key, NULL}};
    icfg_t rsa = {{"tls-cert", certs.rsa, "tls-key", certs.rsa_key, NULL}};

    if (!begin())
        return;
    server_cipher(&rsa, "ECDHE-RSA-AES256-GCM-SHA384", "-tls1_2", "-cipher",
                  "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384");
    server_cipher(&ec, "ECDHE-ECDSA-CHACHA20-POLY1305", "-tls1_2", "-cipher",
                  "ECDHE-ECDSA-AES128-GCM-SHA256:"
                  "ECDHE-ECDSA-CHACHA20-POLY1305");
    server_cipher(&ec, "TLS_AES_256_GCM_SHA384", "-ciphersuites",
                  "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384");
    end();
}

/* tls-ciphers replaces the TLS 1.2 list, in its order: a static RSA suite
 * comes back, the default ones are gone, and the server's order still
 * wins. */
static void test_server_tls_ciphers(void)
{
    icfg_t one = {{"tls-cert", certs.rsa, "tls-key", certs.rsa_key,
                   "tls-ciphers", "AES128-GCM-SHA256", NULL}};
    icfg_t two = {{"tls-cert", certs.rsa, "tls-key", certs.rsa_key,
                   "tls-ciphers",
                   "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
                   NULL}};

    if (!begin())
        return;
    server_cipher(&one, "AES128-GCM-SHA256", "-tls1_2", "-cipher",
                  "AES128-GCM-SHA256");
    server_cipher(&one, NULL, "-tls1_2", "-cipher",
                  "ECDHE-RSA-AES256-GCM-SHA384");
    server_cipher(&two, "ECDHE-RSA-AES128-GCM-SHA256", "-tls1_2", "-cipher",
                  "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256");
    end();
}

/* tls-ciphersuites restricts TLS 1.3. */
static void test_server_tls_ciphersuites(void)
{
    icfg_t sc = {{"tls-cert", certs.srv, "tls-key", certs.srv_key,
                  "tls-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256", NULL}};

    if (!begin())
        return;
    server_cipher(&sc, NULL, "-ciphersuites", "TLS_AES_128_GCM_SHA256");
    server_cipher(&sc, "TLS_CHACHA20_POLY1305_SHA256", "-ciphersuites",
                  "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:"
                  "TLS_CHACHA20_POLY1305_SHA256");
    end();
}

/* Whether every suite of s_server -rev's "Client cipher list: A:B:..." line
 * in text is a TLS 1.3 suite (TLS_..., the renegotiation SCSV included) or
 * one of allowed (colon-separated); bad receives the first that is not. */
static bool offer_within(const char *text, const char *allowed, char *bad,
                         size_t len)
{
    const char *p = text ? strstr(text, "Client cipher list: ") : NULL;
    gchar *line, *set = g_strdup_printf(":%s:", allowed);
    gchar **parts;
    bool ok = true;

    snprintf(bad, len, "(no 'Client cipher list' line)");
    if (!p) {
        g_free(set);
        return false;
    }
    p += strlen("Client cipher list: ");
    line = g_strndup(p, strcspn(p, "\r\n"));
    parts = g_strsplit(line, ":", -1);
    for (int i = 0; ok && parts[i]; i++) {
        gchar *want = g_strdup_printf(":%s:", parts[i]);

        /* OpenSSL names TLS 1.2 suites without the TLS_ prefix. */
        if (strncmp(parts[i], "TLS_", 4) && !strstr(set, want)) {
            snprintf(bad, len, "%s", parts[i]);
            ok = false;
        }
        g_free(want);
    }
    g_strfreev(parts);
    g_free(line);
    g_free(set);
    return ok;
}

#define AEAD_ECDHE                                                          \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"            \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"

/* Our client offers the same AEAD, forward-secret TLS 1.2 suites as a
 * server (as s_server -rev lists what it was offered), and so cannot talk
 * to a server that has only CBC suites, unless tls-ciphers says so. */
static void test_client_offers_aead_only(void)
{
    icfg_t cc = {{"tls-ca", certs.ca, NULL}};
    icfg_t cbc = {{"tls-ca", certs.ca, "tls-ciphers",
                   "ECDHE-ECDSA-AES128-SHA256", NULL}};
    const char *const cbc_only[] = {"-tls1_2", "-cipher",
                                    "ECDHE-ECDSA-AES128-SHA256", NULL};
    char bad[128];
    proc_t *sv;
    snap_t c;
    char *text;

    if (!begin())
        return;
    sv = client_rev(certs.srv, certs.srv_key,
                    (const char *const[]){"-tls1_2", NULL}, &cc,
                    "offer check\n", &c, __LINE__);
    if (sv) {
        text = proc_text(sv, P_BOTH);
        CHECK(offer_within(text, AEAD_ECDHE, bad, sizeof(bad)),
              "our client offered %s:%s", bad, proc_dump(sv));
        g_free(text);
        CHECK(!strcmp(c.cipher, "ECDHE-ECDSA-AES256-GCM-SHA384"),
              "cipher '%s', want ECDHE-ECDSA-AES256-GCM-SHA384", c.cipher);
    }
    procs_stop_all();
    rec_reset();
    client_fails(certs.srv, certs.srv_key,
                 (const char *const[]){"-rev", "-tls1_2", "-cipher",
                                       "ECDHE-ECDSA-AES128-SHA256", NULL},
                 &cc,
                 "handshake failure", NULL, P_BOTH, "no shared cipher",
                 __LINE__);
    procs_stop_all();
    rec_reset();
    sv = client_rev(certs.srv, certs.srv_key, cbc_only, &cbc, "cbc\n", &c,
                    __LINE__);
    if (sv) {
        text = proc_text(sv, P_BOTH);
        CHECK(offer_within(text, "ECDHE-ECDSA-AES128-SHA256", bad,
                           sizeof(bad)),
              "with tls-ciphers our client offered %s:%s", bad,
              proc_dump(sv));
        g_free(text);
        CHECK(!strcmp(c.cipher, "ECDHE-ECDSA-AES128-SHA256"),
              "cipher '%s', want ECDHE-ECDSA-AES128-SHA256", c.cipher);
    }
    end();
}

/* A client's tls-ciphersuites restricts its TLS 1.3 offer. */
static void test_client_tls_ciphersuites(void)
{
    icfg_t cc = {{"tls-ca", certs.ca, "tls-ciphersuites",
                  "TLS_CHACHA20_POLY1305_SHA256", NULL}};
    proc_t *sv;
    snap_t c;

    if (!begin())
        return;
    sv = client_rev(certs.srv, certs.srv_key, NULL, &cc, "tls 1.3\n", &c,
                    __LINE__);
    if (sv)
        CHECK(!strcmp(c.version, "TLSv1.3") &&
                  !strcmp(c.cipher, "TLS_CHACHA20_POLY1305_SHA256"),
              "%s %s, want TLSv1.3 TLS_CHACHA20_POLY1305_SHA256", c.version,
              c.cipher);
    end();
}

/* ------------------------------------------------------------ suite */

/* Like command -v openssl. */
static bool find_openssl(void)
{
    const char *path = getenv("PATH");
    gchar **dirs;

    openssl_bin[0] = '\0';
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    dirs = g_strsplit(path, ":", -1);
    for (int i = 0; dirs[i]; i++) {
        char p[PATH_MAX];
        struct stat st;

        snprintf(p, sizeof(p), "%s/openssl", *dirs[i] ? dirs[i] : ".");
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode) &&
            access(p, X_OK) == 0) {
            snprintf(openssl_bin, sizeof(openssl_bin), "%s", p);
            break;
        }
    }
    g_strfreev(dirs);
    return openssl_bin[0] != '\0';
}

static int suite_init(void)
{
    pthread_mutex_init(&R.mu, NULL);
    if (!find_openssl())
        fprintf(stderr, "\ntls-interop: openssl(1) is not on PATH: every "
                "test fails; install the openssl package\n");
    host = zl_plugins_host_api();
    if (!zl_test_tls_suite_init(&plugins, &certs, "tls-interop", NULL))
        return -1;
    return 0;
}

static int suite_cleanup(void)
{
    procs_stop_all();
    zl_test_tls_suite_cleanup(&plugins, &certs);
    pthread_mutex_destroy(&R.mu);
    return 0;
}

int zl_test_register_tls_interop(void)
{
    static const zl_test_case_t cases[] = {
        {"openssl(1) is on PATH, version 3", test_openssl_present},
        {"client -> s_server -rev, tls-ca", test_client_rev},
        {"client -> s_server -tls1_2", test_client_tls12},
        {"client -> s_server both ways, SNI", test_client_both_ways},
        {"client refuses s_server: self-signed",
         test_client_refuses_self_signed},
        {"client refuses s_server: hostname mismatch",
         test_client_refuses_hostname},
        {"client refuses s_server: IP address mismatch",
         test_client_refuses_ip},
        {"client refuses s_server: expired", test_client_refuses_expired},
        {"client refuses s_server: unknown CA",
         test_client_refuses_unknown_ca},
        {"client tls-min-version 1.3 -> s_server -tls1_2",
         test_client_min_version},
        {"client tls-verify = false -> self-signed s_server",
         test_client_verify_false},
        {"client tls-cert -> s_server -Verify 1", test_client_mtls},
        {"client without a certificate -> s_server -Verify 1",
         test_client_mtls_missing},
        {"client without a certificate -> s_server -Verify 1 -tls1_2",
         test_client_mtls_missing_tls12},
        {"client tls-alpn -> s_server -alpn", test_client_alpn},
        {"client resumes with s_server across a reconnect",
         test_client_resume},
        {"s_server's close_notify reaches our client's handler",
         test_peer_close_notify},
        {"client <- s_server KeyUpdate", test_client_key_update},
        {"s_client -> server: echo, verified", test_server_echo},
        {"s_client -tls1_2 -servername -> server", test_server_tls12_sni},
        {"s_client -> server: 256 KiB round trip", test_server_bulk},
        {"s_client without the CA -> server", test_server_client_refuses},
        {"s_client without -cert -> server requiring one",
         test_server_mtls_missing},
        {"s_client -cert -> server requiring one", test_server_mtls},
        {"s_client -alpn -> server tls-alpn", test_server_alpn},
        {"s_client KeyUpdate -> server", test_server_key_update},
        {"s_client -tls1_2 renegotiation -> server refuses",
         test_server_renegotiation},
        {"server stop -> s_client sees close_notify",
         test_server_stop_close_notify},
        {"s_client CBC suites -> server refuses", test_server_no_cbc},
        {"s_client static RSA suites -> RSA server refuses",
         test_server_no_static_rsa},
        {"s_client preferring AES-128 -> server's order wins",
         test_server_order_wins},
        {"s_client -> server tls-ciphers", test_server_tls_ciphers},
        {"s_client -ciphersuites -> server tls-ciphersuites",
         test_server_tls_ciphersuites},
        {"client offers AEAD only; tls-ciphers -> CBC s_server",
         test_client_offers_aead_only},
        {"client tls-ciphersuites -> s_server", test_client_tls_ciphersuites},
        {NULL, NULL},
    };

    return zl_test_add_suite("tls-interop", suite_init, suite_cleanup,
                             cases);
}
