/* zltk — network basics: addresses, error reports, byte buffers.
 *
 * All functions here are pure utilities: any thread, no hidden state.
 */
#ifndef ZLTK_NET_H
#define ZLTK_NET_H

#include <zltk/common.h>

#include <sys/socket.h>
#include <netinet/in.h>

ZL_BEGIN_DECLS

/* ------------------------------------------------------------------ */
/* Addresses                                                            */

/* An IPv4, IPv6 or Unix-domain socket address.  IPv4-mapped IPv6
 * addresses (::ffff:a.b.c.d) are normalised to plain IPv4 wherever zltk
 * reports an address, so that peers compare and print the way users
 * expect.
 *
 * Unix-domain addresses (AF_UNIX, "unix:/path") do not fit: a sockaddr_un
 * is larger than this struct, whose size is part of ABI 1.0.  Such an
 * address has u.sa.sa_family == AF_UNIX and len == sizeof(sa_family_t)
 * (handed to the kernel as it is, it names an unnamed socket); its path is
 * kept out of line, for the life of the process, and read with
 * zl_addr_unix_path().  Two addresses of the same path are equal bytes.
 * The rest of u is private. */
typedef struct zl_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
    socklen_t len; /* 0: no address */
} zl_addr_t;

/* Longest text zl_addr_format() writes, with the NUL:
 * "unix:" and a path of ZL_ADDR_UNIX_PATH_MAX bytes ("[v6%scope]:65535"
 * needs less).  Was 64 in zltk 0.1: a smaller buffer still works, and
 * zl_addr_format() truncates a long path to fit it. */
#define ZL_ADDR_STRLEN 128

/* The longest path of a Unix-domain address: sun_path's 108 bytes less
 * the NUL (Linux). */
#define ZL_ADDR_UNIX_PATH_MAX 107

/* Whether text names a Unix-domain address: it begins with "unix:". */
ZL_API bool zl_addr_is_unix_text(const char *text);

/* Parse "unix:PATH": an absolute path ("unix:/run/x.sock"), a path
 * relative to the working directory ("unix:x.sock"), or on Linux a name in
 * the abstract namespace ("unix:@name": no file; the name is text without
 * NUL bytes).  Returns 0; -EINVAL if text does not begin with "unix:" or
 * the path is empty; -ENAMETOOLONG if the path is longer than
 * ZL_ADDR_UNIX_PATH_MAX bytes; -ENOMEM.  Any thread. */
ZL_API int zl_addr_from_unix(zl_addr_t *out, const char *text);

/* The path of an AF_UNIX address ("/run/x.sock", "@name" for an abstract
 * one, "" for an unnamed socket such as most connecting peers), owned by
 * zltk and valid for the life of the process; NULL for any other address.
 * Any thread. */
ZL_API const char *zl_addr_unix_path(const zl_addr_t *a);

/* Parse a numeric host ("127.0.0.1", "::1", "fe80::1%eth0") and a port.
 * Returns 0, or -EINVAL if host is not an IP literal (names need the
 * resolver: see zl_client_connect()). */
ZL_API int zl_addr_from_ip(zl_addr_t *out, const char *host, uint16_t port);

/* Split "HOST:PORT", "[V6]:PORT" or "V6-WITHOUT-PORT"-free forms into host
 * and port.  host receives at most hostlen bytes with the NUL.  Returns 0,
 * or -EINVAL with nothing written if the text is malformed or the port is
 * not 1..65535 (0 allowed only when allow_zero is true). */
ZL_API int zl_addr_split(const char *text, char *host, size_t hostlen,
                         uint16_t *port, bool allow_zero);

/* Copy a kernel address, normalising v4-mapped IPv6 to IPv4.  Returns 0 or
 * -EAFNOSUPPORT for families other than AF_INET, AF_INET6 and AF_UNIX.
 * An AF_UNIX path is kept for the life of the process (see zl_addr_t); a
 * process that has seen 4096 distinct ones reports new ones as unnamed. */
ZL_API int zl_addr_from_sockaddr(zl_addr_t *out, const struct sockaddr *sa,
                                 socklen_t len);

/* "1.2.3.4:80", "[::1]:80", "unix:/run/x.sock" or "unix:" (an unnamed
 * Unix-domain socket) into buf (ZL_ADDR_STRLEN is always enough).
 * Returns buf; "-" for an empty address. */
ZL_API char *zl_addr_format(const zl_addr_t *a, char *buf, size_t len);

/* Port in host order (0 for an empty or a Unix-domain address). */
ZL_API uint16_t zl_addr_port(const zl_addr_t *a);

/* ------------------------------------------------------------------ */
/* Error reports                                                        */

/* Where a connection failed. */
#define ZL_STAGE_MAP(XX)                                                    \
    XX(NONE, "none")                                                        \
    XX(RESOLVE, "resolve")                                                  \
    XX(SOCKET, "socket")                                                    \
    XX(BIND, "bind")                                                        \
    XX(CONNECT, "connect")                                                  \
    XX(READ, "read")                                                        \
    XX(WRITE, "write")                                                      \
    XX(TLS, "tls")                                                          \
    XX(LISTEN, "listen")                                                    \
    XX(ACCEPT, "accept")

typedef enum {
#define ZL__STAGE_ENUM(name, text) ZL_STAGE_##name,
    ZL_STAGE_MAP(ZL__STAGE_ENUM)
#undef ZL__STAGE_ENUM
} zl_stage_t;

/* What a handler receives in on_err / on_connect.  Valid during the
 * callback only: copy what you need. */
typedef struct zl_error {
    int code;         /* kind: ZL_EOF, ZL_ETIMEOUT, ZL_EREFUSED, ZL_ERESET,
                         ZL_EDNS, ZL_ESHUTDOWN, ZL_ETLS or ZL_EOTHER */
    int sys;          /* errno (positive) where there is one, else 0 */
    zl_stage_t stage; /* which step failed */
    const char *message; /* "connect to 127.0.0.1:9: connection refused" */
} zl_error_t;

/* Kind of a raw code: ZL_E* kinds map to themselves; -ECONNREFUSED →
 * ZL_EREFUSED, -ETIMEDOUT → ZL_ETIMEOUT, -ECONNRESET/-EPIPE/-ECONNABORTED
 * → ZL_ERESET,
 * ZL_ECANCELED → ZL_ESHUTDOWN, anything else → ZL_EOTHER. */
ZL_API int zl_err_kind(int code);

/* "resolve", "connect", … Static string. */
ZL_API const char *zl_stage_name(zl_stage_t stage);

/* ------------------------------------------------------------------ */
/* Byte buffers                                                         */

/* A reference-counted byte buffer.  Receive data arrives in one (see
 * on_recv); zl_buf_ref() keeps it beyond the callback without copying.
 * data/len may be read directly; cap is the allocated size.  The reference
 * count is atomic: a buffer may be handed between threads, but its bytes
 * must not be written while another thread reads them. */
typedef struct zl_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    /* private */
    int _refs;
} zl_buf_t;

/* New empty buffer of capacity cap (len 0).  NULL on allocation failure.
 * The caller owns one reference. */
ZL_API zl_buf_t *zl_buf_new(size_t cap);
/* New buffer holding a copy of data[0..len). */
ZL_API zl_buf_t *zl_buf_new_copy(const void *data, size_t len);
/* Take another reference; returns buf. */
ZL_API zl_buf_t *zl_buf_ref(zl_buf_t *buf);
/* Drop a reference; the last one frees.  NULL is ignored. */
ZL_API void zl_buf_unref(zl_buf_t *buf);
/* Number of references (a hint: others may change it concurrently). */
ZL_API int zl_buf_refcount(const zl_buf_t *buf);

ZL_END_DECLS

#endif
