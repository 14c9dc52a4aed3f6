/* zltk tests — the one CUnit runner.
 *
 *   zltk-tests              run every suite
 *   zltk-tests SUITE...     run only these suites
 *   zltk-tests --list       list the suites
 *
 * The poller backend under test is chosen with ZLTK_POLLER_BACKEND
 * (epoll, poll).  Exit status: 0 if every test passed, 1 otherwise.
 */
#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/socket.h>

#include <glib.h>
#include <time.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "test.h"

static const struct {
    const char *name;
    int (*reg)(void);
} suites[] = {
    {"error", zl_test_register_error},
    {"poller", zl_test_register_poller},
    {"task", zl_test_register_task},
    {"timer", zl_test_register_timer},
    {"pool", zl_test_register_pool},
    {"worker", zl_test_register_worker},
    {"runtime", zl_test_register_runtime},
    {"log", zl_test_register_log},
    {"net", zl_test_register_net},
    {"conn", zl_test_register_conn},
    {"halfclose", zl_test_register_halfclose},
    {"plugin", zl_test_register_plugin},
    {"handlers", zl_test_register_handlers},
    {"instance", zl_test_register_instance},
    {"tls", zl_test_register_tls},
    {"tls-interop", zl_test_register_tls_interop},
    {"embed", zl_test_register_embed},
    {"proxy-units", zl_test_register_proxy_units},
    {"proxy-peers", zl_test_register_proxy_peers},
    {"unix", zl_test_register_unix},
};
#define N_SUITES (sizeof(suites) / sizeof(suites[0]))

bool zl_test_check_at(const char *file, int line, bool ok, const char *fmt,
                      ...)
{
    va_list ap;
    char *what;

    va_start(ap, fmt);
    what = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, (unsigned)line, what,
                            file, "", CU_FALSE);
    g_free(what);
    return ok;
}

void zl_test_sock_timeouts(int fd, unsigned ms)
{
    struct timeval tv = {ms / 1000, (long)(ms % 1000) * 1000};

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

bool zl_test_send_all(int fd, const void *data, size_t n)
{
    const uint8_t *p = data;

    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

bool zl_test_recv_exact(int fd, void *dst, size_t n)
{
    uint8_t *p = dst;

    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

int zl_test_read_end(int fd, size_t *discarded)
{
    uint8_t buf[16384];

    for (;;) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r > 0) {
            if (discarded)
                *discarded += (size_t)r;
            continue;
        }
        if (r == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return errno;
    }
}

uint16_t zl_test_closed_port(void)
{
    zl_addr_t a;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    uint16_t port = 0;

    zl_addr_from_ip(&a, "127.0.0.1", 0);
    if (fd >= 0 && bind(fd, &a.u.sa, a.len) == 0 &&
        getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
        zl_addr_from_sockaddr(&a, (struct sockaddr *)&ss, len) == 0)
        port = zl_addr_port(&a);
    if (fd >= 0)
        close(fd);
    return port;
}

int zl_test_add_suite(const char *name, CU_InitializeFunc init,
                      CU_CleanupFunc cleanup, const zl_test_case_t *cases)
{
    CU_pSuite s = CU_add_suite(name, init, cleanup);
    if (!s)
        return CU_get_error();
    for (; cases->name; cases++)
        if (!CU_add_test(s, cases->name, cases->fn))
            return CU_get_error();
    return 0;
}

void zl_test_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

unsigned zl_test_slow(void)
{
    const char *s = getenv("ZLTK_TEST_SLOW");
    unsigned v = s ? (unsigned)strtoul(s, NULL, 10) : 1;
    return v ? v : 1;
}

int zl_test_wait_flag(atomic_int *flag, unsigned timeout_ms)
{
    uint64_t end = zl_now_ms() + (uint64_t)timeout_ms * zl_test_slow();
    int v;
    while (!(v = atomic_load(flag)) && zl_now_ms() < end)
        zl_test_sleep_ms(1);
    return v;
}

int zl_test_wait_ge(atomic_int *v, int want, unsigned timeout_ms)
{
    uint64_t end = zl_now_ms() + (uint64_t)timeout_ms * zl_test_slow();
    int x;

    while ((x = atomic_load(v)) < want && zl_now_ms() < end)
        zl_test_sleep_ms(1);
    return x;
}

long zl_test_wait_count(atomic_long *counter, long target, unsigned timeout_ms)
{
    uint64_t end = zl_now_ms() + (uint64_t)timeout_ms * zl_test_slow();
    long v;
    while ((v = atomic_load(counter)) < target && zl_now_ms() < end)
        zl_test_sleep_ms(1);
    return v;
}

zl_poller_t *zl_test_new_poller(void)
{
    zl_poller_t *p = NULL;
    int rc = zl_poller_new(&p, NULL);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    return p;
}

void zl_test_noop(void *arg)
{
    (void)arg;
}

int zl_test_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int zl_test_wait_threads(int want)
{
    uint64_t end = zl_now_ms() + 2000u * zl_test_slow();
    int n;

    while ((n = zl_test_count_entries("/proc/self/task")) != want &&
           zl_now_ms() < end)
        zl_test_sleep_ms(1);
    return n;
}

void zl_test_rm_tree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;

    if (d) {
        while ((de = readdir(d))) {
            char p[4096];
            struct stat st;
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                zl_test_rm_tree(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

int main(int argc, char **argv)
{
    int only = 0;

    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && (!strcmp(argv[1], "--list") || !strcmp(argv[1], "-l"))) {
        for (size_t i = 0; i < N_SUITES; i++)
            puts(suites[i].name);
        return 0;
    }
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: %s [--list] [SUITE...]\n"
               "Runs the zltk CUnit suites (all of them by default).\n"
               "ZLTK_POLLER_BACKEND=epoll|poll selects the poller backend;\n"
               "ZLTK_TEST_SLOW=N stretches time limits (sanitizer builds).\n",
               argv[0]);
        return 0;
    }
    for (int a = 1; a < argc; a++) {
        size_t i;
        for (i = 0; i < N_SUITES; i++)
            if (!strcmp(argv[a], suites[i].name))
                break;
        if (i == N_SUITES) {
            fprintf(stderr, "%s: no suite named '%s' (try --list)\n", argv[0],
                    argv[a]);
            return 2;
        }
        only = 1;
    }

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    for (size_t i = 0; i < N_SUITES; i++) {
        int want = !only;
        for (int a = 1; a < argc && !want; a++)
            want = !strcmp(argv[a], suites[i].name);
        if (want && suites[i].reg() != 0) {
            fprintf(stderr, "cannot register suite %s: %s\n", suites[i].name,
                    CU_get_error_msg());
            CU_cleanup_registry();
            return 2;
        }
    }
    printf("zltk tests, poller backend: %s\n",
           getenv("ZLTK_POLLER_BACKEND") ? getenv("ZLTK_POLLER_BACKEND")
                                         : "default");
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() +
                      CU_get_number_of_tests_failed();
    CU_pRunSummary sum = CU_get_run_summary();
    int rc = (failed || sum->nSuitesFailed) ? 1 : 0;
    CU_cleanup_registry();
    return rc;
}
