/* zltk — kqueue backend (BSDs, macOS).  Edge-triggered with EV_CLEAR unless
 * ZL_EV_LT.  Read and write interest are two kevent filters per fd.
 *
 * Built only where <sys/event.h> and kqueue() exist; the Linux CI does not
 * compile it, so keep it small and obviously correct. */
#define G_LOG_DOMAIN "zltk-poller"
#include "poller-internal.h"

#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct {
    int kq;
    struct kevent evs[ZL__MAX_EVENTS];
    unsigned *cur; /* fd -> events currently registered */
    size_t ncur;
} kq_t;

static int kq_init(zl_poller_t *p)
{
    kq_t *k = calloc(1, sizeof(*k));

    if (!k)
        return -ENOMEM;
    k->kq = kqueue();
    if (k->kq < 0) {
        int e = errno;
        free(k);
        return -e;
    }
    p->bdata = k;
    return 0;
}

static void kq_destroy(zl_poller_t *p)
{
    kq_t *k = p->bdata;

    if (!k)
        return;
    close(k->kq);
    free(k->cur);
    free(k);
    p->bdata = NULL;
}

static int kq_track(kq_t *k, int fd)
{
    size_t n;
    unsigned *nc;

    if ((size_t)fd < k->ncur)
        return 0;
    n = k->ncur ? k->ncur : 64;
    while (n <= (size_t)fd)
        n *= 2;
    nc = realloc(k->cur, n * sizeof(*nc));
    if (!nc)
        return -ENOMEM;
    memset(nc + k->ncur, 0, (n - k->ncur) * sizeof(*nc));
    k->cur = nc;
    k->ncur = n;
    return 0;
}

/* Make the kernel's filters for fd match events. */
static int kq_apply(zl_poller_t *p, int fd, uint32_t gen, unsigned events)
{
    kq_t *k = p->bdata;
    struct kevent ch[2];
    int n = 0, rc = kq_track(k, fd);
    unsigned short clear = (events & ZL_EV_LT) ? 0 : EV_CLEAR;
    void *udata = (void *)(uintptr_t)gen;

    if (rc < 0)
        return rc;
    if (events & ZL_EV_READ)
        EV_SET(&ch[n++], fd, EVFILT_READ, EV_ADD | clear, 0, 0, udata);
    else if (k->cur[fd] & ZL_EV_READ)
        EV_SET(&ch[n++], fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    if (events & ZL_EV_WRITE)
        EV_SET(&ch[n++], fd, EVFILT_WRITE, EV_ADD | clear, 0, 0, udata);
    else if (k->cur[fd] & ZL_EV_WRITE)
        EV_SET(&ch[n++], fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
    if (n && kevent(k->kq, ch, n, NULL, 0, NULL) < 0)
        return -errno;
    k->cur[fd] = events & (ZL_EV_READ | ZL_EV_WRITE);
    return 0;
}

static int kq_add(zl_poller_t *p, int fd, uint32_t gen, unsigned events)
{
    return kq_apply(p, fd, gen, events);
}

static int kq_mod(zl_poller_t *p, int fd, uint32_t gen, unsigned events)
{
    return kq_apply(p, fd, gen, events);
}

static int kq_del(zl_poller_t *p, int fd)
{
    kq_t *k = p->bdata;

    if ((size_t)fd >= k->ncur)
        return -ENOENT;
    return kq_apply(p, fd, 0, 0);
}

static int kq_wait(zl_poller_t *p, zl__bev_t *out, int n, int timeout_ms)
{
    kq_t *k = p->bdata;
    struct timespec ts, *tsp = NULL;
    int got;

    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    got = kevent(k->kq, NULL, 0, k->evs, n, tsp);
    if (got < 0)
        return -errno;
    /* One fd may appear twice (read and write filters): the dispatcher copes,
     * each entry is checked against the registration's generation. */
    for (int i = 0; i < got; i++) {
        const struct kevent *e = &k->evs[i];
        unsigned m = e->filter == EVFILT_WRITE ? ZL_EV_WRITE : ZL_EV_READ;

        if (e->flags & EV_ERROR)
            m = ZL_EV_ERROR;
        else if (e->flags & EV_EOF)
            m |= e->fflags ? ZL_EV_ERROR : ZL_EV_HUP;
        out[i].fd = (int)e->ident;
        out[i].gen = (uint32_t)(uintptr_t)e->udata;
        out[i].events = m;
    }
    return got;
}

const zl__backend_ops_t zl__backend_kqueue = {
    .name = "kqueue",
    .edge = true,
    .init = kq_init,
    .destroy = kq_destroy,
    .add = kq_add,
    .mod = kq_mod,
    .del = kq_del,
    .wait = kq_wait,
};
