/* zltk tests — error codes: zl_strerror() and zl_err_name() (zltk/error.h). */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "test.h"

/* The table as the header defines it: code, expected name, expected message. */
static const struct {
    int code;
    const char *name;
    const char *msg;
} codes[] = {
#define XX(n, m) {ZL_##n, "ZL_" #n, m},
    ZL_ERRNO_MAP(XX)
#undef XX
};
#define N_CODES (sizeof(codes) / sizeof(codes[0]))

static void test_codes_range_distinct(void)
{
    CU_ASSERT_EQUAL(N_CODES, (size_t)ZL__ERR_IDX_MAX);
    for (size_t i = 0; i < N_CODES; i++) {
        CU_ASSERT(codes[i].code < 0);
        CU_ASSERT(codes[i].code >= -4095 && codes[i].code <= -4000);
        for (size_t j = 0; j < i; j++)
            CU_ASSERT_NOT_EQUAL(codes[i].code, codes[j].code);
    }
}

static void test_names(void)
{
    for (size_t i = 0; i < N_CODES; i++) {
        const char *n = zl_err_name(codes[i].code);
        CU_ASSERT_PTR_NOT_NULL_FATAL(n);
        CU_ASSERT_STRING_EQUAL(n, codes[i].name);
        CU_ASSERT_EQUAL(strncmp(n, "ZL_E", 4), 0);
        for (size_t j = 0; j < i; j++)
            CU_ASSERT_STRING_NOT_EQUAL(n, zl_err_name(codes[j].code));
    }
    CU_ASSERT_STRING_EQUAL(zl_err_name(ZL_ETIMEOUT), "ZL_ETIMEOUT");
    CU_ASSERT_STRING_EQUAL(zl_err_name(ZL_ESHUTDOWN), "ZL_ESHUTDOWN");
}

static void test_messages(void)
{
    for (size_t i = 0; i < N_CODES; i++) {
        const char *m = zl_strerror(codes[i].code);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        CU_ASSERT(m[0] != '\0');
        CU_ASSERT_STRING_EQUAL(m, codes[i].msg);
        for (size_t j = 0; j < i; j++)
            CU_ASSERT_STRING_NOT_EQUAL(m, zl_strerror(codes[j].code));
        /* A zltk code must not read as some unrelated errno text. */
        CU_ASSERT_STRING_NOT_EQUAL(m, zl_strerror(-EINVAL));
    }
    CU_ASSERT_STRING_EQUAL(zl_strerror(ZL_ETIMEOUT), "timed out");
    CU_ASSERT_STRING_EQUAL(zl_strerror(ZL_EOF), "end of stream");
}

static void test_errno_passthrough(void)
{
    static const int errs[] = {ECONNREFUSED, ECONNRESET, EINVAL, ENOMEM,
                               EAGAIN,       EBADF,      ENOENT, EEXIST,
                               EPIPE,        ETIMEDOUT,  EMFILE};
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        const char *m = zl_strerror(-errs[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        CU_ASSERT_STRING_EQUAL(m, strerror(errs[i]));
    }
    CU_ASSERT_STRING_EQUAL(zl_strerror(-ECONNREFUSED), strerror(ECONNREFUSED));

    CU_ASSERT_STRING_EQUAL(zl_err_name(-ECONNRESET), "ECONNRESET");
    CU_ASSERT_STRING_EQUAL(zl_err_name(-ECONNREFUSED), "ECONNREFUSED");
    CU_ASSERT_STRING_EQUAL(zl_err_name(-EINVAL), "EINVAL");
    CU_ASSERT_STRING_EQUAL(zl_err_name(-ENOENT), "ENOENT");
    CU_ASSERT_STRING_EQUAL(zl_err_name(-EEXIST), "EEXIST");
    CU_ASSERT_STRING_EQUAL(zl_err_name(-EPIPE), "EPIPE");

    /* errno passthrough never collides with zltk's own codes. */
    for (size_t i = 0; i < N_CODES; i++)
        CU_ASSERT_STRING_NOT_EQUAL(zl_strerror(-ECONNREFUSED), codes[i].msg);
}

static bool is_zl_name(const char *s)
{
    for (size_t i = 0; i < N_CODES; i++)
        if (!strcmp(s, codes[i].name))
            return true;
    return false;
}

static bool is_zl_msg(const char *s)
{
    for (size_t i = 0; i < N_CODES; i++)
        if (!strcmp(s, codes[i].msg))
            return true;
    return false;
}

static void test_zero(void)
{
    const char *m = zl_strerror(0), *n = zl_err_name(0);

    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    CU_ASSERT(m[0] != '\0');
    CU_ASSERT(n[0] != '\0');
    /* 0 is success: it must not read as an error of ours. */
    CU_ASSERT_FALSE(is_zl_msg(m));
    CU_ASSERT_FALSE(is_zl_name(n));
    CU_ASSERT_STRING_NOT_EQUAL(n, "UNKNOWN");
}

static void check_unknown(int code)
{
    const char *m = zl_strerror(code);
    const char *n = zl_err_name(code);

    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n);
    CU_ASSERT(m[0] != '\0');
    CU_ASSERT_FALSE(is_zl_msg(m));
    CU_ASSERT_FALSE(is_zl_name(n));
    if (code < 0)
        CU_ASSERT_STRING_EQUAL(n, "UNKNOWN");
}

static void test_unknown(void)
{
    /* Just past the table, the end of the reserved range, beyond it, and
     * positive values. */
    static const int unknown[] = {ZL__ERR_BASE - ZL__ERR_IDX_MAX,
                                  -4095,
                                  -4096,
                                  -5000,
                                  -100000,
                                  1,
                                  42,
                                  4000};

    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
        check_unknown(unknown[i]);
    /* An errno value the system does not know: still a valid string. */
    CU_ASSERT_PTR_NOT_NULL(zl_strerror(-3999));
    CU_ASSERT_STRING_EQUAL(zl_err_name(-3999), "UNKNOWN");
}

/* Any int is a valid argument, including the extremes (a naive
 * "base - err" index computation overflows here: UBSan catches it). */
static void test_extreme(void)
{
    static const int extreme[] = {INT_MIN, INT_MIN + 1, INT_MAX - 1, INT_MAX};

    for (size_t i = 0; i < sizeof(extreme) / sizeof(extreme[0]); i++)
        check_unknown(extreme[i]);
}

/* "Any thread": hammer both functions from several threads and check they
 * keep returning the same text (ThreadSanitizer watches for races). */
#define ERR_THREADS 4
static atomic_int thread_mismatch;

static void *err_thread(void *arg)
{
    (void)arg;
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 0; i < N_CODES; i++) {
            if (strcmp(zl_strerror(codes[i].code), codes[i].msg) ||
                strcmp(zl_err_name(codes[i].code), codes[i].name))
                atomic_fetch_add(&thread_mismatch, 1);
        }
        if (strcmp(zl_err_name(-ECONNRESET), "ECONNRESET") ||
            !zl_strerror(-ECONNREFUSED) || !zl_strerror(-(round % 200 + 1)))
            atomic_fetch_add(&thread_mismatch, 1);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t th[ERR_THREADS];

    atomic_store(&thread_mismatch, 0);
    for (int i = 0; i < ERR_THREADS; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, err_thread, NULL),
                              0);
    for (int i = 0; i < ERR_THREADS; i++)
        pthread_join(th[i], NULL);
    CU_ASSERT_EQUAL(atomic_load(&thread_mismatch), 0);
}

/* zltk.h's one boolean grammar (zl_parse_bool), used by every key. */
static void test_parse_bool(void)
{
    static const char *const yes[] = {"true", "TRUE", "True", "yes", "YES",
                                      "on", "On", "1", " on", "yes\t",
                                      "\t true  "};
    static const char *const no[] = {"false", "FALSE", "no", "No", "off",
                                     "OFF", "0", " off ", "false\t"};
    static const char *const bad[] = {"", " ", "maybe", "y", "n", "2", "-1",
                                      "01", "truee", "o n", "on off",
                                      "yes\n", "ja"};
    bool b;

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        b = false;
        CU_ASSERT_EQUAL(zl_parse_bool(yes[i], &b), 0);
        CU_ASSERT_TRUE(b);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        b = true;
        CU_ASSERT_EQUAL(zl_parse_bool(no[i], &b), 0);
        CU_ASSERT_FALSE(b);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        b = true;
        CU_ASSERT_EQUAL(zl_parse_bool(bad[i], &b), -EINVAL);
        CU_ASSERT_TRUE(b); /* untouched */
    }
    CU_ASSERT_EQUAL(zl_parse_bool(NULL, &b), -EINVAL);
}

/* The one integer grammar (zl_parse_int): decimal, blanks around, a range. */
static void test_parse_int(void)
{
    static const struct { const char *text; int64_t want; } good[] = {
        {"0", 0}, {"42", 42}, {" 7", 7}, {"7\t ", 7}, {"-5", -5},
        {"+9", 9}, {"2147483647", 2147483647},
    };
    static const char *const bad[] = {"", " ", "x", "1x", "1 2", "0x10",
                                      "1.5", "--1", "10s"};
    int64_t n;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        n = -99;
        CU_ASSERT_EQUAL(zl_parse_int(good[i].text, INT64_MIN, INT64_MAX, &n),
                        0);
        CU_ASSERT_EQUAL(n, good[i].want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = -99;
        CU_ASSERT_EQUAL(zl_parse_int(bad[i], INT64_MIN, INT64_MAX, &n),
                        -EINVAL);
        CU_ASSERT_EQUAL(n, -99);
    }
    CU_ASSERT_EQUAL(zl_parse_int(NULL, 0, 1, &n), -EINVAL);
    CU_ASSERT_EQUAL(zl_parse_int("11", 0, 10, &n), -ERANGE);
    CU_ASSERT_EQUAL(zl_parse_int("-1", 0, 10, &n), -ERANGE);
    CU_ASSERT_EQUAL(zl_parse_int("99999999999999999999", INT64_MIN,
                                 INT64_MAX, &n), -ERANGE);
    CU_ASSERT_EQUAL(zl_parse_int("10", 0, 10, &n), 0);
    CU_ASSERT_EQUAL(n, 10);
}

int zl_test_register_error(void)
{
    static const zl_test_case_t cases[] = {
        {"codes_in_range_and_distinct", test_codes_range_distinct},
        {"names_are_ZL_E_and_distinct", test_names},
        {"messages_distinct", test_messages},
        {"errno_passthrough", test_errno_passthrough},
        {"zero", test_zero},
        {"unknown_codes", test_unknown},
        {"any_thread", test_threads},
        {"parse_bool_one_grammar", test_parse_bool},
        {"parse_int_one_grammar", test_parse_int},
        /* last: under UBSan a failure here aborts the run */
        {"extreme_codes", test_extreme},
        {NULL, NULL},
    };
    return zl_test_add_suite("error", NULL, NULL, cases);
}
