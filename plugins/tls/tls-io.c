/* zltk plugin "tls": record I/O of an open connection: plaintext in and
 * out through SSL_read/SSL_write, the queue of early data, failures,
 * close_notify and the linger after close. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "tls-internal.h"

/* "127.0.0.1:4433", or "localhost (127.0.0.1:4433)" for a client that
 * connects by name. */
const char *tls__peer_text(tls_sess_t *ls, char *buf, size_t len)
{
    char addr[ZL_ADDR_STRLEN], ip[64];
    const char *name =
        ls->ti->server
            ? NULL
            : tls__host->instance_host(tls__host->session_instance(ls->s));

    zl_addr_format(tls__host->peer(ls->s), addr, sizeof(addr));
    if (name && !tls__ip_literal(name, ip, sizeof(ip)))
        snprintf(buf, len, "%s (%s)", name, addr);
    else
        snprintf(buf, len, "%s", addr);
    return buf;
}

/* OpenSSL's reason for the failure of the last SSL call, in words, with the
 * certificate check's own reason when verification failed.  Clears the
 * thread's error queue. */
void tls__ssl_reason(tls_sess_t *ls, int sslerr, char *buf, size_t len)
{
    unsigned long e = ERR_peek_error();
    const char *reason = NULL;
    char tmp[256];

    if (e) {
        reason = ERR_reason_error_string(e);
        if (!reason) {
            ERR_error_string_n(e, tmp, sizeof(tmp));
            reason = tmp;
        }
    }
    if (ls->pin_mismatch) {
        /* tls__pin_verify_cb refused the certificate: that is why. */
        char want[TLS_FP_TEXT], got[TLS_FP_TEXT];

        snprintf(buf, len, "certificate pin mismatch: expected %s, got %s",
                 tls__fp_text(ls->ti->pin, want),
                 tls__fp_text(ls->peer_fp, got));
    } else if (e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
        ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && ls->ssl &&
        SSL_get_verify_result(ls->ssl) != X509_V_OK)
        snprintf(buf, len, "%s: %s", reason,
                 X509_verify_cert_error_string(
                     SSL_get_verify_result(ls->ssl)));
    else if (reason)
        snprintf(buf, len, "%s", reason);
    else if (sslerr == SSL_ERROR_SYSCALL)
        snprintf(buf, len, "unexpected end of the TLS stream");
    else
        snprintf(
            buf, len,
            "TLS protocol error (OpenSSL gave no reason, SSL_get_error %d)",
            sslerr);
    ERR_clear_error();
}

/* Tell the host how much of the handler's data waits here (it counts
 * towards the high mark and queued()).  Returns what send returns. */
int tls__pend_note(tls_sess_t *ls)
{
    return tls__host->layer_queued(ls->s, ls->plen);
}

void tls__pend_drop(tls_sess_t *ls)
{
    bool had = ls->plen != 0;

    free(ls->pend);
    ls->pend = NULL;
    ls->plen = ls->pcap = 0;
    if (had)
        tls__pend_note(ls);
}

int tls__pend_add(tls_sess_t *ls, const void *data, size_t len)
{
    if (ls->pcap - ls->plen < len) {
        size_t cap = ls->pcap ? ls->pcap : 4096;
        uint8_t *p;

        while (cap - ls->plen < len) {
            if (cap > SIZE_MAX / 2)
                return -ENOMEM;
            cap *= 2;
        }
        p = realloc(ls->pend, cap);
        if (!p)
            return -ENOMEM;
        ls->pend = p;
        ls->pcap = cap;
    }
    memcpy(ls->pend + ls->plen, data, len);
    ls->plen += len;
    return 0;
}

void tls__free_ssl(tls_sess_t *ls)
{
    /* OpenSSL marks the session not resumable when an SSL that has not
     * sent close_notify is freed; a connection that ended cleanly (end of
     * stream, close_notify either way) keeps it for the next connect. */
    if (ls->ssl && ls->clean_end && SSL_is_init_finished(ls->ssl))
        SSL_set_shutdown(ls->ssl,
                         SSL_get_shutdown(ls->ssl) | SSL_SENT_SHUTDOWN);
    if (ls->ssl)
        SSL_free(ls->ssl); /* frees the BIO */
    ls->clean_end = false;
    ls->ssl = NULL;
    ls->bio = NULL;
    ls->in = NULL;
    ls->in_len = ls->keep_off = ls->keep_len = 0;
    zl_buf_unref(ls->out); /* not passed down: the connection is gone */
    ls->out = NULL;
}

/* Report a failure of this connection to the handler (once), after
 * flushing what OpenSSL queued (an alert), then let the host close. */
void tls__fail(tls_sess_t *ls, int sys, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    zl_error_t err;

    ERR_clear_error();
    if (ls->dead)
        return;
    tls__flush_out(ls); /* the alert goes out before the close */
    ls->dead = true;
    ls->phase = PH_DONE;
    ls->hs_deadline = 0;
    if (ls->plen)
        tls__host->session_log(
            ls->s, ls->closing ? ZL_LOG_MESSAGE : ZL_LOG_DEBUG,
            "%zu bytes sent before the TLS handshake dropped", ls->plen);
    tls__pend_drop(ls);
    if (ls->closing) {
        /* The handler has closed already: nobody to tell. */
        tls__host->lower_close(ls->s);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    err = (zl_error_t){ZL_ETLS, sys, ZL_STAGE_TLS, msg};
    tls__host->upper_err(ls->s, &err);
}

void tls__fail_ssl(tls_sess_t *ls, int sslerr, bool handshake)
{
    char why[384], peer[320];

    tls__ssl_reason(ls, sslerr, why, sizeof(why));
    tls__peer_text(ls, peer, sizeof(peer));
    tls__fail(ls, 0, "TLS %s with %s failed: %s",
         handshake ? "handshake" : "connection", peer, why);
}

/* While tls__read_plain delivers a session's plaintext, what its handler
 * sends back is gathered in ls->out (up to TLS_GATHER_MAX of ciphertext)
 * and goes down in one write when the delivery ends, rather than one
 * system call per record: an echo of 4 records read together costs one
 * send, and the peer one wake-up.  Only for that session (a handler that
 * writes to another one sends at once), only while its connection queue is
 * empty (otherwise the bytes are queued without a system call anyway, and
 * the handler hears ZL_CONN_BUSY from the send that crosses the mark). */
#define TLS_GATHER_MAX (64 * 1024)
static _Thread_local tls_sess_t *gathering;

static bool gather(tls_sess_t *ls)
{
    return gathering == ls && ls->out && ls->out->len < TLS_GATHER_MAX &&
           !tls__host->queued(ls->s);
}

/* SSL_write everything (memory BIOs take it all), then drain (or leave it
 * for the end of the delivery: gather). */
int tls__write_plain(tls_sess_t *ls, const void *data, size_t len)
{
    size_t done = 0;

    while (done < len) {
        size_t w = 0;
        int r;

        ERR_clear_error();
        r = SSL_write_ex(ls->ssl, (const uint8_t *)data + done, len - done,
                         &w);
        if (!r) {
            int e = SSL_get_error(ls->ssl, r);
            tls__flush_out(ls);
            tls__fail_ssl(ls, e, false);
            return ZL_ESHUTDOWN;
        }
        done += w;
    }
    return gather(ls) ? 0 : tls__flush_out(ls);
}

/* close_notify, then flush.  Once per connection. */
void tls__send_close_notify(tls_sess_t *ls)
{
    if (ls->shut_done || ls->dead || !ls->ssl || ls->phase != PH_OPEN)
        return;
    ls->shut_done = true;
    ls->clean_end = true;
    ERR_clear_error();
    SSL_shutdown(ls->ssl); /* 0: sent ours, the peer's not seen yet */
    ERR_clear_error();
    tls__flush_out(ls);
}

static uint64_t linger_fire(zl_session_t *s, void *state, void *arg)
{
    sess_timer_t *t = arg;

    (void)state;
    if (t->ls->gen == t->gen && t->ls->lingering)
        tls__host->lower_close(s); /* the peer did not close: enough */
    return 0;
}

/* The graceful end of a connection the handler closed, once close_notify
 * is out: half-close (after the queued bytes), and keep reading until the
 * peer closes too, bounded by TLS_LINGER_MS.  Closing the descriptor at
 * once would leave what the peer sent meanwhile (TLS 1.3 tickets, its own
 * close_notify) unread, and the kernel then answers with RST, which
 * destroys whatever the peer had not read yet, e.g. the end of our data. */
void tls__linger_close(tls_sess_t *ls)
{
    sess_timer_t *t;

    if (ls->lingering)
        return;
    ls->lingering = true;
    tls__host->lower_shutdown(ls->s);
    t = malloc(sizeof(*t));
    if (t) {
        *t = (sess_timer_t){ls, ls->gen};
        if (tls__host->add_timer(ls->s, TLS_LINGER_MS, linger_fire, t, free) ==
            0)
            return;
        free(t);
    }
    tls__host->lower_close(ls->s);
}

/* While lingering: let OpenSSL see what arrives (a client still stores
 * late tickets for resumption), but deliver nothing. */
void tls__read_discard(tls_sess_t *ls)
{
    uint8_t tmp[4096];
    size_t n;

    for (int i = 0; i < 4096; i++) {
        ERR_clear_error();
        if (!SSL_read_ex(ls->ssl, tmp, sizeof(tmp), &n))
            break;
    }
    ERR_clear_error();
    tls__flush_out(ls);
}

/* Whether the connection is going away behind our back (the handler
 * called tls__host->abort, which does not pass through the layer): an empty
 * lower_send answers ZL_ESHUTDOWN once it is closing.  Only meaningful
 * before our own half-close. */
bool tls__lower_gone(tls_sess_t *ls)
{
    if (ls->shut_done || ls->shut_req)
        return false;
    return tls__host->lower_send(ls->s, "", 0) == ZL_ESHUTDOWN;
}

static zl_buf_t *plain_buf(tls_sess_t *ls)
{
    ls->pbuf_used = true;
    if (ls->pbuf && zl_buf_refcount(ls->pbuf) == 1) {
        ls->pbuf->len = 0;
        return ls->pbuf;
    }
    zl_buf_unref(ls->pbuf); /* the handler kept it: theirs now */
    ls->pbuf = zl_buf_new(TLS_PLAIN_CHUNK);
    return ls->pbuf;
}

/* All read for now: give the plaintext buffer back rather than hold 16 KiB
 * per idle session (a new one is cheap next time).  One the handler still
 * holds is theirs already. */
static void release_plain_buf(tls_sess_t *ls)
{
    if (ls->pbuf && zl_buf_refcount(ls->pbuf) == 1) {
        zl_buf_unref(ls->pbuf);
        ls->pbuf = NULL;
    }
}

/* Deliver every byte of plaintext OpenSSL can produce now. */
static void read_records(tls_sess_t *ls)
{
    for (;;) {
        zl_buf_t *b;
        size_t got = 0;
        int r = 1, e = SSL_ERROR_NONE;

        if (ls->phase != PH_OPEN || ls->dead || ls->closing || ls->paused)
            return;
        b = plain_buf(ls);
        if (!b) {
            tls__fail(ls, ENOMEM,
                      "TLS connection: out of memory for plaintext");
            return;
        }
        while (got < b->cap) {
            size_t n = 0;

            if (!ls->in_len && !ls->keep_len && !SSL_has_pending(ls->ssl)) {
                /* Nothing to decrypt.  Asking OpenSSL anyway would make it
                 * set up its 16 KiB record buffer only to answer "want
                 * read", and an idle session would keep it. */
                r = 0;
                e = SSL_ERROR_WANT_READ;
                break;
            }
            ERR_clear_error();
            r = SSL_read_ex(ls->ssl, b->data + got, b->cap - got, &n);
            if (!r) {
                e = SSL_get_error(ls->ssl, r);
                break;
            }
            got += n;
        }
        /* Tickets, KeyUpdate replies, alerts: out now, unless they join
         * the handler's gathered replies (tls__read_plain flushes them). */
        if (!gather(ls) && tls__flush_out(ls) == ZL_ESHUTDOWN && ls->dead)
            return;
        if (got) {
            b->len = got;
            tls__host->upper_recv(ls->s, b);
            if (ls->dead || ls->closing || ls->phase != PH_OPEN ||
                tls__lower_gone(ls))
                return;
        }
        if (r)
            continue; /* the buffer filled: there may be more */
        switch (e) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            ERR_clear_error();
            release_plain_buf(ls);
            return;
        case SSL_ERROR_ZERO_RETURN:
            /* close_notify.  Answer with ours and half-close: a peer doing
             * a two-way shutdown waits for it before closing TCP, and its
             * end of stream then reaches the handler as ZL_EOF through
             * tls__on_err. */
            ls->peer_closed = true;
            ls->clean_end = true;
            ERR_clear_error();
            tls__send_close_notify(ls);
            ls->shut_req = true;
            tls__host->lower_shutdown(ls->s);
            return;
        default:
            tls__fail_ssl(ls, e, false);
            return;
        }
    }
}

void tls__read_plain(tls_sess_t *ls)
{
    tls_sess_t *outer = gathering;

    gathering = ls;
    read_records(ls);
    gathering = outer;
    if (ls->ssl && !ls->dead)
        tls__flush_out(ls); /* what was gathered */
}
