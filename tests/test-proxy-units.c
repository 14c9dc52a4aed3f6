/* zltk tests — suite "proxy-units": the proxy plugin's pieces that touch
 * no socket, compiled in from plugins/proxy/: the PROXY protocol reader and
 * writer (haproxy's specification, versions 1 and 2), the CIDR allow /
 * deny lists, the option values and the per-source connection counts.  Headers from real senders (haproxy's send-proxy) are read in
 * tests/check-proxy-pp.sh. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "../plugins/proxy/proxy-internal.h"

static char reason[256];

/* The reader gets a heap copy of exactly n bytes, so that a read past the
 * end is caught by AddressSanitizer, and the bytes after it in the caller's
 * buffer cannot make a wrong reader look right. */
static proxy_pp_status_t parse(const void *b, size_t n, proxy_pp_result_t *r)
{
    void *copy = malloc(n ? n : 1);
    proxy_pp_status_t st;

    CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
    if (n)
        memcpy(copy, b, n);
    st = proxy__pp_parse(copy, n, r, reason, sizeof(reason));
    free(copy);
    return st;
}

static void expect_addr(const zl_addr_t *a, const char *want)
{
    char buf[ZL_ADDR_STRLEN];

    ZL_TEST_CHECK(strcmp(zl_addr_format(a, buf, sizeof(buf)), want) == 0,
                  "address %s, want %s", buf, want);
}

static zl_addr_t ip(const char *host, uint16_t port)
{
    zl_addr_t a;

    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&a, host, port), 0);
    return a;
}

/* Every proper prefix of a header asks for more; the whole, followed by
 * payload, is read to its exact length. */
static void expect_incremental(const void *hdr, size_t len)
{
    unsigned char buf[PROXY_PP_V2_MAX + 16];
    proxy_pp_result_t r;

    CU_ASSERT_FATAL(len + 5 <= sizeof(buf));
    memcpy(buf, hdr, len);
    memcpy(buf + len, "hello", 5);
    for (size_t n = 0; n < len; n++)
        if (!ZL_TEST_CHECK(parse(buf, n, &r) == PROXY_PP_NEED_MORE,
                           "prefix of %zu of %zu bytes: %s", n, len, reason))
            return;
    CU_ASSERT_EQUAL(parse(buf, len + 5, &r), PROXY_PP_DONE);
    CU_ASSERT_EQUAL(r.length, len);
}

/* ------------------------------------------------------------ version 1 */

static void test_v1_tcp4(void)
{
    const char *h = "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n";
    proxy_pp_result_t r;

    CU_ASSERT_EQUAL(parse(h, strlen(h), &r), PROXY_PP_DONE);
    CU_ASSERT_EQUAL(r.version, 1);
    CU_ASSERT_EQUAL(r.length, strlen(h));
    CU_ASSERT_TRUE(r.has_addr);
    CU_ASSERT_STRING_EQUAL(r.what, "TCP4");
    expect_addr(&r.src, "192.0.2.1:56324");
    expect_addr(&r.dst, "198.51.100.7:443");
    expect_incremental(h, strlen(h));
}

static void test_v1_tcp6_and_unknown(void)
{
    const char *h6 = "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n";
    const char *longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:"
                          "ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                          "65535 65535\r\n";
    const char *unk = "PROXY UNKNOWN whatever follows is ignored\r\nDATA";
    proxy_pp_result_t r;

    CU_ASSERT_EQUAL(parse(h6, strlen(h6), &r), PROXY_PP_DONE);
    CU_ASSERT_STRING_EQUAL(r.what, "TCP6");
    expect_addr(&r.src, "[2001:db8::1]:0");
    expect_addr(&r.dst, "[::1]:65535");
    CU_ASSERT_EQUAL(parse(longest, strlen(longest), &r), PROXY_PP_DONE);
    CU_ASSERT_EQUAL(r.length, strlen(longest));
    CU_ASSERT_EQUAL(parse(unk, strlen(unk), &r), PROXY_PP_DONE);
    CU_ASSERT_FALSE(r.has_addr);
    CU_ASSERT_STRING_EQUAL(r.what, "UNKNOWN");
    CU_ASSERT_EQUAL(r.length, strlen(unk) - 4);
    CU_ASSERT_EQUAL(parse("PROXY UNKNOWN\r\n", 15, &r), PROXY_PP_DONE);
    CU_ASSERT_EQUAL(r.length, 15);
}

static void expect_bad(const char *h, size_t n, const char *why_part)
{
    proxy_pp_result_t r;

    ZL_TEST_CHECK(parse(h, n, &r) == PROXY_PP_BAD, "\"%.*s\" accepted",
                  (int)n, h);
    ZL_TEST_CHECK(strstr(reason, why_part) != NULL,
                  "reason \"%s\" lacks \"%s\"", reason, why_part);
    CU_ASSERT_EQUAL(r.length, 0);
    CU_ASSERT_FALSE(r.has_addr);
}

static void test_v1_refused(void)
{
    char big[200];

    expect_bad("GET / HTTP/1.1\r\n", 1, "not a PROXY protocol header");
    expect_bad("PROXZ", 5, "not a PROXY");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n", 31, "fields");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 80 81 82\r\n", 37, "more than");
    expect_bad("PROXY TCP4 1.2.3.4  5.6.7.8 80 81\r\n", 35, "fields");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 080 81\r\n", 35, "port");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 65536 81\r\n", 37, "port");
    expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 -1 81\r\n", 34, "port");
    expect_bad("PROXY TCP4 ::1 5.6.7.8 80 81\r\n", 30, "IPv4");
    expect_bad("PROXY TCP6 1.2.3.4 ::1 80 81\r\n", 30, "IPv6");
    expect_bad("PROXY TCP4 1.2.3 5.6.7.8 80 81\r\n", 32, "IPv4");
    expect_bad("PROXY TCP5 1.2.3.4 5.6.7.8 80 81\r\n", 34, "TCP5");
    expect_bad("PROXY TCP4 1.2.3.4\r5.6.7.8", 26, "CR not followed");
    expect_bad("PROXY TCP4 1.2.3.4\n", 19, "byte 0x0a");
    expect_bad("PROXY TCP4 1.2\0003.4", 18, "byte 0x00");
    /* No CRLF within 107 bytes: refused at the 107th, not waited for. */
    memcpy(big, "PROXY TCP4 ", 11);
    memset(big + 11, '1', sizeof(big) - 11);
    CU_ASSERT_EQUAL(parse(big, PROXY_PP_V1_MAX - 1, &(proxy_pp_result_t){0}),
                    PROXY_PP_NEED_MORE);
    expect_bad(big, PROXY_PP_V1_MAX, "longer than 107");
    expect_bad(big, sizeof(big), "longer than 107");
}

/* ------------------------------------------------------------ version 2 */

static const unsigned char sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A v2 header by hand: command byte, family byte, then len bytes of body. */
static size_t v2(unsigned char *out, uint8_t vc, uint8_t fam,
                 const void *body, size_t len)
{
    memcpy(out, sig, 12);
    out[12] = vc;
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    if (len)
        memcpy(out + 16, body, len);
    return 16 + len;
}

static void test_v2_tcp(void)
{
    /* 192.0.2.1:56324 -> 198.51.100.7:443, then a NOOP TLV of 2 bytes and
     * an ALPN TLV "h2". */
    const unsigned char body4[] = {192, 0, 2, 1, 198, 51, 100, 7, 0xdc,
                                   0x04, 0x01, 0xbb, 0x04, 0, 2, 0, 0,
                                   0x01, 0, 2, 'h', '2'};
    unsigned char h[64], body6[36] = {0};
    proxy_pp_result_t r;
    size_t n = v2(h, 0x21, 0x11, body4, sizeof(body4));

    CU_ASSERT_EQUAL(parse(h, n, &r), PROXY_PP_DONE);
    CU_ASSERT_EQUAL(r.version, 2);
    CU_ASSERT_EQUAL(r.length, n);
    CU_ASSERT_TRUE(r.has_addr);
    expect_addr(&r.src, "192.0.2.1:56324");
    expect_addr(&r.dst, "198.51.100.7:443");
    expect_incremental(h, n);

    body6[15] = 1;                     /* ::1 */
    body6[16] = 0x20, body6[17] = 0x01; /* 2001:db8:: */
    body6[18] = 0x0d, body6[19] = 0xb8;
    body6[33] = 80, body6[35] = 81;
    n = v2(h, 0x21, 0x21, body6, sizeof(body6));
    CU_ASSERT_EQUAL(parse(h, n, &r), PROXY_PP_DONE);
    CU_ASSERT_STRING_EQUAL(r.what, "TCP6");
    expect_addr(&r.src, "[::1]:80");
    expect_addr(&r.dst, "[2001:db8::]:81");
}

static void test_v2_local_unspec_unix(void)
{
    unsigned char h[300], body[216];
    proxy_pp_result_t r;
    size_t n;

    /* LOCAL: the block is skipped whatever the family says. */
    n = v2(h, 0x20, 0x00, NULL, 0);
    CU_ASSERT_EQUAL(parse(h, n, &r), PROXY_PP_DONE);
    CU_ASSERT_STRING_EQUAL(r.what, "LOCAL");
    CU_ASSERT_FALSE(r.has_addr);
    memset(body, 0xee, sizeof(body));
    n = v2(h, 0x20, 0x11, body, 5);
    CU_ASSERT_EQUAL(parse(h, n, &r), PROXY_PP_DONE);
    CU_ASSERT_EQUAL(r.length, 21);
    /* PROXY with UNSPEC, UDP and Unix: accepted, own addresses stand. */
    n = v2(h, 0x21, 0x00, NULL, 0);
    CU_ASSERT_EQUAL(parse(h, n, &r), PROXY_PP_DONE);
    CU_ASSERT_STRING_EQUAL(r.what, "UNSPEC");
    memset(body, 0, sizeof(body));
    strcpy((char *)body, "/run/a.sock");
    n = v2(h, 0x21, 0x31, body, sizeof(body));
    CU_ASSERT_EQUAL(parse(h, n, &r), PROXY_PP_DONE);
    CU_ASSERT_STRING_EQUAL(r.what, "UNIX");
    CU_ASSERT_FALSE(r.has_addr);
    n = v2(h, 0x21, 0x12, body, 12);
    CU_ASSERT_EQUAL(parse(h, n, &r), PROXY_PP_DONE);
    CU_ASSERT_STRING_EQUAL(r.what, "UDP4");
    CU_ASSERT_FALSE(r.has_addr);
}

static void test_v2_refused(void)
{
    unsigned char h[PROXY_PP_V2_MAX + 64], body[64] = {0};
    size_t n;

    memcpy(h, sig, 12);
    h[5] = 'X';
    expect_bad((char *)h, 6, "not a PROXY protocol header");
    n = v2(h, 0x11, 0x11, body, 12);
    expect_bad((char *)h, n, "version 1 is not 2");
    n = v2(h, 0x22, 0x11, body, 12);
    expect_bad((char *)h, n, "command 0x2");
    n = v2(h, 0x21, 0x41, body, 12);
    expect_bad((char *)h, n, "0x41");
    n = v2(h, 0x21, 0x13, body, 12);
    expect_bad((char *)h, n, "0x13");
    n = v2(h, 0x21, 0x11, body, 11);
    expect_bad((char *)h, n, "fewer than its 12");
    n = v2(h, 0x21, 0x21, body, 35);
    expect_bad((char *)h, n, "fewer than its 36");
    /* TLVs: a truncated type-length, a value running past the end. */
    n = v2(h, 0x21, 0x11, body, 14);
    expect_bad((char *)h, n, "TLVs overrun");
    body[12] = 0x04, body[13] = 0, body[14] = 5;
    n = v2(h, 0x21, 0x11, body, 16);
    expect_bad((char *)h, n, "TLVs overrun");
    /* Oversized: refused from the fixed part alone. */
    v2(h, 0x21, 0x11, NULL, 0);
    h[14] = 0xff, h[15] = 0xff;
    expect_bad((char *)h, 16, "over the limit of 4096");
    h[14] = (PROXY_PP_V2_MAX - 16 + 1) >> 8;
    h[15] = (PROXY_PP_V2_MAX - 16 + 1) & 0xff;
    expect_bad((char *)h, 16, "4097 bytes");
    h[15]--;
    memset(h + 16, 0, PROXY_PP_V2_MAX - 16);
    h[16 + 12] = 0x04; /* one NOOP TLV filling the rest */
    h[16 + 13] = (PROXY_PP_V2_MAX - 16 - 12 - 3) >> 8;
    h[16 + 14] = (PROXY_PP_V2_MAX - 16 - 12 - 3) & 0xff;
    CU_ASSERT_EQUAL(parse(h, PROXY_PP_V2_MAX - 1, &(proxy_pp_result_t){0}),
                    PROXY_PP_NEED_MORE);
    CU_ASSERT_EQUAL(parse(h, PROXY_PP_V2_MAX, &(proxy_pp_result_t){0}),
                    PROXY_PP_DONE);
}

/* ------------------------------------------------------------- building */

static void roundtrip(int version, zl_addr_t s, zl_addr_t d,
                      const char *want_src, const char *want_dst,
                      const char *what)
{
    unsigned char buf[PROXY_PP_BUILD_MAX];
    proxy_pp_result_t r;
    size_t n = proxy__pp_build(version, &s, &d, buf, sizeof(buf));

    CU_ASSERT_FATAL(n > 0);
    CU_ASSERT_EQUAL(parse(buf, n, &r), PROXY_PP_DONE);
    CU_ASSERT_EQUAL(r.version, version);
    CU_ASSERT_EQUAL(r.length, n);
    CU_ASSERT_STRING_EQUAL(r.what, what);
    expect_addr(&r.src, want_src);
    expect_addr(&r.dst, want_dst);
}

static void test_build(void)
{
    unsigned char buf[PROXY_PP_BUILD_MAX];
    zl_addr_t none = {.len = 0};
    zl_addr_t a4 = ip("203.0.113.9", 40000), b4 = ip("10.1.2.3", 8443);
    zl_addr_t a6 = ip("2001:db8::5", 1), b6 = ip("fe80::1", 2);
    proxy_pp_result_t r;
    size_t n;

    n = proxy__pp_build(1, &a4, &b4, buf, sizeof(buf));
    CU_ASSERT_EQUAL(n, strlen("PROXY TCP4 203.0.113.9 10.1.2.3 40000 "
                              "8443\r\n"));
    CU_ASSERT_EQUAL(memcmp(buf, "PROXY TCP4 203.0.113.9 10.1.2.3 40000 "
                                "8443\r\n", n), 0);
    for (int v = 1; v <= 2; v++) {
        roundtrip(v, a4, b4, "203.0.113.9:40000", "10.1.2.3:8443", "TCP4");
        roundtrip(v, a6, b6, "[2001:db8::5]:1", "[fe80::1]:2", "TCP6");
        /* Mixed families: the IPv4 one v4-mapped (reported as IPv4). */
        roundtrip(v, a4, b6, "203.0.113.9:40000", "[fe80::1]:2", "TCP6");
    }
    n = proxy__pp_build(1, &none, &b4, buf, sizeof(buf));
    CU_ASSERT_EQUAL(n, 15);
    CU_ASSERT_EQUAL(memcmp(buf, "PROXY UNKNOWN\r\n", 15), 0);
    n = proxy__pp_build(2, &a4, NULL, buf, sizeof(buf));
    CU_ASSERT_EQUAL(n, 16);
    CU_ASSERT_EQUAL(parse(buf, n, &r), PROXY_PP_DONE);
    CU_ASSERT_STRING_EQUAL(r.what, "UNSPEC");
    CU_ASSERT_EQUAL(proxy__pp_build(3, &a4, &b4, buf, sizeof(buf)), 0);
    CU_ASSERT_EQUAL(proxy__pp_build(2, &a4, &b4, buf, 27), 0);
    CU_ASSERT_EQUAL(proxy__pp_build(2, &a4, &b4, buf, 28), 28);
    CU_ASSERT_EQUAL(proxy__pp_build(1, &a4, &b4, buf, 10), 0);
}

/* Random bytes and mutated valid headers: the reader never reads past n
 * (ASan watches a buffer of exactly n bytes), never reports a header
 * longer than its input, and asks for more only below the bounds. */
static void test_fuzz(void)
{
    zl_addr_t a = ip("192.0.2.1", 1), b = ip("2001:db8::2", 2);
    unsigned char seed[3][PROXY_PP_BUILD_MAX];
    size_t seedlen[3];
    unsigned state = 12345;
    long done = 0, bad = 0, more = 0;

    seedlen[0] = proxy__pp_build(1, &a, &a, seed[0], PROXY_PP_BUILD_MAX);
    seedlen[1] = proxy__pp_build(2, &a, &a, seed[1], PROXY_PP_BUILD_MAX);
    seedlen[2] = proxy__pp_build(2, &a, &b, seed[2], PROXY_PP_BUILD_MAX);
    for (int it = 0; it < 200000; it++) {
        size_t n;
        unsigned char *buf;
        proxy_pp_result_t r;
        proxy_pp_status_t st;
        int k = it % 4;

        state = state * 1103515245u + 12345u;
        n = k == 3 ? (state >> 16) % 300 : seedlen[k];
        buf = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++) {
            state = state * 1103515245u + 12345u;
            buf[i] = k == 3 ? (unsigned char)(state >> 16) : seed[k][i];
        }
        if (k < 3 && n) { /* flip one byte, cut at a random length */
            state = state * 1103515245u + 12345u;
            buf[(state >> 8) % n] ^= (unsigned char)(1u << ((state >> 4) % 8));
            n = (state >> 16) % (n + 1);
        }
        st = parse(buf, n, &r);
        if (st == PROXY_PP_DONE) {
            done++;
            CU_ASSERT(r.length > 0 && r.length <= n);
        } else if (st == PROXY_PP_BAD) {
            bad++;
            CU_ASSERT(reason[0] != '\0');
        } else {
            more++;
            CU_ASSERT(n < PROXY_PP_V2_MAX);
        }
        free(buf);
    }
    /* Each outcome happened: the inputs exercised the whole reader. */
    CU_ASSERT(done > 1000 && bad > 1000 && more > 1000);
}

/* ------------------------------------------------------------- ACLs */

static bool admits(const char *allow, const char *deny, const char *host)
{
    proxy_acl_t a, d;
    char err[256];
    zl_addr_t x = ip(host, 9);
    bool ok;

    CU_ASSERT_EQUAL_FATAL(proxy__acl_parse(allow, &a, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(proxy__acl_parse(deny, &d, err, sizeof(err)), 0);
    ok = proxy__acl_admits(&a, &d, &x);
    proxy__acl_clear(&a);
    proxy__acl_clear(&d);
    return ok;
}

static void test_acl_match(void)
{
    CU_ASSERT_TRUE(admits("", "", "192.0.2.1"));
    CU_ASSERT_TRUE(admits("192.0.2.0/24", "", "192.0.2.255"));
    CU_ASSERT_FALSE(admits("192.0.2.0/24", "", "192.0.3.0"));
    /* Host bits after the prefix are cleared: .5/24 is the /24. */
    CU_ASSERT_TRUE(admits("192.0.2.5/24", "", "192.0.2.77"));
    CU_ASSERT_TRUE(admits("10.0.0.0/9", "", "10.127.255.255"));
    CU_ASSERT_FALSE(admits("10.0.0.0/9", "", "10.128.0.0"));
    CU_ASSERT_TRUE(admits("0.0.0.0/0", "", "203.0.113.1"));
    CU_ASSERT_FALSE(admits("0.0.0.0/0", "", "2001:db8::1"));
    CU_ASSERT_TRUE(admits("::/0", "", "2001:db8::1"));
    /* deny wins over allow. */
    CU_ASSERT_FALSE(admits("10.0.0.0/8", "10.1.0.0/16", "10.1.2.3"));
    CU_ASSERT_TRUE(admits("10.0.0.0/8", "10.1.0.0/16", "10.2.2.3"));
    CU_ASSERT_FALSE(admits("", "192.0.2.1", "192.0.2.1"));
    CU_ASSERT_TRUE(admits("", "192.0.2.1", "192.0.2.2"));
    /* IPv6, prefixes off byte boundaries, a list with spaces. */
    CU_ASSERT_TRUE(admits("2001:db8::/33", "", "2001:db8:7fff::1"));
    CU_ASSERT_FALSE(admits("2001:db8::/33", "", "2001:db8:8000::1"));
    CU_ASSERT_TRUE(admits("192.0.2.1 ,  2001:db8::1/128", "", "2001:db8::1"));
    CU_ASSERT_FALSE(admits("192.0.2.1,2001:db8::1/128", "", "2001:db8::2"));
}

/* A dual-stack listener's IPv4 peer, still in v4-mapped form. */
static void test_acl_v4_mapped(void)
{
    proxy_acl_t a;
    char err[128];
    zl_addr_t m = {.len = sizeof(struct sockaddr_in6)};

    m.u.in6.sin6_family = AF_INET6;
    CU_ASSERT_EQUAL(inet_pton(AF_INET6, "::ffff:192.0.2.9",
                              &m.u.in6.sin6_addr), 1);
    CU_ASSERT_EQUAL_FATAL(proxy__acl_parse("192.0.2.0/28", &a, err,
                                           sizeof(err)), 0);
    CU_ASSERT_TRUE(proxy__acl_match(&a, &m));
    proxy__acl_clear(&a);
    CU_ASSERT_EQUAL_FATAL(proxy__acl_parse("192.0.2.16/28", &a, err,
                                           sizeof(err)), 0);
    CU_ASSERT_FALSE(proxy__acl_match(&a, &m));
    proxy__acl_clear(&a);
}

static void expect_acl_error(const char *text, const char *part)
{
    proxy_acl_t a = {(proxy_cidr_t *)&a, 77};
    char err[256] = "";

    CU_ASSERT_EQUAL(proxy__acl_parse(text, &a, err, sizeof(err)), -1);
    ZL_TEST_CHECK(strstr(err, part) != NULL, "\"%s\": error \"%s\" lacks "
                  "\"%s\"", text, err, part);
    /* Untouched on failure. */
    CU_ASSERT_PTR_EQUAL(a.v, (proxy_cidr_t *)&a);
    CU_ASSERT_EQUAL(a.n, 77);
}

static void test_acl_errors(void)
{
    expect_acl_error("10.0.0.0/33", "\"10.0.0.0/33\": prefix length \"33\" "
                                    "is not 0 to 32 for IPv4");
    expect_acl_error("10.0.0.0/8, ::/129", "0 to 128 for IPv6");
    expect_acl_error("10.0.0.0/", "prefix length \"\"");
    expect_acl_error("10.0.0.0/+8", "prefix length \"+8\"");
    expect_acl_error("10.0.0.0/8x", "prefix length \"8x\"");
    expect_acl_error("localhost", "\"localhost\": not an IPv4 or IPv6");
    expect_acl_error("1.2.3.4, 1.2.3", "\"1.2.3\"");
    expect_acl_error("300.1.1.1/8", "\"300.1.1.1/8\"");
}

/* ------------------------------------------------------ option values */

static void expect_up_error(const char *text, const char *part)
{
    proxy_upstreams_t u = {(proxy_upstream_t *)&u, 5};
    char err[256] = "";

    CU_ASSERT_EQUAL(proxy__upstreams_parse(text, &u, err, sizeof(err)), -1);
    ZL_TEST_CHECK(strstr(err, part) != NULL, "\"%s\": error \"%s\" lacks "
                  "\"%s\"", text ? text : "(null)", err, part);
    CU_ASSERT_PTR_EQUAL(u.v, (proxy_upstream_t *)&u);
    CU_ASSERT_EQUAL(u.n, 5);
}

static void test_upstreams(void)
{
    proxy_upstreams_t u;
    char err[256];

    CU_ASSERT_EQUAL_FATAL(proxy__upstreams_parse(
        " 127.0.0.1:8080, [::1]:80 db.example.org:5432,", &u, err,
        sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(u.n, 3);
    CU_ASSERT_STRING_EQUAL(u.v[0].host, "127.0.0.1");
    CU_ASSERT_EQUAL(u.v[0].port, 8080);
    CU_ASSERT_STRING_EQUAL(u.v[1].host, "::1");
    CU_ASSERT_STRING_EQUAL(u.v[1].text, "[::1]:80");
    CU_ASSERT_STRING_EQUAL(u.v[2].host, "db.example.org");
    CU_ASSERT_EQUAL(u.v[2].port, 5432);
    proxy__upstreams_clear(&u);
    CU_ASSERT_EQUAL_FATAL(proxy__upstreams_parse("unix:/run/app.sock 10.0.0.1:1",
                                                 &u, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL_FATAL(u.n, 2);
    CU_ASSERT_STRING_EQUAL(u.v[0].host, "unix:/run/app.sock");
    CU_ASSERT_EQUAL(u.v[0].port, 0);
    proxy__upstreams_clear(&u);
    CU_ASSERT_EQUAL(u.n, 0);

    expect_up_error(NULL, "no upstream");
    expect_up_error(" , ", "no upstream");
    expect_up_error("127.0.0.1", "\"127.0.0.1\": not HOST:PORT");
    expect_up_error("a:1, b:0", "\"b:0\": not HOST:PORT with a port from 1");
    expect_up_error("a:65536", "\"a:65536\"");
    expect_up_error("2001:db8::1:443", "needs brackets");
    expect_up_error("a:1, A:1", "\"A:1\" is listed twice");
    expect_up_error("unix:/x unix:/x", "\"unix:/x\" is listed twice");
    expect_up_error("unix:", "\"unix:\": not unix:PATH");
    {
        char longp[200];

        snprintf(longp, sizeof(longp), "unix:/%0150d", 0);
        expect_up_error(longp, "at most 107 bytes");
    }
}

static void test_balance_and_version(void)
{
    proxy_balance_t b = PROXY_BALANCE_FIRST;
    char err[256];
    int v = -1;

    CU_ASSERT_EQUAL(proxy__balance_parse(" Round-Robin ", &b, err,
                                         sizeof(err)), 0);
    CU_ASSERT_EQUAL(b, PROXY_BALANCE_ROUND_ROBIN);
    CU_ASSERT_EQUAL(proxy__balance_parse("least-connections", &b, err,
                                         sizeof(err)), 0);
    CU_ASSERT_EQUAL(b, PROXY_BALANCE_LEAST_CONNECTIONS);
    CU_ASSERT_EQUAL(proxy__balance_parse("first", &b, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(b, PROXY_BALANCE_FIRST);
    CU_ASSERT_EQUAL(proxy__balance_parse("random", &b, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"random\" is not first, "
                                       "round-robin or least-connections"));
    CU_ASSERT_EQUAL(b, PROXY_BALANCE_FIRST);

    CU_ASSERT_EQUAL(proxy__pp_version_parse("v1", &v, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(v, 1);
    CU_ASSERT_EQUAL(proxy__pp_version_parse(" 2 ", &v, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(v, 2);
    CU_ASSERT_EQUAL(proxy__pp_version_parse("off", &v, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_EQUAL(proxy__pp_version_parse("v3", &v, err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"v3\" is not a PROXY protocol "
                                       "version: v1, v2 or off"));
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_EQUAL(proxy__pp_version_parse("yes", &v, err, sizeof(err)),
                    -1);
}

/* ---------------------------------------------- connections per source */

static void test_limit(void)
{
    proxy_limit_t l;
    zl_addr_t a = ip("192.0.2.1", 1000), a2 = ip("192.0.2.1", 2000);
    zl_addr_t b = ip("2001:db8::1", 1), m = {.len = sizeof(m.u.in6)};

    m.u.in6.sin6_family = AF_INET6;
    CU_ASSERT_EQUAL(inet_pton(AF_INET6, "::ffff:192.0.2.1",
                              &m.u.in6.sin6_addr), 1);
    proxy__limit_init(&l, 2);
    CU_ASSERT_TRUE(proxy__limit_acquire(&l, &a));
    /* Another port and the v4-mapped form are the same source. */
    CU_ASSERT_TRUE(proxy__limit_acquire(&l, &a2));
    CU_ASSERT_FALSE(proxy__limit_acquire(&l, &m));
    CU_ASSERT_TRUE(proxy__limit_acquire(&l, &b));
    CU_ASSERT_EQUAL(proxy__limit_sources(&l), 2);
    proxy__limit_release(&l, &m);
    CU_ASSERT_TRUE(proxy__limit_acquire(&l, &a));
    CU_ASSERT_FALSE(proxy__limit_acquire(&l, &a));
    proxy__limit_release(&l, &a);
    proxy__limit_release(&l, &a);
    proxy__limit_release(&l, &b);
    CU_ASSERT_EQUAL(proxy__limit_sources(&l), 0);
    proxy__limit_fini(&l);

    /* 0: no limit, nothing counted. */
    proxy__limit_init(&l, 0);
    for (int i = 0; i < 100; i++)
        CU_ASSERT_TRUE(proxy__limit_acquire(&l, &a));
    CU_ASSERT_EQUAL(proxy__limit_sources(&l), 0);
    proxy__limit_fini(&l);
}

/* Threads of several pollers acquire and release at once: the count per
 * source never passes the limit and ends at zero. */
#define LIM_THREADS 4
#define LIM_ROUNDS 20000
#define LIM_MAX 3

typedef struct {
    proxy_limit_t *l;
    atomic_int *held;   /* per source, as the threads see it */
    atomic_int *over;
    int id;
} lim_arg_t;

static void *lim_main(void *arg)
{
    lim_arg_t *la = arg;
    char host[32];

    for (int i = 0; i < LIM_ROUNDS; i++) {
        int src = (i + la->id) % 5;
        zl_addr_t a;

        snprintf(host, sizeof(host), "198.51.100.%d", src);
        zl_addr_from_ip(&a, host, (uint16_t)(1000 + la->id));
        if (!proxy__limit_acquire(la->l, &a))
            continue;
        if (atomic_fetch_add(&la->held[src], 1) + 1 > LIM_MAX)
            atomic_fetch_add(la->over, 1);
        atomic_fetch_sub(&la->held[src], 1);
        proxy__limit_release(la->l, &a);
    }
    return NULL;
}

static void test_limit_threads(void)
{
    proxy_limit_t l;
    pthread_t th[LIM_THREADS];
    lim_arg_t la[LIM_THREADS];
    atomic_int held[5] = {0}, over = 0;

    proxy__limit_init(&l, LIM_MAX);
    for (int i = 0; i < LIM_THREADS; i++) {
        la[i] = (lim_arg_t){&l, held, &over, i};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, lim_main, &la[i]),
                              0);
    }
    for (int i = 0; i < LIM_THREADS; i++)
        pthread_join(th[i], NULL);
    CU_ASSERT_EQUAL(atomic_load(&over), 0);
    CU_ASSERT_EQUAL(proxy__limit_sources(&l), 0);
    proxy__limit_fini(&l);
}

int zl_test_register_proxy_units(void)
{
    static const zl_test_case_t cases[] = {
        {"PROXY v1 TCP4, read byte by byte", test_v1_tcp4},
        {"PROXY v1 TCP6, the longest line and UNKNOWN", test_v1_tcp6_and_unknown},
        {"PROXY v1 garbage and malformed lines refused", test_v1_refused},
        {"PROXY v2 TCP4 with TLVs and TCP6", test_v2_tcp},
        {"PROXY v2 LOCAL, UNSPEC, UDP and Unix", test_v2_local_unspec_unix},
        {"PROXY v2 malformed and oversized refused", test_v2_refused},
        {"PROXY headers built and read back", test_build},
        {"PROXY reader fuzzed", test_fuzz},
        {"ACL allow and deny", test_acl_match},
        {"ACL v4-mapped peer", test_acl_v4_mapped},
        {"ACL errors name the entry", test_acl_errors},
        {"upstream lists", test_upstreams},
        {"balance and PROXY version values", test_balance_and_version},
        {"connections per source", test_limit},
        {"connections per source, four threads", test_limit_threads},
        {NULL, NULL},
    };

    return zl_test_add_suite("proxy-units", NULL, NULL, cases);
}
