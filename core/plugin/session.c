/* zltk — instances and sessions: running handler vtables over connections.
 *
 * An instance binds a plugin's zl_handler_t to a client or a server; each
 * connection becomes a session with the handler's state allocated beside
 * it.  The session sits between the core connection (which owns the
 * descriptor) and the handler, so that the handler acts only through the
 * host API and never sees a zl_conn_t.
 *
 * Lifetimes.  A session holds one reference to its connection and is itself
 * reference counted: the connection's hold (dropped after on_closed), the
 * instance's hold on a client's session, and one per timer, posted task,
 * worker job or session_ref().  "closed" is set on the owner thread just
 * before the handler's on_closed; timers, tasks and worker completions check
 * it there, so nothing reaches the handler after on_closed.
 */
#define G_LOG_DOMAIN "zltk"
#include "zl-internal.h"
#include "net-internal.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

typedef struct stimer stimer_t;

/* First field of both records: a server connection's data is the instance
 * until its on_connect turns it into a session. */
#define SESSION_MAGIC 0x5a4c5353u  /* "ZLSS" */
#define INSTANCE_MAGIC 0x5a4c494eu /* "ZLIN" */

struct zl_session {
    uint32_t magic;
    atomic_int refs;
    zl_instance_t *inst;
    zl_conn_t *conn; /* one reference, dropped when the session is freed */
    zl_poller_t *poller;
    zl_session_t *lnext, **lpprev;
    stimer_t *timers; /* armed session timers (owner thread) */
    /* Backpressure seen by the handler: busy while the connection's queue
     * (cbusy) or the layer's own backlog (lbusy, lqueued bytes) is above
     * the high mark; ubusy is what the handler was last told.  Poller
     * thread. */
    size_t lqueued;
    uint32_t serial; /* the connection's, for names; set once at open */
    bool opened, refused, closed;
    bool in_layer_err; /* inside the layer's on_err */
    bool swallow_err;  /* the connection reports what the handler knows */
    bool live;         /* linked in the instance's live list (under mu) */
    bool cbusy, lbusy, ubusy;
    bool failed; /* the handler's fail(): keep its error as the last one */
};
/* Every idle connection of a host carries one: keep it to 80 bytes (the
 * handler's state follows at the next 16-byte boundary). */
_Static_assert(sizeof(void *) != 8 || sizeof(struct zl_session) <= 80,
               "struct zl_session grew past 80 bytes");

#define STATE_OFFSET                                                        \
    ((sizeof(struct zl_session) + alignof(max_align_t) - 1) &              \
     ~(alignof(max_align_t) - 1))

#define ALIGN_UP(n) (((n) + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1))

static inline void *state_of(zl_session_t *s)
{
    return (char *)s + STATE_OFFSET;
}

/* Defined after struct zl_instance. */
static inline void *lstate_of(zl_session_t *s);

struct zl_instance {
    uint32_t magic;
    char *name, *host, *local_ip;
    bool server;
    const zl_handler_t *h;
    zl_plugin_t *plugin;
    const zl_layer_t *l; /* NULL: plain transport */
    zl_plugin_t *layer_plugin;
    void *ldata; /* the layer's */
    bool has_ldata;
    size_t loff; /* offset of the layer's state from the handler's */
    zl_instance_config_fn config;
    zl_instance_default_fn config_default;
    zl_instance_report_fn report;
    void *ctx;
    void (*on_finished)(zl_instance_t *inst, void *ctx);
    zl_client_options_t copts;
    zl_server_options_t sopts;
    void *data; /* the handler's */
    int errors; /* configuration problems reported (main thread) */
    bool has_data, started;
    atomic_bool stopping;
    zl_server_t *srv;
    zl_session_t *client; /* the instance's reference */
    zl_session_t *live;   /* layered server sessions, for a stop that says
                             goodbye through the layer (under mu) */
    atomic_uint_fast64_t sessions, active, connected, failed;
    atomic_int last_error;
    char last_message[512]; /* under msg_mu */
    pthread_mutex_t msg_mu;
    pthread_mutex_t mu; /* with cv: waiting for active == 0 */
    pthread_cond_t cv;
};

static inline void *lstate_of(zl_session_t *s)
{
    return (char *)s + STATE_OFFSET + s->inst->loff;
}

/* ------------------------------------------------------------ helpers */

static const char *plugin_name(const zl_instance_t *inst)
{
    return inst->plugin ? zl_plugin_get_desc(inst->plugin)->name : "handler";
}

static zl_session_t *session_ref(zl_session_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

static void session_unref(zl_session_t *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (s->conn)
        zl_conn_unref(s->conn);
    s->magic = 0;
    free(s);
}

static zl_session_t *session_new(zl_instance_t *inst)
{
    zl_session_t *s = calloc(1, STATE_OFFSET + inst->loff +
                                    (inst->l ? inst->l->state_size : 0));

    if (!s)
        return NULL;
    s->magic = SESSION_MAGIC;
    atomic_init(&s->refs, 1); /* the connection's hold */
    s->inst = inst;
    atomic_fetch_add(&inst->sessions, 1);
    atomic_fetch_add(&inst->active, 1);
    return s;
}

static void note_error(zl_instance_t *inst, const zl_error_t *err)
{
    atomic_store(&inst->last_error, err->code);
    if (inst->server)
        return; /* the message is a client's outcome; not per session */
    pthread_mutex_lock(&inst->msg_mu);
    g_strlcpy(inst->last_message, err->message ? err->message : "",
              sizeof(inst->last_message));
    pthread_mutex_unlock(&inst->msg_mu);
}

/* A session is over.  Under the lock, so that zl_instance_stop() (which
 * waits for active == 0 under it) cannot free the instance while this
 * still uses it, and so that whoever on_finished wakes sees active == 0. */
static void active_done(zl_instance_t *inst, bool finished, zl_session_t *s)
{
    pthread_mutex_lock(&inst->mu);
    if (s && s->live) {
        *s->lpprev = s->lnext;
        if (s->lnext)
            s->lnext->lpprev = s->lpprev;
        s->live = false;
    }
    atomic_fetch_sub(&inst->active, 1);
    if (finished && inst->on_finished)
        inst->on_finished(inst, inst->ctx);
    pthread_cond_broadcast(&inst->cv);
    pthread_mutex_unlock(&inst->mu);
}

static zl_session_t *session_of(zl_conn_t *c)
{
    zl_session_t *s = zl_conn_get_data(c);

    return s && s->magic == SESSION_MAGIC ? s : NULL;
}

/* Every connection callback starts here: the session, opened on first use
 * (on the owner thread, so on_open runs where the other callbacks do).
 * NULL when the handler must not be called. */
static void cancel_timers(zl_session_t *s);

static zl_session_t *enter(zl_conn_t *c)
{
    zl_session_t *s = session_of(c);
    zl_instance_t *inst;
    int rc;

    if (!s || s->closed)
        return NULL;
    if (!s->conn)
        s->conn = zl_conn_ref(c);
    if (!s->poller)
        s->poller = zl_conn_poller(c);
    if (!s->serial) /* before any other thread can hold a reference */
        s->serial = c->serial;
    if (s->opened)
        return s->refused ? NULL : s;
    s->opened = true;
    inst = s->inst;
    rc = inst->l && inst->l->on_open ? inst->l->on_open(s, lstate_of(s), inst)
                                      : 0;
    if (rc >= 0 && inst->h->on_open)
        rc = inst->h->on_open(s, state_of(s), inst);
    if (rc < 0) {
        g_warning("%s: %s.%s %s: refused by on_open: %s", plugin_name(inst),
                  inst->server ? "server" : "client", inst->name,
                  zl_conn_name(c), zl_strerror(rc));
        s->refused = true;
        cancel_timers(s); /* any it armed before refusing */
        zl_conn_abort(c);
        return NULL;
    }
    return s;
}

/* ------------------------------------------------------ conn callbacks */

static void on_connect(zl_conn_t *c, const zl_error_t *err)
{
    zl_session_t *s = session_of(c);

    if (s) {
        if (err) {
            atomic_fetch_add(&s->inst->failed, 1);
            note_error(s->inst, err);
        } else {
            atomic_fetch_add(&s->inst->connected, 1);
        }
    }
    s = enter(c);
    if (!s)
        return;
    if (!err && s->inst->l)
        s->inst->l->on_connect(s, lstate_of(s)); /* handshake first */
    else if (s->inst->h->on_connect)
        s->inst->h->on_connect(s, state_of(s), err);
}

static void srv_on_connect(zl_conn_t *c, const zl_error_t *err)
{
    zl_instance_t *inst = zl_conn_get_data(c);
    zl_session_t *s;

    if (!inst || inst->magic != INSTANCE_MAGIC)
        return;
    s = session_new(inst);
    if (!s) {
        g_warning("%s: server.%s: out of memory for a session; dropped",
                  plugin_name(inst), inst->name);
        zl_conn_set_data(c, NULL);
        zl_conn_abort(c);
        return;
    }
    atomic_fetch_add(&inst->connected, 1);
    zl_conn_set_data(c, s);
    /* Before the session is visible to zl_instance_stop() (which reads
     * them from the main thread): the lock orders these writes first. */
    s->conn = zl_conn_ref(c);
    s->poller = zl_conn_poller(c);
    if (inst->l) {
        pthread_mutex_lock(&inst->mu);
        s->lnext = inst->live;
        if (s->lnext)
            s->lnext->lpprev = &s->lnext;
        inst->live = s;
        s->lpprev = &inst->live;
        s->live = true;
        pthread_mutex_unlock(&inst->mu);
    }
    s = enter(c);
    if (!s)
        return;
    if (inst->l)
        inst->l->on_connect(s, lstate_of(s));
    else if (inst->h->on_connect)
        inst->h->on_connect(s, state_of(s), err);
}

static void on_recv(zl_conn_t *c, zl_buf_t *buf)
{
    zl_session_t *s = enter(c);

    if (!s)
        return;
    if (s->inst->l)
        s->inst->l->on_recv(s, lstate_of(s), buf);
    else
        s->inst->h->on_recv(s, state_of(s), buf);
}

static void on_err(zl_conn_t *c, const zl_error_t *err)
{
    zl_session_t *s = session_of(c);

    if (s && s->swallow_err)
        return;
    if (s && !s->failed)
        note_error(s->inst, err);
    s = enter(c);
    if (!s)
        return;
    if (s->inst->l && s->inst->l->on_err) {
        s->in_layer_err = true;
        s->inst->l->on_err(s, lstate_of(s), err);
        s->in_layer_err = false;
    } else if (s->inst->h->on_err)
        s->inst->h->on_err(s, state_of(s), err);
}

static void on_flush(zl_conn_t *c)
{
    zl_session_t *s = enter(c);

    if (s && s->inst->h->on_flush)
        s->inst->h->on_flush(s, state_of(s));
}

/* Tell the handler when the union of the two busy sources changes. */
static void busy_note(zl_session_t *s)
{
    bool want = s->cbusy || s->lbusy;

    if (want == s->ubusy)
        return;
    s->ubusy = want;
    if (s->inst->h->on_busy)
        s->inst->h->on_busy(s, state_of(s), want);
}

static void on_busy(zl_conn_t *c, bool busy)
{
    zl_session_t *s = enter(c);

    if (!s)
        return;
    s->cbusy = busy;
    busy_note(s);
}

static void on_manager(zl_conn_t *c)
{
    zl_session_t *s = enter(c);

    if (s && s->inst->l && s->inst->l->on_manager)
        s->inst->l->on_manager(s, lstate_of(s));
    s = enter(c); /* the layer may have closed it */
    if (s && s->inst->h->on_manager)
        s->inst->h->on_manager(s, state_of(s));
}


static void on_closed(zl_conn_t *c)
{
    zl_session_t *s = session_of(c);
    zl_instance_t *inst;
    bool finished;

    if (!s)
        return;
    inst = s->inst;
    if (!s->conn)
        s->conn = zl_conn_ref(c);
    s->closed = true;
    if (s->opened && inst->h->on_closed)
        inst->h->on_closed(s, state_of(s));
    if (s->opened && inst->l && inst->l->on_closed)
        inst->l->on_closed(s, lstate_of(s));
    cancel_timers(s);
    zl_conn_set_data(c, NULL);
    finished = !inst->server && !atomic_load(&inst->stopping);
    active_done(inst, finished, s);
    session_unref(s);
}

static const zl_conn_handler_t client_handler = {
    .on_connect = on_connect,
    .on_recv = on_recv,
    .on_err = on_err,
    .on_flush = on_flush,
    .on_busy = on_busy,
    .on_manager = on_manager,
    .on_closed = on_closed,
};

static const zl_conn_handler_t server_handler = {
    .on_connect = srv_on_connect,
    .on_recv = on_recv,
    .on_err = on_err,
    .on_flush = on_flush,
    .on_busy = on_busy,
    .on_manager = on_manager,
    .on_closed = on_closed,
};

/* ------------------------------------------------- host API: sessions */

/* With a layer, a handler's send/close/shutdown runs the layer's code,
 * which must happen on the session's poller: from elsewhere it is posted.
 * Without one, the connection's own any-thread functions do. */
enum { DOWN_SEND, DOWN_CLOSE, DOWN_SHUTDOWN, DOWN_PAUSE, DOWN_RESUME };

static bool layer_here(zl_session_t *s)
{
    return s->poller && zl_poller_is_current(s->poller);
}

static int layer_send(zl_session_t *s, const void *data, size_t len)
{
    if (s->closed || s->refused || !s->opened)
        return ZL_ESHUTDOWN;
    return s->inst->l->send(s, lstate_of(s), data, len);
}

static void down_task(zl_session_t *s, void *state, void *arg);

static int post_down(zl_session_t *s, int op, zl_buf_t *buf)
{
    uintptr_t tag = (uintptr_t)op;
    int rc;

    if (op == DOWN_SEND) {
        rc = zl__session_post(s, down_task, buf, (zl_destroy_fn)zl_buf_unref);
        if (rc < 0)
            zl_buf_unref(buf);
        return rc;
    }
    return zl__session_post(s, down_task, (void *)tag, NULL);
}

static void layer_down(zl_session_t *s, int op)
{
    const zl_layer_t *l = s->inst->l;
    void (*fn)(zl_session_t *, void *) = op == DOWN_CLOSE ? l->close : l->shutdown;

    if (s->closed || s->refused || !s->opened) {
        if (s->conn && op == DOWN_CLOSE)
            zl_conn_close(s->conn);
        return;
    }
    if (fn)
        fn(s, lstate_of(s));
    else if (op == DOWN_CLOSE)
        zl_conn_close(s->conn);
    else
        zl_conn_shutdown(s->conn);
}

/* Pause or resume the connection, and tell the layer, which may hold
 * decoded bytes it must stop (or go on) delivering. */
static void layer_pause(zl_session_t *s, bool paused)
{
    if (s->conn) {
        if (paused)
            zl_conn_pause(s->conn);
        else
            zl_conn_resume(s->conn);
    }
    if (s->inst->l->pause && s->opened && !s->closed && !s->refused)
        s->inst->l->pause(s, lstate_of(s), paused);
}

static void down_task(zl_session_t *s, void *state, void *arg)
{
    (void)state;
    switch ((uintptr_t)arg) {
    case DOWN_CLOSE:
    case DOWN_SHUTDOWN:
        layer_down(s, (int)(uintptr_t)arg);
        return;
    case DOWN_PAUSE:
    case DOWN_RESUME:
        layer_pause(s, (uintptr_t)arg == DOWN_PAUSE);
        return;
    default:
        break;
    }
    layer_send(s, ((zl_buf_t *)arg)->data, ((zl_buf_t *)arg)->len);
}

int zl__session_send(zl_session_t *s, const void *data, size_t len)
{
    zl_buf_t *copy;

    if (!s->inst->l)
        return s->conn ? zl_conn_send(s->conn, data, len) : ZL_ESHUTDOWN;
    if (layer_here(s))
        return layer_send(s, data, len);
    copy = zl_buf_new_copy(data, len);
    return copy ? post_down(s, DOWN_SEND, copy) : -ENOMEM;
}

int zl__session_send_buf(zl_session_t *s, zl_buf_t *buf)
{
    int rc;

    if (s->inst->l) {
        if (!layer_here(s))
            return post_down(s, DOWN_SEND, buf);
        rc = layer_send(s, buf->data, buf->len);
        zl_buf_unref(buf);
        return rc;
    }
    if (!s->conn) {
        zl_buf_unref(buf);
        return ZL_ESHUTDOWN;
    }
    return zl_conn_send_buf(s->conn, buf);
}

void zl__session_close(zl_session_t *s)
{
    if (s->inst->l) {
        if (layer_here(s))
            layer_down(s, DOWN_CLOSE);
        else if (post_down(s, DOWN_CLOSE, NULL) < 0 && s->conn)
            zl_conn_close(s->conn);
        return;
    }
    if (s->conn)
        zl_conn_close(s->conn);
}

void zl__session_abort(zl_session_t *s)
{
    if (s->conn)
        zl_conn_abort(s->conn);
}

/* Recorded before closing, so that what the closing connection reports
 * later (a send timeout, a TLS peer's end of stream) cannot turn the
 * handler's failure into a normal end. */
void zl__session_fail(zl_session_t *s, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (s->closed || s->refused || s->failed)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    note_error(s->inst, &(zl_error_t){.code = zl_err_kind(code),
                                      .sys = code < 0 && code > ZL__ERR_BASE
                                                 ? -code : 0,
                                      .message = msg});
    s->failed = true;
    zl__session_close(s);
}

void zl__session_shutdown(zl_session_t *s)
{
    if (s->inst->l) {
        if (layer_here(s))
            layer_down(s, DOWN_SHUTDOWN);
        else
            post_down(s, DOWN_SHUTDOWN, NULL);
        return;
    }
    if (s->conn)
        zl_conn_shutdown(s->conn);
}

/* ------------------------------------------------- host API: layers */

int zl__session_lower_send(zl_session_t *s, const void *data, size_t len)
{
    return s->conn ? zl_conn_send(s->conn, data, len) : ZL_ESHUTDOWN;
}

int zl__session_lower_send_buf(zl_session_t *s, zl_buf_t *buf)
{
    if (!s->conn) {
        zl_buf_unref(buf);
        return ZL_ESHUTDOWN;
    }
    return zl_conn_send_buf(s->conn, buf);
}

int zl__session_layer_queued(zl_session_t *s, size_t bytes)
{
    const zl__conn_cfg_t *cfg;

    s->lqueued = bytes;
    if (!s->conn)
        return 0;
    cfg = zl__cfg(s->conn);
    if (!s->lbusy && bytes > cfg->high_water)
        s->lbusy = true;
    else if (s->lbusy && bytes <= cfg->low_water)
        s->lbusy = false;
    if (s->opened && !s->closed && !s->refused)
        busy_note(s);
    return s->cbusy || s->lbusy ? ZL_CONN_BUSY : 0;
}

void zl__session_lower_close(zl_session_t *s)
{
    if (s->conn)
        zl_conn_close(s->conn);
}

void zl__session_lower_shutdown(zl_session_t *s)
{
    if (s->conn)
        zl_conn_shutdown(s->conn);
}

/* Nothing goes up once the connection is closing (the handler or the layer
 * closed or aborted it): the handler's next callback is on_closed. */
static bool up_ok(zl_session_t *s)
{
    return !s->closed && !s->refused && s->conn && !zl_conn_is_closing(s->conn);
}

void zl__session_upper_connect(zl_session_t *s)
{
    if (up_ok(s) && !s->inst->server)
        zl__client_reset_failures(s->conn);
    if (up_ok(s) && s->inst->h->on_connect)
        s->inst->h->on_connect(s, state_of(s), NULL);
}

void zl__session_upper_recv(zl_session_t *s, zl_buf_t *buf)
{
    if (up_ok(s))
        s->inst->h->on_recv(s, state_of(s), buf);
}

void zl__session_upper_err(zl_session_t *s, const zl_error_t *err)
{
    if (s->closed || s->refused)
        return;
    if (!s->failed)
        note_error(s->inst, err);
    if (s->inst->h->on_err)
        s->inst->h->on_err(s, state_of(s), err);
    /* Graceful, so that the layer's last words (an alert) still go out.
     * From inside the layer's on_err the connection ends by itself (or a
     * client reconnects) once on_err returns: closing it here would turn
     * a lost connection into a close by the user, and stop reconnecting. */
    if (!s->conn || s->in_layer_err)
        return;
    if (!s->inst->server && s->inst->copts.reconnect &&
        !zl_conn_is_closing(s->conn)) {
        /* A client that reconnects: fail the connection as the transport
         * would, so that the retry policy applies (the handler has been
         * told already). */
        s->swallow_err = true;
        zl__conn_fail(s->conn, err->code, err->sys, err->stage, "%s",
                      err->message ? err->message : "transport layer error");
        s->swallow_err = false;
        return;
    }
    zl_conn_close(s->conn);
}

void *zl__instance_layer_data(const zl_instance_t *inst)
{
    return inst->ldata;
}

const char *zl__instance_host(const zl_instance_t *inst)
{
    return inst->server ? NULL : inst->host;
}

const char *zl__session_transport_info(zl_session_t *s, const char *key)
{
    const zl_layer_t *l = s->inst->l;

    if (!l || !l->info || !key || s->closed || !s->opened)
        return NULL;
    return l->info(s, lstate_of(s), key);
}

/* With a layer, on the poller thread (posted from elsewhere, in order with
 * sends and closes) so that the layer learns of it too. */
static void session_pause(zl_session_t *s, bool paused)
{
    int op = paused ? DOWN_PAUSE : DOWN_RESUME;

    if (!s->inst->l) {
        if (s->conn)
            paused ? zl_conn_pause(s->conn) : zl_conn_resume(s->conn);
        return;
    }
    if (layer_here(s))
        layer_pause(s, paused);
    else if (post_down(s, op, NULL) < 0 && s->conn)
        paused ? zl_conn_pause(s->conn) : zl_conn_resume(s->conn);
}

void zl__session_pause(zl_session_t *s)
{
    session_pause(s, true);
}

void zl__session_resume(zl_session_t *s)
{
    session_pause(s, false);
}

const zl_addr_t *zl__session_peer(const zl_session_t *s)
{
    return zl_conn_peer(s->conn);
}

const zl_addr_t *zl__session_local(const zl_session_t *s)
{
    return zl_conn_local(s->conn);
}

const char *zl__session_name(const zl_session_t *s)
{
    static _Thread_local char buf[32];

    snprintf(buf, sizeof(buf), "%s#%u", s->inst->server ? "session" : "client",
             s->serial);
    return buf;
}

zl_instance_t *zl__session_instance(const zl_session_t *s)
{
    return s->inst;
}

zl_poller_t *zl__session_poller(const zl_session_t *s)
{
    return s->poller;
}

size_t zl__session_queued(const zl_session_t *s)
{
    return (s->conn ? zl_conn_queued(s->conn) : 0) + s->lqueued;
}

zl_session_t *zl__session_ref(zl_session_t *s)
{
    return session_ref(s);
}

void zl__session_unref(zl_session_t *s)
{
    session_unref(s);
}

/* Timers: linked into the session so that close cancels them. */
struct stimer {
    stimer_t *next, **pprev; /* pprev NULL: unlinked */
    zl_session_t *s;
    zl_session_timer_fn fn;
    void *arg;
    zl_destroy_fn destroy;
    zl_timer_t *handle;
};

static void stimer_unlink(stimer_t *t)
{
    if (!t->pprev)
        return;
    *t->pprev = t->next;
    if (t->next)
        t->next->pprev = t->pprev;
    t->pprev = NULL;
}

static uint64_t stimer_fire(void *arg)
{
    stimer_t *t = arg;

    if (t->s->closed || t->s->refused)
        return 0;
    return t->fn(t->s, state_of(t->s), t->arg);
}

static void stimer_destroy(void *arg)
{
    stimer_t *t = arg;

    stimer_unlink(t);
    if (t->handle)
        zl_timer_release(t->handle);
    if (t->destroy)
        t->destroy(t->arg);
    session_unref(t->s);
    free(t);
}

static void cancel_timers(zl_session_t *s)
{
    while (s->timers) {
        stimer_t *t = s->timers;
        zl_timer_t *h = t->handle;

        stimer_unlink(t);
        t->handle = NULL;
        zl_timer_cancel(h); /* destroy runs now, or after a running fn */
    }
}

int zl__session_add_timer(zl_session_t *s, uint64_t delay_ms,
                          zl_session_timer_fn fn, void *arg,
                          zl_destroy_fn destroy)
{
    stimer_t *t;
    int rc;

    if (!fn)
        return -EINVAL;
    if (!s->poller || !zl_poller_is_current(s->poller)) {
        g_warning("%s: add_timer must be called on the session's poller "
                  "(inside a callback); use post from other threads",
                  plugin_name(s->inst));
        return -EPERM;
    }
    if (s->closed)
        return ZL_ESHUTDOWN;
    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->s = session_ref(s);
    t->fn = fn;
    t->arg = arg;
    t->destroy = destroy;
    rc = zl_poller_add_timer(s->poller, delay_ms, stimer_fire, t,
                             stimer_destroy, &t->handle);
    if (rc < 0) {
        session_unref(s);
        free(t);
        return rc;
    }
    t->next = s->timers;
    if (t->next)
        t->next->pprev = &t->next;
    s->timers = t;
    t->pprev = &s->timers;
    return 0;
}

/* Posted tasks and worker jobs share one record. */
typedef struct sjob {
    zl_session_t *s;
    zl_session_fn fn;
    zl_work_fn work;
    void *arg;
    zl_destroy_fn destroy;
} sjob_t;

static sjob_t *sjob_new(zl_session_t *s, zl_session_fn fn, void *arg,
                        zl_destroy_fn destroy)
{
    sjob_t *j = calloc(1, sizeof(*j));

    if (j) {
        j->s = session_ref(s);
        j->fn = fn;
        j->arg = arg;
        j->destroy = destroy;
    }
    return j;
}

static void sjob_free(void *arg)
{
    sjob_t *j = arg;

    if (j->destroy)
        j->destroy(j->arg);
    session_unref(j->s);
    free(j);
}

/* On the owner poller: the session's closed flag is only read here. */
static void sjob_done(void *arg)
{
    sjob_t *j = arg;

    if (j->fn && !j->s->closed && j->s->opened && !j->s->refused)
        j->fn(j->s, state_of(j->s), j->arg);
}

static void sjob_run_task(void *arg)
{
    sjob_done(arg);
    sjob_free(arg);
}

static void sjob_work(void *arg)
{
    sjob_t *j = arg;

    j->work(j->arg);
}

int zl__session_post(zl_session_t *s, zl_session_fn fn, void *arg,
                     zl_destroy_fn destroy)
{
    sjob_t *j;
    int rc;

    if (!fn || !s->poller)
        return !fn ? -EINVAL : ZL_ESHUTDOWN;
    j = sjob_new(s, fn, arg, destroy);
    if (!j)
        return -ENOMEM;
    rc = zl_poller_async(s->poller, sjob_run_task, j);
    if (rc < 0) {
        session_unref(s);
        free(j);
    }
    return rc;
}

int zl__session_submit(zl_session_t *s, zl_work_fn work, zl_session_fn done,
                       void *arg, zl_destroy_fn destroy)
{
    zl_worker_pool_t *pool = zl_runtime_workers();
    sjob_t *j;
    int rc;

    if (!work)
        return -EINVAL;
    if (!pool || !s->poller)
        return ZL_ESHUTDOWN;
    j = sjob_new(s, done, arg, destroy);
    if (!j)
        return -ENOMEM;
    j->work = work;
    rc = zl_worker_submit(pool, s->poller, sjob_work, sjob_done, sjob_free, j,
                          NULL);
    if (rc < 0) {
        session_unref(s);
        free(j);
    }
    return rc;
}

void zl__session_log(zl_session_t *s, zl_log_level_t level, const char *fmt,
                     ...)
{
    static const GLogLevelFlags map[] = {
        G_LOG_LEVEL_CRITICAL, G_LOG_LEVEL_CRITICAL, G_LOG_LEVEL_WARNING,
        G_LOG_LEVEL_MESSAGE,  G_LOG_LEVEL_INFO,     G_LOG_LEVEL_DEBUG};
    zl_instance_t *inst = s->inst;
    char *msg;
    va_list ap;

    if ((unsigned)level > ZL_LOG_DEBUG)
        level = ZL_LOG_MESSAGE;
    if (level > zl_log_get_level())
        return; /* discarded anyway: skip the formatting */
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_log_structured("zltk-plugin", map[level], "MESSAGE", "%s: %s.%s %s: %s",
                     plugin_name(inst), inst->server ? "server" : "client",
                     inst->name, zl__session_name(s), msg);
    g_free(msg);
}

/* ----------------------------------------------- host API: instances */

const char *zl__instance_name(const zl_instance_t *inst)
{
    return inst->name;
}

bool zl__instance_is_server(const zl_instance_t *inst)
{
    return inst->server;
}

void *zl__instance_data(const zl_instance_t *inst)
{
    return inst->data;
}

const char *zl__instance_config_string(const zl_instance_t *inst,
                                       const char *key)
{
    return inst->config && key ? inst->config(inst->ctx, key) : NULL;
}

bool zl__instance_config_is_default(const zl_instance_t *inst,
                                    const char *key)
{
    return inst->config_default && key &&
           zl__instance_config_string(inst, key) &&
           inst->config_default(inst->ctx, key);
}

static void report(zl_instance_t *inst, const char *key, const char *msg)
{
    inst->errors++;
    if (inst->report)
        inst->report(inst->ctx, key, msg);
    else
        g_warning("[%s.%s] %s%s%s", inst->server ? "server" : "client",
                  inst->name, key ? key : "", key ? ": " : "", msg);
}

void zl__instance_config_error(zl_instance_t *inst, const char *key,
                               const char *fmt, ...)
{
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    report(inst, key, msg);
    g_free(msg);
}

int zl__instance_config_int(const zl_instance_t *inst, const char *key,
                            int64_t *out)
{
    const char *v = zl__instance_config_string(inst, key);
    int rc;

    if (!v)
        return -ENOENT;
    rc = zl_parse_int(v, INT64_MIN, INT64_MAX, out);
    if (rc < 0)
        zl__instance_config_error((zl_instance_t *)inst, key,
                                  "'%s' is not an integer", v);
    return rc;
}

int zl__instance_config_bool(const zl_instance_t *inst, const char *key,
                             bool *out)
{
    const char *v = zl__instance_config_string(inst, key);
    int rc;

    if (!v)
        return -ENOENT;
    rc = zl_parse_bool(v, out);
    if (rc < 0)
        zl__instance_config_error((zl_instance_t *)inst, key,
                                  "'%s' is not a boolean (" ZL_BOOL_WORDS ")",
                                  v);
    return rc;
}

/* ------------------------------------------------- public: instances */

int zl_instance_new(zl_instance_t **out, const zl_instance_options_t *o)
{
    zl_instance_t *inst;
    int rc = 0;

    *out = NULL;
    if (!o || !o->name || !*o->name || !o->handler) {
        g_warning("zl_instance_new: a name and a handler are required");
        return -EINVAL;
    }
    if (o->handler->struct_size < ZL_HANDLER_SIZE_1_0 ||
        !o->handler->on_recv) {
        g_warning("zl_instance_new: %s.%s: the handler is malformed (needs "
                  "struct_size and on_recv)",
                  o->server ? "server" : "client", o->name);
        return -EINVAL;
    }
    if (o->layer && (o->layer->struct_size < ZL_LAYER_SIZE_1_0 ||
                     !o->layer->on_connect || !o->layer->on_recv ||
                     !o->layer->send)) {
        g_warning("zl_instance_new: %s.%s: the layer is malformed (needs "
                  "struct_size, on_connect, on_recv and send)",
                  o->server ? "server" : "client", o->name);
        return -EINVAL;
    }
    inst = calloc(1, sizeof(*inst));
    if (!inst)
        return -ENOMEM;
    inst->l = o->layer;
    inst->layer_plugin = o->layer_plugin;
    inst->loff = ALIGN_UP(o->handler->state_size);
    inst->magic = INSTANCE_MAGIC;
    inst->name = g_strdup(o->name);
    inst->server = o->server;
    inst->h = o->handler;
    inst->plugin = o->plugin;
    inst->config = o->config;
    inst->config_default = o->config_default;
    inst->report = o->report;
    inst->ctx = o->ctx;
    inst->on_finished = o->on_finished;
    inst->copts = o->client;
    inst->sopts = o->server_opts;
    inst->host = g_strdup(o->server ? o->server_opts.host : o->client.host);
    inst->local_ip = g_strdup(o->client.local_ip);
    inst->copts.host = inst->host;
    inst->copts.local_ip = inst->local_ip;
    inst->copts.name = inst->name;
    inst->sopts.host = inst->host;
    inst->sopts.name = inst->name;
    atomic_init(&inst->stopping, false);
    pthread_mutex_init(&inst->mu, NULL);
    pthread_mutex_init(&inst->msg_mu, NULL);
    pthread_cond_init(&inst->cv, NULL);
    if (inst->h->instance_new) {
        rc = inst->h->instance_new(inst, &inst->data);
        if (rc < 0 && !inst->errors)
            report(inst, NULL, zl_strerror(rc));
        inst->has_data = rc >= 0;
    }
    if (inst->l && inst->l->instance_new) {
        rc = inst->l->instance_new(inst, &inst->ldata);
        if (rc < 0 && !inst->errors)
            report(inst, "transport", zl_strerror(rc));
        inst->has_ldata = rc >= 0;
    }
    if (inst->errors) {
        zl_instance_free(inst);
        return rc == -ENOMEM ? -ENOMEM : -EINVAL;
    }
    *out = inst;
    return 0;
}

int zl_instance_set_address(zl_instance_t *inst, const char *host,
                            uint16_t port)
{
    if (inst->started || inst->server || !host || !*host || !port)
        return -EINVAL;
    g_free(inst->host);
    inst->host = g_strdup(host);
    inst->copts.host = inst->host;
    inst->copts.port = port;
    return 0;
}

typedef struct start_ctx {
    zl_instance_t *inst;
    zl_session_t *s;
    int rc;
} start_ctx_t;

/* On the client's poller, so that callbacks (which may run inline) and
 * this code see the session from one thread. */
static void client_start(void *arg)
{
    start_ctx_t *sc = arg;
    zl_conn_t *c = NULL;

    sc->rc = zl_client_connect(&c, &sc->inst->copts, &client_handler, sc->s);
    if (sc->rc < 0)
        return;
    if (sc->inst->l)
        zl__client_defer_reset(c);
    if (!sc->s->conn)
        sc->s->conn = c;
    else
        zl_conn_unref(c);
}

int zl_instance_start(zl_instance_t *inst)
{
    int rc;

    if (inst->started)
        return -EALREADY;
    if (!zl_runtime_pollers()) {
        g_warning("%s.%s: the runtime is not running",
                  inst->server ? "server" : "client", inst->name);
        return -EINVAL;
    }
    inst->started = true;
    if (inst->server) {
        rc = zl_server_new(&inst->srv, &inst->sopts, &server_handler, inst);
        if (rc < 0)
            g_warning("server.%s: cannot listen on %s:%u: %s", inst->name,
                      inst->host ? inst->host : "*", inst->sopts.port,
                      zl_strerror(rc));
        return rc;
    } else {
        start_ctx_t sc = {.inst = inst};

        if (!inst->copts.poller)
            inst->copts.poller = zl_runtime_get_poller(false);
        sc.s = session_new(inst);
        if (!sc.s)
            return -ENOMEM;
        sc.s->poller = inst->copts.poller;
        inst->client = session_ref(sc.s);
        rc = zl_poller_sync(inst->copts.poller, client_start, &sc);
        if (rc == 0)
            rc = sc.rc;
        if (rc < 0) {
            g_warning("client.%s: cannot start connecting to %s:%u: %s",
                      inst->name, inst->host, inst->copts.port,
                      zl_strerror(rc));
            session_unref(inst->client); /* ours */
            inst->client = NULL;
            active_done(inst, false, NULL);
            session_unref(sc.s); /* the connection's, never taken */
        }
        return rc;
    }
}

/* A layered server's sessions are closed through the layer first (TLS
 * sends close_notify), with a bounded wait, before zl_server_free() closes
 * whatever is left at the connection level. */
#define LAYER_STOP_MS 6000

static void close_live_sessions(zl_instance_t *inst)
{
    GPtrArray *all = g_ptr_array_new();
    struct timespec until;

    pthread_mutex_lock(&inst->mu);
    for (zl_session_t *s = inst->live; s; s = s->lnext)
        g_ptr_array_add(all, session_ref(s));
    pthread_mutex_unlock(&inst->mu);
    for (guint i = 0; i < all->len; i++) {
        zl__session_close(all->pdata[i]); /* posted to its poller */
        session_unref(all->pdata[i]);
    }
    g_ptr_array_free(all, TRUE);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += LAYER_STOP_MS / 1000;
    pthread_mutex_lock(&inst->mu);
    while (inst->live &&
           pthread_cond_timedwait(&inst->cv, &inst->mu, &until) == 0)
        ;
    pthread_mutex_unlock(&inst->mu);
}

void zl_instance_stop(zl_instance_t *inst)
{
    if (!inst || atomic_exchange(&inst->stopping, true))
        return;
    if (inst->server) {
        if (inst->l && inst->srv)
            close_live_sessions(inst);
        zl_server_free(inst->srv);
        inst->srv = NULL;
    } else if (inst->client) {
        zl__session_close(inst->client);
    }
    pthread_mutex_lock(&inst->mu);
    while (atomic_load(&inst->active))
        pthread_cond_wait(&inst->cv, &inst->mu);
    pthread_mutex_unlock(&inst->mu);
    session_unref(inst->client);
    inst->client = NULL;
}

void zl_instance_free(zl_instance_t *inst)
{
    if (!inst)
        return;
    zl_instance_stop(inst);
    if (inst->has_ldata && inst->l->instance_free)
        inst->l->instance_free(inst, inst->ldata);
    if (inst->has_data && inst->h->instance_free)
        inst->h->instance_free(inst, inst->data);
    pthread_cond_destroy(&inst->cv);
    pthread_mutex_destroy(&inst->mu);
    pthread_mutex_destroy(&inst->msg_mu);
    inst->magic = 0;
    g_free(inst->name);
    g_free(inst->host);
    g_free(inst->local_ip);
    free(inst);
}

const char *zl_instance_get_name(const zl_instance_t *inst)
{
    return inst->name;
}

const zl_addr_t *zl_instance_server_addr(const zl_instance_t *inst)
{
    return inst->srv ? zl_server_addr(inst->srv) : NULL;
}

void zl_instance_get_stats(const zl_instance_t *inst, zl_instance_stats_t *o)
{
    o->sessions = atomic_load(&inst->sessions);
    o->active = atomic_load(&inst->active);
    o->connected = atomic_load(&inst->connected);
    o->failed = atomic_load(&inst->failed);
    o->last_error = atomic_load(&inst->last_error);
}

char *zl_instance_last_error(zl_instance_t *inst, char *buf, size_t len)
{
    pthread_mutex_lock(&inst->msg_mu);
    g_strlcpy(buf, inst->last_message, len);
    pthread_mutex_unlock(&inst->msg_mu);
    return buf;
}
