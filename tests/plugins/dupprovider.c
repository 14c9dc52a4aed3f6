/* zltk test plugin "dupprov": registers client "dupprov-client", then
 * server "good-echo", which is taken when good is loaded: that registration
 * fails with -EEXIST and init returns it, so the plugin is skipped (with its
 * client).  init and destroy trace (see good.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/plugin.h>

#include "trace.h"


static const zl_registration_t client_reg = {
    .struct_size = sizeof(zl_registration_t),
    .kind = ZL_PROVIDES_CLIENT,
    .name = "dupprov-client",
    .description = "dupprov client (test)",
    .vtable = &test_handler,
};
static const zl_registration_t server_reg = {
    .struct_size = sizeof(zl_registration_t),
    .kind = ZL_PROVIDES_SERVER,
    .name = "good-echo",
    .description = "dupprov's clash with good-echo",
    .vtable = &test_handler,
};

static int dupprov_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    int r_client = host->register_provider(self, &client_reg);
    int r_server = host->register_provider(self, &server_reg);

    trace("init dupprov client=%d server=%d", r_client, r_server);
    if (r_server)
        host->log(self, ZL_LOG_WARNING, "server good-echo: error %d", r_server);
    return r_client ? r_client : r_server;
}

static void dupprov_destroy(zl_plugin_t *self)
{
    trace("destroy dupprov");
}

ZLTK_PLUGIN_DEFINE(
    .name = "dupprov",
    .version = "1.0",
    .description = "registers a provider name that good already has",
    .init = dupprov_init,
    .destroy = dupprov_destroy,
)
