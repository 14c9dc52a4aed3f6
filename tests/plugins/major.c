/* zltk test plugin "major": built for the next ABI major.
 * The descriptor is written by hand (not with ZLTK_PLUGIN_DEFINE) so that
 * its prefix can be wrong.  init and destroy trace (see good.c): the loader
 * must refuse the file before calling either. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/plugin.h>

#include "trace.h"


static int major_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    trace("init major");
    return 0;
}

static void major_destroy(zl_plugin_t *self)
{
    trace("destroy major");
}

__attribute__((visibility("default"))) const zl_plugin_desc_t *
zltk_plugin_entry(void);
const zl_plugin_desc_t *zltk_plugin_entry(void)
{
    static const zl_plugin_desc_t desc = {
        .magic = ZLTK_PLUGIN_MAGIC,
        .abi_major = ZLTK_PLUGIN_ABI_MAJOR + 1,
        .abi_minor = ZLTK_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(zl_plugin_desc_t),
        .name = "major",
        .version = "1.0",
        .description = "built for the next ABI major",
        .init = major_init,
        .destroy = major_destroy,
    };
    return &desc;
}
