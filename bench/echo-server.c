/* bench/echo-server — echo server on the zltk API.
 *
 *   echo-server --port PORT [--host ADDR] [--pollers N]
 *
 * Serves until SIGINT/SIGTERM.  Echoes with backpressure: reading pauses
 * while the peer's queue is above the high watermark.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <zltk/zltk.h>

static void on_recv(zl_conn_t *c, zl_buf_t *b)
{
    if (zl_conn_send(c, b->data, b->len) == ZL_CONN_BUSY)
        zl_conn_pause(c);
}

static void on_busy(zl_conn_t *c, bool busy)
{
    if (!busy)
        zl_conn_resume(c);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    unsigned port = 0, pollers = 1;
    zl_runtime_options_t ro = {0};
    zl_log_options_t lo = {.level = ZL_LOG_WARNING, .console = true};
    zl_conn_handler_t h = {.on_recv = on_recv, .on_busy = on_busy};
    zl_server_options_t so = ZL_SERVER_OPTIONS_INIT;
    zl_server_t *s;
    struct rlimit rl;
    sigset_t set;
    int sig, rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc)
            host = argv[++i];
        else if (!strcmp(argv[i], "--pollers") && i + 1 < argc)
            pollers = (unsigned)atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s --port PORT [--host ADDR] [--pollers N]\n"
                            "Echo server on zltk; runs until SIGINT/SIGTERM.\n",
                    argv[0]);
            return 2;
        }
    }
    if (!port || port > 65535) {
        fprintf(stderr, "echo-server: --port 1..65535 is required\n");
        return 2;
    }
    /* Many idle connections in the memory test. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    zl_log_init(&lo);
    ro.pollers = pollers;
    ro.workers = 1;
    if ((rc = zl_runtime_init(&ro)) < 0) {
        fprintf(stderr, "echo-server: %s\n", zl_strerror(rc));
        return 1;
    }
    so.host = host;
    so.port = (uint16_t)port;
    so.backlog = 4096;
    if ((rc = zl_server_new(&s, &so, &h, NULL)) < 0) {
        fprintf(stderr, "echo-server: cannot listen on %s:%u: %s\n", host,
                port, zl_strerror(rc));
        zl_runtime_shutdown();
        zl_log_shutdown();
        return 1;
    }
    printf("echo-server: listening on %s:%u with %u poller(s)\n", host, port,
           pollers);
    fflush(stdout);
    while (sigwait(&set, &sig) != 0)
        ;
    zl_server_free(s);
    zl_runtime_shutdown();
    zl_log_shutdown();
    return 0;
}
