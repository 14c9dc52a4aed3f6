/* tcp-server: an echo server on zltk, plain or TLS.
 *
 * One handler (zl_handler_t) serves every connection: it sends back what
 * it receives without copying it (the received buffer is queued as it
 * is), counts the bytes per session and logs the count when the session
 * closes.  Backpressure: when a peer sends faster than it reads, the
 * session's send queue rises above its high mark, zltk calls
 * on_busy(true) and the handler stops reading from that peer until
 * on_busy(false) says the queue has drained to the low mark.  So a client
 * that only writes cannot make the server buffer without bound.
 *
 * --tls --cert FILE --key FILE puts the tls layer under the same handler:
 * the lines marked "TLS" in main().
 *
 * Threads: main() starts zltk, opens the instance and waits for a signal;
 * each session's callbacks run on one zltk poller thread, one at a time,
 * so the per-session state needs no lock.
 */
#define G_LOG_DOMAIN "tcp-server"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zltk/zltk.h>

/* Per-session state, allocated zeroed by zltk beside each session. */
struct echo {
    uint64_t bytes; /* echoed so far */
    bool paused;    /* not reading: the peer is not reading our echo */
    char peer[ZL_ADDR_STRLEN];
};

static void on_connect(zl_session_t *s, void *state, const zl_error_t *err)
{
    struct echo *e = state;

    (void)err; /* always NULL for a server session */
    zl_addr_format(zl_session_peer(s), e->peer, sizeof e->peer);
    g_message("%s: connected", e->peer);
}

static void on_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    struct echo *e = state;

    e->bytes += buf->len;
    /* send_buf takes over one reference: ours, the bytes not copied.  A
     * ZL_CONN_BUSY result is followed by on_busy(true). */
    zl_session_send_buf(s, zl_buf_ref(buf));
}

static void on_busy(zl_session_t *s, void *state, bool busy)
{
    struct echo *e = state;

    if (busy == e->paused)
        return;
    e->paused = busy;
    if (busy)
        zl_session_pause(s);
    else
        zl_session_resume(s);
    g_message("%s: %s", e->peer,
              busy ? "not reading our echo: paused reading"
                   : "caught up: reading again");
}

static void on_err(zl_session_t *s, void *state, const zl_error_t *err)
{
    struct echo *e = state;

    (void)s;
    if (err->code != ZL_EOF) /* end of stream is the normal goodbye */
        g_message("%s: %s", e->peer, err->message);
}

static void on_closed(zl_session_t *s, void *state)
{
    struct echo *e = state;

    (void)s;
    g_message("%s: closed after echoing %" PRIu64 " bytes", e->peer,
              e->bytes);
}

static const zl_handler_t echo = {
    .struct_size = sizeof(zl_handler_t),
    .state_size = sizeof(struct echo),
    .on_connect = on_connect,
    .on_recv = on_recv,
    .on_busy = on_busy,
    .on_err = on_err,
    .on_closed = on_closed,
};

static const char usage[] =
    "Usage: tcp-server [--tls --cert FILE --key FILE] HOST PORT\n"
    "\n"
    "Listens on HOST:PORT (PORT 0: any free port, logged) and sends every\n"
    "connection back what it receives.  Each session's byte count is logged\n"
    "when it closes; a peer that does not read its echo is not read from\n"
    "until it catches up.  SIGINT (Ctrl-C) or SIGTERM stops it gracefully\n"
    "with exit status 0.\n"
    "\n"
    "  --tls        the same server over TLS (zltk's tls layer, found by\n"
    "               name on the plugin path)\n"
    "  --cert FILE  its certificate (PEM, the chain after it)\n"
    "  --key FILE   its private key (PEM)\n"
    "  -h, --help   this text\n"
    "\n"
    "Try it:\n"
    "  tcp-server 127.0.0.1 9000 &\n"
    "  echo hi | socat -t 1 - TCP:127.0.0.1:9000\n"
    "  tcp-server --tls --cert server.pem --key server.key 127.0.0.1 9001 &\n"
    "  openssl s_client -connect 127.0.0.1:9001 -CAfile ca.pem -quiet\n"
    "More log lines: ZLTK_LOG_LEVEL=info (or debug).\n";

struct args {
    bool tls;
    const char *cert, *key, *host;
    uint16_t port;
};

/* Returns 0, or the exit status for a usage error (2) or --help (0). */
static int parse_args(int argc, char **argv, struct args *a, bool *done)
{
    static const struct option longopts[] = {
        {"tls", no_argument, NULL, 't'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *end;
    unsigned long port;
    int opt;

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 't': a->tls = true; break;
        case 'c': a->cert = optarg; break;
        case 'k': a->key = optarg; break;
        case 'h': fputs(usage, stdout); *done = true; return 0;
        default: goto bad;
        }
    }
    if (argc - optind != 2)
        goto bad;
    a->host = argv[optind];
    errno = 0;
    port = strtoul(argv[optind + 1], &end, 10);
    if (errno || *end || end == argv[optind + 1] || port > 65535) {
        fprintf(stderr, "tcp-server: PORT '%s': not a port (0-65535)\n",
                argv[optind + 1]);
        return 2;
    }
    a->port = (uint16_t)port;
    if (a->tls ? !(a->cert && a->key) : a->cert || a->key) {
        fputs("tcp-server: --tls needs --cert FILE and --key FILE, and "
              "they need --tls\n", stderr);
        return 2;
    }
    return 0;
bad:
    fputs(usage, stderr);
    return 2;
}

int main(int argc, char **argv)
{
    struct args a = {0};
    bool done = false;
    int rc = parse_args(argc, argv, &a, &done), sig;
    sigset_t stop;
    GError *error = NULL;
    char addr[ZL_ADDR_STRLEN];

    if (rc || done)
        return rc;
    /* Block the stop signals before zltk starts its threads, which inherit
     * the mask: main() alone takes them, with sigwait(). */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    if (zl_start(NULL) < 0) /* logging, pollers, workers: the reason logged */
        return 1;

    zl_instance_options_t o = ZL_INSTANCE_OPTIONS_INIT;
    o.name = "tcp-server";
    o.server = true;
    o.handler = &echo;
    o.server_opts.host = a.host;
    o.server_opts.port = a.port;
    /* TLS: the tls layer by name, and its zltk.conf keys. */
    const zl_setting_t tls[] = {
        {"tls-cert", a.cert}, {"tls-key", a.key}, {NULL, NULL}};
    if (a.tls) {
        o.layer_name = "tls";
        o.settings = tls;
    }

    zl_instance_t *inst = zl_instance_open(&o, &error);
    if (!inst) {
        zl_stop();
        fprintf(stderr, "tcp-server: %s\n", error->message);
        g_error_free(error);
        return 1;
    }
    g_message("listening on %s%s",
              zl_addr_format(zl_instance_server_addr(inst), addr, sizeof addr),
              a.tls ? " (TLS)" : "");
    while (sigwait(&stop, &sig) != 0)
        ;
    g_message("stopping (%s)", strsignal(sig));
    zl_instance_close(inst); /* every session closed: on_closed has run */
    zl_stop();
    return 0;
}
