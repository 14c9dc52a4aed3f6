/* zltk plugin "proxy": the values of its own keys, parsed from their text
 * once, when an instance is configured.  Every error names the entry it
 * refuses and says what would be accepted. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy-internal.h"

#define OPT_ENTRY_MAX 512 /* longest upstream entry: a name of 253 bytes and
                             a port, with room for a mistake to be shown */

static bool opt_sep(char c)
{
    return c == ',' || isspace((unsigned char)c);
}

/* One "HOST:PORT" of n bytes at p. */
static int up_entry(const char *p, size_t n, proxy_upstream_t *out,
                    char *err, size_t err_len)
{
    char tmp[OPT_ENTRY_MAX], host[OPT_ENTRY_MAX];
    uint16_t port;

    if (n >= sizeof(tmp)) {
        snprintf(err, err_len, "\"%.40s...\": longer than %d bytes", p,
                 OPT_ENTRY_MAX - 1);
        return -1;
    }
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    if (zl_addr_is_unix_text(tmp)) {
        zl_addr_t a;
        int rc = zl_addr_from_unix(&a, tmp);

        if (rc != 0) {
            snprintf(err, err_len, "\"%s\": %s", tmp,
                     rc == -ENAMETOOLONG
                         ? "a Unix socket path holds at most 107 bytes"
                         : "not unix:PATH");
            return -1;
        }
        out->host = g_strdup(tmp); /* a client's host takes unix:PATH */
        out->port = 0;
        out->text = g_strdup(tmp);
        return 0;
    }
    if (zl_addr_split(tmp, host, sizeof(host), &port, false) != 0) {
        const char *colon = strrchr(tmp, ':');

        if (colon && colon != strchr(tmp, ':') && tmp[0] != '[')
            snprintf(err, err_len, "\"%s\": an IPv6 address needs brackets "
                     "before its port, as in [2001:db8::1]:443", tmp);
        else
            snprintf(err, err_len, "\"%s\": not HOST:PORT with a port from "
                     "1 to 65535", tmp);
        return -1;
    }
    out->host = g_strdup(host);
    out->port = port;
    out->text = g_strdup(tmp);
    return 0;
}

int proxy__upstreams_parse(const char *text, proxy_upstreams_t *out,
                           char *err, size_t err_len)
{
    GArray *v = g_array_new(FALSE, TRUE, sizeof(proxy_upstream_t));
    const char *p = text ? text : "";
    proxy_upstreams_t got;

    for (;;) {
        proxy_upstream_t u;
        size_t n = 0;

        while (*p && opt_sep(*p))
            p++;
        if (!*p)
            break;
        while (p[n] && !opt_sep(p[n]))
            n++;
        if (up_entry(p, n, &u, err, err_len) != 0)
            goto fail;
        for (guint i = 0; i < v->len; i++) {
            proxy_upstream_t *o = &g_array_index(v, proxy_upstream_t, i);

            /* Names compare without case; Unix paths with it. */
            if (o->port == u.port &&
                (u.port ? g_ascii_strcasecmp(o->host, u.host)
                        : strcmp(o->host, u.host)) == 0) {
                snprintf(err, err_len, "\"%s\" is listed twice", u.text);
                g_free(u.host);
                g_free(u.text);
                goto fail;
            }
        }
        g_array_append_val(v, u);
        p += n;
    }
    if (v->len == 0) {
        snprintf(err, err_len, "no upstream: give HOST:PORT, or several "
                               "separated by commas");
        goto fail;
    }
    got.n = v->len;
    got.v = (proxy_upstream_t *)(void *)g_array_free(v, FALSE);
    *out = got;
    return 0;
fail:
    got.n = v->len;
    got.v = (proxy_upstream_t *)(void *)g_array_free(v, FALSE);
    proxy__upstreams_clear(&got);
    return -1;
}

void proxy__upstreams_clear(proxy_upstreams_t *u)
{
    for (size_t i = 0; i < u->n; i++) {
        g_free(u->v[i].host);
        g_free(u->v[i].text);
    }
    g_free(u->v);
    u->v = NULL;
    u->n = 0;
}

/* text without the blanks around it, in buf; false if it does not fit. */
static bool opt_trim(const char *text, char *buf, size_t len)
{
    size_t n;

    if (!text)
        return false;
    while (isspace((unsigned char)*text))
        text++;
    n = strlen(text);
    while (n && isspace((unsigned char)text[n - 1]))
        n--;
    if (n >= len)
        return false;
    memcpy(buf, text, n);
    buf[n] = '\0';
    return true;
}

int proxy__balance_parse(const char *text, proxy_balance_t *out, char *err,
                         size_t err_len)
{
    static const struct {
        const char *name;
        proxy_balance_t v;
    } names[] = {
        {"first", PROXY_BALANCE_FIRST},
        {"round-robin", PROXY_BALANCE_ROUND_ROBIN},
        {"least-connections", PROXY_BALANCE_LEAST_CONNECTIONS},
    };
    char t[32];

    if (opt_trim(text, t, sizeof(t)))
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (g_ascii_strcasecmp(t, names[i].name) == 0) {
                *out = names[i].v;
                return 0;
            }
    snprintf(err, err_len, "\"%s\" is not first, round-robin or "
             "least-connections", text ? text : "");
    return -1;
}

int proxy__pp_version_parse(const char *text, int *version, char *err,
                            size_t err_len)
{
    char t[16];
    bool off;

    if (opt_trim(text, t, sizeof(t))) {
        if (!g_ascii_strcasecmp(t, "v1") || !strcmp(t, "1")) {
            *version = 1;
            return 0;
        }
        if (!g_ascii_strcasecmp(t, "v2") || !strcmp(t, "2")) {
            *version = 2;
            return 0;
        }
        if (!g_ascii_strcasecmp(t, "none") ||
            (zl_parse_bool(t, &off) == 0 && !off)) {
            *version = 0;
            return 0;
        }
    }
    snprintf(err, err_len, "\"%s\" is not a PROXY protocol version: v1, v2 "
             "or off", text ? text : "");
    return -1;
}
