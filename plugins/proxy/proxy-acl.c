/* zltk plugin "proxy": allow and deny lists of CIDR blocks.  A list is
 * parsed once, when the instance is configured, into an array of blocks
 * with their host bits cleared; matching compares prefix bits, IPv4 peers
 * of a dual-stack listener (::ffff:a.b.c.d) against the IPv4 blocks. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy-internal.h"

#define ACL_ENTRY_MAX 64 /* longest entry: an IPv6 address and "/128" */

/* Clear the bits after the prefix. */
static void acl_mask(uint8_t *net, unsigned prefix, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++) {
        unsigned bits = prefix > i * 8 ? prefix - (unsigned)i * 8 : 0;

        if (bits < 8)
            net[i] &= (uint8_t)(0xff00u >> bits);
    }
}

/* One entry, "ADDR" or "ADDR/PREFIX", of n bytes at p. */
static int acl_entry(const char *p, size_t n, proxy_cidr_t *out, char *err,
                     size_t err_len)
{
    char tmp[ACL_ENTRY_MAX];
    char *slash, *end;
    unsigned long prefix;
    unsigned max;

    if (n >= sizeof(tmp)) {
        snprintf(err, err_len, "\"%.*s...\": not an IP address or CIDR block",
                 24, p);
        return -1;
    }
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    slash = strchr(tmp, '/');
    if (slash)
        *slash = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, tmp, out->net) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, tmp, out->net) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        snprintf(err, err_len, "\"%.*s\": not an IPv4 or IPv6 address "
                 "(names are not allowed in an address list)", (int)n, p);
        return -1;
    }
    out->prefix = max;
    if (slash) {
        errno = 0;
        prefix = strtoul(slash + 1, &end, 10);
        if (!isdigit((unsigned char)slash[1]) || *end || errno ||
            prefix > max) {
            snprintf(err, err_len, "\"%.*s\": prefix length \"%s\" is not "
                     "0 to %u for %s", (int)n, p, slash + 1, max,
                     max == 32 ? "IPv4" : "IPv6");
            return -1;
        }
        out->prefix = (unsigned)prefix;
    }
    acl_mask(out->net, out->prefix, max / 8);
    return 0;
}

static bool acl_sep(char c)
{
    return c == ',' || isspace((unsigned char)c);
}

int proxy__acl_parse(const char *text, proxy_acl_t *acl, char *err,
                     size_t err_len)
{
    proxy_acl_t out = {NULL, 0};
    size_t cap = 0;
    const char *p = text ? text : "";

    for (;;) {
        size_t n = 0;

        while (*p && acl_sep(*p))
            p++;
        if (!*p)
            break;
        while (p[n] && !acl_sep(p[n]))
            n++;
        if (out.n == cap) {
            proxy_cidr_t *v;

            cap = cap ? cap * 2 : 4;
            v = realloc(out.v, cap * sizeof(*v));
            if (!v) {
                snprintf(err, err_len, "out of memory");
                proxy__acl_clear(&out);
                return -1;
            }
            out.v = v;
        }
        if (acl_entry(p, n, &out.v[out.n], err, err_len) != 0) {
            proxy__acl_clear(&out);
            return -1;
        }
        out.n++;
        p += n;
    }
    *acl = out;
    return 0;
}

static bool acl_bits_equal(const uint8_t *a, const uint8_t *net,
                           unsigned prefix)
{
    size_t whole = prefix / 8;
    unsigned rest = prefix % 8;

    if (memcmp(a, net, whole) != 0)
        return false;
    return rest == 0 ||
           (a[whole] & (uint8_t)(0xff00u >> rest)) == net[whole];
}

bool proxy__acl_match(const proxy_acl_t *acl, const zl_addr_t *addr)
{
    uint8_t v4[4], v6[16];
    bool has4 = false, has6 = false;

    if (!acl || !addr || !addr->len)
        return false;
    if (addr->u.sa.sa_family == AF_INET) {
        memcpy(v4, &addr->u.in.sin_addr, 4);
        has4 = true;
    } else if (addr->u.sa.sa_family == AF_INET6) {
        memcpy(v6, &addr->u.in6.sin6_addr, 16);
        has6 = true;
        if (IN6_IS_ADDR_V4MAPPED(&addr->u.in6.sin6_addr)) {
            memcpy(v4, v6 + 12, 4);
            has4 = true;
        }
    }
    for (size_t i = 0; i < acl->n; i++) {
        const proxy_cidr_t *c = &acl->v[i];

        if ((c->family == AF_INET && has4 &&
             acl_bits_equal(v4, c->net, c->prefix)) ||
            (c->family == AF_INET6 && has6 &&
             acl_bits_equal(v6, c->net, c->prefix)))
            return true;
    }
    return false;
}

bool proxy__acl_admits(const proxy_acl_t *allow, const proxy_acl_t *deny,
                       const zl_addr_t *addr)
{
    if (proxy__acl_match(deny, addr))
        return false;
    return !allow || allow->n == 0 || proxy__acl_match(allow, addr);
}

void proxy__acl_clear(proxy_acl_t *acl)
{
    free(acl->v);
    acl->v = NULL;
    acl->n = 0;
}
