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
 * standard output, like ncat (zltk-host --connect HOST:PORT).  Both streams
 * are non-blocking and watched on the session's poller (stream_open says
 * how, without making the shell's shared descriptions non-blocking), so
 * nothing ever blocks a poller: input is read, 64 KiB at a time, only while
 * connected and not busy (backpressure towards the peer); output that
 * standard output does not take at once is held and reading from the peer
 * pauses until it is out, so at most about one receive buffer is held.  At
 * end of input the sending side is shut down and output continues until
 * the peer closes.  A stream's error ends the session through host->fail
 * (zltk-host --connect exits 1); a reader of standard output that leaves
 * (EPIPE) closes it normally.  Nothing but received bytes goes to standard
 * output; problems are logged (stderr).
 *
 * Threading: every callback, fd callback, task and timer runs on the
 * session's poller; the fds are removed in on_closed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include <zltk/error.h> /* ZL_EOF, zl_strerror: plugin.h does not include it */
#include <zltk/plugin.h>

#define TCP_READ_MAX (64 * 1024) /* bytes of standard input per read */
#define TCP_LOG_MAX 64           /* bytes of payload shown in a log line */
#define TCP_RETRY_MS 10          /* a direct stream that said EAGAIN */

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

/* Standard input or output as a stdio session uses it (stream_open). */
typedef struct tcp_stream {
    int fd;           /* what is read or written: std, or our own
                         description of the same object */
    int std;          /* STDIN_FILENO or STDOUT_FILENO */
    int saved;        /* flags to restore on std's description; -1: none */
    bool open;        /* set up, until stream_close */
    bool own;         /* fd is ours: close it */
    bool sock;        /* a socket: MSG_DONTWAIT per call */
    bool direct;      /* cannot be polled: plain (blocking) calls */
    unsigned watched; /* ZL_EV_* registered on the session's poller */
} tcp_stream_t;

typedef struct tcp_session {
    const tcp_conf_t *conf;
    zl_log_level_t level; /* of exchange logs */
    uint64_t sent, received, ticks;
    bool connected; /* between on_connect(NULL) and on_err */
    bool busy;      /* above the high mark: produce nothing more */
    /* stdio mode; everything here lives on the poller thread. */
    zl_session_t *s;     /* for the fd callbacks, removed in on_closed */
    tcp_stream_t in, out;
    bool in_done;        /* standard input ended, or the session closes */
    bool in_posted;      /* a read task of a direct input is pending */
    bool ending;         /* a stream failed or output's reader left */
    bool paused;         /* reading from the peer stopped: stdout full */
    bool retry;          /* the retry timer is armed */
    uint64_t written;    /* bytes written to standard output */
    uint8_t *inbuf;      /* TCP_READ_MAX bytes */
    GByteArray *pend;    /* received bytes stdout has not taken yet, from */
    size_t pend_off;     /* pend_off on: at most about one receive buffer */
} tcp_session_t;

/* ------------------------------------------------------------ escapes */

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
            if ((d = g_ascii_xdigit_value(*p)) < 0) {
                snprintf(why, why_len, "'\\x' at offset %td needs one or two "
                         "hex digits (e.g. \\x0a)", p - 2 - in);
                goto bad;
            }
            v = (unsigned)d;
            p++;
            if ((d = g_ascii_xdigit_value(*p)) >= 0) {
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

/* ------------------------------------------------- stdio: the streams */

/* Set up standard descriptor std (0 or 1) for use from the poller without
 * changing, where it can be helped, how the other processes that share its
 * open file description see it (a shell's terminal, a pipe another process
 * of a pipeline also writes):
 *   - regular files, directories and block devices: plain calls (they
 *     cannot be polled and do not block indefinitely);
 *   - sockets: MSG_DONTWAIT on each call, the description untouched;
 *   - pipes, FIFOs, terminals and other devices: a description of our own
 *     to the same object, opened through /proc/self/fd and non-blocking;
 *     where that fails (no /proc, not Linux), O_NONBLOCK on the shared
 *     description, restored by stream_close().
 * Returns 0 or -errno. */
static int stream_open(tcp_stream_t *st, int std)
{
    bool in = std == STDIN_FILENO;
    struct stat sb;
    int flags, acc;

    *st = (tcp_stream_t){.fd = std, .std = std, .saved = -1, .open = true};
    if (fstat(std, &sb) < 0 || (flags = fcntl(std, F_GETFL)) < 0) {
        st->open = false;
        return -errno;
    }
    if (S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode) || S_ISBLK(sb.st_mode)) {
        st->direct = true;
        return 0;
    }
    if (S_ISSOCK(sb.st_mode)) {
        st->sock = true;
        return 0;
    }
    acc = flags & O_ACCMODE;
    if (acc != (in ? O_WRONLY : O_RDONLY)) { /* else the call reports it */
#ifdef __linux__
        char path[32];
        int fd;

        /* Never O_RDWR: holding a pipe's write end would hide its EOF. */
        snprintf(path, sizeof path, "/proc/self/fd/%d", std);
        fd = open(path, (in ? O_RDONLY : O_WRONLY) | O_NONBLOCK | O_NOCTTY |
                            O_CLOEXEC);
        if (fd >= 0) {
            st->fd = fd;
            st->own = true;
            return 0;
        }
#endif
    }
    if (!(flags & O_NONBLOCK)) {
        if (fcntl(std, F_SETFL, flags | O_NONBLOCK) < 0) {
            st->open = false;
            return -errno;
        }
        st->saved = flags;
    }
    return 0;
}

/* Back to the standard descriptor as it was: our own description closed,
 * the shared one's flags restored. */
static void stream_unwind(tcp_stream_t *st)
{
    if (st->own)
        close(st->fd);
    if (st->saved >= 0)
        fcntl(st->std, F_SETFL, st->saved);
    st->fd = st->std;
    st->own = false;
    st->saved = -1;
}

static void stream_io(zl_poller_t *p, int fd, unsigned events, void *udata);

/* Make the session's poller watch exactly want (ZL_EV_READ or _WRITE, 0:
 * nothing) on the stream, level-triggered: with nothing wanted the fd
 * leaves the poller, so that a ready stream we are not using cannot make a
 * level-triggered loop spin.  Returns 0, -EPERM when the stream cannot be
 * polled (it is then a direct stream, used with plain blocking calls:
 * /dev/null, /dev/full, ...), or another -errno. */
static int stream_watch(tcp_session_t *t, tcp_stream_t *st, unsigned want)
{
    zl_poller_t *p;
    int rc;

    if (!st->open || st->direct || want == st->watched)
        return 0;
    p = host->session_poller(t->s);
    if (!want)
        rc = zl_poller_del_fd(p, st->fd, NULL, NULL);
    else if (!st->watched)
        rc = zl_poller_add_fd(p, st->fd, want | ZL_EV_LT, stream_io, t);
    else
        rc = zl_poller_mod_fd(p, st->fd, want | ZL_EV_LT);
    if (rc == 0 || !want)
        st->watched = want;
    if (rc == -EPERM && !st->watched) {
        stream_unwind(st);
        st->direct = true;
    }
    return rc;
}

static void stream_close(tcp_session_t *t, tcp_stream_t *st)
{
    if (!st->open)
        return;
    stream_watch(t, st, 0);
    stream_unwind(st);
    st->open = false;
}

/* One read of up to len bytes: > 0, 0 at end of input, or -errno
 * (-EAGAIN: nothing now). */
static ssize_t stream_read(const tcp_stream_t *st, void *p, size_t len)
{
    ssize_t n;

    do
        n = st->sock ? recv(st->fd, p, len, MSG_DONTWAIT)
                     : read(st->fd, p, len);
    while (n < 0 && errno == EINTR);
    return n >= 0 ? n : errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* write(2) with SIGPIPE held back on this thread only: a closed standard
 * output must end the session, not kill a host that does not ignore
 * SIGPIPE (zltk-host does). */
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

/* Write all of p, as far as the stream takes it now.  Returns 0, or -errno
 * (-EAGAIN: full for now) with *done set to what was written. */
static int stream_write(const tcp_stream_t *st, const uint8_t *p, size_t len,
                        size_t *done)
{
    size_t off = 0;

    while (off < len) {
        ssize_t n;

#ifdef MSG_NOSIGNAL
        if (st->sock)
            n = send(st->fd, p + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        else
#endif
            n = write_nosigpipe(st->fd, p + off, len - off);
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

/* ------------------------------------------------ stdio: ending */

/* Stop using both streams: no more input is read, pending output is
 * dropped (on_closed follows). */
static void stdio_stop(tcp_session_t *t)
{
    t->ending = true;
    stream_watch(t, &t->in, 0);
    stream_watch(t, &t->out, 0);
}

/* A stream failed: end the session with that error as its outcome
 * (zltk-host --connect exits 1 with it). */
static void stdio_fail(tcp_session_t *t, int rc, const char *what)
{
    if (t->ending)
        return;
    stdio_stop(t);
    host->session_log(t->s, ZL_LOG_WARNING, "%s: %s; closing", what,
                      zl_strerror(rc));
    if (host->fail)
        host->fail(t->s, rc, "%s: %s", what, zl_strerror(rc));
    else
        host->close(t->s);
}

/* Standard output failed.  Its reader going away (EPIPE: `| head -c 100`)
 * ends the transfer normally, as for cat: the reader had what it wanted. */
static void stdout_failed(tcp_session_t *t, int rc)
{
    if (rc != -EPIPE) {
        stdio_fail(t, rc, "cannot write to standard output");
        return;
    }
    if (t->ending)
        return;
    stdio_stop(t);
    host->session_log(t->s, ZL_LOG_INFO, "standard output was closed by its "
                      "reader after %" PRIu64 " bytes; closing", t->written);
    host->close(t->s);
}

static uint64_t stdio_retry(zl_session_t *s, void *state, void *arg);

/* A direct stream said EAGAIN (someone else made it non-blocking): try
 * again a little later rather than spin. */
static void stdio_retry_later(tcp_session_t *t)
{
    if (!t->retry && host->add_timer(t->s, TCP_RETRY_MS, stdio_retry, NULL,
                                     NULL) == 0)
        t->retry = true;
}

/* ----------------------------------------------- stdio: standard output */

static void stdout_flush(tcp_session_t *t);

/* Standard output is full: stop reading from the peer until it drains, so
 * that what is held stays within one receive buffer. */
static void stdout_wait(tcp_session_t *t)
{
    int rc;

    if (!t->paused) {
        t->paused = true;
        host->pause(t->s);
    }
    rc = stream_watch(t, &t->out, ZL_EV_WRITE);
    if (rc == -EPERM || (rc == 0 && t->out.direct))
        stdio_retry_later(t);
    else if (rc < 0)
        stdio_fail(t, rc, "cannot watch standard output");
}

/* Write what is pending; resume reading from the peer once it is out. */
static void stdout_flush(tcp_session_t *t)
{
    size_t done = 0;
    int rc;

    if (t->ending || t->pend_off == t->pend->len)
        return;
    rc = stream_write(&t->out, t->pend->data + t->pend_off,
                      t->pend->len - t->pend_off, &done);
    t->pend_off += done;
    t->written += done;
    if (rc == -EAGAIN) {
        stdout_wait(t);
        return;
    }
    if (rc < 0) {
        stdout_failed(t, rc);
        return;
    }
    g_byte_array_set_size(t->pend, 0);
    t->pend_off = 0;
    stream_watch(t, &t->out, 0);
    if (t->paused) { /* last: resuming may deliver bytes right away */
        t->paused = false;
        host->resume(t->s);
    }
}

static void stdio_recv(tcp_session_t *t, const zl_buf_t *buf)
{
    size_t done = 0;
    int rc;

    if (t->ending)
        return;
    if (t->pend_off < t->pend->len) { /* behind earlier bytes: keep order */
        g_byte_array_append(t->pend, buf->data, (unsigned)buf->len);
        return;
    }
    rc = stream_write(&t->out, buf->data, buf->len, &done);
    t->written += done;
    if (rc == -EAGAIN) {
        g_byte_array_append(t->pend, buf->data + done,
                            (unsigned)(buf->len - done));
        stdout_wait(t);
    } else if (rc < 0) {
        stdout_failed(t, rc);
    }
}

/* ------------------------------------------------ stdio: standard input */

static bool stdin_wanted(const tcp_session_t *t)
{
    return t->in.open && t->connected && !t->busy && !t->in_done &&
           !t->ending;
}

static void stdin_task(zl_session_t *s, void *state, void *arg);

/* Read standard input while there is room for what it brings: watched on
 * the poller, or for a stream that cannot be polled (a regular file), one
 * buffer per loop round from a posted task. */
static void stdin_update(tcp_session_t *t)
{
    int rc;

    if (!stdin_wanted(t)) {
        stream_watch(t, &t->in, 0);
        return;
    }
    rc = stream_watch(t, &t->in, ZL_EV_READ);
    if (rc < 0 && rc != -EPERM) {
        stdio_fail(t, rc, "cannot watch standard input");
        return;
    }
    if (t->in.direct && !t->in_posted &&
        host->post(t->s, stdin_task, NULL, NULL) == 0)
        t->in_posted = true;
}

static void stdin_eof(tcp_session_t *t)
{
    t->in_done = true;
    stream_watch(t, &t->in, 0);
    host->session_log(t->s, ZL_LOG_INFO, "end of standard input after %"
                      PRIu64 " bytes sent; half-closing", t->sent);
    host->shutdown(t->s);
}

static void stdin_read(tcp_session_t *t)
{
    ssize_t n;
    int rc;

    if (!stdin_wanted(t))
        return;
    n = stream_read(&t->in, t->inbuf, TCP_READ_MAX);
    if (n == -EAGAIN) { /* a poll reports it again; a direct stream: */
        if (t->in.direct)
            stdio_retry_later(t);
        return;
    }
    if (n < 0) {
        stdio_fail(t, (int)n, "cannot read standard input");
        return;
    }
    if (n == 0) {
        stdin_eof(t);
        return;
    }
    rc = tcp_send(t->s, t, t->inbuf, (size_t)n);
    if (rc == ZL_ESHUTDOWN) /* closing: the rest has nowhere to go */
        t->in_done = true;
    stdin_update(t);
}

static void stdin_task(zl_session_t *s, void *state, void *arg)
{
    tcp_session_t *t = state;

    (void)s;
    (void)arg;
    t->in_posted = false;
    stdin_read(t);
}

/* Poller thread, between on_open and on_closed (which removes the fds). */
static void stream_io(zl_poller_t *p, int fd, unsigned events, void *udata)
{
    tcp_session_t *t = udata;

    (void)p;
    (void)events; /* ready, hang-up or error: the call tells which */
    if (fd == t->out.fd && t->out.watched)
        stdout_flush(t);
    else if (fd == t->in.fd && t->in.watched)
        stdin_read(t);
}

static uint64_t stdio_retry(zl_session_t *s, void *state, void *arg)
{
    tcp_session_t *t = state;

    (void)s;
    (void)arg;
    t->retry = false;
    stdout_flush(t);
    if (t->in.direct)
        stdin_update(t);
    return 0;
}

/* on_open of stdio mode.  Returns 0 or -errno (logged). */
static int stdio_open(zl_session_t *s, tcp_session_t *t)
{
    int rc;

    t->s = s;
    t->inbuf = malloc(TCP_READ_MAX);
    t->pend = g_byte_array_new();
    if (!t->inbuf) {
        host->session_log(s, ZL_LOG_WARNING, "out of memory");
        return -ENOMEM;
    }
    if ((rc = stream_open(&t->in, STDIN_FILENO)) < 0 ||
        (rc = stream_open(&t->out, STDOUT_FILENO)) < 0) {
        host->session_log(s, ZL_LOG_WARNING, "cannot use standard %s: %s",
                          t->in.open ? "output" : "input", zl_strerror(rc));
        return rc;
    }
    return 0;
}

static void stdio_close(tcp_session_t *t)
{
    stream_close(t, &t->in);
    stream_close(t, &t->out);
    free(t->inbuf);
    if (t->pend)
        g_byte_array_unref(t->pend);
    t->inbuf = NULL;
    t->pend = NULL;
}

/* ---------------------------------------------------------- callbacks */

static int tcp_open(zl_session_t *s, void *state, zl_instance_t *inst)
{
    tcp_session_t *t = state;

    t->conf = host->instance_data(inst);
    if (!t->conf)
        t->conf = &tcp_defaults;
    t->level = t->conf->mode == TCP_MODE_LOG ? ZL_LOG_MESSAGE : ZL_LOG_INFO;
    return t->conf->mode == TCP_MODE_STDIO ? stdio_open(s, t) : 0;
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
    if (t->conf->mode != TCP_MODE_STDIO || t->ending)
        return;
    if (t->paused) /* stdout still holds the last connection's bytes */
        host->pause(s);
    if (t->in_done) /* input ended during an earlier connection */
        host->shutdown(s);
    else
        stdin_update(t);
}

static void tcp_recv(zl_session_t *s, void *state, zl_buf_t *buf)
{
    tcp_session_t *t = state;

    t->received += buf->len;
    if (t->conf->mode == TCP_MODE_STDIO) {
        stdio_recv(t, buf);
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
    if (t->conf->mode == TCP_MODE_STDIO) {
        level = err->code == ZL_EOF ? ZL_LOG_INFO : ZL_LOG_WARNING;
        stdin_update(t); /* stops reading until a reconnect */
    }
    host->session_log(s, level, "%s", err->message);
}

static void tcp_busy(zl_session_t *s, void *state, bool busy)
{
    tcp_session_t *t = state;

    t->busy = busy;
    if (t->conf->mode == TCP_MODE_STDIO)
        stdin_update(t);
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
    stdio_close(t); /* pending output is dropped: we are stopping */
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
