/* zltk test plugin "dupname": takes the name "good" again, so it is refused
 * before init when good is loaded.  Registers nothing, so it may stand in
 * for good.
 * init and destroy trace (see good.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/plugin.h>

#include "trace.h"


static int dupname_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    trace("init dupname");
    return 0;
}

static void dupname_destroy(zl_plugin_t *self)
{
    trace("destroy dupname");
}

ZLTK_PLUGIN_DEFINE(
    .name = "good",
    .version = "0.9",
    .description = "a second plugin named good",
    .init = dupname_init,
    .destroy = dupname_destroy,
)
