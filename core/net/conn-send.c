/* zltk — TCP connection: the send queue and the write path (direct send,
 * queueing, gathered flushes, watermarks, half-close).  Owner thread. */
#define G_LOG_DOMAIN "zltk-conn"
#include "net-internal.h"

#include <limits.h>
#include <sys/uio.h>

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif
#define ZL__IOV_BATCH (IOV_MAX < 1024 ? IOV_MAX : 1024)
#define ZL__SEG_MIN (16 * 1024)

/* ------------------------------------------------------------ queue */

size_t zl__conn_clear_queue(zl_conn_t *c)
{
    size_t n;
    zl__seg_t *s;

    if (!c->sq)
        return 0;
    n = c->sq->queued;
    s = c->sq->head;
    while (s) {
        zl__seg_t *next = s->next;
        zl_buf_unref(s->buf);
        free(s);
        s = next;
    }
    free(c->sq);
    c->sq = NULL;
    zl__poller_note_freed(n); /* a closing burst: trim (poller.c) */
    return n;
}

/* ------------------------------------------------------------ busy */

static void check_busy(zl_conn_t *c)
{
    if (!(c->flags & ZL__CF_BUSY) && zl__queued(c) > zl__cfg(c)->high_water) {
        c->flags |= ZL__CF_BUSY;
        if (zl__cfg(c)->h.on_busy && c->state == ZL__CS_OPEN) {
            zl__cfg(c)->h.on_busy(c, true);
        }
    } else if ((c->flags & ZL__CF_BUSY) && zl__queued(c) <= zl__cfg(c)->low_water) {
        c->flags &= (uint16_t)~ZL__CF_BUSY;
        if (zl__cfg(c)->h.on_busy && c->state == ZL__CS_OPEN) {
            zl__cfg(c)->h.on_busy(c, false);
        }
    }
}

/* ------------------------------------------------------------ flush */

void zl__conn_shutdown_wr(zl_conn_t *c)
{
    if ((c->flags & ZL__CF_SHUT_WR) && !(c->flags & ZL__CF_SHUT_DONE) &&
        !zl__queued(c) && c->fd >= 0) {
        c->flags |= ZL__CF_SHUT_DONE;
        shutdown(c->fd, SHUT_WR);
        /* Half-closed by the peer before: now both directions are done. */
        if ((c->flags & ZL__CF_HALF) && (c->flags & ZL__CF_READ_EOF) &&
            c->state == ZL__CS_OPEN)
            zl__conn_finish(c);
    }
}

static void consume(zl_conn_t *c, size_t n)
{
    zl__sendq_t *q = c->sq;

    zl__poller_note_freed(n); /* a drained backlog: trim (poller.c) */
    zl__conn_count(c, true, n);
    q->queued -= n;
    while (n) {
        zl__seg_t *s = q->head;
        size_t avail = s->buf->len - s->off;
        if (n < avail) {
            s->off += n;
            break;
        }
        n -= avail;
        q->head = s->next;
        zl_buf_unref(s->buf);
        free(s);
    }
    if (!q->head) {
        free(q);
        c->sq = NULL;
    }
}

/* Write the queue with writev batches until EAGAIN or empty. */
void zl__conn_flush(zl_conn_t *c)
{
    struct iovec iov[ZL__IOV_BATCH];

    while (c->sq && c->fd >= 0) {
        struct msghdr mh = {0};
        int n = 0;
        ssize_t w;

        for (zl__seg_t *s = c->sq->head; s && n < ZL__IOV_BATCH; s = s->next) {
            iov[n].iov_base = s->buf->data + s->off;
            iov[n].iov_len = s->buf->len - s->off;
            n++;
        }
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)n;
        w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                zl__conn_update_interest(c);
                return;
            }
            int e = errno;
            zl__conn_fail(c, -e, e, ZL_STAGE_WRITE, "write to %s: %s%s",
                          zl__conn_peer_text(c, (char[ZL_ADDR_STRLEN]){0}),
                          zl_strerror(-e), zl__conn_sys_hint(e));
            return;
        }
        consume(c, (size_t)w);
        c->progress_ms = zl__now32();
        c->flags |= ZL__CF_ACTIVE;
        /* The drain notice comes at the low mark, not only when empty. */
        if (c->flags & ZL__CF_BUSY) {
            check_busy(c);
            if (c->state == ZL__CS_CLOSED)
                return;
        }
    }
    if (c->fd < 0)
        return;
    zl__conn_update_interest(c);
    check_busy(c);
    if (c->state == ZL__CS_CLOSED || zl__queued(c))
        return; /* the handler queued more from on_busy: not flushed yet */
    if ((c->flags & ZL__CF_FLUSH_NOTE) && c->state == ZL__CS_OPEN) {
        c->flags &= (uint16_t)~ZL__CF_FLUSH_NOTE;
        if (zl__cfg(c)->h.on_flush) {
            zl__cfg(c)->h.on_flush(c);
        }
    }
    if (c->state == ZL__CS_CLOSED || zl__queued(c))
        return;
    zl__conn_shutdown_wr(c);
    if (c->state == ZL__CS_CLOSING)
        zl__conn_finish(c);
}

static zl__sendq_t *sq_get(zl_conn_t *c)
{
    if (!c->sq)
        c->sq = calloc(1, sizeof(*c->sq));
    return c->sq;
}

static void sq_append(zl__sendq_t *q, zl__seg_t *s)
{
    s->next = NULL;
    if (q->tail && q->head)
        q->tail->next = s;
    else
        q->head = s;
    q->tail = s;
    q->queued += s->buf->len - s->off;
}

/* Append bytes to the queue, reusing the tail copy-buffer when it fits. */
static int queue_copy(zl_conn_t *c, const uint8_t *p, size_t len)
{
    zl__sendq_t *q = sq_get(c);
    zl__seg_t *t, *s;

    if (!q)
        return -ENOMEM;
    t = q->head ? q->tail : NULL;
    if (t && t->own && t->buf->cap - t->buf->len >= len) {
        memcpy(t->buf->data + t->buf->len, p, len);
        t->buf->len += len;
        q->queued += len;
        return 0;
    }
    s = malloc(sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->buf = zl_buf_new(len > ZL__SEG_MIN ? len : ZL__SEG_MIN);
    if (!s->buf) {
        free(s);
        return -ENOMEM;
    }
    memcpy(s->buf->data, p, len);
    s->buf->len = len;
    s->off = 0;
    s->own = true;
    sq_append(q, s);
    return 0;
}

static int queue_buf(zl_conn_t *c, zl_buf_t *buf, size_t off)
{
    zl__sendq_t *q = sq_get(c);
    zl__seg_t *s = q ? malloc(sizeof(*s)) : NULL;

    if (!s) {
        zl_buf_unref(buf);
        return -ENOMEM;
    }
    *s = (zl__seg_t){NULL, buf, off, false};
    sq_append(q, s);
    return 0;
}

/* Takes over buf's reference if buf is not NULL. */
int zl__conn_send_local(zl_conn_t *c, const uint8_t *data, size_t len,
                        zl_buf_t *buf)
{
    size_t done = 0;
    int rc;

    if (c->state > ZL__CS_OPEN || c->state == ZL__CS_WAIT ||
        (c->flags & ZL__CF_SHUT_WR)) {
        zl_buf_unref(buf);
        return ZL_ESHUTDOWN;
    }
    if (buf) {
        data = buf->data;
        len = buf->len;
    }
    if (!len) {
        zl_buf_unref(buf);
        return 0;
    }
    if (!zl__queued(c) && c->state == ZL__CS_OPEN) {
        ssize_t w;
        do
            w = send(c->fd, data, len, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            int e = errno;
            zl_buf_unref(buf);
            zl__conn_fail(c, -e, e, ZL_STAGE_WRITE, "write to %s: %s%s",
                          zl__conn_peer_text(c, (char[ZL_ADDR_STRLEN]){0}),
                          zl_strerror(-(e)), zl__conn_sys_hint(e));
            return ZL_ESHUTDOWN;
        }
        if (w > 0) {
            done = (size_t)w;
            zl__conn_count(c, true, done);
            c->progress_ms = zl__now32();
            c->flags |= ZL__CF_ACTIVE;
        }
        if (done == len) {
            zl_buf_unref(buf);
            return 0;
        }
    }
    if (!zl__queued(c))
        c->progress_ms = zl__now32(); /* the send timeout starts now */
    if (buf && len - done > ZL__SEG_MIN)
        rc = queue_buf(c, buf, done);
    else {
        rc = queue_copy(c, data + done, len - done);
        zl_buf_unref(buf);
    }
    if (rc < 0)
        return rc;
    c->flags |= ZL__CF_FLUSH_NOTE;
    zl__conn_update_interest(c);
    check_busy(c);
    return (c->flags & ZL__CF_BUSY) ? ZL_CONN_BUSY : 0;
}
