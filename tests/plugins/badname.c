/* zltk test plugin "badname": a malformed name: refused before init.
 * init and destroy trace (see good.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/plugin.h>

#include "trace.h"


static int badname_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    trace("init badname");
    return 0;
}

static void badname_destroy(zl_plugin_t *self)
{
    trace("destroy badname");
}

ZLTK_PLUGIN_DEFINE(
    .name = "Bad Name!",
    .version = "1.0",
    .description = "malformed name",
    .init = badname_init,
    .destroy = badname_destroy,
)
