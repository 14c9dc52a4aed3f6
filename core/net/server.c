/* zltk — TCP server: one listener, connections spread over the pool by
 * load.
 *
 * The listener lives on the pool's first poller (level-triggered, so that
 * accepting in bounded batches needs no re-arming).  Each accepted fd is
 * handed to the least-loaded poller, which owns the connection from then on.
 * Descriptor exhaustion is handled with a reserved descriptor: on EMFILE it
 * is closed, the pending connection accepted and closed at once, and the
 * reserve reopened, so the kernel queue drains and the loop never spins.
 */
#define G_LOG_DOMAIN "zltk-server"
#include "net-internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define ACCEPTS_PER_EVENT 128

struct zl_server {
    zl__conn_cfg_t cfg; /* first: conn.c reads it through the owner pointer */
    zl_poller_pool_t *pool;
    size_t npollers;
    zl__group_t *groups;
    zl_poller_t *acceptor;
    int lfd, reserve;
    bool paused; /* acceptor thread only */
    zl_timer_t *backoff;
    zl_addr_t addr;
    size_t max_conns;
    atomic_bool stopping;
    atomic_uint_fast64_t accepted, active, refused_fds, refused_limit;
    uint64_t last_warn_ms;
    /* A unix: listener's socket file, unlinked at stop if it is still the
     * one we bound (same device and inode): NULL for TCP and abstract. */
    char *unix_file;
    dev_t unix_dev;
    ino_t unix_ino;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char name[32];
};

_Static_assert(offsetof(struct zl_server, cfg) == 0, "cfg must come first");

static void open_reserve(zl_server_t *s)
{
    if (s->reserve < 0)
        s->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* One accepted connection less: zl_server_free() waits for none left. */
static void conn_release(zl_server_t *s)
{
    pthread_mutex_lock(&s->lock);
    if (atomic_fetch_sub(&s->active, 1) == 1)
        pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}


static size_t group_index(zl_server_t *s, zl_poller_t *p)
{
    for (size_t i = 0; i < s->npollers; i++)
        if (zl_poller_pool_at(s->pool, i) == p)
            return i;
    return 0;
}

/* ------------------------------------------------------------ owner ops */

static zl__group_t *server_group(zl_conn_t *c)
{
    zl_server_t *s = c->owner;
    return &s->groups[group_index(s, c->poller)];
}

static void server_conn_closed(zl_conn_t *c)
{
    zl_server_t *s = c->owner;

    c->owner = NULL;
    conn_release(s); /* s may be freed once this returns */
}

/* Accepted connections are open from the start: no connect to cut short,
 * and a second close lets the first one's flush finish. */
static const zl__conn_owner_ops_t server_ops = {
    .kind = "conn",
    .group = server_group,
    .on_closed = server_conn_closed,
};

static void adopt(void *arg)
{
    zl_conn_t *c = arg;
    zl_server_t *s = c->owner;
    int fd = c->fd;

    c->fd = -1;
    if (atomic_load(&s->stopping)) {
        close(fd);
        c->owner = NULL;
        zl_conn_unref(c);
        conn_release(s);
        return;
    }
    if (s->addr.u.sa.sa_family == AF_UNIX)
        zl__sock_setup_unix(fd, &s->cfg);
    else
        zl__sock_setup(fd, &s->cfg);
    zl__group_add(&s->groups[group_index(s, c->poller)], c);
    if (zl__conn_attach(c, fd) < 0) {
        c->fd = fd;
        zl__conn_finish(c);
        return;
    }
    zl__conn_emit_connect(c, 0, 0, ZL_STAGE_NONE, NULL);
}

static void warn_fds(zl_server_t *s, int err)
{
    uint64_t now = zl_now_ms();

    if (now - s->last_warn_ms < 10000 && s->last_warn_ms)
        return;
    s->last_warn_ms = now;
    g_warning("%s: out of file descriptors (%s): dropping new connections "
              "(%" G_GUINT64_FORMAT " so far); raise the limit (ulimit -n) or lower "
              "max-connections",
              s->name, zl_strerror(-(err)),
              (guint64)atomic_load(&s->refused_fds));
}

static uint64_t backoff_fire(void *arg);

/* Stop watching the listener for a while: the kernel keeps queueing. */
static void pause_listener(zl_server_t *s)
{
    if (s->paused)
        return;
    s->paused = true;
    zl_poller_mod_fd(s->acceptor, s->lfd, ZL_EV_LT);
    if (zl_poller_add_timer(s->acceptor, 100, backoff_fire, s, NULL,
                            &s->backoff) < 0)
        s->paused = false;
}

static uint64_t backoff_fire(void *arg)
{
    zl_server_t *s = arg;

    zl_timer_release(s->backoff);
    s->backoff = NULL;
    s->paused = false;
    open_reserve(s);
    if (s->lfd >= 0)
        zl_poller_mod_fd(s->acceptor, s->lfd, ZL_EV_READ | ZL_EV_LT);
    return 0;
}

/* EMFILE/ENFILE: free the reserve, take the connection off the queue and
 * close it, take the reserve back.  Returns true if a connection was shed
 * (more may be pending), false if the queue was empty — Linux reports
 * EMFILE before it looks at the queue. */
static bool shed_one(zl_server_t *s, int err)
{
    int fd = -1;

    if (s->reserve >= 0) {
        close(s->reserve);
        s->reserve = -1;
        fd = accept(s->lfd, NULL, NULL);
        if (fd >= 0)
            close(fd);
        open_reserve(s);
    }
    if (s->reserve < 0) {
        pause_listener(s); /* no reserve: back off instead of spinning */
        return false;
    }
    if (fd < 0)
        return false;
    atomic_fetch_add(&s->refused_fds, 1);
    warn_fds(s, err);
    return true;
}

static void listener_io(zl_poller_t *p, int lfd, unsigned events, void *arg)
{
    zl_server_t *s = arg;

    (void)p;
    (void)events;
    for (int i = 0; i < ACCEPTS_PER_EVENT && !s->paused; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        zl_poller_t *target;
        zl_conn_t *c;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            switch (errno) {
            case EINTR:
            case ECONNABORTED:
            case EPROTO:
                continue;
            case EAGAIN:
#if EWOULDBLOCK != EAGAIN
            case EWOULDBLOCK:
#endif
                return;
            case EMFILE:
            case ENFILE:
                if (shed_one(s, errno))
                    continue;
                return;
            case ENOBUFS:
            case ENOMEM:
                /* Kernel memory, not descriptors: nothing to shed with;
                 * back off rather than spin on a level-triggered fd. */
                g_warning("%s: accept: %s; pausing for 100 ms", s->name,
                          zl_strerror(-errno));
                pause_listener(s);
                return;
            default:
                /* Never tear the listener down for an accept error
                 * (MK#2946): log and try again on the next event. */
                g_warning("%s: accept: %s", s->name, zl_strerror(-errno));
                return;
            }
        }
        if (atomic_load(&s->stopping)) {
            close(fd);
            continue;
        }
        if (s->max_conns && atomic_load(&s->active) >= s->max_conns) {
            atomic_fetch_add(&s->refused_limit, 1);
            close(fd);
            continue;
        }
        target = zl_poller_pool_get(s->pool, false);
        c = zl__conn_new(target, s);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        zl__conn_set_peer(c, (struct sockaddr *)&ss, len);
        atomic_fetch_add(&s->active, 1);
        atomic_fetch_add(&s->accepted, 1);
        if (zl_poller_post(target, ZL_TASK_INLINE, adopt, c, NULL) < 0) {
            close(fd);
            c->fd = -1;
            c->owner = NULL;
            zl_conn_unref(c);
            conn_release(s);
        }
    }
}

/* ------------------------------------------------------------ unix */

/* Whether a process listens on the socket at ss: a refused connect says
 * nobody does (the file of a process that ended).  A full backlog
 * (EAGAIN) or any other answer counts as alive: never remove a file we are
 * not sure about. */
static bool unix_live(const struct sockaddr_storage *ss, socklen_t len)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc, e;

    if (fd < 0)
        return true;
    rc = connect(fd, (const struct sockaddr *)ss, len);
    e = errno;
    close(fd);
    return rc == 0 || (e != ECONNREFUSED && e != ENOENT);
}

/* Why bind failed, for the message. */
static const char *unix_hint(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return " (the socket file's directory does not exist)";
    case EACCES:
        return " (no permission to create a file in its directory)";
    default:
        return "";
    }
}

/* Bind fd to the path, replacing a stale socket file (nobody listens on
 * it) but never a live one or a file that is not a socket.  Logs why it
 * failed. */
static int unix_bind(zl_server_t *s, int fd, const char *path,
                     const struct sockaddr_storage *ss, socklen_t len)
{
    struct stat st;
    int e;

    if (bind(fd, (const struct sockaddr *)ss, len) == 0)
        return 0;
    e = errno;
    if (e == EADDRINUSE && path[0] != '@' && lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            g_warning("%s: cannot listen on unix:%s: the file exists and is "
                      "not a socket; not removing it (remove it or choose "
                      "another path)", s->name, path);
            return -EADDRINUSE;
        }
        if (unix_live(ss, len)) {
            g_warning("%s: cannot listen on unix:%s: address in use "
                      "(another process listens on it)", s->name, path);
            return -EADDRINUSE;
        }
        if (unlink(path) < 0 && errno != ENOENT) {
            e = errno;
            g_warning("%s: cannot listen on unix:%s: a stale socket file is "
                      "in the way and removing it failed: %s", s->name, path,
                      zl_strerror(-e));
            return -e;
        }
        g_message("%s: removed the stale socket file %s (nobody listened on "
                  "it)", s->name, path);
        if (bind(fd, (const struct sockaddr *)ss, len) == 0)
            return 0;
        e = errno;
    }
    if (e == EADDRINUSE)
        g_warning("%s: cannot listen on unix:%s: address in use", s->name,
                  path);
    else
        g_warning("%s: cannot listen on unix:%s: %s%s", s->name, path,
                  zl_strerror(-e), unix_hint(e));
    return -e;
}

/* Remove the socket file at stop, unless another one took its place. */
static void unix_unlink(zl_server_t *s)
{
    struct stat st;

    if (!s->unix_file)
        return;
    if (lstat(s->unix_file, &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == s->unix_dev && st.st_ino == s->unix_ino)
        unlink(s->unix_file);
    free(s->unix_file);
    s->unix_file = NULL;
}

/* Listen on "unix:PATH": bind (see unix_bind), the file's mode before
 * listen() so that no one connects through looser permissions, listen.
 * The TCP options (SO_REUSEADDR, IPV6_V6ONLY) do not apply. */
static int unix_listen(zl_server_t *s, const zl_server_options_t *o)
{
    struct sockaddr_storage ss;
    struct stat st;
    socklen_t len;
    const char *path;
    int fd, rc;

    rc = zl_addr_from_unix(&s->addr, o->host);
    if (rc == -ENAMETOOLONG) {
        g_warning("%s: listen address '%s' is too long: a Unix socket path "
                  "holds at most %d bytes, this one has %zu", s->name, o->host,
                  ZL_ADDR_UNIX_PATH_MAX, strlen(o->host) - 5);
        return rc;
    }
    if (rc < 0) {
        g_warning("%s: listen address '%s' is not unix:PATH", s->name,
                  o->host);
        return rc;
    }
    path = zl_addr_unix_path(&s->addr);
    len = zl__addr_sockaddr(&s->addr, &ss);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        g_warning("%s: socket: %s", s->name, zl_strerror(rc));
        return rc;
    }
    if ((rc = unix_bind(s, fd, path, &ss, len)) < 0) {
        close(fd);
        return rc;
    }
    if (path[0] != '@') {
        if (stat(path, &st) == 0) {
            s->unix_file = strdup(path);
            s->unix_dev = st.st_dev;
            s->unix_ino = st.st_ino;
        }
        if (o->unix_mode && chmod(path, (mode_t)o->unix_mode) < 0) {
            rc = -errno;
            g_warning("%s: cannot set the mode of unix:%s to %04o: %s",
                      s->name, path, o->unix_mode, zl_strerror(rc));
            goto fail;
        }
    }
    if (listen(fd, o->backlog) < 0) {
        rc = -errno;
        g_warning("%s: cannot listen on unix:%s: %s", s->name, path,
                  zl_strerror(rc));
        goto fail;
    }
    s->lfd = fd;
    return 0;

fail:
    close(fd);
    unix_unlink(s);
    return rc;
}

/* ------------------------------------------------------------ listen */

static int make_listener(zl_server_t *s, const zl_server_options_t *o)
{
    zl_addr_t a;
    int fd, one = 1, rc;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char at[ZL_ADDR_STRLEN];

    if (zl_addr_is_unix_text(o->host))
        return unix_listen(s, o);
    if (o->host && *o->host) {
        if (zl_addr_from_ip(&a, o->host, o->port) < 0) {
            g_warning("%s: listen address '%s' is not an IP literal", s->name,
                      o->host);
            return -EINVAL;
        }
    } else {
        zl_addr_from_ip(&a, "::", o->port);
    }
    fd = socket(a.u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    if (fd < 0 && errno == EAFNOSUPPORT && !(o->host && *o->host)) {
        /* No IPv6 in this kernel (MK#1638): fall back to IPv4. */
        zl_addr_from_ip(&a, "0.0.0.0", o->port);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0) {
        rc = -errno;
        g_warning("%s: socket: %s", s->name, zl_strerror(-errno));
        return rc;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a.u.sa.sa_family == AF_INET6) {
        int v6only = o->v6only ? 1 : 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    }
    if (bind(fd, &a.u.sa, a.len) < 0 ||
        listen(fd, o->backlog) < 0) {
        rc = -errno;
        g_warning("%s: cannot listen on %s: %s", s->name,
                  zl_addr_format(&a, at, sizeof(at)), zl_strerror(-errno));
        close(fd);
        return rc;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        zl_addr_from_sockaddr(&s->addr, (struct sockaddr *)&ss, len);
    s->lfd = fd;
    return 0;
}

typedef struct lstart {
    zl_server_t *s;
    int rc;
} lstart_t;

static void listener_start(void *arg)
{
    lstart_t *ls = arg;
    zl_server_t *s = ls->s;

    ls->rc = zl_poller_add_fd(s->acceptor, s->lfd, ZL_EV_READ | ZL_EV_LT,
                              listener_io, s);
}

static void listener_stop(void *arg)
{
    zl_server_t *s = arg;

    if (s->backoff)
        zl_timer_cancel(s->backoff);
    s->backoff = NULL;
    if (s->lfd >= 0) {
        zl_poller_del_fd(s->acceptor, s->lfd, NULL, NULL);
        close(s->lfd);
        s->lfd = -1;
    }
    unix_unlink(s);
    if (s->reserve >= 0)
        close(s->reserve);
    s->reserve = -1;
}

static void group_close_all(void *arg)
{
    zl__group_t *g = arg;

    for (zl_conn_t *c = g->head; c; c = c->next)
        zl_conn_close(c);
}

static void group_stop_task(void *arg)
{
    zl__group_stop(arg);
}

static void server_destroy(zl_server_t *s)
{
    free(s->unix_file);
    free(s->groups);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int zl_server_new(zl_server_t **out, const zl_server_options_t *o,
                  const zl_conn_handler_t *h, void *data)
{
    zl_server_t *s;
    lstart_t ls;
    int rc;

    if (!out || !o || !h || !h->on_recv) {
        g_warning("zl_server_new: options and a handler with on_recv are "
                  "required");
        return -EINVAL;
    }
    *out = NULL;
    rc = zl__server_options_check(o);
    if (rc < 0)
        return rc;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->lfd = s->reserve = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    g_strlcpy(s->name, o->name ? o->name : "server", sizeof(s->name));
    zl__conn_cfg_init(&s->cfg, &o->conn, h, data, "conn");
    s->cfg.ops = &server_ops;
    s->max_conns = o->max_conns;
    s->pool = o->pool ? o->pool : zl_runtime_pollers();
    if (!s->pool) {
        g_warning("%s: no poller pool given and the runtime is not running",
                  s->name);
        server_destroy(s);
        return -EINVAL;
    }
    s->npollers = zl_poller_pool_size(s->pool);
    s->acceptor = zl_poller_pool_at(s->pool, 0);
    s->groups = calloc(s->npollers, sizeof(*s->groups));
    if (!s->groups) {
        server_destroy(s);
        return -ENOMEM;
    }
    rc = make_listener(s, o);
    if (rc < 0) {
        unix_unlink(s);
        server_destroy(s);
        return rc;
    }
    open_reserve(s);
    for (size_t i = 0; i < s->npollers; i++) {
        s->groups[i].poller = zl_poller_pool_at(s->pool, i);
        s->groups[i].cfg = &s->cfg;
        rc = zl__group_start(&s->groups[i]);
        if (rc < 0)
            goto fail;
    }
    ls = (lstart_t){s, 0};
    rc = zl_poller_sync(s->acceptor, listener_start, &ls);
    if (rc == 0)
        rc = ls.rc;
    if (rc < 0)
        goto fail;
    *out = s;
    return 0;

fail:
    for (size_t i = 0; i < s->npollers; i++)
        if (s->groups[i].timer)
            zl_poller_sync(s->groups[i].poller, group_stop_task, &s->groups[i]);
    zl_poller_sync(s->acceptor, listener_stop, s);
    server_destroy(s);
    return rc;
}

void zl_server_free(zl_server_t *s)
{
    if (!s)
        return;
    if (zl_poller_pool_contains(s->pool, zl_poller_current())) {
        g_critical("zl_server_free(%s) called from a pool thread; call it "
                   "from another thread",
                   s->name);
        return;
    }
    atomic_store(&s->stopping, true);
    zl_poller_sync(s->acceptor, listener_stop, s);
    for (size_t i = 0; i < s->npollers; i++)
        zl_poller_sync(s->groups[i].poller, group_close_all, &s->groups[i]);
    /* Graceful closes finish when their queues drain or the send timeout
     * (enforced by the group timers, still running) gives up on them. */
    pthread_mutex_lock(&s->lock);
    while (atomic_load(&s->active) > 0)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < s->npollers; i++)
        zl_poller_sync(s->groups[i].poller, group_stop_task, &s->groups[i]);
    server_destroy(s);
}

const zl_addr_t *zl_server_addr(const zl_server_t *s)
{
    return &s->addr;
}

void zl_server_get_stats(const zl_server_t *s, zl_server_stats_t *out)
{
    out->accepted = atomic_load(&s->accepted);
    out->active = atomic_load(&s->active);
    out->refused_fds = atomic_load(&s->refused_fds);
    out->refused_limit = atomic_load(&s->refused_limit);
}
