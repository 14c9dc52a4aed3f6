/* zltk — the plugin loader, for host programs (zltk-host and embedders).
 *
 * Plugins are opened with dlopen(RTLD_NOW | RTLD_LOCAL) and never closed.
 * Before any plugin code but the entry function runs, the loader checks, in
 * order: the file loads, it exports zltk_plugin_entry, the descriptor's
 * magic, the same ABI major, a minor not newer than the host's, a struct
 * size that covers the fields of that ABI, the mandatory fields (name,
 * version, init), and a name that is well formed and not taken.  Each
 * refusal is one line that names the file and says what to do; nothing a
 * file contains can crash the loader short of code that crashes in its own
 * entry or init function.
 *
 * Threading: a registry is used from one thread (the host's main thread).
 */
#ifndef ZLTK_LOADER_H
#define ZLTK_LOADER_H

#include <zltk/common.h>
#include <zltk/plugin.h>

ZL_BEGIN_DECLS

typedef struct zl_plugin_registry zl_plugin_registry_t;

/* Settings lookup for [plugin.NAME] groups, supplied by the host: return
 * the raw string value of key for plugin name, or NULL.  source names the
 * configuration (e.g. the file) in messages.  May be NULL: no settings. */
typedef const char *(*zl_plugin_setting_fn)(void *ctx, const char *plugin,
                                            const char *key);

/* New empty registry.  Returns 0 or -ENOMEM.  Caller owns it. */
ZL_API int zl_plugins_new(zl_plugin_registry_t **out);

/* Give plugins access to their settings (see zl_host_api_t.get_*). */
ZL_API void zl_plugins_set_settings(zl_plugin_registry_t *reg,
                                    zl_plugin_setting_fn fn, void *ctx,
                                    const char *source);

/* Load one file and run its init.  Returns 0, or a negative errno with
 * *error (if not NULL) set to a one-line message the caller frees with
 * free(): -ENOEXEC not a loadable shared object, -ENOENT no entry symbol or
 * no such file, -EPROTO wrong magic or ABI, -EINVAL mandatory field missing
 * or malformed name, -EEXIST name or provider taken, or init's own error.
 * A plugin refused before init leaves nothing behind but its mapping. */
ZL_API int zl_plugins_load_file(zl_plugin_registry_t *reg, const char *path,
                                char **error);

/* Find NAME.so in dirs (NULL-terminated, searched in order) and load it.
 * -ENOENT with a message listing the directories searched when absent. */
ZL_API int zl_plugins_load(zl_plugin_registry_t *reg, const char *name,
                           const char *const *dirs, char **error);

/* Load every *.so in dir (sorted by name); each failure is reported through
 * report(path, message, ctx) and the rest still load.  Returns the number
 * loaded, or -errno if dir cannot be read. */
ZL_API int zl_plugins_load_dir(zl_plugin_registry_t *reg, const char *dir,
                               void (*report)(const char *path,
                                              const char *message, void *ctx),
                               void *ctx);

/* Loaded plugins, in load order.  Valid while the registry lives. */
ZL_API size_t zl_plugins_count(const zl_plugin_registry_t *reg);
ZL_API zl_plugin_t *zl_plugins_at(const zl_plugin_registry_t *reg, size_t i);
ZL_API zl_plugin_t *zl_plugins_find(const zl_plugin_registry_t *reg,
                                    const char *name);

/* A provider registered under name for kind (one ZL_PROVIDES_* bit), or
 * NULL.  *owner (if not NULL) receives the plugin that registered it. */
ZL_API const zl_registration_t *
zl_plugins_find_provider(const zl_plugin_registry_t *reg, zl_provides_t kind,
                         const char *name, zl_plugin_t **owner);

/* About one plugin. */
ZL_API const zl_plugin_desc_t *zl_plugin_get_desc(const zl_plugin_t *p);
ZL_API const char *zl_plugin_get_path(const zl_plugin_t *p);
ZL_API size_t zl_plugin_registrations(const zl_plugin_t *p,
                                      const zl_registration_t **out);

/* Call start of every loaded plugin not yet started, in load order.  A
 * plugin whose start fails is logged and offers no handlers any more.
 * Returns the number of failures. */
ZL_API int zl_plugins_start(zl_plugin_registry_t *reg);

/* Call stop of every started plugin in reverse load order, waiting for each
 * one's completion (there is no time limit: a plugin must call done).
 * Stop instances first.  Idempotent. */
ZL_API void zl_plugins_stop(zl_plugin_registry_t *reg);

/* Stop (if needed), call every plugin's destroy (reverse load order) and
 * free the registry.  The shared objects stay mapped. */
ZL_API void zl_plugins_free(zl_plugin_registry_t *reg);

/* The host API handed to plugins (for tests that drive a plugin by hand). */
ZL_API const zl_host_api_t *zl_plugins_host_api(void);

ZL_END_DECLS

#endif
