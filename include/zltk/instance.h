/* zltk — running handler instances, for host programs (zltk-host, embedders).
 *
 * An instance binds a registered handler (zltk/handler.h) to an address: a
 * client that connects (one session, kept across reconnects) or a server
 * that listens (one session per accepted connection).  The host program
 * creates instances from its configuration, starts them, and stops them at
 * the end; the handler sees only its vtable and the host API.
 *
 * A program usually needs only zl_instance_open() and zl_instance_close():
 * open resolves a layer by name (layer_name = "tls"), checks the settings
 * (the zltk.conf keys of the handler and the layer), creates and starts the
 * instance, and hands every problem back as a GError.  The handler talks to
 * its sessions with zltk/session.h.  zl_instance_new() + zl_instance_start()
 * are the explicit path a host (zltk-host) takes with its own
 * configuration source.
 *
 * Threading: new, open, start, stop, close and free are called from one
 * thread that is not a poller (the host's main thread).  The accessors are
 * any-thread.
 */
#ifndef ZLTK_INSTANCE_H
#define ZLTK_INSTANCE_H

#include <glib.h>

#include <zltk/client.h>
#include <zltk/common.h>
#include <zltk/handler.h>
#include <zltk/plugin.h>
#include <zltk/server.h>

ZL_BEGIN_DECLS

/* The instance's own keys: return the raw string value of key, or NULL.
 * The string must stay valid while the instance lives. */
typedef const char *(*zl_instance_config_fn)(void *ctx, const char *key);
/* Whether config's value for key is a default taken from elsewhere (in
 * zltk-host, a [plugin.NAME] group) rather than the instance's own. */
typedef bool (*zl_instance_default_fn)(void *ctx, const char *key);
/* A problem in the instance's configuration: key may be NULL. */
typedef void (*zl_instance_report_fn)(void *ctx, const char *key,
                                      const char *message);

/* One setting of an instance: the same keys as zltk.conf's
 * [client.NAME]/[server.NAME] groups for the handler and the layer
 * (tls-ca, tls-verify, tls-server-name, tls-pin, tls-cert, tls-key,
 * tls-alpn, ...).  Strings are copied by zl_instance_open(). */
typedef struct zl_setting {
    const char *key;
    const char *value;
} zl_setting_t;

typedef struct zl_instance_options {
    const char *name;  /* NAME of [client.NAME] / [server.NAME]: mandatory */
    bool server;
    const zl_handler_t *handler; /* mandatory, must outlive the instance */
    zl_plugin_t *plugin;         /* owner of handler, for log prefixes */
    const zl_layer_t *layer;     /* optional transport layer (e.g. tls) */
    zl_plugin_t *layer_plugin;   /* its owner */
    zl_instance_config_fn config; /* may be NULL: no keys */
    zl_instance_report_fn report; /* NULL: problems are logged */
    void *ctx;                    /* for config, report, config_default */
    zl_instance_default_fn config_default; /* may be NULL: none is */
    /* Where and how: client.host/port (and the rest of the client options)
     * for a client, server.host/port for a server, each started from
     * ZL_CLIENT_OPTIONS_INIT / ZL_SERVER_OPTIONS_INIT (their values are
     * literal: see zltk/conn.h).  name and the handler fields are set by
     * the instance itself. */
    zl_client_options_t client;
    zl_server_options_t server_opts;
    /* Optional: called once on a poller thread when the instance ends on
     * its own (a client that closed or gave up).  Not called by
     * zl_instance_stop().  It runs under the instance's lock: it may read
     * the stats and zl_instance_last_error(), and must not stop or free
     * the instance (wake another thread to do that). */
    void (*on_finished)(zl_instance_t *inst, void *ctx);

    /* ---- Appended for zl_instance_open() (issue 12).  zl_instance_new()
     * ignores layer_name and settings; it keeps user_data. */

    /* A layer by name ("tls"): loaded from the plugin path on first use
     * ($ZLTK_PLUGIN_PATH, then the installed plugin directory, or
     * $ZLTK_PLUGIN_SYSTEM_PATH instead of it when set), kept loaded until
     * zl_stop().  NULL: plain TCP, unless .layer
     * is set (both set: an error). */
    const char *layer_name;
    /* The instance's keys, ended by {NULL, NULL}; consulted when .config
     * is NULL.  A key given twice: the last one counts. */
    const zl_setting_t *settings;
    /* For the program: zl_instance_user_data(). */
    void *user_data;
} zl_instance_options_t;

/* Every field zero (NULL, false) but the client and server options, which
 * start from ZL_CLIENT_OPTIONS_INIT / ZL_SERVER_OPTIONS_INIT.  Start every
 * zl_instance_options_t from it:
 *     zl_instance_options_t o = ZL_INSTANCE_OPTIONS_INIT; */
#define ZL_INSTANCE_OPTIONS_INIT                                            \
    {NULL, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,          \
     ZL_CLIENT_OPTIONS_INIT, ZL_SERVER_OPTIONS_INIT, NULL, NULL, NULL,     \
     NULL}

/* Set *o to ZL_INSTANCE_OPTIONS_INIT (for C++ and bindings).  Any
 * thread. */
ZL_API void zl_instance_options_init(zl_instance_options_t *o);

/* Counters and outcome.  Any thread. */
typedef struct zl_instance_stats {
    uint64_t sessions;   /* sessions opened */
    uint64_t active;     /* sessions not yet closed */
    uint64_t connected;  /* successful connections (clients) / accepts */
    uint64_t failed;     /* failed connection attempts (clients) */
    int last_error;      /* kind of the last error reported (0: none) */
} zl_instance_stats_t;

/* Create an instance and run the handler's instance_new.  The options are
 * copied.  Returns 0, -EINVAL (bad options, or the handler refused its
 * configuration: every problem went to report) or -ENOMEM.  Nothing runs
 * until zl_instance_start(). */
ZL_API int zl_instance_new(zl_instance_t **out,
                           const zl_instance_options_t *opts);

/* Set or replace a client's peer before zl_instance_start() (for a peer
 * known only once a server instance is bound).  Returns 0 or -EINVAL. */
ZL_API int zl_instance_set_address(zl_instance_t *inst, const char *host,
                                   uint16_t port);

/* Start listening / connecting on the runtime's pollers (zl_runtime_init()
 * first).  Returns 0 or the error of zl_server_new() / zl_client_connect()
 * (logged with the instance's name). */
ZL_API int zl_instance_start(zl_instance_t *inst);

/* Stop gracefully: stop accepting, close every session (queued bytes are
 * still sent, bounded by the send timeout), and wait until each one's
 * on_closed has run.  Idempotent. */
ZL_API void zl_instance_stop(zl_instance_t *inst);

/* Stop if needed, run the handler's instance_free, free.  NULL is ignored. */
ZL_API void zl_instance_free(zl_instance_t *inst);

ZL_API const char *zl_instance_get_name(const zl_instance_t *inst);
/* The bound address of a started server (its real port), else NULL. */
ZL_API const zl_addr_t *zl_instance_server_addr(const zl_instance_t *inst);
ZL_API void zl_instance_get_stats(const zl_instance_t *inst,
                                  zl_instance_stats_t *out);
/* The message of the last error reported to the instance's sessions
 * ("connect to 127.0.0.1:9: connection refused"), copied into buf; ""
 * when none.  Returns buf. */
ZL_API char *zl_instance_last_error(zl_instance_t *inst, char *buf,
                                    size_t len);

/* GError domain of zltk: ZL_ERROR (the quark "zltk-error-quark").  The
 * codes are zltk's negative codes, a ZL_E* or -errno (-EINVAL: bad options
 * or settings, -ENOENT: layer not found, -EADDRINUSE: ...), which
 * zl_strerror() names and zl_err_kind() maps to a kind.  Any thread. */
#define ZL_ERROR (zl_error_quark())
ZL_API GQuark zl_error_quark(void);

/* Create AND start an instance in one call: resolve layer_name (load the
 * layer plugin if needed), check every setting (unknown keys, neither the
 * handler's nor the layer's, are errors here, not warnings), run
 * instance_new of handler and layer, start connecting/listening.  The
 * options are copied (strings and settings included).  Returns the
 * instance (the caller owns it: zl_instance_close()), or NULL with *error
 * set (domain ZL_ERROR, code a ZL_E* or -errno; error may be NULL) whose
 * message names every problem.  Problems with settings are one per line,
 * "KEY: message" ("tls-ca: cannot read /x: No such file or directory");
 * others name the instance ("client.NAME: cannot start connecting to
 * ...") or the layer ("layer 'tlss' not found on the plugin path: no
 * tlss.so in DIR, DIR (ZLTK_PLUGIN_PATH=...)").  The runtime must be running
 * (zl_runtime_init() / zl_start()).  Main thread (not a poller). */
ZL_API zl_instance_t *zl_instance_open(const zl_instance_options_t *o,
                                       GError **error);

/* zl_instance_stop() + zl_instance_free().  NULL is ignored.  Main
 * thread, before zl_stop(). */
ZL_API void zl_instance_close(zl_instance_t *inst);

ZL_END_DECLS

#endif
