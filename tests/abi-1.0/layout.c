/* The layout of plugin ABI 1.0: every field offset, struct size and constant
 * a plugin of ABI 1.0 compiled in.  tests/check-abi.sh builds this program
 * twice, against the frozen headers (tests/abi-1.0/include) and against
 * today's (include/), and requires the same output: fields may only be
 * appended into the reserved tails, never moved, resized or renumbered.
 * The list names only ABI 1.0 fields (not the reserved tails, whose offsets
 * move when a field is appended into them). */
#include <stddef.h>
#include <stdio.h>

#include <zltk/error.h>
#include <zltk/plugin.h>

#define SIZE(t) printf("sizeof(%s) %zu\n", #t, sizeof(t))
#define F(t, f) printf("%s.%s %zu %zu\n", #t, #f, offsetof(t, f), \
                       sizeof(((t *)0)->f))
#define K(c) printf("%s %lld\n", #c, (long long)(c))

static void descriptor(void)
{
    SIZE(zl_plugin_desc_t);
    F(zl_plugin_desc_t, magic);
    F(zl_plugin_desc_t, abi_major);
    F(zl_plugin_desc_t, abi_minor);
    F(zl_plugin_desc_t, struct_size);
    F(zl_plugin_desc_t, flags);
    F(zl_plugin_desc_t, name);
    F(zl_plugin_desc_t, version);
    F(zl_plugin_desc_t, description);
    F(zl_plugin_desc_t, init);
    F(zl_plugin_desc_t, start);
    F(zl_plugin_desc_t, stop);
    F(zl_plugin_desc_t, destroy);
    SIZE(zl_registration_t);
    F(zl_registration_t, struct_size);
    F(zl_registration_t, kind);
    F(zl_registration_t, name);
    F(zl_registration_t, description);
    F(zl_registration_t, vtable);
}

static void handler(void)
{
    SIZE(zl_handler_t);
    K(ZL_HANDLER_SIZE_1_0);
    F(zl_handler_t, struct_size);
    F(zl_handler_t, state_size);
    F(zl_handler_t, keys);
    F(zl_handler_t, instance_new);
    F(zl_handler_t, instance_free);
    F(zl_handler_t, on_open);
    F(zl_handler_t, on_connect);
    F(zl_handler_t, on_recv);
    F(zl_handler_t, on_err);
    F(zl_handler_t, on_flush);
    F(zl_handler_t, on_busy);
    F(zl_handler_t, on_manager);
    F(zl_handler_t, on_closed);
}

static void layer(void)
{
    SIZE(zl_layer_t);
    K(ZL_LAYER_SIZE_1_0);
    F(zl_layer_t, struct_size);
    F(zl_layer_t, state_size);
    F(zl_layer_t, keys);
    F(zl_layer_t, instance_new);
    F(zl_layer_t, instance_free);
    F(zl_layer_t, on_open);
    F(zl_layer_t, on_connect);
    F(zl_layer_t, on_recv);
    F(zl_layer_t, on_err);
    F(zl_layer_t, on_manager);
    F(zl_layer_t, on_closed);
    F(zl_layer_t, send);
    F(zl_layer_t, close);
    F(zl_layer_t, shutdown);
    F(zl_layer_t, info);
    F(zl_layer_t, pause);
}

static void host_api_plugin(void)
{
    SIZE(zl_host_api_t);
    F(zl_host_api_t, struct_size);
    F(zl_host_api_t, abi_major);
    F(zl_host_api_t, abi_minor);
    F(zl_host_api_t, register_provider);
    F(zl_host_api_t, log);
    F(zl_host_api_t, get_string);
    F(zl_host_api_t, get_int);
    F(zl_host_api_t, get_bool);
    F(zl_host_api_t, name);
    F(zl_host_api_t, instance_name);
    F(zl_host_api_t, instance_is_server);
    F(zl_host_api_t, instance_data);
    F(zl_host_api_t, config_string);
    F(zl_host_api_t, config_int);
    F(zl_host_api_t, config_bool);
    F(zl_host_api_t, config_error);
}

static void host_api_session(void)
{
    F(zl_host_api_t, send);
    F(zl_host_api_t, send_buf);
    F(zl_host_api_t, close);
    F(zl_host_api_t, abort);
    F(zl_host_api_t, shutdown);
    F(zl_host_api_t, pause);
    F(zl_host_api_t, resume);
    F(zl_host_api_t, peer);
    F(zl_host_api_t, local);
    F(zl_host_api_t, session_name);
    F(zl_host_api_t, session_instance);
    F(zl_host_api_t, session_poller);
    F(zl_host_api_t, queued);
    F(zl_host_api_t, session_ref);
    F(zl_host_api_t, session_unref);
    F(zl_host_api_t, add_timer);
    F(zl_host_api_t, post);
    F(zl_host_api_t, submit);
    F(zl_host_api_t, session_log);
}

static void host_api_layer(void)
{
    F(zl_host_api_t, lower_send);
    F(zl_host_api_t, lower_send_buf);
    F(zl_host_api_t, lower_close);
    F(zl_host_api_t, lower_shutdown);
    F(zl_host_api_t, upper_connect);
    F(zl_host_api_t, upper_recv);
    F(zl_host_api_t, upper_err);
    F(zl_host_api_t, layer_data);
    F(zl_host_api_t, instance_host);
    F(zl_host_api_t, transport_info);
    F(zl_host_api_t, layer_queued);
    F(zl_host_api_t, config_is_default);
    /* Appended after 1.0, before these headers were frozen: a 1.0 plugin
     * checks struct_size before using it, but its place is fixed too. */
    F(zl_host_api_t, fail);
}

static void data(void)
{
    SIZE(zl_buf_t);
    F(zl_buf_t, data);
    F(zl_buf_t, len);
    F(zl_buf_t, cap);
    SIZE(zl_error_t);
    F(zl_error_t, code);
    F(zl_error_t, sys);
    F(zl_error_t, stage);
    F(zl_error_t, message);
    SIZE(zl_addr_t);
    F(zl_addr_t, u);
    F(zl_addr_t, len);
}

static void constants(void)
{
    K(ZLTK_PLUGIN_MAGIC);
    K(ZLTK_PLUGIN_ABI_MAJOR);
    K(ZL_PROVIDES_CLIENT);
    K(ZL_PROVIDES_SERVER);
    K(ZL_PROVIDES_LAYER);
    K(ZL_CONN_BUSY);
    K(ZL_LOG_ERROR);
    K(ZL_LOG_CRITICAL);
    K(ZL_LOG_WARNING);
    K(ZL_LOG_MESSAGE);
    K(ZL_LOG_INFO);
    K(ZL_LOG_DEBUG);
    /* Every error code and stage of ABI 1.0, by the 1.0 tables' names. */
#define ERR(name, msg) K(ZL_##name);
    ZL_ERRNO_MAP(ERR)
#undef ERR
#define STAGE(name, text) K(ZL_STAGE_##name);
    ZL_STAGE_MAP(STAGE)
#undef STAGE
}

int main(void)
{
    descriptor();
    handler();
    layer();
    host_api_plugin();
    host_api_session();
    host_api_layer();
    data();
    constants();
    return 0;
}
