/* zltk-host — the zltk host program.
 *
 * Loads the plugins a configuration names and runs its instances: servers
 * that listen and clients that connect, each driven by a plugin's handler.
 * Without --config it runs a built-in configuration (an echo server and a
 * tcp client on loopback, in plain TCP and over TLS with a pinned ephemeral
 * certificate); --connect and --listen run one tcp client or one echo
 * server for one-off use, plain or tls://.  SIGINT/SIGTERM stop it gracefully (stop
 * accepting, close sessions, stop plugins, flush logs); a second signal
 * ends it at once.
 *
 * Exit codes: 0 success, 1 runtime failure (bad configuration, a server
 * that cannot listen, --connect that failed), 2 bad command line.
 */
#define G_LOG_DOMAIN "zltk-host"
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include <zltk/zltk.h>

#include "host-config.h"

/* The configuration run when no --config is given. */
static const char default_config[] =
    "# zltk-host built-in configuration (print it with --print-config):\n"
    "# an echo server and a tcp client talking to it over loopback.\n"
    "\n"
    "[server.echo]\n"
    "plugin = echo\n"
    "# port 0: any free port; clients reach it as @echo\n"
    "address = 127.0.0.1:0\n"
    "\n"
    "[client.hello]\n"
    "plugin = tcp\n"
    "address = @echo\n"
    "# sent on connect, and on every manager tick (2 s) with a counter\n"
    "send = hello from zltk\\n\n"
    "tick = tick {n}\\n\n"
    "\n"
    "# The same over TLS: an ephemeral self-signed certificate made at\n"
    "# start-up, pinned by the client, so verification stays on.\n"
    "[server.echo-tls]\n"
    "plugin = echo\n"
    "address = 127.0.0.1:0\n"
    "transport = tls\n"
    "tls-cert = ephemeral\n"
    "\n"
    "[client.hello-tls]\n"
    "plugin = tcp\n"
    "address = @echo-tls\n"
    "transport = tls\n"
    "tls-pin = @echo-tls\n"
    "send = hello over tls\\n\n"
    "tick = tls tick {n}\\n\n"
    "\n"
    "# Keys of a [plugin.NAME] group are defaults for every instance that\n"
    "# uses a handler or a transport layer of plugin NAME; an instance's own\n"
    "# key wins.  For example, TLS 1.3 only, for every transport = tls:\n"
    "# [plugin.tls]\n"
    "# tls-min-version = 1.3\n";

typedef struct beat {
    zl_poller_t *poller;
    atomic_uint count;
} beat_t;

static void on_delay(zl_poller_t *p, uint64_t delay_us, void *arg)
{
    beat_t *b = arg;
    g_message("%s: heartbeat %u, load %u%%, queue delay %" G_GUINT64_FORMAT
              " us, %zu fds, %zu timers",
              zl_poller_name(p), atomic_fetch_add(&b->count, 1) + 1,
              zl_poller_load(p), delay_us, zl_poller_fd_count(p),
              zl_poller_timer_count(p));
}

static bool heartbeat(void *arg)
{
    beat_t *b = arg;
    zl_poller_probe_delay(b->poller, on_delay, b);
    return true;
}

/* Plugin search path: --plugin-dir (in order), the config's [host]
 * plugin-dir, $ZLTK_PLUGIN_PATH (colon-separated), then the installed
 * plugin directory, or instead $ZLTK_PLUGIN_SYSTEM_PATH when it is set
 * (empty: none; the build tree's tests set it so, so that an installed
 * zltk never mixes its plugins into theirs). */
/* Add dir unless the same directory (by device and inode, so that
 * "plugins/.libs" and its absolute path count once) is already there: a
 * directory searched twice would offer every plugin twice. */
static void path_add(GPtrArray *a, GArray *ids, const char *dir)
{
    struct stat st;

    if (stat(dir, &st) == 0) {
        for (guint i = 0; i < ids->len; i++) {
            const struct stat *o = &g_array_index(ids, struct stat, i);
            if (o->st_dev == st.st_dev && o->st_ino == st.st_ino)
                return;
        }
        g_array_append_val(ids, st);
    } else {
        for (guint i = 0; i < a->len; i++)
            if (!strcmp(a->pdata[i], dir))
                return;
    }
    g_ptr_array_add(a, g_strdup(dir));
}

/* Each directory of a colon-separated list (empty entries skipped). */
static void path_add_list(GPtrArray *a, GArray *ids, const char *list)
{
    char **parts = g_strsplit(list, ":", -1);

    for (size_t i = 0; parts[i]; i++)
        if (*parts[i])
            path_add(a, ids, parts[i]);
    g_strfreev(parts);
}

static char **plugin_path(char **dirs, const char *config_dir)
{
    GPtrArray *a = g_ptr_array_new();
    GArray *ids = g_array_new(FALSE, FALSE, sizeof(struct stat));
    const char *env = g_getenv("ZLTK_PLUGIN_PATH");
    const char *sys = g_getenv("ZLTK_PLUGIN_SYSTEM_PATH");

    for (size_t i = 0; dirs && dirs[i]; i++)
        path_add(a, ids, dirs[i]);
    if (config_dir)
        path_add(a, ids, config_dir);
    if (env)
        path_add_list(a, ids, env);
    if (sys)
        path_add_list(a, ids, sys);
    else
        path_add(a, ids, ZLTK_PLUGINDIR);
    g_array_free(ids, TRUE);
    g_ptr_array_add(a, NULL);
    return (char **)g_ptr_array_free(a, FALSE);
}

typedef struct list_counts {
    int refused, shadowed;
} list_counts_t;

static void report_load(const char *path, zl_plugin_report_t what,
                        const char *message, void *ctx)
{
    list_counts_t *c = ctx;
    (void)path;
    if (what == ZL_PLUGIN_SHADOWED) {
        fprintf(stderr, "zltk-host: note: %s\n", message);
        c->shadowed++;
        return;
    }
    fprintf(stderr, "zltk-host: %s\n", message);
    c->refused++;
}

/* --list-plugins and --check-config load each plugin in a child process
 * first (this program again, with --probe-plugin FILE), so that one whose
 * constructor aborts, crashes or exits is refused by name instead of
 * ending the check.  A new program rather than a fork: the log thread may
 * already run, and after fork() only async-signal-safe calls are allowed,
 * which dlopen() is not. */
#define PROBE_TIMEOUT_MS 10000
static const char *self_argv0;

static void use_probe(zl_plugin_registry_t *reg)
{
    char *self = NULL;

    if (access("/proc/self/exe", X_OK) == 0)
        self = g_strdup("/proc/self/exe"); /* this file, even if replaced */
    else if (self_argv0 && strchr(self_argv0, '/'))
        self = g_strdup(self_argv0);
    else if (self_argv0)
        self = g_find_program_in_path(self_argv0);
    if (self)
        zl_plugins_set_probe(reg, (const char *const[]){self, "--probe-plugin",
                                                       NULL},
                             PROBE_TIMEOUT_MS);
    g_free(self);
}

static const char *kind_name(zl_provides_t k)
{
    return k == ZL_PROVIDES_CLIENT   ? "client handler"
           : k == ZL_PROVIDES_SERVER ? "server handler"
                                     : "layer";
}

/* --list-plugins: every plugin found on the path, like gst-inspect. */
static int list_plugins(char **path)
{
    zl_plugin_registry_t *reg;
    list_counts_t c = {0, 0};

    if (zl_plugins_new(&reg) < 0)
        return 1;
    use_probe(reg);
    zl_plugins_load_path(reg, (const char *const *)path, report_load, &c);
    printf("Plugin path: ");
    for (size_t i = 0; path[i]; i++)
        printf("%s%s", i ? ":" : "", path[i]);
    printf("\nHost plugin ABI %d.%d, zltk %s\n\n", ZLTK_PLUGIN_ABI_MAJOR,
           ZLTK_PLUGIN_ABI_MINOR, zl_version());
    for (size_t i = 0; i < zl_plugins_count(reg); i++) {
        zl_plugin_t *p = zl_plugins_at(reg, i);
        const zl_plugin_desc_t *d = zl_plugin_get_desc(p);
        const zl_registration_t *r;
        size_t n = zl_plugin_registrations(p, &r);

        printf("%s %s (ABI %u.%u)\n  %s\n  file: %s\n", d->name, d->version,
               d->abi_major, d->abi_minor,
               d->description ? d->description : "(no description)",
               zl_plugin_get_path(p));
        for (size_t j = 0; j < n; j++) {
            const zl_handler_t *h = r[j].vtable;
            printf("  provides %s '%s'%s%s\n", kind_name(r[j].kind), r[j].name,
                   r[j].description ? ": " : "",
                   r[j].description ? r[j].description : "");
            const char *const *keys =
                r[j].kind == ZL_PROVIDES_LAYER
                    ? (r[j].vtable ? ((const zl_layer_t *)r[j].vtable)->keys
                                   : NULL)
                    : (h ? h->keys : NULL);
            if (keys && *keys) {
                char *list = g_strjoinv(", ", (char **)keys);
                printf("    keys: %s\n", list);
                g_free(list);
            }
        }
        printf("\n");
    }
    printf("%zu plugin%s loaded, %d refused", zl_plugins_count(reg),
           zl_plugins_count(reg) == 1 ? "" : "s", c.refused);
    if (c.shadowed)
        printf(", %d shadowed by an earlier directory", c.shadowed);
    printf("\n");
    zl_plugins_free(reg);
    return c.refused ? 1 : 0;
}

typedef struct host_opts {
    gint duration, pollers, workers, heartbeat;
    gchar *backend, *level, *log_file, *config, *connect, *listen;
    gboolean version, list, check, print_config, strict;
    gchar **plugin_dirs;
    gchar *probe; /* hidden: --probe-plugin FILE */
    /* TLS for --connect/--listen tls://HOST:PORT */
    gchar *tls_ca, *tls_name, *tls_cert, *tls_key, *tls_pin;
    gboolean tls_insecure;
} host_opts_t;

static pthread_t main_thread;

/* A client instance ended on its own (gave up, or its peer closed): wake
 * the main thread, which decides what that means. */
static void on_finished(zl_instance_t *inst, void *ctx)
{
    (void)inst, (void)ctx;
    pthread_kill(main_thread, SIGUSR1);
}

/* Shortcut arguments become a configuration text; refuse what would break
 * the key file syntax. */
static bool shortcut_ok(const char *opt, const char *arg)
{
    for (const char *c = arg; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == '#') {
            fprintf(stderr, "zltk-host: %s '%s': not HOST:PORT\n", opt, arg);
            return false;
        }
    return true;
}

/* The one instance of --connect / --listen as a key file: tls://ADDR adds
 * transport = tls and the --tls-* options.  Built through the GKeyFile API
 * and handed over as it is, never as text: a value is one value whatever
 * it contains (a newline in --tls-cert cannot start a group). */
static GKeyFile *shortcut_config(const host_opts_t *o, bool server)
{
    const char *arg = server ? o->listen : o->connect;
    const char *g = server ? "server.listen" : "client.connect";
    bool tls = g_str_has_prefix(arg, "tls://");
    GKeyFile *kf = g_key_file_new();

    g_key_file_set_value(kf, g, "plugin", server ? "echo" : "tcp");
    g_key_file_set_value(kf, g, "address", tls ? arg + 6 : arg);
    if (!server)
        g_key_file_set_value(kf, g, "mode", "stdio");
    if (tls) {
        g_key_file_set_value(kf, g, "transport", "tls");
        if (server && !o->tls_cert)
            g_key_file_set_value(kf, g, "tls-cert", "ephemeral");
        if (o->tls_cert)
            g_key_file_set_value(kf, g, "tls-cert", o->tls_cert);
        if (o->tls_key)
            g_key_file_set_value(kf, g, "tls-key", o->tls_key);
        if (!server && o->tls_ca)
            g_key_file_set_value(kf, g, "tls-ca", o->tls_ca);
        if (!server && o->tls_name)
            g_key_file_set_value(kf, g, "tls-server-name", o->tls_name);
        if (!server && o->tls_pin)
            g_key_file_set_value(kf, g, "tls-pin", o->tls_pin);
        if (!server && o->tls_insecure)
            g_key_file_set_value(kf, g, "tls-verify", "false");
    }
    return kf;
}

static int load_config(zl_host_cfg_t *cfg, const host_opts_t *o)
{
    if (o->config)
        return zl_host_cfg_load(cfg, o->config);
    if (o->connect)
        return zl_host_cfg_load_keyfile(cfg, "--connect",
                                        shortcut_config(o, false));
    if (o->listen)
        return zl_host_cfg_load_keyfile(cfg, "--listen",
                                        shortcut_config(o, true));
    return zl_host_cfg_load_data(cfg, "built-in configuration",
                                 default_config);
}

static void print_summary(const zl_host_cfg_t *cfg, zl_plugin_registry_t *reg)
{
    if (cfg->errors) {
        /* On stdout, and not in the shape of a problem line. */
        printf("configuration FAILED: %s: %d error%s, %d warning%s\n",
               cfg->file, cfg->errors, cfg->errors == 1 ? "" : "s",
               cfg->warnings, cfg->warnings == 1 ? "" : "s");
        return;
    }
    printf("configuration OK: %s: %u client%s, %u server%s, %zu "
           "plugin%s loaded, %d warning%s\n",
           cfg->file, cfg->clients->len, cfg->clients->len == 1 ? "" : "s",
           cfg->servers->len, cfg->servers->len == 1 ? "" : "s",
           reg ? zl_plugins_count(reg) : 0,
           reg && zl_plugins_count(reg) == 1 ? "" : "s", cfg->warnings,
           cfg->warnings == 1 ? "" : "s");
}

/* --check-config logs through this writer, not through zltk's log thread
 * (GLib takes one writer per process, so zl_log_init() is not called
 * then).  Nothing runs, so writing synchronously costs nothing and keeps
 * the lines in order with the host's own problem lines.  A line at
 * warning level or above, from a plugin (tls's "tls-verify = false" while
 * its instance is created, a plugin failing to initialise) or from zltk,
 * is a problem of the configuration: it is printed in the problem format
 * and counted in the summary, whatever the log level, so that the summary
 * counts what was printed.  Other lines keep the log format.  In this mode
 * only the main thread logs (plugins are initialised, never started). */
static struct {
    zl_host_cfg_t *cfg; /* NULL once the summary is printed */
    int fd;             /* --log-file, or -1 */
    GMutex lock;
} check_log = {.fd = -1};

static zl_log_level_t level_of(GLogLevelFlags flags)
{
    return flags & G_LOG_LEVEL_ERROR      ? ZL_LOG_ERROR
           : flags & G_LOG_LEVEL_CRITICAL ? ZL_LOG_CRITICAL
           : flags & G_LOG_LEVEL_WARNING  ? ZL_LOG_WARNING
           : flags & G_LOG_LEVEL_INFO     ? ZL_LOG_INFO
           : flags & G_LOG_LEVEL_DEBUG    ? ZL_LOG_DEBUG
                                          : ZL_LOG_MESSAGE;
}

/* One write(2) per line, as zl_host_cfg_report() does. */
static void write_line(int fd, const char *line, size_t len)
{
    while (len) {
        ssize_t w = write(fd, line, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        line += w;
        len -= (size_t)w;
    }
}

static GLogWriterOutput check_writer(GLogLevelFlags flags,
                                     const GLogField *fields, gsize n_fields,
                                     gpointer data)
{
    zl_log_level_t level = level_of(flags);
    char *msg = NULL, *domain = NULL, *stamp, *line;
    const char *text;
    GDateTime *now;
    zl_host_cfg_t *cfg;
    size_t flen;
    bool problem;

    (void)data;
    for (gsize i = 0; i < n_fields; i++) {
        const GLogField *f = &fields[i];
        if (!f->value)
            continue;
        if (!strcmp(f->key, "MESSAGE") && !msg)
            msg = g_strndup(f->value, f->length < 0 ? strlen(f->value)
                                                    : (size_t)f->length);
        else if (!strcmp(f->key, "GLIB_DOMAIN") && !domain)
            domain = g_strndup(f->value, f->length < 0 ? strlen(f->value)
                                                       : (size_t)f->length);
    }
    text = msg ? msg : "(no message)";
    g_mutex_lock(&check_log.lock);
    cfg = check_log.cfg;
    problem = level <= ZL_LOG_WARNING && cfg && cfg->file;
    if (!problem && level > zl_log_get_level()) {
        g_mutex_unlock(&check_log.lock);
        g_free(msg);
        g_free(domain);
        return G_LOG_WRITER_HANDLED;
    }
    now = g_date_time_new_now_local();
    stamp = g_date_time_format(now, "%Y-%m-%d %H:%M:%S");
    line = g_strdup_printf("%s.%03d %c [%s] %s%s%s\n", stamp,
                           g_date_time_get_microsecond(now) / 1000,
                           "ECWMID"[level], zl_thread_name(),
                           domain ? domain : "", domain ? ": " : "", text);
    if (problem) {
        flen = strlen(cfg->file);
        /* Some lines already name the file ("FILE: [plugin.X] key = ..."). */
        if (!strncmp(text, cfg->file, flen) && !strncmp(text + flen, ": ", 2))
            text += flen + 2;
        zl_host_cfg_report(cfg, level <= ZL_LOG_CRITICAL, NULL, NULL, "%s",
                           text);
    } else {
        write_line(STDERR_FILENO, line, strlen(line));
    }
    if (check_log.fd >= 0)
        write_line(check_log.fd, line, strlen(line));
    g_mutex_unlock(&check_log.lock);
    g_free(line);
    g_free(stamp);
    g_date_time_unref(now);
    g_free(msg);
    g_free(domain);
    return G_LOG_WRITER_HANDLED;
}

/* Instead of zl_log_init() for --check-config.  Returns 0 or -errno (the
 * log file cannot be opened). */
static int check_log_init(zl_host_cfg_t *cfg, const zl_log_options_t *lopts)
{
    if (lopts->file) {
        check_log.fd = open(lopts->file,
                            O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (check_log.fd < 0)
            return -errno;
    }
    check_log.cfg = cfg;
    zl_log_set_level(lopts->level);
    g_log_set_writer_func(check_writer, NULL, NULL);
    return 0;
}

/* After the summary: later lines are log lines, not counted problems. */
static void check_log_done(void)
{
    g_mutex_lock(&check_log.lock);
    check_log.cfg = NULL;
    g_mutex_unlock(&check_log.lock);
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

int main(int argc, char **argv)
{
    host_opts_t o = {.pollers = -1, .workers = -1};
    GOptionEntry entries[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &o.config,
         "Run the instances of FILE (a key file: [host], [plugin.NAME], "
         "[client.NAME], [server.NAME]; see zltk.conf(5)).  Without it, the "
         "built-in configuration runs", "FILE"},
        {"check-config", 0, 0, G_OPTION_ARG_NONE, &o.check,
         "Validate the configuration and load the plugins it names without "
         "starting anything; print every problem, exit 1 if any", NULL},
        {"print-config", 0, 0, G_OPTION_ARG_NONE, &o.print_config,
         "Print the built-in configuration (a starting point for your own) "
         "and exit", NULL},
        {"connect", 0, 0, G_OPTION_ARG_STRING, &o.connect,
         "Connect to HOST:PORT ([IPv6]:PORT) and bridge standard input and "
         "output to it, like ncat; at the end of input, half-close and print "
         "until the peer closes.  Exit 1 if the connection fails.  "
         "tls://HOST:PORT speaks TLS, verifying the server (see --tls-*)",
         "[tls://]HOST:PORT"},
        {"listen", 0, 0, G_OPTION_ARG_STRING, &o.listen,
         "Run one echo server on HOST:PORT (port 0: any free port); "
         "tls://HOST:PORT serves TLS with --tls-cert/--tls-key, or with an "
         "ephemeral self-signed certificate whose fingerprint is logged",
         "[tls://]HOST:PORT"},
        {"tls-ca", 0, 0, G_OPTION_ARG_FILENAME, &o.tls_ca,
         "--connect tls://: also trust the CAs in FILE (PEM file or "
         "directory; the system store is always used)", "FILE"},
        {"tls-server-name", 0, 0, G_OPTION_ARG_STRING, &o.tls_name,
         "--connect tls://: verify and send this name instead of HOST",
         "NAME"},
        {"tls-pin", 0, 0, G_OPTION_ARG_STRING, &o.tls_pin,
         "--connect tls://: accept exactly the certificate with this SHA-256 "
         "fingerprint (as --listen tls:// logs it)", "FINGERPRINT"},
        {"tls-insecure", 0, 0, G_OPTION_ARG_NONE, &o.tls_insecure,
         "--connect tls://: do not verify the server (an explicit, logged "
         "opt-out)", NULL},
        {"tls-cert", 0, 0, G_OPTION_ARG_FILENAME, &o.tls_cert,
         "tls://: certificate (PEM) to present: the server's for --listen, "
         "a client certificate for --connect", "FILE"},
        {"tls-key", 0, 0, G_OPTION_ARG_FILENAME, &o.tls_key,
         "tls://: the private key (PEM) of --tls-cert", "FILE"},
        {"duration", 'd', 0, G_OPTION_ARG_INT, &o.duration,
         "Run for SECONDS, then stop gracefully (default: until SIGINT or "
         "SIGTERM)", "SECONDS"},
        {"plugin-dir", 'P', 0, G_OPTION_ARG_FILENAME_ARRAY, &o.plugin_dirs,
         "Look for plugins in DIR first (repeatable; then [host] plugin-dir, "
         "$ZLTK_PLUGIN_PATH, " ZLTK_PLUGINDIR " or $ZLTK_PLUGIN_SYSTEM_PATH; "
         "the first NAME.so found is used)", "DIR"},
        {"list-plugins", 0, 0, G_OPTION_ARG_NONE, &o.list,
         "List every plugin on the plugin path with its version, ABI and "
         "what it provides, then exit (non-zero if any file was refused)",
         NULL},
        {"strict-plugins", 0, 0, G_OPTION_ARG_NONE, &o.strict,
         "Refuse to run when a plugin fails to load, initialise or start "
         "(default: skip it and the instances that use it, with a warning)",
         NULL},
        {"pollers", 'p', 0, G_OPTION_ARG_INT, &o.pollers,
         "Number of poller threads (default: [host] pollers, or 0: one per "
         "CPU)", "N"},
        {"workers", 'w', 0, G_OPTION_ARG_INT, &o.workers,
         "Number of worker threads for blocking jobs (default: [host] "
         "workers, or 0: one per CPU, at least 2)", "N"},
        {"backend", 'b', 0, G_OPTION_ARG_STRING, &o.backend,
         "Poller backend: epoll, poll or kqueue (default: [host] backend, "
         "$ZLTK_POLLER_BACKEND, or the best one)", "NAME"},
        {"heartbeat", 0, 0, G_OPTION_ARG_INT, &o.heartbeat,
         "Log each poller's load and queueing delay every MS milliseconds "
         "(default 0: off)", "MS"},
        {"log-level", 'l', 0, G_OPTION_ARG_STRING, &o.level,
         "error, critical, warning, message, info or debug (default: [host] "
         "log-level, or message; warning with --connect)", "LEVEL"},
        {"log-file", 0, 0, G_OPTION_ARG_FILENAME, &o.log_file,
         "Also append log lines to FILE", "FILE"},
        {"version", 'V', 0, G_OPTION_ARG_NONE, &o.version,
         "Print the version and exit", NULL},
        {"probe-plugin", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_FILENAME,
         &o.probe, "Internal: load FILE in this process only (see use_probe)",
         "FILE"},
        {NULL}};
    GOptionContext *ctx;
    GError *err = NULL;
    zl_log_options_t lopts = {.level = ZL_LOG_MESSAGE, .console = true};
    zl_runtime_options_t ropts = {0};
    zl_host_cfg_t cfg = {0};
    zl_plugin_registry_t *reg = NULL;
    beat_t *beats = NULL;
    zl_timer_t **timers = NULL;
    size_t n = 0;
    sigset_t set;
    char **path = NULL;
    bool log_up = false, runtime_up = false, cli_level = false;
    int rc, sig = 0, status = 0, modes;

    self_argv0 = argv[0];
    ctx = g_option_context_new("- run zltk plugins: servers and clients");
    g_option_context_set_summary(
        ctx,
        "Loads the plugins a configuration names and runs its instances:\n"
        "[server.NAME] groups listen, [client.NAME] groups connect, each\n"
        "driven by a plugin's handler.  Without --config a built-in\n"
        "configuration runs: an echo server and a tcp client that greets it\n"
        "and sends a tick every 2 seconds, in plain TCP and over TLS (an\n"
        "ephemeral certificate the client pins), all on loopback.\n"
        "SIGINT or SIGTERM stops gracefully; a second one exits at once.");
    g_option_context_set_description(
        ctx,
        "Examples:\n"
        "  zltk-host --duration 5                 the built-in demo for 5 s\n"
        "  zltk-host --check-config -c my.conf    validate, start nothing\n"
        "  zltk-host -c my.conf                   run my.conf\n"
        "  zltk-host --print-config > my.conf     start your own config\n"
        "  zltk-host --listen 127.0.0.1:9000      one echo server\n"
        "  echo hi | zltk-host --connect 127.0.0.1:9000\n"
        "  zltk-host --listen tls://127.0.0.1:9443 (logs the fingerprint)\n"
        "  echo hi | zltk-host --connect tls://127.0.0.1:9443 --tls-pin FP\n"
        "  zltk-host --list-plugins -P ./plugins  what plugins provide\n\n"
        "Exit status: 0 stopped normally, 1 runtime failure (bad\n"
        "configuration, a server that cannot listen, --connect that\n"
        "failed), 2 bad usage.  See zltk-host(1) and zltk.conf(5).\n\n"
        "Report bugs to: " PACKAGE_BUGREPORT "\n"
        "Documentation: man zltk-host, zltk.conf, zltk-plugin; guides in "
        ZLTK_DOCDIR "\n");
    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "zltk-host: %s (try --help)\n", err->message);
        g_error_free(err);
        g_option_context_free(ctx);
        return 2;
    }
    g_option_context_free(ctx);
    if (o.probe)
        return zl_plugins_probe_child(o.probe, 3);
    if (argc > 1) {
        fprintf(stderr, "zltk-host: unexpected argument '%s' (try --help)\n",
                argv[1]);
        status = 2;
        goto out_args;
    }
    if (o.version) {
        printf("zltk-host %s (plugin ABI %d.%d)\n"
               "Copyright (c) 2026 The zltk authors.\n"
               "License MIT: <https://opensource.org/licenses/MIT>.\n"
               "This is free software: you are free to change and "
               "redistribute it.\n"
               "There is NO WARRANTY, to the extent permitted by law.\n",
               zl_version(), ZLTK_PLUGIN_ABI_MAJOR, ZLTK_PLUGIN_ABI_MINOR);
        goto out_args;
    }
    if (o.print_config) {
        fputs(default_config, stdout);
        goto out_args;
    }
    modes = !!o.config + !!o.connect + !!o.listen;
    if (modes > 1) {
        fprintf(stderr, "zltk-host: use one of --config, --connect and "
                        "--listen\n");
        status = 2;
        goto out_args;
    }
    if ((o.connect && !shortcut_ok("--connect", o.connect)) ||
        (o.listen && !shortcut_ok("--listen", o.listen))) {
        status = 2;
        goto out_args;
    }
    if ((o.tls_ca || o.tls_name || o.tls_pin || o.tls_insecure || o.tls_cert ||
         o.tls_key) &&
        !((o.connect && g_str_has_prefix(o.connect, "tls://")) ||
          (o.listen && g_str_has_prefix(o.listen, "tls://")))) {
        fprintf(stderr, "zltk-host: the --tls-* options go with --connect "
                        "tls://HOST:PORT or --listen tls://HOST:PORT\n");
        status = 2;
        goto out_args;
    }
    if ((o.tls_cert != NULL) != (o.tls_key != NULL)) {
        fprintf(stderr, "zltk-host: --tls-cert and --tls-key go together\n");
        status = 2;
        goto out_args;
    }
    if (o.level) {
        if (zl_log_level_parse(o.level, &lopts.level) < 0) {
            fprintf(stderr,
                    "zltk-host: unknown --log-level '%s' (use error, "
                    "critical, warning, message, info or debug)\n",
                    o.level);
            status = 2;
            goto out_args;
        }
        cli_level = true;
    } else if (o.connect || o.check) {
        lopts.level = ZL_LOG_WARNING;
    }
    if (o.duration < 0 || o.pollers < -1 || o.workers < -1 ||
        o.heartbeat < 0) {
        fprintf(stderr, "zltk-host: --duration, --pollers, --workers and "
                        "--heartbeat must be >= 0\n");
        status = 2;
        goto out_args;
    }
    if (o.list) {
        zl_log_options_t lo = {.level = ZL_LOG_WARNING, .console = true};
        /* Plugins' log lines in zltk's format. */
        zl_log_init(&lo);
        path = plugin_path(o.plugin_dirs, NULL);
        status = list_plugins(path);
        zl_log_shutdown();
        goto out_args;
    }

    /* Plugins' own log lines in zltk's format from the start. */
    lopts.file = o.log_file;
    rc = o.check ? check_log_init(&cfg, &lopts) : zl_log_init(&lopts);
    if (rc < 0) {
        fprintf(stderr, "zltk-host: cannot open log file '%s': %s\n",
                o.log_file ? o.log_file : "", zl_strerror(rc));
        status = 1;
        goto out_args;
    }
    log_up = true;

    cfg.lenient = !o.strict && !o.check;
    load_config(&cfg, &o);
    cfg.lenient = !o.strict && !o.check;
    cfg.on_finished = on_finished;
    if (cfg.log_level && !cli_level) {
        zl_log_level_t lv;
        if (zl_log_level_parse(cfg.log_level, &lv) == 0)
            zl_log_set_level(lv);
    }
    path = plugin_path(o.plugin_dirs, cfg.plugin_dir);
    /* Every instance whose handler resolved checks its own keys, even
     * after other errors: one pass lists every problem. */
    if (cfg.kf && zl_plugins_new(&reg) == 0) {
        if (o.check)
            use_probe(reg);
        zl_host_cfg_resolve(&cfg, reg, (const char *const *)path);
        zl_host_cfg_instances(&cfg);
    }
    if (o.check) {
        print_summary(&cfg, reg);
        check_log_done();
        status = cfg.errors ? 1 : 0;
        goto out;
    }
    if (cfg.errors) {
        fprintf(stderr, "zltk-host: %s: %d error%s; nothing started (zltk-host "
                        "--check-config lists every problem)\n",
                cfg.file, cfg.errors, cfg.errors == 1 ? "" : "s");
        status = 1;
        goto out;
    }

    /* Block the stop signals in every thread; main waits for them.
     * SIGUSR1 is the wake-up from instances that end on their own. */
    /* Writes to a closed pipe (stdout of --connect, the log's stderr)
     * must fail with EPIPE, not kill the host. */
    signal(SIGPIPE, SIG_IGN);
    main_thread = pthread_self();
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    ropts.pollers = (unsigned)(o.pollers >= 0 ? o.pollers : cfg.pollers);
    ropts.workers = (unsigned)(o.workers >= 0 ? o.workers : cfg.workers);
    ropts.backend = o.backend ? o.backend : cfg.backend;
    rc = zl_runtime_init(&ropts);
    if (rc < 0) {
        g_critical("cannot start the runtime: %s", zl_strerror(rc));
        status = 1;
        goto out;
    }
    runtime_up = true;
    if (zl_plugins_start(reg) && o.strict) {
        fprintf(stderr, "zltk-host: a plugin failed to start "
                        "(--strict-plugins)\n");
        status = 1;
        goto out;
    }
    n = zl_poller_pool_size(zl_runtime_pollers());
    if (o.heartbeat > 0) {
        beats = g_new0(beat_t, n);
        timers = g_new0(zl_timer_t *, n);
        for (size_t i = 0; i < n; i++) {
            beats[i].poller = zl_poller_pool_at(zl_runtime_pollers(), i);
            zl_poller_add_repeat(beats[i].poller, (uint64_t)o.heartbeat,
                                 heartbeat, &beats[i], NULL, &timers[i]);
        }
    }
    rc = start_instances(&cfg, reg, o.strict);
    if (rc <= 0) {
        if (rc == 0)
            fprintf(stderr, "zltk-host: %s: nothing to run (no instance "
                            "could start)\n", cfg.file);
        status = 1;
        goto stop;
    }
    g_message("zltk-host %s running %s: %d instance%s on %zu pollers "
              "(%s)%s",
              zl_version(), cfg.file, rc, rc == 1 ? "" : "s", n,
              zl_poller_backend(zl_poller_pool_at(zl_runtime_pollers(), 0)),
              o.duration ? "" : "; stop with Ctrl-C");

    sig = wait_for_stop(&set, o.duration, &cfg, o.connect != NULL);

stop:
    /* A second signal ends the process at once. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    {
        sigset_t stops;
        sigemptyset(&stops);
        sigaddset(&stops, SIGINT);
        sigaddset(&stops, SIGTERM);
        pthread_sigmask(SIG_UNBLOCK, &stops, NULL);
    }
    if (status == 0)
        g_message("stopping (%s)", sig > 0 ? strsignal(sig)
                                   : o.duration && !o.connect
                                       ? "duration elapsed"
                                       : "done");
    for (size_t i = 0; timers && i < n; i++)
        if (timers[i])
            zl_timer_cancel(timers[i]);
    stop_instances(&cfg);
    zl_plugins_stop(reg);
    if (o.connect && status == 0) {
        zl_log_flush(); /* the plugin's lines first, then the verdict */
        status = connect_status(&cfg, o.connect);
    }
out:
    if (runtime_up)
        zl_runtime_shutdown();
    zl_host_cfg_free(&cfg); /* instances: their handlers' instance_free */
    zl_plugins_free(reg);
    if (runtime_up && status == 0)
        g_message("stopped");
    g_free(timers);
    g_free(beats);
    if (log_up)
        zl_log_shutdown(); /* nothing to do after check_log_init() */
    if (check_log.fd >= 0)
        close(check_log.fd);
out_args:
    g_strfreev(path);
    g_strfreev(o.plugin_dirs);
    g_free(o.config);
    g_free(o.connect);
    g_free(o.listen);
    g_free(o.backend);
    g_free(o.level);
    g_free(o.log_file);
    g_free(o.tls_ca);
    g_free(o.tls_name);
    g_free(o.tls_cert);
    g_free(o.tls_key);
    g_free(o.tls_pin);
    return status;
}
