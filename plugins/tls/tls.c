/* zltk plugin "tls": a transport layer (transport = tls) that puts TLS
 * between a session's connection and its handler, for clients and servers
 * (ZLToolKit's SSL_Box / TcpClientWithSSL<T>, secure by default).
 *
 * OpenSSL 3 runs over an in-memory BIO of our own (zbio, never a socket):
 * SSL_read takes ciphertext straight from the buffer the connection passed
 * to on_recv (what it leaves unconsumed is kept for the next read), and
 * plaintext goes up with tls__host->upper_recv; plaintext from the handler goes
 * into SSL_write, and whatever OpenSSL produced (records, handshake
 * messages, tickets, alerts, close_notify) collects in a zl_buf_t handed
 * to tls__host->lower_send_buf after every SSL call, without copying.  The
 * connection owns the descriptor; this layer owns only its SSL object.
 *
 * Keys of a [client.NAME] / [server.NAME] group with transport = tls:
 *   both:    tls-min-version = 1.2 | 1.3                [1.2]
 *            tls-alpn = PROTO[,PROTO...]   client: offered; server: the
 *                       first of its own list that the client offers
 *            tls-handshake-timeout = MS                 [10000]
 *            tls-ciphers = OpenSSL cipher list, TLS 1.2 [TLS_DEFAULT_CIPHERS:
 *                       ECDHE with AES-GCM or ChaCha20-Poly1305 only]
 *            tls-ciphersuites = TLS 1.3 suites, colon-separated [OpenSSL's]
 *   clients: tls-verify = BOOL  verify the server       [true]
 *            tls-ca = PEM file or hashed directory, beside the system store
 *            tls-server-name = NAME  name to verify and send as SNI
 *                                    [the instance's host]
 *            tls-pin = FINGERPRINT | @NAME  accept exactly the server
 *                       certificate with this SHA-256 fingerprint (64 hex
 *                       digits, colons optional, any case), or the
 *                       ephemeral certificate of [server.NAME] in this
 *                       process; replaces the CA chain check (tls-ca and
 *                       the system store are not used, nor the dates), the
 *                       name is still checked unless tls-verify = false
 *            tls-cert, tls-key = PEM  client certificate (mutual TLS)
 *   servers: tls-cert, tls-key = PEM  (required), or
 *            tls-cert = ephemeral  (no tls-key): a fresh EC P-256 key and
 *                       a self-signed certificate made in memory, CN "zltk
 *                       ephemeral NAME", for DNS:localhost, IP:127.0.0.1
 *                       and IP:::1, valid from 1 h ago for 30 days; its
 *                       fingerprint is logged (message level) as
 *                       "[server.NAME] ephemeral certificate, SHA-256
 *                       fingerprint AA:BB:..." for clients to pin
 *            tls-client-ca = PEM file or directory
 *            tls-verify-client = none | optional | required   [none]
 *
 * Handlers read facts with tls__host->transport_info(s, KEY): "version",
 * "cipher", "alpn", "peer-subject", "resumed" (yes/no), "server-name",
 * "peer-fingerprint" and "fingerprint" (SHA-256 of the peer's / our own
 * certificate, as AA:BB:...; NULL when there is none).
 *
 * Pins by @NAME.  A server instance with an ephemeral certificate enters
 * its name and fingerprint in a process-wide registry (under a mutex) in
 * instance_new and leaves it in instance_free; a client's tls-pin = @NAME
 * is resolved there, once, in the client's instance_new, so the server
 * instance must be created first (zltk-host creates servers before
 * clients).
 *
 * Lifecycle per connection: on_connect starts the handshake; the handler's
 * on_connect(NULL) comes only once it completed; what the handler sent
 * before is queued here and written right after it (a close or half-close
 * made meanwhile waits for that, bounded by the handshake timeout); the
 * queue is declared to the host (layer_queued), so it counts against the
 * high mark and send answers ZL_CONN_BUSY above it.  A handler's pause
 * stops tls__read_plain at once; what OpenSSL holds is delivered after
 * resume from a posted task.  A failed or timed out handshake, or a TLS
 * error later, reaches the handler
 * as on_err with ZL_ETLS / ZL_STAGE_TLS and OpenSSL's reason in words;
 * other transport errors after the handshake pass through unchanged.
 * shutdown sends close_notify, then half-closes.  close sends close_notify
 * after the queued data, half-closes, and reads (delivering nothing) until
 * the peer closes too, at most TLS_LINGER_MS, before closing: closing with
 * unread bytes in the kernel (a TLS 1.3 server's tickets arrive after the
 * client's handshake is done) makes the kernel reset the connection and the
 * peer lose the end of our data.  So a session ends at most the handshake
 * timeout plus TLS_LINGER_MS after its close began, which stop_ms tells
 * the host.  A client that reconnects offers the last
 * session for resumption; a connection that ended cleanly keeps it
 * resumable.
 *
 * Threading.  instance_new/instance_free run on the main thread.  Every
 * session callback runs on the session's poller.  A server's instance data
 * is read-only after instance_new (SSL_CTX is thread-safe, including its
 * session cache and ticket keys), so its sessions on several pollers share
 * it without locks; a client's instance data also holds the session kept
 * for resumption, which only the client's single session touches.  The
 * OpenSSL error queue is per thread: it is cleared before each SSL call whose
 * outcome is examined and after each failure, so no error leaks into
 * another session of the same poller.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "tls-internal.h"

const zl_host_api_t *tls__host;
zl_plugin_t *tls__plugin;

/* ------------------------------------------------------------ instances */

static void tls_inst_free(tls_inst_t *ti)
{
    if (!ti)
        return;
    if (ti->ephemeral)
        tls__eph_remove(ti);
    SSL_SESSION_free(ti->session);
    SSL_CTX_free(ti->ctx);
    free(ti->server_name);
    free(ti->alpn);
    free(ti->name);
    free(ti);
}

/* A tls_inst_t with its name and an empty OpenSSL context, or NULL and
 * *rc. */
static tls_inst_t *inst_alloc(zl_instance_t *inst, int *rc)
{
    tls_inst_t *ti = calloc(1, sizeof(*ti));
    const char *n = tls__host->instance_name(inst);
    size_t len = strlen(n) + sizeof("client.");

    *rc = -ENOMEM;
    if (!ti)
        return NULL;
    ti->server = tls__host->instance_is_server(inst);
    ti->timeout_ms = TLS_DEFAULT_TIMEOUT_MS;
    if (!(ti->name = malloc(len))) {
        free(ti);
        return NULL;
    }
    snprintf(ti->name, len, "%s.%s", ti->server ? "server" : "client", n);
    ERR_clear_error();
    ti->ctx = SSL_CTX_new(ti->server ? TLS_server_method()
                                     : TLS_client_method());
    if (!ti->ctx) {
        char why[256];
        tls__host->config_error(inst, NULL,
                                "TLS: cannot create an OpenSSL context: %s",
                                tls__last_reason(why, sizeof(why)));
        tls_inst_free(ti);
        return NULL;
    }
    *rc = 0;
    return ti;
}

static int tls_instance_new(zl_instance_t *inst, void **data)
{
    int rc;
    tls_inst_t *ti = inst_alloc(inst, &rc);

    if (!ti)
        return rc;
    if (!tls__config(inst, ti)) {
        tls_inst_free(ti);
        return -EINVAL;
    }
    if (ti->ephemeral) {
        char fp[TLS_FP_TEXT];

        if (!tls__eph_add(ti, tls__host->instance_name(inst), ti->fp)) {
            ti->ephemeral = false;
            tls_inst_free(ti);
            return -ENOMEM;
        }
        tls__host->log(tls__plugin, ZL_LOG_MESSAGE,
                       "[%s] ephemeral certificate, SHA-256 fingerprint %s",
                       ti->name, tls__fp_text(ti->fp, fp));
    }
    *data = ti;
    return 0;
}

static void tls_instance_free(zl_instance_t *inst, void *data)
{
    (void)inst;
    tls_inst_free(data);
}

/* The longest a session of this instance takes to end once its close
 * began, from the same bounds the layer's timers use: a handshake still
 * running with data queued behind it finishes first (at most the handshake
 * timeout; tls__on_connect arms it), then close_notify goes out and the
 * linger waits for the peer (TLS_LINGER_MS; tls__linger_close), then the
 * connection closes.  An open session needs only the linger.  The host
 * waits this long when the instance stops (zl_layer_t.stop_ms). */
static uint32_t tls_stop_ms(const zl_instance_t *inst, void *data)
{
    const tls_inst_t *ti = data;
    uint64_t hs = ti ? ti->timeout_ms : TLS_DEFAULT_TIMEOUT_MS;
    uint64_t ms = hs + TLS_LINGER_MS;

    (void)inst;
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

/* ------------------------------------------------------------ plugin */

static const char *const tls_keys[] = {
    "tls-ca",          "tls-verify",        "tls-server-name",
    "tls-cert",        "tls-key",           "tls-client-ca",
    "tls-verify-client", "tls-min-version", "tls-alpn",
    "tls-handshake-timeout", "tls-pin", "tls-ciphers", "tls-ciphersuites",
    NULL};

static const zl_layer_t tls_layer = {
    .struct_size = sizeof(zl_layer_t),
    .state_size = sizeof(tls_sess_t),
    .keys = tls_keys,
    .instance_new = tls_instance_new,
    .instance_free = tls_instance_free,
    .on_open = tls__on_open,
    .on_connect = tls__on_connect,
    .on_recv = tls__on_recv,
    .on_err = tls__on_err,
    .on_manager = tls__on_manager,
    .on_closed = tls__on_closed,
    .send = tls__send,
    .close = tls__close,
    .shutdown = tls__shutdown,
    .info = tls__info,
    .pause = tls__pause,
    .stop_ms = tls_stop_ms,
};

static int tls_init(zl_plugin_t *self, const zl_host_api_t *api)
{
    static const zl_registration_t reg = {
        .struct_size = sizeof(zl_registration_t),
        .kind = ZL_PROVIDES_LAYER,
        .name = "tls",
        .description =
            "TLS over OpenSSL 3: verified by default (system CA store, host "
            "name, SNI), certificate pinning, ephemeral server certificates, "
            "mutual TLS, ALPN, session resumption, handshake timeout",
        .vtable = &tls_layer,
    };

    if (api->struct_size < offsetof(zl_host_api_t, reserved))
        return -EPROTO; /* a host older than this plugin */
    tls__host = api;
    tls__plugin = self;
    if (!tls__bio_setup()) {
        api->log(self, ZL_LOG_CRITICAL,
                 "cannot create the TLS BIO method: out of memory");
        return -ENOMEM;
    }
    return tls__host->register_provider(self, &reg);
}

ZLTK_PLUGIN_DEFINE(
    .name = "tls",
    .version = "1.0",
    .description = "TLS transport layer (transport = tls) over OpenSSL 3",
    .init = tls_init,
)
