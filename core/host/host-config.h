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

#endif
