/* zltk-host — where plugins are looked for. */
#include "config.h"

#include <string.h>
#include <sys/stat.h>

#include <glib.h>

#include <zltk/zltk.h>

#include "host-config.h"

/* Plugin search path: --plugin-dir (in order), the config's [host]
 * plugin-dir, $ZLTK_PLUGIN_PATH (colon-separated), then the installed
 * plugin directory, or instead $ZLTK_PLUGIN_SYSTEM_PATH when it is set
 * (empty: none; the build tree's tests set it so, so that an installed
 * zltk never mixes its plugins into theirs). */
/* Add dir unless the same directory (by device and inode, so that
 * "plugins/.libs" and its absolute path count once) is already there: a
 * directory searched twice would offer every plugin twice. */
static void path_add(GPtrArray *a, GArray *ids, const char *dir)
{
    struct stat st;

    if (stat(dir, &st) == 0) {
        for (guint i = 0; i < ids->len; i++) {
            const struct stat *o = &g_array_index(ids, struct stat, i);
            if (o->st_dev == st.st_dev && o->st_ino == st.st_ino)
                return;
        }
        g_array_append_val(ids, st);
    } else {
        for (guint i = 0; i < a->len; i++)
            if (!strcmp(a->pdata[i], dir))
                return;
    }
    g_ptr_array_add(a, g_strdup(dir));
}

/* Each directory of a colon-separated list (empty entries skipped). */
static void path_add_list(GPtrArray *a, GArray *ids, const char *list)
{
    char **parts = g_strsplit(list, ":", -1);

    for (size_t i = 0; parts[i]; i++)
        if (*parts[i])
            path_add(a, ids, parts[i]);
    g_strfreev(parts);
}

char **zl_host_plugin_path(char **dirs, const char *config_dir)
{
    GPtrArray *a = g_ptr_array_new();
    GArray *ids = g_array_new(FALSE, FALSE, sizeof(struct stat));
    const char *env = g_getenv("ZLTK_PLUGIN_PATH");
    const char *sys = g_getenv("ZLTK_PLUGIN_SYSTEM_PATH");

    for (size_t i = 0; dirs && dirs[i]; i++)
        path_add(a, ids, dirs[i]);
    if (config_dir)
        path_add(a, ids, config_dir);
    if (env)
        path_add_list(a, ids, env);
    if (sys)
        path_add_list(a, ids, sys);
    else
        path_add(a, ids, ZLTK_PLUGINDIR);
    g_array_free(ids, TRUE);
    g_ptr_array_add(a, NULL);
    return (char **)g_ptr_array_free(a, FALSE);
}
