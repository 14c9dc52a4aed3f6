/* zltk — TCP client (ZLToolKit's TcpClient): connect with timeout, off-loop
 * name resolution trying every address, optional reconnect.
 */
#ifndef ZLTK_CLIENT_H
#define ZLTK_CLIENT_H

#include <zltk/common.h>
#include <zltk/conn.h>
#include <zltk/worker.h>

ZL_BEGIN_DECLS

/* Every value is literal, as in zl_conn_options_t: start from
 * ZL_CLIENT_OPTIONS_INIT (the values in brackets), then set host and port.
 * 0 means off / never where a field says so; elsewhere 0 is refused. */
typedef struct zl_client_options {
    /* Peer: an IP literal connects at once on the owner poller; a name is
     * resolved on the worker pool (AF_UNSPEC) and every address is tried,
     * all within connect_timeout_ms, Happy Eyeballs style (RFC 8305):
     * IPv6 and IPv4 alternate, and when an address has not connected after
     * attempt_delay_ms the next one starts while it stays in flight (at
     * once if it failed); the first to connect wins.  Or a Unix-domain
     * socket, "unix:/PATH" (see zl_addr_from_unix(); port is then ignored,
     * local_ip and local_port must be unset, and the TCP options of conn
     * do not apply): the connect ends at once, with "No such file or
     * directory" (no socket file) or "connection refused" (nobody listens
     * on it) in the error's message, beside the address. */
    const char *host;
    uint16_t port;
    uint32_t connect_timeout_ms; /* [5000], covers resolution too; 0: off
                                    (only the kernel's SYN retries) */
    uint32_t attempt_delay_ms;   /* [250] before starting the next address;
                                    >0 */
    const char *local_ip;        /* [NULL] optional bind address (IP literal) */
    uint16_t local_port;         /* [0] optional bind port */
    zl_conn_options_t conn;      /* [ZL_CONN_OPTIONS_INIT] */
    /* Reconnect: [off].  After a failed attempt or a lost connection, wait
     * a delay that doubles from reconnect_min_ms up to reconnect_max_ms,
     * with ±25 % jitter, re-resolving the name each time; give up after
     * max_attempts consecutive failures ([0]: never). */
    bool reconnect;
    uint32_t reconnect_min_ms; /* [500] >0 */
    uint32_t reconnect_max_ms; /* [30000] at least reconnect_min_ms */
    unsigned max_attempts;
    /* Where it runs: [NULL: zl_runtime_get_poller(true)],
     * [NULL: zl_runtime_workers()]. */
    zl_poller_t *poller;
    zl_worker_pool_t *workers;
    const char *name; /* for logs [NULL: "client"] */
} zl_client_options_t;

/* The defaults, as a brace initialiser:
 *     zl_client_options_t o = ZL_CLIENT_OPTIONS_INIT;
 *     o.host = "example.org", o.port = 80; */
#define ZL_CLIENT_OPTIONS_INIT                                              \
    {                                                                       \
        NULL, 0,              /* host, port */                              \
        5000,                 /* connect_timeout_ms */                      \
        250,                  /* attempt_delay_ms */                        \
        NULL, 0,              /* local_ip, local_port */                    \
        ZL_CONN_OPTIONS_INIT, /* conn */                                    \
        false, 500, 30000, 0, /* reconnect, min, max, max_attempts */       \
        NULL, NULL, NULL      /* poller, workers, name */                   \
    }

/* Set *o to ZL_CLIENT_OPTIONS_INIT (for C++ and bindings).  Any thread. */
ZL_API void zl_client_options_init(zl_client_options_t *o);

/* Create a client connection and start connecting.  handler (copied) gets
 * on_connect(err) for every attempt, then the usual callbacks; on_closed
 * comes once, when the client is closed or gives up.  data is the initial
 * zl_conn_get_data() value.  If out is not NULL it receives a reference the
 * caller must drop with zl_conn_unref().  Returns 0, -EINVAL (bad options,
 * such as a 0 where a field has no "off", message logged), ZL_ESHUTDOWN or
 * -ENOMEM.  Any thread. */
ZL_API int zl_client_connect(zl_conn_t **out, const zl_client_options_t *opts,
                             const zl_conn_handler_t *handler, void *data);

/* Test hook: replace name resolution (getaddrinfo) for every client of the
 * process.  fn runs on a worker thread and returns 0 with a list made by
 * getaddrinfo-compatible allocation, or an EAI_* code.  NULL restores the
 * default.  Not thread-safe against running resolutions: set it first. */
struct addrinfo;
typedef int (*zl_resolve_fn)(const char *host, const char *port,
                             const struct addrinfo *hints,
                             struct addrinfo **res);
ZL_API void zl_client_set_resolver(zl_resolve_fn fn);

ZL_END_DECLS

#endif
