/* zltk-host — the modes that check instead of running:
 *   --list-plugins   every plugin on the path, like gst-inspect;
 *   --check-config   its log writer and its verdict (main.c loads the
 *                    configuration as for a run, then stops);
 *   --probe-plugin   (hidden) the child that loads one plugin file for
 *                    both, so that a plugin crashing is a refusal.
 */
#define G_LOG_DOMAIN "zltk-host"
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include <zltk/zltk.h>

#include "host-config.h"
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

void zl_host_use_probe(zl_plugin_registry_t *reg, const char *argv0)
{
    char *self = NULL;

    if (access("/proc/self/exe", X_OK) == 0)
        self = g_strdup("/proc/self/exe"); /* this file, even if replaced */
    else if (argv0 && strchr(argv0, '/'))
        self = g_strdup(argv0);
    else if (argv0)
        self = g_find_program_in_path(argv0);
    if (self)
        zl_plugins_set_probe(reg, (const char *const[]){self, "--probe-plugin",
                                                       NULL},
                             PROBE_TIMEOUT_MS);
    g_free(self);
}

/* The child: load FILE in this process only, report on fd 3. */
int zl_host_probe_child(const char *file)
{
    return zl_plugins_probe_child(file, 3);
}

static const char *kind_name(zl_provides_t k)
{
    return k == ZL_PROVIDES_CLIENT   ? "client handler"
           : k == ZL_PROVIDES_SERVER ? "server handler"
                                     : "layer";
}

/* --list-plugins: every plugin found on the path, like gst-inspect. */
static int list_plugins(char **path, const char *argv0)
{
    zl_plugin_registry_t *reg;
    list_counts_t c = {0, 0};

    if (zl_plugins_new(&reg) < 0)
        return 1;
    zl_host_use_probe(reg, argv0);
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

int zl_host_list_plugins(const zl_host_opts_t *o)
{
    zl_log_options_t lo = {.level = ZL_LOG_WARNING, .console = true};
    char **path;
    int status;

    zl_log_init(&lo); /* plugins' log lines in zltk's format */
    path = zl_host_plugin_path(o->plugin_dirs, NULL);
    status = list_plugins(path, o->self);
    zl_log_shutdown();
    g_strfreev(path);
    return status;
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
 * warning level or above, from a plugin (a layer warning about a value
 * while its instance is created, a plugin failing to initialise) or from
 * zltk, is a problem of the configuration: it is printed in the problem
 * format and counted in the summary, whatever the log level, so that the
 * summary counts what was printed.  Other lines keep the log format.  In
 * this mode only the main thread logs (plugins are initialised, never
 * started). */
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
int zl_host_check_log_init(zl_host_cfg_t *cfg, const zl_log_options_t *lopts)
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

/* The summary; after it, later lines are log lines, not counted
 * problems. */
int zl_host_check_verdict(zl_host_t *h)
{
    print_summary(&h->cfg, h->reg);
    g_mutex_lock(&check_log.lock);
    check_log.cfg = NULL;
    g_mutex_unlock(&check_log.lock);
    return h->cfg.errors ? 1 : 0;
}

void zl_host_check_log_close(void)
{
    if (check_log.fd >= 0)
        close(check_log.fd);
    check_log.fd = -1;
}
