/* zltk-host — where plugins are looked for. */
#include "config.h"

#include <glib.h>

#include <zltk/zltk.h>

#include "host-config.h"

/* Plugin search path: --plugin-dir (in order), the config's [host]
 * plugin-dir, $ZLTK_PLUGIN_PATH (colon-separated), then the installed
 * plugin directory, or instead $ZLTK_PLUGIN_SYSTEM_PATH when it is set
 * (empty: none; the build tree's tests set it so, so that an installed
 * zltk never mixes its plugins into theirs). */
char **zl_host_plugin_path(char **dirs, const char *config_dir)
{
    GPtrArray *first = g_ptr_array_new();
    char **path;

    for (size_t i = 0; dirs && dirs[i]; i++)
        g_ptr_array_add(first, dirs[i]);
    if (config_dir)
        g_ptr_array_add(first, (char *)config_dir);
    g_ptr_array_add(first, NULL);
    path = zl_plugins_search_path((const char *const *)first->pdata);
    g_ptr_array_free(first, TRUE);
    return path;
}
