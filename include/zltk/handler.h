/* zltk — handler vtables: what a client or server-session plugin implements.
 *
 * A plugin registers a zl_handler_t (as zl_registration_t.vtable, kind
 * ZL_PROVIDES_CLIENT or ZL_PROVIDES_SERVER) in its init.  Each [client.NAME]
 * or [server.NAME] group of the configuration that names it becomes an
 * instance (zl_instance_t); each connection of an instance is a session
 * (zl_session_t) with per-session state that the host allocates, zeroed,
 * beside it.  A client instance has one session for its whole life (it
 * survives reconnects); a server instance has one per accepted connection.
 *
 * Threading.  instance_new and instance_free run on the host's main thread.
 * Every session callback runs on the session's poller thread, never
 * concurrently with another callback of the same session, never after
 * on_closed.  Handler code therefore needs no locks for its state.
 *
 * Ownership.  state belongs to the handler between on_open and on_closed;
 * the host frees the block itself after on_closed returns, so on_closed
 * frees only what the handler allocated and hung off it.  Buffers passed to
 * on_recv belong to the host: the bytes are valid during the call, and
 * zl_buf_ref() keeps them longer without copying.
 *
 * Order of callbacks for one session:
 *     on_open, then for a client one on_connect per connection attempt
 *     (err != NULL: that attempt failed), for a server one on_connect(NULL);
 *     then any number of on_recv, on_flush, on_busy, on_manager;
 *     at most one on_eof and one on_err per connection (on_eof only for
 *     a handler that sets it: half-close); finally exactly one
 *     on_closed.
 * on_manager ticks (every 2 s by default) from on_open to close, also while
 * a client is still connecting.
 */
#ifndef ZLTK_HANDLER_H
#define ZLTK_HANDLER_H

#include <zltk/common.h>
#include <zltk/net.h>

ZL_BEGIN_DECLS

/* One connection as a handler sees it: opaque, owned by the host.  Valid
 * inside callbacks, or for as long as the handler holds a reference
 * (zl_host_api_t.session_ref). */
typedef struct zl_session zl_session_t;

/* One configured instance ([client.NAME] / [server.NAME]): opaque, owned by
 * the host, valid from instance_new until instance_free returns. */
typedef struct zl_instance zl_instance_t;

typedef struct zl_handler {
    uint32_t struct_size; /* sizeof(zl_handler_t) when built: mandatory */
    uint32_t state_size;  /* bytes of per-session state (0: none) */
    /* The handler's own configuration keys, NULL-terminated (may be NULL).
     * The host warns about keys of an instance group that are neither its
     * own nor listed here, and documents them in --list-plugins. */
    const char *const *keys;

    /* Optional.  An instance is being created (main thread, also for
     * zltk-host --check-config): read and check its keys with the host
     * API's config_* getters, report each problem with config_error(), and
     * return 0, or a negative errno to refuse the instance.  *data (NULL
     * on entry) is kept for the instance: host->instance_data(). */
    int (*instance_new)(zl_instance_t *inst, void **data);
    /* Optional.  The instance is gone (main thread, after its last
     * session's on_closed): free *data.  Not called when instance_new
     * failed: instance_new frees what it allocated before failing. */
    void (*instance_free)(zl_instance_t *inst, void *data);

    /* Optional.  A session begins; state is zeroed.  Return 0, or a
     * negative errno to abort the session (on_closed still follows). */
    int (*on_open)(zl_session_t *s, void *state, zl_instance_t *inst);
    /* Optional.  Clients: a connection attempt ended; err is NULL when
     * connected.  After a failed attempt a client either retries (reconnect
     * policy) or closes.  Servers: once, with NULL, after on_open. */
    void (*on_connect)(zl_session_t *s, void *state, const zl_error_t *err);
    /* Mandatory.  Bytes arrived (plaintext, below any layer). */
    void (*on_recv)(zl_session_t *s, void *state, zl_buf_t *buf);
    /* Optional.  The connection failed or ended: end of stream (ZL_EOF;
     * to on_eof instead for a handler that sets it), reset, timeout, a
     * TLS failure, …  After end of stream the session
     * closes gracefully (what is queued is still sent, and the handler may
     * still send from here); after other errors the connection is reset and
     * the queue dropped.  A client with a reconnect policy then reconnects
     * (on_connect again) instead of closing. */
    void (*on_err)(zl_session_t *s, void *state, const zl_error_t *err);
    /* Optional.  The send queue drained after having been non-empty. */
    void (*on_flush)(zl_session_t *s, void *state);
    /* Optional.  busy: queued bytes rose above the high mark; !busy: they
     * fell back to the low mark. */
    void (*on_busy)(zl_session_t *s, void *state, bool busy);
    /* Optional.  Periodic tick (every 2 s by default). */
    void (*on_manager)(zl_session_t *s, void *state);
    /* Optional.  The last callback: free what hangs off state. */
    void (*on_closed)(zl_session_t *s, void *state);

    /* ---- Appended after ABI 1.0: the host reads these only when
     * struct_size covers them. */

    /* Optional: half-close.  A handler that sets it asks to keep its
     * sending side open after the peer's end of stream (a relay: the
     * client sent its request and shut down its side; the answer comes
     * later).  The peer's end of stream then comes here instead of
     * on_err(ZL_EOF); the session stays open: the handler may go on
     * sending, and ends its side with host->shutdown() (the session
     * then closes: on_closed follows) or host->close().  Errors and
     * timeouts still come to on_err (a peer's reset is seen at the next
     * send).  If the handler had shut its side down already, the session
     * closes gracefully after on_eof returns, as after on_err(ZL_EOF).
     * Over a transport layer it closes after on_eof too, as after
     * on_err(ZL_EOF) there: tls passes no half-close through yet (it
     * answers the peer's close_notify with its own at once).
     * Without on_eof (and with a host older than this field) the peer's
     * end of stream is on_err(ZL_EOF), which closes, as in ABI 1.0. */
    void (*on_eof)(zl_session_t *s, void *state);

    void *reserved[7];
} zl_handler_t;

/* Size of zl_handler_t as ABI 1.0 defines it (struct_size must cover it). */
#define ZL_HANDLER_SIZE_1_0 offsetof(zl_handler_t, on_eof)

/* A transport layer (kind ZL_PROVIDES_LAYER): sits between a session's
 * connection and its handler, as TLS does, and is chosen per instance with
 * "transport = NAME".  The connection owns the descriptor; the layer owns
 * its own state (e.g. the SSL object) and talks both ways through the host
 * API:
 *
 *     connection --on_connect/on_recv/on_err--> layer --upper_*--> handler
 *     handler --send/close/shutdown--> layer --lower_*--> connection
 *
 * Events the layer does not implement pass straight through.  All layer
 * callbacks run on the session's poller thread; the host posts a handler's
 * send/close/shutdown made from another thread there first, so a layer's
 * state is never touched concurrently.  The handler's code is the same
 * whether a layer is present or not. */
typedef struct zl_layer {
    uint32_t struct_size; /* sizeof(zl_layer_t) when built: mandatory */
    uint32_t state_size;  /* per-session layer state, zeroed */
    const char *const *keys; /* the layer's configuration keys */

    /* As for handlers; *data is the layer's (host->layer_data()). */
    int (*instance_new)(zl_instance_t *inst, void **data);
    void (*instance_free)(zl_instance_t *inst, void *data);

    /* Optional.  The session begins (before the handler's on_open). */
    int (*on_open)(zl_session_t *s, void *state, zl_instance_t *inst);
    /* Mandatory.  The transport is connected (client) or accepted
     * (server): start the layer's handshake, and call
     * host->upper_connect(s) when the handler may begin.  Failed
     * connection attempts go to the handler directly. */
    void (*on_connect)(zl_session_t *s, void *state);
    /* Mandatory.  Bytes from the connection: deliver what they decode to
     * with host->upper_recv(). */
    void (*on_recv)(zl_session_t *s, void *state, zl_buf_t *buf);
    /* Optional.  A transport error; by default it reaches the handler as
     * is.  A layer that implements it calls host->upper_err() itself. */
    void (*on_err)(zl_session_t *s, void *state, const zl_error_t *err);
    /* Optional.  Periodic tick, before the handler's (handshake timeouts). */
    void (*on_manager)(zl_session_t *s, void *state);
    /* Optional.  After the handler's on_closed: free what hangs off
     * state. */
    void (*on_closed)(zl_session_t *s, void *state);

    /* Mandatory.  The handler sends: encode and pass the result down with
     * host->lower_send().  Returns as zl_host_api_t.send. */
    int (*send)(zl_session_t *s, void *state, const void *data, size_t len);
    /* Optional.  The handler closes gracefully / half-closes: say goodbye
     * (e.g. close_notify), then host->lower_close() / lower_shutdown().
     * By default the host does the lower call at once. */
    void (*close)(zl_session_t *s, void *state);
    void (*shutdown)(zl_session_t *s, void *state);
    /* Optional.  Facts about the transport for the handler
     * (host->transport_info): e.g. "alpn", "version", "peer-fingerprint".  The
     * string lives until the next call or on_closed; NULL if unknown. */
    const char *(*info)(zl_session_t *s, void *state, const char *key);
    /* Optional.  The handler paused (paused = true) or resumed reading; the
     * host has already paused or resumed the connection.  A layer that
     * holds decoded bytes stops delivering them while paused, and after a
     * resume delivers them from a posted task (host->post), not inside this
     * call: the handler may be resuming from its own on_recv. */
    void (*pause)(zl_session_t *s, void *state, bool paused);

    /* ---- Appended after ABI 1.0: the host reads these only when
     * struct_size covers them. */

    /* Optional.  The longest, in ms, that one session of inst may take to
     * end gracefully in this layer once its close began (TLS: close_notify
     * and its linger for the peer's).  When an instance stops, the host
     * waits this long (plus a margin) for its layered sessions before it
     * closes what is left at the connection level.  NULL, or a layer built
     * against ABI 1.0: the host waits the connection's send timeout.  Main
     * thread, from zl_instance_stop(); data is the layer's instance data. */
    uint32_t (*stop_ms)(const zl_instance_t *inst, void *data);

    void *reserved[7];
} zl_layer_t;

/* Size of zl_layer_t as ABI 1.0 defines it. */
#define ZL_LAYER_SIZE_1_0 offsetof(zl_layer_t, stop_ms)

/* Session-bound callbacks of the host API (timers, posted tasks, worker
 * completions): run on the session's poller with its state. */
typedef void (*zl_session_fn)(zl_session_t *s, void *state, void *arg);
/* A session timer: return the next delay in ms, or 0 to stop. */
typedef uint64_t (*zl_session_timer_fn)(zl_session_t *s, void *state,
                                        void *arg);

ZL_END_DECLS

#endif
