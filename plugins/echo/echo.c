/* zltk plugin "echo": a server-session handler that sends back every byte
 * it receives (ZLToolKit's EchoSession), with backpressure: when
 * the peer does not read and the session's send queue rises above the high
 * mark, the session stops reading until the queue has drained to the low
 * mark, so a client that only writes cannot make the server buffer without
 * bound.
 *
 * Keys of a [server.NAME] group using it: none beyond the host's own
 * (high-water, low-water, send-timeout, ...).  It logs each session's byte
 * count when it closes (at info level).
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>

#include <zltk/plugin.h>

static const zl_host_api_t *host;

typedef struct echo_session {
    uint64_t bytes;
    bool paused;
} echo_session_t;

static void echo_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    echo_session_t *e = state;

    e->bytes += buf->len;
    /* A copy, like bench/echo-server: with an empty queue the bytes go
     * straight to the kernel and nothing is allocated. */
    if (host->send(s, buf->data, buf->len) == ZL_CONN_BUSY && !e->paused) {
        e->paused = true;
        host->pause(s);
    }
}

static void echo_busy(zl_session_t *s, void *state, bool busy)
{
    echo_session_t *e = state;

    if (busy && !e->paused) {
        e->paused = true;
        host->pause(s);
    } else if (!busy && e->paused) {
        e->paused = false;
        host->resume(s);
    }
}

static void echo_closed(zl_session_t *s, void *state)
{
    echo_session_t *e = state;

    host->session_log(s, ZL_LOG_INFO, "closed after echoing %" PRIu64
                      " bytes", e->bytes);
}

static const zl_handler_t echo_handler = {
    .struct_size = sizeof(zl_handler_t),
    .state_size = sizeof(echo_session_t),
    .on_recv = echo_recv,
    .on_busy = echo_busy,
    .on_closed = echo_closed,
};

static int echo_init(zl_plugin_t *self, const zl_host_api_t *api)
{
    static const zl_registration_t reg = {
        .struct_size = sizeof(zl_registration_t),
        .kind = ZL_PROVIDES_SERVER,
        .name = "echo",
        .description = "sends back every byte received; pauses reading "
                       "while the peer's queue is above the high mark",
        .vtable = &echo_handler,
    };

    if (api->struct_size < offsetof(zl_host_api_t, reserved))
        return -EPROTO; /* a host older than this plugin */
    host = api;
    return host->register_provider(self, &reg);
}

ZLTK_PLUGIN_DEFINE(
    .name = "echo",
    .version = "1.0",
    .description = "Echo server: every session sends back what it receives",
    .init = echo_init,
)
