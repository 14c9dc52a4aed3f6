/* zltk test plugin "norecv": registers a server handler without the
 * mandatory on_recv.  The host refuses the registration (-EINVAL); init
 * passes that on, so the plugin is skipped with its reason. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/plugin.h>

#include "trace.h"

static const zl_handler_t deaf = {
    .struct_size = sizeof(zl_handler_t),
};

static const zl_registration_t reg = {
    .struct_size = sizeof(zl_registration_t),
    .kind = ZL_PROVIDES_SERVER,
    .name = "norecv-echo",
    .vtable = &deaf,
};

static int norecv_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    int rc = host->register_provider(self, &reg);

    trace("init norecv register=%d", rc);
    return rc;
}

ZLTK_PLUGIN_DEFINE(
    .name = "norecv",
    .version = "1.0",
    .description = "a handler without on_recv",
    .init = norecv_init,
)
