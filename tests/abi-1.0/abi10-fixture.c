/* zltk test plugin "abi10-fixture": a plugin of plugin ABI 1.0.
 *
 * Built against the frozen ABI 1.0 headers of tests/abi-1.0/include only,
 * and committed prebuilt (tests/abi-1.0/prebuilt/), so that tests/check-abi.sh
 * proves a plugin of ABI 1.0 still loads into, and runs in, today's host.
 * It uses nothing but the host API: no libzltk symbol, so it links against
 * nothing.
 *
 * It registers
 *   - server handler "abi10-prefix": replies to each line it receives with
 *     the line prefixed by "abi10: ";
 *   - transport layer "abi10-rot13": ROT13 on the wire, both ways (bytes
 *     other than ASCII letters pass unchanged), so a peer that speaks ROT13
 *     proves both directions went through the layer.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <zltk/plugin.h>

#define PREFIX "abi10: "
#define LINE_MAX_ 512
#define CHUNK 4096

static const zl_host_api_t *host;

/* ------------------------------------------------------------ handler */

typedef struct prefix_state {
    size_t len;
    char line[LINE_MAX_];
} prefix_state_t;

/* Send PREFIX, the line st->line[0..len) and a newline, as one send. */
static void reply(zl_session_t *s, prefix_state_t *st)
{
    char out[sizeof PREFIX + LINE_MAX_ + 1];
    size_t n = sizeof PREFIX - 1;

    memcpy(out, PREFIX, n);
    memcpy(out + n, st->line, st->len);
    n += st->len;
    out[n++] = '\n';
    host->send(s, out, n);
    st->len = 0;
}

static void prefix_on_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    prefix_state_t *st = state;
    size_t i;

    for (i = 0; i < buf->len; i++) {
        char ch = (char)buf->data[i];

        if (ch == '\n' || st->len == LINE_MAX_)
            reply(s, st);
        if (ch != '\n')
            st->line[st->len++] = ch;
    }
}

static const zl_handler_t prefix_handler = {
    .struct_size = sizeof(zl_handler_t), /* the ABI 1.0 struct */
    .state_size = sizeof(prefix_state_t),
    .on_recv = prefix_on_recv,
};

/* ------------------------------------------------------------ layer */

static void rot13(char *out, const uint8_t *in, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        int c = in[i];

        if (c >= 'a' && c <= 'z')
            c = 'a' + (c - 'a' + 13) % 26;
        else if (c >= 'A' && c <= 'Z')
            c = 'A' + (c - 'A' + 13) % 26;
        out[i] = (char)c;
    }
}

static void rot13_on_connect(zl_session_t *s, void *state)
{
    (void)state;
    host->upper_connect(s); /* no handshake */
}

/* Decode in chunks into a buffer of our own: the host's bytes stay as
 * they are. */
static void rot13_on_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    char out[CHUNK];
    size_t off, n;

    (void)state;
    for (off = 0; off < buf->len; off += n) {
        zl_buf_t piece;

        n = buf->len - off < CHUNK ? buf->len - off : CHUNK;
        rot13(out, buf->data + off, n);
        memset(&piece, 0, sizeof piece);
        piece.data = (uint8_t *)out;
        piece.len = piece.cap = n;
        piece._refs = 1;
        host->upper_recv(s, &piece);
    }
}

static int rot13_send(zl_session_t *s, void *state, const void *data,
                      size_t len)
{
    char out[CHUNK];
    size_t off, n;
    int rc = 0;

    (void)state;
    for (off = 0; off < len; off += n) {
        n = len - off < CHUNK ? len - off : CHUNK;
        rot13(out, (const uint8_t *)data + off, n);
        rc = host->lower_send(s, out, n); /* copied */
        if (rc < 0)
            return rc;
    }
    return rc;
}

static const zl_layer_t rot13_layer = {
    .struct_size = sizeof(zl_layer_t), /* the ABI 1.0 struct */
    .on_connect = rot13_on_connect,
    .on_recv = rot13_on_recv,
    .send = rot13_send,
};

/* ------------------------------------------------------------ plugin */

static const zl_registration_t regs[] = {
    {
        .struct_size = sizeof(zl_registration_t),
        .kind = ZL_PROVIDES_SERVER,
        .name = "abi10-prefix",
        .description =
            "replies to each line with \"" PREFIX "LINE\" (ABI 1.0 fixture)",
        .vtable = &prefix_handler,
    },
    {
        .struct_size = sizeof(zl_registration_t),
        .kind = ZL_PROVIDES_LAYER,
        .name = "abi10-rot13",
        .description = "ROT13 on the wire (ABI 1.0 fixture)",
        .vtable = &rot13_layer,
    },
};

static int fixture_init(zl_plugin_t *self, const zl_host_api_t *h)
{
    size_t i;
    int rc;

    /* Only ABI 1.0 fields are used: the host must offer at least those. */
    if (h->struct_size < offsetof(zl_host_api_t, fail))
        return -EPROTO;
    host = h;
    for (i = 0; i < sizeof regs / sizeof regs[0]; i++) {
        rc = h->register_provider(self, &regs[i]);
        if (rc < 0)
            return rc;
    }
    h->log(self, ZL_LOG_INFO, "ABI %u.%u fixture, host ABI %u.%u",
           (unsigned)ZLTK_PLUGIN_ABI_MAJOR, (unsigned)ZLTK_PLUGIN_ABI_MINOR,
           (unsigned)h->abi_major, (unsigned)h->abi_minor);
    return 0;
}

ZLTK_PLUGIN_DEFINE(
    .name = "abi10-fixture",
    .version = "1.0",
    .description =
        "plugin ABI 1.0 fixture: a prefix handler over a ROT13 layer",
    .init = fixture_init,
)
