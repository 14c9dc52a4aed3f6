/* zltk plugin "proxy": the PROXY protocol, versions 1 and 2, as haproxy's
 * published specification defines them ("The PROXY protocol", versions 1
 * and 2).  A relay that cannot keep the client's address on the upstream
 * connection sends it in front of the data instead: version 1 as one text
 * line, version 2 as a binary block with a 12-byte signature.
 *
 * Reading is strict, because the bytes come from the network before any
 * authentication: a header is refused at the first byte that cannot belong
 * to one, version 1 lines stop at 107 bytes, version 2 blocks at
 * PROXY_PP_V2_MAX, addresses and ports must be canonical numbers, and TLVs
 * must tile the rest of the block exactly. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy-internal.h"

static const uint8_t pp_v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char pp_v1_sig[] = "PROXY ";
#define PP_V1_SIG_LEN (sizeof(pp_v1_sig) - 1)
#define PP_V2_FIXED 16

static proxy_pp_status_t pp_bad(char *reason, size_t len, const char *fmt,
                                ...) __attribute__((format(printf, 3, 4)));

static proxy_pp_status_t pp_bad(char *reason, size_t len, const char *fmt,
                                ...)
{
    va_list ap;

    if (reason && len) {
        va_start(ap, fmt);
        vsnprintf(reason, len, fmt, ap);
        va_end(ap);
    }
    return PROXY_PP_BAD;
}

/* ------------------------------------------------------------ version 1 */

/* A port as the specification writes it: decimal, 0..65535, no sign and
 * no leading zero. */
static bool pp_v1_port(const char *s, size_t n, uint16_t *port)
{
    unsigned long v = 0;

    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

static bool pp_v1_addr(int family, const char *s, size_t n, uint16_t port,
                       zl_addr_t *out)
{
    char tmp[INET6_ADDRSTRLEN];
    struct sockaddr_in in;
    struct sockaddr_in6 in6;

    if (n == 0 || n >= sizeof(tmp))
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (family == AF_INET) {
        memset(&in, 0, sizeof(in));
        in.sin_family = AF_INET;
        in.sin_port = htons(port);
        return inet_pton(AF_INET, tmp, &in.sin_addr) == 1 &&
               zl_addr_from_sockaddr(out, (struct sockaddr *)&in,
                                     sizeof(in)) == 0;
    }
    memset(&in6, 0, sizeof(in6));
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    return inet_pton(AF_INET6, tmp, &in6.sin6_addr) == 1 &&
           zl_addr_from_sockaddr(out, (struct sockaddr *)&in6,
                                 sizeof(in6)) == 0;
}

/* The fields of a complete line, between "PROXY " and the CR. */
static proxy_pp_status_t pp_v1_fields(const char *p, size_t n,
                                      proxy_pp_result_t *res, char *reason,
                                      size_t rlen)
{
    const char *tok[5];
    size_t tlen[5], nt = 0, start = 0;
    uint16_t sport, dport;
    int family;

    if (n >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (n == 7 || p[7] == ' ')) {
        /* The rest of the line is to be ignored. */
        res->what = "UNKNOWN";
        return PROXY_PP_DONE;
    }
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != ' ')
            continue;
        if (nt == 5)
            return pp_bad(reason, rlen, "PROXY v1 header has more than "
                                        "five fields");
        tok[nt] = p + start;
        tlen[nt++] = i - start;
        start = i + 1;
    }
    if (tlen[0] == 4 && memcmp(tok[0], "TCP4", 4) == 0)
        family = AF_INET;
    else if (tlen[0] == 4 && memcmp(tok[0], "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return pp_bad(reason, rlen, "PROXY v1 protocol \"%.*s\" is not "
                      "TCP4, TCP6 or UNKNOWN", (int)(tlen[0] > 16 ? 16
                      : tlen[0]), tok[0]);
    if (nt != 5)
        return pp_bad(reason, rlen, "PROXY v1 header has %zu fields after "
                      "%s, not 4 (addresses and ports, one space apart)",
                      nt - 1, family == AF_INET ? "TCP4" : "TCP6");
    if (!pp_v1_port(tok[3], tlen[3], &sport) ||
        !pp_v1_port(tok[4], tlen[4], &dport))
        return pp_bad(reason, rlen, "PROXY v1 port is not a number from 0 "
                                    "to 65535");
    if (!pp_v1_addr(family, tok[1], tlen[1], sport, &res->src) ||
        !pp_v1_addr(family, tok[2], tlen[2], dport, &res->dst))
        return pp_bad(reason, rlen, "PROXY v1 address is not an %s "
                      "address", family == AF_INET ? "IPv4" : "IPv6");
    res->has_addr = true;
    res->what = family == AF_INET ? "TCP4" : "TCP6";
    return PROXY_PP_DONE;
}

static proxy_pp_status_t pp_v1(const char *b, size_t n,
                               proxy_pp_result_t *res, char *reason,
                               size_t rlen)
{
    size_t lim = n < PROXY_PP_V1_MAX ? n : PROXY_PP_V1_MAX;

    if (memcmp(b, pp_v1_sig, n < PP_V1_SIG_LEN ? n : PP_V1_SIG_LEN) != 0)
        return pp_bad(reason, rlen, "not a PROXY protocol header");
    for (size_t i = PP_V1_SIG_LEN; i < lim; i++) {
        unsigned char c = (unsigned char)b[i];

        if (c == '\r') {
            if (i + 1 == n)
                return PROXY_PP_NEED_MORE;
            if (b[i + 1] != '\n')
                return pp_bad(reason, rlen, "PROXY v1 header has a CR not "
                                            "followed by LF");
            res->version = 1;
            res->length = i + 2;
            return pp_v1_fields(b + PP_V1_SIG_LEN, i - PP_V1_SIG_LEN, res,
                                reason, rlen);
        }
        if (c < 0x20 || c > 0x7e)
            return pp_bad(reason, rlen, "PROXY v1 header holds byte 0x%02x "
                          "(only printable ASCII and a final CRLF)", c);
    }
    if (n >= PROXY_PP_V1_MAX)
        return pp_bad(reason, rlen, "PROXY v1 header longer than %d bytes "
                      "(no CRLF)", PROXY_PP_V1_MAX);
    return PROXY_PP_NEED_MORE;
}

/* ------------------------------------------------------------ version 2 */

/* TLVs must tile what follows the addresses exactly. */
static bool pp_v2_tlvs(const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t len;

        if (n < 3)
            return false;
        len = ((size_t)p[1] << 8) | p[2];
        if (len > n - 3)
            return false;
        p += 3 + len;
        n -= 3 + len;
    }
    return true;
}

static void pp_v2_ip(proxy_pp_result_t *res, const uint8_t *a, int family)
{
    if (family == AF_INET) {
        struct sockaddr_in s = {.sin_family = AF_INET}, d = s;

        memcpy(&s.sin_addr, a, 4);
        memcpy(&d.sin_addr, a + 4, 4);
        memcpy(&s.sin_port, a + 8, 2);
        memcpy(&d.sin_port, a + 10, 2);
        zl_addr_from_sockaddr(&res->src, (struct sockaddr *)&s, sizeof(s));
        zl_addr_from_sockaddr(&res->dst, (struct sockaddr *)&d, sizeof(d));
    } else {
        struct sockaddr_in6 s = {.sin6_family = AF_INET6}, d = s;

        memcpy(&s.sin6_addr, a, 16);
        memcpy(&d.sin6_addr, a + 16, 16);
        memcpy(&s.sin6_port, a + 32, 2);
        memcpy(&d.sin6_port, a + 34, 2);
        zl_addr_from_sockaddr(&res->src, (struct sockaddr *)&s, sizeof(s));
        zl_addr_from_sockaddr(&res->dst, (struct sockaddr *)&d, sizeof(d));
    }
}

/* The address block of a PROXY command: family and transport in fam. */
static proxy_pp_status_t pp_v2_proxy(const uint8_t *b, size_t len,
                                     proxy_pp_result_t *res, char *reason,
                                     size_t rlen)
{
    static const struct {
        uint8_t fam;
        size_t need;
        const char *what;
    } fams[] = {
        {0x00, 0, "UNSPEC"}, {0x11, 12, "TCP4"}, {0x12, 12, "UDP4"},
        {0x21, 36, "TCP6"},  {0x22, 36, "UDP6"}, {0x31, 216, "UNIX"},
        {0x32, 216, "UNIX"},
    };
    uint8_t fam = b[13];

    for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
        if (fams[i].fam != fam)
            continue;
        if (len < fams[i].need)
            return pp_bad(reason, rlen, "PROXY v2 %s header announces %zu "
                          "bytes, fewer than its %zu bytes of addresses",
                          fams[i].what, len, fams[i].need);
        if (!pp_v2_tlvs(b + PP_V2_FIXED + fams[i].need,
                        len - fams[i].need))
            return pp_bad(reason, rlen, "PROXY v2 TLVs overrun the header");
        res->what = fams[i].what;
        if (fam == 0x11 || fam == 0x21) {
            pp_v2_ip(res, b + PP_V2_FIXED, fam == 0x11 ? AF_INET : AF_INET6);
            res->has_addr = true;
        }
        return PROXY_PP_DONE;
    }
    return pp_bad(reason, rlen, "PROXY v2 address family and protocol 0x%02x "
                  "are not in the specification", fam);
}

static proxy_pp_status_t pp_v2(const uint8_t *b, size_t n,
                               proxy_pp_result_t *res, char *reason,
                               size_t rlen)
{
    size_t len;

    if (memcmp(b, pp_v2_sig, n < 12 ? n : 12) != 0)
        return pp_bad(reason, rlen, "not a PROXY protocol header");
    if (n < 13)
        return PROXY_PP_NEED_MORE;
    if ((b[12] >> 4) != 2)
        return pp_bad(reason, rlen, "PROXY protocol version %d is not 2 "
                      "after the v2 signature", b[12] >> 4);
    if ((b[12] & 0x0f) > 1)
        return pp_bad(reason, rlen, "PROXY v2 command 0x%x is not LOCAL "
                      "or PROXY", b[12] & 0x0f);
    if (n < PP_V2_FIXED)
        return PROXY_PP_NEED_MORE;
    len = ((size_t)b[14] << 8) | b[15];
    if (PP_V2_FIXED + len > PROXY_PP_V2_MAX)
        return pp_bad(reason, rlen, "PROXY v2 header of %zu bytes is over "
                      "the limit of %d", PP_V2_FIXED + len, PROXY_PP_V2_MAX);
    if (n < PP_V2_FIXED + len)
        return PROXY_PP_NEED_MORE;
    res->version = 2;
    res->length = PP_V2_FIXED + len;
    if ((b[12] & 0x0f) == 0) {
        /* LOCAL: the sender's own connection (a health check); whatever
         * the block holds is skipped, as the specification requires. */
        res->what = "LOCAL";
        return PROXY_PP_DONE;
    }
    return pp_v2_proxy(b, len, res, reason, rlen);
}

proxy_pp_status_t proxy__pp_parse(const void *buf, size_t n,
                                  proxy_pp_result_t *res, char *reason,
                                  size_t reason_len)
{
    const uint8_t *b = buf;
    proxy_pp_status_t st;

    memset(res, 0, sizeof(*res));
    if (reason && reason_len)
        reason[0] = '\0';
    if (n == 0)
        return PROXY_PP_NEED_MORE;
    if (b[0] == (uint8_t)pp_v1_sig[0])
        st = pp_v1((const char *)b, n, res, reason, reason_len);
    else if (b[0] == pp_v2_sig[0])
        st = pp_v2(b, n, res, reason, reason_len);
    else
        st = pp_bad(reason, reason_len, "not a PROXY protocol header");
    if (st != PROXY_PP_DONE)
        memset(res, 0, sizeof(*res));
    return st;
}

/* ------------------------------------------------------------- building */

typedef union {
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} pp_sa_t;

/* src and dst as two addresses of one family, in s and d: a lone IPv4
 * beside an IPv6 address becomes v4-mapped.  Returns the family, or 0 if
 * either is not an IP address. */
static int pp_pair(const zl_addr_t *src, const zl_addr_t *dst, pp_sa_t *s,
                   pp_sa_t *d)
{
    const zl_addr_t *a[2] = {src, dst};
    struct sockaddr_in6 *o[2] = {&s->in6, &d->in6};
    int fam[2];

    for (int i = 0; i < 2; i++) {
        fam[i] = a[i] && a[i]->len ? a[i]->u.sa.sa_family : 0;
        if (fam[i] != AF_INET && fam[i] != AF_INET6)
            return 0;
    }
    if (fam[0] == AF_INET && fam[1] == AF_INET) {
        s->in = src->u.in;
        d->in = dst->u.in;
        return AF_INET;
    }
    for (int i = 0; i < 2; i++) {
        memset(o[i], 0, sizeof(*o[i]));
        o[i]->sin6_family = AF_INET6;
        if (fam[i] == AF_INET6) {
            *o[i] = a[i]->u.in6;
            continue;
        }
        o[i]->sin6_port = a[i]->u.in.sin_port;
        o[i]->sin6_addr.s6_addr[10] = 0xff;
        o[i]->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&o[i]->sin6_addr.s6_addr[12], &a[i]->u.in.sin_addr, 4);
    }
    return AF_INET6;
}

static size_t pp_build_v1(int fam, const pp_sa_t *s, const pp_sa_t *d,
                          char *out, size_t out_len)
{
    char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
    const struct sockaddr_in *s4 = &s->in, *d4 = &d->in;
    const struct sockaddr_in6 *s6 = &s->in6, *d6 = &d->in6;
    int n;

    if (fam == 0)
        n = snprintf(out, out_len, "PROXY UNKNOWN\r\n");
    else if (fam == AF_INET)
        n = snprintf(out, out_len, "PROXY TCP4 %s %s %u %u\r\n",
                     inet_ntop(AF_INET, &s4->sin_addr, sa, sizeof(sa)),
                     inet_ntop(AF_INET, &d4->sin_addr, da, sizeof(da)),
                     ntohs(s4->sin_port), ntohs(d4->sin_port));
    else
        n = snprintf(out, out_len, "PROXY TCP6 %s %s %u %u\r\n",
                     inet_ntop(AF_INET6, &s6->sin6_addr, sa, sizeof(sa)),
                     inet_ntop(AF_INET6, &d6->sin6_addr, da, sizeof(da)),
                     ntohs(s6->sin6_port), ntohs(d6->sin6_port));
    return n > 0 && (size_t)n < out_len ? (size_t)n : 0;
}

static size_t pp_build_v2(int fam, const pp_sa_t *s, const pp_sa_t *d,
                          uint8_t *out, size_t out_len)
{
    const struct sockaddr_in *s4 = &s->in, *d4 = &d->in;
    const struct sockaddr_in6 *s6 = &s->in6, *d6 = &d->in6;
    size_t alen = fam == AF_INET ? 12 : fam == AF_INET6 ? 36 : 0;
    uint8_t *a = out + PP_V2_FIXED;

    if (out_len < PP_V2_FIXED + alen)
        return 0;
    memcpy(out, pp_v2_sig, sizeof(pp_v2_sig));
    out[12] = 0x21; /* version 2, PROXY */
    out[13] = fam == AF_INET ? 0x11 : fam == AF_INET6 ? 0x21 : 0x00;
    out[14] = (uint8_t)(alen >> 8);
    out[15] = (uint8_t)alen;
    if (fam == AF_INET) {
        memcpy(a, &s4->sin_addr, 4);
        memcpy(a + 4, &d4->sin_addr, 4);
        memcpy(a + 8, &s4->sin_port, 2);
        memcpy(a + 10, &d4->sin_port, 2);
    } else if (fam == AF_INET6) {
        memcpy(a, &s6->sin6_addr, 16);
        memcpy(a + 16, &d6->sin6_addr, 16);
        memcpy(a + 32, &s6->sin6_port, 2);
        memcpy(a + 34, &d6->sin6_port, 2);
    }
    return PP_V2_FIXED + alen;
}

size_t proxy__pp_build(int version, const zl_addr_t *src,
                       const zl_addr_t *dst, void *out, size_t out_len)
{
    pp_sa_t s, d;
    int fam = pp_pair(src, dst, &s, &d);

    if (version == 1)
        return pp_build_v1(fam, &s, &d, out, out_len);
    if (version == 2)
        return pp_build_v2(fam, &s, &d, out, out_len);
    return 0;
}
