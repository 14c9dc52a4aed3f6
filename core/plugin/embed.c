/* zltk — the embedding API: zl_start()/zl_stop() (zltk/runtime.h),
 * zl_instance_open()/zl_instance_close() (zltk/instance.h) and the
 * process's registry of layer plugins loaded by name.
 *
 * It sits above the runtime (core/loop) and uses the loader, so it lives
 * here in core/plugin.  zl_instance_open() wraps the caller's
 * configuration in an open_t: settings copied into a hash table, every
 * reported problem appended to a GString that becomes the GError.
 */
#define G_LOG_DOMAIN "zltk"
#include "plugin-internal.h"
#include "net-internal.h"

#include <sys/stat.h>

GQuark zl_error_quark(void)
{
    return g_quark_from_static_string("zltk-error-quark");
}

void *zl_instance_user_data(const zl_instance_t *inst)
{
    return inst->user_data;
}

void zl_instance_options_init(zl_instance_options_t *o)
{
    *o = (zl_instance_options_t)ZL_INSTANCE_OPTIONS_INIT;
}

/* ------------------------------------------------------ start, stop */

/* What zl_start() started, and the layer registry: under embed_mu. */
static pthread_mutex_t embed_mu = PTHREAD_MUTEX_INITIALIZER;
static bool started_log, started_rt;
static zl_plugin_registry_t *layers;
/* Open instances that run a layer of the registry: while there are any,
 * zl_stop() keeps the plugins loaded rather than free them under them. */
static atomic_int layer_users;

static zl_log_level_t env_log_level(void)
{
    const char *v = g_getenv("ZLTK_LOG_LEVEL");
    zl_log_level_t level = ZL_LOG_MESSAGE;

    if (v && *v && zl_log_level_parse(v, &level) < 0) {
        g_warning("ZLTK_LOG_LEVEL='%s' is not a log level: using message", v);
        level = ZL_LOG_MESSAGE;
    }
    return level;
}

int zl_start(const zl_runtime_options_t *opts)
{
    zl_log_options_t lo = {.console = true};
    int rc;

    pthread_mutex_lock(&embed_mu);
    if (started_rt) {
        pthread_mutex_unlock(&embed_mu);
        return -EALREADY;
    }
    lo.level = env_log_level();
    rc = zl_log_init(&lo);
    if (rc < 0 && rc != -EALREADY) {
        g_warning("zl_start: cannot start logging: %s", zl_strerror(rc));
        pthread_mutex_unlock(&embed_mu);
        return rc;
    }
    started_log = rc == 0;
    rc = zl_runtime_init(opts);
    if (rc < 0) {
        g_warning("zl_start: cannot start the runtime: %s", zl_strerror(rc));
        if (started_log)
            zl_log_shutdown();
        started_log = false;
    } else {
        started_rt = true;
    }
    pthread_mutex_unlock(&embed_mu);
    return rc;
}

void zl_stop(void)
{
    pthread_mutex_lock(&embed_mu);
    if (started_rt)
        zl_runtime_shutdown();
    started_rt = false;
    if (layers && atomic_load(&layer_users)) {
        g_critical("zl_stop: %d instance(s) with a layer loaded by name are "
                   "still open: zl_instance_close() them first (the layer "
                   "plugins stay loaded)",
                   atomic_load(&layer_users));
    } else if (layers) {
        zl_plugins_free(layers);
        layers = NULL;
    }
    if (started_log)
        zl_log_shutdown();
    started_log = false;
    pthread_mutex_unlock(&embed_mu);
}

/* ------------------------------------------------------ layer by name */

static bool on_path(char **dirs, const char *name)
{
    bool found = false;

    for (size_t i = 0; dirs[i] && !found; i++) {
        char *path = g_strdup_printf("%s/%s.so", dirs[i], name);

        found = g_file_test(path, G_FILE_TEST_EXISTS);
        g_free(path);
    }
    return found;
}

/* Load NAME.so from dirs and start it.  0, or -errno with *msg set. */
static int layer_load(char **dirs, const char *name, char **msg)
{
    char *lmsg = NULL;
    int rc;

    if (!on_path(dirs, name)) {
        char *list = dirs[0] ? g_strjoinv(", ", dirs)
                             : g_strdup("(no directories)");
        const char *env = g_getenv("ZLTK_PLUGIN_PATH");

        *msg = g_strdup_printf("layer '%s' not found on the plugin path: no "
                               "%s.so in %s (ZLTK_PLUGIN_PATH=%s)",
                               name, name, list, env ? env : "");
        g_free(list);
        return -ENOENT;
    }
    rc = zl_plugins_load(layers, name, (const char *const *)dirs, &lmsg);
    if (rc < 0) {
        *msg = g_strdup_printf("layer '%s': %s", name,
                               lmsg ? lmsg : zl_strerror(rc));
        free(lmsg); /* the loader's, from malloc */
        return rc;
    }
    zl_plugins_start(layers);
    return 0;
}

/* The layer registered as name, loading NAME.so from the plugin path the
 * first time.  NULL with *error set when it cannot be had.  Under
 * embed_mu. */
static const zl_layer_t *layer_locked(const char *name, zl_plugin_t **owner,
                                      GError **error)
{
    const zl_registration_t *r;
    char **dirs, *msg = NULL;
    int rc;

    if (!layers && (rc = zl_plugins_new(&layers)) < 0) {
        g_set_error(error, ZL_ERROR, rc, "layer '%s': %s", name,
                    zl_strerror(rc));
        return NULL;
    }
    r = zl_plugins_find_provider(layers, ZL_PROVIDES_LAYER, name, owner);
    if (r)
        return r->vtable;
    if (zl_plugins_find(layers, name)) {
        g_set_error(error, ZL_ERROR, -ENOENT,
                    "layer '%s': the plugin %s is loaded but offers no "
                    "layer of that name", name,
                    zl_plugin_get_path(zl_plugins_find(layers, name)));
        return NULL;
    }
    dirs = zl_plugins_search_path(NULL);
    rc = layer_load(dirs, name, &msg);
    g_strfreev(dirs);
    if (rc == 0) {
        r = zl_plugins_find_provider(layers, ZL_PROVIDES_LAYER, name, owner);
        if (!r) {
            zl_plugin_t *last = zl_plugins_at(layers,
                                              zl_plugins_count(layers) - 1);

            rc = -ENOENT;
            msg = g_strdup_printf("layer '%s': %s provides no layer of that "
                                  "name (or its start failed)", name,
                                  zl_plugin_get_path(last));
        }
    }
    if (!r)
        g_set_error_literal(error, ZL_ERROR, rc, msg);
    g_free(msg);
    return r ? r->vtable : NULL;
}

static const zl_layer_t *find_layer(const char *name, zl_plugin_t **owner,
                                    GError **error)
{
    const zl_layer_t *l;

    pthread_mutex_lock(&embed_mu);
    l = layer_locked(name, owner, error);
    pthread_mutex_unlock(&embed_mu);
    return l;
}

/* ------------------------------------------------------ settings */

typedef struct open_ctx {
    GHashTable *settings; /* key -> value, both owned */
    GString *problems;    /* one "KEY: message" per line */
    const zl_instance_options_t *o; /* the caller's, during open only */
    zl_instance_config_fn config;
    zl_instance_default_fn config_default;
    zl_instance_report_fn report;
    void *ctx;
    bool layer_user; /* counted in layer_users */
} open_ctx_t;

static const char *open_config(void *p, const char *key)
{
    open_ctx_t *oc = p;

    if (oc->config)
        return oc->config(oc->ctx, key);
    return g_hash_table_lookup(oc->settings, key);
}

static bool open_config_default(void *p, const char *key)
{
    open_ctx_t *oc = p;

    return oc->config_default && oc->config_default(oc->ctx, key);
}

static void open_report(void *p, const char *key, const char *message)
{
    open_ctx_t *oc = p;

    if (oc->problems->len)
        g_string_append_c(oc->problems, '\n');
    if (key)
        g_string_append_printf(oc->problems, "%s: ", key);
    g_string_append(oc->problems, message);
    if (oc->report)
        oc->report(oc->ctx, key, message);
}

static void open_ctx_free(void *p)
{
    open_ctx_t *oc = p;

    if (oc->layer_user)
        atomic_fetch_sub(&layer_users, 1);
    g_hash_table_destroy(oc->settings);
    g_string_free(oc->problems, TRUE);
    g_free(oc);
}

static bool key_listed(const char *const *keys, const char *key)
{
    for (size_t i = 0; keys && keys[i]; i++)
        if (!strcmp(keys[i], key))
            return true;
    return false;
}

/* Copy the settings, each key known to the handler or the layer. */
static void copy_settings(open_ctx_t *oc, const zl_instance_options_t *o,
                          const zl_layer_t *l)
{
    for (const zl_setting_t *st = o->settings; st && st->key; st++) {
        if (!key_listed(o->handler->keys, st->key) &&
            !(l && key_listed(l->keys, st->key))) {
            open_report(oc, st->key,
                        l ? "unknown key: neither the handler's nor the "
                            "layer's"
                          : "unknown key: not the handler's, and no layer "
                            "is set (layer_name)");
            continue;
        }
        if (!st->value) {
            open_report(oc, st->key, "no value (NULL)");
            continue;
        }
        g_hash_table_insert(oc->settings, g_strdup(st->key),
                            g_strdup(st->value));
    }
}

/* ------------------------------------------------------ open, close */

/* What zl_instance_new() or the connection code would refuse, with the
 * field named, so that the caller gets it in the GError. */
static const char *options_problem(const zl_instance_options_t *o)
{
    const zl_conn_options_t *c = o->server ? &o->server_opts.conn
                                           : &o->client.conn;

    if (!o->name || !*o->name)
        return "name is missing";
    if (!o->handler)
        return "handler is missing";
    if (o->handler->struct_size < ZL_HANDLER_SIZE_1_0 || !o->handler->on_recv)
        return "the handler is malformed (needs struct_size and on_recv)";
    if (o->layer && o->layer_name)
        return "both layer and layer_name are set";
    if (o->config && o->settings)
        return "both config and settings are set";
    if (!c->high_water || !c->manager_ms)
        return "the options look zero-filled (conn.high_water or "
               "conn.manager_ms is 0): start from ZL_INSTANCE_OPTIONS_INIT";
    if (o->server ? zl__server_options_check(&o->server_opts) < 0
                  : zl__client_options_check(&o->client) < 0)
        return "the connection options are refused (the reason is logged): "
               "start from ZL_INSTANCE_OPTIONS_INIT";
    if (!o->server && (!o->client.host || !*o->client.host ||
                       (!o->client.port && !zl_addr_is_unix_text(o->client.host))))
        return "a client needs client.host and client.port (or unix:PATH)";
    return NULL;
}

static const char *kind_of(const zl_instance_options_t *o)
{
    return o->server ? "server" : "client";
}

static zl_instance_t *open_fail(const zl_instance_options_t *o, GError **error,
                                int code, const char *msg)
{
    g_set_error(error, ZL_ERROR, code, "%s.%s: %s", kind_of(o),
                o->name && *o->name ? o->name : "?", msg);
    return NULL;
}

/* zl_instance_new() over an open_t; the instance then owns oc. */
static zl_instance_t *open_new(const zl_instance_options_t *o,
                               const zl_layer_t *l, zl_plugin_t *lp,
                               GError **error)
{
    open_ctx_t *oc = g_new0(open_ctx_t, 1);
    zl_instance_options_t no = *o;
    zl_instance_t *inst = NULL;
    int rc;

    oc->settings = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                         g_free);
    oc->problems = g_string_new(NULL);
    oc->config = o->config;
    oc->config_default = o->config_default;
    oc->report = o->report;
    oc->ctx = o->ctx;
    if (o->layer_name) {
        oc->layer_user = true;
        atomic_fetch_add(&layer_users, 1);
    }
    copy_settings(oc, o, l);
    if (oc->problems->len) {
        g_set_error_literal(error, ZL_ERROR, -EINVAL, oc->problems->str);
        open_ctx_free(oc);
        return NULL;
    }
    no.layer = l;
    no.layer_plugin = lp;
    no.config = open_config;
    no.config_default = open_config_default;
    no.report = open_report;
    no.ctx = oc;
    rc = zl_instance_new(&inst, &no);
    if (rc < 0 && oc->problems->len) {
        g_set_error_literal(error, ZL_ERROR, rc, oc->problems->str);
        open_ctx_free(oc);
        return NULL;
    } else if (rc < 0) {
        open_fail(o, error, rc, zl_strerror(rc));
        open_ctx_free(oc);
        return NULL;
    }
    inst->finished_ctx = o->ctx;
    inst->open_ctx = oc;
    inst->open_ctx_free = open_ctx_free;
    return inst;
}

zl_instance_t *zl_instance_open(const zl_instance_options_t *o,
                                GError **error)
{
    const zl_layer_t *l = o ? o->layer : NULL;
    zl_plugin_t *lp = o ? o->layer_plugin : NULL;
    const char *problem;
    zl_instance_t *inst;
    int rc;

    if (!o) {
        g_set_error(error, ZL_ERROR, -EINVAL,
                    "zl_instance_open: no options");
        return NULL;
    }
    if ((problem = options_problem(o)))
        return open_fail(o, error, -EINVAL, problem);
    if (!zl_runtime_pollers())
        return open_fail(o, error, -EINVAL,
                         "the runtime is not running (zl_start() first)");
    if (o->layer_name && !(l = find_layer(o->layer_name, &lp, error)))
        return NULL;
    if (!(inst = open_new(o, l, lp, error)))
        return NULL;
    rc = zl_instance_start(inst);
    if (rc < 0) {
        char *m = o->server
                      ? g_strdup_printf("cannot listen on %s:%u: %s",
                                        o->server_opts.host
                                            ? o->server_opts.host
                                            : "*",
                                        o->server_opts.port, zl_strerror(rc))
                      : g_strdup_printf("cannot start connecting to %s:%u: %s",
                                        o->client.host, o->client.port,
                                        zl_strerror(rc));
        open_fail(o, error, rc, m);
        g_free(m);
        zl_instance_free(inst);
        return NULL;
    }
    return inst;
}

void zl_instance_close(zl_instance_t *inst)
{
    if (!inst)
        return;
    zl_instance_stop(inst);
    zl_instance_free(inst);
}
