/* zltk plugin "tcp": a client handler that talks to a TCP peer
 * (ZLToolKit's TestClient, done properly).
 *
 * Keys of a [client.NAME] group using it (beyond the host's own):
 *   send = TEXT    sent on every successful connect
 *   tick = TEXT    sent on every manager tick (2 s by default) while
 *                  connected; {n} becomes the tick number (1, 2, 3, ...)
 *   mode = log | stdio   [log]
 * TEXT takes C escapes: \n \t \r \\ \" \' \a \b \f \v \e \? \xHH (one or two
 * hex digits) and octal \NNN (\0 is a NUL byte).
 *
 * log mode logs every exchange (at message level) and the byte totals when
 * the session closes.
 *
 * stdio mode bridges standard input to the connection and the connection to
 * standard output, like ncat (zltk-host --connect HOST:PORT).  Standard
 * input is read on the worker pool, one read of up to 64 KiB at a time,
 * waiting in poll() on fd 0 and on a per-session cancel descriptor, so that
 * closing the session never leaves a worker stuck on a terminal or a pipe
 * that never delivers (the worker pool's shutdown waits for running work).
 * The next read is only submitted once the previous bytes were accepted and
 * the session is not busy (backpressure).  At end of input the sending side
 * is shut down and output continues until the peer closes.  Nothing but
 * received bytes goes to standard output; problems are logged (stderr).
 *
 * Threading: every callback runs on the session's poller; worker functions
 * touch only their own job record.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#else
#include <fcntl.h>
#endif

#include <glib.h>

#include <zltk/error.h> /* ZL_EOF, zl_strerror: plugin.h does not include it */
#include <zltk/plugin.h>

#define TCP_READ_MAX (64 * 1024) /* bytes of standard input per read */
#define TCP_LOG_MAX 64           /* bytes of payload shown in a log line */

static const zl_host_api_t *host;

typedef enum { TCP_MODE_LOG, TCP_MODE_STDIO } tcp_mode_t;

/* An instance's configuration, parsed once in instance_new (main thread)
 * and only read afterwards, from any poller. */
typedef struct tcp_conf {
    tcp_mode_t mode;
    uint8_t *send; /* NULL: nothing to send on connect */
    size_t send_len;
    uint8_t *tick; /* NULL: nothing to send on ticks */
    size_t tick_len;
} tcp_conf_t;

static const tcp_conf_t tcp_defaults; /* if the host kept no data */

/* A session's cancel signal, shared by the session and its pending jobs:
 * whoever drops the last reference closes the descriptors.  Once signalled
 * it stays readable, so every later wait returns at once. */
typedef struct tcp_cancel {
    atomic_int refs;
    int rfd, wfd; /* the same eventfd on Linux, a pipe elsewhere */
} tcp_cancel_t;

/* One worker job: its own allocation, so that it may outlive the session
 * state (a work function still blocked when the session closes). */
typedef struct tcp_job {
    tcp_cancel_t *cancel; /* one reference */
    ssize_t got;          /* bytes read, 0 at end of input, or -errno */
    uint8_t data[];       /* TCP_READ_MAX bytes for reads, none for waits */
} tcp_job_t;

typedef struct tcp_session {
    const tcp_conf_t *conf;
    zl_log_level_t level; /* of exchange logs */
    uint64_t sent, received, ticks;
    bool connected; /* between on_connect(NULL) and on_err */
    bool busy;      /* above the high mark: produce nothing more */
    /* stdio mode; everything here lives on the poller thread. */
    tcp_cancel_t *cancel; /* one reference until on_closed */
    bool reading;         /* a standard input job is pending */
    bool in_done;         /* standard input ended or failed */
    bool waiting;         /* a wait for a writable standard output pending */
    bool paused;          /* reading stopped while stdout is blocked */
    GByteArray *held;     /* input read while disconnected, sent on connect */
    GByteArray *out;      /* received bytes stdout did not take yet */
} tcp_session_t;

/* ------------------------------------------------------------ escapes */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode the C escapes of in into a new buffer (malloc, may contain NUL
 * bytes; never shorter than needed since escapes only shrink).  Returns 0,
 * -ENOMEM, or -EINVAL with an explanation in why. */
static int unescape(const char *in, uint8_t **out, size_t *out_len,
                    char *why, size_t why_len)
{
    size_t n = strlen(in);
    uint8_t *buf = malloc(n ? n : 1), *o = buf;
    const char *p = in;

    if (!buf)
        return -ENOMEM;
    while (*p) {
        unsigned v;
        int d;

        if (*p != '\\') {
            *o++ = (uint8_t)*p++;
            continue;
        }
        p++;
        switch (*p) {
        case 'n': *o++ = '\n'; p++; break;
        case 't': *o++ = '\t'; p++; break;
        case 'r': *o++ = '\r'; p++; break;
        case 'a': *o++ = '\a'; p++; break;
        case 'b': *o++ = '\b'; p++; break;
        case 'f': *o++ = '\f'; p++; break;
        case 'v': *o++ = '\v'; p++; break;
        case 'e': *o++ = 0x1b; p++; break;
        case '\\': case '"': case '\'': case '?':
            *o++ = (uint8_t)*p++;
            break;
        case 'x':
            p++;
            if ((d = hexval(*p)) < 0) {
                snprintf(why, why_len, "'\\x' at offset %td needs one or two "
                         "hex digits (e.g. \\x0a)", p - 2 - in);
                goto bad;
            }
            v = (unsigned)d;
            p++;
            if ((d = hexval(*p)) >= 0) {
                v = v * 16 + (unsigned)d;
                p++;
            }
            *o++ = (uint8_t)v;
            break;
        case '0': case '1': case '2': case '3':
        case '4': case '5': case '6': case '7':
            v = 0;
            for (int i = 0; i < 3 && *p >= '0' && *p <= '7'; i++)
                v = v * 8 + (unsigned)(*p++ - '0');
            if (v > 0xff) {
                snprintf(why, why_len, "octal escape at offset %td is above "
                         "\\377", p - 4 - in);
                goto bad;
            }
            *o++ = (uint8_t)v;
            break;
        case '\0':
            snprintf(why, why_len, "a lone backslash ends the text (write "
                     "\\\\ for a backslash)");
            goto bad;
        default:
            if (g_ascii_isprint(*p))
                snprintf(why, why_len, "'\\%c' at offset %td is not an escape "
                         "(use \\n \\t \\r \\\\ \\\" \\xHH or octal \\NNN)",
                         *p, p - 1 - in);
            else
                snprintf(why, why_len, "backslash before byte 0x%02x at "
                         "offset %td is not an escape (use \\n \\t \\r \\\\ "
                         "\\\" \\xHH or octal \\NNN)", (unsigned char)*p,
                         p - 1 - in);
            goto bad;
        }
    }
    *out = buf;
    *out_len = (size_t)(o - buf);
    return 0;
bad:
    free(buf);
    return -EINVAL;
}

/* "\"hello\\n\"" for a log line: printable ASCII as is, the rest escaped,
 * at most TCP_LOG_MAX bytes, then "…" if there was more.  g_free it. */
static char *printable(const uint8_t *p, size_t len)
{
    size_t n = len < TCP_LOG_MAX ? len : TCP_LOG_MAX;
    GString *s = g_string_sized_new(n + 8);

    g_string_append_c(s, '"');
    for (size_t i = 0; i < n; i++) {
        switch (p[i]) {
        case '\n': g_string_append(s, "\\n"); break;
        case '\r': g_string_append(s, "\\r"); break;
        case '\t': g_string_append(s, "\\t"); break;
        case '\\': g_string_append(s, "\\\\"); break;
        case '"': g_string_append(s, "\\\""); break;
        default:
            if (p[i] >= 0x20 && p[i] < 0x7f)
                g_string_append_c(s, (char)p[i]);
            else
                g_string_append_printf(s, "\\x%02x", p[i]);
        }
    }
    g_string_append_c(s, '"');
    if (n < len)
        g_string_append(s, "\xe2\x80\xa6"); /* … */
    return g_string_free(s, FALSE);
}

/* ------------------------------------------------------------ instances */

static void conf_free(tcp_conf_t *c)
{
    if (!c)
        return;
    free(c->send);
    free(c->tick);
    free(c);
}

/* Read key as escaped text.  Returns 0 (absent: *out stays NULL) or -errno
 * after reporting the problem. */
static int conf_text(zl_instance_t *inst, const char *key, uint8_t **out,
                     size_t *len)
{
    const char *v = host->config_string(inst, key);
    char why[160];
    int rc;

    if (!v)
        return 0;
    rc = unescape(v, out, len, why, sizeof why);
    if (rc == -EINVAL)
        host->config_error(inst, key, "%s", why);
    else if (rc < 0)
        host->config_error(inst, key, "out of memory");
    return rc;
}

static int tcp_instance_new(zl_instance_t *inst, void **data)
{
    tcp_conf_t *c = calloc(1, sizeof(*c));
    const char *mode;
    int rc = 0, r;

    if (!c)
        return -ENOMEM;
    mode = host->config_string(inst, "mode");
    if (!mode || !strcmp(mode, "log")) {
        c->mode = TCP_MODE_LOG;
    } else if (!strcmp(mode, "stdio")) {
        c->mode = TCP_MODE_STDIO;
    } else {
        host->config_error(inst, "mode", "'%s' is not a mode (log or stdio)",
                           mode);
        rc = -EINVAL;
    }
    /* Report every problem, not only the first. */
    if ((r = conf_text(inst, "send", &c->send, &c->send_len)) < 0)
        rc = r;
    if ((r = conf_text(inst, "tick", &c->tick, &c->tick_len)) < 0)
        rc = r;
    if (rc < 0) {
        conf_free(c);
        return rc;
    }
    *data = c;
    return 0;
}

static void tcp_instance_free(zl_instance_t *inst, void *data)
{
    (void)inst;
    conf_free(data);
}

/* ------------------------------------------------------------- sending */

/* Send one message of ours (send, tick, standard input).  Returns the
 * host's answer; failures are logged. */
static int tcp_send(zl_session_t *s, tcp_session_t *t, const uint8_t *p,
                    size_t len)
{
    int rc = host->send(s, p, len);

    if (rc < 0) { /* ZL_ESHUTDOWN: closing, which was logged already */
        host->session_log(s, rc == ZL_ESHUTDOWN ? ZL_LOG_INFO : ZL_LOG_WARNING,
                          "could not send %zu bytes: %s", len,
                          zl_strerror(rc));
        return rc;
    }
    t->sent += len;
    if (rc == ZL_CONN_BUSY)
        t->busy = true;
    if (t->conf->mode == TCP_MODE_LOG) {
        char *txt = printable(p, len);
        host->session_log(s, t->level, "sent %zu bytes: %s", len, txt);
        g_free(txt);
    }
    return rc;
}

/* The tick text with every {n} replaced by the tick number. */
static GByteArray *tick_text(const tcp_conf_t *c, uint64_t n)
{
    GByteArray *a = g_byte_array_sized_new((unsigned)c->tick_len + 16);
    const uint8_t *p = c->tick, *end = c->tick + c->tick_len;
    char num[24];
    int numlen = snprintf(num, sizeof num, "%" PRIu64, n);

    while (p < end) {
        const uint8_t *m = memmem(p, (size_t)(end - p), "{n}", 3);

        if (!m) {
            g_byte_array_append(a, p, (unsigned)(end - p));
            break;
        }
        g_byte_array_append(a, p, (unsigned)(m - p));
        g_byte_array_append(a, (const uint8_t *)num, (unsigned)numlen);
        p = m + 3;
    }
    return a;
}

/* -------------------------------------------------- stdio: cancel signal */

static tcp_cancel_t *cancel_new(void)
{
    tcp_cancel_t *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    atomic_init(&c->refs, 1);
#ifdef __linux__
    c->rfd = c->wfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->rfd < 0)
        goto fail;
#else
    {
        int fds[2];
        if (pipe(fds) < 0)
            goto fail;
        for (int i = 0; i < 2; i++) {
            fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
            fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        }
        c->rfd = fds[0];
        c->wfd = fds[1];
    }
#endif
    return c;
fail:
    {
        int e = errno;
        free(c);
        errno = e;
    }
    return NULL;
}

static tcp_cancel_t *cancel_ref(tcp_cancel_t *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

static void cancel_unref(tcp_cancel_t *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (c->wfd != c->rfd)
        close(c->wfd);
    close(c->rfd);
    free(c);
}

static void cancel_signal(tcp_cancel_t *c)
{
#ifdef __linux__
    uint64_t one = 1;
    const void *p = &one;
    size_t n = sizeof one;
#else
    const void *p = "x";
    size_t n = 1;
#endif
    /* EAGAIN means it is signalled already. */
    while (write(c->wfd, p, n) < 0 && errno == EINTR)
        ;
}

/* Wait until fd is ready for events or the session is cancelled.  Returns
 * 0, -ECANCELED or -errno. */
static int wait_fd(int fd, short events, const tcp_cancel_t *c)
{
    for (;;) {
        struct pollfd pf[2] = {
            {.fd = c->rfd, .events = POLLIN},
            {.fd = fd, .events = events},
        };

        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (pf[0].revents)
            return -ECANCELED;
        if (pf[1].revents & POLLNVAL)
            return -EBADF;
        if (pf[1].revents)
            return 0; /* ready, or HUP/ERR: the read or write tells */
    }
}

static tcp_job_t *job_new(tcp_session_t *t, size_t data_len)
{
    tcp_job_t *j = malloc(sizeof(*j) + data_len);

    if (!j)
        return NULL;
    j->cancel = cancel_ref(t->cancel);
    j->got = 0;
    return j;
}

/* Any thread: only memory is released. */
static void job_free(void *arg)
{
    tcp_job_t *j = arg;

    cancel_unref(j->cancel);
    free(j);
}

/* ----------------------------------------------- stdio: standard output */

/* write(2) with SIGPIPE held back on this thread only: a closed standard
 * output must close the session, not kill the host. */
static ssize_t write_nosigpipe(int fd, const void *p, size_t len)
{
    sigset_t pipe_set, old, pending;
    bool was_pending;
    ssize_t n;
    int e;

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    if (pthread_sigmask(SIG_BLOCK, &pipe_set, &old) != 0)
        return write(fd, p, len);
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE);
    n = write(fd, p, len);
    e = errno;
    /* EPIPE raises SIGPIPE, and so does a short write that the reader
     * left in the middle of.  Consume ours (sigwait returns at once for a
     * pending signal, and is POSIX, unlike sigtimedwait). */
    if (!was_pending && (n < 0 ? e == EPIPE : (size_t)n < len)) {
        int sig;

        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE))
            sigwait(&pipe_set, &sig);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return n;
}

/* Write everything to fd 1.  Returns 0, or -errno (-EAGAIN: standard
 * output is non-blocking and full) with *done set to what was written. */
static int stdout_write(const uint8_t *p, size_t len, size_t *done)
{
    size_t off = 0;

    while (off < len) {
        ssize_t n = write_nosigpipe(STDOUT_FILENO, p + off, len - off);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            *done = off;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        off += (size_t)n;
    }
    *done = off;
    return 0;
}

/* Give up on the standard streams: read no more input, close gracefully
 * (what is queued still goes out). */
static void stdio_close(zl_session_t *s, tcp_session_t *t)
{
    t->in_done = true;
    host->close(s);
}

static void stdout_wait(zl_session_t *s, tcp_session_t *t);

/* Worker: wait until standard output takes bytes again. */
static void stdout_wait_work(void *arg)
{
    tcp_job_t *j = arg;

    j->got = wait_fd(STDOUT_FILENO, POLLOUT, j->cancel);
}

/* Write what is held in t->out; resume reading once it is all out. */
static void stdout_flush(zl_session_t *s, tcp_session_t *t)
{
    size_t done = 0;
    int rc = stdout_write(t->out->data, t->out->len, &done);

    g_byte_array_remove_range(t->out, 0, (unsigned)done);
    if (rc == -EAGAIN) {
        stdout_wait(s, t);
        return;
    }
    if (rc < 0) {
        host->session_log(s, ZL_LOG_WARNING, "cannot write to standard "
                          "output: %s; closing", zl_strerror(rc));
        stdio_close(s, t);
        return;
    }
    if (t->paused) {
        t->paused = false;
        host->resume(s);
    }
}

static void stdout_wait_done(zl_session_t *s, void *state, void *arg)
{
    tcp_session_t *t = state;
    tcp_job_t *j = arg;

    t->waiting = false;
    if (j->got < 0 && j->got != -EBADF) { /* EBADF: the write reports it */
        host->session_log(s, ZL_LOG_WARNING, "cannot wait for standard "
                          "output: %s; closing", zl_strerror((int)j->got));
        stdio_close(s, t);
        return;
    }
    stdout_flush(s, t);
}

/* Standard output is full: stop reading from the peer and wait for it on a
 * worker (the poller must not block). */
static void stdout_wait(zl_session_t *s, tcp_session_t *t)
{
    tcp_job_t *j;
    int rc;

    if (!t->paused) {
        t->paused = true;
        host->pause(s);
    }
    if (t->waiting)
        return;
    j = job_new(t, 0);
    if (!j) {
        rc = -ENOMEM;
        goto fail;
    }
    t->waiting = true;
    rc = host->submit(s, stdout_wait_work, stdout_wait_done, j, job_free);
    if (rc < 0) {
        t->waiting = false;
        job_free(j);
        goto fail;
    }
    return;
fail:
    host->session_log(s, ZL_LOG_WARNING, "cannot wait for standard output: "
                      "%s; closing", zl_strerror(rc));
    stdio_close(s, t);
}

static void stdio_recv(zl_session_t *s, tcp_session_t *t, zl_buf_t *buf)
{
    size_t done = 0;
    int rc;

    if (t->out && t->out->len) { /* behind earlier bytes: keep the order */
        g_byte_array_append(t->out, buf->data, (unsigned)buf->len);
        return;
    }
    rc = stdout_write(buf->data, buf->len, &done);
    if (rc == -EAGAIN) {
        if (!t->out)
            t->out = g_byte_array_new();
        g_byte_array_append(t->out, buf->data + done,
                            (unsigned)(buf->len - done));
        stdout_wait(s, t);
    } else if (rc < 0) {
        host->session_log(s, ZL_LOG_WARNING, "cannot write to standard "
                          "output: %s; closing", zl_strerror(rc));
        stdio_close(s, t);
    }
}

/* ------------------------------------------------ stdio: standard input */

/* Worker: one read of standard input, unless the session is cancelled. */
static void stdin_work(void *arg)
{
    tcp_job_t *j = arg;

    for (;;) {
        int rc = wait_fd(STDIN_FILENO, POLLIN, j->cancel);
        ssize_t n;

        if (rc < 0) {
            j->got = rc;
            return;
        }
        n = read(STDIN_FILENO, j->data, TCP_READ_MAX);
        if (n >= 0) {
            j->got = n;
            return;
        }
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
            j->got = -errno;
            return;
        }
    }
}

static void stdin_done(zl_session_t *s, void *state, void *arg);

/* Submit the next read if there is room for what it brings. */
static void stdin_next(zl_session_t *s, tcp_session_t *t)
{
    tcp_job_t *j;
    int rc;

    if (!t->cancel || t->reading || t->in_done || !t->connected || t->busy)
        return;
    j = job_new(t, TCP_READ_MAX);
    if (!j) {
        rc = -ENOMEM;
        goto fail;
    }
    /* Before submit: a host may run the job before submit returns. */
    t->reading = true;
    rc = host->submit(s, stdin_work, stdin_done, j, job_free);
    if (rc < 0) {
        t->reading = false;
        job_free(j);
        goto fail;
    }
    return;
fail:
    if (rc == ZL_ESHUTDOWN)
        return; /* the session or the host is closing */
    host->session_log(s, ZL_LOG_WARNING, "cannot read standard input: %s; "
                      "half-closing", zl_strerror(rc));
    t->in_done = true;
    host->shutdown(s);
}

static void stdin_done(zl_session_t *s, void *state, void *arg)
{
    tcp_session_t *t = state;
    tcp_job_t *j = arg;

    t->reading = false;
    if (t->in_done)
        return; /* we are closing: the bytes have nowhere to go */
    if (j->got > 0) {
        if (!t->connected) { /* lost meanwhile: keep it for the next one */
            if (!t->held)
                t->held = g_byte_array_new();
            g_byte_array_append(t->held, j->data, (unsigned)j->got);
            return;
        }
        if (tcp_send(s, t, j->data, (size_t)j->got) >= 0)
            stdin_next(s, t);
        return;
    }
    t->in_done = true;
    if (j->got == 0)
        host->session_log(s, ZL_LOG_INFO, "end of standard input after %"
                          PRIu64 " bytes sent; half-closing", t->sent);
    else
        host->session_log(s, ZL_LOG_WARNING, "cannot read standard input: "
                          "%s; half-closing", zl_strerror((int)j->got));
    if (t->connected)
        host->shutdown(s);
}

/* ---------------------------------------------------------- callbacks */

static int tcp_open(zl_session_t *s, void *state, zl_instance_t *inst)
{
    tcp_session_t *t = state;

    t->conf = host->instance_data(inst);
    if (!t->conf)
        t->conf = &tcp_defaults;
    t->level = t->conf->mode == TCP_MODE_LOG ? ZL_LOG_MESSAGE : ZL_LOG_INFO;
    if (t->conf->mode == TCP_MODE_STDIO) {
        t->cancel = cancel_new();
        if (!t->cancel) {
            int rc = -errno;
            host->session_log(s, ZL_LOG_WARNING, "cannot create the cancel "
                              "descriptor for standard input: %s",
                              zl_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static void tcp_connect(zl_session_t *s, void *state, const zl_error_t *err)
{
    tcp_session_t *t = state;
    char peer[ZL_ADDR_STRLEN];

    if (err) {
        t->connected = false;
        host->session_log(s, t->conf->mode == TCP_MODE_LOG ? ZL_LOG_MESSAGE
                                                           : ZL_LOG_WARNING,
                          "connection attempt failed: %s", err->message);
        return;
    }
    t->connected = true;
    t->busy = false; /* a new connection starts with an empty queue */
    host->session_log(s, t->level, "connected to %s",
                      zl_addr_format(host->peer(s), peer, sizeof peer));
    if (t->conf->send && t->conf->send_len &&
        tcp_send(s, t, t->conf->send, t->conf->send_len) < 0)
        return;
    if (t->conf->mode != TCP_MODE_STDIO)
        return;
    if (t->held && t->held->len) {
        int rc = tcp_send(s, t, t->held->data, t->held->len);

        g_byte_array_set_size(t->held, 0);
        if (rc < 0)
            return;
    }
    if (t->in_done)
        host->shutdown(s);
    else
        stdin_next(s, t);
}

static void tcp_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    tcp_session_t *t = state;

    t->received += buf->len;
    if (t->conf->mode == TCP_MODE_STDIO) {
        stdio_recv(s, t, buf);
    } else {
        char *txt = printable(buf->data, buf->len);
        host->session_log(s, t->level, "received %zu bytes: %s", buf->len,
                          txt);
        g_free(txt);
    }
}

static void tcp_err(zl_session_t *s, void *state, const zl_error_t *err)
{
    tcp_session_t *t = state;
    zl_log_level_t level = ZL_LOG_MESSAGE;

    t->connected = false;
    if (t->conf->mode == TCP_MODE_STDIO)
        level = err->code == ZL_EOF ? ZL_LOG_INFO : ZL_LOG_WARNING;
    host->session_log(s, level, "%s", err->message);
}

static void tcp_busy(zl_session_t *s, void *state, bool busy)
{
    tcp_session_t *t = state;

    t->busy = busy;
    if (!busy && t->conf->mode == TCP_MODE_STDIO)
        stdin_next(s, t);
}

static void tcp_manager(zl_session_t *s, void *state)
{
    tcp_session_t *t = state;
    GByteArray *a;

    if (!t->connected || !t->conf->tick)
        return;
    t->ticks++;
    if (t->busy) { /* do not pile up ticks behind a peer that does not read */
        host->session_log(s, ZL_LOG_DEBUG, "tick %" PRIu64 " skipped: the "
                          "send queue is above the high mark", t->ticks);
        return;
    }
    a = tick_text(t->conf, t->ticks);
    if (a->len)
        tcp_send(s, t, a->data, a->len);
    g_byte_array_unref(a);
}

static void tcp_closed(zl_session_t *s, void *state)
{
    tcp_session_t *t = state;

    host->session_log(s, t->level, "closed: %" PRIu64 " bytes sent, %" PRIu64
                      " bytes received", t->sent, t->received);
    if (t->cancel) {
        /* Wakes a worker blocked on standard input or output; the job
         * holds its own reference and frees the rest in its destroy. */
        cancel_signal(t->cancel);
        cancel_unref(t->cancel);
        t->cancel = NULL;
    }
    if (t->held)
        g_byte_array_unref(t->held);
    if (t->out)
        g_byte_array_unref(t->out);
    t->held = t->out = NULL;
}

static const char *const tcp_keys[] = {"send", "tick", "mode", NULL};

static const zl_handler_t tcp_handler = {
    .struct_size = sizeof(zl_handler_t),
    .state_size = sizeof(tcp_session_t),
    .keys = tcp_keys,
    .instance_new = tcp_instance_new,
    .instance_free = tcp_instance_free,
    .on_open = tcp_open,
    .on_connect = tcp_connect,
    .on_recv = tcp_recv,
    .on_err = tcp_err,
    .on_busy = tcp_busy,
    .on_manager = tcp_manager,
    .on_closed = tcp_closed,
};

static int tcp_init(zl_plugin_t *self, const zl_host_api_t *api)
{
    static const zl_registration_t reg = {
        .struct_size = sizeof(zl_registration_t),
        .kind = ZL_PROVIDES_CLIENT,
        .name = "tcp",
        .description = "sends 'send' on connect and 'tick' ({n}: count) "
                       "periodically, logging what comes back; mode = stdio "
                       "bridges standard input and output (like ncat)",
        .vtable = &tcp_handler,
    };

    if (api->struct_size < offsetof(zl_host_api_t, reserved))
        return -EPROTO; /* a host older than this plugin */
    host = api;
    return host->register_provider(self, &reg);
}

ZLTK_PLUGIN_DEFINE(
    .name = "tcp",
    .version = "1.0",
    .description = "TCP test client: scripted sends and ticks, or a "
                   "standard input/output bridge",
    .init = tcp_init,
)
