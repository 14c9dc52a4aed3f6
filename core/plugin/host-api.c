/* zltk — the host API (zltk/plugin.h's zl_host_api_t): the one table a
 * plugin's init receives, and the plugin-facing getters behind it.
 *
 * The table points at the loader's entries (registration, settings), the
 * instance's (instance.c), the session's (session.c) and the layer's
 * (layer.c); the loader reaches it only through zl_plugins_host_api().
 * Typed values, of plugins and instances alike, are read by one helper,
 * zl__typed_value(), with one message for a bad value.
 */
#define G_LOG_DOMAIN "zltk-plugin"
#include "plugin-internal.h"

#include <stdarg.h>

/* ------------------------------------------------------------ values */

int zl__typed_value(const char *v, zl__value_type_t type, void *out,
                    const char *key, zl__complain_fn complain, void *ctx)
{
    char *msg;
    int rc;

    if (!v)
        return -ENOENT;
    if (type == ZL__VALUE_BOOL)
        rc = zl_parse_bool(v, out);
    else
        rc = zl_parse_int(v, INT64_MIN, INT64_MAX, out);
    if (rc >= 0)
        return 0;
    msg = type == ZL__VALUE_BOOL
              ? g_strdup_printf("'%s' is not a boolean (" ZL_BOOL_WORDS ")", v)
              : g_strdup_printf("'%s' is not an integer", v);
    complain(ctx, key, msg);
    g_free(msg);
    return -EINVAL;
}

/* ------------------------------------------------------------ plugins */

static void host_log(zl_plugin_t *self, zl_log_level_t level, const char *fmt,
                     ...)
{
    static const GLogLevelFlags map[] = {
        G_LOG_LEVEL_CRITICAL, /* error: never abort from a plugin's line */
        G_LOG_LEVEL_CRITICAL, G_LOG_LEVEL_WARNING, G_LOG_LEVEL_MESSAGE,
        G_LOG_LEVEL_INFO,     G_LOG_LEVEL_DEBUG};
    char *msg;
    va_list ap;

    if ((unsigned)level > ZL_LOG_DEBUG)
        level = ZL_LOG_MESSAGE;
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_log_structured("zltk-plugin", map[level], "MESSAGE", "%s: %s",
                     zl_plugin_get_desc(self)->name, msg);
    g_free(msg);
}

static const char *host_get_string(zl_plugin_t *self, const char *key)
{
    return zl__plugin_setting(self, key);
}

/* "FILE: [plugin.NAME] key: 'v' is not an integer", as the host's own
 * configuration messages read. */
static void plugin_complain(void *ctx, const char *key, const char *msg)
{
    zl_plugin_t *self = ctx;

    g_warning("%s: [plugin.%s] %s: %s", zl__plugin_source(self),
              zl_plugin_get_desc(self)->name, key, msg);
}

static int host_get_int(zl_plugin_t *self, const char *key, int64_t *out)
{
    return zl__typed_value(host_get_string(self, key), ZL__VALUE_INT, out,
                           key, plugin_complain, self);
}

static int host_get_bool(zl_plugin_t *self, const char *key, bool *out)
{
    return zl__typed_value(host_get_string(self, key), ZL__VALUE_BOOL, out,
                           key, plugin_complain, self);
}

static const char *host_name(const zl_plugin_t *self)
{
    return zl_plugin_get_desc(self)->name;
}

/* ------------------------------------------------------------ the table */

static const zl_host_api_t host_api = {
    .struct_size = sizeof(zl_host_api_t),
    .abi_major = ZLTK_PLUGIN_ABI_MAJOR,
    .abi_minor = ZLTK_PLUGIN_ABI_MINOR,
    .register_provider = zl__plugin_register,
    .log = host_log,
    .get_string = host_get_string,
    .get_int = host_get_int,
    .get_bool = host_get_bool,
    .name = host_name,
    .instance_name = zl__instance_name,
    .instance_is_server = zl__instance_is_server,
    .instance_data = zl__instance_data,
    .config_string = zl__instance_config_string,
    .config_int = zl__instance_config_int,
    .config_bool = zl__instance_config_bool,
    .config_error = zl__instance_config_error,
    .send = zl_session_send,
    .send_buf = zl_session_send_buf,
    .close = zl_session_close,
    .abort = zl_session_abort,
    .shutdown = zl_session_shutdown,
    .pause = zl_session_pause,
    .resume = zl_session_resume,
    .peer = zl_session_peer,
    .local = zl_session_local,
    .session_name = zl_session_name,
    .session_instance = zl_session_instance,
    .session_poller = zl_session_poller,
    .queued = zl_session_queued,
    .session_ref = zl_session_ref,
    .session_unref = zl_session_unref,
    .add_timer = zl_session_add_timer,
    .post = zl_session_post,
    .submit = zl_session_submit,
    .session_log = zl__session_log,
    .lower_send = zl__session_lower_send,
    .lower_send_buf = zl__session_lower_send_buf,
    .lower_close = zl__session_lower_close,
    .lower_shutdown = zl__session_lower_shutdown,
    .upper_connect = zl__session_upper_connect,
    .upper_recv = zl__session_upper_recv,
    .upper_err = zl__session_upper_err,
    .layer_data = zl__instance_layer_data,
    .instance_host = zl__instance_host,
    .transport_info = zl_session_transport_info,
    .layer_queued = zl__session_layer_queued,
    .config_is_default = zl__instance_config_is_default,
    .fail = zl_session_fail,
};

const zl_host_api_t *zl_plugins_host_api(void)
{
    return &host_api;
}
