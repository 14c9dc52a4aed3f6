/* zltk-host — a run: start the runtime, the plugins and the instances,
 * wait for a stop signal, the duration or the end of --connect's client,
 * then stop gracefully.  SIGINT/SIGTERM stop it (stop accepting, close
 * sessions, stop plugins, flush logs); a second signal ends it at once.
 */
#define G_LOG_DOMAIN "zltk-host"
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include <zltk/zltk.h>

#include "host-config.h"

/* --heartbeat: one per poller. */
struct zl_host_beat {
    zl_poller_t *poller;
    zl_timer_t *timer;
    atomic_uint count;
};

static void on_delay(zl_poller_t *p, uint64_t delay_us, void *arg)
{
    zl_host_beat_t *b = arg;
    g_message("%s: heartbeat %u, load %u%%, queue delay %" G_GUINT64_FORMAT
              " us, %zu fds, %zu timers",
              zl_poller_name(p), atomic_fetch_add(&b->count, 1) + 1,
              zl_poller_load(p), delay_us, zl_poller_fd_count(p),
              zl_poller_timer_count(p));
}

static bool heartbeat(void *arg)
{
    zl_host_beat_t *b = arg;
    zl_poller_probe_delay(b->poller, on_delay, b);
    return true;
}

static pthread_t main_thread;

/* A client instance ended on its own (gave up, or its peer closed): wake
 * the main thread, which decides what that means. */
void zl_host_on_finished(zl_instance_t *inst, void *ctx)
{
    (void)inst, (void)ctx;
    pthread_kill(main_thread, SIGUSR1);
}

/* The address a client reaches server NAME at: its bound address, with a
 * wildcard replaced by loopback. */
static bool server_address(zl_host_cfg_t *cfg, const char *name, char *host,
                           size_t hostlen, uint16_t *port)
{
    char buf[ZL_ADDR_STRLEN];

    for (guint i = 0; i < cfg->servers->len; i++) {
        zl_host_instance_t *in = cfg->servers->pdata[i];
        const zl_addr_t *a;

        if (strcmp(in->name, name) || !in->inst)
            continue;
        a = zl_instance_server_addr(in->inst);
        if (!a)
            return false;
        zl_addr_format(a, buf, sizeof(buf));
        if (zl_addr_split(buf, host, hostlen, port, true) < 0)
            return false;
        if (!strcmp(host, "0.0.0.0"))
            g_strlcpy(host, "127.0.0.1", hostlen);
        else if (!strcmp(host, "::"))
            g_strlcpy(host, "::1", hostlen);
        return true;
    }
    return false;
}

/* Start servers, then clients.  Returns the number started, or -1 after a
 * fatal failure (printed). */
static int start_instances(zl_host_cfg_t *cfg, zl_plugin_registry_t *reg,
                           bool strict)
{
    int started = 0;

    for (int s = 1; s >= 0; s--) {
        GPtrArray *list = s ? cfg->servers : cfg->clients;
        for (guint i = 0; i < list->len; i++) {
            zl_host_instance_t *in = list->pdata[i];
            char host[256];
            uint16_t port;
            int rc;

            if (!in->inst)
                continue;
            if (!zl_plugins_find_provider(reg, s ? ZL_PROVIDES_SERVER
                                                 : ZL_PROVIDES_CLIENT,
                                          in->plugin, NULL)) {
                zl_host_cfg_report(cfg, strict, in->group, "plugin",
                                   "handler '%s' is gone: its plugin failed "
                                   "to start%s", in->plugin,
                                   strict ? "" : "; this instance does not run");
                if (strict)
                    return -1;
                continue;
            }
            if (in->peer_server) {
                if (!server_address(cfg, in->peer_server, host, sizeof(host),
                                    &port)) {
                    zl_host_cfg_report(cfg, strict, in->group, "address",
                                       "@%s: that server is not running%s",
                                       in->peer_server,
                                       strict ? ""
                                              : "; this instance does not run");
                    if (strict)
                        return -1;
                    continue;
                }
                zl_instance_set_address(in->inst, host, port);
            }
            rc = zl_instance_start(in->inst);
            if (rc < 0) {
                zl_host_cfg_report(cfg, true, in->group, "address",
                                   "cannot %s: %s", s ? "listen" : "connect",
                                   zl_strerror(rc));
                return -1;
            }
            if (s) {
                char buf[ZL_ADDR_STRLEN];
                g_message("[%s] %s listening on %s", in->group, in->plugin,
                          zl_addr_format(zl_instance_server_addr(in->inst),
                                         buf, sizeof(buf)));
            }
            started++;
        }
    }
    return started;
}

static void stop_instances(zl_host_cfg_t *cfg)
{
    for (int s = 0; s < 2; s++) {
        GPtrArray *list = s ? cfg->servers : cfg->clients;
        for (guint i = 0; i < list->len; i++) {
            zl_host_instance_t *in = list->pdata[i];
            if (in->inst)
                zl_instance_stop(in->inst);
        }
    }
}

/* After SIGUSR1: log clients that have ended; true when every instance has
 * (nothing is left to run). */
static bool note_finished(zl_host_cfg_t *cfg, bool *reported, bool quiet)
{
    bool all = cfg->servers->len == 0;

    for (guint i = 0; i < cfg->clients->len; i++) {
        zl_host_instance_t *in = cfg->clients->pdata[i];
        zl_instance_stats_t st;
        char msg[512];

        if (!in->inst)
            continue;
        zl_instance_get_stats(in->inst, &st);
        if (st.active) {
            all = false;
            continue;
        }
        if (!reported[i] && !quiet)
            g_message("[%s] ended: %s", in->group,
                      *zl_instance_last_error(in->inst, msg, sizeof(msg))
                          ? msg
                          : "closed");
        reported[i] = true;
    }
    return all;
}

/* --connect: 0 if the connection was made and ended normally. */
static int connect_status(zl_host_cfg_t *cfg, const char *addr)
{
    zl_host_instance_t *in = cfg->clients->len ? cfg->clients->pdata[0] : NULL;
    zl_instance_stats_t st;
    char msg[512];

    if (!in || !in->inst)
        return 1;
    zl_instance_get_stats(in->inst, &st);
    zl_instance_last_error(in->inst, msg, sizeof(msg));
    if (!st.connected) {
        fprintf(stderr, "zltk-host: cannot connect to %s: %s\n", addr,
                *msg ? msg : "stopped before connecting");
        return 1;
    }
    if (st.last_error && st.last_error != ZL_EOF &&
        st.last_error != ZL_ESHUTDOWN) {
        fprintf(stderr, "zltk-host: connection to %s failed: %s\n", addr, msg);
        return 1;
    }
    return 0;
}

/* Wait for a stop signal, the duration, or (connect mode) the end of the
 * client.  Returns the signal, or 0 when time ran out or everything ended. */
static int wait_for_stop(const sigset_t *set, int duration,
                         zl_host_cfg_t *cfg, bool connect_mode)
{
    uint64_t deadline = duration > 0 ? zl_now_ms() + (uint64_t)duration * 1000
                                     : 0;
    bool *reported = g_new0(bool, cfg->clients->len + 1);
    int sig;

    for (;;) {
        if (deadline) {
            uint64_t now = zl_now_ms(), left;
            struct timespec ts;

            if (now >= deadline) {
                sig = 0;
                break;
            }
            left = deadline - now;
            ts.tv_sec = (time_t)(left / 1000);
            ts.tv_nsec = (long)(left % 1000) * 1000000L;
            sig = sigtimedwait(set, NULL, &ts);
            if (sig < 0) {
                if (errno == EINTR)
                    continue;
                sig = 0;
                break;
            }
        } else if (sigwait(set, &sig) != 0) {
            continue;
        }
        if (sig != SIGUSR1)
            break;
        if (note_finished(cfg, reported, connect_mode)) {
            sig = 0;
            break;
        }
    }
    g_free(reported);
    return sig;
}

/* Block the stop signals in every thread (main waits for them); SIGUSR1 is
 * the wake-up from instances that end on their own.  Writes to a closed
 * pipe (stdout of --connect, the log's stderr) must fail with EPIPE, not
 * kill the host. */
static void block_signals(sigset_t *set)
{
    signal(SIGPIPE, SIG_IGN);
    main_thread = pthread_self();
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* From now on a second signal ends the process at once. */
static void unblock_stop_signals(void)
{
    sigset_t stops;

    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &stops, NULL);
}

/* The runtime (the command line wins over [host]), then the plugins. */
static int start_runtime(zl_host_t *h, const zl_host_opts_t *o)
{
    zl_runtime_options_t ropts = {0};
    int rc;

    ropts.pollers = (unsigned)(o->pollers >= 0 ? o->pollers : h->cfg.pollers);
    ropts.workers = (unsigned)(o->workers >= 0 ? o->workers : h->cfg.workers);
    ropts.backend = o->backend ? o->backend : h->cfg.backend;
    rc = zl_runtime_init(&ropts);
    if (rc < 0) {
        g_critical("cannot start the runtime: %s", zl_strerror(rc));
        return 1;
    }
    h->runtime_up = true;
    if (zl_plugins_start(h->reg) && o->strict) {
        fprintf(stderr, "zltk-host: a plugin failed to start "
                        "(--strict-plugins)\n");
        return 1;
    }
    return 0;
}

static void start_beats(zl_host_t *h, int ms)
{
    zl_poller_pool_t *pool = zl_runtime_pollers();

    if (ms <= 0)
        return;
    h->n_beats = zl_poller_pool_size(pool);
    h->beats = g_new0(zl_host_beat_t, h->n_beats);
    for (size_t i = 0; i < h->n_beats; i++) {
        h->beats[i].poller = zl_poller_pool_at(pool, i);
        zl_poller_add_repeat(h->beats[i].poller, (uint64_t)ms, heartbeat,
                             &h->beats[i], NULL, &h->beats[i].timer);
    }
}

/* The beats themselves are freed after the runtime: a probe may be under
 * way. */
static void stop_beats(zl_host_t *h)
{
    for (size_t i = 0; i < h->n_beats; i++)
        if (h->beats[i].timer)
            zl_timer_cancel(h->beats[i].timer);
}

/* Stop what runs; returns the exit status (--connect: how its connection
 * went). */
static int stop(zl_host_t *h, const zl_host_opts_t *o, int status, int sig)
{
    unblock_stop_signals();
    if (status == 0)
        g_message("stopping (%s)", sig > 0 ? strsignal(sig)
                                   : o->duration && !o->connect
                                       ? "duration elapsed"
                                       : "done");
    stop_beats(h);
    stop_instances(&h->cfg);
    zl_plugins_stop(h->reg);
    if (o->connect && status == 0) {
        zl_log_flush(); /* the plugin's lines first, then the verdict */
        status = connect_status(&h->cfg, o->connect);
    }
    return status;
}

int zl_host_run(zl_host_t *h, const zl_host_opts_t *o)
{
    sigset_t set;
    int n, sig = 0, status = 0;

    block_signals(&set);
    if (start_runtime(h, o))
        return 1;
    start_beats(h, o->heartbeat);
    n = start_instances(&h->cfg, h->reg, o->strict);
    if (n <= 0) {
        if (n == 0)
            fprintf(stderr, "zltk-host: %s: nothing to run (no instance "
                            "could start)\n", h->cfg.file);
        status = 1;
    } else {
        zl_poller_pool_t *pool = zl_runtime_pollers();
        g_message("zltk-host %s running %s: %d instance%s on %zu pollers "
                  "(%s)%s",
                  zl_version(), h->cfg.file, n, n == 1 ? "" : "s",
                  zl_poller_pool_size(pool),
                  zl_poller_backend(zl_poller_pool_at(pool, 0)),
                  o->duration ? "" : "; stop with Ctrl-C");
        sig = wait_for_stop(&set, o->duration, &h->cfg, o->connect != NULL);
    }
    return stop(h, o, status, sig);
}

void zl_host_free(zl_host_t *h, int status)
{
    if (h->runtime_up)
        zl_runtime_shutdown();
    zl_host_cfg_free(&h->cfg); /* instances: their handlers' instance_free */
    zl_plugins_free(h->reg);
    if (h->runtime_up && status == 0)
        g_message("stopped");
    g_free(h->beats);
    if (h->log_up)
        zl_log_shutdown(); /* nothing to do after zl_host_check_log_init() */
    zl_host_check_log_close();
    g_strfreev(h->path);
}
