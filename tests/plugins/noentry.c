/* zltk test plugin "noentry": a valid shared object without
 * zltk_plugin_entry.  It exports a misspelt entry instead (and so is linked
 * without the plugins' export list, which would be empty here). */
#include <zltk/plugin.h>

__attribute__((visibility("default"))) const zl_plugin_desc_t *
zltk_plugin_entry_v0(void);
const zl_plugin_desc_t *zltk_plugin_entry_v0(void)
{
    return NULL;
}
