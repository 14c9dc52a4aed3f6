/* zltk plugin "tls": a connection's start: the SSL object, the handshake,
 * its timeout, and what the handler queued meanwhile. */
#include <errno.h>
#include <stdlib.h>

#include <openssl/err.h>

#include <zltk/clock.h>
#include <zltk/log.h>

#include "tls-internal.h"

static void handshake_done(tls_sess_t *ls)
{
    char peer[320];

    ls->phase = PH_OPEN;
    ls->hs_deadline = 0;
    /* Only when it is logged: the peer's address makes the connection
     * allocate a block for its addresses (76 bytes per session). */
    if (zl_log_get_level() >= ZL_LOG_DEBUG)
        tls__host->session_log(
            ls->s, ZL_LOG_DEBUG, "TLS handshake with %s done: %s, %s%s",
            tls__peer_text(ls, peer, sizeof(peer)), SSL_get_version(ls->ssl),
            SSL_get_cipher_name(ls->ssl),
            SSL_session_reused(ls->ssl) ? ", resumed" : "");
    /* What the handler sent early goes first, then its on_connect.  Once
     * it is in the connection's queue, that queue's marks alone decide
     * whether the handler is busy. */
    if (ls->plen) {
        uint8_t *p = ls->pend;
        size_t n = ls->plen;

        ls->pend = NULL;
        ls->plen = ls->pcap = 0;
        tls__write_plain(ls, p, n);
        free(p);
        if (ls->dead)
            return;
        tls__pend_note(ls);
        if (ls->dead || ls->phase != PH_OPEN)
            return;
    }
    if (ls->closing) {
        tls__send_close_notify(ls);
        tls__linger_close(ls);
        return;
    }
    if (ls->shut_req) {
        tls__send_close_notify(ls);
        tls__host->lower_shutdown(ls->s);
    }
    tls__host->upper_connect(ls->s);
    if (ls->dead || ls->closing || tls__lower_gone(ls))
        return;
    tls__read_plain(ls); /* application data that came with the handshake */
}

void tls__handshake_step(tls_sess_t *ls)
{
    int r, e;

    ERR_clear_error();
    r = SSL_do_handshake(ls->ssl);
    e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ls->ssl, r);
    if (r != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        tls__fail_ssl(ls, e, true); /* flushes the alert first */
        return;
    }
    ERR_clear_error();
    tls__flush_out(ls);
    if (ls->dead)
        return;
    if (r == 1)
        handshake_done(ls);
}

/* ------------------------------------------------------------ timeout */

void tls__handshake_timed_out(tls_sess_t *ls)
{
    char peer[320];

    if (ls->closing) {
        ls->dead = true;
        ls->phase = PH_DONE;
        tls__pend_drop(ls);
        tls__host->lower_close(ls->s);
        return;
    }
    tls__fail(ls, ETIMEDOUT, "TLS handshake with %s timed out after %llu ms",
         tls__peer_text(ls, peer, sizeof(peer)),
         (unsigned long long)ls->ti->timeout_ms);
}

/* A session timer gets the handler's state; the layer's comes in arg. */
static uint64_t hs_timer_fire(zl_session_t *s, void *state, void *arg)
{
    sess_timer_t *t = arg;
    tls_sess_t *ls = t->ls;

    (void)s;
    (void)state;
    if (ls->gen != t->gen || ls->phase != PH_HANDSHAKE || ls->dead)
        return 0;
    if (zl_now_ms() < ls->hs_deadline)
        return ls->hs_deadline - zl_now_ms();
    tls__handshake_timed_out(ls);
    return 0;
}

void tls__on_connect(zl_session_t *s, void *state)
{
    tls_sess_t *ls = state;
    tls_inst_t *ti = ls->ti;
    sess_timer_t *t;

    ERR_clear_error();
    /* A client that reconnected starts afresh (a half-close belonged to
     * the old connection, as the host's own SHUT_WR does). */
    if (ls->phase == PH_DONE)
        ls->shut_req = false;
    tls__free_ssl(ls);
    ls->gen++;
    ls->dead = ls->shut_done = ls->peer_closed = ls->lingering = false;
    ls->pin_mismatch = false;
    ls->paused = ls->resume_posted = false; /* a new connection */
    ls->phase = PH_HANDSHAKE;
    if (ls->closing && !ls->plen) {
        /* Closed while connecting, nothing to deliver. */
        ls->phase = PH_DONE;
        tls__host->lower_close(s);
        return;
    }
    {
        SSL *ssl = SSL_new(ti->ctx);
        BIO *b = tls__bio_new(ls);

        if (!ssl || !b) {
            SSL_free(ssl);
            BIO_free(b);
            tls__fail(ls, ENOMEM, "TLS: out of memory for a connection");
            return;
        }
        ls->ssl = ssl;
        ls->bio = b;
    }
    SSL_set_bio(ls->ssl, ls->bio, ls->bio); /* one reference for both */
    SSL_set_app_data(ls->ssl, ls);
    if (ti->server) {
        SSL_set_accept_state(ls->ssl);
    } else {
        SSL_set_connect_state(ls->ssl);
        if (!tls__setup_peer_check(ls)) {
            char why[256], peer[320];

            tls__ssl_reason(ls, SSL_ERROR_SSL, why, sizeof(why));
            tls__fail(
                ls, 0,
                "TLS handshake with %s: cannot set the name to verify: %s",
                tls__peer_text(ls, peer, sizeof(peer)), why);
            return;
        }
        if (ti->session && !SSL_set_session(ls->ssl, ti->session))
            ERR_clear_error(); /* resumption is only an offer */
    }
    ls->hs_deadline = zl_now_ms() + ti->timeout_ms;
    t = malloc(sizeof(*t));
    if (t) {
        *t = (sess_timer_t){ls, ls->gen};
        if (tls__host->add_timer(s, ti->timeout_ms, hs_timer_fire, t, free) < 0)
            free(t); /* on_manager still checks the deadline */
    }
    tls__handshake_step(ls);
}
