/* zltk tests — network basics (zltk/net.h): addresses, error kinds, stage
 * names, byte buffers. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "test.h"

/* ------------------------------------------------------------ from_ip */

static void test_from_ip_v4(void)
{
    zl_addr_t a;
    char buf[ZL_ADDR_STRLEN];

    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&a, "127.0.0.1", 8080), 0);
    CU_ASSERT_EQUAL(a.u.sa.sa_family, AF_INET);
    CU_ASSERT_EQUAL(a.len, sizeof(struct sockaddr_in));
    CU_ASSERT_EQUAL(ntohs(a.u.in.sin_port), 8080);
    CU_ASSERT_EQUAL(ntohl(a.u.in.sin_addr.s_addr), 0x7f000001u);
    CU_ASSERT_EQUAL(zl_addr_port(&a), 8080);
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&a, buf, sizeof(buf)),
                           "127.0.0.1:8080");

    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&a, "0.0.0.0", 0), 0);
    CU_ASSERT_EQUAL(a.u.sa.sa_family, AF_INET);
    CU_ASSERT_EQUAL(zl_addr_port(&a), 0);
    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&a, "255.255.255.255", 65535), 0);
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&a, buf, sizeof(buf)),
                           "255.255.255.255:65535");
}

static void test_from_ip_v6(void)
{
    zl_addr_t a;
    struct in6_addr lo = IN6ADDR_LOOPBACK_INIT;

    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&a, "::1", 443), 0);
    CU_ASSERT_EQUAL(a.u.sa.sa_family, AF_INET6);
    CU_ASSERT_EQUAL(a.len, sizeof(struct sockaddr_in6));
    CU_ASSERT_EQUAL(ntohs(a.u.in6.sin6_port), 443);
    CU_ASSERT_EQUAL(memcmp(&a.u.in6.sin6_addr, &lo, sizeof(lo)), 0);
    CU_ASSERT_EQUAL(a.u.in6.sin6_scope_id, 0);
    CU_ASSERT_EQUAL(zl_addr_port(&a), 443);

    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&a, "2001:db8::a:b", 1), 0);
    CU_ASSERT_EQUAL(a.u.sa.sa_family, AF_INET6);
    CU_ASSERT_EQUAL(a.u.in6.sin6_addr.s6_addr[0], 0x20);
    CU_ASSERT_EQUAL(a.u.in6.sin6_addr.s6_addr[15], 0x0b);
    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&a, "::", 9), 0);
    CU_ASSERT_EQUAL(a.u.sa.sa_family, AF_INET6);
}

static void test_from_ip_scoped(void)
{
    zl_addr_t a;
    char buf[ZL_ADDR_STRLEN];
    unsigned lo = if_nametoindex("lo");

    /* Numeric scope. */
    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&a, "fe80::1%3", 80), 0);
    CU_ASSERT_EQUAL(a.u.sa.sa_family, AF_INET6);
    CU_ASSERT_EQUAL(a.u.in6.sin6_scope_id, 3);
    CU_ASSERT_EQUAL(a.u.in6.sin6_addr.s6_addr[0], 0xfe);
    CU_ASSERT_EQUAL(a.u.in6.sin6_addr.s6_addr[15], 1);
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&a, buf, sizeof(buf)),
                           "[fe80::1%3]:80");
    /* Interface name scope. */
    if (lo) {
        char want[ZL_ADDR_STRLEN];
        CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&a, "fe80::1%lo", 80), 0);
        CU_ASSERT_EQUAL(a.u.in6.sin6_scope_id, lo);
        snprintf(want, sizeof(want), "[fe80::1%%%u]:80", lo);
        CU_ASSERT_STRING_EQUAL(zl_addr_format(&a, buf, sizeof(buf)), want);
    }
    /* Empty or unknown scope. */
    CU_ASSERT_EQUAL(zl_addr_from_ip(&a, "fe80::1%", 80), -EINVAL);
    CU_ASSERT_EQUAL(zl_addr_from_ip(&a, "fe80::1%no-such-if0", 80), -EINVAL);
    /* A scope on IPv4 is junk. */
    CU_ASSERT_EQUAL(zl_addr_from_ip(&a, "1.2.3.4%lo", 80), -EINVAL);
}

static void test_from_ip_junk(void)
{
    static const char *const junk[] = {
        "", "localhost", "good.test", "1.2.3", "1.2.3.4.5", "256.1.1.1",
        "::g", "[::1]", "1.2.3.4:80", " 127.0.0.1", "127.0.0.1 ", ":::",
        "%lo", NULL,
    };
    zl_addr_t a;

    for (int i = 0; junk[i]; i++) {
        int rc = zl_addr_from_ip(&a, junk[i], 80);
        if (rc != -EINVAL)
            fprintf(stderr, "\n  zl_addr_from_ip(\"%s\") = %d\n", junk[i], rc);
        CU_ASSERT_EQUAL(rc, -EINVAL);
    }
    CU_ASSERT_EQUAL(zl_addr_from_ip(&a, NULL, 80), -EINVAL);
}

/* ------------------------------------------------------------ split */

/* Split text; on success compare host/port. */
static void split_ok(const char *text, bool zero, const char *host,
                     uint16_t port)
{
    char h[64];
    uint16_t p = 7;
    int rc = zl_addr_split(text, h, sizeof(h), &p, zero);

    if (rc != 0)
        fprintf(stderr, "\n  zl_addr_split(\"%s\") = %d\n", text, rc);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_STRING_EQUAL(h, host);
    CU_ASSERT_EQUAL(p, port);
}

/* Expect -EINVAL and nothing written. */
static void split_bad(const char *text, bool zero)
{
    char h[64];
    uint16_t p = 4242;
    int rc;

    memset(h, 'X', sizeof(h));
    rc = zl_addr_split(text, h, sizeof(h), &p, zero);
    if (rc != -EINVAL)
        fprintf(stderr, "\n  zl_addr_split(\"%s\") = %d (host \"%.*s\")\n",
                text ? text : "(null)", rc, 20, h);
    CU_ASSERT_EQUAL(rc, -EINVAL);
    CU_ASSERT_EQUAL(p, 4242);
    CU_ASSERT_EQUAL(h[0], 'X');
}

static void test_split_good(void)
{
    split_ok("h:80", false, "h", 80);
    split_ok("example.org:443", false, "example.org", 443);
    split_ok("127.0.0.1:65535", false, "127.0.0.1", 65535);
    split_ok("[::1]:80", false, "::1", 80);
    split_ok("[fe80::1%lo]:8080", false, "fe80::1%lo", 8080);
    split_ok("h:1", false, "h", 1);
    split_ok("h:0", true, "h", 0);
}

static void test_split_bad(void)
{
    split_bad("h", false);          /* missing port */
    split_bad("h:", false);         /* empty port */
    split_bad(":80", false);        /* empty host */
    split_bad("[]:80", false);      /* empty v6 host */
    split_bad("h:0", false);        /* port 0 not allowed */
    split_bad("h:65536", false);
    split_bad("h:65536", true);
    split_bad("h:99999999999999999999", false);
    split_bad("h:-1", false);
    split_bad("h:-1", true);
    split_bad("h:+80", false);
    split_bad("h:80x", false);
    split_bad("h:0x50", false);
    split_bad("::1", false);        /* bare v6 */
    split_bad("::1:80", false);     /* bare v6 with a port-looking tail */
    split_bad("fe80::1%lo", false);
    split_bad("[::1]", false);      /* bracketed, no port */
    split_bad("[::1]80", false);
    split_bad("[::1:80", false);
    split_bad("[::1]:", false);
    split_bad("", false);
    split_bad(NULL, false);
}

/* A port with blanks is malformed text (strtoul would skip them). */
static void test_split_blank_port(void)
{
    split_bad("h: 80", false);
    split_bad("h:\t80", false);
    split_bad("[::1]: 80", false);
}

static void test_split_hostlen(void)
{
    char h[8];
    uint16_t p = 1;

    /* "abc" + NUL = 4 bytes: fits in 4, not in 3. */
    CU_ASSERT_EQUAL(zl_addr_split("abc:5", h, 4, &p, false), 0);
    CU_ASSERT_STRING_EQUAL(h, "abc");
    CU_ASSERT_EQUAL(p, 5);
    memset(h, 'X', sizeof(h));
    p = 1;
    CU_ASSERT_EQUAL(zl_addr_split("abc:5", h, 3, &p, false), -EINVAL);
    CU_ASSERT_EQUAL(h[0], 'X');
    CU_ASSERT_EQUAL(p, 1);
    CU_ASSERT_EQUAL(zl_addr_split("[::1]:5", h, 3, &p, false), -EINVAL);
    CU_ASSERT_EQUAL(zl_addr_split("[::1]:5", h, 4, &p, false), 0);
    CU_ASSERT_STRING_EQUAL(h, "::1");
}

/* ------------------------------------------------------------ format */

static void test_format(void)
{
    zl_addr_t a;
    char buf[ZL_ADDR_STRLEN], small[8];

    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&a, "1.2.3.4", 80), 0);
    CU_ASSERT_PTR_EQUAL(zl_addr_format(&a, buf, sizeof(buf)), buf);
    CU_ASSERT_STRING_EQUAL(buf, "1.2.3.4:80");
    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&a, "::1", 80), 0);
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&a, buf, sizeof(buf)), "[::1]:80");
    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&a, "2001:db8::1", 65535), 0);
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&a, buf, sizeof(buf)),
                           "[2001:db8::1]:65535");

    /* The longest text fits in ZL_ADDR_STRLEN. */
    CU_ASSERT_EQUAL_FATAL(
        zl_addr_from_ip(&a, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe%4294967295",
                        65535),
        0);
    CU_ASSERT_STRING_EQUAL(
        zl_addr_format(&a, buf, sizeof(buf)),
        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe%4294967295]:65535");

    /* Empty address and NULL. */
    memset(&a, 0, sizeof(a));
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&a, buf, sizeof(buf)), "-");
    CU_ASSERT_STRING_EQUAL(zl_addr_format(NULL, buf, sizeof(buf)), "-");
    CU_ASSERT_EQUAL(zl_addr_port(&a), 0);
    CU_ASSERT_EQUAL(zl_addr_port(NULL), 0);

    /* A short buffer is truncated, still terminated. */
    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&a, "10.20.30.40", 5000), 0);
    zl_addr_format(&a, small, sizeof(small));
    CU_ASSERT_EQUAL(strlen(small), sizeof(small) - 1);
    CU_ASSERT_EQUAL(strncmp(small, "10.20.30.40:5000", sizeof(small) - 1), 0);
}

static void test_from_sockaddr(void)
{
    struct sockaddr_in6 s6;
    struct sockaddr_in s4;
    struct sockaddr_un su;
    zl_addr_t a;
    char buf[ZL_ADDR_STRLEN];

    /* v4-mapped IPv6 is normalised to plain IPv4. */
    memset(&s6, 0, sizeof(s6));
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons(80);
    CU_ASSERT_EQUAL_FATAL(inet_pton(AF_INET6, "::ffff:1.2.3.4", &s6.sin6_addr), 1);
    CU_ASSERT_EQUAL_FATAL(
        zl_addr_from_sockaddr(&a, (struct sockaddr *)&s6, sizeof(s6)), 0);
    CU_ASSERT_EQUAL(a.u.sa.sa_family, AF_INET);
    CU_ASSERT_EQUAL(a.len, sizeof(struct sockaddr_in));
    CU_ASSERT_EQUAL(zl_addr_port(&a), 80);
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&a, buf, sizeof(buf)), "1.2.3.4:80");

    /* Plain IPv6 stays IPv6, scope kept. */
    CU_ASSERT_EQUAL_FATAL(inet_pton(AF_INET6, "fe80::2", &s6.sin6_addr), 1);
    s6.sin6_scope_id = 7;
    CU_ASSERT_EQUAL_FATAL(
        zl_addr_from_sockaddr(&a, (struct sockaddr *)&s6, sizeof(s6)), 0);
    CU_ASSERT_EQUAL(a.u.sa.sa_family, AF_INET6);
    CU_ASSERT_EQUAL(a.u.in6.sin6_scope_id, 7);
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&a, buf, sizeof(buf)),
                           "[fe80::2%7]:80");

    /* IPv4 copied as is. */
    memset(&s4, 0, sizeof(s4));
    s4.sin_family = AF_INET;
    s4.sin_port = htons(1234);
    s4.sin_addr.s_addr = htonl(0x0a000001);
    CU_ASSERT_EQUAL_FATAL(
        zl_addr_from_sockaddr(&a, (struct sockaddr *)&s4, sizeof(s4)), 0);
    CU_ASSERT_STRING_EQUAL(zl_addr_format(&a, buf, sizeof(buf)), "10.0.0.1:1234");

    /* AF_UNIX is taken (tests/test-unix.c); other families are refused. */
    memset(&su, 0, sizeof(su));
    su.sun_family = AF_UNIX;
    CU_ASSERT_EQUAL(zl_addr_from_sockaddr(&a, (struct sockaddr *)&su, sizeof(su)),
                    0);
    su.sun_family = AF_APPLETALK;
    CU_ASSERT_EQUAL(zl_addr_from_sockaddr(&a, (struct sockaddr *)&su, sizeof(su)),
                    -EAFNOSUPPORT);
}

/* ------------------------------------------------------------ errors */

static void test_err_kind(void)
{
    CU_ASSERT_EQUAL(zl_err_kind(-ECONNREFUSED), ZL_EREFUSED);
    CU_ASSERT_EQUAL(zl_err_kind(-ETIMEDOUT), ZL_ETIMEOUT);
    CU_ASSERT_EQUAL(zl_err_kind(-ECONNRESET), ZL_ERESET);
    CU_ASSERT_EQUAL(zl_err_kind(-EPIPE), ZL_ERESET);
    CU_ASSERT_EQUAL(zl_err_kind(ZL_ECANCELED), ZL_ESHUTDOWN);
    CU_ASSERT_EQUAL(zl_err_kind(-EACCES), ZL_EOTHER);
    CU_ASSERT_EQUAL(zl_err_kind(-EAGAIN), ZL_EOTHER);
    CU_ASSERT_EQUAL(zl_err_kind(-ENOMEM), ZL_EOTHER);
    CU_ASSERT_EQUAL(zl_err_kind(-EINVAL), ZL_EOTHER);
    CU_ASSERT_EQUAL(zl_err_kind(-12345), ZL_EOTHER);
    /* Kinds map to themselves. */
    CU_ASSERT_EQUAL(zl_err_kind(ZL_EOF), ZL_EOF);
    CU_ASSERT_EQUAL(zl_err_kind(ZL_ETIMEOUT), ZL_ETIMEOUT);
    CU_ASSERT_EQUAL(zl_err_kind(ZL_EREFUSED), ZL_EREFUSED);
    CU_ASSERT_EQUAL(zl_err_kind(ZL_ERESET), ZL_ERESET);
    CU_ASSERT_EQUAL(zl_err_kind(ZL_EDNS), ZL_EDNS);
    CU_ASSERT_EQUAL(zl_err_kind(ZL_ESHUTDOWN), ZL_ESHUTDOWN);
    CU_ASSERT_EQUAL(zl_err_kind(ZL_ETLS), ZL_ETLS);
    CU_ASSERT_EQUAL(zl_err_kind(ZL_EOTHER), ZL_EOTHER);
}

static void test_stage_name(void)
{
    static const struct {
        zl_stage_t st;
        const char *name;
    } t[] = {
        {ZL_STAGE_NONE, "none"},       {ZL_STAGE_RESOLVE, "resolve"},
        {ZL_STAGE_SOCKET, "socket"},   {ZL_STAGE_BIND, "bind"},
        {ZL_STAGE_CONNECT, "connect"}, {ZL_STAGE_READ, "read"},
        {ZL_STAGE_WRITE, "write"},     {ZL_STAGE_TLS, "tls"},
        {ZL_STAGE_LISTEN, "listen"},   {ZL_STAGE_ACCEPT, "accept"},
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        const char *n = zl_stage_name(t[i].st);
        CU_ASSERT_PTR_NOT_NULL_FATAL(n);
        CU_ASSERT_STRING_EQUAL(n, t[i].name);
    }
    /* Out of range: still a static string. */
    CU_ASSERT_PTR_NOT_NULL(zl_stage_name((zl_stage_t)1000));
    CU_ASSERT_PTR_NOT_NULL(zl_stage_name((zl_stage_t)-1));
}

/* ------------------------------------------------------------ buffers */

static void test_buf_basic(void)
{
    zl_buf_t *b = zl_buf_new(100), *c;
    static const char text[] = "hello, buffer";

    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(b->len, 0);
    CU_ASSERT_EQUAL(b->cap, 100);
    CU_ASSERT_PTR_NOT_NULL(b->data);
    CU_ASSERT_EQUAL(zl_buf_refcount(b), 1);
    memset(b->data, 0xab, b->cap); /* all of cap is writable (ASan) */
    b->len = b->cap;

    CU_ASSERT_PTR_EQUAL(zl_buf_ref(b), b);
    CU_ASSERT_EQUAL(zl_buf_refcount(b), 2);
    zl_buf_unref(b);
    CU_ASSERT_EQUAL(zl_buf_refcount(b), 1);
    CU_ASSERT_EQUAL(b->data[99], 0xab); /* still alive */
    zl_buf_unref(b);
    zl_buf_unref(NULL);

    c = zl_buf_new_copy(text, sizeof(text));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->len, sizeof(text));
    CU_ASSERT(c->cap >= sizeof(text));
    CU_ASSERT_EQUAL(memcmp(c->data, text, sizeof(text)), 0);
    CU_ASSERT_PTR_NOT_EQUAL(c->data, (const uint8_t *)text);
    CU_ASSERT_EQUAL(zl_buf_refcount(c), 1);
    zl_buf_unref(c);

    c = zl_buf_new_copy(text, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->len, 0);
    zl_buf_unref(c);
    c = zl_buf_new(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->len, 0);
    CU_ASSERT_EQUAL(c->cap, 0);
    zl_buf_unref(c);
}

#define BUF_THREADS 4
#define BUF_ROUNDS 20000

static void *buf_hammer(void *arg)
{
    zl_buf_t *b = arg;

    for (int i = 0; i < BUF_ROUNDS; i++) {
        zl_buf_ref(b);
        if (b->data[i % b->len] != (uint8_t)(i % b->len))
            return (void *)1;
        zl_buf_unref(b);
    }
    return NULL;
}

static void *buf_drop(void *arg)
{
    zl_buf_unref(arg);
    return NULL;
}

/* Handed between threads: refs and unrefs from many threads balance, and
 * the last unref on another thread frees (ASan would see a leak or a
 * double free, TSan a race on the count). */
static void test_buf_threads(void)
{
    uint8_t bytes[64];
    zl_buf_t *b;
    pthread_t th[BUF_THREADS];
    void *r;

    for (size_t i = 0; i < sizeof(bytes); i++)
        bytes[i] = (uint8_t)i;
    b = zl_buf_new_copy(bytes, sizeof(bytes));
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    for (int i = 0; i < BUF_THREADS; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, buf_hammer, b), 0);
    for (int i = 0; i < BUF_THREADS; i++) {
        pthread_join(th[i], &r);
        CU_ASSERT_PTR_NULL(r);
    }
    CU_ASSERT_EQUAL(zl_buf_refcount(b), 1);

    /* Last reference dropped on another thread. */
    zl_buf_ref(b);
    zl_buf_unref(b);
    CU_ASSERT_EQUAL(pthread_create(&th[0], NULL, buf_drop, b), 0);
    pthread_join(th[0], NULL);
}

int zl_test_register_net(void)
{
    static const zl_test_case_t cases[] = {
        {"addr_from_ip: IPv4", test_from_ip_v4},
        {"addr_from_ip: IPv6", test_from_ip_v6},
        {"addr_from_ip: scoped IPv6", test_from_ip_scoped},
        {"addr_from_ip: junk is -EINVAL", test_from_ip_junk},
        {"addr_split: host:port, [v6]:port, port 0 when allowed",
         test_split_good},
        {"addr_split: missing/0/65536/-1 port, bare v6 rejected",
         test_split_bad},
        {"addr_split: blanks in the port rejected", test_split_blank_port},
        {"addr_split: hostlen respected", test_split_hostlen},
        {"addr_format: v4, [v6], scope, empty, truncation", test_format},
        {"addr_from_sockaddr: v4-mapped normalised, others refused",
         test_from_sockaddr},
        {"err_kind mapping", test_err_kind},
        {"stage_name", test_stage_name},
        {"buf: new, copy, ref, unref", test_buf_basic},
        {"buf: refs from 4 threads, last unref elsewhere", test_buf_threads},
        {NULL, NULL},
    };
    return zl_test_add_suite("net", NULL, NULL, cases);
}
