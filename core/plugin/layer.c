/* zltk — transport layers: a zl_layer_t between a session's connection and
 * its handler (TLS is one).
 *
 *     connection --on_connect/on_recv/on_err--> layer --upper_*--> handler
 *     handler --send/close/shutdown--> layer --lower_*--> connection
 *
 * The connection callbacks call the layer from session.c; here are the
 * handler's calls routed through it (on the session's poller, posted there
 * from other threads) and the host API's lower_* / upper_* calls.
 */
#define G_LOG_DOMAIN "zltk"
#include "plugin-internal.h"
#include "net-internal.h"

/* ------------------------------------------ the handler's calls, down */

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
    return s->inst->l->send(s, zl__lstate_of(s), data, len);
}

static void down_task(zl_session_t *s, void *state, void *arg);

static int post_down(zl_session_t *s, int op, zl_buf_t *buf)
{
    uintptr_t tag = (uintptr_t)op;
    int rc;

    if (op == DOWN_SEND) {
        rc = zl_session_post(s, down_task, buf,
                              (zl_destroy_fn)zl_buf_unref);
        if (rc < 0)
            zl_buf_unref(buf);
        return rc;
    }
    return zl_session_post(s, down_task, (void *)tag, NULL);
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
        fn(s, zl__lstate_of(s));
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
        s->inst->l->pause(s, zl__lstate_of(s), paused);
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

int zl__layer_send(zl_session_t *s, const void *data, size_t len)
{
    zl_buf_t *copy;

    if (layer_here(s))
        return layer_send(s, data, len);
    copy = zl_buf_new_copy(data, len);
    return copy ? post_down(s, DOWN_SEND, copy) : -ENOMEM;
}

int zl__layer_send_buf(zl_session_t *s, zl_buf_t *buf)
{
    int rc;

    if (!layer_here(s))
        return post_down(s, DOWN_SEND, buf);
    rc = layer_send(s, buf->data, buf->len);
    zl_buf_unref(buf);
    return rc;
}

void zl__layer_close(zl_session_t *s)
{
    if (layer_here(s))
        layer_down(s, DOWN_CLOSE);
    else if (post_down(s, DOWN_CLOSE, NULL) < 0 && s->conn)
        zl_conn_close(s->conn);
}

void zl__layer_shutdown(zl_session_t *s)
{
    if (layer_here(s))
        layer_down(s, DOWN_SHUTDOWN);
    else
        post_down(s, DOWN_SHUTDOWN, NULL);
}

/* On the poller thread (posted from elsewhere, in order with sends and
 * closes) so that the layer learns of it too. */
void zl__layer_pause(zl_session_t *s, bool paused)
{
    if (layer_here(s))
        layer_pause(s, paused);
    else if (post_down(s, paused ? DOWN_PAUSE : DOWN_RESUME, NULL) < 0 &&
             s->conn)
        paused ? zl_conn_pause(s->conn) : zl_conn_resume(s->conn);
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
    size_t high, low;

    if (!s->inst->l)
        return 0; /* not a layered session: it has no backlog to report */
    zl__lnode_of(s)->queued = bytes;
    if (!s->conn)
        return 0;
    zl__conn_marks(s->conn, &high, &low);
    if (!s->lbusy && bytes > high)
        s->lbusy = true;
    else if (s->lbusy && bytes <= low)
        s->lbusy = false;
    if (s->opened && !s->closed && !s->refused)
        zl__session_busy_note(s);
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
        s->inst->h->on_connect(s, zl__state_of(s), NULL);
}

void zl__session_upper_recv(zl_session_t *s, zl_buf_t *buf)
{
    if (up_ok(s))
        s->inst->h->on_recv(s, zl__state_of(s), buf);
}

void zl__session_upper_err(zl_session_t *s, const zl_error_t *err)
{
    if (s->closed || s->refused)
        return;
    if (!s->failed)
        zl__session_note_error(s->inst, err);
    zl__session_handler_err(s, err); /* ZL_EOF: on_eof if it has one */
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

const char *zl_session_transport_info(zl_session_t *s, const char *key)
{
    const zl_layer_t *l = s->inst->l;

    if (!l || !l->info || !key || s->closed || !s->opened)
        return NULL;
    return l->info(s, zl__lstate_of(s), key);
}
