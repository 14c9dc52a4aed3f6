/* hello — an example third-party zltk plugin.
 *
 * It registers a server handler named "hello-echo" and reads one setting,
 * [plugin.hello] greeting, when the host has a configuration. */
#include <zltk/plugin.h>

/* The handler's vtable; its layout comes with the instance API. */
static const struct hello_vtable {
    int version;
} hello_vt = {1};

static int hello_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    const char *greeting = host->get_string(self, "greeting");
    zl_registration_t reg = {
        .struct_size = sizeof(reg),
        .kind = ZL_PROVIDES_SERVER,
        .name = "hello-echo",
        .description = "echoes every byte back, politely",
        .vtable = &hello_vt,
    };

    host->log(self, ZL_LOG_INFO, "initialising (greeting: %s)",
              greeting ? greeting : "none");
    return host->register_provider(self, &reg);
}

ZLTK_PLUGIN_DEFINE(
    .name = "hello",
    .version = "1.0",
    .description = "Example third-party plugin built against the installed SDK",
    .init = hello_init,
)
