/* zltk — addresses, error kinds, byte buffers. */
#define G_LOG_DOMAIN "zltk-net"
#include "net-internal.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/un.h>

#include <zltk/net.h>

/* ------------------------------------------------------------ addresses */

int zl_addr_from_ip(zl_addr_t *out, const char *host, uint16_t port)
{
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    const char *pct;

    memset(out, 0, sizeof(*out));
    if (!host)
        return -EINVAL;
    if (inet_pton(AF_INET, host, &out->u.in.sin_addr) == 1) {
        out->u.in.sin_family = AF_INET;
        out->u.in.sin_port = htons(port);
        out->len = sizeof(out->u.in);
        return 0;
    }
    pct = strchr(host, '%');
    if (pct) {
        size_t n = (size_t)(pct - host);
        if (n >= sizeof(buf))
            return -EINVAL;
        memcpy(buf, host, n);
        buf[n] = '\0';
        host = buf;
    }
    if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) != 1)
        return -EINVAL;
    if (pct) {
        unsigned idx = if_nametoindex(pct + 1);
        if (!idx) {
            char *end;
            unsigned long v = strtoul(pct + 1, &end, 10);
            if (*end || !pct[1])
                return -EINVAL;
            idx = (unsigned)v;
        }
        out->u.in6.sin6_scope_id = idx;
    }
    out->u.in6.sin6_family = AF_INET6;
    out->u.in6.sin6_port = htons(port);
    out->len = sizeof(out->u.in6);
    return 0;
}

int zl_addr_split(const char *text, char *host, size_t hostlen,
                  uint16_t *port, bool allow_zero)
{
    const char *h, *colon, *p;
    size_t hl;
    char *end;
    unsigned long v;

    if (!text || !*text)
        return -EINVAL;
    if (text[0] == '[') {
        const char *rb = strchr(text, ']');
        if (!rb || rb[1] != ':')
            return -EINVAL;
        h = text + 1;
        hl = (size_t)(rb - h);
        p = rb + 2;
    } else {
        colon = strrchr(text, ':');
        if (!colon || memchr(text, ':', (size_t)(colon - text)))
            return -EINVAL; /* no port, or a bare IPv6 literal */
        h = text;
        hl = (size_t)(colon - text);
        p = colon + 1;
    }
    if (!hl || hl >= hostlen || !g_ascii_isdigit(*p))
        return -EINVAL; /* strtoul would accept blanks and signs */
    errno = 0;
    v = strtoul(p, &end, 10);
    if (*end || errno || v > 65535 || (!v && !allow_zero))
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)v;
    return 0;
}

/* ------------------------------------------------------------ unix */

/* An AF_UNIX zl_addr_t: the family in u.sa, the interned path (const char
 * *, "" when unnamed) at UNIX_PTR_OFF in u, copied with memcpy (u is only
 * 4-byte aligned), len sizeof(sa_family_t).  A sockaddr_un does not fit in
 * ABI 1.0's 28 bytes, so the path lives out of line; interning makes equal
 * paths equal pointers, so zl_addr_t values still compare with memcmp. */
#define UNIX_PTR_OFF 8
_Static_assert(UNIX_PTR_OFF + sizeof(char *) <= sizeof(((zl_addr_t *)0)->u),
               "the path pointer must fit in zl_addr_t");
_Static_assert(ZL_ADDR_UNIX_PATH_MAX < sizeof(((struct sockaddr_un *)0)->sun_path),
               "ZL_ADDR_UNIX_PATH_MAX must leave room for the NUL");

/* Distinct paths kept for the process's life; beyond it, a peer's name is
 * reported as unnamed rather than let a local client grow the table by
 * binding ever new names. */
#define UNIX_INTERN_MAX 4096

static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static GHashTable *intern_table;

static const char *intern_path(const char *path)
{
    const char *r = NULL;

    if (!*path)
        return "";
    pthread_mutex_lock(&intern_lock);
    if (!intern_table)
        intern_table = g_hash_table_new(g_str_hash, g_str_equal);
    r = g_hash_table_lookup(intern_table, path);
    if (!r && g_hash_table_size(intern_table) < UNIX_INTERN_MAX) {
        char *copy = g_strdup(path);
        g_hash_table_add(intern_table, copy);
        r = copy;
    }
    pthread_mutex_unlock(&intern_lock);
    return r;
}

static void unix_set(zl_addr_t *out, const char *interned)
{
    memset(out, 0, sizeof(*out));
    out->u.sa.sa_family = AF_UNIX;
    memcpy((char *)&out->u + UNIX_PTR_OFF, &interned, sizeof(interned));
    out->len = sizeof(sa_family_t);
}

bool zl_addr_is_unix_text(const char *text)
{
    return text && !strncmp(text, "unix:", 5);
}

int zl_addr_from_unix(zl_addr_t *out, const char *text)
{
    const char *path, *in;

    memset(out, 0, sizeof(*out));
    if (!zl_addr_is_unix_text(text))
        return -EINVAL;
    path = text + 5;
    if (!*path || !strcmp(path, "@"))
        return -EINVAL;
    if (strlen(path) > ZL_ADDR_UNIX_PATH_MAX)
        return -ENAMETOOLONG;
    if (!(in = intern_path(path)))
        return -ENOMEM;
    unix_set(out, in);
    return 0;
}

const char *zl_addr_unix_path(const zl_addr_t *a)
{
    const char *p;

    if (!a || !a->len || a->u.sa.sa_family != AF_UNIX)
        return NULL;
    memcpy(&p, (const char *)&a->u + UNIX_PTR_OFF, sizeof(p));
    return p ? p : "";
}

/* A kernel AF_UNIX address: a path, an abstract name (leading NUL, shown
 * as '@'; NULs inside it are shown as '@' too) or unnamed. */
static int unix_from_sockaddr(zl_addr_t *out, const struct sockaddr *sa,
                              socklen_t len)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    size_t off = offsetof(struct sockaddr_un, sun_path), n;
    char path[sizeof(un->sun_path) + 1];
    const char *in;

    if (len > (socklen_t)sizeof(*un))
        len = sizeof(*un);
    n = len > off ? (size_t)len - off : 0;
    if (n && un->sun_path[0]) {
        n = strnlen(un->sun_path, n);
        memcpy(path, un->sun_path, n);
    } else {
        for (size_t i = 0; i < n; i++)
            path[i] = un->sun_path[i] ? un->sun_path[i] : '@';
    }
    path[n] = '\0';
    in = intern_path(path);
    unix_set(out, in ? in : "");
    return 0;
}

socklen_t zl__addr_sockaddr(const zl_addr_t *a, struct sockaddr_storage *ss)
{
    const char *path = zl_addr_unix_path(a);
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    size_t n;

    memset(ss, 0, sizeof(*ss));
    if (!path) {
        memcpy(ss, &a->u, a->len);
        return a->len;
    }
    un->sun_family = AF_UNIX;
    n = strlen(path);
    memcpy(un->sun_path, path, n);
    if (path[0] == '@') { /* abstract: no NUL after the name */
        un->sun_path[0] = '\0';
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

void zl__sock_setup_unix(int fd, const zl__conn_cfg_t *cfg)
{
    if (cfg->sndbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cfg->sndbuf, sizeof(int));
    if (cfg->rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cfg->rcvbuf, sizeof(int));
#ifdef SO_NOSIGPIPE
    {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
    }
#endif
}

int zl_addr_from_sockaddr(zl_addr_t *out, const struct sockaddr *sa,
                          socklen_t len)
{
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_UNIX)
        return unix_from_sockaddr(out, sa, len);
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(out->u.in)) {
        memcpy(&out->u.in, sa, sizeof(out->u.in));
        out->len = sizeof(out->u.in);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(out->u.in6)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            out->u.in.sin_family = AF_INET;
            out->u.in.sin_port = s6->sin6_port;
            memcpy(&out->u.in.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
            out->len = sizeof(out->u.in);
        } else {
            memcpy(&out->u.in6, s6, sizeof(out->u.in6));
            out->len = sizeof(out->u.in6);
        }
        return 0;
    }
    return -EAFNOSUPPORT;
}

char *zl_addr_format(const zl_addr_t *a, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];

    if (!a || !a->len) {
        g_strlcpy(buf, "-", len);
        return buf;
    }
    if (a->u.sa.sa_family == AF_UNIX) {
        snprintf(buf, len, "unix:%s", zl_addr_unix_path(a));
        return buf;
    }
    if (a->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->u.in.sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, ntohs(a->u.in.sin_port));
    } else {
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, ip, sizeof(ip));
        if (a->u.in6.sin6_scope_id)
            snprintf(buf, len, "[%s%%%u]:%u", ip, a->u.in6.sin6_scope_id,
                     ntohs(a->u.in6.sin6_port));
        else
            snprintf(buf, len, "[%s]:%u", ip, ntohs(a->u.in6.sin6_port));
    }
    return buf;
}

uint16_t zl_addr_port(const zl_addr_t *a)
{
    if (!a || !a->len || a->u.sa.sa_family == AF_UNIX)
        return 0;
    return ntohs(a->u.sa.sa_family == AF_INET ? a->u.in.sin_port
                                              : a->u.in6.sin6_port);
}

/* ------------------------------------------------------------ errors */

int zl_err_kind(int code)
{
    switch (code) {
    case ZL_EOF:
    case ZL_ETIMEOUT:
    case ZL_EREFUSED:
    case ZL_ERESET:
    case ZL_EDNS:
    case ZL_ESHUTDOWN:
    case ZL_ETLS:
    case ZL_EOTHER:
        return code;
    case ZL_ECANCELED:
        return ZL_ESHUTDOWN;
    case -ECONNREFUSED:
        return ZL_EREFUSED;
    case -ETIMEDOUT:
        return ZL_ETIMEOUT;
    case -ECONNRESET:
    case -EPIPE:
    case -ECONNABORTED:
        return ZL_ERESET;
    default:
        return ZL_EOTHER;
    }
}

static const char *const stage_names[] = {
#define ZL__STAGE_TEXT(name, text) text,
    ZL_STAGE_MAP(ZL__STAGE_TEXT)
#undef ZL__STAGE_TEXT
};

const char *zl_stage_name(zl_stage_t stage)
{
    if ((unsigned)stage >= ZL__ARRAY_SIZE(stage_names))
        return "unknown";
    return stage_names[stage];
}

/* ------------------------------------------------------------ buffers */

/* Header and bytes in one allocation. */
zl_buf_t *zl_buf_new(size_t cap)
{
    zl_buf_t *b = malloc(sizeof(*b) + (cap ? cap : 1));

    if (!b)
        return NULL;
    b->data = (uint8_t *)(b + 1);
    b->len = 0;
    b->cap = cap;
    __atomic_store_n(&b->_refs, 1, __ATOMIC_RELAXED);
    return b;
}

zl_buf_t *zl_buf_new_copy(const void *data, size_t len)
{
    zl_buf_t *b = zl_buf_new(len);

    if (b && len) {
        memcpy(b->data, data, len);
        b->len = len;
    }
    return b;
}

zl_buf_t *zl_buf_ref(zl_buf_t *b)
{
    __atomic_add_fetch(&b->_refs, 1, __ATOMIC_RELAXED);
    return b;
}

void zl_buf_unref(zl_buf_t *b)
{
    if (b && __atomic_sub_fetch(&b->_refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(b);
}

int zl_buf_refcount(const zl_buf_t *b)
{
    return __atomic_load_n(&b->_refs, __ATOMIC_ACQUIRE);
}
