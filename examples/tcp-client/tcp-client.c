/* tcp-client: ZLToolKit's tests/test_tcpClient.cpp, the program zltk grew
 * from, written in C against the installed library.
 *
 * One handler (zl_handler_t) does all the work: it says hello on connect,
 * sends "tick N" from each manager tick, prints what arrives and logs the
 * rest.  The instance reconnects with backoff.  --tls puts the tls layer
 * under the same handler by name; that switch is the few lines marked
 * "TLS" in main().
 *
 * Threads: main() starts zltk, opens the instance and waits for a signal.
 * The callbacks run on a zltk poller thread, one at a time per session,
 * so the per-session state needs no lock.
 */
#define G_LOG_DOMAIN "tcp-client"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zltk/zltk.h>

/* Per-session state: zltk allocates it zeroed, and a client keeps its one
 * session across reconnects. */
struct client {
    unsigned connects; /* successful connections so far */
    unsigned ticks;    /* "tick N" lines sent */
    bool up;           /* connected now */
};

static void on_connect(zl_session_t *s, void *state, const zl_error_t *err)
{
    struct client *c = state;
    char peer[ZL_ADDR_STRLEN];
    const char *tls;

    if (err) { /* this attempt failed; the instance retries with backoff */
        g_message("connect failed: %s; retrying", err->message);
        return;
    }
    c->up = true;
    tls = zl_session_transport_info(s, "version"); /* NULL without a layer */
    g_message("%s %s%s%s", c->connects++ ? "reconnected to" : "connected to",
              zl_addr_format(zl_session_peer(s), peer, sizeof peer),
              tls ? " over " : "", tls ? tls : "");
    zl_session_send(s, "hello from zltk\n", 16);
}

static void on_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    (void)state;
    if (fwrite(buf->data, 1, buf->len, stdout) != buf->len ||
        fflush(stdout) != 0) /* e.g. a closed pipe: stop for good */
        zl_session_fail(s, errno ? -errno : -EIO, "standard output: %s",
                        strerror(errno ? errno : EIO));
}

static void on_err(zl_session_t *s, void *state, const zl_error_t *err)
{
    struct client *c = state;

    c->up = false;
    if (err->code == ZL_ETLS) {
        /* A certificate that does not verify, a wrong name, a peer that
         * does not speak TLS: retrying does not fix them.  fail() ends
         * the session without a reconnect; main() prints the reason. */
        zl_session_fail(s, err->code, "%s", err->message);
        return;
    }
    g_message("%s; reconnecting", err->message);
}

static void on_flush(zl_session_t *s, void *state)
{
    (void)s, (void)state;
    g_message("flushed: the send queue is empty again");
}

static void on_manager(zl_session_t *s, void *state)
{
    struct client *c = state;
    char line[32];
    int n;

    if (!c->up) /* ticks come while connecting too */
        return;
    n = snprintf(line, sizeof line, "tick %u\n", ++c->ticks);
    zl_session_send(s, line, (size_t)n);
}

static void on_closed(zl_session_t *s, void *state)
{
    struct client *c = state;
    (void)s;
    g_message("closed after %u connection(s)", c->connects);
}

static const zl_handler_t client = {
    .struct_size = sizeof(zl_handler_t),
    .state_size = sizeof(struct client),
    .on_connect = on_connect,
    .on_recv = on_recv,
    .on_err = on_err,
    .on_flush = on_flush,
    .on_manager = on_manager,
    .on_closed = on_closed,
};

/* The instance ended on its own (a TLS failure): wake main(). */
static void on_finished(zl_instance_t *inst, void *ctx)
{
    (void)inst, (void)ctx;
    kill(getpid(), SIGUSR1);
}

static const char usage[] =
    "Usage: tcp-client [--tls] [--ca FILE] [--server-name NAME] [--insecure]"
    " HOST PORT\n"
    "\n"
    "Connects to HOST:PORT, sends \"hello from zltk\", then \"tick N\" every"
    " 2 s,\n"
    "and prints every byte it receives on standard output.  Connects, errors,\n"
    "flushes and reconnects are logged on standard error; a lost or refused\n"
    "connection is retried with a growing delay.  SIGINT (Ctrl-C) or SIGTERM\n"
    "stops it with exit status 0.\n"
    "\n"
    "  --tls               the same client over TLS (zltk's tls layer, found by\n"
    "                      name on the plugin path).  The server's certificate\n"
    "                      and name are verified: against the system's CAs\n"
    "  --ca FILE           ... or against the CA certificates in FILE (PEM)\n"
    "  --server-name NAME  the name to verify and send (SNI); default HOST\n"
    "  --insecure          verify nothing (tests only: logged as a warning)\n"
    "  -h, --help          this text\n"
    "\n"
    "A TLS failure, such as a certificate that does not verify, is not\n"
    "retried: tcp-client prints the reason and exits with status 1.\n"
    "\n"
    "Try it:\n"
    "  socat TCP-LISTEN:9000,reuseaddr,fork EXEC:cat &\n"
    "  tcp-client 127.0.0.1 9000\n"
    "  openssl s_server -accept 9001 -cert server.pem -key server.key &\n"
    "  tcp-client --tls --ca ca.pem localhost 9001\n"
    "More log lines: ZLTK_LOG_LEVEL=info (or debug).\n";

struct args {
    bool tls, insecure;
    const char *ca, *server_name, *host;
    uint16_t port;
};

/* Returns 0, or the exit status for a usage error (2) or --help (0). */
static int parse_args(int argc, char **argv, struct args *a, bool *done)
{
    static const struct option longopts[] = {
        {"tls", no_argument, NULL, 't'},
        {"ca", required_argument, NULL, 'c'},
        {"server-name", required_argument, NULL, 'n'},
        {"insecure", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *end;
    unsigned long port;
    int opt;

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 't': a->tls = true; break;
        case 'c': a->ca = optarg; break;
        case 'n': a->server_name = optarg; break;
        case 'k': a->insecure = true; break;
        case 'h': fputs(usage, stdout); *done = true; return 0;
        default: goto bad;
        }
    }
    if (argc - optind != 2)
        goto bad;
    a->host = argv[optind];
    errno = 0;
    port = strtoul(argv[optind + 1], &end, 10);
    if (errno || *end || end == argv[optind + 1] || port == 0 || port > 65535) {
        fprintf(stderr, "tcp-client: PORT '%s': not a port (1-65535)\n",
                argv[optind + 1]);
        return 2;
    }
    a->port = (uint16_t)port;
    if (!a->tls && (a->ca || a->server_name || a->insecure)) {
        fputs("tcp-client: --ca, --server-name and --insecure need --tls\n",
              stderr);
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
    char why[512] = "";

    if (rc || done)
        return rc;
    /* Block the stop signals before zltk starts its threads, which inherit
     * the mask: main() alone takes them, with sigwait(). */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGUSR1);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed stdout is an error, not a death */
    if (zl_start(NULL) < 0) /* logging, pollers, workers: the reason logged */
        return 1;

    zl_instance_options_t o = ZL_INSTANCE_OPTIONS_INIT;
    o.name = "tcp-client";
    o.handler = &client;
    o.client.host = a.host;
    o.client.port = a.port;
    o.client.reconnect = true; /* 0.5 s, doubling up to 30 s, never giving up */
    o.on_finished = on_finished;
    /* TLS: the tls layer by name, and its zltk.conf keys. */
    zl_setting_t tls[4] = {{"tls-verify", a.insecure ? "false" : "true"}};
    zl_setting_t *t = tls + 1;
    if (a.ca)
        *t++ = (zl_setting_t){"tls-ca", a.ca};
    if (a.server_name)
        *t++ = (zl_setting_t){"tls-server-name", a.server_name};
    if (a.tls) {
        o.layer_name = "tls";
        o.settings = tls;
    }

    zl_instance_t *inst = zl_instance_open(&o, &error);
    if (!inst) {
        zl_stop();
        fprintf(stderr, "tcp-client: %s\n", error->message);
        g_error_free(error);
        return 1;
    }
    while (sigwait(&stop, &sig) != 0)
        ;
    if (sig == SIGUSR1)
        zl_instance_last_error(inst, why, sizeof why);
    zl_instance_close(inst); /* closes gracefully: on_closed has run */
    zl_stop();
    if (sig == SIGUSR1) {
        fprintf(stderr, "tcp-client: %s\n", why);
        return 1;
    }
    return 0;
}
