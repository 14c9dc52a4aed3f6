/* hello — an example third-party zltk plugin.
 *
 * It registers a server handler named "hello-echo" that greets each new
 * connection and echoes every byte back.  The greeting comes from the
 * instance's own key (greeting = ...) or from [plugin.hello] greeting, and
 * defaults to "hello".  Everything it uses comes from <zltk/plugin.h>. */
#include <zltk/plugin.h>

#include <errno.h>
#include <stddef.h>
#include <string.h>

static const zl_host_api_t *host;
static zl_plugin_t *plugin;

typedef struct hello_session {
    unsigned long long echoed;
} hello_session_t;

static int hello_open(zl_session_t *s, void *state, zl_instance_t *inst)
{
    const char *greeting = host->config_string(inst, "greeting");

    (void)state;
    if (!greeting)
        greeting = host->get_string(plugin, "greeting");
    if (!greeting)
        greeting = "hello";
    host->send(s, greeting, strlen(greeting));
    host->send(s, "\n", 1);
    return 0;
}

static void hello_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    hello_session_t *h = state;

    h->echoed += buf->len;
    host->send_buf(s, zl_buf_ref(buf)); /* zero-copy echo */
}

static void hello_closed(zl_session_t *s, void *state)
{
    hello_session_t *h = state;

    host->session_log(s, ZL_LOG_INFO, "closed after echoing %llu bytes",
                      h->echoed);
}

static const char *const hello_keys[] = {"greeting", NULL};

static const zl_handler_t hello_handler = {
    .struct_size = sizeof(zl_handler_t),
    .state_size = sizeof(hello_session_t),
    .keys = hello_keys,
    .on_open = hello_open,
    .on_recv = hello_recv,
    .on_closed = hello_closed,
};

static int hello_init(zl_plugin_t *self, const zl_host_api_t *api)
{
    zl_registration_t reg = {
        .struct_size = sizeof(reg),
        .kind = ZL_PROVIDES_SERVER,
        .name = "hello-echo",
        .description = "greets, then echoes every byte back",
        .vtable = &hello_handler,
    };

    /* This plugin uses fields up to session_log: refuse an older host. */
    if (api->struct_size < offsetof(zl_host_api_t, reserved))
        return -EOPNOTSUPP;
    host = api;
    plugin = self;
    return host->register_provider(self, &reg);
}

ZLTK_PLUGIN_DEFINE(
    .name = "hello",
    .version = "1.0",
    .description = "Example third-party plugin built against the installed SDK",
    .init = hello_init,
)
