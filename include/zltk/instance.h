/* zltk — running handler instances, for host programs (zltk-host, embedders).
 *
 * An instance binds a registered handler (zltk/handler.h) to an address: a
 * client that connects (one session, kept across reconnects) or a server
 * that listens (one session per accepted connection).  The host program
 * creates instances from its configuration, starts them, and stops them at
 * the end; the handler sees only its vtable and the host API.
 *
 * Threading: new, start, stop and free are called from one thread that is
 * not a poller (the host's main thread).  The accessors are any-thread.
 */
#ifndef ZLTK_INSTANCE_H
#define ZLTK_INSTANCE_H

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
} zl_instance_options_t;

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

ZL_END_DECLS

#endif
