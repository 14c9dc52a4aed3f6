/* zltk plugin "tls": the in-memory BIO between OpenSSL and the connection
 * (ciphertext in from on_recv's buffer, out into a zl_buf_t). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls-internal.h"

/* The SSL object's BIO ("zbio").  Reads take ciphertext straight from the
 * connection's receive buffer (ls->in, valid while on_recv runs) after what
 * an earlier read left (ls->keep); on_recv keeps the unconsumed rest.
 * Writes append to ls->out, a zl_buf_t that tls__flush_out hands down without
 * copying.  Memory BIOs cost a copy each way and a cleared, growing buffer
 * per connection. */
static BIO_METHOD *zbio_method;

/* Returns the bytes read, or -1 with the retry flag when there are none
 * (as a memory BIO whose end-of-data value is -1: "wait for more"). */
static int zbio_read(BIO *b, char *dst, int ilen)
{
    tls_sess_t *ls = BIO_get_data(b);
    size_t n = 0, len = ilen > 0 ? (size_t)ilen : 0;

    BIO_clear_retry_flags(b);
    if (ls->keep_len) {
        n = ls->keep_len < len ? ls->keep_len : len;
        memcpy(dst, ls->keep + ls->keep_off, n);
        ls->keep_off += n;
        ls->keep_len -= n;
        if (!ls->keep_len)
            ls->keep_off = 0;
    }
    if (n < len && ls->in_len) {
        size_t m = ls->in_len < len - n ? ls->in_len : len - n;

        memcpy(dst + n, ls->in, m);
        ls->in += m;
        ls->in_len -= m;
        n += m;
    }
    if (!n) {
        BIO_set_retry_read(b); /* "wait for more", not end of stream */
        return -1;
    }
    return (int)n;
}

/* Room for len more bytes in ls->out: a new buffer sized for a few records
 * (usually one allocation per flush), grown by doubling (a copy) if one
 * flush makes more. */
static bool out_room(tls_sess_t *ls, size_t len)
{
    zl_buf_t *o = ls->out, *n;
    size_t have = o ? o->len : 0, cap;

    if (o && o->cap - o->len >= len)
        return true;
    if (len > SIZE_MAX / 8 - have)
        return false;
    /* First: room for a few records like this one; then double. */
    cap = o ? 2 * (have + len) : 4 * len;
    if (cap < TLS_OUT_MIN)
        cap = TLS_OUT_MIN;
    if (!(n = zl_buf_new(cap)))
        return false;
    if (o) {
        memcpy(n->data, o->data, o->len);
        n->len = o->len;
        zl_buf_unref(o);
    }
    ls->out = n;
    return true;
}

static int zbio_write(BIO *b, const char *src, int ilen)
{
    tls_sess_t *ls = BIO_get_data(b);
    size_t len = ilen > 0 ? (size_t)ilen : 0;

    BIO_clear_retry_flags(b);
    if (!out_room(ls, len))
        return -1; /* SSL reports an error: out of memory */
    memcpy(ls->out->data + ls->out->len, src, len);
    ls->out->len += len;
    return (int)len;
}

static long zbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    tls_sess_t *ls = BIO_get_data(b);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* tls__flush_out passes ls->out down after each SSL call */
    case BIO_CTRL_PENDING:
        return ls ? (long)(ls->keep_len + ls->in_len) : 0;
    case BIO_CTRL_WPENDING:
        return ls && ls->out ? (long)ls->out->len : 0;
    default:
        return 0;
    }
}

static int zbio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* The BIO method, once per process (tls_init). */
bool tls__bio_setup(void)
{
    int idx;

    if (zbio_method)
        return true;
    if ((idx = BIO_get_new_index()) < 0)
        return false;
    zbio_method = BIO_meth_new(idx | BIO_TYPE_SOURCE_SINK, "zltk tls");
    if (!zbio_method || !BIO_meth_set_read(zbio_method, zbio_read) ||
        !BIO_meth_set_write(zbio_method, zbio_write) ||
        !BIO_meth_set_ctrl(zbio_method, zbio_ctrl) ||
        !BIO_meth_set_create(zbio_method, zbio_create)) {
        BIO_meth_free(zbio_method);
        zbio_method = NULL;
        return false;
    }
    return true;
}

/* A BIO of ours for ls (one reference; SSL_set_bio takes it). */
BIO *tls__bio_new(tls_sess_t *ls)
{
    BIO *b = BIO_new(zbio_method);

    if (b)
        BIO_set_data(b, ls);
    return b;
}

/* After on_recv's SSL calls: keep what they did not consume (it points
 * into the connection's buffer, reused for the next read).  False when out
 * of memory. */
bool tls__keep_rest(tls_sess_t *ls)
{
    const uint8_t *rest = ls->in;
    size_t n = ls->in_len;

    ls->in = NULL;
    ls->in_len = 0;
    if (!n)
        return true;
    ls->keep_used = true;
    if (ls->keep_off && ls->keep_cap - ls->keep_off - ls->keep_len < n) {
        memmove(ls->keep, ls->keep + ls->keep_off, ls->keep_len);
        ls->keep_off = 0;
    }
    if (ls->keep_cap - ls->keep_off - ls->keep_len < n) {
        size_t cap = ls->keep_len + n;
        uint8_t *p;

        cap = cap < 16 * 1024 ? 16 * 1024 : cap + cap / 2;
        if (!(p = realloc(ls->keep, cap)))
            return false;
        ls->keep = p;
        ls->keep_cap = cap;
    }
    memcpy(ls->keep + ls->keep_off + ls->keep_len, rest, n);
    ls->keep_len += n;
    return true;
}

/* Pass the ciphertext made so far to the connection.  ls->out is detached
 * first, so that a handler re-entering send (from on_busy, inside
 * lower_send_buf) starts a new buffer that goes out after this one: the
 * order on the wire is kept.  Returns 0, ZL_CONN_BUSY, or what
 * lower_send_buf failed with. */
int tls__flush_out(tls_sess_t *ls)
{
    zl_buf_t *o = ls->out;

    if (!o)
        return 0;
    ls->out = NULL;
    if (!o->len) {
        zl_buf_unref(o);
        return 0;
    }
    return tls__host->lower_send_buf(ls->s, o);
}
