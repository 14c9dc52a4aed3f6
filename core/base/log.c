/* zltk — logging: a GLib structured-log writer that formats each line on the
 * calling thread and hands it to one background thread over a bounded queue.
 *
 * Locking: one static mutex guards the queue and the logger's state; no
 * I/O is ever done while holding it, except for fatal lines (the process is
 * about to abort, so ordering and visibility matter more than latency).
 * The state is static, never freed, so a thread that logs while another
 * calls zl_log_shutdown() just falls back to writing stderr itself.
 */
#define G_LOG_DOMAIN "zltk-log"
#include "zl-internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_SYS_PRCTL_H
#include <sys/prctl.h>
#endif

#define ZL__LOG_QUEUE_DEFAULT 8192
#define ZL__LOG_BATCH 64 /* lines per writev(); well under IOV_MAX */
#define ZL__THREAD_NAME_MAX 15

typedef struct {
    char *buf;
    size_t len;
} log_line_t;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t more; /* log thread: queue non-empty, or stop */
    pthread_cond_t done; /* flushers: done_seq advanced */
    bool active;         /* log thread exists (started, not yet joined) */
    bool running;        /* accepting lines; false once shutdown begins */
    bool stop;
    pthread_t thread;
    log_line_t *ring;
    size_t cap, head, count;
    /* Monotonic across init/shutdown cycles, so a late flusher of an old
     * cycle can never wait on a new one's smaller numbers. */
    uint64_t queued_seq;
    uint64_t done_seq;
    int fd; /* log file or -1; fixed while active */
    bool console;
} lg = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .more = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .fd = -1,
};

/* Serialises zl_log_init() / zl_log_shutdown() against each other. */
static pthread_mutex_t life_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t writer_once = PTHREAD_ONCE_INIT;

static atomic_int log_level = ZL_LOG_MESSAGE;
static atomic_uint_least64_t log_dropped;
/* GLib levels that abort after the writer returns (G_DEBUG=fatal-*). */
static atomic_int log_fatal_mask = G_LOG_LEVEL_ERROR;

static const char *const level_names[] = {
    [ZL_LOG_ERROR] = "error",     [ZL_LOG_CRITICAL] = "critical",
    [ZL_LOG_WARNING] = "warning", [ZL_LOG_MESSAGE] = "message",
    [ZL_LOG_INFO] = "info",       [ZL_LOG_DEBUG] = "debug",
};
static const char level_letters[] = "ECWMID";

/* ------------------------------------------------------------ thread names */

static __thread char thread_name[ZL__THREAD_NAME_MAX + 1];
static __thread bool thread_name_known;

void zl_thread_set_name(const char *name)
{
    size_t n;

    if (!name)
        name = "";
    n = strnlen(name, ZL__THREAD_NAME_MAX + 1);
    if (n > ZL__THREAD_NAME_MAX) {
        n = ZL__THREAD_NAME_MAX;
        /* Do not cut a UTF-8 sequence in half. */
        while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(thread_name, name, n);
    thread_name[n] = '\0';
    thread_name_known = true;

    /* Failure only costs the name in ps/gdb; log lines use the cache. */
#if defined(HAVE_PTHREAD_SETNAME_NP) && defined(__APPLE__)
    (void)pthread_setname_np(thread_name);
#elif defined(HAVE_PTHREAD_SETNAME_NP)
    (void)pthread_setname_np(pthread_self(), thread_name);
#elif defined(HAVE_SYS_PRCTL_H) && defined(PR_SET_NAME)
    (void)prctl(PR_SET_NAME, thread_name, 0, 0, 0);
#endif
}

const char *zl_thread_name(void)
{
    if (ZL__UNLIKELY(!thread_name_known)) {
        int rc = -1;

        thread_name_known = true;
#if defined(HAVE_PTHREAD_SETNAME_NP)
        rc = pthread_getname_np(pthread_self(), thread_name,
                                sizeof(thread_name));
#elif defined(HAVE_SYS_PRCTL_H) && defined(PR_GET_NAME)
        /* PR_GET_NAME writes up to 16 bytes: exactly our buffer. */
        rc = prctl(PR_GET_NAME, thread_name, 0, 0, 0);
#endif
        thread_name[ZL__THREAD_NAME_MAX] = '\0';
        if (rc != 0 || !thread_name[0])
            snprintf(thread_name, sizeof(thread_name), "?");
    }
    return thread_name;
}

/* ------------------------------------------------------------ levels */

void zl_log_set_level(zl_log_level_t level)
{
    if ((int)level < ZL_LOG_ERROR || level > ZL_LOG_DEBUG)
        return;
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

zl_log_level_t zl_log_get_level(void)
{
    return (zl_log_level_t)atomic_load_explicit(&log_level,
                                                memory_order_relaxed);
}

int zl_log_level_parse(const char *name, zl_log_level_t *out)
{
    if (!name)
        return -EINVAL;
    for (size_t i = 0; i < ZL__ARRAY_SIZE(level_names); i++) {
        if (!g_ascii_strcasecmp(name, level_names[i])) {
            if (out)
                *out = (zl_log_level_t)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *zl_log_level_name(zl_log_level_t level)
{
    if ((int)level < ZL_LOG_ERROR || level > ZL_LOG_DEBUG)
        return "unknown";
    return level_names[level];
}

uint64_t zl_log_dropped(void)
{
    return atomic_load_explicit(&log_dropped, memory_order_relaxed);
}

static int level_from_flags(GLogLevelFlags flags)
{
    if (flags & G_LOG_LEVEL_ERROR)
        return ZL_LOG_ERROR;
    if (flags & G_LOG_LEVEL_CRITICAL)
        return ZL_LOG_CRITICAL;
    if (flags & G_LOG_LEVEL_WARNING)
        return ZL_LOG_WARNING;
    if (flags & G_LOG_LEVEL_MESSAGE)
        return ZL_LOG_MESSAGE;
    if (flags & G_LOG_LEVEL_INFO)
        return ZL_LOG_INFO;
    if (flags & G_LOG_LEVEL_DEBUG)
        return ZL_LOG_DEBUG;
    return ZL_LOG_MESSAGE; /* user-defined levels */
}

/* ------------------------------------------------------------ formatting */

/* "YYYY-MM-DD HH:MM:SS.mmm L [thread] domain: message\n", malloc'd.
 * localtime_r() takes a lock inside libc: cache the stamp per thread and
 * second. */
static char *log_format(int level, const char *domain, size_t dlen,
                        const char *msg, size_t mlen, size_t *len_out)
{
    static __thread time_t stamp_sec;
    static __thread char stamp[32];
    struct timespec ts;
    char head[96];
    size_t hlen, len;
    int n;
    char *line, *p;

    if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
        ts = (struct timespec){0, 0};
    if (!stamp[0] || ts.tv_sec != stamp_sec) {
        struct tm tm;

        if (!localtime_r(&ts.tv_sec, &tm) ||
            !strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm))
            snprintf(stamp, sizeof(stamp), "%lld", (long long)ts.tv_sec);
        stamp_sec = ts.tv_sec;
    }
    n = snprintf(head, sizeof(head), "%s.%03ld %c [%s] ", stamp,
                 ts.tv_nsec / 1000000L, level_letters[level], zl_thread_name());
    if (n < 0)
        return NULL;
    hlen = (size_t)n < sizeof(head) ? (size_t)n : sizeof(head) - 1;

    len = hlen + (domain ? dlen + 2 : 0) + mlen + 1;
    line = malloc(len + 1);
    if (!line)
        return NULL;
    p = line;
    memcpy(p, head, hlen);
    p += hlen;
    if (domain) {
        memcpy(p, domain, dlen);
        p += dlen;
        *p++ = ':';
        *p++ = ' ';
    }
    memcpy(p, msg, mlen);
    p += mlen;
    *p++ = '\n';
    *p = '\0';
    *len_out = len;
    return line;
}

/* ------------------------------------------------------------ output */

/* Write every byte or give up on a hard error: a failing log sink has
 * nowhere to report to. */
static void write_all_iov(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* Someone made the descriptor non-blocking. */
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                if (poll(&pfd, 1, -1) >= 0 || errno == EINTR)
                    continue;
            }
            return;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
}

static void write_all(int fd, const char *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    write_all_iov(fd, &iov, 1);
}

static void write_batch(int fd, const log_line_t *lines, size_t n)
{
    struct iovec iov[ZL__LOG_BATCH];

    for (size_t i = 0; i < n; i++)
        iov[i] = (struct iovec){.iov_base = lines[i].buf,
                                .iov_len = lines[i].len};
    write_all_iov(fd, iov, (int)n);
}

/* ------------------------------------------------------------ log thread */

/* Report drops not reported yet; returns the new reported total. */
static uint64_t report_drops(int fd, bool console, uint64_t reported)
{
    uint64_t now = atomic_load_explicit(&log_dropped, memory_order_relaxed);
    char msg[80];
    log_line_t line;
    int n;

    if (now == reported)
        return reported;
    n = snprintf(msg, sizeof(msg), "%" PRIu64 " log lines dropped (queue full)",
                 now - reported);
    line.buf = log_format(ZL_LOG_WARNING, G_LOG_DOMAIN, strlen(G_LOG_DOMAIN),
                          msg, (size_t)n, &line.len);
    if (!line.buf)
        return reported; /* try again after the next batch */
    if (console)
        write_batch(STDERR_FILENO, &line, 1);
    if (fd >= 0)
        write_batch(fd, &line, 1);
    free(line.buf);
    return now;
}

static void *log_thread_main(void *arg)
{
    log_line_t batch[ZL__LOG_BATCH];
    uint64_t reported = 0;
    int fd;
    bool console;

    (void)arg;
    zl_thread_set_name("zl-log");
    pthread_mutex_lock(&lg.lock);
    fd = lg.fd;
    console = lg.console;
    for (;;) {
        size_t n = 0;

        while (lg.count == 0 && !lg.stop)
            pthread_cond_wait(&lg.more, &lg.lock);
        if (lg.count == 0)
            break; /* stopping and drained */
        while (n < ZL__LOG_BATCH && lg.count > 0) {
            batch[n++] = lg.ring[lg.head];
            lg.ring[lg.head].buf = NULL;
            lg.head = (lg.head + 1) % lg.cap;
            lg.count--;
        }
        pthread_mutex_unlock(&lg.lock);

        if (console)
            write_batch(STDERR_FILENO, batch, n);
        if (fd >= 0)
            write_batch(fd, batch, n);
        for (size_t i = 0; i < n; i++)
            free(batch[i].buf);
        /* A drop means the queue was full then, so the lines just written
         * were queued before it: reporting here keeps the notice close to
         * where the gap is. */
        reported = report_drops(fd, console, reported);

        pthread_mutex_lock(&lg.lock);
        lg.done_seq += n;
        pthread_cond_broadcast(&lg.done);
    }
    pthread_mutex_unlock(&lg.lock);
    /* running was cleared with stop: no drop can happen after this. */
    report_drops(fd, console, reported);
    return NULL;
}

/* ------------------------------------------------------------ the writer */

static void write_fatal(const char *line, size_t len)
{
    /* Keep order: what was queued first goes out first; then this line,
     * synchronously, since GLib aborts as soon as we return.  Always on
     * stderr as well, even when console output is off. */
    zl_log_flush();
    pthread_mutex_lock(&lg.lock);
    if (lg.active && lg.fd >= 0)
        write_all(lg.fd, line, len);
    pthread_mutex_unlock(&lg.lock);
    write_all(STDERR_FILENO, line, len);
}

static void submit(char *line, size_t len, bool fatal)
{
    if (ZL__UNLIKELY(fatal)) {
        write_fatal(line, len);
        free(line);
        return;
    }

    pthread_mutex_lock(&lg.lock);
    if (!lg.running) {
        pthread_mutex_unlock(&lg.lock);
        write_all(STDERR_FILENO, line, len);
        free(line);
        return;
    }
    if (lg.count == lg.cap) {
        /* Counted under the lock: the log thread's last drop report, made
         * after it saw running cleared, must not miss this one. */
        atomic_fetch_add_explicit(&log_dropped, 1, memory_order_relaxed);
        pthread_mutex_unlock(&lg.lock);
        free(line);
        return;
    }
    lg.ring[(lg.head + lg.count) % lg.cap] = (log_line_t){line, len};
    lg.queued_seq++;
    /* The log thread only sleeps on an empty queue. */
    if (lg.count++ == 0)
        pthread_cond_signal(&lg.more);
    pthread_mutex_unlock(&lg.lock);
}

static GLogWriterOutput log_writer(GLogLevelFlags flags,
                                   const GLogField *fields, gsize n_fields,
                                   gpointer user_data)
{
    int level = level_from_flags(flags);
    bool fatal = (flags & G_LOG_FLAG_FATAL) ||
                 (flags & atomic_load_explicit(&log_fatal_mask,
                                               memory_order_relaxed));
    const char *msg = NULL, *domain = NULL;
    size_t mlen = 0, dlen = 0, len;
    char *line;

    (void)user_data;
    if (level > atomic_load_explicit(&log_level, memory_order_relaxed) &&
        !fatal)
        return G_LOG_WRITER_HANDLED;

    for (gsize i = 0; i < n_fields; i++) {
        const GLogField *f = &fields[i];
        size_t flen;

        if (!f->value)
            continue;
        flen = f->length < 0 ? strlen(f->value) : (size_t)f->length;
        if (!strcmp(f->key, "MESSAGE")) {
            msg = f->value;
            mlen = flen;
        } else if (!strcmp(f->key, "GLIB_DOMAIN")) {
            domain = f->value;
            dlen = flen;
        }
    }
    if (!msg) {
        msg = "(no message)";
        mlen = strlen(msg);
    }

    line = log_format(level, domain, dlen, msg, mlen, &len);
    if (!line) {
        atomic_fetch_add_explicit(&log_dropped, 1, memory_order_relaxed);
        return G_LOG_WRITER_HANDLED;
    }
    submit(line, len, fatal);
    return G_LOG_WRITER_HANDLED;
}

static void install_writer(void)
{
    g_log_set_writer_func(log_writer, NULL, NULL);
}

/* ------------------------------------------------------------ lifecycle */

int zl_log_init(const zl_log_options_t *opts)
{
    size_t cap;
    log_line_t *ring = NULL;
    int fd = -1, rc;
    sigset_t all, old;
    GLogLevelFlags fatal;

    if (!opts || (int)opts->level < ZL_LOG_ERROR || opts->level > ZL_LOG_DEBUG)
        return -EINVAL;
    cap = opts->queue_lines ? opts->queue_lines : ZL__LOG_QUEUE_DEFAULT;

    pthread_mutex_lock(&life_lock);
    pthread_mutex_lock(&lg.lock);
    rc = lg.active ? -EALREADY : 0;
    pthread_mutex_unlock(&lg.lock);
    if (rc < 0)
        goto fail;

    if (opts->file) {
        fd = open(opts->file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                  0644);
        if (fd < 0) {
            rc = -errno;
            goto fail;
        }
    }
    ring = calloc(cap, sizeof(*ring));
    if (!ring) {
        rc = -ENOMEM;
        goto fail;
    }
    tzset(); /* localtime_r() need not do it */

    pthread_mutex_lock(&lg.lock);
    /* The log thread takes no signals meant for the application. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&lg.thread, NULL, log_thread_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_mutex_unlock(&lg.lock);
        rc = -rc;
        goto fail;
    }
    /* The new thread waits on lg.lock until all of this is set. */
    lg.ring = ring;
    lg.cap = cap;
    lg.head = lg.count = 0;
    lg.fd = fd;
    lg.console = opts->console;
    lg.stop = false;
    lg.running = lg.active = true;
    atomic_store_explicit(&log_level, (int)opts->level, memory_order_relaxed);
    atomic_store_explicit(&log_dropped, 0, memory_order_relaxed);
    pthread_mutex_unlock(&lg.lock);

    /* No getter for GLib's always-fatal mask: set and restore it.  Safe
     * because init runs before other threads log. */
    fatal = g_log_set_always_fatal(G_LOG_FATAL_MASK);
    g_log_set_always_fatal(fatal);
    atomic_store_explicit(&log_fatal_mask,
                          (int)((fatal | G_LOG_LEVEL_ERROR) & G_LOG_LEVEL_MASK),
                          memory_order_relaxed);

    /* GLib allows one writer per process: install it once, for good. */
    pthread_once(&writer_once, install_writer);
    pthread_mutex_unlock(&life_lock);
    return 0;

fail:
    free(ring);
    if (fd >= 0)
        close(fd);
    pthread_mutex_unlock(&life_lock);
    return rc;
}

void zl_log_flush(void)
{
    pthread_mutex_lock(&lg.lock);
    if (lg.active && !pthread_equal(pthread_self(), lg.thread)) {
        uint64_t target = lg.queued_seq;

        /* The log thread drains everything before it exits, so this ends
         * during a concurrent shutdown too. */
        while (lg.done_seq < target)
            pthread_cond_wait(&lg.done, &lg.lock);
    }
    pthread_mutex_unlock(&lg.lock);
}

void zl_log_shutdown(void)
{
    pthread_t thread;
    int fd;

    pthread_mutex_lock(&life_lock);
    pthread_mutex_lock(&lg.lock);
    if (!lg.active || pthread_equal(pthread_self(), lg.thread)) {
        pthread_mutex_unlock(&lg.lock);
        pthread_mutex_unlock(&life_lock);
        return;
    }
    /* From here new lines go straight to stderr; the log thread drains
     * the queue and exits. */
    lg.running = false;
    lg.stop = true;
    pthread_cond_signal(&lg.more);
    thread = lg.thread;
    pthread_mutex_unlock(&lg.lock);

    pthread_join(thread, NULL);

    pthread_mutex_lock(&lg.lock);
    lg.active = false;
    free(lg.ring);
    lg.ring = NULL;
    lg.cap = lg.head = lg.count = 0;
    fd = lg.fd;
    lg.fd = -1;
    pthread_cond_broadcast(&lg.done);
    pthread_mutex_unlock(&lg.lock);
    if (fd >= 0)
        close(fd);
    pthread_mutex_unlock(&life_lock);
}
