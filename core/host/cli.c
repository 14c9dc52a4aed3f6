/* zltk-host — the command line: the options and their --help text,
 * --version, and the --connect/--listen shortcuts.
 *
 * This file and the built-in configuration (core/host/default.conf) are
 * the one place where the host names the bundled plugins (echo and tcp,
 * run by the shortcuts; tls, whose options the shortcuts take): the
 * shortcuts table below.  Everywhere else, plugins are what a
 * configuration names.
 */
#define G_LOG_DOMAIN "zltk-host"
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include <zltk/zltk.h>

#include "host-config.h"

/* The configuration run when no --config is given: default_config[],
 * the text of core/host/default.conf (made by the build). */
#include "core/host/default-conf.h"

/* ---- the shortcuts ------------------------------------------------------ */

/* --connect and --listen each run one instance of a bundled handler. */
typedef struct shortcut {
    const char *option; /* also the configuration's name in messages */
    const char *group, *plugin;
    bool server;
    const char *key, *value; /* one more key the instance always gets */
} shortcut_t;

static const shortcut_t shortcuts[] = {
    {"--connect", "client.connect", "tcp", false, "mode", "stdio"},
    {"--listen", "server.listen", "echo", true, NULL, NULL},
};

/* SCHEME://HOST:PORT runs the instance over the layer named SCHEME
 * (transport = SCHEME); these options, --LAYER-*, set that layer's keys
 * of the instance.  The --help text is the options' own. */
enum { FOR_CONNECT = 1, FOR_LISTEN = 2, FOR_BOTH = 3 };
typedef struct layer_opt {
    const char *layer;  /* the scheme naming the layer */
    const char *option; /* without "--" */
    const char *key;    /* the configuration key it sets */
    GOptionArg arg;     /* G_OPTION_ARG_NONE: a flag, setting key = flag */
    const char *flag;
    int goes_to; /* FOR_*: with the other shortcut, it is ignored */
    const char *listen_default; /* --listen without the option */
    const char *with;           /* the option it needs beside it */
    const char *help, *arg_name;
} layer_opt_t;

static const layer_opt_t layer_opts[] = {
    {.layer = "tls", .option = "tls-ca", .key = "tls-ca",
     .arg = G_OPTION_ARG_FILENAME, .goes_to = FOR_CONNECT,
     .help = "--connect tls://: also trust the CAs in FILE (PEM file or "
             "directory; the system store is always used)",
     .arg_name = "FILE"},
    {.layer = "tls", .option = "tls-server-name", .key = "tls-server-name",
     .arg = G_OPTION_ARG_STRING, .goes_to = FOR_CONNECT,
     .help = "--connect tls://: verify and send this name instead of HOST",
     .arg_name = "NAME"},
    {.layer = "tls", .option = "tls-pin", .key = "tls-pin",
     .arg = G_OPTION_ARG_STRING, .goes_to = FOR_CONNECT,
     .help = "--connect tls://: accept exactly the certificate with this "
             "SHA-256 fingerprint (as --listen tls:// logs it)",
     .arg_name = "FINGERPRINT"},
    {.layer = "tls", .option = "tls-insecure", .key = "tls-verify",
     .arg = G_OPTION_ARG_NONE, .flag = "false", .goes_to = FOR_CONNECT,
     .help = "--connect tls://: do not verify the server (an explicit, "
             "logged opt-out)"},
    {.layer = "tls", .option = "tls-cert", .key = "tls-cert",
     .arg = G_OPTION_ARG_FILENAME, .goes_to = FOR_BOTH,
     .listen_default = "ephemeral", .with = "tls-key",
     .help = "tls://: certificate (PEM) to present: the server's for "
             "--listen, a client certificate for --connect",
     .arg_name = "FILE"},
    {.layer = "tls", .option = "tls-key", .key = "tls-key",
     .arg = G_OPTION_ARG_FILENAME, .goes_to = FOR_BOTH,
     .help = "tls://: the private key (PEM) of --tls-cert",
     .arg_name = "FILE"},
};
#define N_LAYER_OPTS G_N_ELEMENTS(layer_opts)
G_STATIC_ASSERT(N_LAYER_OPTS <= ZL_HOST_LAYER_OPTS);

/* The shortcut in use, or NULL. */
static const shortcut_t *shortcut_of(const zl_host_opts_t *o,
                                     const char **arg)
{
    *arg = o->connect ? o->connect : o->listen;
    return o->connect ? &shortcuts[0] : o->listen ? &shortcuts[1] : NULL;
}

/* The length of SCHEME in "SCHEME://...", or 0. */
static size_t scheme_len(const char *arg)
{
    const char *end = strstr(arg, "://");
    size_t n = end ? (size_t)(end - arg) : 0;

    for (size_t i = 0; i < n; i++)
        if (!g_ascii_isalnum(arg[i]) && !strchr("+-._", arg[i]))
            return 0;
    return n;
}

static bool layer_opt_given(const zl_host_opts_t *o, size_t i)
{
    return layer_opts[i].arg == G_OPTION_ARG_NONE ? o->layer_flag[i]
                                                  : o->layer_value[i] != NULL;
}

static const layer_opt_t *layer_opt_named(const char *option, size_t *index)
{
    for (size_t i = 0; i < N_LAYER_OPTS; i++)
        if (!strcmp(layer_opts[i].option, option)) {
            *index = i;
            return &layer_opts[i];
        }
    return NULL;
}

/* Shortcut arguments become configuration values; refuse what would
 * break the key file syntax. */
static bool shortcut_ok(const char *opt, const char *arg)
{
    for (const char *c = arg; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == '#') {
            fprintf(stderr, "zltk-host: %s '%s': not HOST:PORT\n", opt, arg);
            return false;
        }
    return true;
}

/* A layer's options go with an address of its scheme, and in pairs where
 * the table says so. */
static bool layer_opts_ok(const zl_host_opts_t *o)
{
    const char *arg;
    const shortcut_t *sc = shortcut_of(o, &arg);
    size_t n = sc ? scheme_len(arg) : 0, j;

    for (size_t i = 0; i < N_LAYER_OPTS; i++) {
        const char *layer = layer_opts[i].layer;
        if (layer_opt_given(o, i) &&
            (strlen(layer) != n || strncmp(arg, layer, n))) {
            fprintf(stderr, "zltk-host: the --%s-* options go with --connect "
                            "%s://HOST:PORT or --listen %s://HOST:PORT\n",
                    layer, layer, layer);
            return false;
        }
    }
    for (size_t i = 0; i < N_LAYER_OPTS; i++)
        if (layer_opts[i].with && layer_opt_named(layer_opts[i].with, &j) &&
            layer_opt_given(o, i) != layer_opt_given(o, j)) {
            fprintf(stderr, "zltk-host: --%s and --%s go together\n",
                    layer_opts[i].option, layer_opts[j].option);
            return false;
        }
    return true;
}

/* The one instance of --connect / --listen as a key file: SCHEME://ADDR
 * adds transport = SCHEME and that layer's options.  Built through the
 * GKeyFile API and handed over as it is, never as text: a value is one
 * value whatever it contains (a newline in --tls-cert cannot start a
 * group). */
static GKeyFile *shortcut_config(const zl_host_opts_t *o,
                                 const shortcut_t *sc, const char *arg)
{
    size_t n = scheme_len(arg);
    char *layer = g_strndup(arg, n);
    GKeyFile *kf = g_key_file_new();
    const char *g = sc->group;

    g_key_file_set_value(kf, g, "plugin", sc->plugin);
    g_key_file_set_value(kf, g, "address", n ? arg + n + 3 : arg);
    if (sc->key)
        g_key_file_set_value(kf, g, sc->key, sc->value);
    if (n)
        g_key_file_set_value(kf, g, "transport", layer);
    for (size_t i = 0; n && i < N_LAYER_OPTS; i++) {
        const layer_opt_t *l = &layer_opts[i];
        if (strcmp(l->layer, layer) ||
            !(l->goes_to & (sc->server ? FOR_LISTEN : FOR_CONNECT)))
            continue;
        if (layer_opt_given(o, i))
            g_key_file_set_value(kf, g, l->key,
                                 l->flag ? l->flag : o->layer_value[i]);
        else if (sc->server && l->listen_default)
            g_key_file_set_value(kf, g, l->key, l->listen_default);
    }
    g_free(layer);
    return kf;
}

int zl_host_cli_load_config(zl_host_cfg_t *cfg, const zl_host_opts_t *o)
{
    const char *arg;
    const shortcut_t *sc = shortcut_of(o, &arg);

    if (o->config)
        return zl_host_cfg_load(cfg, o->config);
    if (sc)
        return zl_host_cfg_load_keyfile(cfg, sc->option,
                                        shortcut_config(o, sc, arg));
    return zl_host_cfg_load_data(cfg, "built-in configuration",
                                 default_config);
}

/* ---- the options -------------------------------------------------------- */

static void add_head_options(GArray *a, zl_host_opts_t *o)
{
    GOptionEntry e[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &o->config,
         "Run the instances of FILE (a key file: [host], [plugin.NAME], "
         "[client.NAME], [server.NAME]; see zltk.conf(5)).  Without it, the "
         "built-in configuration runs", "FILE"},
        {"check-config", 0, 0, G_OPTION_ARG_NONE, &o->check,
         "Validate the configuration and load the plugins it names without "
         "starting anything; print every problem, exit 1 if any", NULL},
        {"print-config", 0, 0, G_OPTION_ARG_NONE, &o->print_config,
         "Print the built-in configuration (a starting point for your own) "
         "and exit", NULL},
        {"connect", 0, 0, G_OPTION_ARG_STRING, &o->connect,
         "Connect to HOST:PORT ([IPv6]:PORT) and bridge standard input and "
         "output to it, like ncat; at the end of input, half-close and print "
         "until the peer closes.  Exit 1 if the connection fails.  "
         "tls://HOST:PORT speaks TLS, verifying the server (see --tls-*)",
         "[tls://]HOST:PORT"},
        {"listen", 0, 0, G_OPTION_ARG_STRING, &o->listen,
         "Run one echo server on HOST:PORT (port 0: any free port); "
         "tls://HOST:PORT serves TLS with --tls-cert/--tls-key, or with an "
         "ephemeral self-signed certificate whose fingerprint is logged",
         "[tls://]HOST:PORT"},
    };

    g_array_append_vals(a, e, G_N_ELEMENTS(e));
}

static void add_layer_options(GArray *a, zl_host_opts_t *o)
{
    for (size_t i = 0; i < N_LAYER_OPTS; i++) {
        const layer_opt_t *l = &layer_opts[i];
        GOptionEntry e = {l->option, 0, 0, l->arg,
                          l->arg == G_OPTION_ARG_NONE
                              ? (gpointer)&o->layer_flag[i]
                              : (gpointer)&o->layer_value[i],
                          l->help, l->arg_name};
        g_array_append_val(a, e);
    }
}

static void add_tail_options(GArray *a, zl_host_opts_t *o)
{
    GOptionEntry e[] = {
        {"duration", 'd', 0, G_OPTION_ARG_INT, &o->duration,
         "Run for SECONDS, then stop gracefully (default: until SIGINT or "
         "SIGTERM)", "SECONDS"},
        {"plugin-dir", 'P', 0, G_OPTION_ARG_FILENAME_ARRAY, &o->plugin_dirs,
         "Look for plugins in DIR first (repeatable; then [host] plugin-dir, "
         "$ZLTK_PLUGIN_PATH, " ZLTK_PLUGINDIR " or $ZLTK_PLUGIN_SYSTEM_PATH; "
         "the first NAME.so found is used)", "DIR"},
        {"list-plugins", 0, 0, G_OPTION_ARG_NONE, &o->list,
         "List every plugin on the plugin path with its version, ABI and "
         "what it provides, then exit (non-zero if any file was refused)",
         NULL},
        {"strict-plugins", 0, 0, G_OPTION_ARG_NONE, &o->strict,
         "Refuse to run when a plugin fails to load, initialise or start "
         "(default: skip it and the instances that use it, with a warning)",
         NULL},
        {"pollers", 'p', 0, G_OPTION_ARG_INT, &o->pollers,
         "Number of poller threads (default: [host] pollers, or 0: one per "
         "CPU)", "N"},
        {"workers", 'w', 0, G_OPTION_ARG_INT, &o->workers,
         "Number of worker threads for blocking jobs (default: [host] "
         "workers, or 0: one per CPU, at least 2)", "N"},
        {"backend", 'b', 0, G_OPTION_ARG_STRING, &o->backend,
         "Poller backend: epoll, poll or kqueue (default: [host] backend, "
         "$ZLTK_POLLER_BACKEND, or the best one)", "NAME"},
        {"heartbeat", 0, 0, G_OPTION_ARG_INT, &o->heartbeat,
         "Log each poller's load and queueing delay every MS milliseconds "
         "(default 0: off)", "MS"},
        {"log-level", 'l', 0, G_OPTION_ARG_STRING, &o->level,
         "error, critical, warning, message, info or debug (default: [host] "
         "log-level, or message; warning with --connect)", "LEVEL"},
        {"log-file", 0, 0, G_OPTION_ARG_FILENAME, &o->log_file,
         "Also append log lines to FILE", "FILE"},
        {"version", 'V', 0, G_OPTION_ARG_NONE, &o->version,
         "Print the version and exit", NULL},
        {"probe-plugin", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_FILENAME,
         &o->probe, "Internal: load FILE in this process only (see "
         "zl_host_use_probe)", "FILE"},
        {NULL}};

    g_array_append_vals(a, e, G_N_ELEMENTS(e));
}

static void describe(GOptionContext *ctx)
{
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
}

int zl_host_cli_parse(zl_host_opts_t *o, int *argc, char ***argv)
{
    GArray *entries = g_array_new(FALSE, FALSE, sizeof(GOptionEntry));
    GOptionContext *ctx;
    GError *err = NULL;
    int status = 0;

    *o = (zl_host_opts_t){.pollers = -1, .workers = -1, .self = (*argv)[0]};
    add_head_options(entries, o);
    add_layer_options(entries, o);
    add_tail_options(entries, o);
    ctx = g_option_context_new("- run zltk plugins: servers and clients");
    describe(ctx);
    g_option_context_add_main_entries(ctx, (GOptionEntry *)entries->data,
                                      NULL);
    if (!g_option_context_parse(ctx, argc, argv, &err)) {
        fprintf(stderr, "zltk-host: %s (try --help)\n", err->message);
        g_error_free(err);
        status = 2;
    }
    g_option_context_free(ctx);
    g_array_free(entries, TRUE);
    return status;
}

static int usage(const char *what)
{
    fprintf(stderr, "zltk-host: %s\n", what);
    return 2;
}

int zl_host_cli_check(zl_host_opts_t *o)
{
    if (!!o->config + !!o->connect + !!o->listen > 1)
        return usage("use one of --config, --connect and --listen");
    if ((o->connect && !shortcut_ok("--connect", o->connect)) ||
        (o->listen && !shortcut_ok("--listen", o->listen)))
        return 2;
    if (!layer_opts_ok(o))
        return 2;
    o->log_level = ZL_LOG_MESSAGE;
    if (o->level) {
        if (zl_log_level_parse(o->level, &o->log_level) < 0) {
            fprintf(stderr,
                    "zltk-host: unknown --log-level '%s' (use error, "
                    "critical, warning, message, info or debug)\n",
                    o->level);
            return 2;
        }
        o->log_level_given = true;
    } else if (o->connect || o->check) {
        o->log_level = ZL_LOG_WARNING;
    }
    if (o->duration < 0 || o->pollers < -1 || o->workers < -1 ||
        o->heartbeat < 0)
        return usage("--duration, --pollers, --workers and --heartbeat "
                     "must be >= 0");
    return 0;
}

int zl_host_cli_version(void)
{
    printf("zltk-host %s (plugin ABI %d.%d)\n"
           "Copyright (c) 2026 The zltk authors.\n"
           "License MIT: <https://opensource.org/licenses/MIT>.\n"
           "This is free software: you are free to change and "
           "redistribute it.\n"
           "There is NO WARRANTY, to the extent permitted by law.\n",
           zl_version(), ZLTK_PLUGIN_ABI_MAJOR, ZLTK_PLUGIN_ABI_MINOR);
    return 0;
}

int zl_host_cli_print_config(void)
{
    fputs(default_config, stdout);
    return 0;
}

void zl_host_opts_free(zl_host_opts_t *o)
{
    g_strfreev(o->plugin_dirs);
    g_free(o->config);
    g_free(o->connect);
    g_free(o->listen);
    g_free(o->backend);
    g_free(o->level);
    g_free(o->log_file);
    g_free(o->probe);
    for (size_t i = 0; i < N_LAYER_OPTS; i++)
        g_free(o->layer_value[i]);
}
