/* zltk-host — configuration file (private to the host program). */
#ifndef ZLTK_HOST_CONFIG_H
#define ZLTK_HOST_CONFIG_H

#include <glib.h>
#include <zltk/zltk.h>

/* One [client.NAME] or [server.NAME] group, validated. */
typedef struct zl_host_instance {
    char *group, *name, *plugin, *host;
    bool server;
    uint16_t port;
    int64_t send_timeout_ms; /* with has_send_timeout; 0 = off */
    bool has_send_timeout;
    size_t high_water, low_water;
    int backlog;
    size_t max_conns;
    uint32_t connect_timeout_ms, reconnect_min_ms, reconnect_max_ms;
    bool reconnect;
    unsigned max_attempts;
} zl_host_instance_t;

typedef struct zl_host_cfg {
    char *file;
    GKeyFile *kf;
    int errors, warnings;
    /* [host] */
    int pollers, workers;
    char *backend, *log_level, *plugin_dir;
    GPtrArray *plugins;          /* names of [plugin.NAME] groups */
    GPtrArray *clients, *servers; /* zl_host_instance_t */
} zl_host_cfg_t;

/* Parse and validate file; every problem is printed to stderr (one line,
 * naming file, group and key).  Returns 0, or -1 if there were errors. */
int zl_host_cfg_load(zl_host_cfg_t *cfg, const char *file);

/* Load the plugins the file names ([plugin.NAME] groups and each
 * instance's plugin) from dirs and check every instance's handler exists
 * with the right kind.  Gives plugins their [plugin.NAME] settings.  Returns
 * 0, or -1 if there were errors (printed). */
int zl_host_cfg_resolve(zl_host_cfg_t *cfg, zl_plugin_registry_t *reg,
                        const char *const *dirs);

void zl_host_cfg_free(zl_host_cfg_t *cfg);

#endif
