/* zltk — the plugin loader, for host programs (zltk-host and embedders).
 *
 * Plugins are opened with dlopen(RTLD_NOW | RTLD_LOCAL) and never closed.
 * Before dlopen() the loader reads the file's ELF headers (with read, never
 * mmap): an ELF shared object of this host's class, byte order and machine
 * whose program headers, segments and section header table all lie inside
 * the file; a truncated file is refused instead of killing the process
 * with SIGBUS inside dlopen().  With a probe set (zl_plugins_set_probe), the
 * file is then loaded once in a child process, so that constructors that
 * abort, crash, exit or hang take the child down and are refused by name.
 * Before any plugin code but the constructors and the entry function runs,
 * the loader checks, in order: the file loads, it exports zltk_plugin_entry
 * (when it does not, the message names a near miss such as a C++-mangled
 * entry), the descriptor's magic, the same ABI major, a minor not newer
 * than the host's, a struct size that covers the fields of that ABI, the
 * mandatory fields (name, version, init), and a name that is well formed
 * and not taken.  Each refusal is one line that names the file and says
 * what to do.
 *
 * Code of the plugin that crashes in the host process itself (no probe, or
 * a crash the probe did not meet) still ends the process, but not
 * silently: "loading plugin FILE" is logged at info level and flushed
 * before dlopen(), and while the file's constructors, entry and init run,
 * the loader holds handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT
 * and an atexit() hook that write one line naming the file to stderr; each
 * handler then restores the one that was there before (the default action,
 * a sanitizer's) and raises the signal again.
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

/* Probe every file in a child process before loading it: argv (program
 * and leading arguments, copied; NULL: stop probing) is run with the file's
 * path appended, standard input and output on /dev/null, standard error on
 * a pipe (its last line is quoted in a refusal) and fd 3 on a status pipe.
 * The program must call zl_plugins_probe_child(path, 3) (zltk-host does so
 * for its hidden option --probe-plugin FILE).  A child that does not
 * report success within timeout_ms (0: 10000) is killed and the file
 * refused with -ENOEXEC and a message naming the signal, the exit() or the
 * time-out and where it happened; a probe that cannot be started refuses
 * it with that -errno.  The child is a new program (posix_spawn,
 * then exec), never a fork of this process: the caller may have threads.
 * Costs one process start per file: meant for checks (--list-plugins,
 * --check-config), not every start.  The registry's thread; loads wait
 * for their probe there.  Returns 0, -EINVAL or -ENOMEM. */
ZL_API int zl_plugins_set_probe(zl_plugin_registry_t *reg,
                                const char *const *argv, unsigned timeout_ms);

/* The probe's child side: dlopen path, call its entry, report each step on
 * status_fd (-1: 3) and end the process with _exit(0), so that no
 * destructor of the plugin runs either.  Returns (2) only when path is
 * NULL.  Call it in a fresh process with no other work to do. */
ZL_API int zl_plugins_probe_child(const char *path, int status_fd);

/* Load one file and run its init.  Returns 0, or a negative errno with
 * *error (if not NULL) set to a one-line message the caller frees with
 * free(): -ENOEXEC not a loadable shared object (not ELF, truncated,
 * another machine, dlopen failed, or it crashed, exited or hung in the
 * probe), -ENOENT no entry symbol or no such file, -EPROTO wrong magic or
 * ABI, -EINVAL mandatory field missing or malformed name, -EEXIST name or
 * provider taken, or init's own error.  A plugin refused before init
 * leaves nothing behind but its mapping (none if refused before dlopen). */
ZL_API int zl_plugins_load_file(zl_plugin_registry_t *reg, const char *path,
                                char **error);

/* Find NAME.so in dirs (NULL-terminated, searched in order) and load the
 * first one found; a refusal there is the answer (a later NAME.so is not
 * tried).  -ENOENT with a message listing the directories searched when
 * absent. */
ZL_API int zl_plugins_load(zl_plugin_registry_t *reg, const char *name,
                           const char *const *dirs, char **error);

/* Load every *.so in dir (sorted by name); each failure is reported through
 * report(path, message, ctx) and the rest still load.  Returns the number
 * loaded, or -errno if dir cannot be read. */
ZL_API int zl_plugins_load_dir(zl_plugin_registry_t *reg, const char *dir,
                               void (*report)(const char *path,
                                              const char *message, void *ctx),
                               void *ctx);

/* The plugin search path, as zltk-host and zl_instance_open() use it: the
 * directories of first (NULL-terminated, may be NULL) in order, then each
 * directory of $ZLTK_PLUGIN_PATH (colon-separated), then the installed
 * plugin directory — or, when $ZLTK_PLUGIN_SYSTEM_PATH is set, its
 * directories instead of it (empty: none).  A directory named twice (the
 * same device and inode) is kept once.  Returns a NULL-terminated list the
 * caller frees with g_strfreev().  Any thread (it reads the environment:
 * not concurrently with setenv()). */
ZL_API char **zl_plugins_search_path(const char *const *first);

/* What zl_plugins_load_path() reports about a file it does not load. */
typedef enum {
    ZL_PLUGIN_REFUSED = 1, /* it failed to load: message says why */
    ZL_PLUGIN_SHADOWED     /* same file name in an earlier directory: a note */
} zl_plugin_report_t;
typedef void (*zl_plugin_report_fn)(const char *path, zl_plugin_report_t what,
                                    const char *message, void *ctx);

/* Load every *.so of every directory of dirs (NULL-terminated; directories
 * that cannot be read are skipped), in path order and by name within a
 * directory.  A file name already found in an earlier directory is not
 * opened: the earlier one takes precedence, as zl_plugins_load() would
 * pick it, and the later one is reported as ZL_PLUGIN_SHADOWED.  Each
 * other failure is reported as ZL_PLUGIN_REFUSED and the rest still load.
 * report runs on the calling thread; path and message (one line naming the
 * file) are the loader's, valid during the call.  Returns the number
 * loaded. */
ZL_API int zl_plugins_load_path(zl_plugin_registry_t *reg,
                                const char *const *dirs,
                                zl_plugin_report_fn report, void *ctx);

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
