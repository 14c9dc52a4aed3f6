/* zltk tests — logging (suite "log"). */
#define G_LOG_DOMAIN "zltk-test"
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_[gs]etname_np, strptime */
#endif

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "test.h"

#define LINE_RE                                                               \
    "^(\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d)\\.\\d{3} ([ECWMID]) "       \
    "\\[([^\\]]*)\\] ([^: ]+): (.*)$"

static char *tmpdir;
static int path_seq;

/* A fresh path in the suite's temporary directory (g_free it). */
static char *tmp_path(const char *what)
{
    return g_strdup_printf("%s/%d-%s", tmpdir, ++path_seq, what);
}

static int suite_init(void)
{
    tmpdir = g_strdup("/tmp/zltk-log-XXXXXX");
    if (!g_mkdtemp(tmpdir)) {
        g_free(tmpdir);
        tmpdir = NULL;
        return -1;
    }
    /* Our writer must show debug lines without it. */
    g_unsetenv("G_MESSAGES_DEBUG");
    return 0;
}

static int suite_cleanup(void)
{
    zl_log_shutdown(); /* in case a test failed half-way */
    if (tmpdir) {
        zl_test_rm_tree(tmpdir);
        g_free(tmpdir);
        tmpdir = NULL;
    }
    return 0;
}

/* Lines of a file, without the empty string after the final newline. */
static char **read_lines(const char *path, guint *n)
{
    char *text = NULL;
    char **lines;
    guint len;

    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        *n = 0;
        return g_new0(char *, 1);
    }
    lines = g_strsplit(text, "\n", -1);
    g_free(text);
    len = g_strv_length(lines);
    if (len > 0 && lines[len - 1][0] == '\0') {
        g_free(lines[len - 1]);
        lines[--len] = NULL;
    }
    *n = len;
    return lines;
}

static int count_threads(void)
{
    GDir *d = g_dir_open("/proc/self/task", 0, NULL);
    int n = 0;

    if (!d)
        return -1;
    while (g_dir_read_name(d))
        n++;
    g_dir_close(d);
    return n;
}

/* Run fn with standard error redirected to a file; returns its lines. */
static char **with_stderr_to_file(void (*fn)(void *), void *arg, guint *n)
{
    char *path = tmp_path("stderr");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int saved = dup(STDERR_FILENO);
    char **lines;

    CU_ASSERT_FATAL(fd >= 0 && saved >= 0);
    CU_ASSERT_FATAL(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    close(fd);
    fn(arg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    lines = read_lines(path, n);
    g_unlink(path);
    g_free(path);
    return lines;
}

/* ------------------------------------------------------------ levels */

static void test_level_names(void)
{
    static const char *names[] = {"error", "critical", "warning",
                                  "message", "info", "debug"};
    static const char *junk[] = {"", "warn", "debug2", " info", "info ",
                                 "err", "7", "verbose"};
    zl_log_level_t lv;

    for (int i = ZL_LOG_ERROR; i <= ZL_LOG_DEBUG; i++) {
        char *upper = g_ascii_strup(names[i], -1);

        CU_ASSERT_STRING_EQUAL(zl_log_level_name((zl_log_level_t)i), names[i]);
        lv = (zl_log_level_t)-1;
        CU_ASSERT_EQUAL(zl_log_level_parse(names[i], &lv), 0);
        CU_ASSERT_EQUAL(lv, i);
        lv = (zl_log_level_t)-1;
        CU_ASSERT_EQUAL(zl_log_level_parse(upper, &lv), 0);
        CU_ASSERT_EQUAL(lv, i);
        /* Round trip through the name. */
        CU_ASSERT_EQUAL(zl_log_level_parse(zl_log_level_name(lv), &lv), 0);
        CU_ASSERT_EQUAL(lv, i);
        g_free(upper);
    }
    CU_ASSERT_EQUAL(zl_log_level_parse("DeBuG", &lv), 0);
    CU_ASSERT_EQUAL(lv, ZL_LOG_DEBUG);

    for (size_t i = 0; i < G_N_ELEMENTS(junk); i++) {
        lv = ZL_LOG_INFO;
        CU_ASSERT_EQUAL(zl_log_level_parse(junk[i], &lv), -EINVAL);
        CU_ASSERT_EQUAL(lv, ZL_LOG_INFO); /* untouched on failure */
    }
    CU_ASSERT_EQUAL(zl_log_level_parse(NULL, &lv), -EINVAL);
    CU_ASSERT_PTR_NOT_NULL(zl_log_level_name((zl_log_level_t)42));
}

/* ------------------------------------------------------------ thread names */

typedef struct {
    char set_long[32];
    char fetched[32];
    char os_name[32];
} names_result_t;

static void *names_thread(void *arg)
{
    names_result_t *r = arg;

    /* Never set through zltk: fetched from the OS once, then cached. */
    pthread_setname_np(pthread_self(), "os-named");
    g_strlcpy(r->fetched, zl_thread_name(), sizeof(r->fetched));

    /* 26 bytes: only 15 are kept, here and in the OS. */
    zl_thread_set_name("abcdefghijklmnopqrstuvwxyz");
    g_strlcpy(r->set_long, zl_thread_name(), sizeof(r->set_long));
    if (pthread_getname_np(pthread_self(), r->os_name, sizeof(r->os_name)))
        r->os_name[0] = '\0';
    return NULL;
}

static void test_thread_names(void)
{
    names_result_t r = {{0}};
    pthread_t t;

    CU_ASSERT_FATAL(pthread_create(&t, NULL, names_thread, &r) == 0);
    pthread_join(t, NULL);
    CU_ASSERT_STRING_EQUAL(r.fetched, "os-named");
    CU_ASSERT_STRING_EQUAL(r.set_long, "abcdefghijklmno");
    CU_ASSERT_STRING_EQUAL(r.os_name, "abcdefghijklmno");
    /* The calling thread always has some name. */
    CU_ASSERT(zl_thread_name()[0] != '\0');
}

/* ------------------------------------------------------------ init errors */

static void test_init_errors(void)
{
    char *plain = tmp_path("plain");
    char *under = g_build_filename(plain, "x.log", NULL);
    char *good = tmp_path("good.log");
    zl_log_options_t o = {.level = ZL_LOG_DEBUG};
    int threads = count_threads();

    CU_ASSERT_FATAL(g_file_set_contents(plain, "", 0, NULL));

    CU_ASSERT_EQUAL(zl_log_init(NULL), -EINVAL);
    o.level = (zl_log_level_t)9;
    CU_ASSERT_EQUAL(zl_log_init(&o), -EINVAL);
    o.level = ZL_LOG_DEBUG;

    o.file = under;
    CU_ASSERT_EQUAL(zl_log_init(&o), -ENOTDIR);
    o.file = tmpdir;
    CU_ASSERT_EQUAL(zl_log_init(&o), -EISDIR);
    CU_ASSERT_EQUAL(count_threads(), threads); /* nothing started */
    zl_log_flush();                            /* no-op, must not hang */
    zl_log_shutdown();                         /* likewise */

    /* Not -EALREADY: the failures left nothing behind. */
    o.file = good;
    CU_ASSERT_EQUAL_FATAL(zl_log_init(&o), 0);
    CU_ASSERT_EQUAL(count_threads(), threads + 1);
    CU_ASSERT_EQUAL(zl_log_init(&o), -EALREADY);
    zl_log_shutdown();
    CU_ASSERT_EQUAL(count_threads(), threads);

    g_unlink(plain);
    g_unlink(good);
    g_free(plain);
    g_free(under);
    g_free(good);
}

/* ------------------------------------------------------------ format, threads */

#define FMT_THREADS 4
#define FMT_LINES 300

static const char letters[] = "ECWMID";

static void log_at(int level, const char *fmt, int t, int i)
{
    /* Every macro flavour: old API and structured. */
    switch (level) {
    case ZL_LOG_CRITICAL:
        g_critical(fmt, t, i, letters[level]);
        break;
    case ZL_LOG_WARNING:
        g_warning(fmt, t, i, letters[level]);
        break;
    case ZL_LOG_MESSAGE:
        g_message(fmt, t, i, letters[level]);
        break;
    case ZL_LOG_INFO:
        g_log_structured(G_LOG_DOMAIN, G_LOG_LEVEL_INFO, "MESSAGE", fmt, t, i,
                         letters[level]);
        break;
    default:
        g_debug(fmt, t, i, letters[level]);
        break;
    }
}

static void *fmt_thread(void *arg)
{
    int t = GPOINTER_TO_INT(arg);
    char name[16];

    snprintf(name, sizeof(name), "t-%d", t);
    zl_thread_set_name(name);
    for (int i = 0; i < FMT_LINES; i++)
        log_at(ZL_LOG_CRITICAL + i % 5, "thread %d seq %d lvl %c", t, i);
    return NULL;
}

static void test_format_threads(void)
{
    char *path = tmp_path("fmt.log");
    zl_log_options_t o = {.level = ZL_LOG_DEBUG, .file = path};
    pthread_t th[FMT_THREADS];
    int next[FMT_THREADS] = {0};
    GRegex *re = g_regex_new(LINE_RE, 0, 0, NULL);
    time_t now = time(NULL);
    char **lines;
    guint n;
    int bad = 0;

    CU_ASSERT_FATAL(re != NULL);
    CU_ASSERT_EQUAL_FATAL(zl_log_init(&o), 0);
    CU_ASSERT_EQUAL(zl_log_get_level(), ZL_LOG_DEBUG);
    for (int t = 0; t < FMT_THREADS; t++)
        CU_ASSERT_FATAL(pthread_create(&th[t], NULL, fmt_thread,
                                       GINT_TO_POINTER(t)) == 0);
    for (int t = 0; t < FMT_THREADS; t++)
        pthread_join(th[t], NULL);
    zl_log_shutdown();
    CU_ASSERT_EQUAL(zl_log_dropped(), 0);

    lines = read_lines(path, &n);
    CU_ASSERT_EQUAL(n, FMT_THREADS * FMT_LINES);
    for (guint k = 0; lines[k]; k++) {
        GMatchInfo *mi = NULL;
        int t = -1, i = -1;
        char lvl = 0, thread[16];
        struct tm tm = {0};

        if (!g_regex_match(re, lines[k], 0, &mi)) {
            g_match_info_free(mi);
            if (bad++ < 3)
                fprintf(stderr, "bad line: %s\n", lines[k]);
            continue;
        }
        char *stamp = g_match_info_fetch(mi, 1);
        char *letter = g_match_info_fetch(mi, 2);
        char *tname = g_match_info_fetch(mi, 3);
        char *domain = g_match_info_fetch(mi, 4);
        char *msg = g_match_info_fetch(mi, 5);

        CU_ASSERT_STRING_EQUAL(domain, "zltk-test");
        CU_ASSERT_EQUAL(sscanf(msg, "thread %d seq %d lvl %c", &t, &i, &lvl),
                        3);
        if (t >= 0 && t < FMT_THREADS) {
            snprintf(thread, sizeof(thread), "t-%d", t);
            CU_ASSERT_STRING_EQUAL(tname, thread);
            CU_ASSERT_EQUAL(i, next[t]); /* each thread's lines in order */
            next[t] = i + 1;
            CU_ASSERT_EQUAL(letter[0], letters[ZL_LOG_CRITICAL + i % 5]);
            CU_ASSERT_EQUAL(letter[0], lvl);
        } else {
            CU_FAIL("thread number out of range");
        }
        /* Local time, close to now. */
        CU_ASSERT_PTR_NOT_NULL(strptime(stamp, "%Y-%m-%d %H:%M:%S", &tm));
        tm.tm_isdst = -1;
        CU_ASSERT(labs((long)(mktime(&tm) - now)) < 120);
        g_free(stamp);
        g_free(letter);
        g_free(tname);
        g_free(domain);
        g_free(msg);
        g_match_info_free(mi);
    }
    CU_ASSERT_EQUAL(bad, 0);
    for (int t = 0; t < FMT_THREADS; t++)
        CU_ASSERT_EQUAL(next[t], FMT_LINES);

    g_strfreev(lines);
    g_regex_unref(re);
    g_unlink(path);
    g_free(path);
}

/* ------------------------------------------------------------ level filter */

static int count_matching(char **lines, const char *needle)
{
    int n = 0;
    for (; *lines; lines++)
        n += strstr(*lines, needle) != NULL;
    return n;
}

static void test_level_filter(void)
{
    char *path = tmp_path("level.log");
    zl_log_options_t o = {.level = ZL_LOG_WARNING, .file = path};
    char **lines;
    guint n;

    CU_ASSERT_EQUAL_FATAL(zl_log_init(&o), 0);
    CU_ASSERT_EQUAL(zl_log_get_level(), ZL_LOG_WARNING);
    g_debug("phase1 debug");
    g_info("phase1 info");
    g_message("phase1 message");
    g_warning("phase1 warning");
    g_critical("phase1 critical");

    zl_log_set_level(ZL_LOG_DEBUG);
    CU_ASSERT_EQUAL(zl_log_get_level(), ZL_LOG_DEBUG);
    g_debug("phase2 debug");
    g_info("phase2 info");

    zl_log_set_level(ZL_LOG_ERROR);
    zl_log_set_level((zl_log_level_t)17); /* ignored */
    CU_ASSERT_EQUAL(zl_log_get_level(), ZL_LOG_ERROR);
    g_critical("phase3 critical");
    g_warning("phase3 warning");
    g_message("phase3 message");

    zl_log_flush();
    lines = read_lines(path, &n);
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT_EQUAL(count_matching(lines, " W [") , 1);
    CU_ASSERT_EQUAL(count_matching(lines, "phase1 warning"), 1);
    CU_ASSERT_EQUAL(count_matching(lines, " C [") , 1);
    CU_ASSERT_EQUAL(count_matching(lines, "phase1 critical"), 1);
    CU_ASSERT_EQUAL(count_matching(lines, " D [") , 1);
    CU_ASSERT_EQUAL(count_matching(lines, "phase2 debug"), 1);
    CU_ASSERT_EQUAL(count_matching(lines, " I [") , 1);
    CU_ASSERT_EQUAL(count_matching(lines, "phase2 info"), 1);
    CU_ASSERT_EQUAL(count_matching(lines, "phase3"), 0);
    g_strfreev(lines);

    zl_log_shutdown();
    g_unlink(path);
    g_free(path);
}

/* ------------------------------------------------------------ flush */

#define FLUSH_THREADS 4
#define FLUSH_ROUNDS 20
#define FLUSH_LINES 25

typedef struct {
    int t;
    const char *path;
    atomic_int failures;
} flush_arg_t;

static void *flush_thread(void *arg)
{
    flush_arg_t *a = arg;

    for (int r = 0; r < FLUSH_ROUNDS; r++) {
        char needle[64];
        char *text = NULL;

        for (int i = 0; i < FLUSH_LINES; i++)
            g_message("flusher %d round %d line %d", a->t, r, i);
        zl_log_flush();
        /* Everything this thread queued is in the file now. */
        snprintf(needle, sizeof(needle), "flusher %d round %d line %d\n",
                 a->t, r, FLUSH_LINES - 1);
        if (!g_file_get_contents(a->path, &text, NULL, NULL) ||
            !strstr(text, needle))
            atomic_fetch_add(&a->failures, 1);
        g_free(text);
    }
    return NULL;
}

static void test_flush(void)
{
    char *path = tmp_path("flush.log");
    zl_log_options_t o = {.level = ZL_LOG_MESSAGE, .file = path};
    flush_arg_t args[FLUSH_THREADS];
    pthread_t th[FLUSH_THREADS];
    char **lines;
    guint n;

    CU_ASSERT_EQUAL_FATAL(zl_log_init(&o), 0);

    /* Single thread: flush, not shutdown, makes the lines visible. */
    for (int i = 0; i < 1000; i++)
        g_message("single %d", i);
    zl_log_flush();
    lines = read_lines(path, &n);
    CU_ASSERT_EQUAL(n, 1000);
    CU_ASSERT_EQUAL(count_matching(lines, "single 999"), 1);
    g_strfreev(lines);

    for (int t = 0; t < FLUSH_THREADS; t++) {
        args[t].t = t;
        args[t].path = path;
        atomic_init(&args[t].failures, 0);
        CU_ASSERT_FATAL(pthread_create(&th[t], NULL, flush_thread,
                                       &args[t]) == 0);
    }
    for (int t = 0; t < FLUSH_THREADS; t++) {
        pthread_join(th[t], NULL);
        CU_ASSERT_EQUAL(atomic_load(&args[t].failures), 0);
    }
    zl_log_flush();
    lines = read_lines(path, &n);
    CU_ASSERT_EQUAL(n, 1000 + FLUSH_THREADS * FLUSH_ROUNDS * FLUSH_LINES);
    g_strfreev(lines);
    CU_ASSERT_EQUAL(zl_log_dropped(), 0);

    zl_log_shutdown();
    g_unlink(path);
    g_free(path);
}

/* ------------------------------------------------------------ bounded queue */

#define FLOOD_LINES 5000

typedef struct {
    int fd;
    GString *data;
} reader_arg_t;

static void *fifo_reader(void *arg)
{
    reader_arg_t *r = arg;
    char buf[4096];
    ssize_t n;

    for (;;) {
        n = read(r->fd, buf, sizeof(buf));
        if (n > 0)
            g_string_append_len(r->data, buf, n);
        else if (n == 0 || errno != EINTR)
            break; /* EOF: the log closed its end */
    }
    return NULL;
}

/* The log file is a FIFO that nobody reads until the flood is over: the log
 * thread blocks in write(), the tiny queue fills, callers must not block. */
static void test_queue_full(void)
{
    char *path = tmp_path("fifo");
    zl_log_options_t o = {.level = ZL_LOG_MESSAGE, .file = path,
                          .queue_lines = 4};
    reader_arg_t r = {.fd = -1, .data = g_string_new(NULL)};
    GRegex *notice = g_regex_new(
        "^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{3} W \\[zl-log\\] "
        "zltk-log: (\\d+) log lines dropped \\(queue full\\)$", 0, 0, NULL);
    pthread_t th;
    uint64_t dropped, notified = 0;
    long written = 0, last = -1;
    int unordered = 0, other = 0;
    char **lines;

    CU_ASSERT_FATAL(notice != NULL);
    CU_ASSERT_FATAL(mkfifo(path, 0600) == 0);
    /* A reader must exist for the log's open() not to block. */
    r.fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    CU_ASSERT_FATAL(r.fd >= 0);
#ifdef F_SETPIPE_SZ
    (void)fcntl(r.fd, F_SETPIPE_SZ, 4096); /* smallest pipe: fills sooner */
#endif
    CU_ASSERT_EQUAL_FATAL(zl_log_init(&o), 0);

    for (int i = 0; i < FLOOD_LINES; i++)
        g_message("flood %d", i);
    dropped = zl_log_dropped();
    /* At most a pipe's worth (64 KiB by default) plus a batch and the queue
     * can have left; the rest must have been dropped. */
    CU_ASSERT(dropped > 0);
    CU_ASSERT(dropped >= FLOOD_LINES - 65536 / 40);

    /* Drain: the reader sees EOF when shutdown closes the log's end. */
    CU_ASSERT_FATAL(fcntl(r.fd, F_SETFL, 0) == 0);
    CU_ASSERT_FATAL(pthread_create(&th, NULL, fifo_reader, &r) == 0);
    zl_log_shutdown();
    pthread_join(th, NULL);
    close(r.fd);
    CU_ASSERT_EQUAL(zl_log_dropped(), dropped); /* nothing after the flood */

    lines = g_strsplit(r.data->str, "\n", -1);
    for (char **l = lines; *l; l++) {
        GMatchInfo *mi = NULL;
        const char *f;

        if (!**l)
            continue;
        if (g_regex_match(notice, *l, 0, &mi)) {
            char *num = g_match_info_fetch(mi, 1);
            notified += g_ascii_strtoull(num, NULL, 10);
            g_free(num);
        } else if ((f = strstr(*l, "zltk-test: flood "))) {
            long i = strtol(f + strlen("zltk-test: flood "), NULL, 10);
            unordered += i <= last;
            last = i;
            written++;
        } else {
            other++;
        }
        g_match_info_free(mi);
    }
    g_strfreev(lines);

    CU_ASSERT(written > 0);
    CU_ASSERT_EQUAL(written + (long)dropped, FLOOD_LINES);
    CU_ASSERT_EQUAL(notified, dropped); /* every drop was reported */
    CU_ASSERT_EQUAL(unordered, 0);
    CU_ASSERT_EQUAL(other, 0);

    g_regex_unref(notice);
    g_string_free(r.data, TRUE);
    g_unlink(path);
    g_free(path);
}

/* ------------------------------------------------------------ console, reinit */

static void log_console_lines(void *arg)
{
    zl_log_options_t o = {.level = ZL_LOG_INFO, .console = true};

    (void)arg;
    CU_ASSERT_EQUAL_FATAL(zl_log_init(&o), 0);
    for (int i = 0; i < 100; i++)
        g_info("console %d", i);
    g_debug("console hidden");
    zl_log_shutdown();
}

static void test_console(void)
{
    guint n;
    char **lines = with_stderr_to_file(log_console_lines, NULL, &n);
    GRegex *re = g_regex_new(LINE_RE, 0, 0, NULL);
    int bad = 0;

    CU_ASSERT_EQUAL(n, 100);
    for (guint i = 0; i < n; i++) {
        char want[32];

        snprintf(want, sizeof(want), "zltk-test: console %u", i);
        bad += !g_regex_match(re, lines[i], 0, NULL) ||
               !strstr(lines[i], " I [") || !g_str_has_suffix(lines[i], want);
    }
    CU_ASSERT_EQUAL(bad, 0);
    g_regex_unref(re);
    g_strfreev(lines);
}

static void log_after_shutdown(void *arg)
{
    (void)arg;
    zl_log_set_level(ZL_LOG_MESSAGE);
    g_message("synchronous %d", 1);
    g_debug("filtered even without the log thread");
    g_warning("synchronous %d", 2);
    zl_log_flush(); /* no-op now */
}

static void test_reinit(void)
{
    GRegex *re = g_regex_new(LINE_RE, 0, 0, NULL);
    char **lines;
    guint n;

    for (int round = 0; round < 3; round++) {
        char *path = tmp_path("reinit.log");
        zl_log_options_t o = {.level = ZL_LOG_DEBUG, .file = path};

        CU_ASSERT_EQUAL_FATAL(zl_log_init(&o), 0);
        CU_ASSERT_EQUAL(zl_log_dropped(), 0);
        g_debug("round %d", round);
        zl_log_shutdown();
        zl_log_shutdown(); /* idempotent */
        lines = read_lines(path, &n);
        CU_ASSERT_EQUAL(n, 1);
        if (n == 1) {
            CU_ASSERT(g_regex_match(re, lines[0], 0, NULL));
            CU_ASSERT(g_str_has_suffix(lines[0], round == 0   ? "round 0"
                                                 : round == 1 ? "round 1"
                                                              : "round 2"));
        }
        g_strfreev(lines);
        g_unlink(path);
        g_free(path);
    }

    /* After shutdown the writer stays installed and writes stderr itself. */
    lines = with_stderr_to_file(log_after_shutdown, NULL, &n);
    CU_ASSERT_EQUAL(n, 2);
    if (n == 2) {
        CU_ASSERT(g_regex_match(re, lines[0], 0, NULL));
        CU_ASSERT(strstr(lines[0], " M [") != NULL);
        CU_ASSERT(g_str_has_suffix(lines[0], "zltk-test: synchronous 1"));
        CU_ASSERT(strstr(lines[1], " W [") != NULL);
        CU_ASSERT(g_str_has_suffix(lines[1], "zltk-test: synchronous 2"));
    }
    g_strfreev(lines);
    g_regex_unref(re);
}

/* ------------------------------------------------------------ racing shutdown */

#define RACE_THREADS 4
#define RACE_LINES 2000

static void *race_thread(void *arg)
{
    atomic_int *go = arg;

    while (!atomic_load(go))
        ;
    for (int i = 0; i < RACE_LINES; i++)
        g_message("race %d", i);
    return NULL;
}

static void race_shutdown(void *arg)
{
    const char *path = arg;
    zl_log_options_t o = {.level = ZL_LOG_MESSAGE, .file = path,
                          .queue_lines = 64};
    pthread_t th[RACE_THREADS];
    atomic_int go;

    atomic_init(&go, 0);
    CU_ASSERT_EQUAL_FATAL(zl_log_init(&o), 0);
    for (int t = 0; t < RACE_THREADS; t++)
        CU_ASSERT_FATAL(pthread_create(&th[t], NULL, race_thread, &go) == 0);
    atomic_store(&go, 1);
    zl_test_sleep_ms(1);
    zl_log_shutdown(); /* others keep logging: they switch to stderr */
    for (int t = 0; t < RACE_THREADS; t++)
        pthread_join(th[t], NULL);
}

/* Lines logged while another thread shuts the log down land in the file,
 * on stderr, or in the drop count: none is lost, nothing crashes. */
static void test_shutdown_race(void)
{
    char *path = tmp_path("race.log");
    char **err, **file, **notices;
    guint n_err, n_file;
    uint64_t notified = 0;
    long logged;

    err = with_stderr_to_file(race_shutdown, path, &n_err);
    file = read_lines(path, &n_file);
    logged = count_matching(err, "zltk-test: race ") +
             count_matching(file, "zltk-test: race ");
    CU_ASSERT_EQUAL(logged + (long)zl_log_dropped(),
                    RACE_THREADS * RACE_LINES);
    CU_ASSERT_EQUAL(count_matching(err, "zltk-log:"), 0);
    for (notices = file; *notices; notices++) {
        const char *p = strstr(*notices, "zltk-log: ");
        if (p)
            notified += g_ascii_strtoull(p + strlen("zltk-log: "), NULL, 10);
    }
    CU_ASSERT_EQUAL(notified, zl_log_dropped());
    g_strfreev(err);
    g_strfreev(file);
    g_unlink(path);
    g_free(path);
}

/* ------------------------------------------------------------ fatal */

/* g_error() aborts right after our writer returns: every queued line and
 * the error itself must be in the file by then.  Runs in a child. */
static void test_fatal_error(void)
{
    char *path = tmp_path("fatal.log");
    pid_t pid;
    int status = 0;
    char **lines;
    guint n;

    fflush(NULL);
    pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        zl_log_options_t o = {.level = ZL_LOG_MESSAGE, .file = path};
        int devnull = open("/dev/null", O_WRONLY);

        setrlimit(RLIMIT_CORE, &no_core); /* leave no core file behind */
        if (devnull >= 0)
            dup2(devnull, STDERR_FILENO);
        if (zl_log_init(&o) != 0)
            _exit(3);
        for (int i = 0; i < 200; i++)
            g_message("before %d", i);
        g_error("fatal %d", 42);
        _exit(4); /* not reached */
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    CU_ASSERT(WIFSIGNALED(status));
    lines = read_lines(path, &n);
    CU_ASSERT_EQUAL(n, 201);
    if (n == 201) {
        CU_ASSERT(g_str_has_suffix(lines[199], "zltk-test: before 199"));
        CU_ASSERT(strstr(lines[200], " E [") != NULL);
        CU_ASSERT(g_str_has_suffix(lines[200], "zltk-test: fatal 42"));
    }
    g_strfreev(lines);
    g_unlink(path);
    g_free(path);
}

static const zl_test_case_t cases[] = {
    {"level names", test_level_names},
    {"thread names", test_thread_names},
    {"init errors", test_init_errors},
    {"format from threads", test_format_threads},
    {"level filter", test_level_filter},
    {"flush", test_flush},
    {"queue full drops", test_queue_full},
    {"console", test_console},
    {"shutdown and re-init", test_reinit},
    {"shutdown while logging", test_shutdown_race},
    {"fatal error", test_fatal_error},
    {NULL, NULL},
};

int zl_test_register_log(void)
{
    return zl_test_add_suite("log", suite_init, suite_cleanup, cases);
}
