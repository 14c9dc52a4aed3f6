/* zltk tests — suite "proxy-peers": the proxy plugin's PROXY protocol
 * against a real haproxy (Debian's haproxy package), over loopback.
 *
 * One haproxy runs with two TCP frontends that require a PROXY header
 * (accept-proxy) and relay to a listener of the test with send-proxy (v1)
 * and send-proxy-v2.  The test connects, sends a header built by
 * proxy__pp_build() for made-up addresses, then a payload; haproxy reads our
 * header and writes its own towards the listener, which the test reads with
 * proxy__pp_parse().  The addresses that come out must be the ones that went
 * in: haproxy understood our header, and we understood haproxy's.  Every
 * combination of v1 / v2 in and out, IPv4 and IPv6 addresses.
 *
 * Without haproxy on PATH the tests pass with a message saying they were
 * skipped. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>

#include "test.h"
#include "../plugins/proxy/proxy-internal.h"

extern char **environ;

typedef struct {
    char dir[64];
    pid_t pid;
    int lfd;             /* the test's listener, haproxy's server */
    uint16_t front[2];   /* frontends: [0] send-proxy, [1] send-proxy-v2 */
} hap_t;

static hap_t hap = {.pid = -1, .lfd = -1};

static bool have_haproxy(void)
{
    gchar *p = g_find_program_in_path("haproxy");
    bool ok = p != NULL;

    g_free(p);
    return ok;
}

static int listen_any(uint16_t *port)
{
    zl_addr_t a;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    zl_addr_from_ip(&a, "127.0.0.1", 0);
    if (fd < 0 || bind(fd, &a.u.sa, a.len) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
        zl_addr_from_sockaddr(&a, (struct sockaddr *)&ss, len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = zl_addr_port(&a);
    return fd;
}

static int connect_port(uint16_t port)
{
    zl_addr_t a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    zl_addr_from_ip(&a, "127.0.0.1", port);
    if (fd >= 0 && connect(fd, &a.u.sa, a.len) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Start haproxy on two free ports; true once both frontends accept. */
static bool hap_start(void)
{
    uint16_t back;
    char cfg[128], log[128];
    char *argv[] = {"haproxy", "-db", "-f", cfg, NULL};
    posix_spawn_file_actions_t fa;
    uint64_t end;
    FILE *f;

    snprintf(hap.dir, sizeof(hap.dir), "/tmp/zltk-hap-XXXXXX");
    if (!mkdtemp(hap.dir) || (hap.lfd = listen_any(&back)) < 0)
        return false;
    hap.front[0] = zl_test_closed_port();
    hap.front[1] = zl_test_closed_port();
    snprintf(cfg, sizeof(cfg), "%s/haproxy.cfg", hap.dir);
    snprintf(log, sizeof(log), "%s/haproxy.log", hap.dir);
    if (!(f = fopen(cfg, "w")))
        return false;
    fprintf(f,
            "global\n  maxconn 64\n"
            "defaults\n  mode tcp\n  timeout connect 5s\n"
            "  timeout client 10s\n  timeout server 10s\n"
            "frontend v1\n  bind 127.0.0.1:%u accept-proxy\n"
            "  default_backend b1\n"
            "frontend v2\n  bind 127.0.0.1:%u accept-proxy\n"
            "  default_backend b2\n"
            "backend b1\n  server s 127.0.0.1:%u send-proxy\n"
            "backend b2\n  server s 127.0.0.1:%u send-proxy-v2\n",
            hap.front[0], hap.front[1], back, back);
    fclose(f);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (posix_spawnp(&hap.pid, "haproxy", &fa, NULL, argv, environ) != 0)
        hap.pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    if (hap.pid < 0)
        return false;
    end = zl_now_ms() + 10000u * zl_test_slow();
    while (zl_now_ms() < end) {
        int a = connect_port(hap.front[0]), b = connect_port(hap.front[1]);

        if (a >= 0)
            close(a);
        if (b >= 0)
            close(b);
        if (a >= 0 && b >= 0)
            return true;
        if (waitpid(hap.pid, NULL, WNOHANG) == hap.pid) {
            hap.pid = -1;
            return false;
        }
        zl_test_sleep_ms(20);
    }
    return false;
}

static int suite_init(void)
{
    if (!have_haproxy())
        return 0;
    /* The ports were free a moment ago; another program may take one
     * first, so a failed start is tried again on new ports. */
    for (int i = 0; i < 3 && !hap_start(); i++) {
        char log[128];
        gchar *text = NULL;

        snprintf(log, sizeof(log), "%s/haproxy.log", hap.dir);
        g_file_get_contents(log, &text, NULL, NULL);
        fprintf(stderr, "proxy-peers: haproxy did not start (try %d): %s\n",
                i + 1, text ? text : "no log");
        g_free(text);
        if (hap.pid > 0) {
            kill(hap.pid, SIGTERM);
            waitpid(hap.pid, NULL, 0);
        }
        hap.pid = -1;
        if (hap.lfd >= 0)
            close(hap.lfd);
        hap.lfd = -1;
        zl_test_rm_tree(hap.dir);
    }
    return hap.pid > 0 ? 0 : 1;
}

static int suite_clean(void)
{
    if (hap.pid > 0) {
        kill(hap.pid, SIGTERM);
        waitpid(hap.pid, NULL, 0);
    }
    if (hap.lfd >= 0)
        close(hap.lfd);
    if (hap.dir[0])
        zl_test_rm_tree(hap.dir);
    return 0;
}

/* Read from fd until proxy__pp_parse() finishes a header and the payload
 * after it is there; the header's result in *r, the payload in pay. */
static bool read_header(int fd, proxy_pp_result_t *r, char *pay,
                        size_t paylen)
{
    unsigned char buf[PROXY_PP_V2_MAX + 64];
    char reason[256];
    size_t n = 0;
    proxy_pp_status_t st = PROXY_PP_NEED_MORE;

    while (n < sizeof(buf)) {
        ssize_t k = recv(fd, buf + n, sizeof(buf) - n, 0);

        if (k <= 0)
            break;
        n += (size_t)k;
        st = proxy__pp_parse(buf, n, r, reason, sizeof(reason));
        if (st == PROXY_PP_BAD) {
            ZL_TEST_CHECK(false, "haproxy's header refused: %s", reason);
            return false;
        }
        if (st == PROXY_PP_DONE && n - r->length >= paylen) {
            memcpy(pay, buf + r->length, paylen);
            return n - r->length == paylen;
        }
    }
    ZL_TEST_CHECK(false, "no whole header from haproxy (%zu bytes, %s)", n,
                  st == PROXY_PP_DONE ? "payload short" : "header short");
    return false;
}

/* Our header of version vin for src -> dst through the frontend that sends
 * version vout. */
static void through(int vin, int vout, const char *src, uint16_t sport,
                    const char *dst, uint16_t dport)
{
    zl_addr_t s, d;
    unsigned char hdr[PROXY_PP_BUILD_MAX];
    char want_s[ZL_ADDR_STRLEN], want_d[ZL_ADDR_STRLEN];
    char got_s[ZL_ADDR_STRLEN], got_d[ZL_ADDR_STRLEN], pay[5] = "";
    proxy_pp_result_t r;
    size_t n;
    int c, a;

    if (hap.pid < 0) {
        fprintf(stderr, "[skipped: haproxy is not installed] ");
        return;
    }
    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&s, src, sport), 0);
    CU_ASSERT_EQUAL_FATAL(zl_addr_from_ip(&d, dst, dport), 0);
    n = proxy__pp_build(vin, &s, &d, hdr, sizeof(hdr));
    CU_ASSERT_FATAL(n > 0);
    c = connect_port(hap.front[vout - 1]);
    CU_ASSERT_FATAL(c >= 0);
    zl_test_sock_timeouts(c, 5000 * zl_test_slow());
    CU_ASSERT_TRUE(zl_test_send_all(c, hdr, n));
    CU_ASSERT_TRUE(zl_test_send_all(c, "ping", 4));
    {
        struct pollfd p = {.fd = hap.lfd, .events = POLLIN};

        CU_ASSERT_EQUAL_FATAL(poll(&p, 1, 5000 * (int)zl_test_slow()), 1);
    }
    a = accept(hap.lfd, NULL, NULL);
    CU_ASSERT_FATAL(a >= 0);
    zl_test_sock_timeouts(a, 5000 * zl_test_slow());
    if (read_header(a, &r, pay, 4)) {
        CU_ASSERT_EQUAL(r.version, vout);
        CU_ASSERT_TRUE(r.has_addr);
        zl_addr_format(&s, want_s, sizeof(want_s));
        zl_addr_format(&d, want_d, sizeof(want_d));
        zl_addr_format(&r.src, got_s, sizeof(got_s));
        zl_addr_format(&r.dst, got_d, sizeof(got_d));
        ZL_TEST_CHECK(strcmp(got_s, want_s) == 0 &&
                      strcmp(got_d, want_d) == 0,
                      "v%d in, v%d out: sent %s -> %s, haproxy sent %s -> "
                      "%s", vin, vout, want_s, want_d, got_s, got_d);
        CU_ASSERT_EQUAL(memcmp(pay, "ping", 4), 0);
    }
    close(a);
    close(c);
}

static void test_v1_v1(void)
{
    through(1, 1, "203.0.113.9", 40000, "198.51.100.7", 443);
    through(1, 1, "2001:db8::9", 1, "2001:db8:1::7", 65535);
}

static void test_v1_v2(void)
{
    through(1, 2, "203.0.113.9", 40000, "198.51.100.7", 443);
    through(1, 2, "2001:db8::9", 1, "2001:db8:1::7", 65535);
}

static void test_v2_v1(void)
{
    through(2, 1, "192.0.2.200", 12345, "10.9.8.7", 80);
    through(2, 1, "fe80::1", 2, "::1", 3);
}

static void test_v2_v2(void)
{
    through(2, 2, "192.0.2.200", 12345, "10.9.8.7", 80);
    through(2, 2, "fe80::1", 2, "::1", 3);
}

int zl_test_register_proxy_peers(void)
{
    static const zl_test_case_t cases[] = {
        {"haproxy reads our v1, sends v1", test_v1_v1},
        {"haproxy reads our v1, sends v2", test_v1_v2},
        {"haproxy reads our v2, sends v1", test_v2_v1},
        {"haproxy reads our v2, sends v2", test_v2_v2},
        {NULL, NULL},
    };

    return zl_test_add_suite("proxy-peers", suite_init, suite_clean, cases);
}
