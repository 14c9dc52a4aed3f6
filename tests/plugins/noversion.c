/* zltk test plugin "noversion": no version string (mandatory): refused before init.
 * init and destroy trace (see good.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/plugin.h>

#include "trace.h"


static int noversion_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    trace("init noversion");
    return 0;
}

static void noversion_destroy(zl_plugin_t *self)
{
    trace("destroy noversion");
}

ZLTK_PLUGIN_DEFINE(
    .name = "noversion",
    .description = "lacks a version",
    .init = noversion_init,
    .destroy = noversion_destroy,
)
