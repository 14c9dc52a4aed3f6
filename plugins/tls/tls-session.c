/* zltk plugin "tls": the layer's session callbacks after the start:
 * received bytes, transport errors, the manager tick, the handler's send,
 * pause, close and shutdown, and transport_info. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <zltk/clock.h>
#include <zltk/error.h>

#include "tls-internal.h"

int tls__on_open(zl_session_t *s, void *state, zl_instance_t *inst)
{
    tls_sess_t *ls = state;

    ls->s = s;
    ls->ti = tls__host->layer_data(inst);
    return ls->ti ? 0 : -EINVAL;
}

void tls__on_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    tls_sess_t *ls = state;

    (void)s;
    if (ls->dead || !ls->ssl || !buf->len)
        return;
    if (ls->phase != PH_HANDSHAKE && ls->phase != PH_OPEN)
        return;
    ls->in = buf->data;
    ls->in_len = buf->len;
    if (ls->phase == PH_HANDSHAKE)
        tls__handshake_step(ls);
    else if (ls->lingering)
        tls__read_discard(ls);
    else
        tls__read_plain(ls);
    if (!ls->ssl || ls->dead) {
        ls->in = NULL; /* nothing more will be read */
        ls->in_len = 0;
    } else if (!tls__keep_rest(ls)) {
        tls__fail(ls, ENOMEM, "TLS: out of memory for received data");
    }
}

void tls__on_err(zl_session_t *s, void *state, const zl_error_t *err)
{
    tls_sess_t *ls = state;
    char peer[320];

    if (ls->closing || ls->dead) {
        /* The handler closed (or was told already).  Closing here also
         * keeps a client from reconnecting for a handler that is gone. */
        ls->dead = true;
        ls->phase = PH_DONE;
        ls->lingering = false;
        if (ls->closing)
            tls__host->lower_close(s);
        return;
    }
    if (ls->phase == PH_HANDSHAKE) {
        tls__peer_text(ls, peer, sizeof(peer));
        if (err->code == ZL_EOF)
            tls__fail(ls, 0,
                      "TLS handshake with %s failed: the peer closed the "
                      "connection during the TLS handshake",
                      peer);
        else
            tls__fail(ls, err->sys, "TLS handshake with %s failed: %s", peer,
                 err->message ? err->message : zl_strerror(err->code));
        return;
    }
    /* After the handshake: the transport's report, unchanged.  After end
     * of stream the handler may still send (the host closes gracefully). */
    if (err->code != ZL_EOF)
        ls->dead = true;
    else if (ls->phase == PH_OPEN)
        ls->clean_end = true;
    if (err->code == ZL_EOF && !ls->peer_closed && ls->phase == PH_OPEN)
        tls__host->session_log(
            s, ZL_LOG_DEBUG,
            "the peer ended the stream without a TLS close_notify");
    ls->hs_deadline = 0;
    tls__host->upper_err(s, err);
    /* The peer ended its side: after the handler's last words (it may
     * still send from on_err), answer with our close_notify, so that the
     * peer sees a clean end rather than a truncation when the connection
     * now closes. */
    if (err->code == ZL_EOF)
        tls__send_close_notify(ls);
    ls->phase = PH_DONE;
    ls->dead = true;
}

/* Whether SSL_free_buffers is safe with a partial record in the read
 * buffer: before OpenSSL 3.0.14, 3.1.6, 3.2.2 and 3.3.1 it freed one
 * that a record header already pointed into (CVE-2024-4741), which
 * SSL_has_pending does not report. */
static bool free_buffers_safe(void)
{
    unsigned long v = OpenSSL_version_num() >> 4; /* 0xMNN00PP */
    unsigned long mm = v >> 16, patch = v & 0xff;

    switch (mm) {
    case 0x300: return patch >= 14;
    case 0x301: return patch >= 6;
    case 0x302: return patch >= 2;
    case 0x303: return patch >= 1;
    default: return mm > 0x303;
    }
}

void tls__on_manager(zl_session_t *s, void *state)
{
    tls_sess_t *ls = state;

    (void)s;
    /* An idle connection keeps no plaintext buffer, nor OpenSSL's record
     * buffers: SSL_MODE_RELEASE_BUFFERS frees them as a read finds nothing
     * left, but not after a read that returned the last bytes (a client's
     * read of the server's last record keeps its 16 KiB).  Never while
     * OpenSSL holds unread plaintext or ciphertext (SSL_has_pending), or
     * the layer ciphertext (keep, a paused session). */
    if (!ls->pbuf_used) {
        if (ls->pbuf) {
            zl_buf_unref(ls->pbuf);
            ls->pbuf = NULL;
        }
        if (ls->ssl && ls->phase == PH_OPEN && !ls->dead && !ls->keep_len &&
            !SSL_has_pending(ls->ssl) && free_buffers_safe())
            SSL_free_buffers(ls->ssl);
    }
    ls->pbuf_used = false;
    if (!ls->keep_used && !ls->keep_len && ls->keep) {
        free(ls->keep);
        ls->keep = NULL;
        ls->keep_cap = ls->keep_off = 0;
    }
    ls->keep_used = false;
    /* Backstop for the handshake timer (if it could not be armed). */
    if (ls->phase == PH_HANDSHAKE && !ls->dead && ls->hs_deadline &&
        zl_now_ms() >= ls->hs_deadline)
        tls__handshake_timed_out(ls);
}

void tls__on_closed(zl_session_t *s, void *state)
{
    tls_sess_t *ls = state;

    (void)s;
    tls__free_ssl(ls);
    tls__pend_drop(ls);
    zl_buf_unref(ls->pbuf);
    ls->pbuf = NULL;
    free(ls->keep);
    ls->keep = NULL;
    ls->keep_cap = 0;
    free(ls->info);
    ls->info = NULL;
}

int tls__send(zl_session_t *s, void *state, const void *data,
                    size_t len)
{
    tls_sess_t *ls = state;

    (void)s;
    if (ls->dead || ls->closing || ls->shut_req || ls->phase == PH_DONE)
        return ZL_ESHUTDOWN;
    if (!len)
        return 0;
    if (ls->phase != PH_OPEN) {
        /* Written after the handshake; over the high mark, the handler
         * hears ZL_CONN_BUSY as from a full connection queue. */
        int rc = tls__pend_add(ls, data, len);

        return rc < 0 ? rc : tls__pend_note(ls);
    }
    return tls__write_plain(ls, data, len);
}

static void resume_task(zl_session_t *s, void *state, void *arg)
{
    sess_timer_t *t = arg;
    tls_sess_t *ls = t->ls;

    (void)s;
    (void)state;
    if (ls->gen != t->gen)
        return; /* for an earlier connection */
    ls->resume_posted = false;
    if (ls->lingering)
        tls__read_discard(ls);
    else
        tls__read_plain(ls);
}

/* Paused: tls__read_plain stops delivering, and the undecrypted rest stays in
 * the read BIO (the connection is paused too, so no more arrives).
 * Resumed: deliver what is held from a task — the handler may be resuming
 * inside its own on_recv, from tls__read_plain's loop. */
void tls__pause(zl_session_t *s, void *state, bool paused)
{
    tls_sess_t *ls = state;
    sess_timer_t *t;

    ls->paused = paused;
    if (paused || ls->resume_posted || ls->phase != PH_OPEN || ls->dead ||
        !ls->ssl)
        return;
    if (!SSL_has_pending(ls->ssl) && !ls->keep_len)
        return; /* nothing held */
    t = malloc(sizeof(*t));
    if (!t) {
        tls__fail(ls, ENOMEM, "TLS connection: out of memory to resume");
        return;
    }
    *t = (sess_timer_t){ls, ls->gen};
    if (tls__host->post(s, resume_task, t, free) < 0) {
        free(t);
        return; /* closing */
    }
    ls->resume_posted = true;
}

void tls__close(zl_session_t *s, void *state)
{
    tls_sess_t *ls = state;

    if (ls->closing)
        return;
    ls->closing = true;
    switch (ls->phase) {
    case PH_IDLE:
        if (ls->plen)
            return; /* connect, shake hands, write it, then close */
        break;
    case PH_HANDSHAKE:
        if (!ls->dead && ls->plen)
            return; /* finish it, write what is queued, then close */
        break;
    case PH_OPEN:
        if (!ls->dead) {
            tls__send_close_notify(ls);
            tls__linger_close(ls);
            return;
        }
        break;
    default:
        break;
    }
    tls__pend_drop(ls);
    tls__host->lower_close(s);
}

void tls__shutdown(zl_session_t *s, void *state)
{
    tls_sess_t *ls = state;

    if (ls->shut_req || ls->closing)
        return;
    ls->shut_req = true;
    switch (ls->phase) {
    case PH_IDLE:
    case PH_HANDSHAKE:
        if (!ls->dead)
            return; /* after the handshake and the queued data */
        break;
    case PH_OPEN:
        tls__send_close_notify(ls);
        break;
    default:
        break;
    }
    tls__host->lower_shutdown(s);
}

static const char *keep_info(tls_sess_t *ls, char *text)
{
    free(ls->info);
    ls->info = text;
    return text;
}

const char *tls__info(zl_session_t *s, void *state, const char *key)
{
    tls_sess_t *ls = state;

    (void)s;
    if (!ls->ssl || !SSL_is_init_finished(ls->ssl))
        return NULL;
    if (!strcmp(key, "version"))
        return SSL_get_version(ls->ssl);
    if (!strcmp(key, "cipher"))
        return SSL_get_cipher_name(ls->ssl);
    if (!strcmp(key, "resumed"))
        return SSL_session_reused(ls->ssl) ? "yes" : "no";
    if (!strcmp(key, "alpn")) {
        const unsigned char *p = NULL;
        unsigned int n = 0;
        char *t;

        SSL_get0_alpn_selected(ls->ssl, &p, &n);
        if (!p || !n || !(t = malloc(n + 1)))
            return NULL;
        memcpy(t, p, n);
        t[n] = '\0';
        return keep_info(ls, t);
    }
    if (!strcmp(key, "server-name")) {
        const char *n = SSL_get_servername(ls->ssl, TLSEXT_NAMETYPE_host_name);
        return n ? keep_info(ls, strdup(n)) : NULL;
    }
    if (!strcmp(key, "peer-subject")) {
        X509 *x = SSL_get0_peer_certificate(ls->ssl);
        BIO *b;
        char *t = NULL, *p;
        long n;

        if (!x || !(b = BIO_new(BIO_s_mem())))
            return NULL;
        if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0,
                               XN_FLAG_RFC2253) >= 0 &&
            (n = BIO_get_mem_data(b, &p)) >= 0 && (t = malloc((size_t)n + 1))) {
            memcpy(t, p, (size_t)n);
            t[n] = '\0';
        }
        BIO_free(b);
        ERR_clear_error();
        return t ? keep_info(ls, t) : NULL;
    }
    if (!strcmp(key, "peer-fingerprint") || !strcmp(key, "fingerprint")) {
        X509 *x = key[0] == 'p' ? SSL_get0_peer_certificate(ls->ssl)
                                : SSL_get_certificate(ls->ssl);
        unsigned char fp[TLS_FP_LEN];
        char *t;

        if (!tls__cert_fp(x, fp) || !(t = malloc(TLS_FP_TEXT)))
            return NULL;
        return keep_info(ls, tls__fp_text(fp, t));
    }
    return NULL;
}
