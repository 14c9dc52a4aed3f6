/* zltk test plugin "initfail": registers a client, then init fails with
 * -EIO.  The plugin is skipped (its registration with it) and destroy is
 * still called, once.  Both trace (see good.c). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/plugin.h>

#include "trace.h"


static const zl_registration_t client_reg = {
    .struct_size = sizeof(zl_registration_t),
    .kind = ZL_PROVIDES_CLIENT,
    .name = "initfail-client",
    .description = "never usable",
    .vtable = &test_handler,
};

static int initfail_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    int r = host->register_provider(self, &client_reg);

    trace("init initfail client=%d", r);
    host->log(self, ZL_LOG_WARNING, "failing on purpose");
    return -EIO;
}

static void initfail_destroy(zl_plugin_t *self)
{
    trace("destroy initfail");
}

ZLTK_PLUGIN_DEFINE(
    .name = "initfail",
    .version = "1.0",
    .description = "init fails with EIO",
    .init = initfail_init,
    .destroy = initfail_destroy,
)
