/* zltk test plugin "badmagic": wrong magic number.
 * The descriptor is written by hand (not with ZLTK_PLUGIN_DEFINE) so that
 * its prefix can be wrong.  init and destroy trace (see good.c): the loader
 * must refuse the file before calling either. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <zltk/plugin.h>

#include "trace.h"


static int badmagic_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    trace("init badmagic");
    return 0;
}

static void badmagic_destroy(zl_plugin_t *self)
{
    trace("destroy badmagic");
}

__attribute__((visibility("default"))) const zl_plugin_desc_t *
zltk_plugin_entry(void);
const zl_plugin_desc_t *zltk_plugin_entry(void)
{
    static const zl_plugin_desc_t desc = {
        .magic = 0x464c457fu,
        .abi_major = ZLTK_PLUGIN_ABI_MAJOR,
        .abi_minor = ZLTK_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(zl_plugin_desc_t),
        .name = "badmagic",
        .version = "1.0",
        .description = "wrong magic number",
        .init = badmagic_init,
        .destroy = badmagic_destroy,
    };
    return &desc;
}
