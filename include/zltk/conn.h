/* zltk — a TCP connection: one descriptor, owned by one poller.
 *
 * Connections are made by a client (zltk/client.h) or accepted by a server
 * (zltk/server.h).  Every handler callback runs on the owner poller's
 * thread, never concurrently, never after on_closed.
 *
 * Lifecycle.  A connection reports at most one error (on_err), after which
 * it closes (the one exception: the peer's end of stream with half-close
 * on, below).  Closing is asynchronous and two-phase: once zl_conn_close()
 * or zl_conn_abort() is called, or an error was reported, no callback
 * arrives except exactly one final on_closed; the memory is freed after it,
 * on the owner thread.  Other threads that keep a pointer take a reference
 * (zl_conn_ref) and may call send/close/shutdown through it; the work is
 * posted to the owner poller.
 *
 * Sending.  zl_conn_send() writes straight to the kernel when nothing is
 * queued and queues only what the kernel did not take; the queue goes out
 * with writev() in batches of up to IOV_MAX.  Above the high watermark send
 * still accepts and returns ZL_CONN_BUSY, and on_busy(true) is called once;
 * when the queue falls to the low watermark on_busy(false) follows.  A send
 * timeout errors a connection whose queue made no progress for that long;
 * it also bounds bytes the kernel holds unacknowledged (TCP_USER_TIMEOUT).
 *
 * Dead peers.  An idle timeout closes a connection that moved no byte in
 * either direction for that long; keepalive probes find a peer that
 * vanished while the connection is silent.  Both are off in
 * ZL_CONN_OPTIONS_INIT (zltk-host turns them on: see zltk.conf(5)).  Timeouts are
 * checked on the manager tick, so they fire up to one or two ticks late.
 *
 * Half-close.  By default the peer's end of stream (it shut down its
 * sending side) is reported as on_err(ZL_EOF) and the connection closes
 * gracefully: what is queued still goes out, nothing more can be sent.
 * A relay needs the other direction to stay open (the peer sent its
 * request and shut down; the answer comes later): with
 * zl_conn_set_half_close(c, true), on_err(ZL_EOF) is news only, the
 * connection stays open for sending, and it closes once both directions
 * are done: when the owner's zl_conn_shutdown() has flushed the queue and
 * sent the FIN (then on_closed, no other on_err), or at zl_conn_close(),
 * zl_conn_abort(), an error or a timeout (on_err once more for those, as
 * usual).  Our side shutting down first needs no option: the connection
 * keeps receiving until the peer ends too.  With nothing queued, a
 * half-closed connection watches no event: a reset by the peer is seen at
 * the next send (or by the idle timeout).
 *
 * Receiving.  Each readiness event reads once, into a 128 KiB buffer per
 * poller shared by all its connections, so an idle connection holds no
 * receive memory.  A read that fills the buffer continues from a task
 * queued behind the other ready connections, so one fast peer cannot
 * starve the rest of its poller.  zl_conn_pause() stops reading at once,
 * including a continuation already queued.
 */
#ifndef ZLTK_CONN_H
#define ZLTK_CONN_H

#include <zltk/common.h>
#include <zltk/net.h>
#include <zltk/poller.h>

ZL_BEGIN_DECLS

typedef struct zl_conn zl_conn_t;

typedef struct zl_conn_handler {
    /* Clients only: the connection attempt finished.  err is NULL on
     * success; on failure the connection then closes (on_err is NOT called
     * for a failed connect; on_closed is). */
    void (*on_connect)(zl_conn_t *c, const zl_error_t *err);
    /* Bytes arrived.  buf->data[0..buf->len) is valid during the call; take
     * zl_buf_ref(buf) to keep it without copying (unref it later, any
     * thread).  Mandatory. */
    void (*on_recv)(zl_conn_t *c, zl_buf_t *buf);
    /* The connection failed or ended: end of stream from the peer
     * (ZL_EOF), reset, send or idle timeout, …  Called once; the
     * connection then closes gracefully (what is queued is still sent)
     * except after a send timeout or reset.  The handler may still send
     * from inside on_err.  With half-close on, ZL_EOF does not close
     * (zl_conn_set_half_close()) and a later error is reported too. */
    void (*on_err)(zl_conn_t *c, const zl_error_t *err);
    /* The send queue drained completely after having been non-empty. */
    void (*on_flush)(zl_conn_t *c);
    /* busy=true: queued bytes rose above the high watermark; busy=false:
     * they fell to the low watermark again (a drain notice). */
    void (*on_busy)(zl_conn_t *c, bool busy);
    /* Periodic tick (every 2 s by default) while connecting or connected. */
    void (*on_manager)(zl_conn_t *c);
    /* Final callback; the connection's memory is freed after it returns
     * (unless other references remain, which then only see a closed
     * connection). */
    void (*on_closed)(zl_conn_t *c);
    void *reserved[4];
} zl_conn_handler_t;

/* Per-connection tuning.  Every value is literal: 0 means off (or "none",
 * "the kernel's") wherever a field has such a state, and never "the
 * default".  The defaults are where you start: ZL_CONN_OPTIONS_INIT (or
 * zl_conn_options_init()) holds the values in brackets.  A field without
 * an "off" state that is 0, or values that contradict each other, make
 * zl_client_connect() / zl_server_new() fail with -EINVAL and a logged
 * message, so a zero-filled struct is refused rather than quietly running
 * without its timeouts. */
typedef struct zl_conn_options {
    size_t high_water;    /* [1 MiB] queued bytes that make it busy; >0 */
    size_t low_water;     /* [256 KiB] queued bytes that end busy; at most
                             high_water (0: only an empty queue) */
    uint32_t send_timeout_ms; /* [10000] a queue that made no progress for
                                 this long errors the connection; also the
                                 socket's TCP_USER_TIMEOUT once connected.
                                 0: off */
    uint32_t manager_ms;  /* [2000] on_manager period; the send and idle
                             timeouts are checked on it; >0 */
    int sndbuf, rcvbuf;   /* [0: the kernel's] >0 sets SO_SNDBUF/RCVBUF */
    /* [0: off] SO_KEEPALIVE: the first probe after this long without a
     * byte from the peer (whole seconds, at least 1), then one every 10 s
     * (a third of that when shorter); the kernel resets the connection
     * after 9 unanswered probes, or with a send timeout (TCP_USER_TIMEOUT)
     * once the peer has been silent that long and a probe went unanswered. */
    uint32_t keepalive_ms;
    /* [0: off] no byte received or sent for this long: on_err with
     * ZL_ETIMEOUT (stage read, message "idle for … ms"), then a graceful
     * close.  At most 2147483647.  A peer that trickles a byte now and then
     * is not idle: bound those with a timer of the handler's own. */
    uint32_t idle_timeout_ms;
} zl_conn_options_t;

/* The defaults, as a brace initialiser:
 *     zl_conn_options_t o = ZL_CONN_OPTIONS_INIT;
 * (embedded in ZL_CLIENT_OPTIONS_INIT and ZL_SERVER_OPTIONS_INIT). */
#define ZL_CONN_OPTIONS_INIT                                                \
    {                                                                       \
        1024 * 1024, /* high_water */                                       \
        256 * 1024,  /* low_water */                                        \
        10000,       /* send_timeout_ms */                                  \
        2000,        /* manager_ms */                                       \
        0, 0,        /* sndbuf, rcvbuf */                                   \
        0,           /* keepalive_ms */                                     \
        0            /* idle_timeout_ms */                                  \
    }

/* Set *o to ZL_CONN_OPTIONS_INIT (for C++ and bindings).  Any thread. */
ZL_API void zl_conn_options_init(zl_conn_options_t *o);

/* zl_conn_send() result when the queue is above the high watermark. */
#define ZL_CONN_BUSY 1

/* Queue/write len bytes (copied).  Returns 0, ZL_CONN_BUSY (accepted, but
 * the queue is above the high watermark), ZL_ESHUTDOWN if the connection is
 * closing or closed (nothing sent), or -ENOMEM.  Any thread; from another
 * thread the bytes are copied and posted, and the result reflects the state
 * when posting (bytes posted just before the owner closes are dropped).
 * On the owner thread a write that fails at once reports the error before
 * this returns: on_err runs inside the call, which then returns
 * ZL_ESHUTDOWN — handlers must expect on_err from inside their own send. */
ZL_API int zl_conn_send(zl_conn_t *c, const void *data, size_t len);

/* Same, taking over one reference to buf instead of copying (zero-copy for
 * large payloads).  buf must not be modified afterwards. */
ZL_API int zl_conn_send_buf(zl_conn_t *c, zl_buf_t *buf);

/* Graceful close: stop reading, send everything queued (bounded by the send
 * timeout), close, then on_closed.  No on_err follows.  Idempotent.  Any
 * thread. */
ZL_API void zl_conn_close(zl_conn_t *c);

/* Abortive close: drop the queue (the number of bytes dropped is logged),
 * reset the connection (RST), then on_closed.  Any thread. */
ZL_API void zl_conn_abort(zl_conn_t *c);

/* Half-close: after the queue is sent, shut down the sending direction
 * (the peer reads end of stream); keep receiving until the peer closes.
 * Sends after it return ZL_ESHUTDOWN.  If the peer's end of stream came
 * first (half-close on), the connection then closes: on_closed follows.
 * Any thread. */
ZL_API void zl_conn_shutdown(zl_conn_t *c);

/* Half-close by the peer (off by default): on, the peer's end of stream
 * is delivered as on_err(ZL_EOF) but leaves the connection open for
 * sending, until zl_conn_shutdown(), a close, or an error (see
 * "Half-close" above).  Only while our own side is still open: after
 * zl_conn_shutdown() the peer's end of stream closes the connection as
 * by default.  Kept across a client's reconnects.  Owner thread, before
 * the peer's end of stream arrives (e.g. in on_connect); the getter as
 * the other accessors. */
ZL_API void zl_conn_set_half_close(zl_conn_t *c, bool on);
ZL_API bool zl_conn_half_close(const zl_conn_t *c);

/* Stop / resume reading.  Resuming drains what the kernel already holds,
 * even under edge triggering.  Owner thread, or posted from others. */
ZL_API void zl_conn_pause(zl_conn_t *c);
ZL_API void zl_conn_resume(zl_conn_t *c);

/* References for other threads (the owner needs none during callbacks). */
ZL_API zl_conn_t *zl_conn_ref(zl_conn_t *c);
ZL_API void zl_conn_unref(zl_conn_t *c);

/* Handler-owned state.  Owner thread. */
ZL_API void zl_conn_set_data(zl_conn_t *c, void *data);
ZL_API void *zl_conn_get_data(const zl_conn_t *c);

/* Accessors: owner thread (e.g. inside callbacks), or any thread once
 * on_closed has run.  zl_conn_is_closing() and zl_conn_poller() may be
 * called from any thread at any time. */
ZL_API zl_poller_t *zl_conn_poller(const zl_conn_t *c);
/* Peer / local address, kept after the connection failed or closed. */
ZL_API const zl_addr_t *zl_conn_peer(const zl_conn_t *c);
ZL_API const zl_addr_t *zl_conn_local(const zl_conn_t *c);
/* "client#3" / "conn#12": an identifier for logs, formatted into a
 * per-thread buffer valid until the next call on the same thread. */
ZL_API const char *zl_conn_name(const zl_conn_t *c);
/* Bytes queued in user space, not yet taken by the kernel. */
ZL_API size_t zl_conn_queued(const zl_conn_t *c);
ZL_API uint64_t zl_conn_bytes_sent(const zl_conn_t *c);
ZL_API uint64_t zl_conn_bytes_received(const zl_conn_t *c);
/* True while queued bytes are above the high watermark. */
ZL_API bool zl_conn_is_busy(const zl_conn_t *c);
/* True once close/abort was requested or an error was reported. */
ZL_API bool zl_conn_is_closing(const zl_conn_t *c);
/* The descriptor (-1 once closed).  For socket options only: never read,
 * write or close it. */
ZL_API int zl_conn_fd(const zl_conn_t *c);

ZL_END_DECLS

#endif
