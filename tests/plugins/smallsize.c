/* zltk test plugin "smallsize": a descriptor whose struct_size (and real
 * size) stops after version, short of the ABI 1.0 fields.  The loader must
 * refuse it without reading past the end (ASan builds would see that read:
 * the object really is this small). */
#include <stddef.h>

#include <zltk/plugin.h>

typedef struct {
    uint32_t magic;
    uint16_t abi_major, abi_minor;
    uint32_t struct_size;
    uint32_t flags;
    const char *name;
    const char *version;
} small_desc_t;

_Static_assert(offsetof(small_desc_t, version) ==
                   offsetof(zl_plugin_desc_t, version),
               "small_desc_t must match the prefix of zl_plugin_desc_t");
_Static_assert(sizeof(small_desc_t) < offsetof(zl_plugin_desc_t, reserved),
               "small_desc_t must be smaller than the ABI 1.0 descriptor");

static const small_desc_t desc = {
    .magic = ZLTK_PLUGIN_MAGIC,
    .abi_major = ZLTK_PLUGIN_ABI_MAJOR,
    .abi_minor = ZLTK_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(small_desc_t),
    .name = "smallsize",
    .version = "1.0",
};

__attribute__((visibility("default"))) const zl_plugin_desc_t *
zltk_plugin_entry(void);
const zl_plugin_desc_t *zltk_plugin_entry(void)
{
    return (const zl_plugin_desc_t *)(const void *)&desc;
}
