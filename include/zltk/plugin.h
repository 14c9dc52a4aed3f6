/* zltk — the plugin ABI.
 *
 * A plugin is a shared object that exports exactly one symbol,
 * zltk_plugin_entry, returning a const descriptor.  Define it with
 * ZLTK_PLUGIN_DEFINE:
 *
 *     static int hello_init(zl_plugin_t *self, const zl_host_api_t *host)
 *     {
 *         host->log(self, ZL_LOG_INFO, "hello");
 *         return 0;
 *     }
 *
 *     ZLTK_PLUGIN_DEFINE(
 *         .name = "hello",
 *         .version = "1.0",
 *         .description = "Says hello",
 *         .init = hello_init,
 *     )
 *
 * ABI rules.  The descriptor begins with a prefix that never changes
 * (magic, ABI major, ABI minor, struct size).  The host loads a plugin whose
 * major equals its own and whose minor is not newer than its own; fields are
 * only ever appended (into the reserved tail), so a plugin built against an
 * older minor still loads.  Unset fields are NULL thanks to the designated
 * initialisers of ZLTK_PLUGIN_DEFINE.
 *
 * Threading.  init, start, stop and destroy run on the host's main thread,
 * one plugin at a time.  The host API's functions say which thread may call
 * them.  A plugin is never unloaded (no dlclose): its code stays mapped until
 * the process exits, so nothing can call into unmapped code.
 */
#ifndef ZLTK_PLUGIN_H
#define ZLTK_PLUGIN_H

#include <zltk/common.h>
#include <zltk/conn.h>
#include <zltk/error.h>
#include <zltk/handler.h>
#include <zltk/log.h>
#include <zltk/poller.h>
#include <zltk/version.h>
#include <zltk/worker.h>

ZL_BEGIN_DECLS

/* "ZLTK" as a little-endian 32-bit number. */
#define ZLTK_PLUGIN_MAGIC 0x4b544c5au
/* The one exported symbol. */
#define ZLTK_PLUGIN_ENTRY_SYMBOL "zltk_plugin_entry"

/* The host's record of a loaded plugin; opaque, owned by the host, valid
 * from init until destroy returns. */
typedef struct zl_plugin zl_plugin_t;
typedef struct zl_host_api zl_host_api_t;
typedef struct zl_plugin_desc zl_plugin_desc_t;

/* What a plugin registers during init: a named handler that config
 * instances refer to ([client.X] / [server.X] with plugin = NAME). */
typedef enum {
    ZL_PROVIDES_CLIENT = 1u << 0, /* a client handler */
    ZL_PROVIDES_SERVER = 1u << 1, /* a server-session handler */
    ZL_PROVIDES_LAYER = 1u << 2   /* a transport layer (e.g. tls) */
} zl_provides_t;

/* A registration.  The loader records name, kind and the kind-specific
 * vtable, and hands the vtable to the host code that runs instances of that
 * kind; it never interprets it. */
typedef struct zl_registration {
    uint32_t struct_size;   /* sizeof(zl_registration_t) */
    zl_provides_t kind;     /* exactly one ZL_PROVIDES_* bit */
    const char *name;       /* unique per kind among all plugins */
    const char *description;
    const void *vtable;     /* kind-specific, owned by the plugin */
    void *reserved[4];
} zl_registration_t;

/* Services the host offers to plugins.  Versioned by its size: a plugin
 * must check host->struct_size covers a field before using a newer one. */
struct zl_host_api {
    uint32_t struct_size;
    uint16_t abi_major, abi_minor;

    /* Record what the plugin provides.  During init only, main thread.  The
     * registration is copied; the strings and vtable it points to must stay
     * valid (static storage).  Returns 0, -EEXIST (name taken for this
     * kind), -EINVAL (malformed) or -EPERM (outside init). */
    int (*register_provider)(zl_plugin_t *self, const zl_registration_t *reg);

    /* Log a line prefixed with the plugin's name.  Any thread. */
    void (*log)(zl_plugin_t *self, zl_log_level_t level, const char *fmt, ...)
        ZL_PRINTF(3, 4);

    /* The plugin's [plugin.NAME] settings.  Any thread; values are valid for
     * the plugin's lifetime.  get_string returns NULL when the key is
     * absent.  get_int/get_bool return 0 and set *out, -ENOENT if absent,
     * -EINVAL if the value has the wrong type (logged with file, group and
     * key).  get_bool takes zltk's one boolean grammar (zl_parse_bool). */
    const char *(*get_string)(zl_plugin_t *self, const char *key);
    int (*get_int)(zl_plugin_t *self, const char *key, int64_t *out);
    int (*get_bool)(zl_plugin_t *self, const char *key, bool *out);

    /* The plugin's own name.  Any thread. */
    const char *(*name)(const zl_plugin_t *self);

    /* ---- Instances ([client.NAME] / [server.NAME] groups).  Any thread
     * while the instance exists; config_error during instance_new only. */

    /* "NAME" of the group, and whether it is a server. */
    const char *(*instance_name)(const zl_instance_t *inst);
    bool (*instance_is_server)(const zl_instance_t *inst);
    /* What the handler's instance_new stored, or NULL. */
    void *(*instance_data)(const zl_instance_t *inst);
    /* The instance's own keys, as for get_string/get_int/get_bool above:
     * config_string returns NULL when absent (the string lives as long as
     * the instance); config_int/config_bool return 0, -ENOENT (absent) or
     * -EINVAL (wrong type, reported with file, group and key). */
    const char *(*config_string)(const zl_instance_t *inst, const char *key);
    int (*config_int)(const zl_instance_t *inst, const char *key,
                      int64_t *out);
    int (*config_bool)(const zl_instance_t *inst, const char *key, bool *out);
    /* Report a problem with key (NULL: the whole group) as
     * "FILE: [GROUP] KEY: message"; the instance is then refused even if
     * instance_new returns 0. */
    void (*config_error)(zl_instance_t *inst, const char *key,
                         const char *fmt, ...) ZL_PRINTF(3, 4);

    /* ---- Sessions.  Unless noted: the session's poller thread (inside
     * callbacks), or any thread through a reference (session_ref). */

    /* Send len bytes (copied) / one reference of buf (zero-copy; buf must
     * not change afterwards).  Returns 0, ZL_CONN_BUSY (accepted, but the
     * queue is above the high mark: stop producing until on_busy(false)),
     * ZL_ESHUTDOWN (closing: nothing sent) or -ENOMEM.  A write that fails
     * at once calls on_err inside this call. */
    int (*send)(zl_session_t *s, const void *data, size_t len);
    int (*send_buf)(zl_session_t *s, zl_buf_t *buf);
    /* Graceful close (what is queued is sent first), abortive close (RST,
     * queue dropped), half-close (sending side, after the queue; keep
     * receiving).  Then on_closed follows (not for shutdown, unless the
     * peer had ended its side first: zl_handler_t.on_eof).  Idempotent. */
    void (*close)(zl_session_t *s);
    void (*abort)(zl_session_t *s);
    void (*shutdown)(zl_session_t *s);
    /* Stop / resume reading (backpressure towards the peer). */
    void (*pause)(zl_session_t *s);
    void (*resume)(zl_session_t *s);
    /* Addresses (kept after close), a name for logs ("client#3",
     * per-thread buffer), queued bytes: the session's poller thread only
     * (or any thread once on_closed has run).  The instance and the poller:
     * any thread. */
    const zl_addr_t *(*peer)(const zl_session_t *s);
    const zl_addr_t *(*local)(const zl_session_t *s);
    const char *(*session_name)(const zl_session_t *s);
    zl_instance_t *(*session_instance)(const zl_session_t *s);
    zl_poller_t *(*session_poller)(const zl_session_t *s);
    size_t (*queued)(const zl_session_t *s);
    /* References for other threads: the session's memory (not its
     * connection) stays valid until the last unref.  Any thread. */
    zl_session_t *(*session_ref)(zl_session_t *s);
    void (*session_unref)(zl_session_t *s);
    /* A timer on the session's poller: fn(s, state, arg) after delay_ms,
     * then after each non-zero delay it returns.  Cancelled when the session
     * closes; destroy(arg) runs once in every case (not on failure).
     * The session's poller thread only (elsewhere: -EPERM; use post).
     * Returns 0, ZL_ESHUTDOWN, -EPERM or -ENOMEM. */
    int (*add_timer)(zl_session_t *s, uint64_t delay_ms,
                     zl_session_timer_fn fn, void *arg,
                     zl_destroy_fn destroy);
    /* Run fn(s, state, arg) on the session's poller, unless the session
     * has closed by then; destroy(arg) runs once either way.  Any thread.
     * Returns 0, ZL_ESHUTDOWN (nothing runs; caller keeps arg) or -ENOMEM. */
    int (*post)(zl_session_t *s, zl_session_fn fn, void *arg,
                zl_destroy_fn destroy);
    /* Blocking work: work(arg) on a worker thread, then done(s, state, arg)
     * on the session's poller unless the session has closed; destroy(arg)
     * once in every case.  Any thread.  Returns as post. */
    int (*submit)(zl_session_t *s, zl_work_fn work, zl_session_fn done,
                  void *arg, zl_destroy_fn destroy);
    /* Log a line prefixed with the plugin, instance and session names.
     * Any thread (through a reference). */
    void (*session_log)(zl_session_t *s, zl_log_level_t level,
                        const char *fmt, ...) ZL_PRINTF(3, 4);

    /* ---- Transport layers (zl_layer_t).  The session's poller thread. */

    /* Layer → connection: send encoded bytes (copied / one reference),
     * close gracefully after what is queued, half-close.  Returns as
     * send. */
    int (*lower_send)(zl_session_t *s, const void *data, size_t len);
    int (*lower_send_buf)(zl_session_t *s, zl_buf_t *buf);
    void (*lower_close)(zl_session_t *s);
    void (*lower_shutdown)(zl_session_t *s);
    /* Layer → handler: the session is ready (on_connect(NULL)), decoded
     * bytes (on_recv; the layer keeps its reference to buf), an error
     * (on_err, after which the host closes the connection gracefully so
     * that a last alert still goes out — except when called from the
     * layer's own on_err, where the connection is already ending and a
     * client may reconnect).  upper_connect and upper_recv do nothing once
     * the connection is closing.
     * Note: add_timer, post and submit always hand the HANDLER's state to
     * their callbacks; a layer passes its own state through arg. */
    void (*upper_connect)(zl_session_t *s);
    void (*upper_recv)(zl_session_t *s, zl_buf_t *buf);
    void (*upper_err)(zl_session_t *s, const zl_error_t *err);
    /* The layer's instance data (its instance_new's *data). */
    void *(*layer_data)(const zl_instance_t *inst);
    /* The peer host a client instance connects to (as configured: a name
     * or an IP literal), or NULL for a server.  Any thread. */
    const char *(*instance_host)(const zl_instance_t *inst);
    /* For handlers: facts from the session's layer (zl_layer_t.info), or
     * NULL (no layer, or unknown key). */
    const char *(*transport_info)(zl_session_t *s, const char *key);
    /* Layer → host: the layer now holds bytes of the handler's data that it
     * has not passed down yet (e.g. sent before its handshake; 0 once
     * passed down or dropped).  They count against the connection's high
     * and low marks like its own queue, and in queued(): the handler gets
     * on_busy(true) when either is above the high mark and on_busy(false)
     * when both are back to the low mark.  Returns ZL_CONN_BUSY while the
     * session is busy, else 0 — what the layer's send returns. */
    int (*layer_queued)(zl_session_t *s, size_t bytes);
    /* Whether an instance key's value is a default shared by several
     * instances (in zltk-host, from the plugin's [plugin.NAME] group) rather
     * than set in the instance's own group: e.g. to stay quiet about a
     * default that does not apply to this instance.  Any thread, as
     * config_string. */
    bool (*config_is_default)(const zl_instance_t *inst, const char *key);
    /* The handler ends the session for a failure of its own rather than
     * the connection's (the tcp plugin: standard output cannot be
     * written).  The kind of code (ZL_E* or -errno, see zl_err_kind()) and
     * the message (copied) become the instance's last error
     * (zl_instance_last_error(): what zltk-host reports, and --connect
     * exits 1 for); what the closing connection reports afterwards does
     * not replace them.  Then the session closes gracefully as close()
     * does: no on_err, no reconnect; on_closed follows.  Once per session
     * (later calls do nothing).  The session's poller thread only: its
     * callbacks, or the handler's own fd callbacks, tasks and timers
     * there.  Appended after ABI 1.0: a host that predates it has NULL
     * here (check before calling). */
    void (*fail)(zl_session_t *s, int code, const char *fmt, ...)
        ZL_PRINTF(3, 4);

    void *reserved[16];
};

struct zl_plugin_desc {
    /* Fixed prefix: never changes, whatever the ABI version. */
    uint32_t magic;       /* ZLTK_PLUGIN_MAGIC */
    uint16_t abi_major;   /* ZLTK_PLUGIN_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;   /* ZLTK_PLUGIN_ABI_MINOR the plugin was built with */
    uint32_t struct_size; /* sizeof(zl_plugin_desc_t) when built */
    uint32_t flags;       /* reserved, 0 */

    /* ABI 1.0 */
    const char *name;        /* mandatory: [a-z0-9_-], unique in the host */
    const char *version;     /* mandatory: the plugin's own version */
    const char *description; /* one line */
    /* Mandatory.  Register what the plugin provides.  Return 0, or a
     * negative errno: the plugin is then skipped (its reason logged) and
     * destroy is still called. */
    int (*init)(zl_plugin_t *self, const zl_host_api_t *host);
    /* Optional.  Called once every plugin is initialised and the runtime
     * runs, before instances start.  Non-zero: the plugin is skipped (its
     * handlers are withdrawn; stop is not called, destroy is). */
    int (*start)(zl_plugin_t *self);
    /* Optional, asynchronous.  Stop background work; call done(self) (from
     * any thread) when finished.  Instances are already closed. */
    void (*stop)(zl_plugin_t *self, void (*done)(zl_plugin_t *self));
    /* Optional.  Free what init allocated.  Last call into the plugin. */
    void (*destroy)(zl_plugin_t *self);

    void *reserved[8];
};

typedef const zl_plugin_desc_t *(*zl_plugin_entry_fn)(void);

/* Defines zltk_plugin_entry, exported, with C linkage also when expanded
 * in C++ (a mangled entry is not found).  From C++ (designated
 * initialisers: C++20, or g++/clang++ in their default modes), name the
 * fields in their order in zl_plugin_desc_t: name, version, description,
 * init, start, stop, destroy. */
#define ZLTK_PLUGIN_DEFINE(...)                                             \
    ZL_EXTERN_C __attribute__((visibility("default")))                      \
    const zl_plugin_desc_t *zltk_plugin_entry(void);                        \
    ZL_EXTERN_C const zl_plugin_desc_t *zltk_plugin_entry(void)             \
    {                                                                       \
        static const zl_plugin_desc_t zltk_desc_ = {                        \
            .magic = ZLTK_PLUGIN_MAGIC,                                     \
            .abi_major = ZLTK_PLUGIN_ABI_MAJOR,                             \
            .abi_minor = ZLTK_PLUGIN_ABI_MINOR,                             \
            .struct_size = sizeof(zl_plugin_desc_t),                        \
            __VA_ARGS__};                                                   \
        return &zltk_desc_;                                                 \
    }

ZL_END_DECLS

#endif
