/* zltk — plugin loader: finding, checking, dlopen, registrations.
 *
 * Every refusal is one line that names the file and says what to do next
 * (collectd's ldd hint, nginx's "module ... version ... instead of ...").
 * Plugins are never dlclose()d: nothing may call into unmapped code.
 */
#define G_LOG_DOMAIN "zltk-plugin"
#include "plugin-internal.h"

#include <dirent.h>
#include <pthread.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* Size of the descriptor as ABI 1.0 defines it: everything up to the
 * reserved tail.  A larger struct_size (a newer minor) is fine. */
#define DESC_SIZE_1_0 offsetof(zl_plugin_desc_t, reserved)
#define DESC_PREFIX_SIZE offsetof(zl_plugin_desc_t, name)

struct zl_plugin {
    zl_plugin_registry_t *reg;
    const zl_plugin_desc_t *desc;
    char *path;
    void *handle;
    zl_registration_t *regs;
    size_t nregs;
    bool in_init;
    bool inited;
    bool started;
    atomic_bool stopped; /* set by the stop completion, any thread */
};

struct zl_plugin_registry {
    zl_plugin_t **plugins;
    size_t n, cap;
    zl_plugin_setting_fn setting;
    void *setting_ctx;
    char *source;
    char **probe_argv; /* NULL: no probe process */
    unsigned probe_timeout_ms;
    pthread_mutex_t mu; /* with cv: stop completions */
    pthread_cond_t cv;
};

/* ------------------------------------------------------------ messages */

static int fail(char **error, int rc, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static int fail(char **error, int rc, const char *fmt, ...)
{
    va_list ap;

    if (error) {
        char *msg = NULL;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
            msg = NULL;
        va_end(ap);
        *error = msg;
    }
    return rc;
}

/* -------------------------------------------- the host API's entries */

/* What is wrong with a registration's vtable, or NULL. */
static const char *vtable_problem(const zl_registration_t *r)
{
    if (r->kind == ZL_PROVIDES_LAYER) {
        const zl_layer_t *l = r->vtable;

        return !l ? "has no vtable (a zl_layer_t)"
               : l->struct_size < ZL_LAYER_SIZE_1_0
                   ? "has a zl_layer_t with a bad struct_size "
                     "(set it to sizeof(zl_layer_t))"
               : !l->on_connect || !l->on_recv || !l->send
                   ? "lacks a mandatory callback (on_connect, "
                     "on_recv and send)"
                   : NULL;
    } else {
        const zl_handler_t *h = r->vtable;

        return !h ? "has no vtable (a zl_handler_t)"
               : h->struct_size < ZL_HANDLER_SIZE_1_0
                   ? "has a zl_handler_t with a bad struct_size "
                     "(set it to sizeof(zl_handler_t))"
               : !h->on_recv ? "lacks the mandatory on_recv callback"
                             : NULL;
    }
}

/* register_provider (host-api.c): only inside init. */
int zl__plugin_register(zl_plugin_t *self, const zl_registration_t *r)
{
    zl_registration_t *nr;
    const char *why;
    unsigned kind;

    if (!self || !r)
        return -EINVAL;
    if (!self->in_init) {
        g_warning("plugin %s: register_provider called outside init",
                  self->desc->name);
        return -EPERM;
    }
    kind = (unsigned)r->kind;
    if (r->struct_size < offsetof(zl_registration_t, reserved) ||
        !r->name || !*r->name || !kind || (kind & (kind - 1)) ||
        kind > ZL_PROVIDES_LAYER) {
        g_warning("plugin %s: malformed registration (need struct_size, one "
                  "kind and a name)",
                  self->desc->name);
        return -EINVAL;
    }
    if ((why = vtable_problem(r)) && kind == ZL_PROVIDES_LAYER) {
        g_warning("plugin %s: layer '%s' %s: fix the plugin",
                  self->desc->name, r->name, why);
        return -EINVAL;
    }
    if (why) {
        g_warning("plugin %s: %s handler '%s' %s: fix the plugin",
                  self->desc->name,
                  kind == ZL_PROVIDES_CLIENT ? "client" : "server", r->name,
                  why);
        return -EINVAL;
    }
    if (zl_plugins_find_provider(self->reg, r->kind, r->name, NULL)) {
        g_warning("plugin %s: a %s named '%s' is already registered",
                  self->desc->name,
                  r->kind == ZL_PROVIDES_CLIENT   ? "client handler"
                  : r->kind == ZL_PROVIDES_SERVER ? "server handler"
                                                  : "layer",
                  r->name);
        return -EEXIST;
    }
    nr = realloc(self->regs, (self->nregs + 1) * sizeof(*nr));
    if (!nr)
        return -ENOMEM;
    self->regs = nr;
    memset(&nr[self->nregs], 0, sizeof(*nr));
    memcpy(&nr[self->nregs], r,
           r->struct_size < sizeof(*nr) ? r->struct_size : sizeof(*nr));
    nr[self->nregs].struct_size = sizeof(*nr);
    self->nregs++;
    return 0;
}

const char *zl__plugin_setting(zl_plugin_t *self, const char *key)
{
    zl_plugin_registry_t *reg = self->reg;

    if (!reg->setting || !key)
        return NULL;
    return reg->setting(reg->setting_ctx, self->desc->name, key);
}

const char *zl__plugin_source(const zl_plugin_t *self)
{
    return self->reg->source ? self->reg->source : "configuration";
}

/* ------------------------------------------------------------ registry */

int zl_plugins_new(zl_plugin_registry_t **out)
{
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return -ENOMEM;
    pthread_mutex_init(&(*out)->mu, NULL);
    pthread_cond_init(&(*out)->cv, NULL);
    return 0;
}

int zl_plugins_start(zl_plugin_registry_t *reg)
{
    int failed = 0;

    for (size_t i = 0; i < reg->n; i++) {
        zl_plugin_t *p = reg->plugins[i];
        int rc;

        if (p->started)
            continue;
        rc = p->desc->start ? p->desc->start(p) : 0;
        if (rc) {
            g_warning("plugin %s: start failed: %s; it is skipped",
                      p->desc->name, zl_strerror(rc < 0 ? rc : -EIO));
            p->nregs = 0; /* its handlers are no longer offered */
            failed++;
            continue;
        }
        p->started = true;
    }
    return failed;
}

static void stop_done(zl_plugin_t *p)
{
    zl_plugin_registry_t *reg = p->reg;

    pthread_mutex_lock(&reg->mu);
    atomic_store(&p->stopped, true);
    pthread_cond_broadcast(&reg->cv);
    pthread_mutex_unlock(&reg->mu);
}

void zl_plugins_stop(zl_plugin_registry_t *reg)
{
    for (size_t i = reg->n; i-- > 0;) {
        zl_plugin_t *p = reg->plugins[i];

        if (!p->started)
            continue;
        p->started = false;
        if (!p->desc->stop)
            continue;
        atomic_store(&p->stopped, false);
        p->desc->stop(p, stop_done);
        pthread_mutex_lock(&reg->mu);
        while (!atomic_load(&p->stopped))
            pthread_cond_wait(&reg->cv, &reg->mu);
        pthread_mutex_unlock(&reg->mu);
    }
}

void zl_plugins_set_settings(zl_plugin_registry_t *reg,
                             zl_plugin_setting_fn fn, void *ctx,
                             const char *source)
{
    reg->setting = fn;
    reg->setting_ctx = ctx;
    free(reg->source);
    reg->source = source ? strdup(source) : NULL;
}

int zl_plugins_set_probe(zl_plugin_registry_t *reg, const char *const *argv,
                         unsigned timeout_ms)
{
    char **copy = NULL;

    if (argv && (!argv[0] || !*argv[0]))
        return -EINVAL;
    if (argv && !(copy = g_strdupv((char **)argv)))
        return -ENOMEM;
    g_strfreev(reg->probe_argv);
    reg->probe_argv = copy;
    reg->probe_timeout_ms = timeout_ms ? timeout_ms : 10000;
    return 0;
}

static void plugin_free(zl_plugin_t *p)
{
    if (p->inited && p->desc->destroy)
        p->desc->destroy(p);
    free(p->regs);
    free(p->path);
    free(p);
}

void zl_plugins_free(zl_plugin_registry_t *reg)
{
    if (!reg)
        return;
    zl_plugins_stop(reg);
    for (size_t i = reg->n; i-- > 0;)
        plugin_free(reg->plugins[i]);
    free(reg->plugins);
    free(reg->source);
    g_strfreev(reg->probe_argv);
    pthread_cond_destroy(&reg->cv);
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

size_t zl_plugins_count(const zl_plugin_registry_t *reg)
{
    return reg->n;
}

zl_plugin_t *zl_plugins_at(const zl_plugin_registry_t *reg, size_t i)
{
    return i < reg->n ? reg->plugins[i] : NULL;
}

zl_plugin_t *zl_plugins_find(const zl_plugin_registry_t *reg, const char *name)
{
    for (size_t i = 0; i < reg->n; i++)
        if (!strcmp(reg->plugins[i]->desc->name, name))
            return reg->plugins[i];
    return NULL;
}

const zl_registration_t *zl_plugins_find_provider(
    const zl_plugin_registry_t *reg, zl_provides_t kind, const char *name,
    zl_plugin_t **owner)
{
    /* Includes the plugin being initialised (it is in the list already). */
    for (size_t i = 0; i < reg->n; i++) {
        zl_plugin_t *p = reg->plugins[i];
        for (size_t j = 0; j < p->nregs; j++)
            if (p->regs[j].kind == kind && !strcmp(p->regs[j].name, name)) {
                if (owner)
                    *owner = p;
                return &p->regs[j];
            }
    }
    return NULL;
}

const zl_plugin_desc_t *zl_plugin_get_desc(const zl_plugin_t *p)
{
    return p->desc;
}

const char *zl_plugin_get_path(const zl_plugin_t *p)
{
    return p->path;
}

size_t zl_plugin_registrations(const zl_plugin_t *p,
                               const zl_registration_t **out)
{
    if (out)
        *out = p->regs;
    return p->nregs;
}

/* ------------------------------------------------------------ crash note */

/* While a file's constructors, entry and init run, a fatal signal or an
 * exit() on the loading thread first writes one line naming the file to
 * stderr, synchronously (the log thread would never get to write it), then
 * goes on as it would have: the handlers that were there before are put
 * back and the signal raised again.  Only one load at a time arms the
 * handlers (another thread's load just goes without the note). */
static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

static struct {
    atomic_bool armed;
    struct sigaction old[ZL__ARRAY_SIZE(fatal_signals)];
} guard;

static __thread const char *loading_path; /* this thread's file, or NULL */
static __thread const char *loading_prg;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

/* Async-signal-safe: memcpy and write only. */
static void note_write(const char *what)
{
    const char *parts[] = {loading_prg, ": ", what, " while loading plugin ",
                           loading_path,
                           " (its constructors, entry or init): fix it or "
                           "take it off the plugin path\n"};
    char buf[4096];
    size_t len = 0;

    for (size_t i = 0; i < ZL__ARRAY_SIZE(parts); i++) {
        size_t n = strlen(parts[i]);
        if (n > sizeof(buf) - 1 - len)
            n = sizeof(buf) - 1 - len;
        memcpy(buf + len, parts[i], n);
        len += n;
    }
    if (len && buf[len - 1] != '\n')
        buf[len++] = '\n';
    while (len) {
        ssize_t w = write(STDERR_FILENO, buf, len);
        if (w <= 0 && errno != EINTR)
            break;
        if (w > 0)
            len -= (size_t)w;
    }
}

static void guard_handler(int sig)
{
    static const char *const names[] = {"SIGSEGV", "SIGBUS", "SIGILL",
                                        "SIGFPE", "SIGABRT"};
    int saved = errno;

    for (size_t i = 0; i < ZL__ARRAY_SIZE(fatal_signals); i++) {
        if (fatal_signals[i] != sig)
            continue;
        if (loading_path)
            note_write(names[i]);
        /* Whoever handled it before (a sanitizer, the default action)
         * handles it now: a fault faults again when this returns, a raised
         * signal is pending. */
        sigaction(sig, &guard.old[i], NULL);
        raise(sig);
    }
    errno = saved;
}

static void guard_atexit(void)
{
    if (loading_path)
        note_write("exit() called");
}

static void guard_register(void)
{
    atexit(guard_atexit);
}

/* Returns whether this call armed the handlers (then disarm them). */
static bool guard_arm(const char *path)
{
    struct sigaction sa;

    pthread_once(&guard_once, guard_register);
    loading_prg = g_get_prgname() ? g_get_prgname() : "zltk";
    loading_path = path;
    if (atomic_exchange(&guard.armed, true))
        return false;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = guard_handler;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < ZL__ARRAY_SIZE(fatal_signals); i++)
        sigaction(fatal_signals[i], &sa, &guard.old[i]);
    return true;
}

static void guard_disarm(bool armed)
{
    loading_path = NULL;
    if (!armed)
        return;
    for (size_t i = 0; i < ZL__ARRAY_SIZE(fatal_signals); i++)
        sigaction(fatal_signals[i], &guard.old[i], NULL);
    atomic_store(&guard.armed, false);
}

/* ------------------------------------------------------------ loading */

static bool name_ok(const char *n)
{
    if (!*n || strlen(n) > 64)
        return false;
    for (; *n; n++)
        if (!g_ascii_islower(*n) && !g_ascii_isdigit(*n) && *n != '-' &&
            *n != '_')
            return false;
    return true;
}

/* Check the descriptor before running any plugin code but the entry. */
static int check_desc(const zl_plugin_registry_t *reg, const char *path,
                      const zl_plugin_desc_t *d, char **error)
{
    if (!d)
        return fail(error, -EPROTO,
                    "%s: zltk_plugin_entry returned no descriptor; define it "
                    "with ZLTK_PLUGIN_DEFINE",
                    path);
    if (d->magic != ZLTK_PLUGIN_MAGIC)
        return fail(error, -EPROTO,
                    "%s: not a zltk plugin descriptor (magic 0x%08x, expected "
                    "0x%08x); rebuild it with ZLTK_PLUGIN_DEFINE from "
                    "<zltk/plugin.h>",
                    path, d->magic, ZLTK_PLUGIN_MAGIC);
    if (d->abi_major != ZLTK_PLUGIN_ABI_MAJOR)
        return fail(error, -EPROTO,
                    "%s: built for plugin ABI %u.%u, but this host speaks ABI "
                    "%d.%d; rebuild the plugin against zltk %s (pkg-config "
                    "--modversion zltk)",
                    path, d->abi_major, d->abi_minor, ZLTK_PLUGIN_ABI_MAJOR,
                    ZLTK_PLUGIN_ABI_MINOR, ZLTK_VERSION);
    if (d->abi_minor > ZLTK_PLUGIN_ABI_MINOR)
        return fail(error, -EPROTO,
                    "%s: built for plugin ABI %u.%u, newer than this host's "
                    "%d.%d; upgrade zltk (this is %s) or rebuild the plugin "
                    "against it",
                    path, d->abi_major, d->abi_minor, ZLTK_PLUGIN_ABI_MAJOR,
                    ZLTK_PLUGIN_ABI_MINOR, ZLTK_VERSION);
    if (d->struct_size < DESC_SIZE_1_0)
        return fail(error, -EPROTO,
                    "%s: descriptor is %u bytes, smaller than ABI %u.%u's %zu; "
                    "the plugin was not built with ZLTK_PLUGIN_DEFINE from "
                    "matching headers: rebuild it",
                    path, d->struct_size, d->abi_major, d->abi_minor,
                    (size_t)DESC_SIZE_1_0);
    if (!d->name || !d->version || !d->init)
        return fail(error, -EINVAL,
                    "%s: descriptor lacks mandatory field(s):%s%s%s; set name, "
                    "version and init in ZLTK_PLUGIN_DEFINE",
                    path, !d->name ? " name" : "",
                    !d->version ? " version" : "", !d->init ? " init" : "");
    if (!name_ok(d->name))
        return fail(error, -EINVAL,
                    "%s: plugin name '%s' is not valid; use 1-64 characters "
                    "from a-z, 0-9, '-' and '_'",
                    path, d->name);
    if (zl_plugins_find(reg, d->name))
        return fail(error, -EEXIST,
                    "%s: a plugin named '%s' is already loaded from %s; "
                    "remove one of them from the plugin path",
                    path, d->name, zl_plugins_find(reg, d->name)->path);
    return 0;
}

/* No entry symbol: say what the file exports instead, when something
 * close is there (nm -D would show it): a C++-mangled entry is a plugin
 * built as C++ without extern "C". */
static int no_entry(const char *path, char **error)
{
    char *sym = zl__plugin_file_similar_symbol(path, ZLTK_PLUGIN_ENTRY_SYMBOL);
    int rc;

    if (sym && !strncmp(sym, "_Z", 2))
        rc = fail(error, -ENOENT,
                  "%s: no symbol %s, but a C++-mangled %s: the plugin was "
                  "built as C++ without extern \"C\"; rebuild it with the "
                  "ZLTK_PLUGIN_DEFINE of zltk %s or later (it declares the "
                  "entry extern \"C\"), or declare zltk_plugin_entry "
                  "extern \"C\" yourself",
                  path, ZLTK_PLUGIN_ENTRY_SYMBOL, sym, ZLTK_VERSION);
    else if (sym)
        rc = fail(error, -ENOENT,
                  "%s: no symbol %s (it exports %s instead); a zltk plugin "
                  "must define it with ZLTK_PLUGIN_DEFINE and export it",
                  path, ZLTK_PLUGIN_ENTRY_SYMBOL, sym);
    else
        rc = fail(error, -ENOENT,
                  "%s: no symbol %s; a zltk plugin must define it with "
                  "ZLTK_PLUGIN_DEFINE and export it",
                  path, ZLTK_PLUGIN_ENTRY_SYMBOL);
    free(sym);
    return rc;
}

/* Map the file and find its entry.  *h and *entry on success.  The file
 * was checked: its constructors are the first plugin code to run. */
static int open_plugin(const char *path, void **h, zl_plugin_entry_fn *entry,
                       char **error)
{
    /* RTLD_LOCAL: one plugin's symbols never satisfy or clash with
     * another's.  RTLD_NOW: a missing symbol fails here, not mid-run.  A
     * name without '/' would make dlopen search the library path and open
     * some other file than the one checked: anchor it. */
    char *anchored = strchr(path, '/') ? NULL : g_strconcat("./", path, NULL);

    *h = dlopen(anchored ? anchored : path, RTLD_NOW | RTLD_LOCAL);
    g_free(anchored);
    if (!*h) {
        const char *why = dlerror();
        return fail(error, -ENOEXEC,
                    "%s: cannot be loaded as a shared object (%s); is it a "
                    "zltk plugin built for this system? 'ldd %s' lists "
                    "missing libraries",
                    path, why ? why : "unknown error", path);
    }
    dlerror();
    *entry = (zl_plugin_entry_fn)(uintptr_t)dlsym(*h, ZLTK_PLUGIN_ENTRY_SYMBOL);
    /* Never dlclose: a constructor may already have started threads. */
    return *entry ? 0 : no_entry(path, error);
}

/* Record d (checked) in reg and run its init. */
static int add_plugin(zl_plugin_registry_t *reg, const char *path, void *h,
                      const zl_plugin_desc_t *d, char **error)
{
    zl_plugin_t *p, **np;
    int rc;

    p = calloc(1, sizeof(*p));
    if (!p || !(p->path = strdup(path))) {
        free(p);
        return fail(error, -ENOMEM, "%s: out of memory", path);
    }
    if (reg->n == reg->cap) {
        size_t ncap = reg->cap ? reg->cap * 2 : 8;
        np = realloc(reg->plugins, ncap * sizeof(*np));
        if (!np) {
            free(p->path);
            free(p);
            return fail(error, -ENOMEM, "%s: out of memory", path);
        }
        reg->plugins = np;
        reg->cap = ncap;
    }
    p->reg = reg;
    p->desc = d;
    p->handle = h;
    reg->plugins[reg->n++] = p; /* visible to duplicate-provider checks */

    p->in_init = true;
    rc = d->init(p, zl_plugins_host_api());
    p->in_init = false;
    p->inited = true;
    if (rc != 0) {
        if (rc > 0)
            rc = -rc;
        reg->n--;
        fail(error, rc < 0 ? rc : -EIO,
             "%s: plugin '%s' failed to initialise: %s; it is skipped", path,
             d->name, zl_strerror(rc));
        plugin_free(p); /* destroy: init may have allocated before failing */
        return rc < 0 ? rc : -EIO;
    }
    g_debug("loaded plugin %s %s from %s (%zu provider%s)", d->name,
            d->version, path, p->nregs, p->nregs == 1 ? "" : "s");
    return 0;
}

int zl_plugins_load_file(zl_plugin_registry_t *reg, const char *path,
                         char **error)
{
    zl_plugin_entry_fn entry;
    const zl_plugin_desc_t *d;
    struct stat st;
    bool armed;
    void *h;
    int rc;

    if (error)
        *error = NULL;
    if (stat(path, &st) < 0)
        return fail(error, -ENOENT, "%s: %s", path, zl_strerror(-errno));
    if (!S_ISREG(st.st_mode))
        return fail(error, -ENOEXEC, "%s: not a regular file", path);
    /* dlopen() would mmap what the headers claim and die of SIGBUS on a
     * truncated file: check them first, reading, never mapping. */
    if ((rc = zl__plugin_file_check(path, error)) < 0)
        return rc;
    if (reg->probe_argv &&
        (rc = zl__plugin_probe((const char *const *)reg->probe_argv,
                               reg->probe_timeout_ms, path, error)) < 0)
        return rc;
    /* The last line before a crash in the plugin's own code names it: this
     * one when the level shows it (flushed: the log thread may never run
     * again), and the crash note in every case. */
    g_info("loading plugin %s", path);
    if (zl_log_get_level() >= ZL_LOG_INFO)
        zl_log_flush();
    armed = guard_arm(path);
    rc = open_plugin(path, &h, &entry, error);
    if (rc == 0) {
        d = entry();
        rc = check_desc(reg, path, d, error);
    }
    if (rc == 0)
        rc = add_plugin(reg, path, h, d, error);
    guard_disarm(armed);
    return rc;
}

int zl_plugins_load(zl_plugin_registry_t *reg, const char *name,
                    const char *const *dirs, char **error)
{
    GString *searched = g_string_new(NULL);
    int rc;

    if (error)
        *error = NULL;
    for (size_t i = 0; dirs && dirs[i]; i++) {
        char *path = g_strdup_printf("%s/%s.so", dirs[i], name);
        if (g_file_test(path, G_FILE_TEST_EXISTS)) {
            rc = zl_plugins_load_file(reg, path, error);
            g_free(path);
            g_string_free(searched, TRUE);
            return rc;
        }
        g_string_append_printf(searched, "%s%s", searched->len ? ", " : "",
                               dirs[i]);
        g_free(path);
    }
    rc = fail(error, -ENOENT,
              "plugin '%s' not found: no %s.so in %s; set --plugin-dir or "
              "ZLTK_PLUGIN_PATH",
              name, name, searched->len ? searched->str : "(no directories)");
    g_string_free(searched, TRUE);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.so names in dir, sorted, or NULL with errno set. */
static GPtrArray *list_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    GPtrArray *names;

    if (!d)
        return NULL;
    names = g_ptr_array_new_with_free_func(g_free);
    while ((de = readdir(d)))
        if (g_str_has_suffix(de->d_name, ".so"))
            g_ptr_array_add(names, g_strdup(de->d_name));
    closedir(d);
    qsort(names->pdata, names->len, sizeof(char *), cmp_str);
    return names;
}

int zl_plugins_load_dir(zl_plugin_registry_t *reg, const char *dir,
                        void (*report)(const char *, const char *, void *),
                        void *ctx)
{
    GPtrArray *names = list_dir(dir);
    int loaded = 0;

    if (!names)
        return -errno;
    for (guint i = 0; i < names->len; i++) {
        char *path = g_build_filename(dir, names->pdata[i], NULL);
        char *err = NULL;
        if (zl_plugins_load_file(reg, path, &err) == 0)
            loaded++;
        else if (report)
            report(path, err ? err : "failed to load", ctx);
        free(err);
        g_free(path);
    }
    g_ptr_array_free(names, TRUE);
    return loaded;
}

int zl_plugins_load_path(zl_plugin_registry_t *reg, const char *const *dirs,
                         zl_plugin_report_fn report, void *ctx)
{
    /* File name -> the path it was first found at: what zl_plugins_load()
     * would pick for that name, as PATH or GST_PLUGIN_PATH would. */
    GHashTable *first = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                              g_free);
    int loaded = 0;

    for (size_t i = 0; dirs && dirs[i]; i++) {
        GPtrArray *names = list_dir(dirs[i]);

        for (guint j = 0; names && j < names->len; j++) {
            const char *base = names->pdata[j];
            char *path = g_build_filename(dirs[i], base, NULL), *msg = NULL;
            const char *earlier = g_hash_table_lookup(first, base);

            if (earlier && !strcmp(earlier, path)) {
                g_free(path); /* the same directory again */
                continue;
            }
            if (earlier) {
                msg = g_strdup_printf("%s: not loaded: %s comes first on the "
                                      "plugin path and takes precedence",
                                      path, earlier);
                if (report)
                    report(path, ZL_PLUGIN_SHADOWED, msg, ctx);
                g_free(msg);
                g_free(path);
                continue;
            }
            g_hash_table_insert(first, g_strdup(base), g_strdup(path));
            if (zl_plugins_load_file(reg, path, &msg) == 0)
                loaded++;
            else if (report)
                report(path, ZL_PLUGIN_REFUSED, msg ? msg : "failed to load",
                       ctx);
            free(msg);
            g_free(path);
        }
        if (names)
            g_ptr_array_free(names, TRUE);
    }
    g_hash_table_destroy(first);
    return loaded;
}

/* ------------------------------------------------------------ the path */

/* Add dir unless the same directory (by device and inode, so that
 * "plugins/.libs" and its absolute path count once; by name when it does
 * not exist) is already there: a directory searched twice would offer
 * every plugin twice. */
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

char **zl_plugins_search_path(const char *const *first)
{
    GPtrArray *a = g_ptr_array_new();
    GArray *ids = g_array_new(FALSE, FALSE, sizeof(struct stat));
    const char *env = g_getenv("ZLTK_PLUGIN_PATH");
    const char *sys = g_getenv("ZLTK_PLUGIN_SYSTEM_PATH");

    for (size_t i = 0; first && first[i]; i++)
        path_add(a, ids, first[i]);
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
