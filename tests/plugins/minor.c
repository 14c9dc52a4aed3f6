/* zltk test plugin "minor": built for a newer ABI minor than the host.
 * The descriptor is written by hand (not with ZLTK_PLUGIN_DEFINE) so that
 * its prefix can be wrong.  init and destroy trace (see good.c): the loader
 * must refuse the file before calling either. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/plugin.h>

#include "trace.h"


static int minor_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    trace("init minor");
    return 0;
}

static void minor_destroy(zl_plugin_t *self)
{
    trace("destroy minor");
}

__attribute__((visibility("default"))) const zl_plugin_desc_t *
zltk_plugin_entry(void);
const zl_plugin_desc_t *zltk_plugin_entry(void)
{
    static const zl_plugin_desc_t desc = {
        .magic = ZLTK_PLUGIN_MAGIC,
        .abi_major = ZLTK_PLUGIN_ABI_MAJOR,
        .abi_minor = ZLTK_PLUGIN_ABI_MINOR + 1,
        .struct_size = sizeof(zl_plugin_desc_t),
        .name = "minor",
        .version = "1.0",
        .description = "built for a newer ABI minor than the host",
        .init = minor_init,
        .destroy = minor_destroy,
    };
    return &desc;
}
