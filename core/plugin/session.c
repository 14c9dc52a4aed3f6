/* zltk — sessions: one handler's state over one connection.
 *
 * An instance (instance.c) binds a plugin's zl_handler_t to a client or a
 * server; each of its connections becomes a session with the handler's
 * state allocated beside it.  The session sits between the core connection
 * (which owns the descriptor) and the handler, so that the handler acts
 * only through the host API and never sees a zl_conn_t.  Here: the
 * connection callbacks, the handler's send/close/pause, the session's
 * timers, posted tasks and worker jobs.  Lifetimes: plugin-internal.h.
 */
#define G_LOG_DOMAIN "zltk"
#include "plugin-internal.h"
#include "net-internal.h"

#include <stdarg.h>
#include <stdio.h>

/* ------------------------------------------------------------ helpers */

zl_session_t *zl_session_ref(zl_session_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void zl_session_unref(zl_session_t *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (s->conn)
        zl_conn_unref(s->conn);
    free(s);
}

zl_session_t *zl__session_new(zl_instance_t *inst)
{
    zl_session_t *s = calloc(1, ZL__STATE_OFFSET + inst->loff +
                                    (inst->l ? ZL__ALIGN_UP(inst->l->state_size) +
                                                   sizeof(zl__lnode_t)
                                             : 0));

    if (!s)
        return NULL;
    s->hdr.session = true;
    atomic_init(&s->refs, 1); /* the connection's hold */
    s->inst = inst;
    atomic_fetch_add(&inst->sessions, 1);
    atomic_fetch_add(&inst->active, 1);
    return s;
}

void zl__session_note_error(zl_instance_t *inst, const zl_error_t *err)
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
void zl__session_done(zl_instance_t *inst, bool finished, zl_session_t *s)
{
    pthread_mutex_lock(&inst->mu);
    if (s && s->live) {
        zl__lnode_t *n = zl__lnode_of(s);
        *n->pprev = n->next;
        if (n->next)
            zl__lnode_of(n->next)->pprev = n->pprev;
        s->live = false;
    }
    atomic_fetch_sub(&inst->active, 1);
    if (finished && inst->on_finished)
        inst->on_finished(inst, inst->finished_ctx);
    pthread_cond_broadcast(&inst->cv);
    pthread_mutex_unlock(&inst->mu);
}

/* The handler's on_eof (half-close), if it has one and its struct_size
 * covers it; NULL otherwise. */
static void (*eof_fn(const zl_instance_t *inst))(zl_session_t *, void *)
{
    const zl_handler_t *h = inst->h;

    if (h->struct_size < offsetof(zl_handler_t, on_eof) + sizeof(h->on_eof))
        return NULL;
    return h->on_eof;
}

/* Every connection callback starts here: the session, opened on first use
 * (on the owner thread, so on_open runs where the other callbacks do).
 * NULL when the handler must not be called. */
static void cancel_timers(zl_session_t *s);

static zl_session_t *enter(zl_conn_t *c)
{
    zl_session_t *s = zl__session_of(c);
    zl_instance_t *inst;
    int rc;

    if (!s || s->closed)
        return NULL;
    if (!s->conn)
        s->conn = zl_conn_ref(c);
    if (!s->poller)
        s->poller = zl_conn_poller(c);
    if (!s->serial) /* before any other thread can hold a reference */
        s->serial = zl__conn_serial(c);
    if (s->opened)
        return s->refused ? NULL : s;
    s->opened = true;
    inst = s->inst;
    rc = inst->l && inst->l->on_open
             ? inst->l->on_open(s, zl__lstate_of(s), inst)
             : 0;
    if (rc >= 0 && inst->h->on_open)
        rc = inst->h->on_open(s, zl__state_of(s), inst);
    if (rc < 0) {
        g_warning("%s: %s.%s %s: refused by on_open: %s",
                  zl__instance_plugin_name(inst),
                  inst->server ? "server" : "client", inst->name,
                  zl_session_name(s), zl_strerror(rc));
        s->refused = true;
        cancel_timers(s); /* any it armed before refusing */
        zl_conn_abort(c);
        return NULL;
    }
    /* Half-close: the peer's end of stream leaves the sending side open.
     * Not through a layer: tls ends both directions at close_notify. */
    if (!inst->l && eof_fn(inst))
        zl_conn_set_half_close(c, true);
    return s;
}

/* ------------------------------------------------------ conn callbacks */

static void on_connect(zl_conn_t *c, const zl_error_t *err)
{
    zl_session_t *s = zl__session_of(c);

    if (s) {
        if (err) {
            atomic_fetch_add(&s->inst->failed, 1);
            zl__session_note_error(s->inst, err);
        } else {
            atomic_fetch_add(&s->inst->connected, 1);
        }
    }
    s = enter(c);
    if (!s)
        return;
    if (!err && s->inst->l)
        s->inst->l->on_connect(s, zl__lstate_of(s)); /* handshake first */
    else if (s->inst->h->on_connect)
        s->inst->h->on_connect(s, zl__state_of(s), err);
}

static void srv_on_connect(zl_conn_t *c, const zl_error_t *err)
{
    zl__conn_data_t *d = zl_conn_get_data(c);
    zl_instance_t *inst = (zl_instance_t *)d;
    zl_session_t *s;

    if (!d || d->session) /* not the instance: the session exists */
        return;
    s = zl__session_new(inst);
    if (!s) {
        g_warning("%s: server.%s: out of memory for a session; dropped",
                  zl__instance_plugin_name(inst), inst->name);
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
        zl__lnode_t *n = zl__lnode_of(s);
        pthread_mutex_lock(&inst->mu);
        n->next = inst->live;
        if (n->next)
            zl__lnode_of(n->next)->pprev = &n->next;
        inst->live = s;
        n->pprev = &inst->live;
        s->live = true;
        pthread_mutex_unlock(&inst->mu);
    }
    s = enter(c);
    if (!s)
        return;
    if (inst->l)
        inst->l->on_connect(s, zl__lstate_of(s));
    else if (inst->h->on_connect)
        inst->h->on_connect(s, zl__state_of(s), err);
}

static void on_recv(zl_conn_t *c, zl_buf_t *buf)
{
    zl_session_t *s = enter(c);

    if (!s)
        return;
    if (s->inst->l)
        s->inst->l->on_recv(s, zl__lstate_of(s), buf);
    else
        s->inst->h->on_recv(s, zl__state_of(s), buf);
}

static void on_err(zl_conn_t *c, const zl_error_t *err)
{
    zl_session_t *s = zl__session_of(c);

    if (s && s->swallow_err)
        return;
    if (s && !s->failed)
        zl__session_note_error(s->inst, err);
    s = enter(c);
    if (!s)
        return;
    if (s->inst->l && s->inst->l->on_err) {
        s->in_layer_err = true;
        s->inst->l->on_err(s, zl__lstate_of(s), err);
        s->in_layer_err = false;
    } else {
        zl__session_handler_err(s, err);
    }
}

/* The handler hears of an error, or of the peer's end of stream: on_eof
 * for a handler that has it (half-close), else on_err. */
void zl__session_handler_err(zl_session_t *s, const zl_error_t *err)
{
    void (*eof)(zl_session_t *, void *) = eof_fn(s->inst);

    if (err->code == ZL_EOF && eof)
        eof(s, zl__state_of(s));
    else if (s->inst->h->on_err)
        s->inst->h->on_err(s, zl__state_of(s), err);
}

static void on_flush(zl_conn_t *c)
{
    zl_session_t *s = enter(c);

    if (s && s->inst->h->on_flush)
        s->inst->h->on_flush(s, zl__state_of(s));
}

/* Tell the handler when the union of the two busy sources changes. */
void zl__session_busy_note(zl_session_t *s)
{
    bool want = s->cbusy || s->lbusy;

    if (want == s->ubusy)
        return;
    s->ubusy = want;
    if (s->inst->h->on_busy)
        s->inst->h->on_busy(s, zl__state_of(s), want);
}

static void on_busy(zl_conn_t *c, bool busy)
{
    zl_session_t *s = enter(c);

    if (!s)
        return;
    s->cbusy = busy;
    zl__session_busy_note(s);
}

static void on_manager(zl_conn_t *c)
{
    zl_session_t *s = enter(c);

    if (s && s->inst->l && s->inst->l->on_manager)
        s->inst->l->on_manager(s, zl__lstate_of(s));
    s = enter(c); /* the layer may have closed it */
    if (s && s->inst->h->on_manager)
        s->inst->h->on_manager(s, zl__state_of(s));
}


static void on_closed(zl_conn_t *c)
{
    zl_session_t *s = zl__session_of(c);
    zl_instance_t *inst;
    bool finished;

    if (!s)
        return;
    inst = s->inst;
    if (!s->conn)
        s->conn = zl_conn_ref(c);
    s->closed = true;
    if (s->opened && inst->h->on_closed)
        inst->h->on_closed(s, zl__state_of(s));
    if (s->opened && inst->l && inst->l->on_closed)
        inst->l->on_closed(s, zl__lstate_of(s));
    cancel_timers(s);
    zl_conn_set_data(c, NULL);
    finished = !inst->server && !atomic_load(&inst->stopping);
    zl__session_done(inst, finished, s);
    zl_session_unref(s);
}

const zl_conn_handler_t zl__client_conn_handler = {
    .on_connect = on_connect,
    .on_recv = on_recv,
    .on_err = on_err,
    .on_flush = on_flush,
    .on_busy = on_busy,
    .on_manager = on_manager,
    .on_closed = on_closed,
};

const zl_conn_handler_t zl__server_conn_handler = {
    .on_connect = srv_on_connect,
    .on_recv = on_recv,
    .on_err = on_err,
    .on_flush = on_flush,
    .on_busy = on_busy,
    .on_manager = on_manager,
    .on_closed = on_closed,
};

/* ------------------------------------------------- host API: sessions */

int zl_session_send(zl_session_t *s, const void *data, size_t len)
{
    if (s->inst->l)
        return zl__layer_send(s, data, len);
    return s->conn ? zl_conn_send(s->conn, data, len) : ZL_ESHUTDOWN;
}

int zl_session_send_buf(zl_session_t *s, zl_buf_t *buf)
{
    if (s->inst->l)
        return zl__layer_send_buf(s, buf);
    if (!s->conn) {
        zl_buf_unref(buf);
        return ZL_ESHUTDOWN;
    }
    return zl_conn_send_buf(s->conn, buf);
}

void zl_session_close(zl_session_t *s)
{
    if (s->inst->l)
        zl__layer_close(s);
    else if (s->conn)
        zl_conn_close(s->conn);
}

void zl_session_abort(zl_session_t *s)
{
    if (s->conn)
        zl_conn_abort(s->conn);
}

/* Recorded before closing, so that what the closing connection reports
 * later (a send timeout, a TLS peer's end of stream) cannot turn the
 * handler's failure into a normal end. */
void zl_session_fail(zl_session_t *s, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (s->closed || s->refused || s->failed)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    zl__session_note_error(s->inst, &(zl_error_t){.code = zl_err_kind(code),
                                      .sys = code < 0 && code > ZL__ERR_BASE
                                                 ? -code : 0,
                                      .message = msg});
    s->failed = true;
    zl_session_close(s);
}

void zl_session_shutdown(zl_session_t *s)
{
    if (s->inst->l)
        zl__layer_shutdown(s);
    else if (s->conn)
        zl_conn_shutdown(s->conn);
}

/* With a layer, the layer learns of it too (layer.c). */
static void session_pause(zl_session_t *s, bool paused)
{
    if (s->inst->l)
        zl__layer_pause(s, paused);
    else if (s->conn)
        paused ? zl_conn_pause(s->conn) : zl_conn_resume(s->conn);
}

void zl_session_pause(zl_session_t *s)
{
    session_pause(s, true);
}

void zl_session_resume(zl_session_t *s)
{
    session_pause(s, false);
}

const zl_addr_t *zl_session_peer(const zl_session_t *s)
{
    return zl_conn_peer(s->conn);
}

const zl_addr_t *zl_session_local(const zl_session_t *s)
{
    return zl_conn_local(s->conn);
}

const char *zl_session_name(const zl_session_t *s)
{
    static _Thread_local char buf[32];

    snprintf(buf, sizeof(buf), "%s#%u", s->inst->server ? "session" : "client",
             s->serial);
    return buf;
}

zl_instance_t *zl_session_instance(const zl_session_t *s)
{
    return s->inst;
}

zl_poller_t *zl_session_poller(const zl_session_t *s)
{
    return s->poller;
}

size_t zl_session_queued(const zl_session_t *s)
{
    return (s->conn ? zl_conn_queued(s->conn) : 0) +
           (s->inst->l ? zl__lnode_of((zl_session_t *)s)->queued : 0);
}


/* ------------------------------------ timers, tasks and worker jobs */

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
    return t->fn(t->s, zl__state_of(t->s), t->arg);
}

static void stimer_destroy(void *arg)
{
    stimer_t *t = arg;

    stimer_unlink(t);
    if (t->handle)
        zl_timer_release(t->handle);
    if (t->destroy)
        t->destroy(t->arg);
    zl_session_unref(t->s);
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

int zl_session_add_timer(zl_session_t *s, uint64_t delay_ms,
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
                  zl__instance_plugin_name(s->inst));
        return -EPERM;
    }
    if (s->closed)
        return ZL_ESHUTDOWN;
    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->s = zl_session_ref(s);
    t->fn = fn;
    t->arg = arg;
    t->destroy = destroy;
    rc = zl_poller_add_timer(s->poller, delay_ms, stimer_fire, t,
                             stimer_destroy, &t->handle);
    if (rc < 0) {
        zl_session_unref(s);
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
        j->s = zl_session_ref(s);
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
    zl_session_unref(j->s);
    free(j);
}

/* On the owner poller: the session's closed flag is only read here. */
static void sjob_done(void *arg)
{
    sjob_t *j = arg;

    if (j->fn && !j->s->closed && j->s->opened && !j->s->refused)
        j->fn(j->s, zl__state_of(j->s), j->arg);
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

int zl_session_post(zl_session_t *s, zl_session_fn fn, void *arg,
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
        zl_session_unref(s);
        free(j);
    }
    return rc;
}

int zl_session_submit(zl_session_t *s, zl_work_fn work, zl_session_fn done,
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
        zl_session_unref(s);
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
                     zl__instance_plugin_name(inst),
                     inst->server ? "server" : "client", inst->name,
                     zl_session_name(s), msg);
    g_free(msg);
}
