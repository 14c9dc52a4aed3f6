/* zltk — version, error table, clock, small system helpers. */
#include "zl-internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

const char *zl_version(void)
{
    return ZLTK_VERSION;
}

/* ------------------------------------------------------------ values */

static bool word_is(const char *v, size_t len, const char *word)
{
    return strlen(word) == len && !g_ascii_strncasecmp(v, word, len);
}

int zl_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    size_t len;

    if (!text)
        return -EINVAL;
    while (*text == ' ' || *text == '\t')
        text++;
    len = strlen(text);
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\t'))
        len--;
    for (size_t i = 0; i < G_N_ELEMENTS(yes); i++) {
        if (word_is(text, len, yes[i])) {
            *out = true;
            return 0;
        }
        if (word_is(text, len, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

int zl_parse_int(const char *text, int64_t min, int64_t max, int64_t *out)
{
    gint64 n;
    char *end;

    if (!text)
        return -EINVAL;
    while (*text == ' ' || *text == '\t')
        text++;
    errno = 0;
    n = g_ascii_strtoll(text, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (end == text || *end || errno == EINVAL)
        return -EINVAL;
    if (errno == ERANGE || n < min || n > max)
        return -ERANGE;
    *out = n;
    return 0;
}

/* ------------------------------------------------------------ errors */

static const char *const err_msgs[] = {
#define ZL__ERR_MSG(name, msg) msg,
    ZL_ERRNO_MAP(ZL__ERR_MSG)
#undef ZL__ERR_MSG
};

static const char *const err_names[] = {
#define ZL__ERR_NAME(name, msg) "ZL_" #name,
    ZL_ERRNO_MAP(ZL__ERR_NAME)
#undef ZL__ERR_NAME
};

static int zl_err_index(int err)
{
    /* Range check first: subtracting from an arbitrary int may overflow. */
    if (err > ZL__ERR_BASE || err <= ZL__ERR_BASE - ZL__ERR_IDX_MAX)
        return -1;
    return ZL__ERR_BASE - err;
}

const char *zl_strerror(int err)
{
    int idx;

    if (err == 0)
        return "success";
    idx = zl_err_index(err);
    if (idx >= 0)
        return err_msgs[idx];
    if (err < 0 && err > -4000) {
        /* Not strerror() (not thread-safe) nor g_strerror() (its cache is
         * locked with GLib mutexes that ThreadSanitizer cannot see). */
#ifdef HAVE_STRERRORDESC_NP
        const char *d = strerrordesc_np(-err);
        if (d)
            return d;
#else
        static _Thread_local char buf[128];
#if defined(_GNU_SOURCE) && defined(__GLIBC__)
        return strerror_r(-err, buf, sizeof(buf));
#else
        if (strerror_r(-err, buf, sizeof(buf)) == 0)
            return buf;
#endif
#endif
    }
    return "unknown error";
}

const char *zl_err_name(int err)
{
    int idx;

    if (err == 0)
        return "OK";
    idx = zl_err_index(err);
    if (idx >= 0)
        return err_names[idx];
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
    if (err < 0 && err > -4000) {
        const char *n = strerrorname_np(-err);
        if (n)
            return n;
    }
#endif
    return "UNKNOWN";
}

/* ------------------------------------------------------------ clock */

uint64_t zl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t zl_now_us(void)
{
    return zl_now_ns() / 1000u;
}

uint64_t zl_now_ms(void)
{
    return zl_now_ns() / 1000000u;
}

/* ------------------------------------------------------------ system */

int zl__ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int zl__thread_pin(int cpu)
{
#ifdef HAVE_PTHREAD_SETAFFINITY_NP
    cpu_set_t set;
    int rc;

    if (cpu < 0 || cpu >= CPU_SETSIZE)
        return -EINVAL;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    return -rc;
#else
    (void)cpu;
    return -ENOTSUP;
#endif
}
