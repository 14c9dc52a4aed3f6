/* zltk-host — configuration file (private to the host program). */
#ifndef ZLTK_HOST_CONFIG_H
#define ZLTK_HOST_CONFIG_H

#include <glib.h>
#include <zltk/zltk.h>

typedef struct zl_host_cfg zl_host_cfg_t;

/* One [client.NAME] or [server.NAME] group, validated. */
typedef struct zl_host_instance {
    zl_host_cfg_t *cfg;
    char *group, *name, *plugin, *host;
    char *peer_server; /* client address "@NAME": server.NAME's address */
    char *transport;   /* a layer's name; NULL: plain tcp */
    bool server;
    /* What the instance is created with, parsed once from the group's keys
     * (ZL_*_OPTIONS_INIT, then the host's defaults, then the keys): client
     * for a client, srv for a server.  Their port comes from address; their
     * host is set from host when the instance is created. */
    zl_client_options_t client;
    zl_server_options_t srv;
    /* Filled by zl_host_cfg_resolve / zl_host_cfg_instances. */
    const zl_handler_t *handler;
    zl_plugin_t *owner;
    const zl_layer_t *layer;
    zl_plugin_t *layer_owner;
    zl_instance_t *inst;
    GHashTable *values; /* key -> raw value, kept for the instance */
    /* key -> "plugin.NAME" for the values in values that are that group's
     * defaults (the instance's group does not set the key). */
    GHashTable *defaults;
} zl_host_instance_t;

struct zl_host_cfg {
    char *file;
    GKeyFile *kf;
    int errors, warnings;
    /* [host] */
    int pollers, workers;
    char *backend, *log_level, *plugin_dir;
    GPtrArray *plugins;          /* names of [plugin.NAME] groups */
    GPtrArray *clients, *servers; /* zl_host_instance_t */
    bool lenient; /* plugin problems are warnings; instances are skipped */
    /* Given to every client instance (zl_instance_options_t.on_finished);
     * its ctx argument is the zl_host_instance_t. */
    void (*on_finished)(zl_instance_t *inst, void *ctx);
};

/* Parse and validate file; every problem is printed to stderr (one line,
 * naming file, group and key).  Returns 0, or -1 if there were errors. */
int zl_host_cfg_load(zl_host_cfg_t *cfg, const char *file);
/* Same, from text in memory; name stands for the file in messages. */
int zl_host_cfg_load_data(zl_host_cfg_t *cfg, const char *name,
                          const char *data);

/* Same, from a key file built in memory (taken over: freed with cfg).
 * Values set with g_key_file_set_value() reach the readers exactly as
 * given, newlines included: no text is parsed, so a value can never add a
 * key or a group. */
int zl_host_cfg_load_keyfile(zl_host_cfg_t *cfg, const char *name,
                             GKeyFile *kf);

/* Report a problem as "zltk-host: FILE: [GROUP] KEY: message". */
void zl_host_cfg_report(zl_host_cfg_t *cfg, bool error, const char *group,
                        const char *key, const char *fmt, ...)
    G_GNUC_PRINTF(5, 6);

/* Create a zl_instance_t for every instance whose handler was resolved
 * (each handler and layer checks its own keys).  A key the layer or the
 * handler declares that the instance's group lacks is taken from the
 * [plugin.NAME] group of the plugin providing it, and a problem with such
 * a value is reported against that group.  Returns 0, or -1 if there were
 * errors (printed). */
int zl_host_cfg_instances(zl_host_cfg_t *cfg);

/* Load the plugins the file names ([plugin.NAME] groups and each
 * instance's plugin) from dirs and check every instance's handler exists
 * with the right kind.  Gives plugins their [plugin.NAME] settings.  Returns
 * 0, or -1 if there were errors (printed). */
int zl_host_cfg_resolve(zl_host_cfg_t *cfg, zl_plugin_registry_t *reg,
                        const char *const *dirs);

void zl_host_cfg_free(zl_host_cfg_t *cfg);

/* ---- the program: main.c, cli.c, check.c, run.c */
/* (and plugin-path.c).  main() runs these steps in order; each prints its
 * own problems and returns an exit status: 0, 1 (runtime failure) or 2
 * (bad command line). */

/* Values of the options a URL scheme's layer adds to --connect/--listen
 * (cli.c's table says which: at most this many). */
#define ZL_HOST_LAYER_OPTS 12

/* The command line (cli.c).  Strings are GLib's, freed by
 * zl_host_opts_free(); the main thread only. */
typedef struct zl_host_opts {
    const char *self; /* argv[0], to run this program again as a probe */
    gint duration, pollers, workers, heartbeat;
    gchar *backend, *level, *log_file, *config, *connect, *listen;
    gboolean version, list, check, print_config, strict;
    gchar **plugin_dirs;
    gchar *probe; /* hidden: --probe-plugin FILE */
    /* Set by zl_host_cli_check(): --log-level, or the mode's default. */
    zl_log_level_t log_level;
    bool log_level_given;
    /* The layer options of cli.c's table, by index: a string option's
     * value, or a flag's. */
    gchar *layer_value[ZL_HOST_LAYER_OPTS];
    gboolean layer_flag[ZL_HOST_LAYER_OPTS];
} zl_host_opts_t;

/* Parse argv into o (zeroed first).  Returns 0, or 2 after printing the
 * error. */
int zl_host_cli_parse(zl_host_opts_t *o, int *argc, char ***argv);
/* The checks of a run's options, after --version and --print-config:
 * one mode, shortcut arguments, the layer options, the log level, the
 * numbers.  Returns 0, or 2 after printing the error. */
int zl_host_cli_check(zl_host_opts_t *o);
/* --version and --print-config (the built-in configuration, from
 * core/host/default.conf).  Return 0. */
int zl_host_cli_version(void);
int zl_host_cli_print_config(void);
/* Load what the command line names: --config FILE, the one instance of
 * --connect or --listen, or the built-in configuration. */
int zl_host_cli_load_config(zl_host_cfg_t *cfg, const zl_host_opts_t *o);
void zl_host_opts_free(zl_host_opts_t *o);

/* The plugin search path (plugin-path.c): --plugin-dir, the config's
 * [host] plugin-dir, $ZLTK_PLUGIN_PATH, then the installed directory or
 * $ZLTK_PLUGIN_SYSTEM_PATH.  NULL-terminated, g_strfreev() it. */
char **zl_host_plugin_path(char **dirs, const char *config_dir);

typedef struct zl_host_beat zl_host_beat_t;

/* What a run holds; zl_host_free() releases it whatever step failed. */
typedef struct zl_host {
    zl_host_cfg_t cfg;
    zl_plugin_registry_t *reg;
    char **path;
    bool log_up, runtime_up;
    zl_host_beat_t *beats; /* --heartbeat: one per poller */
    size_t n_beats;
} zl_host_t;

/* check.c: --list-plugins (the whole mode), the probe child of
 * --probe-plugin, and --check-config's pieces: its log writer (instead of
 * zl_log_init()), the probe for the registry, and the verdict. */
int zl_host_list_plugins(const zl_host_opts_t *o);
int zl_host_probe_child(const char *file);
void zl_host_use_probe(zl_plugin_registry_t *reg, const char *self);
int zl_host_check_log_init(zl_host_cfg_t *cfg, const zl_log_options_t *lopts);
int zl_host_check_verdict(zl_host_t *h);
void zl_host_check_log_close(void);

/* run.c: block the stop signals, start the runtime, the plugins and the
 * instances, wait for a signal, the duration or (--connect) the end of
 * the client, then stop.  on_finished is the cfg's client callback. */
int zl_host_run(zl_host_t *h, const zl_host_opts_t *o);
void zl_host_on_finished(zl_instance_t *inst, void *ctx);
/* After zl_host_run(), or instead of it: shut the runtime down, free the
 * instances, the plugins and the beats; "stopped" is logged when status
 * is 0 and the runtime ran. */
void zl_host_free(zl_host_t *h, int status);

#endif
