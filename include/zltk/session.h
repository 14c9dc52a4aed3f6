/* zltk — sessions, for programs: the host API's session calls as functions.
 *
 * A program that links libzltk and runs a zl_handler_t in an instance
 * (zltk/instance.h, zl_instance_open()) talks to its sessions with these
 * functions.  They are the very functions the host API table
 * (zl_host_api_t in zltk/plugin.h) points to: host->send(s, ...) in a
 * plugin and zl_session_send(s, ...) in a program run the same code, with
 * or without a transport layer (tls) under the handler.  A plugin keeps
 * calling through the table (it must not depend on libzltk's symbols to
 * stay ABI 1.0 compatible); a program may use either.
 *
 * Threading.  Unless noted: the session's poller thread (inside the
 * handler's callbacks), or any thread through a reference
 * (zl_session_ref()).  The session is owned by the instance; its memory
 * is valid inside callbacks and while a reference is held.
 */
#ifndef ZLTK_SESSION_H
#define ZLTK_SESSION_H

#include <zltk/common.h>
#include <zltk/conn.h>
#include <zltk/error.h>
#include <zltk/handler.h>
#include <zltk/net.h>
#include <zltk/poller.h>
#include <zltk/worker.h>

ZL_BEGIN_DECLS

/* Send len bytes (copied) / one reference of buf, which the call takes over
 * in every case (zero-copy; buf must not change afterwards).
 * Returns 0, ZL_CONN_BUSY (accepted, but the queue is above the high mark:
 * stop producing until on_busy(false)), ZL_ESHUTDOWN (closing: nothing
 * sent) or -ENOMEM.  A write that fails at once calls on_err inside this
 * call. */
ZL_API int zl_session_send(zl_session_t *s, const void *data, size_t len);
ZL_API int zl_session_send_buf(zl_session_t *s, zl_buf_t *buf);

/* Graceful close (what is queued is sent first), abortive close (RST,
 * queue dropped), half-close (sending side, after the queue; keep
 * receiving).  Then on_closed follows (not for shutdown, unless the peer
 * had ended its side first: zl_handler_t.on_eof).  Idempotent. */
ZL_API void zl_session_close(zl_session_t *s);
ZL_API void zl_session_abort(zl_session_t *s);
ZL_API void zl_session_shutdown(zl_session_t *s);

/* Stop / resume reading (backpressure towards the peer). */
ZL_API void zl_session_pause(zl_session_t *s);
ZL_API void zl_session_resume(zl_session_t *s);

/* End the session for a failure of the handler's own rather than the
 * connection's.  The kind of code (ZL_E* or -errno, see zl_err_kind()) and
 * the message (copied) become the instance's last error
 * (zl_instance_last_error()); what the closing connection reports
 * afterwards does not replace them.  Then the session closes gracefully as
 * zl_session_close() does: no on_err, no reconnect; on_closed follows.
 * Once per session (later calls do nothing).  The session's poller thread
 * only: its callbacks, or the handler's own fd callbacks, tasks and timers
 * there. */
ZL_API void zl_session_fail(zl_session_t *s, int code, const char *fmt, ...)
    ZL_PRINTF(3, 4);

/* Addresses (kept after close), a name for logs ("client#3", a per-thread
 * buffer valid until the next call on the thread), queued bytes (the
 * connection's and the layer's): the session's poller thread only (or any
 * thread once on_closed has run).  The returned pointers belong to the
 * session. */
ZL_API const zl_addr_t *zl_session_peer(const zl_session_t *s);
ZL_API const zl_addr_t *zl_session_local(const zl_session_t *s);
ZL_API const char *zl_session_name(const zl_session_t *s);
ZL_API size_t zl_session_queued(const zl_session_t *s);

/* The session's instance and poller (not references).  Any thread. */
ZL_API zl_instance_t *zl_session_instance(const zl_session_t *s);
ZL_API zl_poller_t *zl_session_poller(const zl_session_t *s);

/* References for other threads: the session's memory (not its
 * connection) stays valid until the last unref.  Any thread.  ref returns
 * s. */
ZL_API zl_session_t *zl_session_ref(zl_session_t *s);
ZL_API void zl_session_unref(zl_session_t *s);

/* A timer on the session's poller: fn(s, state, arg) after delay_ms, then
 * after each non-zero delay it returns.  Cancelled when the session
 * closes; destroy(arg) runs once in every case (not on failure).  The
 * session's poller thread only (elsewhere: -EPERM; use zl_session_post).
 * Returns 0, ZL_ESHUTDOWN, -EPERM or -ENOMEM. */
ZL_API int zl_session_add_timer(zl_session_t *s, uint64_t delay_ms,
                                zl_session_timer_fn fn, void *arg,
                                zl_destroy_fn destroy);

/* Run fn(s, state, arg) on the session's poller, unless the session has
 * closed by then; destroy(arg) runs once either way.  Any thread.
 * Returns 0, ZL_ESHUTDOWN (nothing runs; caller keeps arg) or -ENOMEM. */
ZL_API int zl_session_post(zl_session_t *s, zl_session_fn fn, void *arg,
                           zl_destroy_fn destroy);

/* Blocking work: work(arg) on a worker thread, then done(s, state, arg) on
 * the session's poller unless the session has closed; destroy(arg) once in
 * every case.  Any thread.  Returns as zl_session_post. */
ZL_API int zl_session_submit(zl_session_t *s, zl_work_fn work,
                             zl_session_fn done, void *arg,
                             zl_destroy_fn destroy);

/* Facts from the session's transport layer (zl_layer_t.info: for tls
 * "version", "cipher", "alpn", "peer-fingerprint", ...), or NULL (no
 * layer, or unknown key).  The string lives until the next call or
 * on_closed.  The session's poller thread. */
ZL_API const char *zl_session_transport_info(zl_session_t *s,
                                             const char *key);

/* The instance's user data (zl_instance_options_t.user_data), any
 * thread. */
ZL_API void *zl_instance_user_data(const zl_instance_t *inst);

ZL_END_DECLS

#endif
