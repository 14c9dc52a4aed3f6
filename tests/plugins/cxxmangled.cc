// zltk test plugin "cxxmangled": what a C++ plugin looked like when
// ZLTK_PLUGIN_DEFINE lacked extern "C": the entry is exported under its
// mangled name (_Z17zltk_plugin_entryv), so dlsym cannot find it.  The
// loader must say so rather than tell the author to use the macro.  Linked
// without the plugins' export list, which would hide the mangled name.
#include <zltk/plugin.h>

static int mangled_init(zl_plugin_t *self, const zl_host_api_t *host)
{
    (void)self, (void)host;
    return 0;
}

__attribute__((visibility("default"))) const zl_plugin_desc_t *
zltk_plugin_entry(void);
const zl_plugin_desc_t *zltk_plugin_entry(void)
{
    static const zl_plugin_desc_t desc = {
        .magic = ZLTK_PLUGIN_MAGIC,
        .abi_major = ZLTK_PLUGIN_ABI_MAJOR,
        .abi_minor = ZLTK_PLUGIN_ABI_MINOR,
        .struct_size = sizeof(zl_plugin_desc_t),
        .name = "cxxmangled",
        .version = "1.0",
        .init = mangled_init,
    };
    return &desc;
}
