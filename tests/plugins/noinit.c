/* zltk test plugin "noinit": no init (mandatory): refused before any call.
 * destroy traces (see good.c) and must never run. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/plugin.h>

#include "trace.h"


static void noinit_destroy(zl_plugin_t *self)
{
    trace("destroy noinit");
}

ZLTK_PLUGIN_DEFINE(
    .name = "noinit",
    .version = "1.0",
    .description = "lacks init",
    .destroy = noinit_destroy,
)
