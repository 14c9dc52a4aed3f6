/* zltk-host — the zltk host program.
 *
 * This version runs the core runtime (a pool of pollers and a worker pool,
 * with a heartbeat on every poller that logs its load and queueing delay)
 * and inspects plugins (--list-plugins).  Running plugin instances from a
 * config file comes next.
 *
 * Exit codes: 0 success, 1 runtime failure, 2 bad command line.
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

#include <glib.h>

#include <zltk/zltk.h>

#include "host-config.h"

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

/* Plugin search path: --plugin-dir (in order), the config's [host]
 * plugin-dir, $ZLTK_PLUGIN_PATH (colon-separated), the installed plugin
 * directory. */
static char **plugin_path(char **dirs, const char *config_dir)
{
    GPtrArray *a = g_ptr_array_new();
    const char *env = g_getenv("ZLTK_PLUGIN_PATH");

    for (size_t i = 0; dirs && dirs[i]; i++)
        g_ptr_array_add(a, g_strdup(dirs[i]));
    if (config_dir)
        g_ptr_array_add(a, g_strdup(config_dir));
    if (env && *env) {
        char **parts = g_strsplit(env, ":", -1);
        for (size_t i = 0; parts[i]; i++)
            if (*parts[i])
                g_ptr_array_add(a, g_strdup(parts[i]));
        g_strfreev(parts);
    }
    g_ptr_array_add(a, g_strdup(ZLTK_PLUGINDIR));
    g_ptr_array_add(a, NULL);
    return (char **)g_ptr_array_free(a, FALSE);
}

static void report_load(const char *path, const char *message, void *ctx)
{
    int *bad = ctx;
    (void)path;
    fprintf(stderr, "zltk-host: %s\n", message);
    (*bad)++;
}

static const char *kind_name(zl_provides_t k)
{
    return k == ZL_PROVIDES_CLIENT   ? "client handler"
           : k == ZL_PROVIDES_SERVER ? "server handler"
                                     : "layer";
}

/* --check-config: validate the file, load the plugins it names, print
 * every problem.  Exit 0 clean (warnings allowed), 1 with errors. */
static int check_config(const char *file, char **cli_dirs)
{
    zl_host_cfg_t cfg;
    zl_plugin_registry_t *reg = NULL;
    char **path;
    int status;

    zl_log_options_t lo = {.level = ZL_LOG_WARNING, .console = true};

    /* Plugins' own log lines in zltk's format, not GLib's default. */
    zl_log_init(&lo);
    zl_host_cfg_load(&cfg, file);
    path = plugin_path(cli_dirs, cfg.plugin_dir);
    if (cfg.kf && zl_plugins_new(&reg) == 0)
        zl_host_cfg_resolve(&cfg, reg, (const char *const *)path);
    if (cfg.errors) {
        /* On stdout, and not in the shape of a problem line. */
        printf("configuration FAILED: %s: %d error%s, %d warning%s\n", file,
               cfg.errors, cfg.errors == 1 ? "" : "s", cfg.warnings,
               cfg.warnings == 1 ? "" : "s");
        status = 1;
    } else {
        printf("configuration OK: %s: %u client%s, %u server%s, %zu "
               "plugin%s loaded, %d warning%s\n",
               file, cfg.clients->len, cfg.clients->len == 1 ? "" : "s",
               cfg.servers->len, cfg.servers->len == 1 ? "" : "s",
               reg ? zl_plugins_count(reg) : 0,
               reg && zl_plugins_count(reg) == 1 ? "" : "s", cfg.warnings,
               cfg.warnings == 1 ? "" : "s");
        status = 0;
    }
    zl_plugins_free(reg);
    g_strfreev(path);
    zl_host_cfg_free(&cfg);
    zl_log_shutdown();
    return status;
}

/* --list-plugins: every plugin found on the path, like gst-inspect. */
static int list_plugins(char **path)
{
    zl_plugin_registry_t *reg;
    int bad = 0, seen_dirs = 0;

    if (zl_plugins_new(&reg) < 0)
        return 1;
    for (size_t i = 0; path[i]; i++) {
        int n = zl_plugins_load_dir(reg, path[i], report_load, &bad);
        if (n >= 0)
            seen_dirs++;
    }
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
        for (size_t j = 0; j < n; j++)
            printf("  provides %s '%s'%s%s\n", kind_name(r[j].kind), r[j].name,
                   r[j].description ? ": " : "",
                   r[j].description ? r[j].description : "");
        printf("\n");
    }
    printf("%zu plugin%s loaded, %d refused\n", zl_plugins_count(reg),
           zl_plugins_count(reg) == 1 ? "" : "s", bad);
    zl_plugins_free(reg);
    return bad ? 1 : 0;
}

static bool heartbeat(void *arg)
{
    beat_t *b = arg;
    zl_poller_probe_delay(b->poller, on_delay, b);
    return true;
}

int main(int argc, char **argv)
{
    gint duration = 0, pollers = 0, workers = 0;
    gint interval = 2000;
    gchar *backend = NULL, *level = NULL, *log_file = NULL;
    gboolean version = FALSE, list = FALSE, check = FALSE;
    gchar *config = NULL;
    gchar **plugin_dirs = NULL;
    char **path = NULL;
    GOptionEntry entries[] = {
        {"duration", 'd', 0, G_OPTION_ARG_INT, &duration,
         "Run for SECONDS, then stop gracefully (default: until SIGINT or "
         "SIGTERM)", "SECONDS"},
        {"pollers", 'p', 0, G_OPTION_ARG_INT, &pollers,
         "Number of poller threads (default 0: one per CPU)", "N"},
        {"workers", 'w', 0, G_OPTION_ARG_INT, &workers,
         "Number of worker threads for blocking jobs (default 0: one per "
         "CPU, at least 2)", "N"},
        {"backend", 'b', 0, G_OPTION_ARG_STRING, &backend,
         "Poller backend: epoll, poll or kqueue (default: the best one; "
         "also $ZLTK_POLLER_BACKEND)", "NAME"},
        {"heartbeat", 0, 0, G_OPTION_ARG_INT, &interval,
         "Milliseconds between heartbeat lines of each poller (default "
         "2000)", "MS"},
        {"log-level", 'l', 0, G_OPTION_ARG_STRING, &level,
         "error, critical, warning, message (default), info or debug",
         "LEVEL"},
        {"log-file", 0, 0, G_OPTION_ARG_FILENAME, &log_file,
         "Also append log lines to FILE", "FILE"},
        {"plugin-dir", 'P', 0, G_OPTION_ARG_FILENAME_ARRAY, &plugin_dirs,
         "Look for plugins in DIR first (repeatable; then $ZLTK_PLUGIN_PATH, "
         "then " ZLTK_PLUGINDIR ")", "DIR"},
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config,
         "Configuration file (GLib key file: [host], [plugin.NAME], "
         "[client.NAME], [server.NAME]); for now only with --check-config",
         "FILE"},
        {"check-config", 0, 0, G_OPTION_ARG_NONE, &check,
         "Validate --config FILE and load the plugins it names without "
         "starting anything; print every problem, exit 1 if any", NULL},
        {"list-plugins", 0, 0, G_OPTION_ARG_NONE, &list,
         "List every plugin on the plugin path with its version, ABI and "
         "what it provides, then exit (non-zero if any file was refused)",
         NULL},
        {"version", 'V', 0, G_OPTION_ARG_NONE, &version,
         "Print the version and exit", NULL},
        {NULL}};
    GOptionContext *ctx;
    GError *err = NULL;
    zl_log_options_t lopts = {.level = ZL_LOG_MESSAGE, .console = true};
    zl_runtime_options_t ropts = {0};
    beat_t *beats = NULL;
    zl_timer_t **timers = NULL;
    size_t n = 0;
    sigset_t set;
    int rc, sig, status = 0;

    ctx = g_option_context_new("- run the zltk event runtime");
    g_option_context_set_summary(
        ctx, "Starts one event poller per CPU and a worker pool, and logs a\n"
             "heartbeat of each poller (load and queueing delay) until it is\n"
             "stopped with SIGINT/SIGTERM or --duration ends.  A second\n"
             "signal exits at once.");
    g_option_context_set_description(
        ctx, "Examples:\n"
             "  zltk-host --duration 5\n"
             "  zltk-host --pollers 4 --backend poll --log-level debug\n\n"
             "Exit status: 0 stopped normally, 1 runtime failure, 2 bad "
             "usage.\n");
    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "zltk-host: %s (try --help)\n", err->message);
        g_error_free(err);
        g_option_context_free(ctx);
        return 2;
    }
    g_option_context_free(ctx);
    if (version) {
        printf("zltk-host %s (plugin ABI %d.%d)\n", zl_version(),
               ZLTK_PLUGIN_ABI_MAJOR, ZLTK_PLUGIN_ABI_MINOR);
        status = 0;
        goto out_args;
    }
    if (check && !config) {
        fprintf(stderr, "zltk-host: --check-config needs --config FILE\n");
        status = 2;
        goto out_args;
    }
    if (check) {
        status = check_config(config, plugin_dirs);
        goto out_args;
    }
    if (config) {
        fprintf(stderr, "zltk-host: running instances from a configuration "
                        "file is not available yet; validate it with "
                        "--check-config --config %s\n", config);
        status = 2;
        goto out_args;
    }
    path = plugin_path(plugin_dirs, NULL);
    if (list) {
        status = list_plugins(path);
        goto out_args;
    }
    if (level && zl_log_level_parse(level, &lopts.level) < 0) {
        fprintf(stderr,
                "zltk-host: unknown --log-level '%s' (use error, critical, "
                "warning, message, info or debug)\n",
                level);
        status = 2;
        goto out_args;
    }
    if (duration < 0 || pollers < 0 || workers < 0 || interval <= 0) {
        fprintf(stderr, "zltk-host: --duration, --pollers and --workers must "
                        "be >= 0, --heartbeat > 0\n");
        status = 2;
        goto out_args;
    }
    lopts.file = log_file;
    rc = zl_log_init(&lopts);
    if (rc < 0) {
        fprintf(stderr, "zltk-host: cannot open log file '%s': %s\n",
                log_file ? log_file : "", zl_strerror(rc));
        status = 1;
        goto out_args;
    }

    /* Block the stop signals in every thread; main waits for them. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    ropts.pollers = (unsigned)pollers;
    ropts.workers = (unsigned)workers;
    ropts.backend = backend;
    rc = zl_runtime_init(&ropts);
    if (rc < 0) {
        g_critical("cannot start the runtime: %s", zl_strerror(rc));
        status = 1;
        goto out_log;
    }
    n = zl_poller_pool_size(zl_runtime_pollers());
    beats = g_new0(beat_t, n);
    timers = g_new0(zl_timer_t *, n);
    for (size_t i = 0; i < n; i++) {
        beats[i].poller = zl_poller_pool_at(zl_runtime_pollers(), i);
        zl_poller_add_repeat(beats[i].poller, (uint64_t)interval, heartbeat,
                             &beats[i], NULL, &timers[i]);
    }
    g_message("zltk-host %s running: %zu pollers (%s), %zu workers%s", 
              zl_version(), n, zl_poller_backend(beats[0].poller),
              zl_worker_pool_size(zl_runtime_workers()),
              duration ? "" : "; stop with Ctrl-C");

    if (duration > 0) {
        struct timespec ts = {duration, 0};
        do
            sig = sigtimedwait(&set, NULL, &ts);
        while (sig < 0 && errno == EINTR);
    } else {
        while (sigwait(&set, &sig) != 0)
            ;
    }
    /* A second signal ends the process at once. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    g_message("stopping (%s)", sig > 0 ? strsignal(sig) : "duration elapsed");

    for (size_t i = 0; i < n; i++)
        zl_timer_cancel(timers[i]);
    zl_runtime_shutdown();
    g_message("stopped");
    g_free(timers);
    g_free(beats);
out_log:
    zl_log_shutdown();
out_args:
    g_strfreev(path);
    g_strfreev(plugin_dirs);
    g_free(config);
    g_free(backend);
    g_free(level);
    g_free(log_file);
    return status;
}
