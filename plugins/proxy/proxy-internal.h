/* Private header of the zltk plugin "proxy" (never installed): what its
 * files share.  Every function here has the proxy__ prefix and hidden
 * visibility; the plugin will export only zltk_plugin_entry.
 *
 * This first part holds the pieces that touch no connection and no
 * poller, so any thread may call them on data it owns:
 *   proxy-pp.c    the PROXY protocol (haproxy's specification, versions 1
 *                 and 2): building a header to send upstream and reading
 *                 one that arrives, incrementally, with a hard bound;
 *   proxy-acl.c   allow / deny lists of CIDR blocks, IPv4 and IPv6;
 *   proxy-opts.c  the values of the proxy's own keys (upstream, balance,
 *                 proxy-protocol), parsed from their text;
 *   proxy-limit.c connections per source address, shared by the sessions
 *                 of an instance on every poller. */
#ifndef ZLTK_PLUGIN_PROXY_INTERNAL_H
#define ZLTK_PLUGIN_PROXY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>

#include <glib.h>
#include <zltk/net.h>

#if defined(__GNUC__)
#define PROXY_HIDDEN __attribute__((visibility("hidden")))
#else
#define PROXY_HIDDEN
#endif

/* ------------------------------------------------------ PROXY protocol */

/* Version 1 is one text line of at most 107 bytes with its CRLF. */
#define PROXY_PP_V1_MAX 107
/* Version 2: the 16-byte fixed part, then as many bytes as it announces
 * (addresses, then TLVs).  The specification lets a header announce up to
 * 65,535 bytes; we refuse more than this, which holds the largest address
 * block (two 108-byte Unix paths) and 3.8 KiB of TLVs. */
#define PROXY_PP_V2_MAX 4096
/* Longest header proxy__pp_build() writes: v2 with two Unix paths. */
#define PROXY_PP_BUILD_MAX 232

typedef enum {
    PROXY_PP_NEED_MORE = 0, /* a valid prefix: give more bytes */
    PROXY_PP_DONE = 1,      /* a whole header: see the result */
    PROXY_PP_BAD = -1,      /* not a valid header: see the reason */
} proxy_pp_status_t;

typedef struct proxy_pp_result {
    int version;   /* 1 or 2 */
    size_t length; /* bytes of the header: the payload starts after them */
    /* true: src and dst are the addresses the header carries (TCP over
     * IPv4 or IPv6).  false: the header said LOCAL (a health check by the
     * sender itself), UNKNOWN / UNSPEC, or a family zltk does not relay
     * (UDP, Unix): the connection's own addresses stand. */
    bool has_addr;
    zl_addr_t src, dst;
    const char *what; /* for logs: "TCP4", "TCP6", "UNKNOWN", "LOCAL",
                         "UNSPEC", "UDP4", "UDP6", "UNIX" */
} proxy_pp_result_t;

/* Read a PROXY header, version 1 or 2, at the start of the n bytes at buf
 * (everything the peer sent so far).  Returns PROXY_PP_NEED_MORE while
 * buf holds a valid beginning of a header and less than a whole one,
 * PROXY_PP_DONE with *res filled, or PROXY_PP_BAD with a reason of at most
 * reason_len bytes ("not a PROXY protocol header", "PROXY v1 header longer
 * than 107 bytes", "PROXY v2 command 0x3 is not LOCAL or PROXY", ...).
 * Garbage is refused at its first byte that no header can start with, so a
 * caller never waits for more of it; a header is never longer than
 * PROXY_PP_V2_MAX, so a caller's buffer of that size always suffices.
 * Pure: any thread, no allocation. */
PROXY_HIDDEN proxy_pp_status_t proxy__pp_parse(const void *buf, size_t n,
                                               proxy_pp_result_t *res,
                                               char *reason,
                                               size_t reason_len);

/* Write a version (1 or 2) PROXY header for a connection from src to dst
 * into out (PROXY_PP_BUILD_MAX bytes always suffice).  TCP4 or TCP6 when
 * both are IP addresses (an IPv4 one beside an IPv6 one is sent in its
 * v4-mapped IPv6 form); otherwise v1's "PROXY UNKNOWN" or v2's PROXY
 * command with family UNSPEC, so the receiver uses the connection's own
 * addresses.  Returns the length, or 0 if out_len is too small or the
 * version is not 1 or 2.  Pure: any thread. */
PROXY_HIDDEN size_t proxy__pp_build(int version, const zl_addr_t *src,
                                    const zl_addr_t *dst, void *out,
                                    size_t out_len);

/* ------------------------------------------------------------- ACLs */

typedef struct proxy_cidr {
    int family;        /* AF_INET or AF_INET6 */
    unsigned prefix;   /* 0..32 or 0..128 */
    uint8_t net[16];   /* network bits (host bits cleared) */
} proxy_cidr_t;

typedef struct proxy_acl {
    proxy_cidr_t *v;
    size_t n;
} proxy_acl_t;

/* Parse "10.0.0.0/8, 192.168.1.7, 2001:db8::/32" into *acl (comma- or
 * space-separated; an address without a prefix is one host; host bits
 * after the prefix are cleared, so 192.168.1.5/24 means 192.168.1.0/24).
 * Returns 0, or -1 with *acl untouched and a message naming the entry
 * ("\"10.0.0.0/33\": prefix length \"33\" is not 0 to 32 for IPv4") in err.
 * An empty text gives an empty list.  Free with proxy__acl_clear(). */
PROXY_HIDDEN int proxy__acl_parse(const char *text, proxy_acl_t *acl,
                                  char *err, size_t err_len);

/* Whether addr falls in one of acl's blocks.  A v4-mapped IPv6 address
 * (a dual-stack listener's IPv4 peer) matches IPv4 blocks.  Read-only:
 * any number of threads may match against one list at once. */
PROXY_HIDDEN bool proxy__acl_match(const proxy_acl_t *acl,
                                   const zl_addr_t *addr);

/* Whether allow and deny admit addr: deny wins; an empty allow list admits
 * every address deny does not name. */
PROXY_HIDDEN bool proxy__acl_admits(const proxy_acl_t *allow,
                                    const proxy_acl_t *deny,
                                    const zl_addr_t *addr);

/* Free acl's blocks; it is then an empty list. */
PROXY_HIDDEN void proxy__acl_clear(proxy_acl_t *acl);

/* ------------------------------------------------------ option values */

typedef enum {
    PROXY_BALANCE_FIRST = 0,  /* the first that answers, in order */
    PROXY_BALANCE_ROUND_ROBIN,
    PROXY_BALANCE_LEAST_CONNECTIONS,
} proxy_balance_t;

typedef struct proxy_upstream {
    char *host; /* a name, an IP literal without brackets, or unix:PATH */
    uint16_t port; /* 0 for unix:PATH */
    char *text; /* as configured, for logs: "[::1]:80", "db.example:5432" */
} proxy_upstream_t;

typedef struct proxy_upstreams {
    proxy_upstream_t *v;
    size_t n;
} proxy_upstreams_t;

/* "HOST:PORT[, HOST:PORT ...]" (HOST a name, an IPv4 literal or a
 * bracketed IPv6 literal; or unix:PATH; entries separated by commas and/or
 * spaces) into
 * *out.  Returns 0, or -1 with *out untouched and a message naming the
 * entry in err: no entry at all, a missing or out-of-range port, a bare
 * IPv6 literal without brackets, a duplicate.  Free with
 * proxy__upstreams_clear().  Any thread. */
PROXY_HIDDEN int proxy__upstreams_parse(const char *text,
                                        proxy_upstreams_t *out, char *err,
                                        size_t err_len);
PROXY_HIDDEN void proxy__upstreams_clear(proxy_upstreams_t *u);

/* "first", "round-robin" or "least-connections" (any case, blanks around
 * allowed).  Returns 0, or -1 with a message listing the choices. */
PROXY_HIDDEN int proxy__balance_parse(const char *text,
                                      proxy_balance_t *out, char *err,
                                      size_t err_len);

/* A PROXY protocol version to send: "v1" or "1", "v2" or "2", or "off" /
 * "none" / "false" for none (0).  Returns 0, or -1 with a message. */
PROXY_HIDDEN int proxy__pp_version_parse(const char *text, int *version,
                                         char *err, size_t err_len);

/* ---------------------------------------------- connections per source */

/* How many connections each source address holds, for
 * max-connections-per-source.  One table per instance, shared by its
 * sessions on every poller: acquire and release take its lock (held for a
 * hash lookup).  IPv4 peers count the same in plain and v4-mapped form;
 * IPv6 addresses count whole (a /128). */
typedef struct proxy_limit {
    pthread_mutex_t lock;
    GHashTable *count; /* sources holding connections, with counts */
    uint32_t max;      /* 0: no limit (nothing is counted) */
} proxy_limit_t;

/* Main thread, before any session. */
PROXY_HIDDEN void proxy__limit_init(proxy_limit_t *l, uint32_t max);
/* After the last session released. */
PROXY_HIDDEN void proxy__limit_fini(proxy_limit_t *l);
/* Count one more connection from addr: true, or false (nothing counted)
 * if addr already holds max.  Any thread. */
PROXY_HIDDEN bool proxy__limit_acquire(proxy_limit_t *l,
                                       const zl_addr_t *addr);
/* Undo one successful acquire for addr.  Any thread. */
PROXY_HIDDEN void proxy__limit_release(proxy_limit_t *l,
                                       const zl_addr_t *addr);
/* Sources that hold at least one connection (for tests and counters). */
PROXY_HIDDEN size_t proxy__limit_sources(proxy_limit_t *l);

#endif
