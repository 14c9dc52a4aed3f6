/* zltk — TCP server (ZLToolKit's TcpServer): listens, spreads accepted
 * connections over the pool's pollers.
 */
#ifndef ZLTK_SERVER_H
#define ZLTK_SERVER_H

#include <zltk/common.h>
#include <zltk/conn.h>
#include <zltk/pool.h>

ZL_BEGIN_DECLS

typedef struct zl_server zl_server_t;

/* Every value is literal, as in zl_conn_options_t: start from
 * ZL_SERVER_OPTIONS_INIT (the values in brackets). */
typedef struct zl_server_options {
    /* Listen address: an IP literal, or NULL for every address: dual-stack
     * "::" (falling back to 0.0.0.0 when the kernel has no IPv6); or a
     * Unix-domain socket, "unix:/PATH" (see zl_addr_from_unix(); port,
     * v6only and the TCP options of conn are then ignored).  A socket file
     * already at PATH is replaced if nobody listens on it (a stale file: a
     * connect is refused); a live socket is "address in use"
     * (-EADDRINUSE), and a file that is not a socket is never removed
     * (-EADDRINUSE).  zl_server_free() removes the file, if it is still
     * the one this server bound. */
    const char *host;
    uint16_t port;        /* [0]: any free port (see zl_server_addr()) */
    bool v6only;          /* [false] with an IPv6 host: refuse IPv4-mapped
                             peers */
    int backlog;          /* [1024] >0 */
    size_t max_conns;     /* [0: unlimited] connections beyond are refused */
    zl_conn_options_t conn; /* [ZL_CONN_OPTIONS_INIT] */
    zl_poller_pool_t *pool; /* [NULL: zl_runtime_pollers()] */
    const char *name;     /* for logs [NULL: "server"] */
    /* [0: as the umask leaves it] a unix: socket file's permission bits
     * (e.g. 0660: owner and group may connect), set before listening; at
     * most 07777.  Only with a unix: host that is not abstract. */
    unsigned unix_mode;
} zl_server_options_t;

/* The defaults, as a brace initialiser:
 *     zl_server_options_t o = ZL_SERVER_OPTIONS_INIT; */
#define ZL_SERVER_OPTIONS_INIT                                              \
    {                                                                       \
        NULL, 0, false,       /* host, port, v6only */                      \
        1024, 0,              /* backlog, max_conns */                      \
        ZL_CONN_OPTIONS_INIT, /* conn */                                    \
        NULL, NULL,           /* pool, name */                              \
        0                     /* unix_mode */                               \
    }

/* Set *o to ZL_SERVER_OPTIONS_INIT (for C++ and bindings).  Any thread. */
ZL_API void zl_server_options_init(zl_server_options_t *o);

typedef struct zl_server_stats {
    uint64_t accepted;       /* connections accepted */
    uint64_t active;         /* accepted connections not yet closed */
    uint64_t refused_fds;    /* connections dropped for lack of descriptors */
    uint64_t refused_limit;  /* connections dropped by max_conns */
} zl_server_stats_t;

/* Bind, listen and start accepting.  Errors (address in use, bad address,
 * bad options such as a 0 where a field has no "off") are returned at
 * once: -EADDRINUSE, -EINVAL, … with a logged message.
 * Each accepted connection ("conn#N") goes to the least-loaded poller of
 * the pool: handler (copied) gets on_connect(c, NULL) first, then the usual
 * callbacks and a final on_closed.  data is each connection's initial
 * zl_conn_get_data().  Running out of descriptors neither spins the loop nor
 * stops the listener: the connection is accepted and dropped at once (a
 * reserved descriptor makes that possible) and counted.  Any thread. */
ZL_API int zl_server_new(zl_server_t **out, const zl_server_options_t *opts,
                         const zl_conn_handler_t *handler, void *data);

/* Stop listening, close every connection gracefully, wait until each one's
 * on_closed has run, and free.  Not from one of the pool's threads. */
ZL_API void zl_server_free(zl_server_t *s);

/* The bound address (its port is the real one when 0 was asked). */
ZL_API const zl_addr_t *zl_server_addr(const zl_server_t *s);

/* Counters.  Any thread. */
ZL_API void zl_server_get_stats(const zl_server_t *s, zl_server_stats_t *out);

ZL_END_DECLS

#endif
